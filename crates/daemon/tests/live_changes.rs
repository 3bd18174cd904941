#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Changes made beside the daemon (another engine on the same state directory, another host
//! object splitting a NIC) reach its change counter within 100 ms, once per burst.

mod support;

use std::time::{Duration, Instant};

use vfpool_daemon::watch::{self, Coalescer};
use vfpool_engine::AcquireRequest;
use vfpool_engine::Policy;
use vfpool_engine::SplitRequest;

/// Waits for the generation to move past `from`; the time it took.
async fn next_change(rx: &mut tokio::sync::watch::Receiver<u64>, from: u64) -> Duration {
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|g| *g > from))
        .await
        .expect("no change within 2 s")
        .unwrap();
    t.elapsed()
}

fn split(h: &vfpool_engine::Host, nic: &str, vfs: u32) {
    let mut e = h.engine().unwrap();
    e.split_nics(
        &SplitRequest {
            nics: vec![nic.into()],
            vfs: vfs.to_string(),
            autoprobe: None,
            timeout: Duration::from_secs(5),
            force: true,
            keep_link: false,
        },
        &|_, _, _| {},
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_by_another_host_object_is_one_change_within_100ms() {
    let d = support::daemon();
    let _w = watch::start(&d.state, Coalescer::default()).unwrap();
    let mut rx = d.state.subscribe();
    let g0 = *rx.borrow();
    let other = d.other_host();
    let t = Instant::now();
    tokio::task::spawn_blocking(move || split(&other, "em1", 32))
        .await
        .unwrap();
    let split_took = t.elapsed();
    let waited = next_change(&mut rx, g0).await;
    assert!(
        waited < Duration::from_millis(100),
        "change seen {waited:?} after the split"
    );
    let fired = _w.trigger.fired();
    // A burst: a split of 32 VFs changes hundreds of files, announced once per
    // Coalescer::max at most while it goes on (a debug build's split is slow), not per file.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bumps = *rx.borrow() - g0;
    let most = 2 + split_took.as_millis() as u64 / 50;
    eprintln!("split {split_took:?}: {fired} triggers, {bumps} changes");
    assert!(fired >= 100, "only {fired} triggers for a split of 32 VFs");
    assert!(
        bumps <= most,
        "{bumps} changes for {fired} triggers of one split that took {split_took:?}"
    );
    // Quiet after that: reading the host (as the API does) is no change.
    let g1 = *rx.borrow();
    let a = d.get("/api/v1/nics/em1").await;
    assert_eq!(a.json["vfs"].as_array().unwrap().len(), 32, "{}", a.text);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(*rx.borrow(), g1, "reading the host counted as a change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_by_another_engine_is_a_change_within_100ms() {
    let d = support::daemon();
    let other = d.other_host();
    split(&other, "eno49", 4);
    let mut e = other.engine().unwrap();
    e.pool_create("gold", vec!["eno49".parse().unwrap()], Policy::FirstFit)
        .unwrap();
    let _w = watch::start(&d.state, Coalescer::default()).unwrap();
    let mut rx = d.state.subscribe();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let g0 = *rx.borrow();
    let (e, lease) = tokio::task::spawn_blocking(move || {
        let l = e.acquire(&AcquireRequest::new("gold", "pod/a")).unwrap();
        (e, l)
    })
    .await
    .unwrap();
    let waited = next_change(&mut rx, g0).await;
    assert!(
        waited < Duration::from_millis(100),
        "change seen {waited:?} after the acquire"
    );
    let a = d.get("/api/v1/nics/eno49").await;
    let owners: Vec<&str> = a.json["vfs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["owner"].as_str())
        .collect();
    assert_eq!(owners, ["pod/a"], "{}", a.text);
    // The release too.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let g1 = *rx.borrow();
    tokio::task::spawn_blocking(move || {
        let mut e = e;
        e.release(&vfpool_engine::ReleaseTarget::Owner(lease.owner))
            .unwrap();
    })
    .await
    .unwrap();
    let waited = next_change(&mut rx, g1).await;
    assert!(
        waited < Duration::from_millis(100),
        "change seen {waited:?} after the release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pf_losing_carrier_on_the_demo_host_is_a_change() {
    use vfpool_netlink::NetOps;
    let d = support::daemon();
    let other = d.other_host();
    split(&other, "eno50", 2);
    let _w = watch::start(&d.state, Coalescer::default()).unwrap();
    let mut rx = d.state.subscribe();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let g0 = *rx.borrow();
    // The simulator's netlink, as `ip link set eno50 down` in another process: no ledger
    // write, only the host's tree.
    let sim = vfpool_sim::SimNetOps::new(other.sim.as_ref().unwrap().root());
    sim.set_up("eno50", false).unwrap();
    let waited = next_change(&mut rx, g0).await;
    assert!(
        waited < Duration::from_millis(100),
        "change seen {waited:?} after carrier loss"
    );
    let a = d.get("/api/v1/nics").await;
    let eno50 = a
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "eno50")
        .unwrap();
    assert_eq!(eno50["operstate"], "down", "{eno50}");
}
