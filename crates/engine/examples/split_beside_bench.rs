//! Does a split of one NIC slow acquires on another? Acquire + release round trips on a
//! pool of em2 (the demo host's second 82599 port), timed alone and while another engine
//! splits em1 over and over (each split destroys and re-creates em1's VFs under em1's
//! exclusive lock; em2's acquires take em2's lock only). Each figure is measured three
//! times, alternating, and the medians are compared.
//!
//! ```text
//! cargo run --release -p vfpool-engine --example split_beside_bench -- [DIR] [ROUNDS]
//! ```
//!
//! DIR holds the ledger (default /tmp: the disk); the simulated host lives on /dev/shm
//! (sysfs is in memory on a real host).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vfpool_engine::{AcquireRequest, Engine, Policy, PoolSelector, ReleaseTarget, SplitRequest};
use vfpool_host::Sysfs;
use vfpool_sim::{HostSpec, SimHost, SimNetOps};

fn engine(state: &Path, sim: &SimHost) -> Engine {
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    Engine::open(state, fs, Arc::new(SimNetOps::new(sim.root())))
        .unwrap()
        .with_split_settle(Duration::ZERO)
}

fn split(e: &mut Engine, nic: &str, vfs: u32) {
    let out = e
        .split_nics(
            &SplitRequest {
                nics: vec![nic.into()],
                vfs: vfs.to_string(),
                autoprobe: None,
                timeout: Duration::from_secs(60),
                force: false,
                keep_link: false,
            },
            &|_, _, _| {},
        )
        .unwrap();
    assert!(out.failed.is_empty(), "{:?}", out.failed);
}

/// Round trips per second on em2's pool over `rounds`.
fn round_trips(e: &mut Engine, rounds: usize, tag: &str) -> f64 {
    let start = Instant::now();
    for i in 0..rounds {
        let owner = format!("{tag}-{i}");
        let mut r = AcquireRequest::new("e2", &owner);
        r.settings.vlan = Some(10);
        e.acquire(&r).unwrap();
        e.release(&ReleaseTarget::Owner(owner)).unwrap();
    }
    rounds as f64 / start.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/tmp".into());
    let rounds: usize = args.next().map(|r| r.parse().unwrap()).unwrap_or(300);
    let state = tempfile::tempdir_in(&dir).unwrap();
    let hosts = tempfile::tempdir_in("/dev/shm").unwrap();
    let sim = SimHost::open_or_create(hosts.path(), &HostSpec::demo()).unwrap();
    let mut e = engine(state.path(), &sim);
    split(&mut e, "em2", 16);
    split(&mut e, "em1", 16);
    e.pool_create(
        "e2",
        vec!["em2".parse::<PoolSelector>().unwrap()],
        Policy::FirstFit,
    )
    .unwrap();
    round_trips(&mut e, 20, "warm");

    let (mut alone, mut beside, mut splits_per_s) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..3 {
        alone.push(round_trips(&mut e, rounds, &format!("a{run}")));
        // Another engine (as another process would be) splits em1 in a loop meanwhile.
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let splitter = {
            let (stop, done) = (stop.clone(), done.clone());
            let (st, sim) = (state.path().to_owned(), sim.clone());
            std::thread::spawn(move || {
                let mut s = engine(&st, &sim);
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let n = if done.load(Ordering::Relaxed) % 2 == 0 {
                        8
                    } else {
                        16
                    };
                    split(&mut s, "em1", n);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                start.elapsed()
            })
        };
        // Let the splitter start.
        while done.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = done.load(Ordering::Relaxed);
        let t = Instant::now();
        beside.push(round_trips(&mut e, rounds, &format!("b{run}")));
        let secs = t.elapsed().as_secs_f64();
        splits_per_s.push((done.load(Ordering::Relaxed) - before) as f64 / secs);
        stop.store(true, Ordering::Relaxed);
        splitter.join().unwrap();
        println!(
            "run {run}: alone {:.0} round trips/s, beside em1 splits {:.0} round trips/s ({:.1} splits/s)",
            alone[run], beside[run], splits_per_s[run]
        );
    }
    let (a, b) = (median(&mut alone), median(&mut beside));
    println!(
        "median: alone {a:.0}/s, beside splits {b:.0}/s, ratio {:.2}; em1 split {:.1} times/s meanwhile",
        b / a,
        median(&mut splits_per_s)
    );
}
