//! The lease ledger's benchmark: acquire+release round trips in-process and through the CLI,
//! 8 concurrent CLI processes, and this disk's fsync rate measured in the same run on the
//! same filesystem.
//!
//! ```text
//! cargo build --release -p vfpool
//! cargo run --release -p vfpool-engine --example ledger_bench -- target/release/vfpool [DIR]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpool_engine::{
    AcquireRequest, Applied, Engine, Lease, LeaseState, Ledger, Original, OwnerKind, Policy,
    PoolSelector, ReleaseTarget,
};
use vfpool_host::sim::{HostSpec, SimHost};
use vfpool_host::split::{self, SplitOptions};
use vfpool_host::{Inventory, Sysfs};
use vfpool_model::PciAddr;
use vfpool_netlink::SimNetOps;

/// CPU seconds (user + system) this process and its waited-for children used so far.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let t = |who| {
        let u = getrusage(who).unwrap();
        let tv = |v: nix::sys::time::TimeVal| v.tv_sec() as f64 + v.tv_usec() as f64 / 1e6;
        tv(u.user_time()) + tv(u.system_time())
    };
    t(UsageWho::RUSAGE_SELF) + t(UsageWho::RUSAGE_CHILDREN)
}

fn fsync_rate(dir: &Path, for_: Duration) -> f64 {
    let p = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&p).unwrap();
    let buf = [7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < for_ {
        f.write_all(&buf).unwrap();
        f.sync_all().unwrap();
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&p);
    rate
}

/// A demo host on `hosts` (tmpfs: sysfs lives in memory too) with its ledger in `dir` (the
/// disk being measured); returns the arguments that point the CLI at both.
fn demo_state(dir: &Path, hosts: &Path, name: &str, vfpool: &Path) -> Vec<PathBuf> {
    let state = dir.join(name);
    std::fs::create_dir_all(&state).unwrap();
    let root = hosts.join(name);
    std::fs::create_dir_all(&root).unwrap();
    SimHost::open_or_create(&root, &HostSpec::demo()).unwrap();
    let cli = vec![
        PathBuf::from("--sysfs-root"),
        root.join("sys"),
        PathBuf::from("--state"),
        state,
    ];
    let run = |args: &[&str]| {
        let o = Command::new(vfpool).args(&cli).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["nic", "split", "em1", "--vfs", "63"]);
    run(&["pool", "create", "gold", "--select", "em1"]);
    cli
}

fn cli_round_trip(vfpool: &Path, cli: &[PathBuf], owner: &str) {
    for args in [
        &[
            "lease", "acquire", "--pool", "gold", "--owner", owner, "--vlan", "10",
        ][..],
        &["lease", "release", owner][..],
    ] {
        let o = Command::new(vfpool).args(cli).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// One of the concurrent in-process workers: `worker STATE SIMROOT ID ROUNDS`.
fn worker(mut args: impl Iterator<Item = String>) {
    let state = PathBuf::from(args.next().unwrap());
    let root = PathBuf::from(args.next().unwrap());
    let id = args.next().unwrap();
    let rounds: usize = args.next().unwrap().parse().unwrap();
    let sim = SimHost::open_or_create(&root, &HostSpec::demo()).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    let net = Arc::new(SimNetOps::new(sim.root()));
    let mut e = Engine::open(&state, fs, net).unwrap();
    for i in 0..rounds {
        let owner = format!("w{id}-{i}");
        let mut r = AcquireRequest::new("gold", &owner);
        r.settings.vlan = Some(10);
        e.acquire(&r).unwrap();
        e.release(&ReleaseTarget::Owner(owner)).unwrap();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("worker") {
        args.next();
        return worker(args);
    }
    let vfpool = PathBuf::from(
        args.next()
            .expect("usage: ledger_bench VFPOOL_BINARY [DIR]"),
    );
    let vfpool = std::fs::canonicalize(vfpool).unwrap();
    let base = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("vfpool-bench-")
        .tempdir_in(&base)
        .unwrap();
    let dir = tmp.path();
    let hosts_tmp = tempfile::Builder::new()
        .prefix("vfpool-bench-hosts-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let hosts = hosts_tmp.path();
    println!(
        "simulated hosts on {}, ledgers on {}",
        hosts.display(),
        dir.display()
    );

    let fsync = fsync_rate(dir, Duration::from_secs(3));
    println!("fsync: {fsync:.0} write+fsync/s (4 KiB, {})", dir.display());

    // In-process.
    let root = hosts.join("inproc");
    std::fs::create_dir_all(&root).unwrap();
    let sim = SimHost::open_or_create(&root, &HostSpec::demo()).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    let inv = Inventory::scan(&fs).unwrap();
    let nic = inv.find_sriov_pf("em1").unwrap().clone();
    split::split(&fs, &nic, 63, &SplitOptions::default(), &|_, _| {}).unwrap();
    let net = Arc::new(SimNetOps::new(sim.root()));
    let mut e = Engine::open(&dir.join("inproc"), fs, net).unwrap();
    e.pool_create(
        "gold",
        vec!["em1".parse::<PoolSelector>().unwrap()],
        Policy::FirstFit,
    )
    .unwrap();
    let start = Instant::now();
    for _ in 0..20 {
        e.host().unwrap();
    }
    println!(
        "host scan (inventory + health): {:.2} ms",
        start.elapsed().as_secs_f64() * 1000.0 / 20.0
    );
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let cpu = cpu_seconds();
    let start = Instant::now();
    for i in 0..n {
        let mut r = AcquireRequest::new("gold", &format!("o{i}"));
        r.settings.vlan = Some(10);
        e.acquire(&r).unwrap();
        e.release(&ReleaseTarget::Owner(format!("o{i}"))).unwrap();
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let rt = n as f64 / el;
    println!(
        "in-process: {n} acquire+release round trips in {el:.2} s: {:.2} ms each ({:.2} ms CPU), {:.0} changes/s, {:.2} changes per fsync",
        el * 1000.0 / n as f64,
        cpu * 1000.0 / n as f64,
        rt * 2.0,
        rt * 2.0 / fsync
    );

    // 8 processes, each an in-process engine (like a daemon's workers, or the CNI plugin
    // and the daemon side by side), on one ledger and one host.
    let me = std::env::current_exe().unwrap();
    let per: usize = std::env::var("BENCH_PER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let cpu = cpu_seconds();
    let start = Instant::now();
    let kids: Vec<_> = (0..8)
        .map(|t| {
            Command::new(&me)
                .arg("worker")
                .arg(dir.join("inproc"))
                .arg(&root)
                .arg(t.to_string())
                .arg(per.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let changes = 8.0 * per as f64 * 2.0;
    println!(
        "in-process x8: {} round trips in {el:.2} s ({:.2} ms CPU each): {:.0} changes/s, {:.2} changes per fsync",
        8 * per,
        cpu * 1000.0 / (8 * per) as f64,
        changes / el,
        changes / el / fsync
    );
    if std::env::var_os("BENCH_ONLY_INPROC").is_some() {
        return;
    }
    // The ledger alone: the four transactions of a round trip, no host work.
    let mut ledger = Ledger::open(&dir.join("ledger-only.db")).unwrap();
    let me = (i64::from(std::process::id()), 1u64);
    let n = 500;
    let start = Instant::now();
    for i in 0..n {
        let mut l = Lease {
            id: 0,
            owner: format!("l{i}"),
            owner_kind: OwnerKind::Manual,
            pool: "gold".into(),
            vf_pci: PciAddr::new(0, 4, 0x10, 0),
            pf: "em1".into(),
            pf_pci: PciAddr::new(0, 4, 0, 0),
            vf_index: 0,
            netdev: None,
            netns: None,
            created: 0,
            state: LeaseState::Acquiring,
            applied: Applied::default(),
            original: Original::default(),
            pid: Some(me),
        };
        l.id = ledger.write(true, |tx| tx.insert_lease(&l)).unwrap();
        let id = l.id;
        ledger
            .write(false, |tx| {
                tx.transition(id, &[LeaseState::Acquiring], LeaseState::Active, None)
            })
            .unwrap();
        ledger
            .write(false, |tx| {
                tx.transition(id, &[LeaseState::Active], LeaseState::Releasing, Some(me))
            })
            .unwrap();
        ledger.write(true, |tx| tx.delete_lease(id)).unwrap();
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "ledger only: {n} round trips (4 transactions, 2 fsynced) in {el:.2} s: {:.0} changes/s, {:.2} changes per fsync",
        n as f64 * 2.0 / el,
        n as f64 * 2.0 / el / fsync
    );

    // Through the CLI, one process at a time.
    let state = demo_state(dir, hosts, "cli", &vfpool);
    let m = 40;
    let start = Instant::now();
    for i in 0..m {
        cli_round_trip(&vfpool, &state, &format!("c{i}"));
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "cli: {m} round trips (2 processes each) in {el:.2} s: {:.1} ms each, {:.0} changes/s",
        el * 1000.0 / m as f64,
        m as f64 * 2.0 / el
    );

    // 8 concurrent CLI processes.
    let state = demo_state(dir, hosts, "cli8", &vfpool);
    let per = 15;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (vfpool, state) = (&vfpool, &state);
            s.spawn(move || {
                for i in 0..per {
                    cli_round_trip(vfpool, state, &format!("t{t}-{i}"));
                }
            });
        }
    });
    let el = start.elapsed().as_secs_f64();
    let changes = 8.0 * per as f64 * 2.0;
    println!(
        "cli x8: {} round trips in {el:.2} s: {:.0} changes/s, {:.2} changes per fsync",
        8 * per,
        changes / el,
        changes / el / fsync
    );
}
