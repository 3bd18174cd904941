#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What the CNI plugin asks of the engine (`pod.rs`), over the simulated host: where a VF
//! comes from (pool, master PF, a device plugin's VF), ADD again, DEL whatever is left,
//! GC by valid attachments, STATUS.

mod common;

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use common::{Lab, sel};
use vfpool_engine::{
    Engine, EngineError, ErrorKind, LeaseState, PodRequest, Policy, VfSource, service_host_ifname,
    service_pod_ifname,
};
use vfpool_model::{PciAddr, VfSettings};
use vfpool_netlink::NetOps;

fn netns(lab: &Lab, name: &str) -> PathBuf {
    let p = lab.dir.path().join("netns").join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, "").unwrap();
    p
}

fn inside(lab: &Lab, ns: &Path) -> Box<dyn NetOps> {
    let f = std::fs::File::open(ns).unwrap();
    lab.net.enter_netns(f.as_fd()).unwrap()
}

fn pod(owner: &str, source: VfSource, ns: &Path, ifname: &str) -> PodRequest {
    PodRequest {
        owner: owner.to_owned(),
        source,
        settings: VfSettings::default(),
        netns: ns.to_owned(),
        ifname: ifname.to_owned(),
    }
}

fn setup() -> (Lab, Engine) {
    let lab = Lab::new();
    lab.split("eno49", 4);
    lab.split("eno50", 2);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["eno49#0-1"]), Policy::FirstFit)
        .unwrap();
    (lab, e)
}

/// The PCI address of VF `index` of `pf`, from sysfs.
fn vf_of(lab: &Lab, pf: &str, index: u16) -> PciAddr {
    let link = lab.fs.path(format!("class/net/{pf}/device/virtfn{index}"));
    std::fs::read_link(link)
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn add_from_a_pool_moves_the_vf_and_del_gives_it_back() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "a");
    let a = e
        .pod_add(&pod(
            "cni/n/c1/net1",
            VfSource::Pool("p".into()),
            &ns,
            "net1",
        ))
        .unwrap();
    assert!(a.moved());
    assert_eq!(a.lease.pool, "p");
    let link = inside(&lab, &ns).link("net1").unwrap();
    assert_eq!(a.mac, link.mac);
    assert_eq!(a.mtu, Some(link.mtu));
    assert!(a.driver.is_some());
    let host_name = a.lease.netdev.clone().unwrap();
    assert!(lab.net.link(&host_name).is_err(), "no longer in the host");

    let r = e.pod_del("cni/n/c1/net1").unwrap();
    assert_eq!(r.lease.unwrap().vf_pci, a.lease.vf_pci);
    assert!(!r.service_path);
    assert!(lab.net.link(&host_name).is_ok(), "back under its host name");
    // DEL again: nothing to do, success.
    let again = e.pod_del("cni/n/c1/net1").unwrap();
    assert!(again.lease.is_none());
}

#[test]
fn add_again_for_the_same_attachment_is_a_no_op_and_a_new_namespace_replaces_the_old() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "a");
    let req = pod("cni/n/c1/net1", VfSource::Pool("p".into()), &ns, "net1");
    let first = e.pod_add(&req).unwrap();
    let second = e.pod_add(&req).unwrap();
    assert_eq!(first.lease.id, second.lease.id, "the same lease");
    assert_eq!(e.leases().unwrap().len(), 1);

    // The namespace of the attachment was deleted and another one made (a DEL was
    // skipped): the old lease goes, a new one takes its place; the VF is never held twice.
    std::fs::remove_file(&ns).unwrap();
    let ns2 = netns(&lab, "a2");
    let third = e
        .pod_add(&pod(
            "cni/n/c1/net1",
            VfSource::Pool("p".into()),
            &ns2,
            "net1",
        ))
        .unwrap();
    let leases = e.leases().unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(
        third.lease.netns.as_deref(),
        Some(ns2.to_str().unwrap()),
        "leased for the new namespace"
    );
    assert_eq!(leases[0].state, LeaseState::Active);
}

#[test]
fn master_leases_only_vfs_no_pool_holds() {
    let (lab, mut e) = setup();
    // eno49's VFs 0-1 are pool p's: master eno49 gets VF 2, then 3, then none.
    let mut got = Vec::new();
    for i in 0..2 {
        let ns = netns(&lab, &format!("m{i}"));
        let a = e
            .pod_add(&pod(
                &format!("cni/n/m{i}/net1"),
                VfSource::Pf("eno49".into()),
                &ns,
                "net1",
            ))
            .unwrap();
        assert_eq!(a.lease.pool, "pf:eno49");
        got.push(a.lease.vf_index);
    }
    assert_eq!(got, [2, 3]);
    let ns = netns(&lab, "m2");
    let err = e
        .pod_add(&pod(
            "cni/n/m2/net1",
            VfSource::Pf("eno49".into()),
            &ns,
            "net1",
        ))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted, "{err}");
    assert!(e.pod_status(&VfSource::Pf("eno49".into())).is_err());
    assert!(e.pod_status(&VfSource::Pf("eno50".into())).is_ok());
    // Not a PF of this host.
    let err = e
        .pod_add(&pod(
            "cni/n/x/net1",
            VfSource::Pf("nope0".into()),
            &ns,
            "net1",
        ))
        .unwrap_err();
    assert!(err.to_string().contains("master"), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn a_device_plugins_vf_is_leased_in_the_pool_that_holds_it_or_its_pf_pool() {
    let (lab, mut e) = setup();
    let in_pool = vf_of(&lab, "eno49", 1);
    let loose = vf_of(&lab, "eno50", 1);
    let ns = netns(&lab, "d1");
    let a = e
        .pod_add(&pod(
            "cni/n/d1/net1",
            VfSource::Device(in_pool),
            &ns,
            "net1",
        ))
        .unwrap();
    assert_eq!((a.lease.pool.as_str(), a.lease.vf_pci), ("p", in_pool));
    let ns2 = netns(&lab, "d2");
    let b = e
        .pod_add(&pod("cni/n/d2/net1", VfSource::Device(loose), &ns2, "net1"))
        .unwrap();
    assert_eq!(b.lease.vf_pci, loose);
    assert!(b.lease.pool.starts_with("pf:"), "{}", b.lease.pool);

    // The same VF for another attachment: refused, and the first one untouched.
    let ns3 = netns(&lab, "d3");
    let err = e
        .pod_add(&pod(
            "cni/n/d3/net1",
            VfSource::Device(in_pool),
            &ns3,
            "net1",
        ))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(matches!(err, EngineError::VfLeased { .. }), "{err:?}");
    assert!(inside(&lab, &ns).link("net1").is_ok());
    // DEL of that other attachment touches nothing.
    assert!(e.pod_del("cni/n/d3/net1").unwrap().lease.is_none());
    assert!(inside(&lab, &ns).link("net1").is_ok());

    // A PF, or an address that is no device, is not a VF.
    let pf = lab
        .fs
        .path("class/net/eno49/device")
        .canonicalize()
        .unwrap();
    let pf: PciAddr = pf.file_name().unwrap().to_str().unwrap().parse().unwrap();
    for bad in [pf, "0000:ff:1f.7".parse().unwrap()] {
        let err = e
            .pod_add(&pod("cni/n/d4/net1", VfSource::Device(bad), &ns3, "net1"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{bad}: {err}");
    }
    assert_eq!(
        e.leases().unwrap().len(),
        2,
        "nothing leased by the refusals"
    );
}

#[test]
fn del_after_the_namespace_is_gone_brings_the_vf_back() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "gone");
    let a = e
        .pod_add(&pod(
            "cni/n/g/net1",
            VfSource::Pool("p".into()),
            &ns,
            "net1",
        ))
        .unwrap();
    std::fs::remove_file(&ns).unwrap();
    let r = e.pod_del("cni/n/g/net1").unwrap();
    assert!(r.lease.is_some());
    let host_name = a.lease.netdev.unwrap();
    assert!(
        lab.net.link(&host_name).is_ok(),
        "back in the host as {host_name}"
    );
    assert!(e.leases().unwrap().is_empty());
}

#[test]
fn gc_releases_every_attachment_of_the_network_not_valid_and_nothing_else() {
    let (lab, mut e) = setup();
    let owners = ["cni/n/c1/net1", "cni/n/c2/net1", "cni/other/c3/net1"];
    for (i, o) in owners.iter().enumerate() {
        let ns = netns(&lab, &format!("g{i}"));
        let src = if i == 2 {
            VfSource::Pf("eno50".into())
        } else {
            VfSource::Pool("p".into())
        };
        e.pod_add(&pod(o, src, &ns, "net1")).unwrap();
    }
    let keep: HashSet<String> = ["cni/n/c2/net1".to_owned()].into();
    let r = e.pod_gc("cni/n/", &keep).unwrap();
    assert_eq!(r.released, ["cni/n/c1/net1"]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let mut left: Vec<String> = e.leases().unwrap().into_iter().map(|l| l.owner).collect();
    left.sort();
    assert_eq!(left, ["cni/n/c2/net1", "cni/other/c3/net1"]);
}

#[test]
fn status_says_whether_an_add_could_succeed() {
    let (lab, mut e) = setup();
    assert!(e.pod_status(&VfSource::Pool("p".into())).is_ok());
    for i in 0..2 {
        let ns = netns(&lab, &format!("s{i}"));
        e.pod_add(&pod(
            &format!("cni/n/s{i}/net1"),
            VfSource::Pool("p".into()),
            &ns,
            "net1",
        ))
        .unwrap();
    }
    let err = e.pod_status(&VfSource::Pool("p".into())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert!(
        err.to_string().contains("'p'") || err.to_string().contains(" p"),
        "{err}"
    );
    let err = e.pod_status(&VfSource::Pool("nope".into())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn bad_requests_change_nothing() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "b");
    let cases: Vec<(PodRequest, &str)> = vec![
        (
            pod("cni/n/b/net1", VfSource::Pool("p".into()), &ns, "a/b"),
            "ifname",
        ),
        (
            pod(
                "cni/n/b/net1",
                VfSource::Pool("p".into()),
                Path::new("/nonexistent/ns"),
                "net1",
            ),
            "netns",
        ),
        (pod("", VfSource::Pool("p".into()), &ns, "net1"), "owner"),
        (
            pod(
                "cni/n/b/net1",
                VfSource::Pool("pf:eno49#1".into()),
                &ns,
                "net1",
            ),
            "pool",
        ),
    ];
    for (r, field) in cases {
        let err = e.pod_add(&r).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    assert!(e.leases().unwrap().is_empty());
}

#[test]
fn service_path_names_are_stable_valid_netdev_names() {
    let a = service_host_ifname("cni/n/c1/net1");
    assert_eq!(a, service_host_ifname("cni/n/c1/net1"));
    assert_ne!(a, service_host_ifname("cni/n/c1/net2"));
    assert_eq!(a.len(), 15);
    assert!(a.starts_with("vfs"));
    assert_eq!(service_pod_ifname("net1"), "svc-net1");
    assert_eq!(service_pod_ifname("abcdefghijklmno").len(), 15);
}

fn ipv4(s: &str) -> vfpool_netlink::IfAddr {
    s.parse().unwrap()
}

#[test]
fn ip_addresses_routes_and_the_service_path_are_set_checked_and_removed() {
    use vfpool_engine::{Mismatch, PodIp, SERVICE_GATEWAY, ServicePath};
    use vfpool_netlink::Route;
    let (lab, mut e) = setup();
    let ns = netns(&lab, "ip");
    let owner = "cni/n/ip/net1";
    e.pod_add(&pod(owner, VfSource::Pool("p".into()), &ns, "net1"))
        .unwrap();
    let default = Route {
        dst: ipv4("0.0.0.0/0"),
        gateway: Some("10.1.0.1".parse().unwrap()),
        dev: String::new(),
        src: None,
        onlink: false,
    };
    let ip = PodIp {
        addresses: vec![ipv4("10.1.0.5/24")],
        routes: vec![default.clone()],
    };
    e.pod_ip(owner, &ip).unwrap();
    // Again (a retried ADD): what is there is kept.
    e.pod_ip(owner, &ip).unwrap();
    let i = inside(&lab, &ns);
    assert_eq!(i.addresses("net1").unwrap(), [ipv4("10.1.0.5/24")]);
    let routes = i.routes("net1").unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.dst == default.dst && r.gateway == default.gateway),
        "{routes:?}"
    );

    let sp = ServicePath {
        cidrs: vec![ipv4("10.96.0.0/12")],
        pod_addrs: vec!["10.1.0.5".parse().unwrap()],
    };
    let ends = e.pod_service_path(owner, &sp).unwrap();
    assert_eq!(ends.host, service_host_ifname(owner));
    assert_eq!(ends.pod, "svc-net1");
    let host_end = lab.net.link(&ends.host).unwrap();
    assert!(host_end.admin_up);
    assert!(
        lab.net
            .addresses(&ends.host)
            .unwrap()
            .iter()
            .any(|a| a.addr == std::net::IpAddr::V4(SERVICE_GATEWAY))
    );
    let back = lab.net.routes(&ends.host).unwrap();
    assert!(
        back.iter().any(|r| r.dst == ipv4("10.1.0.5/32")),
        "{back:?}"
    );
    let svc = i.routes(&ends.pod).unwrap();
    assert!(
        svc.iter().any(|r| r.dst == ipv4("10.96.0.0/12")
            && r.gateway == Some(std::net::IpAddr::V4(SERVICE_GATEWAY))
            && r.onlink),
        "{svc:?}"
    );
    assert_eq!(e.pod_check(owner, &ip, Some(&sp)).unwrap(), []);

    // CHECK names what is missing.
    i.del_address("net1", ipv4("10.1.0.5/24")).unwrap();
    let m = e.pod_check(owner, &ip, Some(&sp)).unwrap();
    assert!(
        m.contains(&Mismatch::AddressMissing {
            ifname: "net1".into(),
            address: ipv4("10.1.0.5/24")
        }),
        "{m:?}"
    );
    assert!(
        m.iter().any(
            |x| matches!(x, Mismatch::RouteMissing { route } if route.starts_with("0.0.0.0/0"))
        ),
        "the default route went with the address: {m:?}"
    );
    lab.net.del_link(&ends.host).unwrap();
    let m = e.pod_check(owner, &ip, Some(&sp)).unwrap();
    assert!(
        m.iter().any(|x| matches!(x, Mismatch::ServicePath { .. })),
        "{m:?}"
    );
    assert!(m.iter().all(|x| !x.to_string().is_empty()));

    // The service path is made again over what is left, and DEL removes it.
    i.add_address("net1", ipv4("10.1.0.5/24")).unwrap();
    e.pod_service_path(owner, &sp).unwrap();
    let r = e.pod_del(owner).unwrap();
    assert!(r.service_path);
    assert!(lab.net.link(&ends.host).is_err());
    assert!(
        i.link(&ends.pod).is_err(),
        "the pod end went with the host end"
    );
}

#[test]
fn a_failing_route_undoes_the_addresses_added_with_it() {
    use vfpool_engine::PodIp;
    use vfpool_netlink::Route;
    let (lab, mut e) = setup();
    let ns = netns(&lab, "undo");
    let owner = "cni/n/undo/net1";
    e.pod_add(&pod(owner, VfSource::Pool("p".into()), &ns, "net1"))
        .unwrap();
    // A gateway no address of the netdev covers: the kernel refuses (ENETUNREACH).
    let ip = PodIp {
        addresses: vec![ipv4("10.1.0.5/24")],
        routes: vec![Route {
            dst: ipv4("0.0.0.0/0"),
            gateway: Some("192.0.2.1".parse().unwrap()),
            dev: String::new(),
            src: None,
            onlink: false,
        }],
    };
    let err = e.pod_ip(owner, &ip).unwrap_err();
    assert!(err.to_string().contains("0.0.0.0/0"), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(inside(&lab, &ns).addresses("net1").unwrap().is_empty());
    // A service path needs an IPv4 address to send from, and IPv4 CIDRs.
    let sp = vfpool_engine::ServicePath {
        cidrs: vec![ipv4("10.96.0.0/12")],
        pod_addrs: vec![],
    };
    let err = e.pod_service_path(owner, &sp).unwrap_err();
    assert!(err.to_string().contains("serviceRoute"), "{err}");
    let sp = vfpool_engine::ServicePath {
        cidrs: vec!["fd00::/108".parse().unwrap()],
        pod_addrs: vec!["10.1.0.5".parse().unwrap()],
    };
    let err = e.pod_service_path(owner, &sp).unwrap_err();
    assert!(err.to_string().contains("serviceRoute.cidr"), "{err}");
    assert!(lab.net.link(&service_host_ifname(owner)).is_err());
}

#[test]
fn a_half_released_lease_of_the_same_attachment_is_finished_before_add() {
    use vfpool_engine::Durability;
    let (lab, mut e) = setup();
    let ns = netns(&lab, "half");
    let req = pod("cni/n/half/net1", VfSource::Pool("p".into()), &ns, "net1");
    let first = e.pod_add(&req).unwrap();
    // A DEL that died half way: the lease is `releasing`, its netdev still in the pod.
    let id = first.lease.id;
    e.ledger()
        .write(Durability::Synced, |tx| {
            tx.transition(id, &[LeaseState::Active], LeaseState::Releasing, None)
        })
        .unwrap();
    let again = e.pod_add(&req).unwrap();
    let leases = e.leases().unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].state, LeaseState::Active);
    assert_eq!(again.lease.ifname.as_deref(), Some("net1"));
    assert!(inside(&lab, &ns).link("net1").is_ok());
}

/// Counts the writes that unbind a driver (a VF driver reload).
#[derive(Debug)]
struct CountUnbinds {
    inner: vfpool_sim::SimHost,
    unbinds: std::sync::atomic::AtomicUsize,
}

impl vfpool_host::AttrWriter for CountUnbinds {
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        if path.ends_with("unbind") {
            self.unbinds
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        vfpool_host::AttrWriter::write(&self.inner, path, value)
    }
}

#[test]
fn a_mac_is_set_without_reloading_the_vf_driver() {
    let lab = Lab::new();
    lab.split("eno49", 2);
    let counter = std::sync::Arc::new(CountUnbinds {
        inner: lab.sim.clone(),
        unbinds: Default::default(),
    });
    let fs = vfpool_host::Sysfs::new(lab.sim.paths().sys, counter.clone());
    let mut e = Engine::open(&lab.state(), fs, lab.net.clone()).unwrap();
    e.pool_create("p", sel(&["eno49"]), Policy::FirstFit)
        .unwrap();
    let ns = netns(&lab, "mac");
    let mut req = pod("cni/n/mac/net1", VfSource::Pool("p".into()), &ns, "net1");
    let mac = "02:aa:bb:00:00:01".parse().unwrap();
    req.settings.mac = Some(mac);
    let a = e.pod_add(&req).unwrap();
    assert_eq!(a.mac, Some(mac));
    // The PF holds the MAC too (pinned: spoofchk lets only it out).
    assert_eq!(lab.vf_config("eno49", a.lease.vf_index).mac, mac);
    assert_eq!(
        counter.unbinds.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the VF's own driver took the MAC; no reload (igb refuses it once the PF pinned one)"
    );
    e.pod_del("cni/n/mac/net1").unwrap();
    lab.assert_pristine("eno49", a.lease.vf_index, "after DEL");
}

/// A device plugin's reservation (a lease of `deviceplugin/...` in no namespace) is taken
/// over by the ADD that names its VF; any other lease of the VF still refuses the ADD.
#[test]
fn add_takes_over_a_device_plugins_reservation_and_nothing_else() {
    let (lab, mut e) = setup();
    let vf = vf_of(&lab, "eno49", 0);
    let mut r = vfpool_engine::AcquireRequest::new("p", "deviceplugin/vfpool.io_p/x");
    r.vf = Some(vf);
    r.owner_kind = vfpool_engine::OwnerKind::Container;
    e.acquire(&r).unwrap();
    let ns = netns(&lab, "t1");
    let a = e
        .pod_add(&pod("cni/n/t1/net1", VfSource::Device(vf), &ns, "net1"))
        .unwrap();
    assert_eq!(a.lease.vf_pci, vf);
    let owners: Vec<String> = e.leases().unwrap().into_iter().map(|l| l.owner).collect();
    assert_eq!(owners, ["cni/n/t1/net1"], "the reservation is gone");

    // A manual lease of another VF is not a reservation: the ADD is refused.
    let other = vf_of(&lab, "eno49", 1);
    let mut m = vfpool_engine::AcquireRequest::new("p", "someone");
    m.vf = Some(other);
    e.acquire(&m).unwrap();
    let ns2 = netns(&lab, "t2");
    let err = e
        .pod_add(&pod("cni/n/t2/net1", VfSource::Device(other), &ns2, "net1"))
        .unwrap_err();
    assert!(matches!(err, EngineError::VfLeased { .. }), "{err:?}");
}
