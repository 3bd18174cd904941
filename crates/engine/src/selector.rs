//! Pool selectors: which VFs of the host a pool holds.
//!
//! | selector | matches |
//! | --- | --- |
//! | `eno49`, `eno49#0-3,6` | VFs of the PF with that netdev name (all, or those indices) |
//! | `0000:03:00.0`, `0000:03:00.0#0-1` | the same, the PF named by PCI address |
//! | `vendor=8086` | PFs with that PCI vendor id (hex) |
//! | `device=1520` | PFs whose PCI device id, or whose VFs' device id, is that (hex) |
//! | `driver=igb` | PFs bound to that driver |
//! | `numa=0` | PFs on that NUMA node |
//! | `link=ether` | PFs of that link type (`ether`, `infiniband`) |
//!
//! Selectors of the same kind are alternatives (OR); kinds combine (AND). So
//! `--select eno49 --select eno50#0-3 --select numa=0` is "VFs of eno49, or VFs 0-3 of
//! eno50, and on NUMA node 0". PF names and PCI addresses are one kind.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vfpool_model::{InvalidValue, PfRef, VfSelector};

/// The facts about a PF that selectors look at.
#[derive(Debug, Clone, Default)]
pub struct PfFacts {
    pub name: String,
    pub netdevs: Vec<String>,
    pub pci: Option<vfpool_model::PciAddr>,
    pub vendor: u16,
    pub device: u16,
    pub vf_device: Option<u16>,
    pub driver: Option<String>,
    pub numa: Option<u32>,
    pub link_type: Option<String>,
}

impl PfFacts {
    /// Whether `r` names this PF (by a netdev or its PCI address).
    pub fn is(&self, r: &PfRef) -> bool {
        r.names(self.pci, self.netdevs.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolSelector {
    Vfs(VfSelector),
    Vendor(u16),
    Device(u16),
    Driver(String),
    Numa(u32),
    Link(String),
}

const ALLOWED: &str = "a PF with optional VF range (eno49#0-3,6, 0000:03:00.0#0-1), or vendor=HEX, device=HEX, driver=NAME, numa=N, link=ether|infiniband";

impl PoolSelector {
    /// Which group of alternatives this selector belongs to.
    fn kind(&self) -> u8 {
        match self {
            PoolSelector::Vfs(_) => 0,
            PoolSelector::Vendor(_) => 1,
            PoolSelector::Device(_) => 2,
            PoolSelector::Driver(_) => 3,
            PoolSelector::Numa(_) => 4,
            PoolSelector::Link(_) => 5,
        }
    }

    fn matches(&self, pf: &PfFacts, index: u16) -> bool {
        match self {
            PoolSelector::Vfs(s) => pf.is(&s.pf) && s.matches(index),
            PoolSelector::Vendor(v) => pf.vendor == *v,
            PoolSelector::Device(d) => pf.device == *d || pf.vf_device == Some(*d),
            PoolSelector::Driver(d) => pf.driver.as_deref() == Some(d.as_str()),
            PoolSelector::Numa(n) => pf.numa == Some(*n),
            PoolSelector::Link(l) => pf.link_type.as_deref() == Some(l.as_str()),
        }
    }
}

/// The PFs `selectors` name (by netdev name or PCI address): a pool with such selectors can
/// only hold VFs of these. `None` when the selectors do not name PFs (any PF may match).
pub fn named_pfs(selectors: &[PoolSelector]) -> Option<Vec<&PfRef>> {
    let named: Vec<&PfRef> = selectors
        .iter()
        .filter_map(|s| match s {
            PoolSelector::Vfs(v) => Some(&v.pf),
            _ => None,
        })
        .collect();
    (!named.is_empty()).then_some(named)
}

/// Whether VF `index` of `pf` is selected by `selectors` (OR within a kind, AND across).
/// An empty list selects nothing.
pub fn selects(selectors: &[PoolSelector], pf: &PfFacts, index: u16) -> bool {
    if selectors.is_empty() {
        return false;
    }
    (0..6u8).all(|kind| {
        let mut of_kind = selectors.iter().filter(|s| s.kind() == kind).peekable();
        of_kind.peek().is_none() || of_kind.any(|s| s.matches(pf, index))
    })
}

impl fmt::Display for PoolSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolSelector::Vfs(s) => s.fmt(f),
            PoolSelector::Vendor(v) => write!(f, "vendor={v:04x}"),
            PoolSelector::Device(d) => write!(f, "device={d:04x}"),
            PoolSelector::Driver(d) => write!(f, "driver={d}"),
            PoolSelector::Numa(n) => write!(f, "numa={n}"),
            PoolSelector::Link(l) => write!(f, "link={l}"),
        }
    }
}

fn hex16(s: &str, whole: &str) -> Result<u16, InvalidValue> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    if h.is_empty() || h.len() > 4 {
        return Err(InvalidValue::new(
            "select",
            whole,
            "a 16-bit hex id like 8086",
        ));
    }
    u16::from_str_radix(h, 16)
        .map_err(|_| InvalidValue::new("select", whole, "a 16-bit hex id like 8086"))
}

impl FromStr for PoolSelector {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue::new("select", s, ALLOWED);
        let Some((k, v)) = s.split_once('=') else {
            return s.parse::<VfSelector>().map(PoolSelector::Vfs);
        };
        let name_ok = |v: &str| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        };
        match k {
            "vendor" => hex16(v, s).map(PoolSelector::Vendor),
            "device" => hex16(v, s).map(PoolSelector::Device),
            "driver" if name_ok(v) => Ok(PoolSelector::Driver(v.to_owned())),
            "numa" => v.parse().map(PoolSelector::Numa).map_err(|_| bad()),
            "link" if matches!(v, "ether" | "infiniband") => Ok(PoolSelector::Link(v.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl Serialize for PoolSelector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PoolSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(name: &str, driver: &str, numa: u32) -> PfFacts {
        PfFacts {
            name: name.into(),
            netdevs: vec![name.into()],
            pci: Some("0000:03:00.0".parse().unwrap()),
            vendor: 0x8086,
            device: 0x1521,
            vf_device: Some(0x1520),
            driver: Some(driver.into()),
            numa: Some(numa),
            link_type: Some("ether".into()),
        }
    }

    fn sel(v: &[&str]) -> Vec<PoolSelector> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn same_kind_or_different_kinds_and() {
        let eno49 = pf("eno49", "igb", 0);
        let eno50 = pf("eno50", "igb", 1);
        let s = sel(&["eno49#0-3", "eno50", "numa=0"]);
        assert!(selects(&s, &eno49, 3));
        assert!(!selects(&s, &eno49, 4));
        assert!(!selects(&s, &eno50, 0), "eno50 is on numa 1");
        let s = sel(&["driver=igb", "driver=ixgbe", "device=1520", "vendor=8086"]);
        assert!(selects(&s, &eno50, 6));
        assert!(!selects(&sel(&["driver=mlx5_core"]), &eno49, 0));
        assert!(selects(&sel(&["0000:03:00.0#1"]), &eno49, 1));
        assert!(selects(&sel(&["link=ether"]), &eno49, 1));
        assert!(!selects(&[], &eno49, 1));
    }

    #[test]
    fn parse_and_print() {
        for s in [
            "eno49#0-3,6",
            "0000:03:00.0#0-1",
            "vendor=8086",
            "device=1520",
            "driver=igb",
            "numa=0",
            "link=ether",
        ] {
            assert_eq!(s.parse::<PoolSelector>().unwrap().to_string(), s);
        }
        for bad in [
            "vendor=xyz",
            "speed=10",
            "numa=-1",
            "link=wifi",
            "eno49#9-1",
        ] {
            let e = bad.parse::<PoolSelector>().unwrap_err();
            assert!(e.field == "select" || e.field == "vf range", "{bad}: {e}");
        }
    }
}
