use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use vfpool_engine::{
    ApplyView, BootHook, CheckView, DesiredView, IommuChangeView, IommuStatusView, PersistView,
};
use vfpool_host::check::Status;
use vfpool_host::iommu::EnableRequest;
use vfpool_host::{Inventory, manifest};

use hyper::Method;
use vfpool_daemon::api::host::IommuBody;

use crate::context::{Backend, Context, Remote, not_remote, print_json};
use crate::table::Table;

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// Is the host ready for VFs in VMs (IOMMU enabled for the next boot and ready in the
    /// running kernel, interrupt remapping, vfio-pci) and in containers? Exit status 0 only
    /// when ready for VMs.
    Check {
        /// The root of the file system whose boot configuration is read (default `/`; on
        /// the demo host a directory of the demo host).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// The IOMMU's kernel arguments for the next boot: enable, disable, status.
    #[command(subcommand)]
    Iommu(IommuCmd),
    /// Records the current VF count of every split NIC and installs what re-creates them at
    /// boot: the systemd unit vfpool-apply.service, or with --udev a udev rule.
    Persist {
        /// Write a udev rule (matched by PCI address) instead of the systemd unit.
        #[arg(long)]
        udev: bool,
        /// The root of the file system to install into (default `/`; on the demo host a
        /// directory of the demo host, never the real `/etc`).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// The VF counts recorded for the next boot (what `host apply` brings back).
    Desired,
    /// What the boot hook runs: every recorded NIC back to its recorded VF count, the
    /// leases' configurations re-applied, then `lease gc`.
    Apply {
        /// Only this NIC (netdev or PCI address), as the udev rule asks.
        #[arg(long, value_name = "NIC")]
        nic: Option<String>,
        /// Seconds to wait for each NIC's VFs (1..=86400).
        #[arg(long, default_value = "180", value_name = "SECONDS")]
        timeout: String,
        /// Leave the PFs' links as they are (by default a PF that is down is brought up).
        #[arg(long)]
        keep_link: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum IommuCmd {
    /// Writes intel_iommu=on iommu=pt (AMD: amd_iommu=on iommu=pt) for the boot loader:
    /// a GRUB drop-in, grubby, or /etc/kernel/cmdline. Effective after a reboot.
    Enable {
        /// The root of the file system to write into (default `/`; on the demo host a
        /// directory of the demo host, never the real `/etc`). Boot loader commands run
        /// only when it is `/`.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// intel or amd (default: from /proc/cpuinfo's vendor_id).
        #[arg(long, value_name = "VENDOR")]
        vendor: Option<String>,
        /// Without interrupt remapping: write
        /// /etc/modprobe.d/vfio-iommu-unsafe.conf (vfio_iommu_type1 allow_unsafe_interrupts=1).
        #[arg(long)]
        allow_unsafe_interrupts: bool,
    },
    /// Removes exactly what `enable` added. Effective after a reboot.
    Disable {
        /// As for enable.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Enabled (the next boot's arguments), ready (the running kernel), reboot pending.
    Status {
        /// As for enable.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DebugCmd {
    /// Prints the normalized list of sysfs entries vfpool uses for a PF and its VFs.
    SysfsManifest {
        /// A PF with SR-IOV, by netdev name or PCI address.
        nic: String,
    },
    /// Demo host only: makes the next sriov_numvfs write on NIC fail with ERRNO
    /// (ENOMEM, EBUSY, EINVAL), or its VFs never get a netdev (--no-netdev).
    SimFault {
        /// A PF with SR-IOV, by netdev name or PCI address.
        nic: String,
        /// The errno the next sriov_numvfs write fails with: ENOMEM, EBUSY or EINVAL.
        #[arg(long, value_name = "ERRNO")]
        numvfs_errno: Option<String>,
        /// The NIC's next VFs never get a netdev.
        #[arg(long)]
        no_netdev: bool,
    },
    /// Demo host only: what a reboot does to SR-IOV (every PF back to 0 VFs, autoprobe on).
    SimReboot,
}

pub fn run(b: &Backend, cmd: HostCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        HostCmd::Check { root } => host_check(b, root.as_deref()),
        HostCmd::Iommu(cmd) => host_iommu(b, cmd),
        HostCmd::Persist { udev, root } => {
            host_persist(b.local("host persist")?, udev, root.as_deref())
        }
        HostCmd::Desired => {
            let ctx = b.local("host desired")?;
            let d = ctx.engine()?.desired()?;
            if ctx.json() {
                let views: Vec<DesiredView> = d.iter().map(Into::into).collect();
                print_json(&views)?;
            } else {
                let mut t = Table::new(&["NIC", "PCI", "VFS", "AUTOPROBE"]);
                for n in &d {
                    t.row(vec![
                        n.name.clone(),
                        n.pci.to_string(),
                        n.num_vfs.to_string(),
                        if n.autoprobe { "on" } else { "off" }.into(),
                    ]);
                }
                crate::context::out(&t.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        HostCmd::Apply {
            nic,
            timeout,
            keep_link,
        } => host_apply(b.local("host apply")?, nic.as_deref(), &timeout, keep_link),
    }
}

/// `host iommu status`.
fn iommu_status(json: bool, st: &IommuStatusView) -> anyhow::Result<ExitCode> {
    if json {
        print_json(st)?;
        return Ok(ExitCode::SUCCESS);
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    crate::outln!(
        "boot loader    {}",
        st.boot_loader
            .map_or_else(|| "unknown".to_owned(), |b| b.to_string())
    );
    crate::outln!(
        "enabled        {}{}",
        yes(st.enabled),
        st.enabled_by
            .as_ref()
            .map(|b| format!(" ({b}{})", if st.by_vfpool { ", by vfpool" } else { "" }))
            .unwrap_or_default()
    );
    crate::outln!(
        "ready          {}{}",
        yes(st.ready),
        if st.units.is_empty() {
            String::new()
        } else {
            format!(" ({})", st.units.join(", "))
        }
    );
    if st.reboot_pending {
        crate::outln!(
            "reboot pending: enabled for the next boot, not in the running kernel (if a reboot does not help, enable VT-d / AMD-Vi in the BIOS)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn host_iommu(b: &Backend, cmd: IommuCmd) -> anyhow::Result<ExitCode> {
    let change: IommuChangeView = match cmd {
        IommuCmd::Status { root } => {
            let st: IommuStatusView = match (b, &root) {
                (Backend::Local(ctx), _) => (&ctx.host.iommu_status(root.as_deref())?).into(),
                (Backend::Remote(r), None) => r.client.get("/api/v1/host/iommu")?.view,
                (Backend::Remote(_), Some(_)) => return Err(not_remote("host iommu --root")),
            };
            return iommu_status(b.json(), &st);
        }
        IommuCmd::Enable {
            root,
            vendor,
            allow_unsafe_interrupts,
        } => {
            let req = EnableRequest {
                vendor: vendor
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(vfpool_engine::EngineError::from)?,
                allow_unsafe_interrupts,
            };
            match (b, &root) {
                (Backend::Local(ctx), _) => (&ctx.host.iommu_enable(root.as_deref(), &req)?).into(),
                (Backend::Remote(r), None) => iommu_change(
                    r,
                    &IommuBody {
                        enabled: true,
                        vendor: req.vendor,
                        allow_unsafe_interrupts,
                    },
                )?,
                (Backend::Remote(_), Some(_)) => return Err(not_remote("host iommu --root")),
            }
        }
        IommuCmd::Disable { root } => match (b, &root) {
            (Backend::Local(ctx), _) => (&ctx.host.iommu_disable(root.as_deref())?).into(),
            (Backend::Remote(r), None) => iommu_change(
                r,
                &IommuBody {
                    enabled: false,
                    vendor: None,
                    allow_unsafe_interrupts: false,
                },
            )?,
            (Backend::Remote(_), Some(_)) => return Err(not_remote("host iommu --root")),
        },
    };
    for w in &change.warnings {
        eprintln!("warning: {w}");
    }
    if b.json() {
        print_json(&change)?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!("boot loader: {}", change.boot_loader);
    if change.root != std::path::Path::new("/") {
        crate::outln!(
            "root: {} (files only; nothing is run)",
            change.root.display()
        );
    }
    if let Some(u) = &change.unchanged {
        crate::outln!("unchanged: {u}");
    }
    for p in &change.written {
        crate::outln!("wrote {}", p.display());
    }
    for p in &change.removed {
        crate::outln!("removed {}", p.display());
    }
    if let Some(c) = &change.command {
        if change.command_ran {
            crate::outln!("ran: {c}");
        } else {
            crate::outln!("to run on the host: {c}");
        }
    }
    if change.unchanged.is_none() || !change.written.is_empty() || !change.removed.is_empty() {
        crate::outln!("effective {}", change.effective);
    }
    Ok(ExitCode::SUCCESS)
}

/// `POST /api/v1/host/iommu`. The view carries its warnings (the headers repeat them).
fn iommu_change(r: &Remote, body: &IommuBody) -> anyhow::Result<IommuChangeView> {
    Ok(r.client
        .call(Method::POST, "/api/v1/host/iommu", Some(body))?
        .view)
}

fn host_check(b: &Backend, root: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let report: CheckView = match b {
        Backend::Local(ctx) => (&ctx.host.check(root)?).into(),
        Backend::Remote(r) => r.client.get("/api/v1/host/check")?.view,
    };
    if b.json() {
        print_json(&report)?;
    } else {
        let mut t = Table::new(&["CHECK", "STATUS", "DETAIL"]);
        for c in &report.checks {
            let s = match c.status {
                Status::Pass => "pass",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            t.row(vec![c.name.clone(), s.to_owned(), c.detail.clone()]);
        }
        crate::context::out(&t.render());
        for c in &report.checks {
            let Some(remedy) = &c.remedy else { continue };
            crate::outln!(
                "\n{} ({}): {}",
                c.name,
                if c.status == Status::Fail {
                    "fail"
                } else {
                    "warn"
                },
                remedy
            );
        }
        if report.reboot_pending {
            // What enables it, from the IOMMU's status (the check's view does not carry it).
            let st: IommuStatusView = match b {
                Backend::Local(ctx) => (&ctx.host.iommu_status(root)?).into(),
                Backend::Remote(r) => r.client.get("/api/v1/host/iommu")?.view,
            };
            crate::outln!(
                "\nreboot pending: the IOMMU is enabled for the next boot ({}) but not in the running kernel; if it stays so after a reboot, enable VT-d / AMD-Vi in the BIOS",
                st.enabled_by.as_deref().unwrap_or("")
            );
        }
        crate::outln!(
            "\nVM passthrough: {}\ncontainers:     {}",
            if report.vm_ready {
                "ready"
            } else {
                "NOT ready"
            },
            if report.container_ready {
                "ready"
            } else {
                "NOT ready"
            }
        );
    }
    Ok(if report.vm_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn host_persist(
    ctx: &Context,
    udev: bool,
    root: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let default_root = ctx.host.default_install_root();
    let root = root.unwrap_or(&default_root);
    let exe = std::env::current_exe().context("cannot find the vfpool executable's path")?;
    let hook = if udev {
        BootHook::Udev
    } else {
        BootHook::Systemd
    };
    let report = ctx.engine()?.persist(hook, root, &exe)?;
    if ctx.json() {
        print_json(&PersistView::from(&report))?;
    } else {
        for n in &report.desired {
            crate::outln!(
                "{} ({}): {} VFs, autoprobe {}",
                n.name,
                n.pci,
                n.num_vfs,
                if n.autoprobe { "on" } else { "off" }
            );
        }
        crate::outln!(
            "recorded in {}",
            vfpool_engine::Ledger::path_in(&ctx.host.state).display()
        );
        crate::outln!("installed {}", report.installed.display());
        for r in &report.removed {
            crate::outln!("removed {}", r.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn host_apply(
    ctx: &Context,
    nic: Option<&str>,
    timeout: &str,
    keep_link: bool,
) -> anyhow::Result<ExitCode> {
    let timeout = crate::nic_cmd::parse_timeout(timeout)?;
    let out = ctx.engine()?.apply_boot(nic, timeout, keep_link)?;
    let mut failed = out.nics.failed.len();
    for f in &out.nics.failed {
        eprintln!("error: {}", vfpool_engine::chain(&f.error));
    }
    for a in &out.leases.actions {
        if let Some(e) = &a.error {
            failed += 1;
            eprintln!("error: lease {} on {} ({}): {e}", a.owner, a.vf_pci, a.pool);
        }
    }
    for e in &out.gc.errors {
        failed += 1;
        eprintln!("error: gc: {e}");
    }
    if ctx.json() {
        print_json(&ApplyView::from(&out))?;
    } else {
        if out.nics.changed.is_empty() && out.nics.failed.is_empty() {
            crate::outln!(
                "no VF counts recorded{}",
                match nic {
                    Some(n) => format!(" for {n}"),
                    None => String::new(),
                }
            );
        }
        for c in &out.nics.changed {
            crate::outln!(
                "{} ({}): {} VFs{}{}",
                c.nic,
                c.pci,
                c.num_vfs,
                if c.changed { "" } else { " (already)" },
                if c.link_brought_up {
                    "; PF link brought up"
                } else {
                    ""
                }
            );
        }
        for a in out.leases.actions.iter().filter(|a| a.error.is_none()) {
            let what = if a.action == vfpool_engine::ReapplyKind::Stale {
                "stale: its VF does not exist (`vfpool lease gc` removes it)"
            } else {
                "configuration re-applied"
            };
            crate::outln!("lease {} on {} ({}): {what}", a.owner, a.vf_pci, a.pool);
        }
        for a in &out.gc.actions {
            crate::outln!("gc: {} {} ({}): {}", a.action, a.vf_pci, a.owner, a.reason);
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn run_debug(ctx: &Context, cmd: DebugCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DebugCmd::SysfsManifest { nic } => {
            let inv = Inventory::scan(&ctx.host.fs)?;
            let nic = inv.find_sriov_pf(&nic)?;
            for line in manifest::manifest(&ctx.host.fs, nic)? {
                crate::outln!("{line}");
            }
        }
        DebugCmd::SimReboot => {
            let Some(sim) = &ctx.host.sim else {
                bail!("sim-reboot works only on the simulated host (--demo)");
            };
            sim.reboot()?;
        }
        DebugCmd::SimFault {
            nic,
            numvfs_errno,
            no_netdev,
        } => {
            let Some(sim) = &ctx.host.sim else {
                bail!("sim-fault works only on the simulated host (--demo)");
            };
            let inv = Inventory::scan(&ctx.host.fs)?;
            let pci = inv.find_sriov_pf(&nic)?.pci;
            if let Some(e) = numvfs_errno {
                if !["ENOMEM", "EBUSY", "EINVAL"].contains(&e.as_str()) {
                    bail!("invalid --numvfs-errno '{e}': ENOMEM, EBUSY or EINVAL");
                }
                sim.inject_numvfs_error(pci, &e)?;
            }
            if no_netdev {
                sim.inject_no_netdev(pci)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
