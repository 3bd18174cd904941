//! One PF-side VF setting at a time: what [`crate::NetOps::set_vf_knob`] applies and what the
//! engine rolls back.

use std::fmt;

use vfpool_model::{LinkState, MacAddr, VfConfig, VfSettings, VlanProto};

/// One PF-side VF setting, applied by one RTM_SETLINK.
///
/// The kernel sets VLAN, QoS and protocol together, and min and max rate together, so those
/// are one knob each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfKnob {
    /// `ip link set PF vf N mac MAC` (IFLA_VF_MAC).
    Mac(MacAddr),
    /// `ip link set PF vf N vlan VLAN qos QOS proto PROTO` (IFLA_VF_VLAN for 802.1Q,
    /// IFLA_VF_VLAN_LIST for 802.1ad). VLAN 0 removes the port VLAN.
    Vlan {
        vlan: u16,
        qos: u8,
        proto: VlanProto,
    },
    /// `ip link set PF vf N min_tx_rate MIN max_tx_rate MAX` (IFLA_VF_RATE), Mbit/s, 0 = no
    /// limit.
    Rate { min: u32, max: u32 },
    /// `ip link set PF vf N spoofchk on|off` (IFLA_VF_SPOOFCHK).
    SpoofChk(bool),
    /// `ip link set PF vf N state auto|enable|disable` (IFLA_VF_LINK_STATE).
    LinkState(LinkState),
    /// `ip link set PF vf N trust on|off` (IFLA_VF_TRUST).
    Trust(bool),
}

impl VfKnob {
    /// The knobs that apply `s`, in the fixed order they are applied (the kernel's own
    /// order in `do_setvfinfo`): mac, vlan, rate, spoofchk, link-state, trust.
    ///
    /// Where the kernel sets values together and `s` gives only some of them, the others
    /// come from `current` (as `ip link` does for rates), or are 0 without it. A `vlan`
    /// without `qos`/`vlan_proto` means qos 0, 802.1Q, as with `ip link`.
    pub fn plan(s: &VfSettings, current: Option<&VfConfig>) -> Vec<VfKnob> {
        let mut out = Vec::new();
        if let Some(mac) = s.mac {
            out.push(VfKnob::Mac(mac));
        }
        if s.vlan.is_some() || s.qos.is_some() || s.vlan_proto.is_some() {
            out.push(VfKnob::Vlan {
                vlan: s.vlan.or(current.map(|c| c.vlan)).unwrap_or(0),
                qos: s.qos.unwrap_or(0),
                proto: s.vlan_proto.unwrap_or_default(),
            });
        }
        if s.min_tx_rate.is_some() || s.max_tx_rate.is_some() {
            out.push(VfKnob::Rate {
                min: s
                    .min_tx_rate
                    .or(current.map(|c| c.min_tx_rate))
                    .unwrap_or(0),
                max: s
                    .max_tx_rate
                    .or(current.map(|c| c.max_tx_rate))
                    .unwrap_or(0),
            });
        }
        if let Some(on) = s.spoofchk {
            out.push(VfKnob::SpoofChk(on));
        }
        if let Some(state) = s.link_state {
            out.push(VfKnob::LinkState(state));
        }
        if let Some(on) = s.trust {
            out.push(VfKnob::Trust(on));
        }
        out
    }

    /// True when [`VfKnob::plan`] needs the current config to fill in values `s` leaves out.
    pub fn plan_needs_current(s: &VfSettings) -> bool {
        (s.vlan.is_none() && (s.qos.is_some() || s.vlan_proto.is_some()))
            || (s.min_tx_rate.is_some() != s.max_tx_rate.is_some())
    }

    /// Every knob that puts a VF back to `config`, in apply order. Knobs the kernel did not
    /// report (`None`) are left out.
    ///
    /// Note that a driver may report a value it does not accept (igb reports link-state
    /// auto but refuses any link-state): to roll back a change, prefer [`VfKnob::undo`] on
    /// the knobs that were actually applied.
    pub fn restoring(config: &VfConfig) -> Vec<VfKnob> {
        [
            VfKnob::Mac(MacAddr::ZERO),
            VfKnob::Vlan {
                vlan: 0,
                qos: 0,
                proto: VlanProto::Dot1Q,
            },
            VfKnob::Rate { min: 0, max: 0 },
            VfKnob::SpoofChk(true),
            VfKnob::LinkState(LinkState::Auto),
            VfKnob::Trust(false),
        ]
        .iter()
        .filter_map(|k| k.undo(config))
        .collect()
    }

    /// The knob of the same kind that puts back the value `before` had, or `None` when the
    /// kernel did not report that value.
    pub fn undo(&self, before: &VfConfig) -> Option<VfKnob> {
        Some(match self {
            VfKnob::Mac(_) => VfKnob::Mac(before.mac),
            VfKnob::Vlan { .. } => VfKnob::Vlan {
                vlan: before.vlan,
                qos: before.qos,
                proto: before.vlan_proto,
            },
            VfKnob::Rate { .. } => VfKnob::Rate {
                min: before.min_tx_rate,
                max: before.max_tx_rate,
            },
            VfKnob::SpoofChk(_) => VfKnob::SpoofChk(before.spoofchk?),
            VfKnob::LinkState(_) => VfKnob::LinkState(before.link_state?),
            VfKnob::Trust(_) => VfKnob::Trust(before.trust?),
        })
    }

    /// The setting's name as users write it: `mac`, `vlan`, `vlan-proto` (a VLAN knob with
    /// 802.1ad), `min-rate` (a rate knob with a minimum), `max-rate`, `spoofchk`,
    /// `link-state`, `trust`.
    pub fn setting(&self) -> &'static str {
        match self {
            VfKnob::Mac(_) => "mac",
            VfKnob::Vlan {
                proto: VlanProto::Dot1AD,
                ..
            } => "vlan-proto",
            VfKnob::Vlan { .. } => "vlan",
            VfKnob::Rate { min, .. } if *min != 0 => "min-rate",
            VfKnob::Rate { .. } => "max-rate",
            VfKnob::SpoofChk(_) => "spoofchk",
            VfKnob::LinkState(_) => "link-state",
            VfKnob::Trust(_) => "trust",
        }
    }

    /// The value, phrased for [`VfKnob::setting`]: `802.1ad (vlan 300 qos 0)`, `10 (max-rate
    /// 100)`, `on`.
    pub fn value(&self) -> String {
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        match *self {
            VfKnob::Mac(mac) => mac.to_string(),
            VfKnob::Vlan {
                vlan,
                qos,
                proto: VlanProto::Dot1AD,
            } => format!("802.1ad (vlan {vlan} qos {qos})"),
            VfKnob::Vlan { vlan, qos: 0, .. } => vlan.to_string(),
            VfKnob::Vlan { vlan, qos, .. } => format!("{vlan} qos {qos}"),
            VfKnob::Rate { min, max } if min != 0 => format!("{min} (max-rate {max})"),
            VfKnob::Rate { max, .. } => max.to_string(),
            VfKnob::SpoofChk(b) | VfKnob::Trust(b) => on_off(b),
            VfKnob::LinkState(s) => s.to_string(),
        }
    }

    /// Applies this knob to a config, as the kernel would report it afterwards.
    pub fn apply_to(&self, c: &mut VfConfig) {
        match *self {
            VfKnob::Mac(mac) => c.mac = mac,
            VfKnob::Vlan { vlan, qos, proto } => {
                c.vlan = vlan;
                c.qos = qos;
                c.vlan_proto = proto;
            }
            VfKnob::Rate { min, max } => {
                c.min_tx_rate = min;
                c.max_tx_rate = max;
            }
            VfKnob::SpoofChk(b) => c.spoofchk = Some(b),
            VfKnob::LinkState(s) => c.link_state = Some(s),
            VfKnob::Trust(b) => c.trust = Some(b),
        }
    }
}

impl fmt::Display for VfKnob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.setting(), self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, last])
    }

    #[test]
    fn plan_is_in_fixed_order_and_skips_unset() {
        let s = VfSettings {
            trust: Some(true),
            link_state: Some(LinkState::Disable),
            mac: Some(mac(1)),
            max_tx_rate: Some(100),
            vlan: Some(10),
            spoofchk: Some(false),
            mtu: Some(9000),
            ..Default::default()
        };
        let plan = VfKnob::plan(&s, None);
        assert_eq!(
            plan,
            vec![
                VfKnob::Mac(mac(1)),
                VfKnob::Vlan {
                    vlan: 10,
                    qos: 0,
                    proto: VlanProto::Dot1Q
                },
                VfKnob::Rate { min: 0, max: 100 },
                VfKnob::SpoofChk(false),
                VfKnob::LinkState(LinkState::Disable),
                VfKnob::Trust(true),
            ]
        );
        assert!(VfKnob::plan(&VfSettings::default(), None).is_empty());
    }

    #[test]
    fn partial_pairs_take_the_current_value() {
        let current = VfConfig {
            vlan: 42,
            min_tx_rate: 10,
            max_tx_rate: 500,
            ..Default::default()
        };
        let s = VfSettings {
            max_tx_rate: Some(200),
            qos: Some(3),
            ..Default::default()
        };
        assert!(VfKnob::plan_needs_current(&s));
        assert_eq!(
            VfKnob::plan(&s, Some(&current)),
            vec![
                VfKnob::Vlan {
                    vlan: 42,
                    qos: 3,
                    proto: VlanProto::Dot1Q
                },
                VfKnob::Rate { min: 10, max: 200 }
            ]
        );
        assert!(!VfKnob::plan_needs_current(&VfSettings {
            vlan: Some(5),
            min_tx_rate: Some(1),
            max_tx_rate: Some(2),
            ..Default::default()
        }));
    }

    #[test]
    fn names_values_and_undo() {
        let k = VfKnob::Vlan {
            vlan: 300,
            qos: 0,
            proto: VlanProto::Dot1AD,
        };
        assert_eq!(k.to_string(), "vlan-proto 802.1ad (vlan 300 qos 0)");
        assert_eq!(
            VfKnob::Vlan {
                vlan: 200,
                qos: 5,
                proto: VlanProto::Dot1Q
            }
            .to_string(),
            "vlan 200 qos 5"
        );
        assert_eq!(
            VfKnob::Rate { min: 10, max: 0 }.to_string(),
            "min-rate 10 (max-rate 0)"
        );
        assert_eq!(
            VfKnob::Rate { min: 0, max: 100 }.to_string(),
            "max-rate 100"
        );
        assert_eq!(
            VfKnob::LinkState(LinkState::Enable).to_string(),
            "link-state enable"
        );
        assert_eq!(VfKnob::Trust(true).to_string(), "trust on");

        let before = VfConfig {
            mac: mac(9),
            spoofchk: Some(true),
            trust: None,
            ..Default::default()
        };
        assert_eq!(VfKnob::Mac(mac(1)).undo(&before), Some(VfKnob::Mac(mac(9))));
        assert_eq!(VfKnob::Trust(true).undo(&before), None);
        assert_eq!(
            VfKnob::SpoofChk(false).undo(&before),
            Some(VfKnob::SpoofChk(true))
        );
    }

    #[test]
    fn restoring_then_applying_gives_back_the_config() {
        let target = VfConfig {
            mac: mac(7),
            vlan: 100,
            qos: 2,
            vlan_proto: VlanProto::Dot1AD,
            spoofchk: Some(false),
            trust: Some(true),
            link_state: Some(LinkState::Enable),
            min_tx_rate: 5,
            max_tx_rate: 50,
        };
        let mut c = VfConfig {
            spoofchk: Some(true),
            trust: Some(false),
            link_state: Some(LinkState::Auto),
            ..Default::default()
        };
        for k in VfKnob::restoring(&target) {
            k.apply_to(&mut c);
        }
        assert_eq!(c, target);
        // Unreported fields give no knob.
        assert_eq!(VfKnob::restoring(&VfConfig::default()).len(), 3);
    }
}
