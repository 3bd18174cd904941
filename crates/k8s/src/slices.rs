//! The DRA driver's ResourceSlices (`resource.k8s.io/v1`, Kubernetes 1.34): one pool per
//! node, named after the node, with a device per VF that can be allocated now.
//!
//! [`build_slices`] is a pure function from the engine's views (the host, the pools, the
//! leases) to the slices; [`run_slice_publisher`] keeps the API server's set equal to it,
//! publishing again on every bump of the daemon's change counter.
//!
//! What is published, and what is left out:
//! - a VF whose health is not [`Health::Healthy`] (its PF down or without carrier, a VF
//!   driver bound without its netdev) is left out: device taints (`spec.devices[].taints`)
//!   are alpha in 1.34 (feature gate `DRADeviceTaints`, off by default), so a GA cluster
//!   would drop them and allocate the VF anyway;
//! - a VF leased to anyone but a DRA claim (a VM, a CNI attachment, the device plugin, the
//!   CLI) is left out, since the scheduler knows nothing of those leases; a VF leased to a
//!   claim (owner starting with [`SliceConfig::claim_owner_prefix`]) stays, since the
//!   scheduler tracks that allocation itself and the claim refers to the device;
//! - before `host apply` has run since boot, nothing: the node's slices are deleted.
//!
//! The device names are [`device_name`]'s, by which the DRA plugin maps a claim back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::v1::{
    Device, DeviceAttribute, ResourcePool, ResourceSlice, ResourceSliceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tokio::sync::watch;
use vfpool_engine::hostview::Health;
use vfpool_engine::{EngineError, Host, HostView, Lease, Pool, chain};
use vfpool_host::Sysfs;
use vfpool_model::{InvalidValue, PciAddr};

use crate::dra::DRA_OWNER_PREFIX;
use crate::names::device_name;

/// The driver name when none is given.
pub const DEFAULT_DRIVER: &str = "vfpool.io";
/// At most this many devices in one ResourceSlice (`resource.k8s.io/v1`'s
/// `ResourceSliceMaxDevices`); a pool with more is split over several slices.
pub const MAX_DEVICES_PER_SLICE: usize = 128;
/// The standard attribute for a PCI device's root complex (`pci<domain>:<bus>`), defined in
/// Kubernetes 1.34 (`k8s.io/dynamic-resource-allocation/deviceattribute`).
pub const PCIE_ROOT_ATTRIBUTE: &str = "resource.kubernetes.io/pcieRoot";

/// Errors of ResourceSlice publication.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("read the host and the ledger")]
    ReadHost(#[source] EngineError),
    #[error("the host read did not finish")]
    ReadHostTask(#[source] tokio::task::JoinError),
    #[error("get node '{node}'")]
    GetNode {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("node '{node}' has no uid")]
    NodeWithoutUid { node: String },
    #[error("list the ResourceSlices of node '{node}'")]
    List {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("{verb} ResourceSlice '{name}'")]
    Write {
        verb: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// How a failed publication is tried again: after `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// What the publisher is told.
#[derive(Debug, Clone)]
pub struct SliceConfig {
    /// The DRA driver name (`spec.driver`, and the domain of the attributes).
    pub driver: String,
    /// This node's name (`spec.nodeName`, and the pool's name).
    pub node_name: String,
    /// Leases whose owner starts with this are DRA claims' (their VFs stay published):
    /// the DRA kubelet plugin's [`DRA_OWNER_PREFIX`] unless changed.
    pub claim_owner_prefix: String,
    pub backoff: Backoff,
    /// How long after a publication the API server's set is checked again with no change
    /// on the host (a slice deleted or edited by someone else is put back).
    pub resync: Duration,
}

impl SliceConfig {
    /// A checked configuration for driver `driver` on node `node_name`.
    pub fn new(driver: &str, node_name: &str) -> Result<Self, InvalidValue> {
        let cfg = Self {
            driver: driver.to_owned(),
            node_name: node_name.to_owned(),
            claim_owner_prefix: DRA_OWNER_PREFIX.to_owned(),
            backoff: Backoff::default(),
            resync: Duration::from_secs(300),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the driver name (a lower-case DNS subdomain of at most 63 characters, as
    /// `spec.driver` and an attribute's domain must be) and the node name (a DNS subdomain
    /// short enough for the slices' names).
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if !(self.driver.len() <= 63 && is_dns_subdomain(&self.driver)) {
            return Err(InvalidValue::new(
                "driver",
                &self.driver,
                "a lower-case DNS subdomain of at most 63 characters, like vfpool.io",
            ));
        }
        // `NODE-DRIVER-N`: room for up to 9999 slices in 253 characters.
        let max = 253 - self.driver.len() - 6;
        if !(self.node_name.len() <= max && is_dns_subdomain(&self.node_name)) {
            return Err(InvalidValue::new(
                "node-name",
                &self.node_name,
                format!("a node name (a lower-case DNS subdomain) of at most {max} characters"),
            ));
        }
        if self.resync.is_zero() {
            return Err(InvalidValue::new("resync", "0s", "a non-zero interval"));
        }
        if self.backoff.initial.is_zero() || self.backoff.max < self.backoff.initial {
            return Err(InvalidValue::new(
                "backoff",
                format!("{:?}..{:?}", self.backoff.initial, self.backoff.max),
                "a non-zero initial delay no longer than the maximum",
            ));
        }
        Ok(())
    }

    /// The name of the node's `i`th slice.
    pub fn slice_name(&self, i: usize) -> String {
        format!("{}-{}-{i}", self.node_name, self.driver)
    }

    fn attr(&self, name: &str) -> String {
        format!("{}/{name}", self.driver)
    }
}

/// RFC 1123 subdomain: dot-separated labels of `a-z 0-9 -`, each starting and ending with
/// a letter or digit, 253 characters at most.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// What the slices are built from: the engine's views, read together.
#[derive(Debug, Clone, Copy)]
pub struct SliceInput<'a> {
    pub host: &'a HostView,
    pub pools: &'a [Pool],
    pub leases: &'a [Lease],
    /// Each PF's PCIe root complex (`pci0000:00`), from [`pcie_roots`].
    pub pcie_roots: &'a BTreeMap<PciAddr, String>,
}

/// The devices to publish, by PCI address: every healthy VF not leased outside DRA.
pub fn devices(cfg: &SliceConfig, input: &SliceInput<'_>) -> Vec<Device> {
    let members = vfpool_engine::pool::membership(input.pools, input.host);
    let held: BTreeSet<PciAddr> = input
        .leases
        .iter()
        .filter(|l| !l.owner.starts_with(&cfg.claim_owner_prefix))
        .map(|l| l.vf_pci)
        .collect();
    let mut out = Vec::new();
    for (pci, slot) in &input.host.vfs {
        if slot.health != Health::Healthy || held.contains(pci) {
            continue;
        }
        let mut attrs = BTreeMap::new();
        let mut string = |name: String, v: String| {
            attrs.insert(
                name,
                DeviceAttribute {
                    string: Some(v),
                    ..Default::default()
                },
            );
        };
        string(cfg.attr("pciAddress"), pci.to_string());
        string(cfg.attr("pfName"), slot.pf.name.clone());
        string(cfg.attr("pfPciAddress"), slot.pf_pci.to_string());
        string(cfg.attr("vendor"), format!("{:04x}", slot.pf.vendor));
        if let Some(d) = slot.pf.vf_device {
            string(cfg.attr("deviceId"), format!("{d:04x}"));
        }
        if let Some(r) = input.pcie_roots.get(&slot.pf_pci) {
            string(PCIE_ROOT_ATTRIBUTE.to_owned(), r.clone());
        }
        if let Some(t) = &slot.pf.link_type {
            string(cfg.attr("linkType"), t.clone());
        }
        if let Some(p) = members.get(pci) {
            string(cfg.attr("pool"), (*p).to_owned());
        }
        if let Some(d) = &slot.driver {
            string(cfg.attr("driver"), d.clone());
        }
        let mut int = |name: String, v: i64| {
            attrs.insert(
                name,
                DeviceAttribute {
                    int: Some(v),
                    ..Default::default()
                },
            );
        };
        int(cfg.attr("vfIndex"), i64::from(slot.index));
        if let Some(n) = slot.numa {
            int(cfg.attr("numaNode"), i64::from(n));
        }
        out.push(Device {
            name: device_name(*pci),
            attributes: Some(attrs),
            ..Default::default()
        });
    }
    out
}

/// The node's slices for `devices` at pool generation `generation`: chunks of
/// [`MAX_DEVICES_PER_SLICE`], each saying how many slices the pool has; one empty slice
/// when there is no device (the pool exists and is empty). `node_uid` makes the Node
/// their owner, so that they go with it.
pub fn build_slices(
    cfg: &SliceConfig,
    devices: &[Device],
    generation: i64,
    node_uid: Option<&str>,
) -> Vec<ResourceSlice> {
    let chunks: Vec<&[Device]> = if devices.is_empty() {
        vec![&[]]
    } else {
        devices.chunks(MAX_DEVICES_PER_SLICE).collect()
    };
    let count = chunks.len() as i64;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| ResourceSlice {
            metadata: ObjectMeta {
                name: Some(cfg.slice_name(i)),
                owner_references: node_uid.map(|uid| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: cfg.node_name.clone(),
                        uid: uid.to_owned(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: ResourceSliceSpec {
                driver: cfg.driver.clone(),
                node_name: Some(cfg.node_name.clone()),
                pool: ResourcePool {
                    name: cfg.node_name.clone(),
                    generation,
                    resource_slice_count: count,
                },
                devices: Some(chunk.to_vec()),
                ..Default::default()
            },
        })
        .collect()
}

/// Each SR-IOV PF's PCIe root complex, `pci<domain>:<bus>`: the first directory under
/// `devices/` that its `bus/pci/devices/ADDR` link resolves into (the kernel's layout,
/// which the simulated host keeps). A PF whose link does not resolve is left out (its
/// VFs then have no `pcieRoot` attribute).
pub fn pcie_roots(fs: &Sysfs, host: &HostView) -> BTreeMap<PciAddr, String> {
    let mut out = BTreeMap::new();
    for pf in &host.pfs {
        let link = fs.path(format!("bus/pci/devices/{}", pf.pci));
        let Ok(real) = std::fs::canonicalize(&link) else {
            tracing::debug!(pf = %pf.pci, "no PCIe root: the device link does not resolve");
            continue;
        };
        let root = real
            .components()
            .filter_map(|c| c.as_os_str().to_str())
            .find(|c| is_root_complex(c));
        if let Some(r) = root {
            out.insert(pf.pci, r.to_owned());
        }
    }
    out
}

/// `pci0000:00`: `pci`, hex digits, `:`, two hex digits.
fn is_root_complex(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("pci") else {
        return false;
    };
    let Some((dom, bus)) = rest.split_once(':') else {
        return false;
    };
    !dom.is_empty()
        && bus.len() == 2
        && dom
            .bytes()
            .chain(bus.bytes())
            .all(|b| b.is_ascii_hexdigit())
}

/// Reads what the slices are built from and builds the devices: `None` when `host apply`
/// has not run since boot, or `gate` says no.
fn read_devices(
    cfg: &SliceConfig,
    host: &Host,
    gate: &(dyn Fn() -> bool + Send + Sync),
) -> Result<Option<Vec<Device>>, SliceError> {
    let mut engine = host.engine().map_err(SliceError::ReadHost)?;
    if !engine.applied_since_boot().map_err(SliceError::ReadHost)? || !gate() {
        return Ok(None);
    }
    let view = engine.host().map_err(SliceError::ReadHost)?;
    let (pools, leases) = engine
        .ledger()
        .read(|tx| Ok((tx.pools()?, tx.leases()?)))
        .map_err(SliceError::ReadHost)?;
    let roots = pcie_roots(&host.fs, &view);
    Ok(Some(devices(
        cfg,
        &SliceInput {
            host: &view,
            pools: &pools,
            leases: &leases,
            pcie_roots: &roots,
        },
    )))
}

/// What one publication did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    /// The pool generation now on the API server (0 when nothing is published).
    pub generation: i64,
    pub created: usize,
    pub replaced: usize,
    pub deleted: usize,
}

/// Makes the API server hold exactly the node's slices for `devices` (`None`: none at
/// all). Unchanged slices are not written; any change writes every slice with the next
/// generation, then deletes the slices no longer wanted.
pub async fn publish(
    cfg: &SliceConfig,
    client: &kube::Client,
    devices: Option<&[Device]>,
) -> Result<Published, SliceError> {
    let api: Api<ResourceSlice> = Api::all(client.clone());
    let fields = format!("spec.nodeName={},spec.driver={}", cfg.node_name, cfg.driver);
    let existing = api
        .list(&ListParams::default().fields(&fields))
        .await
        .map_err(|source| SliceError::List {
            node: cfg.node_name.clone(),
            source,
        })?
        .items;
    let mut by_name: BTreeMap<String, ResourceSlice> = existing
        .into_iter()
        .filter_map(|s| Some((s.metadata.name.clone()?, s)))
        .collect();
    let current = by_name
        .values()
        .map(|s| s.spec.pool.generation)
        .max()
        .unwrap_or(0);
    let mut done = Published {
        generation: current,
        ..Default::default()
    };
    let mut wanted = Vec::new();
    if let Some(devices) = devices {
        let uid = node_uid(cfg, client).await?;
        let same = build_slices(cfg, devices, current, Some(&uid));
        let unchanged = same.len() == by_name.len()
            && same.iter().all(|s| {
                s.metadata
                    .name
                    .as_ref()
                    .and_then(|n| by_name.get(n))
                    .is_some_and(|old| {
                        old.spec == s.spec
                            && old.metadata.owner_references == s.metadata.owner_references
                    })
            });
        if unchanged {
            return Ok(done);
        }
        done.generation = current + 1;
        wanted = build_slices(cfg, devices, done.generation, Some(&uid));
    }
    let pp = PostParams::default();
    for mut s in wanted {
        let name = s.metadata.name.clone().unwrap_or_default();
        match by_name.remove(&name) {
            Some(old) => {
                s.metadata.resource_version = old.metadata.resource_version;
                api.replace(&name, &pp, &s)
                    .await
                    .map_err(|source| SliceError::Write {
                        verb: "replace",
                        name: name.clone(),
                        source,
                    })?;
                done.replaced += 1;
            }
            None => {
                api.create(&pp, &s)
                    .await
                    .map_err(|source| SliceError::Write {
                        verb: "create",
                        name: name.clone(),
                        source,
                    })?;
                done.created += 1;
            }
        }
    }
    for name in by_name.keys() {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => done.deleted += 1,
            // Gone already: what was wanted.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(SliceError::Write {
                    verb: "delete",
                    name: name.clone(),
                    source,
                });
            }
        }
    }
    if devices.is_none() {
        done.generation = 0;
    }
    Ok(done)
}

async fn node_uid(cfg: &SliceConfig, client: &kube::Client) -> Result<String, SliceError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes
        .get(&cfg.node_name)
        .await
        .map_err(|source| SliceError::GetNode {
            node: cfg.node_name.clone(),
            source,
        })?;
    node.metadata.uid.ok_or_else(|| SliceError::NodeWithoutUid {
        node: cfg.node_name.clone(),
    })
}

/// Publishes the node's slices, then again on every bump of `changes` (the daemon bumps it
/// on any host or ledger change) and every [`SliceConfig::resync`], until its sender is
/// dropped. A failed publication (the
/// API server unreachable, a 5xx, a conflict with another writer, a host read that fails)
/// is logged and tried again after [`SliceConfig::backoff`], or at once on the next bump.
/// (A client from `kube::Config` with `default_retry` also retries 429, 503 and 504 inside
/// each request.)
///
/// Until `host apply` has run since boot ([`vfpool_engine::Engine::applied_since_boot`]),
/// the node's slices are deleted and none published.
pub async fn run_slice_publisher(
    cfg: SliceConfig,
    host: Arc<Host>,
    client: kube::Client,
    changes: watch::Receiver<u64>,
) -> Result<(), SliceError> {
    run_slice_publisher_gated(cfg, host, client, changes, Arc::new(|| true)).await
}

/// [`run_slice_publisher`] with one more condition for publishing: `gate` (called on the
/// blocking pool before each publication; false: publish nothing, as before `host apply`).
pub async fn run_slice_publisher_gated(
    cfg: SliceConfig,
    host: Arc<Host>,
    client: kube::Client,
    mut changes: watch::Receiver<u64>,
    gate: Arc<dyn Fn() -> bool + Send + Sync>,
) -> Result<(), SliceError> {
    cfg.validate()?;
    let cfg = Arc::new(cfg);
    let mut delay = cfg.backoff.initial;
    loop {
        let seen = *changes.borrow_and_update();
        let result = {
            let (cfg2, host, gate) = (cfg.clone(), host.clone(), gate.clone());
            match tokio::task::spawn_blocking(move || read_devices(&cfg2, &host, &*gate)).await {
                Ok(Ok(devices)) => publish(&cfg, &client, devices.as_deref()).await,
                Ok(Err(e)) => Err(e),
                Err(e) => Err(SliceError::ReadHostTask(e)),
            }
        };
        match result {
            Ok(p) => {
                delay = cfg.backoff.initial;
                if p.created + p.replaced + p.deleted == 0 {
                    tracing::debug!(
                        change = seen,
                        generation = p.generation,
                        "ResourceSlices current"
                    );
                } else {
                    tracing::info!(
                        change = seen,
                        generation = p.generation,
                        created = p.created,
                        replaced = p.replaced,
                        deleted = p.deleted,
                        "ResourceSlices published"
                    );
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return Ok(()) },
                    () = tokio::time::sleep(cfg.resync) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %chain(&e), retry_in = ?delay, "ResourceSlice publication failed");
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return Ok(()) },
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(cfg.backoff.max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use vfpool_engine::{AcquireRequest, Engine, HostConfig, Policy, SplitRequest};

    use super::*;

    struct Demo {
        _dir: tempfile::TempDir,
        host: Host,
    }

    impl Demo {
        /// The demo host, `host apply` run.
        fn new() -> Self {
            let demo = Self::before_apply();
            demo.engine()
                .apply_boot(None, Duration::from_secs(5), false)
                .unwrap();
            demo
        }

        fn before_apply() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let host = Host::open(&HostConfig {
                demo: true,
                state: Some(dir.path().to_owned()),
                ..Default::default()
            })
            .unwrap();
            Demo { _dir: dir, host }
        }

        fn engine(&self) -> Engine {
            self.host.engine().unwrap()
        }

        fn split(&self, nic: &str, vfs: u32) {
            let req = SplitRequest {
                nics: vec![nic.into()],
                vfs: vfs.to_string(),
                autoprobe: None,
                timeout: Duration::from_secs(5),
                force: false,
                keep_link: false,
            };
            let out = self.engine().split_nics(&req, &|_, _, _| {}).unwrap();
            assert!(out.failed.is_empty(), "{:?}", out.failed);
        }

        fn devices(&self, cfg: &SliceConfig) -> BTreeMap<String, Device> {
            let cfg = cfg.clone();
            read_devices(&cfg, &self.host, &|| true)
                .unwrap()
                .unwrap()
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect()
        }
    }

    fn cfg() -> SliceConfig {
        SliceConfig::new(DEFAULT_DRIVER, "worker-1").unwrap()
    }

    fn attr<'a>(d: &'a Device, name: &str) -> &'a DeviceAttribute {
        let attrs = d.attributes.as_ref().unwrap();
        attrs
            .get(name)
            .unwrap_or_else(|| panic!("{} has no {name}: {attrs:?}", d.name))
    }

    fn s(v: &str) -> DeviceAttribute {
        DeviceAttribute {
            string: Some(v.into()),
            ..Default::default()
        }
    }

    fn i(v: i64) -> DeviceAttribute {
        DeviceAttribute {
            int: Some(v),
            ..Default::default()
        }
    }

    #[test]
    fn a_device_per_vf_with_typed_attributes() {
        let demo = Demo::new();
        demo.split("eno49", 4);
        demo.split("ens1f0np0", 2);
        let mut e = demo.engine();
        e.pool_create("web", vec!["eno49#0-1".parse().unwrap()], Policy::FirstFit)
            .unwrap();
        let view = e.host().unwrap();
        let vf0 = view
            .vfs
            .values()
            .find(|v| v.pf.name == "eno49" && v.index == 0)
            .unwrap()
            .pci;
        let devs = demo.devices(&cfg());
        assert_eq!(devs.len(), 6, "{:?}", devs.keys());
        let d = &devs[&device_name(vf0)];
        let want: BTreeMap<String, DeviceAttribute> = [
            ("vfpool.io/pciAddress", s(&vf0.to_string())),
            ("vfpool.io/pfName", s("eno49")),
            ("vfpool.io/pfPciAddress", s("0000:03:00.0")),
            ("vfpool.io/vendor", s("8086")),
            ("vfpool.io/deviceId", s("1520")),
            ("vfpool.io/vfIndex", i(0)),
            ("vfpool.io/numaNode", i(0)),
            ("resource.kubernetes.io/pcieRoot", s("pci0000:00")),
            ("vfpool.io/linkType", s("ether")),
            ("vfpool.io/pool", s("web")),
            ("vfpool.io/driver", s("igbvf")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(d.attributes.as_ref().unwrap(), &want);
        // VF 2 is in no pool: no pool attribute.
        let vf2 = view
            .vfs
            .values()
            .find(|v| v.pf.name == "eno49" && v.index == 2)
            .unwrap()
            .pci;
        assert!(
            !devs[&device_name(vf2)]
                .attributes
                .as_ref()
                .unwrap()
                .contains_key("vfpool.io/pool")
        );
        // The ConnectX's VFs: its own device id, NUMA node and driver.
        let cx = devs
            .values()
            .find(|d| attr(d, "vfpool.io/pfName") == &s("ens1f0np0"))
            .unwrap();
        assert_eq!(attr(cx, "vfpool.io/deviceId"), &s("1018"));
        assert_eq!(attr(cx, "vfpool.io/numaNode"), &i(1));
        assert_eq!(attr(cx, "vfpool.io/driver"), &s("mlx5_core"));
        // Another driver name is the attributes' domain.
        let other = SliceConfig::new("sriov.example.com", "worker-1").unwrap();
        let devs = demo.devices(&other);
        assert!(
            devs[&device_name(vf0)]
                .attributes
                .as_ref()
                .unwrap()
                .contains_key("sriov.example.com/pfName")
        );
    }

    #[test]
    fn leased_outside_dra_and_unhealthy_vfs_are_left_out() {
        let demo = Demo::new();
        demo.split("eno49", 4);
        demo.split("eno50", 2);
        let mut e = demo.engine();
        e.pool_create("web", vec!["eno49".parse().unwrap()], Policy::FirstFit)
            .unwrap();
        let cli = e.acquire(&AcquireRequest::new("web", "manual-1")).unwrap();
        let claim = e
            .acquire(&AcquireRequest::new(
                "web",
                &crate::dra::dra_owner("claim-uid-1", "vf-0000-03-10-1"),
            ))
            .unwrap();
        let devs = demo.devices(&cfg());
        assert!(!devs.contains_key(&device_name(cli.vf_pci)));
        assert!(devs.contains_key(&device_name(claim.vf_pci)));
        assert_eq!(devs.len(), 2 + 4 - 1);
        // eno50 down: its VFs are unhealthy and go.
        demo.host.netops().unwrap().set_up("eno50", false).unwrap();
        let devs = demo.devices(&cfg());
        assert_eq!(devs.len(), 4 - 1, "{:?}", devs.keys());
        assert!(
            devs.values()
                .all(|d| attr(d, "vfpool.io/pfName") == &s("eno49"))
        );
        // The gate closed: nothing at all.
        assert!(
            read_devices(&cfg(), &demo.host, &|| false)
                .unwrap()
                .is_none()
        );
        // No `host apply` since boot: nothing at all either.
        let fresh = Demo::before_apply();
        fresh.split("eno49", 2);
        assert!(
            read_devices(&cfg(), &fresh.host, &|| true)
                .unwrap()
                .is_none()
        );
        fresh
            .engine()
            .apply_boot(None, Duration::from_secs(5), false)
            .unwrap();
        assert_eq!(fresh.devices(&cfg()).len(), 2);
    }

    #[test]
    fn over_128_devices_the_pool_is_split_into_slices() {
        let demo = Demo::new();
        demo.split("ens1f0np0", 127);
        demo.split("ens1f1np1", 127);
        let cfg = cfg();
        let devs: Vec<Device> = demo.devices(&cfg).into_values().collect();
        assert_eq!(devs.len(), 254);
        let slices = build_slices(&cfg, &devs, 7, Some("uid-1"));
        assert_eq!(slices.len(), 2);
        let sizes: Vec<usize> = slices
            .iter()
            .map(|s| s.spec.devices.as_ref().unwrap().len())
            .collect();
        assert_eq!(sizes, [128, 126]);
        for (n, s) in slices.iter().enumerate() {
            assert_eq!(
                s.metadata.name.as_deref(),
                Some(&*format!("worker-1-vfpool.io-{n}"))
            );
            assert_eq!(s.spec.driver, "vfpool.io");
            assert_eq!(s.spec.node_name.as_deref(), Some("worker-1"));
            assert_eq!(
                s.spec.pool,
                ResourcePool {
                    name: "worker-1".into(),
                    generation: 7,
                    resource_slice_count: 2
                }
            );
            let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (&*owner.kind, &*owner.name, &*owner.uid),
                ("Node", "worker-1", "uid-1")
            );
        }
        // Every device once, across the slices.
        let names: BTreeSet<&str> = slices
            .iter()
            .flat_map(|s| s.spec.devices.as_ref().unwrap())
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(names.len(), 254);
        // No device at all: one empty slice says the pool is empty.
        let empty = build_slices(&cfg, &[], 1, None);
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].spec.pool.resource_slice_count, 1);
        assert_eq!(empty[0].spec.devices.as_deref(), Some(&[][..]));
    }

    #[test]
    fn bad_driver_and_node_names_are_one_line_errors() {
        let e = SliceConfig::new("Vfpool.io", "n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid driver 'Vfpool.io': a lower-case DNS subdomain of at most 63 characters, like vfpool.io"
        );
        for bad in ["", "vfpool_io", "-vfpool.io", "vfpool..io", &"a".repeat(64)] {
            let e = SliceConfig::new(bad, "n").unwrap_err();
            assert_eq!(e.field, "driver", "{bad}");
        }
        let e = SliceConfig::new("vfpool.io", "Worker 1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid node-name 'Worker 1': a node name (a lower-case DNS subdomain) of at most 238 characters"
        );
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(60),
            "b".repeat(60),
            "c".repeat(60),
            "d".repeat(60)
        );
        assert_eq!(
            SliceConfig::new("vfpool.io", &long).unwrap_err().field,
            "node-name"
        );
        let mut c = cfg();
        c.backoff.initial = Duration::ZERO;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid backoff '0ns..30s': a non-zero initial delay no longer than the maximum"
        );
        let mut c = cfg();
        c.resync = Duration::ZERO;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid resync '0s': a non-zero interval"
        );
        assert!(SliceConfig::new("vfpool.io", "node-1.example.com").is_ok());
    }

    #[test]
    fn root_complex_names() {
        assert!(is_root_complex("pci0000:00"));
        assert!(is_root_complex("pci10000:3a"));
        for bad in ["pci0000:0", "0000:00:01.0", "pcix:00", "pci0000"] {
            assert!(!is_root_complex(bad), "{bad}");
        }
    }
}
