//! ResourceSlice publication against the API-server stand-in (`support::apiserver`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::json;
use tokio::sync::watch;
use vfpool_engine::{Engine, Host, HostConfig, SplitRequest};
use vfpool_k8s::{Backoff, SliceConfig, run_slice_publisher, run_slice_publisher_gated};

mod support;

use support::apiserver::*;

// ---- the host ---------------------------------------------------------------------------

struct Demo {
    _dir: tempfile::TempDir,
    host: Arc<Host>,
}

impl Demo {
    /// The demo host, `host apply` run.
    fn new() -> Self {
        let demo = Self::before_apply();
        demo.apply();
        demo
    }

    fn apply(&self) {
        self.engine()
            .apply_boot(None, Duration::from_secs(5), false)
            .unwrap();
    }

    fn before_apply() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::open(&HostConfig {
            demo: true,
            state: Some(dir.path().to_owned()),
            ..Default::default()
        })
        .unwrap();
        Demo {
            _dir: dir,
            host: Arc::new(host),
        }
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

    fn vfs_of(&self, nic: &str) -> BTreeSet<String> {
        self.engine()
            .host()
            .unwrap()
            .vfs
            .values()
            .filter(|v| v.pf.name == nic)
            .map(|v| vfpool_k8s::device_name(v.pci))
            .collect()
    }
}

fn cfg() -> SliceConfig {
    let mut c = SliceConfig::new("vfpool.io", NODE).unwrap();
    c.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(80),
    };
    c
}

struct Publisher {
    changes: watch::Sender<u64>,
    task: tokio::task::JoinHandle<Result<(), vfpool_k8s::SliceError>>,
}

impl Publisher {
    fn start(demo: &Demo, client: kube::Client) -> Self {
        Self::start_with(demo, client, cfg(), None)
    }

    /// With `gate`: [`run_slice_publisher_gated`].
    fn start_with(
        demo: &Demo,
        client: kube::Client,
        cfg: SliceConfig,
        gate: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    ) -> Self {
        let (changes, rx) = watch::channel(0);
        let host = demo.host.clone();
        let task = match gate {
            None => tokio::spawn(run_slice_publisher(cfg, host, client, rx)),
            Some(g) => tokio::spawn(run_slice_publisher_gated(cfg, host, client, rx, g)),
        };
        Publisher { changes, task }
    }

    fn bump(&self) {
        self.changes.send_modify(|g| *g += 1);
    }

    async fn stop(self) {
        drop(self.changes);
        let r = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the publisher ends when the change counter's sender goes")
            .unwrap();
        r.unwrap();
    }
}

/// Waits (10 s at most) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn generations(api: &ApiServer) -> Vec<(i64, i64)> {
    api.slices_of(NODE)
        .values()
        .map(|s| (s.spec.pool.generation, s.spec.pool.resource_slice_count))
        .collect()
}

// ---- the scenarios ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_publication_then_a_split_then_vfs_removed_and_unhealthy() {
    let demo = Demo::new();
    demo.split("eno49", 4);
    let api = ApiServer::default();
    // Another node's slice: never touched.
    let mut other = json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": "worker-2-vfpool.io-0"},
        "spec": {"driver": "vfpool.io", "nodeName": "worker-2",
                 "pool": {"name": "worker-2", "generation": 3, "resourceSliceCount": 1},
                 "devices": [{"name": "vf-0000-03-10-0"}]},
    });
    check(&other).unwrap();
    api.put(other.clone());
    let client = serve(&api).await;
    let p = Publisher::start(&demo, client);

    until("the first publication", || {
        api.names_of(NODE) == demo.vfs_of("eno49")
    })
    .await;
    assert_eq!(generations(&api), [(1, 1)]);
    let s = &api.slices_of(NODE)["worker-1-vfpool.io-0"];
    assert_eq!(s.spec.driver, "vfpool.io");
    assert_eq!(s.spec.node_name.as_deref(), Some(NODE));
    assert_eq!(s.spec.pool.name, NODE);
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Node", NODE_UID)
    );

    // A split: the new set at the next generation.
    demo.split("em1", 3);
    p.bump();
    let want: BTreeSet<String> = demo
        .vfs_of("eno49")
        .into_iter()
        .chain(demo.vfs_of("em1"))
        .collect();
    until("the split's VFs", || api.names_of(NODE) == want).await;
    assert_eq!(generations(&api), [(2, 1)]);

    // A bump with nothing changed writes nothing.
    let writes = api.writes();
    p.bump();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.writes(), writes);
    assert_eq!(generations(&api), [(2, 1)]);

    // VFs removed (eno49 from 4 to 2): gone.
    demo.split("eno49", 2);
    p.bump();
    let want: BTreeSet<String> = demo
        .vfs_of("eno49")
        .into_iter()
        .chain(demo.vfs_of("em1"))
        .collect();
    assert_eq!(want.len(), 5);
    until("the removed VFs gone", || api.names_of(NODE) == want).await;
    assert_eq!(generations(&api), [(3, 1)]);

    // em1 down: its VFs are unhealthy, and go.
    demo.host.netops().unwrap().set_up("em1", false).unwrap();
    p.bump();
    until("the unhealthy VFs gone", || {
        api.names_of(NODE) == demo.vfs_of("eno49")
    })
    .await;
    assert_eq!(generations(&api), [(4, 1)]);

    p.stop().await;
    assert!(api.rejected().is_empty(), "{:?}", api.rejected());
    // The other node's slice is as it was.
    let held = api.0.lock().unwrap().slices["worker-2-vfpool.io-0"].clone();
    other["metadata"]["resourceVersion"] = held["metadata"]["resourceVersion"].clone();
    assert_eq!(held, other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_128_vfs_several_slices_with_their_count_and_generation() {
    let demo = Demo::new();
    demo.split("ens1f0np0", 127);
    demo.split("ens1f1np1", 127);
    let api = ApiServer::default();
    let client = serve(&api).await;
    let p = Publisher::start(&demo, client);
    until("254 devices", || api.names_of(NODE).len() == 254).await;
    assert_eq!(generations(&api), [(1, 2), (1, 2)]);
    let sizes: Vec<usize> = api
        .slices_of(NODE)
        .values()
        .map(|s| s.spec.devices.as_ref().unwrap().len())
        .collect();
    assert_eq!(sizes, [128, 126]);

    // Down to one NIC's VFs: one slice, the second deleted (after a failed delete).
    api.0
        .lock()
        .unwrap()
        .faults
        .push_back((Some(Method::DELETE), 500));
    let out = demo
        .engine()
        .restore_nics(&["ens1f1np1".into()], Duration::from_secs(5), false)
        .unwrap();
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    p.bump();
    until("one slice", || api.slices_of(NODE).len() == 1).await;
    assert_eq!(api.names_of(NODE), demo.vfs_of("ens1f0np0"));
    // The failed delete came after the replace at generation 2; the retry bumps again.
    assert_eq!(api.log_of(500), 1);
    assert_eq!(generations(&api), [(3, 1)]);
    p.stop().await;
    assert!(api.rejected().is_empty(), "{:?}", api.rejected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff() {
    let demo = Demo::new();
    demo.split("eno49", 2);
    let api = ApiServer::default();
    {
        let mut st = api.0.lock().unwrap();
        // (kube's client itself retries 429, 503 and 504: these are the publisher's.)
        st.faults.push_back((Some(Method::GET), 502));
        st.faults.push_back((Some(Method::GET), 500));
        st.faults.push_back((Some(Method::POST), 500));
    }
    let client = serve(&api).await;
    let start = Instant::now();
    let p = Publisher::start(&demo, client);
    until("publication after the errors", || {
        api.names_of(NODE) == demo.vfs_of("eno49")
    })
    .await;
    // Three failures, then the retries' delays: 20 + 40 + 80 ms at least.
    assert!(
        start.elapsed() >= Duration::from_millis(140),
        "{:?}",
        start.elapsed()
    );
    assert_eq!((api.log_of(502), api.log_of(500)), (1, 2));
    assert_eq!(generations(&api), [(1, 1)]);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_retried_from_a_new_list() {
    let demo = Demo::new();
    demo.split("eno49", 2);
    let api = ApiServer::default();
    // What an earlier run published: other devices, generation 5.
    api.put(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": "worker-1-vfpool.io-0"},
        "spec": {"driver": "vfpool.io", "nodeName": NODE,
                 "pool": {"name": NODE, "generation": 5, "resourceSliceCount": 2},
                 "devices": [{"name": "vf-0000-99-00-0"}]},
    }));
    api.put(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": "worker-1-vfpool.io-1"},
        "spec": {"driver": "vfpool.io", "nodeName": NODE,
                 "pool": {"name": NODE, "generation": 5, "resourceSliceCount": 2},
                 "devices": [{"name": "vf-0000-99-00-1"}]},
    }));
    api.0
        .lock()
        .unwrap()
        .faults
        .push_back((Some(Method::PUT), 409));
    let client = serve(&api).await;
    let p = Publisher::start(&demo, client);
    until("the current set", || {
        api.names_of(NODE) == demo.vfs_of("eno49") && api.slices_of(NODE).len() == 1
    })
    .await;
    assert_eq!(api.log_of(409), 1);
    // The generation only grows: past the earlier run's 5.
    assert_eq!(generations(&api), [(6, 1)]);
    p.stop().await;
    assert!(api.rejected().is_empty(), "{:?}", api.rejected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_published_before_host_apply_and_a_restart_writes_nothing_new() {
    let demo = Demo::before_apply();
    demo.split("eno49", 3);
    let api = ApiServer::default();
    // A slice left from before the reboot.
    api.put(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": "worker-1-vfpool.io-0"},
        "spec": {"driver": "vfpool.io", "nodeName": NODE,
                 "pool": {"name": NODE, "generation": 2, "resourceSliceCount": 1},
                 "devices": [{"name": "vf-0000-99-00-0"}]},
    }));
    let client = serve(&api).await;
    let p = Publisher::start(&demo, client.clone());
    until("the old slice deleted", || api.slices_of(NODE).is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(api.slices_of(NODE).is_empty());
    // `host apply` ran: the daemon bumps.
    demo.apply();
    p.bump();
    until("the VFs published", || {
        api.names_of(NODE) == demo.vfs_of("eno49")
    })
    .await;
    assert_eq!(generations(&api), [(1, 1)]);
    p.stop().await;

    // A restart over the same host: what is there is current, nothing written.
    let writes = api.writes();
    let reads = api.log_of(200);
    let p = Publisher::start(&demo, client);
    until("the restarted publisher's list", || api.log_of(200) > reads).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.writes(), writes);
    assert_eq!(generations(&api), [(1, 1)]);
    p.stop().await;
}

#[tokio::test]
async fn a_bad_driver_name_stops_the_publisher_with_one_line() {
    let demo = Demo::new();
    let api = ApiServer::default();
    let client = serve(&api).await;
    let mut c = cfg();
    c.driver = "VFPOOL".into();
    let (_tx, rx) = watch::channel(0);
    let run = run_slice_publisher(c, demo.host.clone(), client, rx);
    let e = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("a bad configuration ends the publisher at once")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid driver 'VFPOOL': a lower-case DNS subdomain of at most 63 characters, like vfpool.io"
    );
    assert!(api.0.lock().unwrap().log.is_empty());
}

/// The stand-in's checks refuse what the API server would: they bite.
#[test]
fn the_stand_in_refuses_unknown_fields_and_invalid_slices() {
    let good = json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": "n-vfpool.io-0"},
        "spec": {"driver": "vfpool.io", "nodeName": "n",
                 "pool": {"name": "n", "generation": 1, "resourceSliceCount": 1},
                 "devices": [{"name": "vf-0000-03-10-0",
                              "attributes": {"vfpool.io/vfIndex": {"int": 0}}}]},
    });
    check(&good).unwrap();
    let mut bad = good.clone();
    bad["spec"]["devices"][0]["basic"] = json!({});
    assert!(check(&bad).unwrap_err().contains("does not have"));
    let mut bad = good.clone();
    bad["spec"]["pool"]["generation"] = json!("1");
    assert!(check(&bad).unwrap_err().contains("does not decode"));
    let mut bad = good.clone();
    bad["spec"]["devices"][0]["name"] = json!("0000:03:10.0");
    assert!(check(&bad).unwrap_err().contains("device name"));
    let mut bad = good.clone();
    bad["spec"]["devices"][0]["attributes"]["vfpool.io/vfIndex"] = json!({"int": 0, "string": "0"});
    assert!(check(&bad).unwrap_err().contains("exactly one value"));
    let mut bad = good.clone();
    bad["spec"]["devices"] = json!(
        (0..129)
            .map(|i| json!({"name": format!("d{i}")}))
            .collect::<Vec<_>>()
    );
    assert!(check(&bad).unwrap_err().contains("> 128"));
    let mut bad = good;
    bad["spec"].as_object_mut().unwrap().remove("nodeName");
    assert!(check(&bad).unwrap_err().contains("exactly one of nodeName"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_cannot_be_read_is_tried_again() {
    let demo = Demo::new();
    demo.split("eno49", 2);
    let api = ApiServer::default();
    let client = serve(&api).await;
    // The readiness check panics once (the host read's task fails), then the sysfs tree
    // is missing (the engine's read fails): nothing is written meanwhile.
    let devices = demo.host.fs.path("bus/pci/devices");
    let hidden = devices.with_file_name("devices.hidden");
    std::fs::rename(&devices, &hidden).unwrap();
    let panicked = Arc::new(AtomicBool::new(false));
    let pa = panicked.clone();
    let ready = Arc::new(move || {
        if !pa.swap(true, Ordering::SeqCst) {
            panic!("the readiness check fails once");
        }
        true
    });
    let p = Publisher::start_with(&demo, client, cfg(), Some(ready));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(panicked.load(Ordering::SeqCst));
    assert!(api.0.lock().unwrap().log.is_empty());
    std::fs::rename(&hidden, &devices).unwrap();
    until("publication once the host reads", || {
        api.names_of(NODE) == demo.vfs_of("eno49")
    })
    .await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_node_or_one_without_uid_gets_no_slices() {
    let demo = Demo::new();
    demo.split("eno49", 2);
    for node in ["worker-9", NODE_WITHOUT_UID] {
        let api = ApiServer::default();
        let client = serve(&api).await;
        let mut c = cfg();
        c.node_name = node.into();
        let p = Publisher::start_with(&demo, client, c, None);
        // Listed, the node looked up and refused, tried again: never written.
        until("a retry", || api.log_of(200) >= 2).await;
        assert_eq!(api.writes(), 0, "{node}");
        assert!(api.0.lock().unwrap().slices.is_empty());
        p.stop().await;
    }
}

#[tokio::test]
async fn a_slice_gone_before_its_delete_is_not_an_error() {
    let api = ApiServer::default();
    api.put(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": "worker-1-vfpool.io-0"},
        "spec": {"driver": "vfpool.io", "nodeName": NODE,
                 "pool": {"name": NODE, "generation": 2, "resourceSliceCount": 1},
                 "devices": []},
    }));
    api.0
        .lock()
        .unwrap()
        .faults
        .push_back((Some(Method::DELETE), 404));
    let client = serve(&api).await;
    let done = vfpool_k8s::publish(&cfg(), &client, None).await.unwrap();
    assert_eq!(done, vfpool_k8s::Published::default());
    // Any other status is an error naming the slice.
    api.0
        .lock()
        .unwrap()
        .faults
        .push_back((Some(Method::DELETE), 500));
    let e = vfpool_k8s::publish(&cfg(), &client, None)
        .await
        .unwrap_err();
    assert!(
        vfpool_engine::chain(&e).starts_with("delete ResourceSlice 'worker-1-vfpool.io-0': "),
        "{}",
        vfpool_engine::chain(&e)
    );
    // The next one deletes it.
    let done = vfpool_k8s::publish(&cfg(), &client, None).await.unwrap();
    assert_eq!(done.deleted, 1);
    assert!(api.slices_of(NODE).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_deleted_by_someone_else_is_put_back_at_the_resync() {
    let demo = Demo::new();
    demo.split("eno49", 2);
    let api = ApiServer::default();
    let client = serve(&api).await;
    let mut c = cfg();
    c.resync = Duration::from_millis(200);
    let p = Publisher::start_with(&demo, client, c, None);
    until("the first publication", || api.slices_of(NODE).len() == 1).await;
    api.0.lock().unwrap().slices.clear();
    until("the slice put back", || {
        api.names_of(NODE) == demo.vfs_of("eno49")
    })
    .await;
    // Put back, with no bump of the change counter.
    assert_eq!(generations(&api), [(1, 1)]);
    p.stop().await;
}
