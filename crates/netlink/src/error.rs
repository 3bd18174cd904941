//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

use vfpool_model::{InvalidValue, MacAddr};

/// What failed, on which netdev or VF, with the kernel's errno chained as the source.
///
/// Messages are one lower-case line that says what failed and, where the errno has a
/// well-known meaning for SR-IOV drivers, why (`the driver does not support this setting`).
/// The errno itself is the source and is not repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// The netlink socket could not be opened, bound or used.
    #[error("cannot open a route netlink socket")]
    Socket {
        #[source]
        source: io::Error,
    },

    /// No netdev with this name in the network namespace that was asked.
    #[error("no network interface named '{name}'")]
    LinkNotFound { name: String },

    /// RTM_GETLINK for one netdev failed (other than "not found").
    #[error("cannot read link {name}")]
    GetLink {
        name: String,
        #[source]
        source: io::Error,
    },

    /// A multi-part dump (RTM_GETLINK with NLM_F_DUMP) failed.
    #[error("cannot dump {what}")]
    Dump {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    /// The requested VF settings are invalid whatever the driver.
    #[error("invalid vf settings")]
    InvalidSettings {
        #[source]
        source: InvalidValue,
    },

    /// One PF-side VF knob (`ip link set PF vf N ...`) was refused.
    #[error("cannot set {setting} {value} on {pf} vf {vf}{}", errno_hint(.source))]
    SetVf {
        pf: String,
        vf: u16,
        /// `mac`, `vlan`, `vlan-proto`, `spoofchk`, `trust`, `link-state`, `min-rate`, `max-rate`.
        setting: &'static str,
        value: String,
        #[source]
        source: io::Error,
    },

    /// The MTU was refused; `min`/`max` are the device's range when the kernel reports it.
    #[error("cannot set mtu {mtu} on {name}{}{}", mtu_range(*.min, *.max), errno_hint(.source))]
    SetMtu {
        name: String,
        mtu: u32,
        min: Option<u32>,
        max: Option<u32>,
        #[source]
        source: io::Error,
    },

    /// The MAC address of a netdev was refused.
    #[error("cannot set mac {mac} on {name}{}", errno_hint(.source))]
    SetMac {
        name: String,
        mac: MacAddr,
        #[source]
        source: io::Error,
    },

    /// Bringing a netdev up or down failed.
    #[error("cannot set {name} {}{}", if *.up { "up" } else { "down" }, errno_hint(.source))]
    SetUp {
        name: String,
        up: bool,
        #[source]
        source: io::Error,
    },

    /// Moving a netdev into another network namespace failed.
    #[error("cannot move {name} to another network namespace{}{}",
        .new_name.as_deref().map(|n| format!(" as {n}")).unwrap_or_default(), errno_hint(.source))]
    MoveToNetns {
        name: String,
        new_name: Option<String>,
        #[source]
        source: io::Error,
    },

    /// A netdev could not be renamed (`ip link set NAME name NEW`).
    #[error("cannot rename {name} to {new_name}{}", rename_hint(.source))]
    Rename {
        name: String,
        new_name: String,
        #[source]
        source: io::Error,
    },

    /// An alternative name could not be added or deleted (`ip link property add|del`).
    #[error("cannot {} altname {alt} {} {name}{}",
        if *.add { "add" } else { "delete" }, if *.add { "to" } else { "of" }, errno_hint(.source))]
    AltName {
        name: String,
        alt: String,
        add: bool,
        #[source]
        source: io::Error,
    },

    /// Promiscuous mode could not be switched (`ip link set NAME promisc on|off`).
    #[error("cannot set promisc {} on {name}{}", if *.on { "on" } else { "off" }, errno_hint(.source))]
    SetPromisc {
        name: String,
        on: bool,
        #[source]
        source: io::Error,
    },

    /// An address could not be added to or removed from a netdev (`ip addr add|del`).
    #[error("cannot {} address {addr} {} {name}{}",
        if *.add { "add" } else { "delete" }, if *.add { "to" } else { "of" }, addr_hint(.source))]
    Address {
        name: String,
        addr: crate::IfAddr,
        add: bool,
        #[source]
        source: io::Error,
    },

    /// A gratuitous ARP could not be sent.
    #[error("cannot announce {addr} on {name}")]
    Announce {
        name: String,
        addr: String,
        #[source]
        source: io::Error,
    },

    /// A route could not be added or deleted (`ip route add|del ROUTE`).
    #[error("cannot {} route {route}{}", if *.add { "add" } else { "delete" }, route_hint(.source))]
    Route {
        route: crate::Route,
        add: bool,
        #[source]
        source: io::Error,
    },

    /// A veth pair could not be created (`ip link add NAME type veth peer name PEER netns NS`).
    #[error("cannot add veth pair {name} (peer {peer}){}", errno_hint(.source))]
    AddVeth {
        name: String,
        peer: String,
        #[source]
        source: io::Error,
    },

    /// A netdev could not be deleted (`ip link del NAME`).
    #[error("cannot delete link {name}{}", del_link_hint(.source))]
    DelLink {
        name: String,
        #[source]
        source: io::Error,
    },

    /// A sysctl key or value that vfpool does not write (see [`crate::NetOps::set_sysctl`]).
    #[error(transparent)]
    InvalidSysctl {
        #[from]
        source: InvalidValue,
    },

    /// Writing `/proc/sys/net/KEY` in the backend's network namespace failed.
    #[error("cannot set sysctl net/{key} to {value}{}", sysctl_hint(.source))]
    Sysctl {
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },

    /// `setns` into a network namespace (by fd) failed, or `/proc/thread-self/ns/net`
    /// could not be opened.
    #[error("cannot enter network namespace")]
    EnterNetns {
        #[source]
        source: io::Error,
    },

    /// The backend cannot do this at all (the simulated host has no namespaces).
    #[error("{op} is not supported by the {backend} backend")]
    Unsupported {
        op: &'static str,
        backend: &'static str,
    },

    /// A file of the simulated host could not be read or written.
    #[error("cannot access simulated host file {}", .path.display())]
    SimIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The simulated VF state file is corrupt.
    #[error("corrupt simulated vf state in {}", .path.display())]
    SimState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl NetlinkError {
    /// The errno behind this error, if the kernel (or the simulated kernel) gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Socket { source }
            | NetlinkError::GetLink { source, .. }
            | NetlinkError::Dump { source, .. }
            | NetlinkError::SetVf { source, .. }
            | NetlinkError::SetMtu { source, .. }
            | NetlinkError::SetMac { source, .. }
            | NetlinkError::SetUp { source, .. }
            | NetlinkError::MoveToNetns { source, .. }
            | NetlinkError::Rename { source, .. }
            | NetlinkError::AltName { source, .. }
            | NetlinkError::SetPromisc { source, .. }
            | NetlinkError::Address { source, .. }
            | NetlinkError::Announce { source, .. }
            | NetlinkError::Route { source, .. }
            | NetlinkError::AddVeth { source, .. }
            | NetlinkError::DelLink { source, .. }
            | NetlinkError::Sysctl { source, .. }
            | NetlinkError::EnterNetns { source }
            | NetlinkError::SimIo { source, .. } => source.raw_os_error(),
            NetlinkError::LinkNotFound { .. } => Some(nix::libc::ENODEV),
            NetlinkError::InvalidSysctl { .. } => Some(nix::libc::EINVAL),
            _ => None,
        }
    }
}

/// A short explanation of what an errno means for netdev/VF configuration, prefixed with
/// `": "`, or nothing when the errno says it all.
fn errno_hint(e: &io::Error) -> &'static str {
    use nix::libc;
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) => ": the driver does not support this setting",
        Some(libc::EPROTONOSUPPORT) => {
            ": the driver does not support this vlan protocol (igb and ixgbe have only 802.1q)"
        }
        Some(libc::EINVAL) => {
            ": the driver rejected the value (out of range, unsupported, or no such vf)"
        }
        Some(libc::EPERM) | Some(libc::EACCES) => ": permission denied (needs CAP_NET_ADMIN)",
        Some(libc::EADDRNOTAVAIL) => ": the address was refused",
        Some(libc::EBUSY) => ": the device is busy",
        Some(libc::ENODEV) => ": the device is gone",
        Some(libc::EEXIST) => ": the name is already taken there",
        _ => "",
    }
}

/// [`errno_hint`] for a rename: EBUSY means the netdev is up.
fn rename_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(nix::libc::EBUSY) => {
            ": the netdev is up (the kernel renames only netdevs that are down)"
        }
        Some(nix::libc::EEXIST) => {
            ": the name is taken (as a name or an altname) in that namespace"
        }
        Some(nix::libc::EINVAL) | Some(nix::libc::ERANGE) => {
            ": not a valid netdev name (1 to 15 bytes, not . or .., no /, : or whitespace)"
        }
        _ => errno_hint(e),
    }
}

/// [`errno_hint`] for an address: EEXIST means the netdev has it already.
fn addr_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(nix::libc::EEXIST) => ": the netdev has it already",
        Some(nix::libc::EADDRNOTAVAIL) => ": the netdev has no such address",
        _ => errno_hint(e),
    }
}

/// [`errno_hint`] for a route, with the errnos of `fib_create_info` / `fib6_nh_init`.
fn route_hint(e: &io::Error) -> &'static str {
    use nix::libc;
    match e.raw_os_error() {
        Some(libc::EEXIST) => ": the table has a route to this destination already",
        Some(libc::ESRCH) => ": no such route",
        Some(libc::ENETDOWN) => ": the device is down",
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => {
            ": the gateway is not on the link (no route of the device covers it; add onlink)"
        }
        Some(libc::EINVAL) => ": the kernel rejected it (is src an address of the namespace?)",
        _ => errno_hint(e),
    }
}

/// [`errno_hint`] for a link deletion.
fn del_link_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(nix::libc::EOPNOTSUPP) => {
            ": only virtual netdevs (veth, ...) can be deleted, not a device's or lo"
        }
        _ => errno_hint(e),
    }
}

/// [`errno_hint`] for a sysctl write.
fn sysctl_hint(e: &io::Error) -> &'static str {
    use nix::libc;
    match e.raw_os_error() {
        Some(libc::ENOENT) => ": no such key (or no such interface) in the namespace",
        Some(libc::EINVAL) => ": the kernel rejected the value",
        _ => errno_hint(e),
    }
}

fn mtu_range(min: Option<u32>, max: Option<u32>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!(" (allowed {min}..={max})"),
        (None, Some(max)) => format!(" (allowed up to {max})"),
        (Some(min), None) => format!(" (allowed from {min})"),
        (None, None) => String::new(),
    }
}

/// Turns a decode failure of a kernel reply into an `io::Error` (`InvalidData`), so that
/// every kernel-facing failure carries one source type.
pub(crate) fn decode_error(e: netlink_packet_core::DecodeError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink reply: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::libc;

    #[test]
    fn errors_travel_between_threads() {
        fn check<T: Send + Sync + 'static>() {}
        check::<NetlinkError>();
    }

    #[test]
    fn messages_are_one_line_with_hint_and_chained_source() {
        let e = NetlinkError::SetVf {
            pf: "eth0".into(),
            vf: 2,
            setting: "link-state",
            value: "enable".into(),
            source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        };
        assert_eq!(
            e.to_string(),
            "cannot set link-state enable on eth0 vf 2: the driver does not support this setting"
        );
        let src = std::error::Error::source(&e).unwrap().to_string();
        assert!(src.contains("os error 95"), "{src}");
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));

        let e = NetlinkError::SetMtu {
            name: "veth0".into(),
            mtu: 70000,
            min: Some(68),
            max: Some(65535),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(
            e.to_string()
                .starts_with("cannot set mtu 70000 on veth0 (allowed 68..=65535): "),
            "{e}"
        );
        let e = NetlinkError::MoveToNetns {
            name: "veth1".into(),
            new_name: Some("net1".into()),
            source: io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert_eq!(
            e.to_string(),
            "cannot move veth1 to another network namespace as net1: the name is already taken there"
        );
        let e = NetlinkError::Rename {
            name: "eth3".into(),
            new_name: "net1".into(),
            source: io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert_eq!(
            e.to_string(),
            "cannot rename eth3 to net1: the name is taken (as a name or an altname) in that namespace"
        );
        assert_eq!(e.errno(), Some(libc::EEXIST));
        let e = NetlinkError::AltName {
            name: "eth3".into(),
            alt: "net1".into(),
            add: false,
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(e.to_string(), "cannot delete altname net1 of eth3");
        assert_eq!(e.errno(), Some(libc::ENOENT));
        let e = NetlinkError::SetPromisc {
            name: "eth3".into(),
            on: false,
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(
            e.to_string(),
            "cannot set promisc off on eth3: permission denied (needs CAP_NET_ADMIN)"
        );
        let e = NetlinkError::Address {
            name: "net1".into(),
            addr: "10.1.2.3/24".parse().unwrap(),
            add: true,
            source: io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert_eq!(
            e.to_string(),
            "cannot add address 10.1.2.3/24 to net1: the netdev has it already"
        );
        let e = NetlinkError::SetUp {
            name: "x".into(),
            up: false,
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(e.to_string(), "cannot set x down");
    }

    #[test]
    fn route_veth_link_and_sysctl_errors_name_what_failed() {
        let r = crate::Route::via(
            "10.96.0.0/12".parse().unwrap(),
            "10.1.2.1".parse().unwrap(),
            "eth0",
        );
        for (errno, hint) in [
            (
                libc::EEXIST,
                ": the table has a route to this destination already",
            ),
            (libc::ENETDOWN, ": the device is down"),
            (
                libc::ENETUNREACH,
                ": the gateway is not on the link (no route of the device covers it; add onlink)",
            ),
            (
                libc::EHOSTUNREACH,
                ": the gateway is not on the link (no route of the device covers it; add onlink)",
            ),
            (libc::ENOSPC, ""),
        ] {
            let e = NetlinkError::Route {
                route: r.clone(),
                add: true,
                source: io::Error::from_raw_os_error(errno),
            };
            assert_eq!(
                e.to_string(),
                format!("cannot add route 10.96.0.0/12 via 10.1.2.1 dev eth0{hint}")
            );
            assert_eq!(e.errno(), Some(errno));
        }
        let e = NetlinkError::Route {
            route: r,
            add: false,
            source: io::Error::from_raw_os_error(libc::ESRCH),
        };
        assert_eq!(
            e.to_string(),
            "cannot delete route 10.96.0.0/12 via 10.1.2.1 dev eth0: no such route"
        );
        let e = NetlinkError::DelLink {
            name: "lo".into(),
            source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        };
        assert_eq!(
            e.to_string(),
            "cannot delete link lo: only virtual netdevs (veth, ...) can be deleted, not a device's or lo"
        );
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));
        let e = NetlinkError::Sysctl {
            key: "ipv4/conf/x/arp_notify".into(),
            value: "1".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(e.errno(), Some(libc::ENOENT));
        let e = NetlinkError::from(InvalidValue::new("sysctl key", "x", "y"));
        assert_eq!(e.to_string(), "invalid sysctl key 'x': y");
        assert_eq!(e.errno(), Some(libc::EINVAL));
    }
}
