//! The attachment's device-info file (Network Plumbing WG "Device Information" spec 1.1.0),
//! from which Multus fills the pod's `network-status` annotation (`device-info`) and
//! KubeVirt learns which VF a pod got.
//!
//! Where: Multus reads exactly the file it passed to the plugin as
//! `runtimeConfig.CNIDeviceInfoFile` (a plugin gets it by declaring
//! `"capabilities": {"CNIDeviceInfoFile": true}`; Multus passes one when the attachment has
//! a device id). Multus names it `/var/run/k8s.cni.cncf.io/devinfo/cni/` +
//! `<namespace>-<network>-<containerID>_<ifname>` (`/` in the name turned into `-`, no
//! extension; network-attachment-definition-client `GetCNIDeviceInfoPath`). The `dp/`
//! directory beside it is the device plugin's (`<resource>-<deviceID>-device.json`).
//!
//! Written atomically (a temporary file in the same directory, then `rename`), so Multus
//! never reads half a file; a file already there (Multus copies the device plugin's there
//! first) is replaced. Removed idempotently.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use vfpool_model::PciAddr;

use crate::spec::CniError;

/// Where Multus puts the CNI device-info files.
pub const DEFAULT_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo/cni";

/// The device-info spec version written.
pub const DEVICE_INFO_VERSION: &str = "1.1.0";

/// Multus's file name for an attachment: `<network>-<containerID>_<ifname>`, every `/`
/// turned into `-` (Multus's network name is `namespace/name`).
pub fn file_name(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{network}-{container_id}_{ifname}").replace('/', "-")
}

/// A PCI device as the device-info spec describes it (type `pci`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDeviceInfo {
    /// The VF.
    pub pci_address: PciAddr,
    /// Its PF.
    pub pf_pci_address: Option<PciAddr>,
    /// An RDMA device, when the VF has one.
    pub rdma_device: Option<String>,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    version: &'static str,
    pci: WirePci<'a>,
}

#[derive(Serialize)]
struct WirePci<'a> {
    #[serde(rename = "pci-address")]
    pci_address: String,
    #[serde(rename = "rdma-device", skip_serializing_if = "Option::is_none")]
    rdma_device: Option<&'a str>,
    #[serde(rename = "pf-pci-address", skip_serializing_if = "Option::is_none")]
    pf_pci_address: Option<String>,
}

impl PciDeviceInfo {
    /// The file's JSON: `{"type": "pci", "version": "1.1.0", "pci": {"pci-address": ...,
    /// "pf-pci-address": ...}}` (no `vhost-net`: the VF is a kernel netdev or vfio).
    pub fn to_json(&self) -> String {
        let w = Wire {
            kind: "pci",
            version: DEVICE_INFO_VERSION,
            pci: WirePci {
                pci_address: self.pci_address.to_string(),
                rdma_device: self.rdma_device.as_deref(),
                pf_pci_address: self.pf_pci_address.map(|p| p.to_string()),
            },
        };
        serde_json::to_string(&w).unwrap_or_default()
    }
}

/// Writes `info` to `path` atomically, creating its directory. Code 5 naming the path.
pub fn write(path: &Path, info: &PciDeviceInfo) -> Result<(), CniError> {
    let err = |what: &str, e: std::io::Error| {
        CniError::io(format!(
            "cannot {what} device-info file {}: {e}",
            path.display()
        ))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => {
            return Err(CniError::io(format!(
                "cannot write device-info file '{}': a path with a directory",
                path.display()
            )));
        }
    };
    std::fs::create_dir_all(dir).map_err(|e| err("create the directory of", e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".devinfo-")
        .tempfile_in(dir)
        .map_err(|e| err("write", e))?;
    tmp.write_all(info.to_json().as_bytes())
        .map_err(|e| err("write", e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| err("write", e))?;
    }
    tmp.persist(path).map_err(|e| err("write", e.error))?;
    tracing::debug!(path = %path.display(), vf = %info.pci_address, "device info written");
    Ok(())
}

/// Removes `path`; `Ok(false)` when it was not there. Code 5 naming the path otherwise.
pub fn remove(path: &Path) -> Result<bool, CniError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CniError::io(format!(
            "cannot remove device-info file {}: {e}",
            path.display()
        ))),
    }
}

/// The default path for an attachment (Multus's directory and name).
pub fn default_path(network: &str, container_id: &str, ifname: &str) -> PathBuf {
    Path::new(DEFAULT_DIR).join(file_name(network, container_id, ifname))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn info() -> PciDeviceInfo {
        PciDeviceInfo {
            pci_address: "0000:03:10.1".parse().unwrap(),
            pf_pci_address: Some("0000:03:00.0".parse().unwrap()),
            rdma_device: None,
        }
    }

    #[test]
    fn json_is_the_specs() {
        let v: serde_json::Value = serde_json::from_str(&info().to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "pci",
                "version": "1.1.0",
                "pci": {"pci-address": "0000:03:10.1", "pf-pci-address": "0000:03:00.0"}
            })
        );
    }

    #[test]
    fn names_follow_multus() {
        assert_eq!(
            file_name("default/sriov-a", "c0ffee", "net1"),
            "default-sriov-a-c0ffee_net1"
        );
        assert_eq!(
            default_path("n", "c", "e"),
            PathBuf::from("/var/run/k8s.cni.cncf.io/devinfo/cni/n-c_e")
        );
    }

    #[test]
    fn write_replaces_atomically_and_remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/n-c_e");
        write(&path, &info()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, info().to_json());
        // Replaced, not refused (Multus may have copied the device plugin's file there).
        let mut other = info();
        other.pf_pci_address = None;
        write(&path, &other).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), other.to_json());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("n-c_e")]);
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        // A directory that is a file.
        let e = write(&file.join("n-c_e"), &info()).unwrap_err();
        assert_eq!(e.code, 5);
        assert!(
            e.msg.contains(&file.join("n-c_e").display().to_string()),
            "{}",
            e.msg
        );
        let e = remove(&file.join("x")).unwrap_err();
        assert_eq!(e.code, 5);
        let e = write(Path::new("relative"), &info()).unwrap_err();
        assert_eq!(e.code, 5);
    }
}
