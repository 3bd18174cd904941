use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use vfpool_engine::{ApplyView, BootHook, CheckView, DesiredView, PersistView};
use vfpool_host::check::{self, Status};
use vfpool_host::{Inventory, manifest};

use crate::context::{Context, print_json};
use crate::table::Table;

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// Is the host ready for VFs in VMs (IOMMU, interrupt remapping, vfio-pci) and in
    /// containers? Exit status 0 only when ready for VMs.
    Check,
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

pub fn run(ctx: &Context, cmd: HostCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        HostCmd::Check => host_check(ctx),
        HostCmd::Persist { udev, root } => host_persist(ctx, udev, root.as_deref()),
        HostCmd::Desired => {
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
        } => host_apply(ctx, nic.as_deref(), &timeout, keep_link),
    }
}

fn host_check(ctx: &Context) -> anyhow::Result<ExitCode> {
    let report = check::run(&ctx.host.paths, &ctx.host.fs)?;
    if ctx.json() {
        print_json(&CheckView::from(&report))?;
    } else {
        let mut t = Table::new(&["CHECK", "STATUS", "DETAIL"]);
        for c in &report.checks {
            let s = match c.status {
                Status::Pass => "pass",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            t.row(vec![c.name.to_owned(), s.to_owned(), c.detail.clone()]);
        }
        crate::context::out(&t.render());
        for c in report.checks.iter().filter(|c| !c.remedy.is_empty()) {
            crate::outln!(
                "\n{} ({}): {}",
                c.name,
                if c.status == Status::Fail {
                    "fail"
                } else {
                    "warn"
                },
                c.remedy
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
