//! The daemon's benchmark (issue 13, BENCHMARKS.md): `vfpool serve` on a simulated host with
//! 8 PFs x 128 VFs (1024 VFs).
//!
//!     cargo build --release -p vfpool
//!     cargo run --release -p vfpool-daemon --example daemon_bench -- \
//!         --vfpool target/release/vfpool [--seconds 30] [--rate 100]
//!
//! Measures: `GET /api/v1/nics` at a fixed rate (each request timed from when it was due,
//! so a slow answer delays none that follow: no coordinated omission), against the CLI's
//! `nic list -o json` (one process per call) on the same host; Debian's `wrk` if installed
//! (closed loop, one connection: latency at saturation); the time from a change made by
//! another process (a lease acquired or released through the ledger, a PF's carrier lost in
//! the simulator) to its server-sent event; the daemon's RSS idle and under load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;
use vfpool_engine::{AcquireRequest, Host, HostConfig, Policy, ReleaseTarget, SplitRequest};
use vfpool_netlink::NetOps;
use vfpool_sim::{HostSpec, SimHost, SimNetOps};

struct Args {
    vfpool: PathBuf,
    seconds: u64,
    rate: u64,
}

fn args() -> Args {
    let mut a = Args {
        vfpool: PathBuf::from("target/release/vfpool"),
        seconds: 30,
        rate: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--vfpool" => a.vfpool = v.into(),
            "--seconds" => a.seconds = v.parse().expect("--seconds: a number"),
            "--rate" => a.rate = v.parse().expect("--rate: requests per second"),
            _ => panic!("unknown option {k} (--vfpool PATH, --seconds N, --rate N)"),
        }
    }
    a
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

type Conn = hyper::client::conn::http1::SendRequest<http_body_util::Empty<hyper::body::Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Conn {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn get_req(
    addr: std::net::SocketAddr,
    path: &str,
) -> hyper::Request<http_body_util::Empty<hyper::body::Bytes>> {
    hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::new())
        .unwrap()
}

async fn get(c: &mut Conn, addr: std::net::SocketAddr, path: &str) -> (u16, usize) {
    let r = c.send_request(get_req(addr, path)).await.unwrap();
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, body.len())
}

fn cli(a: &Args, sys: &Path, state: &Path) -> Command {
    let mut c = Command::new(&a.vfpool);
    c.arg("--sysfs-root")
        .arg(sys)
        .arg("--state")
        .arg(state)
        .env("VFPOOL_LOG", "error")
        .env_remove("VFPOOL_FAULT");
    c
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    // The simulated sysfs on tmpfs (the kernel's is in memory too); the ledger on disk.
    let shm = tempfile::Builder::new()
        .prefix("vfpool-daemon-bench-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let disk = tempfile::Builder::new()
        .prefix("vfpool-daemon-bench-")
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
    host.engine()
        .unwrap()
        .split_nics(
            &SplitRequest {
                nics: pfs.clone(),
                vfs: "128".into(),
                autoprobe: None,
                timeout: Duration::from_secs(600),
                force: false,
                keep_link: false,
            },
            &|_, _, _| {},
        )
        .unwrap();
    eprintln!("split 8 x 128 VFs in {:.1} s", t.elapsed().as_secs_f64());
    let mut e = host.engine().unwrap();
    e.pool_create("bench", vec!["ens1f0".parse().unwrap()], Policy::FirstFit)
        .unwrap();
    let vfs: u32 = host.nics().unwrap().view.iter().map(|n| n.num_vfs).sum();

    // In-process: what one uncached answer costs.
    let mut inproc: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            host.nics().unwrap();
            ms(t.elapsed())
        })
        .collect();

    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let daemon = Daemon(
        cli(&a, &sys, &state)
            .args(["serve", "--listen", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();
    let t = Instant::now();
    let mut c = loop {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            drop(s);
            break connect(addr).await;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, bytes) = get(&mut c, addr, "/api/v1/nics").await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = status_kib(pid, "VmRSS:");

    // Fixed rate, each request timed from when it was due, on 4 keep-alive connections.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(Arc::new(Mutex::new(connect(addr).await)));
    }
    let n = a.seconds * a.rate;
    let period = Duration::from_secs_f64(1.0 / a.rate as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let sampler = tokio::spawn(async move {
        let mut max = 0;
        let end = Instant::now() + Duration::from_secs(a.seconds);
        while Instant::now() < end {
            max = max.max(status_kib(pid, "VmRSS:"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        max
    });
    let mut tasks = Vec::new();
    for i in 0..n {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due).await;
        let conn = conns[i as usize % conns.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut c = conn.lock().await;
            let sent = tokio::time::Instant::now();
            let (s, len) = get(&mut c, addr, "/api/v1/nics").await;
            assert_eq!(s, 200);
            assert_eq!(len, bytes);
            (ms(due.elapsed()), ms(sent.elapsed()))
        }));
    }
    let mut fixed = Vec::new();
    let mut service = Vec::new();
    for t in tasks {
        let (from_due, from_sent) = t.await.unwrap();
        fixed.push(from_due);
        service.push(from_sent);
    }
    let over = |v: &[f64]| v.iter().filter(|x| **x > 10.0).count();
    let (over_due, over_sent) = (over(&fixed), over(&service));
    let tail = |v: &mut Vec<f64>| (pct(v, 0.9), pct(v, 0.999), pct(v, 1.0));
    let (due90, due999, due_max) = tail(&mut fixed);
    let (sent90, sent999, sent_max) = tail(&mut service);
    let rss_load = sampler.await.unwrap();

    // wrk (Debian's: closed loop, no fixed rate), if installed.
    let wrk = Command::new("wrk")
        .args(["-t1", "-c1", "-d10s", "--latency"])
        .arg(format!("http://{addr}/api/v1/nics"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let rss_wrk = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");

    // The peer: the CLI, one process per call.
    let mut peer: Vec<f64> = (0..30)
        .map(|_| {
            let t = Instant::now();
            let o = cli(&a, &sys, &state)
                .args(["nic", "list", "-o", "json"])
                .output()
                .unwrap();
            assert!(o.status.success());
            ms(t.elapsed())
        })
        .collect();

    // Change -> event: another process's change (this one, to the daemon), 200 ms apart.
    let mut ev = connect(addr).await;
    let r = ev
        .send_request(get_req(addr, "/api/v1/events"))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = r.into_body();
        while let Some(Ok(f)) = body.frame().await {
            if let Ok(d) = f.into_data() {
                let at = Instant::now();
                for line in String::from_utf8_lossy(&d).lines() {
                    if let Some(j) = line.strip_prefix("data: ") {
                        let v: serde_json::Value = serde_json::from_str(j).unwrap();
                        let _ = tx.send((at, v["generation"].as_u64().unwrap()));
                    }
                }
            }
        }
    });
    let (_, mut last) = rx.recv().await.unwrap();
    let sim = SimNetOps::new(&root);
    let mut ledger_lat = Vec::new();
    let mut host_lat = Vec::new();
    let mut e = Some(e);
    for i in 0..60 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Ok((_, g)) = rx.try_recv() {
            last = last.max(g);
        }
        let (done, is_ledger) = if i % 3 == 2 {
            let up = i % 6 == 5;
            let sim = sim.clone();
            let done = tokio::task::spawn_blocking(move || {
                sim.set_up("ens8f0", up).unwrap();
                Instant::now()
            })
            .await
            .unwrap();
            (done, false)
        } else {
            let mut eng = e.take().unwrap();
            let (eng, done) = tokio::task::spawn_blocking(move || {
                if i % 3 == 0 {
                    eng.acquire(&AcquireRequest::new("bench", "bench/owner"))
                        .unwrap();
                } else {
                    eng.release(&ReleaseTarget::Owner("bench/owner".into()))
                        .unwrap();
                }
                (eng, Instant::now())
            })
            .await
            .unwrap();
            e = Some(eng);
            (done, true)
        };
        let at = loop {
            let (at, g) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("no event within 5 s")
                .unwrap();
            if g > last {
                last = g;
                break at;
            }
        };
        let lat = ms(at.saturating_duration_since(done));
        if is_ledger {
            ledger_lat.push(lat);
        } else {
            host_lat.push(lat);
        }
    }

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("host: {vfs} VFs on 8 PFs; load average {}", load.trim());
    println!("GET /api/v1/nics body {bytes} bytes");
    println!();
    println!("| what | p50 ms | p99 ms | n |");
    println!("| --- | --- | --- | --- |");
    let row = |name: &str, v: &mut Vec<f64>| {
        let len = v.len();
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!("| {name} | {p50:.2} | {p99:.2} | {len} |");
        (p50, p99)
    };
    let (f50, f99) = row(
        &format!(
            "GET /api/v1/nics, {} req/s for {} s (daemon)",
            a.rate, a.seconds
        ),
        &mut fixed,
    );
    let (s50, s99) = row(
        "same, timed from the send (client stalls left out)",
        &mut service,
    );
    let (c50, _) = row(
        "`vfpool nic list -o json`, one process per call (peer)",
        &mut peer,
    );
    row("`Host::nics()` in-process, uncached", &mut inproc);
    row(
        "lease acquire/release by another process -> SSE event",
        &mut ledger_lat,
    );
    row(
        "PF carrier change in the simulator -> SSE event",
        &mut host_lat,
    );
    println!();
    println!(
        "ratio daemon p50 / CLI p50: {:.4} ({f50:.2} / {c50:.2} ms); p99 goal 10 ms: {f99:.2}",
        f50 / c50
    );
    println!(
        "fixed rate, from due: p90 {due90:.2} p99.9 {due999:.2} max {due_max:.2} ms, {over_due} of {n} over 10 ms; \
         from send: p50 {s50:.2} p90 {sent90:.2} p99 {s99:.2} p99.9 {sent999:.2} max {sent_max:.2} ms, {over_sent} over 10 ms"
    );
    println!(
        "RSS: idle {:.1} MiB, under the fixed-rate load (max of 100 ms samples) {:.1} MiB, after wrk {:.1} MiB, VmHWM {:.1} MiB",
        rss_idle as f64 / 1024.0,
        rss_load as f64 / 1024.0,
        rss_wrk as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    match wrk {
        Some(out) => println!("\nwrk -t1 -c1 -d10s --latency:\n{out}"),
        None => println!("\nwrk: not installed (apt-get install wrk)"),
    }
}
