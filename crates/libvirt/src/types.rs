//! The plain input of the renderer: a VM as the engine knows it, no libvirt types.

use std::path::PathBuf;

use vfpool_model::{MacAddr, PciAddr};

/// A KVM virtual machine to render as a libvirt domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    /// The domain's name: any text but a line break or `/` (the QEMU driver refuses `/`).
    pub name: String,
    /// The domain's UUID (`8-4-4-4-12` hex digits, or 32 hex digits); libvirt makes one when
    /// `None`.
    pub uuid: Option<String>,
    /// Memory in MiB, at least 1.
    pub memory_mib: u64,
    /// Virtual CPUs, at least 1.
    pub vcpus: u32,
    /// Disks, in the order they are given (the first is the boot disk).
    pub disks: Vec<Disk>,
    /// NICs, in the order the guest sees them.
    pub nics: Vec<Nic>,
}

/// A file-backed virtio disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file on the host: an absolute path.
    pub path: PathBuf,
    /// The image format.
    pub format: DiskFormat,
    /// The guest's device name (`vda`, `vdb`...).
    pub target: String,
}

/// A disk image's format, as QEMU's block driver names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A VM NIC: a VF passed through, or a virtio vNIC on the L2's NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nic {
    Vf(VfNic),
    Vnic(Vnic),
}

/// A VF given to the guest whole through vfio-pci (`<interface type="hostdev">`). libvirt
/// sets the MAC and the VLAN on the VF through its PF before the guest starts, and binds the
/// VF to vfio-pci (`managed="yes"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfNic {
    /// The VF's PCI address on the host.
    pub pci: PciAddr,
    /// The guest's MAC: unicast, not all zeros.
    pub mac: MacAddr,
    /// The port VLAN the PF tags the VF's traffic with (1..=4094); `None` for untagged.
    pub vlan: Option<u16>,
}

/// A virtio NIC on the host's network, through the L2's NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vnic {
    /// How the vNIC reaches the network.
    pub mode: VnicMode,
    /// The guest's MAC: unicast, not all zeros.
    pub mac: MacAddr,
    /// The VLAN (1..=4094), or `None` for untagged. For macvtap, the interface's source is
    /// the NIC's 802.1Q sub-interface `NIC.VLAN` (which the caller creates): libvirt 9 sets a
    /// `<vlan>` tag only on hostdev and Open vSwitch interfaces. A Linux bridge carries one
    /// VLAN by being that VLAN's bridge, so a bridge vNIC with a VLAN is refused.
    pub vlan: Option<u16>,
}

/// The two ways a vNIC reaches its L2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VnicMode {
    /// A macvtap on the L2's NIC in bridge mode (`<interface type="direct">`, `<source
    /// dev="NIC" mode="bridge"/>`): guests on one NIC reach each other through the macvtap
    /// bridge, and VFs of the same PF through the NIC's embedded switch.
    Macvtap { dev: String },
    /// A tap on a Linux bridge that holds the L2's NIC (`<interface type="bridge">`).
    Bridge { bridge: String },
}
