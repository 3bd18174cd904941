//! Which kernel drivers vfpool knows: the VF driver each SR-IOV PF driver's VFs get (what
//! `--driver netdevice` binds and what the simulated host probes), and the drivers that
//! bind a VF without giving it a netdev. The one table; the host, the engine and the
//! simulators all read it.

/// PF driver, and the kernel's driver for its VFs (the VF's own PCI id picks it: igb's
/// VFs are igbvf's, i40e's and ice's are iavf's, mlx5_core drives both).
const VF_DRIVERS: [(&str, &str); 10] = [
    ("igb", "igbvf"),
    ("ixgbe", "ixgbevf"),
    ("i40e", "iavf"),
    ("ice", "iavf"),
    ("mlx5_core", "mlx5_core"),
    ("mlx4_core", "mlx4_core"),
    ("bnxt_en", "bnxt_en"),
    ("qede", "qede"),
    ("be2net", "be2net"),
    ("enic", "enic"),
];

/// Drivers that bind a VF without giving it a netdev.
pub const NON_NET_DRIVERS: [&str; 2] = ["vfio-pci", "pci-stub"];

/// The kernel's VF driver for the VFs of a PF driven by `pf_driver`.
pub fn vf_driver_for_pf(pf_driver: &str) -> Option<&'static str> {
    VF_DRIVERS
        .iter()
        .find(|(pf, _)| *pf == pf_driver)
        .map(|(_, vf)| *vf)
}

/// Whether a device bound to `driver` gets a netdev from it (vfio-pci and pci-stub give
/// none).
pub fn gives_netdev(driver: &str) -> bool {
    !NON_NET_DRIVERS.contains(&driver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pf_drivers_map_to_their_vf_drivers() {
        assert_eq!(vf_driver_for_pf("igb"), Some("igbvf"));
        assert_eq!(vf_driver_for_pf("ixgbe"), Some("ixgbevf"));
        assert_eq!(vf_driver_for_pf("ice"), Some("iavf"));
        assert_eq!(vf_driver_for_pf("mlx5_core"), Some("mlx5_core"));
        assert_eq!(vf_driver_for_pf("tg3"), None);
        assert_eq!(vf_driver_for_pf(""), None);
        assert!(gives_netdev("igbvf"));
        assert!(!gives_netdev("vfio-pci") && !gives_netdev("pci-stub"));
    }
}
