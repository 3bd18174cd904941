//! The real backend: a small synchronous request/reply wrapper over a `NETLINK_ROUTE`
//! socket, in the way netavark drives netlink-packet-route.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_EXCL, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer,
    NetlinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::libc;
use vfpool_model::{MacAddr, VfConfig};

use crate::error::decode_error;
use crate::{
    IfAddr, LinkInfo, NetOps, NetlinkError, Route, SysctlKey, VfKnob, current_netns, run_in_netns,
    wire,
};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

/// rtnetlink on the real kernel, in the network namespace the socket was opened in.
///
/// One request at a time (a mutex around the socket); replies are matched by sequence
/// number; multi-part dumps are read up to NLMSG_DONE; NLMSG_ERROR with a non-zero code
/// becomes an `io::Error` carrying the errno.
pub struct RtNetlink {
    conn: Mutex<Conn>,
    /// The namespace the socket lives in (for [`NetOps::move_from_netns`]); `None` if
    /// `/proc/thread-self/ns/net` could not be opened.
    netns: Option<OwnedFd>,
}

struct Conn {
    socket: Socket,
    seq: u32,
}

/// One message of a reply: its type and its payload (after the netlink header).
struct Reply {
    kind: u16,
    payload: Vec<u8>,
}

impl RtNetlink {
    /// Opens a route netlink socket in the calling thread's network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        let socket = (|| {
            let mut s = Socket::new(NETLINK_ROUTE)?;
            s.bind_auto()?;
            s.connect(&SocketAddr::new(0, 0))?;
            Ok(s)
        })()
        .map_err(|source: io::Error| NetlinkError::Socket { source })?;
        let netns = match current_netns() {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::debug!(error = %e, "cannot remember the socket's network namespace");
                None
            }
        };
        Ok(RtNetlink {
            conn: Mutex::new(Conn { socket, seq: 0 }),
            netns,
        })
    }

    /// Opens a route netlink socket inside `netns` (on a short-lived thread that enters it);
    /// the returned backend then works on that namespace from any thread.
    pub fn in_netns(netns: BorrowedFd<'_>) -> Result<Self, NetlinkError> {
        run_in_netns(netns, RtNetlink::new)?
    }

    /// The namespace this backend works on, if known.
    pub fn netns(&self) -> Option<BorrowedFd<'_>> {
        self.netns.as_ref().map(|fd| fd.as_fd())
    }

    /// Creates a veth pair in this backend's namespace (`ip link add A type veth peer name
    /// B`). For tests.
    #[cfg(test)]
    pub(crate) fn veth(&self, a: &str, b: &str) -> Result<(), NetlinkError> {
        let here = self.netns().ok_or(NetlinkError::Unsupported {
            op: "a test veth without knowing the own namespace",
            backend: "rtnetlink",
        })?;
        self.add_veth(a, b, here)
    }

    /// Whether this backend's namespace is the calling thread's (then a /proc/sys file opened
    /// here is the namespace's own). Unknown counts as yes.
    fn netns_is_callers(&self) -> bool {
        let Some(fd) = self.netns() else { return true };
        match (
            nix::sys::stat::fstat(fd),
            nix::sys::stat::stat("/proc/thread-self/ns/net"),
        ) {
            (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
            _ => true,
        }
    }

    fn get_link(&self, name: &str, vfs: bool) -> Result<wire::ParsedLink, NetlinkError> {
        let replies = self
            .request(
                RouteNetlinkMessage::GetLink(wire::get_link_by_name(name, vfs)),
                false,
            )
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ENODEV) => NetlinkError::LinkNotFound {
                    name: name.to_string(),
                },
                _ => NetlinkError::GetLink {
                    name: name.to_string(),
                    source,
                },
            })?;
        let reply = replies
            .iter()
            .find(|r| r.kind == RTM_NEWLINK)
            .ok_or_else(|| NetlinkError::LinkNotFound {
                name: name.to_string(),
            })?;
        wire::parse_link(&reply.payload).map_err(|e| NetlinkError::GetLink {
            name: name.to_string(),
            source: decode_error(e),
        })
    }

    fn request(&self, msg: RouteNetlinkMessage, dump: bool) -> io::Result<Vec<Reply>> {
        let flags = if dump {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        };
        self.request_with_flags(msg, flags)
    }

    /// Sends one request and reads replies with its sequence number until the ACK (or
    /// NACK) or NLMSG_DONE.
    fn request_with_flags(&self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<Reply>> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| io::Error::other("netlink socket mutex poisoned"))?;
        conn.seq = conn.seq.wrapping_add(1);
        let seq = conn.seq;
        let mut nl = NetlinkMessage::from(msg);
        nl.header.flags = flags;
        nl.header.sequence_number = seq;
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        conn.socket.send(&buf, 0)?;

        let mut out = Vec::new();
        loop {
            let data = match conn.socket.recv_from_full() {
                Ok((data, _)) => data,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut off = 0;
            while off < data.len() {
                let nlbuf = NetlinkBuffer::new_checked(&data[off..]).map_err(decode_error)?;
                let len = nlbuf.length() as usize;
                off += (len + 3) & !3;
                if nlbuf.sequence_number() != seq {
                    tracing::debug!(
                        got = nlbuf.sequence_number(),
                        want = seq,
                        "skipping netlink message of another request"
                    );
                    continue;
                }
                if nlbuf.flags() & NLM_F_DUMP_INTR != 0 {
                    // The dump raced with a change; what we got may be inconsistent.
                    return Err(io::Error::from_raw_os_error(libc::EINTR));
                }
                match nlbuf.message_type() {
                    NLMSG_ERROR => {
                        let err =
                            ErrorBuffer::new_checked(nlbuf.payload()).map_err(decode_error)?;
                        return match err.code() {
                            None => Ok(out),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NLMSG_DONE => {
                        let payload = nlbuf.payload();
                        if payload.len() >= 4 {
                            let code = DoneBuffer::new_checked(payload)
                                .map_err(decode_error)?
                                .code();
                            if code < 0 {
                                return Err(io::Error::from_raw_os_error(-code));
                            }
                        }
                        return Ok(out);
                    }
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => {
                        return Err(io::Error::other("netlink overrun"));
                    }
                    kind => out.push(Reply {
                        kind,
                        payload: nlbuf.payload().to_vec(),
                    }),
                }
            }
        }
    }

    /// A dump, retried a few times when interrupted by a concurrent change
    /// (NLM_F_DUMP_INTR).
    fn dump(
        &self,
        what: &'static str,
        msg: impl Fn() -> RouteNetlinkMessage,
    ) -> Result<Vec<Reply>, NetlinkError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.request(msg(), true) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) && attempt < 5 => continue,
                r => return r.map_err(|source| NetlinkError::Dump { what, source }),
            }
        }
    }

    fn set_link(&self, m: LinkMessage) -> io::Result<()> {
        self.request(RouteNetlinkMessage::SetLink(m), false)
            .map(drop)
    }
}

impl NetOps for RtNetlink {
    fn vf_configs(&self, pf: &str) -> Result<Vec<(u16, VfConfig)>, NetlinkError> {
        Ok(self.get_link(pf, true)?.vfs.unwrap_or_default())
    }

    fn set_vf_knob(&self, pf: &str, vf: u16, knob: &VfKnob) -> Result<(), NetlinkError> {
        let link = self.get_link(pf, false)?;
        tracing::debug!(pf, vf, knob = %knob, "setting vf knob");
        self.set_link(wire::set_vf_knob(link.info.ifindex, vf, knob))
            .map_err(|source| NetlinkError::SetVf {
                pf: pf.to_string(),
                vf,
                setting: knob.setting(),
                value: knob.value(),
                source,
            })
    }

    fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        Ok(self.get_link(name, false)?.info)
    }

    fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        self.set_link(wire::set_mtu(link.ifindex, mtu))
            .map_err(|source| NetlinkError::SetMtu {
                name: name.to_string(),
                mtu,
                min: link.min_mtu,
                max: link.max_mtu,
                source,
            })
    }

    fn set_mac(&self, name: &str, mac: MacAddr) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        self.set_link(wire::set_mac(link.ifindex, mac))
            .map_err(|source| NetlinkError::SetMac {
                name: name.to_string(),
                mac,
                source,
            })
    }

    fn set_up(&self, name: &str, up: bool) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        self.set_link(wire::set_up(link.ifindex, up))
            .map_err(|source| NetlinkError::SetUp {
                name: name.to_string(),
                up,
                source,
            })
    }

    fn move_to_netns(
        &self,
        name: &str,
        netns: BorrowedFd<'_>,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        let Err(source) = self.set_link(wire::move_to_netns(
            link.ifindex,
            netns.as_raw_fd(),
            new_name,
        )) else {
            return Ok(());
        };
        // The kernel moves first and renames after (do_setlink): when the new name is taken
        // in the target but the old one is not, the netdev has moved under its old name
        // and the request still fails. Bring it back, so that a failed move moves nothing.
        if new_name.is_some()
            && matches!(
                self.get_link(name, false),
                Err(NetlinkError::LinkNotFound { .. })
            )
        {
            let undo = self.netns().ok_or(NetlinkError::Unsupported {
                op: "undoing a half-done netns move without knowing the own namespace",
                backend: "rtnetlink",
            });
            if let Err(e) =
                undo.and_then(|here| RtNetlink::in_netns(netns)?.move_to_netns(name, here, None))
            {
                tracing::warn!(name, error = %e, "netdev moved but not renamed, and could not be moved back");
            }
        }
        Err(NetlinkError::MoveToNetns {
            name: name.to_string(),
            new_name: new_name.map(str::to_string),
            source,
        })
    }

    fn move_from_netns(
        &self,
        netns: BorrowedFd<'_>,
        name: &str,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError> {
        let here = self.netns().ok_or_else(|| NetlinkError::EnterNetns {
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "the backend's own network namespace is unknown",
            ),
        })?;
        RtNetlink::in_netns(netns)?.move_to_netns(name, here, new_name)
    }

    fn enter_netns(&self, netns: BorrowedFd<'_>) -> Result<Box<dyn NetOps>, NetlinkError> {
        Ok(Box::new(RtNetlink::in_netns(netns)?))
    }

    fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        self.dump("links", || RouteNetlinkMessage::GetLink(wire::dump_links()))?
            .iter()
            .filter(|r| r.kind == RTM_NEWLINK)
            .map(|r| {
                wire::parse_link(&r.payload)
                    .map(|p| p.info)
                    .map_err(|e| NetlinkError::Dump {
                        what: "links",
                        source: decode_error(e),
                    })
            })
            .collect()
    }

    fn rename(&self, name: &str, new_name: &str) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        tracing::debug!(name, new_name, "renaming netdev");
        self.set_link(wire::rename(link.ifindex, new_name))
            .map_err(|source| NetlinkError::Rename {
                name: name.to_string(),
                new_name: new_name.to_string(),
                source,
            })
    }

    fn add_alt_name(&self, name: &str, alt: &str) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        self.request_with_flags(
            RouteNetlinkMessage::NewLinkProp(wire::alt_name(link.ifindex, alt)),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_APPEND,
        )
        .map(drop)
        .map_err(|source| NetlinkError::AltName {
            name: name.to_string(),
            alt: alt.to_string(),
            add: true,
            source,
        })
    }

    fn del_alt_name(&self, name: &str, alt: &str) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        tracing::debug!(name, alt, "deleting altname");
        self.request(
            RouteNetlinkMessage::DelLinkProp(wire::alt_name(link.ifindex, alt)),
            false,
        )
        .map(drop)
        .map_err(|source| NetlinkError::AltName {
            name: name.to_string(),
            alt: alt.to_string(),
            add: false,
            source,
        })
    }

    fn set_promisc(&self, name: &str, on: bool) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        self.set_link(wire::set_promisc(link.ifindex, on))
            .map_err(|source| NetlinkError::SetPromisc {
                name: name.to_string(),
                on,
                source,
            })
    }

    fn addresses(&self, name: &str) -> Result<Vec<IfAddr>, NetlinkError> {
        let link = self.get_link(name, false)?.info;
        let replies = self.dump("addresses", || {
            RouteNetlinkMessage::GetAddress(wire::dump_addresses())
        })?;
        let mut out = Vec::new();
        for r in replies.iter().filter(|r| r.kind == RTM_NEWADDR) {
            let parsed = wire::parse_address(&r.payload).map_err(|e| NetlinkError::Dump {
                what: "addresses",
                source: decode_error(e),
            })?;
            if let Some((index, a)) = parsed
                && index == link.ifindex
            {
                out.push(a);
            }
        }
        Ok(out)
    }

    fn add_address(&self, name: &str, addr: IfAddr) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        self.request_with_flags(
            RouteNetlinkMessage::NewAddress(wire::address(link.ifindex, addr)),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
        .map_err(|source| NetlinkError::Address {
            name: name.to_string(),
            addr,
            add: true,
            source,
        })
    }

    fn del_address(&self, name: &str, addr: IfAddr) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        self.request(
            RouteNetlinkMessage::DelAddress(wire::address(link.ifindex, addr)),
            false,
        )
        .map(drop)
        .map_err(|source| NetlinkError::Address {
            name: name.to_string(),
            addr,
            add: false,
            source,
        })
    }

    fn routes(&self, dev: &str) -> Result<Vec<Route>, NetlinkError> {
        let link = self.get_link(dev, false)?.info;
        let replies = self.dump("routes", || {
            RouteNetlinkMessage::GetRoute(wire::dump_routes())
        })?;
        let mut out = Vec::new();
        for r in replies.iter().filter(|r| r.kind == RTM_NEWROUTE) {
            let parsed = wire::parse_route(&r.payload).map_err(|e| NetlinkError::Dump {
                what: "routes",
                source: decode_error(e),
            })?;
            if let Some((oif, mut route)) = parsed
                && oif == link.ifindex
            {
                route.dev.clone_from(&link.name);
                out.push(route);
            }
        }
        Ok(out)
    }

    fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        let link = self.get_link(&route.dev, false)?.info;
        tracing::debug!(route = %route, "adding route");
        self.request_with_flags(
            RouteNetlinkMessage::NewRoute(wire::route(link.ifindex, route, true)),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
        .map_err(|source| NetlinkError::Route {
            route: route.clone(),
            add: true,
            source,
        })
    }

    fn del_route(&self, route: &Route) -> Result<(), NetlinkError> {
        let link = self.get_link(&route.dev, false)?.info;
        tracing::debug!(route = %route, "deleting route");
        self.request(
            RouteNetlinkMessage::DelRoute(wire::route(link.ifindex, route, false)),
            false,
        )
        .map(drop)
        .map_err(|source| NetlinkError::Route {
            route: route.clone(),
            add: false,
            source,
        })
    }

    fn add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        tracing::debug!(name, peer, "adding veth pair");
        self.request_with_flags(
            RouteNetlinkMessage::NewLink(wire::add_veth(name, peer, peer_netns.as_raw_fd())),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
        .map_err(|source| NetlinkError::AddVeth {
            name: name.to_string(),
            peer: peer.to_string(),
            source,
        })
    }

    fn del_link(&self, name: &str) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        tracing::debug!(name, "deleting link");
        self.request(
            RouteNetlinkMessage::DelLink(wire::del_link(link.ifindex)),
            false,
        )
        .map(drop)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ENODEV) => NetlinkError::LinkNotFound {
                name: name.to_string(),
            },
            _ => NetlinkError::DelLink {
                name: name.to_string(),
                source,
            },
        })
    }

    fn set_sysctl(&self, key: &str, value: &str) -> Result<(), NetlinkError> {
        SysctlKey::parse(key, value)?;
        let path = std::path::Path::new("/proc/sys/net").join(key);
        let write = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| io::Write::write_all(&mut f, value.as_bytes()))
        };
        tracing::debug!(key, value, "setting sysctl");
        let r = match self.netns() {
            Some(ns) if !self.netns_is_callers() => run_in_netns(ns, write)?,
            _ => write(),
        };
        r.map_err(|source| NetlinkError::Sysctl {
            key: key.to_string(),
            value: value.to_string(),
            source,
        })
    }

    fn announce(&self, name: &str, addrs: &[IfAddr]) -> Result<(), NetlinkError> {
        let link = self.get_link(name, false)?.info;
        let Some(mac) = link.mac else {
            return Ok(());
        };
        match self.netns() {
            Some(ns) if !self.netns_is_callers() => run_in_netns(ns, || {
                crate::announce::announce_here(name, link.ifindex, mac, addrs)
            })?,
            _ => crate::announce::announce_here(name, link.ifindex, mac, addrs),
        }
    }
}
