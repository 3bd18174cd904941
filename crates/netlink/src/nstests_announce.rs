//! The gratuitous ARP of `announce`, sent from a backend inside another namespace and
//! received at the far end of a veth: root only, like the other namespace tests.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, recvfrom, setsockopt, socket,
    sockopt::ReceiveTimeout,
};
use nix::sys::time::TimeVal;

use crate::announce::garp_frame;
use crate::nstests::{in_fresh_netns, other_netns, skip_unless_root as skip};
use crate::{IfAddr, NetOps, RtNetlink};

#[test]
fn announce_sends_one_gratuitous_arp_per_ipv4_address_from_inside_a_namespace() {
    if skip("announce_sends_one_gratuitous_arp_per_ipv4_address_from_inside_a_namespace") {
        return;
    }
    in_fresh_netns(|| {
        let nl = RtNetlink::new().unwrap();
        nl.veth("vfp0", "vfp1").unwrap();
        nl.set_up("vfp1", true).unwrap();
        let peer_index = nl.link("vfp1").unwrap().ifindex;
        // Everything arriving at vfp1 (this namespace), payload only.
        let rx = socket(
            AddressFamily::Packet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .unwrap();
        setsockopt(&rx, ReceiveTimeout, &TimeVal::new(0, 200_000)).unwrap();

        // vfp0 goes into a pod namespace and is configured there, as the engine does.
        let pod = other_netns();
        nl.move_to_netns("vfp0", pod.as_fd(), Some("net1")).unwrap();
        let inside = nl.enter_netns(pod.as_fd()).unwrap();
        let addrs: [IfAddr; 3] = [
            "10.9.0.5/24".parse().unwrap(),
            "10.9.1.5/24".parse().unwrap(),
            "fd00::5/64".parse().unwrap(),
        ];
        for a in addrs {
            inside.add_address("net1", a).unwrap();
        }
        inside.set_up("net1", true).unwrap();
        let mac = inside.link("net1").unwrap().mac.unwrap();
        // Drain what the link coming up sent (IPv6 router solicitations, MLD reports).
        let mut buf = [0u8; 2048];
        while recvfrom::<LinkAddr>(rx.as_raw_fd(), &mut buf).is_ok() {}

        let want: Vec<[u8; 28]> = ["10.9.0.5", "10.9.1.5"]
            .iter()
            .map(|a| garp_frame(mac, a.parse::<Ipv4Addr>().unwrap()))
            .collect();
        // The packet sockets open in the pod's namespace (`/proc/net/packet` as seen from it).
        let fds = || {
            std::thread::scope(|s| {
                s.spawn(|| {
                    nix::sched::setns(pod.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    std::fs::read_to_string("/proc/thread-self/net/packet")
                        .unwrap()
                        .lines()
                        .count()
                })
                .join()
                .unwrap()
            })
        };
        // The packet socket closed in line, then (as in the daemon) by a thread of its own:
        // the same frames, and the socket is closed all the same.
        for background in [false, true] {
            if background {
                crate::announce::close_sockets_in_background();
            }
            let before = fds();
            inside.announce("net1", &addrs).unwrap();
            let mut seen = Vec::new();
            let until = Instant::now() + Duration::from_secs(2);
            while seen.len() < want.len() && Instant::now() < until {
                let Ok((n, from)) = recvfrom::<LinkAddr>(rx.as_raw_fd(), &mut buf) else {
                    continue;
                };
                let from = from.unwrap();
                if from.ifindex() == peer_index as usize
                    && from.protocol() == 0x0806u16.to_be()
                    && n >= 28
                {
                    seen.push(<[u8; 28]>::try_from(&buf[..28]).unwrap());
                }
            }
            assert_eq!(
                seen, want,
                "one announcement per IPv4 address, in order (background {background})"
            );
            let until = Instant::now() + Duration::from_secs(2);
            while fds() > before && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(
                fds(),
                before,
                "the packet socket left open (background {background})"
            );
        }
        // The broadcast destination: the kernel filled the Ethernet header from sll_addr.
        let e = inside.announce("nope0", &addrs).unwrap_err();
        assert!(e.to_string().contains("nope0"), "{e}");
    });
}
