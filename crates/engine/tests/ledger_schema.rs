//! The ledger's schema: what a new ledger has, and how an older one is upgraded in place
//! without losing a lease.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rusqlite::Connection;
use vfpool_engine::{
    Applied, Durability, Lease, LeaseState, Ledger, Original, OwnerKind, Policy, Pool,
    SCHEMA_VERSION,
};
use vfpool_model::PciAddr;

fn lease(owner: &str) -> Lease {
    Lease {
        id: 0,
        owner: owner.into(),
        owner_kind: OwnerKind::Vm,
        pool: "gold".into(),
        vf_pci: PciAddr::new(0, 4, 0x10, 0),
        pf: "em1".into(),
        pf_pci: PciAddr::new(0, 4, 0, 0),
        vf_index: 0,
        netdev: Some("em1v0".into()),
        netns: None,
        netns_id: None,
        ifname: None,
        created: 1,
        state: LeaseState::Active,
        applied: Applied::default(),
        original: Original::default(),
        pid: None,
    }
}

trait WithVf {
    fn with_vf(self, vf: PciAddr) -> Self;
}

impl WithVf for Lease {
    fn with_vf(mut self, vf: PciAddr) -> Self {
        self.vf_pci = vf;
        self.vf_index = 1;
        self
    }
}

/// The names of the schema's objects of `kind` (`index`, `table`).
fn names(db: &std::path::Path, kind: &str) -> Vec<String> {
    let c = Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT name FROM sqlite_master WHERE type = ?1 ORDER BY name")
        .unwrap();
    st.query_map([kind], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn indexes(db: &std::path::Path) -> Vec<String> {
    names(db, "index")
}

fn tables(db: &std::path::Path) -> Vec<String> {
    names(db, "table")
}

fn user_version(db: &std::path::Path) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_new_ledger_has_the_current_schema_and_only_the_unique_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    Ledger::open(&db).unwrap();
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    // The primary key of pools, the two UNIQUE constraints of leases and the VM layer's
    // (an address's owner, a VM's uuid, a MAC on an L2): no index that would cost every
    // insert and delete a page without serving a query or a constraint.
    assert_eq!(
        indexes(&db),
        [
            "sqlite_autoindex_l3_addresses_1",
            "sqlite_autoindex_leases_1",
            "sqlite_autoindex_leases_2",
            "sqlite_autoindex_pools_1",
            "sqlite_autoindex_vm_nics_2",
            "sqlite_autoindex_vms_2"
        ]
    );
}

#[test]
fn every_lease_of_a_vf_counts_also_after_its_release() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Ledger::open(&dir.path().join("state.db")).unwrap();
    let vf = lease("x").vf_pci;
    let other = PciAddr::new(0, 4, 0x10, 2);
    assert_eq!(l.read(|tx| tx.vf_gen(vf)).unwrap(), 0);
    for (n, owner) in [(1, "vm-1"), (2, "vm-2")] {
        let id = l
            .write(Durability::Unsynced, |tx| tx.insert_lease(&lease(owner)))
            .unwrap();
        assert_eq!(l.read(|tx| tx.vf_gen(vf)).unwrap(), n);
        l.write(Durability::Unsynced, |tx| tx.delete_lease(id))
            .unwrap();
        assert_eq!(
            l.read(|tx| tx.vf_gen(vf)).unwrap(),
            n,
            "a release does not count"
        );
    }
    assert_eq!(l.read(|tx| tx.vf_gen(other)).unwrap(), 0);
}

#[test]
fn a_version_1_ledger_is_upgraded_in_place_and_keeps_its_pools_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        let mut l = Ledger::open(&db).unwrap();
        l.write(Durability::Synced, |tx| {
            tx.insert_pool(&Pool {
                name: "gold".into(),
                selectors: vec!["em1".parse().unwrap()],
                policy: Policy::Spread,
                created: 0,
            })?;
            tx.insert_lease(&lease("vm-1"))
        })
        .unwrap();
    }
    // Make it what version 1 wrote.
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE INDEX leases_pool ON leases(pool); DROP TABLE vf_gens;
             ALTER TABLE leases DROP COLUMN netns_dev; ALTER TABLE leases DROP COLUMN netns_ino;
             ALTER TABLE leases DROP COLUMN ifname; DROP TABLE desired_nics;
             ALTER TABLE vms DROP COLUMN memory_mib; ALTER TABLE vms DROP COLUMN vcpus;
             ALTER TABLE vms DROP COLUMN libvirt_uri; PRAGMA user_version = 1;",
        )
        .unwrap();
    assert!(indexes(&db).contains(&"leases_pool".to_owned()));
    assert!(!tables(&db).contains(&"vf_gens".to_owned()));

    let mut l = Ledger::open(&db).unwrap();
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    assert!(!indexes(&db).contains(&"leases_pool".to_owned()));
    assert!(tables(&db).contains(&"vf_gens".to_owned()));
    // A VF leased before the upgrade has no count yet; the next lease counts from there.
    assert_eq!(l.read(|tx| tx.vf_gen(lease("x").vf_pci)).unwrap(), 0);
    let (pools, leases) = l.read(|tx| Ok((tx.pools()?, tx.leases()?))).unwrap();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].policy, Policy::Spread);
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].owner, "vm-1");
    assert_eq!(leases[0].state, LeaseState::Active);
    // Opening it again changes nothing.
    drop(l);
    Ledger::open(&db).unwrap();
    assert_eq!(user_version(&db), SCHEMA_VERSION);
}

#[test]
fn a_version_2_ledger_gets_the_lease_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        let mut l = Ledger::open(&db).unwrap();
        l.write(Durability::Synced, |tx| tx.insert_lease(&lease("vm-1")))
            .unwrap();
    }
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DROP TABLE vf_gens; ALTER TABLE leases DROP COLUMN netns_dev;
             ALTER TABLE leases DROP COLUMN netns_ino; ALTER TABLE leases DROP COLUMN ifname;
             DROP TABLE desired_nics; 
             ALTER TABLE vms DROP COLUMN memory_mib; ALTER TABLE vms DROP COLUMN vcpus;
             ALTER TABLE vms DROP COLUMN libvirt_uri; PRAGMA user_version = 2;",
        )
        .unwrap();
    let mut l = Ledger::open(&db).unwrap();
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    assert_eq!(l.read(|tx| tx.leases()).unwrap().len(), 1);
    l.write(Durability::Unsynced, |tx| {
        tx.insert_lease(&lease("vm-2").with_vf(PciAddr::new(0, 4, 0x10, 2)))
    })
    .unwrap();
    assert_eq!(
        l.read(|tx| tx.vf_gen(PciAddr::new(0, 4, 0x10, 2))).unwrap(),
        1
    );
}

#[test]
fn a_version_3_ledger_gets_the_netns_identity_and_old_leases_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        let mut l = Ledger::open(&db).unwrap();
        l.write(Durability::Synced, |tx| tx.insert_lease(&lease("pod-1")))
            .unwrap();
    }
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "ALTER TABLE leases DROP COLUMN netns_dev; ALTER TABLE leases DROP COLUMN netns_ino;
             ALTER TABLE leases DROP COLUMN ifname; DROP TABLE desired_nics;
             ALTER TABLE vms DROP COLUMN memory_mib; ALTER TABLE vms DROP COLUMN vcpus;
             ALTER TABLE vms DROP COLUMN libvirt_uri; PRAGMA user_version = 3;",
        )
        .unwrap();
    let mut l = Ledger::open(&db).unwrap();
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    let old = l.read(|tx| tx.leases()).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].netns_id, None);
    // Device numbers use all 64 bits: stored bit for bit.
    let id = vfpool_engine::NetnsId {
        dev: u64::MAX - 3,
        ino: 4026532177,
    };
    let mut new = lease("pod-2").with_vf(PciAddr::new(0, 4, 0x10, 2));
    new.netns = Some("/run/netns/pod-2".into());
    new.netns_id = Some(id);
    l.write(Durability::Unsynced, |tx| tx.insert_lease(&new))
        .unwrap();
    let back = l.read(|tx| tx.lease_by_owner("pod-2")).unwrap().unwrap();
    assert_eq!(back.netns_id, Some(id));
}

#[test]
fn a_version_5_ledger_gets_the_ifname_column_and_keeps_its_leases() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        let mut l = Ledger::open(&db).unwrap();
        l.write(Durability::Synced, |tx| tx.insert_lease(&lease("vm-1")))
            .unwrap();
    }
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "ALTER TABLE leases DROP COLUMN ifname; ALTER TABLE vms DROP COLUMN memory_mib;
             ALTER TABLE vms DROP COLUMN vcpus; ALTER TABLE vms DROP COLUMN libvirt_uri;
             PRAGMA user_version = 5;",
        )
        .unwrap();
    let mut l = Ledger::open(&db).unwrap();
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    let leases = l.read(|tx| tx.leases()).unwrap();
    assert_eq!((leases.len(), leases[0].ifname.clone()), (1, None));
    let id = leases[0].id;
    l.write(Durability::Synced, |tx| {
        tx.set_attachment(id, Some(("/run/netns/p", None)), Some("net1"))
    })
    .unwrap();
    let got = l.read(|tx| tx.lease_by_id(id)).unwrap().unwrap();
    assert_eq!(
        (got.netns.as_deref(), got.ifname.as_deref()),
        (Some("/run/netns/p"), Some("net1"))
    );
}

#[test]
fn a_version_6_ledger_gets_the_vm_tables_and_keeps_its_leases() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        let mut l = Ledger::open(&db).unwrap();
        l.write(Durability::Synced, |tx| tx.insert_lease(&lease("vm-1")))
            .unwrap();
    }
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DROP TABLE l2_networks; DROP TABLE l3_networks; DROP TABLE l3_addresses;
             DROP TABLE vms; DROP TABLE vm_nics; PRAGMA user_version = 6;",
        )
        .unwrap();
    assert!(!tables(&db).contains(&"vms".to_owned()));
    let mut l = Ledger::open(&db).unwrap();
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    for t in [
        "l2_networks",
        "l3_networks",
        "l3_addresses",
        "vms",
        "vm_nics",
    ] {
        assert!(tables(&db).contains(&t.to_owned()), "{t}");
    }
    assert_eq!(l.read(|tx| tx.leases()).unwrap().len(), 1);
}

#[test]
fn a_version_7_ledger_gives_its_vms_1024_mib_and_one_vcpu() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    drop(Ledger::open(&db).unwrap());
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "ALTER TABLE vms DROP COLUMN memory_mib; ALTER TABLE vms DROP COLUMN vcpus;
             ALTER TABLE vms DROP COLUMN libvirt_uri;
             INSERT INTO vms (name, uuid, state, created) VALUES ('vm1', 'u-1', 'running', 1);
             PRAGMA user_version = 7;",
        )
        .unwrap();
    drop(Ledger::open(&db).unwrap());
    assert_eq!(user_version(&db), SCHEMA_VERSION);
    let row: (String, String, i64, i64, Option<String>) = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT name, state, memory_mib, vcpus, libvirt_uri FROM vms",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(row, ("vm1".into(), "running".into(), 1024, 1, None));
    // Opening it again changes nothing.
    drop(Ledger::open(&db).unwrap());
    assert_eq!(user_version(&db), SCHEMA_VERSION);
}
