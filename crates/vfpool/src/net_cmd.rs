//! `vfpool l2 ...` and `vfpool l3 ...`: the networks VM NICs are on (engine: `vm.rs`).

use std::process::ExitCode;

use clap::Subcommand;
use hyper::Method;
use vfpool_daemon::api::net::{L2Body, L2Patch, L3Body};
use vfpool_engine::{L2Request, L2Type, L2View, L3Request, L3View, PoolDeleted};
use vfpool_model::parse_on_off;

use crate::client::seg;
use crate::context::{Backend, Remote, out, print_json};
use crate::table::{Table, opt};

#[derive(Debug, Subcommand)]
pub enum L2Cmd {
    /// Creates an L2 network on a physical NIC (VXLAN with --sriov is refused).
    Create {
        /// The L2's name: 1 to 63 letters, digits, '-', '_' or '.'.
        name: String,
        /// The physical NIC: a PF's netdev name or PCI address (its VFs serve VF NICs).
        #[arg(long, value_name = "NIC")]
        nic: String,
        /// The VLAN id (1..=4094; a vxlan L2's VNI, 1..=16777215).
        #[arg(long, value_name = "ID")]
        vlan: Option<u32>,
        /// novlan, vlan or vxlan (default: vlan with --vlan, else novlan).
        #[arg(long = "type", value_name = "novlan|vlan|vxlan")]
        l2_type: Option<String>,
        /// VF NICs on its L3 networks get VFs of the NIC.
        #[arg(long)]
        sriov: bool,
    },
    /// Sets an L2's SR-IOV flag (off is refused while a VM NIC on it is a VF NIC).
    Set {
        /// The L2's name.
        name: String,
        /// on or off.
        #[arg(long, value_name = "on|off")]
        sriov: String,
    },
    /// Every L2 network.
    List,
    /// One L2 network.
    Show {
        /// The L2's name.
        name: String,
    },
    /// Deletes an L2 network (refused while an L3 is on it).
    Delete {
        /// The L2's name.
        name: String,
    },
    /// The first seed's libvirt network for this L2 (`<forward mode='hostdev'
    /// managed='yes'>` with the L2's NIC as `<pf dev=.../>`), for those who keep libvirt's
    /// own VF pools (`virsh net-define`).
    LibvirtNetwork {
        /// The L2's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum L3Cmd {
    /// Creates an IPv4 L3 network on an L2 (it inherits the L2's SR-IOV flag).
    Create {
        /// The L3's name: 1 to 63 letters, digits, '-', '_' or '.'.
        name: String,
        /// The L2 it is on.
        #[arg(long, value_name = "L2")]
        l2: String,
        /// Its network, ADDRESS/PREFIX (192.168.10.0/24); must not overlap another L3 of the L2.
        #[arg(long, value_name = "CIDR")]
        cidr: String,
        /// The gateway, inside the CIDR (never handed out).
        #[arg(long, value_name = "IP")]
        gateway: String,
        /// The addresses handed out, FIRST-LAST inside the CIDR (default: every host address).
        #[arg(long, value_name = "FIRST-LAST")]
        range: Option<String>,
        /// A DNS server for the VMs.
        #[arg(long, value_name = "IP")]
        dns: Option<String>,
    },
    /// Every L3 network.
    List,
    /// One L3 network, and who holds each address handed out (VM NICs, pods).
    Show {
        /// The L3's name.
        name: String,
    },
    /// Deletes an L3 network (refused while a VM NIC is on it or a pod holds an address).
    Delete {
        /// The L3's name.
        name: String,
    },
    /// The VFs free for VF NICs on this L3 (its L2 NIC's), and how many.
    CheckVf {
        /// The L3's name.
        name: String,
    },
}

fn l2_table(list: &[L2View]) -> String {
    let mut t = Table::new(&["NAME", "NIC", "TYPE", "VLAN", "SRIOV", "L3"]);
    for l in list {
        t.row(vec![
            l.name.clone(),
            l.nic.clone(),
            l.l2_type.as_str().to_owned(),
            opt(&l.vlan),
            on_off(l.sriov),
            l.l3.join(","),
        ]);
    }
    t.render()
}

fn l3_table(list: &[L3View]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "L2",
        "NIC",
        "SRIOV",
        "CIDR",
        "GATEWAY",
        "RANGE",
        "DNS",
        "ALLOCATED",
    ]);
    for l in list {
        t.row(vec![
            l.name.clone(),
            l.l2.clone(),
            l.nic.clone(),
            on_off(l.sriov),
            l.cidr.clone(),
            l.gateway.to_string(),
            format!("{}-{}", l.range_first, l.range_last),
            opt(&l.dns),
            l.allocated.to_string(),
        ]);
    }
    t.render()
}

fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_owned()
}

/// `DELETE path` on the daemon.
fn delete(r: &Remote, path: &str) -> anyhow::Result<()> {
    r.client
        .call::<PoolDeleted, ()>(Method::DELETE, path, None)
        .map(drop)
}

pub fn run_l2(b: &Backend, cmd: L2Cmd) -> anyhow::Result<ExitCode> {
    let shown = match cmd {
        L2Cmd::Create {
            name,
            nic,
            vlan,
            l2_type,
            sriov,
        } => {
            let parsed = l2_type
                .as_deref()
                .map(|t| t.parse::<L2Type>())
                .transpose()?;
            match b {
                Backend::Local(ctx) => ctx.engine()?.l2_create(&L2Request {
                    name,
                    nic,
                    l2_type: parsed,
                    vlan,
                    sriov,
                })?,
                Backend::Remote(r) => {
                    r.client
                        .call(
                            Method::POST,
                            "/api/v1/l2",
                            Some(&L2Body {
                                name,
                                nic,
                                vlan,
                                l2_type,
                                sriov,
                            }),
                        )?
                        .view
                }
            }
        }
        L2Cmd::Set { name, sriov } => {
            let sriov = parse_on_off("sriov", &sriov)?;
            match b {
                Backend::Local(ctx) => ctx.engine()?.l2_set_sriov(&name, sriov)?,
                Backend::Remote(r) => {
                    r.client
                        .call(
                            Method::PATCH,
                            &format!("/api/v1/l2/{}", seg(&name)),
                            Some(&L2Patch { sriov }),
                        )?
                        .view
                }
            }
        }
        L2Cmd::Show { name } => match b {
            Backend::Local(ctx) => ctx.engine()?.l2_show(&name)?,
            Backend::Remote(r) => r.client.get(&format!("/api/v1/l2/{}", seg(&name)))?.view,
        },
        L2Cmd::LibvirtNetwork { name } => {
            out(&b
                .local("l2 libvirt-network")?
                .engine()?
                .l2_libvirt_network(&name)?);
            return Ok(ExitCode::SUCCESS);
        }
        L2Cmd::List => {
            let list: Vec<L2View> = match b {
                Backend::Local(ctx) => ctx.engine()?.l2_list()?,
                Backend::Remote(r) => r.client.get("/api/v1/l2")?.view,
            };
            if b.json() {
                print_json(&list)?;
            } else {
                out(&l2_table(&list));
            }
            return Ok(ExitCode::SUCCESS);
        }
        L2Cmd::Delete { name } => {
            match b {
                Backend::Local(ctx) => ctx.engine()?.l2_delete(&name)?,
                Backend::Remote(r) => delete(r, &format!("/api/v1/l2/{}", seg(&name)))?,
            }
            if b.json() {
                print_json(&PoolDeleted { deleted: name })?;
            } else {
                crate::outln!("l2 {name} deleted");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if b.json() {
        print_json(&shown)?;
    } else {
        out(&l2_table(&[shown]));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_l3(b: &Backend, cmd: L3Cmd) -> anyhow::Result<ExitCode> {
    let shown: L3View = match cmd {
        L3Cmd::Create {
            name,
            l2,
            cidr,
            gateway,
            range,
            dns,
        } => match b {
            Backend::Local(ctx) => ctx.engine()?.l3_create(&L3Request {
                name,
                l2,
                cidr,
                gateway,
                range,
                dns,
            })?,
            Backend::Remote(r) => {
                r.client
                    .call(
                        Method::POST,
                        "/api/v1/l3",
                        Some(&L3Body {
                            name,
                            l2,
                            cidr,
                            gateway,
                            range,
                            dns,
                        }),
                    )?
                    .view
            }
        },
        L3Cmd::Show { name } => {
            let shown: L3View = match b {
                Backend::Local(ctx) => ctx.engine()?.l3_show(&name)?,
                Backend::Remote(r) => r.client.get(&format!("/api/v1/l3/{}", seg(&name)))?.view,
            };
            if b.json() {
                print_json(&shown)?;
            } else {
                out(&l3_table(std::slice::from_ref(&shown)));
                // Who holds each address: VM NICs (vm/NAME/nicN) and pods (cni/...).
                let mut t = Table::new(&["ADDRESS", "OWNER"]);
                for h in &shown.addresses {
                    t.row(vec![h.address.to_string(), h.owner.clone()]);
                }
                out(&t.render());
            }
            return Ok(ExitCode::SUCCESS);
        }
        L3Cmd::List => {
            let list: Vec<L3View> = match b {
                Backend::Local(ctx) => ctx.engine()?.l3_list()?,
                Backend::Remote(r) => r.client.get("/api/v1/l3")?.view,
            };
            if b.json() {
                print_json(&list)?;
            } else {
                out(&l3_table(&list));
            }
            return Ok(ExitCode::SUCCESS);
        }
        L3Cmd::Delete { name } => {
            match b {
                Backend::Local(ctx) => ctx.engine()?.l3_delete(&name)?,
                Backend::Remote(r) => delete(r, &format!("/api/v1/l3/{}", seg(&name)))?,
            }
            if b.json() {
                print_json(&PoolDeleted { deleted: name })?;
            } else {
                crate::outln!("l3 {name} deleted");
            }
            return Ok(ExitCode::SUCCESS);
        }
        L3Cmd::CheckVf { name } => {
            let c = b.local("l3 check-vf")?.engine()?.l3_check_vf(&name)?;
            if b.json() {
                print_json(&c)?;
            } else {
                crate::outln!(
                    "l3 {}: {} free VFs on {} (pool {}; {} total, {} leased, {} unhealthy)",
                    c.l3,
                    c.free,
                    c.nic,
                    c.pool,
                    c.total,
                    c.leased,
                    c.unhealthy
                );
                for vf in &c.free_vfs {
                    crate::outln!("  {vf}");
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if b.json() {
        print_json(&shown)?;
    } else {
        out(&l3_table(&[shown]));
    }
    Ok(ExitCode::SUCCESS)
}
