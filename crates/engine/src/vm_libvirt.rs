//! `vm start|stop` through libvirt's API (`vfpool-libvirt`'s `api`, built with this crate's
//! `libvirt-api` feature): one engine call for every front end (CLI `--libvirt URI`, the
//! daemon). Start leases first ([`Engine::vm_start`]), then defines and starts the domain
//! from [`Engine::vm_domain_xml`]; when libvirt fails the leases are given back, all or
//! nothing. Stop destroys the domain (and undefines it when vfpool defined it: the ledger
//! keeps the URI), then gives the leases back. Without the feature both are refused in one
//! line ([`EngineError::LibvirtUnbuilt`]).

use crate::engine::Engine;
use crate::error::EngineError;
use crate::vm::VmView;

impl Engine {
    /// `vm start`: through libvirt at `libvirt` when given ([`Engine::vm_start_libvirt`]),
    /// else the leases only ([`Engine::vm_start`]).
    pub fn vm_start_on(
        &mut self,
        name: &str,
        libvirt: Option<&str>,
    ) -> Result<VmView, EngineError> {
        match libvirt {
            Some(uri) => self.vm_start_libvirt(name, uri),
            None => self.vm_start(name),
        }
    }

    /// `vm stop`: through libvirt at `libvirt` when given ([`Engine::vm_stop_libvirt`]),
    /// else the leases only ([`Engine::vm_stop`]).
    pub fn vm_stop_on(&mut self, name: &str, libvirt: Option<&str>) -> Result<VmView, EngineError> {
        match libvirt {
            Some(uri) => self.vm_stop_libvirt(name, uri),
            None => self.vm_stop(name),
        }
    }
}

#[cfg(not(feature = "libvirt-api"))]
impl Engine {
    /// Refused: this build has no libvirt API.
    pub fn vm_start_libvirt(&mut self, _name: &str, _uri: &str) -> Result<VmView, EngineError> {
        Err(EngineError::LibvirtUnbuilt)
    }

    /// Refused: this build has no libvirt API.
    pub fn vm_stop_libvirt(&mut self, _name: &str, _uri: &str) -> Result<VmView, EngineError> {
        Err(EngineError::LibvirtUnbuilt)
    }
}

#[cfg(feature = "libvirt-api")]
mod imp {
    use vfpool_libvirt::api::{Libvirt, LibvirtError};

    use super::*;
    use crate::error::chain;
    use crate::vm::VmState;

    fn lv_err(_uri: &str) -> impl Fn(LibvirtError) -> EngineError {
        |e| EngineError::Libvirt(Box::new(e))
    }

    impl Engine {
        /// Leases ([`Engine::vm_start`]), then defines and starts domain `name` at `uri`.
        /// All or nothing: when libvirt fails, a domain this call defined is undefined again
        /// and the leases and addresses are given back ([`Engine::vm_stop`]).
        pub fn vm_start_libvirt(&mut self, name: &str, uri: &str) -> Result<VmView, EngineError> {
            // Connected before anything is leased: an unreachable libvirt changes nothing.
            let lv = Libvirt::open(uri).map_err(lv_err(uri))?;
            let vm = self.vm_show(name)?;
            // A domain of this name that is not this VM: libvirt would refuse to define ours
            // over it; say so before leasing.
            let had = lv.domain_uuid(name).map_err(lv_err(uri))?;
            if let Some(u) = &had
                && !u.eq_ignore_ascii_case(&vm.uuid)
            {
                return Err(EngineError::ForeignDomain {
                    uri: uri.into(),
                    vm: name.into(),
                    found: u.clone(),
                    uuid: vm.uuid,
                    what: "rename or undefine that domain first",
                });
            }
            self.vm_start(name)?;
            let mut defined_here = false;
            let launched = (|| -> Result<(), EngineError> {
                let xml = self.vm_domain_xml(name)?;
                lv.define_xml(name, &xml).map_err(lv_err(uri))?;
                defined_here = had.is_none();
                // Ours to undefine at stop when this call defined it, or an earlier start did.
                if defined_here || vm.libvirt.is_some() {
                    self.vm_set_libvirt(name, Some(uri))?;
                }
                lv.start(name).map_err(lv_err(uri))
            })();
            let Err(e) = launched else {
                tracing::info!(vm = name, uri, "domain defined and started");
                return self.vm_show(name);
            };
            let mut undo = Vec::new();
            if defined_here {
                if let Err(u) = lv.undefine(name) {
                    undo.push(format!("undefining the domain: {}", chain(&u)));
                }
                if let Err(u) = self.vm_set_libvirt(name, None) {
                    undo.push(chain(&u));
                }
            }
            if let Err(u) = self.vm_stop(name) {
                undo.push(format!("giving the leases back: {}", chain(&u)));
            }
            Err(EngineError::LibvirtStart {
                vm: name.into(),
                uri: uri.into(),
                undo: (!undo.is_empty()).then(|| undo.join("; ")),
                source: Box::new(e),
            })
        }

        /// Destroys domain `name` at `uri` (when it runs) and undefines it when vfpool
        /// defined it, then gives the VM's leases and addresses back ([`Engine::vm_stop`]).
        /// A domain that is gone is nothing to destroy; one that cannot be destroyed keeps
        /// its VFs (its guest still has them) and fails the stop.
        pub fn vm_stop_libvirt(&mut self, name: &str, uri: &str) -> Result<VmView, EngineError> {
            let lv = Libvirt::open(uri).map_err(lv_err(uri))?;
            let vm = self.vm_show(name)?;
            if vm.state != VmState::Running {
                // The engine's own refusal ("it is not running"), libvirt untouched.
                return self.vm_stop(name);
            }
            let mut later = None;
            match lv.domain_uuid(name).map_err(lv_err(uri))? {
                None => {
                    tracing::info!(vm = name, uri, "no domain to destroy");
                    if vm.libvirt.is_some() {
                        self.vm_set_libvirt(name, None)?;
                    }
                }
                Some(u) if !u.eq_ignore_ascii_case(&vm.uuid) => {
                    return Err(EngineError::ForeignDomain {
                        uri: uri.into(),
                        vm: name.into(),
                        found: u,
                        uuid: vm.uuid,
                        what: "vfpool leaves it alone and keeps the VM running",
                    });
                }
                Some(_) => {
                    if lv.is_active(name).map_err(lv_err(uri))? {
                        lv.destroy(name)
                            .map_err(|e| EngineError::LibvirtStillRunning {
                                vm: name.into(),
                                uri: uri.into(),
                                source: Box::new(e),
                            })?;
                    }
                    if vm.libvirt.is_some() {
                        match lv.undefine(name) {
                            Ok(()) => self.vm_set_libvirt(name, None)?,
                            Err(e) => later = Some(e),
                        }
                    }
                }
            }
            let v = self.vm_stop(name)?;
            if let Some(e) = later {
                return Err(EngineError::LibvirtStillDefined {
                    vm: name.into(),
                    uri: uri.into(),
                    source: Box::new(e),
                });
            }
            tracing::info!(vm = name, uri, "domain destroyed");
            Ok(v)
        }
    }
}
