//! Routes, veth pairs across namespaces, link deletion and sysctls of the real backend
//! against the running kernel, each test in fresh network namespaces, each result also read
//! with `ip` or from /proc/sys (independent readers). Root only, as `nstests.rs`.

use std::os::fd::AsFd;
use std::process::Command;

use nix::libc;

use crate::nstests::{errno, in_fresh_netns, other_netns, skip_unless_root as skip};
use crate::{IfAddr, NetOps, NetlinkError, Route, RtNetlink, run_in_netns};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn a(s: &str) -> IfAddr {
    s.parse().unwrap()
}

fn sorted(mut v: Vec<Route>) -> Vec<Route> {
    v.sort();
    v
}

/// vfp0 (up, addresses 10.1.2.3/24 and fd00::5/64, no link-local) and its peer vfp1 (up).
fn setup(nl: &RtNetlink) {
    nl.veth("vfp0", "vfp1").unwrap();
    nl.set_sysctl("ipv6/conf/vfp0/addr_gen_mode", "1").unwrap();
    nl.set_sysctl("ipv6/conf/vfp0/accept_dad", "0").unwrap();
    nl.set_sysctl("ipv6/conf/vfp1/addr_gen_mode", "1").unwrap();
    nl.add_address("vfp0", a("10.1.2.3/24")).unwrap();
    nl.add_address("vfp0", a("fd00::5/64")).unwrap();
    nl.set_up("vfp0", true).unwrap();
    nl.set_up("vfp1", true).unwrap();
}

#[test]
fn routes_add_list_and_delete_on_the_kernel() {
    if skip("routes_add_list_and_delete_on_the_kernel") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        setup(&nl);
        // The kernel's own prefix routes: IPv4 with the address as src, IPv6 without.
        let kernel4 = Route {
            src: Some("10.1.2.3".parse().unwrap()),
            ..Route::dev(a("10.1.2.0/24"), "vfp0")
        };
        let kernel6 = Route::dev(a("fd00::/64"), "vfp0");
        assert_eq!(
            sorted(nl.routes("vfp0").unwrap()),
            sorted(vec![kernel4.clone(), kernel6.clone()])
        );

        let svc = Route::dev(a("10.96.0.0/12"), "vfp0");
        let via = Route::via(a("10.97.0.0/16"), "10.1.2.1".parse().unwrap(), "vfp0");
        let def4 = Route::via(a("0.0.0.0/0"), "10.1.2.1".parse().unwrap(), "vfp0");
        let def6 = Route::via(a("::/0"), "fd00::1".parse().unwrap(), "vfp0");
        let ll6 = Route::via(a("fd05::/64"), "fe80::1".parse().unwrap(), "vfp0");
        let onlink = Route {
            onlink: true,
            ..Route::via(a("10.98.0.0/16"), "10.5.0.1".parse().unwrap(), "vfp0")
        };
        let with_src = Route {
            src: Some("10.1.2.3".parse().unwrap()),
            ..Route::dev(a("10.99.0.0/16"), "vfp0")
        };
        for r in [&svc, &via, &def4, &def6, &ll6, &onlink, &with_src] {
            nl.add_route(r).unwrap_or_else(|e| panic!("{r}: {e}"));
        }
        let mut want = vec![
            kernel4.clone(),
            kernel6.clone(),
            svc.clone(),
            via.clone(),
            def4.clone(),
            def6.clone(),
            ll6.clone(),
            onlink.clone(),
            with_src.clone(),
        ];
        assert_eq!(sorted(nl.routes("vfp0").unwrap()), sorted(want.clone()));
        // As ip shows them (proto boot, scope link without gateway).
        let shown = ip(&["-d", "route", "show", "dev", "vfp0"]);
        for line in [
            "unicast default via 10.1.2.1 proto boot scope global",
            "unicast 10.96.0.0/12 proto boot scope link",
            "unicast 10.98.0.0/16 via 10.5.0.1 proto boot scope global onlink",
            "unicast 10.99.0.0/16 proto boot scope link src 10.1.2.3",
        ] {
            assert!(shown.contains(line), "{line} in {shown}");
        }
        let shown = ip(&["-d", "-6", "route", "show", "dev", "vfp0"]);
        assert!(
            shown.contains("unicast default via fd00::1 proto boot scope global metric 1024"),
            "{shown}"
        );
        // The peer has none of them (and no fe80::/64: no link-local address).
        assert!(nl.routes("vfp1").unwrap().is_empty());

        // Refusals, with their errno.
        let e = nl.add_route(&svc).unwrap_err();
        assert_eq!(errno(&e), libc::EEXIST);
        assert_eq!(
            e.to_string(),
            "cannot add route 10.96.0.0/12 dev vfp0: the table has a route to this destination already"
        );
        // The same destination through another gateway is a duplicate too (fib_table_insert).
        let e = nl
            .add_route(&Route::via(
                a("10.96.0.0/12"),
                "10.1.2.9".parse().unwrap(),
                "vfp0",
            ))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EEXIST);
        // The kernel's own prefix route is one too (IPv4, same metric 0).
        assert_eq!(
            errno(
                &nl.add_route(&Route::dev(a("10.1.2.0/24"), "vfp0"))
                    .unwrap_err()
            ),
            libc::EEXIST
        );
        let e = nl
            .add_route(&Route::via(
                a("10.50.0.0/16"),
                "10.5.0.1".parse().unwrap(),
                "vfp0",
            ))
            .unwrap_err();
        assert_eq!(errno(&e), libc::ENETUNREACH, "{e}");
        let e = nl
            .add_route(&Route::via(
                a("fd05:1::/64"),
                "fd09::1".parse().unwrap(),
                "vfp0",
            ))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EHOSTUNREACH, "{e}");
        let e = nl
            .add_route(&Route {
                src: Some("10.7.7.7".parse().unwrap()),
                ..Route::dev(a("10.51.0.0/16"), "vfp0")
            })
            .unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{e}");
        let e = nl
            .add_route(&Route::dev(a("10.52.0.0/16"), "nope0"))
            .unwrap_err();
        assert!(matches!(e, NetlinkError::LinkNotFound { .. }), "{e:?}");
        assert_eq!(errno(&e), libc::ENODEV);

        // Delete: by dst and dev, or with the gateway.
        nl.del_route(&svc).unwrap();
        nl.del_route(&def6).unwrap();
        nl.del_route(&Route::dev(a("0.0.0.0/0"), "vfp0")).unwrap();
        let e = nl.del_route(&svc).unwrap_err();
        assert_eq!(errno(&e), libc::ESRCH);
        assert_eq!(
            e.to_string(),
            "cannot delete route 10.96.0.0/12 dev vfp0: no such route"
        );
        let e = nl
            .del_route(&Route::dev(a("fd50::/64"), "vfp0"))
            .unwrap_err();
        assert_eq!(errno(&e), libc::ESRCH);
        want.retain(|r| ![&svc, &def6, &def4].contains(&r));
        assert_eq!(sorted(nl.routes("vfp0").unwrap()), sorted(want));

        // Down: every route of the device goes, IPv4 addresses stay, IPv6 ones go
        // (keep_addr_on_down 0); routes to a down device are refused.
        nl.set_up("vfp0", false).unwrap();
        assert!(nl.routes("vfp0").unwrap().is_empty());
        assert_eq!(nl.addresses("vfp0").unwrap(), [a("10.1.2.3/24")]);
        let e = nl
            .add_route(&Route::dev(a("10.53.0.0/16"), "vfp0"))
            .unwrap_err();
        assert_eq!(errno(&e), libc::ENETDOWN);
        let e = nl.add_route(&via).unwrap_err();
        assert_eq!(errno(&e), libc::ENETUNREACH, "{e}");
        assert_eq!(errno(&nl.add_route(&onlink).unwrap_err()), libc::ENETDOWN);
        assert_eq!(
            errno(
                &nl.add_route(&Route::dev(a("fd07::/64"), "vfp0"))
                    .unwrap_err()
            ),
            libc::ENETDOWN
        );
        // Up again: the IPv4 prefix route comes back, nothing else.
        nl.set_up("vfp0", true).unwrap();
        assert_eq!(nl.routes("vfp0").unwrap(), [kernel4]);
    });
}

#[test]
fn a_veth_with_its_peer_in_another_netns_and_link_deletion() {
    if skip("a_veth_with_its_peer_in_another_netns_and_link_deletion") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        let pod = other_netns();
        let there = RtNetlink::in_netns(pod.as_fd()).unwrap();
        nl.add_veth("vsvc0", "eth9", pod.as_fd()).unwrap();
        let here_end = nl.link("vsvc0").unwrap();
        let pod_end = there.link("eth9").unwrap();
        assert!(!here_end.admin_up && !pod_end.admin_up, "both ends down");
        assert_eq!((here_end.parent_dev, pod_end.parent_dev), (None, None));
        assert!(matches!(
            nl.link("eth9"),
            Err(NetlinkError::LinkNotFound { .. })
        ));
        assert!(ip(&["link", "show", "vsvc0"]).contains("vsvc0@if"));

        // A name taken on either side.
        let e = nl.add_veth("vsvc0", "eth8", pod.as_fd()).unwrap_err();
        assert_eq!(errno(&e), libc::EEXIST);
        assert_eq!(
            e.to_string(),
            "cannot add veth pair vsvc0 (peer eth8): the name is already taken there"
        );
        assert_eq!(
            errno(&nl.add_veth("vsvc1", "eth9", pod.as_fd()).unwrap_err()),
            libc::EEXIST
        );
        assert!(
            matches!(nl.link("vsvc1"), Err(NetlinkError::LinkNotFound { .. })),
            "nothing half made"
        );
        let e = nl.add_veth("a b", "eth7", pod.as_fd()).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL);

        // Deleting one end deletes the other, in its namespace.
        nl.del_link("vsvc0").unwrap();
        assert!(matches!(
            nl.link("vsvc0"),
            Err(NetlinkError::LinkNotFound { .. })
        ));
        assert!(matches!(
            there.link("eth9"),
            Err(NetlinkError::LinkNotFound { .. })
        ));
        let e = nl.del_link("vsvc0").unwrap_err();
        assert!(matches!(e, NetlinkError::LinkNotFound { .. }), "{e:?}");
        // And from the pod's side.
        nl.add_veth("vsvc2", "eth9", pod.as_fd()).unwrap();
        there.del_link("eth9").unwrap();
        assert!(matches!(
            nl.link("vsvc2"),
            Err(NetlinkError::LinkNotFound { .. })
        ));
        // lo cannot be deleted (rtnl_dellink: no rtnl_link_ops dellink).
        let e = nl.del_link("lo").unwrap_err();
        assert!(matches!(e, NetlinkError::DelLink { .. }), "{e:?}");
        assert_eq!(errno(&e), libc::EOPNOTSUPP);
        // An altname blocks a new end's name too.
        nl.veth("x0", "x1").unwrap();
        nl.add_alt_name("x0", "svc-alt").unwrap();
        let e = nl.add_veth("svc-alt", "eth7", pod.as_fd()).unwrap_err();
        assert_eq!(errno(&e), libc::EEXIST);
        assert!(matches!(
            there.link("eth7"),
            Err(NetlinkError::LinkNotFound { .. })
        ));

        // The namespace dies: the host end of a veth whose peer was in it goes too.
        nl.add_veth("vsvc3", "eth9", pod.as_fd()).unwrap();
        drop(there);
        drop(pod);
        let mut gone = false;
        for _ in 0..100 {
            if matches!(nl.link("vsvc3"), Err(NetlinkError::LinkNotFound { .. })) {
                gone = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(gone, "vsvc3 outlived its peer's namespace");
    });
}

#[test]
fn sysctls_are_written_in_the_backends_namespace() {
    if skip("sysctls_are_written_in_the_backends_namespace") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        let pod = other_netns();
        nl.add_veth("vsvc0", "eth0", pod.as_fd()).unwrap();
        let there = RtNetlink::in_netns(pod.as_fd()).unwrap();
        let read = |key: &str| {
            run_in_netns(pod.as_fd(), || {
                std::fs::read_to_string(format!("/proc/sys/net/{key}"))
            })
            .unwrap()
            .map(|s| s.trim().to_string())
        };
        assert_eq!(read("ipv4/conf/eth0/arp_notify").unwrap(), "0");
        there.set_sysctl("ipv4/conf/eth0/arp_notify", "1").unwrap();
        there
            .set_sysctl("ipv6/conf/eth0/ndisc_notify", "1")
            .unwrap();
        assert_eq!(read("ipv4/conf/eth0/arp_notify").unwrap(), "1");
        assert_eq!(read("ipv6/conf/eth0/ndisc_notify").unwrap(), "1");
        // The calling thread's namespace (the host's here) is untouched; the own backend
        // writes its own.
        assert!(std::fs::read_to_string("/proc/sys/net/ipv4/conf/eth0/arp_notify").is_err());
        nl.set_sysctl("ipv4/conf/vsvc0/arp_notify", "1").unwrap();
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/conf/vsvc0/arp_notify")
                .unwrap()
                .trim(),
            "1"
        );
        assert_eq!(read("ipv4/conf/eth0/arp_notify").unwrap(), "1");

        // No such interface there: ENOENT.
        let e = there
            .set_sysctl("ipv4/conf/vsvc0/arp_notify", "1")
            .unwrap_err();
        assert_eq!(errno(&e), libc::ENOENT);
        assert_eq!(
            e.to_string(),
            "cannot set sysctl net/ipv4/conf/vsvc0/arp_notify to 1: no such key (or no such interface) in the namespace"
        );
        let e = there
            .set_sysctl("ipv4/conf/eth0/arp_notify", "x")
            .unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{e}");
        // Refused before any write.
        let e = there
            .set_sysctl("ipv4/conf/../../kernel/x", "1")
            .unwrap_err();
        assert!(matches!(e, NetlinkError::InvalidSysctl { .. }), "{e:?}");
        assert_eq!(errno(&e), libc::EINVAL);
    });
}
