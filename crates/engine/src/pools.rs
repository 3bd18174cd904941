//! Pools on the engine: create (selectors checked against the host, no overlap with
//! another pool), list, show, delete. The types and the pure functions (membership,
//! status, ranking) are in [`crate::pool`].

use vfpool_host::{HostError, Inventory, Sysfs};
use vfpool_model::{InvalidValue, PfRef};

use crate::engine::{Engine, now};
use crate::error::EngineError;
use crate::hostview::HostView;
use crate::ledger::Durability;

use crate::pool::{
    self, Policy, Pool, PoolStatus, PoolVf, describe_overlap, potential, validate_pool_name,
};
use crate::selector::PoolSelector;

impl Engine {
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
            let Some(pf) = host.pfs.iter().find(|p| p.facts.is(&v.pf)) else {
                return Err(not_an_sriov_pf(&self.fs, &v.pf, &host));
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
        let (pools, leases) = self.ledger.write(Durability::Synced, |tx| {
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
        self.ledger.write(Durability::Synced, |tx| {
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
}

/// The prefix of a pool that is not stored: every VF of one PF that no named pool holds
/// (`pf:eno49`, `pf:0000:03:00.0`), for a front end given a PF (`master` in a CNI config)
/// or a VF (a device plugin's `deviceID`) rather than a pool. A named pool cannot contain
/// `:`, so the two never meet.
pub const PF_POOL_PREFIX: &str = "pf:";

/// The name of the PF pool of `pf` (a netdev name or a PCI address).
pub fn pf_pool_name(pf: &str) -> String {
    format!("{PF_POOL_PREFIX}{pf}")
}

/// Checks a pool reference: a named pool's name or a PF pool (`pf:NIC`).
pub(crate) fn validate_pool_ref(name: &str) -> Result<(), EngineError> {
    match name.strip_prefix(PF_POOL_PREFIX) {
        Some(_) => pf_pool(name).map(drop),
        None => Ok(validate_pool_name(name)?),
    }
}

/// The PF pool `name` names (`pf:NIC`): the NIC's VFs, first fit.
fn pf_pool(name: &str) -> Result<Pool, EngineError> {
    let nic = name.strip_prefix(PF_POOL_PREFIX).unwrap_or(name);
    let bad = || {
        InvalidValue::new(
            "pool",
            name,
            "a pool name, or pf:NIC with NIC a PF's netdev name or PCI address",
        )
    };
    let sel: vfpool_model::VfSelector = nic.parse().map_err(|_| bad())?;
    if sel.vfs.is_some() {
        return Err(bad().into());
    }
    Ok(Pool {
        name: name.to_owned(),
        selectors: vec![PoolSelector::Vfs(sel)],
        policy: Policy::FirstFit,
        // The youngest of all: a VF a named pool selects stays that pool's.
        created: i64::MAX,
    })
}

/// `pools` (the stored ones, oldest first) and, when `name` is a PF pool, that pool last,
/// so that it holds only the VFs of its PF that no named pool holds.
pub(crate) fn with_pf_pool(mut pools: Vec<Pool>, name: &str) -> Result<Vec<Pool>, EngineError> {
    if name.starts_with(PF_POOL_PREFIX) {
        pools.push(pf_pool(name)?);
    }
    Ok(pools)
}

pub(crate) fn find_pool<'a>(pools: &'a [Pool], name: &str) -> Result<&'a Pool, EngineError> {
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

/// Why `r` names no SR-IOV PF of `host`: a NIC without SR-IOV, a VF (of which PF), or no
/// NIC at all (the known SR-IOV PFs listed).
fn not_an_sriov_pf(fs: &Sysfs, r: &PfRef, host: &HostView) -> EngineError {
    let unknown = || {
        EngineError::Host(HostError::UnknownNic {
            nic: r.to_string(),
            known: host
                .pfs
                .iter()
                .map(|p| p.facts.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        })
    };
    match Inventory::scan(fs).map(|inv| inv.find_sriov_pf(&r.to_string()).map(drop)) {
        Ok(Err(e @ (HostError::NotSriov { .. } | HostError::IsVf { .. }))) => e.into(),
        Ok(_) => unknown(),
        Err(e) => e.into(),
    }
}
