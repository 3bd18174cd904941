//! The Kubernetes gRPC contracts, generated at build time from `proto/` (see `build.rs`).
//! Clients and servers both: the plugins serve, the tests' kubelet stand-in calls.

#![allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]

/// Device plugin API `v1beta1` (`Registration` on kubelet.sock, `DevicePlugin`).
pub mod deviceplugin {
    tonic::include_proto!("v1beta1");
}

/// Kubelet plugin registration `pluginregistration/v1` (`Registration`: GetInfo,
/// NotifyRegistrationStatus).
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}

/// The kubelet's pod resources API `v1` (`PodResourcesLister.List`): which pod holds
/// which device, for freeing reservations whose pod is gone.
pub mod podresources {
    tonic::include_proto!("v1");
}

/// DRA kubelet plugin `k8s.io.kubelet.pkg.apis.dra.v1` (`DRAPlugin`).
pub mod dra {
    tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1");
}
