//! vfpool's view of one host: what NICs it has, their SR-IOV state, and the safe way to
//! change it.
//!
//! Everything reads and writes through [`Sysfs`], rooted at `/sys` on a real host or at a
//! generated tree for the demo and the tests (`vfpool_sim::SimHost`, crate `vfpool-sim`, an
//! [`AttrWriter`] that acts as the kernel does). [`kfile`] reads the kernel's pseudo files.

#![forbid(unsafe_code)]

pub mod check;
pub mod driver;
pub mod inventory;
pub mod iommu;
pub mod kfile;
pub mod manifest;
pub mod pciname;
pub mod persist;
pub mod split;
pub mod sysfs;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use inventory::{Found, Inventory, Nic, Vf};
pub use sysfs::{AttrWriter, HostPaths, KernelWriter, Sysfs};
use vfpool_model::{InvalidValue, PciAddr};

/// Why a NIC name is unknown: not among the host's NICs, or the host has none at all.
fn unknown_nic_why(known: &str) -> String {
    if known.is_empty() {
        "this host has no network PCI function (is sysfs mounted, or is --sysfs-root right?)"
            .to_owned()
    } else {
        format!("no network PCI function has that netdev name or address (known: {known})")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read sysfs at {path}: {reason}")]
    SysfsUnreadable { path: PathBuf, reason: String },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unexpected contents in {path}: '{value}'")]
    Parse { path: PathBuf, value: String },
    #[error("cannot write '{value}' to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    /// `known` lists the host's NICs, comma-separated; empty when it has none.
    #[error("unknown NIC '{nic}': {}", unknown_nic_why(.known))]
    UnknownNic { nic: String, known: String },
    #[error("NIC '{nic}' ({pci}) has no SR-IOV capability (sriov_totalvfs is absent or 0)")]
    NotSriov { nic: String, pci: PciAddr },
    #[error("NIC '{nic}' is a VF ({vf_pci}) of {pf}; a PF is needed")]
    IsVf {
        nic: String,
        vf_pci: PciAddr,
        pf: String,
    },
    #[error("invalid --vfs '{value}' for NIC {nic}: allowed 1..={total} (its sriov_totalvfs)")]
    VfCountOutOfRange {
        nic: String,
        value: String,
        total: u32,
    },
    #[error("setting {nic} to {value} VFs failed: {hint}; the NIC is left at {left_at} VFs")]
    NumVfs {
        nic: String,
        value: u32,
        left_at: u32,
        hint: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{nic}: {ready} of {total} VFs ready after {waited:?} ({missing}); the NIC was set back to 0 VFs"
    )]
    SplitTimeout {
        nic: String,
        ready: u32,
        total: u32,
        waited: Duration,
        missing: String,
    },
    #[error("cannot save {path}")]
    Save {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[cfg(test)]
mod unknown_nic_tests {
    use super::HostError;

    #[test]
    fn an_unknown_nic_names_the_known_ones_or_says_there_are_none() {
        let e = HostError::UnknownNic {
            nic: "eth9".into(),
            known: "eno1, eno49".into(),
        };
        assert_eq!(
            e.to_string(),
            "unknown NIC 'eth9': no network PCI function has that netdev name or address (known: eno1, eno49)"
        );
        let e = HostError::UnknownNic {
            nic: "eth9".into(),
            known: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "unknown NIC 'eth9': this host has no network PCI function (is sysfs mounted, or is --sysfs-root right?)"
        );
    }
}
