//! Attach and detach with --config semantics against a real libvirtd and its QEMU driver
//! (`qemu:///system`), which the test starts in a private mount namespace: its /etc/libvirt,
//! /run, /var/lib, /var/cache and /var/log (and a passwd naming Debian's `libvirt-qemu`
//! user) are directories of the test's temporary directory, so nothing on the host changes.
//! Needs root and Debian's libvirt-daemon and libvirt-daemon-driver-qemu (scripts/test-all.sh
//! installs them); fails without them unless `VFPOOL_ALLOW_SKIP=1`.

#![cfg(feature = "libvirt-api")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "support/libvirtd.rs"]
mod libvirtd;

use std::path::Path;
use std::process::Command;

use common::{chain, mac, macvtap, vf, vm};
use libvirtd::Libvirtd;
use vfpool_libvirt::api::{Libvirt, LibvirtError};
use vfpool_libvirt::{InterfaceKind, interface_xml, interfaces_of, macs_of, vf_addresses_of};
use vfpool_model::PciAddr;

/// A libvirtd of the test's own (`support/libvirtd.rs`) in a temporary directory.
struct Daemon {
    libvirtd: Libvirtd,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Option<Daemon> {
        let is_root = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        if !is_root {
            assert!(
                std::env::var("VFPOOL_ALLOW_SKIP").as_deref() == Ok("1"),
                "the libvirtd tests need root (a private mount namespace); run as root, or set VFPOOL_ALLOW_SKIP=1 to skip them on purpose"
            );
            eprintln!("SKIPPED libvirtd tests: need root (VFPOOL_ALLOW_SKIP=1)");
            return None;
        }
        assert!(
            Path::new("/usr/sbin/libvirtd").exists(),
            "no /usr/sbin/libvirtd: install Debian's libvirt-daemon and libvirt-daemon-driver-qemu (scripts/test-all.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        Some(Daemon {
            libvirtd: Libvirtd::spawn(dir.path()),
            _dir: dir,
        })
    }

    fn uri(&self) -> String {
        self.libvirtd.uri()
    }
}

#[test]
fn attach_and_detach_config_on_a_real_libvirtd() {
    let Some(daemon) = Daemon::start() else {
        return;
    };
    let lv = Libvirt::open(&daemon.uri()).unwrap();
    let mut v = vm("vfpool-qemu-1", vec![vf(0, Some(100))]);
    v.disks.clear();
    lv.define(&v).unwrap();
    let config = lv.config_xml("vfpool-qemu-1").unwrap();
    assert_eq!(
        vf_addresses_of(&config).unwrap(),
        vec![PciAddr::new(0, 3, 0x10, 0)],
        "{config}"
    );

    // A vNIC and a second VF in.
    let vnic = macvtap("eno49", 0x20, Some(100));
    lv.attach_nic("vfpool-qemu-1", &vnic).unwrap();
    lv.attach_nic("vfpool-qemu-1", &vf(1, None)).unwrap();
    let config = lv.config_xml("vfpool-qemu-1").unwrap();
    assert_eq!(
        vf_addresses_of(&config).unwrap(),
        vec![PciAddr::new(0, 3, 0x10, 0), PciAddr::new(0, 3, 0x10, 4)],
        "{config}"
    );
    assert!(
        interfaces_of(&config).unwrap().iter().any(|i| i.kind
            == InterfaceKind::Direct {
                dev: Some("eno49.100".into())
            }),
        "{config}"
    );
    assert!(config.contains("<tag id='100'/>"), "{config}");

    // The same VF again: refused by us, named.
    let again = lv.attach_nic("vfpool-qemu-1", &vf(1, Some(7))).unwrap_err();
    assert!(
        matches!(again, LibvirtError::VfAlreadyAttached { .. }),
        "{again:?}"
    );
    assert_eq!(
        chain(&again),
        "VF 0000:03:10.4 is already in domain 'vfpool-qemu-1'"
    );

    // The vNIC and the first VF out.
    lv.detach_nic("vfpool-qemu-1", &vnic).unwrap();
    lv.detach_nic("vfpool-qemu-1", &vf(0, Some(100))).unwrap();
    let config = lv.config_xml("vfpool-qemu-1").unwrap();
    assert_eq!(macs_of(&config).unwrap(), vec![mac(0x11)], "{config}");

    // Detaching what is not there: libvirt's reason, with the domain named.
    let e = lv.detach_nic("vfpool-qemu-1", &vnic).unwrap_err();
    assert!(
        chain(&e).starts_with("libvirt refused to detach a NIC from domain 'vfpool-qemu-1': "),
        "{}",
        chain(&e)
    );
    lv.undefine("vfpool-qemu-1").unwrap();
    assert!(lv.config_xml("vfpool-qemu-1").is_err());
}

/// Why the renderer and `attach_nic` refuse a duplicate VF: libvirt itself takes the same
/// hostdev twice in a domain's configuration (and then cannot even detach it: two devices
/// match). Shown with the XML handed to libvirt directly, past our checks.
#[test]
fn libvirt_itself_accepts_the_same_vf_twice() {
    let Some(daemon) = Daemon::start() else {
        return;
    };
    let uri = daemon.uri();
    let virsh = |args: &[&str]| {
        Command::new("virsh")
            .arg("-c")
            .arg(&uri)
            .args(args)
            .output()
            .unwrap()
    };
    let mut v = vm("vfpool-qemu-2", vec![vf(2, None)]);
    v.disks.clear();
    let lv = Libvirt::open(&uri).unwrap();
    lv.define(&v).unwrap();
    let file = daemon.libvirtd.dir.join("vf.xml");
    std::fs::write(&file, interface_xml(&vf(2, None)).unwrap()).unwrap();
    let out = virsh(&[
        "attach-device",
        "vfpool-qemu-2",
        file.to_str().unwrap(),
        "--config",
    ]);
    assert!(out.status.success(), "{out:?}");
    let config = lv.config_xml("vfpool-qemu-2").unwrap();
    assert_eq!(
        vf_addresses_of(&config).unwrap(),
        vec![PciAddr::new(0, 3, 0x11, 0); 2]
    );
    let out = virsh(&[
        "detach-device",
        "vfpool-qemu-2",
        file.to_str().unwrap(),
        "--config",
    ]);
    assert!(!out.status.success(), "{out:?}");
    lv.undefine("vfpool-qemu-2").unwrap();
}
