//! Leases: who holds which VF, what was applied to it and what it was before, and where
//! the lease is in its life. Stored by [`crate::ledger`], read by every module.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vfpool_model::{InvalidValue, MacAddr, PciAddr, VfConfig, VfSettings};
use vfpool_netlink::NetnsId;

/// The VF count vfpool keeps on a PF across reboots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredNic {
    pub pci: PciAddr,
    /// The netdev name when recorded, for people; matching is by PCI address.
    pub name: String,
    pub num_vfs: u32,
    pub autoprobe: bool,
}

/// Who holds a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OwnerKind {
    Container,
    Vm,
    Manual,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::Container => "container",
            OwnerKind::Vm => "vm",
            OwnerKind::Manual => "manual",
        }
    }
}

impl FromStr for OwnerKind {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "container" => Ok(OwnerKind::Container),
            "vm" => Ok(OwnerKind::Vm),
            "manual" => Ok(OwnerKind::Manual),
            _ => Err(InvalidValue::new(
                "owner-kind",
                s,
                "container, vm or manual",
            )),
        }
    }
}

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// The row is written; the VF is being configured (or the process died doing it).
    Acquiring,
    Active,
    /// The VF is being restored (or the process died doing it).
    Releasing,
    /// The VF vanished under the lease (`nic restore --force`); `lease gc` removes it.
    Stale,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Acquiring => "acquiring",
            LeaseState::Active => "active",
            LeaseState::Releasing => "releasing",
            LeaseState::Stale => "stale",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "acquiring" => LeaseState::Acquiring,
            "active" => LeaseState::Active,
            "releasing" => LeaseState::Releasing,
            _ => LeaseState::Stale,
        }
    }
}

/// The driver a lease asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DriverChoice {
    /// The kernel's VF driver (igbvf, ixgbevf, iavf, mlx5_core): the VF gets a netdev.
    Netdevice,
    /// vfio-pci, for passing the VF to a VM.
    VfioPci,
}

impl FromStr for DriverChoice {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "netdevice" => Ok(DriverChoice::Netdevice),
            "vfio-pci" => Ok(DriverChoice::VfioPci),
            _ => Err(InvalidValue::new("driver", s, "netdevice or vfio-pci")),
        }
    }
}

/// What a lease applies to its VF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Applied {
    #[serde(flatten)]
    pub settings: VfSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverChoice>,
}

/// The VF as it was before the lease touched it: what release puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Original {
    /// The PF-side configuration (IFLA_VFINFO_LIST).
    pub vf: VfConfig,
    pub driver: Option<String>,
    /// `driver_override` as read (`None` for `(null)`).
    pub driver_override: Option<String>,
    pub netdev: Option<String>,
    pub mtu: Option<u32>,
    pub mac: Option<MacAddr>,
    /// The VF device's instance when it was leased (see `Sysfs::instance`): a VF destroyed
    /// and created again behind vfpool's back has another, and has lost this lease's
    /// configuration. `None` in leases written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u64>,
}

/// One lease row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub id: i64,
    pub owner: String,
    pub owner_kind: OwnerKind,
    pub pool: String,
    pub vf_pci: PciAddr,
    pub pf: String,
    pub pf_pci: PciAddr,
    pub vf_index: u16,
    pub netdev: Option<String>,
    pub netns: Option<String>,
    /// The identity of the namespace `netns` named at acquire (`None` in leases written
    /// before schema 4).
    #[serde(skip)]
    pub netns_id: Option<NetnsId>,
    /// The VF netdev's name in `netns` while it is attached there (`Engine::attach`);
    /// `netdev` stays its name in the host.
    pub ifname: Option<String>,
    /// Unix seconds.
    pub created: i64,
    pub state: LeaseState,
    pub applied: Applied,
    pub original: Original,
    /// The process in the middle of acquiring or releasing this lease.
    #[serde(skip)]
    pub pid: Option<(i64, u64)>,
}
