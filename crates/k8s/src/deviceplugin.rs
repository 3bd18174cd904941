//! The device plugin (`v1beta1`): one plugin per vfpool pool, live on the ledger and the
//! host (see the crate docs for what each call does).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::{Stream, StreamExt, wrappers::WatchStream};
use tonic::{Request, Response, Status};
use vfpool_engine::pool::{Candidate, Policy, VfState, pool_vfs, rank};
use vfpool_engine::{
    AcquireRequest, DEVICE_PLUGIN_OWNER_PREFIX, Host, LeaseState, OwnerKind, ReleaseTarget,
};
use vfpool_model::PciAddr;

use crate::proto::deviceplugin as pb;
use crate::proto::deviceplugin::device_plugin_server::{DevicePlugin, DevicePluginServer};
use crate::proto::deviceplugin::registration_client::RegistrationClient;
use crate::proto::podresources as podres;
use crate::proto::podresources::pod_resources_lister_client::PodResourcesListerClient;
use crate::{Config, K8sError, blocking, pcidevice_env, uds};

/// The device plugin API version registered.
pub const API_VERSION: &str = "v1beta1";
/// What the kubelet's device manager calls a device in working order, and one that is not.
pub const HEALTHY: &str = "Healthy";
pub const UNHEALTHY: &str = "Unhealthy";

/// One VF as a device of its pool's resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceVf {
    pub pci: PciAddr,
    pub pf_pci: PciAddr,
    pub index: u16,
    pub numa: Option<u32>,
    /// Free, or held by a container (a reservation, a pod): the kubelet tracks which.
    /// Unhealthy VFs, and VFs leased to VMs or by hand, are not.
    pub healthy: bool,
    pub driver: Option<String>,
}

/// One pool's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDevices {
    pub policy: Policy,
    pub devices: Vec<DeviceVf>,
}

/// Every pool's devices; `None` until `host apply` has run since boot (nothing is
/// advertised then).
pub fn read_pools(host: &Host) -> Result<Option<BTreeMap<String, PoolDevices>>, K8sError> {
    let mut e = host.engine()?;
    if !e.applied_since_boot()? {
        return Ok(None);
    }
    let hv = e.host()?;
    let (pools, leases) = e.ledger().read(|tx| Ok((tx.pools()?, tx.leases()?)))?;
    let by_vf: HashMap<PciAddr, &vfpool_engine::Lease> =
        leases.iter().map(|l| (l.vf_pci, l)).collect();
    let mut out = BTreeMap::new();
    for p in &pools {
        let devices = pool_vfs(p, &pools, &hv, &leases)
            .into_iter()
            .filter_map(|v| {
                let slot = hv.vfs.get(&v.vf_pci)?;
                let healthy = match v.state {
                    VfState::Free => true,
                    VfState::Unhealthy => false,
                    VfState::Leased => by_vf.get(&v.vf_pci).is_some_and(|l| {
                        l.owner_kind == OwnerKind::Container && l.state != LeaseState::Stale
                    }),
                };
                Some(DeviceVf {
                    pci: v.vf_pci,
                    pf_pci: slot.pf_pci,
                    index: slot.index,
                    numa: v.numa_node,
                    healthy,
                    driver: v.driver,
                })
            })
            .collect();
        out.insert(
            p.name.clone(),
            PoolDevices {
                policy: p.policy,
                devices,
            },
        );
    }
    Ok(Some(out))
}

fn to_pb(d: &DeviceVf) -> pb::Device {
    pb::Device {
        id: d.pci.to_string(),
        health: if d.healthy { HEALTHY } else { UNHEALTHY }.to_owned(),
        topology: d.numa.map(|n| pb::TopologyInfo {
            nodes: vec![pb::NumaNode { id: i64::from(n) }],
        }),
    }
}

fn options() -> pb::DevicePluginOptions {
    pb::DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// The resource name of `pool`.
pub fn resource_name(cfg: &Config, pool: &str) -> String {
    format!("{}/{pool}", cfg.resource_prefix)
}

/// The socket name (in `device-plugins/`) of `pool`'s plugin.
pub fn endpoint(pool: &str) -> String {
    format!("vfpool-{pool}.sock")
}

/// The owner of the reservation Allocate makes of `vf` for `resource`.
pub fn reservation_owner(resource: &str, vf: PciAddr) -> String {
    format!("{DEVICE_PLUGIN_OWNER_PREFIX}{resource}/{vf}")
}

/// One pool's plugin service.
struct Plugin {
    pool: String,
    resource: String,
    host: Arc<Host>,
    devices: watch::Receiver<Vec<DeviceVf>>,
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<pb::ListAndWatchResponse, Status>> + Send>>;

fn parse_id(resource: &str, devs: &[DeviceVf], id: &str) -> Result<DeviceVf, Status> {
    id.parse::<PciAddr>()
        .ok()
        .and_then(|pci| devs.iter().find(|d| d.pci == pci).cloned())
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "invalid device '{id}': a device of {resource} (a VF's PCI address)"
            ))
        })
}

/// The devices to give a container: `must` first, then the rest from `available` on one
/// NUMA node (`must`'s, or the node with the most available), in the pool's policy's order.
pub fn preferred(
    resource: &str,
    devs: &[DeviceVf],
    req: &pb::ContainerPreferredAllocationRequest,
    policy: Policy,
    leased_per_pf: &HashMap<PciAddr, usize>,
) -> Result<Vec<String>, Status> {
    let available = req
        .available_device_i_ds
        .iter()
        .map(|id| parse_id(resource, devs, id))
        .collect::<Result<Vec<_>, _>>()?;
    let must = req
        .must_include_device_i_ds
        .iter()
        .map(|id| parse_id(resource, devs, id))
        .collect::<Result<Vec<_>, _>>()?;
    let size = usize::try_from(req.allocation_size).unwrap_or(0);
    if size < must.len() || size > available.len() {
        return Err(Status::invalid_argument(format!(
            "invalid allocation_size '{}': {}..={} (the devices that must be included, up to those available)",
            req.allocation_size,
            must.len(),
            available.len()
        )));
    }
    let rest: Vec<&DeviceVf> = available
        .iter()
        .filter(|a| !must.iter().any(|m| m.pci == a.pci))
        .collect();
    let numa = must.iter().find_map(|m| m.numa).or_else(|| {
        let mut per: BTreeMap<u32, usize> = BTreeMap::new();
        for d in &rest {
            if let Some(n) = d.numa {
                *per.entry(n).or_default() += 1;
            }
        }
        // The most available; ties to the lowest node.
        per.into_iter()
            .max_by_key(|(n, c)| (*c, std::cmp::Reverse(*n)))
            .map(|(n, _)| n)
    });
    let mut cands: Vec<Candidate> = rest
        .iter()
        .map(|d| Candidate {
            pf_pci: d.pf_pci,
            index: d.index,
            numa: d.numa,
        })
        .collect();
    rank(policy, &mut cands, leased_per_pf, numa);
    let mut out: Vec<String> = must.iter().map(|d| d.pci.to_string()).collect();
    for c in cands.iter().take(size - must.len()) {
        if let Some(d) = rest
            .iter()
            .find(|d| d.pf_pci == c.pf_pci && d.index == c.index)
        {
            out.push(d.pci.to_string());
        }
    }
    Ok(out)
}

/// The IOMMU group of `vf` (`/dev/vfio/GROUP`), from sysfs.
pub(crate) fn iommu_group(host: &Host, vf: PciAddr) -> Result<Option<String>, K8sError> {
    let link = host.fs.path(format!("bus/pci/devices/{vf}/iommu_group"));
    Ok(host
        .fs
        .link_name(&link)
        .map_err(vfpool_engine::EngineError::from)?)
}

/// Reserves `vfs` (each in `pool`) for `resource`: all or nothing. A VF reserved for the
/// resource already keeps its reservation.
fn reserve(host: &Host, pool: &str, resource: &str, vfs: &[PciAddr]) -> Result<(), K8sError> {
    let mut e = host.engine()?;
    let mut made = Vec::new();
    for vf in vfs {
        let owner = reservation_owner(resource, *vf);
        let held = e.ledger().read(|tx| tx.lease_by_owner(&owner))?;
        if held.is_some_and(|l| l.state == LeaseState::Active && l.vf_pci == *vf) {
            continue;
        }
        let mut r = AcquireRequest::new(pool, &owner);
        r.owner_kind = OwnerKind::Container;
        r.vf = Some(*vf);
        match e.acquire(&r) {
            Ok(_) => made.push(owner),
            Err(err) => {
                for o in made {
                    if let Err(u) = e.release(&ReleaseTarget::Owner(o.clone())) {
                        tracing::warn!(owner = %o, error = %crate::chain(&u), "undo: cannot release a reservation");
                    }
                }
                return Err(err.into());
            }
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl DevicePlugin for Plugin {
    type ListAndWatchStream = DeviceStream;

    async fn get_device_plugin_options(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    async fn list_and_watch(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let s = WatchStream::new(self.devices.clone()).map(|devs| {
            Ok(pb::ListAndWatchResponse {
                devices: devs.iter().map(to_pb).collect(),
            })
        });
        Ok(Response::new(Box::pin(s)))
    }

    async fn get_preferred_allocation(
        &self,
        req: Request<pb::PreferredAllocationRequest>,
    ) -> Result<Response<pb::PreferredAllocationResponse>, Status> {
        let devs = self.devices.borrow().clone();
        let pool = self.pool.clone();
        let (policy, leased) = blocking(&self.host, "preferred allocation", move |h| {
            let mut e = h.engine()?;
            let pools = e.ledger().read(|tx| tx.pools())?;
            let policy = pools
                .iter()
                .find(|p| p.name == pool)
                .map_or(Policy::FirstFit, |p| p.policy);
            Ok((policy, e.leased_per_pf()?))
        })
        .await
        .map_err(|e| e.status())?;
        let container_responses = req
            .into_inner()
            .container_requests
            .iter()
            .map(|c| {
                preferred(&self.resource, &devs, c, policy, &leased)
                    .map(|ids| pb::ContainerPreferredAllocationResponse { device_i_ds: ids })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        req: Request<pb::AllocateRequest>,
    ) -> Result<Response<pb::AllocateResponse>, Status> {
        let devs = self.devices.borrow().clone();
        let env = pcidevice_env(&self.resource);
        let mut container_responses = Vec::new();
        for c in req.into_inner().container_requests {
            let picked = c
                .devices_ids
                .iter()
                .map(|id| parse_id(&self.resource, &devs, id))
                .collect::<Result<Vec<_>, _>>()?;
            let (pool, resource) = (self.pool.clone(), self.resource.clone());
            let vfs: Vec<PciAddr> = picked.iter().map(|d| d.pci).collect();
            let vfio: Vec<PciAddr> = picked
                .iter()
                .filter(|d| d.driver.as_deref() == Some("vfio-pci"))
                .map(|d| d.pci)
                .collect();
            let groups = blocking(&self.host, "allocate", move |h| {
                reserve(h, &pool, &resource, &vfs)?;
                vfio.into_iter()
                    .map(|vf| Ok((vf, iommu_group(h, vf)?)))
                    .collect::<Result<HashMap<_, _>, K8sError>>()
            })
            .await
            .map_err(|e| e.status())?;
            let mut info = serde_json::Map::new();
            let mut devices = Vec::new();
            for d in &picked {
                let mut entry = json!({"generic": {"deviceID": d.pci.to_string()}});
                if let Some(Some(g)) = groups.get(&d.pci) {
                    entry["vfio"] =
                        json!({"dev-mount": format!("/dev/vfio/{g}"), "mount": "/dev/vfio/vfio"});
                    if devices.is_empty() {
                        devices.push(dev_spec("/dev/vfio/vfio"));
                    }
                    devices.push(dev_spec(&format!("/dev/vfio/{g}")));
                }
                info.insert(d.pci.to_string(), entry);
            }
            let ids: Vec<String> = picked.iter().map(|d| d.pci.to_string()).collect();
            let mut envs = HashMap::new();
            envs.insert(env.clone(), ids.join(","));
            envs.insert(
                format!("{env}_INFO"),
                serde_json::Value::Object(info).to_string(),
            );
            container_responses.push(pb::ContainerAllocateResponse {
                envs,
                devices,
                ..Default::default()
            });
        }
        Ok(Response::new(pb::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<pb::PreStartContainerRequest>,
    ) -> Result<Response<pb::PreStartContainerResponse>, Status> {
        Ok(Response::new(pb::PreStartContainerResponse {}))
    }
}

fn dev_spec(path: &str) -> pb::DeviceSpec {
    pb::DeviceSpec {
        container_path: path.to_owned(),
        host_path: path.to_owned(),
        permissions: "rw".to_owned(),
    }
}

/// A pool's plugin while it is served.
struct Served {
    socket: PathBuf,
    socket_id: Option<(u64, u64)>,
    devices: watch::Sender<Vec<DeviceVf>>,
    task: JoinHandle<()>,
}

impl Served {
    fn stop(self) {
        self.task.abort();
        // Dropping the sender ends the ListAndWatch streams.
        drop(self.devices);
        if let Err(e) = std::fs::remove_file(&self.socket)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %self.socket.display(), error = %e, "cannot remove the plugin socket");
        }
    }
}

async fn register(kubelet_sock: &Path, resource: &str, endpoint: &str) -> Result<(), K8sError> {
    let ch = uds::connect(kubelet_sock).await?;
    RegistrationClient::new(ch)
        .register(pb::RegisterRequest {
            version: API_VERSION.to_owned(),
            endpoint: endpoint.to_owned(),
            resource_name: resource.to_owned(),
            options: Some(options()),
        })
        .await
        .map_err(|source| K8sError::Register {
            resource: resource.to_owned(),
            source,
        })?;
    Ok(())
}

async fn start(
    cfg: &Config,
    host: &Arc<Host>,
    pool: &str,
    devices: Vec<DeviceVf>,
) -> Result<Served, K8sError> {
    let dir = cfg.kubelet_root.join("device-plugins");
    let ep = endpoint(pool);
    let socket = dir.join(&ep);
    let resource = resource_name(cfg, pool);
    let incoming = uds::bind(&socket)?;
    let socket_id = uds::file_id(&socket);
    let (tx, rx) = watch::channel(devices);
    let svc = Plugin {
        pool: pool.to_owned(),
        resource: resource.clone(),
        host: host.clone(),
        devices: rx,
    };
    let sock = socket.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(DevicePluginServer::new(svc))
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(socket = %sock.display(), error = %crate::chain(&e), "device plugin server stopped");
        }
    });
    let served = Served {
        socket,
        socket_id,
        devices: tx,
        task,
    };
    if let Err(e) = register(&dir.join("kubelet.sock"), &resource, &ep).await {
        served.stop();
        return Err(e);
    }
    tracing::info!(resource, endpoint = ep, "device plugin registered");
    Ok(served)
}

/// Brings the served plugins to `want`: new pools started and registered, gone ones
/// stopped, the others' device lists updated. False when a registration failed (tried
/// again at the next poll).
async fn sync(
    cfg: &Config,
    host: &Arc<Host>,
    served: &mut BTreeMap<String, Served>,
    want: BTreeMap<String, PoolDevices>,
) -> bool {
    let gone: Vec<String> = served
        .keys()
        .filter(|p| !want.contains_key(*p))
        .cloned()
        .collect();
    for p in gone {
        if let Some(s) = served.remove(&p) {
            tracing::info!(pool = p, "pool gone: its device plugin stops");
            s.stop();
        }
    }
    let mut ok = true;
    for (pool, pd) in want {
        match served.get(&pool) {
            Some(s) => {
                s.devices.send_if_modified(|cur| {
                    let changed = *cur != pd.devices;
                    if changed {
                        *cur = pd.devices.clone();
                    }
                    changed
                });
            }
            None => match start(cfg, host, &pool, pd.devices).await {
                Ok(s) => {
                    served.insert(pool, s);
                }
                Err(e) => {
                    tracing::warn!(pool, error = %crate::chain(&e), "cannot start the device plugin; trying again");
                    ok = false;
                }
            },
        }
    }
    ok
}

/// The devices the kubelet has given to pods, as (resource, device id); `None` when its
/// pod resources API cannot be asked (then nothing is freed).
async fn devices_in_pods(cfg: &Config) -> Option<HashSet<(String, String)>> {
    let sock = cfg.kubelet_root.join("pod-resources/kubelet.sock");
    let ch = uds::connect(&sock).await.ok()?;
    let r = match PodResourcesListerClient::new(ch)
        .list(podres::ListPodResourcesRequest {})
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => {
            tracing::warn!(error = %e, "the kubelet's pod resources List failed: no reservation freed");
            return None;
        }
    };
    Some(
        r.pod_resources
            .into_iter()
            .flat_map(|p| p.containers)
            .flat_map(|c| c.devices)
            .flat_map(|d| {
                let res = d.resource_name;
                d.device_ids.into_iter().map(move |id| (res.clone(), id))
            })
            .collect(),
    )
}

/// Releases the reservations (of this prefix's resources) at least `grace` old whose VF no
/// pod holds: the pod they were made for is gone, or never started. Returns the owners.
pub fn free_reservations(
    host: &Host,
    prefix: &str,
    in_pods: &HashSet<(String, String)>,
    grace: std::time::Duration,
) -> Result<Vec<String>, K8sError> {
    let mut e = host.engine()?;
    let leases = e.ledger().read(|tx| tx.leases())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut freed = Vec::new();
    for l in leases {
        let Some((resource, pci)) = l
            .owner
            .strip_prefix(DEVICE_PLUGIN_OWNER_PREFIX)
            .and_then(|r| r.rsplit_once('/'))
        else {
            continue;
        };
        let ours = resource
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'));
        let age = now.saturating_sub(u64::try_from(l.created).unwrap_or(0));
        if !ours
            || l.netns.is_some()
            || l.state != LeaseState::Active
            || age < grace.as_secs()
            || in_pods.contains(&(resource.to_owned(), pci.to_owned()))
        {
            continue;
        }
        match e.release(&ReleaseTarget::Owner(l.owner.clone())) {
            Ok(_) => {
                tracing::info!(owner = %l.owner, "reservation freed: no pod holds its VF");
                freed.push(l.owner);
            }
            Err(err) => {
                tracing::warn!(owner = %l.owner, error = %crate::chain(&err), "cannot free a reservation");
            }
        }
    }
    Ok(freed)
}

fn stop_all(served: &mut BTreeMap<String, Served>) {
    for (_, s) in std::mem::take(served) {
        s.stop();
    }
}

/// Serves one device plugin per pool until `changes`' sender is dropped (see the crate
/// docs). Errors reading the host or registering are logged and tried again: the kubelet
/// may be down for a while.
pub async fn run_device_plugins(
    cfg: Config,
    host: Arc<Host>,
    mut changes: watch::Receiver<u64>,
) -> Result<(), K8sError> {
    let kubelet_sock = cfg.kubelet_root.join("device-plugins/kubelet.sock");
    let mut served: BTreeMap<String, Served> = BTreeMap::new();
    let mut kubelet: Option<(u64, u64)> = None;
    let mut dirty = true;
    loop {
        let now = uds::file_id(&kubelet_sock);
        // A kubelet that starts removes the plugins' sockets and makes its own again.
        let ours_gone = served
            .values()
            .any(|s| uds::file_id(&s.socket) != s.socket_id);
        if now != kubelet || ours_gone {
            if !served.is_empty() {
                tracing::info!("the kubelet restarted: registering again");
            }
            stop_all(&mut served);
            kubelet = now;
            dirty = true;
        }
        if dirty && kubelet.is_some() {
            match blocking(&host, "device list", read_pools).await {
                Ok(pools) => {
                    if pools.is_none() {
                        tracing::debug!("host apply has not run since boot: nothing advertised");
                    }
                    dirty = !sync(&cfg, &host, &mut served, pools.unwrap_or_default()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::chain(&e), "cannot read the pools; trying again");
                }
            }
        }
        if let Some(in_pods) = devices_in_pods(&cfg).await {
            let (prefix, grace) = (cfg.resource_prefix.clone(), cfg.reservation_grace);
            match blocking(&host, "reservation gc", move |h| {
                free_reservations(h, &prefix, &in_pods, grace)
            })
            .await
            {
                Ok(freed) if !freed.is_empty() => dirty = true,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::chain(&e), "cannot free reservations");
                }
            }
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    stop_all(&mut served);
                    return Ok(());
                }
                dirty = true;
            }
            () = tokio::time::sleep(cfg.poll) => {}
        }
    }
}
