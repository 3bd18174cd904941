//! Attach and detach with --config semantics against a real libvirtd and its QEMU driver
//! (`qemu:///system`), which the test starts in a private mount namespace: its /etc/libvirt,
//! /run, /var/lib, /var/cache and /var/log (and a passwd naming Debian's `libvirt-qemu`
//! user) are directories of the test's temporary directory, so nothing on the host changes.
//! Needs root and Debian's libvirt-daemon and libvirt-daemon-driver-qemu (scripts/test-all.sh
//! installs them); fails without them unless `VFPOOL_ALLOW_SKIP=1`.

#![cfg(feature = "libvirt-api")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{chain, mac, macvtap, vf, vm};
use vfpool_libvirt::api::{Libvirt, LibvirtError};
use vfpool_libvirt::{InterfaceKind, interface_xml, interfaces_of, macs_of, vf_addresses_of};
use vfpool_model::PciAddr;

/// A libvirtd of the test's own; killed (by its PID) when dropped.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
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
        let d = dir.path();
        for sub in ["run", "lib", "cache", "log", "etc"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        std::fs::write(
            d.join("etc/qemu.conf"),
            "user = \"root\"\ngroup = \"root\"\nsecurity_driver = \"none\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("etc/libvirtd.conf"),
            "auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n",
        )
        .unwrap();
        // The QEMU driver looks its default user up before it reads qemu.conf.
        let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd.push_str("libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin\n");
        std::fs::write(d.join("passwd"), passwd).unwrap();
        let mut group = std::fs::read_to_string("/etc/group").unwrap();
        group.push_str("libvirt-qemu:x:64055:\n");
        std::fs::write(d.join("group"), group).unwrap();
        let p = |s: &str| d.join(s).display().to_string();
        let script = format!(
            "set -e; mount --bind {} /etc/passwd; mount --bind {} /etc/group; \
             mount --bind {} /run; mount --bind {} /var/lib; mount --bind {} /var/cache; \
             mount --bind {} /var/log; mount --bind {} /etc/libvirt; exec /usr/sbin/libvirtd",
            p("passwd"),
            p("group"),
            p("run"),
            p("lib"),
            p("cache"),
            p("log"),
            p("etc")
        );
        let log = std::fs::File::create(d.join("libvirtd.log")).unwrap();
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, dir };
        let sock = daemon.dir.path().join("run/libvirt/libvirt-sock");
        let start = Instant::now();
        // The socket file appears at bind(), before listen(): wait until it accepts.
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            let log =
                std::fs::read_to_string(daemon.dir.path().join("libvirtd.log")).unwrap_or_default();
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("libvirtd exited ({status}):\n{log}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "libvirtd not listening after 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(daemon)
    }

    fn uri(&self) -> String {
        format!(
            "qemu:///system?socket={}",
            self.dir.path().join("run/libvirt/libvirt-sock").display()
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let file = daemon.dir.path().join("vf.xml");
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
