//! `vfpool_host::driver` over the simulated host: bind, unbind and reload a VF's driver,
//! and the errors of a probe that binds nothing and of a refused write.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use vfpool_host::driver::{
    DriverError, bind, current, driver_override, rebind, set_driver_override, unbind,
};
use vfpool_host::split::{self, SplitOptions};
use vfpool_host::{Inventory, Sysfs};
use vfpool_model::PciAddr;
use vfpool_sim::{HostSpec, SimHost};

/// The demo host with 2 VFs on eno50 (igb): returns the first VF.
fn host(iommu: bool) -> (tempfile::TempDir, Sysfs, PciAddr) {
    let dir = tempfile::tempdir().unwrap();
    let spec = HostSpec {
        iommu,
        ..HostSpec::demo()
    };
    let sim = SimHost::open_or_create(dir.path(), &spec).unwrap();
    let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
    let opts = SplitOptions {
        timeout: Duration::from_secs(5),
        ..SplitOptions::default()
    };
    let pf = Inventory::scan(&fs)
        .unwrap()
        .find_sriov_pf("eno50")
        .unwrap()
        .clone();
    split::split(&fs, &pf, 2, &opts, &|_, _| {}).unwrap();
    let pf = Inventory::scan(&fs)
        .unwrap()
        .find_sriov_pf("eno50")
        .unwrap()
        .clone();
    (dir, fs, pf.vfs[0].pci)
}

#[test]
fn bind_unbind_and_back() {
    let (_d, fs, vf) = host(true);
    assert_eq!(current(&fs, vf).unwrap().as_deref(), Some("igbvf"));
    bind(&fs, vf, Some("vfio-pci")).unwrap();
    assert_eq!(current(&fs, vf).unwrap().as_deref(), Some("vfio-pci"));
    assert_eq!(
        driver_override(&fs, vf).unwrap().as_deref(),
        Some("vfio-pci")
    );
    unbind(&fs, vf).unwrap();
    assert_eq!(current(&fs, vf).unwrap(), None);
    assert_eq!(driver_override(&fs, vf).unwrap(), None);
    bind(&fs, vf, Some("igbvf")).unwrap();
    set_driver_override(&fs, vf, None).unwrap();
    assert_eq!(current(&fs, vf).unwrap().as_deref(), Some("igbvf"));
    assert_eq!(driver_override(&fs, vf).unwrap(), None);
}

#[test]
fn rebind_keeps_the_driver_and_the_override() {
    let (_d, fs, vf) = host(true);
    rebind(&fs, vf).unwrap();
    assert_eq!(current(&fs, vf).unwrap().as_deref(), Some("igbvf"));
    assert_eq!(driver_override(&fs, vf).unwrap(), None);
    unbind(&fs, vf).unwrap();
    // Unbound: nothing to reload.
    rebind(&fs, vf).unwrap();
    assert_eq!(current(&fs, vf).unwrap(), None);
}

#[test]
fn a_probe_that_binds_nothing_is_an_error() {
    // vfio-pci refuses a device without an IOMMU group; drivers_probe still succeeds.
    let (_d, fs, vf) = host(false);
    let e = bind(&fs, vf, Some("vfio-pci")).unwrap_err();
    assert!(matches!(e, DriverError::NotBound { .. }), "{e}");
    assert!(e.to_string().contains("vfio-pci needs an IOMMU"), "{e}");
}

#[test]
fn a_refused_write_names_the_file() {
    let (_d, fs, vf) = host(true);
    // A VF that does not exist: its driver_override cannot be written.
    let gone = PciAddr::new(0, 0x7f, 0x1f, 7);
    let e = bind(&fs, gone, Some("vfio-pci")).unwrap_err();
    assert!(matches!(e, DriverError::Bind { .. }), "{e}");
    assert!(e.to_string().contains("driver_override"), "{e}");
    assert_eq!(current(&fs, vf).unwrap().as_deref(), Some("igbvf"));
}
