//! `vfpool pool ...`: named sets of VFs.

use std::process::ExitCode;

use clap::Subcommand;
use hyper::Method;
use vfpool_daemon::api::pools::PoolBody;
use vfpool_engine::{Policy, PoolDeleted, PoolDetail, PoolSelector, PoolView};

use crate::client::seg;
use crate::context::{Backend, out, print_json};
use crate::table::{Table, opt};

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Creates a pool. Selectors of the same kind are alternatives (OR); different kinds
    /// must all match (AND). A VF belongs to at most one pool.
    Create {
        /// The pool's name: 1 to 63 letters, digits, '.', '_' or '-' (not first).
        name: String,
        /// `eno49`, `eno49#0-3,6`, `0000:03:00.0#0-1`, `vendor=8086`, `device=1520`,
        /// `driver=igb`, `numa=0`, `link=ether`; repeat or give several.
        #[arg(long = "select", required = true, num_args = 1.., value_name = "SELECTOR")]
        select: Vec<String>,
        /// How a free VF is picked: first-fit, spread (across PFs), pack (onto the fullest PF).
        #[arg(
            long,
            default_value = "first-fit",
            value_name = "first-fit|spread|pack"
        )]
        policy: String,
    },
    /// Every pool with its total, free, leased and unhealthy VFs.
    List,
    /// One pool and each of its VFs: free, leased (by whom) or unhealthy (why).
    Show {
        /// The pool's name.
        name: String,
    },
    /// Deletes a pool (refused while any of its VFs is leased).
    Delete {
        /// The pool's name.
        name: String,
    },
}

pub fn run(b: &Backend, cmd: PoolCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PoolCmd::Create {
            name,
            select,
            policy,
        } => {
            let policy: Policy = policy.parse()?;
            let selectors = select
                .iter()
                .map(|s| s.parse::<PoolSelector>())
                .collect::<Result<Vec<_>, _>>()?;
            let st: PoolView = match b {
                Backend::Local(ctx) => {
                    (&ctx.engine()?.pool_create(&name, selectors, policy)?).into()
                }
                Backend::Remote(r) => {
                    r.client
                        .call(
                            Method::POST,
                            "/api/v1/pools",
                            Some(&PoolBody {
                                name,
                                select,
                                policy: Some(policy.to_string()),
                            }),
                        )?
                        .view
                }
            };
            if b.json() {
                print_json(&st)?;
            } else {
                crate::outln!(
                    "pool {} created: {} VFs ({} free), policy {}",
                    st.name,
                    st.total,
                    st.free,
                    st.policy
                );
            }
        }
        PoolCmd::List => {
            let list: Vec<PoolView> = match b {
                Backend::Local(ctx) => ctx.engine()?.pool_list()?.iter().map(Into::into).collect(),
                Backend::Remote(r) => r.client.get("/api/v1/pools")?.view,
            };
            if b.json() {
                print_json(&list)?;
            } else {
                let mut t = Table::new(&[
                    "NAME",
                    "POLICY",
                    "TOTAL",
                    "FREE",
                    "LEASED",
                    "UNHEALTHY",
                    "SELECTORS",
                ]);
                for p in &list {
                    t.row(vec![
                        p.name.clone(),
                        p.policy.to_string(),
                        p.total.to_string(),
                        p.free.to_string(),
                        p.leased.to_string(),
                        p.unhealthy.to_string(),
                        p.selectors.join(" "),
                    ]);
                }
                out(&t.render());
            }
        }
        PoolCmd::Show { name } => {
            let d: PoolDetail = match b {
                Backend::Local(ctx) => {
                    let (status, vfs) = ctx.engine()?.pool_show(&name)?;
                    PoolDetail::new(&status, &vfs)
                }
                Backend::Remote(r) => r.client.get(&format!("/api/v1/pools/{}", seg(&name)))?.view,
            };
            if b.json() {
                print_json(&d)?;
            } else {
                let status = &d.pool;
                crate::outln!(
                    "pool {}: {} total, {} free, {} leased, {}; policy {}; select {}",
                    status.name,
                    status.total,
                    status.free,
                    status.leased,
                    unhealthy_text(status),
                    status.policy,
                    status.selectors.join(" ")
                );
                let mut t = Table::new(&[
                    "VF",
                    "PF",
                    "INDEX",
                    "NETDEV",
                    "DRIVER",
                    "NUMA",
                    "STATE",
                    "OWNER/REASON",
                ]);
                for v in &d.vfs {
                    t.row(vec![
                        v.vf_pci.to_string(),
                        v.pf.clone(),
                        v.vf_index.to_string(),
                        opt(&v.netdev),
                        opt(&v.driver),
                        opt(&v.numa_node),
                        v.state.to_string(),
                        v.owner.clone().or(v.reason.clone()).unwrap_or_default(),
                    ]);
                }
                out(&t.render());
            }
        }
        PoolCmd::Delete { name } => {
            match b {
                Backend::Local(ctx) => ctx.engine()?.pool_delete(&name)?,
                Backend::Remote(r) => {
                    r.client.call::<PoolDeleted, ()>(
                        Method::DELETE,
                        &format!("/api/v1/pools/{}", seg(&name)),
                        None,
                    )?;
                }
            }
            if b.json() {
                print_json(&PoolDeleted {
                    deleted: name.clone(),
                })?;
            } else {
                crate::outln!("pool {name} deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `3 unhealthy: 2 × no-netdev; 1 × ...`, as the engine's `PoolStatus::unhealthy_text`.
fn unhealthy_text(p: &PoolView) -> String {
    if p.unhealthy_reasons.is_empty() {
        return format!("{} unhealthy", p.unhealthy);
    }
    let why = p
        .unhealthy_reasons
        .iter()
        .map(|(r, n)| format!("{n} × {r}"))
        .collect::<Vec<_>>()
        .join("; ");
    format!("{} unhealthy: {why}", p.unhealthy)
}
