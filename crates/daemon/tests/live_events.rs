#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `GET /api/v1/events` over real HTTP, and the snapshot behind `GET /api/v1/nics`.

mod support;

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use vfpool_daemon::watch::{self, Coalescer};
use vfpool_engine::{AcquireRequest, Policy, SplitRequest};

fn split(h: &vfpool_engine::Host, nic: &str, vfs: u32) {
    h.engine()
        .unwrap()
        .split_nics(
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

/// Reads server-sent events from a body: (event, data) pairs as they come.
struct Events {
    body: hyper::body::Incoming,
    buf: String,
}

impl Events {
    async fn next(&mut self) -> (String, String) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        ev = v.into();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.into();
                    }
                }
                if !ev.is_empty() {
                    return (ev, data);
                }
                continue; // a keep-alive comment
            }
            let frame = self.body.frame().await.unwrap().unwrap();
            if let Ok(d) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&d));
            }
        }
    }
}

fn generation(data: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    v["generation"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_a_change_made_by_another_engine() {
    let d = support::daemon();
    let other = d.other_host();
    split(&other, "eno49", 2);
    other
        .engine()
        .unwrap()
        .pool_create("p", vec!["eno49".parse().unwrap()], Policy::FirstFit)
        .unwrap();
    let _w = watch::start(&d.state, Coalescer::default()).unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;

    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(axum::serve(tcp, d.app.clone()).into_future());
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/api/v1/events")
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let r = send.send_request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut events = Events {
        body: r.into_body(),
        buf: String::new(),
    };
    // At connect: the generation now.
    let (ev, data) = tokio::time::timeout(Duration::from_secs(2), events.next())
        .await
        .expect("no event at connect");
    assert_eq!(ev, "change");
    let g0 = generation(&data);
    assert_eq!(g0, d.state.generation());

    // Another engine takes a lease: the stream says so within 100 ms.
    let mut e = other.engine().unwrap();
    let acquired = tokio::task::spawn_blocking(move || {
        e.acquire(&AcquireRequest::new("p", "pod/x")).unwrap();
        Instant::now()
    })
    .await
    .unwrap();
    let (ev, data) = tokio::time::timeout(Duration::from_secs(2), events.next())
        .await
        .expect("no event within 2 s");
    let waited = acquired.elapsed();
    assert_eq!(ev, "change");
    assert!(generation(&data) > g0, "{data}");
    assert!(
        waited < Duration::from_millis(100),
        "event {waited:?} after the acquire"
    );

    // The daemon stopping ends the stream (a graceful shutdown would wait for it otherwise).
    d.state.stop();
    let end = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.body.frame().await {
                None => return,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("{e}"),
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the event stream did not end when the daemon stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nic_list_is_the_hosts_answer_kept_until_a_change() {
    let d = support::daemon();
    let _w = watch::start(&d.state, Coalescer::default()).unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let before = d
        .state
        .snapshots()
        .computed
        .load(std::sync::atomic::Ordering::SeqCst);
    let a = d.get("/api/v1/nics").await;
    let expect = serde_json::to_value(d.state.host().nics().unwrap().view).unwrap();
    assert_eq!(a.json, expect);
    assert_eq!(a.headers["content-type"], "application/json");
    for _ in 0..20 {
        assert_eq!(d.get("/api/v1/nics").await.json, expect);
    }
    let computed = |d: &support::Daemon| {
        d.state
            .snapshots()
            .computed
            .load(std::sync::atomic::Ordering::SeqCst)
            - before
    };
    assert_eq!(computed(&d), 1, "21 reads without a change");

    // A split by another host object: the next read has the VFs (once the change is seen).
    let mut rx = d.state.subscribe();
    let g = *rx.borrow();
    let other = d.other_host();
    tokio::task::spawn_blocking(move || split(&other, "em2", 8))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|x| *x > g))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let a = d.get("/api/v1/nics").await;
    let em2 = a
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "em2")
        .unwrap();
    assert_eq!(em2["num_vfs"], 8, "{em2}");
    assert_eq!(
        a.json,
        serde_json::to_value(d.state.host().nics().unwrap().view).unwrap()
    );
}
