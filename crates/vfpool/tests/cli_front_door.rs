//! Issue 9's findings through the real binary on the demo host: what runs beside `nic
//! split`, persistence (the boot unit, the udev rule, the demo host kept off the real
//! `/etc`), and the inputs that used to panic or half-do.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vfpool_netlink::NetOps;
use vfpool_sim::SimNetOps;

use common::{json, ok, run, vfpool};

/// A command that must fail with exit status `code` and one line on stderr.
fn err(state: &Path, args: &[&str], code: i32) -> String {
    let o = run(state, args);
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "vfpool {args:?}: {e}");
    assert_eq!(e.lines().count(), 1, "not one line: {e}");
    e.trim_end().to_owned()
}

fn num_vfs(state: &Path, nic: &str) -> u64 {
    json(state, &["nic", "show", nic])["num_vfs"]
        .as_u64()
        .unwrap()
}

/// Root-only tests fail when not root, unless the skip is allowed on purpose.
fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("VFPOOL_ALLOW_SKIP").as_deref() == Ok("1"),
        "{what} needs root (set VFPOOL_ALLOW_SKIP=1 to skip it on purpose)"
    );
    eprintln!("SKIPPED {what}: not root");
    false
}

/// `systemd-analyze verify` on a unit file: the test command installs systemd.
fn systemd_verify(unit: &Path) {
    let o = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
    {
        Ok(o) => o,
        // A skip is a failure unless allowed on purpose (the test command installs systemd
        // and never allows it).
        Err(e) => {
            assert!(
                std::env::var("VFPOOL_ALLOW_SKIP").as_deref() == Ok("1"),
                "cannot run systemd-analyze verify ({e}); install systemd, or set VFPOOL_ALLOW_SKIP=1 to skip it on purpose"
            );
            eprintln!("SKIPPED systemd-analyze verify: {e} (VFPOOL_ALLOW_SKIP=1)");
            return;
        }
    };
    assert!(
        o.status.success(),
        "systemd-analyze verify {}: {}{}",
        unit.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn unit_in(root: &Path) -> PathBuf {
    root.join("etc/systemd/system/vfpool-apply.service")
}

fn rule_in(root: &Path) -> PathBuf {
    root.join("etc/udev/rules.d/70-vfpool-sriov.rules")
}

#[test]
fn persist_unit_carries_no_counts_and_apply_brings_them_back() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    assert!(
        err(s, &["host", "persist", "--root", r], 4)
            .starts_with("error: nothing to persist: no NIC has VFs")
    );
    ok(s, &["nic", "split", "eno49", "--vfs", "7"]);
    ok(
        s,
        &["nic", "split", "em2", "--vfs", "16", "--autoprobe", "off"],
    );
    let out = ok(s, &["host", "persist", "--root", r]);
    assert!(
        out.contains("eno49 (0000:03:00.0): 7 VFs, autoprobe on"),
        "{out}"
    );
    assert!(
        out.contains("em2 (0000:04:00.1): 16 VFs, autoprobe off"),
        "{out}"
    );
    let unit = std::fs::read_to_string(unit_in(root.path())).unwrap();
    assert!(
        unit.contains("Before=network-pre.target libvirtd.service kubelet.service"),
        "{unit}"
    );
    // The demo's unit opens the demo host again, never the real /sys.
    assert!(unit.contains("\"--demo\" \"--state\""), "{unit}");
    assert!(unit.contains(" \"host\" \"apply\"\n"), "{unit}");
    assert!(!unit.contains("16"), "the unit carries no count: {unit}");
    assert!(
        root.path()
            .join("etc/systemd/system/multi-user.target.wants/vfpool-apply.service")
            .is_symlink()
    );
    systemd_verify(&unit_in(root.path()));

    // After a "reboot" (all VFs gone), apply brings both back, autoprobe included.
    ok(s, &["debug", "sim-reboot"]);
    assert_eq!(num_vfs(s, "eno49"), 0);
    let out = ok(s, &["host", "apply"]);
    assert!(out.contains("eno49 (0000:03:00.0): 7 VFs"), "{out}");
    assert_eq!(num_vfs(s, "eno49"), 7);
    let em2 = json(s, &["nic", "show", "em2"]);
    assert_eq!(
        (em2["num_vfs"].as_u64(), em2["autoprobe"].as_bool()),
        (Some(16), Some(false))
    );
    // A later split is recorded, with no second `host persist`: apply is then a no-op.
    ok(s, &["nic", "split", "eno49", "--vfs", "4"]);
    ok(s, &["nic", "split", "eno50", "--vfs", "2"]);
    let out = ok(s, &["host", "apply"]);
    assert!(
        out.contains("eno49 (0000:03:00.0): 4 VFs (already)"),
        "{out}"
    );
    ok(s, &["debug", "sim-reboot"]);
    ok(s, &["host", "apply"]);
    assert_eq!((num_vfs(s, "eno49"), num_vfs(s, "eno50")), (4, 2));
    // A restore is recorded too: after a reboot the NIC stays at 0.
    ok(s, &["nic", "restore", "eno50"]);
    ok(s, &["nic", "split", "eno50", "--vfs", "3"]);
    ok(s, &["nic", "restore", "eno50"]);
    ok(s, &["debug", "sim-reboot"]);
    ok(s, &["host", "apply"]);
    assert_eq!((num_vfs(s, "eno49"), num_vfs(s, "eno50")), (4, 0));
}

#[test]
fn udev_rule_is_generic_and_one_hook_replaces_the_other() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    ok(s, &["nic", "split", "eno49", "--vfs", "4"]);
    ok(s, &["host", "persist", "--root", r]);
    assert!(unit_in(root.path()).exists());
    let out = ok(s, &["host", "persist", "--udev", "--root", r]);
    assert!(out.contains("removed"), "{out}");
    assert!(
        !unit_in(root.path()).exists(),
        "the unit stays beside the rule"
    );
    assert!(
        !root
            .path()
            .join("etc/systemd/system/multi-user.target.wants/vfpool-apply.service")
            .exists()
    );
    let rules = std::fs::read_to_string(rule_in(root.path())).unwrap();
    assert_eq!(rules.lines().filter(|l| !l.starts_with('#')).count(), 1);
    assert!(
        rules.contains(
            "ACTION==\"add\", SUBSYSTEM==\"net\", TEST==\"device/sriov_totalvfs\", RUN+=\""
        ) && rules.contains(" --demo --state ")
            && rules.contains(" host apply --nic $kernel\""),
        "{rules}"
    );
    assert!(
        !rules.contains("0000:03:00.0") && !rules.contains("=\"4\""),
        "{rules}"
    );
    // What the rule runs for one NIC: only that NIC's recorded count.
    ok(s, &["nic", "split", "em1", "--vfs", "5"]);
    ok(s, &["debug", "sim-reboot"]);
    let out = ok(s, &["host", "apply", "--nic", "em1"]);
    assert!(out.contains("em1 (0000:04:00.0): 5 VFs"), "{out}");
    assert_eq!((num_vfs(s, "em1"), num_vfs(s, "eno49")), (5, 0));
    // A NIC with nothing recorded: nothing to do, and that is not an error.
    let out = ok(s, &["host", "apply", "--nic", "eno50"]);
    assert!(out.contains("no VF counts recorded for eno50"), "{out}");
    // Back to the unit: the rule goes.
    ok(s, &["host", "persist", "--root", r]);
    assert!(!rule_in(root.path()).exists() && unit_in(root.path()).exists());
}

#[test]
fn the_unit_quotes_any_state_path_and_the_rule_refuses_what_udev_cannot_quote() {
    let d = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    // A space, a newline that would start a new directive, a quote, a percent sign and a
    // dollar sign.
    let s = d
        .path()
        .join("a b\nExecStartPre=/bin/false \"x\" 100% $HOME");
    ok(&s, &["nic", "split", "eno49", "--vfs", "2"]);
    ok(&s, &["host", "persist", "--root", r]);
    let unit = std::fs::read_to_string(unit_in(root.path())).unwrap();
    assert!(
        !unit.contains("\nExecStartPre"),
        "a directive was injected: {unit}"
    );
    assert_eq!(unit.matches("ExecStart=").count(), 1, "{unit}");
    assert!(
        unit.contains("a b\\nExecStartPre=/bin/false \\\"x\\\" 100%% $$HOME"),
        "{unit}"
    );
    systemd_verify(&unit_in(root.path()));
    // udev cannot carry a quote or a newline: refused, and nothing is written.
    let e = err(&s, &["host", "persist", "--udev", "--root", r], 2);
    assert!(e.contains("invalid udev rule argument"), "{e}");
    assert!(!rule_in(root.path()).exists() && unit_in(root.path()).exists());

    // A relative --state is made absolute, so the unit works from any directory.
    let cwd = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .current_dir(cwd.path())
        .args([
            "--demo",
            "--state",
            "rel/state",
            "nic",
            "split",
            "eno49",
            "--vfs",
            "2",
        ])
        .env_remove("VFPOOL_STATE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .current_dir(cwd.path())
        .args([
            "--demo",
            "--state",
            "rel/state",
            "host",
            "persist",
            "--root",
            r,
        ])
        .env_remove("VFPOOL_STATE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let unit = std::fs::read_to_string(unit_in(root.path())).unwrap();
    let abs = cwd.path().join("rel/state");
    assert!(
        unit.contains(&format!("\"--state\" \"{}\"", abs.display())),
        "{unit}"
    );
    systemd_verify(&unit_in(root.path()));
}

/// `--demo host persist` without `--root` installs inside the demo host. Run in a mount
/// namespace of its own with empty tmpfs over the real unit and rule directories, so
/// that even a regression cannot write into this machine's /etc; they must stay empty.
#[test]
fn demo_persist_never_touches_the_real_etc() {
    if !require_root("demo_persist_never_touches_the_real_etc") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    ok(s, &["nic", "split", "eno49", "--vfs", "3"]);
    let script = format!(
        "set -e; mount --make-rprivate /; \
         for x in /etc/systemd/system /etc/udev/rules.d; do mkdir -p $x; mount -t tmpfs vfpool-test $x; done; \
         '{exe}' --demo --state '{state}' host persist >/dev/null; \
         '{exe}' --demo --state '{state}' host persist --udev >/dev/null; \
         '{exe}' --demo --state '{state}' host persist >/dev/null; \
         find /etc/systemd/system /etc/udev/rules.d -mindepth 1",
        exe = env!("CARGO_BIN_EXE_vfpool"),
        state = s.display()
    );
    let o = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .env("VFPOOL_LOG", "error")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "",
        "the demo wrote into the real /etc"
    );
    // It went into the demo host instead.
    let demo_root = s.join("demo-host/root");
    let unit = std::fs::read_to_string(unit_in(&demo_root)).unwrap();
    assert!(unit.contains("\"--demo\""), "{unit}");
}

#[test]
fn apply_with_nothing_recorded_and_an_older_desired_json() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    assert!(ok(s, &["host", "apply"]).contains("no VF counts recorded"));
    // An older vfpool's record is imported once, then lives in the ledger.
    std::fs::write(
        s.join("desired.json"),
        r#"{"version":1,"nics":{"0000:04:00.0":{"name":"em1","num_vfs":6,"autoprobe":true}}}"#,
    )
    .unwrap();
    let out = ok(s, &["host", "apply"]);
    assert!(out.contains("em1 (0000:04:00.0): 6 VFs"), "{out}");
    assert!(!s.join("desired.json").exists() && s.join("desired.json.imported").exists());
    ok(s, &["debug", "sim-reboot"]);
    ok(s, &["host", "apply"]);
    assert_eq!(num_vfs(s, "em1"), 6);
    // A corrupt one is an error before anything is changed.
    ok(s, &["debug", "sim-reboot"]);
    std::fs::write(s.join("desired.json"), "{").unwrap();
    let e = err(s, &["host", "apply"], 7);
    assert!(e.contains("desired.json is not valid"), "{e}");
    assert_eq!(num_vfs(s, "em1"), 0);
}

#[test]
fn a_split_that_cannot_reach_its_ledger_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    ok(s, &["nic", "list"]);
    std::fs::write(
        s.join("state.db"),
        b"this is not a database, it is a text file of forty bytes and more",
    )
    .unwrap();
    let o = run(s, &["nic", "split", "eno49", "--vfs", "3"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("state.db"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // `nic list` does not need the ledger: it still works, with a warning.
    let o = run(s, &["nic", "list"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warning: the lease ledger cannot be read")
    );
    assert_eq!(num_vfs(s, "eno49"), 0);
}

#[test]
fn a_huge_timeout_is_refused_before_anything_is_done() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    for t in ["18446744073709551615", "0", "-1", "1e3"] {
        let arg = format!("--timeout={t}");
        let e = err(s, &["nic", "split", "em2", "--vfs", "3", &arg], 2);
        assert!(
            e.contains(&format!("invalid timeout '{t}'")) && e.contains("1..=86400"),
            "{e}"
        );
    }
    assert_eq!(num_vfs(s, "em2"), 0);
}

#[test]
fn an_empty_state_variable_and_a_missing_proc_root_are_named() {
    let o = Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .args(["--demo", "nic", "list"])
        .env("VFPOOL_STATE", "")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("invalid state ''") && e.contains("VFPOOL_STATE"),
        "{e}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .args(["--proc-root", "/nonexistent/proc", "host", "check"])
        .env_remove("VFPOOL_STATE")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("invalid proc-root '/nonexistent/proc'"), "{e}");
}

/// Finding 1: a split beside an acquire lost the lease (the VF re-created with the
/// kernel's defaults under an active lease). Now either the acquire is first and the
/// split is refused, or the split is first and the acquire takes a new VF: every active
/// lease's VF carries the lease's MAC.
#[test]
fn split_beside_acquire_never_leaves_a_lease_on_a_reset_vf() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    ok(s, &["nic", "split", "em2", "--vfs", "10"]);
    ok(s, &["pool", "create", "e2", "--select", "em2"]);
    let net = SimNetOps::new(s.join("demo-host"));
    let mac = "02:ee:00:00:00:01";
    let (mut refused, mut after) = (0, 0);
    for round in 0..48 {
        let n = if round % 2 == 0 { "20" } else { "10" };
        let mut split = vfpool(s, &["nic", "split", "em2", "--vfs", n])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Start the acquire at another moment of the split each round.
        std::thread::sleep(std::time::Duration::from_millis((round % 8) * 4));
        let acq = run(
            s,
            &[
                "lease", "acquire", "--pool", "e2", "--owner", "v1", "--mac", mac,
            ],
        );
        let split = split.wait().unwrap();
        let leases = json(s, &["lease", "list"]);
        let active: Vec<&Value> = leases
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["state"] == "active")
            .collect();
        if acq.status.success() {
            assert_eq!(active.len(), 1, "round {round}: {leases}");
            let index = active[0]["vf_index"].as_u64().unwrap() as u16;
            let cfg = net
                .vf_configs("em2")
                .unwrap()
                .into_iter()
                .find(|(i, _)| *i == index)
                .map(|(_, c)| c);
            assert_eq!(
                cfg.map(|c| c.mac.to_string()),
                Some(mac.to_owned()),
                "round {round}: the leased VF {index} lost its MAC (split exit {:?})",
                split.code()
            );
            if split.success() {
                after += 1;
            } else {
                refused += 1;
            }
            ok(s, &["lease", "release", "v1"]);
        }
    }
    eprintln!("split refused: {refused}, split first: {after}");
}

/// Finding 2: parallel splits of one NIC were not serialized (the NIC could end at 0,
/// and the recorded count could differ from the NIC's). Now each split runs alone, and
/// after a reboot `host apply` restores exactly the count the NIC had.
#[test]
fn parallel_splits_of_one_nic_leave_it_at_the_recorded_count() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    for round in 0..5 {
        let children: Vec<_> = ["3", "5", "7", "9", "11", "13"]
            .iter()
            .map(|n| {
                vfpool(s, &["nic", "split", "em1", "--vfs", n, "-o", "json"])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ok_counts = Vec::new();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: a split failed");
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            ok_counts.push(v[0]["num_vfs"].as_u64().unwrap());
        }
        let now = num_vfs(s, "em1");
        assert!(now != 0 && ok_counts.contains(&now), "round {round}: {now}");
        ok(s, &["debug", "sim-reboot"]);
        ok(s, &["host", "apply"]);
        assert_eq!(
            num_vfs(s, "em1"),
            now,
            "round {round}: apply restored another count"
        );
    }
}

/// Finding 11: a PF left down made every VF unhealthy and the error did not say why; a
/// split now brings the PF up unless --keep-link.
#[test]
fn a_pf_left_down_is_named_and_split_brings_it_up() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    let net = SimNetOps::new(s.join("demo-host"));
    ok(s, &["nic", "list"]);
    net.set_up("eno50", false).unwrap();
    let out = ok(s, &["nic", "split", "eno50", "--vfs", "2", "--keep-link"]);
    assert!(!out.contains("brought up"), "{out}");
    assert!(!net.link("eno50").unwrap().admin_up);
    ok(s, &["pool", "create", "p", "--select", "eno50"]);
    let e = err(s, &["lease", "acquire", "--pool", "p", "--owner", "o"], 6);
    assert!(
        e.contains("2 unhealthy: 2 × PF eno50 is administratively down"),
        "{e}"
    );
    let st = json(s, &["pool", "show", "p"]);
    assert_eq!(
        st["unhealthy_reasons"].as_object().unwrap().len(),
        1,
        "{st}"
    );
    // Without --keep-link a split brings it up, and the pool's VFs are free.
    ok(s, &["nic", "restore", "eno50"]);
    let out = ok(s, &["nic", "split", "eno50", "--vfs", "2"]);
    assert!(out.contains("PF link brought up"), "{out}");
    assert!(net.link("eno50").unwrap().admin_up);
    ok(s, &["lease", "acquire", "--pool", "p", "--owner", "o"]);
}
