//! `vfpool lease ...`: take a VF from a pool, give it back, clean up after the dead.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use hyper::Method;
use vfpool_daemon::api::leases::AcquireBody;
use vfpool_engine::view::LeaseStateView;
use vfpool_engine::{AcquireInput, AcquireRequest, EngineError, GcView, LeaseView, ReleaseTarget};
use vfpool_model::{InvalidValue, PciAddr, parse_on_off};

use crate::client::owner_path;
use crate::context::{Backend, out, print_json};
use crate::table::{Table, opt};

#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// Leases a free VF of a pool to an owner and configures it (one lease per owner).
    Acquire(Box<AcquireArgs>),
    /// Releases OWNER's lease (or the lease on --vf) and restores its VF.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["owner", "vf"])))]
    Release {
        /// Whose lease to release (as given to `lease acquire --owner`).
        owner: Option<String>,
        /// Release the lease on this VF instead, by PCI address (0000:03:10.0).
        #[arg(long, value_name = "PCI")]
        vf: Option<String>,
    },
    /// Every lease, with its pool, VF and state.
    List,
    /// Finishes interrupted acquires and releases, releases leases whose owner is gone,
    /// removes leases on VFs that no longer exist.
    Gc,
}

#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// The pool to take a VF from (`pool create NAME`).
    #[arg(long, value_name = "NAME")]
    pool: String,
    /// Who holds the lease: a container id, a VM name, a person (1..=256 visible characters).
    #[arg(long)]
    owner: String,
    /// What the owner is: container, vm or manual; gc checks a container's --netns.
    #[arg(long, default_value = "manual", value_name = "container|vm|manual")]
    owner_kind: String,
    /// This VF of the pool (PCI address, 0000:03:10.0) rather than the policy's choice.
    #[arg(long, value_name = "PCI")]
    vf: Option<String>,
    /// The VF's MAC address, set on the PF side (unicast, 02:00:00:00:00:01).
    #[arg(long, value_name = "MAC")]
    mac: Option<String>,
    /// Port VLAN that the PF tags and strips, 0..=4094 (0: none).
    #[arg(long, value_name = "0..=4094")]
    vlan: Option<String>,
    /// 802.1p priority of the port VLAN, 0..=7 (needs --vlan).
    #[arg(long, value_name = "0..=7")]
    qos: Option<String>,
    /// The port VLAN's protocol, 802.1q (default) or 802.1ad (needs --vlan).
    #[arg(long, value_name = "802.1q|802.1ad")]
    vlan_proto: Option<String>,
    /// MAC spoof checking on the PF side: on or off.
    #[arg(long, value_name = "on|off")]
    spoofchk: Option<String>,
    /// Trusted VF (may change its MAC, enter promiscuous mode): on or off.
    #[arg(long, value_name = "on|off")]
    trust: Option<String>,
    /// The VF's link: auto (follows the PF), enable or disable.
    #[arg(long, value_name = "auto|enable|disable")]
    link_state: Option<String>,
    /// Minimum TX rate in Mbit/s, 0..=4294967295 (0: none; at most --max-rate).
    #[arg(long, value_name = "MBPS")]
    min_rate: Option<String>,
    /// Maximum TX rate in Mbit/s, 0..=4294967295 (0: no limit; up to the link speed).
    #[arg(long, value_name = "MBPS")]
    max_rate: Option<String>,
    /// MTU of the VF netdev in bytes, 68 up to the PF driver's maximum (9000 for jumbo).
    #[arg(long, value_name = "BYTES")]
    mtu: Option<String>,
    /// The VF's driver: netdevice (the kernel's VF driver, a netdev) or vfio-pci (for a VM).
    #[arg(long, value_name = "netdevice|vfio-pci")]
    driver: Option<String>,
    /// Prefer a VF on this NUMA node (0, 1, ...); another node when it has none free.
    #[arg(long, value_name = "NODE")]
    numa: Option<String>,
    /// The container's network namespace (/run/netns/NAME); `lease gc` releases the lease
    /// once it is gone. Only with --owner-kind container.
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,
}

impl AcquireArgs {
    /// The engine parses the options (the REST API's body goes the same way).
    fn request(&self) -> Result<AcquireRequest, InvalidValue> {
        AcquireInput {
            pool: self.pool.clone(),
            owner: self.owner.clone(),
            owner_kind: Some(self.owner_kind.clone()),
            vf: self.vf.clone(),
            mac: self.mac.clone(),
            vlan: self.vlan.clone(),
            qos: self.qos.clone(),
            vlan_proto: self.vlan_proto.clone(),
            spoofchk: self.spoofchk.clone(),
            trust: self.trust.clone(),
            link_state: self.link_state.clone(),
            min_rate: self.min_rate.clone(),
            max_rate: self.max_rate.clone(),
            mtu: self.mtu.clone(),
            driver: self.driver.clone(),
            numa: self.numa.clone(),
            netns: self.netns.clone(),
        }
        .request()
    }
}

impl AcquireArgs {
    /// The API's body: the options checked here first (the same one-line errors as on the
    /// host), then sent as the daemon takes them.
    fn body(&self) -> anyhow::Result<AcquireBody> {
        self.request()?;
        let num = |v: &Option<String>| v.as_deref().and_then(|v| v.trim().parse::<u64>().ok());
        let flag = |field: &'static str, v: &Option<String>| {
            v.as_deref().map(|v| parse_on_off(field, v)).transpose()
        };
        Ok(AcquireBody {
            pool: self.pool.clone(),
            owner: self.owner.clone(),
            owner_kind: Some(self.owner_kind.clone()),
            vf: self.vf.clone(),
            mac: self.mac.clone(),
            vlan: num(&self.vlan),
            qos: num(&self.qos),
            vlan_proto: self.vlan_proto.clone(),
            spoofchk: flag("spoofchk", &self.spoofchk)?,
            trust: flag("trust", &self.trust)?,
            link_state: self.link_state.clone(),
            min_rate: num(&self.min_rate),
            max_rate: num(&self.max_rate),
            mtu: num(&self.mtu),
            driver: self.driver.clone(),
            numa: num(&self.numa),
            netns: self.netns.as_ref().map(|p| p.display().to_string()),
        })
    }
}

pub fn run(b: &Backend, cmd: LeaseCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        LeaseCmd::Acquire(args) => {
            let lease: LeaseView = match b {
                Backend::Local(ctx) => {
                    let req = args.request()?;
                    (&ctx.engine()?.acquire(&req)?).into()
                }
                Backend::Remote(r) => {
                    r.client
                        .call(Method::POST, "/api/v1/leases", Some(&args.body()?))?
                        .view
                }
            };
            if b.json() {
                print_json(&lease)?;
            } else {
                show(&lease);
            }
        }
        LeaseCmd::Release { owner, vf } => {
            let target = match (owner, vf) {
                (Some(o), None) => ReleaseTarget::Owner(o),
                (None, Some(v)) => ReleaseTarget::Vf(v.parse::<PciAddr>()?),
                // clap requires exactly one of them.
                _ => bail!("give an OWNER or --vf PCI (one of them)"),
            };
            let lease: LeaseView = match b {
                Backend::Local(ctx) => LeaseView::released(&ctx.engine()?.release(&target)?),
                Backend::Remote(r) => {
                    let owner = match target {
                        ReleaseTarget::Owner(o) => o,
                        ReleaseTarget::Vf(vf) => {
                            let all: Vec<LeaseView> = r.client.get("/api/v1/leases")?.view;
                            all.into_iter()
                                .find(|l| l.vf_pci == vf)
                                .map(|l| l.owner)
                                .ok_or(EngineError::VfNotLeased { vf })?
                        }
                    };
                    r.client
                        .call::<_, ()>(
                            Method::DELETE,
                            &format!("/api/v1/leases/{}", owner_path(&owner)),
                            None,
                        )?
                        .view
                }
            };
            if b.json() {
                print_json(&lease)?;
            } else {
                crate::outln!(
                    "released {} ({} vf {}) from {}",
                    lease.vf_pci,
                    lease.pf,
                    lease.vf_index,
                    lease.owner
                );
            }
        }
        LeaseCmd::List => {
            let leases: Vec<LeaseView> = match b {
                Backend::Local(ctx) => ctx.engine()?.leases()?.iter().map(Into::into).collect(),
                Backend::Remote(r) => r.client.get("/api/v1/leases")?.view,
            };
            if b.json() {
                print_json(&leases)?;
            } else {
                let mut t = Table::new(&[
                    "OWNER", "KIND", "POOL", "VF", "PF", "INDEX", "NETDEV", "STATE",
                ]);
                for l in &leases {
                    t.row(vec![
                        l.owner.clone(),
                        l.owner_kind.as_str().into(),
                        l.pool.clone(),
                        l.vf_pci.to_string(),
                        l.pf.clone(),
                        l.vf_index.to_string(),
                        opt(&l.netdev),
                        state(l.state).into(),
                    ]);
                }
                out(&t.render());
            }
        }
        LeaseCmd::Gc => {
            let rep: GcView = match b {
                Backend::Local(ctx) => (&ctx.engine()?.gc()?).into(),
                Backend::Remote(r) => {
                    r.client
                        .call::<_, ()>(Method::POST, "/api/v1/gc", None)?
                        .view
                }
            };
            if b.json() {
                print_json(&rep)?;
            } else {
                for a in &rep.actions {
                    crate::outln!(
                        "{} {} ({}): {}: {}",
                        a.action,
                        a.vf_pci,
                        a.owner,
                        a.pool,
                        a.reason
                    );
                }
                for a in &rep.addresses_freed {
                    crate::outln!(
                        "freed address {} on {} ({}): its lease is gone",
                        a.address,
                        a.l3,
                        a.owner
                    );
                }
                crate::outln!(
                    "{} done, {} kept, {} in progress elsewhere, {} failed",
                    rep.actions.len(),
                    rep.kept,
                    rep.in_progress,
                    rep.errors.len()
                );
            }
            for e in &rep.errors {
                eprintln!("error: {e}");
            }
            if !rep.errors.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A lease's state as `lease list` shows it (its JSON spelling).
fn state(s: LeaseStateView) -> &'static str {
    match s {
        LeaseStateView::Acquiring => "acquiring",
        LeaseStateView::Active => "active",
        LeaseStateView::Releasing => "releasing",
        LeaseStateView::Stale => "stale",
        LeaseStateView::Released => "released",
    }
}

fn show(l: &LeaseView) {
    let fields = [
        ("owner", format!("{} ({})", l.owner, l.owner_kind.as_str())),
        ("pool", l.pool.clone()),
        ("vf", format!("{} ({} vf {})", l.vf_pci, l.pf, l.vf_index)),
        ("netdev", opt(&l.netdev)),
        ("state", state(l.state).into()),
        (
            "applied",
            serde_json::to_string(&l.applied).unwrap_or_default(),
        ),
    ];
    for (k, v) in fields {
        crate::outln!("{k:<8} {v}");
    }
}
