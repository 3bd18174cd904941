//! CDI (Container Device Interface) spec files for prepared claims: one file per claim in
//! the CDI directory, one CDI device per VF, which the container runtime applies when the
//! kubelet hands it the device ids NodePrepareResources returned.
//!
//! A vfio-pci VF gets its device nodes (`/dev/vfio/vfio` and `/dev/vfio/GROUP`); every VF
//! gets its PCI address in the environment (`VFPOOL_PCI_<DEVICE>`, and for vfio-pci
//! `VFPOOL_VFIO_<DEVICE>` with its group's node) for the workload and the CNI plugin.

use std::path::{Path, PathBuf};

use serde::Serialize;
use vfpool_model::PciAddr;

use crate::K8sError;

/// The CDI specification version written (device nodes and env: in every version).
pub const CDI_VERSION: &str = "0.6.0";

/// One VF of a prepared claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdiVf {
    /// The ResourceSlice device name (`vf-0000-03-10-1`).
    pub device: String,
    pub pci: PciAddr,
    /// The IOMMU group when the VF is bound to vfio-pci.
    pub vfio_group: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec<'a> {
    cdi_version: &'static str,
    kind: String,
    devices: Vec<Device<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Device<'a> {
    name: String,
    container_edits: Edits<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Edits<'a> {
    env: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    device_nodes: Vec<Node<'a>>,
}

#[derive(Serialize)]
struct Node<'a> {
    path: String,
    r#type: &'a str,
    permissions: &'a str,
}

/// The CDI kind of vfpool's devices: `DRIVER/vf`.
pub fn kind(driver: &str) -> String {
    format!("{driver}/vf")
}

/// The CDI device name of `device` in claim `claim_uid` (unique on the node).
pub fn device_id_name(claim_uid: &str, device: &str) -> String {
    format!("{claim_uid}-{device}")
}

/// The fully qualified CDI device id returned to the kubelet: `DRIVER/vf=NAME`.
pub fn device_id(driver: &str, claim_uid: &str, device: &str) -> String {
    format!("{}={}", kind(driver), device_id_name(claim_uid, device))
}

/// The spec file of claim `claim_uid`.
pub fn spec_path(cdi_dir: &Path, driver: &str, claim_uid: &str) -> PathBuf {
    let d: String = driver
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    cdi_dir.join(format!("{d}-{claim_uid}.json"))
}

fn env_suffix(device: &str) -> String {
    device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes claim `claim_uid`'s spec (whole: a temporary file renamed over it).
pub fn write_spec(
    cdi_dir: &Path,
    driver: &str,
    claim_uid: &str,
    vfs: &[CdiVf],
) -> Result<PathBuf, K8sError> {
    let devices = vfs
        .iter()
        .map(|v| {
            let suffix = env_suffix(&v.device);
            let mut env = vec![format!("VFPOOL_PCI_{suffix}={}", v.pci)];
            let mut device_nodes = Vec::new();
            if let Some(g) = &v.vfio_group {
                env.push(format!("VFPOOL_VFIO_{suffix}=/dev/vfio/{g}"));
                for path in ["/dev/vfio/vfio".to_owned(), format!("/dev/vfio/{g}")] {
                    device_nodes.push(Node {
                        path,
                        r#type: "c",
                        permissions: "rw",
                    });
                }
            }
            Device {
                name: device_id_name(claim_uid, &v.device),
                container_edits: Edits { env, device_nodes },
            }
        })
        .collect();
    let spec = Spec {
        cdi_version: CDI_VERSION,
        kind: kind(driver),
        devices,
    };
    let path = spec_path(cdi_dir, driver, claim_uid);
    let io = |what: &'static str, p: &Path| {
        let p = p.to_owned();
        move |source| K8sError::Io {
            what,
            path: p,
            source,
        }
    };
    std::fs::create_dir_all(cdi_dir).map_err(io("create the CDI directory", cdi_dir))?;
    let body = serde_json::to_vec_pretty(&spec).map_err(|e| K8sError::Io {
        what: "render the CDI spec",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, body).map_err(io("write the CDI spec", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("install the CDI spec", &path))?;
    Ok(path)
}

/// Removes claim `claim_uid`'s spec; a missing one is fine.
pub fn remove_spec(cdi_dir: &Path, driver: &str, claim_uid: &str) -> Result<(), K8sError> {
    let path = spec_path(cdi_dir, driver, claim_uid);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(K8sError::Io {
            what: "remove the CDI spec",
            path,
            source,
        }),
    }
}
