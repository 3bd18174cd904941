//! The host as the engine sees it: every VF slot with its PF facts and its health.
//!
//! The inventory ([`Inventory::scan`]) is the truth; the ledger reconciles against it.

use std::collections::BTreeMap;

use serde::Serialize;
use vfpool_host::{Inventory, Sysfs};
use vfpool_model::PciAddr;

use crate::error::EngineError;
use crate::selector::PfFacts;

/// Drivers that bind a VF without giving it a netdev.
pub const NON_NET_DRIVERS: [&str; 2] = ["vfio-pci", "pci-stub"];

/// The kernel's VF driver for a PF driver: what `--driver netdevice` binds.
pub fn vf_driver_for_pf(pf_driver: &str) -> Option<&'static str> {
    Some(match pf_driver {
        "igb" => "igbvf",
        "ixgbe" => "ixgbevf",
        "i40e" | "ice" => "iavf",
        "mlx5_core" => "mlx5_core",
        "mlx4_core" => "mlx4_core",
        "bnxt_en" => "bnxt_en",
        "qede" => "qede",
        "be2net" => "be2net",
        "enic" => "enic",
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "health", rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Unhealthy { reason: String },
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

/// One VF that exists on the host now.
#[derive(Debug, Clone)]
pub struct VfSlot {
    pub pf: PfFacts,
    pub pf_pci: PciAddr,
    pub index: u16,
    pub pci: PciAddr,
    pub netdev: Option<String>,
    pub driver: Option<String>,
    pub numa: Option<u32>,
    pub health: Health,
}

/// A PF that can have VFs, with how many it can have.
#[derive(Debug, Clone)]
pub struct PfSlot {
    pub facts: PfFacts,
    pub pci: PciAddr,
    pub total_vfs: u32,
}

#[derive(Debug, Clone, Default)]
pub struct HostView {
    pub pfs: Vec<PfSlot>,
    pub vfs: BTreeMap<PciAddr, VfSlot>,
}

impl HostView {
    pub fn scan(fs: &Sysfs) -> Result<Self, EngineError> {
        Self::scan_where(fs, &|_, _| true)
    }

    /// Like [`HostView::scan`], but reads the VFs only of the PFs `want(facts, total_vfs)`
    /// accepts (all PFs are still listed, with their facts): an acquire reads only its
    /// pool's PFs.
    pub fn scan_where(
        fs: &Sysfs,
        want: &(dyn Fn(&PfFacts, u32) -> bool + Sync),
    ) -> Result<Self, EngineError> {
        let inv = Inventory::scan_with(fs, &|nic| {
            nic.total_vfs > 0 && want(&facts_of(nic), nic.total_vfs)
        })?;
        let mut view = HostView::default();
        for nic in inv.nics.iter().filter(|n| n.total_vfs > 0) {
            let facts = facts_of(nic);
            let pf_problem = if nic.netdevs.is_empty() {
                Some(format!("PF {} has no netdev", nic.pci))
            } else if nic.admin_up == Some(false) {
                Some(format!(
                    "PF {} is administratively down (bring it up: ip link set {} up)",
                    nic.name, nic.name
                ))
            } else {
                match nic.operstate.as_deref() {
                    Some("up") | Some("unknown") | None => None,
                    Some(other) => {
                        Some(format!("PF {} lost carrier (operstate {other})", nic.name))
                    }
                }
            };
            for vf in &nic.vfs {
                let health = if let Some(p) = &pf_problem {
                    Health::Unhealthy { reason: p.clone() }
                } else {
                    match (&vf.driver, &vf.netdev) {
                        (Some(d), None) if !NON_NET_DRIVERS.contains(&d.as_str()) => {
                            Health::Unhealthy {
                                reason: format!("driver {d} is bound but the VF has no netdev"),
                            }
                        }
                        _ => Health::Healthy,
                    }
                };
                view.vfs.insert(
                    vf.pci,
                    VfSlot {
                        pf: facts.clone(),
                        pf_pci: nic.pci,
                        index: vf.index,
                        pci: vf.pci,
                        netdev: vf.netdev.clone(),
                        driver: vf.driver.clone(),
                        numa: vf.numa_node.or(nic.numa_node),
                        health,
                    },
                );
            }
            view.pfs.push(PfSlot {
                facts,
                pci: nic.pci,
                total_vfs: nic.total_vfs,
            });
        }
        Ok(view)
    }
}

/// What pool selectors match on for a PF.
fn facts_of(nic: &vfpool_host::Nic) -> PfFacts {
    let vf_device = nic
        .vf_device_id
        .as_deref()
        .and_then(|s| u16::from_str_radix(s, 16).ok());
    PfFacts {
        name: nic.name.clone(),
        netdevs: nic.netdevs.clone(),
        pci: Some(nic.pci),
        vendor: u16::from_str_radix(&nic.vendor_id, 16).unwrap_or(0),
        device: u16::from_str_radix(&nic.device_id, 16).unwrap_or(0),
        vf_device,
        driver: nic.driver.clone(),
        numa: nic.numa_node,
        link_type: nic.link_type.clone(),
    }
}
