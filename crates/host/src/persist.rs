//! Keeping VF counts across reboots.
//!
//! The desired count per PF (by PCI address: netdev names can change across boots) is kept
//! in the ledger by the engine (older versions kept `STATE/desired.json`, still read once
//! to import it). A systemd oneshot unit, `vfpool-apply.service`, runs `vfpool host apply`
//! early at boot, before networking, libvirt and the kubelet; `--udev` writes a udev rule
//! instead, which runs `vfpool host apply --nic` when a PF's netdev appears. Neither
//! carries a count, so neither can go stale.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vfpool_model::PciAddr;

use crate::HostError;

pub const UNIT_NAME: &str = "vfpool-apply.service";
pub const UDEV_RULE: &str = "70-vfpool-sriov.rules";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DesiredNic {
    /// The netdev name when recorded, for people; matching is by PCI address.
    pub name: String,
    pub num_vfs: u32,
    pub autoprobe: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    pub version: u32,
    pub nics: BTreeMap<PciAddr, DesiredNic>,
}

impl Desired {
    pub fn path(state: &Path) -> PathBuf {
        state.join("desired.json")
    }

    /// `None` when persistence was never set up.
    pub fn load(state: &Path) -> Result<Option<Self>, HostError> {
        let p = Self::path(state);
        let body = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(HostError::Read { path: p, source: e }),
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| HostError::Corrupt {
                path: p,
                reason: e.to_string(),
            })
    }

    pub fn save(&self, state: &Path) -> Result<(), HostError> {
        let p = Self::path(state);
        let body = serde_json::to_vec_pretty(self).map_err(|e| HostError::Corrupt {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&p, &body)
    }
}

/// Writes a file so that a crash leaves either the old or the new contents.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<(), HostError> {
    use std::io::Write;
    let save = |e| HostError::Save {
        path: path.to_owned(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(save)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(save)?;
    f.write_all(body).map_err(save)?;
    f.sync_all().map_err(save)?;
    std::fs::rename(&tmp, path).map_err(save)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Quotes one argument for a systemd `ExecStart=` line: double quotes with C escapes for
/// `\\`, `"`, control characters and non-ASCII bytes, `%%` for a specifier's `%` and `$$`
/// for a variable's `$` (systemd.syntax(7), systemd.service(5) "Command lines"). A path
/// with a space, a newline or a quote stays one argument and cannot add a line.
pub fn systemd_quote(arg: &OsStr) -> String {
    let mut q = String::from("\"");
    for &b in arg.as_bytes() {
        match b {
            b'\\' => q.push_str("\\\\"),
            b'"' => q.push_str("\\\""),
            b'%' => q.push_str("%%"),
            b'$' => q.push_str("$$"),
            b'\n' => q.push_str("\\n"),
            b'\t' => q.push_str("\\t"),
            0x20..=0x7e => q.push(char::from(b)),
            _ => q.push_str(&format!("\\x{b:02x}")),
        }
    }
    q.push('"');
    q
}

/// The command line that re-creates the VFs: `EXE ARGS... host apply`, quoted.
fn command_line(exe: &Path, args: &[OsString], quote: fn(&OsStr) -> String) -> String {
    std::iter::once(exe.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .chain([OsStr::new("host"), OsStr::new("apply")])
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The unit that re-creates VFs at boot. It carries no counts: `host apply` reads them
/// from the ledger, so the unit never goes stale. `args` select the host and the state
/// directory (`--state DIR`, and `--demo` for the demo host).
pub fn systemd_unit(exe: &Path, args: &[OsString]) -> String {
    format!(
        "# Written by `vfpool host persist`: re-creates SR-IOV VFs at boot.\n\
[Unit]\n\
Description=vfpool: re-create SR-IOV virtual functions\n\
DefaultDependencies=no\n\
After=systemd-modules-load.service systemd-udev-settle.service local-fs.target\n\
Wants=network-pre.target\n\
Before=network-pre.target libvirtd.service kubelet.service shutdown.target\n\
Conflicts=shutdown.target\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStart={}\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        command_line(exe, args, systemd_quote)
    )
}

/// Quotes one argument of a udev `RUN+=` program: udev splits at spaces and keeps single
/// quotes together (udev(7)); `%` and `$` are its substitutions. What udev cannot carry
/// (a quote, a backslash, a control character) is refused.
pub fn udev_quote(arg: &OsStr) -> Result<String, HostError> {
    let s = arg.to_str().filter(|s| {
        !s.chars()
            .any(|c| c.is_control() || matches!(c, '\'' | '"' | '\\'))
    });
    let Some(s) = s else {
        return Err(HostError::Invalid(vfpool_model::InvalidValue::new(
            "udev rule argument",
            arg.to_string_lossy().escape_debug(),
            "no quote, backslash or control character (udev cannot quote them; use the systemd unit)",
        )));
    };
    let s = s.replace('%', "%%").replace('$', "$$");
    Ok(if s.contains(' ') { format!("'{s}'") } else { s })
}

/// The udev rule: when the netdev of a PF that can have VFs appears, `vfpool host apply
/// --nic` brings that PF to its recorded count (from the ledger: the rule carries no
/// counts and no addresses, so it covers NICs recorded later and never goes stale).
pub fn udev_rules(exe: &Path, args: &[OsString]) -> Result<String, HostError> {
    let mut quoted = Vec::new();
    for a in std::iter::once(exe.as_os_str()).chain(args.iter().map(OsString::as_os_str)) {
        quoted.push(udev_quote(a)?);
    }
    Ok(format!(
        "# Written by `vfpool host persist --udev`: VF counts come from vfpool's ledger.\n\
ACTION==\"add\", SUBSYSTEM==\"net\", TEST==\"device/sriov_totalvfs\", RUN+=\"{} host apply --nic $kernel\"\n",
        quoted.join(" ")
    ))
}

fn systemd_paths(root: &Path) -> (PathBuf, PathBuf) {
    let dir = root.join("etc/systemd/system");
    let link = dir.join("multi-user.target.wants").join(UNIT_NAME);
    (dir.join(UNIT_NAME), link)
}

fn udev_path(root: &Path) -> PathBuf {
    root.join("etc/udev/rules.d").join(UDEV_RULE)
}

/// Installs the unit under `root` (`/` on a real host) and enables it the way
/// `systemctl enable` does: a link in `multi-user.target.wants`. A udev rule installed
/// earlier is removed (one boot hook, not two). Returns the unit and what was removed.
pub fn install_systemd(
    root: &Path,
    exe: &Path,
    args: &[OsString],
) -> Result<(PathBuf, Vec<PathBuf>), HostError> {
    let (unit, link) = systemd_paths(root);
    write_atomic(&unit, systemd_unit(exe, args).as_bytes())?;
    let wants = link.parent().unwrap_or(root);
    std::fs::create_dir_all(wants).map_err(|e| HostError::Save {
        path: wants.to_owned(),
        source: e,
    })?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("../{UNIT_NAME}"), &link).map_err(|e| HostError::Save {
        path: link.clone(),
        source: e,
    })?;
    let removed = remove_if_present(&[udev_path(root)])?;
    Ok((unit, removed))
}

/// Installs the udev rule under `root`, and removes the systemd unit if one was
/// installed. Returns the rule and what was removed.
pub fn install_udev(
    root: &Path,
    exe: &Path,
    args: &[OsString],
) -> Result<(PathBuf, Vec<PathBuf>), HostError> {
    let p = udev_path(root);
    let body = udev_rules(exe, args)?;
    write_atomic(&p, body.as_bytes())?;
    let (unit, link) = systemd_paths(root);
    let removed = remove_if_present(&[link, unit])?;
    Ok((p, removed))
}

fn remove_if_present(paths: &[PathBuf]) -> Result<Vec<PathBuf>, HostError> {
    let mut removed = Vec::new();
    for p in paths {
        match std::fs::remove_file(p) {
            Ok(()) => removed.push(p.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(HostError::Save {
                    path: p.clone(),
                    source: e,
                });
            }
        }
    }
    Ok(removed)
}

/// What `host apply` did for one recorded PF.
#[derive(Debug)]
pub struct Applied {
    pub pci: PciAddr,
    pub name: String,
    pub result: Result<crate::split::SplitReport, HostError>,
}

/// Brings every recorded PF to its recorded VF count (in parallel). A PF that is gone is
/// reported and the others still applied.
pub fn apply(
    fs: &crate::Sysfs,
    desired: &Desired,
    opts: &crate::split::SplitOptions,
) -> Result<Vec<Applied>, HostError> {
    let inv = crate::Inventory::scan(fs)?;
    let mut work = Vec::new();
    let mut out = Vec::new();
    for (pci, want) in &desired.nics {
        match inv.find_sriov_pf(&pci.to_string()) {
            Ok(nic) if want.num_vfs == 0 => out.push(Applied {
                pci: *pci,
                name: nic.name.clone(),
                result: crate::split::restore(fs, nic, opts.timeout),
            }),
            Ok(nic) => work.push((nic.clone(), want.num_vfs, want.autoprobe)),
            Err(e) => out.push(Applied {
                pci: *pci,
                name: want.name.clone(),
                result: Err(e),
            }),
        }
    }
    // Autoprobe can differ per NIC: group the NICs by it.
    for probe in [true, false] {
        let group: Vec<(crate::Nic, u32)> = work
            .iter()
            .filter(|w| w.2 == probe)
            .map(|w| (w.0.clone(), w.1))
            .collect();
        if group.is_empty() {
            continue;
        }
        let o = crate::split::SplitOptions {
            autoprobe: Some(probe),
            ..opts.clone()
        };
        for ((nic, _), result) in
            group
                .iter()
                .zip(crate::split::split_many(fs, &group, &o, &|_, _, _| {}))
        {
            out.push(Applied {
                pci: nic.pci,
                name: nic.name.clone(),
                result,
            });
        }
    }
    out.sort_by_key(|a| a.pci);
    Ok(out)
}
