//! `Engine::applied_since_boot`: false on a fresh host, true once `host apply` ran in this
//! boot, false again after a (simulated) reboot; a missing boot id is an error naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use vfpool_engine::{EngineError, Host, HostConfig};

fn demo(dir: &std::path::Path) -> Host {
    Host::open(&HostConfig {
        demo: true,
        state: Some(dir.to_owned()),
        ..HostConfig::default()
    })
    .unwrap()
}

#[test]
fn applied_until_the_next_boot() {
    let dir = tempfile::tempdir().unwrap();
    let host = demo(dir.path());
    let mut e = host.engine().unwrap();
    assert!(!e.applied_since_boot().unwrap(), "nothing applied yet");
    e.apply_boot(None, Duration::from_secs(5), false).unwrap();
    assert!(e.applied_since_boot().unwrap());
    // Another engine (another process) sees it too.
    assert!(host.engine().unwrap().applied_since_boot().unwrap());
    host.sim.as_ref().unwrap().reboot().unwrap();
    assert!(!e.applied_since_boot().unwrap(), "a new boot");
    e.apply_boot(None, Duration::from_secs(5), false).unwrap();
    assert!(e.applied_since_boot().unwrap());
}

#[test]
fn apply_of_one_nic_is_not_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let host = demo(dir.path());
    let mut e = host.engine().unwrap();
    // The udev rule's apply of one NIC does not make the whole host as recorded.
    let _ = e.apply_boot(Some("eno1"), Duration::from_secs(5), false);
    assert!(!e.applied_since_boot().unwrap());
}

#[test]
fn a_missing_boot_id_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let host = demo(dir.path());
    let e = host
        .engine()
        .unwrap()
        .with_proc_root(&dir.path().join("no-proc"));
    let err = e.applied_since_boot().unwrap_err();
    assert!(matches!(err, EngineError::BootId { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("no-proc/sys/kernel/random/boot_id"),
        "{err}"
    );
}
