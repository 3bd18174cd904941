#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The VM layer (`vm.rs`) over the simulated host: the third seed's flow (split, an L2
//! with SR-IOV, an L3, a VM with a VF NIC, start, stop, start with every VF taken,
//! migrate, set-type, restore --force), every refusal, and `lease gc` with the VM table.

mod common;

use std::time::Duration;

use common::{Lab, req};
use vfpool_engine::{
    EngineError, ErrorKind, GcKind, L2Request, L2Type, L3Request, NicType, OwnerKind, VmNicSpec,
    VmState,
};
use vfpool_model::{MacAddr, PciAddr};

fn l2(name: &str, nic: &str, vlan: Option<u32>, sriov: bool) -> L2Request {
    L2Request {
        name: name.into(),
        nic: nic.into(),
        l2_type: None,
        vlan,
        sriov,
    }
}

fn l3(name: &str, l2: &str, cidr: &str, gw: &str) -> L3Request {
    L3Request {
        name: name.into(),
        l2: l2.into(),
        cidr: cidr.into(),
        gateway: gw.into(),
        range: None,
        dns: None,
    }
}

fn nic(s: &str) -> VmNicSpec {
    s.parse().unwrap()
}

fn driver_of(lab: &Lab, vf: PciAddr) -> Option<String> {
    let dev = lab.fs.path(format!("bus/pci/devices/{vf}"));
    lab.fs.link_name(&dev.join("driver")).unwrap()
}

/// eno49 with 2 VFs, L2 `sriov-l2` (VLAN 100, SR-IOV) and L3 `net1` on it.
fn setup() -> (Lab, vfpool_engine::Engine) {
    let lab = Lab::new();
    lab.split("eno49", 2);
    let mut e = lab.engine();
    e.l2_create(&l2("sriov-l2", "eno49", Some(100), true))
        .unwrap();
    e.l3_create(&l3("net1", "sriov-l2", "192.168.10.0/24", "192.168.10.1"))
        .unwrap();
    (lab, e)
}

#[test]
fn the_seed_flow_start_stop_exhaustion_migrate_set_type() {
    let (lab, mut e) = setup();
    let l2v = e.l2_show("sriov-l2").unwrap();
    assert_eq!(
        (l2v.l2_type, l2v.vlan, l2v.sriov),
        (L2Type::Vlan, Some(100), true)
    );
    assert_eq!(l2v.l3, ["net1"]);
    let l3v = e.l3_show("net1").unwrap();
    assert!(l3v.sriov, "an L3 inherits its L2's flag");
    assert_eq!(l3v.range_first.to_string(), "192.168.10.1");
    assert_eq!(e.l3_check_vf("net1").unwrap().free, 2);

    let vm = e
        .vm_create("vm1", &[nic("l3=net1,sriov"), nic("l3=net1")])
        .unwrap();
    assert_eq!(vm.state, VmState::Stopped);
    assert_eq!(vm.nics[0].nic_type, NicType::Vf);
    assert_eq!(vm.nics[1].nic_type, NicType::Vnic);
    let mac = vm.nics[0].mac;
    assert_eq!(mac.0[0] & 0x03, 0x02, "locally administered unicast");
    assert_ne!(vm.nics[0].mac, vm.nics[1].mac);

    // Start: the VF leased with the NIC's MAC and the L2's VLAN, bound to vfio-pci.
    let vm = e.vm_start("vm1").unwrap();
    assert_eq!(vm.state, VmState::Running);
    let vf = vm.nics[0].vf.expect("a VF attached");
    assert_eq!(vm.nics[1].vf, None, "a vNIC gets no VF");
    // The gateway is .1, so the first address handed out is .2.
    assert_eq!(vm.nics[0].address.unwrap().to_string(), "192.168.10.2");
    assert_eq!(vm.nics[1].address.unwrap().to_string(), "192.168.10.3");
    let lease = e
        .leases()
        .unwrap()
        .into_iter()
        .find(|l| l.vf_pci == vf)
        .unwrap();
    assert_eq!(lease.owner, "vm/vm1/nic0");
    assert_eq!(lease.owner_kind, OwnerKind::Vm);
    assert_eq!(lease.pool, "pf:eno49");
    let index = lease.vf_index;
    let cfg = lab.vf_config("eno49", index);
    assert_eq!(cfg.mac, mac);
    assert_eq!(cfg.vlan, 100);
    assert_eq!(driver_of(&lab, vf).as_deref(), Some("vfio-pci"));
    assert_eq!(e.l3_check_vf("net1").unwrap().free, 1);

    // Running with a VF: no migration (the NIC named), no set-type, no delete.
    let err = e.vm_migrate("vm1", "host2").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("nic0"), "{err}");
    let err = e.vm_nic_set_type("vm1", 0, NicType::Vnic).unwrap_err();
    assert_eq!(
        err.to_string(),
        "vm 'vm1' is running: stop it before changing a NIC's type"
    );
    assert!(e.vm_delete("vm1").is_err());
    assert!(e.vm_start("vm1").is_err(), "started twice");

    // Stop: the VF released, back to its driver with nothing left on it.
    let vm = e.vm_stop("vm1").unwrap();
    assert_eq!(vm.state, VmState::Stopped);
    assert!(
        vm.nics
            .iter()
            .all(|n| n.vf.is_none() && n.address.is_none())
    );
    assert!(e.leases().unwrap().is_empty());
    assert_eq!(driver_of(&lab, vf).as_deref(), Some("igbvf"));
    lab.assert_pristine("eno49", index, "after vm stop");
    assert_eq!(e.l3_show("net1").unwrap().allocated, 0);

    // Every VF taken: the start fails naming the L3 and the counts; nothing is leased.
    let mut e2 = lab.engine();
    e2.vm_create("vm2", &[nic("l3=net1,sriov"), nic("l3=net1,sriov")])
        .unwrap();
    e2.acquire(&req("pf:eno49", "squatter")).unwrap();
    let err = e2.vm_start("vm2").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert_eq!(
        err.to_string(),
        "vm 'vm2' cannot start: l3 'net1' has 1 free VFs on eno49, 2 needed"
    );
    assert_eq!(e2.leases().unwrap().len(), 1, "only the squatter's");
    assert_eq!(e2.vm_show("vm2").unwrap().state, VmState::Stopped);
    assert_eq!(e2.l3_show("net1").unwrap().allocated, 0);

    // Stopped: migration allowed (recorded nowhere), set-type both ways.
    assert!(e.vm_migrate("vm1", "host2").unwrap().allowed);
    let vm = e.vm_nic_set_type("vm1", 0, NicType::Vnic).unwrap();
    assert_eq!(vm.nics[0].nic_type, NicType::Vnic);
    let vm = e.vm_nic_set_type("vm1", 0, NicType::Vf).unwrap();
    assert_eq!(vm.nics[0].nic_type, NicType::Vf);
    assert_eq!(vm.nics[0].mac, mac, "the MAC stays");
    // A VM with only vNICs migrates while it runs.
    e.vm_nic_set_type("vm1", 0, NicType::Vnic).unwrap();
    e.vm_start("vm1").unwrap();
    assert!(e.vm_migrate("vm1", "host2").unwrap().allowed);
    e.vm_stop("vm1").unwrap();
    e.vm_delete("vm1").unwrap();
    assert_eq!(e.vm_show("vm1").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn a_start_that_fails_part_way_gives_back_what_it_took() {
    let (lab, mut e) = setup();
    // Both VFs free (the check passes) and leased, then the L3 has one address for two
    // NICs: the start fails after both acquires, and both VFs are given back.
    let mut tiny = l3("tiny", "sriov-l2", "10.0.0.0/24", "10.0.0.1");
    tiny.range = Some("10.0.0.2-10.0.0.2".into());
    e.l3_create(&tiny).unwrap();
    e.vm_create("vm", &[nic("l3=tiny,sriov"), nic("l3=tiny,sriov")])
        .unwrap();
    let err = e.vm_start("vm").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert_eq!(
        err.to_string(),
        "l3 'tiny' has no free address in 10.0.0.2-10.0.0.2"
    );
    assert!(e.leases().unwrap().is_empty());
    assert_eq!(e.l3_show("tiny").unwrap().allocated, 0);
    assert_eq!(e.vm_show("vm").unwrap().state, VmState::Stopped);
    lab.assert_pristine("eno49", 0, "after a failed start");
    lab.assert_pristine("eno49", 1, "after a failed start");
    // A second NIC whose L2 has no free VF: refused before anything is leased.
    lab.split("eno50", 1);
    e.l2_create(&l2("b", "eno50", None, true)).unwrap();
    e.l3_create(&l3("net2", "b", "10.0.0.0/24", "10.0.0.1"))
        .unwrap();
    e.vm_create("vm2", &[nic("l3=net1,sriov"), nic("l3=net2,sriov")])
        .unwrap();
    e.acquire(&req("pf:eno50", "squatter")).unwrap();
    let err = e.vm_start("vm2").unwrap_err();
    assert!(
        err.to_string()
            .contains("l3 'net2' has 0 free VFs on eno50, 1 needed"),
        "{err}"
    );
    let leases = e.leases().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].owner, "squatter");
}

#[test]
fn restore_refuses_vms_vfs_and_force_detaches_them() {
    let (lab, mut e) = setup();
    e.vm_create("vm1", &[nic("l3=net1,sriov")]).unwrap();
    e.vm_start("vm1").unwrap();
    let err = e
        .restore_nics(&["eno49".into()], Duration::from_secs(5), false)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "eno49 has VFs attached to VMs (vm1); stop them, or add --force to detach the VFs from them"
    );
    assert_eq!(e.leases().unwrap().len(), 1, "nothing changed");
    e.restore_nics(&["eno49".into()], Duration::from_secs(5), true)
        .unwrap();
    let vm = e.vm_show("vm1").unwrap();
    assert!(vm.nics[0].detached);
    assert_eq!(vm.nics[0].vf, None);
    assert!(e.leases().unwrap().is_empty());
    // Stop and start again once the NIC has VFs: the NIC gets a VF, no longer detached.
    e.vm_stop("vm1").unwrap();
    lab.split("eno49", 2);
    let vm = e.vm_start("vm1").unwrap();
    assert!(!vm.nics[0].detached);
    assert!(vm.nics[0].vf.is_some());
    // A split that changes the count destroys the VFs as well: the same refusal and force.
    let mut split = vfpool_engine::SplitRequest {
        nics: vec!["eno49".into()],
        vfs: "3".into(),
        autoprobe: None,
        timeout: Duration::from_secs(5),
        force: false,
        keep_link: true,
    };
    let err = e.split_nics(&split, &|_, _, _| {}).unwrap_err();
    assert!(err.to_string().contains("VMs (vm1)"), "{err}");
    split.force = true;
    e.split_nics(&split, &|_, _, _| {}).unwrap();
    assert!(e.vm_show("vm1").unwrap().nics[0].detached);
    assert!(e.leases().unwrap().is_empty());
}

#[test]
fn more_vf_nics_than_the_nic_has_vfs_cannot_start() {
    let (_lab, mut e) = setup();
    let specs = vec![nic("l3=net1,sriov"); 3];
    e.vm_create("big", &specs).unwrap();
    let err = e.vm_start("big").unwrap_err();
    assert_eq!(
        err.to_string(),
        "vm 'big' cannot start: l3 'net1' has 2 free VFs on eno49, 3 needed"
    );
    assert!(e.leases().unwrap().is_empty());
}

#[test]
fn gc_releases_the_leases_of_stopped_or_deleted_vms_and_keeps_running_ones() {
    let (lab, mut e) = setup();
    e.vm_create("run", &[nic("l3=net1,sriov")]).unwrap();
    e.vm_create("gone", &[nic("l3=net1,sriov")]).unwrap();
    e.vm_start("run").unwrap();
    e.vm_start("gone").unwrap();
    // As if a VM were stopped and deleted behind vfpool's back (its row gone, its lease
    // left): only the ledger changes.
    rusqlite::Connection::open(lab.state().join("state.db"))
        .unwrap()
        .execute_batch(
            "DELETE FROM vm_nics WHERE vm = 'gone'; DELETE FROM vms WHERE name = 'gone';",
        )
        .unwrap();
    let report = e.gc().unwrap();
    assert_eq!(report.actions.len(), 1, "{report:?}");
    assert_eq!(report.actions[0].owner, "vm/gone/nic0");
    assert_eq!(report.actions[0].action, GcKind::ReleasedOwnerGone);
    assert_eq!(report.kept, 1);
    let leases = e.leases().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].owner, "vm/run/nic0");
    // A VM marked stopped with a lease left (a stop that crashed after the mark): released.
    rusqlite::Connection::open(lab.state().join("state.db"))
        .unwrap()
        .execute_batch("UPDATE vms SET state = 'stopped' WHERE name = 'run';")
        .unwrap();
    assert_eq!(e.gc().unwrap().actions.len(), 1);
    assert!(e.leases().unwrap().is_empty());
    // A VM lease outside the VM layer's naming still goes to the seam (unknown: kept).
    let mut r = req("pf:eno49", "libvirt-domain-x");
    r.owner_kind = OwnerKind::Vm;
    e.acquire(&r).unwrap();
    let report = e.gc().unwrap();
    assert_eq!((report.actions.len(), report.kept), (0, 1));
}

fn err_of<T: std::fmt::Debug>(r: Result<T, EngineError>) -> (ErrorKind, String) {
    let e = r.unwrap_err();
    (e.kind(), e.to_string())
}

#[test]
fn bad_input_is_refused_with_one_line_naming_field_and_value() {
    let (_lab, mut e) = setup();
    let inv = ErrorKind::InvalidInput;
    let mut vx = l2("vx", "eno50", Some(5000), true);
    vx.l2_type = Some(L2Type::Vxlan);
    assert_eq!(
        err_of(e.l2_create(&vx)),
        (
            inv,
            "invalid sriov 'on': off for a vxlan L2 (SR-IOV needs a novlan or vlan L2)".into()
        )
    );
    vx.sriov = false;
    e.l2_create(&vx).unwrap();
    assert_eq!(err_of(e.l2_set_sriov("vx", true)).0, inv);
    assert_eq!(
        err_of(e.l2_create(&l2("v", "eno50", Some(5000), false))),
        (inv, "invalid vlan '5000': a VLAN id 1..=4094".into())
    );
    assert_eq!(
        err_of(e.l2_create(&l2("sriov-l2", "eno50", None, false))),
        (ErrorKind::Conflict, "l2 'sriov-l2' exists already".into())
    );
    assert_eq!(
        err_of(e.l2_create(&l2("x", "nope0", None, true))).0,
        ErrorKind::NotFound
    );
    assert_eq!(
        err_of(e.l2_create(&l2("x", "nope0", None, false))).0,
        ErrorKind::NotFound
    );
    assert_eq!(
        err_of(e.l2_create(&l2("x", "eno49v0", None, false))),
        (
            inv,
            "invalid nic 'eno49v0': a physical NIC, not a VF (this is a VF of eno49)".into()
        )
    );
    assert_eq!(
        err_of(e.l2_create(&l2("bad name", "eno50", None, false))).0,
        inv
    );
    assert_eq!(
        err_of(e.l3_create(&l3("n", "nol2", "10.0.0.0/24", "10.0.0.1"))),
        (
            ErrorKind::NotFound,
            "unknown l2 'nol2' (known: sriov-l2, vx)".into()
        )
    );
    assert_eq!(
        err_of(e.l3_create(&l3("n", "sriov-l2", "192.168.10.128/25", "192.168.10.129"))),
        (
            ErrorKind::Conflict,
            "cidr 192.168.10.128/25 of l3 'n' overlaps l3 'net1' (192.168.10.0/24) on l2 'sriov-l2'"
                .into()
        )
    );
    // The same CIDR on another L2 is fine.
    e.l3_create(&l3("other", "vx", "192.168.10.0/24", "192.168.10.1"))
        .unwrap();
    assert_eq!(
        err_of(e.l3_create(&l3("n", "sriov-l2", "10.0.0.0/24", "10.0.1.1"))),
        (
            inv,
            "invalid gateway '10.0.1.1': an address inside 10.0.0.0/24".into()
        )
    );
    let mut r = l3("n", "sriov-l2", "10.0.0.0/24", "10.0.0.1");
    r.range = Some("10.0.0.10-10.0.1.5".into());
    assert_eq!(
        err_of(e.l3_create(&r)),
        (
            inv,
            "invalid range '10.0.0.10-10.0.1.5': FIRST-LAST, two addresses inside 10.0.0.0/24"
                .into()
        )
    );
    r.range = Some("10.0.0.10".into());
    assert_eq!(err_of(e.l3_create(&r)).0, inv);
    r.range = None;
    r.cidr = "10.0.0.1/24".into();
    assert_eq!(err_of(e.l3_create(&r)).0, inv);
    // An SR-IOV NIC on a non-SR-IOV L3.
    assert_eq!(
        err_of(e.vm_create("vm", &[nic("l3=other,sriov")])),
        (
            ErrorKind::Conflict,
            "l3 'other' is not an SR-IOV network (l2 'vx' has no SR-IOV flag; `vfpool l2 set vx --sriov on`)".into()
        )
    );
    assert!(e.vm_show("vm").is_err(), "nothing created");
    // A duplicate MAC on one L2, fine on another.
    let mac: MacAddr = "02:00:00:00:00:aa".parse().unwrap();
    e.vm_create("a", &[nic("l3=net1,mac=02:00:00:00:00:aa")])
        .unwrap();
    assert_eq!(
        err_of(e.vm_create("b", &[nic("l3=net1,sriov,mac=02:00:00:00:00:aa")])),
        (
            ErrorKind::Conflict,
            format!("mac {mac} is taken on l2 'sriov-l2' by a/nic0")
        )
    );
    e.vm_create("b", &[nic("l3=other,mac=02:00:00:00:00:aa")])
        .unwrap();
    assert_eq!(
        err_of(e.vm_nic_add("a", &nic("l3=net1,mac=02:00:00:00:00:aa"))).0,
        ErrorKind::Conflict
    );
    // Unknown things.
    assert_eq!(
        err_of(e.vm_start("nope")),
        (
            ErrorKind::NotFound,
            "unknown vm 'nope' (known: a, b)".into()
        )
    );
    assert_eq!(
        err_of(e.vm_nic_set_type("a", 7, NicType::Vnic)),
        (
            ErrorKind::NotFound,
            "unknown vm nic 'a/nic7' (known: nic0)".into()
        )
    );
    assert_eq!(
        err_of(e.vm_create("c", &[nic("l3=nol3")])).0,
        ErrorKind::NotFound
    );
    assert_eq!(err_of(e.l3_check_vf("nol3")).0, ErrorKind::NotFound);
    assert_eq!(err_of(e.l3_check_vf("other")).0, ErrorKind::Conflict);
    assert_eq!(
        err_of(e.vm_nic_set_type("b", 0, NicType::Vf)).0,
        ErrorKind::Conflict
    );
    // In use.
    assert_eq!(
        err_of(e.l3_delete("net1")),
        (
            ErrorKind::Conflict,
            "l3 'net1' is used by VM NICs a/nic0; remove them first".into()
        )
    );
    assert_eq!(
        err_of(e.l2_delete("sriov-l2")),
        (
            ErrorKind::Conflict,
            "l2 'sriov-l2' is used by l3 net1; delete them first".into()
        )
    );
    e.vm_nic_set_type("a", 0, NicType::Vf).unwrap();
    assert_eq!(
        err_of(e.l2_set_sriov("sriov-l2", false)),
        (
            ErrorKind::Conflict,
            "l2 'sriov-l2' is used by VF NICs a/nic0; set them to vnic first".into()
        )
    );
    // Stopping a stopped VM.
    assert_eq!(
        err_of(e.vm_stop("a")),
        (
            ErrorKind::Conflict,
            "vm 'a' is stopped: it is not running".into()
        )
    );
    // Removing and deleting: clean up in order.
    e.vm_nic_remove("a", 0).unwrap();
    e.vm_delete("a").unwrap();
    e.l3_delete("net1").unwrap();
    e.l2_delete("sriov-l2").unwrap();
    assert_eq!(e.l2_list().unwrap().len(), 1);
}
