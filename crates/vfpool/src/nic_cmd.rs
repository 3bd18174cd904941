use std::collections::HashMap;
use std::process::ExitCode;

use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use vfpool_engine::{
    NicChangeView, NicDetail, NicShow, NicsOutcome, Shown, SplitRequest, VfDetail,
};

use crate::context::{Context, print_json};
use crate::table::{Table, opt};

#[derive(Debug, Subcommand)]
pub enum NicCmd {
    /// Every network PCI function that is not a VF, with its SR-IOV state.
    List,
    /// One NIC with its VFs (who holds each, its PF-side configuration), or one VF.
    Show {
        /// A PF or a VF, by netdev name (eno49, eno49v0) or PCI address (0000:03:00.0).
        nic: String,
    },
    /// Splits NICs into VFs: `echo N > sriov_numvfs`, done safely.
    Split {
        /// NICs to split, by netdev name or PCI address; several split in parallel.
        #[arg(required = true)]
        nics: Vec<String>,
        /// How many VFs (1..=sriov_totalvfs).
        #[arg(long, value_name = "N")]
        vfs: String,
        /// Whether new VFs get their kernel driver at once (sriov_drivers_autoprobe): on or
        /// off (default: as the NIC has it).
        #[arg(long, value_parser = ["on", "off"], value_name = "on|off")]
        autoprobe: Option<String>,
        /// Seconds to wait for the VFs and their netdevs (1..=86400).
        #[arg(long, default_value = "180", value_name = "SECONDS")]
        timeout: String,
        /// Change the count even when VFs are leased (their leases become stale).
        #[arg(long)]
        force: bool,
        /// Leave the PF's link as it is (by default a PF that is down is brought up: on igb
        /// and ixgbe a VF carries nothing while its PF is down).
        #[arg(long)]
        keep_link: bool,
    },
    /// Removes every VF of the NICs (sriov_numvfs = 0).
    Restore {
        /// NICs to restore, by netdev name or PCI address; several restore in parallel.
        #[arg(required = true)]
        nics: Vec<String>,
        /// Seconds to wait for the VFs to go (1..=86400).
        #[arg(long, default_value = "180", value_name = "SECONDS")]
        timeout: String,
        /// Remove the VFs even when some are leased (their leases become stale).
        #[arg(long)]
        force: bool,
    },
}

pub use vfpool_engine::parse_timeout;

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
            keep_link,
        } => split_cmd(
            ctx,
            SplitRequest {
                nics,
                vfs,
                autoprobe: autoprobe.as_deref().map(|a| a == "on"),
                timeout: parse_timeout(&timeout)?,
                force,
                keep_link,
            },
        ),
        NicCmd::Restore {
            nics,
            timeout: t,
            force,
        } => {
            let out = ctx
                .engine()?
                .restore_nics(&nics, parse_timeout(&t)?, force)?;
            finish(ctx, &out)
        }
    }
}

/// Prints a view's warnings on stderr (the view itself is still right, only less complete).
pub fn warn<T>(shown: &Shown<T>) {
    for w in &shown.warnings {
        eprintln!("warning: {w}");
    }
}

fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let shown = ctx.host.nics()?;
    warn(&shown);
    if ctx.json() {
        print_json(&shown.view)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The BOND column only on a host with a bonded PF.
    let bonded = shown.view.iter().any(|n| n.bond.is_some());
    let mut head = vec![
        "NAME",
        "PCI",
        "DRIVER",
        "MODEL",
        "STATE",
        "VFS FREE/TOTAL",
        "LINK",
        "SPEED",
        "NUMA",
    ];
    if bonded {
        head.push("BOND");
    }
    let mut t = Table::new(&head);
    for n in &shown.view {
        let vfs = if n.total_vfs == 0 {
            "-".to_owned()
        } else {
            format!("{}/{} (max {})", n.free_vfs, n.num_vfs, n.total_vfs)
        };
        let mut row = vec![
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
        ];
        if bonded {
            row.push(opt(&n.bond));
        }
        t.row(row);
    }
    crate::context::out(&t.render());
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Context, name: &str) -> anyhow::Result<ExitCode> {
    let shown = ctx.host.nic(name)?;
    warn(&shown);
    if ctx.json() {
        print_json(&shown.view)?;
        return Ok(ExitCode::SUCCESS);
    }
    match &shown.view {
        NicShow::Pf(d) => show_pf(d),
        NicShow::Vf(v) => show_vf(v),
    }
    Ok(ExitCode::SUCCESS)
}

fn show_pf(d: &NicDetail) {
    let nic = &d.nic;
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
    if let Some(b) = &nic.bond {
        crate::outln!(
            "{:<12} member of {b}: {}",
            "bond",
            vfpool_host::check::BOND_EFFECT
        );
    }
    if d.vfs.is_empty() {
        return;
    }
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
    for v in &d.vfs {
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
            v.index.to_string(),
            v.pci.to_string(),
            opt(&v.netdev),
            opt(&v.driver),
            opt(&v.owner),
            mac,
            vlan,
            spoof,
            trust,
            rate,
            opt(&v.iommu_group),
        ]);
    }
    crate::context::out(&t.render());
}

/// A VF named to `nic show`: what it is, whose it is, and how its PF configures it.
fn show_vf(d: &VfDetail) {
    let vf = &d.vf;
    let fields = [
        ("name", d.name.clone()),
        ("pci", vf.pci.to_string()),
        ("state", "vf".to_owned()),
        ("pf", format!("{} ({}) vf {}", d.pf, d.pf_pci, vf.index)),
        ("driver", opt(&vf.driver)),
        ("netdev", opt(&vf.netdev)),
        ("mac", opt(&vf.mac)),
        ("iommu group", opt(&vf.iommu_group)),
        ("owner", opt(&vf.owner)),
        (
            "pf side",
            vf.config
                .as_ref()
                .map(|c| serde_json::to_string(c).unwrap_or_default())
                .unwrap_or_else(|| "-".into()),
        ),
    ];
    for (k, val) in fields {
        crate::outln!("{k:<12} {val}");
    }
}

/// Prints what a split, restore or apply did; failures on stderr. Exit 1 if any failed.
pub fn finish(ctx: &Context, out: &NicsOutcome) -> anyhow::Result<ExitCode> {
    for f in &out.failed {
        eprintln!("error: {}", vfpool_engine::chain(&f.error));
    }
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(e) = &out.not_recorded {
        eprintln!(
            "warning: the VF counts were changed but not recorded for the next boot ({}); run `vfpool host persist` again",
            vfpool_engine::chain(e)
        );
    }
    if ctx.json() {
        let changed: Vec<NicChangeView> = out.changed.iter().map(Into::into).collect();
        print_json(&changed)?;
    } else {
        for r in &out.changed {
            let what = if !r.changed {
                format!("already has {} VFs", r.num_vfs)
            } else if r.num_vfs == 0 {
                format!("restored: 0 VFs (was {})", r.previous)
            } else {
                format!("{} VFs (was {}) in {} ms", r.num_vfs, r.previous, r.millis)
            };
            let up = if r.link_brought_up {
                "; PF link brought up"
            } else {
                ""
            };
            let stale = if r.stale_leases > 0 {
                format!(
                    "; {} leases made stale (`vfpool lease gc` removes them)",
                    r.stale_leases
                )
            } else {
                String::new()
            };
            crate::outln!("{} ({}): {what}{up}{stale}", r.nic, r.pci);
        }
    }
    Ok(if out.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn split_cmd(ctx: &Context, req: SplitRequest) -> anyhow::Result<ExitCode> {
    let mut engine = ctx.engine()?;
    let mp = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} VFs")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bars: std::sync::Mutex<HashMap<String, ProgressBar>> = Default::default();
    let out = engine.split_nics(&req, &|name, ready, total| {
        let Ok(mut bars) = bars.lock() else { return };
        let b = bars.entry(name.to_owned()).or_insert_with(|| {
            let b = mp.add(ProgressBar::new(u64::from(total)));
            b.set_style(style.clone());
            b.set_prefix(name.to_owned());
            b
        });
        b.set_position(u64::from(ready));
    })?;
    if let Ok(bars) = bars.lock() {
        for b in bars.values() {
            b.finish_and_clear();
        }
    }
    finish(ctx, &out)
}
