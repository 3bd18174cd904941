use std::collections::HashMap;
use std::process::ExitCode;

use clap::Subcommand;
use hyper::Method;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use vfpool_daemon::api::nics::{RestoreBody, SplitBody};
use vfpool_engine::{
    NicChangeView, NicDetail, NicShow, NicView, NicsOutcome, Shown, SplitRequest, VfDetail,
};

use crate::client::seg;
use crate::context::{Backend, Context, Remote, print_json};
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

pub fn run(b: &Backend, cmd: NicCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        NicCmd::List => {
            let shown = match b {
                Backend::Local(ctx) => ctx.host.nics()?,
                Backend::Remote(r) => r.client.get("/api/v1/nics")?,
            };
            list(b.json(), &shown)
        }
        NicCmd::Show { nic } => {
            let shown = match b {
                Backend::Local(ctx) => ctx.host.nic(&nic)?,
                Backend::Remote(r) => r.client.get(&format!("/api/v1/nics/{}", seg(&nic)))?,
            };
            show(b.json(), &shown)
        }
        NicCmd::Split {
            nics,
            vfs,
            autoprobe,
            timeout,
            force,
            keep_link,
        } => {
            let req = SplitRequest {
                nics,
                vfs,
                autoprobe: autoprobe.as_deref().map(|a| a == "on"),
                timeout: parse_timeout(&timeout)?,
                force,
                keep_link,
            };
            let done = match b {
                Backend::Local(ctx) => Done::from(split_local(ctx, &req)?),
                Backend::Remote(r) => split_remote(r, &req)?,
            };
            finish(b.json(), &done)
        }
        NicCmd::Restore {
            nics,
            timeout: t,
            force,
        } => {
            let timeout = parse_timeout(&t)?;
            let done = match b {
                Backend::Local(ctx) => {
                    Done::from(ctx.engine()?.restore_nics(&nics, timeout, force)?)
                }
                Backend::Remote(r) => {
                    precheck(r, &nics, None)?;
                    each_nic(&nics, |nic| {
                        r.client.call(
                            Method::POST,
                            &format!("/api/v1/nics/{}/restore", seg(nic)),
                            Some(&RestoreBody {
                                force,
                                timeout: Some(timeout.as_secs()),
                            }),
                        )
                    })?
                }
            };
            finish(b.json(), &done)
        }
    }
}

/// What a split or restore did, as printed: the changes, the failures' messages, warnings.
pub struct Done {
    changed: Vec<NicChangeView>,
    failed: Vec<String>,
    warnings: Vec<String>,
}

impl From<NicsOutcome> for Done {
    fn from(out: NicsOutcome) -> Self {
        let mut warnings = out.warnings;
        if let Some(e) = &out.not_recorded {
            // The daemon sends the same line as a warning.
            warnings.push(format!(
                "the VF counts were changed but not recorded for the next boot ({}); run `vfpool host persist` again",
                vfpool_engine::chain(e)
            ));
        }
        Self {
            changed: out.changed.iter().map(Into::into).collect(),
            failed: out
                .failed
                .iter()
                .map(|f| vfpool_engine::chain(&f.error))
                .collect(),
            warnings,
        }
    }
}

/// One request per NIC, in order. A failure before any NIC changed is the command's error
/// (as the engine refuses before changing anything); after, it is that NIC's failure.
fn each_nic(
    nics: &[String],
    one: impl Fn(&str) -> anyhow::Result<Shown<NicChangeView>>,
) -> anyhow::Result<Done> {
    let mut done = Done {
        changed: Vec::new(),
        failed: Vec::new(),
        warnings: Vec::new(),
    };
    for nic in nics {
        match one(nic) {
            Ok(s) => {
                done.changed.push(s.view);
                done.warnings.extend(s.warnings);
            }
            Err(e) if done.changed.is_empty() && done.failed.is_empty() => return Err(e),
            Err(e) => done.failed.push(format!("{e:#}")),
        }
    }
    Ok(done)
}

/// What the engine checks of every named NIC before it touches any (so that a bad name
/// or count changes nothing, here as on the host): a PF with SR-IOV, named once, and the
/// count in its range. Returns each NIC's count.
fn precheck(r: &Remote, nics: &[String], vfs: Option<&str>) -> anyhow::Result<Vec<u64>> {
    use vfpool_host::HostError;
    let mut seen: Vec<vfpool_model::PciAddr> = Vec::new();
    let mut counts = Vec::new();
    for name in nics {
        let shown: Shown<NicShow> = r.client.get(&format!("/api/v1/nics/{}", seg(name)))?;
        let d = match shown.view {
            NicShow::Vf(v) => {
                return Err(HostError::IsVf {
                    nic: name.clone(),
                    vf_pci: v.vf.pci,
                    pf: v.pf,
                }
                .into());
            }
            NicShow::Pf(d) if d.nic.total_vfs == 0 => {
                return Err(HostError::NotSriov {
                    nic: name.clone(),
                    pci: d.nic.pci,
                }
                .into());
            }
            NicShow::Pf(d) => d,
        };
        if let Some(value) = vfs {
            // `split::check_count`.
            let n = value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n != 0 && *n <= d.nic.total_vfs)
                .ok_or_else(|| HostError::VfCountOutOfRange {
                    nic: d.nic.name.clone(),
                    value: value.to_owned(),
                    total: d.nic.total_vfs,
                })?;
            counts.push(u64::from(n));
        }
        if seen.contains(&d.nic.pci) {
            return Err(vfpool_engine::EngineError::NamedTwice {
                nic: name.clone(),
                pci: d.nic.pci,
            }
            .into());
        }
        seen.push(d.nic.pci);
    }
    Ok(counts)
}

fn split_remote(r: &Remote, req: &SplitRequest) -> anyhow::Result<Done> {
    let counts = precheck(r, &req.nics, Some(&req.vfs))?;
    let vfs: std::collections::HashMap<&str, u64> =
        req.nics.iter().map(String::as_str).zip(counts).collect();
    each_nic(&req.nics, |nic| {
        r.client.call(
            Method::POST,
            &format!("/api/v1/nics/{}/split", seg(nic)),
            Some(&SplitBody {
                vfs: vfs.get(nic).copied().unwrap_or_default(),
                autoprobe: req.autoprobe,
                force: req.force,
                keep_link: req.keep_link,
                timeout: Some(req.timeout.as_secs()),
            }),
        )
    })
}

/// Prints a view's warnings on stderr (the view itself is still right, only less complete).
pub fn warn<T>(shown: &Shown<T>) {
    for w in &shown.warnings {
        eprintln!("warning: {w}");
    }
}

fn list(json: bool, shown: &Shown<Vec<NicView>>) -> anyhow::Result<ExitCode> {
    warn(shown);
    if json {
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

fn show(json: bool, shown: &Shown<NicShow>) -> anyhow::Result<ExitCode> {
    warn(shown);
    if json {
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

/// Prints what a split or restore did; failures on stderr. Exit 1 if any failed.
fn finish(json: bool, out: &Done) -> anyhow::Result<ExitCode> {
    for f in &out.failed {
        eprintln!("error: {f}");
    }
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    if json {
        print_json(&out.changed)?;
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

fn split_local(ctx: &Context, req: &SplitRequest) -> anyhow::Result<NicsOutcome> {
    let mut engine = ctx.engine()?;
    let mp = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} VFs")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bars: std::sync::Mutex<HashMap<String, ProgressBar>> = Default::default();
    let out = engine.split_nics(req, &|name, ready, total| {
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
    Ok(out)
}
