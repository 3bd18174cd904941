//! `vfpool serve` on Kubernetes, as a process on the demo host, with the stand-ins of
//! crates/k8s/tests/support: a kubelet (device-plugin registration on `kubelet.sock`; the
//! DRA and registration sockets called as the kubelet calls them) and an API server
//! (ResourceSlices, Nodes, ResourceClaims) reached through `KUBECONFIG`. The host is changed
//! by this test process, as the CLI would: the daemon sees it through its own watchers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../k8s/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::apiserver::{ApiServer, NODE, kubeconfig, serve_url};
use support::{Kubelet, Lab, WAIT};
use tonic::Streaming;
use vfpool_k8s::proto::deviceplugin as dp;
use vfpool_k8s::proto::deviceplugin::device_plugin_client::DevicePluginClient;
use vfpool_k8s::proto::dra as pb;
use vfpool_k8s::proto::dra::dra_plugin_client::DraPluginClient;
use vfpool_k8s::proto::pluginregistration as reg;
use vfpool_k8s::proto::pluginregistration::registration_client::RegistrationClient;
use vfpool_k8s::{device_name, uds};

struct Node {
    lab: Lab,
    kubelet: Kubelet,
    api: ApiServer,
    kubeconfig: PathBuf,
    daemon: Option<Child>,
}

impl Node {
    async fn new() -> Self {
        let lab = Lab::new(true);
        let kubelet = Kubelet::start(&lab.device_plugins());
        let api = ApiServer::default();
        let url = serve_url(&api).await;
        let kc = lab.dir.path().join("kubeconfig");
        kubeconfig(&kc, &url);
        Node {
            lab,
            kubelet,
            api,
            kubeconfig: kc,
            daemon: None,
        }
    }

    /// Starts `vfpool serve` with both plugins (`fault`: VFPOOL_FAULT).
    fn start(&mut self, fault: Option<&str>) {
        let dir = self.lab.dir.path();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vfpool"));
        cmd.arg("--demo")
            .arg("--state")
            .arg(dir.join("state"))
            .args(["serve", "--no-tcp", "--kubelet-root"])
            .arg(&self.lab.cfg.kubelet_root)
            .arg("--cdi-dir")
            .arg(&self.lab.cfg.cdi_dir)
            .args(["--dra-driver", "vfpool.io", "--device-plugin"])
            .env("NODE_NAME", NODE)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", dir)
            .env("VFPOOL_LOG", "debug")
            .env_remove("VFPOOL_FAULT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(f) = fault {
            cmd.env("VFPOOL_FAULT", f);
        }
        self.daemon = Some(cmd.spawn().unwrap());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.lab.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Waits for the daemon to end on its own.
    async fn exited(&mut self) -> std::process::ExitStatus {
        let mut child = self.daemon.take().unwrap();
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(s) = child.try_wait().unwrap() {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the daemon ends in time")
    }

    async fn dra(&self) -> DraPluginClient<tonic::transport::Channel> {
        let sock = vfpool_k8s::dra::dra_socket(&self.lab.cfg);
        let ch = tokio::time::timeout(WAIT, async {
            loop {
                // A socket left by a killed daemon refuses until the new one replaces it.
                if let Ok(c) = uds::connect(&sock).await {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the DRA socket in time; log:\n{}", self.log()));
        DraPluginClient::new(ch)
    }

    fn vf_config(&self, pf: &str, index: u16) -> vfpool_model::VfConfig {
        self.lab
            .host
            .netops()
            .unwrap()
            .vf_configs(pf)
            .unwrap()
            .into_iter()
            .find(|(i, _)| *i == index)
            .unwrap()
            .1
    }

    fn claim(&self, uid: &str, vf: vfpool_model::PciAddr, params: Value) {
        let v = json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": format!("claim-{uid}"), "namespace": "default", "uid": uid,
                         "resourceVersion": "1"},
            "spec": {"devices": {"requests": [{"name": "nic", "exactly": {
                "deviceClassName": "vfpool.io", "allocationMode": "ExactCount", "count": 1}}]}},
            "status": {"allocation": {"devices": {
                "results": [{"request": "nic", "driver": "vfpool.io", "pool": NODE,
                             "device": device_name(vf)}],
                "config": [{"source": "FromClaim", "requests": ["nic"],
                            "opaque": {"driver": "vfpool.io", "parameters": params}}]}}}
        });
        self.api
            .0
            .lock()
            .unwrap()
            .claims
            .insert(("default".into(), format!("claim-{uid}")), v);
    }

    fn names(&self, pf: &str) -> BTreeSet<String> {
        (0..64)
            .map_while(|i| {
                let link = self
                    .lab
                    .host
                    .fs
                    .path(format!("class/net/{pf}/device/virtfn{i}"));
                std::fs::read_link(link).ok()
            })
            .map(|l| {
                format!(
                    "vf-{}",
                    l.file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .replace([':', '.'], "-")
                )
            })
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Calls `f` until its error is not one to try again (the kubelet retries a failed
/// NodePrepareResources or NodeUnprepareResources): the claim's error, `""` when done.
async fn retried<F, Fut>(mut f: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let e = f().await;
        if !e.ends_with("try again") || std::time::Instant::now() > deadline {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn claim_ref(uid: &str) -> pb::Claim {
    pb::Claim {
        namespace: "default".into(),
        uid: uid.into(),
        name: format!("claim-{uid}"),
    }
}

async fn until(what: &str, node: &Node, mut f: impl FnMut() -> bool) {
    let ok = tokio::time::timeout(WAIT, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "{what} in time; log:\n{}", node.log());
}

async fn next(s: &mut Streaming<dp::ListAndWatchResponse>) -> BTreeMap<String, String> {
    let r = tokio::time::timeout(WAIT, s.message())
        .await
        .expect("a ListAndWatch answer in time")
        .unwrap()
        .expect("the stream goes on");
    r.devices.into_iter().map(|d| (d.id, d.health)).collect()
}

/// Answers until one satisfies `f`.
async fn next_until(
    s: &mut Streaming<dp::ListAndWatchResponse>,
    f: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    loop {
        let a = next(s).await;
        if f(&a) {
            return a;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_registers_both_plugins_publishes_slices_and_follows_the_host_live() {
    let mut n = Node::new().await;
    n.start(None);

    // The device plugins register with the kubelet, one per pool.
    let mut regs = BTreeMap::new();
    while regs.len() < 2 {
        let r = n.kubelet.next_registration().await;
        regs.insert(r.resource_name.clone(), r.endpoint);
    }
    assert_eq!(regs["vfpool.io/gold"], "vfpool-gold.sock");
    assert_eq!(regs["vfpool.io/silver"], "vfpool-silver.sock");

    // The DRA plugin: its registration socket, as the kubelet's plugin watcher reads it.
    let reg_sock = vfpool_k8s::dra::registration_socket(&n.lab.cfg);
    until("the DRA registration socket", &n, || reg_sock.exists()).await;
    let info = RegistrationClient::new(uds::connect(&reg_sock).await.unwrap())
        .get_info(reg::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.r#type, "DRAPlugin");
    assert_eq!(info.name, "vfpool.io");
    assert_eq!(
        PathBuf::from(&info.endpoint),
        vfpool_k8s::dra::dra_socket(&n.lab.cfg)
    );
    assert_eq!(info.supported_versions, ["v1.DRAPlugin"]);

    // The ResourceSlices: every VF of the node.
    let all = |n: &Node| -> BTreeSet<String> {
        ["eno49", "eno50", "ens1f0np0"]
            .iter()
            .flat_map(|p| n.names(p))
            .collect()
    };
    let want = all(&n);
    assert_eq!(want.len(), 8);
    until("the first slices", &n, || n.api.names_of(NODE) == want).await;

    // ListAndWatch of gold: eno49's 2 and ens1f0np0's 4, healthy.
    let dp_sock = n.lab.device_plugins().join("vfpool-gold.sock");
    let mut c = DevicePluginClient::new(uds::connect(&dp_sock).await.unwrap());
    let mut s = c.list_and_watch(dp::Empty {}).await.unwrap().into_inner();
    let first = next(&mut s).await;
    assert_eq!(first.len(), 6, "{first:?}");
    assert!(first.values().all(|h| h == "Healthy"), "{first:?}");

    // A split by another process (the CLI): seen without a restart, nothing bumped by hand.
    n.lab.split(&["eno49"], 4);
    let after = next_until(&mut s, |a| a.len() == 8).await;
    assert!(after.values().all(|h| h == "Healthy"), "{after:?}");
    let want = all(&n);
    assert_eq!(want.len(), 10);
    until("the split in the slices", &n, || {
        n.api.names_of(NODE) == want
    })
    .await;

    // A VF's netdev vanishes (the driver bound, no netdev): unhealthy, and out of the slices.
    let vf = n.lab.vf("eno49", 3);
    let net = n.lab.host.fs.path(format!("bus/pci/devices/{vf}/net"));
    let netdev = std::fs::read_dir(&net).unwrap().next().unwrap().unwrap();
    // As the kernel: the device's net/NAME and the class/net/NAME link both go.
    std::fs::remove_dir_all(netdev.path()).unwrap();
    let class = n.lab.host.fs.path("class/net").join(netdev.file_name());
    std::fs::remove_file(class).unwrap();
    let key = vf.to_string();
    let gone = next_until(&mut s, |a| a.get(&key).is_some_and(|h| h == "Unhealthy")).await;
    assert_eq!(gone.len(), 8);
    assert_eq!(
        gone.values().filter(|h| *h == "Unhealthy").count(),
        1,
        "{gone:?}"
    );
    let mut want = want;
    want.remove(&device_name(vf));
    until("the unhealthy VF out of the slices", &n, || {
        n.api.names_of(NODE) == want
    })
    .await;
    assert!(n.api.rejected().is_empty(), "{:?}", n.api.rejected());

    // SIGTERM: the daemon stops and its DRA sockets go.
    let pid = nix::unistd::Pid::from_raw(n.daemon.as_ref().unwrap().id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let st = n.exited().await;
    assert!(st.success(), "{st:?}; log:\n{}", n.log());
    assert!(!reg_sock.exists());
}

/// The daemon SIGKILLed inside NodePrepareResources (the engine's fault points), then
/// started again: the kubelet's retry completes the claim, or its unprepare rolls it back;
/// either way the VF ends as the ledger says, with one lease at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_during_node_prepare_completes_or_rolls_back_after_restart() {
    for (i, point) in ["acquire:after-row", "acquire:mid-pf", "acquire:after-pf"]
        .into_iter()
        .enumerate()
    {
        let mut n = Node::new().await;
        let vf = n.lab.vf("eno50", 1);
        let before = n.vf_config("eno50", 1);
        let uid = format!("u{i}");
        n.claim(&uid, vf, json!({"vlan": 42, "trust": true}));
        n.start(Some(point));
        let r = n
            .dra()
            .await
            .node_prepare_resources(pb::NodePrepareResourcesRequest {
                claims: vec![claim_ref(&uid)],
            })
            .await;
        assert!(r.is_err(), "{point}: the call dies with the daemon: {r:?}");
        let st = n.exited().await;
        assert_eq!(st.signal(), Some(9), "{point}: {st:?}; log:\n{}", n.log());
        assert!(n.log().contains(&format!("fault point {point} reached")));

        n.start(None);
        let owner = vfpool_k8s::dra_owner(&uid, &device_name(vf));
        if i % 2 == 0 {
            // The kubelet tries again: the claim is completed, once.
            let e = retried(|| async {
                let r = n
                    .dra()
                    .await
                    .node_prepare_resources(pb::NodePrepareResourcesRequest {
                        claims: vec![claim_ref(&uid)],
                    })
                    .await
                    .unwrap()
                    .into_inner();
                r.claims[&uid].error.clone()
            })
            .await;
            assert_eq!(e, "", "{point}");
            let cfg = n.vf_config("eno50", 1);
            assert_eq!((cfg.vlan, cfg.trust), (42, Some(true)), "{point}");
            let leases = n.lab.engine().leases().unwrap();
            let held: Vec<_> = leases.iter().filter(|l| l.vf_pci == vf).collect();
            assert_eq!(held.len(), 1, "{point}: {leases:?}");
            assert_eq!(held[0].owner, owner);
            assert!(
                vfpool_k8s::cdi::spec_path(&n.lab.cfg.cdi_dir, "vfpool.io", &uid).exists(),
                "{point}: the CDI spec"
            );
        } else {
            // The pod is gone meanwhile: the kubelet unprepares; all is given back.
            let e = retried(|| async {
                let r = n
                    .dra()
                    .await
                    .node_unprepare_resources(pb::NodeUnprepareResourcesRequest {
                        claims: vec![claim_ref(&uid)],
                    })
                    .await
                    .unwrap()
                    .into_inner();
                r.claims[&uid].error.clone()
            })
            .await;
            assert_eq!(e, "", "{point}");
            let leases = n.lab.engine().leases().unwrap();
            assert!(leases.iter().all(|l| l.vf_pci != vf), "{point}: {leases:?}");
            assert_eq!(n.vf_config("eno50", 1), before, "{point}");
        }
    }
}

#[test]
fn kubernetes_flags_without_kubernetes_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vfpool"))
            .arg("--demo")
            .arg("--state")
            .arg(dir.path())
            .arg("serve")
            .arg("--no-tcp")
            .args(args)
            .env("KUBECONFIG", dir.path().join("none"))
            .env("HOME", dir.path())
            .env_remove("NODE_NAME")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let e = run(&["--device-plugin"]);
    assert!(
        e.contains("invalid device-plugin 'true': only on Kubernetes: add --kubelet-root DIR or --kubernetes"),
        "{e}"
    );
    let e = run(&["--kubernetes"]);
    assert!(e.contains("invalid node-name ''"), "{e}");
    let e = run(&["--kubernetes", "--node-name", "n1"]);
    assert!(e.contains("cannot reach the Kubernetes API server"), "{e}");
    let e = run(&["--kubernetes", "--no-dra"]);
    assert!(e.contains("invalid no-dra 'true'"), "{e}");
}

/// `--kubernetes` on the demo host: the kubelet's directory is `STATE/kubelet`, never the
/// real one; with `--no-dra --device-plugin` no API server is needed and no DRA socket made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_hosts_kubelet_is_in_its_state_directory() {
    let lab = Lab::new(true);
    let dir = lab.dir.path();
    let state = dir.join("state");
    let mut kubelet = Kubelet::start(&state.join("kubelet/device-plugins"));
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .arg("--demo")
        .arg("--state")
        .arg(&state)
        .args([
            "serve",
            "--no-tcp",
            "--kubernetes",
            "--no-dra",
            "--device-plugin",
        ])
        .env("KUBECONFIG", dir.join("none"))
        .env("HOME", dir)
        .env_remove("NODE_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let r = kubelet.next_registration().await;
    assert!(r.resource_name.starts_with("vfpool.io/"), "{r:?}");
    assert!(
        state
            .join("kubelet/device-plugins")
            .join(&r.endpoint)
            .exists()
    );
    assert!(!state.join("kubelet/plugins_registry").exists());
    assert!(child.try_wait().unwrap().is_none(), "still serving");
    child.kill().unwrap();
    child.wait().unwrap();
}
