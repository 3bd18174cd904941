//! Changing NICs: split, restore, persist and the boot apply, each one engine call that
//! holds the PFs' locks ([`crate::lock`]) across its check and its act.
//!
//! A split checks the NIC's leases and writes `sriov_numvfs` under the PF's exclusive lock,
//! which every acquire and release on that PF holds shared: a lease cannot appear between
//! the check and the write, and two splits of one NIC run one after the other. The VF
//! count it leaves is recorded in the ledger (`desired_nics`), which `host apply` brings
//! back at boot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vfpool_host::persist::{self, Desired};
use vfpool_host::split::{self, SplitOptions, SplitReport};
use vfpool_host::{HostError, Inventory, Nic, Sysfs};
use vfpool_model::PciAddr;

use crate::engine::Engine;
use crate::error::EngineError;
use crate::lease::DesiredNic;
use crate::ledger::Durability;
use crate::lock::{Hold, PfLocks};
use crate::{GcReport, ReapplyReport};

/// How long a split waits at most for the link of a PF it brought up (autonegotiation
/// takes seconds; a PF with no cable must not hold the split for its whole timeout).
pub const LINK_UP_WAIT: Duration = Duration::from_secs(30);

/// A `--timeout` (the REST API's `timeout`): whole seconds, 1..=86400.
pub fn parse_timeout(s: &str) -> Result<Duration, vfpool_model::InvalidValue> {
    match s.parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err(vfpool_model::InvalidValue::new(
            "timeout",
            s,
            "whole seconds, 1..=86400",
        )),
    }
}

/// What `nic split` asks for.
#[derive(Debug, Clone)]
pub struct SplitRequest {
    /// NICs by netdev name or PCI address.
    pub nics: Vec<String>,
    /// The VF count as given (checked against each NIC's `sriov_totalvfs`).
    pub vfs: String,
    /// Sets `sriov_drivers_autoprobe` first; `None` keeps each NIC's.
    pub autoprobe: Option<bool>,
    /// How long to wait for the VFs and their netdevs.
    pub timeout: Duration,
    /// Change the count even when VFs are leased (their leases become stale).
    pub force: bool,
    /// Leave the PF's link as it is; by default a PF that is down is brought up, since on
    /// igb and ixgbe a VF carries nothing while its PF is down.
    pub keep_link: bool,
}

/// What a split, restore or apply did to one NIC (shown as `view::NicChangeView`).
#[derive(Debug, Clone)]
pub struct NicChange {
    pub nic: String,
    pub pci: PciAddr,
    pub num_vfs: u32,
    pub previous: u32,
    pub changed: bool,
    pub millis: u128,
    /// Whether the PF's link was up and stable at the end (`None`: not waited for).
    pub link_settled: Option<bool>,
    /// The PF was down and was brought up.
    pub link_brought_up: bool,
    /// Leases made stale by `--force`.
    pub stale_leases: usize,
}

/// One NIC that failed; the others went on.
#[derive(Debug)]
pub struct NicFailure {
    pub nic: String,
    pub pci: Option<PciAddr>,
    pub error: EngineError,
}

/// Every NIC of a split, restore or apply: the ones changed and the ones that failed.
#[derive(Debug, Default)]
pub struct NicsOutcome {
    pub changed: Vec<NicChange>,
    pub failed: Vec<NicFailure>,
    /// The counts were changed but could not be recorded for the next boot (the NICs are
    /// as reported; `host persist` records them again).
    pub not_recorded: Option<EngineError>,
    /// What the operator should know (a split of a bond member, ...), one line each.
    pub warnings: Vec<String>,
}

/// How `host persist` makes the counts survive a reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BootHook {
    /// `vfpool-apply.service`, a oneshot before networking, libvirt and the kubelet.
    Systemd,
    /// A udev rule that applies a PF's count when its netdev appears.
    Udev,
}

/// What `host persist` did (shown as `view::PersistView`).
#[derive(Debug, Clone)]
pub struct PersistReport {
    pub desired: Vec<DesiredNic>,
    pub hook: BootHook,
    pub installed: PathBuf,
    /// The other hook's files, removed.
    pub removed: Vec<PathBuf>,
}

/// What `host apply` did: the VF counts, the leases' configurations, then `gc`.
#[derive(Debug, Default)]
pub struct ApplyOutcome {
    pub nics: NicsOutcome,
    pub leases: ReapplyReport,
    pub gc: GcReport,
}

impl Engine {
    /// Splits NICs into VFs. Every name and count is checked before any NIC is touched;
    /// then the NICs are locked, read again, their leases checked, and split in parallel.
    /// `Err`: nothing was changed. `progress(nic, ready, total)` follows the VFs.
    pub fn split_nics(
        &mut self,
        req: &SplitRequest,
        progress: &(dyn Fn(&str, u32, u32) + Sync),
    ) -> Result<NicsOutcome, EngineError> {
        let inv = Inventory::scan(&self.fs)?;
        let mut named: Vec<(Nic, u32)> = Vec::new();
        for name in &req.nics {
            let nic = inv.find_sriov_pf(name)?;
            let n = split::check_count(nic, &req.vfs)?;
            if named.iter().any(|(w, _)| w.pci == nic.pci) {
                return Err(EngineError::NamedTwice {
                    nic: name.clone(),
                    pci: nic.pci,
                });
            }
            named.push((nic.clone(), n));
        }
        let _locks = self.lock_pfs(named.iter().map(|(n, _)| n.pci), Hold::Exclusive)?;
        // Under the lock: what the NICs are now, not when they were first read.
        let mut work = Vec::new();
        for (nic, n) in named {
            let nic =
                Inventory::refresh_pf(&self.fs, &nic)?.ok_or_else(|| HostError::UnknownNic {
                    nic: nic.name.clone(),
                    known: "it vanished while waiting for its lock".into(),
                })?;
            work.push((nic, n));
        }
        // A change of a non-zero count goes through 0: every VF of the NIC is destroyed.
        let destroys: Vec<&Nic> = work
            .iter()
            .filter(|(nic, n)| nic.num_vfs != 0 && nic.num_vfs != *n)
            .map(|(nic, _)| nic)
            .collect();
        // VFs leased to VMs: refused naming the VMs, or (--force) detached from them.
        let pfs: Vec<(String, PciAddr)> =
            destroys.iter().map(|n| (n.name.clone(), n.pci)).collect();
        self.detach_vm_vfs(&pfs, req.force)?;
        let stale = self.guard_leased(&destroys, req.force)?;
        let opts = SplitOptions {
            autoprobe: req.autoprobe,
            timeout: req.timeout,
            settle: self.settle,
            ..SplitOptions::default()
        };
        let results = split::split_many(&self.fs, &work, &opts, progress);
        let autoprobe: HashMap<PciAddr, bool> = work
            .iter()
            .map(|(n, _)| (n.pci, req.autoprobe.or(n.autoprobe).unwrap_or(true)))
            .collect();
        let nics: Vec<Nic> = work.into_iter().map(|(n, _)| n).collect();
        let bring_up = (!req.keep_link).then_some(req.timeout);
        let warnings = bond_warnings(&self.fs, &inv, &nics)?;
        let mut out = self.settle_changes(&nics, results, &stale, bring_up, &autoprobe);
        out.warnings = warnings;
        Ok(out)
    }

    /// Removes every VF of the NICs (`sriov_numvfs` = 0), refused while any is leased
    /// unless `force`.
    pub fn restore_nics(
        &mut self,
        names: &[String],
        timeout: Duration,
        force: bool,
    ) -> Result<NicsOutcome, EngineError> {
        let inv = Inventory::scan(&self.fs)?;
        let mut nics: Vec<Nic> = Vec::new();
        for name in names {
            let nic = inv.find_sriov_pf(name)?;
            if nics.iter().any(|w| w.pci == nic.pci) {
                return Err(EngineError::NamedTwice {
                    nic: name.clone(),
                    pci: nic.pci,
                });
            }
            nics.push(nic.clone());
        }
        let _locks = self.lock_pfs(nics.iter().map(|n| n.pci), Hold::Exclusive)?;
        // VFs leased to VMs: refused naming the VMs, or (--force) detached from them.
        let pfs: Vec<(String, PciAddr)> = nics.iter().map(|n| (n.name.clone(), n.pci)).collect();
        self.detach_vm_vfs(&pfs, force)?;
        let all: Vec<&Nic> = nics.iter().collect();
        let stale = self.guard_leased(&all, force)?;
        let results = nics
            .iter()
            .map(|nic| split::restore(&self.fs, nic, timeout))
            .collect();
        let autoprobe = nics
            .iter()
            .map(|n| (n.pci, n.autoprobe.unwrap_or(true)))
            .collect();
        Ok(self.settle_changes(&nics, results, &stale, None, &autoprobe))
    }

    /// Records the VF count of every NIC that has VFs and installs the boot hook (under
    /// `root`) that brings them back: `exe` with this engine's host arguments, then `host
    /// apply`. The other kind of hook, if installed, is removed.
    pub fn persist(
        &mut self,
        hook: BootHook,
        root: &Path,
        exe: &Path,
    ) -> Result<PersistReport, EngineError> {
        let inv = Inventory::scan(&self.fs)?;
        let desired: Vec<DesiredNic> = inv
            .nics
            .iter()
            .filter(|n| n.num_vfs > 0)
            .map(|n| DesiredNic {
                pci: n.pci,
                name: n.name.clone(),
                num_vfs: n.num_vfs,
                autoprobe: n.autoprobe.unwrap_or(true),
            })
            .collect();
        if desired.is_empty() {
            return Err(EngineError::NothingToPersist);
        }
        // Checked before anything is written: a udev rule cannot quote every path.
        if hook == BootHook::Udev {
            persist::udev_rules(exe, &self.boot_args)?;
        }
        self.ledger.write(Durability::Synced, |tx| {
            desired.iter().try_for_each(|d| tx.set_desired(d))
        })?;
        let (installed, removed) = match hook {
            BootHook::Systemd => persist::install_systemd(root, exe, &self.boot_args)?,
            BootHook::Udev => persist::install_udev(root, exe, &self.boot_args)?,
        };
        tracing::info!(installed = %installed.display(), nics = desired.len(), "persisted");
        Ok(PersistReport {
            desired,
            hook,
            installed,
            removed,
        })
    }

    /// The VF counts recorded for the next boot.
    pub fn desired(&mut self) -> Result<Vec<DesiredNic>, EngineError> {
        self.import_desired_json()?;
        self.ledger.read(|tx| tx.desired())
    }

    /// What the boot hook runs: every recorded NIC (or only `only`, a netdev name or PCI
    /// address, for the udev rule) back to its recorded VF count, then the leases'
    /// configurations re-applied to the re-created VFs, then `gc`. A NIC whose VFs are
    /// leased keeps its count (as `nic split` without `--force` would).
    pub fn apply_boot(
        &mut self,
        only: Option<&str>,
        timeout: Duration,
        keep_link: bool,
    ) -> Result<ApplyOutcome, EngineError> {
        let mut desired = self.desired()?;
        if let Some(name) = only {
            let inv = Inventory::scan(&self.fs)?;
            let pci = inv.find_sriov_pf(name)?.pci;
            desired.retain(|d| d.pci == pci);
        }
        let mut out = ApplyOutcome::default();
        if !desired.is_empty() {
            out.nics = self.apply_counts(&desired, timeout, keep_link)?;
        }
        if only.is_none() || !out.nics.changed.is_empty() {
            out.leases = self.reapply()?;
            out.gc = self.gc()?;
        }
        if only.is_none() {
            // The whole host is as recorded: what the Kubernetes plugins wait for.
            self.record_applied_boot()?;
        }
        Ok(out)
    }

    fn apply_counts(
        &mut self,
        desired: &[DesiredNic],
        timeout: Duration,
        keep_link: bool,
    ) -> Result<NicsOutcome, EngineError> {
        let _locks = self.lock_pfs(desired.iter().map(|d| d.pci), Hold::Exclusive)?;
        let leased = self.leased_per_pf()?;
        let inv = Inventory::scan(&self.fs)?;
        let mut want = Desired {
            version: 1,
            nics: BTreeMap::new(),
        };
        let mut failed = Vec::new();
        for d in desired {
            let now = inv.find_sriov_pf(&d.pci.to_string()).ok();
            let busy = leased.get(&d.pci).copied().unwrap_or(0);
            match now {
                Some(nic) if nic.num_vfs != 0 && nic.num_vfs != d.num_vfs && busy > 0 => {
                    failed.push(NicFailure {
                        nic: nic.name.clone(),
                        pci: Some(nic.pci),
                        error: EngineError::NicLeased {
                            what: format!(
                                "{} ({}) has {busy} leased VFs and {} VFs, not the recorded {}",
                                nic.name, nic.pci, nic.num_vfs, d.num_vfs
                            ),
                        },
                    });
                }
                _ => {
                    want.nics.insert(
                        d.pci,
                        persist::DesiredNic {
                            name: d.name.clone(),
                            num_vfs: d.num_vfs,
                            autoprobe: d.autoprobe,
                        },
                    );
                }
            }
        }
        let opts = SplitOptions {
            timeout,
            settle: self.settle,
            ..SplitOptions::default()
        };
        let applied = persist::apply(&self.fs, &want, &opts)?;
        let mut out = NicsOutcome {
            failed,
            ..NicsOutcome::default()
        };
        for a in applied {
            match a.result {
                Ok(r) => {
                    let mut c = change(r, 0);
                    if !keep_link && c.num_vfs > 0 {
                        self.bring_up(&mut c, timeout);
                    }
                    out.changed.push(c);
                }
                Err(e) => out.failed.push(NicFailure {
                    nic: a.name,
                    pci: Some(a.pci),
                    error: e.into(),
                }),
            }
        }
        Ok(out)
    }

    /// Takes the locks of `pfs` in `hold` mode.
    pub(crate) fn lock_pfs(
        &self,
        pfs: impl IntoIterator<Item = PciAddr>,
        hold: Hold,
    ) -> Result<PfLocks, EngineError> {
        // Every change is recorded in the ledger: with a read-only one, nothing may start.
        if self.ledger.is_read_only() {
            return Err(EngineError::ReadOnlyLedger {
                path: self.ledger.path().to_owned(),
            });
        }
        let set: BTreeSet<PciAddr> = pfs.into_iter().collect();
        PfLocks::take(&self.state, &set, hold)
    }

    /// Live (not stale) leases per PF.
    pub fn leased_per_pf(&mut self) -> Result<HashMap<PciAddr, usize>, EngineError> {
        Ok(self.ledger.leased_per_pf()?.into_iter().collect())
    }

    /// Refuses to destroy the VFs of `nics` while any is leased, unless `force`; with
    /// `force`, marks those leases stale first (`lease gc` removes them). Called under
    /// the NICs' exclusive locks. Returns the stale leases per PF.
    fn guard_leased(
        &mut self,
        nics: &[&Nic],
        force: bool,
    ) -> Result<HashMap<PciAddr, usize>, EngineError> {
        let leased = self.leased_per_pf()?;
        let busy: Vec<(&Nic, usize)> = nics
            .iter()
            .filter_map(|n| leased.get(&n.pci).filter(|c| **c > 0).map(|c| (*n, *c)))
            .collect();
        if busy.is_empty() {
            return Ok(HashMap::new());
        }
        if !force {
            let what = busy
                .iter()
                .map(|(n, c)| format!("{} ({}) has {c} leased VFs", n.name, n.pci))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(EngineError::NicLeased { what });
        }
        let mut stale = HashMap::new();
        for (n, _) in busy {
            let c = self
                .ledger
                .write(Durability::Synced, |tx| tx.mark_pf_stale(n.pci))?;
            tracing::warn!(pf = %n.name, leases = c, "leases marked stale: --force destroys their VFs");
            stale.insert(n.pci, c);
        }
        Ok(stale)
    }

    /// After a split or restore: brings changed PFs up (unless told not to), records the
    /// new counts for the next boot, and sorts the results.
    fn settle_changes(
        &mut self,
        nics: &[Nic],
        results: Vec<Result<SplitReport, HostError>>,
        stale: &HashMap<PciAddr, usize>,
        bring_up: Option<Duration>,
        autoprobe: &HashMap<PciAddr, bool>,
    ) -> NicsOutcome {
        let mut out = NicsOutcome::default();
        for (nic, r) in nics.iter().zip(results) {
            match r {
                Ok(r) => {
                    let mut c = change(r, stale.get(&nic.pci).copied().unwrap_or(0));
                    if let Some(timeout) = bring_up
                        && c.num_vfs > 0
                    {
                        self.bring_up(&mut c, timeout);
                    }
                    out.changed.push(c);
                }
                Err(e) => out.failed.push(NicFailure {
                    nic: nic.name.clone(),
                    pci: Some(nic.pci),
                    error: e.into(),
                }),
            }
        }
        let record: Vec<DesiredNic> = out
            .changed
            .iter()
            .map(|c| DesiredNic {
                pci: c.pci,
                name: c.nic.clone(),
                num_vfs: c.num_vfs,
                autoprobe: autoprobe.get(&c.pci).copied().unwrap_or(true),
            })
            .collect();
        if !record.is_empty()
            && let Err(e) = self.ledger.write(Durability::Synced, |tx| {
                record.iter().try_for_each(|d| tx.set_desired(d))
            })
        {
            tracing::warn!(error = %crate::chain(&e), "the new VF counts could not be recorded for the next boot");
            out.not_recorded = Some(e);
        }
        out
    }

    /// Brings the PF of `c` up if it is administratively down (`c.link_brought_up`), then,
    /// on a real host, waits up to `timeout` (at most [`LINK_UP_WAIT`]) for its link to
    /// stay up as long as after a split (`c.link_settled`): the VFs of a PF without
    /// carrier are unhealthy, so an acquire right after would find none. A PF with no cable
    /// does not hold the split for long; its link state is reported.
    fn bring_up(&self, c: &mut NicChange, timeout: Duration) {
        let nic = match Inventory::read_pf(&self.fs, c.pci) {
            Ok(Some(nic)) => nic,
            _ => {
                tracing::warn!(pf = %c.nic, "the PF cannot be read to bring it up");
                return;
            }
        };
        let Some(netdev) = nic.netdevs.first().cloned() else {
            tracing::warn!(pf = %c.nic, "the PF has no netdev to bring up");
            return;
        };
        match self.net.link(&netdev) {
            Ok(l) if l.admin_up => return,
            Ok(_) => {
                if let Err(e) = self.net.set_up(&netdev, true) {
                    tracing::warn!(pf = %netdev, error = %crate::chain(&e), "cannot bring the PF up");
                    return;
                }
                tracing::info!(pf = %netdev, "PF brought up: its VFs carry nothing while it is down");
                c.link_brought_up = true;
            }
            Err(e) => {
                tracing::warn!(pf = %netdev, error = %crate::chain(&e), "cannot read the PF's link");
                return;
            }
        }
        if !self.settle.is_zero() {
            let deadline = std::time::Instant::now().checked_add(timeout.min(LINK_UP_WAIT));
            c.link_settled = Some(split::wait_link_up(
                &self.fs,
                &nic,
                self.settle,
                Duration::from_millis(20),
                deadline,
            ));
        }
    }

    /// Moves the counts of an older vfpool's `STATE/desired.json` into the ledger, once.
    fn import_desired_json(&mut self) -> Result<(), EngineError> {
        let Some(old) = Desired::load(&self.state)? else {
            return Ok(());
        };
        let have = self.ledger.read(|tx| tx.desired())?;
        self.ledger.write(Durability::Synced, |tx| {
            for (pci, n) in &old.nics {
                if !have.iter().any(|d| d.pci == *pci) {
                    tx.set_desired(&DesiredNic {
                        pci: *pci,
                        name: n.name.clone(),
                        num_vfs: n.num_vfs,
                        autoprobe: n.autoprobe,
                    })?;
                }
            }
            Ok(())
        })?;
        let from = Desired::path(&self.state);
        let to = from.with_extension("json.imported");
        std::fs::rename(&from, &to)
            .map_err(|source| EngineError::Install { path: from, source })?;
        tracing::info!(to = %to.display(), "desired.json imported into the ledger");
        Ok(())
    }
}

fn change(r: SplitReport, stale_leases: usize) -> NicChange {
    NicChange {
        nic: r.nic,
        pci: r.pci,
        num_vfs: r.num_vfs,
        previous: r.previous,
        changed: r.changed,
        millis: r.millis,
        link_settled: r.link_settled,
        link_brought_up: false,
        stale_leases,
    }
}

/// The third seed on bonds: VF NICs and vNICs on a bonded PF may not reach each other; it
/// recommends a bond of one NIC, or splitting only one NIC of a multi-NIC bond.
fn bond_warnings(fs: &Sysfs, inv: &Inventory, split: &[Nic]) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    for nic in split {
        let Some(bond) = &nic.bond else { continue };
        let members = vfpool_host::inventory::bond_members(fs, bond)?;
        let others: Vec<&String> = members.iter().filter(|m| **m != nic.name).collect();
        let also_split: Vec<&str> = others
            .iter()
            .filter(|m| {
                split.iter().any(|n| n.name == ***m)
                    || inv.nics.iter().any(|n| n.name == ***m && n.num_vfs > 0)
            })
            .map(|m| m.as_str())
            .collect();
        out.push(if others.is_empty() {
            format!(
                "{} is in bond {bond} (its only member, as recommended): VF NICs and vNICs on it may still not reach each other",
                nic.name
            )
        } else if also_split.is_empty() {
            format!(
                "{} is in bond {bond} with {}: VF NICs and vNICs on it may not reach each other; split only this one NIC of the bond (or give each NIC its own bond)",
                nic.name,
                others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )
        } else {
            format!(
                "{} is in bond {bond} whose {} is split too: VF NICs and vNICs on them may not reach each other; split only one NIC of a multi-NIC bond (or give each NIC its own bond)",
                nic.name,
                also_split.join(", ")
            )
        });
    }
    Ok(out)
}
