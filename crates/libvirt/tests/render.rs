//! The rendered XML, exactly: golden documents, escaping, and every refusal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bridge, chain, mac, macvtap, vf, vm};
use vfpool_libvirt::{
    Disk, DiskFormat, Nic, RenderError, VfNic, Vnic, VnicMode, domain_xml, interface_xml,
    network_xml,
};
use vfpool_model::PciAddr;

#[test]
fn vf_nic_is_a_managed_hostdev_interface_with_its_pci_address_vlan_and_vfio() {
    let xml = interface_xml(&vf(0, Some(100))).unwrap();
    assert_eq!(
        xml,
        r#"<interface type="hostdev" managed="yes">
  <mac address="52:54:00:6b:00:10"/>
  <source>
    <address type="pci" domain="0x0000" bus="0x03" slot="0x10" function="0x0"/>
  </source>
  <vlan>
    <tag id="100"/>
  </vlan>
  <driver name="vfio"/>
</interface>
"#
    );
}

#[test]
fn vf_nic_without_vlan_has_no_vlan_element() {
    let xml = interface_xml(&vf(3, None)).unwrap();
    assert_eq!(
        xml,
        r#"<interface type="hostdev" managed="yes">
  <mac address="52:54:00:6b:00:13"/>
  <source>
    <address type="pci" domain="0x0000" bus="0x03" slot="0x11" function="0x4"/>
  </source>
  <driver name="vfio"/>
</interface>
"#
    );
}

#[test]
fn vf_address_parts_are_written_in_hex_with_a_wide_domain() {
    let nic = Nic::Vf(VfNic {
        pci: PciAddr::new(0x10002, 0xaf, 0x1f, 7),
        mac: mac(1),
        vlan: Some(4094),
    });
    let xml = interface_xml(&nic).unwrap();
    assert!(
        xml.contains(
            r#"<address type="pci" domain="0x10002" bus="0xaf" slot="0x1f" function="0x7"/>"#
        ),
        "{xml}"
    );
    assert!(xml.contains(r#"<tag id="4094"/>"#), "{xml}");
}

#[test]
fn macvtap_vnic_is_a_direct_interface_in_bridge_mode() {
    assert_eq!(
        interface_xml(&macvtap("eno49", 0x20, None)).unwrap(),
        r#"<interface type="direct">
  <mac address="52:54:00:6b:00:20"/>
  <source dev="eno49" mode="bridge"/>
  <model type="virtio"/>
</interface>
"#
    );
}

#[test]
fn macvtap_vnic_with_vlan_sits_on_the_nics_vlan_subinterface() {
    let xml = interface_xml(&macvtap("eno49", 0x20, Some(100))).unwrap();
    assert!(
        xml.contains(r#"<source dev="eno49.100" mode="bridge"/>"#),
        "{xml}"
    );
    assert!(!xml.contains("<vlan"), "{xml}");
}

#[test]
fn bridge_vnic_is_a_bridge_interface() {
    assert_eq!(
        interface_xml(&bridge("br-l2", 0x21)).unwrap(),
        r#"<interface type="bridge">
  <mac address="52:54:00:6b:00:21"/>
  <source bridge="br-l2"/>
  <model type="virtio"/>
</interface>
"#
    );
}

#[test]
fn domain_golden() {
    let xml = domain_xml(&vm(
        "z-k8s-n-1",
        vec![vf(0, Some(100)), macvtap("eno49", 0x20, None)],
    ))
    .unwrap();
    assert_eq!(
        xml,
        r#"<domain type="kvm">
  <name>z-k8s-n-1</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <memory unit="MiB">4096</memory>
  <vcpu>2</vcpu>
  <os>
    <type>hvm</type>
    <boot dev="hd"/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2"/>
      <source file="/var/lib/libvirt/images/z-k8s-n-1.qcow2"/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <interface type="hostdev" managed="yes">
      <mac address="52:54:00:6b:00:10"/>
      <source>
        <address type="pci" domain="0x0000" bus="0x03" slot="0x10" function="0x0"/>
      </source>
      <vlan>
        <tag id="100"/>
      </vlan>
      <driver name="vfio"/>
    </interface>
    <interface type="direct">
      <mac address="52:54:00:6b:00:20"/>
      <source dev="eno49" mode="bridge"/>
      <model type="virtio"/>
    </interface>
  </devices>
</domain>
"#
    );
}

#[test]
fn domain_without_uuid_disks_or_nics_leaves_them_out() {
    let mut v = vm("bare", vec![]);
    v.uuid = None;
    v.disks.clear();
    let xml = domain_xml(&v).unwrap();
    assert!(!xml.contains("<uuid"), "{xml}");
    assert!(xml.contains("  <devices>\n  </devices>\n"), "{xml}");
}

#[test]
fn network_golden_is_the_seeds_hostdev_pool() {
    assert_eq!(
        network_xml("eno49-sr-iov", "eno49").unwrap(),
        r#"<network>
  <name>eno49-sr-iov</name>
  <forward mode="hostdev" managed="yes">
    <pf dev="eno49"/>
  </forward>
</network>
"#
    );
}

/// An attribute of the first `element`, read back by an XML parser: what libvirt would see.
fn attr_back(xml: &str, element: &str, key: &str) -> String {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == element => {
                let a = e.try_get_attribute(key).unwrap().unwrap();
                return a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .unwrap()
                    .into_owned();
            }
            Event::Eof => panic!("no <{element}> in {xml}"),
            _ => {}
        }
    }
}

/// The text of `<name>`, unescaped.
fn name_back(xml: &str) -> String {
    let start = xml.find("<name>").unwrap() + "<name>".len();
    let end = xml.find("</name>").unwrap();
    quick_xml::escape::unescape(&xml[start..end])
        .unwrap()
        .into_owned()
}

#[test]
fn names_and_paths_are_escaped() {
    let nasty = r#"a<b>&c'd"e"#;
    let mut v = vm(nasty, vec![vf(0, None)]);
    v.disks[0].path = r#"/images/x"y'z<&>.qcow2"#.into();
    let xml = domain_xml(&v).unwrap();
    assert!(
        xml.contains("<name>a&lt;b&gt;&amp;c&apos;d&quot;e</name>"),
        "{xml}"
    );
    assert!(
        xml.contains(r#"file="/images/x&quot;y&apos;z&lt;&amp;&gt;.qcow2""#),
        "{xml}"
    );
    assert_eq!(name_back(&xml), nasty);
    assert_eq!(
        attr_back(&xml, "source", "file"),
        r#"/images/x"y'z<&>.qcow2"#
    );
    let net = network_xml("pool <&'\"> x", "eno49").unwrap();
    assert!(
        net.contains("<name>pool &lt;&amp;&apos;&quot;&gt; x</name>"),
        "{net}"
    );
    assert_eq!(name_back(&net), "pool <&'\"> x");
}

#[test]
fn unicode_names_pass_through() {
    let xml = domain_xml(&vm("虚拟机-1", vec![])).unwrap();
    assert!(xml.contains("<name>虚拟机-1</name>"), "{xml}");
}

#[test]
fn the_same_vf_twice_is_refused_naming_it_and_both_nics() {
    let v = vm(
        "z-k8s-n-1",
        vec![
            vf(0, None),
            macvtap("eno49", 0x20, None),
            vf(1, None),
            vf(0, Some(100)),
        ],
    );
    let err = domain_xml(&v).unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::DuplicateVf {
                first: 0,
                second: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "VF 0000:03:10.0 is in vm 'z-k8s-n-1' twice (nics 0 and 3); a VF can back one NIC only"
    );
}

#[test]
fn the_same_mac_on_two_nics_is_refused_naming_it_and_both_nics() {
    let mut twin = macvtap("eno49", 0x10, None);
    if let Nic::Vnic(v) = &mut twin {
        v.mac = mac(0x12);
    }
    let v = vm(
        "z-k8s-n-1",
        vec![vf(0, None), bridge("br0", 0x30), vf(2, None), twin],
    );
    let err = domain_xml(&v).unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::DuplicateMac {
                first: 2,
                second: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "MAC 52:54:00:6b:00:12 is on two nics of vm 'z-k8s-n-1' (nics 2 and 3); each NIC needs its own"
    );
}

#[test]
fn distinct_vfs_that_differ_only_in_domain_or_function_are_not_duplicates() {
    let a = Nic::Vf(VfNic {
        pci: PciAddr::new(0, 3, 0x10, 0),
        mac: mac(1),
        vlan: None,
    });
    let b = Nic::Vf(VfNic {
        pci: PciAddr::new(1, 3, 0x10, 0),
        mac: mac(2),
        vlan: None,
    });
    let c = Nic::Vf(VfNic {
        pci: PciAddr::new(0, 3, 0x10, 1),
        mac: mac(3),
        vlan: None,
    });
    domain_xml(&vm("ok", vec![a, b, c])).unwrap();
}

fn nic_err(nic: Nic) -> String {
    let e = domain_xml(&vm("v", vec![vf(5, None), nic])).unwrap_err();
    assert!(
        matches!(e, RenderError::InvalidNic { index: 1, .. }),
        "{e:?}"
    );
    chain(&e)
}

#[test]
fn bad_nics_are_refused_naming_the_nic_field_value_and_what_is_allowed() {
    let vfn = |mac_: vfpool_model::MacAddr, vlan| {
        Nic::Vf(VfNic {
            pci: PciAddr::new(0, 3, 0x12, 0),
            mac: mac_,
            vlan,
        })
    };
    let cases: Vec<(Nic, &str)> = vec![
        (
            vfn(mac(1), Some(0)),
            "nic 1: invalid vlan '0': 1..=4094, or none for untagged",
        ),
        (
            vfn(mac(1), Some(4095)),
            "nic 1: invalid vlan '4095': 1..=4094, or none for untagged",
        ),
        (
            vfn(vfpool_model::MacAddr([1, 0, 0, 0, 0, 1]), None),
            "nic 1: invalid mac '01:00:00:00:00:01': a unicast address (first octet even) that is not 00:00:00:00:00:00",
        ),
        (
            vfn(vfpool_model::MacAddr::ZERO, None),
            "nic 1: invalid mac '00:00:00:00:00:00': a unicast address (first octet even) that is not 00:00:00:00:00:00",
        ),
        (
            macvtap("eno49", 0x20, Some(5000)),
            "nic 1: invalid vlan '5000': 1..=4094, or none for untagged",
        ),
        (
            macvtap("a-very-long-nic0", 0x20, None),
            "nic 1: invalid macvtap dev 'a-very-long-nic0': a netdev name: 1 to 15 ASCII letters, digits, '_', '.' or '-', not '.' or '..'",
        ),
        (
            macvtap("eno<49>", 0x20, None),
            "nic 1: invalid macvtap dev 'eno<49>': a netdev name: 1 to 15 ASCII letters, digits, '_', '.' or '-', not '.' or '..'",
        ),
        (
            macvtap("", 0x20, None),
            "nic 1: invalid macvtap dev '': a netdev name: 1 to 15 ASCII letters, digits, '_', '.' or '-', not '.' or '..'",
        ),
        (
            macvtap("..", 0x20, None),
            "nic 1: invalid macvtap dev '..': a netdev name: 1 to 15 ASCII letters, digits, '_', '.' or '-', not '.' or '..'",
        ),
        (
            macvtap("enp130s0f1np1", 0x20, Some(100)),
            "nic 1: invalid macvtap dev.vlan 'enp130s0f1np1.100': a netdev name: 1 to 15 ASCII letters, digits, '_', '.' or '-', not '.' or '..'",
        ),
        (
            bridge("br 0", 0x21),
            "nic 1: invalid bridge 'br 0': a netdev name: 1 to 15 ASCII letters, digits, '_', '.' or '-', not '.' or '..'",
        ),
        (
            Nic::Vnic(Vnic {
                mode: VnicMode::Bridge {
                    bridge: "br0".into(),
                },
                mac: mac(2),
                vlan: Some(100),
            }),
            "nic 1: invalid vlan '100': none on a bridge vNIC (a Linux bridge carries a VLAN by being that VLAN's bridge: give its name)",
        ),
    ];
    for (nic, want) in cases {
        assert_eq!(nic_err(nic.clone()), want);
        let alone = interface_xml(&nic).unwrap_err();
        assert_eq!(chain(&alone), want.replacen("nic 1", "nic 0", 1));
    }
}

#[test]
fn bad_vm_fields_are_refused_naming_the_field_value_and_what_is_allowed() {
    let name_allowed = "a non-empty name without '/' or control characters";
    type Breaker = Box<dyn Fn(&mut vfpool_libvirt::Vm)>;
    let cases: Vec<(Breaker, String)> = vec![
        (Box::new(|v| v.name = String::new()), format!("invalid vm name '': {name_allowed}")),
        (Box::new(|v| v.name = "a/b".into()), format!("invalid vm name 'a/b': {name_allowed}")),
        (Box::new(|v| v.name = "a\nb".into()), format!("invalid vm name 'a\\nb': {name_allowed}")),
        (Box::new(|v| v.name = "a\u{1}b".into()), format!("invalid vm name 'a\\u{{1}}b': {name_allowed}")),
        (
            Box::new(|v| v.uuid = Some("4dea22b3-1d52-d8f3-2516-782e98ab3fa".into())),
            "invalid uuid '4dea22b3-1d52-d8f3-2516-782e98ab3fa': 8-4-4-4-12 hex digits like 4dea22b3-1d52-d8f3-2516-782e98ab3fa0, or 32 hex digits".into(),
        ),
        (
            Box::new(|v| v.uuid = Some("4dea22b3-1d52-d8f3-2516-782e98ab3fag".into())),
            "invalid uuid '4dea22b3-1d52-d8f3-2516-782e98ab3fag': 8-4-4-4-12 hex digits like 4dea22b3-1d52-d8f3-2516-782e98ab3fa0, or 32 hex digits".into(),
        ),
        (Box::new(|v| v.memory_mib = 0), "invalid memory '0': at least 1 MiB".into()),
        (Box::new(|v| v.vcpus = 0), "invalid vcpus '0': at least 1".into()),
        (
            Box::new(|v| v.disks[0].path = "images/x.qcow2".into()),
            "disk 0: invalid disk path 'images/x.qcow2': an absolute UTF-8 path without control characters".into(),
        ),
        (
            Box::new(|v| v.disks[0].path = "/images/x\n.qcow2".into()),
            "disk 0: invalid disk path '/images/x\\n.qcow2': an absolute UTF-8 path without control characters".into(),
        ),
        (
            Box::new(|v| v.disks.push(Disk { path: "/b.raw".into(), format: DiskFormat::Raw, target: "sda".into() })),
            "disk 1: invalid disk target 'sda': a virtio disk name: vd and lower-case letters (vda, vdb...)".into(),
        ),
        (
            Box::new(|v| v.disks[0].target = "vd".into()),
            "disk 0: invalid disk target 'vd': a virtio disk name: vd and lower-case letters (vda, vdb...)".into(),
        ),
    ];
    for (break_it, want) in cases {
        let mut v = vm("ok", vec![vf(0, None)]);
        break_it(&mut v);
        let e = domain_xml(&v).unwrap_err();
        assert_eq!(chain(&e), want);
    }
}

#[test]
fn bad_network_input_is_refused() {
    assert_eq!(
        chain(&network_xml("a/b", "eno49").unwrap_err()),
        "invalid network name 'a/b': a non-empty name without '/' or control characters"
    );
    assert_eq!(
        chain(&network_xml("", "eno49").unwrap_err()),
        "invalid network name '': a non-empty name without '/' or control characters"
    );
    assert_eq!(
        chain(&network_xml("pool", "eno49/x").unwrap_err()),
        "invalid pf 'eno49/x': a netdev name: 1 to 15 ASCII letters, digits, '_', '.' or '-', not '.' or '..'"
    );
}
