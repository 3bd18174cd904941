//! The Kubernetes benchmark (issue 14, BENCHMARKS.md): `vfpool serve` with both plugins on a
//! simulated host of 8 PFs x 128 VFs, against the kubelet and API-server stand-ins of
//! crates/k8s/tests/support.
//!
//!     cargo build --release -p vfpool
//!     cargo run --release -p vfpool --example k8s_bench -- \
//!         --vfpool target/release/vfpool [--starts 5] [--splits 6] [--claims 50]
//!
//! Measures, from the daemon's spawn: the first ListAndWatch answer (the kubelet stand-in
//! gets the registration, connects, calls ListAndWatch) and the first complete ResourceSlice
//! publication (all 1024 devices on the stand-in); from a split's return (made by this
//! process, as the CLI would): the updated ListAndWatch answer and ResourceSlices;
//! NodePrepareResources and NodeUnprepareResources latency (one claim of one VF with a VLAN
//! per call); the daemon's RSS with both plugins serving.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../../k8s/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::Kubelet;
use support::apiserver::{ApiServer, NODE, kubeconfig, serve_url};
use vfpool_engine::{Host, HostConfig, Policy, SplitRequest};
use vfpool_k8s::proto::deviceplugin as dp;
use vfpool_k8s::proto::deviceplugin::device_plugin_client::DevicePluginClient;
use vfpool_k8s::proto::dra as pb;
use vfpool_k8s::proto::dra::dra_plugin_client::DraPluginClient;
use vfpool_k8s::{device_name, uds};
use vfpool_sim::{HostSpec, SimHost};

struct Args {
    vfpool: PathBuf,
    starts: usize,
    splits: usize,
    claims: usize,
}

fn args() -> Args {
    let mut a = Args {
        vfpool: PathBuf::from("target/release/vfpool"),
        starts: 5,
        splits: 6,
        claims: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--vfpool" => a.vfpool = v.into(),
            "--starts" => a.starts = v.parse().expect("--starts: a number"),
            "--splits" => a.splits = v.parse().expect("--splits: a number"),
            "--claims" => a.claims = v.parse().expect("--claims: a number"),
            _ => panic!("unknown option {k} (--vfpool PATH, --starts N, --splits N, --claims N)"),
        }
    }
    a
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(name: &str, v: &mut [f64]) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        v[0],
        p(0.5),
        p(0.9),
        v[v.len() - 1],
        v.len()
    );
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

struct Bench {
    a: Args,
    sys: PathBuf,
    state: PathBuf,
    kubelet_root: PathBuf,
    cdi: PathBuf,
    kc: PathBuf,
}

impl Bench {
    fn spawn(&self) -> Daemon {
        if std::env::var_os("K8S_BENCH_LOG").is_some() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            eprintln!("spawn at {}.{:06} (unix)", t.as_secs(), t.subsec_micros());
        }
        Daemon(
            Command::new(&self.a.vfpool)
                .arg("--sysfs-root")
                .arg(&self.sys)
                .arg("--state")
                .arg(&self.state)
                .args(["serve", "--no-tcp", "--socket"])
                .arg(self.state.join("api.sock"))
                .arg("--kubelet-root")
                .arg(&self.kubelet_root)
                .arg("--cdi-dir")
                .arg(&self.cdi)
                .args(["--node-name", NODE, "--device-plugin"])
                .env("KUBECONFIG", &self.kc)
                .env("HOME", self.state.parent().unwrap())
                .env(
                    "VFPOOL_LOG",
                    std::env::var("K8S_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        )
    }
}

fn split(host: &Host, pf: &str, n: u32) {
    host.engine()
        .unwrap()
        .split_nics(
            &SplitRequest {
                nics: vec![pf.to_owned()],
                vfs: n.to_string(),
                autoprobe: None,
                timeout: Duration::from_secs(600),
                force: false,
                keep_link: false,
            },
            &|_, _, _| {},
        )
        .unwrap();
}

fn vfs_of(sys: &Path, pf: &str) -> Vec<vfpool_model::PciAddr> {
    (0..)
        .map_while(|i| {
            std::fs::read_link(sys.join(format!("class/net/{pf}/device/virtfn{i}"))).ok()
        })
        .map(|l| l.file_name().unwrap().to_str().unwrap().parse().unwrap())
        .collect()
}

async fn first_list(
    dir: &Path,
    kubelet: &mut Kubelet,
) -> tonic::Streaming<dp::ListAndWatchResponse> {
    let r = kubelet.next_registration().await;
    let ch = uds::connect(&dir.join(&r.endpoint)).await.unwrap();
    DevicePluginClient::new(ch)
        .list_and_watch(dp::Empty {})
        .await
        .unwrap()
        .into_inner()
}

/// The devices published for the node (cheap: no check of the bodies, which the stand-in
/// did when they were written).
fn published(api: &ApiServer) -> usize {
    let st = api.0.lock().unwrap();
    st.slices
        .values()
        .filter(|v| v["spec"]["nodeName"] == NODE)
        .map(|v| v["spec"]["devices"].as_array().map_or(0, Vec::len))
        .sum()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(60), "{what} in time");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let shm = tempfile::Builder::new()
        .prefix("vfpool-k8s-bench-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let disk = tempfile::Builder::new()
        .prefix("vfpool-k8s-bench-")
        .tempdir()
        .unwrap();
    let root = shm.path().join("host");
    SimHost::open_or_create(&root, &HostSpec::large(8, 128)).unwrap();
    let sys = root.join("sys");
    let state = disk.path().join("state");
    let host = Host::open(&HostConfig {
        sysfs_root: Some(sys.clone()),
        state: Some(state.clone()),
        ..Default::default()
    })
    .unwrap();
    let pfs: Vec<String> = (1..=8).map(|i| format!("ens{i}f0")).collect();
    let t = Instant::now();
    for pf in &pfs {
        split(&host, pf, 128);
    }
    eprintln!("split 8 x 128 VFs in {:.1} s", t.elapsed().as_secs_f64());
    let mut e = host.engine().unwrap();
    e.pool_create(
        "bench",
        pfs.iter().map(|p| p.parse().unwrap()).collect(),
        Policy::FirstFit,
    )
    .unwrap();
    e.apply_boot(None, Duration::from_secs(600), false).unwrap();
    drop(e);
    let b = Bench {
        sys: sys.clone(),
        state: state.clone(),
        kubelet_root: shm.path().join("kubelet"),
        cdi: shm.path().join("cdi"),
        kc: disk.path().join("kubeconfig"),
        a,
    };
    let dpdir = b.kubelet_root.join("device-plugins");

    println!("| what | min ms | p50 ms | p90 ms | max ms | n |");
    println!("| --- | --- | --- | --- | --- | --- |");

    // Start: each run with a fresh kubelet and a fresh API server (nothing published yet).
    let (mut to_list, mut to_slices) = (Vec::new(), Vec::new());
    for _ in 0..b.a.starts {
        let api = ApiServer::default();
        kubeconfig(&b.kc, &serve_url(&api).await);
        let mut kubelet = Kubelet::start(&dpdir);
        let t = Instant::now();
        let d = b.spawn();
        let mut s = first_list(&dpdir, &mut kubelet).await;
        let first = s.message().await.unwrap().unwrap();
        to_list.push(ms(t.elapsed()));
        assert_eq!(first.devices.len(), 1024);
        wait_until("the first slices", || published(&api) == 1024).await;
        to_slices.push(ms(t.elapsed()));
        drop(d);
        kubelet.stop();
    }
    summary(
        "spawn -> first ListAndWatch answer (1024 devices)",
        &mut to_list,
    );
    summary(
        "spawn -> first ResourceSlices complete (1024 devices, 8 slices)",
        &mut to_slices,
    );

    // Splits, and the rest, on one daemon.
    let api = ApiServer::default();
    kubeconfig(&b.kc, &serve_url(&api).await);
    let mut kubelet = Kubelet::start(&dpdir);
    let d = b.spawn();
    let pid = d.0.id();
    let mut s = first_list(&dpdir, &mut kubelet).await;
    s.message().await.unwrap().unwrap();
    wait_until("the first slices", || published(&api) == 1024).await;
    let (mut split_list, mut split_slices, mut split_took) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..b.a.splits {
        let n = if i % 2 == 0 { 64 } else { 128 };
        let want = 1024 - 128 + n as usize;
        let t0 = Instant::now();
        split(&host, "ens8f0", n);
        let t = Instant::now();
        split_took.push(ms(t.duration_since(t0)));
        loop {
            let m = s.message().await.unwrap().unwrap();
            if m.devices.len() == want {
                break;
            }
        }
        split_list.push(ms(t.elapsed()));
        wait_until("the split in the slices", || published(&api) == want).await;
        split_slices.push(ms(t.elapsed()));
    }
    summary(
        "the split itself (ens8f0 128 <-> 64 VFs, for scale)",
        &mut split_took,
    );
    summary(
        "split returned -> updated ListAndWatch answer",
        &mut split_list,
    );
    summary(
        "split returned -> updated ResourceSlices",
        &mut split_slices,
    );

    // NodePrepareResources / NodeUnprepareResources: one claim of one VF with a VLAN each.
    let vfs = vfs_of(&sys, "ens1f0");
    for (i, vf) in vfs.iter().take(b.a.claims).enumerate() {
        let uid = format!("bench-{i}");
        let v = json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {},
            "status": {"allocation": {"devices": {
                "results": [{"request": "nic", "driver": "vfpool.io", "pool": NODE,
                             "device": device_name(*vf)}],
                "config": [{"source": "FromClaim",
                            "opaque": {"driver": "vfpool.io",
                                       "parameters": {"vlan": 100 + i}}}]}}}
        });
        api.0
            .lock()
            .unwrap()
            .claims
            .insert(("default".into(), uid), v);
    }
    let mut dra = DraPluginClient::new(
        uds::connect(&b.kubelet_root.join("plugins/vfpool.io/dra.sock"))
            .await
            .unwrap(),
    );
    let claim = |uid: &str| pb::Claim {
        namespace: "default".into(),
        uid: uid.into(),
        name: uid.into(),
    };
    let (mut prep, mut unprep) = (Vec::new(), Vec::new());
    let mut rss_serving = 0;
    for i in 0..b.a.claims.min(vfs.len()) {
        let uid = format!("bench-{i}");
        let t = Instant::now();
        let r = dra
            .node_prepare_resources(pb::NodePrepareResourcesRequest {
                claims: vec![claim(&uid)],
            })
            .await
            .unwrap()
            .into_inner();
        prep.push(ms(t.elapsed()));
        assert_eq!(r.claims[&uid].error, "");
        rss_serving = rss_serving.max(status_kib(pid, "VmRSS:"));
    }
    for i in 0..b.a.claims.min(vfs.len()) {
        let uid = format!("bench-{i}");
        let t = Instant::now();
        let r = dra
            .node_unprepare_resources(pb::NodeUnprepareResourcesRequest {
                claims: vec![claim(&uid)],
            })
            .await
            .unwrap()
            .into_inner();
        unprep.push(ms(t.elapsed()));
        assert_eq!(r.claims[&uid].error, "");
    }
    summary(
        "NodePrepareResources, 1 claim of 1 VF with a VLAN",
        &mut prep,
    );
    summary("NodeUnprepareResources, same", &mut unprep);
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!();
    println!(
        "daemon RSS with both plugins serving 1024 VFs: now {:.1} MiB, largest during prepares {:.1} MiB, high-water {:.1} MiB",
        status_kib(pid, "VmRSS:") as f64 / 1024.0,
        rss_serving as f64 / 1024.0,
        status_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    assert!(api.rejected().is_empty(), "{:?}", api.rejected());
    drop(d);
    kubelet.stop();
}
