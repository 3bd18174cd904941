//! The host crate over the simulated host: inventory, split/restore and their errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use vfpool_host::split::{self, SplitOptions};
use vfpool_host::{Found, HostError, Inventory, Sysfs};
use vfpool_model::{NicState, PciAddr};
use vfpool_sim::{HostSpec, SimHost};

fn demo() -> (tempfile::TempDir, SimHost, Sysfs) {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimHost::open_or_create(dir.path(), &HostSpec::demo()).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    (dir, sim, fs)
}

fn fast() -> SplitOptions {
    SplitOptions {
        timeout: Duration::from_secs(5),
        ..SplitOptions::default()
    }
}

fn pf(fs: &Sysfs, name: &str) -> vfpool_host::Nic {
    Inventory::scan(fs)
        .unwrap()
        .find_sriov_pf(name)
        .unwrap()
        .clone()
}

#[test]
fn demo_inventory_has_the_seed_server() {
    let (_d, _sim, fs) = demo();
    let inv = Inventory::scan(&fs).unwrap();
    let names: Vec<&str> = inv.nics.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "eno1",
            "eno49",
            "eno50",
            "eno51",
            "eno52",
            "em1",
            "em2",
            "ens1f0np0",
            "ens1f1np1"
        ]
    );
    let eno49 = &inv.nics[1];
    assert_eq!(eno49.pci, PciAddr::new(0, 3, 0, 0));
    assert_eq!(eno49.driver.as_deref(), Some("igb"));
    assert_eq!(eno49.model, "I350 Gigabit Network Connection");
    assert_eq!(
        (eno49.total_vfs, eno49.num_vfs, eno49.state),
        (7, 0, NicState::Virtualizable)
    );
    assert_eq!(eno49.speed, Some(1000));
    assert_eq!(eno49.numa_node, Some(0));
    assert_eq!(eno49.autoprobe, Some(true));
    assert_eq!(inv.nics[0].state, NicState::Unvirtualizable);
    assert_eq!(inv.nics[5].total_vfs, 63);
    assert_eq!(inv.nics[7].total_vfs, 127);
    assert_eq!(inv.nics[7].numa_node, Some(1));
}

#[test]
fn split_creates_vfs_like_the_kernel() {
    let (_d, _sim, fs) = demo();
    let nic = pf(&fs, "eno49");
    let rep = split::split(&fs, &nic, 7, &fast(), &|_, _| {}).unwrap();
    assert!(rep.changed);
    let nic = pf(&fs, "eno49");
    assert_eq!(nic.state, NicState::Virtualized);
    assert_eq!(nic.vfs.len(), 7);
    // I350: offset 128, stride 4.
    assert_eq!(nic.vfs[0].pci.to_string(), "0000:03:10.0");
    assert_eq!(nic.vfs[1].pci.to_string(), "0000:03:10.4");
    assert!(
        nic.vfs
            .iter()
            .all(|v| v.driver.as_deref() == Some("igbvf") && v.netdev.is_some())
    );
    // The VF is found by netdev and by address, and is not a PF.
    let inv = Inventory::scan(&fs).unwrap();
    assert!(matches!(inv.find("eno49v3").unwrap(), Found::Vf(_, v) if v.index == 3));
    assert!(matches!(inv.find("0000:03:10.4").unwrap(), Found::Vf(_, v) if v.index == 1));
    let err = inv.find_sriov_pf("eno49v3").unwrap_err();
    assert_eq!(
        err.to_string(),
        "NIC 'eno49v3' is a VF (0000:03:11.4) of eno49; a PF is needed"
    );
}

#[test]
fn changing_a_nonzero_count_goes_through_zero() {
    let (_d, _sim, fs) = demo();
    let nic = pf(&fs, "em1");
    split::split(&fs, &nic, 10, &fast(), &|_, _| {}).unwrap();
    // A direct write from 10 to 3 is what the kernel refuses.
    let err = fs.write(&nic.dir.join("sriov_numvfs"), "3").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(16));
    let rep = split::split(&fs, &pf(&fs, "em1"), 3, &fast(), &|_, _| {}).unwrap();
    assert_eq!((rep.previous, rep.num_vfs), (10, 3));
    assert_eq!(pf(&fs, "em1").vfs.len(), 3);
    // The same count again changes nothing.
    let rep = split::split(&fs, &pf(&fs, "em1"), 3, &fast(), &|_, _| {}).unwrap();
    assert!(!rep.changed);
}

#[test]
fn autoprobe_off_leaves_vfs_without_driver_and_plain_bind_is_enodev() {
    let (_d, _sim, fs) = demo();
    let opts = SplitOptions {
        autoprobe: Some(false),
        ..fast()
    };
    split::split(&fs, &pf(&fs, "eno50"), 4, &opts, &|_, _| {}).unwrap();
    let nic = pf(&fs, "eno50");
    assert_eq!(nic.autoprobe, Some(false));
    assert!(
        nic.vfs
            .iter()
            .all(|v| v.driver.is_none() && v.netdev.is_none())
    );
    let vf = nic.vfs[0].pci.to_string();
    let err = fs
        .write(&fs.path("bus/pci/drivers/igbvf/bind"), &vf)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(19));
    // driver_override + drivers_probe is the way (FINDINGS.md).
    fs.write(
        &fs.path(format!("bus/pci/devices/{vf}/driver_override")),
        "vfio-pci",
    )
    .unwrap();
    fs.write(&fs.path("bus/pci/drivers_probe"), &vf).unwrap();
    let nic = pf(&fs, "eno50");
    assert_eq!(nic.vfs[0].driver.as_deref(), Some("vfio-pci"));
    assert_eq!(nic.vfs[0].netdev, None);
}

#[test]
fn bad_counts_and_nics_are_refused_before_any_write() {
    let (_d, _sim, fs) = demo();
    let nic = pf(&fs, "eno49");
    for bad in ["0", "8", "x", "-1", ""] {
        let err = split::check_count(&nic, bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid --vfs '{bad}' for NIC eno49: allowed 1..=7 (its sriov_totalvfs)")
        );
    }
    let err = split::split(&fs, &nic, 8, &fast(), &|_, _| {}).unwrap_err();
    assert!(matches!(err, HostError::VfCountOutOfRange { total: 7, .. }));
    assert_eq!(pf(&fs, "eno49").num_vfs, 0);
    let inv = Inventory::scan(&fs).unwrap();
    assert!(matches!(
        inv.find_sriov_pf("eno1"),
        Err(HostError::NotSriov { .. })
    ));
    let err = inv.find_sriov_pf("nope").unwrap_err().to_string();
    assert!(
        err.starts_with("unknown NIC 'nope': no network PCI function"),
        "{err}"
    );
    assert!(matches!(
        inv.find_sriov_pf("bad/name"),
        Err(HostError::Invalid(_))
    ));
}

#[test]
fn kernel_errors_are_explained_and_nothing_is_recorded_as_good() {
    let (_d, sim, fs) = demo();
    split::split(&fs, &pf(&fs, "em2"), 5, &fast(), &|_, _| {}).unwrap();
    let nic = pf(&fs, "em2");
    sim.inject_numvfs_error(nic.pci, "ENOMEM").unwrap();
    let err = split::split(&fs, &nic, 6, &fast(), &|_, _| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("setting em2 to 0 VFs failed: the kernel answered ENOMEM"),
        "{msg}"
    );
    assert!(msg.ends_with("the NIC is left at 5 VFs"), "{msg}");
    assert_eq!(pf(&fs, "em2").num_vfs, 5);

    let nic = pf(&fs, "eno51");
    sim.inject_numvfs_error(nic.pci, "EBUSY").unwrap();
    let err = split::split(&fs, &nic, 2, &fast(), &|_, _| {}).unwrap_err();
    assert!(err.to_string().contains("EBUSY"), "{err}");
    assert_eq!(pf(&fs, "eno51").num_vfs, 0);
}

#[test]
fn a_split_that_never_completes_times_out_and_is_undone() {
    let (_d, sim, fs) = demo();
    let nic = pf(&fs, "eno52");
    sim.inject_no_netdev(nic.pci).unwrap();
    let opts = SplitOptions {
        timeout: Duration::from_millis(300),
        ..fast()
    };
    let err = split::split(&fs, &nic, 3, &opts, &|_, _| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("eno52: 0 of 3 VFs ready after 300ms (missing: VF 0 netdev"),
        "{msg}"
    );
    assert!(msg.ends_with("the NIC was set back to 0 VFs"), "{msg}");
    assert_eq!(pf(&fs, "eno52").num_vfs, 0);
}

#[test]
fn restore_removes_every_trace() {
    let (d, _sim, fs) = demo();
    split::split(&fs, &pf(&fs, "ens1f1np1"), 127, &fast(), &|_, _| {}).unwrap();
    let nic = pf(&fs, "ens1f1np1");
    assert_eq!(nic.vfs.len(), 127);
    assert_eq!(nic.vfs[126].pci.to_string(), "0000:3b:1f.7");
    split::restore(&fs, &nic, Duration::from_secs(5)).unwrap();
    let nic = pf(&fs, "ens1f1np1");
    assert_eq!((nic.num_vfs, nic.vfs.len()), (0, 0));
    let devices = std::fs::read_dir(d.path().join("sys/bus/pci/devices"))
        .unwrap()
        .count();
    let nets = std::fs::read_dir(d.path().join("sys/class/net"))
        .unwrap()
        .count();
    // 4 root ports (buses 02, 03, 04, 3b) + 9 PFs; 9 PF netdevs + lo.
    assert_eq!((devices, nets), (13, 10));
}

#[test]
fn parallel_splits_of_several_nics() {
    let (_d, _sim, fs) = demo();
    let inv = Inventory::scan(&fs).unwrap();
    let work: Vec<_> = ["eno49", "eno50", "em1", "ens1f0np0"]
        .iter()
        .map(|n| (inv.find_sriov_pf(n).unwrap().clone(), 7))
        .collect();
    let results = split::split_many(&fs, &work, &fast(), &|_, _, _| {});
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let inv = Inventory::scan(&fs).unwrap();
    assert_eq!(inv.nics.iter().map(|n| n.num_vfs).sum::<u32>(), 28);
}

#[derive(Debug, Clone)]
enum Op {
    Split(usize, u32),
    Restore(usize),
    Apply,
}

const PFS: [&str; 4] = ["eno49", "em1", "ens1f0np0", "eno50"];
/// Their sriov_totalvfs (checked against the inventory in the test).
const TOTALS: [u32; 4] = [7, 63, 127, 7];

/// A split count for PF `i`: mostly valid (1..=total), sometimes 0 or above the total.
fn split_op() -> impl Strategy<Value = Op> {
    (0..PFS.len()).prop_flat_map(|i| {
        let total = TOTALS[i];
        prop_oneof![
            8 => 1..=total,
            1 => Just(0u32),
            1 => (total + 1)..=(total + 64),
        ]
        .prop_map(move |n| Op::Split(i, n))
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => split_op(),
        1 => (0..PFS.len()).prop_map(Op::Restore),
        1 => Just(Op::Apply),
    ]
}

/// PROPTEST_CASES when set (as proptest's own default honours it), else 24.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Whatever split / restore / apply do, the inventory equals the simulator's truth:
    /// the VF count each PF was last successfully set to, and one VF per index.
    #[test]
    fn inventory_follows_the_simulator(ops in proptest::collection::vec(op(), 1..12)) {
        let (d, _sim, fs) = demo();
        let mut truth = [0u32; PFS.len()];
        let mut desired = vfpool_host::persist::Desired { version: 1, ..Default::default() };
        for op in ops {
            match op {
                Op::Split(i, n) => {
                    let nic = pf(&fs, PFS[i]);
                    prop_assert_eq!(nic.total_vfs, TOTALS[i]);
                    let r = split::split(&fs, &nic, n, &fast(), &|_, _| {});
                    if n >= 1 && n <= nic.total_vfs {
                        prop_assert!(r.is_ok());
                        truth[i] = n;
                        desired.nics.insert(nic.pci, vfpool_host::persist::DesiredNic {
                            name: nic.name.clone(), num_vfs: n, autoprobe: true });
                    } else {
                        prop_assert!(r.is_err());
                    }
                }
                Op::Restore(i) => {
                    split::restore(&fs, &pf(&fs, PFS[i]), Duration::from_secs(5)).unwrap();
                    truth[i] = 0;
                }
                Op::Apply => {
                    let applied = vfpool_host::persist::apply(&fs, &desired, &fast()).unwrap();
                    prop_assert!(applied.iter().all(|a| a.result.is_ok()));
                    for (i, name) in PFS.iter().enumerate() {
                        let nic = pf(&fs, name);
                        if let Some(w) = desired.nics.get(&nic.pci) { truth[i] = w.num_vfs; }
                    }
                }
            }
            for (i, name) in PFS.iter().enumerate() {
                let nic = pf(&fs, name);
                prop_assert_eq!(nic.num_vfs, truth[i]);
                prop_assert_eq!(nic.vfs.len() as u32, truth[i]);
                for (j, vf) in nic.vfs.iter().enumerate() {
                    prop_assert_eq!(vf.index as usize, j);
                    let dir = d.path().join("sys/bus/pci/devices").join(vf.pci.to_string());
                    let physfn = std::fs::read_link(dir.join("physfn")).unwrap();
                    prop_assert_eq!(physfn.file_name().unwrap().to_string_lossy(), nic.pci.to_string());
                }
            }
        }
    }
}

#[test]
fn vf_addresses_come_from_the_links_when_offset_and_stride_disagree() {
    let (_d, _sim, fs) = demo();
    split::split(&fs, &pf(&fs, "eno49"), 3, &fast(), &|_, _| {}).unwrap();
    let nic = pf(&fs, "eno49");
    let truth: Vec<_> = nic.vfs.iter().map(|v| v.pci).collect();
    // A device whose sriov_offset lies: the virtfn links still tell the truth.
    std::fs::write(nic.dir.join("sriov_offset"), "130\n").unwrap();
    let again: Vec<_> = pf(&fs, "eno49").vfs.iter().map(|v| v.pci).collect();
    assert_eq!(again, truth);
}

#[test]
fn split_waits_for_the_pf_link_to_settle_when_it_was_up() {
    let (_d, _sim, fs) = demo();
    let nic = pf(&fs, "eno49");
    let oper = nic.dir.join("net/eno49/operstate");
    // Like igb: the PF's link drops after SR-IOV is enabled and comes back later.
    let flapper = {
        let oper = oper.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(&oper, "down\n").unwrap();
            std::thread::sleep(Duration::from_millis(400));
            std::fs::write(&oper, "up\n").unwrap();
        })
    };
    let opts = SplitOptions {
        settle: Duration::from_millis(300),
        ..fast()
    };
    let t = std::time::Instant::now();
    let rep = split::split(&fs, &nic, 2, &opts, &|_, _| {}).unwrap();
    flapper.join().unwrap();
    assert_eq!(rep.link_settled, Some(true));
    // Returned only after the link came back (at ~500 ms) and held for 300 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );

    // A PF whose link was down before is not waited for.
    let nic = pf(&fs, "eno50");
    std::fs::write(nic.dir.join("net/eno50/operstate"), "down\n").unwrap();
    let rep = split::split(&fs, &nic, 2, &opts, &|_, _| {}).unwrap();
    assert_eq!(rep.link_settled, None);

    // A link that never comes back: the split stands, reported unsettled at the deadline.
    let nic = pf(&fs, "eno51");
    let oper = nic.dir.join("net/eno51/operstate");
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(&oper, "down\n").unwrap();
    });
    let opts = SplitOptions {
        settle: Duration::from_millis(300),
        timeout: Duration::from_millis(700),
        ..fast()
    };
    let rep = split::split(&fs, &nic, 2, &opts, &|_, _| {}).unwrap();
    dropper.join().unwrap();
    assert_eq!(rep.link_settled, Some(false));
    assert_eq!(pf(&fs, "eno51").num_vfs, 2);
}

#[test]
fn a_bonded_pf_names_its_bond_and_host_check_warns_per_bonded_pf() {
    use vfpool_host::check::{self, Status};
    let dir = tempfile::tempdir().unwrap();
    let spec = HostSpec {
        bonds: vec![vfpool_sim::BondSpec {
            name: "bond0".into(),
            members: vec!["eno49".into(), "eno50".into()],
        }],
        ..HostSpec::demo()
    };
    let sim = SimHost::open_or_create(dir.path(), &spec).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    let inv = Inventory::scan(&fs).unwrap();
    let bond = |n: &str| inv.nics.iter().find(|x| x.name == n).unwrap().bond.clone();
    assert_eq!(bond("eno49").as_deref(), Some("bond0"));
    assert_eq!(bond("eno50").as_deref(), Some("bond0"));
    assert_eq!(bond("eno51"), None);
    // The bond itself is a netdev, not a NIC of the inventory.
    assert!(inv.nics.iter().all(|n| n.name != "bond0"));
    assert!(
        dir.path()
            .join("sys/class/net/bond0/bonding/slaves")
            .exists()
    );
    assert_eq!(
        std::fs::read_link(dir.path().join("sys/class/net/eno49/master"))
            .unwrap()
            .file_name()
            .unwrap(),
        "bond0"
    );
    assert!(
        std::fs::canonicalize(dir.path().join("sys/class/net/eno49/master"))
            .unwrap()
            .ends_with("devices/virtual/net/bond0")
    );
    let r = check::run(&sim.paths(), &fs, &dir.path().join("root")).unwrap();
    let bonds: Vec<_> = r.checks.iter().filter(|c| c.name == "bond").collect();
    assert_eq!(bonds.len(), 2, "{:?}", r.checks);
    assert_eq!(bonds[0].status, Status::Warn);
    assert_eq!(
        bonds[0].detail,
        "eno49 is a member of bond bond0: VF NICs and vNICs on it may not reach each other"
    );
    assert!(bonds[0].remedy.contains("split only one of them"));
    // A bond member still splits.
    split::split(&fs, &pf(&fs, "eno49"), 2, &fast(), &|_, _| {}).unwrap();
    assert_eq!(pf(&fs, "eno49").bond.as_deref(), Some("bond0"));
    // The demo host has no bond.
    let (_d, sim, fs) = demo();
    let r = check::run(&sim.paths(), &fs, &sim.root().join("root")).unwrap();
    assert!(r.checks.iter().all(|c| c.name != "bond"));
}

#[test]
fn host_check_tells_iommu_enabled_from_ready_and_says_reboot_pending() {
    use vfpool_host::check::{self, Status};
    use vfpool_host::iommu::{self, EnableRequest, IommuHost};
    let status = |r: &check::Report, n: &str| {
        r.checks
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("{n} missing from {:?}", r.checks))
            .clone()
    };
    // The demo: /etc/default/grub asks for it and the running kernel has it.
    let (_d, sim, fs) = demo();
    let root = sim.root().join("root");
    let r = check::run(&sim.paths(), &fs, &root).unwrap();
    assert_eq!(status(&r, "iommu-enabled").status, Status::Pass);
    assert_eq!(
        status(&r, "iommu-enabled").detail,
        "next boot: intel_iommu=on in /etc/default/grub (grub (update-grub))"
    );
    assert_eq!(status(&r, "iommu-ready").status, Status::Pass);
    let st = r.iommu.clone().unwrap();
    assert_eq!(
        (st.enabled, st.ready, st.reboot_pending),
        (true, true, false)
    );
    assert!(r.vm_ready);

    // A host that never had it: neither.
    let dir = tempfile::tempdir().unwrap();
    let spec = HostSpec {
        iommu: false,
        cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet".into(),
        grub_cmdline_default: Some("quiet".into()),
        ..HostSpec::demo()
    };
    let sim = SimHost::open_or_create(dir.path(), &spec).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    let root = dir.path().join("root");
    let r = check::run(&sim.paths(), &fs, &root).unwrap();
    assert_eq!(status(&r, "iommu-enabled").status, Status::Fail);
    assert_eq!(status(&r, "iommu-ready").status, Status::Fail);
    let st = r.iommu.clone().unwrap();
    assert_eq!(
        (st.enabled, st.ready, st.reboot_pending),
        (false, false, false)
    );

    // Enabled, not rebooted: pending.
    let paths = sim.paths();
    let h = IommuHost {
        root: &root,
        paths: &paths,
        fs: &fs,
        run_commands: false,
    };
    iommu::enable(&h, &EnableRequest::default()).unwrap();
    let r = check::run(&sim.paths(), &fs, &root).unwrap();
    let c = status(&r, "iommu-enabled");
    assert_eq!(c.status, Status::Warn);
    assert!(
        c.detail.starts_with(
            "reboot pending: next boot: intel_iommu=on in /etc/default/grub.d/vfpool-iommu.cfg"
        ),
        "{}",
        c.detail
    );
    assert!(c.remedy.contains("VT-d / AMD-Vi"), "{}", c.remedy);
    let st = r.iommu.clone().unwrap();
    assert_eq!(
        (st.enabled, st.ready, st.reboot_pending),
        (true, false, true)
    );
    assert!(!r.vm_ready);

    // Ready but not enabled for the next boot: a warning.
    let (_d, sim, fs) = demo();
    std::fs::write(
        sim.root().join("root/etc/default/grub"),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
    )
    .unwrap();
    let r = check::run(&sim.paths(), &fs, &sim.root().join("root")).unwrap();
    let c = status(&r, "iommu-enabled");
    assert_eq!(c.status, Status::Warn);
    assert!(
        c.detail
            .starts_with("the running kernel has the IOMMU, but"),
        "{}",
        c.detail
    );
    assert_eq!(c.remedy, "keep it across reboots: vfpool host iommu enable");
}

/// A reader never sees an attribute half-written (a kernel's sysfs read gives the old value
/// or the new one): the REST API's fuzz run found `sriov_numvfs` read as '' while a split
/// wrote it.
#[test]
fn readers_never_see_an_attribute_half_written() {
    let (_d, _sim, fs) = demo();
    let nic = pf(&fs, "eno50");
    let path = nic.dir.join("sriov_numvfs");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v = std::fs::read_to_string(&path).unwrap();
                assert!(["0\n", "1\n"].contains(&v.as_str()), "read {v:?}");
                reads += 1;
            }
            reads
        })
    };
    for _ in 0..100 {
        fs.write(&path, "1").unwrap();
        fs.write(&path, "0").unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}
