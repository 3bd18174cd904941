//! The lifecycle through libvirt's C API, against libvirt's `test:///default` driver (in
//! process, no daemon): define with a VF NIC, read it back, a VF attached twice refused,
//! start, destroy, undefine. Needs the `libvirt-api` feature (and
//! Debian's libvirt-dev to build it).

#![cfg(feature = "libvirt-api")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chain, macvtap, vf, vm};
use vfpool_libvirt::api::{Libvirt, LibvirtError};
use vfpool_libvirt::vf_addresses_of;
use vfpool_model::PciAddr;

#[test]
fn define_read_back_start_destroy_undefine() {
    let lv = Libvirt::open("test:///default").unwrap();
    let mut v = vm("vfpool-api-1", vec![vf(0, Some(100))]);
    v.disks.clear();
    v.uuid = None; // test:///default is one state per process, shared by the tests
    lv.define(&v).unwrap();

    let config = lv.config_xml("vfpool-api-1").unwrap();
    assert_eq!(
        vf_addresses_of(&config).unwrap(),
        vec![PciAddr::new(0, 3, 0x10, 0)],
        "{config}"
    );
    assert!(config.contains("<tag id='100'/>"), "{config}");

    // The same VF again is refused before libvirt is asked (libvirt 9.0's test driver has
    // no virDomainAttachDeviceFlags: attach and detach run against a real libvirtd in
    // libvirtd.rs).
    let again = lv.attach_nic("vfpool-api-1", &vf(0, None)).unwrap_err();
    assert!(
        matches!(again, LibvirtError::VfAlreadyAttached { .. }),
        "{again:?}"
    );
    assert_eq!(
        chain(&again),
        "VF 0000:03:10.0 is already in domain 'vfpool-api-1'"
    );
    let unsupported = lv
        .attach_nic("vfpool-api-1", &macvtap("eno49", 0x20, None))
        .unwrap_err();
    assert!(
        chain(&unsupported)
            .starts_with("libvirt refused to attach a NIC to domain 'vfpool-api-1': "),
        "{}",
        chain(&unsupported)
    );

    lv.start("vfpool-api-1").unwrap();
    assert!(lv.is_active("vfpool-api-1").unwrap());
    lv.destroy("vfpool-api-1").unwrap();
    assert!(!lv.is_active("vfpool-api-1").unwrap());
    lv.undefine("vfpool-api-1").unwrap();
    let gone = lv.config_xml("vfpool-api-1").unwrap_err();
    assert!(
        chain(&gone).starts_with("no domain 'vfpool-api-1' in libvirt: "),
        "{}",
        chain(&gone)
    );
}

#[test]
fn refusals_name_the_domain_and_keep_libvirts_reason() {
    let e = Libvirt::open("test:///nonexistent/vfpool.xml")
        .err()
        .unwrap();
    assert!(
        chain(&e).starts_with("connecting to libvirt at 'test:///nonexistent/vfpool.xml': "),
        "{}",
        chain(&e)
    );

    let lv = Libvirt::open("test:///default").unwrap();
    let e = lv
        .attach_nic("vfpool-api-none", &macvtap("eno49", 1, None))
        .unwrap_err();
    assert!(
        chain(&e).starts_with("no domain 'vfpool-api-none' in libvirt: "),
        "{}",
        chain(&e)
    );

    let dup = vm("vfpool-api-dup", vec![vf(0, None), vf(0, None)]);
    let e = lv.define(&dup).unwrap_err();
    assert_eq!(
        chain(&e),
        "rendering domain 'vfpool-api-dup': VF 0000:03:10.0 is in vm 'vfpool-api-dup' twice (nics 0 and 1); a VF can back one NIC only"
    );

    let mut v = vm("vfpool-api-2", vec![]);
    v.disks.clear();
    v.uuid = None; // test:///default is one state per process, shared by the tests
    lv.define(&v).unwrap();
    let e = lv
        .detach_nic("vfpool-api-2", &macvtap("eno49", 1, None))
        .unwrap_err();
    assert!(
        chain(&e).starts_with("libvirt refused to detach a NIC from domain 'vfpool-api-2': "),
        "{}",
        chain(&e)
    );
    lv.undefine("vfpool-api-2").unwrap();
}

#[test]
fn define_xml_takes_xml_rendered_elsewhere_and_names_the_domain_when_refused() {
    let lv = Libvirt::open("test:///default").unwrap();
    let mut v = vm("vfpool-api-3", vec![vf(1, Some(7))]);
    v.disks.clear();
    v.uuid = None; // test:///default is one state per process, shared by the tests
    let xml = vfpool_libvirt::domain_xml(&v).unwrap();
    lv.define_xml("vfpool-api-3", &xml).unwrap();
    let config = lv.config_xml("vfpool-api-3").unwrap();
    assert_eq!(
        vf_addresses_of(&config).unwrap(),
        vec![PciAddr::new(0, 3, 0x10, 4)],
        "{config}"
    );
    lv.start("vfpool-api-3").unwrap();
    assert!(lv.is_active("vfpool-api-3").unwrap());
    lv.destroy("vfpool-api-3").unwrap();
    lv.undefine("vfpool-api-3").unwrap();

    let e = lv
        .define_xml("vfpool-api-bad", "<domain type='test'><name>")
        .unwrap_err();
    assert!(
        chain(&e).starts_with("libvirt refused to define domain 'vfpool-api-bad': "),
        "{}",
        chain(&e)
    );
}
