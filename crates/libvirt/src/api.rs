//! The VM lifecycle through libvirt's C API (the `virt` crate), behind the `libvirt-api`
//! feature: define, attach and detach a NIC in the persistent configuration
//! (`virsh attach-device --config`), start, destroy, undefine. Every XML comes from this
//! crate's renderer.

use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use crate::{Nic, RenderError, Vm, domain_xml, interface_xml, vf_addresses_of};

/// What failed talking to libvirt; libvirt's own message is the source.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("connecting to libvirt at '{uri}'")]
    Connect {
        uri: String,
        #[source]
        source: virt::error::Error,
    },
    #[error("rendering domain '{vm}'")]
    Render {
        vm: String,
        #[source]
        source: RenderError,
    },
    #[error("no domain '{vm}' in libvirt")]
    Lookup {
        vm: String,
        #[source]
        source: virt::error::Error,
    },
    #[error("libvirt refused to {op} domain '{vm}'")]
    Op {
        op: &'static str,
        vm: String,
        #[source]
        source: virt::error::Error,
    },
    /// Attaching a VF the domain's configuration already passes through: libvirt would keep
    /// both and fail only at start.
    #[error("VF {pci} is already in domain '{vm}'")]
    VfAlreadyAttached {
        vm: String,
        pci: vfpool_model::PciAddr,
    },
    #[error("reading domain '{vm}''s configuration back")]
    ReadBack {
        vm: String,
        #[source]
        source: crate::ParseError,
    },
}

/// A connection to libvirt (`qemu:///system`, or `test:///default` for tests).
pub struct Libvirt {
    conn: Connect,
}

impl Libvirt {
    /// Opens `uri`. libvirt stops printing its errors to stderr: they come back as the
    /// source of a [`LibvirtError`].
    pub fn open(uri: &str) -> Result<Self, LibvirtError> {
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|source| LibvirtError::Connect {
            uri: uri.to_owned(),
            source,
        })?;
        Ok(Self { conn })
    }

    fn domain(&self, vm: &str) -> Result<Domain, LibvirtError> {
        self.conn
            .lookup_domain_by_name(vm)
            .map_err(|source| LibvirtError::Lookup {
                vm: vm.to_owned(),
                source,
            })
    }

    fn op<T>(
        vm: &str,
        op: &'static str,
        r: Result<T, virt::error::Error>,
    ) -> Result<T, LibvirtError> {
        r.map_err(|source| LibvirtError::Op {
            op,
            vm: vm.to_owned(),
            source,
        })
    }

    /// Defines (or redefines) `vm` persistently (`virsh define`).
    pub fn define(&self, vm: &Vm) -> Result<(), LibvirtError> {
        let xml = domain_xml(vm).map_err(|source| LibvirtError::Render {
            vm: vm.name.clone(),
            source,
        })?;
        self.define_xml(&vm.name, &xml)
    }

    /// Defines (or redefines) domain `vm` from XML rendered elsewhere (the engine's
    /// `vm_domain_xml`); `vm` only names it in an error.
    pub fn define_xml(&self, vm: &str, xml: &str) -> Result<(), LibvirtError> {
        Self::op(vm, "define", self.conn.define_domain_xml(xml))?;
        Ok(())
    }

    /// The domain's persistent configuration, as libvirt writes it.
    pub fn config_xml(&self, vm: &str) -> Result<String, LibvirtError> {
        let d = self.domain(vm)?;
        Self::op(vm, "read", d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE))
    }

    /// Adds `nic` to the domain's persistent configuration (`virsh attach-device --config`);
    /// refuses a VF the configuration already has.
    pub fn attach_nic(&self, vm: &str, nic: &Nic) -> Result<(), LibvirtError> {
        let render = |source| LibvirtError::Render {
            vm: vm.to_owned(),
            source,
        };
        let xml = interface_xml(nic).map_err(render)?;
        let d = self.domain(vm)?;
        if let Nic::Vf(vf) = nic {
            let config = Self::op(vm, "read", d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE))?;
            let have = vf_addresses_of(&config).map_err(|source| LibvirtError::ReadBack {
                vm: vm.to_owned(),
                source,
            })?;
            if have.contains(&vf.pci) {
                return Err(LibvirtError::VfAlreadyAttached {
                    vm: vm.to_owned(),
                    pci: vf.pci,
                });
            }
        }
        Self::op(
            vm,
            "attach a NIC to",
            d.attach_device_flags(&xml, sys::VIR_DOMAIN_AFFECT_CONFIG),
        )
    }

    /// Removes `nic` from the domain's persistent configuration (`virsh detach-device
    /// --config`); libvirt matches it by MAC and, for a VF, its PCI address.
    pub fn detach_nic(&self, vm: &str, nic: &Nic) -> Result<(), LibvirtError> {
        let xml = interface_xml(nic).map_err(|source| LibvirtError::Render {
            vm: vm.to_owned(),
            source,
        })?;
        let d = self.domain(vm)?;
        Self::op(
            vm,
            "detach a NIC from",
            d.detach_device_flags(&xml, sys::VIR_DOMAIN_AFFECT_CONFIG),
        )
    }

    /// Starts a defined domain (`virsh start`).
    pub fn start(&self, vm: &str) -> Result<(), LibvirtError> {
        Self::op(vm, "start", self.domain(vm)?.create().map(|_| ()))
    }

    /// Stops a running domain at once (`virsh destroy`).
    pub fn destroy(&self, vm: &str) -> Result<(), LibvirtError> {
        Self::op(vm, "destroy", self.domain(vm)?.destroy())
    }

    /// The UUID of domain `vm` (8-4-4-4-12, lower case), or `None` when libvirt has no
    /// domain of that name.
    pub fn domain_uuid(&self, vm: &str) -> Result<Option<String>, LibvirtError> {
        match self.conn.lookup_domain_by_name(vm) {
            Ok(d) => Self::op(vm, "query", d.uuid_string()).map(Some),
            Err(e) if e.code().is(virt::error::ErrorNumber::NoDomain) => Ok(None),
            Err(source) => Err(LibvirtError::Lookup {
                vm: vm.to_owned(),
                source,
            }),
        }
    }

    /// Whether the domain runs.
    pub fn is_active(&self, vm: &str) -> Result<bool, LibvirtError> {
        Self::op(vm, "query", self.domain(vm)?.is_active())
    }

    /// Removes the domain's persistent configuration (`virsh undefine`).
    pub fn undefine(&self, vm: &str) -> Result<(), LibvirtError> {
        Self::op(vm, "undefine", self.domain(vm)?.undefine())
    }
}
