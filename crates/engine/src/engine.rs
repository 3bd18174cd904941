//! The engine: pools, acquire, release and garbage collection over the ledger, the host's
//! sysfs and a [`NetOps`] backend.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use vfpool_host::{HostError, Sysfs};
use vfpool_model::{InvalidValue, MacAddr, PciAddr, PfRef, VfConfig, VfSettings, validate_owner};
use vfpool_netlink::{NetOps, NetlinkError, VfKnob};

use crate::error::{EngineError, chain};
use crate::fault;
use crate::hostview::{HostView, NON_NET_DRIVERS, PfSlot, VfSlot, vf_driver_for_pf};
use crate::ledger::{
    Applied, DriverChoice, Lease, LeaseState, Ledger, Original, OwnerKind, VfLock,
    is_unique_violation, lock_vf,
};
use crate::lock::{Hold, PfLocks};
use crate::owner::{
    NetnsNow, NoVmLayer, OwnerStatus, VmOwners, netns_now, owner_status, this_process,
};
use crate::pool::{
    self, Candidate, Policy, Pool, PoolStatus, PoolVf, describe_overlap, owner_of, potential, rank,
    validate_pool_name,
};
use crate::selector::PoolSelector;
use vfpool_netlink::NetnsId;

/// What `lease acquire` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireRequest {
    pub pool: String,
    pub owner: String,
    pub owner_kind: OwnerKind,
    /// A named VF instead of the policy's choice.
    pub vf: Option<PciAddr>,
    pub settings: VfSettings,
    pub driver: Option<DriverChoice>,
    /// Preferred NUMA node.
    pub numa: Option<u32>,
    /// The container's network namespace (a path); gone means the owner is gone.
    pub netns: Option<PathBuf>,
    /// With `netns`: the VF netdev is attached there under this name as part of the
    /// acquire (see [`Engine::attach`]); the lease is rolled back if that fails.
    pub ifname: Option<String>,
}

impl AcquireRequest {
    pub fn new(pool: &str, owner: &str) -> Self {
        Self {
            pool: pool.to_owned(),
            owner: owner.to_owned(),
            owner_kind: OwnerKind::Manual,
            vf: None,
            settings: VfSettings::default(),
            driver: None,
            numa: None,
            netns: None,
            ifname: None,
        }
    }
}

/// Which lease `lease release` means. Releasing by owner touches only that owner's lease, so
/// an old pod's teardown can never reset a VF already given to a new pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseTarget {
    Owner(String),
    Vf(PciAddr),
}

/// One thing `lease gc` did.
#[derive(Debug, Clone, Serialize)]
pub struct GcAction {
    pub owner: String,
    pub vf_pci: PciAddr,
    pub pool: String,
    /// `rolled-back`, `finished-release`, `released-owner-gone`, `removed-stale`.
    pub action: &'static str,
    pub reason: String,
}

/// What `reapply` did for one lease.
#[derive(Debug, Clone, Serialize)]
pub struct ReapplyAction {
    pub owner: String,
    pub vf_pci: PciAddr,
    pub pool: String,
    /// `reapplied`, `failed` (the error says why; the lease stays active), `stale` (its VF
    /// does not exist).
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReapplyReport {
    pub actions: Vec<ReapplyAction>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub actions: Vec<GcAction>,
    /// Leases another live process is acquiring or releasing right now.
    pub in_progress: usize,
    /// Leases kept: healthy, or owner unknown.
    pub kept: usize,
    pub errors: Vec<String>,
}

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
    vms: Box<dyn VmOwners>,
    /// The host's SR-IOV PFs as last read (no VFs): see [`pool_pfs`].
    pfs: Option<PfCache>,
}

/// How long [`Engine::pool_pfs`] trusts the set of PFs it read (a PF hot-plugged since is
/// seen after this, or at once when a pool would otherwise be exhausted).
const PF_SET_MAX_AGE: Duration = Duration::from_secs(30);

/// PFs read earlier, when, and which: every SR-IOV PF of the host (`named: None`), or only
/// those at these addresses (read for pools whose selectors name their PFs).
struct PfCache {
    view: HostView,
    at: Instant,
    named: Option<Vec<PciAddr>>,
}

/// What the write transaction of an acquire ends with.
enum Picked {
    /// The lease row, and the VF's in-flight lock (held until the acquire is done).
    Lease(Box<Lease>, VfLock),
    /// Every free VF found is locked by a step under way (an acquire about to insert its
    /// row): pick again.
    Busy,
    /// No free healthy VF in a PF view that was kept from earlier: read the host again.
    RetryFresh,
    /// The VF picked is on a PF whose lock is not held: take it, then pick again.
    Lock(PciAddr),
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether `knob` is already in effect in `c` (applying it would change nothing).
pub(crate) fn knob_holds(knob: &VfKnob, c: &VfConfig) -> bool {
    let mut after = c.clone();
    knob.apply_to(&mut after);
    after == *c
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
            pfs: None,
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

    pub(crate) fn net(&self) -> &Arc<dyn NetOps> {
        &self.net
    }

    pub fn ledger(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    pub fn host(&self) -> Result<HostView, EngineError> {
        HostView::scan(&self.fs)
    }

    // ---- pools -------------------------------------------------------------------------

    pub fn pool_create(
        &mut self,
        name: &str,
        selectors: Vec<PoolSelector>,
        policy: Policy,
    ) -> Result<PoolStatus, EngineError> {
        validate_pool_name(name)?;
        if selectors.is_empty() {
            return Err(InvalidValue::new("select", "", "at least one --select").into());
        }
        let host = self.host()?;
        for s in &selectors {
            let PoolSelector::Vfs(v) = s else { continue };
            let pf = host.pfs.iter().find(|p| match &v.pf {
                PfRef::Name(n) => p.facts.netdevs.iter().any(|d| d == n),
                PfRef::Pci(a) => p.pci == *a,
            });
            let Some(pf) = pf else {
                return Err(EngineError::Host(HostError::UnknownNic {
                    nic: v.pf.to_string(),
                    known: host
                        .pfs
                        .iter()
                        .map(|p| p.facts.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                }));
            };
            if let Some(max) = v.vfs.as_ref().and_then(|s| s.max())
                && u32::from(max) >= pf.total_vfs
            {
                return Err(InvalidValue::new(
                    "select",
                    s,
                    format!(
                        "VF indices below {} (sriov_totalvfs of {})",
                        pf.total_vfs, pf.facts.name
                    ),
                )
                .into());
            }
        }
        let mine = potential(&selectors, &host);
        if mine.is_empty() {
            return Err(EngineError::PoolSelectsNothing {
                pool: name.to_owned(),
                selectors: selectors
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            });
        }
        let pool = Pool {
            name: name.to_owned(),
            selectors,
            policy,
            created: now(),
        };
        let (pools, leases) = self.ledger.write(true, |tx| {
            let pools = tx.pools()?;
            if pools.iter().any(|p| p.name == name) {
                return Err(EngineError::PoolExists {
                    pool: name.to_owned(),
                });
            }
            for other in &pools {
                let theirs = potential(&other.selectors, &host);
                if let Some(overlap) = describe_overlap(&mine, &theirs, &host) {
                    return Err(EngineError::PoolOverlap {
                        pool: name.to_owned(),
                        other: other.name.clone(),
                        overlap,
                    });
                }
            }
            tx.insert_pool(&pool)?;
            Ok((tx.pools()?, tx.leases()?))
        })?;
        tracing::info!(pool = name, "pool created");
        Ok(pool::status(&pool, &pools, &host, &leases))
    }

    pub fn pool_list(&mut self) -> Result<Vec<PoolStatus>, EngineError> {
        let host = self.host()?;
        let (pools, leases) = self.ledger.read(|tx| Ok((tx.pools()?, tx.leases()?)))?;
        Ok(pools
            .iter()
            .map(|p| pool::status(p, &pools, &host, &leases))
            .collect())
    }

    pub fn pool_show(&mut self, name: &str) -> Result<(PoolStatus, Vec<PoolVf>), EngineError> {
        let host = self.host()?;
        let (pools, leases) = self.ledger.read(|tx| Ok((tx.pools()?, tx.leases()?)))?;
        let pool = find_pool(&pools, name)?;
        Ok((
            pool::status(pool, &pools, &host, &leases),
            pool::pool_vfs(pool, &pools, &host, &leases),
        ))
    }

    pub fn pool_delete(&mut self, name: &str) -> Result<(), EngineError> {
        self.ledger.write(true, |tx| {
            let pools = tx.pools()?;
            find_pool(&pools, name)?;
            let leased = tx.leases()?.iter().filter(|l| l.pool == name).count();
            if leased > 0 {
                return Err(EngineError::PoolLeased {
                    pool: name.to_owned(),
                    leased,
                });
            }
            tx.delete_pool(name)
        })?;
        tracing::info!(pool = name, "pool deleted");
        Ok(())
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

    /// Marks the leases on every VF of PF `pf_pci` stale, for `nic restore --force` and a
    /// forced `nic split` (which destroy the VFs). Returns how many.
    pub fn mark_pf_stale(&mut self, pf_pci: PciAddr) -> Result<usize, EngineError> {
        self.ledger.write(true, |tx| tx.mark_pf_stale(pf_pci))
    }

    /// Checks a request; returns the identity of its netns, if it names one.
    fn validate(&self, req: &AcquireRequest) -> Result<Option<NetnsId>, EngineError> {
        validate_owner(&req.owner)?;
        validate_pool_name(&req.pool)?;
        req.settings.validate()?;
        if let (Some(mtu), Some(DriverChoice::VfioPci)) = (req.settings.mtu, req.driver) {
            return Err(InvalidValue::new(
                "mtu",
                mtu,
                "only for a VF with a netdev (--driver vfio-pci gives none)",
            )
            .into());
        }
        crate::attach::validate_attach_request(req)?;
        if let Some(ns) = &req.netns {
            if req.owner_kind != OwnerKind::Container {
                return Err(InvalidValue::new(
                    "netns",
                    ns.display(),
                    "only with --owner-kind container",
                )
                .into());
            }
            return Ok(Some(self.net.check_netns(ns)?));
        }
        Ok(None)
    }

    /// Leases a VF of `req.pool` to `req.owner` and configures it. The row is committed
    /// (state `acquiring`) before the VF is touched; on any failure everything applied is
    /// rolled back and the row removed.
    pub fn acquire(&mut self, req: &AcquireRequest) -> Result<Lease, EngineError> {
        let ns = self.validate(req)?;
        // The pool's PFs stay as they are until the lease is settled: a split waits, and
        // finds the lease when it checks.
        let mut pf_locks = self.lock_pool_pfs(&req.pool)?;
        let optimistic = match self.pick_then_insert(req, ns, &pf_locks) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(pool = %req.pool, owner = %req.owner, error = %chain(&e), "acquire outside the write lock gave up; picking under it");
                None
            }
        };
        let mut fresh = false;
        let inserted = match optimistic {
            Some(l) => Ok(l),
            None => loop {
                match self.pick_and_insert(req, ns, fresh, &pf_locks) {
                    Ok(Picked::RetryFresh) => fresh = true,
                    // A PF not locked yet (new since the pool's PFs were read): lock it and
                    // pick again, since it may have changed meanwhile.
                    Ok(Picked::Lock(pf)) => {
                        if let Err(e) = pf_locks.add(&self.state, pf, Hold::Shared) {
                            break Err(e);
                        }
                    }
                    Ok(Picked::Busy) => std::thread::sleep(Duration::from_millis(1)),
                    Ok(Picked::Lease(l, lock)) => break Ok((*l, lock)),
                    Err(e) => break Err(e),
                }
            },
        };
        // The VF's in-flight lock, held until the lease is active or rolled back: `gc` takes
        // an `acquiring` lease whose lock is free for one whose process died.
        let (mut lease, _in_flight) = match inserted {
            Ok(l) => l,
            // Another process took the owner between our check and insert: cannot happen
            // under BEGIN IMMEDIATE, but the constraint is the last word.
            Err(e) if is_unique_violation(&e) => {
                return Err(EngineError::OwnerHasLease {
                    owner: req.owner.clone(),
                    vf: req.vf.unwrap_or(PciAddr::new(0, 0, 0, 0)),
                    pool: req.pool.clone(),
                });
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(pool = %lease.pool, vf = %lease.vf_pci, owner = %lease.owner, "lease row written");
        fault::point("acquire:after-row");
        match self.apply_and_attach(&mut lease, req) {
            Ok(netdev) => {
                let id = lease.id;
                // Durable before the caller hears of it: a power cut after this returns
                // keeps the lease (and `host apply` re-applies it).
                self.ledger.write(true, |tx| {
                    tx.set_netdev(id, netdev.as_deref())?;
                    tx.transition(id, &[LeaseState::Acquiring], LeaseState::Active, None)
                })?;
                lease.netdev = netdev;
                lease.state = LeaseState::Active;
                lease.pid = None;
                tracing::info!(pool = %lease.pool, vf = %lease.vf_pci, owner = %lease.owner, "vf leased");
                Ok(lease)
            }
            Err(e) => {
                tracing::debug!(pool = %lease.pool, vf = %lease.vf_pci, owner = %lease.owner, error = %chain(&e), "acquire failed; rolling back");
                let errs = self.restore(&lease);
                let id = lease.id;
                if errs.is_empty() {
                    // Nothing was acknowledged: no need to wait for the disk.
                    self.ledger.write(false, |tx| tx.delete_lease(id))?;
                    Err(e)
                } else {
                    self.ledger.write(false, |tx| {
                        tx.transition(id, &[LeaseState::Acquiring], LeaseState::Releasing, None)
                    })?;
                    Err(EngineError::Rollback {
                        vf: lease.vf_pci,
                        owner: lease.owner.clone(),
                        errors: errs.join("; "),
                        source: Box::new(e),
                    })
                }
            }
        }
    }

    /// An acquire's pick without holding the write lock: the host is read (the pool's PFs,
    /// the VF tried, its configuration) between short read transactions, and the write
    /// transaction only checks that the pool and the owner are as read and that nobody
    /// leased the VF since it was read (its lease count, [`Tx::vf_gen`], is unchanged; a VF
    /// nobody leased is a VF nobody touched), then inserts the row. Reading the host under
    /// the lock made every other acquire and release on the host wait for it.
    ///
    /// The first try takes the policy's first choice, as under the lock, unless other
    /// acquires are under way; then, and after a collision (another process took that VF
    /// meanwhile), a try takes one of the first few at random, so that concurrent acquires
    /// do not race for the same VF.
    ///
    /// `None`: not found this way (no free healthy VF, a named VF that is not free, the pool
    /// or the owner changed, too many collisions): [`Self::pick_and_insert`] then decides
    /// under the lock, and gives the error if there is one.
    fn pick_then_insert(
        &mut self,
        req: &AcquireRequest,
        ns: Option<NetnsId>,
        pf_locks: &PfLocks,
    ) -> Result<Option<(Lease, VfLock)>, EngineError> {
        const TRIES: usize = 4;
        /// How many of the policy's first choices a contended try picks from.
        const SPREAD: usize = 8;
        let me = this_process();
        let net = self.net.clone();
        let fs = self.fs.clone();
        let mut avoid: Vec<PciAddr> = Vec::new();
        for attempt in 0..TRIES {
            let (pools, leases, counts) = self
                .ledger
                .read(|tx| Ok((tx.pools()?, tx.leases()?, tx.vf_gens()?)))?;
            let pool = find_pool(&pools, &req.pool)?.clone();
            // Other acquires under way: they are likely after the same first choice. (A row
            // left by a crashed acquire counts too until `gc`: that only spreads the picks.)
            let contended = leases.iter().any(|l| l.state == LeaseState::Acquiring);
            if leases.iter().any(|l| l.owner == req.owner) {
                return Ok(None);
            }
            let (host, _) = pool_pfs(&mut self.pfs, &fs, &pool.selectors, false)?;
            let slot = match req.vf {
                Some(vf) => {
                    let Ok((pf, index)) = locate_vf(&fs, host, vf, &pool.name) else {
                        return Ok(None);
                    };
                    if owner_of(&pools, &pf.facts, index) != Some(pool.name.as_str())
                        || leases
                            .iter()
                            .any(|l| l.pf_pci == pf.pci && l.vf_index == index)
                    {
                        return Ok(None);
                    }
                    match pf.probe(&fs, index)? {
                        Some(slot) if slot.health.is_healthy() => slot,
                        _ => return Ok(None),
                    }
                }
                None => {
                    let mut free = ranked_free(host, &pools, &pool, &leases, &avoid, req.numa);
                    if (attempt > 0 || contended) && !free.is_empty() {
                        let k = free.len().min(SPREAD);
                        free.rotate_left(spread_pick(k, attempt));
                    }
                    match first_healthy(&fs, host, &free)? {
                        Some(slot) => slot,
                        None => return Ok(None),
                    }
                }
            };
            if !pf_locks.holds(slot.pf_pci) {
                return Ok(None);
            }
            // The VF's lease count while it was free, before it is read: if it is the same at
            // the insert, what was read is the VF's own configuration. Contended, it is read
            // again now, which also catches a VF taken meanwhile before it is read in vain.
            let leases_had = if contended || attempt > 0 {
                let (free_now, n) = self
                    .ledger
                    .read(|tx| Ok((tx.lease_by_vf(slot.pci)?.is_none(), tx.vf_gen(slot.pci)?)))?;
                if !free_now {
                    avoid.push(slot.pci);
                    continue;
                }
                n
            } else {
                counts.get(&slot.pci).copied().unwrap_or(0)
            };
            // Held from before the row exists: a step under way on this VF has it.
            let Some(lock) = self.ledger.lock_vf(slot.pci)? else {
                avoid.push(slot.pci);
                continue;
            };
            if let Some(mtu) = req.settings.mtu {
                check_mtu(&*net, &slot, mtu, req.driver)?;
            }
            let original = snapshot(&*net, &fs, &slot)?;
            let mut lease = new_lease(req, ns, &pool.name, &slot, original, me);
            let outcome = self.ledger.write(false, |tx| {
                let pools_now = tx.pools()?;
                if pools_now != pools || tx.lease_by_owner(&req.owner)?.is_some() {
                    return Ok(Err(false));
                }
                if tx.lease_by_vf(slot.pci)?.is_some() || tx.vf_gen(slot.pci)? != leases_had {
                    return Ok(Err(true));
                }
                Ok(Ok(tx.insert_lease(&lease)?))
            })?;
            match outcome {
                Ok(id) => {
                    lease.id = id;
                    return Ok(Some((lease, lock)));
                }
                // Another process leased this VF since it was read.
                Err(true) => avoid.push(slot.pci),
                // The pools or the owner changed: decide under the lock.
                Err(false) => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The write transaction of an acquire: checks the pool and the owner, reads the PFs
    /// ([`pool_pfs`]), picks a free healthy VF (reading only the VFs it tries), snapshots it
    /// and inserts the lease row (state `acquiring`). When the set of PFs was kept from
    /// earlier, a pool with no free VF in it is tried again on a fresh read (`fresh`)
    /// before it is called exhausted.
    fn pick_and_insert(
        &mut self,
        req: &AcquireRequest,
        ns: Option<NetnsId>,
        fresh: bool,
        pf_locks: &PfLocks,
    ) -> Result<Picked, EngineError> {
        let me = this_process();
        let net = self.net.clone();
        let fs = self.fs.clone();
        let cache = &mut self.pfs;
        let locks = self.ledger.locks_dir();
        // Not synced: the row must survive this process (a crash leaves it for `gc`), which
        // a commit does; a power cut resets the VF as well, so the row need not outlive it.
        self.ledger.write(false, |tx| {
            let pools = tx.pools()?;
            let pool = find_pool(&pools, &req.pool)?;
            // Only PFs are read here (the pool's again); the VF picked is read below.
            let (host, kept) = pool_pfs(cache, &fs, &pool.selectors, fresh)?;
            if let Some(l) = tx.lease_by_owner(&req.owner)? {
                return Err(EngineError::OwnerHasLease {
                    owner: req.owner.clone(),
                    vf: l.vf_pci,
                    pool: l.pool,
                });
            }
            let leases = tx.leases()?;
            let leased: HashMap<(PciAddr, u16), &Lease> =
                leases.iter().map(|l| ((l.pf_pci, l.vf_index), l)).collect();
            let slot = match req.vf {
                Some(vf) => {
                    let (pf, index) = match locate_vf(&fs, host, vf, &pool.name) {
                        Ok(found) => found,
                        // A VF made since the PFs were last read in full.
                        Err(_) if kept => return Ok(Picked::RetryFresh),
                        Err(e) => return Err(e),
                    };
                    if owner_of(&pools, &pf.facts, index) != Some(pool.name.as_str()) {
                        return Err(EngineError::VfNotInPool {
                            vf,
                            pool: pool.name.clone(),
                        });
                    }
                    if let Some(l) = leased.get(&(pf.pci, index)) {
                        return Err(EngineError::VfLeased {
                            vf,
                            owner: l.owner.clone(),
                        });
                    }
                    let slot = pf.probe(&fs, index)?.ok_or(EngineError::UnknownVf { vf })?;
                    if let crate::hostview::Health::Unhealthy { reason } = &slot.health {
                        return Err(EngineError::VfUnhealthy {
                            vf,
                            reason: reason.clone(),
                        });
                    }
                    match lock_vf(&locks, slot.pci)? {
                        Some(lock) => (slot, lock),
                        None => return Ok(Picked::Busy),
                    }
                }
                None => {
                    let mut busy = Vec::new();
                    loop {
                        let free = ranked_free(host, &pools, pool, &leases, &busy, req.numa);
                        match first_healthy(&fs, host, &free)? {
                            Some(s) => match lock_vf(&locks, s.pci)? {
                                Some(lock) => break (s, lock),
                                None => busy.push(s.pci),
                            },
                            None if kept => return Ok(Picked::RetryFresh),
                            None if !busy.is_empty() => return Ok(Picked::Busy),
                            None => {
                                // The error counts every VF of the pool: read them all.
                                let full = HostView::scan_where(&fs, &|facts, total| {
                                    let total = u16::try_from(total).unwrap_or(u16::MAX);
                                    (0..total).any(|i| {
                                        crate::selector::selects(&pool.selectors, facts, i)
                                    })
                                })?;
                                let st = pool::status(pool, &pools, &full, &leases);
                                return Err(EngineError::Exhausted {
                                    pool: pool.name.clone(),
                                    total: st.total,
                                    leased: st.leased,
                                    unhealthy: st.unhealthy_text(),
                                });
                            }
                        }
                    }
                }
            };
            let (slot, lock) = slot;
            if !pf_locks.holds(slot.pf_pci) {
                return Ok(Picked::Lock(slot.pf_pci));
            }
            if let Some(mtu) = req.settings.mtu {
                check_mtu(&*net, &slot, mtu, req.driver)?;
            }
            let original = snapshot(&*net, &fs, &slot)?;
            let mut lease = new_lease(req, ns, &pool.name, &slot, original, me);
            lease.id = tx.insert_lease(&lease)?;
            Ok(Picked::Lease(Box::new(lease), lock))
        })
    }

    /// Applies a lease to its VF: PF-side knobs, then the driver, then the VF netdev.
    /// Returns the VF's netdev afterwards.
    pub(crate) fn apply(&self, lease: &Lease) -> Result<Option<String>, EngineError> {
        let s = &lease.applied.settings;
        let pf_driver = self.pf_driver(lease.pf_pci);
        for (i, knob) in VfKnob::plan(s, Some(&lease.original.vf)).iter().enumerate() {
            self.net
                .set_vf_knob(&lease.pf, lease.vf_index, knob)
                .map_err(|source| EngineError::SetVf {
                    setting: knob.setting(),
                    driver: pf_driver.clone().unwrap_or_else(|| "(none)".into()),
                    vf: lease.vf_pci,
                    pool: lease.pool.clone(),
                    owner: lease.owner.clone(),
                    source: Box::new(source),
                })?;
            if i == 0 {
                fault::point("acquire:mid-pf");
            }
        }
        fault::point("acquire:after-pf");
        if let Some(choice) = lease.applied.driver {
            let target = match choice {
                DriverChoice::VfioPci => "vfio-pci".to_owned(),
                DriverChoice::Netdevice => match &lease.original.driver {
                    Some(d) if !NON_NET_DRIVERS.contains(&d.as_str()) => d.clone(),
                    _ => {
                        let pfd = pf_driver.clone().unwrap_or_default();
                        vf_driver_for_pf(&pfd)
                            .ok_or(EngineError::NoVfDriver {
                                vf: lease.vf_pci,
                                pf_driver: pfd,
                            })?
                            .to_owned()
                    }
                },
            };
            self.bind(lease.vf_pci, Some(&target))?;
        }
        fault::point("acquire:after-driver");
        let mut netdev = self.vf_netdev(lease.vf_pci)?;
        if let Some(mac) = s.mac
            && netdev.is_some()
        {
            netdev = self.ensure_vf_mac(lease.vf_pci, mac, false)?;
        }
        match &netdev {
            Some(nd) => {
                let set_err = |setting| {
                    let nd = nd.clone();
                    move |source: NetlinkError| EngineError::SetNetdev {
                        setting,
                        netdev: nd,
                        vf: lease.vf_pci,
                        source: Box::new(source),
                    }
                };
                if let Some(mtu) = s.mtu {
                    self.net.set_mtu(nd, mtu).map_err(set_err("mtu"))?;
                }
            }
            None if s.mtu.is_some() => {
                return Err(InvalidValue::new(
                    "mtu",
                    s.mtu.unwrap_or_default(),
                    format!("only for a VF with a netdev ({} has none)", lease.vf_pci),
                )
                .into());
            }
            None => {}
        }
        fault::point("acquire:after-netdev");
        Ok(netdev)
    }

    /// Puts back what `lease` changed, PF side first, then the VF netdev, then the driver.
    /// Idempotent: each setting is compared with what the VF has now, so a restore that was
    /// interrupted can simply run again. Keeps going on errors and returns them all.
    fn restore(&self, lease: &Lease) -> Vec<String> {
        let mut errs = Vec::new();
        let dev = self.fs.path(format!("bus/pci/devices/{}", lease.vf_pci));
        if !self.fs.exists(&dev) {
            return errs;
        }
        // First the netdev back from the container's namespace, under its host name.
        errs.extend(self.detach(lease));
        let s = &lease.applied.settings;
        let orig = &lease.original;
        // Whether the PF-side MAC was cleared: the VF must then announce its own MAC again.
        let mut mac_cleared = false;
        if !s.pf_side_is_empty() {
            match self.net.vf_configs(&lease.pf) {
                Ok(list) => match list.into_iter().find(|(i, _)| *i == lease.vf_index) {
                    Some((_, cur)) => {
                        let mut first = true;
                        for knob in VfKnob::plan(s, Some(&orig.vf)) {
                            let Some(undo) = knob.undo(&orig.vf) else {
                                continue;
                            };
                            // A PF-side MAC that was zero, or the one the VF's own driver had
                            // chosen, was not set by the PF: put back "no MAC set by the PF"
                            // (00:00:00:00:00:00), which lets the VF own its MAC again (igb,
                            // ixgbe); setting the old value would pin it as an admin MAC.
                            let undo = match undo {
                                // Still the original: nothing to undo.
                                VfKnob::Mac(o) if cur.mac == o => continue,
                                VfKnob::Mac(o) if o.is_zero() || Some(o) == orig.mac => {
                                    mac_cleared = true;
                                    VfKnob::Mac(MacAddr::ZERO)
                                }
                                other => other,
                            };
                            if knob_holds(&undo, &cur) {
                                continue;
                            }
                            let r = self.net.set_vf_knob(&lease.pf, lease.vf_index, &undo);
                            let r = match (r, &undo, knob.undo(&orig.vf)) {
                                // A driver that refuses the zero MAC gets the old value back.
                                (Err(_), VfKnob::Mac(z), Some(old))
                                    if z.is_zero() && old != undo =>
                                {
                                    self.net.set_vf_knob(&lease.pf, lease.vf_index, &old)
                                }
                                (r, _, _) => r,
                            };
                            if let Err(e) = r {
                                errs.push(chain(&e));
                            }
                            if first {
                                fault::point("release:mid-pf");
                                first = false;
                            }
                        }
                    }
                    None => errs.push(format!(
                        "{} vf {} is not reported by the PF",
                        lease.pf, lease.vf_index
                    )),
                },
                Err(e) => errs.push(chain(&e)),
            }
        }
        fault::point("release:after-pf");
        // The VF's netdev now (a driver reload during the lease may have renamed it).
        let now_netdev = self.vf_netdev(lease.vf_pci).ok().flatten();
        if orig.netdev.is_some()
            && (s.mtu.is_some() || s.mac.is_some())
            && let Some(nd) = &now_netdev
        {
            match self.net.link(nd) {
                Ok(link) => {
                    if s.mtu.is_some()
                        && let Some(mtu) = orig.mtu
                        && link.mtu != mtu
                        && let Err(e) = self.net.set_mtu(nd, mtu)
                    {
                        errs.push(chain(&e));
                    }
                    if s.mac.is_some()
                        && let Some(mac) = orig.mac
                        && !mac.is_zero()
                        && (link.mac != Some(mac) || mac_cleared)
                        && let Err(e) = self.ensure_vf_mac(lease.vf_pci, mac, mac_cleared)
                    {
                        errs.push(chain(&e));
                    }
                }
                Err(e) => errs.push(chain(&e)),
            }
        }
        fault::point("release:after-netdev");
        if lease.applied.driver.is_some() {
            match self.fs.link_name(&dev.join("driver")) {
                Ok(cur) if cur == orig.driver => {}
                Ok(_) => {
                    if let Err(e) = self.bind(lease.vf_pci, orig.driver.as_deref()) {
                        errs.push(chain(&e));
                    }
                }
                Err(e) => errs.push(chain(&e)),
            }
            let over = dev.join("driver_override");
            let cur = self.fs.read_opt(&over).ok().flatten();
            let cur = cur.filter(|c| c != "(null)" && !c.is_empty());
            if cur != orig.driver_override {
                let v = orig.driver_override.clone().unwrap_or_else(|| "\n".into());
                if let Err(e) = self.fs.write(&over, &v) {
                    errs.push(format!("cannot write {}: {e}", over.display()));
                }
            }
        }
        fault::point("release:after-driver");
        errs
    }

    /// Releases a lease: marks it `releasing`, restores the VF, removes the row.
    pub fn release(&mut self, target: &ReleaseTarget) -> Result<Lease, EngineError> {
        let me = this_process();
        // The VF stays as it is while it is restored: a split of its PF waits.
        let pf = self.ledger.read(|tx| {
            Ok(match target {
                ReleaseTarget::Owner(o) => tx.lease_by_owner(o)?,
                ReleaseTarget::Vf(v) => tx.lease_by_vf(*v)?,
            }
            .map(|l| l.pf_pci))
        })?;
        let _lock = self.lock_pfs(pf, Hold::Shared)?;
        let locks = self.ledger.locks_dir();
        let (lease, _in_flight) = self.ledger.write(false, |tx| {
            let l = match target {
                ReleaseTarget::Owner(o) => {
                    validate_owner(o)?;
                    tx.lease_by_owner(o)?
                        .ok_or_else(|| EngineError::UnknownOwner { owner: o.clone() })?
                }
                ReleaseTarget::Vf(v) => tx
                    .lease_by_vf(*v)?
                    .ok_or(EngineError::VfNotLeased { vf: *v })?,
            };
            // Its VF's in-flight lock held by another: a step on it is under way. Free, an
            // `acquiring` or `releasing` lease was abandoned, and this release takes it over.
            let Some(lock) = lock_vf(&locks, l.vf_pci)? else {
                return Err(EngineError::LeaseBusy {
                    owner: l.owner.clone(),
                    vf: l.vf_pci,
                    state: l.state.as_str(),
                    pid: l.pid.map_or(0, |p| p.0),
                });
            };
            if l.state != LeaseState::Stale {
                tx.transition(l.id, &[l.state], LeaseState::Releasing, Some(me))?;
            }
            Ok((l, lock))
        })?;
        fault::point("release:after-mark");
        self.finish_release(&lease)?;
        tracing::info!(pool = %lease.pool, vf = %lease.vf_pci, owner = %lease.owner, "vf released");
        Ok(lease)
    }

    fn finish_release(&mut self, lease: &Lease) -> Result<(), EngineError> {
        let errs = if lease.state == LeaseState::Stale {
            Vec::new()
        } else {
            self.restore(lease)
        };
        let id = lease.id;
        if !errs.is_empty() {
            self.ledger.write(false, |tx| {
                tx.transition(id, &[LeaseState::Releasing], LeaseState::Releasing, None)
            })?;
            return Err(EngineError::Restore {
                vf: lease.vf_pci,
                owner: lease.owner.clone(),
                errors: errs.join("; "),
            });
        }
        self.ledger.write(true, |tx| tx.delete_lease(id))
    }

    /// Finishes what crashed processes left (rolls back interrupted acquires, completes
    /// interrupted releases), releases leases whose owner is gone, and removes leases on
    /// VFs that no longer exist.
    pub fn gc(&mut self) -> Result<GcReport, EngineError> {
        let host = self.host()?;
        let leases = self.ledger.read(|tx| tx.leases())?;
        let mut report = GcReport::default();
        for l in leases {
            // A step under way holds the VF's in-flight lock; gc holds it while it repairs.
            // An `acquiring` or `releasing` lease whose lock is free was abandoned.
            let Some(_in_flight) = self.ledger.lock_vf(l.vf_pci)? else {
                report.in_progress += 1;
                continue;
            };
            let (action, reason): (&'static str, String) = {
                match l.state {
                    LeaseState::Acquiring => ("rolled-back", "the acquiring process died".into()),
                    LeaseState::Releasing => {
                        ("finished-release", "the releasing process died".into())
                    }
                    LeaseState::Stale => ("removed-stale", "its VF was destroyed".into()),
                    LeaseState::Active if !host.vfs.contains_key(&l.vf_pci) => {
                        ("removed-stale", "its VF no longer exists".into())
                    }
                    LeaseState::Active if self.vf_recreated(&l) => (
                        "removed-stale",
                        "its VF was destroyed and created again outside vfpool (it has the kernel's defaults, not this lease's configuration)".into(),
                    ),
                    LeaseState::Active => match owner_status(&l, &*self.vms) {
                        OwnerStatus::Gone => (
                            "released-owner-gone",
                            match (&l.netns, netns_now(&l)) {
                                (Some(ns), Some(NetnsNow::Replaced)) => format!(
                                    "netns {ns} names another namespace now (deleted and created again)"
                                ),
                                (Some(ns), _) => format!("netns {ns} is gone"),
                                _ => format!("{} {} is gone", l.owner_kind.as_str(), l.owner),
                            },
                        ),
                        _ => {
                            report.kept += 1;
                            continue;
                        }
                    },
                }
            };
            let stale = action == "removed-stale";
            let me = this_process();
            let claimed = self.ledger.write(stale, |tx| {
                let Some(cur) = tx.lease_by_id(l.id)? else {
                    return Ok(None);
                };
                if cur.state != l.state || cur.pid != l.pid {
                    return Ok(None);
                }
                if stale {
                    tx.delete_lease(cur.id)?;
                } else {
                    tx.transition(cur.id, &[cur.state], LeaseState::Releasing, Some(me))?;
                }
                Ok(Some(cur))
            })?;
            let Some(cur) = claimed else { continue };
            if !stale && let Err(e) = self.finish_release(&cur) {
                report.errors.push(chain(&e));
                continue;
            }
            tracing::info!(pool = %cur.pool, vf = %cur.vf_pci, owner = %cur.owner, action, reason = %reason, "gc");
            report.actions.push(GcAction {
                owner: cur.owner,
                vf_pci: cur.vf_pci,
                pool: cur.pool,
                action,
                reason,
            });
        }
        Ok(report)
    }

    /// Puts every active lease's configuration back on its VF: what `host apply` does after
    /// a reboot, when the VFs were re-created with the kernel's defaults. A lease whose VF
    /// does not exist any more is marked stale (`gc` removes it). While a lease is being
    /// re-applied it is `acquiring` under this process: a crash leaves it for `gc` to roll
    /// back, never half-configured and active. Keeps going on errors.
    pub fn reapply(&mut self) -> Result<ReapplyReport, EngineError> {
        let host = self.host()?;
        let leases = self.ledger.read(|tx| tx.leases())?;
        let mut report = ReapplyReport::default();
        for l in leases.into_iter().filter(|l| l.state == LeaseState::Active) {
            if !host.vfs.contains_key(&l.vf_pci) {
                let id = l.id;
                if self.ledger.write(false, |tx| {
                    tx.transition(id, &[LeaseState::Active], LeaseState::Stale, None)
                })? {
                    report.actions.push(ReapplyAction {
                        owner: l.owner,
                        vf_pci: l.vf_pci,
                        pool: l.pool,
                        action: "stale",
                        error: None,
                    });
                }
                continue;
            }
            let me = this_process();
            let id = l.id;
            let Some(_in_flight) = self.ledger.lock_vf(l.vf_pci)? else {
                continue;
            };
            if !self.ledger.write(false, |tx| {
                tx.transition(id, &[LeaseState::Active], LeaseState::Acquiring, Some(me))
            })? {
                continue;
            }
            let result = self.apply(&l);
            let (action, error, netdev) = match result {
                Ok(netdev) => ("reapplied", None, netdev),
                Err(e) => (
                    "failed",
                    Some(chain(&e)),
                    self.vf_netdev(l.vf_pci).ok().flatten(),
                ),
            };
            // The lease now lives on this instance of the VF (a reboot made a new one).
            let mut original = l.original.clone();
            original.instance = self
                .vf_instance(l.vf_pci)
                .ok()
                .flatten()
                .or(original.instance);
            self.ledger.write(false, |tx| {
                tx.set_netdev(id, netdev.as_deref())?;
                tx.set_original(id, &original)?;
                tx.transition(id, &[LeaseState::Acquiring], LeaseState::Active, None)
            })?;
            tracing::info!(pool = %l.pool, vf = %l.vf_pci, owner = %l.owner, action, "reapply");
            report.actions.push(ReapplyAction {
                owner: l.owner,
                vf_pci: l.vf_pci,
                pool: l.pool,
                action,
                error,
            });
        }
        // Every lease now names the instance of its VF that it lives on: a power cut must not
        // bring back the old one, or `gc` would take the lease for one made outside vfpool.
        if !report.actions.is_empty() {
            self.ledger.sync()?;
        }
        Ok(report)
    }

    /// Takes the shared locks of the PFs that pool `name` selects (as the PF cache knows
    /// them; an acquire that picks a VF of another PF locks that one too).
    fn lock_pool_pfs(&mut self, name: &str) -> Result<PfLocks, EngineError> {
        let pools = self.ledger.read(|tx| tx.pools())?;
        let pool = find_pool(&pools, name)?;
        let (host, _) = pool_pfs(&mut self.pfs, &self.fs, &pool.selectors, false)?;
        let pfs: Vec<PciAddr> = host
            .pfs
            .iter()
            .filter(|p| {
                let n = u16::try_from(p.total_vfs).unwrap_or(u16::MAX);
                (0..n).any(|i| crate::selector::selects(&pool.selectors, &p.facts, i))
            })
            .map(|p| p.pci)
            .collect();
        self.lock_pfs(pfs, Hold::Shared)
    }

    // ---- host helpers ------------------------------------------------------------------

    fn pf_driver(&self, pf: PciAddr) -> Option<String> {
        self.fs
            .link_name(&self.fs.path(format!("bus/pci/devices/{pf}/driver")))
            .ok()
            .flatten()
    }

    fn vf_instance(&self, vf: PciAddr) -> Result<Option<u64>, EngineError> {
        Ok(self
            .fs
            .instance(&self.fs.path(format!("bus/pci/devices/{vf}")))?)
    }

    /// Whether lease `l`'s VF is another instance than the one leased (destroyed and
    /// created again since, outside vfpool). Unknown (old leases): no.
    fn vf_recreated(&self, l: &Lease) -> bool {
        match (l.original.instance, self.vf_instance(l.vf_pci)) {
            (Some(then), Ok(Some(now))) => then != now,
            _ => false,
        }
    }

    pub(crate) fn vf_netdev(&self, vf: PciAddr) -> Result<Option<String>, EngineError> {
        Ok(self
            .fs
            .list(&self.fs.path(format!("bus/pci/devices/{vf}/net")))?
            .into_iter()
            .next())
    }

    /// Makes the VF's netdev carry `mac`. The VF asks its PF; a driver that does not let an
    /// untrusted VF change a MAC the PF set (igb, ixgbe: "VF attempted to override
    /// administratively set MAC address") is answered by reloading the VF driver, which
    /// comes up with the PF's MAC. Returns the netdev (its name may change on reload).
    /// With `force`, the MAC is set even when the netdev shows it already (after the PF's
    /// MAC for the VF was cleared, the VF must tell the PF its MAC again).
    fn ensure_vf_mac(
        &self,
        vf: PciAddr,
        mac: MacAddr,
        force: bool,
    ) -> Result<Option<String>, EngineError> {
        let Some(nd) = self.vf_netdev(vf)? else {
            return Ok(None);
        };
        if !force && self.net.link(&nd).ok().and_then(|l| l.mac) == Some(mac) {
            return Ok(Some(nd));
        }
        let err = match self.net.set_mac(&nd, mac) {
            Ok(()) => return Ok(Some(nd)),
            Err(e) => e,
        };
        tracing::debug!(vf = %vf, netdev = %nd, error = %err, "the VF may not set its MAC; reloading its driver");
        self.rebind(vf)?;
        let after = self.vf_netdev(vf)?;
        if let Some(n) = &after
            && self.net.link(n).ok().and_then(|l| l.mac) == Some(mac)
        {
            return Ok(after);
        }
        Err(EngineError::SetNetdev {
            setting: "mac",
            netdev: nd,
            vf,
            source: Box::new(err),
        })
    }

    /// Unbinds and re-probes the VF's current driver (through `driver_override`, which
    /// works with autoprobe off), leaving `driver_override` as it was.
    fn rebind(&self, vf: PciAddr) -> Result<(), EngineError> {
        let dev = self.fs.path(format!("bus/pci/devices/{vf}"));
        let Some(cur) = self.fs.link_name(&dev.join("driver"))? else {
            return Ok(());
        };
        let over = dev.join("driver_override");
        let prev = self
            .fs
            .read_opt(&over)?
            .filter(|v| v != "(null)" && !v.is_empty());
        let w = |path: PathBuf, value: &str| {
            self.fs
                .write(&path, value)
                .map_err(|source| EngineError::BindDriver {
                    vf,
                    driver: cur.clone(),
                    path,
                    source,
                })
        };
        w(over.clone(), &cur)?;
        w(
            self.fs.path(format!("bus/pci/drivers/{cur}/unbind")),
            &vf.to_string(),
        )?;
        let probed = w(self.fs.path("bus/pci/drivers_probe"), &vf.to_string());
        w(over, prev.as_deref().unwrap_or("\n"))?;
        probed?;
        let now = self.fs.link_name(&dev.join("driver"))?;
        if now.as_deref() != Some(cur.as_str()) {
            return Err(EngineError::DriverNotBound {
                vf,
                driver: cur,
                found: now.unwrap_or_else(|| "none".into()),
            });
        }
        Ok(())
    }

    /// Binds `vf` to `target` (or leaves it unbound for `None`) the way that works with
    /// autoprobe off: `driver_override`, unbind, `drivers_probe`, then check the `driver`
    /// link, since a failed probe still answers success.
    fn bind(&self, vf: PciAddr, target: Option<&str>) -> Result<(), EngineError> {
        let dev = self.fs.path(format!("bus/pci/devices/{vf}"));
        let cur = self.fs.link_name(&dev.join("driver"))?;
        if cur.as_deref() == target {
            return Ok(());
        }
        let driver = target.unwrap_or("(none)").to_owned();
        let w = |path: PathBuf, value: &str| {
            self.fs
                .write(&path, value)
                .map_err(|source| EngineError::BindDriver {
                    vf,
                    driver: driver.clone(),
                    path,
                    source,
                })
        };
        w(dev.join("driver_override"), target.unwrap_or("\n"))?;
        if let Some(c) = &cur {
            w(
                self.fs.path(format!("bus/pci/drivers/{c}/unbind")),
                &vf.to_string(),
            )?;
        }
        if let Some(t) = target {
            w(self.fs.path("bus/pci/drivers_probe"), &vf.to_string())?;
            let now = self.fs.link_name(&dev.join("driver"))?;
            if now.as_deref() != Some(t) {
                return Err(EngineError::DriverNotBound {
                    vf,
                    driver,
                    found: now.unwrap_or_else(|| "none".into()),
                });
            }
        }
        tracing::debug!(vf = %vf, driver = target.unwrap_or("none"), "driver bound");
        Ok(())
    }
}

/// The host's PFs for an acquire from a pool with `selectors`. A pool whose selectors name
/// PFs needs only those; another needs every SR-IOV PF of the host. PFs read before are kept
/// in `cache` for up to [`PF_SET_MAX_AGE`] (unless `fresh`) and the pool's are read again
/// (VF count, driver, link state: what a split, a rebind or a cable changes); otherwise the
/// PFs the pool needs are read. Returns the view and whether it was kept.
fn pool_pfs<'c>(
    cache: &'c mut Option<PfCache>,
    fs: &Sysfs,
    selectors: &[PoolSelector],
    fresh: bool,
) -> Result<(&'c HostView, bool), EngineError> {
    let named = crate::selector::named_pfs(selectors);
    let mut kept = !fresh
        && cache.as_ref().is_some_and(|c| {
            c.at.elapsed() < PF_SET_MAX_AGE
                && match (&c.named, &named) {
                    (None, _) => true,
                    (Some(have), Some(refs)) => refs.iter().all(|r| {
                        c.view
                            .pfs
                            .iter()
                            .any(|p| have.contains(&p.pci) && pf_is(&p.facts, r))
                    }),
                    (Some(_), None) => false,
                }
        });
    if kept && let Some(c) = cache.as_mut() {
        let mine: Vec<PciAddr> = c
            .view
            .pfs
            .iter()
            .filter(|p| {
                let n = u16::try_from(p.total_vfs).unwrap_or(u16::MAX);
                (0..n).any(|i| crate::selector::selects(selectors, &p.facts, i))
            })
            .map(|p| p.pci)
            .collect();
        for pci in mine {
            kept &= c.view.refresh_pf(fs, pci)?;
        }
    }
    let entry = match cache.take() {
        Some(c) if kept => c,
        _ => {
            let view = match &named {
                Some(refs) => HostView::scan_named_pfs(fs, refs)?,
                None => HostView::scan_pfs(fs)?,
            };
            let named = named.map(|_| view.pfs.iter().map(|p| p.pci).collect());
            PfCache {
                view,
                at: Instant::now(),
                named,
            }
        }
    };
    Ok((&cache.insert(entry).view, kept))
}

/// The free VFs of `pool` in `host` (not leased, not in `avoid`), in the order its policy
/// prefers them.
fn ranked_free(
    host: &HostView,
    pools: &[Pool],
    pool: &Pool,
    leases: &[Lease],
    avoid: &[PciAddr],
    numa: Option<u32>,
) -> Vec<Candidate> {
    let leased: std::collections::HashSet<(PciAddr, u16)> =
        leases.iter().map(|l| (l.pf_pci, l.vf_index)).collect();
    let mut free: Vec<Candidate> = Vec::new();
    for pf in &host.pfs {
        for (index, addr) in &pf.nic.vf_slots {
            if !leased.contains(&(pf.pci, *index))
                && !addr.is_some_and(|a| avoid.contains(&a))
                && owner_of(pools, &pf.facts, *index) == Some(pool.name.as_str())
            {
                free.push(Candidate {
                    pf_pci: pf.pci,
                    index: *index,
                    numa: pf.facts.numa,
                });
            }
        }
    }
    let mut load: HashMap<PciAddr, usize> = HashMap::new();
    for l in leases.iter().filter(|l| l.state != LeaseState::Stale) {
        *load.entry(l.pf_pci).or_default() += 1;
    }
    rank(pool.policy, &mut free, &load, numa);
    free
}

/// The first of `free` that exists and is healthy, read from sysfs (only those tried).
fn first_healthy(
    fs: &Sysfs,
    host: &HostView,
    free: &[Candidate],
) -> Result<Option<VfSlot>, EngineError> {
    for c in free {
        let Some(pf) = host.pfs.iter().find(|p| p.pci == c.pf_pci) else {
            continue;
        };
        if let Some(slot) = pf.probe(fs, c.index)?
            && slot.health.is_healthy()
        {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// The row of a new lease of `slot` for `req`, `acquiring` under process `me`.
fn new_lease(
    req: &AcquireRequest,
    netns_id: Option<NetnsId>,
    pool: &str,
    slot: &VfSlot,
    original: Original,
    me: (i64, u64),
) -> Lease {
    Lease {
        id: 0,
        owner: req.owner.clone(),
        owner_kind: req.owner_kind,
        pool: pool.to_owned(),
        vf_pci: slot.pci,
        pf: slot.pf.name.clone(),
        pf_pci: slot.pf_pci,
        vf_index: slot.index,
        netdev: slot.netdev.clone(),
        netns: req.netns.as_ref().map(|p| p.display().to_string()),
        netns_id,
        ifname: None,
        created: now(),
        state: LeaseState::Acquiring,
        applied: Applied {
            settings: req.settings.clone(),
            driver: req.driver,
        },
        original,
        pid: Some(me),
    }
}

/// Which of the first `k` candidates try `attempt` of a contended acquire starts
/// from: spread by process and time, so that concurrent acquires part ways.
fn spread_pick(k: usize, attempt: usize) -> usize {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = u64::from(std::process::id())
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(nanos))
        .wrapping_add(attempt as u64);
    // k > 0; the remainder fits in usize.
    usize::try_from(seed % k as u64).unwrap_or(0)
}

/// Whether the PF with `facts` is the one `r` names.
fn pf_is(facts: &crate::selector::PfFacts, r: &PfRef) -> bool {
    match r {
        PfRef::Name(n) => facts.name == *n || facts.netdevs.iter().any(|d| d == n),
        PfRef::Pci(p) => facts.pci == Some(*p),
    }
}

/// The PF and VF index of VF `vf`: from the PFs' predicted VF addresses, or else the VF's
/// `physfn` link and its PF's `virtfnN` links. Unknown VF when it is not a VF; not in `pool`
/// when its PF is not in `host` (which holds every PF the pool can select from).
fn locate_vf<'h>(
    fs: &Sysfs,
    host: &'h HostView,
    vf: PciAddr,
    pool: &str,
) -> Result<(&'h PfSlot, u16), EngineError> {
    for pf in &host.pfs {
        if let Some((i, _)) = pf.nic.vf_slots.iter().find(|(_, a)| *a == Some(vf)) {
            return Ok((pf, *i));
        }
    }
    let physfn = fs.path(format!("bus/pci/devices/{vf}/physfn"));
    let pf_pci = fs
        .link_name(&physfn)?
        .and_then(|t| t.parse::<PciAddr>().ok());
    let Some(pf_pci) = pf_pci else {
        return Err(EngineError::UnknownVf { vf });
    };
    // The view holds every PF the pool can select from: a VF of another is not the pool's.
    let Some(pf) = host.pfs.iter().find(|s| s.pci == pf_pci) else {
        return Err(EngineError::VfNotInPool {
            vf,
            pool: pool.to_owned(),
        });
    };
    for (i, _) in &pf.nic.vf_slots {
        let link = pf.nic.dir.join(format!("virtfn{i}"));
        if fs.link_name(&link)?.and_then(|t| t.parse::<PciAddr>().ok()) == Some(vf) {
            return Ok((pf, *i));
        }
    }
    Err(EngineError::UnknownVf { vf })
}

fn find_pool<'a>(pools: &'a [Pool], name: &str) -> Result<&'a Pool, EngineError> {
    pools
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| EngineError::UnknownPool {
            pool: name.to_owned(),
            known: if pools.is_empty() {
                "none".to_owned()
            } else {
                pools
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
}

/// Checks an MTU against the PF's range and that the VF will have a netdev to set it on.
fn check_mtu(
    net: &dyn NetOps,
    slot: &VfSlot,
    mtu: u32,
    driver: Option<DriverChoice>,
) -> Result<(), EngineError> {
    let link = net
        .link(&slot.pf.name)
        .map_err(|source| EngineError::ReadNetdev {
            netdev: slot.pf.name.clone(),
            source: Box::new(source),
        })?;
    let (min, max) = (link.min_mtu.unwrap_or(68), link.max_mtu.unwrap_or(u32::MAX));
    if !(min..=max).contains(&mtu) {
        return Err(InvalidValue::new(
            "mtu",
            mtu,
            format!("{min}..={max} (the MTU range of {})", slot.pf.name),
        )
        .into());
    }
    let will_have_netdev = match driver {
        Some(DriverChoice::Netdevice) => true,
        Some(DriverChoice::VfioPci) => false,
        None => slot.netdev.is_some(),
    };
    if !will_have_netdev {
        return Err(InvalidValue::new(
            "mtu",
            mtu,
            format!(
                "only for a VF with a netdev ({} has none; add --driver netdevice)",
                slot.pci
            ),
        )
        .into());
    }
    Ok(())
}

/// The VF as it is before the lease touches it.
fn snapshot(net: &dyn NetOps, fs: &Sysfs, slot: &VfSlot) -> Result<Original, EngineError> {
    let vf = net
        .vf_configs(&slot.pf.name)
        .map_err(|source| EngineError::ReadVf {
            pf: slot.pf.name.clone(),
            source: Box::new(source),
        })?
        .into_iter()
        .find(|(i, _)| *i == slot.index)
        .map(|(_, c)| c)
        .ok_or_else(|| EngineError::VfNotReported {
            pf: slot.pf.name.clone(),
            vf: slot.pci,
        })?;
    let dev = fs.path(format!("bus/pci/devices/{}", slot.pci));
    let driver_override = fs
        .read_opt(&dev.join("driver_override"))?
        .filter(|s| s != "(null)" && !s.is_empty());
    let instance = fs.instance(&dev)?;
    let (mut mtu, mut mac) = (None, None);
    if let Some(nd) = &slot.netdev {
        let link = net.link(nd).map_err(|source| EngineError::ReadNetdev {
            netdev: nd.clone(),
            source: Box::new(source),
        })?;
        mtu = Some(link.mtu);
        mac = link.mac;
    }
    Ok(Original {
        vf,
        driver: slot.driver.clone(),
        driver_override,
        netdev: slot.netdev.clone(),
        mtu,
        mac,
        instance,
    })
}
