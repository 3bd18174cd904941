//! Shared fixtures: the seed's host (a 4-port I350, eno49..eno52, 7 VFs each).
#![allow(dead_code)]

use vfpool_libvirt::{Disk, DiskFormat, Nic, VfNic, Vm, Vnic, VnicMode};
use vfpool_model::{MacAddr, PciAddr};

pub fn mac(last: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0x00, 0x6b, 0x00, last])
}

/// VF `n` of eno49: 0000:03:10.0, 03:10.4, 03:11.0... (igb: offset 0x80, stride 4).
pub fn vf(n: u8, vlan: Option<u16>) -> Nic {
    Nic::Vf(VfNic {
        pci: PciAddr::new(0, 0x03, 0x10 + n / 2, (n % 2) * 4),
        mac: mac(0x10 + n),
        vlan,
    })
}

pub fn macvtap(dev: &str, last: u8, vlan: Option<u16>) -> Nic {
    Nic::Vnic(Vnic {
        mode: VnicMode::Macvtap { dev: dev.into() },
        mac: mac(last),
        vlan,
    })
}

pub fn bridge(bridge: &str, last: u8) -> Nic {
    Nic::Vnic(Vnic {
        mode: VnicMode::Bridge {
            bridge: bridge.into(),
        },
        mac: mac(last),
        vlan: None,
    })
}

pub fn vm(name: &str, nics: Vec<Nic>) -> Vm {
    Vm {
        name: name.into(),
        uuid: Some("4dea22b3-1d52-d8f3-2516-782e98ab3fa0".into()),
        memory_mib: 4096,
        vcpus: 2,
        disks: vec![Disk {
            path: "/var/lib/libvirt/images/z-k8s-n-1.qcow2".into(),
            format: DiskFormat::Qcow2,
            target: "vda".into(),
        }],
        nics,
    }
}

/// The error and its sources on one line, as a binary prints it.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
