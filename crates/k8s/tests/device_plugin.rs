//! The device plugin against a kubelet stand-in speaking the real v1beta1 protos over unix
//! sockets, on the demo host: registration, ListAndWatch live on `changes`, health,
//! GetPreferredAllocation, Allocate and its ledger reservation, kubelet restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{Kubelet, Lab, WAIT};
use tonic::Code;
use tonic::Streaming;
use vfpool_engine::{AcquireRequest, LeaseState};
use vfpool_k8s::proto::deviceplugin as pb;
use vfpool_k8s::proto::deviceplugin::device_plugin_client::DevicePluginClient;
use vfpool_k8s::{pcidevice_env, run_device_plugins, uds};

type Client = DevicePluginClient<tonic::transport::Channel>;

async fn client(lab: &Lab, endpoint: &str) -> Client {
    DevicePluginClient::new(
        uds::connect(&lab.device_plugins().join(endpoint))
            .await
            .unwrap(),
    )
}

async fn next(
    s: &mut Streaming<pb::ListAndWatchResponse>,
) -> BTreeMap<String, (String, Option<i64>)> {
    let r = tokio::time::timeout(WAIT, s.message())
        .await
        .expect("a ListAndWatch answer in time")
        .unwrap()
        .expect("the stream goes on");
    r.devices
        .into_iter()
        .map(|d| {
            let numa = d.topology.and_then(|t| t.nodes.first().map(|n| n.id));
            (d.id, (d.health, numa))
        })
        .collect()
}

fn start(lab: &Lab) -> tokio::task::JoinHandle<()> {
    let (cfg, host, rx) = (lab.cfg.clone(), lab.host.clone(), lab.changes.subscribe());
    tokio::spawn(async move { run_device_plugins(cfg, host, rx).await.unwrap() })
}

/// Registrations by resource, as many as expected.
async fn registrations(k: &mut Kubelet, n: usize) -> BTreeMap<String, pb::RegisterRequest> {
    let mut out = BTreeMap::new();
    while out.len() < n {
        let r = k.next_registration().await;
        out.insert(r.resource_name.clone(), r);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_each_pool_and_lists_live_with_health() {
    let lab = Lab::new(true);
    let mut k = Kubelet::start(&lab.device_plugins());
    let _p = start(&lab);
    let regs = registrations(&mut k, 2).await;
    let gold = &regs["vfpool.io/gold"];
    assert_eq!(gold.version, "v1beta1");
    assert_eq!(gold.endpoint, "vfpool-gold.sock");
    assert!(
        gold.options
            .as_ref()
            .unwrap()
            .get_preferred_allocation_available
    );
    assert_eq!(regs["vfpool.io/silver"].endpoint, "vfpool-silver.sock");

    let mut c = client(&lab, "vfpool-gold.sock").await;
    let opts = c
        .get_device_plugin_options(pb::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert!(opts.get_preferred_allocation_available && !opts.pre_start_required);
    let mut s = c.list_and_watch(pb::Empty {}).await.unwrap().into_inner();
    let first = next(&mut s).await;
    assert_eq!(first.len(), 6, "eno49's 2 and ens1f0np0's 4: {first:?}");
    assert!(first.values().all(|(h, _)| h == "Healthy"), "{first:?}");
    assert_eq!(first[&lab.vf("eno49", 0).to_string()].1, Some(0));
    assert_eq!(first[&lab.vf("ens1f0np0", 3).to_string()].1, Some(1));

    // A split seen without a restart, as soon as the daemon says something changed.
    lab.split(&["eno49"], 4);
    lab.bump();
    let after = next(&mut s).await;
    assert_eq!(after.len(), 8, "{after:?}");
    assert!(after.contains_key(&lab.vf("eno49", 3).to_string()));

    // eno49 loses carrier: its VFs are unhealthy, the others not.
    let operstate = lab.host.fs.path("class/net/eno49/operstate");
    std::fs::write(&operstate, "down\n").unwrap();
    lab.bump();
    let down = next(&mut s).await;
    for i in 0..4 {
        assert_eq!(
            down[&lab.vf("eno49", i).to_string()].0,
            "Unhealthy",
            "{down:?}"
        );
    }
    assert_eq!(down[&lab.vf("ens1f0np0", 0).to_string()].0, "Healthy");

    // A VF leased outside Kubernetes (by hand) cannot be given to a pod: unhealthy.
    std::fs::write(&operstate, "up\n").unwrap();
    let vf = lab.vf("ens1f0np0", 2);
    let mut r = AcquireRequest::new("gold", "admin");
    r.vf = Some(vf);
    lab.engine().acquire(&r).unwrap();
    lab.bump();
    let leased = next(&mut s).await;
    assert_eq!(leased[&vf.to_string()].0, "Unhealthy", "{leased:?}");
    assert_eq!(leased[&lab.vf("eno49", 0).to_string()].0, "Healthy");

    // eno50's VFs vanish (its split undone): silver's list empties at once.
    let mut silver = client(&lab, "vfpool-silver.sock").await;
    let mut ss = silver
        .list_and_watch(pb::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut ss).await.len(), 2);
    lab.engine()
        .restore_nics(&["eno50".to_owned()], Duration::from_secs(5), false)
        .unwrap();
    lab.bump();
    assert!(next(&mut ss).await.is_empty());

    // A new pool gets its own plugin, registered.
    lab.engine()
        .pool_create(
            "bronze",
            support::sel(&["eno51"]),
            vfpool_engine::Policy::Pack,
        )
        .unwrap();
    lab.bump();
    assert_eq!(
        k.next_registration().await.resource_name,
        "vfpool.io/bronze"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_advertised_until_host_apply_has_run_since_boot() {
    let lab = Lab::new(false);
    let mut k = Kubelet::start(&lab.device_plugins());
    let _p = start(&lab);
    // Several polls and a change: still nothing.
    lab.bump();
    assert!(
        tokio::time::timeout(Duration::from_millis(600), k.regs.recv())
            .await
            .is_err(),
        "registered before host apply"
    );
    lab.engine()
        .apply_boot(None, Duration::from_secs(5), false)
        .unwrap();
    lab.bump();
    registrations(&mut k, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_restart_or_refusal_is_followed_by_registering_again() {
    let lab = Lab::new(true);
    let mut k = Kubelet::start(&lab.device_plugins());
    let _p = start(&lab);
    registrations(&mut k, 2).await;
    k.stop();

    // The new kubelet removes the plugins' sockets and refuses at first.
    let mut k2 = Kubelet::start(&lab.device_plugins());
    k2.refuse.send(true).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(400), k2.regs.recv())
            .await
            .is_err(),
        "refused, so not recorded"
    );
    k2.refuse.send(false).unwrap();
    let regs = registrations(&mut k2, 2).await;
    assert_eq!(regs["vfpool.io/gold"].endpoint, "vfpool-gold.sock");
    // The plugin is served again on its socket.
    let mut c = client(&lab, "vfpool-gold.sock").await;
    let mut s = c.list_and_watch(pb::Empty {}).await.unwrap().into_inner();
    assert_eq!(next(&mut s).await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_allocation_keeps_to_one_numa_node_then_the_policy() {
    let lab = Lab::new(true);
    let mut k = Kubelet::start(&lab.device_plugins());
    let _p = start(&lab);
    registrations(&mut k, 2).await;
    let mut c = client(&lab, "vfpool-gold.sock").await;
    let all: Vec<String> = [
        ("eno49", 0),
        ("eno49", 1),
        ("ens1f0np0", 0),
        ("ens1f0np0", 1),
        ("ens1f0np0", 2),
        ("ens1f0np0", 3),
    ]
    .iter()
    .map(|(p, i)| lab.vf(p, *i).to_string())
    .collect();
    let ask = |must: Vec<String>, size: i32| pb::PreferredAllocationRequest {
        container_requests: vec![pb::ContainerPreferredAllocationRequest {
            available_device_i_ds: all.clone(),
            must_include_device_i_ds: must,
            allocation_size: size,
        }],
    };
    // Node 1 has the most: both from ens1f0np0, first-fit order.
    let r = c
        .get_preferred_allocation(ask(vec![], 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.container_responses[0].device_i_ds,
        [all[2].clone(), all[3].clone()]
    );
    // With an eno49 VF that must be in: its NUMA node (0) first.
    let r = c
        .get_preferred_allocation(ask(vec![all[1].clone()], 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.container_responses[0].device_i_ds,
        [all[1].clone(), all[0].clone()]
    );

    // Errors: a device that is not the resource's, a size that cannot be met.
    let mut bad = ask(vec![], 1);
    bad.container_requests[0]
        .available_device_i_ds
        .push("0000:99:00.0".into());
    let e = c.get_preferred_allocation(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("invalid device '0000:99:00.0'"),
        "{}",
        e.message()
    );
    let e = c
        .get_preferred_allocation(ask(vec![], 7))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("invalid allocation_size '7': 0..=6"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_sets_the_environment_and_reserves_in_the_ledger() {
    let lab = Lab::new(true);
    let mut k = Kubelet::start(&lab.device_plugins());
    let _p = start(&lab);
    registrations(&mut k, 2).await;
    let mut c = client(&lab, "vfpool-gold.sock").await;
    let (a, b) = (lab.vf("ens1f0np0", 0), lab.vf("ens1f0np0", 1));
    let alloc = |ids: Vec<String>| pb::AllocateRequest {
        container_requests: vec![pb::ContainerAllocateRequest { devices_ids: ids }],
    };
    let r = c
        .allocate(alloc(vec![a.to_string(), b.to_string()]))
        .await
        .unwrap()
        .into_inner();
    let env = pcidevice_env("vfpool.io/gold");
    assert_eq!(env, "PCIDEVICE_VFPOOL_IO_GOLD");
    let envs = &r.container_responses[0].envs;
    assert_eq!(envs[&env], format!("{a},{b}"));
    let info: serde_json::Value = serde_json::from_str(&envs[&format!("{env}_INFO")]).unwrap();
    assert_eq!(info[a.to_string()]["generic"]["deviceID"], a.to_string());
    assert!(
        r.container_responses[0].devices.is_empty(),
        "netdevice VFs: no /dev/vfio"
    );

    let leases = lab.engine().leases().unwrap();
    let owners: Vec<(String, LeaseState)> =
        leases.iter().map(|l| (l.owner.clone(), l.state)).collect();
    assert!(
        owners.contains(&(
            format!("deviceplugin/vfpool.io/gold/{a}"),
            LeaseState::Active
        )),
        "{owners:?}"
    );
    assert!(
        owners.contains(&(
            format!("deviceplugin/vfpool.io/gold/{b}"),
            LeaseState::Active
        )),
        "{owners:?}"
    );
    // Again (a kubelet retry): the same reservations, nothing more.
    c.allocate(alloc(vec![a.to_string()])).await.unwrap();
    assert_eq!(lab.engine().leases().unwrap().len(), 2);

    // A VF leased to someone else: refused, and the other VF of the request not kept.
    let (x, y) = (lab.vf("ens1f0np0", 2), lab.vf("ens1f0np0", 3));
    let mut m = AcquireRequest::new("gold", "admin");
    m.vf = Some(y);
    lab.engine().acquire(&m).unwrap();
    let e = c
        .allocate(alloc(vec![x.to_string(), y.to_string()]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(e.message().contains("admin"), "{}", e.message());
    let owners: Vec<String> = lab
        .engine()
        .leases()
        .unwrap()
        .into_iter()
        .map(|l| l.owner)
        .collect();
    assert!(
        !owners.iter().any(|o| o.ends_with(&x.to_string())),
        "{owners:?}"
    );

    // An id that is not one of the resource's devices.
    let e = c
        .allocate(alloc(vec![lab.vf("eno50", 0).to_string()]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_gives_vfio_pci_vfs_their_device_nodes() {
    let lab = Lab::new(true);
    let vf = lab.vf("eno50", 1);
    vfpool_host::driver::bind(&lab.host.fs, vf, Some("vfio-pci")).unwrap();
    let mut k = Kubelet::start(&lab.device_plugins());
    let _p = start(&lab);
    registrations(&mut k, 2).await;
    let mut c = client(&lab, "vfpool-silver.sock").await;
    let r = c
        .allocate(pb::AllocateRequest {
            container_requests: vec![pb::ContainerAllocateRequest {
                devices_ids: vec![vf.to_string()],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let group = std::fs::read_link(
        lab.host
            .fs
            .path(format!("bus/pci/devices/{vf}/iommu_group")),
    )
    .unwrap()
    .file_name()
    .unwrap()
    .to_string_lossy()
    .into_owned();
    let paths: Vec<&str> = r.container_responses[0]
        .devices
        .iter()
        .map(|d| d.host_path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["/dev/vfio/vfio".to_owned(), format!("/dev/vfio/{group}")]
    );
    let info: serde_json::Value =
        serde_json::from_str(&r.container_responses[0].envs["PCIDEVICE_VFPOOL_IO_SILVER_INFO"])
            .unwrap();
    assert_eq!(
        info[vf.to_string()]["vfio"]["dev-mount"],
        format!("/dev/vfio/{group}")
    );
}

/// A reservation whose VF no pod holds (the kubelet's pod resources API says so) is freed;
/// without that API nothing is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_no_pod_holds_are_freed() {
    let mut lab = Lab::new(true);
    lab.cfg.reservation_grace = Duration::ZERO;
    let mut k = Kubelet::start(&lab.device_plugins());
    let _p = start(&lab);
    registrations(&mut k, 2).await;
    let mut c = client(&lab, "vfpool-gold.sock").await;
    let (a, b, m) = (
        lab.vf("ens1f0np0", 0),
        lab.vf("ens1f0np0", 1),
        lab.vf("ens1f0np0", 2),
    );
    let mut r = AcquireRequest::new("gold", "admin");
    r.vf = Some(m);
    lab.engine().acquire(&r).unwrap();
    c.allocate(pb::AllocateRequest {
        container_requests: vec![pb::ContainerAllocateRequest {
            devices_ids: vec![a.to_string(), b.to_string()],
        }],
    })
    .await
    .unwrap();
    let owners = || -> Vec<String> {
        let mut v: Vec<String> = lab
            .engine()
            .leases()
            .unwrap()
            .into_iter()
            .map(|l| l.owner)
            .collect();
        v.sort();
        v
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(owners().len(), 3, "no pod resources API: nothing freed");
    // Younger than the grace (the kubelet records a pod's devices after Allocate): kept.
    let none = std::collections::HashSet::new();
    let freed = vfpool_k8s::deviceplugin::free_reservations(
        &lab.host,
        "vfpool.io",
        &none,
        Duration::from_secs(3600),
    )
    .unwrap();
    assert!(freed.is_empty(), "{freed:?}");

    let pods = support::PodResources::start(
        &lab.cfg.kubelet_root,
        vec![("vfpool.io/gold".into(), a.to_string())],
    );
    let want = vec![
        "admin".to_owned(),
        format!("deviceplugin/vfpool.io/gold/{a}"),
    ];
    tokio::time::timeout(WAIT, async {
        while owners() != want {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("b's reservation freed, a's and the manual lease kept");
    // The pod holding a is gone too.
    pods.held.lock().unwrap().clear();
    tokio::time::timeout(WAIT, async {
        while owners() != ["admin"] {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a's reservation freed");
    pods.stop();
}
