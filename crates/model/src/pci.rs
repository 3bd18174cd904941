use std::fmt;
use std::str::FromStr;

use crate::InvalidValue;

/// A PCI function address, `DDDD:BB:DD.F` as the kernel names it in sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddr {
    pub const fn new(domain: u32, bus: u8, device: u8, function: u8) -> Self {
        Self {
            domain,
            bus,
            device,
            function,
        }
    }

    /// The address `n` routing IDs after this one (SR-IOV VF offset and stride arithmetic:
    /// VF *i* sits at `PF + offset + i * stride`, carrying into the bus number).
    pub fn offset_by(self, n: u32) -> Option<Self> {
        let rid =
            (u32::from(self.bus) << 8) | (u32::from(self.device) << 3) | u32::from(self.function);
        let rid = rid.checked_add(n)?;
        if rid > 0xffff {
            return None;
        }
        Some(Self {
            domain: self.domain,
            bus: (rid >> 8) as u8,
            device: ((rid >> 3) & 0x1f) as u8,
            function: (rid & 0x7) as u8,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

const PCI_ALLOWED: &str = "a PCI address like 0000:03:00.0 or 03:00.0";

impl FromStr for PciAddr {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue::new("pci address", s, PCI_ALLOWED);
        let (head, function) = s.rsplit_once('.').ok_or_else(bad)?;
        let mut parts: Vec<&str> = head.split(':').collect();
        let domain = match parts.len() {
            3 => {
                let d = parts.remove(0);
                if d.is_empty() || d.len() > 8 {
                    return Err(bad());
                }
                u32::from_str_radix(d, 16).map_err(|_| bad())?
            }
            2 => 0,
            _ => return Err(bad()),
        };
        let hex = |p: &str, max_len: usize| -> Result<u8, InvalidValue> {
            if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u8::from_str_radix(p, 16).map_err(|_| bad())
        };
        let bus = hex(parts[0], 2)?;
        let device = hex(parts[1], 2)?;
        let function = hex(function, 1)?;
        if device > 0x1f || function > 7 {
            return Err(bad());
        }
        Ok(Self::new(domain, bus, device, function))
    }
}

serde_as_text!(PciAddr, "0000:03:10.0");

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// The group bit: a multicast (or broadcast) address cannot be a NIC's own address.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Parses an address that may be given to a VF: unicast and not all zeros.
    pub fn parse_unicast(s: &str) -> Result<Self, InvalidValue> {
        let mac: MacAddr = s.parse()?;
        if mac.is_multicast() || mac.is_zero() {
            return Err(InvalidValue::new(
                "mac",
                s,
                "a unicast address (first octet even) that is not 00:00:00:00:00:00",
            ));
        }
        Ok(mac)
    }
}

impl fmt::Display for MacAddr {
    /// `aa:bb:cc:dd:ee:ff`, lower case. Written byte by byte: the simulated netlink state
    /// and the ledger print many of these, and `format!` per byte was a visible cost.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b':'; 17];
        for (i, b) in self.0.iter().enumerate() {
            out[i * 3] = HEX[usize::from(b >> 4)];
            out[i * 3 + 1] = HEX[usize::from(b & 0xf)];
        }
        // Only ASCII hex digits and colons were written.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for MacAddr {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue::new("mac", s, "six hex octets like 02:00:00:00:00:01");
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| bad())?;
            n += 1;
        }
        if n != 6 {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

serde_as_text!(MacAddr, "02:00:00:00:00:01");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pci_parses_long_and_short_forms() {
        assert_eq!(
            "0000:03:00.1".parse::<PciAddr>().unwrap(),
            PciAddr::new(0, 3, 0, 1)
        );
        assert_eq!(
            "03:1f.7".parse::<PciAddr>().unwrap(),
            PciAddr::new(0, 3, 0x1f, 7)
        );
        assert_eq!(
            "10000:e1:00.0".parse::<PciAddr>().unwrap().to_string(),
            "10000:e1:00.0"
        );
    }

    #[test]
    fn pci_rejects_garbage_with_a_clear_message() {
        for bad in [
            "",
            "eno49",
            "0000:03:00",
            "0000:03:20.0",
            "0000:03:00.8",
            "0000:3g:00.0",
            "0:0:0:0.0",
        ] {
            let err = bad.parse::<PciAddr>().unwrap_err();
            assert_eq!(err.field, "pci address", "{bad}");
            assert!(err.to_string().contains("0000:03:00.0"), "{err}");
        }
    }

    #[test]
    fn vf_routing_id_arithmetic_matches_the_real_igb_guest() {
        // FINDINGS.md: PF 0000:01:00.0, offset 128, stride 2 -> virtfn0 01:10.0, virtfn6 01:11.4.
        let pf = PciAddr::new(0, 1, 0, 0);
        assert_eq!(pf.offset_by(128).unwrap().to_string(), "0000:01:10.0");
        assert_eq!(
            pf.offset_by(128 + 6 * 2).unwrap().to_string(),
            "0000:01:11.4"
        );
        assert!(PciAddr::new(0, 0xff, 0x1f, 7).offset_by(1).is_none());
    }

    #[test]
    fn mac_rules() {
        assert_eq!(
            MacAddr::parse_unicast("02:AA:00:00:00:01")
                .unwrap()
                .to_string(),
            "02:aa:00:00:00:01"
        );
        let err = MacAddr::parse_unicast("01:00:5e:00:00:01").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid mac '01:00:5e:00:00:01': a unicast"),
            "{err}"
        );
        assert!(MacAddr::parse_unicast("00:00:00:00:00:00").is_err());
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:0:0:0:0:0",
            "zz:00:00:00:00:00",
        ] {
            assert_eq!(bad.parse::<MacAddr>().unwrap_err().field, "mac");
        }
    }

    proptest! {
        #[test]
        fn pci_display_parse_round_trip(d in 0u32..0x10000, b: u8, dev in 0u8..32, f in 0u8..8) {
            let a = PciAddr::new(d, b, dev, f);
            prop_assert_eq!(a.to_string().parse::<PciAddr>().unwrap(), a);
        }

        #[test]
        fn mac_display_parse_round_trip(bytes: [u8; 6]) {
            let m = MacAddr(bytes);
            prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
            let b = bytes;
            prop_assert_eq!(
                m.to_string(),
                format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
            );
        }
    }
}
