//! vfpool on Kubernetes: VFs as DRA devices and as device-plugin resources (issue 14).
//!
//! - [`slices`]: the DRA driver's ResourceSlices (`resource.k8s.io/v1`), built from the
//!   engine's views and kept published on the API server;
//! - [`names`]: the DRA device name of a VF, shared with the kubelet plugin.

#![forbid(unsafe_code)]

pub mod names;
pub mod slices;

pub use names::device_name;
pub use slices::{
    Backoff, DEFAULT_DRIVER, MAX_DEVICES_PER_SLICE, PCIE_ROOT_ATTRIBUTE, Published, SliceConfig,
    SliceError, SliceInput, build_slices, devices, pcie_roots, publish, run_slice_publisher,
};
