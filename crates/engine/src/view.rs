//! What front ends show: the response types that users script against (`-o json` today,
//! the REST API next), in one place, and the read-only calls that build them.
//!
//! Each type here is the documented contract (README, "JSON contracts" and "Pools and
//! leases"): field names, their order, and which fields are `null` and which are left out
//! are decided here, not by `Serialize` on the engine's or the host's internal structs. The
//! leaf values the README defines once — a VF's PF-side configuration ([`VfConfig`]), what a
//! lease applies ([`Applied`]) and what it found ([`Original`]) — are shared value types.
//!
//! [`Host::nics`] and [`Host::nic`] join the inventory, the ledger's leases and the PFs'
//! VF configurations (IFLA_VFINFO_LIST) for `nic list` and `nic show`. They need no
//! ledger: with none they show no owners, and with one that cannot be read they still
//! answer and say so in [`Shown::warnings`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vfpool_host::check::{Check, Report as CheckReport, Status};
use vfpool_host::iommu::{BootLoader, Change as IommuChange, IommuStatus, Vendor};
use vfpool_host::{Found, Inventory, Nic, Vf};
use vfpool_model::{MacAddr, NicState, PciAddr, VfConfig};

use crate::backend::Host;
use crate::error::{EngineError, chain};
use crate::lease::{Applied, DesiredNic, Lease, LeaseState, Original, OwnerKind};
use crate::ledger::Ledger;
use crate::nics::{ApplyOutcome, BootHook, NicChange, NicFailure, PersistReport};
use crate::pool::{Policy, PoolStatus, PoolVf, VfState};
use crate::recover::{GcAction, GcKind, GcReport, ReapplyAction, ReapplyKind};

/// A view and what could not be read to make it (the view is still right, only less
/// complete: no owners, no PF-side configuration). Front ends show the warnings apart
/// from the view (the CLI on stderr, `warning: ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct Shown<T> {
    pub view: T,
    pub warnings: Vec<String>,
}

// ---- NICs ------------------------------------------------------------------------------

/// `nic list`: one physical function that is not a VF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NicView {
    /// The first netdev, or the PCI address when it has none.
    pub name: String,
    pub netdevs: Vec<String>,
    pub pci: PciAddr,
    /// Hex, `8086`.
    pub vendor_id: String,
    /// Hex, `1521`.
    pub device_id: String,
    pub vendor: String,
    pub model: String,
    /// The device id of its VFs (`sriov_vf_device`), for SR-IOV PFs.
    pub vf_device_id: Option<String>,
    pub driver: Option<String>,
    /// `virtualized`, `virtualizable` or `unvirtualizable`.
    pub state: NicState,
    pub mac: Option<MacAddr>,
    pub operstate: Option<String>,
    /// The first netdev is set up (`IFF_UP`).
    pub admin_up: Option<bool>,
    /// Mbit/s.
    pub speed: Option<u32>,
    pub mtu: Option<u32>,
    pub link_type: Option<String>,
    /// The bond the PF's netdev is a member of, or `null`.
    pub bond: Option<String>,
    pub numa_node: Option<u32>,
    pub iommu_group: Option<u32>,
    /// `sriov_totalvfs`.
    pub total_vfs: u32,
    /// `sriov_numvfs`.
    pub num_vfs: u32,
    /// VFs not leased (live leases only; equals `num_vfs` when no ledger can be read).
    pub free_vfs: u32,
    /// `sriov_drivers_autoprobe`.
    pub autoprobe: Option<bool>,
}

/// `nic show PF`: the PF and each of its VFs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NicDetail {
    #[serde(flatten)]
    pub nic: NicView,
    pub vfs: Vec<VfView>,
}

/// One VF in `nic show PF`: what sysfs says, who holds it, and what the PF says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VfView {
    pub index: u16,
    pub pci: PciAddr,
    /// `null` when no driver gave it a netdev.
    pub netdev: Option<String>,
    pub driver: Option<String>,
    pub mac: Option<MacAddr>,
    pub iommu_group: Option<u32>,
    pub numa_node: Option<u32>,
    /// The lease holder, or `null`.
    pub owner: Option<String>,
    /// The PF-side configuration (IFLA_VFINFO_LIST); left out when the PF could not be
    /// asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<VfConfig>,
}

/// `nic show VF` (a VF's netdev or PCI address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VfDetail {
    /// Its netdev, or its PCI address when it has none.
    pub name: String,
    /// Always `vf`.
    pub state: NicState,
    pub pf: String,
    pub pf_pci: PciAddr,
    #[serde(flatten)]
    pub vf: VfView,
}

/// What `nic show NAME` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum NicShow {
    Pf(NicDetail),
    Vf(VfDetail),
}

impl NicView {
    fn new(n: &Nic, leased: u32) -> Self {
        Self {
            name: n.name.clone(),
            netdevs: n.netdevs.clone(),
            pci: n.pci,
            vendor_id: n.vendor_id.clone(),
            device_id: n.device_id.clone(),
            vendor: n.vendor.clone(),
            model: n.model.clone(),
            vf_device_id: n.vf_device_id.clone(),
            driver: n.driver.clone(),
            state: n.state,
            mac: n.mac,
            operstate: n.operstate.clone(),
            admin_up: n.admin_up,
            speed: n.speed,
            mtu: n.mtu,
            link_type: n.link_type.clone(),
            bond: n.bond.clone(),
            numa_node: n.numa_node,
            iommu_group: n.iommu_group,
            total_vfs: n.total_vfs,
            num_vfs: n.num_vfs,
            free_vfs: n.num_vfs.saturating_sub(leased),
            autoprobe: n.autoprobe,
        }
    }
}

impl VfView {
    fn new(vf: &Vf, owner: Option<String>, config: Option<VfConfig>) -> Self {
        Self {
            index: vf.index,
            pci: vf.pci,
            netdev: vf.netdev.clone(),
            driver: vf.driver.clone(),
            mac: vf.mac,
            iommu_group: vf.iommu_group,
            numa_node: vf.numa_node,
            owner,
            config,
        }
    }
}

/// The ledger's leases as `nic list` and `nic show` need them.
struct Holders {
    /// Live (not stale) leases per PF.
    leased: HashMap<PciAddr, u32>,
    /// Who holds each leased VF.
    owners: HashMap<PciAddr, String>,
}

impl Holders {
    fn new(leases: &[Lease]) -> Self {
        let mut leased: HashMap<PciAddr, u32> = HashMap::new();
        for l in leases.iter().filter(|l| l.state != LeaseState::Stale) {
            *leased.entry(l.pf_pci).or_default() += 1;
        }
        Self {
            leased,
            owners: leases.iter().map(|l| (l.vf_pci, l.owner.clone())).collect(),
        }
    }

    fn leased_on(&self, pf: PciAddr) -> u32 {
        self.leased.get(&pf).copied().unwrap_or(0)
    }
}

impl Host {
    /// `nic list`: every network PCI function that is not a VF, with its free VFs.
    pub fn nics(&self) -> Result<Shown<Vec<NicView>>, EngineError> {
        let inv = Inventory::scan(&self.fs)?;
        let mut warnings = Vec::new();
        let holders = Holders::new(&self.leases_if_any(&mut warnings));
        let view = inv
            .nics
            .iter()
            .map(|n| NicView::new(n, holders.leased_on(n.pci)))
            .collect();
        Ok(Shown { view, warnings })
    }

    /// `nic show NAME`: a PF with its VFs, or a VF, by netdev name or PCI address; each VF
    /// with its owner and its PF-side configuration.
    pub fn nic(&self, name: &str) -> Result<Shown<NicShow>, EngineError> {
        let inv = Inventory::scan(&self.fs)?;
        let found = inv.find(name)?;
        let mut warnings = Vec::new();
        let holders = Holders::new(&self.leases_if_any(&mut warnings));
        let owner = |vf: &Vf| holders.owners.get(&vf.pci).cloned();
        let view = match found {
            Found::Pf(nic) => {
                let mut configs = if nic.vfs.is_empty() {
                    HashMap::new()
                } else {
                    self.vf_configs(nic, &mut warnings)
                };
                NicShow::Pf(NicDetail {
                    nic: NicView::new(nic, holders.leased_on(nic.pci)),
                    vfs: nic
                        .vfs
                        .iter()
                        .map(|vf| VfView::new(vf, owner(vf), configs.remove(&vf.index)))
                        .collect(),
                })
            }
            Found::Vf(pf, vf) => {
                let config = self.vf_configs(pf, &mut warnings).remove(&vf.index);
                NicShow::Vf(VfDetail {
                    name: vf.netdev.clone().unwrap_or_else(|| vf.pci.to_string()),
                    state: NicState::Vf,
                    pf: pf.name.clone(),
                    pf_pci: pf.pci,
                    vf: VfView::new(vf, owner(vf), config),
                })
            }
        };
        Ok(Shown { view, warnings })
    }

    /// The ledger's leases, for views that only show them beside the host: none when no
    /// ledger exists yet (nothing is created), and a warning, not a failure, when it cannot
    /// be read.
    fn leases_if_any(&self, warnings: &mut Vec<String>) -> Vec<Lease> {
        if !Ledger::path_in(&self.state).exists() {
            return Vec::new();
        }
        match self
            .engine()
            .and_then(|mut e| e.ledger().read(|tx| tx.leases()))
        {
            Ok(l) => l,
            Err(e) => {
                warnings.push(format!(
                    "the lease ledger cannot be read ({}); owners and free VFs are not shown",
                    chain(&e)
                ));
                Vec::new()
            }
        }
    }

    /// The PF-side configuration of `pf`'s VFs by index; none, and a warning, when the PF
    /// cannot be asked.
    fn vf_configs(&self, pf: &Nic, warnings: &mut Vec<String>) -> HashMap<u16, VfConfig> {
        match self.netops().and_then(|n| {
            n.vf_configs(&pf.name).map_err(|e| EngineError::ReadVf {
                pf: pf.name.clone(),
                source: Box::new(e),
            })
        }) {
            Ok(list) => list.into_iter().collect(),
            Err(e) => {
                warnings.push(format!(
                    "{}; the VFs' PF-side configuration is not shown",
                    chain(&e)
                ));
                HashMap::new()
            }
        }
    }
}

// ---- NIC changes -----------------------------------------------------------------------

/// What `nic split`, `nic restore` or `host apply` did to one NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NicChangeView {
    pub nic: String,
    pub pci: PciAddr,
    pub num_vfs: u32,
    pub previous: u32,
    pub changed: bool,
    pub millis: u128,
    /// Left out when the link was not waited for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_settled: Option<bool>,
    /// Left out unless the PF was down and was brought up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link_brought_up: bool,
    /// Left out unless `--force` made leases stale.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stale_leases: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl From<&NicChange> for NicChangeView {
    fn from(c: &NicChange) -> Self {
        Self {
            nic: c.nic.clone(),
            pci: c.pci,
            num_vfs: c.num_vfs,
            previous: c.previous,
            changed: c.changed,
            millis: c.millis,
            link_settled: c.link_settled,
            link_brought_up: c.link_brought_up,
            stale_leases: c.stale_leases,
        }
    }
}

/// A NIC that `host apply` could not bring back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NicFailureView {
    pub nic: String,
    pub pci: Option<PciAddr>,
    /// The whole error chain, one line.
    pub error: String,
}

impl From<&NicFailure> for NicFailureView {
    fn from(f: &NicFailure) -> Self {
        Self {
            nic: f.nic.clone(),
            pci: f.pci,
            error: chain(&f.error),
        }
    }
}

/// One NIC in `host apply`'s `nics`: what changed, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum NicApplyView {
    Changed(NicChangeView),
    Failed(NicFailureView),
}

/// `host desired`: one NIC's recorded VF count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DesiredView {
    pub pci: PciAddr,
    pub name: String,
    pub num_vfs: u32,
    pub autoprobe: bool,
}

impl From<&DesiredNic> for DesiredView {
    fn from(d: &DesiredNic) -> Self {
        Self {
            pci: d.pci,
            name: d.name.clone(),
            num_vfs: d.num_vfs,
            autoprobe: d.autoprobe,
        }
    }
}

/// `host persist`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersistView {
    pub desired: Vec<DesiredView>,
    /// `systemd` or `udev`.
    pub hook: BootHook,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub installed: PathBuf,
    /// The other hook's files, removed.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub removed: Vec<PathBuf>,
}

impl From<&PersistReport> for PersistView {
    fn from(r: &PersistReport) -> Self {
        Self {
            desired: r.desired.iter().map(DesiredView::from).collect(),
            hook: r.hook,
            installed: r.installed.clone(),
            removed: r.removed.clone(),
        }
    }
}

/// `host apply`: the VF counts, the leases re-applied, then what `lease gc` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplyView {
    pub nics: Vec<NicApplyView>,
    pub leases: Vec<ReapplyView>,
    pub gc: GcView,
}

impl From<&ApplyOutcome> for ApplyView {
    fn from(o: &ApplyOutcome) -> Self {
        Self {
            nics: o
                .nics
                .changed
                .iter()
                .map(|c| NicApplyView::Changed(c.into()))
                .chain(o.nics.failed.iter().map(|f| NicApplyView::Failed(f.into())))
                .collect(),
            leases: o.leases.actions.iter().map(ReapplyView::from).collect(),
            gc: (&o.gc).into(),
        }
    }
}

/// One lease `host apply` re-applied (or found stale).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReapplyView {
    pub owner: String,
    pub vf_pci: PciAddr,
    pub pool: String,
    /// `reapplied`, `failed` or `stale`.
    pub action: ReapplyKind,
    /// Left out unless it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&ReapplyAction> for ReapplyView {
    fn from(a: &ReapplyAction) -> Self {
        Self {
            owner: a.owner.clone(),
            vf_pci: a.vf_pci,
            pool: a.pool.clone(),
            action: a.action,
            error: a.error.clone(),
        }
    }
}

// ---- host check ------------------------------------------------------------------------

/// `host check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckView {
    pub vm_ready: bool,
    pub container_ready: bool,
    /// The next boot asks for the IOMMU (`null` when the boot configuration is unknown).
    pub iommu_enabled: Option<bool>,
    /// The running kernel has the IOMMU.
    pub iommu_ready: bool,
    /// Enabled but not ready: a reboot is pending (or VT-d / AMD-Vi is off in the BIOS).
    pub reboot_pending: bool,
    pub checks: Vec<CheckItemView>,
}

/// One readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckItemView {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// The exact fix; left out on pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl From<&Check> for CheckItemView {
    fn from(c: &Check) -> Self {
        Self {
            name: c.name.to_owned(),
            status: c.status,
            detail: c.detail.clone(),
            remedy: (!c.remedy.is_empty()).then(|| c.remedy.clone()),
        }
    }
}

impl From<&CheckReport> for CheckView {
    fn from(r: &CheckReport) -> Self {
        let ready = r
            .checks
            .iter()
            .any(|c| c.name == "iommu-ready" && c.status == Status::Pass);
        Self {
            vm_ready: r.vm_ready,
            container_ready: r.container_ready,
            iommu_enabled: r.iommu.as_ref().map(|i| i.enabled),
            iommu_ready: ready,
            reboot_pending: r.iommu.as_ref().is_some_and(|i| i.reboot_pending),
            checks: r.checks.iter().map(CheckItemView::from).collect(),
        }
    }
}

// ---- host iommu ------------------------------------------------------------------------

/// `host iommu status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IommuStatusView {
    /// `grub-update`, `grub-mkconfig`, `grubby`, `kernel-install`, or `null` when none found.
    pub boot_loader: Option<BootLoader>,
    /// The next boot asks for the IOMMU.
    pub enabled: bool,
    /// `intel_iommu=on in /etc/default/grub`, or `null`.
    pub enabled_by: Option<String>,
    /// vfpool's own change is what enables it (`host iommu disable` would remove it).
    pub by_vfpool: bool,
    /// The running kernel has IOMMU units.
    pub ready: bool,
    pub units: Vec<String>,
    pub reboot_pending: bool,
}

impl From<&IommuStatus> for IommuStatusView {
    fn from(s: &IommuStatus) -> Self {
        Self {
            boot_loader: s.boot_loader,
            enabled: s.enabled,
            enabled_by: s.enabled_by.clone(),
            by_vfpool: s.by_vfpool,
            ready: s.ready,
            units: s.units.clone(),
            reboot_pending: s.reboot_pending,
        }
    }
}

/// `host iommu enable|disable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IommuChangeView {
    /// The root `written` and `removed` are under (`/` on the real host).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub root: PathBuf,
    pub boot_loader: BootLoader,
    pub vendor: Option<Vendor>,
    /// The kernel arguments (enable: wanted; disable: those vfpool had added).
    pub args: Vec<String>,
    /// Files written or removed, as paths on the host (under `--root`).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub written: Vec<PathBuf>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub removed: Vec<PathBuf>,
    /// Why nothing changed, or `null`.
    pub unchanged: Option<String>,
    /// The command that regenerates the boot configuration, or `null`.
    pub command: Option<String>,
    /// The command was run (only on the real host, root `/`, the tool installed).
    pub command_ran: bool,
    pub warnings: Vec<String>,
    /// Always `after a reboot`.
    pub effective: String,
}

impl From<&IommuChange> for IommuChangeView {
    fn from(c: &IommuChange) -> Self {
        Self {
            root: c.root.clone(),
            boot_loader: c.boot_loader,
            vendor: c.vendor,
            args: c.args.clone(),
            written: c.written.clone(),
            removed: c.removed.clone(),
            unchanged: c.unchanged.clone(),
            command: c.command.as_ref().map(|b| b.command.clone()),
            command_ran: c.command.as_ref().is_some_and(|b| b.ran),
            warnings: c.warnings.clone(),
            effective: c.effective.to_owned(),
        }
    }
}

// ---- pools -----------------------------------------------------------------------------

/// `pool list` (and `pool create`): a pool's VFs counted by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolView {
    pub name: String,
    pub policy: Policy,
    /// As typed: `eno49#0-3`, `vendor=8086`, ...
    pub selectors: Vec<String>,
    pub total: usize,
    pub free: usize,
    pub leased: usize,
    pub unhealthy: usize,
    /// `{reason: count}`; left out when no VF is unhealthy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unhealthy_reasons: BTreeMap<String, usize>,
}

impl From<&PoolStatus> for PoolView {
    fn from(s: &PoolStatus) -> Self {
        Self {
            name: s.name.clone(),
            policy: s.policy,
            selectors: s.selectors.iter().map(ToString::to_string).collect(),
            total: s.total,
            free: s.free,
            leased: s.leased,
            unhealthy: s.unhealthy,
            unhealthy_reasons: s.unhealthy_reasons.clone(),
        }
    }
}

/// `pool show`: the pool and each of its VFs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolDetail {
    #[serde(flatten)]
    pub pool: PoolView,
    pub vfs: Vec<PoolVfView>,
}

impl PoolDetail {
    pub fn new(status: &PoolStatus, vfs: &[PoolVf]) -> Self {
        Self {
            pool: status.into(),
            vfs: vfs.iter().map(PoolVfView::from).collect(),
        }
    }
}

/// One VF of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolVfView {
    pub vf_pci: PciAddr,
    pub pf: String,
    pub vf_index: u16,
    pub netdev: Option<String>,
    pub driver: Option<String>,
    pub numa_node: Option<u32>,
    /// `free`, `leased` or `unhealthy`.
    pub state: VfState,
    /// The lease holder; left out unless leased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Why it is unhealthy; left out unless unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&PoolVf> for PoolVfView {
    fn from(v: &PoolVf) -> Self {
        Self {
            vf_pci: v.vf_pci,
            pf: v.pf.clone(),
            vf_index: v.vf_index,
            netdev: v.netdev.clone(),
            driver: v.driver.clone(),
            numa_node: v.numa_node,
            state: v.state,
            owner: v.owner.clone(),
            reason: v.reason.clone(),
        }
    }
}

/// `pool delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolDeleted {
    pub deleted: String,
}

// ---- leases ----------------------------------------------------------------------------

/// Where a lease is, as shown: the ledger's states, and `released` for the lease that
/// `lease release` just gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LeaseStateView {
    Acquiring,
    Active,
    Releasing,
    Stale,
    Released,
}

impl From<LeaseState> for LeaseStateView {
    fn from(s: LeaseState) -> Self {
        match s {
            LeaseState::Acquiring => Self::Acquiring,
            LeaseState::Active => Self::Active,
            LeaseState::Releasing => Self::Releasing,
            LeaseState::Stale => Self::Stale,
        }
    }
}

/// `lease acquire`, `lease list`, `lease release`: one lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseView {
    pub id: i64,
    pub owner: String,
    /// `container`, `vm` or `manual`.
    pub owner_kind: OwnerKind,
    pub pool: String,
    pub vf_pci: PciAddr,
    pub pf: String,
    pub pf_pci: PciAddr,
    pub vf_index: u16,
    /// The VF's netdev in the host, or `null`.
    pub netdev: Option<String>,
    /// The container's network namespace path, or `null`.
    pub netns: Option<String>,
    /// The VF netdev's name inside `netns` while attached there, or `null`.
    pub ifname: Option<String>,
    /// Unix seconds.
    pub created: i64,
    pub state: LeaseStateView,
    /// What the lease applied to its VF.
    pub applied: Applied,
    /// The VF as it was before: what release puts back.
    pub original: Original,
}

impl From<&Lease> for LeaseView {
    fn from(l: &Lease) -> Self {
        Self {
            id: l.id,
            owner: l.owner.clone(),
            owner_kind: l.owner_kind,
            pool: l.pool.clone(),
            vf_pci: l.vf_pci,
            pf: l.pf.clone(),
            pf_pci: l.pf_pci,
            vf_index: l.vf_index,
            netdev: l.netdev.clone(),
            netns: l.netns.clone(),
            ifname: l.ifname.clone(),
            created: l.created,
            state: l.state.into(),
            applied: l.applied.clone(),
            original: l.original.clone(),
        }
    }
}

impl LeaseView {
    /// The lease `lease release` gave back (`"state": "released"`).
    pub fn released(l: &Lease) -> Self {
        Self {
            state: LeaseStateView::Released,
            ..Self::from(l)
        }
    }
}

/// `lease gc` (and `host apply`'s `gc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcView {
    pub actions: Vec<GcActionView>,
    /// Leases another live process is acquiring or releasing right now.
    pub in_progress: usize,
    /// Leases kept: healthy, or owner unknown.
    pub kept: usize,
    /// Pods' L3 addresses (`vfpool` IPAM) whose lease is gone, given back.
    pub addresses_freed: Vec<crate::vm::FreedAddress>,
    pub errors: Vec<String>,
}

/// One thing `lease gc` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcActionView {
    pub owner: String,
    pub vf_pci: PciAddr,
    pub pool: String,
    /// `rolled-back`, `finished-release`, `released-owner-gone`, `removed-stale`.
    pub action: GcKind,
    pub reason: String,
}

impl From<&GcAction> for GcActionView {
    fn from(a: &GcAction) -> Self {
        Self {
            owner: a.owner.clone(),
            vf_pci: a.vf_pci,
            pool: a.pool.clone(),
            action: a.action,
            reason: a.reason.clone(),
        }
    }
}

impl From<&GcReport> for GcView {
    fn from(r: &GcReport) -> Self {
        Self {
            actions: r.actions.iter().map(GcActionView::from).collect(),
            in_progress: r.in_progress,
            kept: r.kept,
            addresses_freed: r.addresses_freed.clone(),
            errors: r.errors.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_released_lease_says_released_and_keeps_its_fields() {
        let l = Lease {
            id: 7,
            owner: "vm-1".into(),
            owner_kind: OwnerKind::Vm,
            pool: "igb".into(),
            vf_pci: "0000:03:10.0".parse().unwrap(),
            pf: "eno49".into(),
            pf_pci: "0000:03:00.0".parse().unwrap(),
            vf_index: 0,
            netdev: None,
            netns: None,
            netns_id: None,
            ifname: None,
            created: 1,
            state: LeaseState::Active,
            applied: Applied::default(),
            original: Original::default(),
            pid: None,
        };
        let v = serde_json::to_value(LeaseView::released(&l)).unwrap();
        assert_eq!(v["state"], "released");
        assert_eq!(v["owner"], "vm-1");
        assert!(v["netdev"].is_null() && v.get("netns_id").is_none() && v.get("pid").is_none());
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 15, "{keys:?}");
    }
}
