//! An acquire reads its VF outside the write lock; another process may lease the VF, change
//! it and release it again meanwhile. What the first one read is then not the VF's own
//! configuration, and it must not be recorded as what to restore.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};

use common::{Lab, req, sel};
use vfpool_engine::{Engine, Policy, ReleaseTarget};
use vfpool_model::{MacAddr, VfConfig};
use vfpool_netlink::{IfAddr, LinkInfo, NetOps, NetlinkError, Route, VfKnob};
use vfpool_sim::SimNetOps;

type Hook = Box<dyn FnOnce(&SimNetOps) -> Vec<(u16, VfConfig)> + Send>;

/// The simulated backend, except that the first `vf_configs` runs `hook` instead: what
/// another process does between this process's reads.
struct Meddled {
    inner: Arc<SimNetOps>,
    hook: Mutex<Option<Hook>>,
}

impl NetOps for Meddled {
    fn vf_configs(&self, pf: &str) -> Result<Vec<(u16, VfConfig)>, NetlinkError> {
        let hook = self.hook.lock().unwrap().take();
        match hook {
            Some(h) => Ok(h(&self.inner)),
            None => self.inner.vf_configs(pf),
        }
    }
    fn set_vf_knob(&self, pf: &str, vf: u16, knob: &VfKnob) -> Result<(), NetlinkError> {
        self.inner.set_vf_knob(pf, vf, knob)
    }
    fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        self.inner.link(name)
    }
    fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        self.inner.set_mtu(name, mtu)
    }
    fn set_mac(&self, name: &str, mac: MacAddr) -> Result<(), NetlinkError> {
        self.inner.set_mac(name, mac)
    }
    fn set_up(&self, name: &str, up: bool) -> Result<(), NetlinkError> {
        self.inner.set_up(name, up)
    }
    fn move_to_netns(
        &self,
        name: &str,
        netns: BorrowedFd<'_>,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError> {
        self.inner.move_to_netns(name, netns, new_name)
    }
    fn move_from_netns(
        &self,
        netns: BorrowedFd<'_>,
        name: &str,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError> {
        self.inner.move_from_netns(netns, name, new_name)
    }
    fn enter_netns(&self, netns: BorrowedFd<'_>) -> Result<Box<dyn NetOps>, NetlinkError> {
        self.inner.enter_netns(netns)
    }
    fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        self.inner.links()
    }
    fn rename(&self, name: &str, new_name: &str) -> Result<(), NetlinkError> {
        self.inner.rename(name, new_name)
    }
    fn add_alt_name(&self, name: &str, alt: &str) -> Result<(), NetlinkError> {
        self.inner.add_alt_name(name, alt)
    }
    fn del_alt_name(&self, name: &str, alt: &str) -> Result<(), NetlinkError> {
        self.inner.del_alt_name(name, alt)
    }
    fn set_promisc(&self, name: &str, on: bool) -> Result<(), NetlinkError> {
        self.inner.set_promisc(name, on)
    }
    fn addresses(&self, name: &str) -> Result<Vec<IfAddr>, NetlinkError> {
        self.inner.addresses(name)
    }
    fn add_address(&self, name: &str, addr: IfAddr) -> Result<(), NetlinkError> {
        self.inner.add_address(name, addr)
    }
    fn del_address(&self, name: &str, addr: IfAddr) -> Result<(), NetlinkError> {
        self.inner.del_address(name, addr)
    }
    fn routes(&self, dev: &str) -> Result<Vec<Route>, NetlinkError> {
        self.inner.routes(dev)
    }
    fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.inner.add_route(route)
    }
    fn del_route(&self, route: &Route) -> Result<(), NetlinkError> {
        self.inner.del_route(route)
    }
    fn add_veth(
        &self,
        name: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        self.inner.add_veth(name, peer, peer_netns)
    }
    fn del_link(&self, name: &str) -> Result<(), NetlinkError> {
        self.inner.del_link(name)
    }
    fn set_sysctl(&self, key: &str, value: &str) -> Result<(), NetlinkError> {
        self.inner.set_sysctl(key, value)
    }

    fn announce(&self, name: &str, addrs: &[vfpool_netlink::IfAddr]) -> Result<(), NetlinkError> {
        self.inner.announce(name, addrs)
    }
}

#[test]
fn a_vf_leased_and_released_by_another_process_while_it_was_read_is_read_again() {
    let lab = Lab::new();
    lab.split("eno49", 7);
    lab.engine()
        .pool_create("gold", sel(&["eno49"]), Policy::FirstFit)
        .unwrap();

    // While `a` reads the VF it picked, `b` (another process, as far as the ledger can
    // tell) leases that same VF with VLAN 20; `a` reads it so; then `b` releases it.
    let (state, fs, inner) = (lab.state(), lab.fs.clone(), lab.net.clone());
    let hook: Hook = Box::new(move |net: &SimNetOps| {
        let mut b = Engine::open(&state, fs, inner.clone()).unwrap();
        let mut q = req("gold", "b");
        q.settings.vlan = Some(20);
        let lb = b.acquire(&q).unwrap();
        // a holds the in-flight lock of the VF it picked (the first) while it reads it, so
        // b cannot lease that one under it any more: it takes another.
        assert_ne!(lb.vf_index, 0, "b passes over the VF a holds");
        let seen = net.vf_configs("eno49").unwrap();
        assert_eq!(seen[0].1.vlan, 0);
        assert_eq!(seen[usize::from(lb.vf_index)].1.vlan, 20);
        b.release(&ReleaseTarget::Owner("b".into())).unwrap();
        seen
    });
    let net = Arc::new(Meddled {
        inner: lab.net.clone(),
        hook: Mutex::new(Some(hook)),
    });
    let mut a = Engine::open(&lab.state(), lab.fs.clone(), net).unwrap();
    let mut q = req("gold", "a");
    q.settings.vlan = Some(10);
    let la = a.acquire(&q).unwrap();
    assert_eq!(
        la.original.vf.vlan, 0,
        "a recorded b's VLAN as VF {}'s own",
        la.vf_index
    );
    assert_eq!(lab.vf_config("eno49", la.vf_index).vlan, 10);
    a.release(&ReleaseTarget::Owner("a".into())).unwrap();
    for i in 0..7 {
        lab.assert_pristine("eno49", i, "after both released");
    }
}
