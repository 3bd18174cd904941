use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use vfpool_host::persist::{Desired, DesiredNic};
use vfpool_host::split::{self, SplitOptions, SplitReport};
use vfpool_host::{Found, HostError, Inventory, Nic, Vf};
use vfpool_model::VfConfig;

use crate::context::{Context, print_json};
use crate::table::{Table, opt};

#[derive(Debug, Subcommand)]
pub enum NicCmd {
    /// Every network PCI function that is not a VF, with its SR-IOV state.
    List,
    /// One NIC (netdev name or PCI address) with its VFs.
    Show { nic: String },
    /// Splits NICs into VFs: `echo N > sriov_numvfs`, done safely.
    Split {
        /// NICs to split, by netdev name or PCI address; several split in parallel.
        #[arg(required = true)]
        nics: Vec<String>,
        /// How many VFs (1..=sriov_totalvfs).
        #[arg(long, value_name = "N")]
        vfs: String,
        /// Whether new VFs get their kernel driver at once (sriov_drivers_autoprobe).
        #[arg(long, value_parser = ["on", "off"])]
        autoprobe: Option<String>,
        /// Seconds to wait for the VFs and their netdevs.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// Change the count even when VFs are leased (their leases become stale).
        #[arg(long)]
        force: bool,
    },
    /// Removes every VF of the NICs (sriov_numvfs = 0).
    Restore {
        #[arg(required = true)]
        nics: Vec<String>,
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// Remove the VFs even when some are leased (their leases become stale).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Serialize)]
struct NicView<'a> {
    #[serde(flatten)]
    nic: &'a Nic,
    vfs: Vec<VfView<'a>>,
}

/// A VF as `nic show` presents it: what sysfs says, what the PF says (IFLA_VFINFO_LIST),
/// and who holds it.
#[derive(Serialize)]
struct VfView<'a> {
    #[serde(flatten)]
    vf: &'a Vf,
    /// The PF-side configuration; absent when the PF could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<VfConfig>,
    owner: Option<String>,
}

pub fn run(ctx: &Context, cmd: NicCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        NicCmd::List => list(ctx),
        NicCmd::Show { nic } => show(ctx, &nic),
        NicCmd::Split {
            nics,
            vfs,
            autoprobe,
            timeout,
            force,
        } => split_cmd(
            ctx,
            &nics,
            &vfs,
            autoprobe.as_deref().map(|a| a == "on"),
            timeout,
            force,
        ),
        NicCmd::Restore {
            nics,
            timeout,
            force,
        } => restore_cmd(ctx, &nics, timeout, force),
    }
}

fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut inv = Inventory::scan(&ctx.fs)?;
    crate::lease_cmd::subtract_leased(ctx, &mut inv)?;
    if ctx.json() {
        print_json(&inv.nics)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "NAME",
        "PCI",
        "DRIVER",
        "MODEL",
        "STATE",
        "VFS FREE/TOTAL",
        "LINK",
        "SPEED",
        "NUMA",
    ]);
    for n in &inv.nics {
        let vfs = if n.total_vfs == 0 {
            "-".to_owned()
        } else {
            format!("{}/{} (max {})", n.free_vfs, n.num_vfs, n.total_vfs)
        };
        t.row(vec![
            n.name.clone(),
            n.pci.to_string(),
            opt(&n.driver),
            n.model.clone(),
            n.state.to_string(),
            vfs,
            opt(&n.operstate),
            n.speed
                .map(|s| format!("{s}Mb/s"))
                .unwrap_or_else(|| "-".into()),
            opt(&n.numa_node),
        ]);
    }
    crate::context::out(&t.render());
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    let mut inv = Inventory::scan(&ctx.fs)?;
    crate::lease_cmd::subtract_leased(ctx, &mut inv)?;
    let nic = match inv.find(name)? {
        Found::Pf(n) => n,
        Found::Vf(pf, vf) => bail!(
            "'{name}' is VF {} ({}) of {}: show the PF with `vfpool nic show {}`",
            vf.index,
            vf.pci,
            pf.name,
            pf.name
        ),
    };
    let mut configs: HashMap<u16, VfConfig> = HashMap::new();
    if !nic.vfs.is_empty() {
        match ctx.netops().and_then(|n| Ok(n.vf_configs(&nic.name)?)) {
            Ok(list) => configs.extend(list),
            Err(e) => {
                tracing::warn!(pf = %nic.name, error = %format!("{e:#}"), "cannot read the VFs' configuration")
            }
        }
    }
    let owners = crate::lease_cmd::owners(ctx)?;
    let vfs: Vec<VfView<'_>> = nic
        .vfs
        .iter()
        .map(|vf| VfView {
            vf,
            config: configs.get(&vf.index).cloned(),
            owner: owners.get(&vf.pci).cloned(),
        })
        .collect();
    if ctx.json() {
        print_json(&NicView { nic, vfs })?;
        return Ok(ExitCode::SUCCESS);
    }
    let fields = [
        ("name", nic.name.clone()),
        ("pci", nic.pci.to_string()),
        (
            "model",
            format!(
                "{} {} [{}:{}]",
                nic.vendor, nic.model, nic.vendor_id, nic.device_id
            ),
        ),
        ("driver", opt(&nic.driver)),
        ("state", nic.state.to_string()),
        (
            "vfs",
            format!(
                "{} enabled, {} free, {} max",
                nic.num_vfs, nic.free_vfs, nic.total_vfs
            ),
        ),
        (
            "autoprobe",
            opt(&nic.autoprobe.map(|a| if a { "on" } else { "off" })),
        ),
        ("mac", opt(&nic.mac)),
        (
            "link",
            format!(
                "{} {}",
                opt(&nic.operstate),
                nic.speed.map(|s| format!("{s}Mb/s")).unwrap_or_default()
            ),
        ),
        ("mtu", opt(&nic.mtu)),
        ("numa node", opt(&nic.numa_node)),
        ("iommu group", opt(&nic.iommu_group)),
    ];
    for (k, v) in fields {
        crate::outln!("{k:<12} {}", v.trim_end());
    }
    if !nic.vfs.is_empty() {
        crate::outln!("");
        let mut t = Table::new(&[
            "VF",
            "PCI",
            "NETDEV",
            "DRIVER",
            "OWNER",
            "PF-SIDE MAC",
            "VLAN",
            "SPOOFCHK",
            "TRUST",
            "RATE",
            "IOMMU GROUP",
        ]);
        let on_off = |b: Option<bool>| opt(&b.map(|b| if b { "on" } else { "off" }));
        for v in &vfs {
            let (mac, vlan, spoof, trust, rate) = match &v.config {
                Some(c) => (
                    c.mac.to_string(),
                    match (c.vlan, c.qos) {
                        (0, _) => "-".to_owned(),
                        (vl, 0) => format!("{vl}"),
                        (vl, q) => format!("{vl} qos {q}"),
                    },
                    on_off(c.spoofchk),
                    on_off(c.trust),
                    match (c.min_tx_rate, c.max_tx_rate) {
                        (0, 0) => "-".to_owned(),
                        (min, max) => format!("{min}-{max}"),
                    },
                ),
                None => ("?".into(), "?".into(), "?".into(), "?".into(), "?".into()),
            };
            t.row(vec![
                v.vf.index.to_string(),
                v.vf.pci.to_string(),
                opt(&v.vf.netdev),
                opt(&v.vf.driver),
                opt(&v.owner),
                mac,
                vlan,
                spoof,
                trust,
                rate,
                opt(&v.vf.iommu_group),
            ]);
        }
        crate::context::out(&t.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// Keeps `desired.json` in step once persistence is on.
fn record(ctx: &Context, reports: &[SplitReport], autoprobe: bool) -> anyhow::Result<()> {
    let Some(mut d) = Desired::load(&ctx.state)? else {
        return Ok(());
    };
    for r in reports {
        d.nics.insert(
            r.pci,
            DesiredNic {
                name: r.nic.clone(),
                num_vfs: r.num_vfs,
                autoprobe,
            },
        );
    }
    d.save(&ctx.state)?;
    Ok(())
}

fn finish(
    ctx: &Context,
    results: Vec<Result<SplitReport, HostError>>,
    autoprobe: bool,
) -> anyhow::Result<ExitCode> {
    let mut ok = Vec::new();
    let mut failed = 0;
    for r in results {
        match r {
            Ok(rep) => ok.push(rep),
            Err(e) => {
                failed += 1;
                eprintln!("error: {:#}", anyhow::Error::from(e));
            }
        }
    }
    record(ctx, &ok, autoprobe)?;
    if ctx.json() {
        print_json(&ok)?;
    } else {
        for r in &ok {
            let what = if !r.changed {
                format!("already has {} VFs", r.num_vfs)
            } else if r.num_vfs == 0 {
                format!("restored: 0 VFs (was {})", r.previous)
            } else {
                format!("{} VFs (was {}) in {} ms", r.num_vfs, r.previous, r.millis)
            };
            crate::outln!("{} ({}): {what}", r.nic, r.pci);
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn split_cmd(
    ctx: &Context,
    names: &[String],
    vfs: &str,
    autoprobe: Option<bool>,
    timeout: u64,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let inv = Inventory::scan(&ctx.fs)?;
    // Check every NIC and count before touching any: nothing is half-done by bad input.
    let mut work = Vec::new();
    for name in names {
        let nic = inv.find_sriov_pf(name)?;
        let n = split::check_count(nic, vfs)?;
        if work.iter().any(|(w, _): &(Nic, u32)| w.pci == nic.pci) {
            bail!("NIC '{name}' ({}) is named twice", nic.pci);
        }
        work.push((nic.clone(), n));
    }
    // Any change of a non-zero count goes through 0: every VF of the NIC is destroyed.
    let changing: Vec<_> = work
        .iter()
        .filter(|(nic, n)| nic.num_vfs != 0 && nic.num_vfs != *n)
        .map(|(nic, _)| (nic.name.clone(), nic.pci))
        .collect();
    crate::lease_cmd::guard_leased(ctx, &changing, force)?;
    let opts = SplitOptions {
        autoprobe,
        ..ctx.split_options(timeout)
    };
    let mp = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} VFs")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bars: Vec<ProgressBar> = work
        .iter()
        .map(|(nic, n)| {
            let b = mp.add(ProgressBar::new(u64::from(*n)));
            b.set_style(style.clone());
            b.set_prefix(nic.name.clone());
            b
        })
        .collect();
    let results = split::split_many(&ctx.fs, &work, &opts, &|name, ready, _| {
        if let Some(i) = work.iter().position(|(n, _)| n.name == name) {
            bars[i].set_position(u64::from(ready));
        }
    });
    for b in &bars {
        b.finish_and_clear();
    }
    let probe =
        autoprobe.unwrap_or_else(|| work.first().and_then(|(n, _)| n.autoprobe).unwrap_or(true));
    finish(ctx, results, probe)
}

fn restore_cmd(
    ctx: &Context,
    names: &[String],
    timeout: u64,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let inv = Inventory::scan(&ctx.fs)?;
    let mut nics = Vec::new();
    for name in names {
        nics.push(inv.find_sriov_pf(name)?.clone());
    }
    let named: Vec<_> = nics.iter().map(|n| (n.name.clone(), n.pci)).collect();
    crate::lease_cmd::guard_leased(ctx, &named, force)?;
    let results = nics
        .iter()
        .map(|nic| split::restore(&ctx.fs, nic, Duration::from_secs(timeout)))
        .collect();
    finish(ctx, results, true)
}
