//! Recover: where a VF is given back. `release` (marks the lease `releasing`, restores the
//! VF, removes the row), `gc` (finishes or rolls back what dead processes left, releases
//! leases whose owner is gone, removes leases on VFs that vanished) and `reapply` (puts
//! leases back on VFs re-created after a reboot).

use serde::{Deserialize, Serialize};
use vfpool_model::{PciAddr, validate_owner};

use crate::domain::LibvirtDomains;
use crate::engine::Engine;
use crate::error::{EngineError, chain};
use crate::fault;
use crate::lease::{Lease, LeaseState, OwnerKind};
use crate::ledger::{Durability, lock_vf};
use crate::lock::Hold;
use crate::owner::{NetnsNow, OwnerStatus, netns_now, owner_status, this_process};
use crate::vm::LedgerVms;

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
    pub action: GcKind,
    pub reason: String,
}

/// What `lease gc` did to one lease (JSON: the kebab-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum GcKind {
    /// An acquire whose process died: the VF restored, the row removed.
    RolledBack,
    /// A release whose process died, finished.
    FinishedRelease,
    /// Released: the VM, the container or its netns is gone.
    ReleasedOwnerGone,
    /// Removed: its VF was destroyed (or re-created outside vfpool).
    RemovedStale,
}

impl GcKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GcKind::RolledBack => "rolled-back",
            GcKind::FinishedRelease => "finished-release",
            GcKind::ReleasedOwnerGone => "released-owner-gone",
            GcKind::RemovedStale => "removed-stale",
        }
    }
}

impl std::fmt::Display for GcKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `reapply` did for one lease.
#[derive(Debug, Clone, Serialize)]
pub struct ReapplyAction {
    pub owner: String,
    pub vf_pci: PciAddr,
    pub pool: String,
    pub action: ReapplyKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `reapply` did to one lease (JSON: the lower-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ReapplyKind {
    /// Its configuration is on its VF again.
    Reapplied,
    /// The error says why; the lease stays active.
    Failed,
    /// Its VF does not exist: marked stale (`gc` removes it).
    Stale,
}

impl ReapplyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReapplyKind::Reapplied => "reapplied",
            ReapplyKind::Failed => "failed",
            ReapplyKind::Stale => "stale",
        }
    }
}

impl std::fmt::Display for ReapplyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Pods' L3 addresses whose lease is gone, given back.
    pub addresses_freed: Vec<crate::vm::FreedAddress>,
    pub errors: Vec<String>,
}

impl Engine {
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
        let (lease, _in_flight) = self.ledger.write(Durability::Unsynced, |tx| {
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
            self.configurator().restore(lease)
        };
        let id = lease.id;
        if !errs.is_empty() {
            self.ledger.write(Durability::Unsynced, |tx| {
                tx.transition(id, &[LeaseState::Releasing], LeaseState::Releasing, None)
            })?;
            return Err(EngineError::Restore {
                vf: lease.vf_pci,
                owner: lease.owner.clone(),
                errors: errs.join("; "),
            });
        }
        self.ledger
            .write(Durability::Synced, |tx| tx.delete_lease(id))
    }

    /// Finishes what crashed processes left (rolls back interrupted acquires, completes
    /// interrupted releases), releases leases whose owner is gone, and removes leases on
    /// VFs that no longer exist.
    pub fn gc(&mut self) -> Result<GcReport, EngineError> {
        let host = self.host()?;
        let leases = self.ledger.read(|tx| tx.leases())?;
        // Read after the leases: a VM's leases exist only while it is marked running (a
        // start marks it first, a stop releases them first), so a lease read above whose
        // VM reads as stopped here is one to release (or gone already: see `claimed`).
        let vm_table = self.vm_table()?;
        let domains = self.libvirt_domains();
        let mut report = GcReport::default();
        for l in leases {
            // The VF stays as it is meanwhile: a split of its PF waits (PF lock first, then
            // the VF's, as an acquire takes them).
            let _pf = self.lock_pfs([l.pf_pci], Hold::Shared)?;
            // A step under way holds the VF's in-flight lock; gc holds it while it repairs.
            // An `acquiring` or `releasing` lease whose lock is free was abandoned.
            let Some(_in_flight) = self.ledger.lock_vf(l.vf_pci)? else {
                report.in_progress += 1;
                continue;
            };
            let (action, reason): (GcKind, String) = {
                match l.state {
                    LeaseState::Acquiring => (GcKind::RolledBack, "the acquiring process died".into()),
                    LeaseState::Releasing => {
                        (GcKind::FinishedRelease, "the releasing process died".into())
                    }
                    LeaseState::Stale => (GcKind::RemovedStale, "its VF was destroyed".into()),
                    LeaseState::Active if !host.vfs.contains_key(&l.vf_pci) => {
                        (GcKind::RemovedStale, "its VF no longer exists".into())
                    }
                    LeaseState::Active if self.vf_recreated(&l) => (
                        GcKind::RemovedStale,
                        "its VF was destroyed and created again outside vfpool (it has the kernel's defaults, not this lease's configuration)".into(),
                    ),
                    LeaseState::Active => match if LedgerVms::owns(&l.owner)
                        && l.owner_kind == OwnerKind::Vm
                    {
                        owner_status(&l, &vm_table)
                    } else if LibvirtDomains::owns(&l.owner) && l.owner_kind == OwnerKind::Vm {
                        owner_status(&l, &domains)
                    } else {
                        owner_status(&l, &*self.vms)
                    } {
                        OwnerStatus::Gone => (
                            GcKind::ReleasedOwnerGone,
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
            let stale = action == GcKind::RemovedStale;
            let me = this_process();
            let claimed = self.ledger.write(
                if stale {
                    Durability::Synced
                } else {
                    Durability::Unsynced
                },
                |tx| {
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
                },
            )?;
            let Some(cur) = claimed else { continue };
            if !stale && let Err(e) = self.finish_release(&cur) {
                report.errors.push(chain(&e));
                continue;
            }
            tracing::info!(pool = %cur.pool, vf = %cur.vf_pci, owner = %cur.owner, action = %action, reason = %reason, "gc");
            report.actions.push(GcAction {
                owner: cur.owner,
                vf_pci: cur.vf_pci,
                pool: cur.pool,
                action,
                reason,
            });
        }
        // After the leases: a pod whose lease went above gives its address back too.
        match self.l3_gc_pods() {
            Ok(freed) => report.addresses_freed = freed,
            Err(e) => report.errors.push(chain(&e)),
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
                if self.ledger.write(Durability::Unsynced, |tx| {
                    tx.transition(id, &[LeaseState::Active], LeaseState::Stale, None)
                })? {
                    report.actions.push(ReapplyAction {
                        owner: l.owner,
                        vf_pci: l.vf_pci,
                        pool: l.pool,
                        action: ReapplyKind::Stale,
                        error: None,
                    });
                }
                continue;
            }
            let me = this_process();
            let id = l.id;
            let _pf = self.lock_pfs([l.pf_pci], Hold::Shared)?;
            let Some(_in_flight) = self.ledger.lock_vf(l.vf_pci)? else {
                continue;
            };
            if !self.ledger.write(Durability::Unsynced, |tx| {
                tx.transition(id, &[LeaseState::Active], LeaseState::Acquiring, Some(me))
            })? {
                continue;
            }
            let result = self.configurator().apply(&l);
            let (action, error, netdev) = match result {
                Ok(netdev) => (ReapplyKind::Reapplied, None, netdev),
                Err(e) => (
                    ReapplyKind::Failed,
                    Some(chain(&e)),
                    self.configurator().vf_netdev(l.vf_pci).ok().flatten(),
                ),
            };
            // The lease now lives on this instance of the VF (a reboot made a new one).
            let mut original = l.original.clone();
            original.instance = self
                .configurator()
                .vf_instance(l.vf_pci)
                .ok()
                .flatten()
                .or(original.instance);
            self.ledger.write(Durability::Unsynced, |tx| {
                tx.set_netdev(id, netdev.as_deref())?;
                tx.set_original(id, &original)?;
                tx.transition(id, &[LeaseState::Acquiring], LeaseState::Active, None)
            })?;
            tracing::info!(pool = %l.pool, vf = %l.vf_pci, owner = %l.owner, action = %action, "reapply");
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

    fn vf_recreated(&self, l: &Lease) -> bool {
        match (
            l.original.instance,
            self.configurator().vf_instance(l.vf_pci),
        ) {
            (Some(then), Ok(Some(now))) => then != now,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON names are a contract (`lease gc -o json`, `host apply -o json`), and the
    /// tables print `as_str`: both say the same.
    #[test]
    fn action_names_are_the_json_contract() {
        let gc = [
            (GcKind::RolledBack, "rolled-back"),
            (GcKind::FinishedRelease, "finished-release"),
            (GcKind::ReleasedOwnerGone, "released-owner-gone"),
            (GcKind::RemovedStale, "removed-stale"),
        ];
        for (k, name) in gc {
            assert_eq!(serde_json::to_value(k).unwrap(), name);
            assert_eq!(k.to_string(), name);
        }
        let re = [
            (ReapplyKind::Reapplied, "reapplied"),
            (ReapplyKind::Failed, "failed"),
            (ReapplyKind::Stale, "stale"),
        ];
        for (k, name) in re {
            assert_eq!(serde_json::to_value(k).unwrap(), name);
            assert_eq!(k.to_string(), name);
        }
    }
}
