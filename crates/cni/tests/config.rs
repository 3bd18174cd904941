//! The network config: every field read, every invalid one refused with its code and a
//! message naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use vfpool_cni::{Attachment, CniEnv, CniError, CniVersion, Command, PluginConf, VfSource};
use vfpool_model::{LinkState, VlanProto};

fn env(cmd: &str, args: &str) -> CniEnv {
    CniEnv::from_vars([
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_NETNS", "/run/netns/pod"),
        ("CNI_IFNAME", "net1"),
        ("CNI_ARGS", args),
        ("CNI_PATH", "/usr/lib/cni"),
        ("VFPOOL_STATE", "/env/state"),
        ("VFPOOL_SYSFS_ROOT", "/env/sys"),
    ])
    .unwrap()
}

fn base() -> Value {
    json!({"cniVersion": "1.1.0", "name": "vf-net", "type": "vfpool-cni", "pool": "web"})
}

fn with(changes: Value) -> Value {
    let mut v = base();
    for (k, x) in changes.as_object().unwrap() {
        if x.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = x.clone();
        }
    }
    v
}

fn parse_as(cmd: &str, v: &Value) -> Result<PluginConf, CniError> {
    PluginConf::parse(v.to_string().as_bytes(), &env(cmd, ""))
}

fn ok(v: Value) -> PluginConf {
    parse_as("ADD", &v).unwrap()
}

/// The error for `changes` on ADD: (code, msg).
fn err(changes: Value) -> (u32, String) {
    let e = parse_as("ADD", &with(changes)).unwrap_err();
    (e.code, e.msg)
}

#[test]
fn a_full_config_is_read() {
    let v = json!({
        "cniVersion": "1.0.0", "name": "vf-net", "type": "vfpool-cni",
        "master": "0000:03:00.0",
        "mac": "02:AA:00:00:00:01", "vlan": 100, "vlanQoS": 3, "vlanProto": "802.1AD",
        "spoofchk": "off", "trust": "on", "link_state": "enable",
        "min_tx_rate": 10, "max_tx_rate": 1000, "mtu": 9000,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.56.0.0/24"}]]},
        "serviceRoute": {"cidr": ["10.96.0.0/12", "fd00:10:96::/108"]},
        "vfpoolState": "/conf/state", "vfpoolNetlink": "kernel", "deviceInfoDir": "/run/devinfo",
        "args": {"cni": {"x": 1}}, "dns": {}, "capabilities": {"mac": true},
        "somethingElse": [1, 2]
    });
    let c = ok(v.clone());
    assert_eq!(c.cni_version, CniVersion::V1_0_0);
    assert_eq!(c.name, "vf-net");
    assert_eq!(
        c.source,
        Some(VfSource::Master(vfpool_model::PfRef::Pci(
            "0000:03:00.0".parse().unwrap()
        )))
    );
    let s = &c.settings;
    assert_eq!(s.mac.unwrap().to_string(), "02:aa:00:00:00:01");
    assert_eq!((s.vlan, s.qos), (Some(100), Some(3)));
    assert_eq!(s.vlan_proto, Some(VlanProto::Dot1AD));
    assert_eq!((s.spoofchk, s.trust), (Some(false), Some(true)));
    assert_eq!(s.link_state, Some(LinkState::Enable));
    assert_eq!(
        (s.min_tx_rate, s.max_tx_rate, s.mtu),
        (Some(10), Some(1000), Some(9000))
    );
    let ipam = c.ipam.as_ref().unwrap();
    assert_eq!(ipam.plugin, "host-local");
    assert_eq!(ipam.raw["ranges"][0][0]["subnet"], "10.56.0.0/24");
    assert_eq!(
        c.service_routes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        ["10.96.0.0/12", "fd00:10:96::/108"]
    );
    // The config's paths win over the environment's; the environment fills the rest.
    assert_eq!(c.state_dir, Some("/conf/state".into()));
    assert_eq!(c.sysfs_root, Some("/env/sys".into()));
    assert_eq!(c.kernel_netlink, Some(true));
    assert_eq!(
        ok(with(json!({"vfpoolNetlink": "auto"}))).kernel_netlink,
        Some(false)
    );
    assert_eq!(
        ok(base()).kernel_netlink,
        None,
        "unset: VFPOOL_NETLINK decides"
    );
    assert_eq!(
        c.device_info_path(&env("ADD", "")),
        Some("/run/devinfo/vf-net-c0ffee_net1".into())
    );
    assert_eq!(c.raw, v.to_string().into_bytes());
    // The delegated config is the bytes as given (key order, spacing) when the version is
    // the config's own.
    let text = r#"{ "type": "vfpool-cni",  "name": "n", "cniVersion": "1.0.0", "pool": "p" }"#;
    let c = PluginConf::parse(text.as_bytes(), &env("ADD", "")).unwrap();
    assert_eq!(&*c.delegate_stdin(), text.as_bytes());
}

#[test]
fn booleans_settle_as_json_or_on_off() {
    let c = ok(with(json!({"spoofchk": true, "trust": "false"})));
    assert_eq!(
        (c.settings.spoofchk, c.settings.trust),
        (Some(true), Some(false))
    );
    let c = ok(base());
    assert_eq!(c.settings, vfpool_model::VfSettings::default());
    assert_eq!(c.source, Some(VfSource::Pool("web".into())));
    assert_eq!(c.ipam, None);
    assert!(c.service_routes.is_empty());
    assert_eq!(
        c.device_info_path(&env("ADD", "")),
        None,
        "no file nobody reads"
    );
    // Null is absent; "ipam": {} is no IPAM (Multus writes it).
    let c = ok(with(json!({"vlan": Value::Null, "ipam": {}})));
    assert_eq!(c.ipam, None);
}

#[test]
fn device_ids_come_from_multus_either_way() {
    let c = ok(with(json!({"pool": null, "deviceID": "0000:03:10.1"})));
    assert_eq!(
        c.source,
        Some(VfSource::DeviceId("0000:03:10.1".parse().unwrap()))
    );
    let c = ok(with(json!({
        "pool": null,
        "capabilities": {"deviceID": true, "CNIDeviceInfoFile": true},
        "runtimeConfig": {"deviceID": "0000:03:10.2", "CNIDeviceInfoFile": "/var/run/k8s.cni.cncf.io/devinfo/cni/ns-n-c_net1", "portMappings": []}
    })));
    assert_eq!(
        c.source,
        Some(VfSource::DeviceId("0000:03:10.2".parse().unwrap()))
    );
    assert_eq!(
        c.device_info_path(&env("ADD", "")),
        Some("/var/run/k8s.cni.cncf.io/devinfo/cni/ns-n-c_net1".into())
    );
    // Both, agreeing: fine. Disagreeing: named.
    let c = ok(with(
        json!({"pool": null, "deviceID": "0000:03:10.2", "runtimeConfig": {"deviceID": "0000:03:10.2"}}),
    ));
    assert!(matches!(c.source, Some(VfSource::DeviceId(_))));
    assert_eq!(
        err(json!({"pool": null, "deviceID": "0000:03:10.1", "runtimeConfig": {"deviceID": "0000:03:10.2"}})),
        (7, "conflicting deviceID '0000:03:10.1' and runtimeConfig.deviceID '0000:03:10.2': the same VF, or only one of them".into())
    );
}

#[test]
fn exactly_one_vf_source() {
    assert_eq!(
        err(json!({"deviceID": "0000:03:10.1", "master": "eno1"})),
        (7, "conflicting VF sources deviceID, pool, master: exactly one of deviceID (or runtimeConfig.deviceID), pool, master".into())
    );
    assert_eq!(
        err(json!({"runtimeConfig": {"deviceID": "0000:03:10.1"}})).1,
        "conflicting VF sources deviceID, pool: exactly one of deviceID (or runtimeConfig.deviceID), pool, master"
    );
    let (code, msg) = err(json!({"pool": null}));
    assert_eq!(code, 7);
    assert!(
        msg.starts_with("missing VF source: one of deviceID"),
        "{msg}"
    );
    // DEL, GC and STATUS may come without one (DEL finds the VF by its lease).
    let none = with(json!({"pool": null}));
    assert_eq!(parse_as("DEL", &none).unwrap().source, None);
    assert_eq!(parse_as("STATUS", &none).unwrap().source, None);
    assert_eq!(parse_as("CHECK", &none).unwrap().source, None);
}

#[test]
fn mac_precedence_is_sriov_cnis() {
    let v = with(json!({"mac": "02:00:00:00:00:01"}));
    let mac = |c: PluginConf| c.settings.mac.unwrap().to_string();
    assert_eq!(mac(ok(v.clone())), "02:00:00:00:00:01");
    let args = env("ADD", "IgnoreUnknown=1;MAC=02:00:00:00:00:02");
    assert_eq!(
        mac(PluginConf::parse(v.to_string().as_bytes(), &args).unwrap()),
        "02:00:00:00:00:02"
    );
    let mut rt = v.clone();
    rt["runtimeConfig"] = json!({"mac": "02:00:00:00:00:03"});
    assert_eq!(
        mac(PluginConf::parse(rt.to_string().as_bytes(), &args).unwrap()),
        "02:00:00:00:00:03"
    );
    // A bad MAC in CNI_ARGS is an environment error.
    let e = PluginConf::parse(v.to_string().as_bytes(), &env("ADD", "MAC=zz")).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (
            4,
            "invalid CNI_ARGS MAC 'zz': six hex octets like 02:00:00:00:00:01"
        )
    );
    let e = PluginConf::parse(
        v.to_string().as_bytes(),
        &env("ADD", "MAC=01:00:00:00:00:01"),
    )
    .unwrap_err();
    assert_eq!(
        e.code, 7,
        "a multicast MAC is refused by the model's validation"
    );
    assert!(
        e.msg.starts_with("invalid mac '01:00:00:00:00:01'"),
        "{}",
        e.msg
    );
}

#[test]
fn each_invalid_field_is_named() {
    let cases: &[(Value, u32, &str)] = &[
        (
            json!({"name": null}),
            7,
            "invalid name '': a network name (missing)",
        ),
        (json!({"name": 5}), 7, "invalid name '5': a network name"),
        (
            json!({"name": "-x"}),
            7,
            "invalid name '-x': a letter or digit, then letters, digits, '_', '.' or '-'",
        ),
        (
            json!({"name": "a/b"}),
            7,
            "invalid name 'a/b': a letter or digit, then letters, digits, '_', '.' or '-'",
        ),
        (
            json!({"type": "sriov"}),
            7,
            "invalid type 'sriov': vfpool-cni",
        ),
        (
            json!({"type": null}),
            7,
            "invalid type '': vfpool-cni (missing)",
        ),
        (
            json!({"type": ["vfpool-cni"]}),
            7,
            "invalid type '[\"vfpool-cni\"]': vfpool-cni",
        ),
        (
            json!({"pool": ""}),
            7,
            "invalid pool '': a vfpool pool name",
        ),
        (
            json!({"pool": 3}),
            7,
            "invalid pool '3': a vfpool pool name",
        ),
        (
            json!({"pool": null, "deviceID": "03:10.1x"}),
            7,
            "invalid deviceID '03:10.1x': ",
        ),
        (
            json!({"pool": null, "deviceID": 1}),
            7,
            "invalid deviceID '1': a VF's PCI address like 0000:03:10.0",
        ),
        (
            json!({"pool": null, "runtimeConfig": {"deviceID": "x"}}),
            7,
            "invalid runtimeConfig.deviceID 'x': ",
        ),
        (
            json!({"runtimeConfig": "x"}),
            7,
            "invalid runtimeConfig '\"x\"': an object",
        ),
        (
            json!({"pool": null, "master": "a b"}),
            7,
            "invalid master 'a b': a netdev name",
        ),
        (
            json!({"pool": null, "master": "0123456789abcdef"}),
            7,
            "invalid master '0123456789abcdef': ",
        ),
        (
            json!({"mac": "02:00:00:00:00"}),
            7,
            "invalid mac '02:00:00:00:00': six hex octets like 02:00:00:00:00:01",
        ),
        (
            json!({"mac": "00:00:00:00:00:00"}),
            7,
            "invalid mac '00:00:00:00:00:00': a unicast address",
        ),
        (json!({"mac": 2}), 7, "invalid mac '2': six hex octets"),
        (
            json!({"runtimeConfig": {"mac": "x"}}),
            7,
            "invalid runtimeConfig.mac 'x': six hex octets",
        ),
        (json!({"vlan": 5000}), 7, "invalid vlan '5000': 0..=4094"),
        (json!({"vlan": 4095}), 7, "invalid vlan '4095': 0..=4094"),
        (json!({"vlan": -1}), 7, "invalid vlan '-1': 0..=4094"),
        (
            json!({"vlan": "100"}),
            7,
            "invalid vlan '\"100\"': 0..=4094",
        ),
        (json!({"vlan": 1.5}), 7, "invalid vlan '1.5': 0..=4094"),
        (
            json!({"vlan": 10, "vlanQoS": 8}),
            7,
            "invalid vlanQoS '8': 0..=7",
        ),
        (
            json!({"vlanQoS": 3}),
            7,
            "invalid vlanQoS '3': only together with a vlan of 1..=4094",
        ),
        (
            json!({"vlan": 10, "vlanProto": "802.1x"}),
            7,
            "invalid vlanProto '802.1x': 802.1q or 802.1ad",
        ),
        (
            json!({"vlanProto": "802.1ad"}),
            7,
            "invalid vlanProto '802.1ad': only together with a vlan of 1..=4094",
        ),
        (
            json!({"spoofchk": "yes"}),
            7,
            "invalid spoofchk 'yes': on or off",
        ),
        (json!({"spoofchk": 1}), 7, "invalid spoofchk '1': on or off"),
        (
            json!({"trust": "maybe"}),
            7,
            "invalid trust 'maybe': on or off",
        ),
        (
            json!({"link_state": "up"}),
            7,
            "invalid link_state 'up': auto, enable or disable",
        ),
        (
            json!({"link_state": true}),
            7,
            "invalid link_state 'true': auto, enable or disable",
        ),
        (
            json!({"min_tx_rate": -5}),
            7,
            "invalid min_tx_rate '-5': 0..=4294967295 (Mbit/s; 0 is no limit)",
        ),
        (
            json!({"max_tx_rate": 4294967296u64}),
            7,
            "invalid max_tx_rate '4294967296': 0..=4294967295",
        ),
        (
            json!({"min_tx_rate": 200, "max_tx_rate": 100}),
            7,
            "invalid min_tx_rate '200': at most max_tx_rate (100 Mbit/s)",
        ),
        (
            json!({"mtu": 67}),
            7,
            "invalid mtu '67': at least 68 (the IPv4 minimum)",
        ),
        (
            json!({"mtu": "9000"}),
            7,
            "invalid mtu '\"9000\"': 68 or more (bytes)",
        ),
        (
            json!({"ipam": "host-local"}),
            7,
            "invalid ipam '\"host-local\"': an object with a \"type\"",
        ),
        (
            json!({"ipam": {"ranges": []}}),
            7,
            "invalid ipam.type '': an IPAM plugin's name, like host-local (missing)",
        ),
        (
            json!({"ipam": {"type": 1}}),
            7,
            "invalid ipam.type '1': an IPAM plugin's name",
        ),
        (
            json!({"ipam": {"type": "../bin/sh"}}),
            7,
            "invalid ipam.type '../bin/sh': a plugin name without '/' (looked up in CNI_PATH)",
        ),
        (
            json!({"ipam": {"type": ".."}}),
            7,
            "invalid ipam.type '..': a plugin name without '/'",
        ),
        (
            json!({"ipam": {"type": ""}}),
            7,
            "invalid ipam.type '': a plugin name without '/'",
        ),
        (
            json!({"serviceRoute": "10.96.0.0/12"}),
            7,
            "invalid serviceRoute '\"10.96.0.0/12\"': an object like {\"cidr\": \"10.96.0.0/12\"}",
        ),
        (
            json!({"serviceRoute": {}}),
            7,
            "invalid serviceRoute.cidr '': a network like 10.96.0.0/12, or a list of them (missing)",
        ),
        (
            json!({"serviceRoute": {"cidr": "10.96.0.1/12"}}),
            7,
            "invalid serviceRoute.cidr '10.96.0.1/12': a network with its host bits zero, like 10.96.0.0/12",
        ),
        (
            json!({"serviceRoute": {"cidr": "10.96.0.0"}}),
            7,
            "invalid serviceRoute.cidr '10.96.0.0': an address/prefix like 10.96.0.0/12 or fd00::/108",
        ),
        (
            json!({"serviceRoute": {"cidr": ["10.96.0.0/12", "fd00::1/108"]}}),
            7,
            "invalid serviceRoute.cidr 'fd00::1/108': a network with its host bits zero, like fd00::/108",
        ),
        (
            json!({"serviceRoute": {"cidr": []}}),
            7,
            "invalid serviceRoute.cidr '[]': a network like 10.96.0.0/12, or a list of them",
        ),
        (
            json!({"serviceRoute": {"cidr": [12]}}),
            7,
            "invalid serviceRoute.cidr '12': ",
        ),
        (
            json!({"serviceRoute": {"cidr": "10.96.0.0/12", "cdir": "x"}}),
            2,
            "invalid serviceRoute field 'cdir': cidr",
        ),
        (
            json!({"vfpoolState": "state"}),
            7,
            "invalid vfpoolState 'state': an absolute path",
        ),
        (
            json!({"vfpoolNetlink": "kernal"}),
            7,
            "invalid vfpoolNetlink 'kernal': auto or kernel",
        ),
        (
            json!({"vfpoolNetlink": true}),
            7,
            "invalid vfpoolNetlink 'true': auto or kernel",
        ),
        (
            json!({"vfpoolSysfsRoot": 1}),
            7,
            "invalid vfpoolSysfsRoot '1': an absolute path",
        ),
        (
            json!({"deviceInfoDir": "../x"}),
            7,
            "invalid deviceInfoDir '../x': an absolute path",
        ),
        (
            json!({"runtimeConfig": {"CNIDeviceInfoFile": "x"}}),
            7,
            "invalid runtimeConfig.CNIDeviceInfoFile 'x': an absolute path",
        ),
        (
            json!({"cni.dev/valid-attachments": {"containerID": "a"}}),
            7,
            "invalid cni.dev/valid-attachments '{\"containerID\":\"a\"}': a list of",
        ),
        (
            json!({"cni.dev/valid-attachments": [{"containerID": "a"}]}),
            7,
            "invalid cni.dev/valid-attachments '{\"containerID\":\"a\"}': a list of",
        ),
        (
            json!({"prevResult": {"ips": [{"address": "x"}]}}),
            6,
            "invalid prevResult: invalid cidr 'x'",
        ),
        (json!({"prevResult": []}), 6, "invalid prevResult: "),
        (
            json!({"cniVersion": "0.2.0"}),
            1,
            "invalid cniVersion '0.2.0': one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0",
        ),
        (
            json!({"cniVersion": null}),
            1,
            "missing cniVersion in config: one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0",
        ),
        (
            json!({"cniVersion": null, "cniVersions": ["0.1.0"]}),
            1,
            "invalid cniVersions [\"0.1.0\"]: at least one of",
        ),
    ];
    for (changes, code, prefix) in cases {
        let (c, msg) = err(changes.clone());
        assert!(
            c == *code && msg.starts_with(prefix),
            "{changes}: got {c} {msg:?}, want {code} {prefix:?}"
        );
        assert!(!msg.contains('\n'), "one line: {msg:?}");
    }
}

#[test]
fn stdin_that_is_not_an_object_is_a_decode_error() {
    for bad in ["", "{", "[]", "\"x\"", "null", "{\"a\":1}x"] {
        let e = PluginConf::parse(bad.as_bytes(), &env("ADD", "")).unwrap_err();
        assert_eq!(e.code, 6, "{bad:?}: {}", e.msg);
        assert!(
            e.msg.starts_with("invalid network config on stdin: "),
            "{}",
            e.msg
        );
    }
}

#[test]
fn versions_are_negotiated_and_verbs_checked() {
    // cniVersions alone: the highest known, and the delegated config carries it.
    let v = with(json!({"cniVersion": null, "cniVersions": ["0.4.0", "1.0.0", "9.9.9"]}));
    let c = ok(v);
    assert_eq!(c.cni_version, CniVersion::V1_0_0);
    let d: Value = serde_json::from_slice(&c.delegate_stdin()).unwrap();
    assert_eq!(d["cniVersion"], "1.0.0");
    assert_eq!(d["pool"], "web");
    // CHECK needs 0.4.0, GC and STATUS 1.1.0.
    let old = with(json!({"cniVersion": "0.3.1"}));
    let e = parse_as("CHECK", &old).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (1, "invalid cniVersion '0.3.1' for CHECK: 0.4.0 or later")
    );
    let v1 = with(json!({"cniVersion": "1.0.0"}));
    assert_eq!(parse_as("STATUS", &v1).unwrap_err().code, 1);
    assert_eq!(parse_as("GC", &v1).unwrap_err().code, 1);
    assert!(parse_as("ADD", &old).is_ok());
}

#[test]
fn prev_result_is_read_in_the_configs_version() {
    let v = with(json!({
        "cniVersion": "0.4.0",
        "prevResult": {
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "net1", "sandbox": "/run/netns/pod"}],
            "ips": [{"version": "4", "address": "10.56.0.2/24", "interface": 0}]
        }
    }));
    let c = parse_as("CHECK", &v).unwrap();
    let p = c.prev_result.unwrap();
    assert_eq!(p.ips[0].address.to_string(), "10.56.0.2/24");
    assert_eq!(p.interfaces[0].name, "net1");
}

#[test]
fn gc_needs_its_attachment_list() {
    let e = parse_as("GC", &base()).unwrap_err();
    assert_eq!(e.code, 7);
    assert!(
        e.msg
            .starts_with("missing cni.dev/valid-attachments for GC"),
        "{}",
        e.msg
    );
    let v = with(json!({"cni.dev/valid-attachments": [
        {"containerID": "a1", "ifname": "net1"}, {"containerID": "b2", "ifname": "net2"}
    ]}));
    let c = parse_as("GC", &v).unwrap();
    assert_eq!(
        c.valid_attachments.unwrap(),
        vec![
            Attachment {
                container_id: "a1".into(),
                ifname: "net1".into()
            },
            Attachment {
                container_id: "b2".into(),
                ifname: "net2".into()
            }
        ]
    );
    // An empty list is a list; libcni's other spelling is read too.
    let c = parse_as("GC", &with(json!({"cni.dev/attachments": []}))).unwrap();
    assert_eq!(c.valid_attachments, Some(vec![]));
    assert_eq!(Command::Gc.as_str(), "GC");
}
