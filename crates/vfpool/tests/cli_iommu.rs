//! `vfpool host iommu enable|disable|status`, `host check`'s enabled/ready/pending, and bond
//! members in `nic list/show`, `host check` and `nic split`, through the binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use vfpool_sim::{BondSpec, HostSpec, SimHost};

/// A simulated host generated from `spec` in a temp dir, driven by `--sysfs-root`.
struct Host {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Host {
    fn new(spec: &HostSpec) -> Self {
        let dir = tempfile::tempdir().unwrap();
        SimHost::open_or_create(dir.path(), spec).unwrap();
        Self {
            dir,
            state: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vfpool"))
            .arg("--sysfs-root")
            .arg(self.dir.path().join("sys"))
            .arg("--state")
            .arg(self.state.path())
            .args(args)
            .env_remove("VFPOOL_SYSFS_ROOT")
            .env_remove("VFPOOL_STATE")
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "vfpool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a).0).unwrap()
    }
    /// A failure with exit status `code` (README, "Exit status and errors"): its one line.
    fn err_code(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "vfpool {args:?}: {out:?}");
        let e = String::from_utf8(out.stderr).unwrap();
        assert_eq!(e.lines().count(), 1, "not one line: {e}");
        e.trim_end().to_owned()
    }
    fn file(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root().join("root").join(rel)).ok()
    }
}

fn demo_cmd(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .arg("--demo")
        .arg("--state")
        .arg(state)
        .args(args)
        .env_remove("VFPOOL_SYSFS_ROOT")
        .env_remove("VFPOOL_STATE")
        .output()
        .unwrap()
}

/// A host that never had the IOMMU: not in BIOS-visible units, not on the command line,
/// not in /etc/default/grub.
fn bare(vendor: &str) -> HostSpec {
    HostSpec {
        iommu: false,
        intremap: false,
        cmdline: "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet".into(),
        grub_cmdline_default: Some("quiet".into()),
        cpu_vendor: vendor.into(),
        ..HostSpec::demo()
    }
}

#[test]
fn the_demo_host_is_enabled_and_ready_and_enable_leaves_the_operators_grub_alone() {
    let state = tempfile::tempdir().unwrap();
    let out = demo_cmd(state.path(), &["host", "iommu", "status", "-o", "json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["boot_loader"], "grub-update");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["enabled_by"], "intel_iommu=on in /etc/default/grub");
    assert_eq!(v["by_vfpool"], false);
    assert_eq!(v["ready"], true);
    assert_eq!(v["reboot_pending"], false);
    assert_eq!(v["units"], serde_json::json!(["dmar0", "dmar1"]));

    let out = demo_cmd(state.path(), &["host", "iommu", "enable", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["written"], serde_json::json!([]));
    assert!(v["unchanged"].as_str().unwrap().contains("not vfpool's"));
    assert!(
        !state
            .path()
            .join("demo-host/root/etc/default/grub.d/vfpool-iommu.cfg")
            .exists()
    );

    let out = demo_cmd(state.path(), &["host", "check", "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["iommu_enabled"], &v["iommu_ready"], &v["reboot_pending"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::Bool(false))
    );
}

#[test]
fn enable_writes_the_dropin_check_says_reboot_pending_and_disable_removes_only_ours() {
    let h = Host::new(&bare("AuthenticAMD"));
    let grub_before = h.file("etc/default/grub").unwrap();
    let out = h.run(&["host", "check", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["iommu_enabled"], false);
    assert_eq!(v["iommu_ready"], false);
    assert_eq!(v["reboot_pending"], false);

    let v = h.json(&["host", "iommu", "enable"]);
    assert_eq!(v["boot_loader"], "grub-update");
    assert_eq!(v["root"], h.root().join("root").to_str().unwrap());
    assert_eq!(v["vendor"], "amd");
    assert_eq!(v["args"], serde_json::json!(["amd_iommu=on", "iommu=pt"]));
    assert_eq!(
        v["written"],
        serde_json::json!([
            "/etc/default/grub.d/vfpool-iommu.cfg",
            "/etc/vfpool/iommu.json"
        ])
    );
    assert_eq!(v["command"], "update-grub");
    assert_eq!(v["command_ran"], false);
    assert_eq!(v["effective"], "after a reboot");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("interrupt remapping")
    );
    assert!(
        h.file("etc/default/grub.d/vfpool-iommu.cfg")
            .unwrap()
            .contains(
                "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT amd_iommu=on iommu=pt\""
            )
    );

    // The text: what was written, the command, when it takes effect.
    let (text, err) = h.ok(&["host", "iommu", "enable", "--allow-unsafe-interrupts"]);
    assert!(
        text.contains(&format!(
            "root: {} (files only; nothing is run)",
            h.root().join("root").display()
        )),
        "{text}"
    );
    assert!(
        text.contains("wrote /etc/modprobe.d/vfio-iommu-unsafe.conf"),
        "{text}"
    );
    assert!(
        err.contains("warning: this host's CPU/IOMMU does not support interrupt remapping"),
        "{err}"
    );
    assert!(
        h.file("etc/modprobe.d/vfio-iommu-unsafe.conf")
            .unwrap()
            .contains("options vfio_iommu_type1 allow_unsafe_interrupts=1")
    );

    // Enabled, not ready.
    let out = h.run(&["host", "check", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["iommu_enabled"], &v["iommu_ready"], &v["reboot_pending"]),
        (&Value::Bool(true), &Value::Bool(false), &Value::Bool(true))
    );
    let out = h.run(&["host", "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reboot pending"), "{text}");
    assert!(text.contains("VT-d / AMD-Vi in the BIOS"), "{text}");
    let (text, _) = h.ok(&["host", "iommu", "status"]);
    assert!(
        text.contains(
            "enabled        yes (amd_iommu=on in /etc/default/grub.d/vfpool-iommu.cfg, by vfpool)"
        ),
        "{text}"
    );
    assert!(text.contains("ready          no"), "{text}");
    assert!(text.contains("reboot pending"), "{text}");

    let (text, _) = h.ok(&["host", "iommu", "disable"]);
    assert!(
        text.contains("removed /etc/default/grub.d/vfpool-iommu.cfg"),
        "{text}"
    );
    assert!(
        text.contains("removed /etc/modprobe.d/vfio-iommu-unsafe.conf"),
        "{text}"
    );
    assert!(text.contains("to run on the host: update-grub"), "{text}");
    assert!(text.contains("effective after a reboot"), "{text}");
    assert_eq!(h.file("etc/default/grub.d/vfpool-iommu.cfg"), None);
    assert_eq!(h.file("etc/vfpool/iommu.json"), None);
    assert_eq!(h.file("etc/default/grub").unwrap(), grub_before);
    assert!(h.file("etc/default/grub.d/init-select.cfg").is_some());
    let v = h.json(&["host", "iommu", "status"]);
    assert_eq!(
        (&v["enabled"], &v["reboot_pending"]),
        (&Value::Bool(false), &Value::Bool(false))
    );
}

#[test]
fn iommu_errors_are_one_line_and_change_nothing() {
    let h = Host::new(&bare("CentaurHauls"));
    assert_eq!(
        h.err_code(2, &["host", "iommu", "enable"]),
        "error: unknown CPU vendor 'CentaurHauls' in /proc/cpuinfo: give --vendor intel|amd"
    );
    assert_eq!(
        h.err_code(2, &["host", "iommu", "enable", "--vendor", "arm"]),
        "error: invalid --vendor 'arm': intel or amd"
    );
    assert_eq!(h.file("etc/default/grub.d/vfpool-iommu.cfg"), None);
    let v = h.json(&["host", "iommu", "enable", "--vendor", "intel"]);
    assert_eq!(v["args"], serde_json::json!(["intel_iommu=on", "iommu=pt"]));

    let empty = tempfile::tempdir().unwrap();
    let e = h.err_code(
        2,
        &[
            "host",
            "iommu",
            "enable",
            "--root",
            empty.path().to_str().unwrap(),
        ],
    );
    assert!(e.starts_with("error: unknown boot loader under "), "{e}");
    let missing = empty.path().join("missing");
    let e = h.err_code(
        2,
        &[
            "host",
            "iommu",
            "disable",
            "--root",
            missing.to_str().unwrap(),
        ],
    );
    assert!(
        e.starts_with(&format!(
            "error: invalid --root '{}': not a writable directory",
            missing.display()
        )),
        "{e}"
    );

    // A conflicting argument in /etc/kernel/cmdline.
    std::fs::create_dir_all(empty.path().join("etc/kernel")).unwrap();
    std::fs::write(
        empty.path().join("etc/kernel/cmdline"),
        "root=/dev/sda1 iommu=nopt\n",
    )
    .unwrap();
    let e = h.err_code(
        4,
        &[
            "host",
            "iommu",
            "enable",
            "--vendor",
            "intel",
            "--root",
            empty.path().to_str().unwrap(),
        ],
    );
    assert_eq!(
        e,
        "error: /etc/kernel/cmdline already has 'iommu=nopt', which conflicts with 'iommu=pt': remove it first (vfpool changes only what it added)"
    );
    assert_eq!(
        std::fs::read_to_string(empty.path().join("etc/kernel/cmdline")).unwrap(),
        "root=/dev/sda1 iommu=nopt\n"
    );
}

#[test]
fn a_bonded_pf_is_shown_checked_and_warned_about_when_split() {
    let h = Host::new(&HostSpec {
        bonds: vec![BondSpec {
            name: "bond0".into(),
            members: vec!["eno49".into(), "eno50".into()],
        }],
        ..HostSpec::demo()
    });
    let v = h.json(&["nic", "list"]);
    let bond = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()["bond"]
            .clone()
    };
    assert_eq!(bond("eno49"), "bond0");
    assert_eq!(bond("eno51"), Value::Null);
    let (text, _) = h.ok(&["nic", "list"]);
    assert!(text.lines().next().unwrap().ends_with("BOND"), "{text}");
    let (text, _) = h.ok(&["nic", "show", "eno50"]);
    assert!(
        text.contains(
            "bond         member of bond0: VF NICs and vNICs on it may not reach each other"
        ),
        "{text}"
    );
    assert_eq!(h.json(&["nic", "show", "eno50"])["bond"], "bond0");

    let v = h.json(&["host", "check"]);
    let warned: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "bond")
        .map(|c| c["detail"].as_str().unwrap())
        .collect();
    assert_eq!(warned.len(), 2, "{v}");
    assert!(warned[0].starts_with("eno49 is a member of bond bond0"));

    let (_, err) = h.ok(&["nic", "split", "eno49", "--vfs", "2"]);
    assert_eq!(
        err.trim_end(),
        "warning: eno49 is in bond bond0 with eno50: VF NICs and vNICs on it may not reach each other; split only this one NIC of the bond (or give each NIC its own bond)"
    );
    let (_, err) = h.ok(&["nic", "split", "eno50", "--vfs", "2"]);
    assert!(err.contains("whose eno49 is split too"), "{err}");
    assert!(
        err.contains("split only one NIC of a multi-NIC bond"),
        "{err}"
    );
    // An unbonded NIC: no warning.
    let (_, err) = h.ok(&["nic", "split", "eno51", "--vfs", "2"]);
    assert_eq!(err, "");

    // The demo host is unbonded: no BOND column.
    let state = tempfile::tempdir().unwrap();
    let out = demo_cmd(state.path(), &["nic", "list"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("BOND"));
}
