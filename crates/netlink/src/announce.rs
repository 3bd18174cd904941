//! Announcing a netdev's IPv4 addresses on its link: one gratuitous ARP per address, the
//! announcement of RFC 5227 (an ARP request from the address for the address, sent to the
//! broadcast MAC), so that neighbours (the other pods' VFs, the gateway, the switch)
//! learn the MAC behind the address now, not when their cache entries expire. A moved VF
//! keeps the address of another pod's VF that left a minute ago: that is when it matters.
//!
//! IPv6 has the kernel's own: `ndisc_notify` makes it send an unsolicited Neighbour
//! Advertisement once an address is no longer tentative (the engine sets it); sending one
//! here, while duplicate address detection still runs, would announce a tentative address.

use std::net::IpAddr;

use nix::libc;
use nix::sys::socket::{
    AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike, sendto, socket,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::mpsc::Sender;
use vfpool_model::MacAddr;

use crate::{IfAddr, NetlinkError};

/// ETHERTYPE_ARP.
const ETH_P_ARP: u16 = 0x0806;

/// The ARP announcement of `ip` by `mac` (RFC 826 layout, RFC 5227 section 2.3: sender
/// and target protocol address both `ip`, target hardware address zero).
pub fn garp_frame(mac: MacAddr, ip: std::net::Ipv4Addr) -> [u8; 28] {
    let mut f = [0u8; 28];
    f[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f[4] = 6;
    f[5] = 4;
    f[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    f[8..14].copy_from_slice(&mac.0);
    f[14..18].copy_from_slice(&ip.octets());
    // f[18..24]: target hardware address, zero.
    f[24..28].copy_from_slice(&ip.octets());
    f
}

/// The link-layer destination of a broadcast ARP frame out of interface `ifindex`.
fn broadcast_on(ifindex: u32) -> Result<LinkAddr, NetlinkError> {
    let ifindex = i32::try_from(ifindex).map_err(|_| NetlinkError::Announce {
        name: String::new(),
        addr: String::new(),
        source: std::io::Error::from_raw_os_error(libc::ENODEV),
    })?;
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_ARP.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>())
        .unwrap_or(libc::socklen_t::MAX);
    #[allow(unsafe_code)]
    // SAFETY: `sll` is a fully initialised `sockaddr_ll` that lives across the call, and
    // `len` is exactly its size; `from_raw` copies it and checks the family and length.
    let addr = unsafe { LinkAddr::from_raw((&raw const sll).cast::<libc::sockaddr>(), Some(len)) };
    addr.ok_or_else(|| NetlinkError::Announce {
        name: String::new(),
        addr: String::new(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })
}

/// Where the packet sockets of announcements go to be closed, once
/// [`close_sockets_in_background`] was called.
static CLOSER: OnceLock<Sender<OwnedFd>> = OnceLock::new();

/// From now on, the packet socket of an announcement is closed by a thread of its own
/// rather than by the caller. Closing an `AF_PACKET` socket waits for an RCU grace period
/// (`synchronize_net` in `packet_release`: 10-12 ms on this machine's VM), after the frames
/// are sent: a long-lived process (the daemon) answers without waiting for it. A
/// short-lived one need not: its exit closes the socket the same way. Idempotent; if the
/// thread cannot be started, sockets are closed by the caller as before.
pub fn close_sockets_in_background() {
    CLOSER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<OwnedFd>();
        let spawned = std::thread::Builder::new()
            .name("announce-close".into())
            .spawn(move || {
                for fd in rx {
                    drop(fd);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "announcements' sockets will be closed in line");
        }
        tx
    });
}

/// Closes `fd`, in the background when asked ([`close_sockets_in_background`]).
fn dispose(fd: OwnedFd) {
    match CLOSER.get() {
        // A send fails only when the thread is gone: the socket comes back and is closed here.
        Some(tx) => drop(tx.send(fd)),
        None => drop(fd),
    }
}

/// Sends the announcements of `addrs` (IPv4 ones; see the module) out of netdev `name`
/// (`ifindex`, `mac`) in the calling thread's network namespace.
pub(crate) fn announce_here(
    name: &str,
    ifindex: u32,
    mac: MacAddr,
    addrs: &[IfAddr],
) -> Result<(), NetlinkError> {
    let v4: Vec<std::net::Ipv4Addr> = addrs
        .iter()
        .filter_map(|a| match a.addr {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect();
    if v4.is_empty() {
        return Ok(());
    }
    let err = |addr: String| {
        move |e: nix::Error| NetlinkError::Announce {
            name: name.to_owned(),
            addr,
            source: e.into(),
        }
    };
    let fd = socket(
        AddressFamily::Packet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err(String::new()))?;
    let dest = broadcast_on(ifindex).map_err(|e| match e {
        NetlinkError::Announce { source, .. } => NetlinkError::Announce {
            name: name.to_owned(),
            addr: String::new(),
            source,
        },
        other => other,
    })?;
    for ip in v4 {
        let frame = garp_frame(mac, ip);
        if let Err(e) = sendto(fd.as_raw_fd(), &frame, &dest, MsgFlags::empty()) {
            dispose(fd);
            return Err(err(ip.to_string())(e));
        }
    }
    dispose(fd);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_frame_is_an_rfc5227_announcement() {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let f = garp_frame(mac, "10.1.2.3".parse().unwrap());
        assert_eq!(&f[0..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&f[8..14], &mac.0);
        assert_eq!(&f[14..18], &[10, 1, 2, 3]);
        assert_eq!(&f[18..24], &[0; 6]);
        assert_eq!(&f[24..28], &[10, 1, 2, 3]);
    }
}
