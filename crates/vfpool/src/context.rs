//! What every command needs: where the host's files are and how to write them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use vfpool_engine::Engine;
use vfpool_host::sim::{HostSpec, SimHost};
use vfpool_host::{AttrWriter, HostPaths, KernelWriter, Sysfs};
use vfpool_netlink::{NetOps, RtNetlink, SimNetOps};

use crate::{Cli, Output};

pub struct Context {
    pub paths: HostPaths,
    pub fs: Sysfs,
    pub state: PathBuf,
    pub output: Output,
    pub sim: Option<SimHost>,
    /// Keeps a throw-away demo state directory alive for the command's duration.
    _tmp: Option<tempfile::TempDir>,
}

impl Context {
    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        let mut tmp = None;
        let state = match (&cli.state, cli.demo) {
            (Some(s), _) => s.clone(),
            (None, true) => {
                let t = tempfile::Builder::new()
                    .prefix("vfpool-demo-")
                    .tempdir()
                    .context("cannot create a temporary state directory for --demo")?;
                let p = t.path().to_owned();
                tmp = Some(t);
                p
            }
            (None, false) => PathBuf::from("/var/lib/vfpool"),
        };
        let (paths, sim) = if cli.demo {
            let root = state.join("demo-host");
            std::fs::create_dir_all(&root)
                .with_context(|| format!("cannot create the demo host under {}", root.display()))?;
            let sim = SimHost::open_or_create(&root, &HostSpec::demo())?;
            (sim.paths(), Some(sim))
        } else {
            let mut paths = HostPaths::default();
            if let Some(s) = &cli.sysfs_root {
                paths.sys = s.clone();
            }
            if let Some(p) = &cli.proc_root {
                paths.proc = p.clone();
            }
            // A simulated tree given by path acts like the kernel too.
            let sim = paths
                .sys
                .parent()
                .filter(|p| p.join("sim/host.txt").is_file())
                .map(|p| SimHost::open_or_create(p, &HostSpec::demo()))
                .transpose()?;
            if let Some(s) = &sim
                && cli.proc_root.is_none()
            {
                paths.proc = s.paths().proc;
                paths.modules = s.paths().modules;
            }
            (paths, sim)
        };
        let writer: Arc<dyn AttrWriter> = match &sim {
            Some(s) => Arc::new(s.clone()),
            None => Arc::new(KernelWriter),
        };
        let fs = Sysfs::new(paths.sys.clone(), writer);
        Ok(Self {
            paths,
            fs,
            state,
            output: cli.output,
            sim,
            _tmp: tmp,
        })
    }

    /// The rtnetlink backend: the simulated one on a simulated host, the kernel otherwise.
    pub fn netops(&self) -> anyhow::Result<Arc<dyn NetOps>> {
        Ok(match &self.sim {
            Some(s) => Arc::new(SimNetOps::new(s.root())),
            None => Arc::new(RtNetlink::new()?),
        })
    }

    /// The engine over the ledger in the state directory.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        Ok(Engine::open(&self.state, self.fs.clone(), self.netops()?)?)
    }

    /// How splits wait: on a real host, for the PF's link to stay up 1.5 s after the VFs
    /// appear (igb resets its PF when SR-IOV is enabled); the simulated host keeps its link.
    pub fn split_options(&self, timeout_secs: u64) -> vfpool_host::split::SplitOptions {
        vfpool_host::split::SplitOptions {
            timeout: std::time::Duration::from_secs(timeout_secs),
            settle: if self.sim.is_some() {
                std::time::Duration::ZERO
            } else {
                std::time::Duration::from_millis(1500)
            },
            ..Default::default()
        }
    }

    pub fn json(&self) -> bool {
        self.output == Output::Json
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(v)?));
    Ok(())
}

/// Writes to stdout; a closed pipe (`vfpool nic list | head`) ends output quietly.
pub fn out(s: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if o.write_all(s.as_bytes()).and_then(|_| o.flush()).is_err() {
        std::process::exit(0);
    }
}

/// `println!` that does not panic on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::context::out(&format!("{}\n", format_args!($($arg)*))) };
}
