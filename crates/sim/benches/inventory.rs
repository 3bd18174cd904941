//! Inventory of a simulated host with 8 PFs x 128 VFs (1024 VFs).
//!
//! `cargo bench -p vfpool-sim --bench inventory`. Reports the wall time of
//! `Inventory::scan` (median of 50 runs, warm page cache), the sysfs reads per VF, and the
//! same tree read by a floor: one `read_dir` per directory and one read per attribute the
//! inventory needs, with no parsing or allocation of results. The ratio says how close the
//! inventory is to the cost of the bare system calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpool_host::split::{self, SplitOptions};
use vfpool_host::{Inventory, Sysfs};
use vfpool_sim::{HostSpec, SimHost};

const RUNS: usize = 50;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The floor: the same entries the inventory reads (class of every function; the listing,
/// ids, driver, NUMA node, IOMMU group, SR-IOV counts and geometry and netdev attributes of a
/// PF; the listing, driver, IOMMU group and netdev address of a VF), read on one thread with
/// no parsing.
fn floor(sys: &Path) -> usize {
    let mut n = 0;
    let read = |p: &Path| std::fs::read(p).map(|b| b.len()).unwrap_or(0);
    let link = |p: &Path| {
        std::fs::read_link(p)
            .map(|t| t.as_os_str().len())
            .unwrap_or(0)
    };
    let devices = sys.join("bus/pci/devices");
    for e in std::fs::read_dir(&devices).unwrap().flatten() {
        let d = e.path();
        n += read(&d.join("class"));
        let entries: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        let has = |s: &str| entries.iter().any(|e| e == s);
        if !has("physfn") {
            for a in [
                "vendor",
                "device",
                "numa_node",
                "sriov_totalvfs",
                "sriov_numvfs",
                "sriov_drivers_autoprobe",
                "sriov_offset",
                "sriov_stride",
            ] {
                if has(a) {
                    n += read(&d.join(a));
                }
            }
        }
        for l in ["driver", "iommu_group"] {
            if has(l) {
                n += link(&d.join(l));
            }
        }
        if has("net") {
            for nd in std::fs::read_dir(d.join("net")).unwrap().flatten() {
                n += read(&nd.path().join("address"));
                if !has("physfn") {
                    for a in ["operstate", "speed", "mtu", "type"] {
                        n += read(&nd.path().join(a));
                    }
                }
            }
        }
    }
    n
}

fn main() {
    // sysfs lives in memory (kernfs); tmpfs is the closest stand-in.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let sim = SimHost::open_or_create(dir.path(), &HostSpec::large(8, 128)).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    let inv = Inventory::scan(&fs).unwrap();
    let work: Vec<_> = inv.nics.iter().map(|n| (n.clone(), 128)).collect();
    for r in split::split_many(&fs, &work, &SplitOptions::default(), &|_, _, _| {}) {
        r.unwrap();
    }

    let mut times = Vec::new();
    let mut reads = 0;
    let mut vfs = 0;
    for _ in 0..RUNS {
        let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
        let t = Instant::now();
        let inv = Inventory::scan(&fs).unwrap();
        times.push(t.elapsed());
        reads = fs.reads();
        vfs = inv.nics.iter().map(|n| n.vfs.len()).sum::<usize>();
    }
    let scan = median(times);
    let mut ftimes = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        std::hint::black_box(floor(&sim.paths().sys));
        ftimes.push(t.elapsed());
    }
    let fl = median(ftimes);
    println!("inventory: 8 PFs x 128 VFs = {vfs} VFs");
    println!(
        "Inventory::scan  median {:>8.2} ms  ({RUNS} runs)",
        scan.as_secs_f64() * 1e3
    );
    println!(
        "floor (raw reads) median {:>8.2} ms",
        fl.as_secs_f64() * 1e3
    );
    println!(
        "ratio scan/floor {:.2}",
        scan.as_secs_f64() / fl.as_secs_f64()
    );
    println!(
        "sysfs reads {reads} total, {:.2} per VF",
        reads as f64 / vfs as f64
    );
}
