//! The real backend against the running kernel, each test in fresh network namespaces
//! (created with `unshare(CLONE_NEWNET)` on a dedicated thread), with veth pairs as
//! stand-ins (this kernel has no SR-IOV, dummy or netdevsim). Root only: not as root they
//! fail, unless `VFPOOL_ALLOW_SKIP=1` allows skipping them on purpose (the test command,
//! scripts/test-all.sh, never sets it and requires root).

use std::os::fd::{AsFd, OwnedFd};

use nix::libc;
use nix::sched::{CloneFlags, unshare};
use nix::unistd::Uid;
use vfpool_model::{LinkState, MacAddr, VfConfig, VfSettings};

use crate::{NetOps, NetlinkError, OperState, RtNetlink, VfKnob, current_netns, run_in_netns};

/// The variable that allows a root-only test to be skipped when not root.
const ALLOW_SKIP: &str = "VFPOOL_ALLOW_SKIP";

/// False as root. Not as root: true (skip) when `VFPOOL_ALLOW_SKIP=1`, else the test fails:
/// a skip hidden by cargo's output capture would count as a pass.
pub(crate) fn skip_unless_root(test: &str) -> bool {
    if Uid::effective().is_root() {
        return false;
    }
    assert!(
        std::env::var(ALLOW_SKIP).as_deref() == Ok("1"),
        "{test} needs root to create network namespaces; run it as root, or set {ALLOW_SKIP}=1 to skip it on purpose"
    );
    eprintln!("SKIPPED {test}: needs root to create network namespaces ({ALLOW_SKIP}=1)");
    true
}

/// Runs `f` on a new thread inside a new, empty network namespace.
pub(crate) fn in_fresh_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A second new network namespace, kept alive by the returned fd (opened as
/// `/proc/thread-self/ns/net` on the thread that created it).
pub(crate) fn other_netns() -> OwnedFd {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        current_netns().unwrap()
    })
    .join()
    .unwrap()
}

pub(crate) fn errno(e: &NetlinkError) -> i32 {
    e.errno().unwrap_or_else(|| panic!("no errno in {e:?}"))
}

#[test]
fn link_mtu_mac_and_up_on_a_veth() {
    if skip_unless_root("link_mtu_mac_and_up_on_a_veth") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        nl.veth("vfp0", "vfp1").unwrap();

        let l = nl.link("vfp0").unwrap();
        assert_eq!(l.name, "vfp0");
        assert!(l.ifindex > 1);
        assert_eq!(l.mtu, 1500);
        assert_eq!((l.min_mtu, l.max_mtu), (Some(68), Some(65535)));
        assert!(l.mac.is_some());
        assert!(!l.admin_up);
        assert_eq!(l.oper_state, OperState::Down);

        nl.set_mtu("vfp0", 9000).unwrap();
        assert_eq!(nl.link("vfp0").unwrap().mtu, 9000);
        let e = nl.set_mtu("vfp0", 70000).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL);
        assert!(
            e.to_string()
                .starts_with("cannot set mtu 70000 on vfp0 (allowed 68..=65535)"),
            "{e}"
        );
        assert!(matches!(
            nl.set_mtu("vfp0", 20),
            Err(NetlinkError::SetMtu {
                min: Some(68),
                max: Some(65535),
                ..
            })
        ));

        let mac = MacAddr([2, 0x76, 0x66, 0, 0, 1]);
        nl.set_mac("vfp0", mac).unwrap();
        assert_eq!(nl.link("vfp0").unwrap().mac, Some(mac));
        let e = nl.set_mac("vfp0", MacAddr([1, 0, 0, 0, 0, 1])).unwrap_err();
        assert_eq!(errno(&e), libc::EADDRNOTAVAIL);

        nl.set_up("vfp0", true).unwrap();
        nl.set_up("vfp1", true).unwrap();
        let l = nl.link("vfp0").unwrap();
        assert!(l.admin_up);
        assert_eq!(l.carrier, Some(true));
        // veth reports up once both ends are up (possibly after a short delay).
        let mut state = l.oper_state;
        for _ in 0..50 {
            if state == OperState::Up {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            state = nl.link("vfp0").unwrap().oper_state;
        }
        assert_eq!(state, OperState::Up);
        nl.set_up("vfp0", false).unwrap();
        assert!(!nl.link("vfp0").unwrap().admin_up);

        let e = nl.link("nope0").unwrap_err();
        assert!(matches!(e, NetlinkError::LinkNotFound { .. }), "{e:?}");
        assert!(matches!(
            nl.set_up("nope0", true),
            Err(NetlinkError::LinkNotFound { .. })
        ));

        // The multi-part dump sees all three netdevs.
        let mut names: Vec<_> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
        names.sort();
        assert_eq!(names, ["lo", "vfp0", "vfp1"]);
    });
}

#[test]
fn vf_ops_on_a_veth_fail_cleanly() {
    if skip_unless_root("vf_ops_on_a_veth_fail_cleanly") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        nl.veth("vfp0", "vfp1").unwrap();
        assert!(nl.vf_configs("vfp0").unwrap().is_empty());
        assert!(matches!(
            nl.vf_configs("nope0"),
            Err(NetlinkError::LinkNotFound { .. })
        ));

        let e = nl
            .set_vf_knob("vfp0", 0, &VfKnob::Mac(MacAddr([2, 0, 0, 0, 0, 1])))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EOPNOTSUPP);
        assert_eq!(
            e.to_string(),
            "cannot set mac 02:00:00:00:00:01 on vfp0 vf 0: the driver does not support this setting"
        );
        let e = nl
            .set_vf(
                "vfp0",
                3,
                &VfSettings {
                    link_state: Some(LinkState::Enable),
                    trust: Some(true),
                    ..Default::default()
                },
            )
            .unwrap_err();
        let NetlinkError::SetVf {
            pf, vf, setting, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!((pf.as_str(), *vf, *setting), ("vfp0", 3, "link-state"));
        // Every knob goes through the kernel and comes back as an error, not a panic.
        // A fresh VF's configuration: every knob `restoring` knows.
        let fresh = VfConfig::kernel_default();
        for k in VfKnob::restoring(&fresh) {
            let e = nl.set_vf_knob("vfp0", 0, &k).unwrap_err();
            assert!(
                matches!(e, NetlinkError::SetVf { setting, .. } if setting == k.setting()),
                "{e:?}"
            );
        }
    });
}

#[test]
fn move_a_veth_end_to_another_netns_and_back() {
    if skip_unless_root("move_a_veth_end_to_another_netns_and_back") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        nl.veth("vfp0", "vfp1").unwrap();
        nl.set_up("vfp1", true).unwrap();
        let target = other_netns();

        nl.move_to_netns("vfp1", target.as_fd(), Some("net1"))
            .unwrap();
        assert!(matches!(
            nl.link("vfp1"),
            Err(NetlinkError::LinkNotFound { .. })
        ));
        let there = RtNetlink::in_netns(target.as_fd()).unwrap();
        let l = there.link("net1").unwrap();
        assert_eq!(l.name, "net1");
        assert!(!l.admin_up, "a moved netdev arrives down");
        // The same, seen through run_in_netns.
        let seen = run_in_netns(target.as_fd(), || {
            RtNetlink::new().and_then(|nl| nl.link("net1"))
        })
        .unwrap()
        .unwrap();
        assert_eq!(seen.ifindex, l.ifindex);

        // A name already taken in the target namespace.
        there.veth("x0", "x1").unwrap();
        let e = nl
            .move_to_netns("vfp0", target.as_fd(), Some("x0"))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EEXIST);
        assert_eq!(
            e.to_string(),
            "cannot move vfp0 to another network namespace as x0: the name is already taken there"
        );
        assert!(nl.link("vfp0").is_ok(), "a failed move moves nothing");
        assert!(matches!(
            there.link("vfp0"),
            Err(NetlinkError::LinkNotFound { .. })
        ));

        // And back, from the host side (what the CNI plugin's DEL does).
        nl.move_from_netns(target.as_fd(), "net1", Some("vfp1b"))
            .unwrap();
        assert!(nl.link("vfp1b").is_ok());
        assert!(matches!(
            there.link("net1"),
            Err(NetlinkError::LinkNotFound { .. })
        ));
    });
}
