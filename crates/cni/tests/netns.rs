//! Tier 2, as root: `vfpool-cni` as a separate process over a simulated sysfs tree whose
//! VF netdevs are macvlan stand-ins (bridge mode on a veth PF stand-in) in a test host
//! namespace, driven with the kernel's rtnetlink (`VFPOOL_NETLINK=kernel`); pods are
//! namespaces the test makes. GC, STATUS and CHECK are driven as libcni 1.2+ does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Lab, Netns, ip, need_cni_plugins, run_in, skip_unless_root};
use serde_json::{Value, json};

fn lab(test: &str, pf: &str, vfs: u32) -> Option<Lab> {
    if skip_unless_root(test) {
        return None;
    }
    need_cni_plugins();
    common::need_package("busybox-static", "/usr/bin/busybox");
    Some(Lab::new(pf, vfs))
}

fn ip4(result: &Value, i: usize) -> String {
    result["ips"][i]["address"].as_str().unwrap().to_owned()
}

fn bare(addr: &str) -> &str {
    addr.split('/').next().unwrap()
}

#[test]
fn two_pods_get_their_vfs_ping_each_other_and_reach_services() {
    let Some(lab) = lab(
        "two_pods_get_their_vfs_ping_each_other_and_reach_services",
        "eno49",
        3,
    ) else {
        return;
    };
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let conf = lab.conf(
        "1.1.0",
        "10.1.0.0/24",
        json!({"serviceRoute": {"cidr": "10.96.0.0/12"}}),
    );
    let ra = lab.add("ca", &a, &conf);
    let rb = lab.add("cb", &b, &conf);

    for (ns, r) in [(&a, &ra), (&b, &rb)] {
        assert_eq!(r["cniVersion"], "1.1.0");
        let i = &r["interfaces"][0];
        assert_eq!(i["name"], "net1");
        assert_eq!(i["sandbox"], ns.path_str().as_str());
        let pci = i["pciID"].as_str().unwrap();
        let s = lab.standin(pci);
        assert_eq!(i["mac"], s.mac.as_str(), "the stand-in's own MAC");
        assert_eq!(r["ips"][0]["interface"], 0);
        assert_eq!(r["ips"][0]["gateway"], "10.1.0.1");
        // The netdev is there under the ifname, up, with the MAC, not promiscuous.
        let l = ns.link("net1").expect("net1 in the pod");
        assert_eq!(l["address"], s.mac.as_str());
        assert!(
            l["flags"].as_array().unwrap().contains(&json!("UP")),
            "{l:#}"
        );
        assert_eq!(l["promiscuity"], 0);
        assert!(lab.host.link(&s.name).is_none(), "moved out of the host");
        assert_eq!(ns.addrs4("net1"), [ip4(r, 0)]);
        let routes = ns.routes4();
        assert!(routes.contains("default via 10.1.0.1 dev net1"), "{routes}");
        // The service path: the pod's end and route, the host's end.
        assert!(
            routes.contains(&format!(
                "10.96.0.0/12 via 169.254.1.1 dev svc-net1 src {} onlink",
                bare(&ip4(r, 0))
            )),
            "{routes}"
        );
        let host_end = r["interfaces"][1]["name"].as_str().unwrap();
        assert!(host_end.starts_with("vfs"), "{r:#}");
        assert_eq!(lab.host.addrs4(host_end), ["169.254.1.1/32"]);
        assert_eq!(r["interfaces"][2]["name"], "svc-net1");
        assert_eq!(r["interfaces"][2]["sandbox"], ns.path_str().as_str());
    }
    assert_ne!(ra["interfaces"][0]["pciID"], rb["interfaces"][0]["pciID"]);
    assert_eq!(lab.leases().len(), 2);

    // Pod A reaches pod B over their "VFs" (macvlans on the same PF stand-in).
    assert!(a.ping(bare(&ip4(&rb, 0))), "pod A cannot ping pod B");
    // A service address on the test host's lo answers through the service path.
    ip(&[
        "-n",
        &lab.host.name,
        "addr",
        "add",
        "10.96.0.10/32",
        "dev",
        "lo",
    ]);
    assert!(
        a.ping("10.96.0.10"),
        "pod A cannot reach the service address"
    );

    // DEL removes both veth ends and gives the VF back; DEL again is fine.
    let host_end = ra["interfaces"][1]["name"].as_str().unwrap();
    lab.del("ca", &a.path_str(), &conf);
    assert!(lab.host.link(host_end).is_none(), "host end left");
    assert!(a.link("svc-net1").is_none(), "pod end left");
    assert!(a.link("net1").is_none(), "the VF is still in the pod");
    let sa = lab.standin(ra["interfaces"][0]["pciID"].as_str().unwrap());
    assert_eq!(lab.host.link(&sa.name).unwrap()["address"], sa.mac.as_str());
    lab.del("ca", &a.path_str(), &conf);
    lab.del("cb", &b.path_str(), &conf);
    lab.assert_all_back("after DEL");
    assert!(lab.ipam_allocations("vfnet").is_empty());
}

#[test]
fn results_are_written_in_the_version_asked_for() {
    let Some(lab) = lab("results_are_written_in_the_version_asked_for", "eno49", 1) else {
        return;
    };
    let ns = Netns::new("v");
    for v in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let conf = lab.conf(v, "10.1.0.0/24", json!({}));
        let r = lab.add("c", &ns, &conf);
        assert_eq!(r["cniVersion"], v);
        let i = &r["interfaces"][0];
        assert_eq!(i["name"], "net1");
        assert_eq!(i["sandbox"], ns.path_str().as_str());
        assert!(i["mac"].as_str().unwrap().len() == 17, "{r:#}");
        let ipc = &r["ips"][0];
        assert_eq!(ipc["interface"], 0, "{v}: {r:#}");
        assert!(ipc["address"].as_str().unwrap().starts_with("10.1.0."));
        // 0.3.x and 0.4.0 results carry each IP's version; 1.0.0 dropped it.
        if v.starts_with("0.") {
            assert_eq!(ipc["version"], "4", "{v}: {r:#}");
        } else {
            assert!(ipc.get("version").is_none(), "{v}: {r:#}");
        }
        assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0"}]), "{v}");
        // Nothing outside the version's schema.
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        for k in &keys {
            assert!(
                ["cniVersion", "interfaces", "ips", "routes", "dns"].contains(&k.as_str()),
                "{v}: unexpected key {k}"
            );
        }
        lab.del("c", &ns.path_str(), &conf);
        lab.assert_all_back(v);
    }
}

#[test]
fn del_after_the_netns_was_deleted_gives_the_vf_back() {
    let Some(lab) = lab(
        "del_after_the_netns_was_deleted_gives_the_vf_back",
        "eno49",
        2,
    ) else {
        return;
    };
    let conf = lab.conf(
        "1.1.0",
        "10.1.0.0/24",
        json!({"serviceRoute": {"cidr": "10.96.0.0/12"}}),
    );
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    let ra = lab.add("ca", &a, &conf);
    let rb = lab.add("cb", &b, &conf);
    // The kernel gives a physical netdev back when its namespace goes, under the name it
    // had inside or devN when that is taken (stand-ins are virtual: the kernel would
    // delete them, so the test moves them back as the kernel would, then deletes the pod).
    ip(&[
        "-n",
        &a.name,
        "link",
        "set",
        "net1",
        "netns",
        &lab.host.name,
    ]);
    ip(&[
        "-n",
        &b.name,
        "link",
        "set",
        "net1",
        "netns",
        &lab.host.name,
        "name",
        "dev7",
    ]);
    let (pa, pb) = (a.path_str(), b.path_str());
    drop(a);
    drop(b);
    assert!(!std::path::Path::new(&pa).exists());
    let names = lab.host.link_names();
    assert!(
        names.contains(&"net1".to_owned()) && names.contains(&"dev7".to_owned()),
        "{names:?}"
    );
    lab.del("ca", &pa, &conf);
    lab.del("cb", &pb, &conf);
    for r in [&ra, &rb] {
        let host_end = r["interfaces"][1]["name"].as_str().unwrap();
        assert!(lab.host.link(host_end).is_none(), "{host_end} left");
    }
    lab.assert_all_back("DEL after the netns was deleted");
    assert!(lab.ipam_allocations("vfnet").is_empty());
    // DEL twice is fine.
    lab.del("ca", &pa, &conf);
    lab.assert_all_back("DEL again");
}

#[test]
fn a_stale_altname_equal_to_the_ifname_does_not_block_add() {
    let Some(lab) = lab(
        "a_stale_altname_equal_to_the_ifname_does_not_block_add",
        "eno49",
        1,
    ) else {
        return;
    };
    let s = lab.standins[0].clone();
    ip(&[
        "-n",
        &lab.host.name,
        "link",
        "property",
        "add",
        "dev",
        &s.name,
        "altname",
        "net1",
    ]);
    let ns = Netns::new("p");
    let conf = lab.conf("1.1.0", "10.1.0.0/24", json!({}));
    lab.add("c", &ns, &conf);
    let l = ns.link("net1").expect("net1 in the pod");
    assert_eq!(l["address"], s.mac.as_str());
    lab.del("c", &ns.path_str(), &conf);
    lab.assert_all_back("after DEL");
}

#[test]
fn promiscuous_mode_set_in_a_pod_is_cleared_for_the_next() {
    let Some(lab) = lab(
        "promiscuous_mode_set_in_a_pod_is_cleared_for_the_next",
        "eno49",
        1,
    ) else {
        return;
    };
    let conf = lab.conf("1.1.0", "10.1.0.0/24", json!({}));
    let a = Netns::new("a");
    lab.add("ca", &a, &conf);
    ip(&["-n", &a.name, "link", "set", "net1", "promisc", "on"]);
    assert_eq!(a.link("net1").unwrap()["promiscuity"], 1);
    lab.del("ca", &a.path_str(), &conf);
    lab.assert_all_back("after DEL");
    // The same VF (the pool has one) in the next pod: not promiscuous.
    let b = Netns::new("b");
    lab.add("cb", &b, &conf);
    assert_eq!(b.link("net1").unwrap()["promiscuity"], 0);
    ip(&["-n", &b.name, "link", "set", "net1", "promisc", "on"]);
    // A netns deleted with the VF promiscuous inside: given back by the kernel as is.
    ip(&[
        "-n",
        &b.name,
        "link",
        "set",
        "net1",
        "netns",
        &lab.host.name,
    ]);
    let pb = b.path_str();
    drop(b);
    lab.del("cb", &pb, &conf);
    lab.assert_all_back("after DEL of a deleted pod");
}

#[test]
fn gc_releases_every_attachment_not_valid_and_their_ipam() {
    let Some(lab) = lab(
        "gc_releases_every_attachment_not_valid_and_their_ipam",
        "eno49",
        3,
    ) else {
        return;
    };
    let conf = lab.conf("1.1.0", "10.1.0.0/24", json!({}));
    let pods: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("g{i}"))).collect();
    let results: Vec<Value> = pods
        .iter()
        .enumerate()
        .map(|(i, ns)| lab.add(&format!("c{i}"), ns, &conf))
        .collect();
    assert_eq!(lab.ipam_allocations("vfnet").len(), 3);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c0", "ifname": "net1"}]);
    lab.cni("GC", "", "", "", &gc).ok("GC");
    let leases = lab.leases();
    assert_eq!(leases.len(), 1, "{leases:#?}");
    assert_eq!(leases[0].owner, "cni/vfnet/c0/net1");
    assert_eq!(
        lab.ipam_allocations("vfnet"),
        [bare(&ip4(&results[0], 0)).to_owned()],
        "host-local's allocations of the released attachments are gone"
    );
    assert!(
        pods[0].link("net1").is_some(),
        "the valid attachment is kept"
    );
    for (i, r) in results.iter().enumerate().skip(1) {
        assert!(pods[i].link("net1").is_none());
        let s = lab.standin(r["interfaces"][0]["pciID"].as_str().unwrap());
        assert!(lab.host.link(&s.name).is_some(), "{} back", s.name);
    }
    // GC again with nothing valid releases the last one.
    gc["cni.dev/valid-attachments"] = json!([]);
    lab.cni("GC", "", "", "", &gc).ok("GC");
    lab.assert_all_back("after GC");
    assert!(lab.ipam_allocations("vfnet").is_empty());
}

#[test]
fn status_fails_with_code_50_while_the_pool_is_exhausted() {
    let Some(lab) = lab(
        "status_fails_with_code_50_while_the_pool_is_exhausted",
        "eno49",
        1,
    ) else {
        return;
    };
    let conf = lab.conf("1.1.0", "10.1.0.0/24", json!({}));
    assert_eq!(
        lab.cni("STATUS", "", "", "", &conf).ok("STATUS"),
        Value::Null
    );
    let ns = Netns::new("s");
    lab.add("c", &ns, &conf);
    let msg = lab
        .cni("STATUS", "", "", "", &conf)
        .err(50, "STATUS with no free VF");
    assert!(msg.contains("pool p"), "{msg}");
    lab.del("c", &ns.path_str(), &conf);
    lab.cni("STATUS", "", "", "", &conf).ok("STATUS after DEL");
}

#[test]
fn check_passes_then_names_each_difference() {
    let Some(lab) = lab("check_passes_then_names_each_difference", "eno49", 1) else {
        return;
    };
    let conf = lab.conf("1.1.0", "10.1.0.0/24", json!({}));
    let ns = Netns::new("k");
    let r = lab.add("c", &ns, &conf);
    let mut checked = conf.clone();
    checked["prevResult"] = r.clone();
    let check = || lab.cni("CHECK", "c", &ns.path_str(), "net1", &checked);
    check().ok("CHECK right after ADD");
    let addr = ip4(&r, 0);
    let n = ns.name.as_str();

    ip(&["-n", n, "addr", "del", &addr, "dev", "net1"]);
    let msg = check().err(105, "CHECK without the address");
    assert!(msg.contains(&addr), "{msg}");
    ip(&["-n", n, "addr", "add", &addr, "dev", "net1"]);
    ip(&[
        "-n", n, "route", "replace", "default", "via", "10.1.0.1", "dev", "net1",
    ]);
    check().ok("CHECK with the address back");

    ip(&["-n", n, "route", "del", "default"]);
    let msg = check().err(105, "CHECK without the route");
    assert!(msg.contains("0.0.0.0/0"), "{msg}");
    ip(&[
        "-n", n, "route", "add", "default", "via", "10.1.0.1", "dev", "net1",
    ]);
    check().ok("CHECK with the route back");

    ip(&[
        "-n",
        n,
        "link",
        "set",
        "net1",
        "address",
        "02:00:00:00:00:42",
    ]);
    let msg = check().err(105, "CHECK with another MAC");
    assert!(msg.contains("02:00:00:00:00:42"), "{msg}");

    lab.del("c", &ns.path_str(), &conf);
    lab.assert_all_back("after DEL");
    // CHECK of a released attachment fails too.
    let msg = check().err(105, "CHECK after DEL");
    assert!(msg.contains("net1"), "{msg}");
}

#[test]
fn chained_before_debian_tuning_and_after_an_earlier_plugin() {
    let Some(lab) = lab(
        "chained_before_debian_tuning_and_after_an_earlier_plugin",
        "eno49",
        1,
    ) else {
        return;
    };
    let ns = Netns::new("t");
    // An earlier plugin's result: vfpool-cni appends its interface with the right index
    // and applies only its own addresses and routes.
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": ns.path_str()}],
        "ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1", "interface": 0}],
        "routes": [{"dst": "10.9.0.0/16"}], "dns": {"nameservers": ["10.9.0.53"]}});
    let conf = lab.conf("1.0.0", "10.1.0.0/24", json!({"prevResult": prev}));
    let r = lab.add("c", &ns, &conf);
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["name"], "net1");
    assert_eq!(r["ips"][0], prev["ips"][0]);
    assert_eq!(r["ips"][1]["interface"], 1);
    assert_eq!(ns.addrs4("net1"), [ip4(&r, 1)]);
    let routes = ns.routes4();
    assert!(
        !routes.contains("10.9.0.0/16"),
        "the earlier plugin's route on net1: {routes}"
    );
    assert!(routes.contains("default via 10.1.0.1 dev net1"), "{routes}");
    assert_eq!(r["dns"], prev["dns"]);

    // Debian's tuning after vfpool-cni, with our result as its prevResult.
    let tuning = json!({"cniVersion": "1.0.0", "name": "vfnet", "type": "tuning",
        "mtu": 1400, "dataDir": lab.state().join("tuning"), "prevResult": r});
    let run_tuning = |cmd: &str| {
        let mut c = std::process::Command::new("/usr/lib/cni/tuning");
        c.env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", "c")
            .env("CNI_NETNS", ns.path())
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", "/usr/lib/cni");
        run_in(&lab.host, c, tuning.to_string().as_bytes())
    };
    let tr = run_tuning("ADD").ok("tuning ADD");
    assert_eq!(
        tr["interfaces"], r["interfaces"],
        "tuning passes our result on"
    );
    assert_eq!(ns.link("net1").unwrap()["mtu"], 1400);
    let mut checked = conf.clone();
    checked["prevResult"] = tr;
    lab.cni("CHECK", "c", &ns.path_str(), "net1", &checked)
        .ok("CHECK after tuning");
    // DEL in reverse order, as a conflist does.
    run_tuning("DEL").ok("tuning DEL");
    lab.del("c", &ns.path_str(), &conf);
    lab.assert_all_back("after DEL");
    let s = &lab.standins[0];
    assert_eq!(lab.host.link(&s.name).unwrap()["mtu"], 1500);
}

#[test]
fn fifty_parallel_adds_on_a_pool_of_fifty() {
    let Some(lab) = lab("fifty_parallel_adds_on_a_pool_of_fifty", "em1", 50) else {
        return;
    };
    let conf = lab.conf("1.1.0", "10.1.0.0/24", json!({}));
    let pods: Vec<Netns> = (0..50).map(|i| Netns::new(&format!("x{i}"))).collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let (lab, conf) = (&lab, &conf);
                s.spawn(move || lab.add(&format!("c{i}"), ns, conf))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let vfs: std::collections::HashSet<&str> = results
        .iter()
        .map(|r| r["interfaces"][0]["pciID"].as_str().unwrap())
        .collect();
    assert_eq!(vfs.len(), 50, "a VF given twice");
    for (ns, r) in pods.iter().zip(&results) {
        let s = lab.standin(r["interfaces"][0]["pciID"].as_str().unwrap());
        assert_eq!(ns.link("net1").unwrap()["address"], s.mac.as_str());
    }
    assert_eq!(lab.leases().len(), 50);
    assert_eq!(lab.ipam_allocations("vfnet").len(), 50);
    std::thread::scope(|s| {
        for (i, ns) in pods.iter().enumerate() {
            let (lab, conf) = (&lab, &conf);
            s.spawn(move || lab.del(&format!("c{i}"), &ns.path_str(), conf));
        }
    });
    lab.assert_all_back("after 50 DELs");
    assert!(lab.ipam_allocations("vfnet").is_empty());
}
