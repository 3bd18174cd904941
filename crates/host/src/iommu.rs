//! `vfpool host iommu enable|disable|status`: the IOMMU's *enabled* setting (the kernel
//! arguments the next boot gets) and its *ready* status (what the running kernel shows).
//!
//! `enable` writes `intel_iommu=on iommu=pt` (AMD: `amd_iommu=on iommu=pt`, the vendor read
//! from `/proc/cpuinfo`) for the boot loader the host uses, found under a root directory:
//! - GRUB with `/etc/default/grub.d` (Debian-likes): a drop-in
//!   `/etc/default/grub.d/vfpool-iommu.cfg` appending to `GRUB_CMDLINE_LINUX_DEFAULT`, then
//!   `update-grub` (or `grub2-mkconfig -o /boot/grub2/grub.cfg` where there is no update-grub);
//! - `grubby` (RHEL-likes): `grubby --update-kernel=ALL --args="..."`;
//! - systemd-boot / kernel-install: the arguments added to `/etc/kernel/cmdline`, the rest kept.
//!
//! What vfpool added is recorded in `/etc/vfpool/iommu.json`, so `disable` removes exactly
//! that and nothing else. Commands run only on the real host (root `/`, tool installed);
//! under another root (tests, the demo host) only files are written and the command a real
//! host would run is reported. Every change takes effect after a reboot.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::persist::write_atomic;
use crate::{HostError, HostPaths, Sysfs};

/// The grub drop-in vfpool owns.
pub const GRUB_DROPIN: &str = "etc/default/grub.d/vfpool-iommu.cfg";
/// What vfpool added, for `disable`.
pub const RECORD: &str = "etc/vfpool/iommu.json";
/// The modprobe option for hosts without interrupt remapping.
pub const UNSAFE_CONF: &str = "etc/modprobe.d/vfio-iommu-unsafe.conf";
const UNSAFE_LINE: &str = "options vfio_iommu_type1 allow_unsafe_interrupts=1";
const KERNEL_CMDLINE: &str = "etc/kernel/cmdline";
const DROPIN_HEAD: &str =
    "# Written by `vfpool host iommu enable`; `vfpool host iommu disable` removes it.\n";

/// The seed's warning, in English: without interrupt remapping, VFIO refuses to assign a
/// device unless told to accept the risk.
pub const UNSAFE_WARNING: &str = "this host's CPU/IOMMU does not support interrupt remapping: VFIO refuses to pass a VF to a VM unless vfio_iommu_type1 allow_unsafe_interrupts=1 is set, and with it a VM given a VF can forge interrupts (MSIs) to the host; prefer a host whose CPU supports interrupt remapping";

#[derive(Debug, thiserror::Error)]
pub enum IommuError {
    #[error("invalid --vendor '{0}': intel or amd")]
    InvalidVendor(String),
    #[error(
        "unknown CPU vendor{}: give --vendor intel|amd",
        .found.as_deref().map(|v| format!(" '{v}' in /proc/cpuinfo")).unwrap_or_else(|| " (no vendor_id in /proc/cpuinfo)".into())
    )]
    UnknownVendor { found: Option<String> },
    #[error(
        "unknown boot loader under {root}: none of etc/default/grub (GRUB), grubby, etc/kernel/cmdline or loader/loader.conf (systemd-boot) found"
    )]
    UnknownBootLoader { root: PathBuf },
    #[error("invalid --root '{root}': not a writable directory")]
    Root {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{file} already has '{found}', which conflicts with '{wanted}': remove it first (vfpool changes only what it added)"
    )]
    Conflict {
        file: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("`{command}` failed: {reason}")]
    Command { command: String, reason: String },
    #[error(transparent)]
    Host(#[from] HostError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Intel,
    Amd,
}

impl std::str::FromStr for Vendor {
    type Err = IommuError;
    fn from_str(s: &str) -> Result<Self, IommuError> {
        match s {
            "intel" => Ok(Self::Intel),
            "amd" => Ok(Self::Amd),
            _ => Err(IommuError::InvalidVendor(s.to_owned())),
        }
    }
}

impl Vendor {
    /// The kernel arguments that turn this vendor's IOMMU on, in passthrough mode.
    pub fn args(self) -> [&'static str; 2] {
        match self {
            Self::Intel => ["intel_iommu=on", "iommu=pt"],
            Self::Amd => ["amd_iommu=on", "iommu=pt"],
        }
    }

    /// What the BIOS calls it.
    pub fn bios_name(self) -> &'static str {
        match self {
            Self::Intel => "Intel VT-d",
            Self::Amd => "AMD-Vi (AMD IOMMU)",
        }
    }

    /// From `/proc/cpuinfo`'s `vendor_id`.
    pub fn from_cpuinfo(cpuinfo: &str) -> Result<Self, IommuError> {
        let id = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "vendor_id").then(|| v.trim().to_owned())
            })
            .filter(|v| !v.is_empty());
        match id.as_deref() {
            Some("GenuineIntel") => Ok(Self::Intel),
            Some("AuthenticAMD") => Ok(Self::Amd),
            _ => Err(IommuError::UnknownVendor { found: id }),
        }
    }
}

/// The boot loader layouts vfpool writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum BootLoader {
    /// GRUB with `/etc/default/grub.d`, regenerated by `update-grub` (Debian-likes).
    GrubUpdate,
    /// GRUB with `/etc/default/grub.d`, regenerated by `grub2-mkconfig`.
    GrubMkconfig,
    /// `grubby` edits every boot entry (RHEL-likes).
    Grubby,
    /// systemd-boot through kernel-install: `/etc/kernel/cmdline`.
    KernelInstall,
}

impl std::fmt::Display for BootLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::GrubUpdate => "grub (update-grub)",
            Self::GrubMkconfig => "grub (grub2-mkconfig)",
            Self::Grubby => "grub (grubby)",
            Self::KernelInstall => "systemd-boot (kernel-install)",
        })
    }
}

fn tool(root: &Path, name: &str) -> Option<PathBuf> {
    ["usr/sbin", "sbin", "usr/bin", "bin"]
        .iter()
        .map(|d| root.join(d).join(name))
        .find(|p| p.is_file())
}

/// Which boot loader the host at `root` uses.
pub fn detect(root: &Path) -> Result<BootLoader, IommuError> {
    let grub_d =
        root.join("etc/default/grub.d").is_dir() || root.join("etc/default/grub").is_file();
    if tool(root, "grubby").is_some() {
        Ok(BootLoader::Grubby)
    } else if grub_d && tool(root, "update-grub").is_some() {
        Ok(BootLoader::GrubUpdate)
    } else if grub_d && tool(root, "grub2-mkconfig").is_some() {
        Ok(BootLoader::GrubMkconfig)
    } else if root.join(KERNEL_CMDLINE).is_file()
        || ["boot/loader", "efi/loader", "boot/efi/loader"]
            .iter()
            .any(|d| root.join(d).join("loader.conf").is_file())
    {
        Ok(BootLoader::KernelInstall)
    } else if grub_d {
        // GRUB without either tool found: Debian's layout, update-grub named.
        Ok(BootLoader::GrubUpdate)
    } else {
        Err(IommuError::UnknownBootLoader {
            root: root.to_owned(),
        })
    }
}

/// What `enable` recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub boot_loader: BootLoader,
    pub vendor: Vendor,
    /// The arguments vfpool added (those already there are not vfpool's).
    pub added: Vec<String>,
    /// vfpool created `/etc/kernel/cmdline` (from the running kernel's arguments).
    #[serde(default)]
    pub created: bool,
}

/// A command a change needs: run (on the real host) or to run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BootCommand {
    pub command: String,
    pub ran: bool,
}

/// What `enable` or `disable` did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// The root the paths are under (`/` on the real host).
    pub root: PathBuf,
    pub boot_loader: BootLoader,
    pub vendor: Option<Vendor>,
    pub args: Vec<String>,
    pub written: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    /// Nothing to do: said why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<BootCommand>,
    pub warnings: Vec<String>,
    /// "after a reboot".
    pub effective: &'static str,
}

/// The next boot's IOMMU setting and the running kernel's status.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IommuStatus {
    pub boot_loader: Option<BootLoader>,
    /// The next boot asks for the IOMMU (intel_iommu=on or amd_iommu=on).
    pub enabled: bool,
    /// Where the setting was found, and the argument.
    pub enabled_by: Option<String>,
    /// vfpool's own drop-in or record is what enables it.
    pub by_vfpool: bool,
    /// The running kernel registered IOMMU units.
    pub ready: bool,
    pub units: Vec<String>,
    /// Enabled, not ready: a reboot is pending (or VT-d / AMD-Vi is off in the BIOS).
    pub reboot_pending: bool,
}

/// The host being changed: the root its files live under and its kernel interfaces.
#[derive(Debug, Clone)]
pub struct IommuHost<'a> {
    pub root: &'a Path,
    pub paths: &'a HostPaths,
    pub fs: &'a Sysfs,
    /// Boot loader commands may run (the real host; never the simulated one, whatever its
    /// root). They run only when `root` is `/` too.
    pub run_commands: bool,
}

#[derive(Debug, Clone, Default)]
pub struct EnableRequest {
    pub vendor: Option<Vendor>,
    pub allow_unsafe_interrupts: bool,
}

fn read_opt(p: &Path) -> Result<Option<String>, IommuError> {
    match std::fs::read_to_string(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HostError::Read {
            path: p.to_owned(),
            source: e,
        }
        .into()),
    }
}

fn remove(p: &Path) -> Result<bool, IommuError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(HostError::Save {
            path: p.to_owned(),
            source: e,
        }
        .into()),
    }
}

fn check_root(root: &Path) -> Result<(), IommuError> {
    let md = std::fs::metadata(root).map_err(|e| IommuError::Root {
        root: root.to_owned(),
        source: e,
    })?;
    let denied = |what: &str| IommuError::Root {
        root: root.to_owned(),
        source: io::Error::new(io::ErrorKind::PermissionDenied, what.to_owned()),
    };
    if !md.is_dir() {
        return Err(denied("not a directory"));
    }
    nix::unistd::access(root, nix::unistd::AccessFlags::W_OK)
        .map_err(|e| denied(&format!("not writable: {e}")))
}

/// `KEY="VALUE"` lines of a grub defaults file: the arguments of `GRUB_CMDLINE_LINUX` and
/// `GRUB_CMDLINE_LINUX_DEFAULT`, `$VAR` references dropped (they repeat earlier values).
fn grub_args(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in body.lines() {
        let l = l.trim();
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        if k != "GRUB_CMDLINE_LINUX" && k != "GRUB_CMDLINE_LINUX_DEFAULT" {
            continue;
        }
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        out.extend(
            v.split_whitespace()
                .filter(|t| !t.starts_with('$'))
                .map(str::to_owned),
        );
    }
    out
}

/// The next boot's arguments as the boot loader's configuration gives them, and from where.
fn next_boot_args(root: &Path, bl: BootLoader) -> Result<Vec<(String, String)>, IommuError> {
    let mut out = Vec::new();
    match bl {
        BootLoader::KernelInstall => {
            if let Some(b) = read_opt(&root.join(KERNEL_CMDLINE))? {
                out.extend(
                    b.split_whitespace()
                        .map(|t| (t.to_owned(), format!("/{KERNEL_CMDLINE}"))),
                );
            }
        }
        _ => {
            let mut files = vec![root.join("etc/default/grub")];
            if let Ok(rd) = std::fs::read_dir(root.join("etc/default/grub.d")) {
                let mut d: Vec<PathBuf> = rd
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
                    .collect();
                d.sort();
                files.extend(d);
            }
            for f in files {
                if let Some(b) = read_opt(&f)? {
                    let shown = format!("/{}", f.strip_prefix(root).unwrap_or(&f).display());
                    out.extend(grub_args(&b).into_iter().map(|a| (a, shown.clone())));
                }
            }
            if bl == BootLoader::Grubby
                && let Some(r) = load_record(root)?
            {
                out.extend(
                    r.added
                        .into_iter()
                        .map(|a| (a, format!("grubby (/{RECORD})"))),
                );
            }
        }
    }
    Ok(out)
}

fn load_record(root: &Path) -> Result<Option<Record>, IommuError> {
    let p = root.join(RECORD);
    match read_opt(&p)? {
        None => Ok(None),
        Some(b) => serde_json::from_str(&b).map(Some).map_err(|e| {
            HostError::Corrupt {
                path: p,
                reason: e.to_string(),
            }
            .into()
        }),
    }
}

fn save_record(root: &Path, r: &Record) -> Result<PathBuf, IommuError> {
    let p = root.join(RECORD);
    let body = serde_json::to_vec_pretty(r).map_err(|e| HostError::Corrupt {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    write_atomic(&p, &body)?;
    Ok(p)
}

/// The setting and the status.
pub fn status(h: &IommuHost<'_>) -> Result<IommuStatus, IommuError> {
    let units = h.fs.list(&h.fs.path("class/iommu"))?;
    let ready = !units.is_empty();
    let bl = detect(h.root).ok();
    let mut enabled_by = None;
    if let Some(bl) = bl {
        enabled_by = next_boot_args(h.root, bl)?
            .into_iter()
            .rev()
            .find(|(a, _)| a == "intel_iommu=on" || a == "amd_iommu=on")
            .map(|(a, f)| format!("{a} in {f}"));
    }
    let by_vfpool =
        load_record(h.root)?.is_some_and(|r| r.added.iter().any(|a| a.ends_with("_iommu=on")));
    let enabled = enabled_by.is_some();
    Ok(IommuStatus {
        boot_loader: bl,
        enabled,
        enabled_by,
        by_vfpool,
        ready,
        units,
        reboot_pending: enabled && !ready,
    })
}

fn is_real_root(root: &Path) -> bool {
    root == Path::new("/")
}

/// Runs `argv` on the real host when the tool is there; otherwise says what to run.
fn boot_command(h: &IommuHost<'_>, argv: Vec<String>) -> Result<BootCommand, IommuError> {
    let command = argv.join(" ");
    let exe = match tool(h.root, &argv[0]) {
        Some(exe) if h.run_commands && is_real_root(h.root) => exe,
        _ => {
            return Ok(BootCommand {
                command,
                ran: false,
            });
        }
    };
    tracing::info!(command = %command, "updating the boot loader");
    let out = Command::new(exe)
        .args(&argv[1..])
        .output()
        .map_err(|e| IommuError::Command {
            command: command.clone(),
            reason: e.to_string(),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(IommuError::Command {
            command,
            reason: format!(
                "{}: {}",
                out.status,
                err.lines().last().unwrap_or("no message")
            ),
        });
    }
    Ok(BootCommand { command, ran: true })
}

fn regen_command(root: &Path, bl: BootLoader, paths: &HostPaths) -> Vec<String> {
    match bl {
        BootLoader::GrubUpdate | BootLoader::Grubby => vec!["update-grub".into()],
        BootLoader::GrubMkconfig => vec![
            "grub2-mkconfig".into(),
            "-o".into(),
            "/boot/grub2/grub.cfg".into(),
        ],
        BootLoader::KernelInstall => {
            let kver = std::fs::read_to_string(paths.proc.join("sys/kernel/osrelease"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "$(uname -r)".into());
            let boot = format!("boot/vmlinuz-{kver}");
            let image = if root.join(&boot).is_file() {
                format!("/{boot}")
            } else {
                format!("/lib/modules/{kver}/vmlinuz")
            };
            vec!["kernel-install".into(), "add".into(), kver, image]
        }
    }
}

fn rel(root: &Path, p: &Path) -> PathBuf {
    Path::new("/").join(p.strip_prefix(root).unwrap_or(p))
}

/// Writes the kernel arguments for the next boot.
pub fn enable(h: &IommuHost<'_>, req: &EnableRequest) -> Result<Change, IommuError> {
    check_root(h.root)?;
    let bl = detect(h.root)?;
    let vendor = match req.vendor {
        Some(v) => v,
        None => {
            Vendor::from_cpuinfo(&read_opt(&h.paths.proc.join("cpuinfo"))?.unwrap_or_default())?
        }
    };
    let args: Vec<String> = vendor.args().iter().map(|s| (*s).to_owned()).collect();
    let mut change = Change {
        root: h.root.to_owned(),
        boot_loader: bl,
        vendor: Some(vendor),
        args: args.clone(),
        written: Vec::new(),
        removed: Vec::new(),
        unchanged: None,
        command: None,
        warnings: Vec::new(),
        effective: "after a reboot",
    };
    let old = load_record(h.root)?;
    let (added, created) = match bl {
        BootLoader::GrubUpdate | BootLoader::GrubMkconfig => {
            let dropin = h.root.join(GRUB_DROPIN);
            let body = format!(
                "{DROPIN_HEAD}GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT {}\"\n",
                args.join(" ")
            );
            let others: Vec<String> = next_boot_args(h.root, bl)?
                .into_iter()
                .filter(|(_, f)| f != &format!("/{GRUB_DROPIN}"))
                .map(|(a, _)| a)
                .collect();
            if read_opt(&dropin)?.as_deref() == Some(body.as_str()) {
                change.unchanged = Some(format!("/{GRUB_DROPIN} already has {}", args.join(" ")));
            } else if old.is_none() && args.iter().all(|a| others.contains(a)) {
                change.unchanged = Some(format!(
                    "the GRUB configuration already has {} (not vfpool's)",
                    args.join(" ")
                ));
                return finish_unsafe(h, req, change);
            } else {
                write_atomic(&dropin, body.as_bytes())?;
                change.written.push(rel(h.root, &dropin));
            }
            (args.clone(), false)
        }
        BootLoader::Grubby => {
            let present: Vec<String> = next_boot_args(h.root, BootLoader::GrubUpdate)?
                .into_iter()
                .map(|(a, _)| a)
                .collect();
            let mut added: Vec<String> = old.as_ref().map(|r| r.added.clone()).unwrap_or_default();
            added.retain(|a| args.contains(a));
            let new: Vec<String> = args
                .iter()
                .filter(|a| !present.contains(a) && !added.contains(a))
                .cloned()
                .collect();
            added.extend(new);
            if old.as_ref().is_some_and(|r| r.vendor == vendor) {
                change.unchanged = Some(format!("grubby already added {}", args.join(" ")));
            } else if added.is_empty() {
                change.unchanged = Some(format!(
                    "the GRUB configuration already has {} (not vfpool's)",
                    args.join(" ")
                ));
                return finish_unsafe(h, req, change);
            }
            (added, false)
        }
        BootLoader::KernelInstall => {
            let file = h.root.join(KERNEL_CMDLINE);
            let (mut tokens, created) = match read_opt(&file)? {
                Some(b) => (
                    b.split_whitespace().map(str::to_owned).collect::<Vec<_>>(),
                    old.as_ref().is_some_and(|r| r.created),
                ),
                None => {
                    // kernel-install uses the running kernel's arguments when the file is
                    // absent: start from them, so the next boot keeps its root= and the rest.
                    let run = read_opt(&h.paths.proc.join("cmdline"))?.unwrap_or_default();
                    (
                        run.split_whitespace()
                            .filter(|t| !t.starts_with("BOOT_IMAGE=") && !t.starts_with("initrd="))
                            .map(str::to_owned)
                            .collect(),
                        true,
                    )
                }
            };
            let ours: Vec<String> = old.as_ref().map(|r| r.added.clone()).unwrap_or_default();
            for a in &args {
                let key = a.split('=').next().unwrap_or(a);
                if let Some(t) = tokens
                    .iter()
                    .find(|t| t.split('=').next() == Some(key) && *t != a && !ours.contains(t))
                {
                    return Err(IommuError::Conflict {
                        file: rel(h.root, &file),
                        found: t.clone(),
                        wanted: a.clone(),
                    });
                }
            }
            // A vendor change: drop what vfpool added before.
            let stale: Vec<String> = ours.iter().filter(|a| !args.contains(a)).cloned().collect();
            for s in &stale {
                if let Some(i) = tokens.iter().position(|t| t == s) {
                    tokens.remove(i);
                }
            }
            let mut added: Vec<String> =
                ours.iter().filter(|a| args.contains(a)).cloned().collect();
            for a in &args {
                if !tokens.contains(a) {
                    tokens.push(a.clone());
                    added.push(a.clone());
                }
            }
            if added.is_empty() {
                change.unchanged = Some(format!(
                    "/{KERNEL_CMDLINE} already has {} (not vfpool's)",
                    args.join(" ")
                ));
                return finish_unsafe(h, req, change);
            }
            let body = format!("{}\n", tokens.join(" "));
            if read_opt(&file)?.as_deref() == Some(body.as_str()) {
                change.unchanged =
                    Some(format!("/{KERNEL_CMDLINE} already has {}", args.join(" ")));
            } else {
                write_atomic(&file, body.as_bytes())?;
                change.written.push(rel(h.root, &file));
            }
            (added, created)
        }
    };
    let record = Record {
        boot_loader: bl,
        vendor,
        added: added.clone(),
        created,
    };
    if old.as_ref() != Some(&record) {
        let p = save_record(h.root, &record)?;
        change.written.push(rel(h.root, &p));
    }
    if change.unchanged.is_none() {
        let argv = match bl {
            BootLoader::Grubby => {
                let mut v = vec!["grubby".to_owned(), "--update-kernel=ALL".to_owned()];
                if let Some(o) = &old {
                    let stale: Vec<&String> =
                        o.added.iter().filter(|a| !added.contains(a)).collect();
                    if !stale.is_empty() {
                        v.push(format!("--remove-args={}", quote_args(&stale)));
                    }
                }
                v.push(format!(
                    "--args={}",
                    quote_args(&added.iter().collect::<Vec<_>>())
                ));
                v
            }
            _ => regen_command(h.root, bl, h.paths),
        };
        change.command = Some(boot_command(h, argv)?);
    }
    finish_unsafe(h, req, change)
}

fn quote_args(a: &[&String]) -> String {
    let j: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
    if j.len() == 1 {
        j[0].to_owned()
    } else {
        format!("\"{}\"", j.join(" "))
    }
}

/// Interrupt remapping: offered, or written with `--allow-unsafe-interrupts`.
fn finish_unsafe(
    h: &IommuHost<'_>,
    req: &EnableRequest,
    mut change: Change,
) -> Result<Change, IommuError> {
    let report = crate::check::run_without_iommu_setting(h.paths, h.fs)?;
    let ir = report
        .checks
        .iter()
        .find(|c| c.name == "interrupt-remapping")
        .is_some_and(|c| c.status == crate::check::Status::Pass);
    let file = h.root.join(UNSAFE_CONF);
    let body = format!(
        "# Written by `vfpool host iommu enable --allow-unsafe-interrupts`: {UNSAFE_WARNING}.\n{UNSAFE_LINE}\n"
    );
    if ir {
        if req.allow_unsafe_interrupts {
            change.warnings.push(format!(
                "interrupt remapping works here: --allow-unsafe-interrupts is not needed, /{UNSAFE_CONF} not written"
            ));
        }
    } else if req.allow_unsafe_interrupts {
        change.warnings.push(UNSAFE_WARNING.to_owned());
        if read_opt(&file)?.as_deref() != Some(body.as_str()) {
            write_atomic(&file, body.as_bytes())?;
            change.written.push(rel(h.root, &file));
        }
    } else {
        change.warnings.push(format!(
            "{UNSAFE_WARNING}; to accept the risk run again with --allow-unsafe-interrupts, which writes /{UNSAFE_CONF} ({UNSAFE_LINE})"
        ));
    }
    Ok(change)
}

/// Removes exactly what `enable` added.
pub fn disable(h: &IommuHost<'_>) -> Result<Change, IommuError> {
    check_root(h.root)?;
    let old = load_record(h.root)?;
    let bl = match &old {
        Some(r) => r.boot_loader,
        None => detect(h.root)?,
    };
    let mut change = Change {
        root: h.root.to_owned(),
        boot_loader: bl,
        vendor: old.as_ref().map(|r| r.vendor),
        args: old.as_ref().map(|r| r.added.clone()).unwrap_or_default(),
        written: Vec::new(),
        removed: Vec::new(),
        unchanged: None,
        command: None,
        warnings: Vec::new(),
        effective: "after a reboot",
    };
    let unsafe_file = h.root.join(UNSAFE_CONF);
    if read_opt(&unsafe_file)?
        .is_some_and(|b| b.starts_with("# Written by `vfpool host iommu enable"))
    {
        remove(&unsafe_file)?;
        change.removed.push(rel(h.root, &unsafe_file));
    }
    let dropin = h.root.join(GRUB_DROPIN);
    let mut boot_changed = false;
    if remove(&dropin)? {
        change.removed.push(rel(h.root, &dropin));
        boot_changed = true;
    }
    if let Some(r) = &old {
        if bl == BootLoader::KernelInstall && !r.added.is_empty() {
            let file = h.root.join(KERNEL_CMDLINE);
            if let Some(b) = read_opt(&file)? {
                let mut tokens: Vec<&str> = b.split_whitespace().collect();
                for a in &r.added {
                    if let Some(i) = tokens.iter().rposition(|t| t == a) {
                        tokens.remove(i);
                    }
                }
                let body = format!("{}\n", tokens.join(" "));
                let run: Vec<String> = read_opt(&h.paths.proc.join("cmdline"))?
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter(|t| !t.starts_with("BOOT_IMAGE=") && !t.starts_with("initrd="))
                    .filter(|t| !r.added.iter().any(|a| a == t))
                    .map(str::to_owned)
                    .collect();
                if r.created && tokens.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>() == run {
                    remove(&file)?;
                    change.removed.push(rel(h.root, &file));
                } else {
                    write_atomic(&file, body.as_bytes())?;
                    change.written.push(rel(h.root, &file));
                }
                boot_changed = true;
            }
        }
        if bl == BootLoader::Grubby && !r.added.is_empty() {
            boot_changed = true;
        }
        let p = h.root.join(RECORD);
        remove(&p)?;
        change.removed.push(rel(h.root, &p));
    }
    if boot_changed {
        let argv = match (bl, &old) {
            (BootLoader::Grubby, Some(r)) => vec![
                "grubby".to_owned(),
                "--update-kernel=ALL".to_owned(),
                format!(
                    "--remove-args={}",
                    quote_args(&r.added.iter().collect::<Vec<_>>())
                ),
            ],
            _ => regen_command(h.root, bl, h.paths),
        };
        change.command = Some(boot_command(h, argv)?);
    }
    if change.removed.is_empty() && change.written.is_empty() {
        change.unchanged =
            Some("vfpool did not enable the IOMMU on this host: nothing to remove".into());
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::KernelWriter;

    /// A host tree: a running kernel (IOMMU units when `ready`, interrupt remapping when
    /// `ir`, a CPU vendor) and nothing of a boot loader yet.
    struct T {
        dir: tempfile::TempDir,
        paths: HostPaths,
        fs: Sysfs,
    }

    impl T {
        fn new(vendor: &str, ready: bool, ir: bool) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let r = dir.path();
            let paths = HostPaths::under(r);
            std::fs::create_dir_all(r.join("sys/class/iommu")).unwrap();
            std::fs::create_dir_all(r.join("sys/bus/pci/devices")).unwrap();
            if ready {
                std::fs::create_dir_all(r.join("sys/class/iommu/dmar0")).unwrap();
            }
            std::fs::create_dir_all(r.join("proc/sys/kernel")).unwrap();
            std::fs::write(
                r.join("proc/cpuinfo"),
                format!("processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: 6\n"),
            )
            .unwrap();
            std::fs::write(
                r.join("proc/cmdline"),
                "BOOT_IMAGE=/vmlinuz-6.1.0 root=/dev/sda1 ro quiet\n",
            )
            .unwrap();
            std::fs::write(r.join("proc/sys/kernel/osrelease"), "6.1.0-26-amd64\n").unwrap();
            let ir = if ir { "IR-" } else { "" };
            std::fs::write(
                r.join("proc/interrupts"),
                format!("  0:  41  0  {ir}IO-APIC  2-edge  timer\n"),
            )
            .unwrap();
            let fs = Sysfs::new(paths.sys.clone(), Arc::new(KernelWriter));
            Self { dir, paths, fs }
        }
        fn root(&self) -> &Path {
            self.dir.path()
        }
        fn put(&self, rel: &str, body: &str) {
            let p = self.root().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        fn get(&self, rel: &str) -> Option<String> {
            std::fs::read_to_string(self.root().join(rel)).ok()
        }
        fn h(&self) -> IommuHost<'_> {
            IommuHost {
                root: self.dir.path(),
                paths: &self.paths,
                fs: &self.fs,
                run_commands: false,
            }
        }
        fn enable(&self) -> Result<Change, IommuError> {
            enable(&self.h(), &EnableRequest::default())
        }
        fn debian(&self) {
            self.put(
                "etc/default/grub",
                "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\nGRUB_CMDLINE_LINUX=\"\"\n",
            );
            self.put("etc/default/grub.d/init-select.cfg", "# not ours\n");
            self.put("usr/sbin/update-grub", "#!/bin/sh\n");
        }
    }

    const DROPIN_BODY: &str = "# Written by `vfpool host iommu enable`; `vfpool host iommu disable` removes it.\nGRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=on iommu=pt\"\n";

    #[test]
    fn debian_grub_gets_a_dropin_and_update_grub_named_not_run_under_a_test_root() {
        let t = T::new("GenuineIntel", false, true);
        t.debian();
        let st = status(&t.h()).unwrap();
        assert_eq!(
            (st.enabled, st.ready, st.reboot_pending),
            (false, false, false)
        );
        let c = t.enable().unwrap();
        assert_eq!(c.boot_loader, BootLoader::GrubUpdate);
        assert_eq!(c.args, ["intel_iommu=on", "iommu=pt"]);
        assert_eq!(t.get(GRUB_DROPIN).as_deref(), Some(DROPIN_BODY));
        assert_eq!(
            c.written,
            [
                PathBuf::from("/etc/default/grub.d/vfpool-iommu.cfg"),
                PathBuf::from("/etc/vfpool/iommu.json")
            ]
        );
        assert_eq!(
            c.command,
            Some(BootCommand {
                command: "update-grub".into(),
                ran: false
            })
        );
        assert_eq!(c.effective, "after a reboot");
        let st = status(&t.h()).unwrap();
        assert_eq!(
            (st.enabled, st.ready, st.reboot_pending, st.by_vfpool),
            (true, false, true, true)
        );
        assert_eq!(
            st.enabled_by.as_deref(),
            Some("intel_iommu=on in /etc/default/grub.d/vfpool-iommu.cfg")
        );

        // Twice: nothing written, no command.
        let c = t.enable().unwrap();
        assert!(c.written.is_empty(), "{c:?}");
        assert_eq!(c.command, None);
        assert!(
            c.unchanged
                .unwrap()
                .contains("already has intel_iommu=on iommu=pt")
        );

        // Disable: only ours goes.
        let c = disable(&t.h()).unwrap();
        assert_eq!(
            c.removed,
            [
                PathBuf::from("/etc/default/grub.d/vfpool-iommu.cfg"),
                PathBuf::from("/etc/vfpool/iommu.json")
            ]
        );
        assert_eq!(c.command.unwrap().command, "update-grub");
        assert_eq!(t.get(GRUB_DROPIN), None);
        assert_eq!(
            t.get("etc/default/grub.d/init-select.cfg").as_deref(),
            Some("# not ours\n")
        );
        assert!(t.get("etc/default/grub").unwrap().contains("\"quiet\""));
        assert!(!status(&t.h()).unwrap().enabled);
        // Disable twice: nothing to remove.
        let c = disable(&t.h()).unwrap();
        assert!(c.unchanged.unwrap().contains("nothing to remove"));
        assert_eq!(c.command, None);
    }

    #[test]
    fn grub_already_enabled_by_the_operator_is_left_alone_and_not_removed() {
        let t = T::new("GenuineIntel", true, true);
        t.debian();
        t.put(
            "etc/default/grub",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on iommu=pt\"\n",
        );
        let c = t.enable().unwrap();
        assert!(c.unchanged.unwrap().contains("not vfpool's"));
        assert!(c.written.is_empty());
        assert_eq!(t.get(GRUB_DROPIN), None);
        let st = status(&t.h()).unwrap();
        assert_eq!(
            (st.enabled, st.ready, st.reboot_pending, st.by_vfpool),
            (true, true, false, false)
        );
        let c = disable(&t.h()).unwrap();
        assert!(c.removed.is_empty());
        assert!(
            t.get("etc/default/grub")
                .unwrap()
                .contains("intel_iommu=on")
        );
    }

    #[test]
    fn grub_without_update_grub_uses_grub2_mkconfig() {
        let t = T::new("GenuineIntel", false, true);
        t.put("etc/default/grub", "GRUB_CMDLINE_LINUX=\"rhgb quiet\"\n");
        std::fs::create_dir_all(t.root().join("etc/default/grub.d")).unwrap();
        t.put("usr/sbin/grub2-mkconfig", "");
        let c = t.enable().unwrap();
        assert_eq!(c.boot_loader, BootLoader::GrubMkconfig);
        assert_eq!(
            c.command.unwrap().command,
            "grub2-mkconfig -o /boot/grub2/grub.cfg"
        );
        assert_eq!(t.get(GRUB_DROPIN).as_deref(), Some(DROPIN_BODY));
    }

    #[test]
    fn rhel_grubby_adds_only_what_is_missing_and_removes_only_that() {
        let t = T::new("GenuineIntel", false, true);
        t.put(
            "etc/default/grub",
            "GRUB_CMDLINE_LINUX=\"crashkernel=auto rhgb quiet iommu=pt\"\n",
        );
        t.put("usr/sbin/grubby", "");
        let c = t.enable().unwrap();
        assert_eq!(c.boot_loader, BootLoader::Grubby);
        let cmd = c.command.unwrap();
        assert_eq!(
            cmd.command,
            "grubby --update-kernel=ALL --args=intel_iommu=on"
        );
        assert!(!cmd.ran);
        assert_eq!(t.get(GRUB_DROPIN), None);
        let st = status(&t.h()).unwrap();
        assert_eq!((st.enabled, st.reboot_pending), (true, true));
        // Twice: nothing.
        let c = t.enable().unwrap();
        assert_eq!(c.command, None);
        assert!(c.written.is_empty());
        let c = disable(&t.h()).unwrap();
        assert_eq!(
            c.command.unwrap().command,
            "grubby --update-kernel=ALL --remove-args=intel_iommu=on"
        );
        assert_eq!(t.get(RECORD), None);

        // Nothing there yet: both arguments, quoted as one.
        let t = T::new("AuthenticAMD", false, true);
        t.put("usr/sbin/grubby", "");
        let c = t.enable().unwrap();
        assert_eq!(
            c.command.unwrap().command,
            "grubby --update-kernel=ALL --args=\"amd_iommu=on iommu=pt\""
        );
    }

    #[test]
    fn systemd_boot_adds_to_kernel_cmdline_keeping_the_rest() {
        let t = T::new("GenuineIntel", false, true);
        t.put("etc/kernel/cmdline", "root=UUID=abcd rw quiet iommu=pt\n");
        let c = t.enable().unwrap();
        assert_eq!(c.boot_loader, BootLoader::KernelInstall);
        assert_eq!(
            t.get("etc/kernel/cmdline").as_deref(),
            Some("root=UUID=abcd rw quiet iommu=pt intel_iommu=on\n")
        );
        assert_eq!(
            c.command.unwrap().command,
            "kernel-install add 6.1.0-26-amd64 /lib/modules/6.1.0-26-amd64/vmlinuz"
        );
        let r = load_record(t.root()).unwrap().unwrap();
        assert_eq!(r.added, ["intel_iommu=on"]);
        // Twice.
        let c = t.enable().unwrap();
        assert!(c.written.is_empty());
        assert_eq!(
            t.get("etc/kernel/cmdline").as_deref(),
            Some("root=UUID=abcd rw quiet iommu=pt intel_iommu=on\n")
        );
        // Disable keeps the operator's iommu=pt.
        disable(&t.h()).unwrap();
        assert_eq!(
            t.get("etc/kernel/cmdline").as_deref(),
            Some("root=UUID=abcd rw quiet iommu=pt\n")
        );
    }

    #[test]
    fn systemd_boot_without_kernel_cmdline_starts_from_the_running_kernel_and_disable_deletes_it() {
        let t = T::new("AuthenticAMD", false, true);
        t.put("boot/efi/loader/loader.conf", "timeout 3\n");
        t.put("boot/vmlinuz-6.1.0-26-amd64", "");
        let c = t.enable().unwrap();
        assert_eq!(
            t.get("etc/kernel/cmdline").as_deref(),
            Some("root=/dev/sda1 ro quiet amd_iommu=on iommu=pt\n")
        );
        assert_eq!(
            c.command.unwrap().command,
            "kernel-install add 6.1.0-26-amd64 /boot/vmlinuz-6.1.0-26-amd64"
        );
        let c = disable(&t.h()).unwrap();
        assert!(
            c.removed.contains(&PathBuf::from("/etc/kernel/cmdline")),
            "{c:?}"
        );
        assert_eq!(t.get("etc/kernel/cmdline"), None);
    }

    #[test]
    fn a_conflicting_argument_in_kernel_cmdline_is_refused_naming_it() {
        let t = T::new("GenuineIntel", false, true);
        t.put("etc/kernel/cmdline", "root=/dev/sda1 intel_iommu=off\n");
        let e = t.enable().unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/kernel/cmdline already has 'intel_iommu=off', which conflicts with 'intel_iommu=on': remove it first (vfpool changes only what it added)"
        );
        assert_eq!(
            t.get("etc/kernel/cmdline").as_deref(),
            Some("root=/dev/sda1 intel_iommu=off\n")
        );
        assert_eq!(t.get(RECORD), None);
        // Our own arguments already there (not vfpool's): nothing written.
        let t = T::new("GenuineIntel", false, true);
        t.put(
            "etc/kernel/cmdline",
            "root=/dev/sda1 intel_iommu=on iommu=pt\n",
        );
        let c = t.enable().unwrap();
        assert!(c.unchanged.unwrap().contains("not vfpool's"));
        assert_eq!(t.get(RECORD), None);
    }

    #[test]
    fn the_vendor_comes_from_cpuinfo_or_vendor_and_a_switch_replaces_ours() {
        assert_eq!(
            Vendor::from_cpuinfo("vendor_id\t: AuthenticAMD\n").unwrap(),
            Vendor::Amd
        );
        assert_eq!(
            Vendor::from_cpuinfo("vendor_id : GenuineIntel").unwrap(),
            Vendor::Intel
        );
        let e = Vendor::from_cpuinfo("vendor_id\t: CentaurHauls\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown CPU vendor 'CentaurHauls' in /proc/cpuinfo: give --vendor intel|amd"
        );
        assert_eq!(
            "arm".parse::<Vendor>().unwrap_err().to_string(),
            "invalid --vendor 'arm': intel or amd"
        );
        let t = T::new("HygonGenuine", false, true);
        t.put("etc/kernel/cmdline", "root=/dev/sda1\n");
        assert_eq!(
            t.enable().unwrap_err().to_string(),
            "unknown CPU vendor 'HygonGenuine' in /proc/cpuinfo: give --vendor intel|amd"
        );
        std::fs::write(t.root().join("proc/cpuinfo"), "processor : 0\n").unwrap();
        assert_eq!(
            t.enable().unwrap_err().to_string(),
            "unknown CPU vendor (no vendor_id in /proc/cpuinfo): give --vendor intel|amd"
        );
        let req = |v| EnableRequest {
            vendor: Some(v),
            allow_unsafe_interrupts: false,
        };
        enable(&t.h(), &req(Vendor::Amd)).unwrap();
        assert_eq!(
            t.get("etc/kernel/cmdline").as_deref(),
            Some("root=/dev/sda1 amd_iommu=on iommu=pt\n")
        );
        enable(&t.h(), &req(Vendor::Intel)).unwrap();
        assert_eq!(
            t.get("etc/kernel/cmdline").as_deref(),
            Some("root=/dev/sda1 iommu=pt intel_iommu=on\n")
        );
        disable(&t.h()).unwrap();
        assert_eq!(
            t.get("etc/kernel/cmdline").as_deref(),
            Some("root=/dev/sda1\n")
        );
    }

    #[test]
    fn without_interrupt_remapping_the_unsafe_option_is_offered_then_written_and_removed() {
        let t = T::new("GenuineIntel", true, false);
        t.debian();
        let c = t.enable().unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("does not support interrupt remapping"));
        assert!(c.warnings[0].contains("--allow-unsafe-interrupts"));
        assert_eq!(t.get(UNSAFE_CONF), None);
        let req = EnableRequest {
            vendor: None,
            allow_unsafe_interrupts: true,
        };
        let c = enable(&t.h(), &req).unwrap();
        assert_eq!(
            c.written,
            [PathBuf::from("/etc/modprobe.d/vfio-iommu-unsafe.conf")]
        );
        assert!(c.warnings[0].contains("forge interrupts"));
        let body = t.get(UNSAFE_CONF).unwrap();
        assert!(
            body.ends_with("\noptions vfio_iommu_type1 allow_unsafe_interrupts=1\n"),
            "{body}"
        );
        // Twice: not written again.
        assert!(enable(&t.h(), &req).unwrap().written.is_empty());
        let c = disable(&t.h()).unwrap();
        assert!(
            c.removed
                .contains(&PathBuf::from("/etc/modprobe.d/vfio-iommu-unsafe.conf"))
        );
        assert_eq!(t.get(UNSAFE_CONF), None);

        // With remapping, the option is not written.
        let t = T::new("GenuineIntel", true, true);
        t.debian();
        let c = enable(&t.h(), &req).unwrap();
        assert!(c.warnings[0].contains("not needed"));
        assert_eq!(t.get(UNSAFE_CONF), None);
    }

    #[test]
    fn disable_leaves_an_unsafe_file_that_is_not_ours() {
        let t = T::new("GenuineIntel", true, false);
        t.debian();
        t.put(
            UNSAFE_CONF,
            "options vfio_iommu_type1 allow_unsafe_interrupts=1\n",
        );
        let c = disable(&t.h()).unwrap();
        assert!(c.removed.is_empty());
        assert!(t.get(UNSAFE_CONF).is_some());
    }

    #[test]
    fn unknown_boot_loader_and_bad_roots_are_one_line_errors() {
        let t = T::new("GenuineIntel", true, true);
        let e = t.enable().unwrap_err().to_string();
        assert!(e.starts_with("unknown boot loader under "), "{e}");
        assert!(
            e.contains("etc/default/grub (GRUB), grubby, etc/kernel/cmdline"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert!(
            disable(&t.h())
                .unwrap_err()
                .to_string()
                .starts_with("unknown boot loader")
        );
        let st = status(&t.h()).unwrap();
        assert_eq!((st.boot_loader, st.enabled, st.ready), (None, false, true));

        let missing = t.root().join("nope");
        let h = IommuHost {
            root: &missing,
            paths: &t.paths,
            fs: &t.fs,
            run_commands: false,
        };
        let e = enable(&h, &EnableRequest::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid --root '{}': not a writable directory",
                missing.display()
            )
        );
        t.put("afile", "");
        let file = t.root().join("afile");
        let h = IommuHost {
            root: &file,
            paths: &t.paths,
            fs: &t.fs,
            run_commands: false,
        };
        assert!(
            disable(&h)
                .unwrap_err()
                .to_string()
                .contains("not a writable directory")
        );
    }

    #[test]
    fn commands_never_run_under_a_root_other_than_slash() {
        use std::os::unix::fs::PermissionsExt;
        let t = T::new("GenuineIntel", true, true);
        t.debian();
        let marker = t.root().join("ran");
        let tool = t.root().join("usr/sbin/update-grub");
        std::fs::write(&tool, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let h = IommuHost {
            run_commands: true,
            ..t.h()
        };
        let c = enable(&h, &EnableRequest::default()).unwrap();
        assert!(!c.command.unwrap().ran);
        assert!(!marker.exists());
        assert!(!disable(&h).unwrap().command.unwrap().ran);
        assert!(!marker.exists());
    }

    #[test]
    fn a_corrupt_record_is_named() {
        let t = T::new("GenuineIntel", true, true);
        t.debian();
        t.put(RECORD, "{");
        let e = t.enable().unwrap_err().to_string();
        assert!(e.contains("etc/vfpool/iommu.json is not valid"), "{e}");
    }
}
