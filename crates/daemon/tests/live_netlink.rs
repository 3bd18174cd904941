#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The real host's watchers: rtnetlink link events and kernel uevents, in a network
//! namespace of the test's own (a veth pair stands in for a VF netdev coming and going;
//! `ip` sets it up, as tests may). Needs root (CAP_SYS_ADMIN for the namespace).

use std::process::Command;
use std::time::{Duration, Instant};

use vfpool_daemon::watch::{
    Trigger, link_messages_matter, link_socket, recv_loop, uevent_matters, uevent_socket,
};

fn wait_fired(t: &Trigger, more_than: u64, what: &str) {
    let start = Instant::now();
    while t.fired() <= more_than {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "no {what} event within 2 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_netdev_coming_changing_and_going_fires_both_watchers() {
    // A thread of its own in a new network namespace: its sockets and the `ip` it spawns
    // live there, the host's links are untouched.
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (root?)");
        let links = Trigger::default();
        let uevents = Trigger::default();
        let ls = link_socket().unwrap();
        let us = uevent_socket().unwrap();
        let (l, u) = (links.clone(), uevents.clone());
        std::thread::spawn(move || recv_loop(&ls, "rtnetlink", &l, link_messages_matter));
        std::thread::spawn(move || recv_loop(&us, "uevent", &u, uevent_matters));

        ip(&["link", "add", "vf0", "type", "veth", "peer", "name", "vf0p"]);
        wait_fired(&links, 0, "rtnetlink (link added)");
        wait_fired(&uevents, 0, "uevent (net add)");

        let (l0, u0) = (links.fired(), uevents.fired());
        ip(&["link", "set", "vf0", "up"]);
        wait_fired(&links, l0, "rtnetlink (link up)");

        let l1 = links.fired();
        ip(&["link", "del", "vf0"]);
        wait_fired(&links, l1, "rtnetlink (link deleted)");
        wait_fired(&uevents, u0, "uevent (net remove)");
    })
    .join()
    .unwrap();
}

#[test]
fn only_link_messages_matter_on_the_route_socket() {
    // RTM_NEWADDR (20) for 127.0.0.1 on lo, as the kernel sends it: not a link.
    let newaddr: Vec<u8> = [
        &[40u8, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        &[2, 8, 0x80, 0xfe, 1, 0, 0, 0],
        &[8, 0, 1, 0, 127, 0, 0, 1],
        &[8, 0, 2, 0, 127, 0, 0, 1],
    ]
    .concat();
    assert!(!link_messages_matter(&newaddr));
    // RTM_NEWLINK (16) with an ifinfomsg and no attributes.
    let newlink: Vec<u8> = [
        &[32u8, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        &[0, 0, 1, 0, 2, 0, 0, 0, 0x43, 0x10, 0, 0, 0, 0, 0, 0],
    ]
    .concat();
    assert!(link_messages_matter(&newlink));
    // After an address in the same datagram.
    assert!(link_messages_matter(&[newaddr.clone(), newlink].concat()));
    assert!(!link_messages_matter(&[]));
}
