//! Tier-2 harness: the `vfpool-cni` binary as a separate process, as root, over a
//! simulated sysfs tree whose VF netdevs are veth/macvlan stand-ins in a test "host"
//! network namespace (`VFPOOL_NETLINK=kernel`). Nothing here touches the real host's root
//! network namespace: every namespace is created by the test and deleted on drop.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use vfpool_engine::nics::SplitRequest;
use vfpool_engine::{Host, HostConfig, Lease, Policy};

pub const ALLOW_SKIP: &str = "VFPOOL_ALLOW_SKIP";

/// True (skip) when not root and skipping is allowed on purpose; panics otherwise.
pub fn skip_unless_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return false;
    }
    assert!(
        std::env::var(ALLOW_SKIP).as_deref() == Ok("1"),
        "{test} needs root to create network namespaces; run it as root, or set {ALLOW_SKIP}=1 to skip it on purpose"
    );
    eprintln!("SKIPPED {test}: needs root to create network namespaces ({ALLOW_SKIP}=1)");
    true
}

/// Runs `ip ARGS`, panicking with its stderr on failure; stdout.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ip -batch -` with `lines`.
pub fn ip_batch(ns: &str, lines: &[String]) {
    let mut c = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ip batch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Debian package the tests need: installed with apt when missing (as root); a failure
/// without it.
pub fn need_package(pkg: &str, probe: &str) {
    if Path::new(probe).exists() {
        return;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", pkg])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok && Path::new(probe).exists(),
        "{pkg} is needed ({probe} missing) and apt-get could not install it"
    );
}

pub fn need_cni_plugins() {
    need_package("containernetworking-plugins", "/usr/lib/cni/host-local");
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace this test created (`/run/netns/NAME`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "vfc{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    pub fn path_str(&self) -> String {
        self.path().display().to_string()
    }

    /// `ip -n NS -j -d link show`, as JSON.
    pub fn links(&self) -> Vec<Value> {
        serde_json::from_str(&ip(&["-n", &self.name, "-j", "-d", "link", "show"])).unwrap()
    }

    pub fn link(&self, name: &str) -> Option<Value> {
        self.links().into_iter().find(|l| l["ifname"] == name)
    }

    pub fn link_names(&self) -> Vec<String> {
        self.links()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The IPv4 addresses (`A/N`) of `dev`.
    pub fn addrs4(&self, dev: &str) -> Vec<String> {
        let v: Vec<Value> = serde_json::from_str(&ip(&[
            "-n", &self.name, "-j", "-4", "addr", "show", "dev", dev,
        ]))
        .unwrap();
        v.iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    /// `ip -4 route show` lines.
    pub fn routes4(&self) -> String {
        ip(&["-n", &self.name, "-4", "route", "show"])
    }

    /// `busybox ping` from inside: whether one echo came back.
    pub fn ping(&self, to: &str) -> bool {
        Command::new("ip")
            .args([
                "netns", "exec", &self.name, "busybox", "ping", "-c", "1", "-W", "2", to,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A stand-in VF: its name in the simulated tree and its MAC in the host namespace.
#[derive(Debug, Clone)]
pub struct StandIn {
    pub name: String,
    pub pci: String,
    pub mac: String,
}

/// The simulated host (state dir with `demo-host/`), a pool `p` of `vfs` VFs of `pf`,
/// and the test host netns with the PF stand-in (a veth) and one macvlan (bridge mode)
/// per VF netdev of the tree, named like it.
pub struct Lab {
    pub dir: TempDir,
    pub host: Netns,
    pub pf: String,
    pub standins: Vec<StandIn>,
}

impl Lab {
    pub fn new(pf: &str, vfs: u32) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vfpool-cni-")
            .tempdir()
            .unwrap();
        {
            let host = Host::open(&HostConfig {
                demo: true,
                state: Some(dir.path().to_owned()),
                ..HostConfig::default()
            })
            .unwrap();
            let mut e = host.engine().unwrap();
            e.split_nics(
                &SplitRequest {
                    nics: vec![pf.to_owned()],
                    vfs: vfs.to_string(),
                    autoprobe: None,
                    timeout: Duration::from_secs(10),
                    force: false,
                    keep_link: false,
                },
                &|_, _, _| {},
            )
            .unwrap();
            e.pool_create("p", vec![pf.parse().unwrap()], Policy::FirstFit)
                .unwrap();
        }
        let sys = dir.path().join("demo-host/sys");
        let mut vf_names = Vec::new();
        for i in 0..vfs {
            let virtfn = sys.join(format!("class/net/{pf}/device/virtfn{i}"));
            let pci = std::fs::read_link(&virtfn)
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let net = sys.join(format!("bus/pci/devices/{pci}/net"));
            let name = std::fs::read_dir(&net)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            vf_names.push((name, pci));
        }
        let host = Netns::new("host");
        let mut batch = vec![
            format!("link add {pf} type veth peer name {pf}-peer"),
            format!("link set {pf} up"),
            format!("link set {pf}-peer up"),
        ];
        for (name, _) in &vf_names {
            batch.push(format!(
                "link add {name} link {pf} type macvlan mode bridge"
            ));
        }
        ip_batch(&host.name, &batch);
        let standins = vf_names
            .into_iter()
            .map(|(name, pci)| {
                let mac = host.link(&name).unwrap()["address"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                StandIn { name, pci, mac }
            })
            .collect();
        Lab {
            dir,
            host,
            pf: pf.to_owned(),
            standins,
        }
    }

    pub fn state(&self) -> &Path {
        self.dir.path()
    }

    pub fn sysfs(&self) -> PathBuf {
        self.dir.path().join("demo-host/sys")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// The host-local allocations of `network` (the IPs it holds files for).
    pub fn ipam_allocations(&self, network: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.ipam_dir().join(network)) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        v.sort();
        v
    }

    /// The leases in the ledger (read with the simulator's netlink: no kernel access).
    pub fn leases(&self) -> Vec<Lease> {
        let host = Host::open(&HostConfig {
            sysfs_root: Some(self.sysfs()),
            state: Some(self.state().to_owned()),
            ..HostConfig::default()
        })
        .unwrap();
        host.engine().unwrap().leases().unwrap()
    }

    /// Every stand-in is in the host namespace under its own name and MAC, not
    /// promiscuous, and the ledger holds no lease.
    pub fn assert_all_back(&self, what: &str) {
        let links = self.host.links();
        for s in &self.standins {
            let l = links
                .iter()
                .find(|l| l["ifname"] == s.name.as_str())
                .unwrap_or_else(|| {
                    panic!("{what}: {} is not back in the host: {links:#?}", s.name)
                });
            assert_eq!(l["address"], s.mac.as_str(), "{what}: {} MAC", s.name);
            assert_eq!(l["promiscuity"], 0, "{what}: {} promiscuous", s.name);
        }
        let leases = self.leases();
        assert!(leases.is_empty(), "{what}: leases left: {leases:#?}");
    }

    pub fn standin(&self, pci: &str) -> &StandIn {
        self.standins.iter().find(|s| s.pci == pci).unwrap()
    }

    /// A network config: pool `p`, host-local IPAM on `subnet` (data under the lab), and
    /// `extra` merged in (a null value removes a key).
    pub fn conf(&self, version: &str, subnet: &str, extra: Value) -> Value {
        let mut v = json!({
            "cniVersion": version, "name": "vfnet", "type": "vfpool-cni", "pool": "p",
            "ipam": {"type": "host-local", "dataDir": self.ipam_dir(),
                     "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}
        });
        merge(&mut v, extra);
        v
    }

    /// The plugin, run in the test host namespace with the lab's environment.
    pub fn cni(&self, cmd: &str, cid: &str, netns: &str, ifname: &str, conf: &Value) -> Out {
        let mut vars = vec![
            ("CNI_COMMAND", cmd.to_owned()),
            ("CNI_CONTAINERID", cid.to_owned()),
            ("CNI_NETNS", netns.to_owned()),
            ("CNI_IFNAME", ifname.to_owned()),
        ];
        vars.retain(|(_, v)| !v.is_empty());
        self.cni_env(&vars, conf)
    }

    /// The plugin with exactly these CNI_* variables (and the lab's VFPOOL_* ones).
    pub fn cni_env(&self, vars: &[(&str, String)], conf: &Value) -> Out {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vfpool-cni"));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_PATH", "/usr/lib/cni")
            .env("VFPOOL_STATE", self.state())
            .env("VFPOOL_SYSFS_ROOT", self.sysfs())
            .env("VFPOOL_NETLINK", "kernel");
        for (k, v) in vars {
            c.env(k, v);
        }
        run_in(&self.host, c, conf.to_string().as_bytes())
    }

    pub fn add(&self, cid: &str, ns: &Netns, conf: &Value) -> Value {
        let o = self.cni("ADD", cid, &ns.path_str(), "net1", conf);
        o.ok("ADD")
    }

    pub fn del(&self, cid: &str, netns: &str, conf: &Value) {
        self.cni("DEL", cid, netns, "net1", conf).ok("DEL");
    }
}

/// Merges `extra` into `v` (objects recursively; null removes).
pub fn merge(v: &mut Value, extra: Value) {
    let Value::Object(extra) = extra else { return };
    let o = v.as_object_mut().unwrap();
    for (k, x) in extra {
        match (o.get_mut(&k), x) {
            (_, Value::Null) => {
                o.remove(&k);
            }
            (Some(cur @ Value::Object(_)), x @ Value::Object(_)) => merge(cur, x),
            (_, x) => {
                o.insert(k, x);
            }
        }
    }
}

/// A plugin run's outcome.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// Success: the result (or null when the verb prints none).
    pub fn ok(&self, what: &str) -> Value {
        assert_eq!(self.code, Some(0), "{what} failed: {self:#?}");
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Failure with the spec's error JSON and `code`; the message.
    pub fn err(&self, code: u64, what: &str) -> String {
        assert_eq!(self.code, Some(1), "{what}: expected a failure: {self:#?}");
        let v = self.json();
        assert_eq!(v["code"], code, "{what}: {v:#}");
        assert!(v["cniVersion"].is_string(), "{what}: {v:#}");
        v["msg"].as_str().unwrap().to_owned()
    }
}

/// Runs `c` inside `ns` (setns in the child before exec; no mount namespace change), with
/// `stdin`.
pub fn run_in(ns: &Netns, mut c: Command, stdin: &[u8]) -> Out {
    let f = std::fs::File::open(ns.path()).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: between fork and exec the closure only makes the setns system call (async-
    // signal-safe) on a descriptor the closure owns (open until the closure is dropped).
    unsafe {
        c.pre_exec(move || {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
        });
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // A plugin that fails before reading stdin closes it: that is its answer, not ours.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
