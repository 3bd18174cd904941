//! vfpool's rtnetlink access: PF-side VF configuration (IFLA_VFINFO_LIST), netdev link
//! operations, and moves between network namespaces.
//!
//! The engine talks to [`NetOps`]; two backends implement it:
//! - [`RtNetlink`]: the real kernel, over a synchronous `NETLINK_ROUTE` socket with
//!   netlink-packet-route messages (no `ip` subprocesses);
//! - [`SimNetOps`]: the simulated demo host (a sysfs-like tree in a directory), which
//!   refuses what real drivers refuse (igb has no link state, no min rate, no 802.1ad, ...).
//!
//! Namespaces are always addressed by file descriptor, never by pid; [`run_in_netns`] runs a
//! closure inside one on a dedicated thread.

#![forbid(unsafe_code)]

use std::fmt;
use std::os::fd::BorrowedFd;

use serde::Serialize;
use vfpool_model::{MacAddr, VfConfig, VfSettings};

mod error;
pub mod kfile;
mod knob;
mod netns;
mod rtnl;
mod sim;
pub mod wire;

#[cfg(test)]
mod nstests;

pub use error::NetlinkError;
pub use knob::VfKnob;
pub use netns::{current_netns, run_in_netns};
pub use rtnl::RtNetlink;
pub use sim::{
    SimNetOps, admin_mac as sim_admin_mac, mtu_range_for_driver, vf_chose_mac as sim_vf_chose_mac,
};

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

    /// The inverse: moves netdev `name` that lives in `netns` back into this backend's
    /// namespace, renamed to `new_name` if given (`ip -n NS link set NAME netns 1 [name
    /// NEW]`). What the CNI plugin's DEL needs.
    fn move_from_netns(
        &self,
        netns: BorrowedFd<'_>,
        name: &str,
        new_name: Option<&str>,
    ) -> Result<(), NetlinkError>;
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
}
