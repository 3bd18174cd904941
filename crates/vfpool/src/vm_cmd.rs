//! `vfpool vm ...`: VMs, their NICs and their life cycle over leases (engine: `vm.rs`).

use std::process::ExitCode;

use clap::Subcommand;
use hyper::Method;
use vfpool_daemon::api::vms::{VmBody, VmNicBody, VmNicPatch};
use vfpool_engine::{NicType, PoolDeleted, VmNicSpec, VmResources, VmView, parse_nic_ref};

use crate::client::seg;
use crate::context::{Backend, Remote, out, print_json};
use crate::table::{Table, opt};

#[derive(Debug, Subcommand)]
pub enum VmCmd {
    /// Creates a stopped VM with its NICs.
    Create {
        /// The VM's name: 1 to 63 letters, digits, '-', '_' or '.'.
        name: String,
        /// A NIC, `l3=L3[,sriov][,mac=MAC]` (sriov: a VF NIC, on an SR-IOV L3 only; the
        /// MAC is generated, stable and locally administered, when not given); repeat.
        #[arg(long = "nic", value_name = "l3=L3[,sriov][,mac=MAC]")]
        nics: Vec<String>,
        /// Memory in MiB, 64 to 4194304 (default 1024).
        #[arg(long, value_name = "MiB")]
        memory: Option<String>,
        /// Virtual CPUs, 1 to 4096 (default 1).
        #[arg(long, value_name = "N")]
        vcpus: Option<String>,
    },
    /// Starts a VM: a VF for each VF NIC (its MAC, the L2's VLAN, vfio-pci) and an address
    /// for each NIC, all or nothing.
    Start {
        /// The VM's name.
        name: String,
        /// Then define and start its domain through libvirt at URI (qemu:///system); when
        /// libvirt fails, the VFs and addresses are given back. Needs a vfpool built with
        /// the `libvirt` feature.
        #[arg(long, value_name = "URI")]
        libvirt: Option<String>,
    },
    /// Stops a VM: its VFs and addresses given back.
    Stop {
        /// The VM's name.
        name: String,
        /// First destroy its domain through libvirt at URI (and undefine it when `vm start
        /// --libvirt` defined it). Needs a vfpool built with the `libvirt` feature.
        #[arg(long, value_name = "URI")]
        libvirt: Option<String>,
    },
    /// One VM and its NICs (type, MAC, address, VF, detached).
    Show {
        /// The VM's name.
        name: String,
    },
    /// Every VM.
    List,
    /// Deletes a stopped VM.
    Delete {
        /// The VM's name.
        name: String,
    },
    /// A VM's NICs (the VM stopped).
    #[command(subcommand)]
    Nic(VmNicCmd),
    /// The VM's libvirt domain XML (a VF NIC as a managed hostdev interface with its VF's
    /// PCI address, MAC and VLAN; a vNIC as macvtap on the L2's NIC). Running VMs only: a
    /// VF NIC gets its VF at start.
    Xml {
        /// The VM's name.
        name: String,
    },
    /// Checks that a VM may migrate: refused while a VF is attached (moving it is the
    /// platform's job; nothing is recorded).
    Migrate {
        /// The VM's name.
        name: String,
        /// The destination host.
        #[arg(long, value_name = "HOST")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum VmNicCmd {
    /// Adds a NIC (the next index) to a stopped VM.
    Add {
        /// The VM's name.
        name: String,
        /// `l3=L3[,sriov][,mac=MAC]`.
        #[arg(value_name = "l3=L3[,sriov][,mac=MAC]")]
        nic: String,
    },
    /// Removes a NIC of a stopped VM.
    Remove {
        /// The VM's name.
        name: String,
        /// The NIC: nicN or N.
        nic: String,
    },
    /// Switches a stopped VM's NIC between VF and vNIC.
    SetType {
        /// The VM's name.
        name: String,
        /// The NIC: nicN or N.
        nic: String,
        /// vf or vnic.
        #[arg(value_name = "vf|vnic")]
        nic_type: String,
    },
}

fn show(json: bool, vm: &VmView) -> anyhow::Result<()> {
    if json {
        return print_json(vm);
    }
    crate::outln!(
        "vm {} ({}): {}, {} MiB, {} vCPU{}{}",
        vm.name,
        vm.uuid,
        vm.state.as_str(),
        vm.memory_mib,
        vm.vcpus,
        if vm.vcpus == 1 { "" } else { "s" },
        vm.libvirt
            .as_deref()
            .map(|u| format!(", domain defined at {u}"))
            .unwrap_or_default()
    );
    let mut t = Table::new(&[
        "NIC", "TYPE", "L3", "L2", "MAC", "ADDRESS", "VF", "DETACHED",
    ]);
    for n in &vm.nics {
        t.row(vec![
            n.name.clone(),
            n.nic_type.as_str().to_owned(),
            n.l3.clone(),
            n.l2.clone(),
            n.mac.to_string(),
            opt(&n.address),
            opt(&n.vf),
            if n.detached { "yes" } else { "no" }.to_owned(),
        ]);
    }
    out(&t.render());
    Ok(())
}

/// A NIC as the API's body takes it.
fn nic_body(spec: &VmNicSpec) -> VmNicBody {
    VmNicBody {
        l3: spec.l3.clone(),
        nic_type: Some(if spec.sriov { "vf" } else { "vnic" }.to_owned()),
        mac: spec.mac.map(|m| m.to_string()),
    }
}

fn vm_path(name: &str) -> String {
    format!("/api/v1/vms/{}", seg(name))
}

/// `?libvirt=URI` for start and stop.
fn libvirt_query(uri: Option<&str>) -> String {
    uri.map(|u| format!("?libvirt={}", seg(u)))
        .unwrap_or_default()
}

/// `POST path` with no body: the VM as the daemon answers.
fn post(r: &Remote, path: String) -> anyhow::Result<VmView> {
    Ok(r.client.call::<_, ()>(Method::POST, &path, None)?.view)
}

pub fn run(b: &Backend, cmd: VmCmd) -> anyhow::Result<ExitCode> {
    let vm = match cmd {
        VmCmd::Create {
            name,
            nics,
            memory,
            vcpus,
        } => {
            let res = VmResources::parse(memory.as_deref(), vcpus.as_deref())?;
            let specs = nics
                .iter()
                .map(|s| s.parse::<VmNicSpec>())
                .collect::<Result<Vec<_>, _>>()?;
            match b {
                Backend::Local(ctx) => ctx.engine()?.vm_create_with(&name, &specs, res)?,
                Backend::Remote(r) => {
                    r.client
                        .call(
                            Method::POST,
                            "/api/v1/vms",
                            Some(&VmBody {
                                name,
                                nics: specs.iter().map(nic_body).collect(),
                                memory_mib: Some(res.memory_mib),
                                vcpus: Some(res.vcpus),
                            }),
                        )?
                        .view
                }
            }
        }
        VmCmd::Start { name, libvirt } => match b {
            Backend::Local(ctx) => ctx.engine()?.vm_start_on(&name, libvirt.as_deref())?,
            Backend::Remote(r) => post(
                r,
                format!(
                    "{}/start{}",
                    vm_path(&name),
                    libvirt_query(libvirt.as_deref())
                ),
            )?,
        },
        VmCmd::Stop { name, libvirt } => match b {
            Backend::Local(ctx) => ctx.engine()?.vm_stop_on(&name, libvirt.as_deref())?,
            Backend::Remote(r) => post(
                r,
                format!(
                    "{}/stop{}",
                    vm_path(&name),
                    libvirt_query(libvirt.as_deref())
                ),
            )?,
        },
        VmCmd::Show { name } => match b {
            Backend::Local(ctx) => ctx.engine()?.vm_show(&name)?,
            Backend::Remote(r) => r.client.get(&vm_path(&name))?.view,
        },
        VmCmd::List => {
            let list: Vec<VmView> = match b {
                Backend::Local(ctx) => ctx.engine()?.vm_list()?,
                Backend::Remote(r) => r.client.get("/api/v1/vms")?.view,
            };
            if b.json() {
                print_json(&list)?;
            } else {
                let mut t = Table::new(&["NAME", "STATE", "NICS", "VFS", "UUID"]);
                for v in &list {
                    t.row(vec![
                        v.name.clone(),
                        v.state.as_str().to_owned(),
                        v.nics.len().to_string(),
                        v.nics.iter().filter(|n| n.vf.is_some()).count().to_string(),
                        v.uuid.clone(),
                    ]);
                }
                out(&t.render());
            }
            return Ok(ExitCode::SUCCESS);
        }
        VmCmd::Delete { name } => {
            match b {
                Backend::Local(ctx) => ctx.engine()?.vm_delete(&name)?,
                Backend::Remote(r) => {
                    r.client
                        .call::<PoolDeleted, ()>(Method::DELETE, &vm_path(&name), None)?;
                }
            }
            if b.json() {
                print_json(&PoolDeleted { deleted: name })?;
            } else {
                crate::outln!("vm {name} deleted");
            }
            return Ok(ExitCode::SUCCESS);
        }
        VmCmd::Nic(VmNicCmd::Add { name, nic }) => {
            let spec: VmNicSpec = nic.parse()?;
            match b {
                Backend::Local(ctx) => ctx.engine()?.vm_nic_add(&name, &spec)?,
                Backend::Remote(r) => {
                    r.client
                        .call(
                            Method::POST,
                            &format!("{}/nics", vm_path(&name)),
                            Some(&nic_body(&spec)),
                        )?
                        .view
                }
            }
        }
        VmCmd::Nic(VmNicCmd::Remove { name, nic }) => {
            let index = parse_nic_ref(&nic)?;
            match b {
                Backend::Local(ctx) => ctx.engine()?.vm_nic_remove(&name, index)?,
                Backend::Remote(r) => {
                    r.client
                        .call::<_, ()>(
                            Method::DELETE,
                            &format!("{}/nics/{index}", vm_path(&name)),
                            None,
                        )?
                        .view
                }
            }
        }
        VmCmd::Nic(VmNicCmd::SetType {
            name,
            nic,
            nic_type,
        }) => {
            let index = parse_nic_ref(&nic)?;
            let t = nic_type.parse::<NicType>()?;
            match b {
                Backend::Local(ctx) => ctx.engine()?.vm_nic_set_type(&name, index, t)?,
                Backend::Remote(r) => {
                    r.client
                        .call(
                            Method::PATCH,
                            &format!("{}/nics/{index}", vm_path(&name)),
                            Some(&VmNicPatch {
                                nic_type: t.as_str().to_owned(),
                            }),
                        )?
                        .view
                }
            }
        }
        VmCmd::Xml { name } => {
            // XML is its own format: `-o json` does not apply.
            out(&b.local("vm xml")?.engine()?.vm_domain_xml(&name)?);
            return Ok(ExitCode::SUCCESS);
        }
        VmCmd::Migrate { name, to } => {
            let m = b.local("vm migrate")?.engine()?.vm_migrate(&name, &to)?;
            if b.json() {
                print_json(&m)?;
            } else {
                crate::outln!("vm {} may migrate to {}: {}", m.vm, m.to, m.note);
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    show(b.json(), &vm)?;
    Ok(ExitCode::SUCCESS)
}
