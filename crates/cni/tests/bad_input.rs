//! Tier 2, as root: bad input to `vfpool-cni` ADD gets the spec's error JSON with the
//! right code and a message naming the field, and leaves nothing behind: no lease, every
//! stand-in still in the host namespace, no IPAM allocation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Lab, Netns, need_cni_plugins, skip_unless_root};
use serde_json::{Value, json};

fn nothing_left(lab: &Lab, what: &str) {
    lab.assert_all_back(what);
    assert!(
        lab.ipam_allocations("vfnet").is_empty(),
        "{what}: IPAM allocation left"
    );
}

#[test]
fn bad_input_is_refused_by_name_and_leaves_nothing() {
    if skip_unless_root("bad_input_is_refused_by_name_and_leaves_nothing") {
        return;
    }
    need_cni_plugins();
    let lab = Lab::new("eno49", 2);
    let ns = Netns::new("bad");
    let pod = ns.path_str();
    let base = lab.conf("1.1.0", "10.1.0.0/24", json!({}));
    let with = |extra: Value| {
        let mut c = base.clone();
        common::merge(&mut c, extra);
        c
    };
    // (config, code, text the message must contain)
    let cases: Vec<(Value, u64, &str)> = vec![
        (with(json!({"vlan": 5000})), 7, "vlan"),
        (with(json!({"vlanQoS": 9, "vlan": 10})), 7, "vlanQoS"),
        (with(json!({"mac": "zz:00"})), 7, "mac"),
        (with(json!({"mtu": -1})), 7, "mtu"),
        (with(json!({"spoofchk": "maybe"})), 7, "spoofchk"),
        (with(json!({"trust": 1})), 7, "trust"),
        (with(json!({"link_state": "sometimes"})), 7, "link_state"),
        (
            with(json!({"min_tx_rate": 100, "max_tx_rate": 10})),
            7,
            "tx_rate",
        ),
        (with(json!({"pool": null})), 7, "pool"),
        (with(json!({"pool": "nope"})), 7, "nope"),
        (with(json!({"pool": null, "master": "eth99"})), 7, "eth99"),
        (with(json!({"name": "bad/name"})), 7, "name"),
        (with(json!({"type": "sriov"})), 7, "type"),
        (
            with(json!({"serviceRoute": {"cidr": "10.96.0.0"}})),
            7,
            "serviceRoute.cidr",
        ),
        (with(json!({"ipam": {"type": null}})), 7, "ipam"),
        (with(json!({"vfpoolNetlink": "kernal"})), 7, "vfpoolNetlink"),
        (with(json!({"cniVersion": "0.2.0"})), 1, "0.2.0"),
        (with(json!({"cniVersion": "2.0.0"})), 1, "2.0.0"),
        // A deviceID that is not a VF (the PF's own address), or no device at all.
        (
            with(json!({"pool": null, "deviceID": "0000:03:00.0"})),
            7,
            "0000:03:00.0",
        ),
        (
            with(json!({"pool": null, "deviceID": "0000:99:00.1"})),
            7,
            "0000:99:00.1",
        ),
        (
            with(json!({"pool": null, "deviceID": "nope"})),
            7,
            "deviceID",
        ),
        // An IPAM plugin that is not there.
        (
            with(json!({"ipam": {"type": "no-such-ipam"}})),
            7,
            "no-such-ipam",
        ),
    ];
    for (conf, code, text) in &cases {
        let what = format!("{conf}");
        let msg = lab.cni("ADD", "c1", &pod, "net1", conf).err(*code, &what);
        assert!(msg.contains(text), "{what}: {msg}");
        nothing_left(&lab, &what);
    }

    // Missing CNI_* variables.
    for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let vars: Vec<(&str, String)> = [
            ("CNI_COMMAND", "ADD".to_owned()),
            ("CNI_CONTAINERID", "c1".to_owned()),
            ("CNI_NETNS", pod.clone()),
            ("CNI_IFNAME", "net1".to_owned()),
        ]
        .into_iter()
        .filter(|(k, _)| *k != missing)
        .collect();
        let msg = lab.cni_env(&vars, &base).err(4, missing);
        assert!(msg.contains(missing), "{msg}");
        nothing_left(&lab, missing);
    }
    let msg = lab
        .cni("ADD", "c1", &pod, "a/b", &base)
        .err(4, "bad ifname");
    assert!(msg.contains("a/b"), "{msg}");
    nothing_left(&lab, "bad ifname");

    // A netns path that does not exist, or is not a network namespace.
    let msg = lab
        .cni("ADD", "c1", "/run/netns/vfpool-no-such", "net1", &base)
        .err(3, "no such netns");
    assert!(
        msg.contains("CNI_NETNS") && msg.contains("vfpool-no-such"),
        "{msg}"
    );
    nothing_left(&lab, "no such netns");
    let file = lab.state().join("not-a-netns");
    std::fs::write(&file, "").unwrap();
    let msg = lab
        .cni("ADD", "c1", &file.display().to_string(), "net1", &base)
        .err(4, "not a netns");
    assert!(
        msg.contains("netns") && msg.contains("not-a-netns"),
        "{msg}"
    );
    nothing_left(&lab, "not a netns");

    // A deviceID leased to another attachment.
    let other = Netns::new("other");
    let r = lab.add("c0", &other, &base);
    let vf = r["interfaces"][0]["pciID"].as_str().unwrap().to_owned();
    let ip0 = r["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let msg = lab
        .cni(
            "ADD",
            "c1",
            &pod,
            "net1",
            &with(json!({"pool": null, "deviceID": vf})),
        )
        .err(102, "a VF leased to another attachment");
    assert!(msg.contains(&vf), "{msg}");
    assert_eq!(lab.leases().len(), 1);
    assert!(
        other.link("net1").is_some(),
        "the other attachment's VF is untouched"
    );

    // An IPAM plugin that fails after the VF was moved (host-local with its one address
    // taken): the VF comes back, the lease goes.
    let one = with(json!({"ipam": {"ranges": [[{"subnet": "10.1.0.0/24",
        "rangeStart": ip0, "rangeEnd": ip0}]]}}));
    // (host-local's own code, 999, is passed on as the spec asks of a delegate's error.)
    let msg = lab
        .cni("ADD", "c1", &pod, "net1", &one)
        .err(999, "IPAM exhausted");
    assert!(
        msg.contains("ipam plugin host-local") && msg.contains(&ip0),
        "{msg}"
    );
    assert_eq!(lab.leases().len(), 1, "only the other attachment's lease");
    assert!(ns.link("net1").is_none(), "nothing moved into the pod");
    assert_eq!(lab.ipam_allocations("vfnet"), [ip0]);
    lab.del("c0", &other.path_str(), &base);
    nothing_left(&lab, "the end");
}
