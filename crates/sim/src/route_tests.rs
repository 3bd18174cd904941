//! The simulated routes, veth pairs, link deletion and sysctls against the kernel's rules
//! (each checked on 6.18 by vfpool-netlink's `nstests_route.rs`), and a fidelity test that
//! runs one sequence on the real kernel (root, fresh namespaces) and on the simulator and
//! compares what `routes()` and `links()` say.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::libc;
use vfpool_netlink::{IfAddr, NetOps, NetlinkError, Route, RtNetlink, current_netns};

use crate::netns_tests::{Host, VF0};

fn errno(e: &NetlinkError) -> i32 {
    e.errno().unwrap_or_else(|| panic!("no errno in {e:?}"))
}

fn a(s: &str) -> IfAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn kernel4(dst: &str, src: &str, dev: &str) -> Route {
    Route {
        src: Some(ip(src)),
        ..Route::dev(a(dst), dev)
    }
}

fn add_errno(ops: &dyn NetOps, r: &Route) -> i32 {
    errno(&ops.add_route(r).unwrap_err())
}

#[test]
fn the_kernels_prefix_routes_follow_addresses_and_link_state() {
    let h = Host::new();
    let ops = h.ops();
    // Down: addresses but no route.
    ops.add_address("eth0v0", a("10.1.2.3/24")).unwrap();
    ops.add_address("eth0v0", a("fd00::5/64")).unwrap();
    assert!(ops.routes("eth0v0").unwrap().is_empty());
    ops.set_up("eth0v0", true).unwrap();
    let k4 = kernel4("10.1.2.0/24", "10.1.2.3", "eth0v0");
    let k6 = Route::dev(a("fd00::/64"), "eth0v0");
    assert_eq!(ops.routes("eth0v0").unwrap(), [k4.clone(), k6.clone()]);
    // A /32 gives none, a second address of the same prefix none more, an IPv6 /128 one.
    ops.add_address("eth0v0", a("10.9.9.9/32")).unwrap();
    ops.add_address("eth0v0", a("10.1.2.4/24")).unwrap();
    ops.add_address("eth0v0", a("fd01::5/128")).unwrap();
    let k128 = Route::dev(a("fd01::5/128"), "eth0v0");
    assert_eq!(
        ops.routes("eth0v0").unwrap(),
        [k4.clone(), k6.clone(), k128.clone()]
    );
    // A /31 routes its pair.
    ops.add_address("eth0v0", a("10.1.4.3/31")).unwrap();
    assert!(
        ops.routes("eth0v0")
            .unwrap()
            .contains(&kernel4("10.1.4.2/31", "10.1.4.3", "eth0v0"))
    );
    ops.del_address("eth0v0", a("10.1.4.3/31")).unwrap();
    // Deleting the address that made the route: the other one of its prefix takes over.
    ops.del_address("eth0v0", a("10.1.2.3/24")).unwrap();
    let k4b = kernel4("10.1.2.0/24", "10.1.2.4", "eth0v0");
    assert_eq!(
        ops.routes("eth0v0").unwrap(),
        [k4b.clone(), k6.clone(), k128]
    );
    ops.del_address("eth0v0", a("fd01::5/128")).unwrap();
    // A user route, then down: every route goes, and the IPv6 addresses.
    ops.add_route(&Route::dev(a("10.96.0.0/12"), "eth0v0"))
        .unwrap();
    ops.set_up("eth0v0", false).unwrap();
    assert!(ops.routes("eth0v0").unwrap().is_empty());
    assert_eq!(
        ops.addresses("eth0v0").unwrap(),
        [a("10.9.9.9/32"), a("10.1.2.4/24")]
    );
    // Down again changes nothing (no NETDEV_DOWN): an IPv6 address added while down stays.
    ops.add_address("eth0v0", a("fd00::6/64")).unwrap();
    ops.set_up("eth0v0", false).unwrap();
    assert!(ops.addresses("eth0v0").unwrap().contains(&a("fd00::6/64")));
    // Up: the prefix routes of the addresses, not the user's.
    ops.set_up("eth0v0", true).unwrap();
    assert_eq!(ops.routes("eth0v0").unwrap(), [k4b, k6]);
    // The other netdevs have none; a missing one is LinkNotFound.
    assert!(ops.routes("eth0v1").unwrap().is_empty());
    assert!(matches!(
        ops.routes("nope0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
}

#[test]
fn route_refusals_follow_the_kernel() {
    let h = Host::new();
    let ops = h.ops();
    ops.add_address("eth0v0", a("10.1.2.3/24")).unwrap();
    ops.add_address("eth0v0", a("fd00::5/64")).unwrap();
    // Down.
    let svc = Route::dev(a("10.96.0.0/12"), "eth0v0");
    let via = Route::via(a("10.97.0.0/16"), ip("10.1.2.1"), "eth0v0");
    let onlink = Route {
        onlink: true,
        ..Route::via(a("10.98.0.0/16"), ip("10.5.0.1"), "eth0v0")
    };
    assert_eq!(add_errno(&ops, &svc), libc::ENETDOWN);
    assert_eq!(add_errno(&ops, &via), libc::ENETUNREACH);
    assert_eq!(add_errno(&ops, &onlink), libc::ENETDOWN);
    assert_eq!(
        add_errno(&ops, &Route::dev(a("fd07::/64"), "eth0v0")),
        libc::ENETDOWN
    );
    let via6 = Route::via(a("fd07::/64"), ip("fd00::1"), "eth0v0");
    assert_eq!(add_errno(&ops, &via6), libc::EHOSTUNREACH);
    let e = ops.add_route(&svc).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot add route 10.96.0.0/12 dev eth0v0: the device is down"
    );
    // Up: the addresses added while down give their prefix routes.
    ops.set_up("eth0v0", true).unwrap();
    for r in [&svc, &via, &onlink, &via6] {
        ops.add_route(r).unwrap_or_else(|e| panic!("{r}: {e}"));
    }
    // A gateway no route of the device covers.
    let e = ops
        .add_route(&Route::via(a("10.50.0.0/16"), ip("10.5.0.1"), "eth0v0"))
        .unwrap_err();
    assert_eq!(errno(&e), libc::ENETUNREACH);
    assert_eq!(
        e.to_string(),
        "cannot add route 10.50.0.0/16 via 10.5.0.1 dev eth0v0: the gateway is not on the link (no route of the device covers it; add onlink)"
    );
    // ... but one of the user's own link routes does cover it.
    ops.add_route(&Route::via(a("10.51.0.0/16"), ip("10.96.0.1"), "eth0v0"))
        .unwrap();
    assert_eq!(
        add_errno(&ops, &Route::via(a("fd05:1::/64"), ip("fd09::1"), "eth0v0")),
        libc::EHOSTUNREACH
    );
    // An IPv6 link-local gateway needs no covering route.
    ops.add_route(&Route::via(a("fd05::/64"), ip("fe80::1"), "eth0v0"))
        .unwrap();
    // Duplicates: the same prefix whatever the gateway; the kernel's own IPv4 one too; not
    // the kernel's IPv6 one (metric 256, the user's 1024).
    assert_eq!(add_errno(&ops, &svc), libc::EEXIST);
    assert_eq!(
        add_errno(
            &ops,
            &Route::via(a("10.96.0.0/12"), ip("10.1.2.9"), "eth0v0")
        ),
        libc::EEXIST
    );
    assert_eq!(
        add_errno(&ops, &Route::dev(a("10.1.2.0/24"), "eth0v0")),
        libc::EEXIST
    );
    ops.add_route(&Route::dev(a("fd00::/64"), "eth0v0"))
        .unwrap();
    assert_eq!(
        add_errno(&ops, &Route::dev(a("fd00::/64"), "eth0v0")),
        libc::EEXIST
    );
    // src must be an address of the namespace; families must agree; IPv4 host bits.
    let mut bad_src = Route::dev(a("10.52.0.0/16"), "eth0v0");
    bad_src.src = Some(ip("10.7.7.7"));
    assert_eq!(add_errno(&ops, &bad_src), libc::EINVAL);
    bad_src.src = Some(ip("10.1.2.3"));
    ops.add_route(&bad_src).unwrap();
    assert_eq!(
        add_errno(
            &ops,
            &Route::via(a("10.53.0.0/16"), ip("fd00::1"), "eth0v0")
        ),
        libc::EINVAL
    );
    assert_eq!(
        add_errno(&ops, &Route::dev(a("10.54.0.1/16"), "eth0v0")),
        libc::EINVAL
    );
    // A missing device.
    let e = ops
        .add_route(&Route::dev(a("10.55.0.0/16"), "nope0"))
        .unwrap_err();
    assert!(matches!(e, NetlinkError::LinkNotFound { .. }), "{e:?}");
    assert_eq!(errno(&e), libc::ENODEV);
    // Delete: by prefix and device, with the gateway if given; missing is ESRCH.
    ops.del_route(&Route::dev(a("10.97.0.0/16"), "eth0v0"))
        .unwrap();
    let e = ops.del_route(&via).unwrap_err();
    assert_eq!(errno(&e), libc::ESRCH);
    assert_eq!(
        e.to_string(),
        "cannot delete route 10.97.0.0/16 via 10.1.2.1 dev eth0v0: no such route"
    );
    assert_eq!(
        errno(
            &ops.del_route(&Route::via(a("10.98.0.0/16"), ip("10.5.0.2"), "eth0v0"))
                .unwrap_err()
        ),
        libc::ESRCH
    );
    assert_eq!(
        errno(
            &ops.del_route(&Route::dev(a("10.96.0.0/12"), "eth0v1"))
                .unwrap_err()
        ),
        libc::ESRCH
    );
    ops.del_route(&onlink).unwrap();
    // The kernel's own can be deleted too.
    ops.del_route(&Route::dev(a("10.1.2.0/24"), "eth0v0"))
        .unwrap();
    assert!(
        !ops.routes("eth0v0")
            .unwrap()
            .iter()
            .any(|r| r.dst == a("10.1.2.0/24"))
    );
    // Deleting an address takes the IPv4 routes that use it as src.
    ops.del_address("eth0v0", a("10.1.2.3/24")).unwrap();
    assert!(
        !ops.routes("eth0v0")
            .unwrap()
            .iter()
            .any(|r| r.src.is_some())
    );
}

#[test]
fn routes_belong_to_a_namespace_and_survive_a_rename() {
    let h = Host::new();
    let ops = h.ops();
    let (_p, pod) = h.netns("pod1");
    ops.add_address("eth0v0", a("10.1.2.3/24")).unwrap();
    ops.set_up("eth0v0", true).unwrap();
    ops.add_route(&Route::dev(a("10.96.0.0/12"), "eth0v0"))
        .unwrap();
    ops.rename("eth0v0", "vf0").unwrap();
    assert_eq!(
        ops.routes("vf0").unwrap(),
        [
            kernel4("10.1.2.0/24", "10.1.2.3", "vf0"),
            Route::dev(a("10.96.0.0/12"), "vf0")
        ]
    );
    // Moved: it arrives down with no address and no route; the host's table has nothing
    // of it left.
    ops.move_to_netns("vf0", pod.as_fd(), Some("net0")).unwrap();
    let inside = ops.enter_netns(pod.as_fd()).unwrap();
    assert!(inside.routes("net0").unwrap().is_empty());
    // The same prefix in two namespaces: no duplicate.
    ops.add_address("eth0v1", a("10.1.2.3/24")).unwrap();
    ops.set_up("eth0v1", true).unwrap();
    ops.add_route(&Route::dev(a("10.96.0.0/12"), "eth0v1"))
        .unwrap();
    inside.add_address("net0", a("10.1.2.3/24")).unwrap();
    inside.set_up("net0", true).unwrap();
    inside
        .add_route(&Route::dev(a("10.96.0.0/12"), "net0"))
        .unwrap();
    assert_eq!(inside.routes("net0").unwrap().len(), 2);
    assert_eq!(ops.routes("eth0v1").unwrap().len(), 2);
    // Not seen from the host.
    assert!(matches!(
        ops.routes("net0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    // Back to the host: the namespace's routes stay behind (gone).
    ops.move_from_netns(pod.as_fd(), "net0", Some("vf0"))
        .unwrap();
    assert!(ops.routes("vf0").unwrap().is_empty());
}

#[test]
fn a_veth_pair_with_its_peer_in_another_namespace() {
    let h = Host::new();
    let ops = h.ops();
    let (_p, pod) = h.netns("pod1");
    let inside = ops.in_netns(pod.as_fd()).unwrap();
    ops.add_veth("vsvc0", "eth9", pod.as_fd()).unwrap();
    let here = ops.link("vsvc0").unwrap();
    let there = inside.link("eth9").unwrap();
    assert!(!here.admin_up && !there.admin_up, "both ends down");
    assert_eq!((here.parent_dev, there.parent_dev), (None, None));
    assert_ne!(here.ifindex, there.ifindex);
    assert!(
        ![2, 3, 4, 9].contains(&here.ifindex),
        "a new ifindex: {}",
        here.ifindex
    );
    assert_eq!((here.mtu, here.carrier), (1500, Some(false)));
    assert!(h.class_net().contains(&"vsvc0".to_string()));
    assert!(!h.class_net().contains(&"eth9".to_string()));
    assert!(matches!(
        ops.link("eth9"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    // Carrier only while both ends are up.
    ops.set_up("vsvc0", true).unwrap();
    let l = ops.link("vsvc0").unwrap();
    assert_eq!(
        (l.carrier, l.oper_state.as_str()),
        (Some(false), "lowerlayerdown")
    );
    inside.set_up("eth9", true).unwrap();
    for l in [ops.link("vsvc0").unwrap(), inside.link("eth9").unwrap()] {
        assert_eq!((l.carrier, l.oper_state.as_str()), (Some(true), "up"));
    }
    ops.set_up("vsvc0", false).unwrap();
    let l = inside.link("eth9").unwrap();
    assert_eq!(
        (l.carrier, l.oper_state.as_str()),
        (Some(false), "lowerlayerdown")
    );

    // A name taken on either side (altnames too), or invalid: nothing made.
    let e = ops.add_veth("vsvc0", "eth8", pod.as_fd()).unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    assert_eq!(
        e.to_string(),
        "cannot add veth pair vsvc0 (peer eth8): the name is already taken there"
    );
    assert_eq!(
        errno(&ops.add_veth("vsvc1", "eth9", pod.as_fd()).unwrap_err()),
        libc::EEXIST
    );
    ops.add_alt_name("eth0v0", "svc-alt").unwrap();
    assert_eq!(
        errno(&ops.add_veth("svc-alt", "eth7", pod.as_fd()).unwrap_err()),
        libc::EEXIST
    );
    assert_eq!(
        errno(&ops.add_veth("a b", "eth7", pod.as_fd()).unwrap_err()),
        libc::EINVAL
    );
    let here_ns = current_netns().unwrap();
    assert_eq!(
        errno(&ops.add_veth("x0", "x0", here_ns.as_fd()).unwrap_err()),
        libc::EEXIST
    );
    assert!(matches!(
        inside.link("eth8"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    assert!(matches!(
        inside.link("eth7"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    // Both ends in the host's namespace.
    ops.add_veth("x0", "x1", here_ns.as_fd()).unwrap();
    assert!(ops.link("x1").is_ok());
    // The same names again in a new instance: the pair is kept on disk.
    assert!(h.ops().link("vsvc0").is_ok());
}

#[test]
fn deleting_a_veth_end_deletes_both_wherever_they_are() {
    let h = Host::new();
    let ops = h.ops();
    let (_p, pod) = h.netns("pod1");
    let inside = ops.in_netns(pod.as_fd()).unwrap();
    ops.add_veth("vsvc0", "eth9", pod.as_fd()).unwrap();
    inside.add_address("eth9", a("10.1.2.3/24")).unwrap();
    inside.set_up("eth9", true).unwrap();
    inside.set_sysctl("ipv4/conf/eth9/arp_notify", "1").unwrap();
    ops.del_link("vsvc0").unwrap();
    assert!(matches!(
        ops.link("vsvc0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    assert!(inside.links().unwrap().is_empty());
    assert!(!h.class_net().contains(&"vsvc0".to_string()));
    assert!(!h.dir.path().join("sys/devices/virtual/net/vsvc0").exists());
    // Nothing of them is left: a new pair with the same names starts clean.
    ops.add_veth("vsvc0", "eth9", pod.as_fd()).unwrap();
    assert!(inside.addresses("eth9").unwrap().is_empty());
    assert_eq!(inside.sysctl("ipv4/conf/eth9/arp_notify").unwrap(), None);
    // From the other side.
    inside.del_link("eth9").unwrap();
    assert!(matches!(
        ops.link("vsvc0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    // Missing: LinkNotFound; a PCI function's netdev: EOPNOTSUPP (no rtnl dellink).
    assert!(matches!(
        ops.del_link("vsvc0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    let e = ops.del_link("eth0v0").unwrap_err();
    assert_eq!(errno(&e), libc::EOPNOTSUPP);
    assert!(matches!(e, NetlinkError::DelLink { .. }));
    assert!(ops.link("eth0v0").is_ok());
}

#[test]
fn a_gone_namespace_takes_its_veths_with_their_peers() {
    let h = Host::new();
    let ops = h.ops();
    let (p, pod) = h.netns("pod1");
    ops.add_veth("vsvc0", "eth9", pod.as_fd()).unwrap();
    // A VF in it too: that one comes back.
    ops.move_to_netns("eth0v0", pod.as_fd(), Some("net1"))
        .unwrap();
    ops.set_sysctl("ipv4/conf/vsvc0/arp_notify", "1").unwrap();
    drop(pod);
    fs::remove_file(&p).unwrap();
    assert!(matches!(
        ops.link("vsvc0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    assert!(!h.class_net().contains(&"vsvc0".to_string()));
    assert_eq!(ops.link("net1").unwrap().parent_dev.as_deref(), Some(VF0));
    assert!(!h.dir.path().join("netns").read_dir().unwrap().any(|_| true));
}

#[test]
fn sysctls_are_kept_per_namespace_and_key() {
    let h = Host::new();
    let ops = h.ops();
    let (_p, pod) = h.netns("pod1");
    ops.move_to_netns("eth0v0", pod.as_fd(), Some("eth0"))
        .unwrap();
    let inside = ops.in_netns(pod.as_fd()).unwrap();
    inside.set_sysctl("ipv4/conf/eth0/arp_notify", "1").unwrap();
    inside
        .set_sysctl("ipv6/conf/eth0/ndisc_notify", "1")
        .unwrap();
    ops.set_sysctl("ipv4/conf/eth0/arp_notify", "0").unwrap();
    assert_eq!(
        inside
            .sysctl("ipv4/conf/eth0/arp_notify")
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        inside
            .sysctl("ipv6/conf/eth0/ndisc_notify")
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        ops.sysctl("ipv4/conf/eth0/arp_notify").unwrap().as_deref(),
        Some("0")
    );
    assert_eq!(inside.sysctl("ipv6/conf/eth0/arp_notify").unwrap(), None);
    // all and default, neigh/default (no neigh/all).
    inside.set_sysctl("ipv4/conf/all/arp_notify", "1").unwrap();
    inside
        .set_sysctl("ipv6/neigh/default/retrans_time_ms", "500")
        .unwrap();
    let e = inside
        .set_sysctl("ipv4/neigh/all/gc_thresh1", "1")
        .unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    // A missing interface, or an altname (no /proc/sys directory of its own): ENOENT.
    let e = inside
        .set_sysctl("ipv4/conf/eth0v1/arp_notify", "1")
        .unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    assert_eq!(
        e.to_string(),
        "cannot set sysctl net/ipv4/conf/eth0v1/arp_notify to 1: no such key (or no such interface) in the namespace"
    );
    inside.add_alt_name("eth0", "pod-eth0").unwrap();
    assert_eq!(
        errno(
            &inside
                .set_sysctl("ipv4/conf/pod-eth0/arp_notify", "1")
                .unwrap_err()
        ),
        libc::ENOENT
    );
    // A rename keeps the values (the kernel renames the directory).
    inside.rename("eth0", "net1").unwrap();
    assert_eq!(
        inside
            .sysctl("ipv4/conf/net1/arp_notify")
            .unwrap()
            .as_deref(),
        Some("1")
    );
    // A move to another namespace does not.
    ops.move_from_netns(pod.as_fd(), "net1", Some("eth0v0"))
        .unwrap();
    assert_eq!(ops.sysctl("ipv4/conf/eth0v0/arp_notify").unwrap(), None);
}

#[test]
fn sysctl_keys_are_checked_before_anything() {
    let h = Host::new();
    let ops = h.ops();
    for (key, value, want) in [
        (
            "kernel/hostname",
            "x",
            "invalid sysctl key 'kernel/hostname': a key under ipv4/conf/, ipv6/conf/, ipv4/neigh/ or ipv6/neigh/ like ipv4/conf/eth0/arp_notify",
        ),
        (
            "/proc/sys/net/ipv4/conf/eth0/arp_notify",
            "1",
            "invalid sysctl key '/proc/sys/net/ipv4/conf/eth0/arp_notify': a key under",
        ),
        (
            "ipv4/conf/../../kernel/hostname",
            "x",
            "invalid sysctl key 'ipv4/conf/../../kernel/hostname': the interface part is not a valid netdev name",
        ),
        (
            "ipv4/conf/eth0/../../../kernel/x",
            "1",
            "the setting after the interface must be [a-z0-9_] parts",
        ),
        ("ipv4/conf/eth0", "1", "a key under"),
        ("ipv4/conf/eth0/", "1", "the setting after the interface"),
        ("ipv4/conf//arp_notify", "1", "not a valid netdev name"),
        ("ipv4/route/flush", "1", "a key under"),
        (
            "ipv4/conf/eth0/arp_notify",
            "1\n2",
            "invalid sysctl value '1\\n2': a non-empty value of printable ASCII for net/ipv4/conf/eth0/arp_notify",
        ),
        ("ipv4/conf/eth0/arp_notify", "", "invalid sysctl value ''"),
    ] {
        let e = ops.set_sysctl(key, value).unwrap_err();
        assert!(matches!(e, NetlinkError::InvalidSysctl { .. }), "{e:?}");
        assert_eq!(errno(&e), libc::EINVAL);
        let msg = e.to_string();
        assert!(msg.contains(want), "{key}: {msg}");
        assert!(!msg.contains('\n'));
    }
    assert!(
        !h.dir.path().join("netlink/netdevs.json").exists(),
        "nothing written"
    );
}

/// One sequence of the CNI plugin's service path, run on a backend: a veth whose peer is in
/// the pod's namespace, addresses, routes, errors, down and up, deletion. Returns a
/// transcript of what `routes()` and `links()` said and of each refusal's errno.
fn service_path(host: &dyn NetOps, pod: BorrowedFd<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let inside = host.enter_netns(pod).unwrap();
    let show = |label: &str, ops: &dyn NetOps, dev: &str| {
        let mut r = ops.routes(dev).unwrap();
        r.sort();
        let r: Vec<String> = r.iter().map(Route::to_string).collect();
        let mut l: Vec<String> = ops
            .links()
            .unwrap()
            .into_iter()
            .filter(|l| l.name == dev)
            .map(|l| {
                format!(
                    "{} up={} carrier={:?} mtu={} parent={:?}",
                    l.name, l.admin_up, l.carrier, l.mtu, l.parent_dev
                )
            })
            .collect();
        l.sort();
        format!("{label}: routes {r:?} links {l:?}")
    };
    host.add_veth("vsvc0", "eth9", pod).unwrap();
    // No IPv6 link-local address (the simulator has none).
    inside
        .set_sysctl("ipv6/conf/eth9/addr_gen_mode", "1")
        .unwrap();
    host.set_sysctl("ipv6/conf/vsvc0/addr_gen_mode", "1")
        .unwrap();
    inside.set_sysctl("ipv6/conf/eth9/accept_dad", "0").unwrap();
    inside.add_address("eth9", a("10.1.2.3/24")).unwrap();
    inside.add_address("eth9", a("fd00::5/64")).unwrap();
    inside.add_address("eth9", a("10.9.9.9/32")).unwrap();
    out.push(show("added", &*inside, "eth9"));
    inside.set_up("eth9", true).unwrap();
    out.push(show("pod end up", &*inside, "eth9"));
    host.set_up("vsvc0", true).unwrap();
    for r in [
        Route::dev(a("10.96.0.0/12"), "eth9"),
        Route::via(a("0.0.0.0/0"), ip("10.1.2.1"), "eth9"),
        Route::via(a("::/0"), ip("fd00::1"), "eth9"),
        Route {
            onlink: true,
            ..Route::via(a("10.98.0.0/16"), ip("10.5.0.1"), "eth9")
        },
    ] {
        inside.add_route(&r).unwrap();
    }
    out.push(show("routes", &*inside, "eth9"));
    let mut refused = Vec::new();
    for r in [
        Route::dev(a("10.96.0.0/12"), "eth9"),
        Route::dev(a("10.1.2.0/24"), "eth9"),
        Route::via(a("10.50.0.0/16"), ip("10.5.0.1"), "eth9"),
        Route::via(a("fd05::/64"), ip("fd09::1"), "eth9"),
        Route::dev(a("10.51.0.0/16"), "vsvc0"),
    ] {
        refused.push(format!(
            "{r}: {:?}",
            inside.add_route(&r).map_err(|e| e.errno())
        ));
    }
    refused.push(format!(
        "del: {:?}",
        inside
            .del_route(&Route::dev(a("10.52.0.0/16"), "eth9"))
            .map_err(|e| e.errno())
    ));
    out.push(format!("refused {refused:?}"));
    inside
        .del_route(&Route::dev(a("0.0.0.0/0"), "eth9"))
        .unwrap();
    inside.set_up("eth9", false).unwrap();
    out.push(show("pod end down", &*inside, "eth9"));
    out.push(format!("addresses {:?}", inside.addresses("eth9").unwrap()));
    inside.set_up("eth9", true).unwrap();
    out.push(show("up again", &*inside, "eth9"));
    out.push(show("host end", host, "vsvc0"));
    host.del_link("vsvc0").unwrap();
    out.push(format!(
        "deleted: pod has {:?}",
        inside
            .links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .filter(|n| n != "lo")
            .collect::<Vec<_>>()
    ));
    out
}

/// The service path on the real kernel (fresh namespaces) and on the simulator: the same
/// transcript. Root only (VFPOOL_ALLOW_SKIP=1 allows a skip on purpose).
#[test]
fn the_simulator_routes_like_the_kernel() {
    use nix::sched::{CloneFlags, unshare};
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var("VFPOOL_ALLOW_SKIP").as_deref() == Ok("1"),
            "the_simulator_routes_like_the_kernel needs root; set VFPOOL_ALLOW_SKIP=1 to skip it on purpose"
        );
        eprintln!("SKIPPED the_simulator_routes_like_the_kernel: needs root");
        return;
    }
    let real = std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).unwrap();
            let pod: OwnedFd = std::thread::spawn(|| {
                unshare(CloneFlags::CLONE_NEWNET).unwrap();
                current_netns().unwrap()
            })
            .join()
            .unwrap();
            let nl = RtNetlink::new().unwrap();
            service_path(&nl, pod.as_fd())
        })
        .join()
        .unwrap()
    });
    let h = Host::new();
    let (_p, pod) = h.netns("pod1");
    let sim = service_path(&h.ops(), pod.as_fd());
    assert_eq!(sim, real, "simulator (left) and kernel (right)");
    // The transcript says something: routes were listed and refusals had errnos.
    assert!(real.iter().any(|l| l.contains("10.96.0.0/12 dev eth9")));
    assert!(real.iter().any(|l| l.contains("Err(Some(17))")));
}
