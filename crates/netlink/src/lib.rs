//! vfpool's rtnetlink access: PF-side VF configuration (IFLA_VFINFO_LIST), netdev link
//! operations, and moves between network namespaces.
//!
//! The engine talks to [`NetOps`]; two backends implement it:
//! - [`RtNetlink`]: the real kernel, over a synchronous `NETLINK_ROUTE` socket with
//!   netlink-packet-route messages (no `ip` subprocesses);
//! - `vfpool_sim::SimNetOps` (crate `vfpool-sim`): the simulated demo host, which refuses
//!   what real drivers refuse (igb has no link state, no min rate, no 802.1ad, ...).
//!
//! Namespaces are always addressed by file descriptor, never by pid; [`run_in_netns`] runs a
//! closure inside one on a dedicated thread.

// One `unsafe` block in the crate: the `sockaddr_ll` of a gratuitous ARP (`announce.rs`),
// which nix has no safe constructor for.
#![deny(unsafe_code)]

use std::fmt;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;

use serde::Serialize;
use vfpool_model::{MacAddr, VfConfig, VfSettings};

pub mod announce;
mod error;
mod knob;
mod netns;
mod rtnl;
pub mod wire;

#[cfg(test)]
mod nstests;
#[cfg(test)]
mod nstests_announce;
#[cfg(test)]
mod nstests_netdev;
#[cfg(test)]
mod nstests_route;

pub use error::NetlinkError;
pub use knob::VfKnob;
pub use netns::{NetnsId, check as check_netns, current_netns, netns_identity, run_in_netns};
pub use rtnl::RtNetlink;

/// What vfpool needs from rtnetlink. Object safe; the engine holds a `Box<dyn NetOps>` or
/// `Arc<dyn NetOps>`.
pub trait NetOps: Send + Sync {
    /// The PF-side configuration of every VF of `pf`, by VF index: RTM_GETLINK with
    /// IFLA_EXT_MASK = RTEXT_FILTER_VF, parsed from IFLA_VFINFO_LIST (`ip -d link show PF`).
    ///
    /// A netdev that is not an SR-IOV PF (a veth, a PF with no VFs) gives an empty list.
    fn vf_configs(&self, pf: &str) -> Result<Vec<(u16, VfConfig)>, NetlinkError>;

    /// Applies one knob to VF `vf` of `pf` with one RTM_SETLINK (`ip link set PF vf N ...`,
    /// see [`VfKnob`] for each knob's exact equivalent).
    ///
    /// Fails with [`NetlinkError::SetVf`], naming the setting and value, with the errno as
    /// the source.
    fn set_vf_knob(&self, pf: &str, vf: u16, knob: &VfKnob) -> Result<(), NetlinkError>;

    /// Applies every PF-side setting of `s` (the VF-netdev `mtu` is not one and is ignored),
    /// one RTM_SETLINK per knob, in [`VfKnob::plan`]'s fixed order, stopping at the first
    /// error. Knobs applied before the error stay applied: roll back with
    /// [`VfKnob::undo`] and [`NetOps::set_vf_knob`].
    fn set_vf(&self, pf: &str, vf: u16, s: &VfSettings) -> Result<(), NetlinkError> {
        s.validate()
            .map_err(|source| NetlinkError::InvalidSettings { source })?;
        let current = if VfKnob::plan_needs_current(s) {
            self.vf_configs(pf)?
                .into_iter()
                .find(|(i, _)| *i == vf)
                .map(|(_, c)| c)
        } else {
            None
        };
        for knob in VfKnob::plan(s, current.as_ref()) {
            self.set_vf_knob(pf, vf, &knob)?;
        }
        Ok(())
    }

    /// The facts about one netdev (`ip -d link show NAME`).
    fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError>;

    /// `ip link set NAME mtu MTU`. Out of range fails with [`NetlinkError::SetMtu`] naming
    /// the device's min and max.
    fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError>;

    /// `ip link set NAME address MAC`.
    fn set_mac(&self, name: &str, mac: MacAddr) -> Result<(), NetlinkError>;

    /// `ip link set NAME up` / `down`.
    fn set_up(&self, name: &str, up: bool) -> Result<(), NetlinkError>;

    /// Moves netdev `name` of this backend's namespace into the namespace `netns` (an open
    /// `/proc/PID/ns/net` or `/run/netns/NAME`), renamed to `new_name` there if given:
    /// `ip link set NAME netns NSFD [name NEW]`. The netdev arrives down.
    ///
    /// All or nothing: if the kernel moved the netdev but could not rename it (NEW taken in
    /// the target), it is moved back before the error is returned.
    fn move_to_netns(
        &self,
        name: &str,
        netns: BorrowedFd<'_>,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError>;

    /// Checks that `path` names a network namespace other than this backend's own, and
    /// returns its identity (what a lease records). The kernel's: an nsfs file of type net
    /// (see [`netns::check`]); the simulator's namespaces are plain files.
    fn check_netns(&self, path: &std::path::Path) -> Result<NetnsId, vfpool_model::InvalidValue> {
        netns::check(path)
    }

    /// The inverse: moves netdev `name` that lives in `netns` back into this backend's
    /// namespace, renamed to `new_name` if given (`ip -n NS link set NAME netns 1 [name
    /// NEW]`). What the CNI plugin's DEL needs.
    fn move_from_netns(
        &self,
        netns: BorrowedFd<'_>,
        name: &str,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError>;

    /// A backend of the same kind working inside the network namespace `netns`: for the
    /// real kernel, a netlink socket opened there on a short-lived thread (the netavark
    /// pattern; the calling thread never changes namespace). `ip -n NS ...`.
    fn enter_netns(&self, netns: BorrowedFd<'_>) -> Result<Box<dyn NetOps>, NetlinkError>;

    /// Every netdev of this backend's namespace (`ip -d link show`).
    fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError>;

    /// `ip link set NAME name NEW_NAME` (IFLA_IFNAME). The kernel refuses a name that is
    /// taken as a name or as an altname in the namespace (EEXIST) and a name that is not
    /// [`dev_valid_name`] (EINVAL); before 6.2 also a netdev that is up (EBUSY).
    fn rename(&self, name: &str, new_name: &str) -> Result<(), NetlinkError>;

    /// `ip link property add dev NAME altname ALT` (RTM_NEWLINKPROP, IFLA_PROP_LIST /
    /// IFLA_ALT_IFNAME). What udev does with its AlternativeNamesPolicy.
    fn add_alt_name(&self, name: &str, alt: &str) -> Result<(), NetlinkError>;

    /// `ip link property del dev NAME altname ALT` (RTM_DELLINKPROP).
    fn del_alt_name(&self, name: &str, alt: &str) -> Result<(), NetlinkError>;

    /// `ip link set NAME promisc on|off` (IFF_PROMISC in ifi_flags, with ifi_change =
    /// IFF_PROMISC so that no other flag changes).
    fn set_promisc(&self, name: &str, on: bool) -> Result<(), NetlinkError>;

    /// The IPv4 and IPv6 addresses of netdev `name` (`ip addr show dev NAME`).
    fn addresses(&self, name: &str) -> Result<Vec<IfAddr>, NetlinkError>;

    /// `ip addr add ADDR/PREFIX dev NAME` (RTM_NEWADDR). EEXIST if it has it already.
    fn add_address(&self, name: &str, addr: IfAddr) -> Result<(), NetlinkError>;

    /// `ip addr flush dev NAME`: removes every IPv4 and IPv6 address of the netdev
    /// (RTM_DELADDR, one per address). Returns how many were removed.
    fn flush_addresses(&self, name: &str) -> Result<usize, NetlinkError> {
        let addrs = self.addresses(name)?;
        for a in &addrs {
            self.del_address(name, *a)?;
        }
        Ok(addrs.len())
    }

    /// `ip addr del ADDR/PREFIX dev NAME` (RTM_DELADDR).
    fn del_address(&self, name: &str, addr: IfAddr) -> Result<(), NetlinkError>;

    /// The routes of the main table whose output device is `dev` (`ip route show dev DEV`
    /// and `ip -6 route show dev DEV`), unicast ones only, both families, including those
    /// the kernel adds for an address's prefix (`proto kernel`).
    ///
    /// Those kernel routes: for an IPv4 address of an up netdev `NET/PLEN dev DEV src ADDR`
    /// (none for a /32, one per prefix); for an IPv6 one `NET/PLEN dev DEV` (a /128 too),
    /// and `fe80::/64 dev DEV` once the link has a carrier and a link-local address (not
    /// with `ipv6/conf/DEV/addr_gen_mode` 1; the simulator has no link-local addresses).
    /// A netdev going down loses every route and (keep_addr_on_down 0) its IPv6 addresses;
    /// up again it gets back the prefix routes of the addresses it kept. An IPv6 route the
    /// user adds beside a kernel one to the same prefix is listed twice (metrics 1024 and
    /// 256; [`Route`] has no metric). Order: unspecified (sort to compare).
    /// [`NetlinkError::LinkNotFound`] when `dev` is not there.
    fn routes(&self, dev: &str) -> Result<Vec<Route>, NetlinkError>;

    /// `ip route add DST [via GW] dev DEV [src SRC] [onlink]` in the main table
    /// (RTM_NEWROUTE with NLM_F_CREATE | NLM_F_EXCL). EEXIST if the route is there.
    ///
    /// As `ip route add`: proto boot, scope link for an IPv4 route without gateway,
    /// universe otherwise. Refusals ([`NetlinkError::Route`] with the errno; checked on
    /// 6.18): no such `dev`: [`NetlinkError::LinkNotFound`] (ENODEV); `dev` down: ENETDOWN
    /// (but an IPv4 gateway route without onlink is ENETUNREACH, an IPv6 one
    /// EHOSTUNREACH, since the down netdev has no route to the gateway); a gateway that no
    /// route of `dev` without gateway covers, without `onlink`: ENETUNREACH for IPv4,
    /// EHOSTUNREACH for IPv6 (an IPv6 link-local gateway is always taken); a route to the
    /// same prefix already there: EEXIST (IPv4: whatever its gateway or device, the
    /// kernel's prefix route included; IPv6: among routes of metric 1024); `src` not an
    /// address of the namespace, families mixed, IPv4 host bits set: EINVAL.
    fn add_route(&self, route: &Route) -> Result<(), NetlinkError>;

    /// `ip route del DST [via GW] dev DEV` (RTM_DELROUTE). ESRCH if there is none.
    ///
    /// Matches the first route to DST through DEV, via `gateway` and with `src` when they
    /// are given, whatever its proto or scope (a kernel prefix route too); `onlink` is
    /// ignored. [`NetlinkError::LinkNotFound`] when `dev` is not there.
    fn del_route(&self, route: &Route) -> Result<(), NetlinkError>;

    /// `ip link add NAME type veth peer name PEER netns NSFD`: a veth pair whose end
    /// `name` is in this backend's namespace and whose end `peer` is created directly in
    /// the namespace `peer_netns` (IFLA_NET_NS_FD in the peer's info). Both ends down.
    /// EEXIST when either name is taken on its side (as a name or an altname), EINVAL
    /// for an invalid name ([`dev_valid_name`]); [`NetlinkError::AddVeth`] and nothing made.
    /// When the peer's namespace goes away, the kernel destroys the pair (this end too).
    fn add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError>;

    /// `ip link del NAME` (RTM_DELLINK). [`NetlinkError::LinkNotFound`] when there is
    /// none. Deleting one end of a veth deletes both, wherever the other is, with their
    /// addresses and routes. A netdev that cannot be deleted (a PCI function's, `lo`):
    /// [`NetlinkError::DelLink`] with EOPNOTSUPP.
    fn del_link(&self, name: &str) -> Result<(), NetlinkError>;

    /// Writes a sysctl of this backend's network namespace: `key` is relative to
    /// `/proc/sys/net/` (`ipv4/conf/eth0/arp_notify`), as `sysctl -w net.KEY=VALUE` run
    /// inside the namespace would. Only keys under `ipv4/conf/`, `ipv6/conf/` and
    /// `ipv4/neigh/`, `ipv6/neigh/` are accepted ([`SysctlKey::parse`]; anything else is
    /// [`NetlinkError::InvalidSysctl`], errno EINVAL, before any write). A key of an
    /// interface that is not in the namespace (by name: not by altname) is
    /// [`NetlinkError::Sysctl`] with ENOENT; a value the kernel refuses, EINVAL.
    fn set_sysctl(&self, key: &str, value: &str) -> Result<(), NetlinkError>;

    /// Announces `addrs` of netdev `name` (which is up) to its link: a gratuitous ARP
    /// (a broadcast ARP request from and for the address, RFC 5227's announcement) for
    /// each IPv4 address, an unsolicited Neighbour Advertisement to all nodes (RFC 4861
    /// 7.2.6, override flag set) for each IPv6 one. What `arping -U` and `ndisend` do; the
    /// neighbours' caches learn the MAC now rather than after their entries expire.
    fn announce(&self, name: &str, addrs: &[IfAddr]) -> Result<(), NetlinkError>;

    /// `ip link set NAME name NEW_NAME`, first dropping `NEW_NAME` from the netdev's own
    /// altnames if it is one (`ip link property del dev NAME altname NEW_NAME`): a name
    /// kept as an altname (by udev, or left from an earlier rename) blocks a rename to it
    /// with EEXIST (sriov-cni #445). An altname of *another* netdev is left alone and the
    /// rename fails with EEXIST. Renaming to the current name does nothing.
    fn rename_over_own_altname(&self, name: &str, new_name: &str) -> Result<(), NetlinkError> {
        let link = self.link(name)?;
        if link.name == new_name {
            return Ok(());
        }
        if link.alt_names.iter().any(|a| a == new_name) {
            self.del_alt_name(&link.name, new_name)?;
        }
        self.rename(&link.name, new_name)
    }
}

/// The kernel's rule for a netdev name (`dev_valid_name` in net/core/dev.c): 1 to 15
/// bytes (IFNAMSIZ - 1), not `.` or `..`, no `/`, `:` or whitespace.
pub fn dev_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0x0b)
}

/// The sysctl subtrees [`NetOps::set_sysctl`] writes, relative to `/proc/sys/net/`.
pub const SYSCTL_PREFIXES: [&str; 4] = ["ipv4/conf/", "ipv6/conf/", "ipv4/neigh/", "ipv6/neigh/"];

/// A checked sysctl key of [`NetOps::set_sysctl`]: `FAMILY/conf|neigh/IFACE/LEAF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysctlKey<'a> {
    /// `ipv4/conf/` and the like.
    pub prefix: &'static str,
    /// The interface part: a netdev name, or `all` / `default`.
    pub iface: &'a str,
    /// What follows the interface (`arp_notify`).
    pub leaf: &'a str,
}

impl<'a> SysctlKey<'a> {
    /// Checks `key` and `value` as [`NetOps::set_sysctl`] takes them: a key under one of
    /// [`SYSCTL_PREFIXES`], no `..` or empty part, an interface part that is a valid netdev
    /// name ([`dev_valid_name`]), a leaf of `[a-z0-9_]`; a value of printable ASCII.
    pub fn parse(key: &'a str, value: &str) -> Result<Self, vfpool_model::InvalidValue> {
        let bad = |why: &str| vfpool_model::InvalidValue::new("sysctl key", key, why);
        let allowed = "a key under ipv4/conf/, ipv6/conf/, ipv4/neigh/ or ipv6/neigh/ like \
            ipv4/conf/eth0/arp_notify";
        let prefix = SYSCTL_PREFIXES
            .into_iter()
            .find(|p| key.starts_with(p))
            .ok_or_else(|| bad(allowed))?;
        let rest = &key[prefix.len()..];
        let (iface, leaf) = rest.split_once('/').ok_or_else(|| bad(allowed))?;
        if !dev_valid_name(iface) {
            return Err(bad(
                "the interface part is not a valid netdev name (1 to 15 bytes, not . or .., \
                 no /, : or whitespace)",
            ));
        }
        let leaf_ok = !leaf.is_empty()
            && leaf.split('/').all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        if !leaf_ok {
            return Err(bad(
                "the setting after the interface must be [a-z0-9_] parts like arp_notify",
            ));
        }
        if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(vfpool_model::InvalidValue::new(
                "sysctl value",
                value,
                format!("a non-empty value of printable ASCII for net/{key}"),
            ));
        }
        Ok(SysctlKey {
            prefix,
            iface,
            leaf,
        })
    }
}

/// One address of a netdev: `ADDR/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl std::str::FromStr for IfAddr {
    type Err = vfpool_model::InvalidValue;
    /// `10.1.2.3/24`, `fd00::1/64`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || vfpool_model::InvalidValue::new("address", s, "ADDR/PREFIX like 10.1.2.3/24");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix_len: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(bad());
        }
        Ok(IfAddr { addr, prefix_len })
    }
}

/// One route of the main table: `DST [via GATEWAY] dev DEV [src SRC] [onlink]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Route {
    /// The destination prefix, host bits zero (`0.0.0.0/0`, `::/0` for a default route).
    pub dst: IfAddr,
    pub gateway: Option<IpAddr>,
    pub dev: String,
    /// The preferred source address (RTA_PREFSRC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    /// RTNH_F_ONLINK: the gateway is on the link even if no address's prefix covers it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub onlink: bool,
}

impl Route {
    /// A route to `dst` through `dev` with no gateway (scope link).
    pub fn dev(dst: IfAddr, dev: &str) -> Self {
        Route {
            dst,
            gateway: None,
            dev: dev.to_string(),
            src: None,
            onlink: false,
        }
    }

    /// A route to `dst` via `gateway` through `dev`.
    pub fn via(dst: IfAddr, gateway: IpAddr, dev: &str) -> Self {
        Route {
            gateway: Some(gateway),
            ..Route::dev(dst, dev)
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        write!(f, " dev {}", self.dev)?;
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        if self.onlink {
            f.write_str(" onlink")?;
        }
        Ok(())
    }
}

/// A netdev's operational state (RFC 2863, IFLA_OPERSTATE, sysfs `operstate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OperState {
    #[default]
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
}

impl OperState {
    /// As sysfs writes it (`up`, `down`, `lowerlayerdown`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            OperState::Unknown => "unknown",
            OperState::NotPresent => "notpresent",
            OperState::Down => "down",
            OperState::LowerLayerDown => "lowerlayerdown",
            OperState::Testing => "testing",
            OperState::Dormant => "dormant",
            OperState::Up => "up",
        }
    }

    /// Parses sysfs `operstate`; anything unknown is [`OperState::Unknown`].
    pub fn from_sysfs(s: &str) -> Self {
        match s.trim() {
            "up" => OperState::Up,
            "down" => OperState::Down,
            "lowerlayerdown" => OperState::LowerLayerDown,
            "notpresent" => OperState::NotPresent,
            "testing" => OperState::Testing,
            "dormant" => OperState::Dormant,
            _ => OperState::Unknown,
        }
    }
}

impl fmt::Display for OperState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One netdev as RTM_NEWLINK (or sysfs) describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub name: String,
    pub mtu: u32,
    /// IFLA_MIN_MTU; `None` on kernels that do not report it.
    pub min_mtu: Option<u32>,
    /// IFLA_MAX_MTU; `None` on kernels that do not report it.
    pub max_mtu: Option<u32>,
    /// `None` for netdevs without a 6-byte hardware address.
    pub mac: Option<MacAddr>,
    /// IFF_UP: administratively up.
    pub admin_up: bool,
    pub oper_state: OperState,
    /// IFLA_CARRIER; `None` when not reported.
    pub carrier: Option<bool>,
    /// IFF_PROMISC: in promiscuous mode.
    pub promisc: bool,
    /// Alternative names (IFLA_PROP_LIST / IFLA_ALT_IFNAME), `altname` in `ip link`.
    pub alt_names: Vec<String>,
    /// The device under the netdev (IFLA_PARENT_DEV_NAME, `parentdev` in `ip -d link`):
    /// a VF's PCI address, seen from any namespace. `None` for virtual devices.
    pub parent_dev: Option<String>,
}
