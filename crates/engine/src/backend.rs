//! Which host the engine works on: the real one (`/sys`, `/proc`, rtnetlink) or the
//! simulated demo host, chosen once here so that every front end (CLI, CNI plugin, daemon)
//! wires it the same way.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vfpool_host::iommu::{self, EnableRequest, IommuHost, IommuStatus};
use vfpool_host::{AttrWriter, HostPaths, KernelWriter, Sysfs};
use vfpool_model::InvalidValue;
use vfpool_netlink::{NetOps, RtNetlink};
use vfpool_sim::{HostSpec, SimHost, SimNetOps};

use crate::engine::Engine;
use crate::error::EngineError;

/// What a front end was told about the host.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// The built-in simulated host, generated under `STATE/demo-host`.
    pub demo: bool,
    /// Where sysfs is (default `/sys`). A simulated tree given by path acts like the
    /// kernel too.
    pub sysfs_root: Option<PathBuf>,
    /// Where procfs is (default `/proc`).
    pub proc_root: Option<PathBuf>,
    /// The state directory (default `/var/lib/vfpool`; with `demo` and none, a fresh
    /// temporary directory that lives as long as the [`Host`]).
    pub state: Option<PathBuf>,
    /// The kernel's rtnetlink even on a simulated sysfs tree: for tests where veth pairs
    /// in real namespaces stand in for the VF netdevs the simulated tree names (this
    /// machine's kernel has no SR-IOV). Front ends set it from `VFPOOL_NETLINK=kernel`.
    pub kernel_netlink: bool,
}

/// The host, opened: its paths, its sysfs (with the kernel's or the simulator's writes),
/// and the state directory.
pub struct Host {
    pub paths: HostPaths,
    pub fs: Sysfs,
    /// Absolute.
    pub state: PathBuf,
    pub sim: Option<SimHost>,
    config: HostConfig,
    /// Keeps a throw-away demo state directory alive.
    _tmp: Option<tempfile::TempDir>,
}

/// `VFPOOL_NETLINK` from the environment: unset or `auto` (the backend that goes with the
/// sysfs tree) or `kernel` (see [`HostConfig::kernel_netlink`]).
pub fn kernel_netlink_from_env() -> Result<bool, InvalidValue> {
    match std::env::var_os("VFPOOL_NETLINK") {
        None => Ok(false),
        Some(v) => match v.to_str() {
            Some("" | "auto") => Ok(false),
            Some("kernel") => Ok(true),
            _ => Err(InvalidValue::new(
                "VFPOOL_NETLINK",
                v.to_string_lossy(),
                "auto or kernel",
            )),
        },
    }
}

/// The default state directory on a real host.
pub const DEFAULT_STATE: &str = "/var/lib/vfpool";

impl Host {
    pub fn open(config: &HostConfig) -> Result<Self, EngineError> {
        let mut tmp = None;
        let state = match (&config.state, config.demo) {
            (Some(s), _) if s.as_os_str().is_empty() => {
                return Err(InvalidValue::new(
                    "state",
                    "",
                    "a directory path (is VFPOOL_STATE set but empty?)",
                )
                .into());
            }
            (Some(s), _) => s.clone(),
            (None, true) => {
                let t = tempfile::Builder::new()
                    .prefix("vfpool-demo-")
                    .tempdir()
                    .map_err(|source| EngineError::Install {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                let p = t.path().to_owned();
                tmp = Some(t);
                p
            }
            (None, false) => PathBuf::from(DEFAULT_STATE),
        };
        // The boot unit and the locks need the same path whatever the working directory.
        let state = std::path::absolute(&state).map_err(|_| {
            InvalidValue::new(
                "state",
                state.display(),
                "a directory path that can be made absolute",
            )
        })?;
        // (A missing sysfs root is reported by the first read, naming what is missing.)
        if let Some(p) = &config.proc_root
            && !p.is_dir()
        {
            return Err(InvalidValue::new(
                "proc-root",
                p.display(),
                "an existing directory where procfs is mounted",
            )
            .into());
        }
        let (paths, sim) = if config.demo {
            let root = state.join("demo-host");
            std::fs::create_dir_all(&root).map_err(|source| EngineError::Install {
                path: root.clone(),
                source,
            })?;
            let sim = SimHost::open_or_create(&root, &HostSpec::demo())?;
            (sim.paths(), Some(sim))
        } else {
            let mut paths = HostPaths::default();
            if let Some(s) = &config.sysfs_root {
                paths.sys = s.clone();
            }
            if let Some(p) = &config.proc_root {
                paths.proc = p.clone();
            }
            let sim = paths
                .sys
                .parent()
                .filter(|p| p.join("sim/host.txt").is_file())
                .map(|p| SimHost::open_or_create(p, &HostSpec::demo()))
                .transpose()?;
            if let Some(s) = &sim
                && config.proc_root.is_none()
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
            sim,
            config: config.clone(),
            _tmp: tmp,
        })
    }

    /// The state directory (the ledger, the locks; on the demo host the simulated host).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Whether the kernel's rtnetlink was asked for on a simulated sysfs tree
    /// ([`HostConfig::kernel_netlink`]).
    pub fn kernel_netlink(&self) -> bool {
        self.config.kernel_netlink
    }

    /// Whether this is a simulated host (the demo, or a simulated tree given by path).
    pub fn is_simulated(&self) -> bool {
        self.sim.is_some()
    }

    /// The rtnetlink backend: the simulated one on a simulated host, the kernel otherwise.
    pub fn netops(&self) -> Result<Arc<dyn NetOps>, EngineError> {
        Ok(match &self.sim {
            Some(s) if !self.config.kernel_netlink => Arc::new(SimNetOps::new(s.root())),
            _ => Arc::new(RtNetlink::new().map_err(|e| EngineError::ReadNetdev {
                netdev: "rtnetlink".into(),
                source: Box::new(e),
            })?),
        })
    }

    /// The engine over the ledger in the state directory.
    pub fn engine(&self) -> Result<Engine, EngineError> {
        let settle = if self.is_simulated() {
            // The simulated host keeps its link through a split.
            Duration::ZERO
        } else {
            // igb resets its PF when SR-IOV is enabled: wait for its link to stay up.
            Duration::from_millis(1500)
        };
        Ok(Engine::open(&self.state, self.fs.clone(), self.netops()?)?
            .with_split_settle(settle)
            .with_proc_root(&self.paths.proc)
            .with_boot_args(self.boot_args())
            .with_libvirt_run_dir(self.libvirt_run_dir()))
    }

    /// The arguments that make `vfpool` open this same host again (for the boot unit and
    /// the udev rule): the demo host is never confused with the real one.
    pub fn boot_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if self.config.demo {
            a.push("--demo".into());
        }
        if let Some(s) = &self.config.sysfs_root {
            a.push("--sysfs-root".into());
            a.push(absolute(s).into_os_string());
        }
        if let Some(p) = &self.config.proc_root {
            a.push("--proc-root".into());
            a.push(absolute(p).into_os_string());
        }
        a.push("--state".into());
        a.push(self.state.clone().into_os_string());
        a
    }

    /// `host check`: the running kernel, the NICs, and the boot configuration under `root`
    /// (default: [`Self::default_install_root`]).
    pub fn check(&self, root: Option<&Path>) -> Result<vfpool_host::check::Report, EngineError> {
        let root = root.map_or_else(|| self.default_install_root(), Path::to_owned);
        Ok(vfpool_host::check::run(&self.paths, &self.fs, &root)?)
    }

    fn iommu_host<'a>(&'a self, root: &'a Path) -> IommuHost<'a> {
        IommuHost {
            root,
            paths: &self.paths,
            fs: &self.fs,
            run_commands: !self.is_simulated(),
        }
    }

    /// `host iommu enable`: the kernel arguments for the next boot, under `root` (default:
    /// [`Self::default_install_root`]; the demo host never writes the real `/etc`).
    pub fn iommu_enable(
        &self,
        root: Option<&Path>,
        req: &EnableRequest,
    ) -> Result<iommu::Change, EngineError> {
        let root = root.map_or_else(|| self.default_install_root(), Path::to_owned);
        Ok(iommu::enable(&self.iommu_host(&root), req)?)
    }

    /// `host iommu disable`: removes what `enable` added.
    pub fn iommu_disable(&self, root: Option<&Path>) -> Result<iommu::Change, EngineError> {
        let root = root.map_or_else(|| self.default_install_root(), Path::to_owned);
        Ok(iommu::disable(&self.iommu_host(&root))?)
    }

    /// `host iommu status`: enabled for the next boot, ready in the running kernel.
    pub fn iommu_status(&self, root: Option<&Path>) -> Result<IommuStatus, EngineError> {
        let root = root.map_or_else(|| self.default_install_root(), Path::to_owned);
        Ok(iommu::status(&self.iommu_host(&root))?)
    }

    /// Where libvirt keeps running domains' status XML: [`crate::LIBVIRT_RUN_DIR`] on a real
    /// host, under [`Self::default_install_root`] on a simulated one.
    pub fn libvirt_run_dir(&self) -> PathBuf {
        self.default_install_root()
            .join(crate::LIBVIRT_RUN_DIR.trim_start_matches('/'))
    }

    /// Where `host persist` installs when no root is given: `/` on a real host; on a
    /// simulated one, a directory of the simulated host, never the real `/etc`.
    pub fn default_install_root(&self) -> PathBuf {
        match &self.sim {
            Some(s) => s.root().join("root"),
            None => PathBuf::from("/"),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}
