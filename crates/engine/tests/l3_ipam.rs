#![allow(clippy::unwrap_used, clippy::expect_used)]
//! L3 address management shared by VMs and pods: `vm start` and `l3_allocate` (the CNI
//! plugin's `vfpool` IPAM) take from one table, so that a VM and a pod on one L3 never
//! get the same address; exhaustion, release, idempotence, GC, and `l3 delete` refused
//! while a pod holds an address.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use common::Lab;
use vfpool_engine::{EngineError, ErrorKind, L2Request, L3Request, VmNicSpec};

/// eno49 with 2 VFs, an SR-IOV L2 and L3 `net1` (10.0.0.0/29, gateway .1, range .1-.5:
/// four addresses to hand out, the gateway never).
fn setup() -> (Lab, vfpool_engine::Engine) {
    let lab = Lab::new();
    lab.split("eno49", 2);
    let mut e = lab.engine();
    e.l2_create(&L2Request {
        name: "l2".into(),
        nic: "eno49".into(),
        l2_type: None,
        vlan: None,
        sriov: true,
    })
    .unwrap();
    e.l3_create(&L3Request {
        name: "net1".into(),
        l2: "l2".into(),
        cidr: "10.0.0.0/29".into(),
        gateway: "10.0.0.1".into(),
        range: Some("10.0.0.1-10.0.0.5".into()),
        dns: Some("10.0.0.53".into()),
    })
    .unwrap();
    (lab, e)
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn vm_address(e: &mut vfpool_engine::Engine, vm: &str) -> Ipv4Addr {
    e.vm_show(vm).unwrap().nics[0].address.unwrap()
}

#[test]
fn vms_and_pods_on_one_l3_get_distinct_addresses() {
    let (_lab, mut e) = setup();
    let nic: VmNicSpec = "l3=net1".parse().unwrap();
    e.vm_create("a", std::slice::from_ref(&nic)).unwrap();
    e.vm_create("b", std::slice::from_ref(&nic)).unwrap();
    e.vm_start("a").unwrap();
    assert_eq!(vm_address(&mut e, "a"), ip("10.0.0.2"));

    let p = e.l3_allocate("net1", "cni/n/c1/net1").unwrap();
    assert_eq!(p.address, ip("10.0.0.3"), "not the VM's, not the gateway");
    assert_eq!(
        (p.prefix, p.gateway, p.dns),
        (29, ip("10.0.0.1"), Some(ip("10.0.0.53")))
    );
    // Idempotent: the same owner gets the same address, nothing more is taken.
    assert_eq!(e.l3_allocate("net1", "cni/n/c1/net1").unwrap(), p);
    assert_eq!(e.l3_show("net1").unwrap().allocated, 2);

    // A VM started after the pod skips the pod's address.
    e.vm_start("b").unwrap();
    assert_eq!(vm_address(&mut e, "b"), ip("10.0.0.4"));
    let shown = e.l3_show("net1").unwrap().addresses;
    let pairs: Vec<(String, String)> = shown
        .iter()
        .map(|h| (h.address.to_string(), h.owner.clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("10.0.0.2".into(), "vm/a/nic0".into()),
            ("10.0.0.3".into(), "cni/n/c1/net1".into()),
            ("10.0.0.4".into(), "vm/b/nic0".into()),
        ]
    );
    assert_eq!(e.l3_address("cni/n/c1/net1").unwrap(), Some(p));
    assert_eq!(e.l3_address("cni/n/gone/net1").unwrap(), None);
}

#[test]
fn exhaustion_names_the_l3_and_its_range_and_release_frees_the_lowest() {
    let (_lab, mut e) = setup();
    for (i, want) in ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
        .iter()
        .enumerate()
    {
        let got = e.l3_allocate("net1", &format!("cni/n/c{i}/net1")).unwrap();
        assert_eq!(got.address, ip(want));
    }
    let err = e.l3_allocate("net1", "cni/n/c9/net1").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert_eq!(
        err.to_string(),
        "l3 'net1' has no free address in 10.0.0.1-10.0.0.5"
    );
    // A VM cannot start either: the pods hold the range.
    e.vm_create("v", &["l3=net1".parse().unwrap()]).unwrap();
    assert_eq!(e.vm_start("v").unwrap_err().kind(), ErrorKind::Exhausted);

    let freed = e.l3_release("cni/n/c1/net1").unwrap();
    assert_eq!(freed, Some(("net1".into(), ip("10.0.0.3"))));
    // Idempotent: nothing held, nothing freed, no error.
    assert_eq!(e.l3_release("cni/n/c1/net1").unwrap(), None);
    e.vm_start("v").unwrap();
    assert_eq!(vm_address(&mut e, "v"), ip("10.0.0.3"), "the freed one");
}

#[test]
fn gc_frees_the_addresses_of_a_prefix_not_kept() {
    let (_lab, mut e) = setup();
    e.vm_create("v", &["l3=net1".parse().unwrap()]).unwrap();
    e.vm_start("v").unwrap();
    for o in ["cni/n/a/net1", "cni/n/b/net1", "cni/other/a/net1"] {
        e.l3_allocate("net1", o).unwrap();
    }
    let keep: HashSet<String> = ["cni/n/b/net1".to_owned()].into();
    assert_eq!(e.l3_gc("cni/n/", &keep).unwrap(), ["cni/n/a/net1"]);
    let owners: Vec<String> = e
        .l3_show("net1")
        .unwrap()
        .addresses
        .into_iter()
        .map(|h| h.owner)
        .collect();
    assert_eq!(owners, ["vm/v/nic0", "cni/n/b/net1", "cni/other/a/net1"]);
    assert_eq!(e.l3_gc("cni/n/", &keep).unwrap(), Vec::<String>::new());
}

#[test]
fn bad_owners_unknown_l3_another_l3_and_delete_in_use_are_refused() {
    let (_lab, mut e) = setup();
    let err = e.l3_allocate("nope", "cni/n/c/net1").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("'nope'"), "{err}");
    for bad in ["", "vm/a/nic0"] {
        let err = e.l3_allocate("net1", bad).unwrap_err();
        assert!(matches!(err, EngineError::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("owner"), "{err}");
        assert!(e.l3_release(bad).is_err(), "release refuses {bad:?} too");
    }
    e.l3_create(&L3Request {
        name: "net2".into(),
        l2: "l2".into(),
        cidr: "10.0.1.0/24".into(),
        gateway: "10.0.1.1".into(),
        range: None,
        dns: None,
    })
    .unwrap();
    e.l3_allocate("net1", "cni/n/c/net1").unwrap();
    let err = e.l3_allocate("net2", "cni/n/c/net1").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "cni/n/c/net1 already holds 10.0.0.2 on l3 'net1'; release it first"
    );
    let err = e.l3_delete("net1").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("cni/n/c/net1"), "{err}");
    e.l3_release("cni/n/c/net1").unwrap();
    e.l3_delete("net1").unwrap();
}

#[test]
fn lease_gc_frees_the_addresses_of_pods_whose_lease_is_gone() {
    let (_lab, mut e) = setup();
    e.pool_create(
        "p",
        common::sel(&["eno49"]),
        vfpool_engine::Policy::FirstFit,
    )
    .unwrap();
    e.vm_create("v", &["l3=net1".parse().unwrap()]).unwrap();
    e.vm_start("v").unwrap();
    // Pod a: its lease and its address (ADD done). Pod b: its address only (a DEL that
    // released the VF and died before the address). Another owner's: not a pod's.
    e.acquire(&common::req("p", "cni/n/a/net1")).unwrap();
    for o in ["cni/n/a/net1", "cni/n/b/net1", "other/x"] {
        e.l3_allocate("net1", o).unwrap();
    }
    let b = e.l3_address("cni/n/b/net1").unwrap().unwrap().address;
    let owners = |e: &mut vfpool_engine::Engine| -> Vec<String> {
        e.l3_show("net1")
            .unwrap()
            .addresses
            .into_iter()
            .map(|h| h.owner)
            .collect()
    };

    let rep = e.gc().unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    let freed: Vec<_> = rep
        .addresses_freed
        .iter()
        .map(|f| (f.l3.as_str(), f.address, f.owner.as_str()))
        .collect();
    assert_eq!(freed, [("net1", b, "cni/n/b/net1")]);
    assert_eq!(owners(&mut e), ["vm/v/nic0", "cni/n/a/net1", "other/x"]);

    // Pod a's lease goes (its DEL died after the VF): the next gc frees its address.
    e.release(&vfpool_engine::ReleaseTarget::Owner("cni/n/a/net1".into()))
        .unwrap();
    let rep = e.gc().unwrap();
    assert_eq!(rep.addresses_freed.len(), 1);
    assert_eq!(rep.addresses_freed[0].owner, "cni/n/a/net1");
    assert_eq!(owners(&mut e), ["vm/v/nic0", "other/x"]);
    assert!(e.gc().unwrap().addresses_freed.is_empty(), "nothing more");
}
