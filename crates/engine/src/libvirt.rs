//! The VM layer's libvirt XML: a VM of the ledger as a domain (`vfpool vm xml`), an L2 as
//! the first seed's hostdev network for those who keep libvirt's own VF pools (`vfpool l2
//! libvirt-network`). The rendering and its schema checks are `vfpool-libvirt`'s; here is
//! only what a VM's NICs become.

use vfpool_host::Inventory;
use vfpool_libvirt::{Nic, VfNic, Vm, Vnic, VnicMode};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::vm::{NicType, VmState};

impl Engine {
    /// The libvirt domain of VM `name`: a VF NIC as a managed hostdev interface with its
    /// VF's PCI address, MAC and the L2's VLAN; a vNIC as macvtap (bridge mode) on the L2's
    /// NIC. A VF NIC has a VF only while the VM runs: a stopped VM with VF NICs is refused.
    pub fn vm_domain_xml(&mut self, name: &str) -> Result<String, EngineError> {
        let vm = self.vm_show(name)?;
        let mut nics = Vec::new();
        for n in &vm.nics {
            let vlan = n.vlan.map(|v| u16::try_from(v).unwrap_or(u16::MAX));
            match (n.nic_type, n.vf) {
                (NicType::Vf, Some(pci)) => nics.push(Nic::Vf(VfNic {
                    pci,
                    mac: n.mac,
                    vlan,
                })),
                (NicType::Vf, None) => {
                    return Err(EngineError::VmState {
                        vm: vm.name.clone(),
                        state: if vm.state == VmState::Running {
                            "running"
                        } else {
                            "stopped"
                        },
                        what: format!(
                            "{} has no VF (a VF NIC gets one when the VM starts{}): start it first",
                            n.name,
                            if n.detached {
                                "; this one was detached"
                            } else {
                                ""
                            }
                        ),
                    });
                }
                (NicType::Vnic, _) => nics.push(Nic::Vnic(Vnic {
                    mode: VnicMode::Macvtap {
                        dev: self.netdev_of(&n.nic)?,
                    },
                    mac: n.mac,
                    vlan,
                })),
            }
        }
        let domain = Vm {
            name: vm.name.clone(),
            uuid: Some(vm.uuid.clone()),
            memory_mib: vm.memory_mib,
            vcpus: vm.vcpus,
            disks: Vec::new(),
            nics,
        };
        vfpool_libvirt::domain_xml(&domain).map_err(|source| EngineError::Render {
            what: format!("the domain of VM '{name}'"),
            source: Box::new(source),
        })
    }

    /// The seed's libvirt network for L2 `name`: `<forward mode='hostdev' managed='yes'>`
    /// with the L2's NIC as its `<pf dev=.../>`, named after the L2.
    pub fn l2_libvirt_network(&mut self, name: &str) -> Result<String, EngineError> {
        let l2 = self.l2_show(name)?;
        let pf = self.netdev_of(&l2.nic)?;
        vfpool_libvirt::network_xml(&l2.name, &pf).map_err(|source| EngineError::Render {
            what: format!("the libvirt network of L2 '{name}'"),
            source: Box::new(source),
        })
    }

    /// The netdev name of a NIC given by name or PCI address (libvirt wants the name).
    fn netdev_of(&self, nic: &str) -> Result<String, EngineError> {
        let inv = Inventory::scan(&self.fs)?;
        inv.find_sriov_pf(nic).map(|n| n.name.clone()).or_else(|_| {
            inv.nics
                .iter()
                .find(|n| n.name == nic || n.pci.to_string() == nic)
                .map(|n| n.name.clone())
                .ok_or(EngineError::UnknownName {
                    what: "nic",
                    name: nic.to_owned(),
                    known: inv
                        .nics
                        .iter()
                        .map(|n| n.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
    }
}
