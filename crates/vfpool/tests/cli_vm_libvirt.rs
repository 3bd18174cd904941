//! `vm create --memory --vcpus` and `vm start|stop --libvirt URI` through the built binary:
//! the size in `vm show` and the domain XML, and its refusals; without the `libvirt` feature
//! `--libvirt` is refused in one line; with it, an unreachable libvirt changes nothing, a
//! domain gone by stop is nothing to destroy, and a real libvirtd (started by the test in a
//! private mount namespace) that cannot start the domain leaves no domain and no lease.
//! In-process tests against `test:///default` are in src/vm_libvirt.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::path::{Path, PathBuf};

use common::{json, ok, run};

/// Fails with exit status `code` and one line on stderr containing every `want`.
fn fails(state: &Path, args: &[&str], code: i32, want: &[&str]) {
    let o = run(state, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "vfpool {args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    for w in want {
        assert!(err.contains(w), "vfpool {args:?}: {w:?} not in {err}");
    }
}

/// eno49 split in 2, an SR-IOV L2 and L3, VM `vm1` with one VF NIC.
fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().to_owned();
    ok(&s, &["nic", "split", "eno49", "--vfs", "2"]);
    ok(&s, &["l2", "create", "l2", "--nic", "eno49", "--sriov"]);
    ok(
        &s,
        &[
            "l3",
            "create",
            "net1",
            "--l2",
            "l2",
            "--cidr",
            "10.0.0.0/24",
            "--gateway",
            "10.0.0.1",
        ],
    );
    ok(&s, &["vm", "create", "vm1", "--nic", "l3=net1,sriov"]);
    (dir, s)
}

/// Nothing held: no lease, no address, `vm1` stopped with no domain recorded.
fn assert_nothing_held(s: &Path) {
    assert_eq!(json(s, &["lease", "list"]).as_array().unwrap().len(), 0);
    assert_eq!(json(s, &["l3", "show", "net1"])["allocated"], 0);
    let vm = json(s, &["vm", "show", "vm1"]);
    assert_eq!(vm["state"], "stopped");
    assert!(vm["libvirt"].is_null(), "{vm}");
}

#[test]
fn memory_and_vcpus_are_checked_kept_shown_and_in_the_domain() {
    let (_dir, state) = demo();
    let s = &state;
    // Defaults.
    let vm = json(s, &["vm", "show", "vm1"]);
    assert_eq!(
        (vm["memory_mib"].as_u64(), vm["vcpus"].as_u64()),
        (Some(1024), Some(1))
    );
    let big = json(
        s,
        &[
            "vm", "create", "big", "--nic", "l3=net1", "--memory", "4096", "--vcpus", "8",
        ],
    );
    assert_eq!(
        (big["memory_mib"].as_u64(), big["vcpus"].as_u64()),
        (Some(4096), Some(8))
    );
    assert!(ok(s, &["vm", "show", "big"]).starts_with(&format!(
        "vm big ({}): stopped, 4096 MiB, 8 vCPUs\n",
        big["uuid"].as_str().unwrap()
    )));
    assert_eq!(json(s, &["vm", "list"])[0]["memory_mib"], 4096);
    ok(s, &["vm", "start", "big"]);
    let xml = ok(s, &["vm", "xml", "big"]);
    assert!(xml.contains("<memory unit=\"MiB\">4096</memory>"), "{xml}");
    assert!(xml.contains("<vcpu>8</vcpu>"), "{xml}");
    ok(s, &["vm", "stop", "big"]);

    for (args, want) in [
        (
            &["--memory", "63"][..],
            "invalid memory '63': 64..=4194304 (MiB)",
        ),
        (&["--memory", "4194305"], "invalid memory '4194305'"),
        (
            &["--memory", "1G"],
            "invalid memory '1G': 64..=4194304 (MiB)",
        ),
        (&["--memory=-5"], "invalid memory '-5'"),
        (&["--vcpus", "0"], "invalid vcpus '0': 1..=4096"),
        (&["--vcpus", "4097"], "invalid vcpus '4097'"),
        (&["--vcpus", "two"], "invalid vcpus 'two': 1..=4096"),
    ] {
        let mut a = vec!["vm", "create", "bad"];
        a.extend_from_slice(args);
        fails(s, &a, 2, &[want]);
    }
    // Nothing created.
    assert_eq!(json(s, &["vm", "list"]).as_array().unwrap().len(), 2);
}

#[cfg(not(feature = "libvirt"))]
#[test]
fn without_the_feature_libvirt_is_refused_in_one_line_and_nothing_changes() {
    let (_dir, state) = demo();
    let s = &state;
    for args in [
        &["vm", "start", "vm1", "--libvirt", "test:///default"][..],
        &["vm", "stop", "vm1", "--libvirt", "test:///default"],
    ] {
        fails(
            s,
            args,
            1,
            &["--libvirt: this vfpool was built without libvirt's API (cargo feature `libvirt`"],
        );
        assert_nothing_held(s);
    }
    // A running VM is not stopped by the refusal either.
    ok(s, &["vm", "start", "vm1"]);
    fails(
        s,
        &["vm", "stop", "vm1", "--libvirt", "qemu:///system"],
        1,
        &["built without"],
    );
    assert_eq!(json(s, &["vm", "show", "vm1"])["state"], "running");
    assert_eq!(json(s, &["lease", "list"]).as_array().unwrap().len(), 1);
}

#[cfg(feature = "libvirt")]
#[test]
fn an_unreachable_libvirt_changes_nothing() {
    let (_dir, state) = demo();
    let s = &state;
    fails(
        s,
        &[
            "vm",
            "start",
            "vm1",
            "--libvirt",
            "test:///no/such/node.xml",
        ],
        1,
        &["connecting to libvirt at 'test:///no/such/node.xml'"],
    );
    assert_nothing_held(s);
    ok(s, &["vm", "start", "vm1"]);
    fails(
        s,
        &["vm", "stop", "vm1", "--libvirt", "test:///no/such/node.xml"],
        1,
        &["connecting to libvirt"],
    );
    assert_eq!(json(s, &["vm", "show", "vm1"])["state"], "running");
}

#[cfg(feature = "libvirt")]
#[test]
fn start_through_libvirt_then_a_stop_that_finds_no_domain_releases() {
    let (_dir, state) = demo();
    let s = &state;
    // test:///default lives as long as the process: started here...
    let vm = json(s, &["vm", "start", "vm1", "--libvirt", "test:///default"]);
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["libvirt"], "test:///default");
    assert!(vm["nics"][0]["vf"].is_string());
    // ...gone for this process: nothing to destroy, the leases given back.
    let vm = json(s, &["vm", "stop", "vm1", "--libvirt", "test:///default"]);
    assert_eq!(vm["state"], "stopped");
    assert_nothing_held(s);
}

/// The real libvirtd (QEMU driver) defines the domain and then cannot start it (the demo
/// host's VF is no PCI device here): the domain vfpool defined is undefined again, and the
/// leases and addresses are given back.
#[cfg(feature = "libvirt")]
#[test]
fn a_real_libvirtd_that_cannot_start_the_domain_leaves_no_domain_and_no_lease() {
    #[path = "../../libvirt/tests/support/libvirtd.rs"]
    mod libvirtd;
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let have = Path::new("/usr/sbin/libvirtd").exists() && Path::new("/usr/bin/virsh").exists();
    if !is_root || !have {
        assert!(
            std::env::var("VFPOOL_ALLOW_SKIP").as_deref() == Ok("1"),
            "this test needs root, /usr/sbin/libvirtd and virsh (Debian's libvirt-daemon-system, libvirt-clients); set VFPOOL_ALLOW_SKIP=1 to skip it on purpose"
        );
        eprintln!("SKIPPED real libvirtd test: root {is_root}, libvirtd and virsh {have}");
        return;
    }
    let (dir, state) = demo();
    let s = &state;
    let daemon = libvirtd::Libvirtd::spawn(&dir.path().join("libvirt"));
    let uri = daemon.uri();
    let o = run(s, &["vm", "start", "vm1", "--libvirt", &uri]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!(
            "error: vm vm1 not started through libvirt at '{uri}'; its VFs and addresses were given back: libvirt refused to start domain 'vm1': "
        )),
        "{err}"
    );
    assert_nothing_held(s);
    let list = std::process::Command::new("virsh")
        .args(["-c", &uri, "list", "--all", "--name"])
        .output()
        .unwrap();
    assert!(list.status.success());
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).trim(),
        "",
        "the domain vfpool defined is undefined again"
    );
}
