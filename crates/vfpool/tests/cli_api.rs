#![allow(clippy::unwrap_used, clippy::expect_used)]

//! `vfpool --api URL`: the same commands run on one fresh demo host directly and on another
//! through its daemon (`vfpool serve`, a process), compared command by command: stdout,
//! stderr and the exit status, tables and `-o json`, successes and errors. Then the
//! daemon's tokens (missing, wrong, read-only) and the commands the API does not cover.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::vfpool;

/// The daemon, stopped (SIGTERM) when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// `vfpool --demo --state STATE serve ARGS`, once it answers `GET /api/v1/nics` at `api`.
fn serve(state: &Path, args: &[&str], api: &str, token: Option<&Path>) -> Serve {
    let mut a = vec!["serve"];
    a.extend(args);
    let s = Serve(
        vfpool(state, &a)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    loop {
        if remote(api, token, &["nic", "list"]).status.success() {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no daemon at {api}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vfpool --api API [--token-file FILE] ARGS`, with none of the local host's environment.
fn remote_cmd(api: &str, token: Option<&Path>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vfpool"));
    c.arg("--api").arg(api);
    if let Some(t) = token {
        c.arg("--token-file").arg(t);
    }
    c.args(args)
        .env_remove("VFPOOL_API")
        .env_remove("VFPOOL_TOKEN_FILE")
        .env_remove("VFPOOL_STATE")
        .env_remove("VFPOOL_SYSFS_ROOT")
        .env_remove("VFPOOL_FAULT")
        .env("VFPOOL_LOG", "error");
    c
}

fn remote(api: &str, token: Option<&Path>, args: &[&str]) -> Output {
    remote_cmd(api, token, args).output().unwrap()
}

/// What differs between two runs of the same command on two hosts, and nothing else: how
/// long a split took, when a lease was made, a VM's random UUID.
fn normalize(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let mut l = line.to_owned();
        for key in ["\"millis\": ", "\"created\": ", "\"instance\": "] {
            if let Some(i) = l.find(key) {
                let start = i + key.len();
                let end = l[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .map_or(l.len(), |e| start + e);
                l.replace_range(start..end, "N");
            }
        }
        if let Some(i) = l.find(" VFs (was ")
            && let Some(j) = l[i..].find(") in ")
        {
            let start = i + j + ") in ".len();
            if let Some(e) = l[start..].find(" ms") {
                l.replace_range(start..start + e, "N");
            }
        }
        out.push_str(&mask_uuids(&l));
        out.push('\n');
    }
    out
}

fn mask_uuids(l: &str) -> String {
    let b = l.as_bytes();
    let is_uuid = |w: &[u8]| {
        w.len() == 36
            && w.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if i + 36 <= b.len() && is_uuid(&b[i..i + 36]) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// One command here and through the daemon: the same stdout, stderr and exit status.
/// Returns the exit status.
fn same(local_state: &Path, served_state: &Path, api: &str, args: &[&str]) -> i32 {
    let l = common::run(local_state, args);
    let r = remote(api, None, args);
    // Paths on the demo host (`host iommu`'s files) are under each host's own state.
    let show = |o: &Output, state: &Path| {
        format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            o.status.code(),
            normalize(&String::from_utf8_lossy(&o.stdout)),
            normalize(&String::from_utf8_lossy(&o.stderr))
        )
        .replace(state.to_str().unwrap(), "$STATE")
    };
    assert_eq!(
        show(&r, served_state),
        show(&l, local_state),
        "vfpool {args:?}: through --api (left) and on the host (right) differ"
    );
    l.status.code().unwrap()
}

#[test]
fn every_covered_command_prints_the_same_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let served = dir.path().join("served");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&served).unwrap();
    let sock = served.join("api.sock");
    let api = format!("unix:{}", sock.display());
    let _serve = serve(
        &served,
        &["--no-tcp", "--socket", sock.to_str().unwrap()],
        &api,
        None,
    );

    // (arguments, exit status)
    let steps: &[(&[&str], i32)] = &[
        (&["nic", "list"], 0),
        (&["nic", "list", "-o", "json"], 0),
        (&["nic", "show", "eno49"], 0),
        (&["nic", "show", "eno49", "-o", "json"], 0),
        (&["nic", "show", "bogus0"], 3),
        (&["nic", "split", "eno49", "--vfs", "4"], 0),
        (&["nic", "split", "eno49", "--vfs", "4", "-o", "json"], 0),
        (&["nic", "split", "em1", "--vfs", "8", "-o", "json"], 0),
        (&["nic", "split", "eno50", "--vfs", "99"], 2),
        (&["nic", "split", "eno50", "--vfs", "many"], 2),
        (&["nic", "split", "bogus0", "--vfs", "2"], 3),
        (
            &["nic", "split", "eno50", "--vfs", "2", "--timeout", "0"],
            2,
        ),
        (&["nic", "split", "eno1", "--vfs", "2"], 2),
        (&["nic", "split", "eno49v0", "--vfs", "2"], 2),
        (&["nic", "split", "eno50", "eno50", "--vfs", "2"], 4),
        // Every NIC is checked before any is touched: eno50 stays at 0 VFs.
        (&["nic", "split", "eno50", "bogus0", "--vfs", "2"], 3),
        (&["nic", "split", "eno50", "eno51", "--vfs", "8"], 2),
        (&["nic", "show", "eno50"], 0),
        (&["nic", "split", "eno50", "eno51", "--vfs", "2"], 0),
        (&["nic", "restore", "eno50", "eno51", "-o", "json"], 0),
        (&["nic", "restore", "eno1"], 2),
        (&["nic", "show", "eno49v1"], 0),
        (&["nic", "show", "eno49v1", "-o", "json"], 0),
        (&["pool", "create", "p", "--select", "eno49"], 0),
        (&["pool", "create", "p", "--select", "eno49"], 4),
        (
            &[
                "pool", "create", "q", "--select", "em1#0-3", "--policy", "spread", "-o", "json",
            ],
            0,
        ),
        (
            &[
                "pool", "create", "r", "--select", "eno51", "--policy", "fast",
            ],
            2,
        ),
        (&["pool", "list"], 0),
        (&["pool", "list", "-o", "json"], 0),
        (&["pool", "show", "p"], 0),
        (&["pool", "show", "q", "-o", "json"], 0),
        (&["pool", "show", "nope"], 3),
        (
            &[
                "lease", "acquire", "--pool", "p", "--owner", "a", "--vlan", "5000",
            ],
            2,
        ),
        (
            &[
                "lease", "acquire", "--pool", "p", "--owner", "a", "--vlan", "ten",
            ],
            2,
        ),
        (
            &[
                "lease",
                "acquire",
                "--pool",
                "p",
                "--owner",
                "a",
                "--vlan",
                "10",
                "--qos",
                "3",
                "--spoofchk",
                "off",
                "--max-rate",
                "100",
            ],
            1,
        ),
        (
            &[
                "lease",
                "acquire",
                "--pool",
                "p",
                "--owner",
                "a",
                "--vlan",
                "10",
                "--qos",
                "3",
                "--spoofchk",
                "off",
            ],
            0,
        ),
        (&["lease", "acquire", "--pool", "p", "--owner", "a"], 4),
        (
            &[
                "lease",
                "acquire",
                "--pool",
                "p",
                "--owner",
                "vm/x/nic0",
                "--owner-kind",
                "vm",
                "-o",
                "json",
            ],
            0,
        ),
        (&["lease", "acquire", "--pool", "nope", "--owner", "b"], 3),
        (&["lease", "list"], 0),
        (&["lease", "list", "-o", "json"], 0),
        (&["pool", "delete", "p"], 4),
        (&["nic", "restore", "eno49"], 4),
        (&["nic", "split", "eno49", "--vfs", "2"], 4),
        (&["lease", "release", "a"], 0),
        (&["lease", "release", "a"], 3),
        (&["lease", "release", "vm/x/nic0", "-o", "json"], 0),
        (
            &[
                "lease",
                "acquire",
                "--pool",
                "q",
                "--owner",
                "c",
                "--vf",
                "0000:04:10.2",
            ],
            0,
        ),
        (
            &["lease", "release", "--vf", "0000:04:10.2", "-o", "json"],
            0,
        ),
        (&["lease", "release", "--vf", "0000:04:10.2"], 3),
        (&["lease", "gc"], 0),
        (&["lease", "gc", "-o", "json"], 0),
        (&["pool", "delete", "p"], 0),
        (&["pool", "delete", "q", "-o", "json"], 0),
        (&["pool", "delete", "p"], 3),
        (
            &["l2", "create", "n2", "--nic", "eno49", "--vlan", "5000"],
            2,
        ),
        (
            &[
                "l2", "create", "n2", "--nic", "eno49", "--vlan", "10", "--sriov",
            ],
            0,
        ),
        (&["l2", "create", "n2", "--nic", "eno49", "--vlan", "10"], 4),
        (
            &[
                "l2", "create", "plain", "--nic", "em1", "--type", "novlan", "-o", "json",
            ],
            0,
        ),
        (
            &["l2", "create", "x", "--nic", "em1", "--type", "token-ring"],
            2,
        ),
        (&["l2", "set", "plain", "--sriov", "on", "-o", "json"], 0),
        (&["l2", "list"], 0),
        (&["l2", "show", "n2", "-o", "json"], 0),
        (&["l2", "show", "nope"], 3),
        (
            &[
                "l3",
                "create",
                "n3",
                "--l2",
                "n2",
                "--cidr",
                "192.168.10.0/24",
                "--gateway",
                "192.168.10.1",
            ],
            0,
        ),
        (
            &[
                "l3",
                "create",
                "bad",
                "--l2",
                "n2",
                "--cidr",
                "192.168.300.0/24",
                "--gateway",
                "192.168.10.1",
            ],
            2,
        ),
        (&["l3", "list"], 0),
        (&["l3", "list", "-o", "json"], 0),
        (
            &[
                "vm",
                "create",
                "web",
                "--nic",
                "l3=n3,sriov",
                "--nic",
                "l3=n3,mac=02:00:00:00:00:01",
                "--memory",
                "2048",
                "--vcpus",
                "2",
            ],
            0,
        ),
        (&["vm", "create", "web", "--nic", "l3=n3"], 4),
        (&["vm", "create", "odd", "--nic", "l3=n3,fast"], 2),
        (&["vm", "create", "big", "--memory", "1"], 2),
        (&["vm", "list"], 0),
        (&["vm", "show", "web"], 0),
        (&["vm", "start", "web"], 0),
        (&["vm", "show", "web", "-o", "json"], 0),
        (&["l3", "show", "n3"], 0),
        (&["lease", "list"], 0),
        (&["vm", "nic", "add", "web", "l3=n3"], 4),
        (&["vm", "delete", "web"], 4),
        (&["vm", "stop", "web", "-o", "json"], 0),
        (&["vm", "nic", "add", "web", "l3=n3", "-o", "json"], 0),
        (&["vm", "nic", "set-type", "web", "nic2", "vf"], 0),
        (&["vm", "nic", "set-type", "web", "nic2", "sideways"], 2),
        (&["vm", "nic", "remove", "web", "nic2"], 0),
        (&["vm", "nic", "remove", "web", "nic9"], 3),
        (&["vm", "list", "-o", "json"], 0),
        (&["vm", "delete", "web"], 0),
        (&["vm", "show", "web"], 3),
        (&["l3", "delete", "n3"], 0),
        (&["l2", "delete", "n2", "-o", "json"], 0),
        (&["l2", "delete", "n2"], 3),
        (&["nic", "restore", "eno49"], 0),
        (&["nic", "restore", "em1", "-o", "json"], 0),
        (&["nic", "restore", "bogus0"], 3),
        (&["host", "check"], 0),
        (&["host", "check", "-o", "json"], 0),
        (&["host", "iommu", "status"], 0),
        (&["host", "iommu", "status", "-o", "json"], 0),
        (&["host", "iommu", "enable", "--vendor", "sparc"], 2),
        (&["host", "iommu", "enable"], 0),
        (&["host", "iommu", "enable", "-o", "json"], 0),
        (&["host", "iommu", "status"], 0),
        (&["host", "check"], 0),
        (&["host", "iommu", "disable", "-o", "json"], 0),
        (&["host", "iommu", "disable"], 0),
    ];
    for (args, want) in steps {
        let got = same(&local, &served, &api, args);
        assert_eq!(got, *want, "vfpool {args:?}: exit status");
    }

    // Enabled for the next boot, not in the running kernel (no IOMMU units on either demo
    // host): a reboot is pending, and `host check` says what enables it.
    for state in [&local, &served] {
        let units = state.join("demo-host/sys/class/iommu");
        for e in std::fs::read_dir(&units).unwrap() {
            let p = e.unwrap().path();
            std::fs::remove_file(&p)
                .or_else(|_| std::fs::remove_dir_all(&p))
                .unwrap();
        }
    }
    let out = common::run(&local, &["host", "check"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reboot pending: the IOMMU is enabled"),
        "{out:?}"
    );
    for (args, want) in [
        (&["host", "check"][..], 1),
        (&["host", "check", "-o", "json"], 1),
        (&["host", "iommu", "status"], 0),
    ] {
        assert_eq!(same(&local, &served, &api, args), want, "vfpool {args:?}");
    }
}

/// A port on the loopback nobody listens on (for the daemon to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(o: &Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn tokens_are_sent_and_a_refusal_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    std::fs::create_dir_all(&state).unwrap();
    let admin = dir.path().join("admin.token");
    let read = dir.path().join("read.token");
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&admin, "admin-token-0123456789abcdef\n").unwrap();
    std::fs::write(&read, "read-token-0123456789abcdef\n").unwrap();
    std::fs::write(&wrong, "wrong-token-0123456789abcdef\n").unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let api = format!("http://{listen}");
    let _serve = serve(
        &state,
        &[
            "--listen",
            &listen,
            "--socket",
            state.join("api.sock").to_str().unwrap(),
            "--token-file",
            admin.to_str().unwrap(),
            "--read-token-file",
            read.to_str().unwrap(),
        ],
        &api,
        Some(&admin),
    );

    let (code, out, err) = text(&remote(&api, None, &["nic", "list"]));
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            Some(1),
            "",
            "error: a token is required: Authorization: Bearer TOKEN\n"
        )
    );
    let (code, out, err) = text(&remote(&api, Some(&wrong), &["pool", "list"]));
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (Some(1), "", "error: the token is not valid\n")
    );
    let missing = dir.path().join("none.token");
    let (code, _, err) = text(&remote(&api, Some(&missing), &["pool", "list"]));
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "error: cannot read the token file {}: No such file or directory (os error 2)\n",
            missing.display()
        )
    );

    // The admin token: as on the host. The token file from the environment as well.
    let local = dir.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let l = common::run(&local, &["nic", "split", "eno49", "--vfs", "2"]);
    let r = remote_cmd(&api, None, &["nic", "split", "eno49", "--vfs", "2"])
        .env("VFPOOL_TOKEN_FILE", &admin)
        .output()
        .unwrap();
    assert_eq!(
        normalize(&String::from_utf8_lossy(&r.stdout)),
        normalize(&String::from_utf8_lossy(&l.stdout))
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    // The read-only token reads, and changes nothing.
    let (code, out, err) = text(&remote(&api, Some(&read), &["nic", "show", "eno49"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("2 enabled, 2 free"), "{out}");
    let (code, out, err) = text(&remote(
        &api,
        Some(&read),
        &["pool", "create", "p", "--select", "eno49"],
    ));
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1 && err.contains("read-only"),
        "{err}"
    );
    let (_, out, _) = text(&remote(&api, Some(&admin), &["pool", "list"]));
    assert_eq!(out.lines().count(), 1, "a pool was created: {out}");
}

#[test]
fn https_with_the_given_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let local = dir.path().join("local");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&local).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let api = format!("https://localhost:{port}");
    let with_ca = |args: &[&str]| {
        let mut a = vec!["--ca-file", cert_pem.to_str().unwrap()];
        a.extend(args);
        remote(&api, None, &a)
    };
    let _serve = Serve(
        vfpool(
            &state,
            &[
                "serve",
                "--listen",
                &listen,
                "--socket",
                state.join("api.sock").to_str().unwrap(),
                "--tls-cert",
                cert_pem.to_str().unwrap(),
                "--tls-key",
                key_pem.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let t = Instant::now();
    while !with_ca(&["nic", "list"]).status.success() {
        assert!(t.elapsed() < Duration::from_secs(60), "no daemon at {api}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for args in [
        &["nic", "split", "eno49", "--vfs", "3"][..],
        &["nic", "show", "eno49", "-o", "json"],
    ] {
        let l = common::run(&local, args);
        let r = with_ca(args);
        assert_eq!(
            normalize(&String::from_utf8_lossy(&r.stdout)),
            normalize(&String::from_utf8_lossy(&l.stdout)),
            "{args:?}"
        );
        assert_eq!(r.status.code(), Some(0), "{args:?}");
    }
    // The system's roots (if it has any) do not know this certificate: refused, one line.
    let (code, out, err) = text(&remote(&api, None, &["nic", "list"]));
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1 && err.contains("certificate"),
        "{err}"
    );
    // Nor over plain HTTP.
    let (code, _, err) = text(&remote(&format!("http://{listen}"), None, &["nic", "list"]));
    assert_eq!(code, Some(1), "{err}");
    // --ca-file is for https only.
    let (code, _, err) = text(&remote(
        &format!("http://{listen}"),
        None,
        &["--ca-file", cert_pem.to_str().unwrap(), "nic", "list"],
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("error: invalid ca-file '"), "{err}");
}

#[test]
fn what_the_api_does_not_cover_is_refused_naming_the_command() {
    let dir = tempfile::tempdir().unwrap();
    // No daemon there: the refusal comes before any connection.
    let api = format!("unix:{}", dir.path().join("api.sock").display());
    for (args, name) in [
        (&["vm", "xml", "web"][..], "vm xml"),
        (&["vm", "migrate", "web", "--to", "h2"], "vm migrate"),
        (&["host", "persist"], "host persist"),
        (&["host", "apply"], "host apply"),
        (&["host", "desired"], "host desired"),
        (
            &["host", "iommu", "enable", "--root", "/"],
            "host iommu --root",
        ),
        (
            &["host", "iommu", "status", "--root", "/"],
            "host iommu --root",
        ),
        (&["host", "check", "--root", "/"], "host check --root"),
        (&["l3", "check-vf", "n3"], "l3 check-vf"),
        (&["l2", "libvirt-network", "n2"], "l2 libvirt-network"),
        (&["libvirt-hook", "install"], "libvirt-hook"),
        (&["serve"], "serve"),
    ] {
        let (code, out, err) = text(&remote(&api, None, args));
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (
                Some(2),
                "",
                format!(
                    "error: `vfpool {name}` runs only on the host itself (the daemon's API does not cover it): run it without --api\n"
                )
                .as_str()
            ),
            "{args:?}"
        );
    }
    // The URL from the environment.
    let o = Command::new(env!("CARGO_BIN_EXE_vfpool"))
        .args(["vm", "xml", "web"])
        .env("VFPOOL_API", &api)
        .env_remove("VFPOOL_STATE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).starts_with("error: `vfpool vm xml` runs only"),
        "{o:?}"
    );
    // A covered command with no daemon: one line naming where it looked.
    let (code, _, err) = text(&remote(&api, None, &["nic", "list"]));
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "error: cannot connect to the daemon at {api}: No such file or directory (os error 2)\n"
        )
    );
    // A URL that is none of the three.
    let (code, _, err) = text(&remote("ftp://h", None, &["nic", "list"]));
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "error: invalid api 'ftp://h': http://HOST:PORT, https://HOST[:PORT] or unix:/path/to/api.sock\n"
    );
    // `--api` is not for the demo host's own state.
    let o = remote_cmd(&api, None, &["--demo", "nic", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
