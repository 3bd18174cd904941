//! The netdev operations of the real backend against the running kernel, in fresh network
//! namespaces with veth stand-ins, each result also read with `ip` (an independent reader).
//! Root only: without root they fail, unless VFPOOL_ALLOW_SKIP=1 says a skip is meant.

use std::os::fd::AsFd;
use std::process::Command;

use nix::libc;

use crate::nstests::{errno, in_fresh_netns, other_netns, skip_unless_root as skip};
use crate::{IfAddr, NetOps, NetlinkError, RtNetlink};

/// `ip ARGS` run from the calling thread (and so in its network namespace).
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rename_and_altnames_on_the_kernel() {
    if skip("rename_and_altnames_on_the_kernel") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        nl.veth("vfp0", "vfp1").unwrap();
        // RTM_NEWLINKPROP, seen by ip.
        nl.add_alt_name("vfp0", "pod-eth0").unwrap();
        assert!(ip(&["link", "show", "vfp0"]).contains("altname pod-eth0"));
        let l = nl.link("pod-eth0").unwrap();
        assert_eq!(
            (l.name.as_str(), l.alt_names.clone()),
            ("vfp0", vec!["pod-eth0".to_string()])
        );
        assert_eq!(l.parent_dev, None, "a veth has no parent device");
        let e = nl.add_alt_name("vfp1", "pod-eth0").unwrap_err();
        assert_eq!(errno(&e), libc::EEXIST);

        // A rename to an altname, own or another's, is EEXIST on the kernel too.
        assert_eq!(
            errno(&nl.rename("vfp0", "pod-eth0").unwrap_err()),
            libc::EEXIST
        );
        assert_eq!(
            errno(&nl.rename("vfp1", "pod-eth0").unwrap_err()),
            libc::EEXIST
        );
        assert_eq!(errno(&nl.rename("vfp1", "vfp0").unwrap_err()), libc::EEXIST);
        let e = nl.rename("vfp1", "a b").unwrap_err();
        assert!(matches!(errno(&e), libc::EINVAL | libc::ERANGE), "{e}");
        assert!(matches!(
            errno(&nl.rename("vfp1", "abcdefghijklmnop").unwrap_err()),
            libc::EINVAL | libc::ERANGE
        ));
        // Up: renamed all the same (since 6.2; EBUSY before).
        nl.set_up("vfp1", true).unwrap();
        nl.rename("vfp1", "vfp9").unwrap();
        nl.rename("vfp9", "vfp1").unwrap();
        assert!(nl.link("vfp1").unwrap().admin_up);
        nl.set_up("vfp1", false).unwrap();

        // Another netdev's altname is left alone.
        let e = nl.rename_over_own_altname("vfp1", "pod-eth0").unwrap_err();
        assert_eq!(errno(&e), libc::EEXIST);
        assert!(ip(&["link", "show", "vfp0"]).contains("altname pod-eth0"));
        // Its own is dropped (RTM_DELLINKPROP), then the rename goes through.
        nl.rename_over_own_altname("vfp0", "pod-eth0").unwrap();
        let shown = ip(&["link", "show", "pod-eth0"]);
        assert!(
            shown.contains(": pod-eth0@") && !shown.contains("altname"),
            "{shown}"
        );
        // The kernel keeps no altname on a rename (checked here, 6.18).
        assert!(nl.link("pod-eth0").unwrap().alt_names.is_empty());
        assert!(matches!(
            nl.link("vfp0"),
            Err(NetlinkError::LinkNotFound { .. })
        ));

        let e = nl.del_alt_name("pod-eth0", "nope").unwrap_err();
        assert_eq!(errno(&e), libc::ENOENT);
        assert_eq!(e.to_string(), "cannot delete altname nope of pod-eth0");
    });
}

#[test]
fn promisc_and_addresses_on_the_kernel() {
    if skip("promisc_and_addresses_on_the_kernel") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        nl.veth("vfp0", "vfp1").unwrap();
        nl.set_up("vfp0", true).unwrap();
        nl.set_promisc("vfp0", true).unwrap();
        assert!(nl.link("vfp0").unwrap().promisc);
        assert!(ip(&["link", "show", "vfp0"]).contains("PROMISC"));
        nl.set_promisc("vfp0", false).unwrap();
        let l = nl.link("vfp0").unwrap();
        assert!(!l.promisc);
        assert!(l.admin_up, "ifi_change = IFF_PROMISC left IFF_UP alone");
        assert!(!ip(&["link", "show", "vfp0"]).contains("PROMISC"));

        ip(&["addr", "add", "10.77.0.1/24", "dev", "vfp0"]);
        ip(&["addr", "add", "fd77::1/64", "dev", "vfp0", "nodad"]);
        ip(&["addr", "add", "10.78.0.1/16", "dev", "vfp1"]);
        let a = nl.addresses("vfp0").unwrap();
        assert!(a.contains(&"10.77.0.1/24".parse().unwrap()), "{a:?}");
        assert!(a.contains(&"fd77::1/64".parse().unwrap()), "{a:?}");
        assert!(
            !a.contains(&"10.78.0.1/16".parse().unwrap()),
            "only vfp0's: {a:?}"
        );
        let added: IfAddr = "10.79.0.9/30".parse().unwrap();
        nl.add_address("vfp0", added).unwrap();
        assert!(ip(&["addr", "show", "dev", "vfp0"]).contains("10.79.0.9/30"));
        assert_eq!(
            errno(&nl.add_address("vfp0", added).unwrap_err()),
            libc::EEXIST
        );

        let n = nl.flush_addresses("vfp0").unwrap();
        assert!(n >= 3, "{n}");
        assert_eq!(nl.addresses("vfp0").unwrap(), []);
        let shown = ip(&["addr", "show", "dev", "vfp0"]);
        assert!(!shown.contains("inet"), "{shown}");
        assert!(
            ip(&["addr", "show", "dev", "vfp1"]).contains("10.78.0.1/16"),
            "vfp1 untouched"
        );
        let e = nl.del_address("vfp0", added).unwrap_err();
        assert_eq!(errno(&e), libc::EADDRNOTAVAIL);
    });
}

#[test]
fn attach_sequence_into_a_netns_and_back_on_the_kernel() {
    if skip("attach_sequence_into_a_netns_and_back_on_the_kernel") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        nl.veth("vfp0", "vfp1").unwrap();
        nl.add_alt_name("vfp1", "net1").unwrap();
        nl.set_promisc("vfp1", true).unwrap();
        ip(&["addr", "add", "10.80.0.1/24", "dev", "vfp1"]);
        let target = other_netns();

        // What an attach does: move, then inside the namespace rename over the own altname,
        // MAC, MTU, promisc off, flush, up.
        nl.move_to_netns("vfp1", target.as_fd(), None).unwrap();
        assert!(matches!(
            nl.link("vfp1"),
            Err(NetlinkError::LinkNotFound { .. })
        ));
        let inside = nl.enter_netns(target.as_fd()).unwrap();
        assert_eq!(inside.link("vfp1").unwrap().alt_names, ["net1"]);
        inside.rename_over_own_altname("vfp1", "net1").unwrap();
        let mac = "02:76:66:00:00:07".parse().unwrap();
        inside.set_mac("net1", mac).unwrap();
        inside.set_mtu("net1", 9000).unwrap();
        inside.set_promisc("net1", false).unwrap();
        inside.flush_addresses("net1").unwrap();
        inside.set_up("net1", true).unwrap();
        let l = inside.link("net1").unwrap();
        assert_eq!(
            (l.mac, l.mtu, l.admin_up, l.promisc),
            (Some(mac), 9000, true, false)
        );
        assert!(l.alt_names.is_empty());
        let names: Vec<String> = inside
            .links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, ["lo", "net1"]);

        // And back, with the host name (an up netdev moves; it arrives down).
        nl.move_from_netns(target.as_fd(), "net1", Some("vfp1"))
            .unwrap();
        let l = nl.link("vfp1").unwrap();
        assert_eq!((l.mtu, l.admin_up), (9000, false));
        assert!(matches!(
            inside.link("net1"),
            Err(NetlinkError::LinkNotFound { .. })
        ));
    });
}
