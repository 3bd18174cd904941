//! Keeping VF counts across reboots.
//!
//! The desired count per PF (by PCI address: netdev names can change across boots) is kept
//! in `STATE/desired.json`. A systemd oneshot unit, `vfpool-apply.service`, runs
//! `vfpool host apply` early at boot, before networking, libvirt and the kubelet; `--udev`
//! writes a udev rule instead, like the seed's `igb.rules` but matched by PCI address.

use std::collections::BTreeMap;
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

/// The unit that re-creates VFs at boot.
pub fn systemd_unit(exe: &Path, state: &Path) -> String {
    format!(
        "# Written by `vfpool host persist`: re-creates SR-IOV VFs at boot.\n\
[Unit]\n\
Description=vfpool: re-create SR-IOV virtual functions\n\
Documentation=file:{state}/desired.json\n\
DefaultDependencies=no\n\
After=systemd-modules-load.service systemd-udev-settle.service local-fs.target\n\
Wants=network-pre.target\n\
Before=network-pre.target libvirtd.service kubelet.service shutdown.target\n\
Conflicts=shutdown.target\n\
ConditionPathExists={state}/desired.json\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStart={exe} --state {state} host apply\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        exe = exe.display(),
        state = state.display(),
    )
}

/// A udev rule per PF, by PCI address: when the PF's netdev appears, set its VFs.
pub fn udev_rules(desired: &Desired) -> String {
    let mut s =
        String::from("# Written by `vfpool host persist --udev`: VF counts by PF PCI address.\n");
    for (pci, nic) in &desired.nics {
        s.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"net\", KERNELS==\"{pci}\", ATTR{{device/sriov_totalvfs}}==\"?*\", ATTR{{device/sriov_drivers_autoprobe}}=\"{}\", ATTR{{device/sriov_numvfs}}=\"{}\"\n",
            u8::from(nic.autoprobe),
            nic.num_vfs
        ));
    }
    s
}

/// Installs the unit under `root` (`/` on a real host) and enables it the way
/// `systemctl enable` does: a link in `multi-user.target.wants`.
pub fn install_systemd(root: &Path, exe: &Path, state: &Path) -> Result<PathBuf, HostError> {
    let dir = root.join("etc/systemd/system");
    let unit = dir.join(UNIT_NAME);
    write_atomic(&unit, systemd_unit(exe, state).as_bytes())?;
    let wants = dir.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants).map_err(|e| HostError::Save {
        path: wants.clone(),
        source: e,
    })?;
    let link = wants.join(UNIT_NAME);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("../{UNIT_NAME}"), &link).map_err(|e| HostError::Save {
        path: link.clone(),
        source: e,
    })?;
    Ok(unit)
}

pub fn install_udev(root: &Path, desired: &Desired) -> Result<PathBuf, HostError> {
    let p = root.join("etc/udev/rules.d").join(UDEV_RULE);
    write_atomic(&p, udev_rules(desired).as_bytes())?;
    Ok(p)
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
