//! Names shared with the other side of the cluster contracts: a VF's device name in the
//! ResourceSlices (and in claims), and the environment variable Multus and KubeVirt read.

use vfpool_model::{InvalidValue, PciAddr};

/// A VF's device name in vfpool's ResourceSlices, which claims name it by:
/// `vf-DDDD-BB-DD-F` (the PCI address in lower-case hex, `:` and `.` as `-`), a DNS label.
/// `0000:03:10.1` is `vf-0000-03-10-1`.
pub fn device_name(vf: PciAddr) -> String {
    format!(
        "vf-{:04x}-{:02x}-{:02x}-{:x}",
        vf.domain, vf.bus, vf.device, vf.function
    )
}

/// The VF a device name ([`device_name`]) names.
pub fn parse_device_name(name: &str) -> Result<PciAddr, InvalidValue> {
    let bad = || {
        InvalidValue::new(
            "device",
            name,
            "a vfpool VF device name vf-DDDD-BB-DD-F (its PCI address, e.g. vf-0000-03-10-1)",
        )
    };
    let rest = name.strip_prefix("vf-").ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('-').collect();
    let [d, b, s, f] = parts.as_slice() else {
        return Err(bad());
    };
    if d.len() != 4 || b.len() != 2 || s.len() != 2 || f.len() != 1 {
        return Err(bad());
    }
    let pci: PciAddr = format!("{d}:{b}:{s}.{f}").parse().map_err(|_| bad())?;
    // One spelling only (lower-case), so that a name maps to a VF and back.
    if device_name(pci) != name {
        return Err(bad());
    }
    Ok(pci)
}

/// The environment variable a device plugin's `Allocate` sets with the PCI addresses of
/// `resource`'s devices, as sriov-network-device-plugin names it and Multus and KubeVirt
/// read it: `PCIDEVICE_` and the resource name upper-cased, `.`, `/` and `-` as `_`
/// (`vfpool.io/gold` gives `PCIDEVICE_VFPOOL_IO_GOLD`). `_INFO` after it is the device
/// information JSON.
pub fn pcidevice_env(resource: &str) -> String {
    let mut s = String::from("PCIDEVICE_");
    s.extend(resource.chars().map(|c| match c {
        '.' | '/' | '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn device_names_round_trip_and_are_dns_labels() {
        let vf = PciAddr::new(0, 0x3b, 0x1f, 7);
        let n = device_name(vf);
        assert_eq!(n, "vf-0000-3b-1f-7");
        assert!(
            n.len() <= 63
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
        assert_eq!(parse_device_name(&n).unwrap(), vf);
    }

    #[test]
    fn bad_device_names_are_refused_naming_the_form() {
        for bad in [
            "",
            "vf-",
            "0000-03-10-1",
            "vf-0000-03-10",
            "vf-0000-03-10-1-2",
            "vf-0000-3B-10-1",
            "vf-000g-03-10-1",
            "vf-0000-03-10-9",
        ] {
            let e = parse_device_name(bad).unwrap_err();
            assert_eq!(e.field, "device", "{bad}");
            assert!(e.to_string().contains("vf-DDDD-BB-DD-F"), "{e}");
        }
    }

    #[test]
    fn env_names_follow_multus() {
        assert_eq!(
            pcidevice_env("vfpool.io/gold-1"),
            "PCIDEVICE_VFPOOL_IO_GOLD_1"
        );
        assert_eq!(
            pcidevice_env("intel.com/sriov_net"),
            "PCIDEVICE_INTEL_COM_SRIOV_NET"
        );
    }
}
