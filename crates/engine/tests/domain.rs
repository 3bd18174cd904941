#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The libvirt hook's engine calls (`domain.rs`) over the simulated host: a domain's VFs
//! leased at prepare (all or nothing, another owner's VF refused, a vfpool VM's own VFs
//! accepted, prepare again idempotent), released at release, and `lease gc` with libvirt's
//! runtime status file present or absent.

mod common;

use common::{Lab, req};
use vfpool_engine::{
    EngineError, ErrorKind, GcKind, L2Request, L3Request, OwnerKind, VmNicSpec, domain_owner,
};
use vfpool_model::PciAddr;

fn driver_of(lab: &Lab, vf: PciAddr) -> Option<String> {
    let dev = lab.fs.path(format!("bus/pci/devices/{vf}"));
    lab.fs.link_name(&dev.join("driver")).unwrap()
}

/// eno49 with 3 VFs; its VFs' PCI addresses.
fn setup() -> (Lab, vfpool_engine::Engine, Vec<PciAddr>) {
    let lab = Lab::new();
    lab.split("eno49", 3);
    let e = lab
        .engine()
        .with_libvirt_run_dir(lab.state().join("run-libvirt-qemu"));
    let mut vfs: Vec<PciAddr> = e.host().unwrap().vfs.keys().copied().collect();
    vfs.sort();
    assert_eq!(vfs.len(), 3, "{vfs:?}");
    (lab, e, vfs)
}

fn owners(e: &mut vfpool_engine::Engine) -> Vec<(String, PciAddr)> {
    let mut o: Vec<_> = e
        .leases()
        .unwrap()
        .into_iter()
        .map(|l| (l.owner, l.vf_pci))
        .collect();
    o.sort();
    o
}

#[test]
fn prepare_leases_each_vf_to_the_domain_without_touching_it_and_release_gives_them_back() {
    let (lab, mut e, vfs) = setup();
    let before: Vec<_> = vfs.iter().map(|v| driver_of(&lab, *v)).collect();
    // The same hostdev twice (libvirt accepts it): leased once.
    let r = e.domain_prepare("web1", &[vfs[0], vfs[1], vfs[0]]).unwrap();
    assert_eq!(r.leased, vec![vfs[0], vfs[1]]);
    assert_eq!(
        owners(&mut e),
        vec![
            (format!("libvirt/web1/{}", vfs[0]), vfs[0]),
            (format!("libvirt/web1/{}", vfs[1]), vfs[1]),
        ]
    );
    let leases = e.leases().unwrap();
    assert!(leases.iter().all(|l| l.owner_kind == OwnerKind::Vm));
    // No driver change, no settings: libvirt's managed hostdev does that.
    let after: Vec<_> = vfs.iter().map(|v| driver_of(&lab, *v)).collect();
    assert_eq!(before, after);
    assert!(
        leases
            .iter()
            .all(|l| l.applied == vfpool_engine::Applied::default())
    );
    // Prepare again (libvirtd restarted, a retry): nothing new, nothing lost.
    let again = e.domain_prepare("web1", &[vfs[0], vfs[1]]).unwrap();
    assert!(again.leased.is_empty(), "{again:?}");
    assert_eq!(again.held.len(), 2);
    assert_eq!(owners(&mut e).len(), 2);
    // Another domain's release leaves these alone; this one's gives both back, twice fine.
    assert!(e.domain_release("other").unwrap().released.is_empty());
    assert_eq!(e.domain_release("web1").unwrap().released.len(), 2);
    assert!(owners(&mut e).is_empty());
    assert!(e.domain_release("web1").unwrap().released.is_empty());
}

#[test]
fn a_vf_held_by_anyone_else_refuses_the_start_naming_it_and_leases_nothing() {
    let (_lab, mut e, vfs) = setup();
    let mut r = req("pf:eno49", "container-a");
    r.vf = Some(vfs[1]);
    e.acquire(&r).unwrap();
    let err = e
        .domain_prepare("web1", &[vfs[0], vfs[1], vfs[2]])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!(
            "domain 'web1' cannot start: VF {} is leased to 'container-a'",
            vfs[1]
        )
    );
    assert_eq!(owners(&mut e), vec![("container-a".to_owned(), vfs[1])]);
    // Another domain's VF: the same (a VF is never handed out twice).
    e.domain_prepare("db1", &[vfs[2]]).unwrap();
    let err = e.domain_prepare("web1", &[vfs[0], vfs[2]]).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "VF {} is leased to 'libvirt/db1/{}'",
            vfs[2], vfs[2]
        )),
        "{err}"
    );
    assert_eq!(owners(&mut e).len(), 2);
}

#[test]
fn a_vfpool_vm_of_the_same_name_holds_its_vfs_already() {
    let (_lab, mut e, _vfs) = setup();
    e.l2_create(&L2Request {
        name: "l2a".into(),
        nic: "eno49".into(),
        l2_type: None,
        vlan: None,
        sriov: true,
    })
    .unwrap();
    e.l3_create(&L3Request {
        name: "n1".into(),
        l2: "l2a".into(),
        cidr: "10.0.0.0/24".into(),
        gateway: "10.0.0.1".into(),
        range: None,
        dns: None,
    })
    .unwrap();
    let spec: VmNicSpec = "l3=n1,sriov".parse().unwrap();
    e.vm_create("vm1", &[spec]).unwrap();
    let vm = e.vm_start("vm1").unwrap();
    let vf = vm.nics[0].vf.unwrap();
    let r = e.domain_prepare("vm1", &[vf]).unwrap();
    assert_eq!(r.held, vec![(vf, "vm/vm1/nic0".to_owned())]);
    assert!(r.leased.is_empty());
    // Another domain may not have it; the release of vm1's domain leaves the VM's lease.
    let err = e.domain_prepare("vm2", &[vf]).unwrap_err();
    assert!(err.to_string().contains("'vm/vm1/nic0'"), "{err}");
    e.domain_release("vm1").unwrap();
    assert_eq!(owners(&mut e), vec![("vm/vm1/nic0".to_owned(), vf)]);
}

#[test]
fn prepare_with_other_vfs_than_last_time_gives_back_the_old_ones_and_non_vfs_are_skipped() {
    let (_lab, mut e, vfs) = setup();
    e.domain_prepare("web1", &[vfs[0]]).unwrap();
    // A PF passed through whole is not a VF: not vfpool's to lease.
    let pf: PciAddr = e.leases().unwrap()[0].pf_pci;
    let r = e.domain_prepare("web1", &[vfs[1], pf]).unwrap();
    assert_eq!(r.leased, vec![vfs[1]]);
    assert_eq!(r.not_vfs, vec![pf]);
    assert_eq!(r.released, vec![vfs[0]]);
    assert_eq!(owners(&mut e), vec![(domain_owner("web1", vfs[1]), vfs[1])]);
}

#[test]
fn gc_releases_a_gone_domains_leases_and_keeps_a_running_ones() {
    let (lab, mut e, vfs) = setup();
    let run = lab.state().join("run-libvirt-qemu");
    e.domain_prepare("up", &[vfs[0]]).unwrap();
    e.domain_prepare("down", &[vfs[1]]).unwrap();
    // No status directory at all (libvirt not started since boot): nobody can tell, kept.
    let report = e.gc().unwrap();
    assert_eq!((report.actions.len(), report.kept), (0, 2), "{report:?}");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("up.xml"), "<domstatus/>").unwrap();
    let report = e.gc().unwrap();
    assert_eq!(report.actions.len(), 1, "{report:?}");
    assert_eq!(report.actions[0].owner, domain_owner("down", vfs[1]));
    assert_eq!(report.actions[0].action, GcKind::ReleasedOwnerGone);
    assert_eq!(report.kept, 1);
    assert_eq!(owners(&mut e), vec![(domain_owner("up", vfs[0]), vfs[0])]);
    std::fs::remove_file(run.join("up.xml")).unwrap();
    assert_eq!(e.gc().unwrap().actions.len(), 1);
    assert!(owners(&mut e).is_empty());
}

#[test]
fn bad_domain_names_are_refused_naming_the_field() {
    let (_lab, mut e, vfs) = setup();
    for (name, why) in [("", "empty"), ("a/b", "contains '/'"), ("a\nb", "control")] {
        let err: EngineError = e.domain_prepare(name, &[vfs[0]]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name:?}");
        let msg = err.to_string();
        assert!(msg.contains("domain") && msg.contains(why), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(e.domain_release(name).is_err());
    }
    assert!(owners(&mut e).is_empty());
}
