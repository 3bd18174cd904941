//! Reading a domain back: what vfpool renders, and what libvirt itself writes (the hook gets
//! libvirt's XML on stdin).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{chain, mac, macvtap, vf, vm};
use proptest::prelude::*;
use vfpool_libvirt::{
    DomainInterface, InterfaceKind, Nic, ParseError, VfNic, Vnic, VnicMode, domain_xml,
    interfaces_of, macs_of, pci_hostdevs_of, vf_addresses_of,
};
use vfpool_model::{MacAddr, PciAddr};

fn arb_nic() -> impl Strategy<Value = Nic> {
    let mac = any::<[u8; 6]>().prop_map(|mut b| {
        b[0] = (b[0] & 0xfe) | 0x02; // unicast, locally administered, never zero
        MacAddr(b)
    });
    let vlan = prop::option::of(1u16..=4094);
    let pci = (any::<u32>(), any::<u8>(), 0u8..=0x1f, 0u8..=7)
        .prop_map(|(d, b, s, f)| PciAddr::new(d, b, s, f));
    let dev = "[a-z][a-z0-9]{0,9}";
    prop_oneof![
        (pci, mac.clone(), vlan.clone()).prop_map(|(pci, mac, vlan)| Nic::Vf(VfNic {
            pci,
            mac,
            vlan
        })),
        (dev, mac.clone(), vlan).prop_map(|(dev, mac, vlan)| Nic::Vnic(Vnic {
            mode: VnicMode::Macvtap { dev },
            mac,
            vlan
        })),
        (dev, mac).prop_map(|(bridge, mac)| Nic::Vnic(Vnic {
            mode: VnicMode::Bridge { bridge },
            mac,
            vlan: None
        })),
    ]
}

proptest! {
    #[test]
    fn what_is_rendered_reads_back(nics in prop::collection::vec(arb_nic(), 0..8), name in "[^/\\p{Cc}]{1,20}") {
        // Distinct VFs and MACs: the renderer refuses duplicates (tested in render.rs).
        let mut seen = std::collections::BTreeSet::new();
        let mut macs = std::collections::BTreeSet::new();
        let nics: Vec<Nic> = nics.into_iter().filter(|n| match n {
            Nic::Vf(v) => macs.insert(v.mac) && seen.insert(v.pci),
            Nic::Vnic(v) => macs.insert(v.mac),
        }).collect();
        let xml = domain_xml(&vm(&name, nics.clone())).unwrap();
        let want_vfs: Vec<PciAddr> = nics.iter().filter_map(|n| match n {
            Nic::Vf(v) => Some(v.pci),
            Nic::Vnic(_) => None,
        }).collect();
        let want_macs: Vec<MacAddr> = nics.iter().map(|n| match n {
            Nic::Vf(v) => v.mac,
            Nic::Vnic(v) => v.mac,
        }).collect();
        prop_assert_eq!(vf_addresses_of(&xml).unwrap(), want_vfs);
        prop_assert_eq!(macs_of(&xml).unwrap(), want_macs);
        let kinds: Vec<InterfaceKind> = interfaces_of(&xml).unwrap().into_iter().map(|i| i.kind).collect();
        let want_kinds: Vec<InterfaceKind> = nics.iter().map(|n| match n {
            Nic::Vf(v) => InterfaceKind::Hostdev(v.pci),
            Nic::Vnic(Vnic { mode: VnicMode::Macvtap { dev }, vlan, .. }) => InterfaceKind::Direct {
                dev: Some(match vlan { Some(v) => format!("{dev}.{v}"), None => dev.clone() }),
            },
            Nic::Vnic(Vnic { mode: VnicMode::Bridge { bridge }, .. }) => InterfaceKind::Bridge { bridge: Some(bridge.clone()) },
        }).collect();
        prop_assert_eq!(kinds, want_kinds);
    }
}

#[test]
fn round_trip_of_a_fixed_domain() {
    let xml = domain_xml(&vm(
        "z",
        vec![vf(0, Some(100)), macvtap("eno49", 0x20, None), vf(3, None)],
    ))
    .unwrap();
    assert_eq!(
        vf_addresses_of(&xml).unwrap(),
        vec![PciAddr::new(0, 3, 0x10, 0), PciAddr::new(0, 3, 0x11, 4)]
    );
    assert_eq!(
        macs_of(&xml).unwrap(),
        vec![mac(0x10), mac(0x20), mac(0x13)]
    );
}

/// What libvirt hands a hook (status XML, trimmed): single quotes, a guest-side `<address>`
/// directly in each interface (not the VF), a plain `<hostdev>` (not an interface), an
/// interface from a libvirt network, decimal and octal address parts as libvirt reads them.
const LIBVIRT_STATUS_XML: &str = r#"<?xml version="1.0"?>
<!-- written by libvirt -->
<domstatus state='running' reason='booted' pid='4242'>
  <domain type='kvm' id='3'>
    <name>z-k8s-n-1</name>
    <devices>
      <interface type='hostdev' managed='yes'>
        <mac address='52:54:00:AB:CD:01'/>
        <driver name='vfio'/>
        <source>
          <address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x4'/>
        </source>
        <vlan>
          <tag id='100'/>
        </vlan>
        <alias name='hostdev0'/>
        <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
      </interface>
      <interface type='network'>
        <mac address='52:54:00:ab:cd:02'/>
        <source network='eno49-sr-iov'/>
        <address type='pci' domain='0x0000' bus='0x08' slot='0x00' function='0x0'/>
      </interface>
      <hostdev mode='subsystem' type='pci' managed='yes'>
        <source>
          <address domain='0x0000' bus='0x04' slot='0x10' function='0x0'/>
        </source>
      </hostdev>
      <interface type='hostdev'>
        <source>
          <address type='pci' domain='1' bus='129' slot='017' function='7'/>
        </source>
      </interface>
      <interface type='direct'>
        <mac address='52:54:00:ab:cd:03'/>
        <source dev='eno49' mode='bridge'/>
        <target dev='macvtap0'/>
      </interface>
      <interface type='bridge'>
        <mac address='52:54:00:ab:cd:04'/>
        <source bridge='br&amp;0'/>
      </interface>
    </devices>
  </domain>
</domstatus>
"#;

#[test]
fn libvirts_own_xml_reads_as_libvirt_means_it() {
    let got = interfaces_of(LIBVIRT_STATUS_XML).unwrap();
    let m = |s: &str| Some(s.parse::<MacAddr>().unwrap());
    assert_eq!(
        got,
        vec![
            DomainInterface {
                kind: InterfaceKind::Hostdev(PciAddr::new(0, 3, 0x10, 4)),
                mac: m("52:54:00:ab:cd:01")
            },
            DomainInterface {
                kind: InterfaceKind::Other("network".into()),
                mac: m("52:54:00:ab:cd:02")
            },
            DomainInterface {
                kind: InterfaceKind::Hostdev(PciAddr::new(1, 129, 15, 7)),
                mac: None
            },
            DomainInterface {
                kind: InterfaceKind::Direct {
                    dev: Some("eno49".into())
                },
                mac: m("52:54:00:ab:cd:03")
            },
            DomainInterface {
                kind: InterfaceKind::Bridge {
                    bridge: Some("br&0".into())
                },
                mac: m("52:54:00:ab:cd:04")
            },
        ]
    );
    // The plain hostdev is no interface, but a VF passed through all the same.
    assert_eq!(
        vf_addresses_of(LIBVIRT_STATUS_XML).unwrap(),
        vec![
            PciAddr::new(0, 3, 0x10, 4),
            PciAddr::new(1, 129, 15, 7),
            PciAddr::new(0, 4, 0x10, 0)
        ]
    );
}

#[test]
fn bad_domain_xml_is_an_error_naming_what_is_wrong() {
    let hostdev = |addr: &str| {
        format!(
            "<domain><devices><interface type='network'/><interface type='hostdev'><source>{addr}</source></interface></devices></domain>"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (hostdev(""), "interface 1: hostdev interface without a PCI source address"),
        (
            hostdev("<address type='pci' domain='0' bus='256' slot='0' function='0'/>"),
            "interface 1: invalid bus '256'",
        ),
        (
            hostdev("<address type='pci' domain='0' bus='1' slot='0x20' function='0'/>"),
            "interface 1: invalid slot '32'",
        ),
        (
            hostdev("<address type='pci' domain='0' bus='1' slot='0' function='8'/>"),
            "interface 1: invalid function '8'",
        ),
        (
            hostdev("<address type='pci' domain='zz' bus='1' slot='0' function='0'/>"),
            "interface 1: invalid domain 'zz'",
        ),
        (
            "<domain><devices><interface type='direct'><mac address='52:54:00:zz:00:01'/></interface></devices></domain>".into(),
            "interface 0: invalid mac address '52:54:00:zz:00:01'",
        ),
        ("<domain><devices><interface type='hostdev'>".into(), "domain XML ends inside <interface>"),
    ];
    for (xml, want) in cases {
        let e = interfaces_of(&xml).unwrap_err();
        assert_eq!(chain(&e), want, "{xml}");
    }
    let e = interfaces_of("<domain><devices></domain>").unwrap_err();
    assert!(matches!(e, ParseError::Xml { .. }), "{e:?}");
    assert!(
        chain(&e).starts_with("domain XML is not well-formed at byte "),
        "{}",
        chain(&e)
    );
    let e = interfaces_of("<domain><devices><interface type='&bogus;'/></devices></domain>")
        .unwrap_err();
    assert!(matches!(e, ParseError::Xml { .. }), "{e:?}");
}

/// A VF given as a plain `<hostdev>` (libvirt's own form in a domain's status XML: a guest
/// address, a driver and an alias besides the source).
const PLAIN_HOSTDEVS: &str = r#"<domstatus state='running'><domain type='kvm'><name>web1</name>
<devices>
  <interface type='hostdev' managed='yes'><source><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x0'/></source></interface>
  <hostdev mode='subsystem' type='pci' managed='yes'>
    <driver name='vfio'/>
    <source><address domain='0x0000' bus='0x03' slot='0x10' function='0x2'/></source>
    <alias name='hostdev0'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>
  </hostdev>
  <hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source></hostdev>
  <hostdev mode='capabilities' type='net'><source><interface>eth0</interface></source></hostdev>
  <hostdev mode='subsystem' type='pci'><source><address domain='0x0000' bus='0x03' slot='0x10' function='0x0'/></source></hostdev>
  <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='0x81' slot='0x0f' function='7'/></source></hostdev>
</devices></domain></domstatus>"#;

#[test]
fn plain_pci_hostdevs_are_read_with_their_source_address_only() {
    assert_eq!(
        pci_hostdevs_of(PLAIN_HOSTDEVS).unwrap(),
        vec![
            PciAddr::new(0, 3, 0x10, 2),
            PciAddr::new(0, 3, 0x10, 0),
            PciAddr::new(0, 0x81, 0x0f, 7)
        ],
        "not the guest address 00:07.0, not USB or capabilities hostdevs"
    );
    // Interfaces first, then plain hostdevs; a VF named twice is there twice (libvirt keeps
    // both and fails at start).
    assert_eq!(
        vf_addresses_of(PLAIN_HOSTDEVS).unwrap(),
        vec![
            PciAddr::new(0, 3, 0x10, 0),
            PciAddr::new(0, 3, 0x10, 2),
            PciAddr::new(0, 3, 0x10, 0),
            PciAddr::new(0, 0x81, 0x0f, 7)
        ]
    );
    assert_eq!(interfaces_of(PLAIN_HOSTDEVS).unwrap().len(), 1);
}

#[test]
fn bad_plain_hostdevs_are_an_error_naming_what_is_wrong() {
    let hostdev = |inner: &str| {
        format!(
            "<domain><devices><hostdev mode='subsystem' type='pci'><source><address domain='0' bus='3' slot='0x10' function='0'/></source></hostdev><hostdev mode='subsystem' type='pci'>{inner}</hostdev></devices></domain>"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (hostdev(""), "pci hostdev 1: no source address"),
        (hostdev("<source/>"), "pci hostdev 1: no source address"),
        (
            hostdev("<address type='pci' domain='0' bus='1' slot='0' function='0'/>"),
            "pci hostdev 1: no source address",
        ),
        (
            "<domain><devices><hostdev mode='subsystem' type='pci'/></devices></domain>".into(),
            "pci hostdev 0: no source address",
        ),
        (
            hostdev("<source><address domain='0' bus='256' slot='0' function='0'/></source>"),
            "pci hostdev 1: invalid bus '256'",
        ),
        (
            hostdev("<source><address domain='0' bus='1' slot='0x20' function='0'/></source>"),
            "pci hostdev 1: invalid slot '32'",
        ),
        (
            hostdev("<source><address domain='0' bus='1' slot='0' function='8'/></source>"),
            "pci hostdev 1: invalid function '8'",
        ),
        (
            hostdev("<source><address domain='x' bus='1' slot='0' function='0'/></source>"),
            "pci hostdev 1: invalid domain 'x'",
        ),
        (
            "<domain><devices><hostdev mode='subsystem' type='pci'><source>".into(),
            "domain XML ends inside <source>",
        ),
    ];
    for (xml, want) in cases {
        let e = pci_hostdevs_of(&xml).unwrap_err();
        assert_eq!(chain(&e), want, "{xml}");
        assert_eq!(chain(&vf_addresses_of(&xml).unwrap_err()), want, "{xml}");
    }
    let e = pci_hostdevs_of("<domain><devices><hostdev mode='&bogus;'/></devices></domain>")
        .unwrap_err();
    assert!(matches!(e, ParseError::Xml { .. }), "{e:?}");
}
