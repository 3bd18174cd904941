//! What the pages show, read from the engine in one blocking call each.

use std::collections::HashMap;

use vfpool_engine::view::{CheckView, IommuStatusView, NicShow, NicView};
use vfpool_engine::{
    EngineError, L2View, L3View, LeaseState, LeaseView, OwnerKind, PoolView, VmView,
};
use vfpool_model::{InvalidValue, MacAddr, PciAddr};

use crate::error::ApiError;
use crate::state::AppState;

/// The Hosts page: the readiness check and the IOMMU setting.
pub struct Hosts {
    pub check: CheckView,
    pub iommu: IommuStatusView,
}

pub async fn hosts(s: &AppState) -> Result<Hosts, ApiError> {
    s.with_host(|h| {
        let check = CheckView::from(&h.check(None)?);
        let iommu = IommuStatusView::from(&h.iommu_status(None)?);
        Ok(Hosts { check, iommu })
    })
    .await
}

/// What a VF map cell says about its VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    Free,
    Vm,
    Pod,
    /// Leased by a person (`lease acquire` with the default owner kind).
    Manual,
    Unhealthy,
}

impl CellKind {
    /// The cell's class (its colour) and the letter that says the same without colour.
    pub fn class(self) -> &'static str {
        match self {
            CellKind::Free => "free",
            CellKind::Vm => "vm",
            CellKind::Pod => "pod",
            CellKind::Manual => "manual",
            CellKind::Unhealthy => "unhealthy",
        }
    }

    pub fn letter(self) -> &'static str {
        match self {
            CellKind::Free => "F",
            CellKind::Vm => "V",
            CellKind::Pod => "P",
            CellKind::Manual => "M",
            CellKind::Unhealthy => "U",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            CellKind::Free => "free",
            CellKind::Vm => "leased to a VM",
            CellKind::Pod => "leased to a pod",
            CellKind::Manual => "leased (manual)",
            CellKind::Unhealthy => "unhealthy",
        }
    }

    pub const ALL: [CellKind; 5] = [
        CellKind::Free,
        CellKind::Vm,
        CellKind::Pod,
        CellKind::Manual,
        CellKind::Unhealthy,
    ];
}

/// One VF in the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfCell {
    pub index: u16,
    pub pci: PciAddr,
    pub netdev: Option<String>,
    pub kind: CellKind,
    pub owner: Option<String>,
    pub mac: Option<MacAddr>,
    /// The PF-side VLAN (0: none).
    pub vlan: Option<u16>,
    /// Why it is unhealthy.
    pub reason: Option<String>,
}

/// A NIC and the cells of its VFs.
pub struct VfMap {
    pub nic: NicView,
    pub cells: Vec<VfCell>,
    pub warnings: Vec<String>,
}

pub async fn vf_map(s: &AppState, nic: String) -> Result<VfMap, ApiError> {
    s.engine(move |h, e| {
        let shown = h.nic(&nic)?;
        let NicShow::Pf(detail) = shown.view else {
            return Err(EngineError::Invalid(InvalidValue::new(
                "nic",
                &nic,
                "a physical NIC (PF); this is a VF",
            )));
        };
        let leases: HashMap<PciAddr, _> = e.leases()?.into_iter().map(|l| (l.vf_pci, l)).collect();
        let host = e.host()?;
        let cells = detail
            .vfs
            .iter()
            .map(|vf| {
                let lease = leases.get(&vf.pci);
                let unhealthy = match host.vfs.get(&vf.pci).map(|slot| &slot.health) {
                    Some(vfpool_engine::Health::Unhealthy { reason }) => Some(reason.clone()),
                    Some(vfpool_engine::Health::Healthy) => None,
                    None => Some("the VF is not usable (not seen by the engine)".to_owned()),
                };
                let unhealthy = unhealthy.or_else(|| {
                    lease
                        .filter(|l| l.state == LeaseState::Stale)
                        .map(|_| "its lease is stale (the VF was reset under it)".to_owned())
                });
                let kind = match (&unhealthy, lease) {
                    (Some(_), _) => CellKind::Unhealthy,
                    (None, None) => CellKind::Free,
                    (None, Some(l)) => match l.owner_kind {
                        OwnerKind::Vm => CellKind::Vm,
                        OwnerKind::Container => CellKind::Pod,
                        OwnerKind::Manual => CellKind::Manual,
                    },
                };
                let config_mac = vf
                    .config
                    .as_ref()
                    .map(|c| c.mac)
                    .filter(|m| *m != MacAddr::ZERO);
                VfCell {
                    index: vf.index,
                    pci: vf.pci,
                    netdev: vf.netdev.clone(),
                    kind,
                    owner: lease.map(|l| l.owner.clone()).or_else(|| vf.owner.clone()),
                    mac: config_mac.or(vf.mac),
                    vlan: vf.config.as_ref().map(|c| c.vlan),
                    reason: unhealthy,
                }
            })
            .collect();
        Ok(VfMap {
            nic: detail.nic,
            cells,
            warnings: shown.warnings,
        })
    })
    .await
}

pub async fn pools(s: &AppState) -> Result<Vec<PoolView>, ApiError> {
    s.engine(|_, e| Ok(e.pool_list()?.iter().map(PoolView::from).collect()))
        .await
}

pub struct Leases {
    pub leases: Vec<LeaseView>,
    pub pools: Vec<String>,
}

pub async fn leases(s: &AppState) -> Result<Leases, ApiError> {
    s.engine(|_, e| {
        Ok(Leases {
            leases: e.leases()?.iter().map(LeaseView::from).collect(),
            pools: e.pool_list()?.into_iter().map(|p| p.name).collect(),
        })
    })
    .await
}

pub struct Networks {
    pub l2: Vec<L2View>,
    pub l3: Vec<L3View>,
    pub nics: Vec<NicView>,
}

pub async fn networks(s: &AppState) -> Result<Networks, ApiError> {
    s.engine(|h, e| {
        Ok(Networks {
            l2: e.l2_list()?,
            l3: e.l3_list()?,
            nics: h.nics()?.view,
        })
    })
    .await
}

pub struct Vms {
    pub vms: Vec<VmView>,
    pub l3: Vec<L3View>,
}

pub async fn vms(s: &AppState) -> Result<Vms, ApiError> {
    s.engine(|_, e| {
        Ok(Vms {
            vms: e.vm_list()?,
            l3: e.l3_list()?,
        })
    })
    .await
}
