//! PCI vendor and device names, looked up in the blob `build.rs` compiles from the pci.ids
//! database (see there for why a blob and for its layout).

static BLOB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pci_names.bin"));

const RECORD: usize = 12;

fn u32_at(at: usize) -> Option<u32> {
    let b = BLOB.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Binary search of the `count` records starting at byte `start` for `key`; its name.
fn find(start: usize, count: usize, key: u32) -> Option<&'static str> {
    let names = 8 + RECORD * (u32_at(0)? as usize + u32_at(4)? as usize);
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = start + mid * RECORD;
        let k = u32_at(at)?;
        if k == key {
            let off = names + u32_at(at + 4)? as usize;
            let len = u32_at(at + 8)? as usize;
            return std::str::from_utf8(BLOB.get(off..off + len)?).ok();
        }
        if k < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    None
}

/// The vendor's name (`8086` is "Intel Corporation").
pub fn vendor(vendor: u16) -> Option<&'static str> {
    find(8, u32_at(0)? as usize, u32::from(vendor))
}

/// The device's name (`8086:1521` is "I350 Gigabit Network Connection").
pub fn device(vendor: u16, device: u16) -> Option<&'static str> {
    let vendors = u32_at(0)? as usize;
    let devices = u32_at(4)? as usize;
    find(
        8 + RECORD * vendors,
        devices,
        (u32::from(vendor) << 16) | u32::from(device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_nics_users_have() {
        assert_eq!(vendor(0x8086), Some("Intel Corporation"));
        assert_eq!(
            device(0x8086, 0x1521),
            Some("I350 Gigabit Network Connection")
        );
        assert_eq!(
            device(0x8086, 0x10ed),
            Some("82599 Ethernet Controller Virtual Function")
        );
        assert_eq!(vendor(0x15b3), Some("Mellanox Technologies"));
        assert_eq!(device(0x15b3, 0x1017), Some("MT27800 Family [ConnectX-5]"));
        assert_eq!(device(0x8086, 0xfffe), None);
    }

    #[test]
    fn every_name_of_the_database_is_found_and_nothing_else() {
        let mut known = std::collections::HashSet::new();
        for v in pci_ids::Vendors::iter() {
            known.insert(v.id());
            assert_eq!(vendor(v.id()), Some(v.name()), "vendor {:04x}", v.id());
            for d in v.devices() {
                assert_eq!(
                    device(v.id(), d.id()),
                    Some(d.name()),
                    "device {:04x}:{:04x}",
                    v.id(),
                    d.id()
                );
            }
        }
        for id in (0..=u16::MAX).filter(|i| !known.contains(i)) {
            assert_eq!(vendor(id), None, "vendor {id:04x}");
        }
    }
}
