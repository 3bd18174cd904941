#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The plugin binary through `vfpool serve` (POST /api/v1/cni on its unix socket): the same
//! answers as in-process, the fallback when the daemon is not there or serves another
//! host, no second run when the daemon failed after the request was sent, the endpoint
//! absent over TCP; as root, a stand-in VF moved into a pod and back through the daemon.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `vfpool` CLI beside the plugin (built by the workspace; built here if missing).
fn vfpool_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_vfpool-cni"))
        .parent()
        .unwrap()
        .join("vfpool");
    if !bin.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        assert!(
            Command::new(cargo)
                .args(["build", "-p", "vfpool", "--bin", "vfpool"])
                .status()
                .unwrap()
                .success()
        );
    }
    bin
}

/// A demo host in a temporary state directory: eno49 split in 4, pool `web` of 3.
struct Demo {
    dir: tempfile::TempDir,
}

impl Demo {
    fn new() -> Self {
        let d = Demo {
            dir: tempfile::tempdir().unwrap(),
        };
        d.vfpool(&["nic", "split", "eno49", "--vfs", "4"]);
        d.vfpool(&["pool", "create", "web", "--select", "eno49#0-2"]);
        std::fs::create_dir_all(d.state().join("netns")).unwrap();
        d
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn vfpool(&self, args: &[&str]) -> Vec<u8> {
        let o = Command::new(vfpool_bin())
            .arg("--demo")
            .arg("--state")
            .arg(self.state())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "vfpool {args:?}: {o:?}");
        o.stdout
    }

    fn leases(&self) -> Vec<Value> {
        serde_json::from_slice(&self.vfpool(&["lease", "list", "-o", "json"])).unwrap()
    }

    fn netns(&self, name: &str) -> PathBuf {
        let p = self.state().join("netns").join(name);
        std::fs::write(&p, "").unwrap();
        p
    }

    /// `vfpool serve` over this demo host, on `socket` (and TCP at `listen`).
    fn serve(&self, socket: &Path, listen: Option<&str>) -> Served {
        let mut c = Command::new(vfpool_bin());
        c.arg("--demo")
            .arg("--state")
            .arg(self.state())
            .arg("serve");
        match listen {
            Some(a) => c.args(["--listen", a]),
            None => c.arg("--no-tcp"),
        };
        c.arg("--socket").arg(socket);
        Served::start(c, socket)
    }

    /// The plugin on this demo host; `socket` is `vfpoolDaemonSocket` ("" never asks).
    fn cni(&self, cmd: &str, cid: &str, ns: Option<&Path>, conf: &Value, socket: &str) -> Out {
        self.cni_state(&self.state(), cmd, cid, ns, conf, socket)
    }

    fn cni_state(
        &self,
        state: &Path,
        cmd: &str,
        cid: &str,
        ns: Option<&Path>,
        conf: &Value,
        socket: &str,
    ) -> Out {
        let mut conf = conf.clone();
        conf["vfpoolDaemonSocket"] = socket.into();
        let mut c = Command::new(env!("CARGO_BIN_EXE_vfpool-cni"));
        c.env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", "/usr/lib/cni")
            .env("VFPOOL_STATE", state)
            .env("VFPOOL_SYSFS_ROOT", state.join("demo-host/sys"))
            .env("VFPOOL_LOG", "debug");
        if let Some(ns) = ns {
            c.env("CNI_NETNS", ns);
        }
        run(c, conf.to_string().as_bytes())
    }
}

#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn through_daemon(&self) -> bool {
        self.stderr.contains("through the daemon") && !self.stderr.contains("doing the work here")
    }
    fn fell_back(&self) -> bool {
        self.stderr.contains("doing the work here")
    }
}

fn run(mut c: Command, stdin: &[u8]) -> Out {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let o = child.wait_with_output().unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// A `vfpool serve` this test started, killed (by its pid) on drop.
struct Served {
    child: Child,
}

impl Served {
    fn start(mut c: Command, socket: &Path) -> Self {
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut s = Served { child };
        let t0 = Instant::now();
        while UnixStream::connect(socket).is_err() {
            assert!(s.child.try_wait().unwrap().is_none(), "vfpool serve exited");
            assert!(t0.elapsed() < Duration::from_secs(30), "no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same calls, each answer with the state directory's path replaced by `STATE`.
fn sequence(d: &Demo, socket: &str) -> Vec<(Option<i32>, String)> {
    let conf = json!({"cniVersion": "1.1.0", "name": "net", "type": "vfpool-cni",
        "pool": "web", "mac": "02:00:00:00:00:42"});
    let (ns1, ns2) = (d.netns("p1"), d.netns("p2"));
    let mut outs = Vec::new();
    let mut step = |o: Out, what: &str| {
        if !socket.is_empty() {
            assert!(o.through_daemon(), "{what}: not through the daemon: {o:#?}");
        }
        let text = o.stdout.replace(d.state().to_str().unwrap(), "STATE");
        outs.push((o.code, text.clone()));
        text
    };
    step(d.cni("STATUS", "", None, &conf, socket), "STATUS");
    let r1 = step(d.cni("ADD", "c1", Some(&ns1), &conf, socket), "ADD");
    let r1: Value =
        serde_json::from_str(&r1.replace("STATE", d.state().to_str().unwrap())).unwrap();
    let mut chk = conf.clone();
    chk["prevResult"] = r1;
    step(d.cni("CHECK", "c1", Some(&ns1), &chk, socket), "CHECK");
    let bad = json!({"cniVersion": "1.1.0", "name": "net", "type": "vfpool-cni",
        "deviceID": "0000:99:00.0"});
    step(d.cni("ADD", "c9", Some(&ns2), &bad, socket), "ADD bad");
    step(d.cni("DEL", "c1", Some(&ns1), &conf, socket), "DEL");
    step(
        d.cni("CHECK", "c1", Some(&ns1), &chk, socket),
        "CHECK after DEL",
    );
    step(d.cni("DEL", "c1", None, &conf, socket), "DEL again");
    step(d.cni("ADD", "c2", Some(&ns2), &conf, socket), "ADD c2");
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    step(d.cni("GC", "", None, &gc, socket), "GC");
    step(d.cni("STATUS", "", None, &conf, socket), "STATUS after");
    assert!(d.leases().is_empty(), "{:?}", d.leases());
    outs
}

#[test]
fn through_the_daemon_every_verb_answers_as_in_process() {
    let here = Demo::new();
    let in_process = sequence(&here, "");
    let there = Demo::new();
    let socket = there.dir.path().join("api.sock");
    let _d = there.serve(&socket, None);
    let through = sequence(&there, socket.to_str().unwrap());
    // ADD's result, CHECK's failure (105) after DEL, the bad deviceID's error JSON.
    assert_eq!(in_process[1].0, Some(0), "{in_process:#?}");
    assert!(in_process[1].1.contains("\"pciID\""), "{in_process:#?}");
    assert_eq!(in_process[3].0, Some(1));
    assert!(in_process[5].1.contains("\"code\":105"), "{in_process:#?}");
    assert_eq!(through, in_process);
}

#[test]
fn without_a_daemon_the_plugin_does_the_work_itself() {
    let d = Demo::new();
    let conf = json!({"cniVersion": "1.1.0", "name": "net", "type": "vfpool-cni", "pool": "web"});
    let ns = d.netns("p1");
    // No socket file.
    let missing = d.dir.path().join("none.sock");
    let o = d.cni("ADD", "c1", Some(&ns), &conf, missing.to_str().unwrap());
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(
        o.fell_back() && o.stderr.contains("cannot connect"),
        "{o:#?}"
    );
    assert_eq!(d.leases().len(), 1);
    // A socket file nobody listens on (a daemon killed): connection refused.
    let stale = d.dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let o = d.cni("DEL", "c1", Some(&ns), &conf, stale.to_str().unwrap());
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(o.fell_back(), "{o:#?}");
    assert!(d.leases().is_empty());
    // "" never asks.
    let o = d.cni("STATUS", "", None, &conf, "");
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(
        !o.stderr.contains("through the daemon") && !o.fell_back(),
        "{o:#?}"
    );
    // A relative path is the config's error, naming the field.
    let o = d.cni("STATUS", "", None, &conf, "api.sock");
    assert_eq!(o.code, Some(1), "{o:#?}");
    assert!(
        o.stdout
            .contains("invalid vfpoolDaemonSocket 'api.sock': an absolute path"),
        "{o:#?}"
    );
}

#[test]
fn a_daemon_of_another_state_directory_is_not_used() {
    let theirs = Demo::new();
    let socket = theirs.dir.path().join("api.sock");
    let _d = theirs.serve(&socket, None);
    let mine = Demo::new();
    let conf = json!({"cniVersion": "1.1.0", "name": "net", "type": "vfpool-cni", "pool": "web"});
    let ns = mine.netns("p1");
    let o = mine.cni("ADD", "c1", Some(&ns), &conf, socket.to_str().unwrap());
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(
        o.fell_back() && o.stderr.contains("the daemon's state directory is"),
        "{o:#?}"
    );
    assert_eq!(mine.leases().len(), 1, "leased in the plugin's ledger");
    assert!(theirs.leases().is_empty(), "not in the daemon's");
    // The same state directory but another sysfs tree: not used either.
    let other_sys = mine.state().join("demo-host/sys");
    let mut c = conf.clone();
    c["vfpoolSysfsRoot"] = other_sys.to_str().unwrap().into();
    let o = theirs.cni("STATUS", "", None, &c, socket.to_str().unwrap());
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(
        o.fell_back() && o.stderr.contains("the daemon's sysfs root is"),
        "{o:#?}"
    );
    // And it is used when they match.
    let o = theirs.cni("STATUS", "", None, &conf, socket.to_str().unwrap());
    assert!(o.through_daemon(), "{o:#?}");
}

/// A one-shot server on `socket` that answers every connection with `answer`.
fn fake_daemon(socket: &Path, answer: &'static str) -> std::thread::JoinHandle<()> {
    let l = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 65536];
        // The head and the body may come in two writes; read until the body's end.
        let mut got = Vec::new();
        while !got.ends_with(b"}}") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(answer.as_bytes()).unwrap();
    })
}

#[test]
fn a_daemon_that_fails_after_the_request_is_not_run_around() {
    let d = Demo::new();
    let conf = json!({"cniVersion": "1.1.0", "name": "net", "type": "vfpool-cni", "pool": "web"});
    let ns = d.netns("p1");
    for (i, answer) in [
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\nboom!",
        "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nnot json",
        "garbage",
    ]
    .into_iter()
    .enumerate()
    {
        let socket = d.dir.path().join(format!("fake{i}.sock"));
        let t = fake_daemon(&socket, answer);
        let o = d.cni("ADD", "c1", Some(&ns), &conf, socket.to_str().unwrap());
        t.join().unwrap();
        assert_eq!(o.code, Some(1), "{answer}: {o:#?}");
        let e: Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(e["code"], 11, "{answer}: {e}");
        assert!(
            e["msg"].as_str().unwrap().contains("vfpool daemon at"),
            "{e}"
        );
        assert!(
            d.leases().is_empty(),
            "{answer}: the plugin ran the ADD too"
        );
    }
    // A daemon that declines (4xx: nothing done there) is fallen back from.
    let socket = d.dir.path().join("old.sock");
    let t = fake_daemon(
        &socket,
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    );
    let o = d.cni("ADD", "c1", Some(&ns), &conf, socket.to_str().unwrap());
    t.join().unwrap();
    assert_eq!(o.code, Some(0), "{o:#?}");
    assert!(
        o.fell_back() && o.stderr.contains("declined (404)"),
        "{o:#?}"
    );
    assert_eq!(d.leases().len(), 1);
}

/// `POST /api/v1/cni` with a STATUS request for `d`'s host, as raw HTTP.
fn status_request(d: &Demo) -> Vec<u8> {
    let body = json!({
        "env": [["CNI_COMMAND", "STATUS"], ["CNI_PATH", "/usr/lib/cni"]],
        "stdin": json!({"cniVersion": "1.1.0", "name": "net", "type": "vfpool-cni",
            "pool": "web", "vfpoolState": d.state()}).to_string(),
        "host": {"state": d.state(), "sysfs_root": d.state().join("demo-host/sys"),
            "kernel_netlink": false}
    })
    .to_string();
    format!(
        "POST /api/v1/cni HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn exchange(mut s: impl Read + Write, req: &[u8]) -> String {
    s.write_all(req).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_endpoint_is_on_the_unix_socket_only() {
    let d = Demo::new();
    let socket = d.dir.path().join("api.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _s = d.serve(&socket, Some(&addr));
    let req = status_request(&d);
    let unix = exchange(UnixStream::connect(&socket).unwrap(), &req);
    assert!(unix.starts_with("HTTP/1.1 200"), "{unix}");
    assert!(unix.ends_with(r#"{"stdout":"","exit":0}"#), "{unix}");
    let tcp = exchange(std::net::TcpStream::connect(&addr).unwrap(), &req);
    assert!(tcp.starts_with("HTTP/1.1 404"), "{tcp}");
    // The rest of the API is there over TCP.
    let healthz = exchange(
        std::net::TcpStream::connect(&addr).unwrap(),
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
}

#[test]
fn as_root_a_stand_in_vf_moves_into_a_pod_and_back_through_the_daemon() {
    if common::skip_unless_root(
        "as_root_a_stand_in_vf_moves_into_a_pod_and_back_through_the_daemon",
    ) {
        return;
    }
    common::need_cni_plugins();
    let lab = common::Lab::new("eno49", 2);
    let socket = lab.state().join("api.sock");
    let mut c = Command::new(vfpool_bin());
    c.arg("--state")
        .arg(lab.state())
        .arg("--sysfs-root")
        .arg(lab.sysfs())
        .env("VFPOOL_NETLINK", "kernel")
        .args(["serve", "--no-tcp", "--socket"])
        .arg(&socket);
    // The daemon runs in the lab's host namespace, where the stand-ins are.
    let f = std::fs::File::open(lab.host.path()).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: between fork and exec the closure only makes the setns system call (async-
    // signal-safe) on a descriptor the closure owns.
    unsafe {
        c.pre_exec(move || {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    let _d = Served::start(c, &socket);
    let pod = common::Netns::new("pod");
    let conf = lab.conf(
        "1.1.0",
        "10.77.0.0/24",
        json!({"vfpoolDaemonSocket": socket}),
    );
    let add = lab.cni_env(
        &[
            ("CNI_COMMAND", "ADD".into()),
            ("CNI_CONTAINERID", "c1".into()),
            ("CNI_NETNS", pod.path_str()),
            ("CNI_IFNAME", "net1".into()),
            ("VFPOOL_LOG", "debug".into()),
        ],
        &conf,
    );
    let r = add.ok("ADD");
    assert!(
        add.stderr.contains("through the daemon") && !add.stderr.contains("doing the work here"),
        "{add:#?}"
    );
    let vf = r["interfaces"][0]["pciID"].as_str().unwrap().to_owned();
    let standin = lab.standin(&vf).clone();
    let link = pod.link("net1").expect("the VF in the pod as net1");
    assert_eq!(link["address"], standin.mac.as_str(), "{link}");
    assert!(
        lab.host.link(&standin.name).is_none(),
        "moved out of the host"
    );
    let ip = r["ips"][0]["address"].as_str().unwrap();
    assert_eq!(pod.addrs4("net1"), [ip], "{r}");
    let del = lab.cni_env(
        &[
            ("CNI_COMMAND", "DEL".into()),
            ("CNI_CONTAINERID", "c1".into()),
            ("CNI_NETNS", pod.path_str()),
            ("CNI_IFNAME", "net1".into()),
            ("VFPOOL_LOG", "debug".into()),
        ],
        &conf,
    );
    del.ok("DEL");
    assert!(del.stderr.contains("through the daemon"), "{del:#?}");
    assert!(pod.link("net1").is_none());
    lab.assert_all_back("after DEL through the daemon");
}
