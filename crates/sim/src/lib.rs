//! vfpool's simulated host, the demo host and the tests' host, in one place.
//!
//! It has two halves that call each other, as the kernel's sysfs and rtnetlink share one
//! device model:
//! - [`host`]: [`SimHost`], a generated sysfs tree that the real [`vfpool_host::Sysfs`]
//!   code reads as it reads `/sys`; its writes (an [`vfpool_host::AttrWriter`]) change the
//!   tree the way the kernel would (VFs, links, driver binding, errnos);
//! - [`SimNetOps`], a [`vfpool_netlink::NetOps`] over the same tree: VF configurations,
//!   netdevs, namespaces, refusing what the real drivers refuse.
//!
//! A VF's driver picks its MAC from what the PF set through netlink ([`admin_mac`]), and
//! tells the PF the one it chose; a change of `sriov_numvfs` resets the VFs' netlink state.

#![forbid(unsafe_code)]

pub mod host;
mod net;
mod netns;
mod route;

#[cfg(test)]
mod netns_tests;
#[cfg(test)]
mod route_tests;

pub use host::{
    BCM5720, BondSpec, HostSpec, INTEL_82576, INTEL_82599ES, INTEL_I350, MLX_CX5, Model, PortSpec,
    SimHost,
};
pub use net::{SimNetOps, admin_mac};
