//! The engine over the simulated demo host and the simulated netlink backend.

mod common;

use common::{Lab, TestNetns, req, sel};
use vfpool_engine::{
    DriverChoice, Durability, EngineError, GcKind, LeaseState, OwnerKind, Policy, ReleaseTarget,
    VfState, chain,
};
use vfpool_model::{LinkState, MacAddr, PciAddr, VlanProto};
use vfpool_netlink::NetOps;

fn msg(e: EngineError) -> String {
    chain(&e)
}

#[test]
fn pools_create_list_show_delete_and_refuse_overlap() {
    let lab = Lab::new();
    lab.split("eno49", 7);
    lab.split("em1", 8);
    let mut e = lab.engine();
    let st = e
        .pool_create("a", sel(&["eno49#0-3"]), Policy::FirstFit)
        .unwrap();
    assert_eq!((st.total, st.free, st.leased, st.unhealthy), (4, 4, 0, 0));
    let err = e
        .pool_create("b", sel(&["eno49#2-6"]), Policy::Pack)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pool 'b' would overlap pool 'a' on eno49 VFs 2-3"
    );
    let err = e
        .pool_create("c", sel(&["driver=igb"]), Policy::Pack)
        .unwrap_err();
    assert!(err.to_string().contains("eno49 VFs 0-3"), "{err}");
    e.pool_create("b", sel(&["eno49#4-6"]), Policy::Spread)
        .unwrap();
    e.pool_create("x", sel(&["driver=ixgbe", "numa=0"]), Policy::Spread)
        .unwrap();
    let err = e.pool_create("a", sel(&["em2"]), Policy::Pack).unwrap_err();
    assert!(matches!(err, EngineError::PoolExists { .. }), "{err}");
    let err = e
        .pool_create("d", sel(&["eno99#0"]), Policy::Pack)
        .unwrap_err();
    assert!(msg(err).contains("unknown NIC 'eno99'"));
    // A NIC the host has, but without SR-IOV (`nic show eno1` knows it): not "unknown".
    let err = e
        .pool_create("d", sel(&["eno1"]), Policy::Pack)
        .unwrap_err();
    let m = msg(err);
    assert!(
        m.starts_with("NIC 'eno1' (0000:02:00.0) has no SR-IOV capability"),
        "{m}"
    );
    // A VF's netdev: named with its PF.
    let err = e
        .pool_create("d", sel(&["eno49v1"]), Policy::Pack)
        .unwrap_err();
    let m = msg(err);
    assert!(
        m.starts_with("NIC 'eno49v1' is a VF (") && m.contains(") of eno49;"),
        "{m}"
    );
    let err = e
        .pool_create("d", sel(&["eno50#0-9"]), Policy::Pack)
        .unwrap_err();
    assert!(err.to_string().contains("below 7"), "{err}");
    let err = e
        .pool_create("d", sel(&["driver=nope"]), Policy::Pack)
        .unwrap_err();
    assert!(matches!(err, EngineError::PoolSelectsNothing { .. }));

    let list = e.pool_list().unwrap();
    let names: Vec<_> = list.iter().map(|p| (p.name.as_str(), p.total)).collect();
    // x: em1's 8 VFs now (em2 not split) - em2's 63 are potential only.
    assert_eq!(names, vec![("a", 4), ("b", 3), ("x", 8)]);

    let l = e.acquire(&req("b", "vm-1")).unwrap();
    assert_eq!((l.pf.as_str(), l.vf_index), ("eno49", 4));
    let (st, vfs) = e.pool_show("b").unwrap();
    assert_eq!((st.free, st.leased), (2, 1));
    assert_eq!(vfs[0].state, VfState::Leased);
    assert_eq!(vfs[0].owner.as_deref(), Some("vm-1"));
    let err = e.pool_delete("b").unwrap_err();
    assert_eq!(
        err.to_string(),
        "pool 'b' has 1 leased VFs; release them first"
    );
    e.release(&ReleaseTarget::Owner("vm-1".into())).unwrap();
    e.pool_delete("b").unwrap();
    let err = e.pool_delete("b").unwrap_err();
    assert_eq!(err.to_string(), "unknown pool 'b' (known: a, x)");
}

#[test]
fn acquire_configures_and_release_restores() {
    let lab = Lab::new();
    lab.split("em1", 4);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["em1"]), Policy::FirstFit).unwrap();
    let before_mtu = lab.net.link("em1v0").unwrap().mtu;
    let mac: MacAddr = "02:00:00:00:aa:01".parse().unwrap();
    let mut r = req("p", "pod-1");
    r.owner_kind = OwnerKind::Container;
    r.settings.mac = Some(mac);
    r.settings.vlan = Some(100);
    r.settings.qos = Some(3);
    r.settings.spoofchk = Some(false);
    r.settings.trust = Some(true);
    r.settings.link_state = Some(LinkState::Enable);
    r.settings.max_tx_rate = Some(1000);
    r.settings.mtu = Some(9000);
    let l = e.acquire(&r).unwrap();
    assert_eq!(l.state, LeaseState::Active);
    assert_eq!(l.vf_index, 0);
    assert_eq!(l.netdev.as_deref(), Some("em1v0"));
    assert_eq!(l.original.mtu, Some(before_mtu));
    let c = lab.vf_config("em1", 0);
    assert_eq!(
        (
            c.mac,
            c.vlan,
            c.qos,
            c.spoofchk,
            c.trust,
            c.link_state,
            c.max_tx_rate
        ),
        (
            mac,
            100,
            3,
            Some(false),
            Some(true),
            Some(LinkState::Enable),
            1000
        )
    );
    let link = lab.net.link("em1v0").unwrap();
    assert_eq!((link.mtu, link.mac), (9000, Some(mac)));
    lab.assert_pristine("em1", 1, "others untouched");

    let leases = e.leases().unwrap();
    assert_eq!(leases.len(), 1);
    let released = e.release(&ReleaseTarget::Owner("pod-1".into())).unwrap();
    assert_eq!(released.vf_pci, l.vf_pci);
    lab.assert_pristine("em1", 0, "");
    let link = lab.net.link("em1v0").unwrap();
    assert_eq!(link.mtu, before_mtu);
    assert_eq!(link.mac, l.original.mac);
    assert!(e.leases().unwrap().is_empty());
}

#[test]
fn a_setting_the_driver_rejects_rolls_everything_back() {
    let lab = Lab::new();
    lab.split("eno49", 7);
    let mut e = lab.engine();
    e.pool_create("igb", sel(&["eno49"]), Policy::FirstFit)
        .unwrap();
    for (setting, tweak) in [
        (
            "link-state",
            Box::new(|r: &mut vfpool_engine::AcquireRequest| {
                r.settings.link_state = Some(LinkState::Enable)
            }) as Box<dyn Fn(&mut vfpool_engine::AcquireRequest)>,
        ),
        (
            "min-rate",
            Box::new(|r: &mut vfpool_engine::AcquireRequest| {
                r.settings.min_tx_rate = Some(10);
                r.settings.max_tx_rate = Some(100);
            }),
        ),
        (
            "vlan-proto",
            Box::new(|r: &mut vfpool_engine::AcquireRequest| {
                r.settings.vlan_proto = Some(VlanProto::Dot1AD)
            }),
        ),
    ] {
        let mut r = req("igb", "vm-x");
        r.settings.vlan = Some(42);
        r.settings.mac = Some("02:00:00:00:00:42".parse().unwrap());
        r.settings.trust = Some(true);
        tweak(&mut r);
        let err = e.acquire(&r).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("driver igb refused {setting} for 0000:03:10.0")),
            "{text}"
        );
        assert!(!text.contains('\n'));
        lab.assert_pristine("eno49", 0, setting);
        assert!(e.leases().unwrap().is_empty(), "{setting}");
    }
}

#[test]
fn driver_binding_vfio_and_back() {
    let lab = Lab::new();
    lab.split("em1", 2);
    let mut e = lab.engine();
    e.pool_create("vm", sel(&["em1#1"]), Policy::FirstFit)
        .unwrap();
    let mut r = req("vm", "vm-7");
    r.owner_kind = OwnerKind::Vm;
    r.driver = Some(DriverChoice::VfioPci);
    r.settings.vlan = Some(7);
    let l = e.acquire(&r).unwrap();
    assert_eq!(l.netdev, None);
    assert_eq!(l.original.driver.as_deref(), Some("ixgbevf"));
    let dev = lab.fs.path(format!("bus/pci/devices/{}", l.vf_pci));
    assert_eq!(
        lab.fs.link_name(&dev.join("driver")).unwrap().as_deref(),
        Some("vfio-pci")
    );
    e.release(&ReleaseTarget::Vf(l.vf_pci)).unwrap();
    assert_eq!(
        lab.fs.link_name(&dev.join("driver")).unwrap().as_deref(),
        Some("ixgbevf")
    );
    assert_eq!(lab.fs.read(&dev.join("driver_override")).unwrap(), "(null)");
    assert!(lab.fs.exists(&dev.join("net/em1v1")));
    lab.assert_pristine("em1", 1, "");
}

#[test]
fn netdevice_driver_binds_with_autoprobe_off_and_mtu_applies() {
    let lab = Lab::new();
    let inv = vfpool_host::Inventory::scan(&lab.fs).unwrap();
    let nic = inv.find_sriov_pf("em2").unwrap().clone();
    let opts = vfpool_host::split::SplitOptions {
        autoprobe: Some(false),
        ..Default::default()
    };
    vfpool_host::split::split(&lab.fs, &nic, 3, &opts, &|_, _| {}).unwrap();
    let mut e = lab.engine();
    e.pool_create("c", sel(&["em2"]), Policy::FirstFit).unwrap();
    let mut r = req("c", "pod");
    r.settings.mtu = Some(9000);
    let err = e.acquire(&r).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid mtu '9000': only for a VF with a netdev"),
        "{err}"
    );
    r.driver = Some(DriverChoice::Netdevice);
    r.settings.mac = Some("02:11:22:33:44:55".parse().unwrap());
    let l = e.acquire(&r).unwrap();
    assert_eq!(l.netdev.as_deref(), Some("em2v0"));
    let link = lab.net.link("em2v0").unwrap();
    assert_eq!(link.mtu, 9000);
    assert_eq!(link.mac, r.settings.mac);
    e.release(&ReleaseTarget::Owner("pod".into())).unwrap();
    let dev = lab.fs.path(format!("bus/pci/devices/{}", l.vf_pci));
    assert_eq!(lab.fs.link_name(&dev.join("driver")).unwrap(), None);
}

#[test]
fn exhaustion_policies_numa_and_named_vf() {
    let lab = Lab::new();
    lab.split("eno49", 2);
    lab.split("eno50", 2);
    let mut e = lab.engine();
    e.pool_create("s", sel(&["eno49", "eno50"]), Policy::Spread)
        .unwrap();
    let a = e.acquire(&req("s", "o1")).unwrap();
    let b = e.acquire(&req("s", "o2")).unwrap();
    assert_ne!(a.pf, b.pf, "spread puts the second on the other PF");
    e.release(&ReleaseTarget::Owner("o2".into())).unwrap();

    let mut named = req("s", "o3");
    named.vf = Some(b.vf_pci);
    assert_eq!(e.acquire(&named).unwrap().vf_pci, b.vf_pci);
    let mut again = req("s", "o4");
    again.vf = Some(b.vf_pci);
    assert_eq!(
        e.acquire(&again).unwrap_err().to_string(),
        format!("VF {} is leased to 'o3' already", b.vf_pci)
    );
    again.vf = Some("0000:09:00.0".parse().unwrap());
    assert!(matches!(
        e.acquire(&again).unwrap_err(),
        EngineError::UnknownVf { .. }
    ));
    e.acquire(&req("s", "o4")).unwrap();
    e.acquire(&req("s", "o5")).unwrap();
    let err = e.acquire(&req("s", "o6")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pool s has no free VF (4 total, 4 leased, 0 unhealthy)"
    );

    // pack: fill the fuller PF first.
    let lab = Lab::new();
    lab.split("eno49", 3);
    lab.split("eno50", 3);
    lab.split("ens1f0np0", 2);
    let mut e = lab.engine();
    e.pool_create("k", sel(&["eno49", "eno50"]), Policy::Pack)
        .unwrap();
    e.pool_create("m", sel(&["ens1f0np0", "eno51"]), Policy::FirstFit)
        .unwrap();
    let mut first = req("k", "p1");
    let host = e.host().unwrap();
    let eno50_0: PciAddr = *host
        .vfs
        .iter()
        .find(|(_, s)| s.pf.name == "eno50" && s.index == 0)
        .unwrap()
        .0;
    first.vf = Some(eno50_0);
    let f = e.acquire(&first).unwrap();
    assert_eq!(f.pf, "eno50");
    assert_eq!(e.acquire(&req("k", "p2")).unwrap().pf, "eno50");
    // numa preference: mlx on node 1 while eno51 (not split) has none.
    let mut n = req("m", "n1");
    n.numa = Some(1);
    assert_eq!(e.acquire(&n).unwrap().pf, "ens1f0np0");
}

#[test]
fn bad_inputs_fail_with_one_line_naming_the_field_and_change_nothing() {
    let lab = Lab::new();
    lab.split("em1", 2);
    lab.split("eno49", 1);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["em1"]), Policy::FirstFit).unwrap();
    e.acquire(&req("p", "taken")).unwrap();
    let before = lab.vf_config("em1", 1);
    type Tweak = fn(&mut vfpool_engine::AcquireRequest);
    let cases: Vec<(&str, Tweak)> = vec![
        ("unknown pool 'nope'", |r| r.pool = "nope".into()),
        ("invalid mac '01:00:5e:00:00:01'", |r| {
            r.settings.mac = Some("01:00:5e:00:00:01".parse().unwrap())
        }),
        ("invalid vlan '4095'", |r| r.settings.vlan = Some(4095)),
        ("invalid qos '8'", |r| {
            r.settings.vlan = Some(5);
            r.settings.qos = Some(8)
        }),
        ("invalid qos '3'", |r| r.settings.qos = Some(3)),
        ("invalid vlan-proto '802.1ad'", |r| {
            r.settings.vlan_proto = Some(VlanProto::Dot1AD)
        }),
        ("invalid min-rate '200'", |r| {
            r.settings.min_tx_rate = Some(200);
            r.settings.max_tx_rate = Some(100)
        }),
        (
            "invalid mtu '9800': 68..=9710 (the MTU range of em1)",
            |r| r.settings.mtu = Some(9800),
        ),
        ("invalid mtu '9000': only for a VF with a netdev", |r| {
            r.settings.mtu = Some(9000);
            r.driver = Some(DriverChoice::VfioPci)
        }),
        ("owner 'taken' already holds a lease on 0000:04:10.0", |r| {
            r.owner = "taken".into()
        }),
        ("unknown VF 0000:0a:00.0", |r| {
            r.vf = Some("0000:0a:00.0".parse().unwrap())
        }),
        ("VF 0000:03:10.0 is not in pool p", |r| {
            r.vf = Some("0000:03:10.0".parse().unwrap())
        }),
        ("invalid owner ''", |r| r.owner = String::new()),
        ("invalid owner ' ': empty or only whitespace", |r| {
            r.owner = " ".into()
        }),
        (
            "invalid owner 'vm-2 ': leading or trailing whitespace",
            |r| r.owner = "vm-2 ".into(),
        ),
        ("invalid owner 'vm-2\\u{200b}': contains U+200B", |r| {
            r.owner = "vm-2\u{200b}".into()
        }),
        ("invalid owner 'vm-\\u{202e}2': contains U+202E", |r| {
            r.owner = "vm-\u{202e}2".into()
        }),
        ("invalid netns '/nonexistent/ns': no such file", |r| {
            r.owner_kind = OwnerKind::Container;
            r.netns = Some("/nonexistent/ns".into())
        }),
        (
            "invalid netns '/etc/passwd': not a network namespace (nsfs); give a path like /run/netns/NAME or /proc/PID/ns/net",
            |r| {
                r.owner_kind = OwnerKind::Container;
                r.netns = Some("/etc/passwd".into())
            },
        ),
        ("invalid netns '/dev/null': not a network namespace", |r| {
            r.owner_kind = OwnerKind::Container;
            r.netns = Some("/dev/null".into())
        }),
        ("invalid netns '/tmp': not a network namespace", |r| {
            r.owner_kind = OwnerKind::Container;
            r.netns = Some("/tmp".into())
        }),
        (
            "invalid netns '/proc/self/ns/net': the host's own network namespace",
            |r| {
                r.owner_kind = OwnerKind::Container;
                r.netns = Some("/proc/self/ns/net".into())
            },
        ),
        (
            "invalid netns '/proc/self/ns/ipc': a namespace of another type",
            |r| {
                r.owner_kind = OwnerKind::Container;
                r.netns = Some("/proc/self/ns/ipc".into())
            },
        ),
    ];
    for (want, tweak) in cases {
        let mut r = req("p", "new");
        tweak(&mut r);
        let err = e.acquire(&r).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(want), "want '{want}', got '{text}'");
        assert!(!text.contains('\n'));
        assert_eq!(e.leases().unwrap().len(), 1, "{want}");
        assert_eq!(lab.vf_config("em1", 1), before, "{want}");
    }
    for (target, want) in [
        (
            ReleaseTarget::Owner("ghost".into()),
            "unknown owner 'ghost': it holds no lease",
        ),
        (
            ReleaseTarget::Vf("0000:04:10.2".parse().unwrap()),
            "VF 0000:04:10.2 is not leased",
        ),
    ] {
        assert_eq!(e.release(&target).unwrap_err().to_string(), want);
    }
    assert_eq!(e.leases().unwrap().len(), 1);
}

#[test]
fn unhealthy_vfs_are_not_handed_out_and_come_back() {
    let lab = Lab::new();
    lab.split("em1", 2);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["em1"]), Policy::FirstFit).unwrap();
    lab.net.set_up("em1", false).unwrap();
    let st = &e.pool_list().unwrap()[0];
    assert_eq!((st.total, st.free, st.unhealthy), (2, 0, 2));
    let (_, vfs) = e.pool_show("p").unwrap();
    assert_eq!(
        vfs[0].reason.as_deref(),
        Some("PF em1 is administratively down (bring it up: ip link set em1 up)")
    );
    let err = e.acquire(&req("p", "o")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pool p has no free VF (2 total, 0 leased, 2 unhealthy: 2 × PF em1 is administratively down (bring it up: ip link set em1 up))"
    );
    lab.net.set_up("em1", true).unwrap();
    // A VF whose netdev vanished while its driver is bound.
    let net = lab.fs.path("bus/pci/devices/0000:04:10.0/net");
    std::fs::remove_dir_all(&net).unwrap();
    let (st, vfs) = e.pool_show("p").unwrap();
    assert_eq!((st.free, st.unhealthy), (1, 1));
    assert!(vfs[0].reason.as_deref().unwrap().contains("no netdev"));
    let mut named = req("p", "o");
    named.vf = Some("0000:04:10.0".parse().unwrap());
    assert!(
        e.acquire(&named)
            .unwrap_err()
            .to_string()
            .starts_with("VF 0000:04:10.0 is unhealthy")
    );
    assert_eq!(e.acquire(&req("p", "o")).unwrap().vf_index, 1);
}

#[test]
fn gc_releases_gone_containers_and_drops_stale_leases() {
    let lab = Lab::new();
    lab.split("em1", 3);
    lab.split("eno49", 2);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["em1"]), Policy::FirstFit).unwrap();
    e.pool_create("q", sel(&["eno49"]), Policy::FirstFit)
        .unwrap();
    let ns = TestNetns::new("pod1");
    let mut r = req("p", "pod1");
    r.owner_kind = OwnerKind::Container;
    r.netns = Some(ns.path());
    r.settings.vlan = Some(10);
    e.acquire(&r).unwrap();
    let mut vm = req("p", "vm1");
    vm.owner_kind = OwnerKind::Vm;
    e.acquire(&vm).unwrap();
    e.acquire(&req("q", "gone-with-nic")).unwrap();

    let rep = e.gc().unwrap();
    assert!(rep.actions.is_empty());
    assert_eq!(rep.kept, 3, "netns present, vm unknown, manual");

    ns.del();
    lab.restore("eno49");
    let leases = e.leases().unwrap();
    assert_eq!(
        leases
            .iter()
            .find(|l| l.owner == "gone-with-nic")
            .unwrap()
            .state,
        LeaseState::Stale
    );
    let rep = e.gc().unwrap();
    let mut acts: Vec<_> = rep
        .actions
        .iter()
        .map(|a| (a.owner.as_str(), a.action.as_str()))
        .collect();
    acts.sort();
    assert_eq!(
        acts,
        vec![
            ("gone-with-nic", "removed-stale"),
            ("pod1", "released-owner-gone")
        ]
    );
    lab.assert_pristine("em1", 0, "");
    let left: Vec<_> = e.leases().unwrap().into_iter().map(|l| l.owner).collect();
    assert_eq!(left, vec!["vm1"]);

    // mark_pf_stale: what `nic restore --force` does before the VFs go.
    assert_eq!(e.mark_pf_stale("0000:04:00.0".parse().unwrap()).unwrap(), 1);
    let rep = e.gc().unwrap();
    assert_eq!(rep.actions[0].action, GcKind::RemovedStale);
    assert!(e.leases().unwrap().is_empty());
}

#[test]
fn release_by_owner_never_touches_another_owners_vf() {
    let lab = Lab::new();
    lab.split("em1", 1);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["em1"]), Policy::FirstFit).unwrap();
    let mut old = req("p", "pod-old");
    old.settings.vlan = Some(1);
    let vf = e.acquire(&old).unwrap().vf_pci;
    e.release(&ReleaseTarget::Owner("pod-old".into())).unwrap();
    let mut new = req("p", "pod-new");
    new.settings.vlan = Some(2);
    assert_eq!(e.acquire(&new).unwrap().vf_pci, vf);
    // The old pod's teardown runs late, twice.
    for _ in 0..2 {
        assert!(e.release(&ReleaseTarget::Owner("pod-old".into())).is_err());
    }
    assert_eq!(lab.vf_config("em1", 0).vlan, 2);
}

#[test]
fn reapply_after_a_reboot_puts_configurations_back_and_marks_vanished_vfs_stale() {
    let lab = Lab::new();
    lab.split("eno49", 4);
    lab.split("em1", 2);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["eno49", "em1"]), Policy::FirstFit)
        .unwrap();
    let mut r = req("p", "vm-1");
    r.settings.mac = Some("02:00:00:00:05:01".parse().unwrap());
    r.settings.vlan = Some(42);
    r.settings.qos = Some(2);
    r.settings.trust = Some(true);
    let vm = e.acquire(&r).unwrap();
    let mut r = req("p", "vm-2");
    r.vf = Some("0000:04:10.2".parse().unwrap());
    r.settings.vlan = Some(7);
    e.acquire(&r).unwrap();
    let before = lab.vf_config("eno49", vm.vf_index);

    // The reboot: every VF gone; then only eno49 is split again.
    lab.sim.reboot().unwrap();
    lab.split("eno49", 4);
    lab.assert_pristine("eno49", vm.vf_index, "");
    let report = e.reapply().unwrap();
    let actions: Vec<(&str, &str)> = report
        .actions
        .iter()
        .map(|a| (a.owner.as_str(), a.action.as_str()))
        .collect();
    assert_eq!(actions, [("vm-1", "reapplied"), ("vm-2", "stale")]);
    assert_eq!(lab.vf_config("eno49", vm.vf_index), before);
    let leases = e.leases().unwrap();
    assert_eq!(leases[0].state, LeaseState::Active);
    assert_eq!(leases[1].state, LeaseState::Stale);
    // Nothing to do the second time; gc then drops the stale lease.
    let again = e.reapply().unwrap();
    assert_eq!(again.actions.len(), 1);
    assert_eq!(lab.vf_config("eno49", vm.vf_index), before);
    let gc = e.gc().unwrap();
    assert_eq!(gc.actions.len(), 1);
    assert_eq!(gc.actions[0].action, GcKind::RemovedStale);
    // Release still restores the VF to what it was before the lease.
    e.release(&ReleaseTarget::Owner("vm-1".into())).unwrap();
    lab.assert_pristine("eno49", vm.vf_index, "");
}

/// Found on the real igb driver (the real-kernel tier's traffic scenario): a VF whose own
/// driver chose its MAC reports that MAC on the PF side; restoring it "as it was" pinned it
/// as a PF-set MAC, and the next lease's MAC could no longer reach the VF's netdev.
#[test]
fn mac_leases_one_after_another_on_a_vf_that_chose_its_own_mac() {
    let lab = Lab::new();
    lab.split("eno49", 1);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["eno49"]), Policy::FirstFit)
        .unwrap();
    let own = lab.vf_config("eno49", 0).mac;
    assert!(!own.is_zero(), "igbvf chose a MAC and told the PF");
    for (round, mac) in [
        "02:00:00:00:01:01",
        "02:00:00:00:01:02",
        "02:00:00:00:01:03",
    ]
    .iter()
    .enumerate()
    {
        let mac: MacAddr = mac.parse().unwrap();
        let mut r = req("p", &format!("c{round}"));
        r.settings.mac = Some(mac);
        let l = e.acquire(&r).unwrap();
        let nd = l.netdev.clone().unwrap();
        assert_eq!(lab.vf_config("eno49", 0).mac, mac, "round {round}: PF side");
        assert_eq!(
            lab.net.link(&nd).unwrap().mac,
            Some(mac),
            "round {round}: netdev"
        );
        e.release(&ReleaseTarget::Owner(format!("c{round}")))
            .unwrap();
        lab.assert_pristine("eno49", 0, &format!("round {round}"));
        assert_eq!(
            lab.vf_config("eno49", 0).mac,
            own,
            "round {round}: the VF's own MAC back"
        );
    }
    // The VF owns its MAC again: its netdev may change it.
    let nd = lab
        .fs
        .list(&lab.fs.path("bus/pci/devices/0000:03:10.0/net"))
        .unwrap()
        .remove(0);
    lab.net
        .set_mac(&nd, "02:00:00:00:0f:0f".parse().unwrap())
        .unwrap();
}

#[test]
fn a_long_lived_engine_sees_what_changed_on_the_host_since_it_last_looked() {
    let lab = Lab::new();
    lab.split("eno49", 2);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["eno49", "eno50"]), Policy::FirstFit)
        .unwrap();
    let a = e.acquire(&req("p", "a")).unwrap();
    assert_eq!((a.pf.as_str(), a.vf_index), ("eno49", 0));

    // Another process splits eno50 after this engine read the host.
    lab.split("eno50", 1);
    let b = e.acquire(&req("p", "b")).unwrap();
    assert_eq!((b.pf.as_str(), b.vf_index), ("eno49", 1));
    let c = e.acquire(&req("p", "c")).unwrap();
    assert_eq!(
        (c.pf.as_str(), c.vf_index),
        ("eno50", 0),
        "the new VF is seen"
    );

    // eno49 goes down: its free VF is not handed out; up again, it is.
    e.release(&ReleaseTarget::Owner("b".into())).unwrap();
    lab.net.set_up("eno49", false).unwrap();
    let err = e.acquire(&req("p", "d")).unwrap_err().to_string();
    assert!(err.starts_with("pool p has no free VF"), "{err}");
    lab.net.set_up("eno49", true).unwrap();
    assert_eq!(e.acquire(&req("p", "d")).unwrap().vf_pci, b.vf_pci);

    // eno50 restored and split again by someone else: its lease is on a VF the engine
    // must not hand out twice, and a named VF that no longer exists is unknown.
    e.release(&ReleaseTarget::Owner("c".into())).unwrap();
    lab.restore("eno50");
    let mut named = req("p", "e");
    named.vf = Some(c.vf_pci);
    assert!(matches!(
        e.acquire(&named).unwrap_err(),
        EngineError::UnknownVf { .. }
    ));
    lab.split("eno50", 1);
    assert_eq!(e.acquire(&named).unwrap().vf_pci, c.vf_pci);
    let err = e.acquire(&req("p", "f")).unwrap_err().to_string();
    assert_eq!(
        err,
        "pool p has no free VF (3 total, 3 leased, 0 unhealthy)"
    );
}

#[test]
fn gc_drops_a_lease_whose_vf_was_created_again_behind_its_back() {
    let lab = Lab::new();
    lab.split("eno49", 2);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["eno49"]), Policy::FirstFit)
        .unwrap();
    let mut r = req("p", "pod-1");
    r.settings.vlan = Some(42);
    let l = e.acquire(&r).unwrap();
    let kept = e.acquire(&req("p", "pod-2")).unwrap();
    assert_eq!(e.gc().unwrap().kept, 2, "nothing changed yet");

    // Someone writes 0 and then 2 to sriov_numvfs: the same addresses, new VFs with the
    // kernel's defaults.
    lab.restore("eno49");
    lab.split("eno49", 2);
    lab.assert_pristine("eno49", l.vf_index, "after the VFs were made again");
    let gc = e.gc().unwrap();
    let got: Vec<(&str, &str)> = gc
        .actions
        .iter()
        .map(|a| (a.owner.as_str(), a.action.as_str()))
        .collect();
    assert_eq!(
        got,
        [("pod-1", "removed-stale"), ("pod-2", "removed-stale")]
    );
    assert!(
        gc.actions[0].reason.contains("created again"),
        "{}",
        gc.actions[0].reason
    );
    assert!(e.leases().unwrap().is_empty());
    // Both VFs can be leased again.
    assert_eq!(e.acquire(&req("p", "pod-3")).unwrap().vf_pci, l.vf_pci);
    assert_eq!(e.acquire(&req("p", "pod-4")).unwrap().vf_pci, kept.vf_pci);
}

#[test]
fn pools_that_name_their_pfs_and_pools_that_do_not_share_one_engine() {
    let lab = Lab::new();
    lab.split("eno49", 2);
    lab.split("ens1f0np0", 2);
    let mut e = lab.engine();
    e.pool_create("named", sel(&["eno49"]), Policy::FirstFit)
        .unwrap();
    e.pool_create("mlx", sel(&["driver=mlx5_core"]), Policy::FirstFit)
        .unwrap();
    // Turn by turn, so the engine's kept PFs switch between "eno49 only" and "all".
    for round in 0..2 {
        let a = e.acquire(&req("named", &format!("a{round}"))).unwrap();
        assert_eq!(a.pf, "eno49");
        let b = e.acquire(&req("mlx", &format!("b{round}"))).unwrap();
        assert_eq!(b.pf, "ens1f0np0");
    }
    let err = e.acquire(&req("named", "a9")).unwrap_err().to_string();
    assert_eq!(
        err,
        "pool named has no free VF (2 total, 2 leased, 0 unhealthy)"
    );
    // A VF of another PF, asked of a pool that names its PF: not in the pool.
    let mlx_vf = e
        .leases()
        .unwrap()
        .iter()
        .find(|l| l.pool == "mlx")
        .unwrap()
        .vf_pci;
    e.release(&ReleaseTarget::Vf(mlx_vf)).unwrap();
    e.release(&ReleaseTarget::Owner("a0".into())).unwrap();
    let mut named = req("named", "c");
    named.vf = Some(mlx_vf);
    assert!(matches!(
        e.acquire(&named).unwrap_err(),
        EngineError::VfNotInPool { .. }
    ));
    // And the other way round.
    let eno_vf = e.acquire(&req("named", "d")).unwrap().vf_pci;
    e.release(&ReleaseTarget::Owner("d".into())).unwrap();
    let mut other = req("mlx", "f");
    other.vf = Some(eno_vf);
    assert!(matches!(
        e.acquire(&other).unwrap_err(),
        EngineError::VfNotInPool { .. }
    ));
    // A fresh engine (a CLI process) reads only eno49 for the named pool, not every PF.
    let mut fresh = lab.engine();
    let before = lab.fs.reads();
    assert_eq!(fresh.acquire(&req("named", "g")).unwrap().pf, "eno49");
    let acquire_reads = lab.fs.reads() - before;
    let before = lab.fs.reads();
    let all = vfpool_engine::HostView::scan_pfs(&lab.fs).unwrap();
    let scan_reads = lab.fs.reads() - before;
    assert!(all.pfs.len() >= 6, "the demo host has more SR-IOV PFs");
    assert!(
        acquire_reads * 3 < scan_reads,
        "acquire read {acquire_reads} sysfs entries, a scan of every PF {scan_reads}"
    );
}

/// Found on main: a netns deleted and created again under the same name kept the old
/// lease, since gc only asked whether the path exists. The lease records the namespace's
/// identity; gc frees it when the path names another namespace.
#[test]
fn a_netns_created_again_under_the_same_name_is_another_owner() {
    let lab = Lab::new();
    lab.split("em1", 2);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["em1"]), Policy::FirstFit).unwrap();
    let ns = TestNetns::new("again");
    let mut r = req("p", "pod-a");
    r.owner_kind = OwnerKind::Container;
    r.netns = Some(ns.path());
    r.settings.vlan = Some(33);
    let l = e.acquire(&r).unwrap();
    let st = std::fs::metadata(ns.path()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        l.netns_id,
        Some(vfpool_engine::NetnsId {
            dev: st.dev(),
            ino: st.ino()
        })
    );
    // Read back from the ledger, too.
    assert_eq!(e.leases().unwrap()[0].netns_id, l.netns_id);
    let rep = e.gc().unwrap();
    assert!(rep.actions.is_empty());
    assert_eq!(rep.kept, 1);

    ns.del();
    ns.add();
    assert!(ns.path().exists());
    let rep = e.gc().unwrap();
    assert_eq!(rep.actions.len(), 1, "{rep:?}");
    assert_eq!(rep.actions[0].action, GcKind::ReleasedOwnerGone);
    assert!(
        rep.actions[0]
            .reason
            .contains("names another namespace now"),
        "{}",
        rep.actions[0].reason
    );
    lab.assert_pristine("em1", l.vf_index, "after gc");
    assert!(e.leases().unwrap().is_empty());
    // The namespace as it is now can be leased into.
    r.owner = "pod-b".into();
    e.acquire(&r).unwrap();
    assert_eq!(e.gc().unwrap().kept, 1);
}

/// Liveness without pids: gc goes by the VF's in-flight lock. A lease whose recorded
/// process is dead (or lives in another PID namespace, where its pid means nothing here)
/// is kept while its lock is held; one whose process is alive but holds no lock (it is
/// doing something else) was abandoned and is repaired.
#[test]
fn gc_goes_by_the_in_flight_lock_not_the_pid() {
    let lab = Lab::new();
    lab.split("em1", 2);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["em1"]), Policy::FirstFit).unwrap();
    let mut r = req("p", "vm-1");
    r.settings.vlan = Some(12);
    let l = e.acquire(&r).unwrap();
    // As an acquire left it: `acquiring`, recorded under a pid that is not running.
    let dead = (i64::from(i32::MAX), 1);
    e.ledger()
        .write(Durability::Unsynced, |tx| {
            tx.transition(
                l.id,
                &[LeaseState::Active],
                LeaseState::Acquiring,
                Some(dead),
            )
        })
        .unwrap();
    let held = e.ledger().lock_vf(l.vf_pci).unwrap().expect("lock is free");
    let rep = e.gc().unwrap();
    assert_eq!((rep.in_progress, rep.actions.len()), (1, 0), "{rep:?}");
    assert_eq!(lab.vf_config("em1", l.vf_index).vlan, 12);
    let err = e.release(&ReleaseTarget::Owner("vm-1".into())).unwrap_err();
    assert!(matches!(err, EngineError::LeaseBusy { .. }), "{err}");
    assert!(
        e.ledger().lock_vf(l.vf_pci).unwrap().is_none(),
        "still held"
    );
    drop(held);
    let rep = e.gc().unwrap();
    assert_eq!(rep.actions.len(), 1, "{rep:?}");
    assert_eq!(rep.actions[0].action, GcKind::RolledBack);
    lab.assert_pristine("em1", l.vf_index, "rolled back");

    // A live process (this one) recorded, no lock held: abandoned.
    let l = e.acquire(&r).unwrap();
    let me = vfpool_engine::owner::this_process();
    assert!(vfpool_engine::owner::process_alive(me));
    e.ledger()
        .write(Durability::Unsynced, |tx| {
            tx.transition(l.id, &[LeaseState::Active], LeaseState::Releasing, Some(me))
        })
        .unwrap();
    let rep = e.gc().unwrap();
    assert_eq!(rep.in_progress, 0, "{rep:?}");
    assert_eq!(rep.actions[0].action, GcKind::FinishedRelease);
    assert!(e.leases().unwrap().is_empty());
    lab.assert_pristine("em1", l.vf_index, "released");
}
