//! What a container runtime's network plugin (`vfpool-cni`) asks of the engine: a VF
//! leased to one attachment and moved into its network namespace (`pod_add`), its
//! addresses and routes (`pod_ip`), a service path beside it (`pod_service_path`), a
//! real CHECK (`pod_check`), and all of it given back by DEL (`pod_del`) or GC (`pod_gc`)
//! whatever is left of the namespace; `pod_status` says whether an ADD could succeed.
//!
//! The lease is the lock and the record: its owner is the attachment (the plugin names it
//! from the container id and the ifname), its netns identity tells a namespace made again
//! under the same path apart, and DEL finds the VF by the lease, never by a cached config.
//! The service path's host end is named from the owner, so DEL finds it with no cache too.

use std::collections::HashSet;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::PathBuf;

use serde::Serialize;
use vfpool_model::{InvalidValue, MacAddr, PciAddr, PfRef, VfSettings};
use vfpool_netlink::{IfAddr, NetlinkError, Route};

use crate::acquire::AcquireRequest;
use crate::attach::{Mismatch, validate_ifname};
use crate::engine::Engine;
use crate::error::{EngineError, chain};
use crate::hostview::HostView;
use crate::lease::{Lease, LeaseState, OwnerKind};
use crate::pool::{self, owner_of};
use crate::pools::{find_pool, pf_pool_name, with_pf_pool};

/// The address of the host end of every service path (link-local, the same on each, as
/// Calico's `169.254.1.1`): the pod's route to the service CIDR goes through it.
pub const SERVICE_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The owner prefix of a device plugin's reservation: `Allocate` leases the VF it hands
/// the kubelet to `deviceplugin/RESOURCE/PCI`, with no namespace, and the CNI ADD that
/// names that VF (`deviceID`) takes it over (see [`Engine::pod_add`]).
pub const DEVICE_PLUGIN_OWNER_PREFIX: &str = "deviceplugin/";

/// Where a pod's VF comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VfSource {
    /// A free VF of this vfpool pool.
    Pool(String),
    /// A free VF of this PF (netdev name or PCI address) that no pool holds (`master`).
    Pf(String),
    /// This VF, picked by a device plugin (`deviceID`): leased here to the attachment.
    Device(PciAddr),
}

/// What an ADD asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRequest {
    /// The attachment: one lease per owner.
    pub owner: String,
    pub source: VfSource,
    pub settings: VfSettings,
    /// The container's network namespace (a path to an nsfs file).
    pub netns: PathBuf,
    /// The VF netdev's name there.
    pub ifname: String,
}

/// What an ADD did.
#[derive(Debug, Clone, Serialize)]
pub struct PodAttachment {
    pub lease: Lease,
    /// The netdev's MAC in the namespace; `None` when the VF has no netdev (bound to
    /// vfio-pci for a userspace driver): it was leased but not moved, and a result names
    /// its PCI address.
    pub mac: Option<MacAddr>,
    pub mtu: Option<u32>,
    /// The driver the VF is bound to.
    pub driver: Option<String>,
}

impl PodAttachment {
    /// Whether the VF's netdev is in the namespace (false for a userspace VF).
    pub fn moved(&self) -> bool {
        self.lease.ifname.is_some()
    }
}

/// The addresses and routes of a pod's VF netdev (an IPAM result's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIp {
    pub addresses: Vec<IfAddr>,
    /// Routes through the VF netdev (their `dev` is replaced by the attachment's ifname).
    pub routes: Vec<Route>,
}

/// A service path: a veth pair beside the VF so that traffic to the cluster's service
/// CIDRs goes through the host's namespace, where kube-proxy's rules apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePath {
    /// IPv4 prefixes (`10.96.0.0/12`).
    pub cidrs: Vec<IfAddr>,
    /// The pod's IPv4 addresses: the source of its service traffic, and what the host
    /// routes back through the veth.
    pub pod_addrs: Vec<Ipv4Addr>,
}

/// The two ends of a service path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEnds {
    /// In the host's namespace, named from the owner ([`service_host_ifname`]).
    pub host: String,
    /// In the pod's namespace ([`service_pod_ifname`]).
    pub pod: String,
}

/// What a DEL did.
#[derive(Debug, Clone, Serialize)]
pub struct PodRelease {
    /// The lease released; `None` when the owner had none (nothing to do).
    pub lease: Option<Lease>,
    /// Whether a service path was found and removed.
    pub service_path: bool,
}

/// What a GC did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PodGcReport {
    /// The owners whose leases were released.
    pub released: Vec<String>,
    /// One line per owner that could not be (GC goes on past them).
    pub errors: Vec<String>,
}

/// The host end's name of `owner`'s service path: `vfs` and 12 hex digits of a hash of
/// the owner (15 bytes, a valid netdev name), so that DEL finds it from the owner alone.
pub fn service_host_ifname(owner: &str) -> String {
    // FNV-1a, 64 bits: stable across releases and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in owner.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("vfs{:012x}", h >> 16)
}

/// The pod end's name of a service path beside `ifname`: `svc-IFNAME`, cut to 15 bytes.
pub fn service_pod_ifname(ifname: &str) -> String {
    let mut s = format!("svc-{ifname}");
    while s.len() > 15 {
        s.pop();
    }
    s
}

fn net_err(owner: &str, what: String) -> impl FnOnce(NetlinkError) -> EngineError + '_ {
    move |source| EngineError::PodNet {
        owner: owner.to_owned(),
        what,
        source: Box::new(source),
    }
}

impl Engine {
    /// The pool an ADD leases from and the VF it names, if it names one. A device
    /// plugin's VF is leased in the pool that holds it, or in its PF's pool when none does.
    pub(crate) fn resolve_source(
        &mut self,
        source: &VfSource,
    ) -> Result<(String, Option<PciAddr>), EngineError> {
        match source {
            VfSource::Pool(p) => Ok((p.clone(), None)),
            VfSource::Pf(pf) => {
                let r = PfRef::parse(pf).map_err(|_| {
                    InvalidValue::new("master", pf, "a PF's netdev name or PCI address")
                })?;
                let host = HostView::scan_named_pfs(&self.fs, &[&r])?;
                if host.pfs.is_empty() {
                    return Err(InvalidValue::new(
                        "master",
                        pf,
                        "an SR-IOV PF of this host (netdev name or PCI address)",
                    )
                    .into());
                }
                Ok((pf_pool_name(pf), None))
            }
            VfSource::Device(vf) => {
                let physfn = self.fs.path(format!("bus/pci/devices/{vf}/physfn"));
                let pf_pci = self
                    .fs
                    .link_name(&physfn)?
                    .and_then(|t| t.parse::<PciAddr>().ok())
                    .ok_or(EngineError::UnknownVf { vf: *vf })?;
                let host = HostView::scan_named_pfs(&self.fs, &[&PfRef::Pci(pf_pci)])?;
                let pf = host
                    .pfs
                    .iter()
                    .find(|p| p.pci == pf_pci)
                    .ok_or(EngineError::UnknownVf { vf: *vf })?;
                let index = pf
                    .nic
                    .vf_slots
                    .iter()
                    .find(|(_, a)| *a == Some(*vf))
                    .map(|(i, _)| *i)
                    .ok_or(EngineError::UnknownVf { vf: *vf })?;
                let pools = self.ledger.read(|tx| tx.pools())?;
                let pool = owner_of(&pools, &pf.facts, index)
                    .map(str::to_owned)
                    .unwrap_or_else(|| pf_pool_name(&pf_pci.to_string()));
                Ok((pool, Some(*vf)))
            }
        }
    }

    /// ADD: leases a VF to `req.owner` (configured as `req.settings`), moves its netdev into
    /// `req.netns` as `req.ifname` (renamed over a stale altname, MAC and MTU set,
    /// promiscuous mode off, old addresses flushed, up). A VF without a netdev (vfio-pci)
    /// is leased and not moved. All or nothing.
    ///
    /// The same attachment again (a retried ADD) with its lease active in the same
    /// namespace returns that lease; any other lease of the owner (recorded for another
    /// namespace, one that is gone; or left half made by a process that died) is released
    /// first, so a skipped DEL never holds a VF (or its MAC) twice.
    pub fn pod_add(&mut self, req: &PodRequest) -> Result<PodAttachment, EngineError> {
        vfpool_model::validate_owner(&req.owner)?;
        validate_ifname(&req.ifname)?;
        let ns_id = self.net().check_netns(&req.netns)?;
        let existing = self.ledger.read(|tx| tx.lease_by_owner(&req.owner))?;
        if let Some(l) = existing {
            let same_ns = l.netns_id == Some(ns_id)
                && l.netns.as_deref() == Some(req.netns.to_string_lossy().as_ref());
            if same_ns && l.state == LeaseState::Active && l.ifname.as_deref() == Some(&req.ifname)
            {
                tracing::info!(owner = %req.owner, vf = %l.vf_pci, "already attached; ADD again is a no-op");
                return self.attachment_of(l);
            }
            // Another namespace (the old one is gone: a DEL never came), or a lease a dead
            // process left half made or half released: give it back first (a lease another
            // process is working on right now is busy: try again).
            tracing::warn!(owner = %req.owner, vf = %l.vf_pci, old = ?l.netns, state = l.state.as_str(), "the owner holds a lease that is not this attachment's; releasing it first");
            self.pod_del(&req.owner)?;
        }
        if let VfSource::Device(vf) = &req.source {
            self.take_over_reservation(*vf)?;
        }
        let (pool, vf) = self.resolve_source(&req.source)?;
        let mut a = AcquireRequest::new(&pool, &req.owner);
        a.owner_kind = OwnerKind::Container;
        a.vf = vf;
        a.settings = req.settings.clone();
        a.netns = Some(req.netns.clone());
        a.ifname = Some(req.ifname.clone());
        a.attach_if_netdev = true;
        let lease = self.acquire(&a)?;
        self.attachment_of(lease)
    }

    /// A device plugin's reservation of `vf` (an active lease of a
    /// [`DEVICE_PLUGIN_OWNER_PREFIX`] owner, in no namespace) is released, so that the
    /// attachment the kubelet gave that VF to can lease it. Any other lease stays, and the
    /// acquire that follows refuses the VF naming its owner.
    fn take_over_reservation(&mut self, vf: PciAddr) -> Result<(), EngineError> {
        let Some(l) = self.ledger.read(|tx| tx.lease_by_vf(vf))? else {
            return Ok(());
        };
        if l.owner.starts_with(DEVICE_PLUGIN_OWNER_PREFIX)
            && l.netns.is_none()
            && l.state == LeaseState::Active
        {
            tracing::info!(vf = %vf, reservation = %l.owner, "taking over the device plugin's reservation");
            self.release(&crate::recover::ReleaseTarget::Owner(l.owner))?;
        }
        Ok(())
    }

    fn attachment_of(&self, lease: Lease) -> Result<PodAttachment, EngineError> {
        let driver = self.configurator().vf_driver(lease.vf_pci)?;
        let (mut mac, mut mtu) = (None, None);
        if let (Some(ifname), Some(ns)) = (&lease.ifname, &lease.netns) {
            let f = File::open(ns)
                .map_err(|e| InvalidValue::new("netns", ns, format!("cannot open it ({e})")))?;
            let inside = self
                .net()
                .enter_netns(f.as_fd())
                .map_err(net_err(&lease.owner, format!("entering {ns}")))?;
            let link = inside
                .link(ifname)
                .map_err(net_err(&lease.owner, format!("reading {ifname} in {ns}")))?;
            mac = link.mac;
            mtu = Some(link.mtu);
        }
        Ok(PodAttachment {
            lease,
            mac,
            mtu,
            driver,
        })
    }

    /// `owner`'s active, attached lease and its namespace, opened.
    fn attached(&mut self, owner: &str) -> Result<(Lease, File, String), EngineError> {
        vfpool_model::validate_owner(owner)?;
        let lease = self
            .ledger
            .read(|tx| tx.lease_by_owner(owner))?
            .ok_or_else(|| EngineError::UnknownOwner {
                owner: owner.to_owned(),
            })?;
        let (Some(ifname), Some(ns)) = (lease.ifname.clone(), lease.netns.clone()) else {
            return Err(EngineError::NoNetdev {
                vf: lease.vf_pci,
                owner: owner.to_owned(),
                driver: "a userspace driver (not moved into a namespace)".to_owned(),
            });
        };
        if lease.state != LeaseState::Active {
            return Err(EngineError::NotActive {
                owner: owner.to_owned(),
                vf: lease.vf_pci,
                state: lease.state.as_str(),
            });
        }
        let f = File::open(&ns)
            .map_err(|e| InvalidValue::new("netns", &ns, format!("cannot open it ({e})")))?;
        Ok((lease, f, ifname))
    }

    /// Gives `owner`'s attached VF netdev its addresses and routes (an IPAM result's),
    /// announces the addresses (gratuitous ARP, unsolicited NA) and lets the kernel announce
    /// them again when the link or the MAC changes (`arp_notify`, `ndisc_notify`). All or
    /// nothing: what was added is removed again on a failure. Addresses and routes that
    /// are there already (a retried ADD) are kept.
    pub fn pod_ip(&mut self, owner: &str, ip: &PodIp) -> Result<(), EngineError> {
        let (_lease, f, ifname) = self.attached(owner)?;
        let inside = self
            .net()
            .enter_netns(f.as_fd())
            .map_err(net_err(owner, "entering its namespace".into()))?;
        let mut added_addrs = Vec::new();
        let mut added_routes = Vec::new();
        let r = (|| -> Result<(), EngineError> {
            for key in [
                format!("ipv4/conf/{ifname}/arp_notify"),
                format!("ipv6/conf/{ifname}/ndisc_notify"),
            ] {
                // A namespace without IPv6 has no ipv6/conf: nothing to announce there.
                if let Err(e) = inside.set_sysctl(&key, "1") {
                    tracing::debug!(owner, key, error = %chain(&e), "announce setting not applied");
                }
            }
            let have = inside
                .addresses(&ifname)
                .map_err(net_err(owner, format!("reading the addresses of {ifname}")))?;
            for a in &ip.addresses {
                if have.contains(a) {
                    continue;
                }
                inside
                    .add_address(&ifname, *a)
                    .map_err(net_err(owner, format!("adding {a} to {ifname}")))?;
                added_addrs.push(*a);
            }
            if let Err(e) = inside.announce(&ifname, &ip.addresses) {
                // The addresses are there; a lost announcement only delays the neighbours.
                tracing::warn!(owner, ifname, error = %chain(&e), "cannot announce the addresses");
            }
            let routes_now = inside
                .routes(&ifname)
                .map_err(net_err(owner, format!("reading the routes of {ifname}")))?;
            for r in on_dev(&ip.routes, &ifname) {
                if routes_now.iter().any(|h| same_route(h, &r)) {
                    continue;
                }
                inside
                    .add_route(&r)
                    .map_err(net_err(owner, format!("adding route {r}")))?;
                added_routes.push(r);
            }
            Ok(())
        })();
        if r.is_err() {
            for rt in added_routes.iter().rev() {
                if let Err(e) = inside.del_route(rt) {
                    tracing::warn!(owner, route = %rt, error = %chain(&e), "undo: cannot delete route");
                }
            }
            for a in added_addrs.iter().rev() {
                if let Err(e) = inside.del_address(&ifname, *a) {
                    tracing::warn!(owner, addr = %a, error = %chain(&e), "undo: cannot delete address");
                }
            }
        }
        r
    }

    /// Adds `owner`'s service path: a veth pair, host end [`service_host_ifname`] with
    /// [`SERVICE_GATEWAY`]/32 and a /32 route back to each pod address, pod end
    /// [`service_pod_ifname`] with a route to each service CIDR through the gateway (from
    /// the pod's address). A host end left by an earlier try is replaced. All or nothing.
    pub fn pod_service_path(
        &mut self,
        owner: &str,
        sp: &ServicePath,
    ) -> Result<ServiceEnds, EngineError> {
        let (_lease, f, ifname) = self.attached(owner)?;
        for c in &sp.cidrs {
            if !c.addr.is_ipv4() {
                return Err(InvalidValue::new("serviceRoute.cidr", c, "an IPv4 prefix").into());
            }
        }
        let Some(src) = sp.pod_addrs.first().copied() else {
            return Err(InvalidValue::new(
                "serviceRoute",
                sp.cidrs
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                "only with an IPv4 address on the VF (from IPAM) to send from",
            )
            .into());
        };
        let ends = ServiceEnds {
            host: service_host_ifname(owner),
            pod: service_pod_ifname(&ifname),
        };
        let net = self.net().clone();
        match net.del_link(&ends.host) {
            Ok(()) => tracing::info!(
                owner,
                host = ends.host,
                "replaced a service path left by an earlier try"
            ),
            Err(NetlinkError::LinkNotFound { .. }) => {}
            Err(e) => return Err(net_err(owner, format!("deleting an old {}", ends.host))(e)),
        }
        net.add_veth(&ends.host, &ends.pod, f.as_fd())
            .map_err(net_err(
                owner,
                format!("adding veth {} / {}", ends.host, ends.pod),
            ))?;
        let r = (|| -> Result<(), EngineError> {
            let gw = IfAddr {
                addr: IpAddr::V4(SERVICE_GATEWAY),
                prefix_len: 32,
            };
            net.add_address(&ends.host, gw)
                .map_err(net_err(owner, format!("adding {gw} to {}", ends.host)))?;
            net.set_up(&ends.host, true)
                .map_err(net_err(owner, format!("bringing {} up", ends.host)))?;
            for a in &sp.pod_addrs {
                let r = Route {
                    dst: IfAddr {
                        addr: IpAddr::V4(*a),
                        prefix_len: 32,
                    },
                    gateway: None,
                    dev: ends.host.clone(),
                    src: None,
                    onlink: false,
                };
                net.add_route(&r)
                    .map_err(net_err(owner, format!("adding route {r}")))?;
            }
            let inside = net
                .enter_netns(f.as_fd())
                .map_err(net_err(owner, "entering its namespace".into()))?;
            inside
                .set_up(&ends.pod, true)
                .map_err(net_err(owner, format!("bringing {} up", ends.pod)))?;
            for c in &sp.cidrs {
                let r = service_route(c, &ends.pod, src);
                inside
                    .add_route(&r)
                    .map_err(net_err(owner, format!("adding route {r}")))?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            if let Err(u) = net.del_link(&ends.host) {
                tracing::warn!(owner, host = ends.host, error = %chain(&u), "undo: cannot delete the service veth");
            }
            return Err(e);
        }
        tracing::info!(
            owner,
            host = ends.host,
            pod = ends.pod,
            "service path added"
        );
        Ok(ends)
    }

    /// DEL: removes `owner`'s service path if there is one, then releases its lease (the
    /// netdev back to the host under its host name wherever it is now, every setting
    /// restored). Nothing to do is success; a lease of another owner is never touched.
    pub fn pod_del(&mut self, owner: &str) -> Result<PodRelease, EngineError> {
        vfpool_model::validate_owner(owner)?;
        let host_end = service_host_ifname(owner);
        let service_path = match self.net().del_link(&host_end) {
            Ok(()) => true,
            Err(NetlinkError::LinkNotFound { .. }) => false,
            Err(e) => return Err(net_err(owner, format!("deleting {host_end}"))(e)),
        };
        let lease = self.release_idempotent(owner)?;
        Ok(PodRelease {
            lease,
            service_path,
        })
    }

    /// GC: releases (as [`Self::pod_del`]) every lease whose owner starts with `prefix`
    /// and is not in `keep`, going on past failures (each is one line of the report).
    pub fn pod_gc(
        &mut self,
        prefix: &str,
        keep: &HashSet<String>,
    ) -> Result<PodGcReport, EngineError> {
        let leases = self.leases()?;
        let mut report = PodGcReport::default();
        for l in leases
            .iter()
            .filter(|l| l.owner.starts_with(prefix) && !keep.contains(&l.owner))
        {
            match self.pod_del(&l.owner) {
                Ok(_) => report.released.push(l.owner.clone()),
                Err(e) => report.errors.push(format!("{}: {}", l.owner, chain(&e))),
            }
        }
        tracing::info!(
            prefix,
            released = report.released.len(),
            errors = report.errors.len(),
            "pod gc"
        );
        Ok(report)
    }

    /// STATUS: could an ADD from `source` succeed now? The ledger opened (it did, to make
    /// this engine); a pool or PF needs a free healthy VF (the error says why there is
    /// none); a device plugin's VF is checked at ADD.
    pub fn pod_status(&mut self, source: &VfSource) -> Result<(), EngineError> {
        let name = match source {
            VfSource::Device(_) => return Ok(()),
            VfSource::Pool(p) => p.clone(),
            VfSource::Pf(pf) => self.resolve_source(&VfSource::Pf(pf.clone()))?.0,
        };
        crate::pools::validate_pool_ref(&name)?;
        let (pools, leases) = self.ledger.read(|tx| Ok((tx.pools()?, tx.leases()?)))?;
        let pools = with_pf_pool(pools, &name)?;
        let pool = find_pool(&pools, &name)?;
        let host = self.host()?;
        let st = pool::status(pool, &pools, &host, &leases);
        if st.free == 0 {
            return Err(EngineError::Exhausted {
                pool: name,
                total: st.total,
                leased: st.leased,
                unhealthy: st.unhealthy_text(),
            });
        }
        Ok(())
    }

    /// CHECK: everything [`Self::verify`] checks, and the addresses and routes of `ip` on
    /// the VF netdev, and the service path when one is expected. Every difference, typed.
    pub fn pod_check(
        &mut self,
        owner: &str,
        ip: &PodIp,
        service: Option<&ServicePath>,
    ) -> Result<Vec<Mismatch>, EngineError> {
        let mut out = self.verify(owner)?;
        let lease = self.ledger.read(|tx| tx.lease_by_owner(owner))?;
        if lease.as_ref().is_some_and(|l| l.ifname.is_none()) {
            // A userspace VF (vfio-pci) is not in the namespace: its lease and PF side are
            // all there is to check.
            out.retain(|m| *m != Mismatch::NotAttached);
            return Ok(out);
        }
        if !out.is_empty() {
            return Ok(out);
        }
        let (_lease, f, ifname) = self.attached(owner)?;
        let net = self.net().clone();
        let inside = net
            .enter_netns(f.as_fd())
            .map_err(net_err(owner, "entering its namespace".into()))?;
        let have = inside
            .addresses(&ifname)
            .map_err(net_err(owner, format!("reading the addresses of {ifname}")))?;
        for a in &ip.addresses {
            if !have.contains(a) {
                out.push(Mismatch::AddressMissing {
                    ifname: ifname.clone(),
                    address: *a,
                });
            }
        }
        let routes = inside
            .routes(&ifname)
            .map_err(net_err(owner, format!("reading the routes of {ifname}")))?;
        for r in on_dev(&ip.routes, &ifname) {
            if !routes.iter().any(|h| same_route(h, &r)) {
                out.push(Mismatch::RouteMissing {
                    route: r.to_string(),
                });
            }
        }
        if let Some(sp) = service {
            let ends = ServiceEnds {
                host: service_host_ifname(owner),
                pod: service_pod_ifname(&ifname),
            };
            if net.link(&ends.host).is_err() {
                out.push(Mismatch::ServicePath {
                    what: format!("host end {} missing", ends.host),
                });
            }
            match inside.routes(&ends.pod) {
                Err(_) => out.push(Mismatch::ServicePath {
                    what: format!("pod end {} missing", ends.pod),
                }),
                Ok(have) => {
                    let src = sp
                        .pod_addrs
                        .first()
                        .copied()
                        .unwrap_or(Ipv4Addr::UNSPECIFIED);
                    for c in &sp.cidrs {
                        let want = service_route(c, &ends.pod, src);
                        if !have.iter().any(|h| same_route(h, &want)) {
                            out.push(Mismatch::RouteMissing {
                                route: want.to_string(),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `routes` through netdev `dev` (an IPAM result's routes name no device).
fn on_dev<'a>(routes: &'a [Route], dev: &'a str) -> impl Iterator<Item = Route> + 'a {
    routes.iter().map(move |r| Route {
        dev: dev.to_owned(),
        ..r.clone()
    })
}

/// The pod's route to a service CIDR.
fn service_route(cidr: &IfAddr, pod_end: &str, src: Ipv4Addr) -> Route {
    Route {
        dst: *cidr,
        gateway: Some(IpAddr::V4(SERVICE_GATEWAY)),
        dev: pod_end.to_owned(),
        src: Some(IpAddr::V4(src)),
        onlink: true,
    }
}

/// Whether two routes are the same for CHECK and for a retried ADD: destination,
/// gateway and device (the kernel may report a source or flags the request left out).
fn same_route(have: &Route, want: &Route) -> bool {
    have.dst == want.dst && have.gateway == want.gateway && have.dev == want.dev
}
