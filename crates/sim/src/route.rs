//! Routes, veth pairs, link deletion and sysctls of the simulated host (the rest of the
//! netdev half of [`SimNetOps`]), with the kernel's rules (checked on 6.18; `nstests_route.rs`
//! in vfpool-netlink runs the same sequences on the real kernel and `route_tests.rs` here
//! compares the two).
//!
//! Routes live per namespace in `SIMROOT/netlink/netdevs.json` (the main table; `""` is the
//! host's), each through a netdev by ifindex (a rename keeps them). The kernel's own prefix
//! routes are stored too, made and removed on the kernel's events: an IPv4 address of an up
//! netdev gives `NET/PLEN dev DEV src ADDR` (not for a /32, nor for a second address of
//! the same prefix: `fib_add_ifaddr`); an IPv6 one `NET/PLEN dev DEV` (a /128 too:
//! `addrconf_prefix_route`). A netdev going down loses every route (`fib_sync_down_dev`,
//! `rt6_sync_down_dev`) and its IPv6 addresses (`addrconf_ifdown`, keep_addr_on_down 0);
//! up again, the prefix routes of its addresses come back. Not simulated: IPv6 link-local
//! addresses and their `fe80::/64` route (a real kernel adds them when the link gets a
//! carrier, unless `addr_gen_mode` is 1), metrics, and the removal of secondary IPv4
//! addresses with their primary.
//!
//! A veth pair is two virtual netdevs (no parent device), both down, each end's carrier
//! on only while both are up (`veth_open`: `netif_carrier_on` of both once the peer is up).

use std::fs;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use nix::libc;
use serde::{Deserialize, Serialize};

use vfpool_netlink::{IfAddr, NetlinkError, Route, SysctlKey, dev_valid_name};

use crate::net::SimNetOps;
use crate::netns::{Extra, IFF_UP, errno, file_name};

/// One route of a namespace's main table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SimRoute {
    addr: IpAddr,
    prefix_len: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    ifindex: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    src: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    onlink: bool,
    /// Added by the kernel for an address (`proto kernel`; metric 256 on IPv6).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    kernel: bool,
}

impl SimRoute {
    fn dst(&self) -> IfAddr {
        IfAddr {
            addr: self.addr,
            prefix_len: self.prefix_len,
        }
    }

    fn covers(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && network(ip, self.prefix_len) == self.addr
    }
}

/// `ip` with its bits past `prefix_len` cleared.
fn network(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

fn slot(ns: Option<&str>) -> String {
    ns.unwrap_or_default().to_string()
}

/// The kernel's prefix route for address `a` of netdev `ifindex`, if it makes one.
fn prefix_route(ifindex: u32, a: IfAddr) -> Option<SimRoute> {
    let v4 = a.addr.is_ipv4();
    if v4 && a.prefix_len == 32 {
        return None;
    }
    Some(SimRoute {
        addr: network(a.addr, a.prefix_len),
        prefix_len: a.prefix_len,
        gateway: None,
        ifindex,
        src: v4.then_some(a.addr),
        onlink: false,
        kernel: true,
    })
}

impl SimNetOps {
    /// Drops what namespace `ns` keeps about netdev `ifindex` (it left, or is gone): its
    /// routes and its per-interface sysctls.
    pub(crate) fn forget_in_ns(extra: &mut Extra, ns: Option<&str>, ifindex: u32) {
        if let Some(t) = extra.routes.get_mut(&slot(ns)) {
            t.retain(|r| r.ifindex != ifindex);
        }
        if let Some(s) = extra.sysctls.get_mut(&slot(ns)) {
            let tag = format!("/#{ifindex}/");
            s.retain(|k, _| !k.contains(&tag));
        }
    }

    /// Address `a` was added to up netdev `ifindex`: the kernel's prefix route, unless an
    /// earlier address of the same prefix made it (`fib_add_ifaddr` skips a secondary).
    pub(crate) fn kernel_route_added(extra: &mut Extra, ns: Option<&str>, ifindex: u32, a: IfAddr) {
        let Some(r) = prefix_route(ifindex, a) else {
            return;
        };
        let t = extra.routes.entry(slot(ns)).or_default();
        if !t
            .iter()
            .any(|x| x.kernel && x.ifindex == ifindex && x.dst() == r.dst())
        {
            t.push(r);
        }
    }

    /// Address `a` of up netdev `ifindex` was deleted: its prefix route goes, unless another
    /// address of the netdev has the same prefix; IPv4 routes with `a` as src go too
    /// (`fib_del_ifaddr`, `fib_sync_down_addr`).
    pub(crate) fn kernel_route_removed(
        extra: &mut Extra,
        ns: Option<&str>,
        ifindex: u32,
        a: IfAddr,
    ) {
        let Some(r) = prefix_route(ifindex, a) else {
            return;
        };
        let others: Vec<IfAddr> = extra
            .addrs
            .get(&ifindex)
            .map(|l| l.iter().filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_default();
        let Some(t) = extra.routes.get_mut(&slot(ns)) else {
            return;
        };
        let replacement = others
            .iter()
            .find(|o| **o != a && prefix_route(ifindex, **o).is_some_and(|p| p.dst() == r.dst()));
        t.retain(|x| !(x.kernel && x.ifindex == ifindex && x.dst() == r.dst()));
        t.retain(|x| !(a.addr.is_ipv4() && x.src == Some(a.addr)));
        if let Some(o) = replacement.and_then(|o| prefix_route(ifindex, *o)) {
            t.push(o);
        }
    }

    /// Netdev `ifindex` of namespace `ns` went up or down (see the module doc).
    pub(crate) fn link_went(extra: &mut Extra, ns: Option<&str>, ifindex: u32, up: bool) {
        if up {
            let addrs: Vec<IfAddr> = extra
                .addrs
                .get(&ifindex)
                .map(|l| l.iter().filter_map(|s| s.parse().ok()).collect())
                .unwrap_or_default();
            for a in addrs {
                Self::kernel_route_added(extra, ns, ifindex, a);
            }
        } else {
            if let Some(t) = extra.routes.get_mut(&slot(ns)) {
                t.retain(|r| r.ifindex != ifindex);
            }
            if let Some(l) = extra.addrs.get_mut(&ifindex) {
                l.retain(|s| s.parse::<IfAddr>().is_ok_and(|a| a.addr.is_ipv4()));
            }
        }
    }

    /// After an end of a veth went up or down: each end's carrier and operstate as
    /// `veth_open` / `veth_close` leave them (on, `up`, only while both are up; an up end
    /// whose peer is down is `lowerlayerdown`).
    pub(crate) fn veth_carrier(&self, extra: &Extra, dir: &Path) -> Result<(), NetlinkError> {
        let Some(peer) = Self::ifindex_of(dir).and_then(|i| extra.peers.get(&i)) else {
            return Ok(());
        };
        let Some((_, pdir)) = self.find_ifindex(*peer)? else {
            return Ok(());
        };
        let (me_up, peer_up) = (
            Self::flags(dir) & IFF_UP != 0,
            Self::flags(&pdir) & IFF_UP != 0,
        );
        for (d, own, other) in [(dir, me_up, peer_up), (pdir.as_path(), peer_up, me_up)] {
            let (oper, carrier) = match (own, other) {
                (false, _) => ("down", "0"),
                (true, false) => ("lowerlayerdown", "0"),
                (true, true) => ("up", "1"),
            };
            Self::write(d, "operstate", oper)?;
            Self::write(d, "carrier", carrier)?;
        }
        Ok(())
    }

    /// Every namespace of the simulated host: `None` (the host's) and each key.
    fn namespaces(&self) -> Vec<Option<String>> {
        let mut spaces = vec![None];
        if let Ok(rd) = fs::read_dir(self.root().join("netns")) {
            spaces.extend(
                rd.flatten()
                    .map(|e| Some(e.file_name().to_string_lossy().into_owned())),
            );
        }
        spaces
    }

    /// The namespace and directory of the netdev with this ifindex, wherever it is.
    fn find_ifindex(
        &self,
        ifindex: u32,
    ) -> Result<Option<(Option<String>, PathBuf)>, NetlinkError> {
        for ns in self.namespaces() {
            for (_, d) in self.devs_in(ns.as_deref())? {
                if Self::ifindex_of(&d) == Some(ifindex) {
                    return Ok(Some((ns, d)));
                }
            }
        }
        Ok(None)
    }

    /// Removes the netdev at `dir` of namespace `ns` and everything kept about it.
    fn destroy(&self, extra: &mut Extra, ns: Option<&str>, dir: &Path) -> Result<(), NetlinkError> {
        if let Some(i) = Self::ifindex_of(dir) {
            extra.addrs.remove(&i);
            extra.altnames.remove(&i);
            extra.peers.remove(&i);
            Self::forget_in_ns(extra, ns, i);
        }
        if ns.is_none() {
            let l = self.root().join("sys/class/net").join(file_name(dir));
            match fs::remove_file(&l) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Self::sim_io(&l)(e));
                }
                _ => {}
            }
        }
        fs::remove_dir_all(dir).map_err(Self::sim_io(dir))
    }

    /// Destroys veth end `ifindex` and its peer, wherever they are (`veth_dellink`).
    pub(crate) fn destroy_veth(&self, extra: &mut Extra, ifindex: u32) -> Result<(), NetlinkError> {
        let peer = extra.peers.get(&ifindex).copied();
        for i in std::iter::once(ifindex).chain(peer) {
            if let Some((ns, d)) = self.find_ifindex(i)? {
                self.destroy(extra, ns.as_deref(), &d)?;
            }
            extra.peers.remove(&i);
        }
        Ok(())
    }

    fn next_ifindex(&self) -> Result<u32, NetlinkError> {
        // The sysfs simulator's counter (`SimHost::next_ifindex`): ifindexes are unique
        // across the simulated host's namespaces.
        let p = self.root().join("sim/next_ifindex");
        let counted: u32 = fs::read_to_string(&p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(2);
        // Never one in use (a tree made by hand has no counter).
        let mut n = counted;
        for ns in self.namespaces() {
            for (_, d) in self.devs_in(ns.as_deref())? {
                if let Some(i) = Self::ifindex_of(&d) {
                    n = n.max(i + 1);
                }
            }
        }
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(Self::sim_io(parent))?;
        }
        fs::write(&p, format!("{}", n + 1)).map_err(Self::sim_io(&p))?;
        Ok(n)
    }

    /// A new veth end `name` in namespace `ns`, down, with ifindex `ifindex`.
    fn new_veth_end(&self, ns: Option<&str>, name: &str, ifindex: u32) -> Result<(), NetlinkError> {
        let dir = match ns {
            None => self.sys()?.join("devices/virtual/net").join(name),
            Some(k) => self.ns_dir(k).join("dev").join(name),
        };
        fs::create_dir_all(&dir).map_err(Self::sim_io(&dir))?;
        let [_, b, c, d] = ifindex.to_be_bytes();
        for (attr, v) in [
            ("address", format!("02:76:65:{b:02x}:{c:02x}:{d:02x}")),
            ("broadcast", "ff:ff:ff:ff:ff:ff".to_owned()),
            ("addr_len", "6".to_owned()),
            ("ifindex", ifindex.to_string()),
            ("mtu", "1500".to_owned()),
            ("operstate", "down".to_owned()),
            ("carrier", "0".to_owned()),
            ("flags", "0x1002".to_owned()),
            ("type", "1".to_owned()),
        ] {
            Self::write(&dir, attr, &v)?;
        }
        if ns.is_none() {
            let l = self.root().join("sys/class/net").join(name);
            if let Some(parent) = l.parent() {
                fs::create_dir_all(parent).map_err(Self::sim_io(parent))?;
            }
            std::os::unix::fs::symlink(Path::new("../../devices/virtual/net").join(name), &l)
                .map_err(Self::sim_io(&l))?;
        }
        Ok(())
    }

    pub(crate) fn sim_add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        let ns = self.ns();
        let peer_ns = Self::ns_key(peer_netns)?;
        self.reap_gone_netns()?;
        let _lock = self.lock(true)?;
        let fail = |e: i32| NetlinkError::AddVeth {
            name: name.to_string(),
            peer: peer.to_string(),
            source: errno(e),
        };
        // register_netdevice -> dev_get_valid_name: EINVAL for an invalid name; EEXIST for
        // a name taken in its namespace (the own end: __rtnl_newlink with NLM_F_EXCL; the
        // peer: veth_newlink registering it in the peer's namespace).
        if !dev_valid_name(name) || !dev_valid_name(peer) {
            return Err(fail(libc::EINVAL));
        }
        if self.name_taken(ns, name)?
            || self.name_taken(peer_ns.as_deref(), peer)?
            || (ns == peer_ns.as_deref() && name == peer)
        {
            return Err(fail(libc::EEXIST));
        }
        if let Some(k) = &peer_ns {
            self.record_ns(k, peer_netns)?;
        }
        let (a, b) = (self.next_ifindex()?, self.next_ifindex()?);
        self.new_veth_end(peer_ns.as_deref(), peer, b)?;
        self.new_veth_end(ns, name, a)?;
        let mut extra = self.load_extra()?;
        extra.peers.insert(a, b);
        extra.peers.insert(b, a);
        self.store_extra(&extra)?;
        tracing::debug!(name, peer, "simulated veth pair added");
        Ok(())
    }

    pub(crate) fn sim_del_link(&self, name: &str) -> Result<(), NetlinkError> {
        let ns = self.ns();
        self.reap_gone_netns()?;
        let _lock = self.lock(true)?;
        let dir = self.resolve(ns, name)?;
        let mut extra = self.load_extra()?;
        match Self::ifindex_of(&dir) {
            Some(i) if extra.peers.contains_key(&i) => {
                self.destroy_veth(&mut extra, i)?;
                self.store_extra(&extra)
            }
            // rtnl_dellink: a netdev whose rtnl_link_ops have no dellink (a PCI function's,
            // lo) is EOPNOTSUPP.
            _ => Err(NetlinkError::DelLink {
                name: name.to_string(),
                source: errno(libc::EOPNOTSUPP),
            }),
        }
    }

    pub(crate) fn sim_routes(&self, dev: &str) -> Result<Vec<Route>, NetlinkError> {
        let ns = self.ns();
        if ns.is_none() {
            self.reap_gone_netns()?;
        }
        let dir = self.resolve(ns, dev)?;
        let name = file_name(&dir);
        let Some(i) = Self::ifindex_of(&dir) else {
            return Ok(Vec::new());
        };
        let extra = self.load_extra()?;
        let mut out: Vec<Route> = extra
            .routes
            .get(&slot(ns))
            .into_iter()
            .flatten()
            .filter(|r| r.ifindex == i)
            .map(|r| Route {
                dst: r.dst(),
                gateway: r.gateway,
                dev: name.clone(),
                src: r.src,
                onlink: r.onlink,
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The errno the kernel answers to `ip route add ROUTE` here, or `None` when it takes it.
    fn route_refusal(&self, extra: &Extra, ns: Option<&str>, dir: &Path, r: &Route) -> Option<i32> {
        let v4 = r.dst.addr.is_ipv4();
        let same_family = |ip: Option<IpAddr>| ip.is_none_or(|ip| ip.is_ipv4() == v4);
        // rtm_to_fib_config / rtm_to_fib6_config: an attribute of the other family.
        if !same_family(r.gateway) || !same_family(r.src) {
            return Some(libc::EINVAL);
        }
        // fib_table_insert ("Invalid prefix for given prefix length"); IPv6 masks it.
        if v4 && network(r.dst.addr, r.dst.prefix_len) != r.dst.addr {
            return Some(libc::EINVAL);
        }
        let ifindex = Self::ifindex_of(dir)?;
        let up = Self::flags(dir) & IFF_UP != 0;
        let table: &[SimRoute] = extra.routes.get(&slot(ns)).map_or(&[], |t| t.as_slice());
        // The gateway must be reachable through the netdev without a gateway: a route of it
        // with no gateway covers it (all of them are gone while it is down).
        let on_link = |gw: IpAddr| {
            table
                .iter()
                .any(|x| x.ifindex == ifindex && x.gateway.is_none() && x.covers(gw))
        };
        if v4 {
            match r.gateway {
                // fib_check_nh_v4_gw: onlink needs the netdev up...
                Some(_) if r.onlink && !up => return Some(libc::ENETDOWN),
                Some(_) if r.onlink => {}
                // ... else fib_table_lookup of the gateway fails: ENETUNREACH.
                Some(gw) if !on_link(gw) => return Some(libc::ENETUNREACH),
                Some(_) => {}
                // fib_check_nh_nongw: "Device for nexthop is not up".
                None if !up => return Some(libc::ENETDOWN),
                None => {}
            }
        } else {
            // fib6_nh_init: onlink on a down netdev...
            if r.onlink && !up {
                return Some(libc::ENETDOWN);
            }
            // ... ip6_route_check_nh (not for a link-local gateway, nor onlink): the
            // gateway must resolve to a route without gateway through the netdev...
            if let Some(IpAddr::V6(gw)) = r.gateway
                && !r.onlink
                && !gw.is_unicast_link_local()
                && !on_link(IpAddr::V6(gw))
            {
                return Some(libc::EHOSTUNREACH);
            }
            // ... and then the netdev must be up.
            if !up {
                return Some(libc::ENETDOWN);
            }
        }
        // fib_valid_prefsrc / ip6_route_info_create (ipv6_chk_addr): src must be an address
        // of the namespace.
        if let Some(src) = r.src {
            let ours = self
                .devs_in(ns)
                .unwrap_or_default()
                .iter()
                .filter_map(|(_, d)| Self::ifindex_of(d))
                .filter_map(|i| extra.addrs.get(&i))
                .flatten()
                .any(|s| s.parse::<IfAddr>().is_ok_and(|a| a.addr == src));
            if !ours {
                return Some(libc::EINVAL);
            }
        }
        // fib_table_insert with NLM_F_EXCL: any route to the same prefix with the same
        // metric (0, the kernel's prefix routes too); fib6_add_rt2: the same with metric
        // 1024 (the kernel's IPv6 prefix routes have 256).
        let dst = IfAddr {
            addr: network(r.dst.addr, r.dst.prefix_len),
            prefix_len: r.dst.prefix_len,
        };
        if table.iter().any(|x| x.dst() == dst && (v4 || !x.kernel)) {
            return Some(libc::EEXIST);
        }
        None
    }

    pub(crate) fn sim_route(&self, r: &Route, add: bool) -> Result<(), NetlinkError> {
        let ns = self.ns();
        if ns.is_none() {
            self.reap_gone_netns()?;
        }
        let _lock = self.lock(true)?;
        let dir = self.resolve(ns, &r.dev)?;
        let fail = |e: i32| NetlinkError::Route {
            route: r.clone(),
            add,
            source: errno(e),
        };
        let ifindex = Self::ifindex_of(&dir).ok_or_else(|| fail(libc::ENODEV))?;
        let mut extra = self.load_extra()?;
        let addr = network(r.dst.addr, r.dst.prefix_len);
        if add {
            if let Some(e) = self.route_refusal(&extra, ns, &dir, r) {
                return Err(fail(e));
            }
            extra.routes.entry(slot(ns)).or_default().push(SimRoute {
                addr,
                prefix_len: r.dst.prefix_len,
                gateway: r.gateway,
                ifindex,
                src: r.src,
                onlink: r.onlink,
                kernel: false,
            });
        } else {
            // fib_table_delete / ip6_route_del: the first route to DST through DEV, via GW
            // and with SRC when given; none is ESRCH.
            let t = extra.routes.entry(slot(ns)).or_default();
            let pos = t
                .iter()
                .position(|x| {
                    x.addr == addr
                        && x.prefix_len == r.dst.prefix_len
                        && x.ifindex == ifindex
                        && r.gateway.is_none_or(|g| x.gateway == Some(g))
                        && r.src.is_none_or(|s| x.src == Some(s))
                })
                .ok_or_else(|| fail(libc::ESRCH))?;
            t.remove(pos);
        }
        self.store_extra(&extra)
    }

    /// Where the value of `key` is kept in a namespace: an interface by ifindex (a rename
    /// keeps it; a move or deletion drops it).
    fn sysctl_slot(&self, ns: Option<&str>, k: &SysctlKey<'_>) -> Result<String, NetlinkError> {
        let no_such = || NetlinkError::Sysctl {
            key: format!("{}{}/{}", k.prefix, k.iface, k.leaf),
            value: String::new(),
            source: errno(libc::ENOENT),
        };
        let neigh = k.prefix.ends_with("neigh/");
        match k.iface {
            // /proc/sys/net/ipv4/conf has all and default, .../neigh only default.
            "default" => return Ok(format!("{}default/{}", k.prefix, k.leaf)),
            "all" if !neigh => return Ok(format!("{}all/{}", k.prefix, k.leaf)),
            _ => {}
        }
        // By its name only: /proc/sys knows no altname.
        let dir = match ns {
            None => self.root().join("sys/class/net"),
            Some(key) => self.ns_dir(key).join("dev"),
        }
        .join(k.iface);
        let i = vfpool_host::kfile::real_path(&dir)
            .ok()
            .and_then(|d| Self::ifindex_of(&d))
            .ok_or_else(no_such)?;
        Ok(format!("{}#{i}/{}", k.prefix, k.leaf))
    }

    pub(crate) fn sim_set_sysctl(&self, key: &str, value: &str) -> Result<(), NetlinkError> {
        let k = SysctlKey::parse(key, value)?;
        let ns = self.ns();
        if ns.is_none() {
            self.reap_gone_netns()?;
        }
        let _lock = self.lock(true)?;
        // proc_sys_lookup: no directory for an interface that is not there, ENOENT.
        let stored = self.sysctl_slot(ns, &k).map_err(|e| match e {
            NetlinkError::Sysctl { key, source, .. } => NetlinkError::Sysctl {
                key,
                value: value.to_string(),
                source,
            },
            e => e,
        })?;
        let mut extra = self.load_extra()?;
        extra
            .sysctls
            .entry(slot(ns))
            .or_default()
            .insert(stored, value.to_string());
        self.store_extra(&extra)
    }

    /// The value last written to sysctl `key` (as [`vfpool_netlink::NetOps::set_sysctl`]
    /// takes it) in this backend's namespace; `None` if none was (the simulator does not
    /// know the kernel's defaults).
    pub fn sysctl(&self, key: &str) -> Result<Option<String>, NetlinkError> {
        let k = SysctlKey::parse(key, "0")?;
        let ns = self.ns();
        let stored = self.sysctl_slot(ns, &k)?;
        Ok(self
            .load_extra()?
            .sysctls
            .get(&slot(ns))
            .and_then(|s| s.get(&stored))
            .cloned())
    }
}
