//! The simulated backend over a small hand-made sysfs tree.

use std::os::unix::fs::symlink;
use std::sync::Arc;

use nix::libc;
use vfpool_model::{LinkState, VfSettings};

use super::*;

/// A simulated host: igb eth0 (an 82576, 7 VFs, link up at 1000 Mb/s), ixgbe PF named `ixgbe`
/// (an 82599, 4 VFs, link up at 10000 Mb/s), mlx5_core eth2 (8 VFs, link down), igb eth3 (an
/// 82576, SR-IOV capable, 0 VFs, link down), igb eth4 (an I350, 7 VFs, link up), a virtual
/// veth0.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let h = Host { dir };
        h.pf("0000:01:00.0", "eth0", "igb", 7, 7, "up", 2);
        h.pf("0000:02:00.0", "ixgbe", "ixgbe", 63, 4, "up", 3);
        h.pf("0000:03:00.0", "eth2", "mlx5_core", 127, 8, "down", 4);
        h.pf("0000:04:00.0", "eth3", "igb", 7, 0, "down", 5);
        h.pf("0000:05:00.0", "eth4", "igb", 7, 7, "up", 7);
        for (pci, ifname, device, speed) in [
            ("0000:01:00.0", "eth0", "0x10c9", "1000"),
            ("0000:02:00.0", "ixgbe", "0x10fb", "10000"),
            ("0000:03:00.0", "eth2", "0x1017", "-1"),
            ("0000:04:00.0", "eth3", "0x10c9", "-1"),
            ("0000:05:00.0", "eth4", "0x1521", "1000"),
        ] {
            let dev = h.sys().join("devices/pci0000:00").join(pci);
            fs::write(dev.join("device"), format!("{device}\n")).unwrap();
            fs::write(
                dev.join("net").join(ifname).join("speed"),
                format!("{speed}\n"),
            )
            .unwrap();
        }
        h.netdev(&h.sys().join("devices/virtual/net/veth0"), "veth0", 6, "up");
        h
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn sys(&self) -> PathBuf {
        self.root().join("sys")
    }

    fn ops(&self) -> SimNetOps {
        SimNetOps::new(self.root())
    }

    #[allow(clippy::too_many_arguments)]
    fn pf(
        &self,
        pci: &str,
        ifname: &str,
        driver: &str,
        total: u16,
        num: u16,
        oper: &str,
        idx: u32,
    ) {
        let sys = self.sys();
        let drv = sys.join("bus/pci/drivers").join(driver);
        fs::create_dir_all(&drv).unwrap();
        let dev = sys.join("devices/pci0000:00").join(pci);
        fs::create_dir_all(&dev).unwrap();
        symlink(
            format!("../../bus/pci/drivers/{driver}"),
            dev.join("driver"),
        )
        .unwrap();
        fs::write(dev.join("sriov_totalvfs"), format!("{total}\n")).unwrap();
        fs::write(dev.join("sriov_numvfs"), format!("{num}\n")).unwrap();
        self.netdev(&dev.join("net").join(ifname), ifname, idx, oper);
    }

    fn netdev(&self, dir: &Path, ifname: &str, idx: u32, oper: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("address"), format!("52:54:00:12:34:{idx:02x}\n")).unwrap();
        fs::write(dir.join("mtu"), "1500\n").unwrap();
        fs::write(dir.join("operstate"), format!("{oper}\n")).unwrap();
        fs::write(
            dir.join("carrier"),
            if oper == "up" { "1\n" } else { "0\n" },
        )
        .unwrap();
        fs::write(dir.join("ifindex"), format!("{idx}\n")).unwrap();
        let class = self.sys().join("class/net");
        fs::create_dir_all(&class).unwrap();
        let rel = dir.strip_prefix(self.sys()).unwrap();
        symlink(Path::new("../..").join(rel), class.join(ifname)).unwrap();
    }

    fn set_numvfs(&self, pci: &str, pf: &str, n: u16) {
        let dev = self.sys().join("devices/pci0000:00").join(pci);
        fs::write(dev.join("sriov_numvfs"), format!("{n}\n")).unwrap();
        // The sysfs simulator's side of the contract.
        let _ = fs::remove_file(self.root().join("netlink").join(format!("{pf}.json")));
    }
}

fn errno(e: &NetlinkError) -> i32 {
    e.errno().unwrap_or_else(|| panic!("no errno in {e:?}"))
}

fn set(ops: &SimNetOps, pf: &str, vf: u16, k: VfKnob) -> Result<(), NetlinkError> {
    ops.set_vf_knob(pf, vf, &k)
}

fn vf(ops: &SimNetOps, pf: &str, vf: u16) -> VfConfig {
    ops.vf_configs(pf)
        .unwrap()
        .into_iter()
        .find(|(i, _)| *i == vf)
        .unwrap()
        .1
}

const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

#[test]
fn fresh_vfs_report_kernel_defaults() {
    let h = Host::new();
    let ops = h.ops();
    let vfs = ops.vf_configs("eth0").unwrap();
    assert_eq!(vfs.len(), 7);
    assert_eq!(vfs[6], (6, kernel_default_vf()));
    assert_eq!(vfs[0].1.spoofchk, Some(true));
    assert_eq!(vfs[0].1.trust, Some(false));
    assert_eq!(vfs[0].1.link_state, Some(LinkState::Auto));
    assert!(ops.vf_configs("eth3").unwrap().is_empty(), "0 VFs");
    assert!(ops.vf_configs("veth0").unwrap().is_empty(), "not a PF");
    assert!(matches!(
        ops.vf_configs("nope0"),
        Err(NetlinkError::LinkNotFound { .. })
    ));
}

#[test]
fn igb_accepts_what_the_lab_igb_accepts() {
    let h = Host::new();
    let ops = h.ops();
    set(&ops, "eth0", 0, VfKnob::Mac(MAC1)).unwrap();
    set(
        &ops,
        "eth0",
        3,
        VfKnob::Vlan {
            vlan: 200,
            qos: 5,
            proto: VlanProto::Dot1Q,
        },
    )
    .unwrap();
    set(&ops, "eth0", 0, VfKnob::Trust(true)).unwrap();
    set(&ops, "eth0", 1, VfKnob::SpoofChk(false)).unwrap();
    set(&ops, "eth0", 4, VfKnob::Rate { min: 0, max: 100 }).unwrap();
    let vfs = ops.vf_configs("eth0").unwrap();
    assert_eq!(vfs[0].1.mac, MAC1);
    assert_eq!(vfs[0].1.trust, Some(true));
    assert_eq!(vfs[1].1.spoofchk, Some(false));
    assert_eq!((vfs[3].1.vlan, vfs[3].1.qos), (200, 5));
    assert_eq!(vfs[4].1.max_tx_rate, 100);
    assert_eq!(vfs[5].1, kernel_default_vf());
}

#[test]
fn igb_rejects_like_the_real_driver() {
    let h = Host::new();
    let ops = h.ops();
    let e = set(&ops, "eth0", 2, VfKnob::LinkState(LinkState::Enable)).unwrap_err();
    assert_eq!(errno(&e), libc::EOPNOTSUPP);
    assert_eq!(
        e.to_string(),
        "cannot set link-state enable on eth0 vf 2: the driver does not support this setting"
    );
    // Link state is refused whatever the value, even the one igb reports.
    let e = set(&ops, "eth0", 2, VfKnob::LinkState(LinkState::Auto)).unwrap_err();
    assert_eq!(errno(&e), libc::EOPNOTSUPP);

    let e = set(&ops, "eth0", 2, VfKnob::Rate { min: 10, max: 0 }).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert!(e.to_string().starts_with("cannot set min-rate 10"), "{e}");

    let e = set(
        &ops,
        "eth0",
        3,
        VfKnob::Vlan {
            vlan: 300,
            qos: 0,
            proto: VlanProto::Dot1AD,
        },
    )
    .unwrap_err();
    assert_eq!(errno(&e), libc::EPROTONOSUPPORT);
    assert!(
        e.to_string()
            .starts_with("cannot set vlan-proto 802.1ad (vlan 300 qos 0) on eth0 vf 3"),
        "{e}"
    );

    // Nothing of the refused knobs was recorded.
    assert_eq!(vf(&ops, "eth0", 2), kernel_default_vf());
    assert_eq!(vf(&ops, "eth0", 3), kernel_default_vf());
}

#[test]
fn vf_index_out_of_range_is_einval() {
    let h = Host::new();
    let ops = h.ops();
    let e = set(&ops, "eth0", 7, VfKnob::Mac(MAC1)).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert!(e.to_string().contains("eth0 vf 7"), "{e}");
    // A PF with SR-IOV but no VFs enabled.
    let e = set(&ops, "eth3", 0, VfKnob::Trust(true)).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
}

#[test]
fn max_rate_needs_the_pf_link_up_on_igb() {
    let h = Host::new();
    let ops = h.ops();
    h.set_numvfs("0000:04:00.0", "eth3", 2);
    let e = set(&ops, "eth3", 1, VfKnob::Rate { min: 0, max: 100 }).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert!(
        e.to_string()
            .starts_with("cannot set max-rate 100 on eth3 vf 1"),
        "{e}"
    );
    // Clearing it is fine (igb_down zeroes the link speed; the rate must not exceed it).
    set(&ops, "eth3", 1, VfKnob::Rate { min: 0, max: 0 }).unwrap();
    ops.set_up("eth3", true).unwrap();
    set(&ops, "eth3", 1, VfKnob::Rate { min: 0, max: 100 }).unwrap();
    assert_eq!(vf(&ops, "eth3", 1).max_tx_rate, 100);
    // Up to the link speed (1000 Mb/s), not above.
    set(&ops, "eth3", 1, VfKnob::Rate { min: 0, max: 1000 }).unwrap();
    let e = set(&ops, "eth3", 1, VfKnob::Rate { min: 0, max: 1001 }).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    // Down again: no new limit, but clearing it is fine.
    ops.set_up("eth3", false).unwrap();
    let e = set(&ops, "eth3", 1, VfKnob::Rate { min: 0, max: 10 }).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    set(&ops, "eth3", 1, VfKnob::Rate { min: 0, max: 0 }).unwrap();
}

#[test]
fn igb_limits_rates_only_on_the_82576() {
    let h = Host::new();
    let ops = h.ops();
    // igb_ndo_set_vf_bw: EOPNOTSUPP on an I350 (link up), any rate, even 0, before the VF
    // index is looked at.
    for (vf_index, min, max) in [(0, 0, 100), (0, 0, 0), (0, 10, 100), (9, 0, 100)] {
        let e = set(&ops, "eth4", vf_index, VfKnob::Rate { min, max }).unwrap_err();
        assert_eq!(
            errno(&e),
            libc::EOPNOTSUPP,
            "vf {vf_index} rate {min}/{max}"
        );
    }
    // Everything else an 82576 takes, an I350 takes too.
    set(&ops, "eth4", 0, VfKnob::Mac(MAC1)).unwrap();
    set(&ops, "eth4", 0, VfKnob::Trust(true)).unwrap();
    assert_eq!(vf(&ops, "eth4", 0).max_tx_rate, 0);
}

#[test]
fn ixgbe_limits_rates_at_10g_only_between_11_and_the_link_speed() {
    let h = Host::new();
    let ops = h.ops();
    set(&ops, "ixgbe", 0, VfKnob::Rate { min: 0, max: 11 }).unwrap();
    set(
        &ops,
        "ixgbe",
        0,
        VfKnob::Rate {
            min: 0,
            max: 10_000,
        },
    )
    .unwrap();
    set(&ops, "ixgbe", 0, VfKnob::Rate { min: 0, max: 0 }).unwrap();
    for max in [1, 10, 10_001] {
        let e = set(&ops, "ixgbe", 0, VfKnob::Rate { min: 0, max }).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "max {max}");
    }
    // ixgbe_ndo_set_vf_bw: link down is EINVAL, even to clear it.
    ops.set_up("ixgbe", false).unwrap();
    let e = set(&ops, "ixgbe", 0, VfKnob::Rate { min: 0, max: 0 }).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
}

#[test]
fn ixgbe_has_link_state_but_no_min_rate_nor_802_1ad() {
    let h = Host::new();
    let ops = h.ops();
    set(&ops, "ixgbe", 1, VfKnob::LinkState(LinkState::Disable)).unwrap();
    assert_eq!(vf(&ops, "ixgbe", 1).link_state, Some(LinkState::Disable));
    let e = set(&ops, "ixgbe", 1, VfKnob::Rate { min: 5, max: 50 }).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    let e = set(
        &ops,
        "ixgbe",
        1,
        VfKnob::Vlan {
            vlan: 5,
            qos: 0,
            proto: VlanProto::Dot1AD,
        },
    )
    .unwrap_err();
    assert_eq!(errno(&e), libc::EPROTONOSUPPORT);
    let e = set(&ops, "ixgbe", 4, VfKnob::Trust(true)).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
}

#[test]
fn mlx5_accepts_everything_but_802_1ad() {
    let h = Host::new();
    let ops = h.ops();
    // mlx5e_set_vf_vlan: EPROTONOSUPPORT for anything but 802.1Q.
    let e = set(
        &ops,
        "eth2",
        7,
        VfKnob::Vlan {
            vlan: 300,
            qos: 0,
            proto: VlanProto::Dot1AD,
        },
    )
    .unwrap_err();
    assert_eq!(errno(&e), libc::EPROTONOSUPPORT);
    let s = VfSettings {
        mac: Some(MAC1),
        vlan: Some(300),
        qos: Some(2),
        vlan_proto: Some(VlanProto::Dot1Q),
        spoofchk: Some(false),
        trust: Some(true),
        link_state: Some(LinkState::Enable),
        min_tx_rate: Some(10),
        max_tx_rate: Some(1000),
        mtu: Some(9000),
    };
    // eth2 is down: mlx5 does not care for rates.
    ops.set_vf("eth2", 7, &s).unwrap();
    assert_eq!(
        vf(&ops, "eth2", 7),
        VfConfig {
            mac: MAC1,
            vlan: 300,
            qos: 2,
            vlan_proto: VlanProto::Dot1Q,
            spoofchk: Some(false),
            trust: Some(true),
            link_state: Some(LinkState::Enable),
            min_tx_rate: 10,
            max_tx_rate: 1000,
        }
    );
    // Only the max: the min stays (set_vf reads the current config, like `ip link`).
    ops.set_vf(
        "eth2",
        7,
        &VfSettings {
            max_tx_rate: Some(500),
            ..Default::default()
        },
    )
    .unwrap();
    let c = vf(&ops, "eth2", 7);
    assert_eq!((c.min_tx_rate, c.max_tx_rate), (10, 500));
}

#[test]
fn set_vf_stops_at_the_first_error_and_can_be_undone_knob_by_knob() {
    let h = Host::new();
    let ops = h.ops();
    let before = vf(&ops, "eth0", 2);
    let s = VfSettings {
        mac: Some(MAC1),
        vlan: Some(10),
        link_state: Some(LinkState::Enable),
        trust: Some(true),
        ..Default::default()
    };
    let e = ops.set_vf("eth0", 2, &s).unwrap_err();
    let NetlinkError::SetVf { setting, value, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((*setting, value.as_str()), ("link-state", "enable"));
    let after = vf(&ops, "eth0", 2);
    assert_eq!(after.mac, MAC1, "knobs before the failure stay applied");
    assert_eq!(after.vlan, 10);
    assert_eq!(
        after.trust,
        Some(false),
        "knobs after the failure are not tried"
    );
    // Roll back what was applied.
    for k in VfKnob::plan(&s, None)
        .iter()
        .take_while(|k| k.setting() != "link-state")
    {
        ops.set_vf_knob("eth0", 2, &k.undo(&before).unwrap())
            .unwrap();
    }
    assert_eq!(vf(&ops, "eth0", 2), before);

    // Invalid settings are refused before anything is applied.
    let e = ops
        .set_vf(
            "eth0",
            2,
            &VfSettings {
                mac: Some(MAC1),
                vlan: Some(5000),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, NetlinkError::InvalidSettings { .. }), "{e:?}");
    assert_eq!(vf(&ops, "eth0", 2), before);
}

#[test]
fn a_veth_has_no_vfs_to_set() {
    let h = Host::new();
    let e = set(&h.ops(), "veth0", 0, VfKnob::Mac(MAC1)).unwrap_err();
    assert_eq!(errno(&e), libc::EOPNOTSUPP);
    assert_eq!(
        e.to_string(),
        "cannot set mac 02:00:00:00:00:01 on veth0 vf 0: the driver does not support this setting"
    );
    let e = set(&h.ops(), "nope", 0, VfKnob::Mac(MAC1)).unwrap_err();
    assert_eq!(e.to_string(), "no network interface named 'nope'");
}

#[test]
fn configs_persist_across_instances_until_numvfs_changes() {
    let h = Host::new();
    set(&h.ops(), "eth0", 5, VfKnob::Mac(MAC1)).unwrap();
    assert!(h.ops().state_path("eth0").exists());
    let other = SimNetOps::new(h.root());
    assert_eq!(vf(&other, "eth0", 5).mac, MAC1);
    // No temp files left behind.
    let names: Vec<_> = fs::read_dir(h.root().join("netlink"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
    // The sysfs simulator re-creates the VFs: kernel defaults again.
    h.set_numvfs("0000:01:00.0", "eth0", 0);
    h.set_numvfs("0000:01:00.0", "eth0", 7);
    assert_eq!(vf(&other, "eth0", 5), kernel_default_vf());
}

#[test]
fn corrupt_state_is_a_clear_error() {
    let h = Host::new();
    set(&h.ops(), "eth0", 0, VfKnob::Trust(true)).unwrap();
    fs::write(h.ops().state_path("eth0"), "{not json").unwrap();
    let e = h.ops().vf_configs("eth0").unwrap_err();
    assert!(
        e.to_string().starts_with("corrupt simulated vf state in "),
        "{e}"
    );
}

#[test]
fn concurrent_writers_lose_no_update() {
    let h = Arc::new(Host::new());
    let threads: Vec<_> = (0..8u16)
        .map(|i| {
            let root = h.root().to_path_buf();
            std::thread::spawn(move || {
                // A separate instance per thread, as separate processes would have.
                let ops = SimNetOps::new(root);
                for round in 0..10u8 {
                    let mac = MacAddr([2, 0, 0, 0, u8::try_from(i).unwrap(), round]);
                    ops.set_vf_knob("eth2", i, &VfKnob::Mac(mac)).unwrap();
                    ops.set_vf_knob("eth2", i, &VfKnob::Trust(round % 2 == 0))
                        .unwrap();
                    assert_eq!(ops.vf_configs("eth2").unwrap().len(), 8);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let vfs = h.ops().vf_configs("eth2").unwrap();
    for (i, c) in vfs {
        assert_eq!(c.mac, MacAddr([2, 0, 0, 0, u8::try_from(i).unwrap(), 9]));
        assert_eq!(c.trust, Some(false));
    }
}

#[test]
fn link_ops_read_and_write_the_netdev_files() {
    let h = Host::new();
    let ops = h.ops();
    let l = ops.link("eth0").unwrap();
    assert_eq!(
        l,
        LinkInfo {
            ifindex: 2,
            name: "eth0".into(),
            mtu: 1500,
            min_mtu: Some(68),
            max_mtu: Some(9216),
            mac: Some("52:54:00:12:34:02".parse().unwrap()),
            admin_up: true,
            oper_state: OperState::Up,
            carrier: Some(true),
            promisc: false,
            alt_names: Vec::new(),
            parent_dev: Some("0000:01:00.0".into()),
        }
    );
    assert_eq!(ops.link("veth0").unwrap().max_mtu, Some(65535));
    assert_eq!(ops.link("eth2").unwrap().max_mtu, Some(9978));
    assert_eq!(ops.link("ixgbe").unwrap().max_mtu, Some(9710));

    ops.set_mtu("eth0", 9216).unwrap();
    assert_eq!(ops.link("eth0").unwrap().mtu, 9216);
    let e = ops.set_mtu("eth0", 9217).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert!(
        e.to_string()
            .starts_with("cannot set mtu 9217 on eth0 (allowed 68..=9216)"),
        "{e}"
    );
    assert!(matches!(
        ops.set_mtu("eth0", 67),
        Err(NetlinkError::SetMtu { min: Some(68), .. })
    ));

    ops.set_mac("eth0", MAC1).unwrap();
    assert_eq!(ops.link("eth0").unwrap().mac, Some(MAC1));
    assert_eq!(
        fs::read_to_string(h.sys().join("class/net/eth0/address")).unwrap(),
        "02:00:00:00:00:01\n"
    );
    let e = ops
        .set_mac("eth0", MacAddr([1, 0, 0, 0, 0, 1]))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EADDRNOTAVAIL);

    ops.set_up("eth0", false).unwrap();
    let l = ops.link("eth0").unwrap();
    assert_eq!(
        (l.admin_up, l.oper_state, l.carrier),
        (false, OperState::Down, Some(false))
    );
    ops.set_up("eth0", true).unwrap();
    assert!(ops.link("eth0").unwrap().admin_up);
    assert!(matches!(
        ops.set_up("nope", true),
        Err(NetlinkError::LinkNotFound { .. })
    ));
}

#[test]
fn usable_as_a_trait_object() {
    let h = Host::new();
    let ops: Arc<dyn NetOps> = Arc::new(h.ops());
    assert_eq!(ops.vf_configs("eth0").unwrap().len(), 7);
}

#[test]
fn a_mac_set_by_the_pf_binds_an_untrusted_vf_until_cleared_with_zero() {
    let h = Host::new();
    // VF 0 of eth0 with the igbvf driver and a netdev, linked both ways to its PF.
    let sys = h.sys();
    let vf_dir = sys.join("devices/pci0000:00/0000:01:10.0");
    fs::create_dir_all(sys.join("bus/pci/drivers/igbvf")).unwrap();
    fs::create_dir_all(&vf_dir).unwrap();
    symlink("../../bus/pci/drivers/igbvf", vf_dir.join("driver")).unwrap();
    symlink("../0000:01:00.0", vf_dir.join("physfn")).unwrap();
    symlink(
        "../0000:01:10.0",
        sys.join("devices/pci0000:00/0000:01:00.0/virtfn0"),
    )
    .unwrap();
    h.netdev(&vf_dir.join("net/eth0v0"), "eth0v0", 9, "up");
    let ops = h.ops();
    let admin: MacAddr = "02:00:00:00:00:aa".parse().unwrap();
    set(&ops, "eth0", 0, VfKnob::Mac(admin)).unwrap();
    assert_eq!(admin_mac(h.root(), "eth0", 0), Some(admin));
    // Untrusted: the VF may not pick another MAC (igb: EADDRNOTAVAIL).
    let err = ops
        .set_mac("eth0v0", "02:00:00:00:00:bb".parse().unwrap())
        .unwrap_err();
    assert_eq!(errno(&err), libc::EADDRNOTAVAIL);
    // Trusted, it may; and the PF then reports the VF's choice.
    set(&ops, "eth0", 0, VfKnob::Trust(true)).unwrap();
    ops.set_mac("eth0v0", "02:00:00:00:00:bb".parse().unwrap())
        .unwrap();
    assert_eq!(vf(&ops, "eth0", 0).mac.to_string(), "02:00:00:00:00:bb");
    // Zero clears the PF's hold: an untrusted VF owns its MAC again.
    set(&ops, "eth0", 0, VfKnob::Trust(false)).unwrap();
    set(&ops, "eth0", 0, VfKnob::Mac(MacAddr::ZERO)).unwrap();
    assert_eq!(admin_mac(h.root(), "eth0", 0), None);
    ops.set_mac("eth0v0", "02:00:00:00:00:cc".parse().unwrap())
        .unwrap();
    assert_eq!(vf(&ops, "eth0", 0).mac.to_string(), "02:00:00:00:00:cc");
}

#[test]
fn state_files_keep_only_what_differs_from_the_kernel_default_and_read_back_whole() {
    let mut state = PfState::default();
    let own = kernel_default_vf();
    let mut changed = kernel_default_vf();
    changed.mac = "02:00:00:00:00:07".parse().unwrap();
    changed.vlan = 10;
    changed.qos = 3;
    changed.vlan_proto = VlanProto::Dot1AD;
    changed.spoofchk = Some(false);
    changed.trust = None;
    changed.link_state = Some(LinkState::Disable);
    changed.min_tx_rate = 10;
    changed.max_tx_rate = 100;
    state.vfs.insert(0, own.clone());
    state.vfs.insert(5, changed.clone());
    let json = serde_json::to_string(&state).unwrap();
    assert!(json.contains(r#""0":{}"#), "{json}");
    assert!(json.contains(r#""trust":null"#), "{json}");
    let back: PfState = serde_json::from_str(&json).unwrap();
    assert_eq!(back.vfs.get(&0), Some(&own));
    assert_eq!(back.vfs.get(&5), Some(&changed));
    let bad = serde_json::from_str::<PfState>(r#"{"vfs":{"0":{"colour":"red"}}}"#);
    assert!(bad.is_err(), "unknown fields are refused");
}

/// Replays `tests/vm/scenarios/fidelity-vf.txt` (what the real igb of QEMU's 82576 answered in
/// the real-kernel tier's `fidelity` scenario, which checks that the file still holds) on the
/// simulator's 82576: a fresh VF reads the same and every setting gets the same answer.
#[test]
fn the_simulator_answers_like_the_real_igb() {
    let golden = include_str!("../../../tests/vm/scenarios/fidelity-vf.txt");
    let h = Host::new();
    let ops = h.ops();
    let mut checked = 0;
    for line in golden
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        if let Some(want) = line.strip_prefix("fresh ") {
            let c = vf(&ops, "eth0", 6);
            let got = format!(
                "vlan={} qos={} proto={} spoofchk={} trust={} link_state={} min_tx={} max_tx={}",
                c.vlan,
                c.qos,
                match c.vlan_proto {
                    VlanProto::Dot1Q => "802.1Q",
                    VlanProto::Dot1AD => "802.1ad",
                },
                c.spoofchk.unwrap(),
                c.trust.unwrap(),
                match c.link_state.unwrap() {
                    LinkState::Auto => "auto",
                    LinkState::Enable => "enable",
                    LinkState::Disable => "disable",
                },
                c.min_tx_rate,
                c.max_tx_rate
            );
            assert_eq!(got, want, "a fresh VF");
            checked += 1;
            continue;
        }
        let (case, want) = line.split_once(" => ").expect("`case => answer`");
        let words: Vec<&str> = case.split_whitespace().collect();
        let (link, index, args) = (words[0], words[1].parse::<u16>().unwrap(), &words[2..]);
        ops.set_up("eth0", link == "up").unwrap();
        let arg = |name: &str| args.iter().position(|w| *w == name).map(|i| args[i + 1]);
        let num = |name: &str| arg(name).map(|v| v.parse::<u32>().unwrap());
        let on = |v: &str| v == "on";
        let knob = match args[0] {
            "mac" => VfKnob::Mac(args[1].parse().unwrap()),
            "vlan" => VfKnob::Vlan {
                vlan: num("vlan").unwrap() as u16,
                qos: num("qos").unwrap_or(0) as u8,
                proto: match arg("proto") {
                    Some("802.1ad") => VlanProto::Dot1AD,
                    _ => VlanProto::Dot1Q,
                },
            },
            "state" => VfKnob::LinkState(match args[1] {
                "auto" => LinkState::Auto,
                "enable" => LinkState::Enable,
                _ => LinkState::Disable,
            }),
            // `ip link` fills in the rate it was not given from the VF's current one.
            "min_tx_rate" | "max_tx_rate" => VfKnob::Rate {
                min: num("min_tx_rate").unwrap_or(0),
                max: num("max_tx_rate").unwrap_or_else(|| vf(&ops, "eth0", index).max_tx_rate),
            },
            "trust" => VfKnob::Trust(on(args[1])),
            "spoofchk" => VfKnob::SpoofChk(on(args[1])),
            other => panic!("fidelity-vf.txt: unknown setting {other}"),
        };
        let got = match set(&ops, "eth0", index, knob) {
            Ok(()) => "ok".to_owned(),
            Err(e) => match errno(&e) {
                libc::EINVAL => "EINVAL".to_owned(),
                libc::EOPNOTSUPP => "EOPNOTSUPP".to_owned(),
                libc::EPROTONOSUPPORT => "EPROTONOSUPPORT".to_owned(),
                n => format!("errno {n}"),
            },
        };
        assert_eq!(got, want, "{case}");
        checked += 1;
    }
    assert!(checked > 20, "fidelity-vf.txt has only {checked} cases");
}
