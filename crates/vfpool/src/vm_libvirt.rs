//! `vm start|stop --libvirt URI` (the engine's `vm_start_libvirt`/`vm_stop_libvirt`, built
//! with this crate's `libvirt` feature), tested through the command line.

/// In process, so that libvirt's `test:///default` driver (one state per process, while a
/// connection is open) is seen by the test after the command: the domain vfpool defined and started, its hostdevs and
/// size, and what is left after a failure.
#[cfg(all(test, feature = "libvirt"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use clap::Parser;
    use vfpool_engine::{Engine, VmState, chain};
    use vfpool_libvirt::api::Libvirt;
    use vfpool_libvirt::vf_addresses_of;

    use crate::{Cli, context::Context};

    fn cmd(state: &Path, args: &[&str]) -> anyhow::Result<std::process::ExitCode> {
        let mut argv = vec!["vfpool", "--demo", "--state", state.to_str().unwrap()];
        argv.extend_from_slice(args);
        crate::run(Cli::parse_from(argv))
    }

    fn engine(state: &Path) -> Engine {
        let cli = Cli::parse_from([
            "vfpool",
            "--demo",
            "--state",
            state.to_str().unwrap(),
            "vm",
            "list",
        ]);
        Context::new(&cli).unwrap().engine().unwrap()
    }

    /// A demo host with 2 VFs on eno49, an SR-IOV L2 (VLAN 100) and L3, and VM `vm` with
    /// two VF NICs, 2048 MiB and 2 vCPUs.
    fn setup(vm: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path();
        for args in [
            &["nic", "split", "eno49", "--vfs", "2"][..],
            &[
                "l2", "create", "l2", "--nic", "eno49", "--vlan", "100", "--sriov",
            ],
            &[
                "l3",
                "create",
                "net1",
                "--l2",
                "l2",
                "--cidr",
                "10.0.0.0/24",
                "--gateway",
                "10.0.0.1",
            ],
            &[
                "vm",
                "create",
                vm,
                "--nic",
                "l3=net1,sriov",
                "--nic",
                "l3=net1,sriov",
                "--memory",
                "2048",
                "--vcpus",
                "2",
            ],
        ] {
            cmd(s, args).unwrap();
        }
        dir
    }

    /// Nothing held: no lease, no address, the VM stopped, no domain recorded.
    fn assert_nothing_held(state: &Path, vm: &str) {
        let mut e = engine(state);
        assert_eq!(e.leases().unwrap().len(), 0);
        assert_eq!(e.l3_show("net1").unwrap().allocated, 0);
        let v = e.vm_show(vm).unwrap();
        assert_eq!((v.state, v.libvirt), (VmState::Stopped, None));
    }

    #[test]
    fn start_defines_and_starts_the_domain_with_its_vfs_and_stop_destroys_and_undefines() {
        let dir = setup("lv-a");
        let s = dir.path();
        // Open while the commands run: test:///default's state ends with its last
        // connection.
        let lv = Libvirt::open("test:///default").unwrap();
        cmd(s, &["vm", "start", "lv-a", "--libvirt", "test:///default"]).unwrap();

        let v = engine(s).vm_show("lv-a").unwrap();
        assert_eq!(v.state, VmState::Running);
        assert_eq!(v.libvirt.as_deref(), Some("test:///default"));
        let vfs: Vec<_> = v.nics.iter().map(|n| n.vf.unwrap()).collect();
        assert_eq!(engine(s).leases().unwrap().len(), 2);
        assert!(lv.is_active("lv-a").unwrap());
        assert_eq!(
            lv.domain_uuid("lv-a").unwrap().as_deref(),
            Some(v.uuid.as_str())
        );
        let config = lv.config_xml("lv-a").unwrap();
        assert_eq!(vf_addresses_of(&config).unwrap(), vfs, "{config}");
        assert!(
            config.contains("<memory unit='KiB'>2097152</memory>"),
            "{config}"
        );
        assert!(config.contains(">2</vcpu>"), "{config}");
        assert!(config.contains("<tag id='100'/>"), "{config}");

        cmd(s, &["vm", "stop", "lv-a", "--libvirt", "test:///default"]).unwrap();
        assert_eq!(
            lv.domain_uuid("lv-a").unwrap(),
            None,
            "destroyed and undefined"
        );
        assert_nothing_held(s, "lv-a");
    }

    #[test]
    fn a_define_that_libvirt_refuses_gives_the_leases_back() {
        let dir = setup("lv-b");
        let s = dir.path();
        // Another domain already has the VM's UUID: libvirt refuses to define ours.
        let uuid = engine(s).vm_show("lv-b").unwrap().uuid;
        let lv = Libvirt::open("test:///default").unwrap();
        lv.define_xml(
            "lv-b-other",
            &format!("<domain type='test'><name>lv-b-other</name><uuid>{uuid}</uuid><memory>1024</memory><os><type>hvm</type></os></domain>"),
        )
        .unwrap();
        let e = cmd(s, &["vm", "start", "lv-b", "--libvirt", "test:///default"]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("vm lv-b not started through libvirt at 'test:///default'; its VFs and addresses were given back: libvirt refused to define domain 'lv-b': "),
            "{msg}"
        );
        assert!(msg.contains("lv-b-other"), "{msg}");
        assert_nothing_held(s, "lv-b");
        assert_eq!(lv.domain_uuid("lv-b").unwrap(), None);
        lv.undefine("lv-b-other").unwrap();
    }

    #[test]
    fn a_start_that_libvirt_refuses_gives_the_leases_back_and_keeps_a_domain_it_did_not_define() {
        let dir = setup("lv-c");
        let s = dir.path();
        // The user defined and started the VM's own domain (`vm xml` has its UUID) while
        // the VM was stopped: the start through libvirt fails (it runs already).
        let uuid = engine(s).vm_show("lv-c").unwrap().uuid;
        let lv = Libvirt::open("test:///default").unwrap();
        lv.define_xml(
            "lv-c",
            &format!("<domain type='test'><name>lv-c</name><uuid>{uuid}</uuid><memory>1024</memory><os><type>hvm</type></os></domain>"),
        )
        .unwrap();
        lv.start("lv-c").unwrap();
        let e = cmd(s, &["vm", "start", "lv-c", "--libvirt", "test:///default"]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("vm lv-c not started through libvirt at 'test:///default'; its VFs and addresses were given back: libvirt refused to start domain 'lv-c': "),
            "{msg}"
        );
        assert_nothing_held(s, "lv-c");
        // Not vfpool's: still defined.
        assert_eq!(lv.domain_uuid("lv-c").unwrap(), Some(uuid));
        lv.destroy("lv-c").unwrap();
        lv.undefine("lv-c").unwrap();
    }

    #[test]
    fn a_domain_of_the_name_that_is_not_the_vm_is_left_alone() {
        let dir = setup("lv-d");
        let s = dir.path();
        let lv = Libvirt::open("test:///default").unwrap();
        lv.define_xml(
            "lv-d",
            "<domain type='test'><name>lv-d</name><uuid>00000000-0000-4000-8000-0000000000d1</uuid><memory>1024</memory><os><type>hvm</type></os></domain>",
        )
        .unwrap();
        // At start: refused before anything is leased.
        let e = cmd(s, &["vm", "start", "lv-d", "--libvirt", "test:///default"]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("libvirt at 'test:///default' has a domain 'lv-d' with UUID 00000000-0000-4000-8000-0000000000d1, not VM 'lv-d''s "),
            "{msg}"
        );
        assert_nothing_held(s, "lv-d");
        // At stop (started without libvirt): refused, the VM keeps running with its VFs.
        cmd(s, &["vm", "start", "lv-d"]).unwrap();
        let e = cmd(s, &["vm", "stop", "lv-d", "--libvirt", "test:///default"]).unwrap_err();
        assert!(
            format!("{e:#}").contains("vfpool leaves it alone and keeps the VM running"),
            "{e:#}"
        );
        assert_eq!(engine(s).vm_show("lv-d").unwrap().state, VmState::Running);
        assert_eq!(engine(s).leases().unwrap().len(), 2);
        assert!(lv.domain_uuid("lv-d").unwrap().is_some());
        lv.undefine("lv-d").unwrap();
        // And a stopped VM's stop through libvirt is the engine's refusal.
        cmd(s, &["vm", "stop", "lv-d"]).unwrap();
        let e = cmd(s, &["vm", "stop", "lv-d", "--libvirt", "test:///default"]).unwrap_err();
        assert!(
            format!("{e:#}").contains("it is not running"),
            "{}",
            chain(&*e)
        );
    }
}
