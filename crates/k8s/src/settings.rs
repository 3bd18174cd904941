//! A claim's opaque configuration for vfpool VFs: the settings of a lease, with the keys
//! named as the CLI's `lease acquire` options (`mac`, `vlan`, `qos`, `vlan-proto`,
//! `spoofchk`, `trust`, `link-state`, `min-rate`, `max-rate`, `mtu`, `driver`), parsed
//! by the same model parsers, so that a bad value gets the CLI's one-line error
//! (`invalid vlan '5000': 0..=4094`). Values may be JSON strings, numbers or booleans.
//! `apiVersion` and `kind` are allowed (the usual header of an opaque config) and ignored.

use std::str::FromStr;

use serde_json::{Map, Value};
use vfpool_engine::DriverChoice;
use vfpool_model::{InvalidValue, MacAddr, VfSettings, parse_on_off};

/// The keys a configuration may have.
pub const CONFIG_KEYS: &str = "mac, vlan, qos, vlan-proto, spoofchk, trust, link-state, min-rate, max-rate, mtu, driver (and apiVersion, kind)";

/// What a claim's configuration asks of its VF.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VfRequest {
    pub settings: VfSettings,
    pub driver: Option<DriverChoice>,
}

/// Parses and validates the opaque configurations that apply to one device, in order (a
/// key in a later one wins: class, then claim, as the API orders them).
pub fn parse_configs(configs: &[Value]) -> Result<VfRequest, InvalidValue> {
    let mut merged = Map::new();
    for c in configs {
        let Value::Object(m) = c else {
            return Err(InvalidValue::new(
                "config",
                c,
                format!("a JSON object with {CONFIG_KEYS}"),
            ));
        };
        for (k, v) in m {
            merged.insert(k.clone(), v.clone());
        }
    }
    parse_map(&merged)
}

/// A value as the CLI would have got it on its command line.
fn text(field: &'static str, v: &Value) -> Result<Option<String>, InvalidValue> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(InvalidValue::new(
            field,
            other,
            "a string, number or boolean",
        )),
    }
}

fn num<T: FromStr>(
    field: &'static str,
    m: &Map<String, Value>,
    allowed: &str,
) -> Result<Option<T>, InvalidValue> {
    let Some(v) = m.get(field) else {
        return Ok(None);
    };
    text(field, v)?
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| InvalidValue::new(field, &s, allowed))
        })
        .transpose()
}

fn parsed<T: FromStr<Err = InvalidValue>>(
    field: &'static str,
    m: &Map<String, Value>,
) -> Result<Option<T>, InvalidValue> {
    let Some(v) = m.get(field) else {
        return Ok(None);
    };
    text(field, v)?.map(|s| s.parse::<T>()).transpose()
}

fn on_off(field: &'static str, m: &Map<String, Value>) -> Result<Option<bool>, InvalidValue> {
    let Some(v) = m.get(field) else {
        return Ok(None);
    };
    text(field, v)?.map(|s| parse_on_off(field, &s)).transpose()
}

fn parse_map(m: &Map<String, Value>) -> Result<VfRequest, InvalidValue> {
    const KNOWN: [&str; 13] = [
        "mac",
        "vlan",
        "qos",
        "vlan-proto",
        "spoofchk",
        "trust",
        "link-state",
        "min-rate",
        "max-rate",
        "mtu",
        "driver",
        "apiVersion",
        "kind",
    ];
    if let Some(k) = m.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(InvalidValue::new("config key", k, CONFIG_KEYS));
    }
    let mac = match m.get("mac") {
        None => None,
        Some(v) => text("mac", v)?
            .map(|s| MacAddr::parse_unicast(&s))
            .transpose()?,
    };
    let settings = VfSettings {
        mac,
        vlan: num("vlan", m, "0..=4094")?,
        qos: num("qos", m, "0..=7")?,
        vlan_proto: parsed("vlan-proto", m)?,
        spoofchk: on_off("spoofchk", m)?,
        trust: on_off("trust", m)?,
        link_state: parsed("link-state", m)?,
        min_tx_rate: num("min-rate", m, "Mbit/s, 0..=4294967295")?,
        max_tx_rate: num("max-rate", m, "Mbit/s, 0..=4294967295")?,
        mtu: num("mtu", m, "a number of bytes like 9000")?,
    };
    settings.validate()?;
    let driver: Option<DriverChoice> = parsed("driver", m)?;
    if let (Some(mtu), Some(DriverChoice::VfioPci)) = (settings.mtu, driver) {
        return Err(InvalidValue::new(
            "mtu",
            mtu,
            "only for a VF with a netdev (driver vfio-pci gives none)",
        ));
    }
    Ok(VfRequest { settings, driver })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_parse_from_strings_numbers_and_booleans() {
        let r = parse_configs(&[
            json!({"apiVersion": "vfpool.io/v1", "kind": "VfConfig", "vlan": 10, "mac": "02:00:00:00:00:01"}),
            json!({"vlan": "20", "qos": 3, "spoofchk": false, "trust": "on", "max-rate": 100, "driver": "vfio-pci"}),
        ])
        .unwrap();
        assert_eq!(r.settings.vlan, Some(20), "the later config wins");
        assert_eq!(r.settings.qos, Some(3));
        assert_eq!(r.settings.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(
            (r.settings.spoofchk, r.settings.trust),
            (Some(false), Some(true))
        );
        assert_eq!(r.settings.max_tx_rate, Some(100));
        assert_eq!(r.driver, Some(DriverChoice::VfioPci));
        assert_eq!(parse_configs(&[]).unwrap(), VfRequest::default());
    }

    /// Each error is the CLI's line for the same value.
    #[test]
    fn bad_values_get_the_clis_errors() {
        let err = |v: Value| parse_configs(&[v]).unwrap_err().to_string();
        assert_eq!(err(json!({"vlan": 5000})), "invalid vlan '5000': 0..=4094");
        assert_eq!(err(json!({"vlan": -1})), "invalid vlan '-1': 0..=4094");
        assert_eq!(err(json!({"vlan": 10, "qos": 9})), "invalid qos '9': 0..=7");
        assert!(err(json!({"qos": 3})).starts_with("invalid qos '3': only together"));
        assert_eq!(
            err(json!({"spoofchk": "maybe"})),
            "invalid spoofchk 'maybe': on or off"
        );
        assert!(
            err(json!({"mac": "01:00:00:00:00:00"})).starts_with("invalid mac '01:00:00:00:00:00'")
        );
        assert_eq!(
            err(json!({"driver": "igb"})),
            "invalid driver 'igb': netdevice or vfio-pci"
        );
        assert!(
            err(json!({"min-rate": 200, "max-rate": 100})).starts_with("invalid min-rate '200'")
        );
        assert!(
            err(json!({"mtu": 9000, "driver": "vfio-pci"}))
                .starts_with("invalid mtu '9000': only for a VF with a netdev")
        );
        assert!(err(json!({"vlan-proto": "802.1x"})).starts_with("invalid vlan-proto '802.1x'"));
        assert!(err(json!({"link-state": "up"})).starts_with("invalid link-state 'up'"));
        assert!(
            err(json!({"vlan": [1]}))
                .starts_with("invalid vlan '[1]': a string, number or boolean")
        );
        assert!(err(json!({"vlans": 1})).starts_with("invalid config key 'vlans': mac, vlan"));
        assert!(err(json!([1])).starts_with("invalid config '[1]': a JSON object"));
    }
}
