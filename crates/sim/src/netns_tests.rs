//! The simulated backend's netdev operations against the kernel's rules (checked on 6.18
//! with veth pairs; `nstests.rs` runs the same sequences on the real kernel).

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::libc;

use vfpool_netlink::{IfAddr, NetOps, NetlinkError, current_netns};

use crate::SimNetOps;

/// igb PF eth0 (0000:01:00.0) with two VFs whose igbvf netdevs are eth0v0 and eth0v1
/// (down), and a virtual veth0 (up).
pub(crate) struct Host {
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) const VF0: &str = "0000:01:10.0";
const VF1: &str = "0000:01:10.1";

impl Host {
    pub(crate) fn new() -> Self {
        let h = Host {
            dir: tempfile::tempdir().unwrap(),
        };
        let sys = h.sys();
        let pf = sys.join("devices/pci0000:00/0000:01:00.0");
        fs::create_dir_all(&pf).unwrap();
        fs::create_dir_all(sys.join("bus/pci/drivers/igb")).unwrap();
        fs::create_dir_all(sys.join("bus/pci/drivers/igbvf")).unwrap();
        symlink("../../../bus/pci/drivers/igb", pf.join("driver")).unwrap();
        fs::write(pf.join("sriov_totalvfs"), "7\n").unwrap();
        fs::write(pf.join("sriov_numvfs"), "2\n").unwrap();
        h.netdev(&pf, "eth0", 2, true);
        for (i, vf) in [VF0, VF1].iter().enumerate() {
            let d = sys.join("devices/pci0000:00").join(vf);
            fs::create_dir_all(&d).unwrap();
            symlink("../../../bus/pci/drivers/igbvf", d.join("driver")).unwrap();
            symlink("../0000:01:00.0", d.join("physfn")).unwrap();
            symlink(format!("../{vf}"), pf.join(format!("virtfn{i}"))).unwrap();
            h.netdev(&d, &format!("eth0v{i}"), 3 + i as u32, false);
        }
        let v = sys.join("devices/virtual/net/veth0");
        fs::create_dir_all(&v).unwrap();
        h.files(&v, 9, true);
        symlink(
            "../../devices/virtual/net/veth0",
            sys.join("class/net/veth0"),
        )
        .unwrap();
        h
    }

    fn sys(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    fn files(&self, nd: &Path, idx: u32, up: bool) {
        for (n, v) in [
            ("address", format!("02:00:00:00:00:{idx:02x}")),
            ("mtu", "1500".into()),
            ("operstate", if up { "up" } else { "down" }.into()),
            ("carrier", if up { "1" } else { "0" }.into()),
            ("flags", if up { "0x1003" } else { "0x1002" }.into()),
            ("ifindex", idx.to_string()),
        ] {
            fs::write(nd.join(n), format!("{v}\n")).unwrap();
        }
    }

    /// A netdev under PCI function `dev`, as the sysfs simulator makes one.
    fn netdev(&self, dev: &Path, name: &str, idx: u32, up: bool) {
        let nd = dev.join("net").join(name);
        fs::create_dir_all(&nd).unwrap();
        self.files(&nd, idx, up);
        let bdf = dev.file_name().unwrap().to_string_lossy().into_owned();
        symlink(format!("../../../{bdf}"), nd.join("device")).unwrap();
        let class = self.sys().join("class/net");
        fs::create_dir_all(&class).unwrap();
        let rel = nd.strip_prefix(self.sys()).unwrap();
        symlink(Path::new("../..").join(rel), class.join(name)).unwrap();
    }

    pub(crate) fn ops(&self) -> SimNetOps {
        SimNetOps::new(self.dir.path())
    }

    /// A "network namespace" of the simulated host: any file, kept open.
    pub(crate) fn netns(&self, name: &str) -> (PathBuf, OwnedFd) {
        let p = self.dir.path().join("run-netns").join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "").unwrap();
        let fd = OwnedFd::from(fs::File::open(&p).unwrap());
        (p, fd)
    }

    /// The netdev names under a PCI function's `net/`, as the host's sysfs shows them.
    fn pci_net(&self, bdf: &str) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(self.sys().join("devices/pci0000:00").join(bdf).join("net"))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        v.sort();
        v
    }

    pub(crate) fn class_net(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.sys().join("class/net"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn errno(e: &NetlinkError) -> i32 {
    e.errno().unwrap_or_else(|| panic!("no errno in {e:?}"))
}

#[test]
fn rename_follows_the_kernels_rules() {
    let h = Host::new();
    let ops = h.ops();
    ops.rename("eth0v0", "net1").unwrap();
    assert_eq!(h.pci_net(VF0), ["net1"]);
    assert!(h.class_net().contains(&"net1".to_string()));
    assert!(!h.class_net().contains(&"eth0v0".to_string()));
    let l = ops.link("net1").unwrap();
    assert_eq!((l.name.as_str(), l.ifindex), ("net1", 3));
    assert_eq!(l.parent_dev.as_deref(), Some(VF0));
    // The kernel keeps no altname on a rename.
    assert!(l.alt_names.is_empty());
    assert!(matches!(
        ops.link("eth0v0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    // Taken as a name.
    let e = ops.rename("net1", "eth0v1").unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    assert!(matches!(e, NetlinkError::Rename { .. }));
    // An up netdev can be renamed (since 6.2).
    ops.rename("veth0", "veth9").unwrap();
    assert!(ops.link("veth9").unwrap().admin_up);
    // dev_valid_name.
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "a:b",
        "a b",
        "a\tb",
        "abcdefghijklmnop",
    ] {
        let e = ops.rename("net1", bad).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{bad:?}");
    }
    ops.rename("net1", "abcdefghijklmno").unwrap();
    ops.rename("abcdefghijklmno", "abcdefghijklmno").unwrap();
    assert!(matches!(
        ops.rename("nope", "x"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
}

#[test]
fn an_altname_blocks_a_rename_until_deleted() {
    let h = Host::new();
    let ops = h.ops();
    ops.add_alt_name("eth0v0", "enp1s16").unwrap();
    ops.add_alt_name("eth0v1", "pod0").unwrap();
    // Found by its altname, reported under its name.
    let l = ops.link("enp1s16").unwrap();
    assert_eq!(l.name, "eth0v0");
    assert_eq!(l.alt_names, ["enp1s16"]);
    // An altname taken as a name or an altname.
    assert_eq!(
        errno(&ops.add_alt_name("eth0v0", "eth0v1").unwrap_err()),
        libc::EEXIST
    );
    assert_eq!(
        errno(&ops.add_alt_name("eth0v0", "pod0").unwrap_err()),
        libc::EEXIST
    );
    // A rename to an altname, its own or another's: EEXIST.
    assert_eq!(
        errno(&ops.rename("eth0v0", "enp1s16").unwrap_err()),
        libc::EEXIST
    );
    assert_eq!(
        errno(&ops.rename("eth0v0", "pod0").unwrap_err()),
        libc::EEXIST
    );
    // Its own is dropped first; another netdev's is left alone.
    ops.rename_over_own_altname("eth0v0", "enp1s16").unwrap();
    let l = ops.link("enp1s16").unwrap();
    assert_eq!((l.name.as_str(), l.alt_names.len()), ("enp1s16", 0));
    let e = ops.rename_over_own_altname("enp1s16", "pod0").unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    assert_eq!(ops.link("eth0v1").unwrap().alt_names, ["pod0"]);
    // Deleting: unknown altname ENOENT, the primary name EINVAL.
    let e = ops.del_alt_name("eth0v1", "nope").unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    assert_eq!(e.to_string(), "cannot delete altname nope of eth0v1");
    assert_eq!(
        errno(&ops.del_alt_name("eth0v1", "eth0v1").unwrap_err()),
        libc::EINVAL
    );
    ops.del_alt_name("eth0v1", "pod0").unwrap();
    assert!(ops.link("eth0v1").unwrap().alt_names.is_empty());
}

#[test]
fn a_netdev_in_a_netns_is_invisible_from_the_host() {
    let h = Host::new();
    let ops = h.ops();
    let (_p, ns) = h.netns("pod1");
    ops.add_alt_name("eth0v0", "enp1s16").unwrap();
    ops.add_address("eth0v0", "10.9.0.1/24".parse().unwrap())
        .unwrap();
    ops.set_up("eth0v0", true).unwrap();
    ops.move_to_netns("eth0v0", ns.as_fd(), Some("net1"))
        .unwrap();

    assert!(matches!(
        ops.link("eth0v0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    assert!(matches!(
        ops.link("enp1s16"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    assert!(matches!(
        ops.link("net1"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    assert!(
        h.pci_net(VF0).is_empty(),
        "sysfs of the host shows no netdev for the VF"
    );
    assert!(!h.class_net().iter().any(|n| n == "eth0v0" || n == "net1"));

    let inside = ops.enter_netns(ns.as_fd()).unwrap();
    let names: Vec<String> = inside
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["net1"]);
    let l = inside.link("net1").unwrap();
    assert!(!l.admin_up, "a moved netdev arrives down");
    assert_eq!(l.parent_dev.as_deref(), Some(VF0));
    assert_eq!(l.alt_names, ["enp1s16"], "altnames travel with the netdev");
    assert!(
        inside.addresses("net1").unwrap().is_empty(),
        "addresses do not"
    );
    // The PF (in the host) is not there.
    assert!(matches!(
        inside.vf_configs("eth0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));

    // Inside: MTU, MAC, up, promisc, addresses.
    inside.set_mtu("net1", 9000).unwrap();
    inside
        .set_mac("net1", "02:aa:00:00:00:01".parse().unwrap())
        .unwrap();
    inside.set_promisc("net1", true).unwrap();
    assert!(inside.link("net1").unwrap().promisc);
    inside.set_promisc("net1", false).unwrap();
    inside.set_up("net1", true).unwrap();
    let l = inside.link("net1").unwrap();
    assert!(l.admin_up && !l.promisc);
    assert_eq!(
        (l.mtu, l.mac.unwrap().to_string().as_str()),
        (9000, "02:aa:00:00:00:01")
    );

    // Back to the host under its old name.
    ops.move_from_netns(ns.as_fd(), "net1", Some("eth0v0"))
        .unwrap();
    assert_eq!(h.pci_net(VF0), ["eth0v0"]);
    assert!(inside.links().unwrap().is_empty());
    let l = ops.link("eth0v0").unwrap();
    assert_eq!((l.mtu, l.admin_up), (9000, false));
}

#[test]
fn a_move_to_a_taken_name_moves_nothing() {
    let h = Host::new();
    let ops = h.ops();
    let (_p, ns) = h.netns("pod1");
    ops.move_to_netns("eth0v1", ns.as_fd(), Some("net1"))
        .unwrap();
    let inside = ops.enter_netns(ns.as_fd()).unwrap();
    // As a name.
    let e = ops
        .move_to_netns("eth0v0", ns.as_fd(), Some("net1"))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    assert!(matches!(e, NetlinkError::MoveToNetns { .. }));
    assert_eq!(h.pci_net(VF0), ["eth0v0"]);
    // As an altname there.
    inside.add_alt_name("net1", "net2").unwrap();
    let e = ops
        .move_to_netns("eth0v0", ns.as_fd(), Some("net2"))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    // One of its own altnames taken there (names are per namespace).
    ops.add_alt_name("eth0v0", "net5").unwrap();
    inside.add_alt_name("net1", "net5").unwrap();
    let e = ops
        .move_to_netns("eth0v0", ns.as_fd(), Some("x"))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    assert_eq!(h.pci_net(VF0), ["eth0v0"]);
    // An invalid name.
    let e = ops
        .move_to_netns("eth0v0", ns.as_fd(), Some("a b"))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    // Moving "into" the host's own namespace is a rename at most.
    let here = current_netns().unwrap();
    ops.move_to_netns("eth0v0", here.as_fd(), None).unwrap();
    assert_eq!(h.pci_net(VF0), ["eth0v0"]);
}

#[test]
fn a_gone_netns_gives_its_netdevs_back_to_the_host() {
    let h = Host::new();
    let ops = h.ops();
    let (p1, ns1) = h.netns("pod1");
    let (p2, ns2) = h.netns("pod2");
    ops.move_to_netns("eth0v0", ns1.as_fd(), Some("net1"))
        .unwrap();
    ops.move_to_netns("eth0v1", ns2.as_fd(), Some("veth0"))
        .unwrap();
    drop((ns1, ns2));
    fs::remove_file(&p1).unwrap();
    fs::remove_file(&p2).unwrap();
    // Back under the in-namespace name; as devIFINDEX where that name is taken.
    let l = ops.link("net1").unwrap();
    assert_eq!(l.parent_dev.as_deref(), Some(VF0));
    assert!(!l.admin_up);
    assert_eq!(h.pci_net(VF0), ["net1"]);
    assert_eq!(h.pci_net(VF1), ["dev4"]);
    assert_eq!(ops.link("dev4").unwrap().parent_dev.as_deref(), Some(VF1));
    assert!(!h.dir.path().join("netns").read_dir().unwrap().any(|_| true));
}

#[test]
fn addresses_and_promisc() {
    let h = Host::new();
    let ops = h.ops();
    let a: IfAddr = "10.1.2.3/24".parse().unwrap();
    let b: IfAddr = "fd00::5/64".parse().unwrap();
    ops.add_address("eth0v0", a).unwrap();
    ops.add_address("eth0v0", b).unwrap();
    let e = ops.add_address("eth0v0", a).unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    assert_eq!(
        e.to_string(),
        "cannot add address 10.1.2.3/24 to eth0v0: the netdev has it already"
    );
    assert_eq!(ops.addresses("eth0v0").unwrap(), [a, b]);
    assert!(ops.addresses("eth0v1").unwrap().is_empty());
    assert_eq!(ops.flush_addresses("eth0v0").unwrap(), 2);
    assert!(ops.addresses("eth0v0").unwrap().is_empty());
    assert_eq!(
        errno(&ops.del_address("eth0v0", a).unwrap_err()),
        libc::EADDRNOTAVAIL
    );
    assert!(!ops.link("eth0v0").unwrap().promisc);
    ops.set_promisc("eth0v0", true).unwrap();
    assert!(ops.link("eth0v0").unwrap().promisc);
    assert!(
        !ops.link("eth0v0").unwrap().admin_up,
        "promisc leaves IFF_UP alone"
    );
    assert!(matches!(
        ops.set_promisc("nope", true),
        Err(NetlinkError::LinkNotFound { .. })
    ));
    for bad in ["10.1.2.3", "10.1.2.3/33", "fd00::1/129", "x/8"] {
        let e = bad.parse::<IfAddr>().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("invalid address '{bad}': ADDR/PREFIX like 10.1.2.3/24")
        );
    }
}
