//! The DRA kubelet plugin (`v1.DRAPlugin`) and its registration (`pluginregistration/v1`).
//!
//! A claim's VFs are leased to `dra/CLAIM-UID/DEVICE` ([`dra_owner`]): the ledger is the
//! record of what is prepared, so a claim prepared before a crash is still prepared after
//! it, and its CDI spec is written again when the plugin starts.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};
use vfpool_engine::pool::membership;
use vfpool_engine::pools::pf_pool_name;
use vfpool_engine::{AcquireRequest, EngineError, Host, LeaseState, OwnerKind, ReleaseTarget};
use vfpool_model::PciAddr;

use crate::cdi::{self, CdiVf};
use crate::proto::dra as pb;
use crate::proto::dra::dra_plugin_server::{DraPlugin, DraPluginServer};
use crate::proto::pluginregistration as reg;
use crate::proto::pluginregistration::registration_server::{Registration, RegistrationServer};
use crate::settings::{VfRequest, parse_configs};
use crate::{Config, K8sError, blocking, parse_device_name, uds};

/// The plugin type the kubelet's plugin manager hands to its DRA handler.
pub const PLUGIN_TYPE: &str = "DRAPlugin";
/// The gRPC service served, as the registration names it.
pub const SERVICE_VERSION: &str = "v1.DRAPlugin";
/// The owner prefix of a claim's leases.
pub const DRA_OWNER_PREFIX: &str = "dra/";

/// A boxed future (what [`ClaimSource`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A claim as the kubelet names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    pub namespace: String,
    pub uid: String,
    pub name: String,
}

/// One device the scheduler allocated to a claim from this driver, with the opaque
/// configurations (`parameters`) for vfpool that apply to it, in the API's order (class,
/// then claim): see [`crate::settings`].
#[derive(Debug, Clone, PartialEq)]
pub struct AllocatedDevice {
    pub request: String,
    /// The ResourceSlice pool.
    pub pool: String,
    /// [`crate::device_name`] of the VF.
    pub device: String,
    pub configs: Vec<serde_json::Value>,
}

/// Where the plugin learns what a claim was allocated: the daemon reads the ResourceClaim's
/// `status.allocation` from the API server (the kubelet's request names the claim only).
/// An `Err` is one line, reported to the kubelet for that claim.
pub trait ClaimSource: Send + Sync + 'static {
    fn allocation(&self, claim: ClaimRef) -> BoxFuture<'_, Result<Vec<AllocatedDevice>, String>>;
}

/// The owner of claim `uid`'s lease of `device`.
pub fn dra_owner(uid: &str, device: &str) -> String {
    format!("{DRA_OWNER_PREFIX}{uid}/{device}")
}

/// The VF's pool in the ledger: the pool that holds it, or its PF's pool.
fn pool_of(e: &mut vfpool_engine::Engine, vf: PciAddr) -> Result<String, K8sError> {
    let hv = e.host()?;
    let slot = hv.vfs.get(&vf).ok_or(EngineError::UnknownVf { vf })?;
    let pools = e.ledger().read(|tx| tx.pools())?;
    Ok(membership(&pools, &hv)
        .get(&vf)
        .map(|p| (*p).to_owned())
        .unwrap_or_else(|| pf_pool_name(&slot.pf_pci.to_string())))
}

fn cdi_vf(host: &Host, device: &str, vf: PciAddr) -> Result<CdiVf, K8sError> {
    let driver = host
        .fs
        .link_name(&host.fs.path(format!("bus/pci/devices/{vf}/driver")))
        .map_err(EngineError::from)?;
    let vfio_group = if driver.as_deref() == Some("vfio-pci") {
        crate::deviceplugin::iommu_group(host, vf)?
    } else {
        None
    };
    Ok(CdiVf {
        device: device.to_owned(),
        pci: vf,
        vfio_group,
    })
}

/// Prepares claim `uid`: each device leased to the claim with its settings (kept when the
/// claim holds it already), all or nothing, then the CDI spec written.
fn prepare(
    host: &Host,
    cfg: &Config,
    uid: &str,
    devices: &[(String, PciAddr, VfRequest)],
) -> Result<(), K8sError> {
    let mut e = host.engine()?;
    if !e.applied_since_boot()? {
        return Err(K8sError::NotApplied);
    }
    let mut made: Vec<String> = Vec::new();
    let r = (|| -> Result<(), K8sError> {
        let mut vfs = Vec::new();
        for (device, vf, req) in devices {
            let owner = dra_owner(uid, device);
            match e.ledger().read(|tx| tx.lease_by_owner(&owner))? {
                Some(l) if l.vf_pci == *vf && l.state == LeaseState::Active => {
                    tracing::debug!(owner, vf = %vf, "prepared already");
                }
                held => {
                    if held.is_some() {
                        // Half made by a process that died, or another VF: start over.
                        e.release(&ReleaseTarget::Owner(owner.clone()))?;
                    }
                    let pool = pool_of(&mut e, *vf)?;
                    let mut a = AcquireRequest::new(&pool, &owner);
                    a.owner_kind = OwnerKind::Container;
                    a.vf = Some(*vf);
                    a.settings = req.settings.clone();
                    a.driver = req.driver;
                    e.acquire(&a)?;
                    made.push(owner);
                }
            }
            vfs.push(cdi_vf(host, device, *vf)?);
        }
        cdi::write_spec(&cfg.cdi_dir, &cfg.driver_name, uid, &vfs)?;
        Ok(())
    })();
    match r {
        Ok(()) => Ok(()),
        Err(err) => {
            for o in made {
                if let Err(u) = e.release(&ReleaseTarget::Owner(o.clone())) {
                    tracing::warn!(owner = %o, error = %crate::chain(&u), "undo: cannot release");
                }
            }
            Err(err)
        }
    }
}

/// Releases every lease of claim `uid` and removes its CDI spec. Keeps going past errors
/// and reports them all.
fn unprepare(host: &Host, cfg: &Config, uid: &str) -> Result<(), String> {
    let mut errors = Vec::new();
    let prefix = format!("{DRA_OWNER_PREFIX}{uid}/");
    match host.engine().map_err(K8sError::from).and_then(|mut e| {
        let leases = e.ledger().read(|tx| tx.leases())?;
        for l in leases.into_iter().filter(|l| l.owner.starts_with(&prefix)) {
            if let Err(err) = e.release(&ReleaseTarget::Owner(l.owner.clone())) {
                errors.push(format!("{}: {}", l.owner, crate::chain(&err)));
            }
        }
        Ok(())
    }) {
        Ok(()) => {}
        Err(err) => errors.push(crate::chain(&err)),
    }
    if let Err(err) = cdi::remove_spec(&cfg.cdi_dir, &cfg.driver_name, uid) {
        errors.push(crate::chain(&err));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Writes the CDI spec of every claim the ledger holds (the CDI directory may be a tmpfs,
/// and a crash may have come between the lease and the spec).
pub fn restore_specs(host: &Host, cfg: &Config) -> Result<usize, K8sError> {
    let mut e = host.engine()?;
    let leases = e.ledger().read(|tx| tx.leases())?;
    let mut claims: BTreeMap<String, Vec<CdiVf>> = BTreeMap::new();
    for l in leases.iter().filter(|l| l.state == LeaseState::Active) {
        let Some(rest) = l.owner.strip_prefix(DRA_OWNER_PREFIX) else {
            continue;
        };
        let Some((uid, device)) = rest.split_once('/') else {
            continue;
        };
        claims
            .entry(uid.to_owned())
            .or_default()
            .push(cdi_vf(host, device, l.vf_pci)?);
    }
    for (uid, vfs) in &claims {
        cdi::write_spec(&cfg.cdi_dir, &cfg.driver_name, uid, vfs)?;
    }
    Ok(claims.len())
}

struct Dra {
    cfg: Config,
    host: Arc<Host>,
    claims: Arc<dyn ClaimSource>,
}

impl Dra {
    async fn prepare_claim(&self, claim: pb::Claim) -> pb::NodePrepareResourceResponse {
        let err = |error: String| pb::NodePrepareResourceResponse {
            devices: Vec::new(),
            error,
        };
        let who = format!("claim {}/{} ({})", claim.namespace, claim.name, claim.uid);
        if claim.uid.is_empty() || claim.uid.contains('/') {
            return err(format!(
                "invalid claim uid '{}': the ResourceClaim's metadata.uid",
                claim.uid
            ));
        }
        let allocated = match self
            .claims
            .allocation(ClaimRef {
                namespace: claim.namespace.clone(),
                uid: claim.uid.clone(),
                name: claim.name.clone(),
            })
            .await
        {
            Ok(a) => a,
            Err(e) => return err(format!("{who}: cannot read its allocation: {e}")),
        };
        let mut parsed = Vec::new();
        for d in &allocated {
            let vf = match parse_device_name(&d.device) {
                Ok(vf) => vf,
                Err(e) => return err(format!("{who}: {e}")),
            };
            let req = match parse_configs(&d.configs) {
                Ok(r) => r,
                Err(e) => return err(format!("{who}: device {}: {e}", d.device)),
            };
            parsed.push((d.device.clone(), vf, req));
        }
        let (cfg, uid) = (self.cfg.clone(), claim.uid.clone());
        let r = blocking(&self.host, "prepare", move |h| {
            prepare(h, &cfg, &uid, &parsed)
        })
        .await;
        if let Err(e) = r {
            return err(format!("{who}: {}", crate::chain(&e)));
        }
        tracing::info!(claim = %claim.uid, devices = allocated.len(), "claim prepared");
        pb::NodePrepareResourceResponse {
            devices: allocated
                .iter()
                .map(|d| pb::Device {
                    request_names: vec![d.request.clone()],
                    pool_name: d.pool.clone(),
                    device_name: d.device.clone(),
                    cdi_device_ids: vec![cdi::device_id(
                        &self.cfg.driver_name,
                        &claim.uid,
                        &d.device,
                    )],
                })
                .collect(),
            error: String::new(),
        }
    }
}

#[tonic::async_trait]
impl DraPlugin for Dra {
    async fn node_prepare_resources(
        &self,
        req: Request<pb::NodePrepareResourcesRequest>,
    ) -> Result<Response<pb::NodePrepareResourcesResponse>, Status> {
        let mut claims = HashMap::new();
        for c in req.into_inner().claims {
            let uid = c.uid.clone();
            claims.insert(uid, self.prepare_claim(c).await);
        }
        Ok(Response::new(pb::NodePrepareResourcesResponse { claims }))
    }

    async fn node_unprepare_resources(
        &self,
        req: Request<pb::NodeUnprepareResourcesRequest>,
    ) -> Result<Response<pb::NodeUnprepareResourcesResponse>, Status> {
        let mut claims = HashMap::new();
        for c in req.into_inner().claims {
            let error = if c.uid.is_empty() || c.uid.contains('/') {
                format!(
                    "invalid claim uid '{}': the ResourceClaim's metadata.uid",
                    c.uid
                )
            } else {
                let (cfg, uid) = (self.cfg.clone(), c.uid.clone());
                match blocking(&self.host, "unprepare", move |h| {
                    Ok(unprepare(h, &cfg, &uid))
                })
                .await
                {
                    Ok(Ok(())) => String::new(),
                    Ok(Err(e)) => e,
                    Err(e) => crate::chain(&e),
                }
            };
            claims.insert(c.uid, pb::NodeUnprepareResourceResponse { error });
        }
        Ok(Response::new(pb::NodeUnprepareResourcesResponse { claims }))
    }
}

struct Reg {
    driver: String,
    endpoint: PathBuf,
}

#[tonic::async_trait]
impl Registration for Reg {
    async fn get_info(
        &self,
        _: Request<reg::InfoRequest>,
    ) -> Result<Response<reg::PluginInfo>, Status> {
        Ok(Response::new(reg::PluginInfo {
            r#type: PLUGIN_TYPE.to_owned(),
            name: self.driver.clone(),
            endpoint: self.endpoint.display().to_string(),
            supported_versions: vec![SERVICE_VERSION.to_owned()],
        }))
    }

    async fn notify_registration_status(
        &self,
        req: Request<reg::RegistrationStatus>,
    ) -> Result<Response<reg::RegistrationStatusResponse>, Status> {
        let s = req.into_inner();
        if s.plugin_registered {
            tracing::info!(driver = %self.driver, "the kubelet registered the DRA plugin");
        } else {
            tracing::error!(driver = %self.driver, error = %s.error, "the kubelet refused the DRA plugin");
        }
        Ok(Response::new(reg::RegistrationStatusResponse {}))
    }
}

/// The registration socket of `cfg`'s driver.
pub fn registration_socket(cfg: &Config) -> PathBuf {
    cfg.kubelet_root
        .join("plugins_registry")
        .join(format!("{}-reg.sock", cfg.driver_name))
}

/// The DRA service's socket of `cfg`'s driver.
pub fn dra_socket(cfg: &Config) -> PathBuf {
    cfg.kubelet_root
        .join("plugins")
        .join(&cfg.driver_name)
        .join("dra.sock")
}

struct Servers {
    sockets: Vec<(PathBuf, Option<(u64, u64)>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Servers {
    fn intact(&self) -> bool {
        self.sockets.iter().all(|(p, id)| uds::file_id(p) == *id)
    }

    fn stop(self) {
        drop(self);
    }
}

/// Stopping (or the plugin's task dropped: the daemon ends) stops serving and removes the
/// sockets that are still ours: the kubelet's plugin watcher deregisters a plugin whose
/// registration socket is gone, and a client never finds a socket file with no server
/// behind it.
impl Drop for Servers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for (p, id) in &self.sockets {
            uds::remove_if_same(p, *id);
        }
    }
}

fn serve(
    cfg: &Config,
    host: &Arc<Host>,
    claims: &Arc<dyn ClaimSource>,
) -> Result<Servers, K8sError> {
    let dra_path = dra_socket(cfg);
    let reg_path = registration_socket(cfg);
    // The service first: the kubelet calls it once it has seen the registration socket.
    let dra_in = uds::bind(&dra_path)?;
    let dra_id = uds::file_id(&dra_path);
    let svc = Dra {
        cfg: cfg.clone(),
        host: host.clone(),
        claims: claims.clone(),
    };
    let p = dra_path.clone();
    let t1 = tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(DraPluginServer::new(svc))
            .serve_with_incoming(dra_in)
            .await
        {
            tracing::error!(socket = %p.display(), error = %crate::chain(&e), "DRA server stopped");
        }
    });
    let reg_in = uds::bind(&reg_path)?;
    let reg_id = uds::file_id(&reg_path);
    let r = Reg {
        driver: cfg.driver_name.clone(),
        endpoint: dra_path.clone(),
    };
    let p = reg_path.clone();
    let t2 = tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(RegistrationServer::new(r))
            .serve_with_incoming(reg_in)
            .await
        {
            tracing::error!(socket = %p.display(), error = %crate::chain(&e), "registration server stopped");
        }
    });
    Ok(Servers {
        sockets: vec![(dra_path, dra_id), (reg_path, reg_id)],
        tasks: vec![t1, t2],
    })
}

/// Serves the DRA plugin until `changes`' sender is dropped (see the crate docs). Its
/// sockets are made again when they vanish (a kubelet that cleans its directories).
pub async fn run_dra_plugin(
    cfg: Config,
    host: Arc<Host>,
    mut changes: watch::Receiver<u64>,
    claims: Arc<dyn ClaimSource>,
) -> Result<(), K8sError> {
    let c = cfg.clone();
    let n = blocking(&host, "CDI restore", move |h| restore_specs(h, &c)).await?;
    if n > 0 {
        tracing::info!(claims = n, "CDI specs of prepared claims written again");
    }
    let mut servers: Option<Servers> = None;
    loop {
        if !servers.as_ref().is_some_and(Servers::intact) {
            if let Some(s) = servers.take() {
                tracing::info!("the plugin sockets were removed: serving them again");
                s.stop();
            }
            match serve(&cfg, &host, &claims) {
                Ok(s) => servers = Some(s),
                Err(e) => {
                    tracing::warn!(error = %crate::chain(&e), "cannot serve the DRA plugin; trying again")
                }
            }
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    if let Some(s) = servers.take() {
                        s.stop();
                    }
                    return Ok(());
                }
            }
            () = tokio::time::sleep(cfg.poll) => {}
        }
    }
}
