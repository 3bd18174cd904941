#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Attaching a leased VF's netdev to a container's network namespace, over the simulated
//! host (whose netlink backend keeps namespaces, names and altnames as the kernel does).

mod common;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use common::{Lab, req, sel};
use vfpool_engine::{Engine, EngineError, LeaseState, Mismatch, OwnerKind, Policy, chain};
use vfpool_model::{MacAddr, PciAddr};
use vfpool_netlink::{NetOps, VfKnob};

/// A "network namespace" of the simulated host: any file (its identity names it).
fn netns(lab: &Lab, name: &str) -> PathBuf {
    let p = lab.dir.path().join("netns").join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, "").unwrap();
    p
}

fn inside(lab: &Lab, ns: &Path) -> Box<dyn NetOps> {
    let f = std::fs::File::open(ns).unwrap();
    lab.net.enter_netns(f.as_fd()).unwrap()
}

fn setup() -> (Lab, Engine) {
    let lab = Lab::new();
    lab.split("eno49", 4);
    let mut e = lab.engine();
    e.pool_create("p", sel(&["eno49"]), Policy::FirstFit)
        .unwrap();
    (lab, e)
}

fn container(owner: &str, ns: &Path, ifname: &str) -> vfpool_engine::AcquireRequest {
    let mut r = req("p", owner);
    r.owner_kind = OwnerKind::Container;
    r.netns = Some(ns.to_owned());
    r.ifname = Some(ifname.to_owned());
    r.settings.mac = Some("02:aa:00:00:00:01".parse().unwrap());
    r.settings.mtu = Some(9000);
    r.settings.vlan = Some(20);
    r
}

#[test]
fn acquire_into_a_netns_then_release_gives_it_back() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "pod1");
    let l = e.acquire(&container("pod1/eth1", &ns, "eth1")).unwrap();
    let host_name = l.netdev.clone().unwrap();
    assert_eq!(l.ifname.as_deref(), Some("eth1"));
    assert_eq!(l.state, LeaseState::Active);
    // Gone from the host, there in the namespace with the lease's settings.
    assert!(lab.net.link(&host_name).is_err());
    let i = inside(&lab, &ns);
    let link = i.link("eth1").unwrap();
    assert!(link.admin_up && !link.promisc);
    assert_eq!(link.mtu, 9000);
    assert_eq!(link.mac, Some("02:aa:00:00:00:01".parse().unwrap()));
    assert_eq!(link.parent_dev, Some(l.vf_pci.to_string()));
    // Recorded in the ledger for another process's release.
    let row = e
        .leases()
        .unwrap()
        .into_iter()
        .find(|x| x.id == l.id)
        .unwrap();
    assert_eq!(
        (row.ifname.as_deref(), row.netns.clone()),
        (Some("eth1"), Some(ns.display().to_string()))
    );
    assert_eq!(e.verify("pod1/eth1").unwrap(), []);

    let released = e.release_idempotent("pod1/eth1").unwrap().unwrap();
    assert_eq!(released.vf_pci, l.vf_pci);
    let back = lab.net.link(&host_name).unwrap();
    assert_eq!(back.mtu, 1500, "the mtu restored");
    assert!(i.links().unwrap().is_empty());
    lab.assert_pristine("eno49", l.vf_index, "after release");
    // Idempotent: nothing to release is not an error.
    assert!(e.release_idempotent("pod1/eth1").unwrap().is_none());
}

#[test]
fn leftovers_of_an_earlier_pod_are_cleared_and_an_own_altname_dropped() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "pod1");
    // The VF the policy picks first carries what a previous user left.
    let vf0 = lab.net.vf_configs("eno49").unwrap().len();
    assert_eq!(vf0, 4);
    let mut r = req("p", "probe");
    r.vf = None;
    let probe = e.acquire(&r).unwrap();
    let name = probe.netdev.clone().unwrap();
    e.release_idempotent("probe").unwrap();
    lab.net.set_promisc(&name, true).unwrap();
    lab.net
        .add_address(&name, "10.5.0.9/24".parse().unwrap())
        .unwrap();
    lab.net.add_alt_name(&name, "eth1").unwrap();

    let l = e.acquire(&container("pod1/eth1", &ns, "eth1")).unwrap();
    assert_eq!(l.netdev.as_deref(), Some(name.as_str()));
    let i = inside(&lab, &ns);
    let link = i.link("eth1").unwrap();
    assert!(!link.promisc, "promisc cleared");
    assert!(link.alt_names.is_empty(), "the own altname was dropped");
    assert!(i.addresses("eth1").unwrap().is_empty());
}

#[test]
fn a_failed_attach_rolls_the_acquire_back() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "pod1");
    // eth1 is taken in the namespace by another netdev: the move fails.
    let mut other = req("p", "other");
    other.owner_kind = OwnerKind::Container;
    other.netns = Some(ns.clone());
    other.ifname = Some("eth1".into());
    e.acquire(&other).unwrap();
    let before = e.leases().unwrap().len();
    let err = e.acquire(&container("pod1/eth1", &ns, "eth1")).unwrap_err();
    let text = chain(&err);
    assert!(
        matches!(
            err,
            EngineError::Attach {
                step: "moving it into the namespace",
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("as eth1: moving it into the namespace failed"),
        "{text}"
    );
    assert!(text.contains("the name is already taken there"), "{text}");
    assert_eq!(e.leases().unwrap().len(), before, "no lease left");
    // The VF it tried is back in the host, untouched.
    for vf in 1..4u16 {
        lab.assert_pristine("eno49", vf, "after the failed attach");
    }
    let host: Vec<String> = lab
        .net
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert!(host.iter().any(|n| n == "eno49v1"), "{host:?}");
}

#[test]
fn reserve_then_attach_then_check_and_del() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "pod1");
    // A device plugin reserves VF 2 before the pod's namespace exists.
    let vf: PciAddr = lab
        .net
        .link("eno49v2")
        .unwrap()
        .parent_dev
        .unwrap()
        .parse()
        .unwrap();
    let mut r = req("p", "pod1/net1");
    r.owner_kind = OwnerKind::Container;
    r.vf = Some(vf);
    r.settings.mtu = Some(9000);
    let l = e.acquire(&r).unwrap();
    assert_eq!(
        (l.vf_pci, l.netns.clone(), l.ifname.clone()),
        (vf, None, None)
    );
    assert_eq!(e.verify("pod1/net1").unwrap(), [Mismatch::NotAttached]);

    let a = e.attach("pod1/net1", &ns, "net1").unwrap();
    assert_eq!(a.ifname.as_deref(), Some("net1"));
    assert_eq!(e.verify("pod1/net1").unwrap(), []);
    // The same attach again (a retried ADD) succeeds; another one is refused.
    e.attach("pod1/net1", &ns, "net1").unwrap();
    assert_eq!(e.verify("pod1/net1").unwrap(), []);
    let ns2 = netns(&lab, "pod2");
    let err = e.attach("pod1/net1", &ns2, "net1").unwrap_err();
    assert!(matches!(err, EngineError::AlreadyAttached { .. }), "{err}");

    // CHECK sees every difference.
    let i = inside(&lab, &ns);
    i.set_mtu("net1", 1500).unwrap();
    i.set_promisc("net1", true).unwrap();
    i.set_up("net1", false).unwrap();
    lab.net
        .set_vf_knob("eno49", 2, &VfKnob::SpoofChk(false))
        .unwrap();
    let m = e.verify("pod1/net1").unwrap();
    assert!(
        m.contains(&Mismatch::Mtu {
            want: 9000,
            found: 1500
        }),
        "{m:?}"
    );
    assert!(
        m.contains(&Mismatch::NotUp {
            ifname: "net1".into()
        }),
        "{m:?}"
    );
    assert!(
        m.contains(&Mismatch::Promisc {
            ifname: "net1".into()
        }),
        "{m:?}"
    );
    i.rename("net1", "other").unwrap();
    assert_eq!(
        e.verify("pod1/net1").unwrap(),
        [Mismatch::NetdevMissing {
            ifname: "net1".into()
        }]
    );
    e.release_idempotent("pod1/net1").unwrap().unwrap();
    assert_eq!(lab.net.link("eno49v2").unwrap().mtu, 1500);
    assert!(i.links().unwrap().is_empty());
}

#[test]
fn verify_reports_pf_side_drift() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "pod1");
    let l = e.acquire(&container("pod1/eth1", &ns, "eth1")).unwrap();
    lab.net
        .set_vf_knob(
            "eno49",
            l.vf_index,
            &VfKnob::Vlan {
                vlan: 30,
                qos: 0,
                proto: Default::default(),
            },
        )
        .unwrap();
    let m = e.verify("pod1/eth1").unwrap();
    assert_eq!(
        m,
        [Mismatch::PfSetting {
            setting: "vlan",
            want: "20".into(),
            found: "30".into()
        }]
    );
    let err = e.verify("nobody").unwrap_err();
    assert_eq!(err.to_string(), "unknown owner 'nobody': it holds no lease");
}

#[test]
fn release_after_the_netns_is_gone_renames_the_returned_netdev() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "pod1");
    let l = e.acquire(&container("pod1/eth1", &ns, "eth1")).unwrap();
    let host_name = l.netdev.clone().unwrap();
    std::fs::remove_file(&ns).unwrap();
    assert_eq!(
        e.verify("pod1/eth1").unwrap(),
        [Mismatch::NetnsGone {
            netns: ns.display().to_string()
        }]
    );
    e.release_idempotent("pod1/eth1").unwrap().unwrap();
    let back = lab.net.link(&host_name).unwrap();
    assert_eq!(back.name, host_name);
    assert!(lab.net.link("eth1").is_err());
    lab.assert_pristine("eno49", l.vf_index, "after release");
}

#[test]
fn gc_gives_back_the_vf_of_a_gone_netns() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "pod1");
    let l = e.acquire(&container("pod1/eth1", &ns, "eth1")).unwrap();
    std::fs::remove_file(&ns).unwrap();
    let report = e.gc().unwrap();
    assert_eq!(report.errors, Vec::<String>::new());
    assert_eq!(report.actions.len(), 1);
    assert!(lab.net.link(l.netdev.as_deref().unwrap()).is_ok());
}

#[test]
fn bad_input_is_refused_before_anything_is_leased() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "pod1");
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "a:b",
        "a b",
        "eth%d",
        "abcdefghijklmnop",
    ] {
        let err = e.acquire(&container("o", &ns, bad)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid ifname '{bad}': 1 to 15 bytes, not . or .., without /, :, % or whitespace"
            ),
        );
        let err = e.attach("o", &ns, bad).unwrap_err();
        assert!(err.to_string().starts_with("invalid ifname"), "{err}");
    }
    let mut r = container("o", &ns, "eth1");
    r.netns = None;
    r.owner_kind = OwnerKind::Manual;
    let err = e.acquire(&r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid ifname 'eth1': only with a netns to attach the VF's netdev to"
    );
    assert!(e.leases().unwrap().is_empty());
    let err = e.attach("nobody", &ns, "eth1").unwrap_err();
    assert_eq!(err.to_string(), "unknown owner 'nobody': it holds no lease");
    let err = e
        .attach("nobody", std::path::Path::new("rel/ns"), "eth1")
        .unwrap_err();
    assert!(
        err.to_string().starts_with("invalid netns 'rel/ns'"),
        "{err}"
    );
    // A VF bound to vfio-pci has no netdev to attach.
    let mut r = req("p", "vm");
    r.driver = Some(vfpool_engine::DriverChoice::VfioPci);
    if e.acquire(&r).is_ok() {
        let err = e.attach("vm", &ns, "eth1").unwrap_err();
        assert!(matches!(err, EngineError::NoNetdev { .. }), "{err}");
    }
    let _ = MacAddr::ZERO;
}

/// An attach after a reserve records the namespace's identity, as an acquire into a
/// namespace does: a namespace deleted and created again under the same path is another
/// pod, and `gc` frees the old one's VF. An attach is refused a path that is no namespace.
#[test]
fn attach_records_the_netns_identity_and_gc_tells_a_recreated_one_apart() {
    let (lab, mut e) = setup();
    let ns = netns(&lab, "pod1");
    let mut r = req("p", "pod1/net1");
    r.owner_kind = OwnerKind::Container;
    e.acquire(&r).unwrap();
    let err = e
        .attach("pod1/net1", Path::new("/etc/passwd"), "net1")
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid netns '/etc/passwd': not a network namespace"),
        "{err}"
    );
    let a = e.attach("pod1/net1", &ns, "net1").unwrap();
    assert!(a.netns_id.is_some());
    let stored = e
        .ledger()
        .read(|tx| tx.lease_by_owner("pod1/net1"))
        .unwrap()
        .unwrap();
    assert_eq!(stored.netns_id, a.netns_id);
    // Still there: gc keeps it.
    assert!(e.gc().unwrap().actions.is_empty());
    // The same path, another namespace (a new file, a new inode; the old one kept alive so
    // that the inode cannot be reused).
    let old = ns.with_extension("old");
    std::fs::rename(&ns, &old).unwrap();
    std::fs::write(&ns, "").unwrap();
    let report = e.gc().unwrap();
    assert_eq!(report.actions.len(), 1, "{report:?}");
    assert!(
        report.actions[0].reason.contains("another namespace"),
        "{:?}",
        report.actions[0]
    );
}
