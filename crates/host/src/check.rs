//! `vfpool host check`: is this host ready to pass VFs to VMs, or to containers?
//!
//! VM passthrough needs an active IOMMU, interrupt remapping (or the explicit
//! `allow_unsafe_interrupts` opt-out) and vfio-pci. Containers need none of that: only a
//! NIC with SR-IOV.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::iommu::{self, IommuHost, IommuStatus};
use crate::{HostError, HostPaths, Inventory, Sysfs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about a warn or fail; empty on pass.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remedy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub vm_ready: bool,
    pub container_ready: bool,
    pub checks: Vec<Check>,
    /// The IOMMU's setting for the next boot and the running kernel's status; `None` when
    /// the boot configuration could not be read.
    pub iommu: Option<IommuStatus>,
}

const GRUB_REMEDY: &str = "enable VT-d / AMD-Vi in the BIOS; run `vfpool host iommu enable` and reboot, or by hand: in /etc/default/grub set GRUB_CMDLINE_LINUX_DEFAULT=\"... intel_iommu=on iommu=pt\" (AMD: amd_iommu=on iommu=pt), run update-grub and reboot";
const UNSAFE_REMEDY: &str = "no interrupt remapping: either use a host whose IOMMU supports it, or accept the risk with: echo \"options vfio_iommu_type1 allow_unsafe_interrupts=1\" > /etc/modprobe.d/iommu_unsafe_interrupts.conf";

fn check(
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    remedy: impl Into<String>,
) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        remedy: if status == Status::Pass {
            String::new()
        } else {
            remedy.into()
        },
    }
}

/// Runs every check against the host at `paths`, its boot configuration under `root` (`/` on
/// a real host).
pub fn run(paths: &HostPaths, fs: &Sysfs, root: &Path) -> Result<Report, HostError> {
    let mut report = run_without_iommu_setting(paths, fs)?;
    let st = match iommu::status(&IommuHost {
        root,
        paths,
        fs,
        run_commands: false,
    }) {
        Ok(st) => st,
        Err(iommu::IommuError::Host(e)) => return Err(e),
        Err(e) => {
            report.checks.insert(
                1,
                check(
                    "iommu-enabled",
                    Status::Warn,
                    e.to_string(),
                    "give the boot loader's root with --root",
                ),
            );
            return Ok(report);
        }
    };
    let setting = match (&st.enabled_by, st.boot_loader) {
        (Some(by), Some(bl)) => format!("next boot: {by} ({bl})"),
        (None, Some(bl)) => {
            format!("the next boot's arguments ({bl}) have neither intel_iommu=on nor amd_iommu=on")
        }
        (_, None) => {
            "no boot loader configuration found (GRUB, grubby or /etc/kernel/cmdline)".to_owned()
        }
    };
    let c = match (st.enabled, st.ready) {
        (true, true) => check("iommu-enabled", Status::Pass, setting, ""),
        (true, false) => check(
            "iommu-enabled",
            Status::Warn,
            format!("reboot pending: {setting}, but the running kernel has no IOMMU"),
            "reboot; if the IOMMU is still not ready after a reboot, enable Intel VT-d / AMD-Vi (AMD IOMMU) in the BIOS",
        ),
        (false, true) => check(
            "iommu-enabled",
            Status::Warn,
            format!("the running kernel has the IOMMU, but {setting}"),
            "keep it across reboots: vfpool host iommu enable",
        ),
        (false, false) => check(
            "iommu-enabled",
            Status::Fail,
            setting,
            "vfpool host iommu enable, then reboot (and enable Intel VT-d / AMD-Vi in the BIOS)",
        ),
    };
    report.checks.insert(1, c);
    report.iommu = Some(st);
    Ok(report)
}

/// The checks of the running kernel and the NICs only, without the boot configuration.
pub fn run_without_iommu_setting(paths: &HostPaths, fs: &Sysfs) -> Result<Report, HostError> {
    let mut checks = Vec::new();
    let cmdline = fs
        .read_opt(&paths.proc.join("cmdline"))?
        .unwrap_or_default();
    let args: Vec<&str> = cmdline.split_whitespace().collect();
    let has_arg = |a: &str| args.contains(&a);

    // 1. IOMMU active: the kernel registered IOMMU units.
    let units = fs.list(&fs.path("class/iommu"))?;
    let intel = units.iter().any(|u| u.starts_with("dmar"));
    let iommu_active = !units.is_empty();
    checks.push(if iommu_active {
        check(
            "iommu-ready",
            Status::Pass,
            format!("IOMMU active: {}", units.join(", ")),
            "",
        )
    } else {
        check(
            "iommu-ready",
            Status::Fail,
            "the running kernel has no IOMMU (no units in /sys/class/iommu): VFs cannot be passed to VMs",
            GRUB_REMEDY,
        )
    });

    // 2. The kernel command line asks for it.
    let on_arg = [
        "intel_iommu=on",
        "amd_iommu=on",
        "amd_iommu=force_isolation",
    ]
    .into_iter()
    .find(|a| has_arg(a));
    checks.push(match (on_arg, iommu_active) {
        (Some(a), _) => check("iommu-cmdline", Status::Pass, format!("kernel command line has {a}"), ""),
        (None, true) => check(
            "iommu-cmdline",
            Status::Warn,
            "the IOMMU is on by the kernel's default, not by the command line",
            "pin it: add intel_iommu=on (or amd_iommu=on) to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub and run update-grub",
        ),
        (None, false) => check(
            "iommu-cmdline",
            Status::Fail,
            "kernel command line has neither intel_iommu=on nor amd_iommu=on",
            GRUB_REMEDY,
        ),
    });

    // 3. iommu=pt is advised: host-owned devices skip DMA translation.
    checks.push(if has_arg("iommu=pt") {
        check(
            "iommu-pt",
            Status::Pass,
            "kernel command line has iommu=pt",
            "",
        )
    } else {
        check(
            "iommu-pt",
            Status::Warn,
            "iommu=pt is not set: devices the host keeps pay for DMA translation",
            "add iommu=pt to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub and run update-grub",
        )
    });

    // 4. Interrupt remapping: supported (DMAR ecap bit 3) and in use (IR- interrupt chips).
    let mut ir_supported: Option<bool> = None;
    let mut ecaps = Vec::new();
    for u in units.iter().filter(|u| u.starts_with("dmar")) {
        if let Some(e) = fs.read_opt(&fs.path(format!("class/iommu/{u}/intel-iommu/ecap")))? {
            let v = u64::from_str_radix(e.trim().trim_start_matches("0x"), 16).unwrap_or(0);
            let bit = (v >> 3) & 1 == 1;
            ecaps.push(format!("{u} ecap {e} IR={}", u8::from(bit)));
            ir_supported = Some(ir_supported.unwrap_or(true) && bit);
        }
    }
    let interrupts = fs
        .read_opt(&paths.proc.join("interrupts"))?
        .unwrap_or_default();
    let ir_in_use = interrupts.contains("IR-");
    let unsafe_ok = fs
        .read_opt(&fs.path("module/vfio_iommu_type1/parameters/allow_unsafe_interrupts"))?
        .is_some_and(|v| v == "Y" || v == "1");
    let ir_ok =
        ir_in_use || (intel && ir_supported == Some(true) && !args.contains(&"intremap=off"));
    checks.push(if ir_ok {
        check(
            "interrupt-remapping",
            Status::Pass,
            format!(
                "interrupt remapping {}{}",
                if ir_in_use { "in use (IR- interrupt chips)" } else { "supported" },
                if ecaps.is_empty() { String::new() } else { format!("; {}", ecaps.join("; ")) }
            ),
            "",
        )
    } else if unsafe_ok {
        check(
            "interrupt-remapping",
            Status::Warn,
            "no interrupt remapping; vfio_iommu_type1 allow_unsafe_interrupts=Y lets passthrough work without it",
            "a VM with a VF can then forge MSIs: prefer a host with interrupt remapping",
        )
    } else {
        let detail = if !iommu_active {
            "no IOMMU, so no interrupt remapping".to_owned()
        } else if ecaps.is_empty() {
            "no interrupt remapping found (no IR- interrupt chips in /proc/interrupts)".to_owned()
        } else {
            format!("the IOMMU does not support interrupt remapping: {}", ecaps.join("; "))
        };
        check("interrupt-remapping", Status::Fail, detail, UNSAFE_REMEDY)
    });

    // 5. vfio-pci loaded, or at least available.
    let loaded = fs.exists(&fs.path("bus/pci/drivers/vfio-pci"));
    let release = fs
        .read_opt(&paths.proc.join("sys/kernel/osrelease"))?
        .unwrap_or_default();
    let mdir = paths.modules.join(&release);
    let in_tree = |f: &str| -> Result<bool, HostError> {
        Ok(fs
            .read_opt(&mdir.join(f))?
            .is_some_and(|s| s.lines().any(|l| l.contains("/vfio-pci.ko"))))
    };
    let available = loaded || in_tree("modules.dep")? || in_tree("modules.builtin")?;
    checks.push(if loaded {
        check("vfio-pci", Status::Pass, "vfio-pci is loaded", "")
    } else if available {
        check(
            "vfio-pci",
            Status::Warn,
            "vfio-pci is available but not loaded (vfpool loads it on the first VM lease)",
            "load it at boot: echo vfio-pci > /etc/modules-load.d/vfio-pci.conf",
        )
    } else {
        check(
            "vfio-pci",
            Status::Fail,
            format!("no vfio-pci module for kernel {release}"),
            "install a kernel with CONFIG_VFIO_PCI (Debian's linux-image packages have it)",
        )
    });

    // 6. allow_unsafe_interrupts: a warning when set although remapping works.
    if unsafe_ok && ir_ok {
        checks.push(check(
            "unsafe-interrupts",
            Status::Warn,
            "vfio_iommu_type1 allow_unsafe_interrupts=Y although interrupt remapping works",
            "remove the option from /etc/modprobe.d/ and reload vfio_iommu_type1",
        ));
    }

    // 7. Something to split.
    let inv = Inventory::scan(fs)?;
    let sriov: Vec<String> = inv
        .nics
        .iter()
        .filter(|n| n.total_vfs > 0)
        .map(|n| format!("{} ({} VFs)", n.name, n.total_vfs))
        .collect();
    let container_ready = !sriov.is_empty();
    checks.push(if container_ready {
        check(
            "sriov-nics",
            Status::Pass,
            format!("SR-IOV NICs: {}", sriov.join(", ")),
            "",
        )
    } else {
        check(
            "sriov-nics",
            Status::Fail,
            "no NIC with SR-IOV capability (sriov_totalvfs)",
            "enable SR-IOV for the NIC in the BIOS, or install a NIC that has it",
        )
    });

    // 8. Bonds: a bonded PF's VFs and the bond's vNICs may not reach each other.
    for n in inv.nics.iter().filter(|n| n.total_vfs > 0) {
        if let Some(b) = &n.bond {
            checks.push(Check {
                name: "bond",
                status: Status::Warn,
                detail: format!("{} is a member of bond {b}: {}", n.name, BOND_EFFECT),
                remedy: BOND_ADVICE.to_owned(),
            });
        }
    }

    let status = |n: &str| checks.iter().find(|c| c.name == n).map(|c| c.status);
    let vm_ready = container_ready
        && status("iommu-ready") == Some(Status::Pass)
        && status("interrupt-remapping") != Some(Status::Fail)
        && status("vfio-pci") != Some(Status::Fail);
    Ok(Report {
        vm_ready,
        container_ready,
        checks,
        iommu: None,
    })
}

/// What a bond does to SR-IOV (the third seed).
pub const BOND_EFFECT: &str = "VF NICs and vNICs on it may not reach each other";
/// The third seed's advice.
pub const BOND_ADVICE: &str =
    "use a bond of a single NIC, or in a bond of several NICs split only one of them";
