//! The ADD result: one model that reads every supported version's JSON and writes any of
//! them, dropping what an older version lacks.
//!
//! 0.3.x/0.4.0 give each IP a `version` ("4"/"6"); 1.0.0 dropped it. 1.1.0 added interface
//! `mtu`, `socketPath`, `pciID` and route `mtu`, `advmss`, `priority`, `table`, `scope`.
//! JSON keys and omissions follow libcni's types (types/040, types/100): empty lists are
//! left out, `dns` is always written (Go does not omit an empty struct), an interface
//! index 0 is kept.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use vfpool_model::InvalidValue;

use crate::spec::CniError;
use crate::version::CniVersion;

/// An IP address with a prefix length: `10.1.2.3/24` (an interface address keeps its host
/// bits) or `10.96.0.0/12` (a network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

const CIDR_ALLOWED: &str = "an address/prefix like 10.96.0.0/12 or fd00::/108";

impl Cidr {
    /// Parses `s`, naming `field` in the error.
    pub fn parse_field(field: &'static str, s: &str) -> Result<Self, InvalidValue> {
        let bad = || InvalidValue::new(field, s, CIDR_ALLOWED);
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 3 {
            return Err(bad());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > Self::max_prefix(addr) {
            return Err(InvalidValue::new(
                field,
                s,
                format!("a prefix of at most {}", Self::max_prefix(addr)),
            ));
        }
        Ok(Self { addr, prefix })
    }

    fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    /// The network: the address with its host bits cleared.
    pub fn network(self) -> Self {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Self {
            addr,
            prefix: self.prefix,
        }
    }

    /// Whether the host bits are all zero (`10.96.0.0/12` yes, `10.96.0.1/12` no).
    pub fn is_network(self) -> bool {
        self.network() == self
    }

    pub fn is_ipv4(self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` is inside this network.
    pub fn contains(self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && Cidr {
                addr: ip,
                prefix: self.prefix,
            }
            .network()
                == self.network()
    }
}

impl FromStr for Cidr {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_field("cidr", s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An interface the plugin created or moved.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: Option<String>,
    /// 1.1.0.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// The netns path; absent for a host-side interface.
    #[serde(default)]
    pub sandbox: Option<String>,
    /// 1.1.0: a vhost-user socket.
    #[serde(default)]
    pub socket_path: Option<String>,
    /// 1.1.0: the PCI address of the device.
    #[serde(default, rename = "pciID")]
    pub pci_id: Option<String>,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IpConfig {
    pub address: Cidr,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`; IPAM plugins leave it out.
    #[serde(default)]
    pub interface: Option<usize>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    pub dst: Cidr,
    #[serde(default)]
    pub gw: Option<IpAddr>,
    /// 1.1.0 from here on.
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub advmss: Option<u32>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub table: Option<u32>,
    #[serde(default)]
    pub scope: Option<u8>,
}

/// DNS settings (passed through; this plugin does not apply them).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Dns {
    #[serde(default, deserialize_with = "null_as_default")]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub search: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A result, whatever version it came in or goes out as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// The wire form: every version's fields, all optional.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    cni_version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    interfaces: Vec<Interface>,
    #[serde(default, deserialize_with = "null_as_default")]
    ips: Vec<WireIp>,
    #[serde(default, deserialize_with = "null_as_default")]
    routes: Vec<Route>,
    #[serde(default, deserialize_with = "null_as_default")]
    dns: Dns,
}

#[derive(Deserialize)]
struct WireIp {
    address: Cidr,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<usize>,
    /// 0.3.x/0.4.0 only.
    #[serde(default)]
    version: Option<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl CniResult {
    /// Reads a result given as `version` (the config's; a `cniVersion` inside the result, if
    /// any, must be a supported version too, and wins). Errors are code 6 and name `what`
    /// (`prevResult`, `ipam plugin host-local result`).
    pub fn from_value(
        what: &str,
        value: &Value,
        version: CniVersion,
    ) -> Result<(Self, CniVersion), CniError> {
        if !value.is_object() {
            return Err(CniError::decode(format!("invalid {what}: a JSON object")));
        }
        let wire = Wire::deserialize(value)
            .map_err(|e| CniError::decode(format!("invalid {what}: {e}")))?;
        let version = match wire.cni_version.as_deref() {
            None | Some("") => version,
            Some(s) => CniVersion::parse(s).ok_or_else(|| {
                CniError::incompatible_version(format!(
                    "invalid cniVersion '{}' in {what}: one of {}",
                    s.escape_debug(),
                    crate::spec::SUPPORTED_VERSIONS.join(", ")
                ))
            })?,
        };
        let mut ips = Vec::with_capacity(wire.ips.len());
        for ip in wire.ips {
            if version.ip_has_version()
                && let Some(v) = &ip.version
            {
                let expect = if ip.address.is_ipv4() { "4" } else { "6" };
                if v != expect {
                    return Err(CniError::decode(format!(
                        "invalid {what}: ip {} has version '{}', expected '{expect}'",
                        ip.address,
                        v.escape_debug()
                    )));
                }
            }
            ips.push(IpConfig {
                address: ip.address,
                gateway: ip.gateway,
                interface: ip.interface,
            });
        }
        if let Some(bad) = ips
            .iter()
            .filter_map(|ip| ip.interface)
            .find(|&i| i >= wire.interfaces.len())
        {
            return Err(CniError::decode(format!(
                "invalid {what}: ip interface index {bad} with {} interfaces",
                wire.interfaces.len()
            )));
        }
        Ok((
            Self {
                interfaces: wire.interfaces,
                ips,
                routes: wire.routes,
                dns: wire.dns,
            },
            version,
        ))
    }

    /// Reads a result from JSON text (see [`Self::from_value`]).
    pub fn from_slice(
        what: &str,
        bytes: &[u8],
        version: CniVersion,
    ) -> Result<(Self, CniVersion), CniError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("invalid {what}: {e}")))?;
        Self::from_value(what, &v, version)
    }

    /// The result as `version` writes it.
    pub fn to_value(&self, version: CniVersion) -> Value {
        let mut out = Map::new();
        out.insert("cniVersion".into(), version.as_str().into());
        if !self.interfaces.is_empty() {
            let list = self
                .interfaces
                .iter()
                .map(|i| {
                    let mut m = Map::new();
                    m.insert("name".into(), i.name.clone().into());
                    put(&mut m, "mac", i.mac.as_deref().filter(|s| !s.is_empty()));
                    if version.has_1_1_fields() {
                        put(&mut m, "mtu", i.mtu.filter(|&v| v != 0));
                    }
                    put(
                        &mut m,
                        "sandbox",
                        i.sandbox.as_deref().filter(|s| !s.is_empty()),
                    );
                    if version.has_1_1_fields() {
                        put(
                            &mut m,
                            "socketPath",
                            i.socket_path.as_deref().filter(|s| !s.is_empty()),
                        );
                        put(
                            &mut m,
                            "pciID",
                            i.pci_id.as_deref().filter(|s| !s.is_empty()),
                        );
                    }
                    Value::Object(m)
                })
                .collect();
            out.insert("interfaces".into(), Value::Array(list));
        }
        if !self.ips.is_empty() {
            let list = self
                .ips
                .iter()
                .map(|ip| {
                    let mut m = Map::new();
                    put(&mut m, "interface", ip.interface);
                    if version.ip_has_version() {
                        let v = if ip.address.is_ipv4() { "4" } else { "6" };
                        m.insert("version".into(), v.into());
                    }
                    m.insert("address".into(), ip.address.to_string().into());
                    put(&mut m, "gateway", ip.gateway.map(|g| g.to_string()));
                    Value::Object(m)
                })
                .collect();
            out.insert("ips".into(), Value::Array(list));
        }
        if !self.routes.is_empty() {
            let list = self
                .routes
                .iter()
                .map(|r| {
                    let mut m = Map::new();
                    m.insert("dst".into(), r.dst.to_string().into());
                    put(&mut m, "gw", r.gw.map(|g| g.to_string()));
                    if version.has_1_1_fields() {
                        put(&mut m, "mtu", r.mtu.filter(|&v| v != 0));
                        put(&mut m, "advmss", r.advmss.filter(|&v| v != 0));
                        put(&mut m, "priority", r.priority.filter(|&v| v != 0));
                        put(&mut m, "table", r.table);
                        put(&mut m, "scope", r.scope);
                    }
                    Value::Object(m)
                })
                .collect();
            out.insert("routes".into(), Value::Array(list));
        }
        let mut dns = Map::new();
        if !self.dns.nameservers.is_empty() {
            dns.insert("nameservers".into(), json!(self.dns.nameservers));
        }
        put(
            &mut dns,
            "domain",
            self.dns.domain.as_deref().filter(|s| !s.is_empty()),
        );
        if !self.dns.search.is_empty() {
            dns.insert("search".into(), json!(self.dns.search));
        }
        if !self.dns.options.is_empty() {
            dns.insert("options".into(), json!(self.dns.options));
        }
        out.insert("dns".into(), Value::Object(dns));
        Value::Object(out)
    }

    /// The result as `version` writes it, as JSON text.
    pub fn to_json(&self, version: CniVersion) -> String {
        self.to_value(version).to_string()
    }
}

fn put<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), v.into());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str, v: CniVersion) -> (CniResult, CniVersion) {
        CniResult::from_slice("result", text.as_bytes(), v).unwrap()
    }

    fn same_json(a: &str, b: &str) {
        let a: Value = serde_json::from_str(a).unwrap();
        let b: Value = serde_json::from_str(b).unwrap();
        assert_eq!(a, b);
    }

    /// libcni types/100 test "correctly encodes a 1.1.0 Result" (pkg/types/100/types_test.go).
    const LIBCNI_1_1: &str = r#"{
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "00:11:22:33:44:55", "sandbox": "/proc/3553/ns/net",
                        "pciID": "8086:9a01", "socketPath": "/path/to/vhost/fd"}],
        "ips": [{"interface": 0, "address": "1.2.3.30/24", "gateway": "1.2.3.1"},
                {"interface": 0, "address": "abcd:1234:ffff::cdde/64", "gateway": "abcd:1234:ffff::1"}],
        "routes": [{"dst": "15.5.6.0/24", "gw": "15.5.6.8"}, {"dst": "1111:dddd::/80", "gw": "1111:dddd::aaaa"}],
        "dns": {"nameservers": ["1.2.3.4", "1::cafe"], "domain": "acompany.com",
                "search": ["somedomain.com", "otherdomain.net"], "options": ["foo", "bar"]}
    }"#;

    /// The same result converted to 0.4.0 by libcni ("correctly encodes a 0.4.0 Result").
    const LIBCNI_0_4: &str = r#"{
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "eth0", "mac": "00:11:22:33:44:55", "sandbox": "/proc/3553/ns/net"}],
        "ips": [{"interface": 0, "version": "4", "address": "1.2.3.30/24", "gateway": "1.2.3.1"},
                {"interface": 0, "version": "6", "address": "abcd:1234:ffff::cdde/64", "gateway": "abcd:1234:ffff::1"}],
        "routes": [{"dst": "15.5.6.0/24", "gw": "15.5.6.8"}, {"dst": "1111:dddd::/80", "gw": "1111:dddd::aaaa"}],
        "dns": {"nameservers": ["1.2.3.4", "1::cafe"], "domain": "acompany.com",
                "search": ["somedomain.com", "otherdomain.net"], "options": ["foo", "bar"]}
    }"#;

    /// The spec's own example (SPEC.md 1.0.0/1.1.0, "Plugin output"), with the 1.1.0 fields.
    const SPEC_1_1: &str = r#"{
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "cni0", "mac": "00:11:22:33:44:55"},
            {"name": "veth3243", "mac": "55:44:33:22:11:11"},
            {"name": "eth0", "mac": "99:88:77:66:55:44", "mtu": 1450, "sandbox": "/var/run/netns/blue"}
        ],
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0"},
                   {"dst": "10.96.0.0/12", "gw": "10.1.0.1", "mtu": 1400, "advmss": 1360,
                    "priority": 100, "table": 0, "scope": 253}],
        "dns": {"nameservers": ["10.1.0.1"]}
    }"#;

    #[test]
    fn libcni_1_1_round_trips_and_converts_to_0_4() {
        let (r, v) = parse(LIBCNI_1_1, CniVersion::V1_1_0);
        assert_eq!(v, CniVersion::V1_1_0);
        assert_eq!(r.interfaces[0].pci_id.as_deref(), Some("8086:9a01"));
        assert_eq!(r.ips[1].address.to_string(), "abcd:1234:ffff::cdde/64");
        assert_eq!(r.ips[0].interface, Some(0));
        same_json(&r.to_json(CniVersion::V1_1_0), LIBCNI_1_1);
        same_json(&r.to_json(CniVersion::V0_4_0), LIBCNI_0_4);
        // 0.4.0 in, 1.1.0 out: the same minus what 0.4.0 cannot carry.
        let (old, v) = parse(LIBCNI_0_4, CniVersion::V0_4_0);
        assert_eq!(v, CniVersion::V0_4_0);
        assert_eq!(old.ips, r.ips);
        assert_eq!(old.routes, r.routes);
        assert_eq!(old.dns, r.dns);
        same_json(&old.to_json(CniVersion::V0_4_0), LIBCNI_0_4);
    }

    #[test]
    fn spec_1_1_example_keeps_its_new_fields_only_at_1_1() {
        let (r, _) = parse(SPEC_1_1, CniVersion::V1_1_0);
        assert_eq!(r.routes[1].scope, Some(253));
        assert_eq!(r.routes[1].table, Some(0));
        same_json(&r.to_json(CniVersion::V1_1_0), SPEC_1_1);
        // 1.0.0: the same, minus the 1.1.0 fields.
        let v1: Value = r.to_value(CniVersion::V1_0_0);
        assert_eq!(v1["cniVersion"], "1.0.0");
        assert_eq!(
            v1["interfaces"][2],
            json!({"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"})
        );
        assert_eq!(
            v1["routes"][1],
            json!({"dst": "10.96.0.0/12", "gw": "10.1.0.1"})
        );
        assert_eq!(
            v1["ips"][0],
            json!({"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2})
        );
        // 0.3.1: and a version per IP.
        let v03: Value = r.to_value(CniVersion::V0_3_1);
        assert_eq!(v03["ips"][0]["version"], "4");
        assert_eq!(v03["cniVersion"], "0.3.1");
    }

    /// The spec 0.3.1/0.4.0 example (SPEC.md "Result", an IPAM-style result with routes and
    /// dns) and host-local's real 0.3.1 output.
    #[test]
    fn old_results_parse() {
        let spec_0_4 = r#"{
            "cniVersion": "0.4.0",
            "ips": [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.1.0.1"]}
        }"#;
        let (r, _) = parse(spec_0_4, CniVersion::V0_4_0);
        assert_eq!(r.ips[0].interface, None);
        same_json(&r.to_json(CniVersion::V0_4_0), spec_0_4);
        let host_local_0_3_1 = r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.77.0.2/24","gateway":"10.77.0.1"}],"dns":{}}"#;
        let (r, v) = parse(host_local_0_3_1, CniVersion::V1_1_0);
        assert_eq!(v, CniVersion::V0_3_1, "the result's own cniVersion wins");
        same_json(&r.to_json(CniVersion::V0_3_1), host_local_0_3_1);
        same_json(
            &r.to_json(CniVersion::V1_0_0),
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.77.0.2/24","gateway":"10.77.0.1"}],"dns":{}}"#,
        );
        // Go writes null for nil lists in some versions.
        let (r, _) = parse(
            r#"{"interfaces": null, "ips": null, "dns": null}"#,
            CniVersion::V1_0_0,
        );
        assert_eq!(r, CniResult::default());
    }

    #[test]
    fn bad_results_are_named() {
        let err = |s: &str| {
            CniResult::from_slice("prevResult", s.as_bytes(), CniVersion::V0_4_0).unwrap_err()
        };
        let e = err("[1]");
        assert_eq!(e.code, 6);
        assert!(e.msg.starts_with("invalid prevResult: "), "{}", e.msg);
        let e = err(r#"{"ips": [{"address": "10.1.0.5"}]}"#);
        assert_eq!(e.code, 6);
        assert!(e.msg.contains("invalid cidr '10.1.0.5'"), "{}", e.msg);
        let e = err(r#"{"ips": [{"version": "6", "address": "10.1.0.5/8"}]}"#);
        assert_eq!(
            e.msg,
            "invalid prevResult: ip 10.1.0.5/8 has version '6', expected '4'"
        );
        let e = err(
            r#"{"ips": [{"address": "10.1.0.5/8", "interface": 1}], "interfaces": [{"name": "a"}]}"#,
        );
        assert_eq!(
            e.msg,
            "invalid prevResult: ip interface index 1 with 1 interfaces"
        );
        let e = err(r#"{"cniVersion": "0.2.0"}"#);
        assert_eq!(e.code, 1);
        let e = err("{");
        assert_eq!(e.code, 6);
    }

    #[test]
    fn cidrs_parse_and_mask() {
        let c: Cidr = "10.96.0.1/12".parse().unwrap();
        assert!(!c.is_network());
        assert_eq!(c.network().to_string(), "10.96.0.0/12");
        assert!(c.contains("10.100.1.1".parse().unwrap()));
        assert!(!c.contains("10.112.0.0".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let c: Cidr = "fd00::1/108".parse().unwrap();
        assert_eq!(c.network().to_string(), "fd00::/108");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().is_network());
        assert_eq!(
            "1.2.3.4/32".parse::<Cidr>().unwrap().network().addr,
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/0008",
            "010.0.0.0/8",
            "/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            Cidr::parse_field("serviceRoute.cidr", "10.0.0.0/33")
                .unwrap_err()
                .to_string(),
            "invalid serviceRoute.cidr '10.0.0.0/33': a prefix of at most 32"
        );
    }
}
