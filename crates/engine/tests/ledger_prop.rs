//! Property: any sequence of acquire, release, gc, split and restore keeps the ledger
//! consistent with the host.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{Lab, req, sel};
use proptest::prelude::*;
use vfpool_engine::{Engine, LeaseState, Policy, ReleaseTarget};

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        owner: u8,
        pool: u8,
        vlan: Option<u16>,
    },
    Release {
        owner: u8,
    },
    Gc,
    /// What `nic split --force` does: mark the PF's leases stale, then change the count.
    Split {
        pf: u8,
        n: u32,
    },
    Restore {
        pf: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, 0u8..2, proptest::option::of(1u16..4095))
            .prop_map(|(owner, pool, vlan)| Op::Acquire { owner, pool, vlan }),
        3 => (0u8..8).prop_map(|owner| Op::Release { owner }),
        1 => Just(Op::Gc),
        1 => (0u8..2, 1u32..8).prop_map(|(pf, n)| Op::Split { pf, n }),
        1 => (0u8..2).prop_map(|pf| Op::Restore { pf }),
    ]
}

const PFS: [&str; 2] = ["eno49", "eno50"];
const POOLS: [&str; 2] = ["a", "b"];

fn check(lab: &Lab, e: &mut Engine, after_gc: bool) {
    let host = e.host().unwrap();
    let leases = e.leases().unwrap();
    let mut vfs = HashSet::new();
    let mut owners = HashSet::new();
    for l in &leases {
        assert!(vfs.insert(l.vf_pci), "VF leased twice: {l:?}");
        assert!(owners.insert(l.owner.clone()), "owner twice: {l:?}");
        assert!(
            matches!(l.state, LeaseState::Active | LeaseState::Stale),
            "a single process leaves no half-done row: {l:?}"
        );
        if after_gc {
            assert_eq!(l.state, LeaseState::Active, "gc leaves no stale lease");
        }
        if l.state == LeaseState::Active {
            assert!(
                host.vfs.contains_key(&l.vf_pci),
                "active lease on a missing VF"
            );
            let c = lab.vf_config(&l.pf, l.vf_index);
            if let Some(v) = l.applied.settings.vlan {
                assert_eq!(c.vlan, v, "the leased VF keeps its settings");
            }
        }
    }
    // Every existing VF that is not leased is as the kernel made it: nothing left behind.
    for (pci, slot) in &host.vfs {
        if !leases
            .iter()
            .any(|l| l.vf_pci == *pci && l.state == LeaseState::Active)
        {
            lab.assert_pristine(
                &slot.pf.name,
                slot.index,
                &format!("free VF {pci} has leftover settings"),
            );
        }
    }
    for p in e.pool_list().unwrap() {
        assert_eq!(p.free + p.leased + p.unhealthy, p.total, "{p:?}");
        let live = leases
            .iter()
            .filter(|l| l.pool == p.name && l.state == LeaseState::Active)
            .count();
        assert_eq!(p.leased, live, "{p:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
    ))]

    #[test]
    fn the_ledger_follows_the_host(ops in proptest::collection::vec(op(), 1..25)) {
        let lab = Lab::new();
        lab.split("eno49", 4);
        lab.split("eno50", 4);
        let mut e = lab.engine();
        e.pool_create("a", sel(&["eno49"]), Policy::FirstFit).unwrap();
        e.pool_create("b", sel(&["eno50#0-3"]), Policy::Pack).unwrap();
        for op in ops {
            let mut gc = false;
            match op {
                Op::Acquire { owner, pool, vlan } => {
                    let (pool, owner) = (POOLS[pool as usize], format!("o{owner}"));
                    let holds = e.leases().unwrap().iter().any(|l| l.owner == owner);
                    let free = e.pool_list().unwrap().iter().find(|p| p.name == pool).unwrap().free;
                    let mut r = req(pool, &owner);
                    r.settings.vlan = vlan;
                    match e.acquire(&r) {
                        // A pool with a free healthy VF serves an owner without a lease.
                        Ok(l) => {
                            prop_assert!(!holds && free > 0, "acquire by {owner} on {pool} (free {free}, holds {holds}) succeeded");
                            prop_assert_eq!(&l.pool, pool);
                            prop_assert_eq!(l.state, LeaseState::Active);
                        }
                        Err(err) => prop_assert!(holds || free == 0, "acquire by {} on {} (free {}) failed: {}", owner, pool, free, err),
                    }
                }
                Op::Release { owner } => {
                    let owner = format!("o{owner}");
                    let holds = e.leases().unwrap().iter().any(|l| l.owner == owner);
                    match e.release(&ReleaseTarget::Owner(owner.clone())) {
                        Ok(l) => prop_assert!(holds && l.owner == owner, "release of {owner} without a lease succeeded"),
                        Err(err) => prop_assert!(!holds, "release of {} failed: {}", owner, err),
                    }
                }
                Op::Gc => {
                    let rep = e.gc().unwrap();
                    prop_assert!(rep.errors.is_empty(), "{:?}", rep.errors);
                    gc = true;
                }
                Op::Split { pf, n } => {
                    let name = PFS[pf as usize];
                    let nic = vfpool_host::Inventory::scan(&lab.fs).unwrap()
                        .find_sriov_pf(name).unwrap().clone();
                    if nic.num_vfs != n {
                        e.mark_pf_stale(nic.pci).unwrap();
                    }
                    lab.split(name, n);
                }
                Op::Restore { pf } => {
                    let name = PFS[pf as usize];
                    let nic = vfpool_host::Inventory::scan(&lab.fs).unwrap()
                        .find_sriov_pf(name).unwrap().clone();
                    e.mark_pf_stale(nic.pci).unwrap();
                    lab.restore(name);
                }
            }
            check(&lab, &mut e, gc);
        }
    }
}
