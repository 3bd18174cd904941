//! The `vfpool` binary on the simulated host: every host and nic command, its output

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
//! contract and its error texts.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

struct Demo {
    dir: tempfile::TempDir,
}

impl Demo {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vfpool"))
            .arg("--demo")
            .arg("--state")
            .arg(self.state())
            .args(args)
            .env_remove("VFPOOL_SYSFS_ROOT")
            .env_remove("VFPOOL_STATE")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vfpool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Runs a command that must fail; returns its one-line error.
    fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "vfpool {args:?} succeeded");
        let e = String::from_utf8(out.stderr).unwrap();
        assert_eq!(e.lines().count(), 1, "not one line: {e}");
        e.trim_end().to_owned()
    }

    fn num_vfs(&self, nic: &str) -> u64 {
        self.json(&["nic", "show", nic])["num_vfs"]
            .as_u64()
            .unwrap()
    }
}

#[test]
fn nic_list_json_contract() {
    let d = Demo::new();
    let v = d.json(&["nic", "list"]);
    let nics = v.as_array().unwrap();
    assert_eq!(nics.len(), 9);
    for key in [
        "name",
        "pci",
        "driver",
        "model",
        "state",
        "total_vfs",
        "num_vfs",
        "free_vfs",
        "numa_node",
    ] {
        assert!(nics.iter().all(|n| n.get(key).is_some()), "missing {key}");
    }
    let eno49 = nics.iter().find(|n| n["name"] == "eno49").unwrap();
    assert_eq!(eno49["pci"], "0000:03:00.0");
    assert_eq!(eno49["driver"], "igb");
    assert_eq!(eno49["state"], "virtualizable");
    assert_eq!(eno49["total_vfs"], 7);
    let eno1 = nics.iter().find(|n| n["name"] == "eno1").unwrap();
    assert_eq!(eno1["state"], "unvirtualizable");
    let table = d.ok(&["nic", "list"]);
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("em1 ") && l.contains("virtualizable") && l.contains("max 63"))
    );
}

#[test]
fn split_show_restore_round_trip_across_commands() {
    let d = Demo::new();
    let out = d.ok(&["nic", "split", "eno49", "em1", "--vfs", "7"]);
    assert!(out.contains("eno49 (0000:03:00.0): 7 VFs (was 0)"), "{out}");
    // The next command, given the same --state, sees the split.
    let v = d.json(&["nic", "show", "eno49"]);
    assert_eq!(v["state"], "virtualized");
    let vfs = v["vfs"].as_array().unwrap();
    assert_eq!(vfs.len(), 7);
    for key in ["index", "pci", "netdev", "driver"] {
        assert!(vfs.iter().all(|f| f.get(key).is_some()), "missing {key}");
    }
    assert_eq!(vfs[6]["pci"], "0000:03:13.0");
    assert_eq!(vfs[6]["driver"], "igbvf");
    // By PCI address too; then shrink through 0.
    assert_eq!(d.num_vfs("0000:04:00.0"), 7);
    d.ok(&["nic", "split", "em1", "--vfs", "3", "--autoprobe", "off"]);
    let v = d.json(&["nic", "show", "em1"]);
    assert_eq!(
        (v["num_vfs"].as_u64(), v["autoprobe"].as_bool()),
        (Some(3), Some(false))
    );
    assert!(
        v["vfs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["driver"].is_null())
    );
    let out = d.ok(&["nic", "restore", "eno49", "em1"]);
    assert!(out.contains("restored: 0 VFs (was 7)"), "{out}");
    assert_eq!(d.num_vfs("eno49"), 0);
}

#[test]
fn every_split_error_is_one_clear_line_and_changes_nothing() {
    let d = Demo::new();
    assert_eq!(
        d.err(&["nic", "split", "eno49", "--vfs", "8"]),
        "error: invalid --vfs '8' for NIC eno49: allowed 1..=7 (its sriov_totalvfs)"
    );
    assert_eq!(
        d.err(&["nic", "split", "eno49", "--vfs", "seven"]),
        "error: invalid --vfs 'seven' for NIC eno49: allowed 1..=7 (its sriov_totalvfs)"
    );
    assert!(
        d.err(&["nic", "split", "eno49", "--vfs", "0"])
            .contains("allowed 1..=7")
    );
    assert!(
        d.err(&["nic", "split", "eth9", "--vfs", "1"])
            .starts_with("error: unknown NIC 'eth9': no network PCI function has that netdev name or address (known: eno1, eno49")
    );
    assert_eq!(
        d.err(&["nic", "split", "eno1", "--vfs", "1"]),
        "error: NIC 'eno1' (0000:02:00.0) has no SR-IOV capability (sriov_totalvfs is absent or 0)"
    );
    // A bad NIC among good ones: none is split.
    assert!(
        d.err(&["nic", "split", "eno49", "eno1", "--vfs", "2"])
            .contains("eno1")
    );
    assert_eq!(d.num_vfs("eno49"), 0);
    d.ok(&["nic", "split", "eno49", "--vfs", "2"]);
    assert_eq!(
        d.err(&["nic", "split", "eno49v1", "--vfs", "1"]),
        "error: NIC 'eno49v1' is a VF (0000:03:10.4) of eno49; a PF is needed"
    );
    assert!(
        d.err(&["nic", "split", "a/b", "--vfs", "1"])
            .starts_with("error: invalid nic 'a/b': a netdev name")
    );

    // Kernel answers.
    d.ok(&["debug", "sim-fault", "eno50", "--numvfs-errno", "ENOMEM"]);
    let e = d.err(&["nic", "split", "eno50", "--vfs", "7"]);
    assert!(
        e.starts_with("error: setting eno50 to 7 VFs failed: the kernel answered ENOMEM"),
        "{e}"
    );
    assert!(
        e.ends_with("the NIC is left at 0 VFs: Cannot allocate memory (os error 12)"),
        "{e}"
    );
    d.ok(&["debug", "sim-fault", "eno49", "--numvfs-errno", "EBUSY"]);
    let e = d.err(&["nic", "split", "eno49", "--vfs", "3"]);
    assert!(e.contains("EBUSY") && e.contains("left at 2 VFs"), "{e}");
    d.ok(&["debug", "sim-fault", "eno51", "--numvfs-errno", "EINVAL"]);
    let e = d.err(&["nic", "split", "eno51", "--vfs", "3"]);
    assert!(
        e.contains("EINVAL (the driver refused 3; sriov_totalvfs is 7)"),
        "{e}"
    );
    d.ok(&["debug", "sim-fault", "eno52", "--no-netdev"]);
    let e = d.err(&["nic", "split", "eno52", "--vfs", "2", "--timeout", "1"]);
    assert!(
        e.starts_with(
            "error: eno52: 0 of 2 VFs ready after 1s (missing: VF 0 netdev, VF 1 netdev)"
        ),
        "{e}"
    );
    assert_eq!(d.num_vfs("eno52"), 0);
}

#[test]
fn unreadable_sysfs_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .args(["--sysfs-root", "/nonexistent/sys", "nic", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: cannot read sysfs at /nonexistent/sys/bus/pci/devices: no such directory; is sysfs mounted, or is --sysfs-root right?"
    );
}

#[test]
fn a_host_without_nics_says_so_rather_than_listing_none() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    std::fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vfpool"))
            .arg("--sysfs-root")
            .arg(&sys)
            .arg("--state")
            .arg(dir.path().join("state"))
            .args(args)
            .env_remove("VFPOOL_STATE")
            .output()
            .unwrap()
    };
    let out = run(&["nic", "show", "eth9"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: unknown NIC 'eth9': this host has no network PCI function (is sysfs mounted, or is --sysfs-root right?)"
    );
    let out = run(&["-o", "json", "nic", "list"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
fn host_check_on_a_ready_host_and_on_one_without_iommu() {
    let d = Demo::new();
    let v = d.json(&["host", "check"]);
    assert_eq!(
        (v["vm_ready"].as_bool(), v["container_ready"].as_bool()),
        (Some(true), Some(true))
    );
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in [
        "iommu-enabled",
        "iommu-ready",
        "iommu-cmdline",
        "iommu-pt",
        "interrupt-remapping",
        "vfio-pci",
        "sriov-nics",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }

    // A host without IOMMU: generated by the library, read by the binary via --sysfs-root.
    let dir = tempfile::tempdir().unwrap();
    let spec = vfpool_sim::HostSpec {
        iommu: false,
        intremap: false,
        vfio_loaded: false,
        cmdline: "BOOT_IMAGE=/vmlinuz ro quiet".into(),
        ..vfpool_sim::HostSpec::demo()
    };
    vfpool_sim::SimHost::open_or_create(dir.path(), &spec).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .arg("--sysfs-root")
        .arg(dir.path().join("sys"))
        .args(["host", "check", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["vm_ready"].as_bool(), v["container_ready"].as_bool()),
        (Some(false), Some(true))
    );
    let check = |n: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(check("iommu-ready")["status"], "fail");
    assert!(
        check("iommu-ready")["remedy"]
            .as_str()
            .unwrap()
            .contains("GRUB_CMDLINE_LINUX_DEFAULT")
    );
    assert!(
        check("iommu-ready")["remedy"]
            .as_str()
            .unwrap()
            .contains("update-grub")
    );
    assert_eq!(check("interrupt-remapping")["status"], "fail");
    assert!(
        check("interrupt-remapping")["remedy"]
            .as_str()
            .unwrap()
            .contains("options vfio_iommu_type1 allow_unsafe_interrupts=1")
    );
    assert_eq!(check("iommu-pt")["status"], "warn");
    assert_eq!(check("vfio-pci")["status"], "warn");
    // The table says both verdicts.
    let out = Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .arg("--sysfs-root")
        .arg(dir.path().join("sys"))
        .args(["host", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("VM passthrough: NOT ready") && text.contains("containers:     ready"),
        "{text}"
    );
}

#[test]
fn demo_without_state_is_fresh_each_time() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vfpool"))
            .arg("--demo")
            .args(args)
            .env_remove("VFPOOL_STATE")
            .output()
            .unwrap()
    };
    assert!(
        run(&["nic", "split", "eno49", "--vfs", "7"])
            .status
            .success()
    );
    let v: Value =
        serde_json::from_slice(&run(&["nic", "show", "eno49", "-o", "json"]).stdout).unwrap();
    assert_eq!(v["num_vfs"], 0);
}

#[test]
fn apply_after_a_reboot_reapplies_leases_and_nic_show_says_who_holds_what() {
    let d = Demo::new();
    d.ok(&["nic", "split", "eno49", "--vfs", "4"]);
    d.ok(&["pool", "create", "p", "--select", "eno49"]);
    // eno49 is an I350: igb limits VF rates only on the 82576 (igb_ndo_set_vf_bw).
    let e = d.err(&[
        "lease",
        "acquire",
        "--pool",
        "p",
        "--owner",
        "vm-1",
        "--max-rate",
        "300",
    ]);
    assert!(
        e.starts_with("error: driver igb refused max-rate for 0000:03:10.0")
            && e.contains("Operation not supported"),
        "{e}"
    );
    d.ok(&[
        "lease",
        "acquire",
        "--pool",
        "p",
        "--owner",
        "vm-1",
        "--owner-kind",
        "vm",
        "--mac",
        "02:00:00:00:05:01",
        "--vlan",
        "42",
        "--qos",
        "2",
        "--trust",
        "on",
    ]);
    let show = d.json(&["nic", "show", "eno49"]);
    let vf0 = &show["vfs"][0];
    assert_eq!(vf0["owner"], "vm-1");
    assert_eq!(vf0["config"]["mac"], "02:00:00:00:05:01");
    assert_eq!(
        (
            vf0["config"]["vlan"].as_u64(),
            vf0["config"]["qos"].as_u64()
        ),
        (Some(42), Some(2))
    );
    assert_eq!(vf0["config"]["max_tx_rate"], 0);
    assert!(show["vfs"][1]["owner"].is_null());
    let table = d.ok(&["nic", "show", "eno49"]);
    assert!(
        table.lines().any(|l| l.starts_with("0 ")
            && l.contains("vm-1")
            && l.contains("02:00:00:00:05:01")
            && l.contains("42 qos 2")),
        "{table}"
    );

    let root = tempfile::tempdir().unwrap();
    d.ok(&["host", "persist", "--root", root.path().to_str().unwrap()]);
    d.ok(&["debug", "sim-reboot"]);
    let show = d.json(&["nic", "show", "eno49"]);
    assert_eq!(show["num_vfs"], 0);
    let out = d.ok(&["host", "apply"]);
    assert!(
        out.contains("lease vm-1 on 0000:03:10.0 (p): configuration re-applied"),
        "{out}"
    );
    let vf0 = d.json(&["nic", "show", "eno49"])["vfs"][0].clone();
    assert_eq!(vf0["config"]["mac"], "02:00:00:00:05:01");
    assert_eq!(vf0["config"]["trust"], true);
    let v = d.json(&["host", "apply"]);
    assert_eq!(v["nics"][0]["changed"], false);
    assert_eq!(v["leases"][0]["action"], "reapplied");
    assert_eq!(v["leases"][0]["owner"], "vm-1");
}

#[test]
fn nic_show_of_a_vf_says_it_is_a_vf_and_whose() {
    let d = Demo::new();
    d.ok(&["nic", "split", "eno49", "--vfs", "2"]);
    let v = d.json(&["nic", "show", "eno49v1"]);
    assert_eq!(v["state"], "vf");
    assert_eq!(
        (v["pf"].as_str(), v["pf_pci"].as_str()),
        (Some("eno49"), Some("0000:03:00.0"))
    );
    assert_eq!(
        (v["index"].as_u64(), v["pci"].as_str()),
        (Some(1), Some("0000:03:10.4"))
    );
    assert_eq!(v["config"]["spoofchk"], true);
    assert!(v["owner"].is_null());
    // The same VF by address, in the table.
    let t = d.ok(&["nic", "show", "0000:03:10.4"]);
    assert!(
        t.contains("state        vf") && t.contains("pf           eno49 (0000:03:00.0) vf 1"),
        "{t}"
    );
}
