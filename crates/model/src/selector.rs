use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::{InvalidValue, PciAddr};

/// The largest VF index the PCI SR-IOV capability can describe (TotalVFs is 16 bits).
const MAX_VF_INDEX: u16 = u16::MAX - 1;

/// A set of VF indices, written `0-3,6` (the syntax of sriov-network-operator's `pfNames`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct VfIndexSet(BTreeSet<u16>);

impl VfIndexSet {
    pub fn contains(&self, index: u16) -> bool {
        self.0.contains(&index)
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn max(&self) -> Option<u16> {
        self.0.last().copied()
    }
}

impl FromIterator<u16> for VfIndexSet {
    fn from_iter<T: IntoIterator<Item = u16>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Display for VfIndexSet {
    /// Canonical form: ascending, consecutive runs folded into `a-b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut it = self.0.iter().copied().peekable();
        while let Some(start) = it.next() {
            let mut end = start;
            while it.peek() == Some(&(end + 1)) {
                end += 1;
                it.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for VfIndexSet {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            InvalidValue::new(
                "vf range",
                s,
                format!(
                    "comma-separated VF indices or ascending ranges like 0-3,6 (each 0..={MAX_VF_INDEX})"
                ),
            )
        };
        let num = |p: &str| -> Result<u16, InvalidValue> {
            let p = p.trim();
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            match p.parse::<u16>() {
                Ok(n) if n <= MAX_VF_INDEX => Ok(n),
                _ => Err(bad()),
            }
        };
        let mut set = BTreeSet::new();
        for part in s.split(',') {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(bad());
                    }
                    set.extend(a..=b);
                }
                None => {
                    set.insert(num(part)?);
                }
            }
        }
        Ok(Self(set))
    }
}

/// A physical function named by its netdev or by its PCI address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PfRef {
    Name(String),
    Pci(PciAddr),
}

impl PfRef {
    /// A PCI address if it parses as one, a netdev name otherwise.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if let Ok(pci) = s.parse::<PciAddr>() {
            return Ok(PfRef::Pci(pci));
        }
        validate_ifname(s)?;
        Ok(PfRef::Name(s.to_owned()))
    }

    /// Whether this names the PCI function at `pci` whose netdevs are `netdevs`: the one
    /// place a name or an address typed by a user is matched against a device.
    pub fn names<'a>(
        &self,
        pci: Option<PciAddr>,
        netdevs: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        match self {
            PfRef::Name(n) => netdevs.into_iter().any(|d| d == n),
            PfRef::Pci(p) => pci == Some(*p),
        }
    }
}

impl fmt::Display for PfRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PfRef::Name(n) => f.write_str(n),
            PfRef::Pci(p) => p.fmt(f),
        }
    }
}

/// Checks a Linux interface name: 1 to 15 bytes, no `/`, `:`, `#`, white space.
pub(crate) fn validate_ifname(s: &str) -> Result<(), InvalidValue> {
    let ok = !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':' && b != b'#');
    if ok {
        Ok(())
    } else {
        Err(InvalidValue::new(
            "nic",
            s,
            "a netdev name (1 to 15 characters, no '/', ':', '#' or spaces) or a PCI address like 0000:03:00.0",
        ))
    }
}

/// VFs of one PF: `eno49#0-3,6`, `0000:03:00.0#0-1`, or `eno49` for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VfSelector {
    pub pf: PfRef,
    /// `None` selects every VF of the PF.
    pub vfs: Option<VfIndexSet>,
}

impl VfSelector {
    pub fn matches(&self, index: u16) -> bool {
        self.vfs.as_ref().is_none_or(|s| s.contains(index))
    }
}

impl fmt::Display for VfSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vfs {
            Some(set) => write!(f, "{}#{}", self.pf, set),
            None => self.pf.fmt(f),
        }
    }
}

impl FromStr for VfSelector {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('#') {
            Some((pf, range)) => Ok(Self {
                pf: PfRef::parse(pf)?,
                vfs: Some(range.parse()?),
            }),
            None => Ok(Self {
                pf: PfRef::parse(s)?,
                vfs: None,
            }),
        }
    }
}

serde_as_text!(VfSelector, "eno49#0-3");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn selectors_from_the_issue() {
        let s: VfSelector = "eno49#0-3,6".parse().unwrap();
        assert_eq!(s.pf, PfRef::Name("eno49".into()));
        let pci: PciAddr = "0000:03:00.0".parse().unwrap();
        assert!(s.pf.names(Some(pci), ["eno49"]));
        assert!(!s.pf.names(Some(pci), ["eno50"]));
        assert!(PfRef::Pci(pci).names(Some(pci), []));
        assert!(!PfRef::Pci(pci).names(None, ["0000:03:00.0"]));
        let idx: Vec<u16> = s.vfs.as_ref().unwrap().iter().collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 6]);
        assert!(s.matches(6) && !s.matches(4));
        assert_eq!(s.to_string(), "eno49#0-3,6");

        let s: VfSelector = "0000:03:00.0#0-1".parse().unwrap();
        assert_eq!(s.pf, PfRef::Pci(PciAddr::new(0, 3, 0, 0)));
        assert_eq!(s.to_string(), "0000:03:00.0#0-1");

        let all: VfSelector = "em1".parse().unwrap();
        assert!(all.vfs.is_none() && all.matches(62));
    }

    #[test]
    fn bad_ranges_name_the_value() {
        for bad in [
            "eno49#",
            "eno49#3-1",
            "eno49#a",
            "eno49#1,,2",
            "eno49#-1",
            "eno49#70000",
        ] {
            let err = bad.parse::<VfSelector>().unwrap_err();
            assert_eq!(err.field, "vf range", "{bad}");
        }
        let err = "eth/0#1".parse::<VfSelector>().unwrap_err();
        assert_eq!(err.field, "nic");
        assert!("averyveryverylongname".parse::<VfSelector>().is_err());
    }

    proptest! {
        #[test]
        fn index_set_round_trips(v in proptest::collection::btree_set(0u16..300, 1..40)) {
            let set: VfIndexSet = v.iter().copied().collect();
            let again: VfIndexSet = set.to_string().parse().unwrap();
            prop_assert_eq!(again, set);
        }
    }
}
