//! The engine: one value that holds the host's sysfs, a [`NetOps`] backend, the ledger and
//! the state directory. Every change to the host is a method on it, by job:
//!
//! - [`crate::pools`]: pool create, list, show, delete;
//! - [`crate::acquire`]: a request, the ranking of free VFs and the pick (optimistic, then
//!   under the write lock), the lease row;
//! - [`crate::configure`]: snapshot, apply and restore of one VF (knobs, driver, netdev),
//!   without the ledger;
//! - [`crate::recover`]: release, `gc`, `reapply`;
//! - [`crate::pfcache`]: the host's PFs kept between acquires;
//! - [`crate::nics`]: split, restore, persist, boot apply; [`crate::attach`]: netns attach.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vfpool_host::Sysfs;
use vfpool_model::PciAddr;
use vfpool_netlink::NetOps;

use crate::error::EngineError;
use crate::hostview::HostView;
use crate::lease::{Lease, LeaseState};
use crate::ledger::{Durability, Ledger};
use crate::owner::{NoVmLayer, VmOwners};
use crate::pfcache::PfCache;

pub struct Engine {
    pub(crate) fs: Sysfs,
    pub(crate) net: Arc<dyn NetOps>,
    pub(crate) ledger: Ledger,
    /// The state directory (the ledger, the PF locks).
    pub(crate) state: PathBuf,
    /// How long a split waits for a PF's link to stay up (`SplitOptions::settle`).
    pub(crate) settle: Duration,
    /// What the boot hook passes to `vfpool` to open this host again.
    pub(crate) boot_args: Vec<std::ffi::OsString>,
    pub(crate) vms: Box<dyn VmOwners>,
    /// Where libvirt keeps running domains' status XML (`lease gc` of `libvirt/...` leases).
    pub(crate) libvirt_run: PathBuf,
    /// The host's SR-IOV PFs as last read (no VFs): see [`crate::pfcache::pool_pfs`].
    pub(crate) pfs: Option<PfCache>,
    /// Where the running kernel's boot id is (`/proc/sys/kernel/random/boot_id`).
    pub(crate) boot_id: PathBuf,
}

/// Where [`Engine::apply_boot`] records the boot id it ran in, in the state directory.
pub const APPLIED_BOOT_FILE: &str = "applied-boot-id";

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Engine {
    /// Opens the ledger in `state` (`STATE/state.db`). A state directory that exists but
    /// cannot be written (a read-only mount, a user without write access) gets the ledger
    /// read-only: listing pools and leases works, a change fails with
    /// [`EngineError::ReadOnlyLedger`].
    pub fn open(state: &Path, fs: Sysfs, net: Arc<dyn NetOps>) -> Result<Self, EngineError> {
        let path = Ledger::path_in(state);
        let read_only =
            state.is_dir() && nix::unistd::access(state, nix::unistd::AccessFlags::W_OK).is_err();
        Ok(Self {
            fs,
            net,
            ledger: if read_only {
                tracing::debug!(state = %state.display(), "the state directory cannot be written; the ledger is read-only");
                Ledger::open_read_only(&path)?
            } else {
                Ledger::open(&path)?
            },
            state: state.to_owned(),
            settle: Duration::from_millis(1500),
            boot_args: vec!["--state".into(), state.as_os_str().to_owned()],
            vms: Box::new(NoVmLayer),
            libvirt_run: PathBuf::from(crate::domain::LIBVIRT_RUN_DIR),
            pfs: None,
            boot_id: PathBuf::from("/proc/sys/kernel/random/boot_id"),
        })
    }

    /// How long a split waits for the PF's link to stay up after its VFs appear (real
    /// hosts: 1.5 s, since igb resets its PF; zero on the simulated host).
    pub fn with_split_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The arguments the boot hook gives `vfpool` before `host apply` to open this same
    /// host and state directory again.
    pub fn with_boot_args(mut self, args: Vec<std::ffi::OsString>) -> Self {
        self.boot_args = args;
        self
    }

    /// Sets what answers "does this VM still exist" for `lease gc`.
    pub fn with_vm_owners(mut self, vms: Box<dyn VmOwners>) -> Self {
        self.vms = vms;
        self
    }

    /// Where procfs is (default `/proc`): the boot id is read there.
    pub fn with_proc_root(mut self, proc: &Path) -> Self {
        self.boot_id = proc.join("sys/kernel/random/boot_id");
        self
    }

    /// The running kernel's boot id.
    pub fn boot_id(&self) -> Result<String, EngineError> {
        std::fs::read_to_string(&self.boot_id)
            .map(|s| s.trim().to_owned())
            .map_err(|source| EngineError::BootId {
                path: self.boot_id.clone(),
                source,
            })
    }

    /// Whether `host apply` ([`Engine::apply_boot`]) has run since the kernel booted: until
    /// it has, the VFs have the kernel's defaults rather than the leases' settings, and
    /// nothing should be handed out (the Kubernetes plugins advertise nothing).
    pub fn applied_since_boot(&self) -> Result<bool, EngineError> {
        let now = self.boot_id()?;
        let path = self.state.join(APPLIED_BOOT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim() == now),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(EngineError::BootId { path, source }),
        }
    }

    /// Records that `host apply` ran in this boot (written whole, then renamed).
    pub(crate) fn record_applied_boot(&self) -> Result<(), EngineError> {
        let id = self.boot_id()?;
        let path = self.state.join(APPLIED_BOOT_FILE);
        let tmp = self.state.join(format!("{APPLIED_BOOT_FILE}.tmp"));
        std::fs::write(&tmp, format!("{id}\n"))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| EngineError::Install { path, source })
    }

    pub(crate) fn net(&self) -> &Arc<dyn NetOps> {
        &self.net
    }

    pub fn ledger(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    pub fn host(&self) -> Result<HostView, EngineError> {
        HostView::scan(&self.fs)
    }

    // ---- leases ------------------------------------------------------------------------

    /// Every lease; an active lease whose VF no longer exists is shown as stale.
    pub fn leases(&mut self) -> Result<Vec<Lease>, EngineError> {
        let host = self.host()?;
        let mut leases = self.ledger.read(|tx| tx.leases())?;
        for l in &mut leases {
            if l.state == LeaseState::Active && !host.vfs.contains_key(&l.vf_pci) {
                l.state = LeaseState::Stale;
            }
        }
        Ok(leases)
    }

    /// One lease, by its owner, as [`Engine::leases`] shows it.
    pub fn lease(&mut self, owner: &str) -> Result<Lease, EngineError> {
        vfpool_model::validate_owner(owner)?;
        self.leases()?
            .into_iter()
            .find(|l| l.owner == owner)
            .ok_or_else(|| EngineError::UnknownOwner {
                owner: owner.to_owned(),
            })
    }

    /// Marks the leases on every VF of PF `pf_pci` stale, for `nic restore --force` and a
    /// forced `nic split` (which destroy the VFs). Returns how many.
    pub fn mark_pf_stale(&mut self, pf_pci: PciAddr) -> Result<usize, EngineError> {
        self.ledger
            .write(Durability::Synced, |tx| tx.mark_pf_stale(pf_pci))
    }
}
