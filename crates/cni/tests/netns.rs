//! Tier 2, as root: `vfpool-cni` as a separate process over a simulated sysfs tree whose
//! VF netdevs are macvlan stand-ins (bridge mode on a veth PF stand-in) in a test host
//! namespace, driven with the kernel's rtnetlink (`VFPOOL_NETLINK=kernel`); pods are
//! namespaces the test makes. GC, STATUS and CHECK are driven as libcni 1.2+ does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Lab, Netns, ip, need_cni_plugins, skip_unless_root};
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
    let Some(lab) = lab("two_pods_get_their_vfs_ping_each_other_and_reach_services", "eno49", 3) else {
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
        assert!(l["flags"].as_array().unwrap().contains(&json!("UP")), "{l:#}");
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
    ip(&["-n", &lab.host.name, "addr", "add", "10.96.0.10/32", "dev", "lo"]);
    assert!(a.ping("10.96.0.10"), "pod A cannot reach the service address");

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
