#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The pod verbs over the kernel's rtnetlink: veth pairs named as the simulated tree's VF
//! netdevs stand in for VFs (this kernel has no SR-IOV), in network namespaces of the test's
//! own (a thread's, never the host's). Root only: not as root they fail, unless
//! `VFPOOL_ALLOW_SKIP=1` allows skipping them on purpose.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, mpsc};

use common::{Lab, sel};
use nix::sched::{CloneFlags, unshare};
use vfpool_engine::{Engine, PodRequest, Policy, VfSource};
use vfpool_model::VfSettings;
use vfpool_netlink::{IfAddr, NetOps, RtNetlink, current_netns};

fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return false;
    }
    assert!(
        std::env::var("VFPOOL_ALLOW_SKIP").as_deref() == Ok("1"),
        "{test} needs root to create network namespaces; run it as root, or set VFPOOL_ALLOW_SKIP=1 to skip it on purpose"
    );
    eprintln!("SKIPPED {test}: needs root (VFPOOL_ALLOW_SKIP=1)");
    true
}

/// A pod's network namespace: a parked thread's, named by its `/proc` path (an nsfs
/// file, as a runtime's bind mount is); it lives until the returned sender is dropped.
fn pod_netns() -> (PathBuf, OwnedFd, mpsc::Sender<()>) {
    let (tx, rx) = mpsc::channel::<(i32, OwnedFd)>();
    let (stop, wait) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        tx.send((nix::unistd::gettid().as_raw(), current_netns().unwrap()))
            .unwrap();
        let _ = wait.recv();
    });
    let (tid, fd) = rx.recv().unwrap();
    let path = PathBuf::from(format!("/proc/{}/task/{tid}/ns/net", std::process::id()));
    (path, fd, stop)
}

#[test]
fn del_leaves_alone_a_pod_netdev_of_the_same_name_when_the_vf_is_back_in_the_host() {
    if skip_unless_root("del_leaves_alone_a_pod_netdev_of_the_same_name") {
        return;
    }
    let lab = Lab::new();
    lab.split("eno49", 2);
    std::thread::scope(|s| {
        s.spawn(|| {
            // This thread's new namespace is the host's for the test.
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            let here = current_netns().unwrap();
            let nl = RtNetlink::new().unwrap();
            nl.add_veth("eno49", "pfpeer", here.as_fd()).unwrap();
            nl.add_veth("eno49v0", "vfpeer0", here.as_fd()).unwrap();
            let (ns, ns_fd, _alive) = pod_netns();
            let mut e = Engine::open(
                &lab.state(),
                lab.fs.clone(),
                Arc::new(RtNetlink::new().unwrap()),
            )
            .unwrap();
            e.pool_create("p", sel(&["eno49#0"]), Policy::FirstFit)
                .unwrap();
            let owner = "cni/n/c1/net1";
            e.pod_add(&PodRequest {
                owner: owner.into(),
                source: VfSource::Pool("p".into()),
                settings: VfSettings::default(),
                netns: ns.clone(),
                ifname: "net1".into(),
            })
            .unwrap();
            let pod = RtNetlink::in_netns(ns_fd.as_fd()).unwrap();
            pod.link("net1").unwrap();
            assert!(
                nl.link("eno49v0").is_err(),
                "the stand-in moved into the pod"
            );

            // The VF goes back to the host behind the lease's back (a DEL that moved it
            // and died), and the pod gets another netdev named net1, with no parent device
            // either, up and addressed.
            pod.move_to_netns("net1", here.as_fd(), Some("eno49v0"))
                .unwrap();
            nl.add_veth("other0", "net1", ns_fd.as_fd()).unwrap();
            pod.set_up("net1", true).unwrap();
            let a: IfAddr = "10.9.0.1/24".parse().unwrap();
            pod.add_address("net1", a).unwrap();

            let r = e.pod_del(owner).unwrap();
            assert!(r.lease.is_some(), "the lease is released");
            assert!(e.leases().unwrap().is_empty());
            nl.link("eno49v0").unwrap();
            let other = pod.link("net1").unwrap();
            assert!(other.admin_up, "the pod's other net1 was brought down");
            assert_eq!(
                pod.addresses("net1").unwrap(),
                [a],
                "its address was flushed"
            );
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    });
}

#[test]
fn add_then_del_moves_the_stand_in_and_gives_it_back() {
    if skip_unless_root("add_then_del_moves_the_stand_in_and_gives_it_back") {
        return;
    }
    let lab = Lab::new();
    lab.split("eno49", 2);
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            let here = current_netns().unwrap();
            let nl = RtNetlink::new().unwrap();
            nl.add_veth("eno49", "pfpeer", here.as_fd()).unwrap();
            nl.add_veth("eno49v0", "vfpeer0", here.as_fd()).unwrap();
            let (ns, ns_fd, _alive) = pod_netns();
            let mut e = Engine::open(
                &lab.state(),
                lab.fs.clone(),
                Arc::new(RtNetlink::new().unwrap()),
            )
            .unwrap();
            e.pool_create("p", sel(&["eno49#0"]), Policy::FirstFit)
                .unwrap();
            let owner = "cni/n/c2/net1";
            e.pod_add(&PodRequest {
                owner: owner.into(),
                source: VfSource::Pool("p".into()),
                settings: VfSettings::default(),
                netns: ns,
                ifname: "net1".into(),
            })
            .unwrap();
            let pod = RtNetlink::in_netns(ns_fd.as_fd()).unwrap();
            assert!(pod.link("net1").unwrap().admin_up);
            pod.add_address("net1", "10.9.0.2/24".parse().unwrap())
                .unwrap();
            e.pod_del(owner).unwrap();
            assert!(pod.link("net1").is_err(), "net1 left the pod");
            let back = nl.link("eno49v0").unwrap();
            assert!(!back.admin_up, "back down");
            assert!(nl.addresses("eno49v0").unwrap().is_empty(), "flushed");
            assert!(e.leases().unwrap().is_empty());
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    });
}
