#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use vfpool_engine::{AcquireRequest, Engine, PoolSelector};
use vfpool_host::split::{self, SplitOptions};
use vfpool_host::{Inventory, Sysfs};
use vfpool_model::VfConfig;
use vfpool_netlink::NetOps;
use vfpool_sim::{HostSpec, SimHost, SimNetOps};

pub struct Lab {
    pub dir: TempDir,
    pub sim: SimHost,
    pub fs: Sysfs,
    pub net: Arc<SimNetOps>,
}

impl Lab {
    pub fn new() -> Self {
        Self::with_spec(&HostSpec::demo())
    }

    pub fn with_spec(spec: &HostSpec) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("demo-host");
        std::fs::create_dir_all(&root).unwrap();
        let sim = SimHost::open_or_create(&root, spec).unwrap();
        let fs = Sysfs::new(sim.paths().sys, Arc::new(sim.clone()));
        let net = Arc::new(SimNetOps::new(sim.root()));
        Lab { dir, sim, fs, net }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn engine(&self) -> Engine {
        Engine::open(&self.state(), self.fs.clone(), self.net.clone()).unwrap()
    }

    pub fn split(&self, nic: &str, n: u32) {
        let inv = Inventory::scan(&self.fs).unwrap();
        let nic = inv.find_sriov_pf(nic).unwrap().clone();
        let opts = SplitOptions {
            timeout: Duration::from_secs(5),
            ..SplitOptions::default()
        };
        split::split(&self.fs, &nic, n, &opts, &|_, _| {}).unwrap();
    }

    pub fn restore(&self, nic: &str) {
        let inv = Inventory::scan(&self.fs).unwrap();
        let nic = inv.find_sriov_pf(nic).unwrap().clone();
        split::restore(&self.fs, &nic, Duration::from_secs(5)).unwrap();
    }

    pub fn vf_config(&self, pf: &str, index: u16) -> VfConfig {
        self.net
            .vf_configs(pf)
            .unwrap()
            .into_iter()
            .find(|(i, _)| *i == index)
            .unwrap()
            .1
    }

    /// Asserts that VF `index` of `pf` carries nothing a lease set: the kernel's defaults,
    /// no MAC set by the PF, and as MAC either none or the one its own driver chose (which
    /// its netdev has).
    pub fn assert_pristine(&self, pf: &str, index: u16, what: &str) {
        let c = self.vf_config(pf, index);
        assert_eq!(
            vfpool_sim::admin_mac(self.sim.root(), pf, index),
            None,
            "{what}: VF {index} of {pf} has a MAC set by the PF"
        );
        if !c.mac.is_zero() {
            let inv = Inventory::scan(&self.fs).unwrap();
            let nic = inv.find_sriov_pf(pf).unwrap();
            let vf = nic.vfs.iter().find(|v| v.index == index).unwrap();
            assert_eq!(
                Some(c.mac),
                vf.mac,
                "{what}: the PF reports a MAC the VF does not have"
            );
        }
        assert_eq!(
            VfConfig {
                mac: c.mac,
                ..self.default_config()
            },
            c,
            "{what}: VF {index} of {pf} has leftover settings"
        );
    }

    /// The config a fresh VF reports.
    pub fn default_config(&self) -> VfConfig {
        VfConfig {
            spoofchk: Some(true),
            trust: Some(false),
            link_state: Some(vfpool_model::LinkState::Auto),
            ..VfConfig::default()
        }
    }
}

pub fn sel(v: &[&str]) -> Vec<PoolSelector> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

pub fn req(pool: &str, owner: &str) -> AcquireRequest {
    AcquireRequest::new(pool, owner)
}

/// A real network namespace made with `ip netns add` (tests run as root), deleted when
/// dropped. Names are unique per process and call, so parallel tests do not meet.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("vfpool-t{}-{n}-{tag}", std::process::id());
        let ns = TestNetns { name };
        ns.add();
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    pub fn add(&self) {
        let st = std::process::Command::new("ip")
            .args(["netns", "add", &self.name])
            .status()
            .expect("run ip netns add (tests need root and iproute2)");
        assert!(st.success(), "ip netns add {} failed", self.name);
    }

    pub fn del(&self) {
        let st = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns del {} failed", self.name);
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if self.path().exists() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}
