//! The VM layer's benchmark (issue 12): start and stop of 100 VMs with one VF NIC each on the
//! demo host, per VM, against the bare lease path with the same VF settings, and through
//! libvirt's test driver.
//!
//! ```text
//! cargo run --release -p vfpool-engine --features libvirt-api --example vm_bench -- [DIR] [ROUNDS]
//! ```
//!
//! DIR holds the ledger (default /tmp: the disk); the simulated demo host lives on /dev/shm
//! (sysfs is in memory on a real host). Its ConnectX-5 port `ens1f0np0` is split into 100
//! VFs; L2 `vlan100` (VLAN 100, SR-IOV) and L3 `net1` on it; VMs `vm000`..`vm099` with one
//! VF NIC each (`l3=net1,sriov`) are created beforehand. Each round runs three blocks, in an
//! order that changes from round to round:
//!
//! - **bare**: 100 `acquire`s from the PF pool of `ens1f0np0` with a MAC, VLAN 100 and
//!   vfio-pci (what `vm_start` asks for a VF NIC), one owner each, then the 100 `release`s;
//! - **vm**: `vm_start` + `vm_domain_xml` of the 100 VMs, then `vm_stop` of each;
//! - **libvirt** (with the `libvirt-api` feature): the same, and each VM's XML defined and
//!   started in libvirt's `test:///default` driver after its start, destroyed and undefined
//!   before its stop; the libvirt calls are timed apart.
//!
//! Per VM: start = acquire (or vm_start + vm_domain_xml), stop = release (or vm_stop);
//! medians and p90 over every VM of every round, and CPU (user + system) per VM per block.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpool_engine::pools::pf_pool_name;
use vfpool_engine::{
    AcquireRequest, DriverChoice, Engine, L2Request, L3Request, ReleaseTarget, VmNicSpec,
};
use vfpool_host::Sysfs;
use vfpool_host::split::{self, SplitOptions};
use vfpool_model::{MacAddr, VfSettings};
use vfpool_sim::{HostSpec, SimHost, SimNetOps};

const VMS: usize = 100;
const PF: &str = "ens1f0np0";

fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let tv = |v: nix::sys::time::TimeVal| v.tv_sec() as f64 + v.tv_usec() as f64 / 1e6;
    tv(u.user_time()) + tv(u.system_time())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and p90 of `v` (sorted in place).
fn stats(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[(v.len() * 9 / 10).min(v.len() - 1)])
}

#[derive(Default)]
struct Samples {
    start: Vec<f64>,
    stop: Vec<f64>,
    total: Vec<f64>,
    /// CPU ms per VM, one per block.
    cpu: Vec<f64>,
}

impl Samples {
    fn push(&mut self, start: &[f64], stop: &[f64], cpu_s: f64) {
        self.start.extend_from_slice(start);
        self.stop.extend_from_slice(stop);
        self.total
            .extend(start.iter().zip(stop).map(|(a, b)| a + b));
        self.cpu.push(cpu_s * 1e3 / start.len() as f64);
    }
}

fn bare_block(e: &mut Engine, round: usize, s: &mut Samples) {
    let pool = pf_pool_name(PF);
    let (mut start, mut stop) = (Vec::new(), Vec::new());
    let cpu = cpu_seconds();
    for i in 0..VMS {
        let owner = format!("bare-{round}-{i}");
        let mut req = AcquireRequest::new(&pool, &owner);
        req.driver = Some(DriverChoice::VfioPci);
        req.settings = VfSettings {
            mac: Some(MacAddr([0x02, 0x42, 0, 0, 0, i as u8])),
            vlan: Some(100),
            ..VfSettings::default()
        };
        let t = Instant::now();
        e.acquire(&req).unwrap();
        start.push(ms(t.elapsed()));
    }
    for i in 0..VMS {
        let t = Instant::now();
        e.release(&ReleaseTarget::Owner(format!("bare-{round}-{i}")))
            .unwrap();
        stop.push(ms(t.elapsed()));
    }
    s.push(&start, &stop, cpu_seconds() - cpu);
}

fn vm_name(i: usize) -> String {
    format!("vm{i:03}")
}

/// Parts of `vm_start`, measured apart (no VM running): its free-VF check
/// (`l3_check_vf`, which scans the host's inventory) and `vm_show`.
#[derive(Default)]
struct Parts {
    check_vf: Vec<f64>,
    show: Vec<f64>,
    xml: Vec<f64>,
}

fn parts_block(e: &mut Engine, p: &mut Parts) {
    for i in 0..VMS {
        let t = Instant::now();
        assert_eq!(e.l3_check_vf("net1").unwrap().free, VMS);
        p.check_vf.push(ms(t.elapsed()));
        let t = Instant::now();
        e.vm_show(&vm_name(i)).unwrap();
        p.show.push(ms(t.elapsed()));
    }
}

fn vm_block(e: &mut Engine, s: &mut Samples, p: &mut Parts) {
    let (mut start, mut stop) = (Vec::new(), Vec::new());
    let cpu = cpu_seconds();
    for i in 0..VMS {
        let t = Instant::now();
        e.vm_start(&vm_name(i)).unwrap();
        let tx = Instant::now();
        let xml = e.vm_domain_xml(&vm_name(i)).unwrap();
        p.xml.push(ms(tx.elapsed()));
        start.push(ms(t.elapsed()));
        assert!(xml.contains(r#"<interface type="hostdev""#), "{xml}");
    }
    for i in 0..VMS {
        let t = Instant::now();
        e.vm_stop(&vm_name(i)).unwrap();
        stop.push(ms(t.elapsed()));
    }
    s.push(&start, &stop, cpu_seconds() - cpu);
}

#[cfg(feature = "libvirt-api")]
fn libvirt_block(
    e: &mut Engine,
    lv: &vfpool_libvirt::api::Libvirt,
    with: &mut Samples,
    alone: &mut Samples,
) {
    let (mut start, mut stop) = (Vec::new(), Vec::new());
    let (mut lv_start, mut lv_stop) = (Vec::new(), Vec::new());
    let mut lv_cpu = 0.0;
    let cpu = cpu_seconds();
    for i in 0..VMS {
        let name = vm_name(i);
        let t = Instant::now();
        e.vm_start(&name).unwrap();
        let xml = e.vm_domain_xml(&name).unwrap();
        let (t_lv, c_lv) = (Instant::now(), cpu_seconds());
        lv.define_xml(&name, &xml).unwrap();
        lv.start(&name).unwrap();
        lv_cpu += cpu_seconds() - c_lv;
        lv_start.push(ms(t_lv.elapsed()));
        start.push(ms(t.elapsed()));
    }
    for i in 0..VMS {
        let name = vm_name(i);
        let t = Instant::now();
        let c_lv = cpu_seconds();
        lv.destroy(&name).unwrap();
        lv.undefine(&name).unwrap();
        lv_cpu += cpu_seconds() - c_lv;
        lv_stop.push(ms(t.elapsed()));
        e.vm_stop(&name).unwrap();
        stop.push(ms(t.elapsed()));
    }
    with.push(&start, &stop, cpu_seconds() - cpu);
    alone.push(&lv_start, &lv_stop, lv_cpu);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/tmp".into());
    let rounds: usize = args.next().map(|r| r.parse().unwrap()).unwrap_or(5);
    let state = tempfile::tempdir_in(&dir).unwrap();
    let hosts = tempfile::tempdir_in("/dev/shm").unwrap();
    let sim = SimHost::open_or_create(hosts.path(), &HostSpec::demo()).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    {
        let inv = vfpool_host::Inventory::scan(&fs).unwrap();
        let nic = inv.find_sriov_pf(PF).unwrap().clone();
        let opts = SplitOptions {
            timeout: Duration::from_secs(30),
            ..SplitOptions::default()
        };
        split::split(&fs, &nic, VMS as u32, &opts, &|_, _| {}).unwrap();
    }
    let mut e = Engine::open(state.path(), fs, Arc::new(SimNetOps::new(sim.root()))).unwrap();
    e.l2_create(&L2Request {
        name: "vlan100".into(),
        nic: PF.into(),
        l2_type: None,
        vlan: Some(100),
        sriov: true,
    })
    .unwrap();
    e.l3_create(&L3Request {
        name: "net1".into(),
        l2: "vlan100".into(),
        cidr: "10.1.0.0/24".into(),
        gateway: "10.1.0.1".into(),
        range: None,
        dns: None,
    })
    .unwrap();
    let nic: VmNicSpec = "l3=net1,sriov".parse().unwrap();
    for i in 0..VMS {
        e.vm_create(&vm_name(i), std::slice::from_ref(&nic))
            .unwrap();
    }
    #[cfg(feature = "libvirt-api")]
    let lv = vfpool_libvirt::api::Libvirt::open("test:///default").unwrap();

    // Warm-up: one block of each, not counted.
    let mut scratch = Samples::default();
    bare_block(&mut e, usize::MAX, &mut scratch);
    vm_block(&mut e, &mut scratch, &mut Parts::default());
    #[cfg(feature = "libvirt-api")]
    libvirt_block(&mut e, &lv, &mut scratch, &mut Samples::default());

    let (mut bare, mut vm) = (Samples::default(), Samples::default());
    let mut parts = Parts::default();
    #[cfg(feature = "libvirt-api")]
    let (mut with_lv, mut lv_alone) = (Samples::default(), Samples::default());
    let blocks: usize = if cfg!(feature = "libvirt-api") { 3 } else { 2 };
    for round in 0..rounds {
        for k in 0..blocks {
            match (round + k) % blocks {
                0 => bare_block(&mut e, round, &mut bare),
                1 => vm_block(&mut e, &mut vm, &mut parts),
                #[cfg(feature = "libvirt-api")]
                _ => libvirt_block(&mut e, &lv, &mut with_lv, &mut lv_alone),
                #[cfg(not(feature = "libvirt-api"))]
                _ => unreachable!(),
            }
        }
        parts_block(&mut e, &mut parts);
        eprintln!("round {round} done");
    }
    // Nothing left behind: every VM stopped, no lease.
    assert!(e.leases().unwrap().is_empty());

    println!(
        "{rounds} rounds x {VMS} VMs, ledger in {dir}; ms per VM: median (p90); CPU ms per VM: median of blocks"
    );
    println!("| contender | start | stop | start + stop | CPU |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |name: &str, s: &mut Samples| {
        let (a, b, c, d) = (
            stats(&mut s.start),
            stats(&mut s.stop),
            stats(&mut s.total),
            stats(&mut s.cpu),
        );
        println!(
            "| {name} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2} |",
            a.0, a.1, b.0, b.1, c.0, c.1, d.0
        );
        (c.0, d.0)
    };
    let (bare_t, bare_c) = row("bare lease path (acquire / release)", &mut bare);
    let (vm_t, vm_c) = row("VM layer (vm_start + vm_domain_xml / vm_stop)", &mut vm);
    #[cfg(feature = "libvirt-api")]
    let lv_rows = Some((
        row(
            "VM layer + libvirt test driver (define + start / destroy + undefine)",
            &mut with_lv,
        ),
        row("libvirt test driver calls alone", &mut lv_alone),
    ));
    #[cfg(not(feature = "libvirt-api"))]
    let lv_rows: Option<((f64, f64), (f64, f64))> = None;
    println!(
        "VM layer / bare lease path: wall {:.2} ({vm_t:.2} / {bare_t:.2} ms), CPU {:.2} ({vm_c:.2} / {bare_c:.2} ms); VM layer's own cost {:+.2} ms wall per VM",
        vm_t / bare_t,
        vm_c / bare_c,
        vm_t - bare_t
    );
    let (c, v, x) = (
        stats(&mut parts.check_vf),
        stats(&mut parts.show),
        stats(&mut parts.xml),
    );
    println!(
        "parts, ms median (p90): l3_check_vf {:.2} ({:.2}), vm_show {:.2} ({:.2}), vm_domain_xml of a running VM {:.2} ({:.2})",
        c.0, c.1, v.0, v.1, x.0, x.1
    );
    if let Some(((wt, wc), (at, ac))) = lv_rows {
        println!(
            "with libvirt: {wt:.2} ms wall, {wc:.2} ms CPU per VM; the libvirt calls alone {at:.2} ms wall, {ac:.2} ms CPU"
        );
    }
}
