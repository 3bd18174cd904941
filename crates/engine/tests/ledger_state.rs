//! The ledger file itself: created whole or not at all, refused when it lost its content,
//! and readable from a state directory that cannot be written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Lab, req, sel};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use rusqlite::Connection;
use vfpool_engine::{Durability, Engine, EngineError, Ledger, Policy, SCHEMA_VERSION, chain};

fn db_in(dir: &Path) -> PathBuf {
    Ledger::path_in(dir)
}

/// Runs `f` on a thread of its own in a private mount namespace where `dir` is a read-only
/// bind mount of itself: root's writes there fail with EROFS (permission bits would not
/// stop root), and nothing outside the thread sees the mount.
fn with_read_only<T: Send>(dir: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNS)
                .expect("unshare a mount namespace (tests run as root)");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
            mount(
                None::<&str>,
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .unwrap();
            // The mount bites: not even root can write.
            let e = std::fs::write(dir.join("probe"), "x").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(nix::libc::EROFS), "{e}");
            f()
        })
        .join()
        .unwrap()
    })
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Found on main: a state.db cut to 0 bytes was taken for a new, empty ledger, and the
/// leased VFs showed free.
#[test]
fn a_ledger_cut_to_zero_bytes_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(dir.path());
    std::fs::write(&db, "").unwrap();
    for e in [
        Ledger::open(&db).err().unwrap(),
        Ledger::open_read_only(&db).err().unwrap(),
    ] {
        assert!(matches!(e, EngineError::CorruptLedger { .. }), "{e:?}");
        assert_eq!(
            chain(&e),
            format!(
                "the ledger {} is corrupt (it is empty (0 bytes)); refusing to use it: restore it from a backup or move it aside (a new ledger starts with no pools and no leases)",
                db.display()
            )
        );
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "nothing written");
}

#[test]
fn a_garbage_file_or_a_database_without_the_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(dir.path());
    std::fs::write(&db, "x".repeat(8192)).unwrap();
    let e = Ledger::open(&db).err().unwrap();
    assert!(matches!(e, EngineError::CorruptLedger { .. }), "{e:?}");
    assert!(
        chain(&e).contains("file is not a database"),
        "{}",
        chain(&e)
    );
    assert!(chain(&e).contains(&db.display().to_string()));
    let e = Ledger::open_read_only(&db).err().unwrap();
    assert!(matches!(e, EngineError::CorruptLedger { .. }), "{e:?}");

    std::fs::remove_file(&db).unwrap();
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE other (x)")
        .unwrap();
    let e = Ledger::open(&db).err().unwrap();
    assert!(
        chain(&e).contains("is corrupt (it holds no vfpool schema)"),
        "{}",
        chain(&e)
    );
}

#[test]
fn a_new_ledger_appears_whole_and_concurrent_creators_share_one() {
    // Rounds of eight creators let go at once: a creator that replaced the ledger another
    // had already opened (a rename instead of a link) would lose that one's pool.
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(dir.path());
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let (db, start) = (db.clone(), &start);
                    s.spawn(move || {
                        start.wait();
                        let mut l = Ledger::open(&db).unwrap();
                        l.write(Durability::Synced, |tx| {
                            tx.insert_pool(&vfpool_engine::Pool {
                                name: format!("p{i}"),
                                selectors: vec!["em1".parse().unwrap()],
                                policy: Policy::Pack,
                                created: 0,
                            })
                        })
                        .unwrap();
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        let mut l = Ledger::open(&db).unwrap();
        let n = l.read(|tx| tx.pools()).unwrap().len();
        assert_eq!(n, 8, "round {round}: a ledger was replaced");
        let v: i64 = Connection::open(&db)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert!(
            !files(dir.path()).iter().any(|f| f.contains(".new-")),
            "{:?}",
            files(dir.path())
        );
    }
}

fn ledger_with_a_pool(dir: &Path) {
    let mut l = Ledger::open(&db_in(dir)).unwrap();
    l.write(Durability::Synced, |tx| {
        tx.insert_pool(&vfpool_engine::Pool {
            name: "gold".into(),
            selectors: vec!["em1".parse().unwrap()],
            policy: Policy::Pack,
            created: 0,
        })
    })
    .unwrap();
}

#[test]
fn a_read_only_state_directory_is_read_with_its_wal() {
    let dir = tempfile::tempdir().unwrap();
    ledger_with_a_pool(dir.path());
    // The WAL and its index stay after the writer closed (see Ledger::open).
    assert!(files(dir.path()).contains(&"state.db-shm".to_owned()));
    let wal = std::fs::metadata(dir.path().join("state.db-wal")).unwrap();
    assert!(wal.len() > 0, "the pool is in the WAL");
    let db = db_in(dir.path());
    with_read_only(dir.path(), || {
        let e = Ledger::open(&db).err().expect("a writable open fails");
        assert!(!matches!(e, EngineError::CorruptLedger { .. }));
        let mut l = Ledger::open_read_only(&db).unwrap();
        assert!(l.is_read_only());
        let pools = l.read(|tx| tx.pools()).unwrap();
        assert_eq!(pools.len(), 1);
        let e = l
            .write(Durability::Unsynced, |tx| tx.delete_pool("gold"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "the ledger {} is read-only here (its state directory cannot be written); this command changes it",
                db.display()
            )
        );
    });
}

#[test]
fn a_read_only_state_directory_without_wal_or_index_is_read_immutable() {
    let dir = tempfile::tempdir().unwrap();
    ledger_with_a_pool(dir.path());
    // The last connection of a plain client checkpoints and removes the WAL and its index.
    Connection::open(db_in(dir.path()))
        .unwrap()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    assert_eq!(files(dir.path()), ["state.db", "state.db-writers"]);
    let db = db_in(dir.path());
    with_read_only(dir.path(), || {
        let mut l = Ledger::open_read_only(&db).unwrap();
        assert_eq!(l.read(|tx| tx.pools()).unwrap()[0].name, "gold");
    });
}

#[test]
fn a_read_only_state_directory_without_a_ledger_has_no_pools() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(dir.path());
    with_read_only(dir.path(), || {
        let mut l = Ledger::open_read_only(&db).unwrap();
        assert!(l.read(|tx| tx.pools()).unwrap().is_empty());
        assert!(l.read(|tx| tx.leases()).unwrap().is_empty());
        assert!(
            l.write(Durability::Unsynced, |tx| tx.delete_pool("x"))
                .is_err()
        );
    });
    assert!(!db.exists());
}

/// Found on main: a read-only state directory broke even the commands that only read.
#[test]
fn the_engine_lists_pools_and_leases_from_a_read_only_state_directory() {
    let lab = Lab::new();
    lab.split("em1", 2);
    {
        let mut e = lab.engine();
        e.pool_create("p", sel(&["em1"]), Policy::FirstFit).unwrap();
        e.acquire(&req("p", "vm-1")).unwrap();
    }
    let state = lab.state();
    with_read_only(&state, || {
        let mut e = Engine::open(&state, lab.fs.clone(), lab.net.clone()).unwrap();
        assert!(e.ledger().is_read_only());
        let pools = e.pool_list().unwrap();
        assert_eq!((pools[0].total, pools[0].leased), (2, 1));
        let (_, vfs) = e.pool_show("p").unwrap();
        assert_eq!(vfs[0].owner.as_deref(), Some("vm-1"));
        assert_eq!(e.leases().unwrap()[0].owner, "vm-1");
        let err = e.acquire(&req("p", "vm-2")).unwrap_err();
        assert!(
            matches!(err, EngineError::ReadOnlyLedger { .. }),
            "{}",
            chain(&err)
        );
    });
    // Writable again outside the mount namespace.
    let mut e = lab.engine();
    assert!(!e.ledger().is_read_only());
    e.acquire(&req("p", "vm-2")).unwrap();
}
