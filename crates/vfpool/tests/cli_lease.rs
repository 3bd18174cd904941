//! The `pool` and `lease` commands through the real binary, on the simulated demo host:
//! many processes at once, crashes at every step, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;
use vfpool_model::VfConfig;
use vfpool_netlink::NetOps;
use vfpool_sim::SimNetOps;

use common::{json, ok, run, vfpool};

fn leases(state: &Path) -> Vec<Value> {
    json(state, &["lease", "list"]).as_array().unwrap().clone()
}

fn net(state: &Path) -> SimNetOps {
    SimNetOps::new(state.join("demo-host"))
}

fn vf_config(state: &Path, pf: &str, index: u16) -> VfConfig {
    net(state)
        .vf_configs(pf)
        .unwrap()
        .into_iter()
        .find(|(i, _)| *i == index)
        .unwrap()
        .1
}

fn driver_of(state: &Path, pci: &str) -> Option<String> {
    std::fs::read_link(
        state
            .join("demo-host/sys/bus/pci/devices")
            .join(pci)
            .join("driver"),
    )
    .ok()
    .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
}

fn demo(vfs: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_owned();
    ok(&state, &["nic", "split", "em1", "--vfs", vfs]);
    ok(&state, &["pool", "create", "gold", "--select", "em1"]);
    (dir, state)
}

#[test]
fn sixty_four_processes_race_for_sixty_three_vfs() {
    let (_dir, state) = demo("63");
    // Every VF as it was before any lease, to compare with after each round's releases.
    let all_vfs = |state: &Path| {
        (0..63)
            .map(|i| vf_config(state, "em1", i))
            .collect::<Vec<_>>()
    };
    let vfs_before = all_vfs(&state);
    for round in 0..3 {
        let children: Vec<_> = (0..64)
            .map(|i| {
                let owner = format!("r{round}-o{i}");
                vfpool(
                    &state,
                    &[
                        "lease", "acquire", "--pool", "gold", "--owner", &owner, "--vlan", "10",
                        "-o", "json",
                    ],
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
            })
            .collect();
        let outs: Vec<Output> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        let mut vfs = HashSet::new();
        let mut failures = Vec::new();
        for o in &outs {
            if o.status.success() {
                let v: Value = serde_json::from_slice(&o.stdout).unwrap();
                assert!(
                    vfs.insert(v["vf_pci"].as_str().unwrap().to_owned()),
                    "a VF leased twice: {v}"
                );
            } else {
                failures.push(String::from_utf8_lossy(&o.stderr).into_owned());
            }
        }
        assert_eq!(vfs.len(), 63, "round {round}: {failures:?}");
        assert_eq!(
            failures,
            vec!["error: pool gold has no free VF (63 total, 63 leased, 0 unhealthy)\n"],
            "round {round}"
        );
        let listed = leases(&state);
        assert_eq!(listed.len(), 63);
        assert!(listed.iter().all(|l| l["state"] == "active"));
        let pool = json(&state, &["pool", "show", "gold"]);
        assert_eq!(
            (pool["free"].as_u64(), pool["leased"].as_u64()),
            (Some(0), Some(63))
        );
        // Release them all, concurrently too.
        let children: Vec<_> = listed
            .iter()
            .map(|l| {
                vfpool(&state, &["lease", "release", l["owner"].as_str().unwrap()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        assert!(leases(&state).is_empty());
        let vfs_after = all_vfs(&state);
        for (i, (after, before)) in vfs_after.iter().zip(&vfs_before).enumerate() {
            assert_eq!(
                after, before,
                "round {round}: VF {i} not as before its lease"
            );
        }
    }
}

/// Acquire with settings on the PF side, a driver and the netdev, so every step has work.
fn acquire_args(owner: &str, vfio: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "lease",
        "acquire",
        "--pool",
        "gold",
        "--owner",
        owner,
        "--vlan",
        "100",
        "--qos",
        "2",
        "--trust",
        "on",
        "--spoofchk",
        "off",
        "--max-rate",
        "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if vfio {
        a.extend(["--driver", "vfio-pci"].map(String::from));
    } else {
        a.extend(
            [
                "--driver",
                "netdevice",
                "--mac",
                "02:00:00:00:99:01",
                "--mtu",
                "9000",
            ]
            .map(String::from),
        );
    }
    a
}

fn assert_vf0_restored(state: &Path, point: &str, before: &VfConfig, vfio: bool) {
    let (mut now, mut before) = (vf_config(state, "em1", 0), before.clone());
    if vfio {
        // Reloading ixgbevf after vfio-pci makes it pick a new random MAC, as on real NICs.
        now.mac = vfpool_model::MacAddr::ZERO;
        before.mac = vfpool_model::MacAddr::ZERO;
    }
    assert_eq!(now, before, "{point}");
    assert_eq!(
        driver_of(state, "0000:04:10.0").as_deref(),
        Some("ixgbevf"),
        "{point}"
    );
    let link = net(state).link("em1v0").unwrap();
    assert_eq!(link.mtu, 1500, "{point}");
}

#[test]
fn a_crash_at_any_step_is_finished_by_gc() {
    for vfio in [false, true] {
        let (_dir, state) = demo("2");
        let before = vf_config(&state, "em1", 0);
        for point in vfpool_engine::fault::POINTS {
            let owner = format!("crash-{}", point.replace(':', "-"));
            let args = acquire_args(&owner, vfio);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let crashing: Vec<&str> = if point.starts_with("release") {
                ok(&state, &args);
                vec!["lease", "release", &owner]
            } else {
                args
            };
            let o = vfpool(&state, &crashing)
                .env("VFPOOL_FAULT", point)
                .output()
                .unwrap();
            assert_eq!(
                o.status.signal(),
                Some(9),
                "{point}: the process should die by SIGKILL"
            );
            let left = leases(&state);
            assert_eq!(left.len(), 1, "{point}: the row stays for gc");
            let gc = json(&state, &["lease", "gc"]);
            let action = gc["actions"][0]["action"].as_str().unwrap().to_owned();
            assert_eq!(
                action,
                if point.starts_with("acquire") {
                    "rolled-back"
                } else {
                    "finished-release"
                },
                "{point}: {gc}"
            );
            assert!(leases(&state).is_empty(), "{point}");
            assert_vf0_restored(&state, point, &before, vfio);
            // The VF is neither lost nor double-leased: it is the first one handed out again.
            let again = json(
                &state,
                &["lease", "acquire", "--pool", "gold", "--owner", "probe"],
            );
            assert_eq!(again["vf_pci"], "0000:04:10.0", "{point}");
            ok(&state, &["lease", "release", "probe"]);
        }
    }
}

#[test]
fn bad_input_is_one_line_naming_the_field_and_changes_nothing() {
    let (_dir, state) = demo("2");
    ok(
        &state,
        &["lease", "acquire", "--pool", "gold", "--owner", "taken"],
    );
    let before = leases(&state);
    let cases: &[(&[&str], &str)] = &[
        (&["--pool", "nope"], "error: unknown pool 'nope'"),
        (
            &["--mac", "01:00:5e:00:00:01"],
            "error: invalid mac '01:00:5e:00:00:01'",
        ),
        (
            &["--mac", "02:00:00:00:00"],
            "error: invalid mac '02:00:00:00:00'",
        ),
        (&["--vlan", "4095"], "error: invalid vlan '4095'"),
        (&["--vlan", "x"], "error: invalid vlan 'x'"),
        (&["--vlan", "5", "--qos", "8"], "error: invalid qos '8'"),
        (&["--qos", "3"], "error: invalid qos '3'"),
        (
            &["--vlan-proto", "802.1ad"],
            "error: invalid vlan-proto '802.1ad'",
        ),
        (
            &["--min-rate", "200", "--max-rate", "100"],
            "error: invalid min-rate '200'",
        ),
        (&["--mtu", "20000"], "error: invalid mtu '20000': 68..=9710"),
        (
            &["--mtu", "9000", "--driver", "vfio-pci"],
            "error: invalid mtu '9000'",
        ),
        (&["--driver", "e1000"], "error: invalid driver 'e1000'"),
        (&["--owner-kind", "pod"], "error: invalid owner-kind 'pod'"),
        (&["--spoofchk", "maybe"], "error: invalid spoofchk 'maybe'"),
        (&["--link-state", "up"], "error: invalid link-state 'up'"),
        (&["--vf", "0000:0a:00.0"], "error: unknown VF 0000:0a:00.0"),
        (&["--vf", "zz"], "error: invalid pci address 'zz'"),
        (
            &["--owner", "taken"],
            "error: owner 'taken' already holds a lease",
        ),
    ];
    let vf1_before = vf_config(&state, "em1", 1);
    for (extra, want) in cases {
        let mut args = vec!["lease", "acquire"];
        if !extra.contains(&"--pool") {
            args.extend(["--pool", "gold"]);
        }
        if !extra.contains(&"--owner") {
            args.extend(["--owner", "new"]);
        }
        args.extend_from_slice(extra);
        let o = run(&state, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?}");
        assert!(
            err.starts_with(want),
            "{extra:?}: want '{want}', got '{err}'"
        );
        assert_eq!(err.lines().count(), 1, "{extra:?}: {err}");
        assert_eq!(leases(&state), before, "{extra:?}");
        assert_eq!(vf_config(&state, "em1", 1), vf1_before, "{extra:?}");
    }
    for (args, want) in [
        (
            &["lease", "release", "ghost"][..],
            "error: unknown owner 'ghost'",
        ),
        (
            &["lease", "release", "--vf", "0000:04:10.2"][..],
            "error: VF 0000:04:10.2 is not leased",
        ),
        (
            &["pool", "delete", "gold"][..],
            "error: pool 'gold' has 1 leased VFs",
        ),
        (
            &["pool", "create", "x", "--select", "em1#1"][..],
            "error: pool 'x' would overlap pool 'gold' on em1 VFs 1",
        ),
        (
            &["pool", "create", "x", "--select", "speed=10"][..],
            "error: invalid select 'speed=10'",
        ),
        (
            &["pool", "create", "x", "--select", "em2", "--policy", "best"][..],
            "error: invalid policy 'best'",
        ),
    ] {
        let o = run(&state, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.starts_with(want),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    assert_eq!(leases(&state), before);
}

#[test]
fn nic_restore_with_leases_needs_force_and_gc_drops_the_stale_leases() {
    let (_dir, state) = demo("4");
    ok(
        &state,
        &["lease", "acquire", "--pool", "gold", "--owner", "a"],
    );
    let nics = json(&state, &["nic", "list"]);
    let em1 = nics
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "em1")
        .unwrap();
    assert_eq!(
        (em1["num_vfs"].as_u64(), em1["free_vfs"].as_u64()),
        (Some(4), Some(3))
    );
    for args in [
        &["nic", "restore", "em1"][..],
        &["nic", "split", "em1", "--vfs", "2"][..],
    ] {
        let o = run(&state, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains("em1 (0000:04:00.0) has 1 leased VFs"), "{err}");
    }
    ok(&state, &["nic", "split", "em1", "--vfs", "4"]); // no change: allowed
    ok(&state, &["nic", "restore", "em1", "--force"]);
    assert_eq!(leases(&state)[0]["state"], "stale");
    let gc = json(&state, &["lease", "gc"]);
    assert_eq!(gc["actions"][0]["action"], "removed-stale");
    assert!(leases(&state).is_empty());
}
