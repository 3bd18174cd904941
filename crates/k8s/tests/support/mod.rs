//! The test lab: the demo host with split NICs and a pool, applied since its (simulated)
//! boot; a kubelet stand-in speaking the real device-plugin registration proto on
//! `kubelet.sock`; clients for the plugins' sockets.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod apiserver;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};
use vfpool_engine::{Engine, Host, HostConfig, Policy, SplitRequest};
use vfpool_k8s::Config;
use vfpool_k8s::proto::deviceplugin as pb;
use vfpool_k8s::proto::deviceplugin::registration_server::{Registration, RegistrationServer};
use vfpool_model::PciAddr;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub host: Arc<Host>,
    pub cfg: Config,
    pub changes: watch::Sender<u64>,
}

impl Lab {
    /// eno49 and eno50 with 2 VFs each, ens1f0np0 (NUMA node 1) with 4; pool `gold` =
    /// eno49's and ens1f0np0's VFs, `silver` = eno50's; `host apply` run (when `apply`).
    pub fn new(apply: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(&HostConfig {
            demo: true,
            state: Some(dir.path().join("state")),
            ..HostConfig::default()
        })
        .unwrap();
        let lab = Lab {
            cfg: Config {
                kubelet_root: dir.path().join("kubelet"),
                cdi_dir: dir.path().join("cdi"),
                poll: Duration::from_millis(50),
                ..Config::default()
            },
            dir,
            host: Arc::new(host),
            changes: watch::channel(0).0,
        };
        lab.split(&["eno49", "eno50"], 2);
        lab.split(&["ens1f0np0"], 4);
        let mut e = lab.engine();
        e.pool_create("gold", sel(&["eno49", "ens1f0np0"]), Policy::FirstFit)
            .unwrap();
        e.pool_create("silver", sel(&["eno50"]), Policy::FirstFit)
            .unwrap();
        if apply {
            e.apply_boot(None, Duration::from_secs(5), false).unwrap();
        }
        lab
    }

    pub fn engine(&self) -> Engine {
        self.host.engine().unwrap()
    }

    pub fn split(&self, nics: &[&str], n: u32) {
        self.engine()
            .split_nics(
                &SplitRequest {
                    nics: nics.iter().map(|s| s.to_string()).collect(),
                    vfs: n.to_string(),
                    autoprobe: None,
                    timeout: Duration::from_secs(5),
                    force: false,
                    keep_link: false,
                },
                &|_, _, _| {},
            )
            .unwrap();
    }

    /// What the daemon does after a change.
    pub fn bump(&self) {
        self.changes.send_modify(|g| *g += 1);
    }

    /// VF `index` of `pf`, from sysfs.
    pub fn vf(&self, pf: &str, index: u16) -> PciAddr {
        let link = self
            .host
            .fs
            .path(format!("class/net/{pf}/device/virtfn{index}"));
        std::fs::read_link(link)
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub fn device_plugins(&self) -> PathBuf {
        self.cfg.kubelet_root.join("device-plugins")
    }
}

pub fn sel(v: &[&str]) -> Vec<vfpool_engine::PoolSelector> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

/// The kubelet's registration service: records each request; refuses while `refuse`.
struct KubeletReg {
    tx: mpsc::UnboundedSender<pb::RegisterRequest>,
    refuse: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Registration for KubeletReg {
    async fn register(
        &self,
        r: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = r.into_inner();
        // What the kubelet checks (pkg/kubelet/cm/devicemanager): the version it speaks.
        if r.version != "v1beta1" {
            return Err(Status::invalid_argument("unsupported version"));
        }
        if *self.refuse.borrow() {
            return Err(Status::unavailable("refused by the test"));
        }
        let _ = self.tx.send(r);
        Ok(Response::new(pb::Empty {}))
    }
}

pub struct Kubelet {
    pub regs: mpsc::UnboundedReceiver<pb::RegisterRequest>,
    pub refuse: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Kubelet {
    /// A kubelet starting in `dir` (`device-plugins/`): as the real one, it removes the
    /// sockets there, then serves `kubelet.sock`.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let incoming = vfpool_k8s::uds::bind(&dir.join("kubelet.sock")).unwrap();
        let (tx, regs) = mpsc::unbounded_channel();
        let (refuse, refuse_rx) = watch::channel(false);
        let svc = KubeletReg {
            tx,
            refuse: refuse_rx,
        };
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(RegistrationServer::new(svc))
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        Kubelet { regs, refuse, task }
    }

    pub fn stop(self) {
        self.task.abort();
    }

    pub async fn next_registration(&mut self) -> pb::RegisterRequest {
        tokio::time::timeout(WAIT, self.regs.recv())
            .await
            .expect("a registration in time")
            .unwrap()
    }
}

/// The kubelet's pod resources API: which devices pods hold, as the test sets it.
pub struct PodResources {
    pub held: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    task: JoinHandle<()>,
}

struct Lister(Arc<std::sync::Mutex<Vec<(String, String)>>>);

#[tonic::async_trait]
impl vfpool_k8s::proto::podresources::pod_resources_lister_server::PodResourcesLister for Lister {
    async fn list(
        &self,
        _: Request<vfpool_k8s::proto::podresources::ListPodResourcesRequest>,
    ) -> Result<Response<vfpool_k8s::proto::podresources::ListPodResourcesResponse>, Status> {
        use vfpool_k8s::proto::podresources as pr;
        let held = self.0.lock().unwrap().clone();
        let containers = held
            .into_iter()
            .map(|(resource_name, id)| pr::ContainerResources {
                name: "c".into(),
                devices: vec![pr::ContainerDevices {
                    resource_name,
                    device_ids: vec![id],
                }],
            })
            .collect();
        Ok(Response::new(pr::ListPodResourcesResponse {
            pod_resources: vec![pr::PodResources {
                name: "pod".into(),
                namespace: "default".into(),
                containers,
            }],
        }))
    }
}

impl PodResources {
    pub fn start(kubelet_root: &Path, held: Vec<(String, String)>) -> Self {
        let incoming =
            vfpool_k8s::uds::bind(&kubelet_root.join("pod-resources/kubelet.sock")).unwrap();
        let held = Arc::new(std::sync::Mutex::new(held));
        let svc = Lister(held.clone());
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(
                    vfpool_k8s::proto::podresources::pod_resources_lister_server::PodResourcesListerServer::new(svc),
                )
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        PodResources { held, task }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
