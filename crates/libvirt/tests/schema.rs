//! The rendered XML against libvirt's own RelaxNG schema: `virt-xml-validate` from Debian's
//! libvirt-clients (with xmllint from libxml2-utils). Without them these tests fail, not skip:
//! `scripts/test-all.sh` installs both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{bridge, mac, macvtap, vf, vm};
use vfpool_libvirt::{Disk, DiskFormat, Nic, VfNic, domain_xml, network_xml};
use vfpool_model::PciAddr;

/// Runs `virt-xml-validate FILE KIND`; `Err` carries its output when the schema refuses.
fn validate(xml: &str, kind: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{kind}.xml"));
    std::fs::write(&file, xml).unwrap();
    let out = match Command::new("virt-xml-validate")
        .arg(&file)
        .arg(kind)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "virt-xml-validate: {e}; install Debian's libvirt-clients and libxml2-utils \
             (scripts/test-all.sh does)"
        ),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("not found"),
        "virt-xml-validate cannot run: {text}; install libxml2-utils (xmllint)"
    );
    if out.status.success() && text.contains("validates") {
        Ok(())
    } else {
        Err(text)
    }
}

fn assert_valid(xml: &str, kind: &str) {
    if let Err(why) = validate(xml, kind) {
        panic!("libvirt's schema refuses this {kind}:\n{xml}\n{why}");
    }
}

#[test]
fn the_schema_refuses_what_libvirt_would_refuse() {
    // The validator bites: a VLAN tag beyond 4095, an interface type libvirt does not know,
    // a hostdev interface without its address.
    let good = domain_xml(&vm("z-k8s-n-1", vec![vf(0, Some(100))])).unwrap();
    assert_valid(&good, "domain");
    for broken in [
        good.replace(r#"<tag id="100"/>"#, r#"<tag id="5000"/>"#),
        good.replace(r#"type="hostdev""#, r#"type="sriov""#),
        good.replace(
            r#"<address type="pci" domain="0x0000" bus="0x03" slot="0x10" function="0x0"/>"#,
            "",
        ),
        good.replace(r#"slot="0x10""#, r#"slot="0x20""#),
    ] {
        assert!(
            validate(&broken, "domain").is_err(),
            "schema accepted:\n{broken}"
        );
    }
    let net = network_xml("eno49-sr-iov", "eno49").unwrap();
    assert_valid(&net, "network");
    let broken = net.replace(r#"mode="hostdev""#, r#"mode="sriov""#);
    assert!(
        validate(&broken, "network").is_err(),
        "schema accepted:\n{broken}"
    );
}

#[test]
fn a_domain_with_several_vf_nics_and_vnics_validates() {
    // The seed's host: VFs of eno49 (bus 03) and eno50 (bus 03, after eno49's), one on a
    // second PCI domain, tagged and untagged; macvtaps with and without a VLAN; a bridge.
    let far = Nic::Vf(VfNic {
        pci: PciAddr::new(0x10000, 0x81, 0x1f, 7),
        mac: mac(0x40),
        vlan: Some(4094),
    });
    let mut v = vm(
        "z-k8s-n-1",
        vec![
            vf(0, Some(100)),
            vf(1, None),
            vf(6, Some(1)),
            far,
            macvtap("eno49", 0x20, None),
            macvtap("eno50", 0x21, Some(200)),
            bridge("br-l2", 0x22),
        ],
    );
    v.disks.push(Disk {
        path: "/var/lib/libvirt/images/data.raw".into(),
        format: DiskFormat::Raw,
        target: "vdb".into(),
    });
    let xml = domain_xml(&v).unwrap();
    assert_eq!(xml.matches(r#"<interface type="hostdev""#).count(), 4);
    assert_valid(&xml, "domain");
}

#[test]
fn a_bare_domain_and_escaped_names_validate() {
    let mut bare = vm("bare", vec![]);
    bare.uuid = None;
    bare.disks.clear();
    assert_valid(&domain_xml(&bare).unwrap(), "domain");

    let mut nasty = vm(r#"vm <&'"> 虚拟机"#, vec![vf(2, Some(10))]);
    nasty.uuid = Some("4DEA22B31D52D8F32516782E98AB3FA0".into());
    nasty.disks[0].path = r#"/images/a"b'c<&>.qcow2"#.into();
    assert_valid(&domain_xml(&nasty).unwrap(), "domain");
}

#[test]
fn the_hostdev_network_validates() {
    assert_valid(&network_xml("eno49-sr-iov", "eno49").unwrap(), "network");
    assert_valid(
        &network_xml(r#"pool <&'"> x"#, "enp130s0f1np1").unwrap(),
        "network",
    );
}
