//! The ledger's writers: they queue on a lock that dies with its holder, and a writer that
//! ignores the queue (the `sqlite3` shell) is waited for too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vfpool_engine::{Durability, Ledger, Policy, Pool};

fn pool(name: &str) -> Pool {
    Pool {
        name: name.into(),
        selectors: vec!["em1".parse().unwrap()],
        policy: Policy::FirstFit,
        created: 0,
    }
}

/// Writes a pool from another thread; the receiver gets the result when it is done.
fn write_in_thread(db: std::path::PathBuf, name: &'static str) -> mpsc::Receiver<bool> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut l = Ledger::open(&db).unwrap();
        let ok = l
            .write(Durability::Synced, |t| t.insert_pool(&pool(name)))
            .is_ok();
        tx.send(ok).unwrap();
    });
    rx
}

#[test]
fn a_writer_killed_while_it_holds_the_queue_does_not_block_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    Ledger::open(&db).unwrap();
    let queue = dir.path().join("state.db-writers");
    // Another process takes the queue and hangs.
    // --no-fork: flock becomes `sleep` itself, so killing it frees the lock.
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&queue)
        .args(["sleep", "600"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let probe = std::fs::OpenOptions::new()
        .write(true)
        .open(&queue)
        .unwrap();
    let start = Instant::now();
    while probe.try_lock().is_ok() {
        probe.unlock().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = write_in_thread(db.clone(), "a");
    assert!(
        done.recv_timeout(Duration::from_millis(300)).is_err(),
        "the write waits for its turn"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(done.recv_timeout(Duration::from_secs(20)).unwrap());
    let mut l = Ledger::open(&db).unwrap();
    assert_eq!(l.read(|t| t.pools()).unwrap().len(), 1);
}

#[test]
fn a_writer_outside_the_queue_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    Ledger::open(&db).unwrap();
    // A plain SQLite connection (like the sqlite3 shell) holds the write lock.
    let raw = rusqlite::Connection::open(&db).unwrap();
    raw.execute_batch("BEGIN IMMEDIATE").unwrap();
    let done = write_in_thread(db.clone(), "b");
    assert!(
        done.recv_timeout(Duration::from_millis(300)).is_err(),
        "the write waits for the other writer"
    );
    raw.execute_batch("COMMIT").unwrap();
    assert!(done.recv_timeout(Duration::from_secs(20)).unwrap());
}

/// The pages in the WAL since its last restart, as SQLite counts them (a PASSIVE
/// checkpoint answers busy, WAL pages, pages checkpointed).
fn wal_pages(db: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
        .unwrap()
}

#[test]
fn a_small_autocheckpoint_keeps_the_wal_small() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let churn = |l: &mut Ledger| {
        for i in 0..150 {
            let name = format!("p{i}");
            l.write(Durability::Unsynced, |t| t.insert_pool(&pool(&name)))
                .unwrap();
            l.write(Durability::Unsynced, |t| t.delete_pool(&name))
                .unwrap();
        }
    };
    // SQLite's default (1000 pages): 300 commits stay in the WAL.
    let mut l = Ledger::open(&db).unwrap();
    churn(&mut l);
    drop(l);
    let default = wal_pages(&db);
    assert!(default >= 300, "{default} pages with the default");
    // At 20 pages, the commit that passes 20 checkpoints and the next one restarts the WAL.
    let mut l = Ledger::open(&db).unwrap();
    l.set_autocheckpoint(20).unwrap();
    churn(&mut l);
    drop(l);
    let small = wal_pages(&db);
    assert!(small <= 25, "{small} pages at wal_autocheckpoint 20");
}
