//! Rendering: every value checked, then written through quick-xml's writer, which escapes
//! every text and attribute.

use std::collections::BTreeMap;
use std::io;

use quick_xml::Writer;
use quick_xml::events::BytesText;
use vfpool_model::{InvalidValue, MacAddr, PciAddr};

use crate::types::{Disk, Nic, VfNic, Vm, Vnic, VnicMode};

/// Why a VM, NIC or network could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A VM's or network's own field is out of range.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// A NIC's field is out of range; `index` is the NIC's position in [`Vm::nics`] (from 0).
    #[error("nic {index}")]
    InvalidNic {
        index: usize,
        #[source]
        source: InvalidValue,
    },
    /// A disk's field is out of range; `index` is its position in [`Vm::disks`] (from 0).
    #[error("disk {index}")]
    InvalidDisk {
        index: usize,
        #[source]
        source: InvalidValue,
    },
    /// The same VF twice in one domain: libvirt defines such a domain and fails only when it
    /// starts. The caller de-duplicates; the renderer refuses.
    #[error(
        "VF {pci} is in vm '{vm}' twice (nics {first} and {second}); a VF can back one NIC only"
    )]
    DuplicateVf {
        vm: String,
        pci: PciAddr,
        first: usize,
        second: usize,
    },
    /// The same MAC on two NICs of one domain: libvirt defines it, and then cannot tell the
    /// two apart to detach either.
    #[error(
        "MAC {mac} is on two nics of vm '{vm}' (nics {first} and {second}); each NIC needs its own"
    )]
    DuplicateMac {
        vm: String,
        mac: MacAddr,
        first: usize,
        second: usize,
    },
    /// Writing to the in-memory buffer failed (it does not; quick-xml's writer is generic
    /// over `io::Write`).
    #[error("writing the XML")]
    Write(#[source] io::Error),
}

type Xml = Writer<Vec<u8>>;

fn writer() -> Xml {
    Writer::new_with_indent(Vec::new(), b' ', 2)
}

fn finish(w: Xml) -> String {
    // Only `&str`s went in, so the buffer is UTF-8; lossy conversion cannot change it.
    let mut s = String::from_utf8_lossy(&w.into_inner()).into_owned();
    s.push('\n');
    s
}

/// A complete libvirt domain (`type="kvm"`, `os` `hvm`) for `vm`: its memory, vCPUs, disks
/// and NICs in order. Refuses a VF given to two NICs ([`RenderError::DuplicateVf`]).
pub fn domain_xml(vm: &Vm) -> Result<String, RenderError> {
    check_vm(vm)?;
    let mut w = writer();
    w.create_element("domain")
        .with_attribute(("type", "kvm"))
        .write_inner_content(|w| {
            w.create_element("name")
                .write_text_content(BytesText::new(&vm.name))?;
            if let Some(uuid) = &vm.uuid {
                w.create_element("uuid")
                    .write_text_content(BytesText::new(uuid))?;
            }
            w.create_element("memory")
                .with_attribute(("unit", "MiB"))
                .write_text_content(BytesText::new(&vm.memory_mib.to_string()))?;
            w.create_element("vcpu")
                .write_text_content(BytesText::new(&vm.vcpus.to_string()))?;
            w.create_element("os").write_inner_content(|w| {
                w.create_element("type")
                    .write_text_content(BytesText::new("hvm"))?;
                w.create_element("boot")
                    .with_attribute(("dev", "hd"))
                    .write_empty()?;
                Ok(())
            })?;
            w.create_element("features").write_inner_content(|w| {
                w.create_element("acpi").write_empty()?;
                w.create_element("apic").write_empty()?;
                Ok(())
            })?;
            w.create_element("devices").write_inner_content(|w| {
                for disk in &vm.disks {
                    write_disk(w, disk)?;
                }
                for nic in &vm.nics {
                    write_nic(w, nic)?;
                }
                Ok(())
            })?;
            Ok(())
        })
        .map_err(RenderError::Write)?;
    Ok(finish(w))
}

/// One NIC's `<interface>`, as `virsh attach-device` and `detach-device` take it.
pub fn interface_xml(nic: &Nic) -> Result<String, RenderError> {
    check_nic(nic).map_err(|source| RenderError::InvalidNic { index: 0, source })?;
    let mut w = writer();
    write_nic(&mut w, nic).map_err(RenderError::Write)?;
    Ok(finish(w))
}

/// libvirt's own VF pool on a PF, for those who keep libvirt's pools (`virsh net-define`):
/// `<network><name>NAME</name><forward mode="hostdev" managed="yes"><pf dev="PF"/></forward>`.
pub fn network_xml(name: &str, pf: &str) -> Result<String, RenderError> {
    check_object_name("network name", name)?;
    check_netdev("pf", pf)?;
    let mut w = writer();
    w.create_element("network")
        .write_inner_content(|w| {
            w.create_element("name")
                .write_text_content(BytesText::new(name))?;
            w.create_element("forward")
                .with_attribute(("mode", "hostdev"))
                .with_attribute(("managed", "yes"))
                .write_inner_content(|w| {
                    w.create_element("pf")
                        .with_attribute(("dev", pf))
                        .write_empty()?;
                    Ok(())
                })?;
            Ok(())
        })
        .map_err(RenderError::Write)?;
    Ok(finish(w))
}

fn write_disk(w: &mut Xml, disk: &Disk) -> io::Result<()> {
    // Checked by check_vm: the path is UTF-8.
    let path = disk.path.to_string_lossy();
    w.create_element("disk")
        .with_attribute(("type", "file"))
        .with_attribute(("device", "disk"))
        .write_inner_content(|w| {
            w.create_element("driver")
                .with_attribute(("name", "qemu"))
                .with_attribute(("type", disk.format.as_str()))
                .write_empty()?;
            w.create_element("source")
                .with_attribute(("file", path.as_ref()))
                .write_empty()?;
            w.create_element("target")
                .with_attribute(("dev", disk.target.as_str()))
                .with_attribute(("bus", "virtio"))
                .write_empty()?;
            Ok(())
        })?;
    Ok(())
}

fn write_nic(w: &mut Xml, nic: &Nic) -> io::Result<()> {
    match nic {
        Nic::Vf(vf) => write_vf(w, vf),
        Nic::Vnic(vnic) => write_vnic(w, vnic),
    }
}

fn write_mac(w: &mut Xml, mac: MacAddr) -> io::Result<()> {
    w.create_element("mac")
        .with_attribute(("address", mac.to_string().as_str()))
        .write_empty()?;
    Ok(())
}

fn write_vf(w: &mut Xml, vf: &VfNic) -> io::Result<()> {
    let pci = vf.pci;
    let domain = format!("0x{:04x}", pci.domain);
    let bus = format!("0x{:02x}", pci.bus);
    let slot = format!("0x{:02x}", pci.device);
    let function = format!("0x{:x}", pci.function);
    w.create_element("interface")
        .with_attribute(("type", "hostdev"))
        .with_attribute(("managed", "yes"))
        .write_inner_content(|w| {
            write_mac(w, vf.mac)?;
            w.create_element("source").write_inner_content(|w| {
                w.create_element("address")
                    .with_attribute(("type", "pci"))
                    .with_attribute(("domain", domain.as_str()))
                    .with_attribute(("bus", bus.as_str()))
                    .with_attribute(("slot", slot.as_str()))
                    .with_attribute(("function", function.as_str()))
                    .write_empty()?;
                Ok(())
            })?;
            if let Some(vlan) = vf.vlan {
                w.create_element("vlan").write_inner_content(|w| {
                    w.create_element("tag")
                        .with_attribute(("id", vlan.to_string().as_str()))
                        .write_empty()?;
                    Ok(())
                })?;
            }
            w.create_element("driver")
                .with_attribute(("name", "vfio"))
                .write_empty()?;
            Ok(())
        })?;
    Ok(())
}

fn write_vnic(w: &mut Xml, vnic: &Vnic) -> io::Result<()> {
    let (kind, key, value, mode) = match &vnic.mode {
        VnicMode::Macvtap { dev } => (
            "direct",
            "dev",
            macvtap_source(dev, vnic.vlan),
            Some("bridge"),
        ),
        VnicMode::Bridge { bridge } => ("bridge", "bridge", bridge.clone(), None),
    };
    w.create_element("interface")
        .with_attribute(("type", kind))
        .write_inner_content(|w| {
            write_mac(w, vnic.mac)?;
            let source = w
                .create_element("source")
                .with_attribute((key, value.as_str()));
            match mode {
                Some(mode) => source.with_attribute(("mode", mode)).write_empty()?,
                None => source.write_empty()?,
            };
            w.create_element("model")
                .with_attribute(("type", "virtio"))
                .write_empty()?;
            Ok(())
        })?;
    Ok(())
}

/// The netdev a macvtap sits on: the NIC, or its 802.1Q sub-interface `NIC.VLAN`.
fn macvtap_source(dev: &str, vlan: Option<u16>) -> String {
    match vlan {
        Some(vlan) => format!("{dev}.{vlan}"),
        None => dev.to_owned(),
    }
}

// ---- checks ---------------------------------------------------------------------------

fn check_vm(vm: &Vm) -> Result<(), RenderError> {
    check_object_name("vm name", &vm.name)?;
    if let Some(uuid) = &vm.uuid {
        check_uuid(uuid)?;
    }
    if vm.memory_mib == 0 {
        return Err(InvalidValue::new("memory", "0", "at least 1 MiB").into());
    }
    if vm.vcpus == 0 {
        return Err(InvalidValue::new("vcpus", "0", "at least 1").into());
    }
    for (index, disk) in vm.disks.iter().enumerate() {
        check_disk(disk).map_err(|source| RenderError::InvalidDisk { index, source })?;
    }
    let mut seen: BTreeMap<PciAddr, usize> = BTreeMap::new();
    let mut macs: BTreeMap<MacAddr, usize> = BTreeMap::new();
    for (index, nic) in vm.nics.iter().enumerate() {
        check_nic(nic).map_err(|source| RenderError::InvalidNic { index, source })?;
        if let Nic::Vf(vf) = nic {
            if let Some(&first) = seen.get(&vf.pci) {
                return Err(RenderError::DuplicateVf {
                    vm: vm.name.clone(),
                    pci: vf.pci,
                    first,
                    second: index,
                });
            }
            seen.insert(vf.pci, index);
        }
        let mac = match nic {
            Nic::Vf(vf) => vf.mac,
            Nic::Vnic(vnic) => vnic.mac,
        };
        if let Some(&first) = macs.get(&mac) {
            return Err(RenderError::DuplicateMac {
                vm: vm.name.clone(),
                mac,
                first,
                second: index,
            });
        }
        macs.insert(mac, index);
    }
    Ok(())
}

fn check_nic(nic: &Nic) -> Result<(), InvalidValue> {
    match nic {
        Nic::Vf(vf) => {
            check_mac(vf.mac)?;
            check_vlan(vf.vlan)?;
        }
        Nic::Vnic(vnic) => {
            check_mac(vnic.mac)?;
            check_vlan(vnic.vlan)?;
            match &vnic.mode {
                VnicMode::Macvtap { dev } => {
                    check_netdev("macvtap dev", dev)?;
                    if vnic.vlan.is_some() {
                        check_netdev("macvtap dev.vlan", &macvtap_source(dev, vnic.vlan))?;
                    }
                }
                VnicMode::Bridge { bridge } => {
                    check_netdev("bridge", bridge)?;
                    if let Some(vlan) = vnic.vlan {
                        return Err(InvalidValue::new(
                            "vlan",
                            vlan,
                            "none on a bridge vNIC (a Linux bridge carries a VLAN by being that VLAN's bridge: give its name)",
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_disk(disk: &Disk) -> Result<(), InvalidValue> {
    let shown = disk.path.to_string_lossy();
    if disk.path.to_str().is_none() || !disk.path.is_absolute() || has_control(&shown) {
        return Err(InvalidValue::new(
            "disk path",
            shown,
            "an absolute UTF-8 path without control characters",
        ));
    }
    let t = &disk.target;
    let ok =
        t.len() > 2 && t.starts_with("vd") && t.bytes().skip(2).all(|b| b.is_ascii_lowercase());
    if !ok {
        return Err(InvalidValue::new(
            "disk target",
            t,
            "a virtio disk name: vd and lower-case letters (vda, vdb...)",
        ));
    }
    Ok(())
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A domain's or network's name: libvirt's schema allows anything but a line break; the
/// QEMU driver and the network driver refuse `/`; XML 1.0 cannot carry most control
/// characters at all.
fn check_object_name(field: &'static str, name: &str) -> Result<(), InvalidValue> {
    if name.is_empty() || name.contains('/') || has_control(name) {
        return Err(InvalidValue::new(
            field,
            name,
            "a non-empty name without '/' or control characters",
        ));
    }
    Ok(())
}

/// libvirt's UUID: 32 hex digits, or 8-4-4-4-12.
fn check_uuid(uuid: &str) -> Result<(), InvalidValue> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = uuid.split('-').collect();
    let ok = match parts.as_slice() {
        [all] => hex(all, 32),
        [a, b, c, d, e] => hex(a, 8) && hex(b, 4) && hex(c, 4) && hex(d, 4) && hex(e, 12),
        _ => false,
    };
    if !ok {
        return Err(InvalidValue::new(
            "uuid",
            uuid,
            "8-4-4-4-12 hex digits like 4dea22b3-1d52-d8f3-2516-782e98ab3fa0, or 32 hex digits",
        ));
    }
    Ok(())
}

fn check_mac(mac: MacAddr) -> Result<(), InvalidValue> {
    if mac.is_zero() || mac.is_multicast() {
        return Err(InvalidValue::new(
            "mac",
            mac,
            "a unicast address (first octet even) that is not 00:00:00:00:00:00",
        ));
    }
    Ok(())
}

fn check_vlan(vlan: Option<u16>) -> Result<(), InvalidValue> {
    match vlan {
        Some(v) if !(1..=4094).contains(&v) => Err(InvalidValue::new(
            "vlan",
            v,
            "1..=4094, or none for untagged",
        )),
        _ => Ok(()),
    }
}

/// A netdev name both the kernel (`dev_valid_name`: 1 to 15 bytes, not `.` or `..`) and
/// libvirt's schema (`deviceName`) accept: ASCII letters, digits, `_`, `.`, `-`.
fn check_netdev(field: &'static str, name: &str) -> Result<(), InvalidValue> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(InvalidValue::new(
            field,
            name,
            "a netdev name: 1 to 15 ASCII letters, digits, '_', '.' or '-', not '.' or '..'",
        ));
    }
    Ok(())
}
