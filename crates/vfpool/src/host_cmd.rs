use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use vfpool_host::check::{self, Status};
use vfpool_host::persist::{self, Desired, DesiredNic};
use vfpool_host::{Inventory, manifest};

use crate::context::{Context, print_json};
use crate::table::Table;
use vfpool_engine::Ledger;

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
        /// The root of the file system to install into.
        #[arg(long, default_value = "/", value_name = "DIR")]
        root: PathBuf,
    },
    /// Brings every recorded NIC to its recorded VF count (what the boot unit runs).
    Apply {
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DebugCmd {
    /// Prints the normalized list of sysfs entries vfpool uses for a PF and its VFs.
    SysfsManifest { nic: String },
    /// Demo host only: makes the next sriov_numvfs write on NIC fail with ERRNO
    /// (ENOMEM, EBUSY, EINVAL), or its VFs never get a netdev (--no-netdev).
    SimFault {
        nic: String,
        #[arg(long, value_name = "ERRNO")]
        numvfs_errno: Option<String>,
        #[arg(long)]
        no_netdev: bool,
    },
    /// Demo host only: what a reboot does to SR-IOV (every PF back to 0 VFs, autoprobe on).
    SimReboot,
}

pub fn run(ctx: &Context, cmd: HostCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        HostCmd::Check => host_check(ctx),
        HostCmd::Persist { udev, root } => host_persist(ctx, udev, &root),
        HostCmd::Apply { timeout } => host_apply(ctx, timeout),
    }
}

fn host_check(ctx: &Context) -> anyhow::Result<ExitCode> {
    let report = check::run(&ctx.paths, &ctx.fs)?;
    if ctx.json() {
        print_json(&report)?;
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

fn host_persist(ctx: &Context, udev: bool, root: &std::path::Path) -> anyhow::Result<ExitCode> {
    let inv = Inventory::scan(&ctx.fs)?;
    let mut desired = Desired {
        version: 1,
        ..Desired::default()
    };
    for n in inv.nics.iter().filter(|n| n.num_vfs > 0) {
        desired.nics.insert(
            n.pci,
            DesiredNic {
                name: n.name.clone(),
                num_vfs: n.num_vfs,
                autoprobe: n.autoprobe.unwrap_or(true),
            },
        );
    }
    if desired.nics.is_empty() {
        bail!(
            "nothing to persist: no NIC has VFs (split one first with `vfpool nic split NIC --vfs N`)"
        );
    }
    desired.save(&ctx.state)?;
    let installed = if udev {
        persist::install_udev(root, &desired)?
    } else {
        let exe = std::env::current_exe().context("cannot find the vfpool executable's path")?;
        persist::install_systemd(root, &exe, &ctx.state)?
    };
    if ctx.json() {
        print_json(&serde_json::json!({ "desired": desired, "installed": installed }))?;
    } else {
        for (pci, n) in &desired.nics {
            crate::outln!(
                "{} ({pci}): {} VFs, autoprobe {}",
                n.name,
                n.num_vfs,
                if n.autoprobe { "on" } else { "off" }
            );
        }
        crate::outln!("recorded in {}", Desired::path(&ctx.state).display());
        crate::outln!("installed {}", installed.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn host_apply(ctx: &Context, timeout: u64) -> anyhow::Result<ExitCode> {
    let Some(desired) = Desired::load(&ctx.state)? else {
        bail!(
            "nothing to apply: {} does not exist (run `vfpool host persist` first)",
            Desired::path(&ctx.state).display()
        );
    };
    let opts = ctx.split_options(timeout);
    let applied = persist::apply(&ctx.fs, &desired, &opts)?;
    let mut failed = 0;
    let mut nics = Vec::new();
    for a in applied {
        match a.result {
            Ok(r) => {
                if !ctx.json() {
                    crate::outln!(
                        "{} ({}): {} VFs{}",
                        a.name,
                        a.pci,
                        r.num_vfs,
                        if r.changed { "" } else { " (already)" }
                    );
                }
                nics.push(serde_json::json!({"pci": a.pci, "name": a.name, "num_vfs": r.num_vfs, "changed": r.changed}));
            }
            Err(e) => {
                failed += 1;
                let e = format!("{:#}", anyhow::Error::from(e));
                eprintln!("error: {} ({}): {e}", a.name, a.pci);
                nics.push(serde_json::json!({"pci": a.pci, "name": a.name, "error": e}));
            }
        }
    }
    // The leases' configurations: re-created VFs come back with the kernel's defaults.
    let mut leases = Vec::new();
    if Ledger::path_in(&ctx.state).exists() {
        let report = ctx.engine()?.reapply()?;
        for a in &report.actions {
            match &a.error {
                Some(e) => {
                    failed += 1;
                    eprintln!("error: lease {} on {} ({}): {e}", a.owner, a.vf_pci, a.pool);
                }
                None if !ctx.json() => {
                    let what = if a.action == "stale" {
                        "stale: its VF does not exist (`vfpool lease gc` removes it)"
                    } else {
                        "configuration re-applied"
                    };
                    crate::outln!("lease {} on {} ({}): {what}", a.owner, a.vf_pci, a.pool);
                }
                None => {}
            }
        }
        leases = report.actions;
    }
    if ctx.json() {
        print_json(&serde_json::json!({ "nics": nics, "leases": leases }))?;
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
            let inv = Inventory::scan(&ctx.fs)?;
            let nic = inv.find_sriov_pf(&nic)?;
            for line in manifest::manifest(&ctx.fs, nic)? {
                crate::outln!("{line}");
            }
        }
        DebugCmd::SimReboot => {
            let Some(sim) = &ctx.sim else {
                bail!("sim-reboot works only on the simulated host (--demo)");
            };
            sim.reboot()?;
        }
        DebugCmd::SimFault {
            nic,
            numvfs_errno,
            no_netdev,
        } => {
            let Some(sim) = &ctx.sim else {
                bail!("sim-fault works only on the simulated host (--demo)");
            };
            let inv = Inventory::scan(&ctx.fs)?;
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
