//! The host as the engine sees it: every VF slot with its PF facts and its health.
//!
//! The inventory ([`Inventory::scan`]) is the truth; the ledger reconciles against it.

use std::collections::BTreeMap;

use serde::Serialize;
use vfpool_host::{Inventory, Nic, Sysfs, Vf};
use vfpool_model::{PciAddr, PfRef, gives_netdev};

use crate::error::EngineError;
use crate::selector::PfFacts;

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
    /// Why none of its VFs can be handed out now (no netdev, down, no carrier).
    pub problem: Option<String>,
    /// The PF as read: its VF slots ([`Nic::vf_slots`]), and its VFs when they were read.
    pub nic: Nic,
}

impl PfSlot {
    fn new(nic: Nic) -> Self {
        let problem = if nic.netdevs.is_empty() {
            Some(format!("PF {} has no netdev", nic.pci))
        } else if nic.admin_up == Some(false) {
            Some(format!(
                "PF {} is administratively down (bring it up: ip link set {} up)",
                nic.name, nic.name
            ))
        } else {
            match nic.operstate.as_deref() {
                Some("up") | Some("unknown") | None => None,
                Some(other) => Some(format!("PF {} lost carrier (operstate {other})", nic.name)),
            }
        };
        Self {
            facts: facts_of(&nic),
            pci: nic.pci,
            total_vfs: nic.total_vfs,
            problem,
            nic,
        }
    }

    /// VF `vf` of this PF as a slot, with its health.
    fn slot(&self, vf: &Vf) -> VfSlot {
        let health = if let Some(p) = &self.problem {
            Health::Unhealthy { reason: p.clone() }
        } else {
            match (&vf.driver, &vf.netdev) {
                (Some(d), None) if gives_netdev(d) => Health::Unhealthy {
                    reason: format!("driver {d} is bound but the VF has no netdev"),
                },
                _ => Health::Healthy,
            }
        };
        VfSlot {
            pf: self.facts.clone(),
            pf_pci: self.pci,
            index: vf.index,
            pci: vf.pci,
            netdev: vf.netdev.clone(),
            driver: vf.driver.clone(),
            numa: vf.numa_node.or(self.nic.numa_node),
            health,
        }
    }

    /// Reads VF `index` of this PF alone, with its health: what an acquire checks of the
    /// VF it picked. `None` when the PF has no such VF now.
    pub fn probe(&self, fs: &Sysfs, index: u16) -> Result<Option<VfSlot>, EngineError> {
        Ok(Inventory::read_vf(fs, &self.nic, index)?.map(|vf| self.slot(&vf)))
    }
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
        for nic in inv.nics.into_iter().filter(|n| n.total_vfs > 0) {
            let pf = PfSlot::new(nic);
            for vf in &pf.nic.vfs {
                view.vfs.insert(vf.pci, pf.slot(vf));
            }
            view.pfs.push(pf);
        }
        Ok(view)
    }

    /// Every SR-IOV PF with its facts, health and VF slots, reading no VF: what an acquire
    /// needs before it picks (then [`PfSlot::probe`] reads the one VF it picked).
    pub fn scan_pfs(fs: &Sysfs) -> Result<Self, EngineError> {
        Self::scan_where(fs, &|_, _| false)
    }

    /// Like [`HostView::scan_pfs`], but reads only the PFs `refs` name (netdev names or PCI
    /// addresses); a name no netdev has now, or a function without SR-IOV, is left out.
    pub fn scan_named_pfs(fs: &Sysfs, refs: &[&PfRef]) -> Result<Self, EngineError> {
        let mut view = HostView::default();
        for r in refs {
            let pci = match r {
                PfRef::Pci(p) => Some(*p),
                PfRef::Name(n) => pci_of_netdev(fs, n)?,
            };
            let Some(pci) = pci else { continue };
            if view.pfs.iter().any(|p| p.pci == pci) {
                continue;
            }
            if let Some(nic) = Inventory::read_pf(fs, pci)?
                && nic.total_vfs > 0
            {
                view.pfs.push(PfSlot::new(nic));
            }
        }
        view.pfs.sort_by_key(|p| p.pci);
        Ok(view)
    }

    /// Reads PF `pci` again in place. False when it is no longer an SR-IOV PF (the caller
    /// then reads the host again).
    pub fn refresh_pf(&mut self, fs: &Sysfs, pci: PciAddr) -> Result<bool, EngineError> {
        let Some(at) = self.pfs.iter().position(|p| p.pci == pci) else {
            return Ok(false);
        };
        match Inventory::refresh_pf(fs, &self.pfs[at].nic)? {
            Some(nic) if nic.total_vfs > 0 => {
                self.vfs.retain(|_, s| s.pf_pci != pci);
                self.pfs[at] = PfSlot::new(nic);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The PCI function netdev `name` belongs to: `class/net/NAME` links to
/// `.../FUNCTION/net/NAME`. `None` for no such netdev, or one of no PCI function.
fn pci_of_netdev(fs: &Sysfs, name: &str) -> Result<Option<PciAddr>, EngineError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Ok(None);
    }
    let link = fs.path(format!("class/net/{name}"));
    let target = match std::fs::read_link(&link) {
        Ok(t) => t,
        Err(_) => return Ok(None),
    };
    let parts: Vec<_> = target.components().collect();
    Ok(parts
        .windows(2)
        .rev()
        .find(|w| w[1].as_os_str() == "net")
        .and_then(|w| w[0].as_os_str().to_str())
        .and_then(|s| s.parse().ok()))
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
