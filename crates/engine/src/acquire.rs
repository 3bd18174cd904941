//! Acquire: where a VF is chosen. A request is checked, the pool's PFs locked (shared),
//! the free VFs ranked by the pool's policy and the first healthy one picked, snapshotted
//! and written as an `acquiring` lease row: first without the write lock
//! ([`Engine::pick_then_insert`]), then, if that gives up, under it
//! ([`Engine::pick_and_insert`]). The VF is then configured ([`crate::configure`]) and the
//! lease made `active`, or everything is rolled back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vfpool_host::Sysfs;
use vfpool_model::{InvalidValue, PciAddr, VfSettings, validate_owner};
use vfpool_netlink::{NetOps, NetnsId};

use crate::configure::snapshot;
use crate::engine::{Engine, now};
use crate::error::{EngineError, chain};
use crate::fault;
use crate::hostview::{HostView, PfSlot, VfSlot};
use crate::lease::{Applied, DriverChoice, Lease, LeaseState, Original, OwnerKind};
use crate::ledger::{Durability, VfLock, is_unique_violation, lock_vf};
use crate::lock::{Hold, PfLocks};
use crate::owner::this_process;
use crate::pfcache::{PfRead, pool_pf_addrs, pool_pfs};
use crate::pool::{self, Candidate, Pool, owner_of, rank};
use crate::pools::{find_pool, with_pf_pool};

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
    /// With `ifname`: a VF that has no netdev (bound to vfio-pci for a userspace driver) is
    /// leased without being attached, instead of failing.
    pub attach_if_netdev: bool,
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
            attach_if_netdev: false,
        }
    }
}

/// What the write transaction of an acquire ends with.
/// `lease acquire`'s options as a user typed them (the CLI's options, the REST API's body):
/// every front end turns them into an [`AcquireRequest`] here, with the same one-line
/// errors naming the option (`invalid vlan '5000': allowed 0..=4094`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcquireInput {
    pub pool: String,
    pub owner: String,
    /// `container`, `vm` or `manual` (default).
    pub owner_kind: Option<String>,
    pub vf: Option<String>,
    pub mac: Option<String>,
    pub vlan: Option<String>,
    pub qos: Option<String>,
    pub vlan_proto: Option<String>,
    pub spoofchk: Option<String>,
    pub trust: Option<String>,
    pub link_state: Option<String>,
    pub min_rate: Option<String>,
    pub max_rate: Option<String>,
    pub mtu: Option<String>,
    pub driver: Option<String>,
    pub numa: Option<String>,
    pub netns: Option<PathBuf>,
}

fn num<T: std::str::FromStr>(
    field: &'static str,
    v: &Option<String>,
    allowed: &str,
) -> Result<Option<T>, InvalidValue> {
    v.as_deref()
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| InvalidValue::new(field, s, allowed))
        })
        .transpose()
}

fn text<T: std::str::FromStr<Err = InvalidValue>>(
    v: &Option<String>,
) -> Result<Option<T>, InvalidValue> {
    v.as_deref().map(str::parse).transpose()
}

impl AcquireInput {
    /// The request, each value parsed and range-checked (the rules that need the VF's
    /// driver are checked by [`Engine::acquire`]).
    pub fn request(&self) -> Result<AcquireRequest, InvalidValue> {
        let on_off = |field, v: &Option<String>| {
            v.as_deref()
                .map(|s| vfpool_model::parse_on_off(field, s))
                .transpose()
        };
        let settings = VfSettings {
            mac: self
                .mac
                .as_deref()
                .map(vfpool_model::MacAddr::parse_unicast)
                .transpose()?,
            vlan: num("vlan", &self.vlan, "0..=4094")?,
            qos: num("qos", &self.qos, "0..=7")?,
            vlan_proto: text(&self.vlan_proto)?,
            spoofchk: on_off("spoofchk", &self.spoofchk)?,
            trust: on_off("trust", &self.trust)?,
            link_state: text(&self.link_state)?,
            min_tx_rate: num("min-rate", &self.min_rate, "Mbit/s, 0..=4294967295")?,
            max_tx_rate: num("max-rate", &self.max_rate, "Mbit/s, 0..=4294967295")?,
            mtu: num("mtu", &self.mtu, "a number of bytes like 9000")?,
        };
        Ok(AcquireRequest {
            pool: self.pool.clone(),
            owner: self.owner.clone(),
            owner_kind: self.owner_kind.as_deref().unwrap_or("manual").parse()?,
            vf: text::<PciAddr>(&self.vf)?,
            settings,
            driver: text(&self.driver)?,
            numa: num("numa", &self.numa, "a NUMA node number like 0")?,
            netns: self.netns.clone(),
            ifname: None,
            attach_if_netdev: false,
        })
    }
}

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

/// What the write transaction of an optimistic pick ([`Engine::pick_then_insert`]) found.
enum Optimistic {
    /// The row is in, with this id.
    Inserted(i64),
    /// Another process leased the VF since it was read: try another.
    VfTaken,
    /// The pools or the owner changed: decide under the lock.
    Changed,
}

impl Engine {
    /// Checks a request; returns the identity of its netns, if it names one.
    fn validate(&self, req: &AcquireRequest) -> Result<Option<NetnsId>, EngineError> {
        validate_owner(&req.owner)?;
        crate::pools::validate_pool_ref(&req.pool)?;
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
        let mut read = PfRead::MayKeep;
        let inserted = match optimistic {
            Some(l) => Ok(l),
            None => loop {
                match self.pick_and_insert(req, ns, read, &pf_locks) {
                    Ok(Picked::RetryFresh) => read = PfRead::Fresh,
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
                self.ledger.write(Durability::Synced, |tx| {
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
                let errs = self.configurator().restore(&lease);
                let id = lease.id;
                if errs.is_empty() {
                    // Nothing was acknowledged: no need to wait for the disk.
                    self.ledger
                        .write(Durability::Unsynced, |tx| tx.delete_lease(id))?;
                    Err(e)
                } else {
                    self.ledger.write(Durability::Unsynced, |tx| {
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
            let pools = with_pf_pool(pools, &req.pool)?;
            let pool = find_pool(&pools, &req.pool)?.clone();
            // Other acquires under way: they are likely after the same first choice. (A row
            // left by a crashed acquire counts too until `gc`: that only spreads the picks.)
            let contended = leases.iter().any(|l| l.state == LeaseState::Acquiring);
            if leases.iter().any(|l| l.owner == req.owner) {
                return Ok(None);
            }
            let (host, _) = pool_pfs(&mut self.pfs, &fs, &pool.selectors, PfRead::MayKeep)?;
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
            let original = snapshot(&*net, &fs, &slot, !req.settings.pf_side_is_empty())?;
            let mut lease = new_lease(req, ns, &pool.name, &slot, original, me);
            let outcome = self.ledger.write(Durability::Unsynced, |tx| {
                let pools_now = with_pf_pool(tx.pools()?, &req.pool)?;
                if pools_now != pools || tx.lease_by_owner(&req.owner)?.is_some() {
                    return Ok(Optimistic::Changed);
                }
                if tx.lease_by_vf(slot.pci)?.is_some() || tx.vf_gen(slot.pci)? != leases_had {
                    return Ok(Optimistic::VfTaken);
                }
                Ok(Optimistic::Inserted(tx.insert_lease(&lease)?))
            })?;
            match outcome {
                Optimistic::Inserted(id) => {
                    lease.id = id;
                    return Ok(Some((lease, lock)));
                }
                Optimistic::VfTaken => avoid.push(slot.pci),
                Optimistic::Changed => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The write transaction of an acquire: checks the pool and the owner, reads the PFs
    /// ([`pool_pfs`]), picks a free healthy VF (reading only the VFs it tries), snapshots it
    /// and inserts the lease row (state `acquiring`). When the set of PFs was kept from
    /// earlier, a pool with no free VF in it is tried again on a fresh read ([`PfRead::Fresh`])
    /// before it is called exhausted.
    fn pick_and_insert(
        &mut self,
        req: &AcquireRequest,
        ns: Option<NetnsId>,
        read: PfRead,
        pf_locks: &PfLocks,
    ) -> Result<Picked, EngineError> {
        let me = this_process();
        let net = self.net.clone();
        let fs = self.fs.clone();
        let cache = &mut self.pfs;
        let locks = self.ledger.locks_dir();
        // Not synced: the row must survive this process (a crash leaves it for `gc`), which
        // a commit does; a power cut resets the VF as well, so the row need not outlive it.
        self.ledger.write(Durability::Unsynced, |tx| {
            let pools = with_pf_pool(tx.pools()?, &req.pool)?;
            let pool = find_pool(&pools, &req.pool)?;
            // Only PFs are read here (the pool's again); the VF picked is read below.
            let (host, kept) = pool_pfs(cache, &fs, &pool.selectors, read)?;
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
            let original = snapshot(&*net, &fs, &slot, !req.settings.pf_side_is_empty())?;
            let mut lease = new_lease(req, ns, &pool.name, &slot, original, me);
            lease.id = tx.insert_lease(&lease)?;
            Ok(Picked::Lease(Box::new(lease), lock))
        })
    }

    /// Takes the shared locks of the PFs that pool `name` selects (as the PF cache knows
    /// them; an acquire that picks a VF of another PF locks that one too).
    fn lock_pool_pfs(&mut self, name: &str) -> Result<PfLocks, EngineError> {
        let pools = with_pf_pool(self.ledger.read(|tx| tx.pools())?, name)?;
        let pool = find_pool(&pools, name)?;
        let pfs = pool_pf_addrs(&mut self.pfs, &self.fs, &pool.selectors)?;
        self.lock_pfs(pfs, Hold::Shared)
    }
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
