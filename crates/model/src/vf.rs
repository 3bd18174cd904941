use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{InvalidValue, MacAddr};

/// What a NIC is, for SR-IOV purposes (the cloud platform seed's "virtualization state").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NicState {
    /// A PF with VFs enabled (`sriov_numvfs > 0`).
    Virtualized,
    /// A PF that could have VFs (`sriov_totalvfs > 0`, `sriov_numvfs = 0`).
    Virtualizable,
    /// No SR-IOV capability.
    Unvirtualizable,
    /// The function is itself a VF (`physfn` exists).
    Vf,
}

impl NicState {
    pub fn as_str(self) -> &'static str {
        match self {
            NicState::Virtualized => "virtualized",
            NicState::Virtualizable => "virtualizable",
            NicState::Unvirtualizable => "unvirtualizable",
            NicState::Vf => "vf",
        }
    }
}

impl fmt::Display for NicState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VLAN protocol of a VF's port VLAN (`ip link set PF vf N vlan V proto P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum VlanProto {
    #[default]
    #[serde(rename = "802.1q")]
    Dot1Q,
    #[serde(rename = "802.1ad")]
    Dot1AD,
}

impl VlanProto {
    /// The ethertype carried in IFLA_VF_VLAN_INFO.
    pub fn ethertype(self) -> u16 {
        match self {
            VlanProto::Dot1Q => 0x8100,
            VlanProto::Dot1AD => 0x88a8,
        }
    }

    pub fn from_ethertype(t: u16) -> Option<Self> {
        match t {
            0x8100 => Some(VlanProto::Dot1Q),
            0x88a8 => Some(VlanProto::Dot1AD),
            _ => None,
        }
    }
}

impl fmt::Display for VlanProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VlanProto::Dot1Q => "802.1q",
            VlanProto::Dot1AD => "802.1ad",
        })
    }
}

impl FromStr for VlanProto {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "802.1q" => Ok(VlanProto::Dot1Q),
            "802.1ad" => Ok(VlanProto::Dot1AD),
            _ => Err(InvalidValue::new("vlan-proto", s, "802.1q or 802.1ad")),
        }
    }
}

/// A VF's administrative link state (`ip link set PF vf N state S`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Follow the PF's link (IFLA_VF_LINK_STATE_AUTO = 0).
    #[default]
    Auto,
    /// Always up (IFLA_VF_LINK_STATE_ENABLE = 1).
    Enable,
    /// Always down (IFLA_VF_LINK_STATE_DISABLE = 2).
    Disable,
}

impl LinkState {
    pub fn to_kernel(self) -> u32 {
        match self {
            LinkState::Auto => 0,
            LinkState::Enable => 1,
            LinkState::Disable => 2,
        }
    }

    pub fn from_kernel(v: u32) -> Option<Self> {
        match v {
            0 => Some(LinkState::Auto),
            1 => Some(LinkState::Enable),
            2 => Some(LinkState::Disable),
            _ => None,
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkState::Auto => "auto",
            LinkState::Enable => "enable",
            LinkState::Disable => "disable",
        })
    }
}

impl FromStr for LinkState {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(LinkState::Auto),
            "enable" => Ok(LinkState::Enable),
            "disable" => Ok(LinkState::Disable),
            _ => Err(InvalidValue::new(
                "link-state",
                s,
                "auto, enable or disable",
            )),
        }
    }
}

/// Parses `on`/`off` (and `true`/`false`) for the boolean VF knobs.
pub fn parse_on_off(field: &'static str, s: &str) -> Result<bool, InvalidValue> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(InvalidValue::new(field, s, "on or off")),
    }
}

/// What a VF is configured to on the PF side, as IFLA_VFINFO_LIST reports it.
///
/// Fields the kernel did not report are `None`: a driver that has no trust setting reports
/// nothing rather than "off".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VfConfig {
    pub mac: MacAddr,
    pub vlan: u16,
    pub qos: u8,
    pub vlan_proto: VlanProto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spoofchk: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_state: Option<LinkState>,
    /// Mbit/s; 0 means no limit.
    pub min_tx_rate: u32,
    /// Mbit/s; 0 means no limit.
    pub max_tx_rate: u32,
}

impl VfConfig {
    /// A VF as the kernel creates it (`sriov_numvfs` just written) and as igb, ixgbe and
    /// mlx5 report it: no MAC, no VLAN, spoof checking on, not trusted, link state auto, no
    /// rate limits. The real-kernel tier checks this against a real igb.
    pub fn kernel_default() -> Self {
        Self {
            mac: MacAddr::ZERO,
            vlan: 0,
            qos: 0,
            vlan_proto: VlanProto::Dot1Q,
            spoofchk: Some(true),
            trust: Some(false),
            link_state: Some(LinkState::Auto),
            min_tx_rate: 0,
            max_tx_rate: 0,
        }
    }
}

/// A requested VF configuration: each `Some` is a change to make, each `None` is left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VfSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_proto: Option<VlanProto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoofchk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<LinkState>,
    /// Mbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tx_rate: Option<u32>,
    /// Mbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tx_rate: Option<u32>,
    /// On the VF netdev, not the PF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

pub const MAX_VLAN: u16 = 4094;
pub const MAX_QOS: u8 = 7;

impl VfSettings {
    /// Checks the rules that hold for every driver. Driver limits (igb has no link state)
    /// and PF limits (MTU range) are checked where the device is known.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if let Some(mac) = self.mac
            && (mac.is_multicast() || mac.is_zero())
        {
            return Err(InvalidValue::new(
                "mac",
                mac,
                "a unicast address (first octet even) that is not 00:00:00:00:00:00",
            ));
        }
        if let Some(v) = self.vlan
            && v > MAX_VLAN
        {
            return Err(InvalidValue::new("vlan", v, format!("0..={MAX_VLAN}")));
        }
        if let Some(q) = self.qos {
            if q > MAX_QOS {
                return Err(InvalidValue::new("qos", q, format!("0..={MAX_QOS}")));
            }
            if q > 0 && self.vlan.unwrap_or(0) == 0 {
                return Err(InvalidValue::new(
                    "qos",
                    q,
                    "only together with a vlan of 1..=4094",
                ));
            }
        }
        if let Some(VlanProto::Dot1AD) = self.vlan_proto
            && self.vlan.unwrap_or(0) == 0
        {
            return Err(InvalidValue::new(
                "vlan-proto",
                "802.1ad",
                "only together with a vlan of 1..=4094",
            ));
        }
        if let (Some(min), Some(max)) = (self.min_tx_rate, self.max_tx_rate)
            && max != 0
            && min > max
        {
            return Err(InvalidValue::new(
                "min-rate",
                min,
                format!("at most max-rate ({max} Mbit/s)"),
            ));
        }
        if let Some(mtu) = self.mtu
            && mtu < 68
        {
            return Err(InvalidValue::new(
                "mtu",
                mtu,
                "at least 68 (the IPv4 minimum)",
            ));
        }
        Ok(())
    }

    /// True when nothing is requested on the PF side.
    pub fn pf_side_is_empty(&self) -> bool {
        self.mac.is_none()
            && self.vlan.is_none()
            && self.qos.is_none()
            && self.vlan_proto.is_none()
            && self.spoofchk.is_none()
            && self.trust.is_none()
            && self.link_state.is_none()
            && self.min_tx_rate.is_none()
            && self.max_tx_rate.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: VfSettings) -> String {
        s.validate().unwrap_err().to_string()
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(
            err(VfSettings {
                vlan: Some(4095),
                ..Default::default()
            }),
            "invalid vlan '4095': 0..=4094"
        );
        assert_eq!(
            err(VfSettings {
                vlan: Some(10),
                qos: Some(8),
                ..Default::default()
            }),
            "invalid qos '8': 0..=7"
        );
        assert!(
            err(VfSettings {
                qos: Some(3),
                ..Default::default()
            })
            .starts_with("invalid qos '3'")
        );
        assert!(
            err(VfSettings {
                vlan_proto: Some(VlanProto::Dot1AD),
                ..Default::default()
            })
            .starts_with("invalid vlan-proto '802.1ad'")
        );
        assert!(
            err(VfSettings {
                min_tx_rate: Some(200),
                max_tx_rate: Some(100),
                ..Default::default()
            })
            .starts_with("invalid min-rate '200'")
        );
        assert!(
            err(VfSettings {
                mac: Some(MacAddr([1, 0, 0, 0, 0, 0])),
                ..Default::default()
            })
            .starts_with("invalid mac '01:00:00:00:00:00'")
        );
        assert!(
            err(VfSettings {
                mtu: Some(10),
                ..Default::default()
            })
            .starts_with("invalid mtu '10'")
        );
    }

    #[test]
    fn good_settings_pass() {
        let s = VfSettings {
            vlan: Some(100),
            qos: Some(5),
            vlan_proto: Some(VlanProto::Dot1AD),
            min_tx_rate: Some(10),
            max_tx_rate: Some(100),
            ..Default::default()
        };
        s.validate().unwrap();
        assert!(!s.pf_side_is_empty());
        assert!(
            VfSettings {
                mtu: Some(9000),
                ..Default::default()
            }
            .pf_side_is_empty()
        );
    }

    #[test]
    fn enums_parse_and_print() {
        assert_eq!("802.1AD".parse::<VlanProto>().unwrap(), VlanProto::Dot1AD);
        assert_eq!("disable".parse::<LinkState>().unwrap().to_kernel(), 2);
        assert_eq!(
            "x".parse::<LinkState>().unwrap_err().to_string(),
            "invalid link-state 'x': auto, enable or disable"
        );
        assert_eq!(
            parse_on_off("trust", "maybe").unwrap_err().to_string(),
            "invalid trust 'maybe': on or off"
        );
        assert_eq!(
            serde_json::to_string(&NicState::Virtualizable).unwrap(),
            "\"virtualizable\""
        );
    }
}
