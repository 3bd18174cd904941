//! The DRA plugin's claim source over the API server ([`KubeClaims`]) against the API-server
//! stand-in (`support::apiserver`) serving a ResourceClaim as a Kubernetes 1.34 API server
//! returns it (`tests/data/resourceclaim-v1.34.json`: from a pod's claim template, two
//! requests, a device of vfpool and one of another driver, opaque configurations from the
//! class and from the claim), then the whole path: the kubelet's NodePrepareResources on the
//! DRA socket, the claim read from the stand-in, the VF leased with the merged settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::resource::v1::ResourceClaim;
use serde_json::{Value, json};
use support::Lab;
use support::apiserver::{ApiServer, serve};
use vfpool_k8s::dra::dra_socket;
use vfpool_k8s::proto::dra as pb;
use vfpool_k8s::proto::dra::dra_plugin_client::DraPluginClient;
use vfpool_k8s::{AllocatedDevice, ClaimRef, ClaimSource, KubeClaims, device_name, uds};

const UID: &str = "3c9a1f52-77e0-4d1b-a8c4-2f0b9e6d5a13";
const NS: &str = "shop";
const NAME: &str = "web-0-sriov-7xk2p";

fn fixture() -> Value {
    serde_json::from_str(include_str!("data/resourceclaim-v1.34.json")).unwrap()
}

fn want() -> ClaimRef {
    ClaimRef {
        namespace: NS.into(),
        uid: UID.into(),
        name: NAME.into(),
    }
}

async fn standin(claim: Value) -> (ApiServer, KubeClaims) {
    let api = ApiServer::default();
    api.0
        .lock()
        .unwrap()
        .claims
        .insert((NS.into(), NAME.into()), claim);
    let client = serve(&api).await;
    (api, KubeClaims::new(client, "vfpool.io"))
}

#[test]
fn the_fixture_is_a_1_34_resource_claim() {
    let v = fixture();
    let rc: ResourceClaim = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&rc).unwrap(),
        v,
        "no field the type lacks"
    );
}

#[tokio::test]
async fn the_devices_of_this_driver_with_the_class_config_then_the_claims() {
    let (api, claims) = standin(fixture()).await;
    let got = claims.allocation(want()).await.unwrap();
    assert_eq!(
        got,
        vec![AllocatedDevice {
            request: "nic".into(),
            pool: "worker-1".into(),
            device: "vf-0000-05-10-0".into(),
            configs: vec![
                json!({"vlan": 7, "trust": true}),
                json!({"vlan": 100, "spoofchk": true}),
            ],
        }]
    );
    assert_eq!(api.0.lock().unwrap().claim_reads, 1);
}

#[tokio::test]
async fn a_config_for_another_request_does_not_apply() {
    let mut v = fixture();
    v["status"]["allocation"]["devices"]["config"][0]["requests"] = json!(["other"]);
    let (_api, claims) = standin(v).await;
    let got = claims.allocation(want()).await.unwrap();
    assert_eq!(got[0].configs, vec![json!({"vlan": 7, "trust": true})]);
}

#[tokio::test]
async fn a_claim_made_again_missing_unallocated_or_odd_is_one_line() {
    let (_api, claims) = standin(fixture()).await;
    let mut other = want();
    other.uid = "0000".into();
    assert_eq!(
        claims.allocation(other).await.unwrap_err(),
        format!("resourceclaim {NS}/{NAME} has uid '{UID}', not '0000' (deleted and made again?)")
    );
    let mut missing = want();
    missing.name = "gone".into();
    let e = claims.allocation(missing).await.unwrap_err();
    assert!(
        e.starts_with(&format!("cannot get resourceclaim {NS}/gone: ")) && e.contains("not found"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");

    let mut v = fixture();
    v["status"].as_object_mut().unwrap().remove("allocation");
    let (_api, claims) = standin(v).await;
    assert_eq!(
        claims.allocation(want()).await.unwrap_err(),
        format!("resourceclaim {NS}/{NAME} is not allocated")
    );

    let mut v = fixture();
    v["status"]["allocation"]["devices"]["results"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let (_api, claims) = standin(v).await;
    assert_eq!(
        claims.allocation(want()).await.unwrap_err(),
        format!("resourceclaim {NS}/{NAME} has no device of driver vfpool.io allocated")
    );

    let mut v = fixture();
    v["status"]["allocation"]["devices"]["config"][1]["source"] = json!("FromPod");
    let (_api, claims) = standin(v).await;
    assert_eq!(
        claims.allocation(want()).await.unwrap_err(),
        format!(
            "resourceclaim {NS}/{NAME}: invalid status.allocation.devices.config[1].source 'FromPod': FromClass or FromClaim"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_prepare_reads_the_claim_from_the_api_server_and_applies_its_settings() {
    let lab = Lab::new(true);
    let vf = lab.vf("eno50", 1);
    let mut v = fixture();
    v["status"]["allocation"]["devices"]["results"][1]["device"] = json!(device_name(vf));
    let (_api, claims) = standin(v).await;
    let (tx, rx) = tokio::sync::watch::channel(0);
    let task = tokio::spawn(vfpool_k8s::run_dra_plugin(
        lab.cfg.clone(),
        lab.host.clone(),
        rx,
        Arc::new(claims),
    ));
    let sock = dra_socket(&lab.cfg);
    tokio::time::timeout(support::WAIT, async {
        while !sock.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let mut c = DraPluginClient::new(uds::connect(&sock).await.unwrap());
    let r = c
        .node_prepare_resources(pb::NodePrepareResourcesRequest {
            claims: vec![pb::Claim {
                namespace: NS.into(),
                uid: UID.into(),
                name: NAME.into(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let got = &r.claims[UID];
    assert_eq!(got.error, "");
    assert_eq!(got.devices.len(), 1);
    assert_eq!(got.devices[0].device_name, device_name(vf));
    assert_eq!(got.devices[0].request_names, ["nic"]);
    let cfg = lab
        .host
        .netops()
        .unwrap()
        .vf_configs("eno50")
        .unwrap()
        .into_iter()
        .find(|(i, _)| *i == 1)
        .unwrap()
        .1;
    assert_eq!(cfg.vlan, 100, "the claim's config over the class's");
    assert_eq!(cfg.trust, Some(true), "the class's config kept");
    let leases = lab.engine().leases().unwrap();
    assert!(
        leases
            .iter()
            .any(|l| l.vf_pci == vf && l.owner == vfpool_k8s::dra_owner(UID, &device_name(vf))),
        "{leases:?}"
    );
    drop(tx);
    task.await.unwrap().unwrap();
}
