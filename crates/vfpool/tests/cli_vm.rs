//! The `l2`, `l3` and `vm` commands through the real binary on the demo host: the third
//! seed's whole flow, every refusal with its exit status, and `lease gc` with VMs.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use vfpool_netlink::NetOps;
use vfpool_sim::SimNetOps;

use common::{json, ok, run};

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

fn leases(state: &Path) -> Vec<Value> {
    json(state, &["lease", "list"]).as_array().unwrap().clone()
}

/// The seed's set-up: eno49 split in 2, L2 `sriov-l2` (VLAN 100, SR-IOV), L3 `net1`.
fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_owned();
    ok(&state, &["nic", "split", "eno49", "--vfs", "2"]);
    let l2 = json(
        &state,
        &[
            "l2", "create", "sriov-l2", "--nic", "eno49", "--vlan", "100", "--sriov",
        ],
    );
    assert_eq!(l2["type"], "vlan");
    assert_eq!(l2["sriov"], true);
    let l3 = json(
        &state,
        &[
            "l3",
            "create",
            "net1",
            "--l2",
            "sriov-l2",
            "--cidr",
            "192.168.10.0/24",
            "--gateway",
            "192.168.10.1",
            "--range",
            "192.168.10.10-192.168.10.20",
        ],
    );
    assert_eq!(l3["sriov"], true);
    assert_eq!(l3["range_first"], "192.168.10.10");
    (dir, state)
}

#[test]
fn the_third_seeds_flow_on_the_demo_host() {
    let (_dir, state) = demo();
    let s = &state;
    let check = json(s, &["l3", "check-vf", "net1"]);
    assert_eq!(
        (check["free"].as_u64(), check["pool"].as_str()),
        (Some(2), Some("pf:eno49"))
    );

    let vm = json(
        s,
        &[
            "vm",
            "create",
            "vm1",
            "--nic",
            "l3=net1,sriov,mac=02:00:00:00:01:01",
        ],
    );
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["nics"][0]["type"], "vf");
    assert_eq!(vm["nics"][0]["nic"], "eno49");
    assert_eq!(vm["nics"][0]["vlan"], 100);

    // Start: the VF leased with the NIC's MAC and the L2's VLAN, bound to vfio-pci.
    let vm = json(s, &["vm", "start", "vm1"]);
    assert_eq!(vm["state"], "running");
    let vf = vm["nics"][0]["vf"].as_str().unwrap().to_owned();
    assert_eq!(vm["nics"][0]["address"], "192.168.10.10");
    let l = leases(s);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["owner"], "vm/vm1/nic0");
    assert_eq!(l[0]["vf_pci"], vf.as_str());
    assert_eq!(driver_of(s, &vf).as_deref(), Some("vfio-pci"));
    let index = l[0]["vf_index"].as_u64().unwrap() as u16;
    let net = SimNetOps::new(s.join("demo-host"));
    let cfg = |net: &SimNetOps| {
        net.vf_configs("eno49")
            .unwrap()
            .into_iter()
            .find(|(i, _)| *i == index)
            .unwrap()
            .1
    };
    assert_eq!(cfg(&net).mac.to_string(), "02:00:00:00:01:01");
    assert_eq!(cfg(&net).vlan, 100);

    // Running with a VF: migrate and set-type refused, naming the NIC and the VM.
    fails(
        s,
        &["vm", "migrate", "vm1", "--to", "host2"],
        4,
        &["nic0", "vm1"],
    );
    fails(
        s,
        &["vm", "nic", "set-type", "vm1", "nic0", "vnic"],
        4,
        &["vm 'vm1' is running"],
    );
    fails(s, &["vm", "delete", "vm1"], 4, &["vm 'vm1' is running"]);

    // Stop: the VF released, back to igbvf with the kernel's defaults.
    let vm = json(s, &["vm", "stop", "vm1"]);
    assert_eq!(vm["state"], "stopped");
    assert_eq!(vm["nics"][0]["vf"], Value::Null);
    assert!(leases(s).is_empty());
    assert_eq!(driver_of(s, &vf).as_deref(), Some("igbvf"));
    assert_eq!(cfg(&net).vlan, 0);

    // Every VF taken: the start fails naming the L3 and the counts, nothing leased.
    ok(
        s,
        &["lease", "acquire", "--pool", "pf:eno49", "--owner", "a"],
    );
    ok(
        s,
        &["lease", "acquire", "--pool", "pf:eno49", "--owner", "b"],
    );
    fails(
        s,
        &["vm", "start", "vm1"],
        6,
        &["l3 'net1' has 0 free VFs on eno49, 1 needed"],
    );
    assert_eq!(leases(s).len(), 2);
    assert_eq!(json(s, &["vm", "show", "vm1"])["state"], "stopped");
    ok(s, &["lease", "release", "a"]);
    ok(s, &["lease", "release", "b"]);

    // Stopped: migration allowed, set-type both ways.
    assert_eq!(
        json(s, &["vm", "migrate", "vm1", "--to", "host2"])["allowed"],
        true
    );
    let vm = json(s, &["vm", "nic", "set-type", "vm1", "nic0", "vnic"]);
    assert_eq!(vm["nics"][0]["type"], "vnic");
    let vm = json(s, &["vm", "nic", "set-type", "vm1", "0", "vf"]);
    assert_eq!(vm["nics"][0]["type"], "vf");

    // Restore with VFs in a VM: refused naming it; --force detaches them.
    json(s, &["vm", "start", "vm1"]);
    fails(s, &["nic", "restore", "eno49"], 4, &["vm1", "--force"]);
    ok(s, &["nic", "restore", "eno49", "--force"]);
    let vm = json(s, &["vm", "show", "vm1"]);
    assert_eq!(vm["nics"][0]["detached"], true);
    assert_eq!(vm["nics"][0]["vf"], Value::Null);
    assert!(
        ok(s, &["vm", "show", "vm1"]).contains("yes"),
        "table shows DETACHED"
    );
    assert!(leases(s).is_empty());
    json(s, &["vm", "stop", "vm1"]);
    ok(s, &["vm", "delete", "vm1"]);
    assert!(json(s, &["vm", "list"]).as_array().unwrap().is_empty());
}

#[test]
fn gc_releases_a_deleted_vms_lease_and_keeps_a_running_ones() {
    let (_dir, state) = demo();
    let s = &state;
    json(s, &["vm", "create", "run", "--nic", "l3=net1,sriov"]);
    json(s, &["vm", "create", "gone", "--nic", "l3=net1,sriov"]);
    json(s, &["vm", "start", "run"]);
    json(s, &["vm", "start", "gone"]);
    forget_vm(s, "gone");
    let gc = json(s, &["lease", "gc"]);
    let actions = gc["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{gc}");
    assert_eq!(actions[0]["owner"], "vm/gone/nic0");
    assert_eq!(actions[0]["action"], "released-owner-gone");
    let l = leases(s);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["owner"], "vm/run/nic0");
}

/// Deletes VM `vm`'s rows behind vfpool's back, as a platform that forgot it would: its
/// lease is left.
fn forget_vm(state: &Path, vm: &str) {
    rusqlite::Connection::open(state.join("state.db"))
        .unwrap()
        .execute_batch(&format!(
            "DELETE FROM vm_nics WHERE vm = '{vm}'; DELETE FROM vms WHERE name = '{vm}';"
        ))
        .unwrap();
}

#[test]
fn bad_input_gets_one_line_naming_field_and_value() {
    let (_dir, state) = demo();
    let s = &state;
    fails(
        s,
        &[
            "l2", "create", "vx", "--nic", "eno50", "--type", "vxlan", "--vlan", "5000", "--sriov",
        ],
        2,
        &["invalid sriov 'on'", "vxlan"],
    );
    fails(
        s,
        &["l2", "create", "x", "--nic", "eno50", "--type", "ring"],
        2,
        &["invalid type 'ring'", "novlan, vlan or vxlan"],
    );
    fails(
        s,
        &["l2", "create", "x", "--nic", "eno50", "--vlan", "4095"],
        2,
        &["invalid vlan '4095'"],
    );
    fails(
        s,
        &["l2", "set", "sriov-l2", "--sriov", "maybe"],
        2,
        &["invalid sriov 'maybe'"],
    );
    fails(
        s,
        &["l2", "show", "nope"],
        3,
        &["unknown l2 'nope' (known: sriov-l2)"],
    );
    fails(
        s,
        &[
            "l3",
            "create",
            "n2",
            "--l2",
            "sriov-l2",
            "--cidr",
            "192.168.10.0/25",
            "--gateway",
            "192.168.10.1",
        ],
        4,
        &["overlaps l3 'net1' (192.168.10.0/24)"],
    );
    fails(
        s,
        &[
            "l3",
            "create",
            "n2",
            "--l2",
            "sriov-l2",
            "--cidr",
            "10.1.0.0/16",
            "--gateway",
            "10.2.0.1",
        ],
        2,
        &["invalid gateway '10.2.0.1': an address inside 10.1.0.0/16"],
    );
    fails(
        s,
        &[
            "l3",
            "create",
            "n2",
            "--l2",
            "sriov-l2",
            "--cidr",
            "10.1.0.0/16",
            "--gateway",
            "10.1.0.1",
            "--range",
            "10.1.0.5-10.3.0.0",
        ],
        2,
        &["invalid range '10.1.0.5-10.3.0.0'"],
    );
    fails(
        s,
        &[
            "l3",
            "create",
            "n2",
            "--l2",
            "sriov-l2",
            "--cidr",
            "10.1.0.0/40",
            "--gateway",
            "10.1.0.1",
        ],
        2,
        &["invalid cidr '10.1.0.0/40'"],
    );
    fails(
        s,
        &[
            "l3",
            "create",
            "n2",
            "--l2",
            "nope",
            "--cidr",
            "10.1.0.0/16",
            "--gateway",
            "10.1.0.1",
        ],
        3,
        &["unknown l2 'nope'"],
    );
    fails(s, &["l3", "check-vf", "nope"], 3, &["unknown l3 'nope'"]);
    fails(
        s,
        &["vm", "create", "v", "--nic", "l3=net1,vf"],
        2,
        &["invalid nic 'l3=net1,vf'", "l3=L3[,sriov][,mac=MAC]"],
    );
    fails(
        s,
        &["vm", "create", "v", "--nic", "l3=nope"],
        3,
        &["unknown l3 'nope'"],
    );
    json(
        s,
        &[
            "vm",
            "create",
            "v",
            "--nic",
            "l3=net1,mac=02:00:00:00:00:09",
        ],
    );
    fails(
        s,
        &[
            "vm",
            "create",
            "w",
            "--nic",
            "l3=net1,mac=02:00:00:00:00:09",
        ],
        4,
        &["mac 02:00:00:00:00:09 is taken on l2 'sriov-l2' by v/nic0"],
    );
    fails(
        s,
        &["vm", "nic", "set-type", "v", "nic3", "vf"],
        3,
        &["unknown vm nic 'v/nic3'"],
    );
    fails(
        s,
        &["vm", "nic", "set-type", "v", "nic0", "sriov"],
        2,
        &["invalid type 'sriov': vf or vnic"],
    );
    fails(
        s,
        &["vm", "nic", "remove", "v", "first"],
        2,
        &["invalid nic 'first'"],
    );
    fails(
        s,
        &["vm", "start", "nope"],
        3,
        &["unknown vm 'nope' (known: v)"],
    );
    fails(s, &["vm", "stop", "v"], 4, &["vm 'v' is stopped"]);
    fails(s, &["l3", "delete", "net1"], 4, &["used by VM NICs v/nic0"]);
    // Nothing half-made by the refusals.
    assert_eq!(json(s, &["vm", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(json(s, &["l3", "list"]).as_array().unwrap().len(), 1);
    // And the happy path of nic add/remove.
    let vm = json(s, &["vm", "nic", "add", "v", "l3=net1,sriov"]);
    assert_eq!(vm["nics"][1]["type"], "vf");
    let vm = json(s, &["vm", "nic", "remove", "v", "nic0"]);
    assert_eq!(vm["nics"].as_array().unwrap().len(), 1);
    assert_eq!(vm["nics"][0]["name"], "nic1");
}

/// Five VMs of two VF NICs each start at once for seven VFs: whatever the interleaving, a VM
/// either runs with a VF on every VF NIC or stays stopped holding nothing (a start that
/// lost a race gives back what it took), and no VF is leased twice.
#[test]
fn vms_racing_for_too_few_vfs_start_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path();
    ok(s, &["nic", "split", "eno50", "--vfs", "7"]);
    ok(s, &["l2", "create", "l2", "--nic", "eno50", "--sriov"]);
    ok(
        s,
        &[
            "l3",
            "create",
            "n",
            "--l2",
            "l2",
            "--cidr",
            "10.9.0.0/24",
            "--gateway",
            "10.9.0.1",
        ],
    );
    let names: Vec<String> = (0..5).map(|i| format!("vm{i}")).collect();
    for n in &names {
        ok(
            s,
            &[
                "vm",
                "create",
                n,
                "--nic",
                "l3=n,sriov",
                "--nic",
                "l3=n,sriov",
            ],
        );
    }
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            common::vfpool(s, &["vm", "start", n])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut started = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        match o.status.code() {
            Some(0) => started += 1,
            Some(6) => {}
            other => panic!("{other:?}: {}", String::from_utf8_lossy(&o.stderr)),
        }
    }
    assert!((1..=3).contains(&started), "{started} started");
    let l = leases(s);
    let vfs: std::collections::HashSet<&str> =
        l.iter().map(|x| x["vf_pci"].as_str().unwrap()).collect();
    assert_eq!(vfs.len(), l.len(), "a VF leased twice");
    assert_eq!(l.len(), 2 * started);
    for v in json(s, &["vm", "list"]).as_array().unwrap() {
        let with_vf = v["nics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["vf"].is_string())
            .count();
        match v["state"].as_str().unwrap() {
            "running" => assert_eq!(with_vf, 2, "{v}"),
            _ => assert_eq!(with_vf, 0, "{v}"),
        }
    }
}

/// A start killed after its first VF lease and before recording it on the VM: the VM reads
/// as running (so `lease gc` keeps the lease), and `vm stop` gives back the lease it never
/// recorded.
#[test]
fn a_start_killed_midway_is_cleaned_up_by_stop() {
    use std::os::unix::process::ExitStatusExt;
    let (_dir, state) = demo();
    let s = &state;
    json(
        s,
        &[
            "vm",
            "create",
            "vm1",
            "--nic",
            "l3=net1,sriov",
            "--nic",
            "l3=net1,sriov",
        ],
    );
    let point = vfpool_engine::fault::VM_POINTS[0];
    let o = common::vfpool(s, &["vm", "start", "vm1"])
        .env("VFPOOL_FAULT", point)
        .output()
        .unwrap();
    assert_eq!(o.status.signal(), Some(9), "killed at {point}");
    let vm = json(s, &["vm", "show", "vm1"]);
    assert_eq!(vm["state"], "running");
    let l = leases(s);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["owner"], "vm/vm1/nic0");
    let vf = l[0]["vf_pci"].as_str().unwrap().to_owned();
    assert_eq!(
        json(s, &["lease", "gc"])["kept"],
        1,
        "a running VM's lease is kept"
    );
    json(s, &["vm", "stop", "vm1"]);
    assert!(leases(s).is_empty());
    assert_eq!(driver_of(s, &vf).as_deref(), Some("igbvf"));
    // And it starts whole afterwards.
    let vm = json(s, &["vm", "start", "vm1"]);
    assert!(
        vm["nics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["vf"].is_string())
    );
}

/// `virt-xml-validate FILE KIND`: libvirt's own schema (Debian's libvirt-clients, which
/// scripts/test-all.sh installs; missing it fails this test).
fn validate(xml: &str, kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(format!("{kind}.xml"));
    std::fs::write(&f, xml).unwrap();
    let o = std::process::Command::new("virt-xml-validate")
        .arg(&f)
        .arg(kind)
        .output()
        .expect("virt-xml-validate (libvirt-clients) is needed: scripts/test-all.sh installs it");
    assert!(
        o.status.success(),
        "libvirt's schema refuses the {kind}: {}{}\n{xml}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn vm_xml_is_a_domain_libvirt_accepts_with_the_leased_vf_and_l2_gives_the_seeds_network() {
    let (_dir, state) = demo();
    ok(
        &state,
        &[
            "vm",
            "create",
            "vmx",
            "--nic",
            "l3=net1,sriov,mac=02:00:00:00:20:01",
            "--nic",
            "l3=net1,mac=02:00:00:00:20:02",
        ],
    );
    // Stopped: its VF NIC has no VF yet.
    fails(
        &state,
        &["vm", "xml", "vmx"],
        4,
        &["nic0", "start it first"],
    );
    ok(&state, &["vm", "start", "vmx"]);
    let vm = json(&state, &["vm", "show", "vmx"]);
    let vf = vm["nics"][0]["vf"].as_str().unwrap().to_owned();
    let xml = ok(&state, &["vm", "xml", "vmx"]);
    validate(&xml, "domain");
    let parsed = vfpool_libvirt::vf_addresses_of(&xml).unwrap();
    assert_eq!(
        parsed.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        [vf],
        "{xml}"
    );
    assert!(
        xml.contains("02:00:00:00:20:01") && xml.contains("02:00:00:00:20:02"),
        "{xml}"
    );
    assert!(
        xml.contains("<tag id=\"100\"/>"),
        "the L2's VLAN on the VF: {xml}"
    );
    assert!(
        xml.contains("eno49.100"),
        "the vNIC on the VLAN's sub-interface: {xml}"
    );
    assert!(xml.contains(vm["uuid"].as_str().unwrap()), "{xml}");

    let net = ok(&state, &["l2", "libvirt-network", "sriov-l2"]);
    validate(&net, "network");
    assert!(
        net.contains("mode=\"hostdev\"") && net.contains("<pf dev=\"eno49\"/>"),
        "{net}"
    );
    fails(&state, &["l2", "libvirt-network", "nope"], 3, &["nope"]);
    fails(&state, &["vm", "xml", "nope"], 3, &["nope"]);
    ok(&state, &["vm", "stop", "vmx"]);
}
