#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `vfpool --demo --state S serve` as a process, and the `vfpool` CLI as a second process
//! beside it: the daemon's event stream (over its unix socket) announces each change the CLI
//! makes within 100 ms, and its API shows it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ok, vfpool};

/// The daemon, stopped (SIGTERM) when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn connect(sock: &Path) -> UnixStream {
    let t = Instant::now();
    loop {
        if let Ok(s) = UnixStream::connect(sock) {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no daemon on {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET over the unix socket: (status line, body).
fn get(sock: &Path, path: &str) -> (String, String) {
    let mut s = connect(sock);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (head.lines().next().unwrap().to_string(), body)
}

/// Follows `GET /api/v1/events`: each `change` event's generation, with when it arrived.
fn follow_events(sock: &Path) -> mpsc::Receiver<(Instant, u64)> {
    let mut s = connect(sock);
    write!(s, "GET /api/v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            if let Some(e) = line.strip_prefix("event: ") {
                event = e.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                let v: serde_json::Value = serde_json::from_str(d).unwrap();
                if event == "change"
                    && tx
                        .send((Instant::now(), v["generation"].as_u64().unwrap()))
                        .is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// Runs the CLI, then waits for an event past `after`: how long after the CLI exited it
/// came (zero if it came before the exit) and its generation.
fn change_by_cli(
    state: &Path,
    events: &mpsc::Receiver<(Instant, u64)>,
    after: u64,
    args: &[&str],
) -> (Duration, u64) {
    ok(state, args);
    let exited = Instant::now();
    loop {
        let (at, g) = events
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_else(|_| panic!("no event within 2 s of vfpool {args:?}"));
        if g > after {
            return (at.saturating_duration_since(exited), g);
        }
    }
}

#[test]
fn the_daemon_announces_changes_made_by_the_cli_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let sock = state.join("api.sock");
    let _serve = Serve(
        vfpool(state, &["serve", "--no-tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let events = follow_events(&sock);
    let (_, g0) = events
        .recv_timeout(Duration::from_secs(5))
        .expect("no event at connect");

    // A split by the CLI: the demo host's tree changes under the daemon.
    let (late, g1) = change_by_cli(state, &events, g0, &["nic", "split", "em1", "--vfs", "4"]);
    assert!(
        late < Duration::from_millis(100),
        "split seen {late:?} after the CLI exited"
    );
    // Let the split's burst settle, then the API shows it.
    std::thread::sleep(Duration::from_millis(150));
    let (status, body) = get(&sock, "/api/v1/nics/em1");
    assert!(status.contains(" 200 "), "{status} {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["vfs"].as_array().unwrap().len(), 4, "{body}");

    // A lease by the CLI: the ledger changes under the daemon.
    ok(state, &["pool", "create", "gold", "--select", "em1"]);
    std::thread::sleep(Duration::from_millis(150));
    let g2 = events.try_iter().map(|(_, g)| g).max().unwrap_or(g1);
    let (late, _) = change_by_cli(
        state,
        &events,
        g2,
        &["lease", "acquire", "--pool", "gold", "--owner", "alice"],
    );
    assert!(
        late < Duration::from_millis(100),
        "lease seen {late:?} after the CLI exited"
    );
    let (_, body) = get(&sock, "/api/v1/nics/em1");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let owners: Vec<&str> = v["vfs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["owner"].as_str())
        .collect();
    assert_eq!(owners, ["alice"], "{body}");
    let (_, body) = get(&sock, "/api/v1/nics");
    let cli = common::json(state, &["nic", "list"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        cli,
        "the API's list is the CLI's"
    );
}
