//! Configure: what is done to a VF, without the ledger. A [`Configurator`] holds only the
//! host's sysfs and a [`NetOps`] backend: it snapshots a VF before a lease touches it,
//! applies a lease (PF-side knobs, then the driver, then the VF netdev) and restores the
//! snapshot (PF side first, then the netdev, then the driver). Driver binding itself is
//! [`vfpool_host::driver`].

use vfpool_host::{Sysfs, driver};
use vfpool_model::{InvalidValue, MacAddr, PciAddr, VfConfig, gives_netdev, vf_driver_for_pf};
use vfpool_netlink::{NetOps, NetlinkError, VfKnob};

use crate::engine::Engine;
use crate::error::{EngineError, chain};
use crate::fault;
use crate::hostview::VfSlot;
use crate::lease::{DriverChoice, Lease, Original};

/// Snapshots, applies and restores one VF's configuration. Holds no ledger: what it does is
/// recorded by its caller.
pub(crate) struct Configurator<'a> {
    pub(crate) fs: &'a Sysfs,
    pub(crate) net: &'a dyn NetOps,
}

/// When [`Configurator::ensure_vf_mac`] sets the VF netdev's MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MacSet {
    /// Only when the netdev shows another MAC.
    IfDifferent,
    /// Always: the PF's MAC for the VF was cleared, so the VF must announce its own again.
    Always,
}

impl MacSet {
    /// `Always` after the PF-side MAC was cleared.
    fn after(pf_mac_cleared: bool) -> Self {
        if pf_mac_cleared {
            MacSet::Always
        } else {
            MacSet::IfDifferent
        }
    }
}

impl Engine {
    /// The configurator of this engine's host.
    pub(crate) fn configurator(&self) -> Configurator<'_> {
        Configurator {
            fs: &self.fs,
            net: &*self.net,
        }
    }
}

/// Whether `knob` is already in effect in `c` (applying it would change nothing).
pub(crate) fn knob_holds(knob: &VfKnob, c: &VfConfig) -> bool {
    let mut after = c.clone();
    knob.apply_to(&mut after);
    after == *c
}

impl Configurator<'_> {
    /// Applies a lease to its VF: PF-side knobs, then the driver, then the VF netdev.
    /// Returns the VF's netdev afterwards.
    pub(crate) fn apply(&self, lease: &Lease) -> Result<Option<String>, EngineError> {
        let s = &lease.applied.settings;
        let pf_driver = self.pf_driver(lease.pf_pci);
        // A MAC is given to the VF's own netdev first, then pinned on the PF side. The other
        // order costs a VF driver reload: once the PF holds a MAC for it, igb refuses the
        // VF's own change even to that MAC ("VF N attempted to override administratively
        // set MAC address"), and the netdev takes the PF's MAC only when its driver starts
        // again. Not when the lease binds a driver (the netdev is made again then).
        if let Some(mac) = s.mac
            && lease.applied.driver.is_none()
            && let Some(nd) = self.vf_netdev(lease.vf_pci)?
            && self.net.link(&nd).ok().and_then(|l| l.mac) != Some(mac)
            && let Err(e) = self.net.set_mac(&nd, mac)
        {
            // The PF holds a MAC for it already: the PF side and a reload will do.
            tracing::debug!(vf = %lease.vf_pci, netdev = %nd, error = %e, "the VF did not take the MAC itself");
        }
        for (i, knob) in VfKnob::plan(s, Some(&lease.original.vf)).iter().enumerate() {
            self.net
                .set_vf_knob(&lease.pf, lease.vf_index, knob)
                .map_err(|source| EngineError::SetVf {
                    setting: knob.setting(),
                    driver: pf_driver.clone().unwrap_or_else(|| "(none)".into()),
                    vf: lease.vf_pci,
                    pool: lease.pool.clone(),
                    owner: lease.owner.clone(),
                    source: Box::new(source),
                })?;
            if i == 0 {
                fault::point("acquire:mid-pf");
            }
        }
        fault::point("acquire:after-pf");
        if let Some(choice) = lease.applied.driver {
            let target = match choice {
                DriverChoice::VfioPci => "vfio-pci".to_owned(),
                DriverChoice::Netdevice => match &lease.original.driver {
                    Some(d) if gives_netdev(d) => d.clone(),
                    _ => {
                        let pfd = pf_driver.clone().unwrap_or_default();
                        vf_driver_for_pf(&pfd)
                            .ok_or(EngineError::NoVfDriver {
                                vf: lease.vf_pci,
                                pf_driver: pfd,
                            })?
                            .to_owned()
                    }
                },
            };
            driver::bind(self.fs, lease.vf_pci, Some(&target))?;
        }
        fault::point("acquire:after-driver");
        let mut netdev = self.vf_netdev(lease.vf_pci)?;
        if let Some(mac) = s.mac
            && netdev.is_some()
        {
            netdev = self.ensure_vf_mac(lease.vf_pci, mac, MacSet::IfDifferent)?;
        }
        match &netdev {
            Some(nd) => {
                let set_err = |setting| {
                    let nd = nd.clone();
                    move |source: NetlinkError| EngineError::SetNetdev {
                        setting,
                        netdev: nd,
                        vf: lease.vf_pci,
                        source: Box::new(source),
                    }
                };
                if let Some(mtu) = s.mtu {
                    self.net.set_mtu(nd, mtu).map_err(set_err("mtu"))?;
                }
            }
            None if s.mtu.is_some() => {
                return Err(InvalidValue::new(
                    "mtu",
                    s.mtu.unwrap_or_default(),
                    format!("only for a VF with a netdev ({} has none)", lease.vf_pci),
                )
                .into());
            }
            None => {}
        }
        fault::point("acquire:after-netdev");
        Ok(netdev)
    }

    /// Puts back what `lease` changed, PF side first, then the VF netdev, then the driver.
    /// Idempotent: each setting is compared with what the VF has now, so a restore that was
    /// interrupted can simply run again. Keeps going on errors and returns them all.
    pub(crate) fn restore(&self, lease: &Lease) -> Vec<String> {
        let mut errs = Vec::new();
        let dev = self.fs.path(format!("bus/pci/devices/{}", lease.vf_pci));
        if !self.fs.exists(&dev) {
            return errs;
        }
        // First the netdev back from the container's namespace, under its host name.
        errs.extend(self.detach(lease));
        let s = &lease.applied.settings;
        let orig = &lease.original;
        // Whether the PF-side MAC was cleared: the VF must then announce its own MAC again.
        let mut mac_cleared = false;
        if !s.pf_side_is_empty() {
            match self.net.vf_configs(&lease.pf) {
                Ok(list) => match list.into_iter().find(|(i, _)| *i == lease.vf_index) {
                    Some((_, cur)) => {
                        let mut first = true;
                        for knob in VfKnob::plan(s, Some(&orig.vf)) {
                            let Some(undo) = knob.undo(&orig.vf) else {
                                continue;
                            };
                            // A PF-side MAC that was zero, or the one the VF's own driver had
                            // chosen, was not set by the PF: put back "no MAC set by the PF"
                            // (00:00:00:00:00:00), which lets the VF own its MAC again (igb,
                            // ixgbe); setting the old value would pin it as an admin MAC.
                            let undo = match undo {
                                // Still the original: nothing to undo.
                                VfKnob::Mac(o) if cur.mac == o => continue,
                                VfKnob::Mac(o) if o.is_zero() || Some(o) == orig.mac => {
                                    mac_cleared = true;
                                    VfKnob::Mac(MacAddr::ZERO)
                                }
                                other => other,
                            };
                            if knob_holds(&undo, &cur) {
                                continue;
                            }
                            let r = self.net.set_vf_knob(&lease.pf, lease.vf_index, &undo);
                            let r = match (r, &undo, knob.undo(&orig.vf)) {
                                // A driver that refuses the zero MAC gets the old value back.
                                (Err(_), VfKnob::Mac(z), Some(old))
                                    if z.is_zero() && old != undo =>
                                {
                                    self.net.set_vf_knob(&lease.pf, lease.vf_index, &old)
                                }
                                (r, _, _) => r,
                            };
                            if let Err(e) = r {
                                errs.push(chain(&e));
                            }
                            if first {
                                fault::point("release:mid-pf");
                                first = false;
                            }
                        }
                    }
                    None => errs.push(format!(
                        "{} vf {} is not reported by the PF",
                        lease.pf, lease.vf_index
                    )),
                },
                Err(e) => errs.push(chain(&e)),
            }
        }
        fault::point("release:after-pf");
        // The VF's netdev now (a driver reload during the lease may have renamed it).
        let now_netdev = self.vf_netdev(lease.vf_pci).ok().flatten();
        // MTU and MAC are put back whoever changed them: the lease, or the container inside
        // (a MAC left behind would be the next pod's, a duplicate). A MAC the lease did not
        // ask for is left alone after a driver rebind (the driver chose it).
        if orig.netdev.is_some()
            && let Some(nd) = &now_netdev
        {
            match self.net.link(nd) {
                Ok(link) => {
                    if let Some(mtu) = orig.mtu
                        && link.mtu != mtu
                        && let Err(e) = self.net.set_mtu(nd, mtu)
                    {
                        errs.push(chain(&e));
                    }
                    if (s.mac.is_some() || lease.applied.driver.is_none())
                        && let Some(mac) = orig.mac
                        && !mac.is_zero()
                        && (link.mac != Some(mac) || mac_cleared)
                        && let Err(e) =
                            self.ensure_vf_mac(lease.vf_pci, mac, MacSet::after(mac_cleared))
                    {
                        errs.push(chain(&e));
                    }
                }
                Err(e) => errs.push(chain(&e)),
            }
        }
        fault::point("release:after-netdev");
        if lease.applied.driver.is_some() {
            match driver::current(self.fs, lease.vf_pci) {
                Ok(cur) if cur == orig.driver => {}
                Ok(_) => {
                    if let Err(e) = driver::bind(self.fs, lease.vf_pci, orig.driver.as_deref()) {
                        errs.push(chain(&e));
                    }
                }
                Err(e) => errs.push(chain(&e)),
            }
            if let Err(e) =
                driver::set_driver_override(self.fs, lease.vf_pci, orig.driver_override.as_deref())
            {
                errs.push(chain(&e));
            }
        }
        fault::point("release:after-driver");
        errs
    }

    fn pf_driver(&self, pf: PciAddr) -> Option<String> {
        self.fs
            .link_name(&self.fs.path(format!("bus/pci/devices/{pf}/driver")))
            .ok()
            .flatten()
    }

    pub(crate) fn vf_instance(&self, vf: PciAddr) -> Result<Option<u64>, EngineError> {
        Ok(self
            .fs
            .instance(&self.fs.path(format!("bus/pci/devices/{vf}")))?)
    }

    /// The driver VF `vf` is bound to, if any.
    pub(crate) fn vf_driver(&self, vf: PciAddr) -> Result<Option<String>, EngineError> {
        Ok(self
            .fs
            .link_name(&self.fs.path(format!("bus/pci/devices/{vf}/driver")))?)
    }

    pub(crate) fn vf_netdev(&self, vf: PciAddr) -> Result<Option<String>, EngineError> {
        Ok(self
            .fs
            .list(&self.fs.path(format!("bus/pci/devices/{vf}/net")))?
            .into_iter()
            .next())
    }

    /// Makes the VF's netdev carry `mac`. The VF asks its PF; a driver that does not let an
    /// untrusted VF change a MAC the PF set (igb, ixgbe: "VF attempted to override
    /// administratively set MAC address") is answered by reloading the VF driver, which
    /// comes up with the PF's MAC. Returns the netdev (its name may change on reload).
    /// With [`MacSet::Always`], the MAC is set even when the netdev shows it already (after
    /// the PF's MAC for the VF was cleared, the VF must tell the PF its MAC again).
    fn ensure_vf_mac(
        &self,
        vf: PciAddr,
        mac: MacAddr,
        when: MacSet,
    ) -> Result<Option<String>, EngineError> {
        let Some(nd) = self.vf_netdev(vf)? else {
            return Ok(None);
        };
        if when == MacSet::IfDifferent && self.net.link(&nd).ok().and_then(|l| l.mac) == Some(mac) {
            return Ok(Some(nd));
        }
        let err = match self.net.set_mac(&nd, mac) {
            Ok(()) => return Ok(Some(nd)),
            Err(e) => e,
        };
        tracing::debug!(vf = %vf, netdev = %nd, error = %err, "the VF may not set its MAC; reloading its driver");
        driver::rebind(self.fs, vf)?;
        let after = self.vf_netdev(vf)?;
        if let Some(n) = &after
            && self.net.link(n).ok().and_then(|l| l.mac) == Some(mac)
        {
            return Ok(after);
        }
        Err(EngineError::SetNetdev {
            setting: "mac",
            netdev: nd,
            vf,
            source: Box::new(err),
        })
    }
}

/// The VF as it is before the lease touches it. With `pf_side` false (the lease sets no
/// PF-side knob), a PF that does not report the VF (no IFLA_VFINFO_LIST: a driver without
/// VF info, or a veth standing in for a VF in tests) gives the kernel's defaults: nothing
/// on the PF side will be changed or restored.
pub(crate) fn snapshot(
    net: &dyn NetOps,
    fs: &Sysfs,
    slot: &VfSlot,
    pf_side: bool,
) -> Result<Original, EngineError> {
    let reported = net
        .vf_configs(&slot.pf.name)
        .map_err(|source| EngineError::ReadVf {
            pf: slot.pf.name.clone(),
            source: Box::new(source),
        })?
        .into_iter()
        .find(|(i, _)| *i == slot.index)
        .map(|(_, c)| c);
    let vf = match reported {
        Some(c) => c,
        None if !pf_side => VfConfig::kernel_default(),
        None => {
            return Err(EngineError::VfNotReported {
                pf: slot.pf.name.clone(),
                vf: slot.pci,
            });
        }
    };
    let dev = fs.path(format!("bus/pci/devices/{}", slot.pci));
    let driver_override = driver::driver_override(fs, slot.pci)?;
    let instance = fs.instance(&dev)?;
    let (mut mtu, mut mac) = (None, None);
    if let Some(nd) = &slot.netdev {
        let link = net.link(nd).map_err(|source| EngineError::ReadNetdev {
            netdev: nd.clone(),
            source: Box::new(source),
        })?;
        mtu = Some(link.mtu);
        mac = link.mac;
    }
    Ok(Original {
        vf,
        driver: slot.driver.clone(),
        driver_override,
        netdev: slot.netdev.clone(),
        mtu,
        mac,
        instance,
    })
}
