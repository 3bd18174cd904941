//! The lease ledger's benchmark: acquire+release round trips in-process and through the CLI,
//! one process at a time and 8 at once, the ledger alone, and this disk's fsync rate
//! measured right before and after each, on the same filesystem.
//!
//! ```text
//! cargo build --release -p vfpool
//! cargo run --release -p vfpool-engine --example ledger_bench -- target/release/vfpool [DIR]
//! ```
//!
//! The disk of a shared virtual machine changes speed from one second to the next, so every
//! measurement is taken three times, each against the fsync rate measured around it, and
//! the median ratio is reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpool_engine::{
    AcquireRequest, Applied, Durability, Engine, Lease, LeaseState, Ledger, Original, OwnerKind,
    Policy, PoolSelector, ReleaseTarget,
};
use vfpool_host::split::{self, SplitOptions};
use vfpool_host::{Inventory, Sysfs};
use vfpool_model::PciAddr;
use vfpool_sim::{HostSpec, SimHost, SimNetOps};

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

/// The disk's durable commits per second: 4 KiB written in place into a preallocated file,
/// then `fdatasync`, for `for_`. That is the cheapest durable write there is (no block
/// allocation, no metadata to journal), so it is the physical limit a commit is held to;
/// appending with `fsync` (`append`) is slower on ext4 and is reported beside it.
fn fsync_rate(dir: &Path, for_: Duration, append: bool) -> f64 {
    use std::os::unix::fs::FileExt;
    const SLOTS: u64 = 256;
    let p = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&p).unwrap();
    let buf = [7u8; 4096];
    if !append {
        for _ in 0..SLOTS {
            f.write_all(&buf).unwrap();
        }
        f.sync_all().unwrap();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < for_ {
        if append {
            f.write_all(&buf).unwrap();
            f.sync_all().unwrap();
        } else {
            f.write_all_at(&buf, (n % SLOTS) * 4096).unwrap();
            f.sync_data().unwrap();
        }
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

/// `n` round trips of the ledger's four transactions (no host work) on the ledger at `db`,
/// owners named `PREFIX0`, `PREFIX1` ..., all on VF address number `slot`.
fn ledger_round_trips(db: &Path, prefix: &str, slot: u32, n: usize) {
    let mut ledger = Ledger::open(db).unwrap();
    let me = (i64::from(std::process::id()), 1u64);
    for i in 0..n {
        let mut l = Lease {
            id: 0,
            owner: format!("{prefix}{i}"),
            owner_kind: OwnerKind::Manual,
            pool: "gold".into(),
            vf_pci: PciAddr::new(0, 4, 0x10, 0).offset_by(slot).unwrap(),
            pf: "em1".into(),
            pf_pci: PciAddr::new(0, 4, 0, 0),
            vf_index: 0,
            netdev: None,
            netns: None,
            netns_id: None,
            ifname: None,
            created: 0,
            state: LeaseState::Acquiring,
            applied: Applied::default(),
            original: Original::default(),
            pid: Some(me),
        };
        l.id = ledger
            .write(Durability::Synced, |tx| tx.insert_lease(&l))
            .unwrap();
        let id = l.id;
        ledger
            .write(Durability::Unsynced, |tx| {
                tx.transition(id, &[LeaseState::Acquiring], LeaseState::Active, None)
            })
            .unwrap();
        ledger
            .write(Durability::Unsynced, |tx| {
                tx.transition(id, &[LeaseState::Active], LeaseState::Releasing, Some(me))
            })
            .unwrap();
        ledger
            .write(Durability::Synced, |tx| tx.delete_lease(id))
            .unwrap();
    }
}

/// `n` acquire (`--vlan 10`) + release round trips from pool `gold`, owners `PREFIX0` ...
fn engine_round_trips(e: &mut Engine, prefix: &str, n: usize) {
    for i in 0..n {
        let owner = format!("{prefix}{i}");
        let mut q = AcquireRequest::new("gold", &owner);
        q.settings.vlan = Some(10);
        e.acquire(&q).unwrap();
        e.release(&ReleaseTarget::Owner(owner)).unwrap();
    }
}

/// One of the concurrent in-process workers: `worker STATE SIMROOT ROUNDS PREFIX ID`.
fn worker(mut args: impl Iterator<Item = String>) {
    let state = PathBuf::from(args.next().unwrap());
    let root = PathBuf::from(args.next().unwrap());
    let rounds: usize = args.next().unwrap().parse().unwrap();
    let prefix = args.next().unwrap();
    let id = format!("{prefix}-{}", args.next().unwrap());
    let sim = SimHost::open_or_create(&root, &HostSpec::demo()).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    let net = Arc::new(SimNetOps::new(sim.root()));
    let mut e = Engine::open(&state, fs, net).unwrap();
    engine_round_trips(&mut e, &format!("w{id}-"), rounds);
}

/// Runs `work` (which makes `changes` changes) between two one-second fsync probes; returns
/// (changes/s, changes per fsync, CPU ms per change).
fn measured(dir: &Path, changes: f64, work: impl FnOnce()) -> (f64, f64, f64) {
    let before = fsync_rate(dir, Duration::from_secs(1), false);
    let cpu = cpu_seconds();
    let start = Instant::now();
    work();
    let el = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let after = fsync_rate(dir, Duration::from_secs(1), false);
    let rate = changes / el;
    (
        rate,
        rate / ((before + after) / 2.0),
        cpu * 1000.0 / changes,
    )
}

/// `n` processes of this program, each running `args` then its number, all waited for.
fn spawn_all(n: usize, args: &[String]) {
    let me = std::env::current_exe().unwrap();
    let kids: Vec<_> = (0..n)
        .map(|t| {
            Command::new(&me)
                .args(args)
                .arg(t.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
}

fn report(what: &str, runs: &mut [(f64, f64, f64)]) {
    runs.sort_by(|a, b| a.1.total_cmp(&b.1));
    let m = runs[runs.len() / 2];
    let ratios: Vec<String> = runs.iter().map(|r| format!("{:.2}", r.1)).collect();
    println!(
        "{what:<40} {:>6.0} changes/s  {:>5.2} changes per fsync (runs: {})  {:.2} ms CPU per change",
        m.0,
        m.1,
        ratios.join(" "),
        m.2
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    match std::env::args().nth(1).as_deref() {
        Some("worker") => {
            args.next();
            return worker(args);
        }
        Some("ledger-worker") => {
            let a: Vec<String> = args.skip(1).collect();
            return ledger_round_trips(
                Path::new(&a[0]),
                &format!("x{}-", a[2]),
                a[2].parse().unwrap(),
                a[1].parse().unwrap(),
            );
        }
        Some("cli-worker") => {
            let a: Vec<String> = args.skip(1).collect();
            let cli: Vec<PathBuf> = a[2..a.len() - 1].iter().map(PathBuf::from).collect();
            for i in 0..a[1].parse::<usize>().unwrap() {
                cli_round_trip(Path::new(&a[0]), &cli, &format!("t{}-{i}", a[a.len() - 1]));
            }
            return;
        }
        Some("spawn-worker") => {
            // The floor of a process-per-change design: start a program that does nothing.
            let n: usize = args.nth(1).unwrap().parse().unwrap();
            for _ in 0..n {
                assert!(Command::new("true").status().unwrap().success());
            }
            return;
        }
        _ => {}
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
    let fsync = fsync_rate(dir, Duration::from_secs(2), false);
    let append = fsync_rate(dir, Duration::from_secs(2), true);
    println!(
        "fsync: {fsync:.0} durable writes/s (4 KiB in place + fdatasync, {}); appending + fsync: {append:.0}/s",
        dir.display()
    );

    // One simulated host for the in-process engines, em1 split to 63 VFs in pool gold.
    let root = hosts.join("inproc");
    std::fs::create_dir_all(&root).unwrap();
    let sim = SimHost::open_or_create(&root, &HostSpec::demo()).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    let inv = Inventory::scan(&fs).unwrap();
    let nic = inv.find_sriov_pf("em1").unwrap().clone();
    split::split(&fs, &nic, 63, &SplitOptions::default(), &|_, _| {}).unwrap();
    let net = Arc::new(SimNetOps::new(sim.root()));
    let state = dir.join("inproc");
    let mut e = Engine::open(&state, fs, net).unwrap();
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
        "full host scan (inventory + health, 63 VFs): {:.2} ms (an acquire reads its pool's PF and one VF instead)",
        start.elapsed().as_secs_f64() * 1000.0 / 20.0
    );

    let env_n = |k: &str, d: usize| -> usize {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env_n("BENCH_N", 300);
    let per = env_n("BENCH_PER", 60);
    let rounds = env_n("BENCH_ROUNDS", 3);
    let (mut serial, mut x8, mut lserial, mut lx8) = (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        serial.push(measured(dir, 2.0 * n as f64, || {
            engine_round_trips(&mut e, &format!("r{r}-"), n)
        }));
        if std::env::var_os("BENCH_ONLY_SERIAL").is_some() {
            continue;
        }
        // 8 processes, each an in-process engine (the daemon, the CNI plugin and the CLI
        // side by side), on one ledger and one host.
        let worker_args: Vec<String> = vec![
            "worker".into(),
            state.display().to_string(),
            root.display().to_string(),
            per.to_string(),
            format!("r{r}"),
        ];
        x8.push(measured(dir, 2.0 * 8.0 * per as f64, || {
            spawn_all(8, &worker_args)
        }));
        let db = dir.join(format!("ledger-only-{r}.db"));
        lserial.push(measured(dir, 2.0 * 500.0, || {
            ledger_round_trips(&db, "l", 0, 500)
        }));
        let db = dir.join(format!("ledger-x8-{r}.db"));
        let largs: Vec<String> = vec![
            "ledger-worker".into(),
            db.display().to_string(),
            "250".into(),
        ];
        lx8.push(measured(dir, 2.0 * 8.0 * 250.0, || spawn_all(8, &largs)));
    }
    println!(
        "medians of {rounds} runs; a round trip is an acquire (--vlan 10) and a release: 2 changes"
    );
    report("in-process, 1 process", &mut serial);
    if std::env::var_os("BENCH_ONLY_SERIAL").is_some() {
        return;
    }
    report("in-process, 8 processes", &mut x8);
    report("ledger only, 1 process", &mut lserial);
    report("ledger only, 8 processes", &mut lx8);

    // Through the CLI: one process per acquire or release.
    let cli = demo_state(dir, hosts, "cli", &vfpool);
    let m = env_n("BENCH_CLI", 40);
    let mut c1 = vec![measured(dir, 2.0 * m as f64, || {
        for i in 0..m {
            cli_round_trip(&vfpool, &cli, &format!("c{i}"));
        }
    })];
    let cli8 = demo_state(dir, hosts, "cli8", &vfpool);
    let mut cargs: Vec<String> = vec![
        "cli-worker".into(),
        vfpool.display().to_string(),
        (m / 4).to_string(),
    ];
    cargs.extend(cli8.iter().map(|p| p.display().to_string()));
    let mut c8 = vec![measured(dir, 2.0 * 8.0 * (m / 4) as f64, || {
        spawn_all(8, &cargs)
    })];
    // The same number of `true` processes, 8 at a time: what the CLI's figure would be if
    // vfpool did nothing at all.
    let sargs: Vec<String> = vec!["spawn-worker".into(), (2 * (m / 4)).to_string()];
    let mut s8 = vec![measured(dir, 2.0 * 8.0 * (m / 4) as f64, || {
        spawn_all(8, &sargs)
    })];
    report("cli, 1 process at a time", &mut c1);
    report("cli, 8 at a time", &mut c8);
    report("`true` instead of vfpool, 8 at a time", &mut s8);
    println!(
        "cli, 8 at a time, against that floor: {:.2}",
        c8[0].0 / s8[0].0
    );
    // The floor of a CLI change: starting a process that does nothing.
    let start = Instant::now();
    for _ in 0..50 {
        assert!(
            Command::new(&vfpool)
                .arg("--version")
                .output()
                .unwrap()
                .status
                .success()
        );
    }
    let spawn = start.elapsed().as_secs_f64() / 50.0;
    let start = Instant::now();
    for _ in 0..50 {
        assert!(Command::new("true").status().unwrap().success());
    }
    let t = start.elapsed().as_secs_f64() / 50.0;
    println!(
        "process start: `vfpool --version` {:.2} ms, `true` {:.2} ms",
        spawn * 1000.0,
        t * 1000.0
    );
}
