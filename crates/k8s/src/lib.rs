//! vfpool on Kubernetes: VFs as device-plugin resources and as DRA devices (issue 14), over
//! the engine's ledger, so that what the kubelet was told survives a crash of the daemon.
//!
//! This crate is the kubelet side (gRPC over unix sockets, tonic and prost; the protos in
//! `proto/` are written from the published contracts). The daemon (`vfpool serve`) calls:
//!
//! - [`run_device_plugins`]`(cfg, host, changes)`: one device plugin (`v1beta1`) per vfpool
//!   pool, resource `RESOURCE_PREFIX/POOL`, served on `KUBELET_ROOT/device-plugins/
//!   vfpool-POOL.sock` and registered with `kubelet.sock`; registered again when the kubelet
//!   makes its socket again (a kubelet restart). ListAndWatch answers from the ledger and
//!   the host (a VF is `Unhealthy` when it is, or when it is leased outside Kubernetes),
//!   again at once whenever `changes` moves. GetPreferredAllocation keeps to one NUMA node,
//!   then the pool's policy. Allocate reserves each VF in the ledger (owner
//!   `deviceplugin/RESOURCE/PCI`, see [`vfpool_engine::DEVICE_PLUGIN_OWNER_PREFIX`]; the
//!   CNI ADD naming it by `deviceID` takes it over) and sets `PCIDEVICE_...` ([`pcidevice_env`])
//!   and its `_INFO` JSON, and `/dev/vfio` device specs for vfio-pci VFs. A reservation
//!   older than [`Config::reservation_grace`] whose VF no pod holds (the kubelet's pod
//!   resources API, `pod-resources/kubelet.sock`) is released; a reservation the CNI took
//!   over is an ordinary pod lease, which `lease gc` frees when its netns is gone.
//! - [`run_dra_plugin`]`(cfg, host, changes, claims)`: the DRA kubelet plugin
//!   (`v1.DRAPlugin`), registered through `KUBELET_ROOT/plugins_registry/DRIVER-reg.sock`
//!   and served on `KUBELET_ROOT/plugins/DRIVER/dra.sock`. NodePrepareResources asks
//!   `claims` ([`ClaimSource`]: the daemon reads the ResourceClaim from the API server)
//!   which devices were allocated with which opaque configuration ([`settings`]), leases
//!   each VF to `dra/CLAIM-UID/DEVICE` with those settings, writes a CDI spec
//!   ([`cdi`]) and returns its device ids; NodeUnprepareResources releases. Devices are
//!   named as in the ResourceSlices: [`device_name`]. [`KubeClaims`] is the `ClaimSource`
//!   over the API server (the ResourceClaim's `status.allocation`, checked by uid).
//!
//! - [`run_slice_publisher`]`(cfg, host, client, changes)`: the DRA driver's ResourceSlices
//!   (`resource.k8s.io/v1`) on the API server through `kube`: one pool per node, a device
//!   per VF that can be allocated now, built by the pure [`slices::devices`] /
//!   [`build_slices`] from the engine's views; published again on every bump of `changes`
//!   ([`slices`]).
//!
//! All three return `Ok(())` when `changes`' sender is dropped (the daemon stops), and none
//! advertises or prepares anything until `host apply` has run since boot
//! ([`vfpool_engine::Engine::applied_since_boot`]). `changes` is a generation counter the
//! daemon bumps whenever the host or the ledger changed. Engine calls run in
//! `spawn_blocking`, each on an engine opened from the [`Host`].

#![forbid(unsafe_code)]

pub mod cdi;
pub mod claims;
pub mod deviceplugin;
pub mod dra;
pub mod names;
pub mod proto;
pub mod settings;
pub mod slices;
pub mod uds;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vfpool_engine::{EngineError, ErrorKind, Host};
use vfpool_model::InvalidValue;

pub use claims::{KubeClaims, allocated_devices};
pub use deviceplugin::run_device_plugins;
pub use dra::{AllocatedDevice, BoxFuture, ClaimRef, ClaimSource, dra_owner, run_dra_plugin};
/// The Kubernetes 1.34 types this one is built with.
pub use k8s_openapi;
/// The `kube` crate this one is built with (the daemon makes its client with it).
pub use kube;
pub use names::{device_name, parse_device_name, pcidevice_env};
pub use slices::{
    Backoff, DEFAULT_DRIVER, MAX_DEVICES_PER_SLICE, PCIE_ROOT_ATTRIBUTE, Published, SliceConfig,
    SliceError, SliceInput, build_slices, pcie_roots, publish, run_slice_publisher,
    run_slice_publisher_gated,
};

/// Where the kubelet is and how vfpool names itself to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The kubelet's directory (`device-plugins/`, `plugins_registry/`, `plugins/` in it).
    pub kubelet_root: PathBuf,
    /// The device plugin's resources are `PREFIX/POOL`.
    pub resource_prefix: String,
    /// The DRA driver's name (the ResourceSlices' `spec.driver`).
    pub driver_name: String,
    /// Where CDI spec files are written.
    pub cdi_dir: PathBuf,
    /// How often the kubelet's sockets are checked (a kubelet restart makes them again),
    /// and the reservations of pods that are gone freed.
    pub poll: Duration,
    /// How old a device plugin's reservation must be before it is freed for want of a pod
    /// holding its VF (the kubelet records a device for its pod only after Allocate).
    pub reservation_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kubelet_root: PathBuf::from("/var/lib/kubelet"),
            resource_prefix: "vfpool.io".to_owned(),
            driver_name: "vfpool.io".to_owned(),
            cdi_dir: PathBuf::from("/var/run/cdi"),
            poll: Duration::from_secs(1),
            reservation_grace: Duration::from_secs(60),
        }
    }
}

/// What failed, naming the socket, file or resource.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("cannot {what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {}", .path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the kubelet did not register resource {resource}")]
    Register {
        resource: String,
        #[source]
        source: tonic::Status,
    },
    #[error("the {what} task failed")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("host apply has not run since boot: nothing is handed out until it has")]
    NotApplied,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
}

impl K8sError {
    /// The gRPC status the kubelet gets for this error: the whole chain as its message.
    pub fn status(&self) -> tonic::Status {
        let msg = chain(self);
        match self {
            K8sError::Invalid(_) => tonic::Status::invalid_argument(msg),
            K8sError::NotApplied => tonic::Status::unavailable(msg),
            K8sError::Engine(e) => match e.kind() {
                ErrorKind::InvalidInput => tonic::Status::invalid_argument(msg),
                ErrorKind::NotFound => tonic::Status::not_found(msg),
                ErrorKind::Conflict => tonic::Status::failed_precondition(msg),
                ErrorKind::Busy => tonic::Status::unavailable(msg),
                ErrorKind::Exhausted => tonic::Status::resource_exhausted(msg),
                _ => tonic::Status::internal(msg),
            },
            _ => tonic::Status::internal(msg),
        }
    }
}

/// An error and its causes on one line (`a: b: c`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Runs `f` (engine calls: synchronous SQLite and sysfs) on the blocking pool.
pub(crate) async fn blocking<T, F>(
    host: &Arc<Host>,
    what: &'static str,
    f: F,
) -> Result<T, K8sError>
where
    T: Send + 'static,
    F: FnOnce(&Host) -> Result<T, K8sError> + Send + 'static,
{
    let h = host.clone();
    tokio::task::spawn_blocking(move || f(&h))
        .await
        .map_err(|source| K8sError::Task { what, source })?
}
