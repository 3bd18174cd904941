//! The JSON that users script against (README, "JSON contracts" and "Pools and leases"),
//! as the engine's view types print it through the binary: field names, `null` against
//! absent, and the views that join the host with the ledger (`nic list`, `nic show`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn run(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .arg("--demo")
        .arg("--state")
        .arg(state)
        .args(args)
        .env_remove("VFPOOL_STATE")
        .env_remove("VFPOOL_SYSFS_ROOT")
        .env_remove("VFPOOL_FAULT")
        .env("VFPOOL_LOG", "error")
        .output()
        .unwrap()
}

fn json(state: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let o = run(state, &a);
    assert!(
        o.status.success(),
        "vfpool {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

fn sorted<'a>(k: &[&'a str]) -> Vec<&'a str> {
    let mut k = k.to_vec();
    k.sort_unstable();
    k
}

const VF_KEYS: [&str; 9] = [
    "index",
    "pci",
    "netdev",
    "driver",
    "mac",
    "iommu_group",
    "numa_node",
    "owner",
    "config",
];

const LEASE_KEYS: [&str; 15] = [
    "id",
    "owner",
    "owner_kind",
    "pool",
    "vf_pci",
    "pf",
    "pf_pci",
    "vf_index",
    "netdev",
    "netns",
    "ifname",
    "created",
    "state",
    "applied",
    "original",
];

#[test]
fn nic_and_lease_views_join_host_and_ledger_as_documented() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    json(s, &["nic", "split", "eno49", "--vfs", "3"]);
    json(s, &["pool", "create", "p", "--select", "eno49"]);
    let lease = json(
        s,
        &[
            "lease", "acquire", "--pool", "p", "--owner", "vm-1", "--vlan", "100",
        ],
    );
    assert_eq!(keys(&lease), sorted(&LEASE_KEYS));
    assert_eq!(lease["state"], "active");
    assert!(lease["netns"].is_null() && lease["ifname"].is_null());

    // `nic list`: free VFs less the lease.
    let list = json(s, &["nic", "list"]);
    let eno49 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "eno49")
        .unwrap();
    assert_eq!(
        (eno49["num_vfs"].as_u64(), eno49["free_vfs"].as_u64()),
        (Some(3), Some(2))
    );
    assert!(eno49.get("vfs").is_none(), "nic list has no vfs");

    // `nic show PF`: the list's object plus vfs, each with owner (or null) and config.
    let show = json(s, &["nic", "show", "eno49"]);
    let mut pf_keys = keys(eno49);
    pf_keys.push("vfs");
    assert_eq!(keys(&show), sorted(&pf_keys));
    let vfs = show["vfs"].as_array().unwrap();
    assert_eq!(vfs.len(), 3);
    for v in vfs {
        assert_eq!(keys(v), sorted(&VF_KEYS));
    }
    let leased = &vfs[lease["vf_index"].as_u64().unwrap() as usize];
    assert_eq!(leased["owner"], "vm-1");
    assert_eq!(leased["config"]["vlan"], 100);
    assert_eq!(vfs.iter().filter(|v| v["owner"].is_null()).count(), 2);

    // `nic show VF`.
    let vf = json(s, &["nic", "show", lease["vf_pci"].as_str().unwrap()]);
    let mut vf_keys = VF_KEYS.to_vec();
    vf_keys.extend(["name", "state", "pf", "pf_pci"]);
    assert_eq!(keys(&vf), sorted(&vf_keys));
    assert_eq!(
        (vf["state"].as_str(), vf["owner"].as_str()),
        (Some("vf"), Some("vm-1"))
    );
    assert_eq!(vf["pf"], "eno49");

    // `pool show`: a leased VF has an owner and no reason; a free one neither.
    let pool = json(s, &["pool", "show", "p"]);
    let pvfs = pool["vfs"].as_array().unwrap();
    let mine = pvfs
        .iter()
        .find(|v| v["vf_pci"] == lease["vf_pci"])
        .unwrap();
    assert_eq!(
        (mine["state"].as_str(), mine["owner"].as_str()),
        (Some("leased"), Some("vm-1"))
    );
    assert!(mine.get("reason").is_none());
    let free = pvfs.iter().find(|v| v["state"] == "free").unwrap();
    assert!(free.get("owner").is_none() && free.get("reason").is_none());
    assert!(pool.get("unhealthy_reasons").is_none());

    // `lease release`: the lease, `released`.
    let rel = json(s, &["lease", "release", "vm-1"]);
    assert_eq!(keys(&rel), sorted(&LEASE_KEYS));
    assert_eq!(
        (rel["state"].as_str(), rel["id"].clone()),
        (Some("released"), lease["id"].clone())
    );

    // `host apply`: {nics, leases, gc}.
    let apply = json(s, &["host", "apply"]);
    assert_eq!(keys(&apply), ["gc", "leases", "nics"]);
    assert_eq!(
        keys(&apply["gc"]),
        [
            "actions",
            "addresses_freed",
            "errors",
            "in_progress",
            "kept"
        ]
    );
    assert_eq!(apply["nics"][0]["nic"], "eno49");
}

#[test]
fn nic_views_work_without_the_ledger_and_say_so() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    json(s, &["nic", "split", "eno49", "--vfs", "2"]);
    json(s, &["pool", "create", "p", "--select", "eno49"]);
    json(s, &["lease", "acquire", "--pool", "p", "--owner", "vm-1"]);
    std::fs::write(
        s.join("state.db"),
        b"not a database, and long enough to be read as one",
    )
    .unwrap();
    for args in [
        ["nic", "list"].as_slice(),
        ["nic", "show", "eno49"].as_slice(),
    ] {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let o = run(s, &a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {err}");
        assert!(
            err.starts_with("warning: the lease ledger cannot be read (")
                && err.contains("owners and free VFs are not shown"),
            "{args:?}: {err}"
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let nic = match v.as_array() {
            Some(list) => list.iter().find(|n| n["name"] == "eno49").unwrap().clone(),
            None => v,
        };
        assert_eq!(nic["free_vfs"], nic["num_vfs"]);
        if let Some(vfs) = nic["vfs"].as_array() {
            assert!(
                vfs.iter()
                    .all(|v| v["owner"].is_null() && v["config"].is_object())
            );
        }
    }
}

#[test]
fn lease_release_takes_exactly_one_of_owner_and_vf() {
    let d = tempfile::tempdir().unwrap();
    let s = d.path();
    for args in [
        ["lease", "release"].as_slice(),
        ["lease", "release", "vm-1", "--vf", "0000:03:10.0"].as_slice(),
    ] {
        let o = run(s, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--vf"), "{args:?}: {err}");
    }
}
