#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The plugin binary over the simulated demo host (no root: its namespaces are files):
//! the device-info file, a userspace (vfio-pci) VF that is leased and not moved, the
//! result in every version, and DEL/GC/STATUS from the lease alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

struct Demo {
    dir: tempfile::TempDir,
}

impl Demo {
    fn new() -> Self {
        let d = Demo {
            dir: tempfile::tempdir().unwrap(),
        };
        d.vfpool(&["nic", "split", "eno49", "--vfs", "4"]);
        d.vfpool(&["pool", "create", "web", "--select", "eno49#0-2"]);
        std::fs::create_dir_all(d.state().join("netns")).unwrap();
        d
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The CLI beside the plugin (a dev-dependency would not build it: the workspace does).
    fn vfpool(&self, args: &[&str]) -> Output {
        let bin = Path::new(env!("CARGO_BIN_EXE_vfpool-cni"))
            .parent()
            .unwrap()
            .join("vfpool");
        if !bin.is_file() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            assert!(
                Command::new(cargo)
                    .args(["build", "-p", "vfpool", "--bin", "vfpool"])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let o = Command::new(bin)
            .arg("--demo")
            .arg("--state")
            .arg(self.state())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "vfpool {args:?}: {o:?}");
        o
    }

    fn leases(&self) -> Vec<Value> {
        let o = self.vfpool(&["lease", "list", "-o", "json"]);
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn netns(&self, name: &str) -> PathBuf {
        let p = self.state().join("netns").join(name);
        std::fs::write(&p, "").unwrap();
        p
    }

    fn cni(&self, cmd: &str, cid: &str, netns: Option<&Path>, conf: &Value) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vfpool-cni"));
        c.env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", "/usr/lib/cni")
            .env("VFPOOL_STATE", self.state())
            .env("VFPOOL_SYSFS_ROOT", self.state().join("demo-host/sys"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ns) = netns {
            c.env("CNI_NETNS", ns);
        }
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(
            &mut child.stdin.take().unwrap(),
            conf.to_string().as_bytes(),
        )
        .unwrap();
        child.wait_with_output().unwrap()
    }

    /// The PCI address of VF `i` of eno49 (from the simulated sysfs).
    fn vf(&self, i: u16) -> String {
        let link = self
            .state()
            .join(format!("demo-host/sys/class/net/eno49/device/virtfn{i}"));
        std::fs::read_link(link)
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

fn ok_json(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "stdout {} stderr {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn err_json(o: &Output) -> Value {
    assert!(!o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn device_info_is_written_at_add_and_removed_at_del() {
    let d = Demo::new();
    let ns = d.netns("p1");
    let info_dir = d.dir.path().join("devinfo");
    let conf = json!({"cniVersion": "1.0.0", "name": "sriov-net", "type": "vfpool-cni",
        "pool": "web", "deviceInfoDir": info_dir});
    let r = ok_json(&d.cni("ADD", "c1", Some(&ns), &conf));
    let vf = r["interfaces"][0]["pciID"].as_str();
    // 1.0.0 has no pciID: the lease says which VF.
    assert!(vf.is_none(), "{r}");
    let lease = &d.leases()[0];
    let files: Vec<_> = std::fs::read_dir(&info_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let info: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(info["type"], "pci");
    assert_eq!(info["pci"]["pci-address"], lease["vf_pci"], "{info}");
    assert_eq!(info["pci"]["pf-pci-address"], lease["pf_pci"], "{info}");
    assert!(d.cni("DEL", "c1", Some(&ns), &conf).status.success());
    assert!(!files[0].exists(), "removed at DEL");
    assert!(d.leases().is_empty());
}

#[test]
fn a_vfio_vf_from_a_device_plugin_is_leased_not_moved() {
    let d = Demo::new();
    let vf = d.vf(1);
    // The device plugin bound it to vfio-pci (userspace / DPDK mode).
    let sysfs = d.state().join("demo-host/sys");
    let host = vfpool_engine::Host::open(&vfpool_engine::HostConfig {
        sysfs_root: Some(sysfs),
        state: Some(d.state()),
        ..Default::default()
    })
    .unwrap();
    vfpool_host::driver::bind(&host.fs, vf.parse().unwrap(), Some("vfio-pci")).unwrap();

    let ns = d.netns("dpdk");
    let conf = json!({"cniVersion": "1.1.0", "name": "dpdk-net", "type": "vfpool-cni",
        "deviceID": vf});
    let r = ok_json(&d.cni("ADD", "c2", Some(&ns), &conf));
    assert_eq!(r["interfaces"][0]["pciID"], vf, "{r}");
    assert!(r["interfaces"][0].get("mac").is_none(), "no netdev: {r}");
    let leases = d.leases();
    assert_eq!(leases[0]["vf_pci"], vf);
    assert_eq!(leases[0]["owner"], "cni/dpdk-net/c2/net1");
    assert!(leases[0]["ifname"].is_null(), "not moved: {}", leases[0]);
    // CHECK of a userspace VF: its lease and PF side, no netdev to look for.
    let mut chk = conf.clone();
    chk["prevResult"] = r.clone();
    let o = d.cni("CHECK", "c2", Some(&ns), &chk);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // A service path needs a netdev: refused, and nothing left leased.
    let conf2 = json!({"cniVersion": "1.1.0", "name": "dpdk-net", "type": "vfpool-cni",
        "deviceID": d.vf(2), "serviceRoute": {"cidr": "10.96.0.0/12"}});
    let e = err_json(&d.cni("ADD", "c3", Some(&d.netns("x")), &conf2));
    assert_eq!(e["code"], 7, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("serviceRoute"), "{e}");
    assert_eq!(d.leases().len(), 1);
    assert!(d.cni("DEL", "c2", None, &conf).status.success());
    assert!(d.leases().is_empty());
}

#[test]
fn the_result_is_written_in_the_version_asked() {
    let d = Demo::new();
    for (i, v) in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let ns = d.netns(&format!("v{i}"));
        let conf = json!({"cniVersion": v, "name": "n", "type": "vfpool-cni", "pool": "web",
            "ipam": {"type": "static", "addresses": [{"address": format!("10.7.0.{}/24", i + 2)}]}});
        let r = ok_json(&d.cni("ADD", &format!("v{i}"), Some(&ns), &conf));
        assert_eq!(r["cniVersion"], *v, "{r}");
        let ip = &r["ips"][0];
        assert_eq!(ip["interface"], 0, "{r}");
        assert_eq!(ip.get("version").is_some(), v.starts_with('0'), "{r}");
        assert_eq!(
            r["interfaces"][0].get("pciID").is_some(),
            *v == "1.1.0",
            "{r}"
        );
        assert!(
            d.cni("DEL", &format!("v{i}"), Some(&ns), &conf)
                .status
                .success()
        );
    }
}

#[test]
fn status_and_gc_work_from_the_ledger() {
    let d = Demo::new();
    let conf = json!({"cniVersion": "1.1.0", "name": "n", "type": "vfpool-cni", "pool": "web"});
    for c in ["a", "b", "c"] {
        ok_json(&d.cni("ADD", c, Some(&d.netns(c)), &conf));
    }
    // Pool web has three VFs, all leased now.
    let e = err_json(&d.cni("STATUS", "", None, &conf));
    assert_eq!(e["code"], 50, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("web"), "{e}");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "b", "ifname": "net1"}]);
    assert!(d.cni("GC", "", None, &gc).status.success());
    let owners: Vec<_> = d.leases().iter().map(|l| l["owner"].clone()).collect();
    assert_eq!(owners, [json!("cni/n/b/net1")]);
    assert!(d.cni("STATUS", "", None, &conf).status.success());
    // Another network's GC leaves this one's leases alone.
    let mut other = gc.clone();
    other["name"] = json!("other");
    other["cni.dev/valid-attachments"] = json!([]);
    assert!(d.cni("GC", "", None, &other).status.success());
    assert_eq!(d.leases().len(), 1);
}

#[test]
fn a_setting_the_drivers_refuses_names_the_setting_and_the_driver_and_rolls_back() {
    let d = Demo::new();
    let ns = d.netns("refused");
    let before = d.vfpool(&["nic", "show", "eno49", "-o", "json"]);
    let before: Value = serde_json::from_slice(&before.stdout).unwrap();
    // igb has no per-VF link state (igb_ndo_set_vf_link_state does not exist): the VLAN
    // applied before it must be undone.
    let conf = json!({"cniVersion": "1.1.0", "name": "n", "type": "vfpool-cni", "pool": "web",
        "vlan": 10, "link_state": "enable"});
    let e = err_json(&d.cni("ADD", "r1", Some(&ns), &conf));
    assert_eq!(e["code"], 103, "{e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains("igb") && msg.contains("link-state"), "{msg}");
    assert!(d.leases().is_empty());
    let after = d.vfpool(&["nic", "show", "eno49", "-o", "json"]);
    let after: Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(after["vfs"], before["vfs"], "every VF as it was");
}

/// An L2 on eno49 and L3 `net1` (10.9.0.0/29, gateway .1, range .1-.4: three addresses).
fn with_l3(d: &Demo) {
    d.vfpool(&["l2", "create", "l2", "--nic", "eno49", "--sriov"]);
    d.vfpool(&[
        "l3",
        "create",
        "net1",
        "--l2",
        "l2",
        "--cidr",
        "10.9.0.0/29",
        "--gateway",
        "10.9.0.1",
        "--range",
        "10.9.0.1-10.9.0.4",
        "--dns",
        "10.9.0.53",
    ]);
}

fn l3_holders(d: &Demo) -> Vec<(String, String)> {
    let o = d.vfpool(&["l3", "show", "net1", "-o", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["address"].as_str().unwrap().to_owned(),
                h["owner"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn vfpool_ipam(l3: &str) -> Value {
    json!({"cniVersion": "1.1.0", "name": "n", "type": "vfpool-cni", "pool": "web",
        "ipam": {"type": "vfpool", "l3": l3}})
}

#[test]
fn vfpool_ipam_hands_out_l3_addresses_a_vm_never_gets() {
    let d = Demo::new();
    with_l3(&d);
    let conf = vfpool_ipam("net1");
    let ns = d.netns("p1");
    let r = ok_json(&d.cni("ADD", "c1", Some(&ns), &conf));
    assert_eq!(
        r["ips"],
        json!([{"address": "10.9.0.2/29", "gateway": "10.9.0.1", "interface": 0}]),
        "{r}"
    );
    assert_eq!(
        r["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}]),
        "{r}"
    );
    assert_eq!(r["dns"]["nameservers"], json!(["10.9.0.53"]), "{r}");
    assert_eq!(
        l3_holders(&d),
        [("10.9.0.2".into(), "cni/n/c1/net1".into())]
    );
    let text = String::from_utf8(d.vfpool(&["l3", "show", "net1"]).stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["10.9.0.2", "cni/n/c1/net1"])),
        "{text}"
    );
    // ADD again (a runtime's retry): the same address, nothing more taken.
    let again = ok_json(&d.cni("ADD", "c1", Some(&ns), &conf));
    assert_eq!(again["ips"], r["ips"]);
    assert_eq!(l3_holders(&d).len(), 1);

    // CHECK: the owner holds the address prevResult has.
    let mut chk = conf.clone();
    chk["prevResult"] = r.clone();
    let o = d.cni("CHECK", "c1", Some(&ns), &chk);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // A VM started now skips the pod's address.
    d.vfpool(&["vm", "create", "v1", "--nic", "l3=net1"]);
    d.vfpool(&["vm", "start", "v1"]);
    let vm: Value =
        serde_json::from_slice(&d.vfpool(&["vm", "show", "v1", "-o", "json"]).stdout).unwrap();
    assert_eq!(vm["nics"][0]["address"], "10.9.0.3", "{vm}");

    // DEL frees it: the next VM gets the pod's old address.
    assert!(d.cni("DEL", "c1", Some(&ns), &conf).status.success());
    assert_eq!(l3_holders(&d), [("10.9.0.3".into(), "vm/v1/nic0".into())]);
    // DEL again: nothing to free, no error.
    assert!(d.cni("DEL", "c1", Some(&ns), &conf).status.success());
    // CHECK after DEL fails (the lease is gone, and so is the address).
    let e = err_json(&d.cni("CHECK", "c1", Some(&ns), &chk));
    assert_eq!(e["code"], 105, "{e}");
    d.vfpool(&["vm", "create", "v2", "--nic", "l3=net1"]);
    d.vfpool(&["vm", "start", "v2"]);
    let vm: Value =
        serde_json::from_slice(&d.vfpool(&["vm", "show", "v2", "-o", "json"]).stdout).unwrap();
    assert_eq!(vm["nics"][0]["address"], "10.9.0.2", "{vm}");

    // The range is now full (.2 and .3 to VMs, .4 left): one pod more, then exhaustion.
    ok_json(&d.cni("ADD", "c2", Some(&d.netns("p2")), &conf));
    let e = err_json(&d.cni("ADD", "c3", Some(&d.netns("p3")), &conf));
    assert_eq!(e["code"], 101, "{e}");
    assert!(
        e["msg"].as_str().unwrap().contains("no free address"),
        "{e}"
    );
    assert!(e["details"].as_str().unwrap().contains("exhausted"), "{e}");
    // The failed ADD gave its VF back.
    assert_eq!(d.leases().len(), 1, "only c2's lease");
}

#[test]
fn vfpool_ipam_check_fails_when_the_address_was_given_back() {
    let d = Demo::new();
    with_l3(&d);
    let conf = vfpool_ipam("net1");
    let ns = d.netns("p1");
    let r = ok_json(&d.cni("ADD", "c1", Some(&ns), &conf));
    // The address given back behind the plugin's back (the lease stays).
    let host = vfpool_engine::Host::open(&vfpool_engine::HostConfig {
        sysfs_root: Some(d.state().join("demo-host/sys")),
        state: Some(d.state()),
        ..Default::default()
    })
    .unwrap();
    host.engine().unwrap().l3_release("cni/n/c1/net1").unwrap();
    let mut chk = conf.clone();
    chk["prevResult"] = r;
    let e = err_json(&d.cni("CHECK", "c1", Some(&ns), &chk));
    assert_eq!(e["code"], 105, "{e}");
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("cni/n/c1/net1 holds no address on l3 net1"),
        "{e}"
    );
    // Given another address since (a VM took the old one first): prevResult is stale.
    d.vfpool(&["vm", "create", "v", "--nic", "l3=net1"]);
    d.vfpool(&["vm", "start", "v"]);
    let again = host
        .engine()
        .unwrap()
        .l3_allocate("net1", "cni/n/c1/net1")
        .unwrap();
    assert_eq!(again.address.to_string(), "10.9.0.3");
    let e = err_json(&d.cni("CHECK", "c1", Some(&ns), &chk));
    assert_eq!(e["code"], 105, "{e}");
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("cni/n/c1/net1 holds 10.9.0.3 on l3 net1, prevResult does not have it"),
        "{e}"
    );
}

#[test]
fn vfpool_ipam_gc_frees_the_addresses_of_attachments_not_kept() {
    let d = Demo::new();
    with_l3(&d);
    let conf = vfpool_ipam("net1");
    for c in ["a", "b"] {
        ok_json(&d.cni("ADD", c, Some(&d.netns(c)), &conf));
    }
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "b", "ifname": "net1"}]);
    assert!(d.cni("GC", "", None, &gc).status.success());
    assert_eq!(l3_holders(&d), [("10.9.0.3".into(), "cni/n/b/net1".into())]);
    let owners: Vec<_> = d.leases().iter().map(|l| l["owner"].clone()).collect();
    assert_eq!(owners, [json!("cni/n/b/net1")]);
}

#[test]
fn vfpool_ipam_bad_input_is_code_7_naming_the_field() {
    let d = Demo::new();
    with_l3(&d);
    let ns = d.netns("bad");
    let cases = [
        (vfpool_ipam("nope"), "ipam.l3", "nope"),
        (
            json!({"cniVersion": "1.1.0", "name": "n", "type": "vfpool-cni", "pool": "web",
                "ipam": {"type": "vfpool"}}),
            "ipam.l3",
            "missing",
        ),
        (
            json!({"cniVersion": "1.1.0", "name": "n", "type": "vfpool-cni", "pool": "web",
                "ipam": {"type": "vfpool", "l3": 5}}),
            "ipam.l3",
            "5",
        ),
        (vfpool_ipam(""), "ipam.l3", "''"),
    ];
    for (conf, field, value) in cases {
        let e = err_json(&d.cni("ADD", "x", Some(&ns), &conf));
        assert_eq!(e["code"], 7, "{e}");
        let msg = e["msg"].as_str().unwrap();
        assert!(msg.contains(field) && msg.contains(value), "{msg}");
        assert!(d.leases().is_empty(), "nothing left leased: {msg}");
    }
    assert!(l3_holders(&d).is_empty());
}

#[test]
fn vfpool_ipam_an_add_failing_after_the_allocation_gives_the_address_back() {
    let d = Demo::new();
    with_l3(&d);
    let vf = d.vf(3);
    let host = vfpool_engine::Host::open(&vfpool_engine::HostConfig {
        sysfs_root: Some(d.state().join("demo-host/sys")),
        state: Some(d.state()),
        ..Default::default()
    })
    .unwrap();
    vfpool_host::driver::bind(&host.fs, vf.parse().unwrap(), Some("vfio-pci")).unwrap();
    // A service path needs a netdev: refused after IPAM ran.
    let conf = json!({"cniVersion": "1.1.0", "name": "n", "type": "vfpool-cni",
        "deviceID": vf, "serviceRoute": {"cidr": "10.96.0.0/12"},
        "ipam": {"type": "vfpool", "l3": "net1"}});
    let e = err_json(&d.cni("ADD", "u1", Some(&d.netns("u1")), &conf));
    assert_eq!(e["code"], 7, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("serviceRoute"), "{e}");
    assert!(d.leases().is_empty());
    assert!(l3_holders(&d).is_empty(), "the address was given back");
}
