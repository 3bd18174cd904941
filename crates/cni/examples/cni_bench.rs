//! The CNI plugin's benchmark (issue [cni], "Performance"): `vfpool-cni` ADD and DEL moving
//! a veth stand-in for a VF into a pod's network namespace, against Debian's reference
//! `host-device` plugin moving the same kind of veth and against the bare kernel move, in
//! the same run, interleaved; then bursts of parallel ADDs and DELs on a pool.
//!
//! ```text
//! cargo build --release -p vfpool-cni --bin vfpool-cni
//! RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p vfpool-cni \
//!     --bin vfpool-cni --target x86_64-unknown-linux-gnu
//! cargo run --release -p vfpool-cni --example cni_bench -- \
//!     --plugin vfpool-cni=target/release/vfpool-cni \
//!     --plugin vfpool-cni-static=target/x86_64-unknown-linux-gnu/release/vfpool-cni
//! ```
//!
//! Root only. The bench first moves itself into a new network namespace and a new mount
//! namespace (nothing it does is seen by the host's), which stands for the host's root
//! namespace: the simulated host's PF `em1` split into 50 VFs (sysfs on tmpfs, the ledger on
//! `--dir`, a disk as `/var/lib/vfpool` is), veth pairs named as the simulated VF netdevs
//! standing in for them (`VFPOOL_NETLINK=kernel`), pod namespaces bind-mounted on files as
//! runtimes do. Every plugin call is a child process: its wall time (spawn to reaped) and
//! its CPU time (user + system) from `wait4`'s rusage, which counts its own reaped children
//! too (the IPAM plugin): the "no IPAM" rows give the plugin alone. Peak RSS is the
//! plugin's own `VmHWM` at exit, in separate traced calls (see `Call::peak_rss`).
//!
//! `--via-daemon VFPOOL` adds a contender: the first `--plugin` as a client of `vfpool
//! serve` (the `VFPOOL` binary, started here with a ledger of its own, the same simulated
//! tree and `VFPOOL_NETLINK=kernel`), which does the work with its ledger open. Its table
//! rows add the daemon's CPU time per call: `utime + stime + cutime + cstime` of
//! `/proc/PID/stat` (all its threads and the IPAM plugins it ran, in clock ticks) read
//! before and after each call, summed over the rounds per verb and divided by the calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::libc;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use serde_json::{Value, json};
use vfpool_engine::nics::SplitRequest;
use vfpool_engine::{Host, HostConfig, Policy, PoolSelector};
use vfpool_netlink::{NetOps, RtNetlink, current_netns};

const PF: &str = "em1";
const POOL: &str = "bench";
const IFNAME: &str = "net1";

struct Args {
    plugins: Vec<(String, PathBuf)>,
    host_device: PathBuf,
    cni_path: PathBuf,
    rounds: usize,
    burst: usize,
    bursts: usize,
    dir: PathBuf,
    only_ipam: bool,
    rss_rounds: usize,
    via_daemon: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        plugins: Vec::new(),
        host_device: "/usr/lib/cni/host-device".into(),
        cni_path: "/usr/lib/cni".into(),
        rounds: 200,
        burst: 50,
        bursts: 3,
        dir: std::env::temp_dir(),
        only_ipam: false,
        rss_rounds: 20,
        via_daemon: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--plugin" => {
                let s = v();
                let (label, path) = s.split_once('=').expect("--plugin LABEL=PATH");
                a.plugins
                    .push((label.to_owned(), std::path::absolute(path).unwrap()));
            }
            "--host-device" => a.host_device = v().into(),
            "--cni-path" => a.cni_path = v().into(),
            "--rounds" => a.rounds = v().parse().expect("--rounds N"),
            "--burst" => a.burst = v().parse().expect("--burst N"),
            "--bursts" => a.bursts = v().parse().expect("--bursts N"),
            "--dir" => a.dir = v().into(),
            "--only-ipam" => a.only_ipam = true,
            "--rss-rounds" => a.rss_rounds = v().parse().expect("--rss-rounds N"),
            "--via-daemon" => a.via_daemon = Some(std::path::absolute(v()).unwrap()),
            _ => panic!(
                "usage: cni_bench [--plugin LABEL=PATH]... [--host-device PATH] [--cni-path DIR] \
                 [--rounds N] [--rss-rounds N] [--burst N] [--bursts N] [--dir DIR] [--only-ipam] \
                 [--via-daemon VFPOOL]"
            ),
        }
    }
    if a.plugins.is_empty() {
        a.plugins.push((
            "vfpool-cni".into(),
            std::path::absolute("target/release/vfpool-cni").unwrap(),
        ));
    }
    a
}

/// One call's cost.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    /// The daemon's CPU during the call, in clock ticks (0 without a daemon).
    daemon: u64,
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// Reaps `pid` (or any child, -1) and returns it with its exit status and rusage (its own
/// and its reaped children's: Linux's `wait4` reports `RUSAGE_BOTH` of the child).
#[allow(unsafe_code)]
fn wait4(pid: i32) -> (i32, ExitStatus, libc::rusage) {
    let mut status = 0;
    // SAFETY: rusage is plain old data; all zeroes is a valid value, which wait4 overwrites.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r > 0 {
            return (r, ExitStatus::from_raw(status), ru);
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EINTR), "wait4: {e}");
    }
}

fn self_cpu() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let t = |v: nix::sys::time::TimeVal| {
        Duration::from_secs(v.tv_sec() as u64) + Duration::from_micros(v.tv_usec() as u64)
    };
    t(u.user_time()) + t(u.system_time())
}

/// A plugin call: the binary, its CNI environment, its stdin.
struct Call<'a> {
    bin: &'a Path,
    env: Vec<(&'static str, String)>,
    stdin: Vec<u8>,
}

struct Outcome {
    sample: Sample,
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Outcome {
    fn check(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed ({}): {}{}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        );
        self
    }
}

impl Call<'_> {
    fn spawn(&self) -> Child {
        let mut cmd = Command::new(self.bin);
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&self.stdin).unwrap();
        child
    }

    /// The plugin's own peak RSS (`VmHWM`, KiB), read when it exits, stopped there by
    /// ptrace (`PTRACE_O_TRACEEXIT`); its own children (IPAM) are not traced. Not timed:
    /// `wait4`'s `ru_maxrss` cannot tell it, since exec records the high-water mark of the
    /// memory the child was spawned from (this bench's) as the child's own.
    #[allow(unsafe_code)]
    fn peak_rss(&self) -> u64 {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.bin);
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: PTRACE_TRACEME takes no pointers and is async-signal-safe; nothing else
        // runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(&self.stdin).unwrap();
        let pid = child.id() as i32;
        let mut hwm = None;
        loop {
            let mut status = 0;
            // SAFETY: a live local for the status.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                break;
            }
            let sig = libc::WSTOPSIG(status);
            let event = (status >> 16) & 0xff;
            let inject = if sig == libc::SIGTRAP && event == 0 && hwm.is_none() {
                // The stop after exec: ask for a stop at exit.
                // SAFETY: ptrace on our stopped tracee, no pointers.
                let r = unsafe {
                    libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, libc::PTRACE_O_TRACEEXIT)
                };
                assert_eq!(r, 0);
                hwm = Some(0);
                0
            } else if sig == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXIT {
                let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
                hwm = st
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap());
                0
            } else {
                sig
            };
            // SAFETY: as above; `inject` is a signal number or 0.
            let r = unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, inject) };
            assert_eq!(r, 0);
        }
        let (stdout, _) = drain(&mut child);
        assert!(!stdout.is_empty() || self.env[0].1 == "DEL");
        hwm.expect("VmHWM at exit")
    }

    fn run(&self) -> Outcome {
        let start = Instant::now();
        let mut child = self.spawn();
        let (stdout, stderr) = drain(&mut child);
        let (_, status, ru) = wait4(child.id() as i32);
        let wall = start.elapsed();
        Outcome {
            sample: sample(wall, &ru),
            status,
            stdout,
            stderr,
        }
    }
}

fn drain(child: &mut Child) -> (Vec<u8>, Vec<u8>) {
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    (stdout, stderr)
}

fn sample(wall: Duration, ru: &libc::rusage) -> Sample {
    Sample {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        daemon: 0,
    }
}

/// A network namespace bind-mounted on a file (as runtimes make a pod's), and its fd.
struct PodNs {
    path: PathBuf,
    fd: OwnedFd,
}

impl PodNs {
    fn new(path: PathBuf) -> Self {
        std::fs::File::create(&path).unwrap();
        let p = path.clone();
        let fd = std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            mount(
                Some("/proc/thread-self/ns/net"),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .expect("bind-mount the pod's netns");
            current_netns().unwrap()
        })
        .join()
        .unwrap();
        Self { path, fd }
    }
}

impl Drop for PodNs {
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What is being measured: one way of moving a netdev into a pod and out again.
#[derive(Clone)]
enum Contender {
    /// A CNI plugin binary with its config (`device` for host-device).
    Plugin {
        label: String,
        bin: PathBuf,
        conf: Value,
        /// A vfpool plugin's state directory (its own ledger: one plugin's WAL does not
        /// change another's cost); `None` for host-device.
        state: Option<PathBuf>,
        /// The pid of the `vfpool serve` the plugin asks (its CPU is measured apart).
        daemon: Option<u32>,
    },
    /// The RTM_NEWLINK netns move (with the rename to the ifname) done in-process through
    /// `vfpool_netlink::RtNetlink`: the wall-time floor.
    Bare,
}

impl Contender {
    fn label(&self) -> String {
        match self {
            Contender::Plugin { label, .. } => label.clone(),
            Contender::Bare => "bare kernel move (RtNetlink, in-process)".into(),
        }
    }
}

struct Bench {
    sysfs: PathBuf,
    cni_path: PathBuf,
    nl: RtNetlink,
}

impl Bench {
    /// The CNI environment; `state`: the ledger of a vfpool plugin (`None` for host-device).
    fn env(
        &self,
        cmd: &str,
        cid: &str,
        ns: &Path,
        state: Option<&Path>,
    ) -> Vec<(&'static str, String)> {
        let mut e = vec![
            ("CNI_COMMAND", cmd.to_owned()),
            ("CNI_CONTAINERID", cid.to_owned()),
            ("CNI_NETNS", ns.display().to_string()),
            ("CNI_IFNAME", IFNAME.to_owned()),
            ("CNI_PATH", self.cni_path.display().to_string()),
        ];
        if let Some(state) = state {
            e.push(("VFPOOL_STATE", state.display().to_string()));
            e.push(("VFPOOL_SYSFS_ROOT", self.sysfs.display().to_string()));
            e.push(("VFPOOL_NETLINK", "kernel".to_owned()));
            if let Ok(l) = std::env::var("VFPOOL_LOG") {
                e.push(("VFPOOL_LOG", l));
            }
        }
        e
    }

    /// ADD then DEL, traced for their own peak RSS (KiB); `None` for the bare move.
    fn peak_rss(&self, c: &Contender, cid: &str, pod: &PodNs) -> Option<(u64, u64)> {
        let Contender::Plugin {
            bin, conf, state, ..
        } = c
        else {
            return None;
        };
        let stdin = serde_json::to_vec(conf).unwrap();
        let call = |cmd| Call {
            bin,
            env: self.env(cmd, cid, &pod.path, state.as_deref()),
            stdin: stdin.clone(),
        };
        Some((call("ADD").peak_rss(), call("DEL").peak_rss()))
    }

    /// ADD then DEL; their samples.
    fn add_del(&self, c: &Contender, cid: &str, pod: &PodNs) -> (Sample, Sample) {
        match c {
            Contender::Plugin {
                label,
                bin,
                conf,
                state,
                daemon,
            } => {
                let ticks = || daemon.map(daemon_cpu).unwrap_or_default();
                let stdin = serde_json::to_vec(conf).unwrap();
                let d0 = ticks();
                let mut add = Call {
                    bin,
                    env: self.env("ADD", cid, &pod.path, state.as_deref()),
                    stdin: stdin.clone(),
                }
                .run();
                let d1 = ticks();
                add.sample.daemon = d1 - d0;
                add.check(&format!("{label} ADD"));
                let r: Value = serde_json::from_slice(&add.stdout).unwrap();
                assert_eq!(r["interfaces"][0]["name"], IFNAME, "{label}: {r}");
                // Not timed: the netdev really is in the pod (a plugin that leased without
                // moving would look fast).
                self.nl
                    .enter_netns(pod.fd.as_fd())
                    .unwrap()
                    .link(IFNAME)
                    .unwrap();
                let d0 = ticks();
                let mut del = Call {
                    bin,
                    env: self.env("DEL", cid, &pod.path, state.as_deref()),
                    stdin,
                }
                .run();
                del.sample.daemon = ticks() - d0;
                del.check(&format!("{label} DEL"));
                (add.sample, del.sample)
            }
            Contender::Bare => {
                let (c0, t0) = (self_cpu(), Instant::now());
                self.nl
                    .move_to_netns("bm0", pod.fd.as_fd(), Some(IFNAME))
                    .unwrap();
                let add = Sample {
                    wall: t0.elapsed(),
                    cpu: self_cpu() - c0,
                    daemon: 0,
                };
                let (c0, t0) = (self_cpu(), Instant::now());
                self.nl
                    .move_from_netns(pod.fd.as_fd(), IFNAME, Some("bm0"))
                    .unwrap();
                let del = Sample {
                    wall: t0.elapsed(),
                    cpu: self_cpu() - c0,
                    daemon: 0,
                };
                (add, del)
            }
        }
    }
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i]
}

#[derive(Default)]
struct Series {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    rss: Vec<f64>,
    /// The daemon's CPU over every call, clock ticks.
    daemon_ticks: u64,
}

impl Series {
    fn push(&mut self, s: Sample) {
        self.wall.push(s.wall.as_secs_f64() * 1e3);
        self.cpu.push(s.cpu.as_secs_f64() * 1e3);
        self.daemon_ticks += s.daemon;
    }
    /// The daemon's mean CPU per call, ms.
    fn daemon_ms(&self) -> f64 {
        self.daemon_ticks as f64 * 1e3 / clock_ticks() as f64 / self.cpu.len().max(1) as f64
    }
    fn push_rss(&mut self, kib: u64) {
        self.rss.push(kib as f64 / 1024.0);
    }
    fn q(v: &[f64], q: f64) -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        quantile(&mut v.to_vec(), q)
    }
    fn med(&self) -> (f64, f64, f64) {
        (
            Self::q(&self.wall, 0.5),
            Self::q(&self.cpu, 0.5),
            Self::q(&self.rss, 0.5),
        )
    }
    fn p90(&self) -> (f64, f64, f64) {
        (
            Self::q(&self.wall, 0.9),
            Self::q(&self.cpu, 0.9),
            Self::q(&self.rss, 1.0),
        )
    }
}

/// Clock ticks per second (`/proc/PID/stat`'s unit).
fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |t| t as u64)
}

/// `utime + stime + cutime + cstime` of process `pid` (every thread, the exited ones too,
/// and the children it reaped: the IPAM plugins it ran), clock ticks.
fn daemon_cpu(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon's stat");
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 to 17 (utime, stime, cutime, cstime); `rest` starts at field 3.
    f[11..15].iter().map(|v| v.parse::<u64>().unwrap()).sum()
}

/// A `vfpool serve` this bench started; killed (by its pid) when dropped.
struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} vCPUs ({cpu}), kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel.trim()
    )
}

/// The VF netdev names of `PF`'s VFs in the simulated tree, by index.
fn vf_netdevs(sysfs: &Path) -> Vec<String> {
    let pf = std::fs::read_link(sysfs.join(format!("class/net/{PF}/device")))
        .or_else(|_| {
            // The simulated tree may list PFs under bus/pci/devices only.
            let mut found = None;
            for e in std::fs::read_dir(sysfs.join("bus/pci/devices")).unwrap() {
                let p = e.unwrap().path();
                if p.join(format!("net/{PF}")).exists() {
                    found = Some(p);
                }
            }
            found.ok_or(())
        })
        .expect("the PF in the simulated tree");
    let pf = if pf.is_absolute() {
        pf
    } else {
        sysfs.join("class/net").join(PF).join(pf)
    };
    let mut out = Vec::new();
    for i in 0.. {
        let net = pf.join(format!("virtfn{i}/net"));
        let Ok(mut d) = std::fs::read_dir(&net) else {
            break;
        };
        out.push(
            d.next()
                .unwrap()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    out
}

fn main() {
    let a = args();
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "cni_bench needs root (network namespaces)"
    );
    // Before any thread: this process's own network and mount namespaces.
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).expect("unshare");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private in the bench's mount namespace");

    let tag = format!("cni-bench-{}", std::process::id());
    let work = a.dir.join(&tag);
    let shm = PathBuf::from("/dev/shm").join(&tag);
    let state = work.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&shm).unwrap();
    let nsdir = work.join("netns");
    std::fs::create_dir_all(&nsdir).unwrap();

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&a, &state, &shm, &nsdir);
    }));
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&shm);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn run(a: &Args, state: &Path, shm: &Path, nsdir: &Path) {
    println!("machine: {}", machine());
    println!("load average at start: {}", loadavg());
    // The simulated host, generated on tmpfs (sysfs is in memory too); then opened by path
    // with the ledger in `state` (on `--dir`), as the plugin will: em1 split, a pool of its VFs.
    Host::open(&HostConfig {
        demo: true,
        state: Some(shm.to_owned()),
        ..HostConfig::default()
    })
    .unwrap();
    let sysfs = shm.join("demo-host/sys");
    let host = Host::open(&HostConfig {
        sysfs_root: Some(sysfs.clone()),
        state: Some(state.to_owned()),
        ..HostConfig::default()
    })
    .unwrap();
    let mut engine = host.engine().unwrap();
    let n_vfs = a.burst.max(1);
    engine
        .split_nics(
            &SplitRequest {
                nics: vec![PF.into()],
                vfs: n_vfs.to_string(),
                autoprobe: None,
                timeout: Duration::from_secs(10),
                force: false,
                keep_link: false,
            },
            &|_, _, _| {},
        )
        .unwrap();
    engine
        .pool_create(
            POOL,
            vec![PF.parse::<PoolSelector>().unwrap()],
            Policy::FirstFit,
        )
        .unwrap();
    // Closed: while any process has the ledger open, the next one to open it skips SQLite's
    // WAL recovery, which every plugin call pays on a host where nothing else keeps it open.
    drop(engine);
    // The same pool in each plugin's own ledger (the first one's is `state`'s), and in the
    // daemon's (after the plugins').
    let ledgers = a.plugins.len() + usize::from(a.via_daemon.is_some());
    for k in 1..ledgers {
        Host::open(&HostConfig {
            sysfs_root: Some(sysfs.clone()),
            state: Some(plugin_state(state, k)),
            ..HostConfig::default()
        })
        .unwrap()
        .engine()
        .unwrap()
        .pool_create(
            POOL,
            vec![PF.parse::<PoolSelector>().unwrap()],
            Policy::FirstFit,
        )
        .unwrap();
    }
    let vfs = vf_netdevs(&sysfs);
    assert_eq!(vfs.len(), n_vfs, "{vfs:?}");

    // The stand-ins, both ends of each veth in this (the bench's) namespace.
    let nl = RtNetlink::new().unwrap();
    let here = current_netns().unwrap();
    nl.set_up("lo", true).unwrap();
    nl.add_veth(PF, "pfpeer", here.as_fd()).unwrap();
    for (i, v) in vfs.iter().enumerate() {
        nl.add_veth(v, &format!("vfpeer{i}"), here.as_fd()).unwrap();
        nl.add_veth(&format!("hd{i}"), &format!("hdpeer{i}"), here.as_fd())
            .unwrap();
    }
    nl.add_veth("bm0", "bmpeer0", here.as_fd()).unwrap();

    let bench = Bench {
        sysfs: sysfs.clone(),
        cni_path: a.cni_path.clone(),
        nl,
    };
    // The daemon, in this (the bench's) network and mount namespaces.
    let daemon_state = plugin_state(state, a.plugins.len());
    let daemon_socket = daemon_state.join("api.sock");
    let daemon = a.via_daemon.as_ref().map(|vfpool| {
        let child = Command::new(vfpool)
            .arg("--state")
            .arg(&daemon_state)
            .arg("--sysfs-root")
            .arg(&sysfs)
            .args(["serve", "--no-tcp", "--socket"])
            .arg(&daemon_socket)
            .env("VFPOOL_NETLINK", "kernel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon { child };
        let t0 = Instant::now();
        while std::os::unix::net::UnixStream::connect(&daemon_socket).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "vfpool serve: no socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    });
    let static_ipam = json!({"type": "static", "addresses": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1"}],
                             "routes": [{"dst": "10.2.0.0/16"}]});
    let mut contenders = Vec::new();
    for ipam in [true, false] {
        if !ipam && a.only_ipam {
            continue;
        }
        let suffix = if ipam { "static IPAM" } else { "no IPAM" };
        for (k, (label, bin)) in a.plugins.iter().enumerate() {
            let mut conf = json!({"cniVersion": "1.0.0", "name": "bench", "type": "vfpool-cni",
                "pool": POOL, "vfpoolDaemonSocket": ""});
            if ipam {
                conf["ipam"] = static_ipam.clone();
            }
            contenders.push(Contender::Plugin {
                label: format!("{label}, {suffix}"),
                bin: bin.clone(),
                conf: conf.clone(),
                state: Some(plugin_state(state, k)),
                daemon: None,
            });
            if k == 0
                && let Some(d) = &daemon
            {
                conf["vfpoolDaemonSocket"] = daemon_socket.display().to_string().into();
                contenders.push(Contender::Plugin {
                    label: format!("{label} via daemon, {suffix}"),
                    bin: bin.clone(),
                    conf,
                    state: Some(daemon_state.clone()),
                    daemon: Some(d.child.id()),
                });
            }
        }
        let mut conf = json!({"cniVersion": "1.0.0", "name": "bench-hd", "type": "host-device", "device": "hd0"});
        if ipam {
            conf["ipam"] = static_ipam.clone();
        }
        contenders.push(Contender::Plugin {
            label: format!("host-device, {suffix}"),
            bin: a.host_device.clone(),
            conf,
            state: None,
            daemon: None,
        });
    }
    contenders.push(Contender::Bare);

    // 1. Sequential, interleaved: each round runs every contender once (ADD then DEL).
    let pod = PodNs::new(nsdir.join("pod"));
    let mut adds: BTreeMap<usize, Series> = BTreeMap::new();
    let mut dels: BTreeMap<usize, Series> = BTreeMap::new();
    // One warm-up round, not counted (page cache, the ledger's first open).
    for c in &contenders {
        bench.add_del(c, "warmup", &pod);
    }
    let t0 = Instant::now();
    let daemon_at_start = daemon.as_ref().map(|d| daemon_cpu(d.child.id()));
    // A new order every round (a seeded xorshift shuffle): a call's CPU time includes
    // kernel work left by the call before it (RCU callbacks, deferred frees run in softirq
    // on whatever task is current), so no contender may always follow the same one.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut order: Vec<usize> = (0..contenders.len()).collect();
    for r in 0..a.rounds {
        for k in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(k, (seed % (k as u64 + 1)) as usize);
        }
        for &i in &order {
            let (add, del) = bench.add_del(&contenders[i], &format!("seq-{r}"), &pod);
            adds.entry(i).or_default().push(add);
            dels.entry(i).or_default().push(del);
        }
    }
    // Peak RSS, in calls of their own (traced, so not timed).
    for r in 0..a.rss_rounds {
        for (i, c) in contenders.iter().enumerate() {
            if let Some((add, del)) = bench.peak_rss(c, &format!("rss-{r}"), &pod) {
                adds.entry(i).or_default().push_rss(add);
                dels.entry(i).or_default().push_rss(del);
            }
        }
    }
    println!(
        "\n{} rounds in {:.1} s; load average now {}",
        a.rounds,
        t0.elapsed().as_secs_f64(),
        loadavg()
    );
    if let (Some(d), Some(t)) = (&daemon, daemon_at_start) {
        // Over the whole sequential phase, its idle time between calls included.
        // (The traced RSS calls included.)
        let calls = 2 * (a.rounds + a.rss_rounds) * if a.only_ipam { 1 } else { 2 };
        println!(
            "daemon CPU over the rounds: {:.2} ms per call ({calls} calls)",
            (daemon_cpu(d.child.id()) - t) as f64 * 1e3 / clock_ticks() as f64 / calls as f64
        );
    }
    if a.rounds > 0 {
        report(&contenders, &adds, &dels);
    }
    drop(pod);
    drop(daemon);
    bursts(a, &bench, &host, &vfs, &static_ipam, nsdir);
    println!("\nload average at the end: {}", loadavg());
}

fn report(
    contenders: &[Contender],
    adds: &BTreeMap<usize, Series>,
    dels: &BTreeMap<usize, Series>,
) {
    println!(
        "\n| contender | verb | wall ms median (p90) | CPU ms median (p90) | own peak RSS MiB median (max) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (i, c) in contenders.iter().enumerate() {
        for (verb, s) in [("ADD", &adds[&i]), ("DEL", &dels[&i])] {
            let (w, c_, r) = s.med();
            let (w9, c9, rmax) = s.p90();
            let rss = if matches!(c, Contender::Bare) {
                "-".to_owned()
            } else {
                format!("{r:.2} ({rmax:.2})")
            };
            println!(
                "| {} | {verb} | {w:.2} ({w9:.2}) | {c_:.2} ({c9:.2}) | {rss} |",
                c.label()
            );
        }
    }
    // Ratios against host-device with the same IPAM, and against the floor.
    let find = |l: &str| contenders.iter().position(|c| c.label() == l);
    let bare = contenders.len() - 1;
    println!(
        "\n| plugin | verb | CPU / host-device's (medians) | wall - bare move (medians) | daemon CPU ms per call (mean) | plugin + daemon CPU / host-device's |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, c) in contenders.iter().enumerate() {
        let Contender::Plugin {
            label,
            state: Some(_),
            daemon,
            ..
        } = c
        else {
            continue;
        };
        let suffix = label.rsplit_once(", ").unwrap().1;
        let hd = find(&format!("host-device, {suffix}")).unwrap();
        for (verb, m) in [("ADD", &adds), ("DEL", &dels)] {
            let (w, cpu, _) = m[&i].med();
            let (_, hcpu, _) = m[&hd].med();
            let (bw, _, _) = m[&bare].med();
            let (d, sum) = if daemon.is_some() {
                let d = m[&i].daemon_ms();
                (
                    format!("{d:.2}"),
                    format!("{:.3} ({:.2} / {hcpu:.2} ms)", (cpu + d) / hcpu, cpu + d),
                )
            } else {
                ("-".into(), "-".into())
            };
            println!(
                "| {label} | {verb} | {:.3} ({cpu:.2} / {hcpu:.2} ms) | {:+.2} ms ({w:.2} - {bw:.2}) | {d} | {sum} |",
                cpu / hcpu,
                w - bw
            );
        }
    }
}

fn bursts(a: &Args, bench: &Bench, host: &Host, vfs: &[String], static_ipam: &Value, nsdir: &Path) {
    // 2. Bursts: `burst` ADDs at once on the pool of `burst` VFs, then as many DELs.
    println!(
        "\n| burst of {} | verb | wall of the burst ms | failures | distinct VFs |",
        a.burst
    );
    println!("| --- | --- | --- | --- | --- |");
    let pods: Vec<PodNs> = (0..a.burst)
        .map(|i| PodNs::new(nsdir.join(format!("par{i}"))))
        .collect();
    let (label, bin) = &a.plugins[0];
    for b in 0..a.bursts {
        let vf_conf = json!({"cniVersion": "1.1.0", "name": "burst", "type": "vfpool-cni",
                             "pool": POOL, "ipam": static_ipam, "vfpoolDaemonSocket": ""});
        let calls = |cmd: &str| -> Vec<Call<'_>> {
            pods.iter()
                .enumerate()
                .map(|(i, p)| Call {
                    bin,
                    env: bench.env(cmd, &format!("burst{b}-{i}"), &p.path, Some(&host.state)),
                    stdin: serde_json::to_vec(&vf_conf).unwrap(),
                })
                .collect()
        };
        let (wall, outs) = burst(&calls("ADD"));
        let failed = outs.iter().filter(|o| !o.status.success()).count();
        for o in outs.iter().filter(|o| !o.status.success()) {
            eprintln!("ADD failed: {}", String::from_utf8_lossy(&o.stdout));
        }
        let from_results: HashSet<String> = outs
            .iter()
            .filter(|o| o.status.success())
            .map(|o| {
                let r: Value = serde_json::from_slice(&o.stdout).unwrap();
                r["interfaces"][0]["pciID"].as_str().unwrap().to_owned()
            })
            .collect();
        let leases = host.engine().unwrap().leases().unwrap();
        let from_ledger: HashSet<String> = leases.iter().map(|l| l.vf_pci.to_string()).collect();
        assert_eq!(leases.len(), a.burst - failed, "leases after the ADD burst");
        assert_eq!(
            from_ledger.len(),
            leases.len(),
            "a VF leased twice: {leases:?}"
        );
        assert_eq!(from_results, from_ledger, "results and ledger disagree");
        // Every stand-in left the bench's namespace, each pod got one under IFNAME.
        let here: HashSet<String> = bench
            .nl
            .links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        let still: Vec<_> = vfs.iter().filter(|v| here.contains(*v)).collect();
        assert!(
            still.is_empty(),
            "stand-ins still here: {still:?}; leases {:?}",
            leases
                .iter()
                .map(|l| (
                    l.vf_pci.to_string(),
                    l.netdev.clone(),
                    l.ifname.clone(),
                    l.netns.clone()
                ))
                .collect::<Vec<_>>()
        );
        for p in &pods {
            let inside = bench.nl.enter_netns(p.fd.as_fd()).unwrap();
            inside.link(IFNAME).unwrap();
        }
        println!(
            "| {label} #{} | ADD | {:.1} | {failed} | {} (results) / {} (ledger) |",
            b + 1,
            wall.as_secs_f64() * 1e3,
            from_results.len(),
            from_ledger.len()
        );
        let (wall, outs) = burst(&calls("DEL"));
        let failed = outs.iter().filter(|o| !o.status.success()).count();
        for o in outs.iter().filter(|o| !o.status.success()) {
            eprintln!("DEL failed: {}", String::from_utf8_lossy(&o.stdout));
        }
        let left = host.engine().unwrap().leases().unwrap().len();
        let here: HashSet<String> = bench
            .nl
            .links()
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        let back = vfs.iter().filter(|v| here.contains(*v)).count();
        println!(
            "| {label} #{} | DEL | {:.1} | {failed} | {left} leases left, {back} of {} stand-ins back |",
            b + 1,
            wall.as_secs_f64() * 1e3,
            vfs.len()
        );
        assert_eq!((failed, left, back), (0, 0, vfs.len()));

        // The peer: host-device, one device per pod, the same burst.
        let hd_calls = |cmd: &str| -> Vec<Call<'_>> {
            pods.iter()
                .enumerate()
                .map(|(i, p)| Call {
                    bin: &a.host_device,
                    env: bench.env(cmd, &format!("hdburst{b}-{i}"), &p.path, None),
                    stdin: serde_json::to_vec(&json!({"cniVersion": "1.0.0", "name": "burst-hd",
                        "type": "host-device", "device": format!("hd{i}"), "ipam": static_ipam}))
                    .unwrap(),
                })
                .collect()
        };
        for cmd in ["ADD", "DEL"] {
            let (wall, outs) = burst(&hd_calls(cmd));
            let failed = outs.iter().filter(|o| !o.status.success()).count();
            println!(
                "| host-device #{} | {cmd} | {:.1} | {failed} | - |",
                b + 1,
                wall.as_secs_f64() * 1e3
            );
        }
    }
}

/// The state directory of the `k`th vfpool plugin: `state` itself for the first.
fn plugin_state(state: &Path, k: usize) -> PathBuf {
    if k == 0 {
        state.to_owned()
    } else {
        state.with_file_name(format!("state-{k}"))
    }
}

/// Starts every call at once and waits for all; the burst's wall time and each outcome.
fn burst(calls: &[Call<'_>]) -> (Duration, Vec<Outcome>) {
    let start = Instant::now();
    let mut children: Vec<Child> = calls.iter().map(Call::spawn).collect();
    let mut outs: Vec<Option<Outcome>> = (0..calls.len()).map(|_| None).collect();
    // Reap in any order (stdout fits a pipe's buffer), then read each one's output.
    let mut reaped = Vec::new();
    for _ in 0..calls.len() {
        let (pid, status, ru) = wait4(-1);
        reaped.push((pid, status, sample(start.elapsed(), &ru)));
    }
    let wall = start.elapsed();
    for (pid, status, s) in reaped {
        let i = children.iter().position(|c| c.id() as i32 == pid).unwrap();
        let (stdout, stderr) = drain(&mut children[i]);
        outs[i] = Some(Outcome {
            sample: s,
            status,
            stdout,
            stderr,
        });
    }
    (wall, outs.into_iter().map(Option::unwrap).collect())
}
