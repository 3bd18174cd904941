//! A leased VF's netdev in a container's network namespace: attach (move, rename, MAC,
//! MTU, promiscuous mode off, old addresses flushed, up), detach (the first step of every
//! restore: back to the host under its host name, wherever the netdev is now), `verify`
//! for a CNI CHECK, and an idempotent release for a CNI DEL.
//!
//! The ledger records the attachment (`netns`, `ifname`) *before* the netdev is touched,
//! so a crash half-way leaves a lease that `release` / `gc` detach like any other; detach
//! finds the netdev by the VF's PCI address (the host's sysfs, the parent device of the
//! links in the namespace), not by a name it may no longer have.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use vfpool_model::{InvalidValue, MacAddr, PciAddr};
use vfpool_netlink::{NetOps, NetlinkError, VfKnob, dev_valid_name};

use crate::acquire::AcquireRequest;
use crate::configure::{Configurator, knob_holds};
use crate::engine::Engine;
use crate::error::{EngineError, chain};
use crate::lease::{Lease, LeaseState};
use crate::ledger::Durability;
use vfpool_model::validate_owner;
use vfpool_netlink::NetnsId;

/// How long a detach waits for the kernel to give back the netdev of a namespace that is
/// gone (the kernel's namespace cleanup runs in a work queue, after the last user left).
const NETNS_GONE_WAIT: Duration = Duration::from_secs(3);

/// One way a lease's VF differs from what the lease says (`verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mismatch", rename_all = "kebab-case")]
pub enum Mismatch {
    /// The lease is acquiring, releasing or stale.
    NotActive {
        state: String,
    },
    /// The lease has no netdev attached to a namespace (reserved only).
    NotAttached,
    /// The recorded namespace cannot be opened.
    NetnsGone {
        netns: String,
    },
    /// No netdev of that name in the namespace.
    NetdevMissing {
        ifname: String,
    },
    /// A netdev of that name, but not the VF's.
    WrongDevice {
        ifname: String,
        parent: String,
    },
    NotUp {
        ifname: String,
    },
    Mac {
        want: MacAddr,
        found: Option<MacAddr>,
    },
    Mtu {
        want: u32,
        found: u32,
    },
    Promisc {
        ifname: String,
    },
    /// A PF-side setting (`vlan`, `spoofchk`, `trust`, `max-rate`, ...) is not as applied.
    PfSetting {
        setting: &'static str,
        want: String,
        found: String,
    },
    /// The PF does not report the VF.
    VfNotReported,
    /// An address the attachment should have (CHECK's expected result).
    AddressMissing {
        ifname: String,
        address: vfpool_netlink::IfAddr,
    },
    /// A route the attachment should have.
    RouteMissing {
        route: String,
    },
    /// The service path is not whole.
    ServicePath {
        what: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::NotActive { state } => write!(f, "the lease is {state}, not active"),
            Mismatch::NotAttached => f.write_str("the VF is not attached to a namespace"),
            Mismatch::NetnsGone { netns } => write!(f, "namespace {netns} cannot be opened"),
            Mismatch::NetdevMissing { ifname } => write!(f, "no netdev {ifname} in the namespace"),
            Mismatch::WrongDevice { ifname, parent } => {
                write!(f, "{ifname} is not the leased VF (its device is {parent})")
            }
            Mismatch::NotUp { ifname } => write!(f, "{ifname} is down"),
            Mismatch::Mac { want, found } => match found {
                Some(m) => write!(f, "mac is {m}, want {want}"),
                None => write!(f, "no mac, want {want}"),
            },
            Mismatch::Mtu { want, found } => write!(f, "mtu is {found}, want {want}"),
            Mismatch::Promisc { ifname } => write!(f, "{ifname} is in promiscuous mode"),
            Mismatch::PfSetting {
                setting,
                want,
                found,
            } => write!(f, "{setting} is {found} on the PF, want {want}"),
            Mismatch::VfNotReported => f.write_str("the PF does not report the VF"),
            Mismatch::AddressMissing { ifname, address } => {
                write!(f, "{ifname} lacks address {address}")
            }
            Mismatch::RouteMissing { route } => write!(f, "route {route} is missing"),
            Mismatch::ServicePath { what } => write!(f, "service path: {what}"),
        }
    }
}

/// A netdev name the kernel accepts and keeps as given: `dev_valid_name` (1 to 15 bytes,
/// not `.` or `..`, no `/`, `:` or whitespace) and no `%` (the kernel takes a name with
/// `%` as a pattern and picks a number for it).
pub fn validate_ifname(ifname: &str) -> Result<(), InvalidValue> {
    if !dev_valid_name(ifname) || ifname.contains('%') {
        return Err(InvalidValue::new(
            "ifname",
            ifname,
            "1 to 15 bytes, not . or .., without /, :, % or whitespace",
        ));
    }
    Ok(())
}

/// The checks `acquire` adds for an attach: an ifname is valid and comes with a netns.
pub(crate) fn validate_attach_request(req: &AcquireRequest) -> Result<(), EngineError> {
    if let Some(ifname) = &req.ifname {
        validate_ifname(ifname)?;
        if req.netns.is_none() {
            return Err(InvalidValue::new(
                "ifname",
                ifname,
                "only with a netns to attach the VF's netdev to",
            )
            .into());
        }
    }
    Ok(())
}

impl Engine {
    /// `owner`'s lease.
    fn lease_of(&mut self, owner: &str) -> Result<Lease, EngineError> {
        self.ledger()
            .read(|tx| tx.lease_by_owner(owner))?
            .ok_or_else(|| EngineError::UnknownOwner {
                owner: owner.to_owned(),
            })
    }

    /// Checks `netns` as an acquire does (a network namespace, not the host's: see
    /// `NetOps::check_netns`) and opens it; returns it with its identity, which the lease
    /// records so that `gc` tells a namespace created again under the same path apart.
    fn open_netns(&self, netns: &Path) -> Result<(File, NetnsId), EngineError> {
        let id = self.net().check_netns(netns)?;
        let f = File::open(netns).map_err(|e| {
            InvalidValue::new("netns", netns.display(), format!("cannot open it ({e})"))
        })?;
        Ok((f, id))
    }

    /// `acquire`'s configuration step: the lease applied to its VF and, when the request
    /// has an ifname, the VF's netdev attached to the request's netns (while the lease is
    /// still `acquiring`, so that a failure or a crash rolls all of it back).
    pub(crate) fn apply_and_attach(
        &mut self,
        lease: &mut Lease,
        req: &AcquireRequest,
    ) -> Result<Option<String>, EngineError> {
        let netdev = self.configurator().apply(lease)?;
        if let (Some(ifname), Some(netns)) = (&req.ifname, &req.netns) {
            if netdev.is_none() && req.attach_if_netdev {
                tracing::info!(vf = %lease.vf_pci, owner = %lease.owner, "no netdev (userspace driver): leased, not moved");
                return Ok(None);
            }
            lease.netdev = netdev.clone();
            self.attach_lease(lease, netns, ifname)?;
        }
        Ok(netdev)
    }

    /// Attaches the netdev of `owner`'s active lease to the network namespace `netns` as
    /// `ifname`: moved there, renamed (an own altname of that name dropped first), MAC and
    /// MTU as the lease says, promiscuous mode off, leftover addresses flushed, up. The
    /// second step after a reserve (`acquire` with a named VF and no netns). Attaching
    /// again where it is attached already does it again and succeeds; a half-done attach
    /// is undone and the error says which step failed.
    pub fn attach(
        &mut self,
        owner: &str,
        netns: &Path,
        ifname: &str,
    ) -> Result<Lease, EngineError> {
        validate_owner(owner)?;
        validate_ifname(ifname)?;
        self.open_netns(netns)?;
        let mut lease = self.lease_of(owner)?;
        if lease.state != LeaseState::Active {
            return Err(EngineError::NotActive {
                owner: owner.to_owned(),
                vf: lease.vf_pci,
                state: lease.state.as_str(),
            });
        }
        let ns = netns.display().to_string();
        if let Some(cur) = &lease.ifname {
            if lease.netns.as_deref() != Some(ns.as_str()) || cur != ifname {
                return Err(EngineError::AlreadyAttached {
                    owner: owner.to_owned(),
                    vf: lease.vf_pci,
                    netns: lease.netns.clone().unwrap_or_default(),
                    ifname: cur.clone(),
                });
            }
            // The same again (a retried ADD, or one that crashed half-way): start over.
            let errs = self.configurator().detach(&lease);
            if !errs.is_empty() {
                tracing::warn!(owner, errors = %errs.join("; "), "detaching before attaching again");
            }
        }
        self.attach_lease(&mut lease, netns, ifname)?;
        self.ledger().sync()?;
        tracing::info!(owner, vf = %lease.vf_pci, netns = %ns, ifname, "vf attached");
        Ok(lease)
    }

    /// Records the attachment, then does it; on failure undoes it and forgets it.
    fn attach_lease(
        &mut self,
        lease: &mut Lease,
        netns: &Path,
        ifname: &str,
    ) -> Result<(), EngineError> {
        let (f, ns_id) = self.open_netns(netns)?;
        let host_name = match lease
            .netdev
            .clone()
            .or(self.configurator().vf_netdev(lease.vf_pci)?)
        {
            Some(n) => n,
            None => {
                return Err(EngineError::NoNetdev {
                    vf: lease.vf_pci,
                    owner: lease.owner.clone(),
                    driver: lease
                        .applied
                        .driver
                        .map(|_| "vfio-pci or another without netdev".to_owned())
                        .unwrap_or_default(),
                });
            }
        };
        let ns = netns.display().to_string();
        let id = lease.id;
        let netns_before = (lease.netns.clone(), lease.netns_id);
        self.ledger().write(Durability::Unsynced, |tx| {
            tx.set_attachment(id, Some((&ns, Some(ns_id))), Some(ifname))
        })?;
        lease.netns = Some(ns.clone());
        lease.netns_id = Some(ns_id);
        lease.ifname = Some(ifname.to_owned());
        lease.netdev = Some(host_name.clone());
        let Err((step, source)) = self.attach_steps(lease, &f, &host_name, ifname) else {
            return Ok(());
        };
        let undo = self.configurator().detach(lease);
        if undo.is_empty() {
            // Back in the host: the lease is no longer attached anywhere.
            let (path, ns_id) = &netns_before;
            self.ledger().write(Durability::Unsynced, |tx| {
                tx.set_attachment(id, path.as_deref().map(|p| (p, *ns_id)), None)
            })?;
            lease.ifname = None;
            (lease.netns, lease.netns_id) = netns_before;
        }
        Err(EngineError::Attach {
            vf: lease.vf_pci,
            what: format!("({host_name}) to {ns} as {ifname}"),
            step,
            undo: undo.join("; "),
            source: Box::new(source),
        })
    }

    fn attach_steps(
        &self,
        lease: &Lease,
        netns: &File,
        host_name: &str,
        ifname: &str,
    ) -> Result<(), (&'static str, NetlinkError)> {
        let net = self.net();
        // An altname of the netdev that is the name it gets would make the move fail.
        let link = net.link(host_name).map_err(|e| ("reading the netdev", e))?;
        if link.alt_names.iter().any(|a| a == ifname) {
            net.del_alt_name(host_name, ifname)
                .map_err(|e| ("dropping its altname of the same name", e))?;
        }
        net.move_to_netns(host_name, netns.as_fd(), Some(ifname))
            .map_err(|e| ("moving it into the namespace", e))?;
        crate::fault::point("attach:after-move");
        let inside = net
            .enter_netns(netns.as_fd())
            .map_err(|e| ("entering the namespace", e))?;
        let s = &lease.applied.settings;
        // Only a MAC that differs: the VF asks its PF even for the MAC it has, and igb
        // refuses that once the PF pinned it (the netdev took it before it was pinned).
        if let Some(mac) = s.mac
            && inside.link(ifname).ok().and_then(|l| l.mac) != Some(mac)
        {
            inside
                .set_mac(ifname, mac)
                .map_err(|e| ("setting the mac", e))?;
        }
        if let Some(mtu) = s.mtu {
            inside
                .set_mtu(ifname, mtu)
                .map_err(|e| ("setting the mtu", e))?;
        }
        inside
            .set_promisc(ifname, false)
            .map_err(|e| ("clearing promiscuous mode", e))?;
        inside
            .flush_addresses(ifname)
            .map_err(|e| ("flushing old addresses", e))?;
        inside
            .set_up(ifname, true)
            .map_err(|e| ("bringing it up", e))?;
        Ok(())
    }
}

impl Configurator<'_> {
    /// Brings an attached lease's VF netdev back to the host under its host name
    /// (`lease.netdev`), down, promiscuous mode off, addresses flushed. Finds it by the
    /// VF's PCI address: in the host (the kernel gives back the netdevs of a namespace
    /// that is gone, under their names there or as `devN`), or in the recorded namespace.
    /// Nothing to do for a lease that is not attached. Returns the errors; keeps going.
    pub(crate) fn detach(&self, lease: &Lease) -> Vec<String> {
        let Some(ifname) = &lease.ifname else {
            return Vec::new();
        };
        let mut errs = Vec::new();
        let net = self.net;
        let vf = lease.vf_pci;
        let Some(host_name) = lease.netdev.clone().or(lease.original.netdev.clone()) else {
            return vec![format!(
                "{vf}: no host name recorded to give its netdev back"
            )];
        };
        // Where a DEL nearly always finds it: in the recorded namespace (a few netdevs), so
        // that is looked at first; the host (all of its netdevs) only when it is not there.
        let mut found = None;
        let mut enter_err = None;
        if let Some(ns) = &lease.netns
            && let Ok(f) = File::open(ns)
        {
            match net.enter_netns(f.as_fd()) {
                Ok(inside) => {
                    if let Some((name, by_parent)) = find_vf(&*inside, vf, ifname)
                        // A netdev found by its name only (no parent device: a stand-in) is
                        // the VF's only if the VF is not back in the host already.
                        && (by_parent || {
                            found = self.find_in_host(lease, ifname);
                            found.is_none()
                        })
                    {
                        let steps = [
                            inside.set_up(&name, false),
                            inside.set_promisc(&name, false),
                            inside.flush_addresses(&name).map(drop),
                        ];
                        errs.extend(steps.into_iter().filter_map(|r| r.err()).map(|e| chain(&e)));
                        if let Ok(l) = inside.link(&name)
                            && l.alt_names.contains(&host_name)
                            && let Err(e) = inside.del_alt_name(&name, &host_name)
                        {
                            errs.push(chain(&e));
                        }
                        if let Err(e) = net.move_from_netns(f.as_fd(), &name, Some(&host_name)) {
                            errs.push(chain(&e));
                        }
                    }
                }
                Err(e) => enter_err = Some(chain(&e)),
            }
        }
        if found.is_none() {
            found = self.find_in_host(lease, ifname);
        }
        if found.is_none()
            && let Some(e) = enter_err
        {
            errs.push(e);
        }
        if found.is_none() {
            // The namespace is gone (or going): the kernel gives the netdev back soon.
            let until = Instant::now() + NETNS_GONE_WAIT;
            while found.is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
                found = self.find_in_host(lease, ifname);
            }
        }
        match found {
            None => errs.push(format!(
                "the netdev of {vf} ({ifname} in {}) is in neither that namespace nor the host",
                lease.netns.as_deref().unwrap_or("?")
            )),
            Some(name) if name != host_name => {
                // Given back by the kernel under its name in the namespace, or as devN.
                tracing::debug!(vf = %vf, name, host_name, "renaming the returned netdev back");
                let steps = [
                    net.set_up(&name, false),
                    net.set_promisc(&name, false),
                    net.flush_addresses(&name).map(drop),
                    net.rename_over_own_altname(&name, &host_name),
                ];
                errs.extend(steps.into_iter().filter_map(|r| r.err()).map(|e| chain(&e)));
            }
            Some(_) => {}
        }
        errs
    }

    /// The VF's netdev in the host, if it is there. First by the name sysfs gives it (one
    /// lookup: the host's sysfs lists the netdev while it is in the host's namespace; a
    /// simulated tree names it wherever it is, so it counts only if the host has a netdev
    /// of that name now, of this VF or of no parent device); else among every netdev of the
    /// host by the parent device the kernel reports (a netdev given back by a namespace that
    /// is gone, under another name; which also lets the simulator give those back); else
    /// as the kernel names a netdev it gives back (`ifname`, or `devN` when that is taken)
    /// with the MAC it had: a netdev whose parent the kernel does not report (the tests'
    /// veth stand-ins under a simulated tree, whose sysfs does not follow renames).
    fn find_in_host(&self, lease: &Lease, ifname: &str) -> Option<String> {
        let pci = lease.vf_pci.to_string();
        if let Some(name) = self.vf_netdev(lease.vf_pci).ok().flatten()
            && let Ok(l) = self.net.link(&name)
            && l.parent_dev.as_deref().is_none_or(|p| p == pci)
        {
            return Some(l.name.clone());
        }
        let links = self.net.links().ok()?;
        if let Some(l) = links.iter().find(|l| l.parent_dev.as_deref() == Some(&pci)) {
            return Some(l.name.clone());
        }
        let mac = lease.applied.settings.mac.or(lease.original.mac)?;
        links
            .into_iter()
            .find(|l| {
                l.parent_dev.is_none()
                    && l.mac == Some(mac)
                    && (l.name == ifname || is_kernel_devn(&l.name))
            })
            .map(|l| l.name)
    }
}

/// Whether `name` is one the kernel makes up for a netdev it gives back (`dev%d`).
fn is_kernel_devn(name: &str) -> bool {
    name.strip_prefix("dev")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Engine {
    /// Releases `owner`'s lease, moving its netdev back first; an owner with no lease is
    /// `Ok(None)` ("nothing to release"), as a CNI DEL must be.
    pub fn release_idempotent(&mut self, owner: &str) -> Result<Option<Lease>, EngineError> {
        match self.release(&crate::recover::ReleaseTarget::Owner(owner.to_owned())) {
            Ok(l) => Ok(Some(l)),
            Err(EngineError::UnknownOwner { .. }) => {
                tracing::info!(owner, "nothing to release");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// What a CNI CHECK asks: is `owner`'s lease active, its netdev in the recorded
    /// namespace under the recorded name, up, not promiscuous, with the lease's MAC and
    /// MTU, and are the PF-side settings still those applied? Every difference, typed;
    /// an empty list is "all as leased".
    pub fn verify(&mut self, owner: &str) -> Result<Vec<Mismatch>, EngineError> {
        validate_owner(owner)?;
        let lease = self.lease_of(owner)?;
        if lease.state != LeaseState::Active {
            return Ok(vec![Mismatch::NotActive {
                state: lease.state.as_str().to_owned(),
            }]);
        }
        let mut out = Vec::new();
        let net = self.net();
        let s = &lease.applied.settings;
        if !s.pf_side_is_empty() {
            let cur = net
                .vf_configs(&lease.pf)
                .map_err(|source| EngineError::ReadVf {
                    pf: lease.pf.clone(),
                    source: Box::new(source),
                })?
                .into_iter()
                .find(|(i, _)| *i == lease.vf_index)
                .map(|(_, c)| c);
            match cur {
                None => out.push(Mismatch::VfNotReported),
                Some(cur) => {
                    for k in VfKnob::plan(s, Some(&lease.original.vf)) {
                        if knob_holds(&k, &cur) {
                            continue;
                        }
                        let found = VfKnob::restoring(&cur)
                            .into_iter()
                            .find(|c| c.setting() == k.setting())
                            .map(|c| c.value())
                            .unwrap_or_else(|| "(not reported)".to_owned());
                        out.push(Mismatch::PfSetting {
                            setting: k.setting(),
                            want: k.value(),
                            found,
                        });
                    }
                }
            }
        }
        let (Some(ifname), Some(ns)) = (&lease.ifname, &lease.netns) else {
            out.push(Mismatch::NotAttached);
            return Ok(out);
        };
        let Ok(f) = File::open(ns) else {
            out.push(Mismatch::NetnsGone { netns: ns.clone() });
            return Ok(out);
        };
        let inside = net
            .enter_netns(f.as_fd())
            .map_err(|source| EngineError::ReadNetdev {
                netdev: ifname.clone(),
                source: Box::new(source),
            })?;
        let link = match inside.link(ifname) {
            Ok(l) if l.name == *ifname => l,
            Ok(_) | Err(NetlinkError::LinkNotFound { .. }) => {
                out.push(Mismatch::NetdevMissing {
                    ifname: ifname.clone(),
                });
                return Ok(out);
            }
            Err(source) => {
                return Err(EngineError::ReadNetdev {
                    netdev: ifname.clone(),
                    source: Box::new(source),
                });
            }
        };
        let pci = lease.vf_pci.to_string();
        if let Some(p) = &link.parent_dev
            && *p != pci
        {
            out.push(Mismatch::WrongDevice {
                ifname: ifname.clone(),
                parent: p.clone(),
            });
        }
        if !link.admin_up {
            out.push(Mismatch::NotUp {
                ifname: ifname.clone(),
            });
        }
        if link.promisc {
            out.push(Mismatch::Promisc {
                ifname: ifname.clone(),
            });
        }
        // The MAC asked for, else the VF's own (attaching keeps it; a driver rebind may
        // not, so then only an asked-for MAC is checked).
        let want_mac = s.mac.or(lease
            .original
            .mac
            .filter(|_| lease.applied.driver.is_none()));
        if let Some(mac) = want_mac
            && link.mac != Some(mac)
        {
            out.push(Mismatch::Mac {
                want: mac,
                found: link.mac,
            });
        }
        if let Some(mtu) = s.mtu
            && link.mtu != mtu
        {
            out.push(Mismatch::Mtu {
                want: mtu,
                found: link.mtu,
            });
        }
        Ok(out)
    }
}

/// The VF's netdev among the links of a namespace: by parent device, else by the name it
/// was given there (a netdev with no parent device: a stand-in); and whether it was found
/// by its parent device (then it is certainly the VF's).
fn find_vf(inside: &dyn NetOps, vf: PciAddr, ifname: &str) -> Option<(String, bool)> {
    let pci = vf.to_string();
    let links = inside.links().ok()?;
    if let Some(l) = links.iter().find(|l| l.parent_dev.as_deref() == Some(&pci)) {
        return Some((l.name.clone(), true));
    }
    links
        .iter()
        .find(|l| l.name == ifname && l.parent_dev.is_none())
        .map(|l| (l.name.clone(), false))
}
