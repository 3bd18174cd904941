//! Names shared by the DRA driver's halves: the ResourceSlices name a device, the kubelet
//! plugin maps a claim's device back to its VF by the same rule.

use vfpool_model::PciAddr;

/// The DRA device name of the VF at `pci`: `vf-` and the address with `:` and `.` turned
/// into `-` (`0000:03:10.0` -> `vf-0000-03-10-0`). Lower-case hex digits and `-` only, at
/// most 22 characters: a DNS label, as `resource.k8s.io/v1` requires of a device name.
pub fn device_name(pci: &PciAddr) -> String {
    format!(
        "vf-{:04x}-{:02x}-{:02x}-{:x}",
        pci.domain, pci.bus, pci.device, pci.function
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_are_the_address_as_a_dns_label() {
        assert_eq!(
            device_name(&PciAddr::new(0, 0x03, 0x10, 0)),
            "vf-0000-03-10-0"
        );
        assert_eq!(
            device_name(&PciAddr::new(0x10000, 0xaf, 0x1f, 7)),
            "vf-10000-af-1f-7"
        );
    }
}
