//! libvirt XML for vfpool's VMs: what a VM with VF NICs and vNICs looks like to libvirt, and
//! what vfpool needs to read back from a domain libvirt hands it.
//!
//! - [`domain_xml`] renders a complete KVM domain from a [`Vm`]: a VF NIC is an
//!   `<interface type="hostdev" managed="yes">` with the VF's explicit PCI address, its MAC,
//!   its VLAN tag and `<driver name="vfio"/>`; a vNIC is a macvtap (`type="direct"`, mode
//!   bridge) or a Linux bridge (`type="bridge"`) interface.
//! - [`interface_xml`] renders one NIC alone, for `virsh attach-device` / `detach-device`.
//! - [`network_xml`] renders libvirt's own VF pool on a PF (`<forward mode="hostdev">`).
//! - [`interfaces_of`], [`vf_addresses_of`] and [`macs_of`] read a domain's XML back (the
//!   libvirt hook gets it on stdin).
//!
//! With the `libvirt-api` feature, [`api`] drives the VM lifecycle through libvirt's C API.
//!
//! Without it, nothing here does I/O or talks to libvirt. Every value is checked before it is written
//! ([`RenderError`] names the field, the value and what is allowed) and every text and
//! attribute is escaped by quick-xml's writer.

#![forbid(unsafe_code)]

#[cfg(feature = "libvirt-api")]
pub mod api;
mod parse;
mod render;
mod types;

pub use parse::{
    DomainInterface, InterfaceKind, ParseError, interfaces_of, macs_of, pci_hostdevs_of,
    vf_addresses_of,
};
pub use render::{RenderError, domain_xml, interface_xml, network_xml};
pub use types::{Disk, DiskFormat, Nic, VfNic, Vm, Vnic, VnicMode};
