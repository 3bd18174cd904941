//! The DRA kubelet plugin against a kubelet stand-in speaking the real pluginregistration
//! v1 and DRA v1 protos over unix sockets, on the demo host; claims' allocations come from
//! a stand-in for the API server ([`ClaimSource`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Lab, WAIT};
use tokio::sync::watch;
use vfpool_k8s::dra::{dra_socket, registration_socket};
use vfpool_k8s::proto::dra as pb;
use vfpool_k8s::proto::dra::dra_plugin_client::DraPluginClient;
use vfpool_k8s::proto::pluginregistration as reg;
use vfpool_k8s::proto::pluginregistration::registration_client::RegistrationClient;
use vfpool_k8s::{
    AllocatedDevice, BoxFuture, ClaimRef, ClaimSource, device_name, run_dra_plugin, uds,
};
use vfpool_model::PciAddr;

/// The API server stand-in: allocations by claim UID.
#[derive(Default)]
struct Claims(Mutex<HashMap<String, Result<Vec<AllocatedDevice>, String>>>);

impl ClaimSource for Claims {
    fn allocation(&self, claim: ClaimRef) -> BoxFuture<'_, Result<Vec<AllocatedDevice>, String>> {
        let r = self
            .0
            .lock()
            .unwrap()
            .get(&claim.uid)
            .cloned()
            .unwrap_or_else(|| Err(format!("resourceclaims \"{}\" not found", claim.name)));
        Box::pin(async move { r })
    }
}

impl Claims {
    fn set(&self, uid: &str, devices: &[(PciAddr, Value)]) {
        let d = devices
            .iter()
            .map(|(vf, config)| AllocatedDevice {
                request: "vf".into(),
                pool: "node-1".into(),
                device: device_name(*vf),
                configs: vec![config.clone()],
            })
            .collect();
        self.0.lock().unwrap().insert(uid.into(), Ok(d));
    }
}

struct Dra {
    lab: Lab,
    claims: Arc<Claims>,
    stop: Option<watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

fn start(lab: &Lab, claims: &Arc<Claims>) -> (watch::Sender<u64>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(0);
    let (cfg, host, c) = (
        lab.cfg.clone(),
        lab.host.clone(),
        claims.clone() as Arc<dyn ClaimSource>,
    );
    let task = tokio::spawn(async move { run_dra_plugin(cfg, host, rx, c).await.unwrap() });
    (tx, task)
}

async fn wait_for(path: &std::path::Path) {
    tokio::time::timeout(WAIT, async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the socket in time");
}

impl Dra {
    async fn new(apply: bool) -> Self {
        let lab = Lab::new(apply);
        let claims = Arc::new(Claims::default());
        let (stop, task) = start(&lab, &claims);
        wait_for(&dra_socket(&lab.cfg)).await;
        wait_for(&registration_socket(&lab.cfg)).await;
        Dra {
            lab,
            claims,
            stop: Some(stop),
            task,
        }
    }

    async fn client(&self) -> DraPluginClient<tonic::transport::Channel> {
        DraPluginClient::new(uds::connect(&dra_socket(&self.lab.cfg)).await.unwrap())
    }

    /// Stops the plugin (the daemon exits) and waits for it.
    async fn stop(&mut self) {
        drop(self.stop.take());
        (&mut self.task).await.unwrap();
    }

    async fn prepare(&self, uid: &str) -> pb::NodePrepareResourceResponse {
        let r = self
            .client()
            .await
            .node_prepare_resources(pb::NodePrepareResourcesRequest {
                claims: vec![claim(uid)],
            })
            .await
            .unwrap()
            .into_inner();
        r.claims[uid].clone()
    }

    async fn unprepare(&self, uid: &str) -> String {
        let r = self
            .client()
            .await
            .node_unprepare_resources(pb::NodeUnprepareResourcesRequest {
                claims: vec![claim(uid)],
            })
            .await
            .unwrap()
            .into_inner();
        r.claims[uid].error.clone()
    }

    fn vlan(&self, pf: &str, index: u16) -> u16 {
        let net = self.lab.host.netops().unwrap();
        net.vf_configs(pf)
            .unwrap()
            .into_iter()
            .find(|(i, _)| *i == index)
            .unwrap()
            .1
            .vlan
    }

    fn owners(&self) -> Vec<(String, PciAddr)> {
        self.lab
            .engine()
            .leases()
            .unwrap()
            .into_iter()
            .map(|l| (l.owner, l.vf_pci))
            .collect()
    }

    fn spec(&self, uid: &str) -> PathBuf {
        vfpool_k8s::cdi::spec_path(&self.lab.cfg.cdi_dir, &self.lab.cfg.driver_name, uid)
    }
}

fn claim(uid: &str) -> pb::Claim {
    pb::Claim {
        namespace: "default".into(),
        uid: uid.into(),
        name: format!("claim-{uid}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_as_a_dra_plugin() {
    let d = Dra::new(true).await;
    let mut c = RegistrationClient::new(
        uds::connect(&registration_socket(&d.lab.cfg))
            .await
            .unwrap(),
    );
    let info = c.get_info(reg::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.r#type, "DRAPlugin");
    assert_eq!(info.name, "vfpool.io");
    assert_eq!(PathBuf::from(&info.endpoint), dra_socket(&d.lab.cfg));
    assert!(
        info.endpoint
            .ends_with("kubelet/plugins/vfpool.io/dra.sock"),
        "{}",
        info.endpoint
    );
    assert_eq!(info.supported_versions, ["v1.DRAPlugin"]);
    c.notify_registration_status(reg::RegistrationStatus {
        plugin_registered: true,
        error: String::new(),
    })
    .await
    .unwrap();

    // A kubelet that cleans its registry directory: the socket is made again.
    std::fs::remove_file(registration_socket(&d.lab.cfg)).unwrap();
    wait_for(&registration_socket(&d.lab.cfg)).await;
    let mut c = RegistrationClient::new(
        uds::connect(&registration_socket(&d.lab.cfg))
            .await
            .unwrap(),
    );
    assert_eq!(
        c.get_info(reg::InfoRequest {})
            .await
            .unwrap()
            .into_inner()
            .name,
        "vfpool.io"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_applies_the_claims_vlan_and_unprepare_gives_it_back() {
    let d = Dra::new(true).await;
    let vf = d.lab.vf("eno49", 1);
    d.claims
        .set("u1", &[(vf, json!({"vlan": 100, "qos": 2, "trust": "on"}))]);
    let r = d.prepare("u1").await;
    assert_eq!(r.error, "");
    let dev = &r.devices[0];
    assert_eq!(dev.device_name, device_name(vf));
    assert_eq!(
        (dev.pool_name.as_str(), dev.request_names.as_slice()),
        ("node-1", &["vf".to_owned()][..])
    );
    let id = format!("vfpool.io/vf=u1-{}", device_name(vf));
    assert_eq!(dev.cdi_device_ids, [id]);
    assert_eq!(d.vlan("eno49", 1), 100, "the VLAN on the VF");
    assert_eq!(d.owners(), [(format!("dra/u1/{}", device_name(vf)), vf)]);
    let spec: Value = serde_json::from_slice(&std::fs::read(d.spec("u1")).unwrap()).unwrap();
    assert_eq!(spec["kind"], "vfpool.io/vf");
    assert_eq!(
        spec["devices"][0]["name"],
        format!("u1-{}", device_name(vf))
    );
    let env = spec["devices"][0]["containerEdits"]["env"][0]
        .as_str()
        .unwrap();
    assert_eq!(
        env,
        format!(
            "VFPOOL_PCI_{}={vf}",
            device_name(vf).to_uppercase().replace('-', "_")
        )
    );

    // Again for the same claim: the same answer, the same lease (not made again).
    let lease = d.lab.engine().leases().unwrap();
    let again = d.prepare("u1").await;
    assert_eq!(again, r);
    assert_eq!(d.lab.engine().leases().unwrap(), lease);

    // Another claim naming the same VF: refused for that claim, the first untouched.
    d.claims.set("u2", &[(vf, json!({"vlan": 200}))]);
    let r2 = d.prepare("u2").await;
    assert!(r2.devices.is_empty());
    assert!(
        r2.error.contains("claim default/claim-u2 (u2)")
            && r2.error.contains(&format!("dra/u1/{}", device_name(vf))),
        "{}",
        r2.error
    );
    assert_eq!(d.vlan("eno49", 1), 100);

    // Unprepare: released (the VLAN back to none), the spec gone; again is fine.
    assert_eq!(d.unprepare("u1").await, "");
    assert_eq!(d.vlan("eno49", 1), 0);
    assert!(d.owners().is_empty());
    assert!(!d.spec("u1").exists());
    assert_eq!(d.unprepare("u1").await, "");
    // Now the other claim can have it.
    assert_eq!(d.prepare("u2").await.error, "");
    assert_eq!(d.vlan("eno49", 1), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_all_or_nothing_and_bad_input_is_one_line() {
    let d = Dra::new(true).await;
    let (a, b) = (d.lab.vf("eno49", 0), d.lab.vf("eno49", 1));
    // The second device's config is bad: nothing leased, the CLI's line.
    d.claims.set(
        "u3",
        &[(a, json!({"vlan": 10})), (b, json!({"vlan": 5000}))],
    );
    let r = d.prepare("u3").await;
    assert!(
        r.error.ends_with(&format!(
            "device {}: invalid vlan '5000': 0..=4094",
            device_name(b)
        )),
        "{}",
        r.error
    );
    assert!(d.owners().is_empty());
    // The second VF is leased to someone else: the first is given back.
    let mut m = vfpool_engine::AcquireRequest::new("gold", "admin");
    m.vf = Some(b);
    d.lab.engine().acquire(&m).unwrap();
    d.claims
        .set("u3", &[(a, json!({"vlan": 10})), (b, json!({}))]);
    let r = d.prepare("u3").await;
    assert!(r.error.contains("admin"), "{}", r.error);
    assert_eq!(d.owners(), [("admin".to_owned(), b)]);
    assert_eq!(d.vlan("eno49", 0), 0, "rolled back");
    assert!(!d.spec("u3").exists());
    // A device name that is no VF name; a VF that does not exist; an unknown claim; a bad uid.
    d.claims.0.lock().unwrap().insert(
        "u4".into(),
        Ok(vec![AllocatedDevice {
            request: "vf".into(),
            pool: "node-1".into(),
            device: "gpu-0".into(),
            configs: vec![],
        }]),
    );
    assert!(
        d.prepare("u4")
            .await
            .error
            .contains("invalid device 'gpu-0'")
    );
    d.claims
        .set("u5", &[("0000:99:00.1".parse().unwrap(), json!({}))]);
    let e = d.prepare("u5").await.error;
    assert!(e.contains("0000:99:00.1"), "{e}");
    let e = d.prepare("nope").await.error;
    assert!(
        e.contains("cannot read its allocation: resourceclaims \"claim-nope\" not found"),
        "{e}"
    );
    let e = d.prepare("a/b").await.error;
    assert!(e.starts_with("invalid claim uid 'a/b'"), "{e}");
    assert!(
        d.unprepare("a/b")
            .await
            .starts_with("invalid claim uid 'a/b'")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_prepared_until_host_apply_has_run_since_boot() {
    let d = Dra::new(false).await;
    let vf = d.lab.vf("eno49", 0);
    d.claims.set("u6", &[(vf, json!({}))]);
    let e = d.prepare("u6").await.error;
    assert!(e.contains("host apply has not run since boot"), "{e}");
    assert!(d.owners().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_prepared_before_a_restart_is_still_prepared_after_it() {
    let mut d = Dra::new(true).await;
    let vf = d.lab.vf("eno50", 0);
    d.claims
        .set("u7", &[(vf, json!({"vlan": 42, "driver": "vfio-pci"}))]);
    let before = d.prepare("u7").await;
    assert_eq!(before.error, "");
    let spec: Value = serde_json::from_slice(&std::fs::read(d.spec("u7")).unwrap()).unwrap();
    let nodes = &spec["devices"][0]["containerEdits"]["deviceNodes"];
    assert_eq!(nodes[0]["path"], "/dev/vfio/vfio", "{spec}");
    assert!(
        nodes[1]["path"].as_str().unwrap().starts_with("/dev/vfio/"),
        "{spec}"
    );
    let lease = d.lab.engine().leases().unwrap();

    // The daemon stops: its sockets go with it (the kubelet deregisters the plugin, and a
    // client waiting for the socket never finds one nobody serves); the CDI directory (a
    // tmpfs) is lost.
    d.stop().await;
    assert!(!dra_socket(&d.lab.cfg).exists());
    assert!(!registration_socket(&d.lab.cfg).exists());
    std::fs::remove_file(d.spec("u7")).unwrap();
    let (stop, task) = start(&d.lab, &d.claims);
    d.stop = Some(stop);
    d.task = task;
    wait_for(&d.spec("u7")).await;
    wait_for(&dra_socket(&d.lab.cfg)).await;
    let again: Value = serde_json::from_slice(&std::fs::read(d.spec("u7")).unwrap()).unwrap();
    assert_eq!(again, spec, "the spec written again from the ledger");
    assert_eq!(d.prepare("u7").await, before);
    assert_eq!(d.lab.engine().leases().unwrap(), lease, "the same lease");
    assert_eq!(d.vlan("eno50", 0), 42);
    assert_eq!(d.unprepare("u7").await, "");
    assert_eq!(d.vlan("eno50", 0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdi_spec_that_cannot_be_written_or_removed_is_the_claims_error() {
    let d = Dra::new(true).await;
    let vf = d.lab.vf("eno49", 0);
    // The spec's path is taken by a directory: it can be neither written nor removed.
    let spec = d.spec("u8");
    std::fs::create_dir_all(spec.join("x")).unwrap();
    d.claims.set("u8", &[(vf, json!({"vlan": 7}))]);
    let e = d.prepare("u8").await.error;
    assert!(e.contains("cannot install the CDI spec"), "{e}");
    assert!(d.owners().is_empty(), "the lease rolled back");
    assert_eq!(d.vlan("eno49", 0), 0);

    // Prepared while the path was free, then it is taken: unprepare releases the VF and
    // reports the spec it could not remove.
    std::fs::remove_dir_all(&spec).unwrap();
    assert_eq!(d.prepare("u8").await.error, "");
    std::fs::remove_file(&spec).unwrap();
    std::fs::create_dir_all(spec.join("x")).unwrap();
    let e = d.unprepare("u8").await;
    assert!(e.contains("cannot remove the CDI spec"), "{e}");
    assert!(d.owners().is_empty(), "released all the same");
}

/// The daemon died during NodePrepareResources: the claim's lease is left `acquiring` (its
/// VF half configured). The kubelet calls again; the lease is rolled back and made anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_half_prepared_by_a_dead_process_is_prepared_again() {
    let d = Dra::new(true).await;
    let vf = d.lab.vf("eno49", 0);
    let owner = vfpool_k8s::dra_owner("u9", &device_name(vf));
    let mut a = vfpool_engine::AcquireRequest::new("gold", &owner);
    a.vf = Some(vf);
    a.settings.vlan = Some(5);
    let mut e = d.lab.engine();
    let half = e.acquire(&a).unwrap();
    e.ledger()
        .write(vfpool_engine::Durability::Synced, |tx| {
            tx.transition(
                half.id,
                &[vfpool_engine::LeaseState::Active],
                vfpool_engine::LeaseState::Acquiring,
                None,
            )
        })
        .unwrap();
    assert_eq!(d.vlan("eno49", 0), 5);

    d.claims.set("u9", &[(vf, json!({"vlan": 100}))]);
    assert_eq!(d.prepare("u9").await.error, "");
    let leases = d.lab.engine().leases().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (leases[0].owner.as_str(), leases[0].state),
        (owner.as_str(), vfpool_engine::LeaseState::Active)
    );
    assert_ne!(leases[0].id, half.id, "made anew");
    assert_eq!(d.vlan("eno49", 0), 100);
}
