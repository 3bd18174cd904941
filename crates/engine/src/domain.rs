//! libvirt domains that vfpool did not start: the libvirt hook (`vfpool libvirt-hook`,
//! installed as `/etc/libvirt/hooks/qemu`) leases the VFs a domain's XML names when libvirt
//! prepares it (`domain_prepare`) and gives them back when libvirt releases it
//! (`domain_release`), so that a plain `virsh start` can never get a VF that a container,
//! a vfpool VM or another domain holds.
//!
//! Each VF's lease owner is `libvirt/DOMAIN/PCI` (owner kind `vm`). Nothing is configured
//! and no driver is changed: libvirt's managed hostdev sets the MAC and VLAN and binds
//! vfio-pci itself. [`LibvirtDomains`] answers `lease gc`: a domain runs while libvirt's
//! runtime status file `RUN/DOMAIN.xml` (`/run/libvirt/qemu/DOMAIN.xml`) exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use vfpool_model::{InvalidValue, PciAddr};

use crate::acquire::AcquireRequest;
use crate::engine::Engine;
use crate::error::{EngineError, chain};
use crate::lease::{LeaseState, OwnerKind};
use crate::owner::{OwnerStatus, VmOwners};
use crate::pod::VfSource;
use crate::recover::ReleaseTarget;
use crate::vm::vm_of_owner;

/// The prefix of every lease owner of a libvirt domain: `libvirt/DOMAIN/PCI`.
pub const LIBVIRT_OWNER_PREFIX: &str = "libvirt/";

/// Where libvirt's QEMU driver keeps a running domain's status XML on a real host.
pub const LIBVIRT_RUN_DIR: &str = "/run/libvirt/qemu";

/// The lease owner of VF `vf` of domain `domain`.
pub fn domain_owner(domain: &str, vf: PciAddr) -> String {
    format!("{LIBVIRT_OWNER_PREFIX}{domain}/{vf}")
}

/// The domain a lease owner of a libvirt domain names (`libvirt/DOMAIN/...`).
pub fn domain_of_owner(owner: &str) -> Option<&str> {
    let rest = owner.strip_prefix(LIBVIRT_OWNER_PREFIX)?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// A domain name as libvirt allows it (no `/`, which libvirt refuses too) and as an owner
/// can hold it.
fn validate_domain(domain: &str) -> Result<(), InvalidValue> {
    let bad = |why: &str| {
        Err(InvalidValue::new(
            "domain",
            domain,
            format!("{why}; allowed: a libvirt domain name (no '/', no control characters)"),
        ))
    };
    if domain.is_empty() {
        return bad("empty");
    }
    if domain.contains('/') {
        return bad("contains '/'");
    }
    if domain.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    vfpool_model::validate_owner(&domain_owner(domain, PciAddr::new(0, 0, 0, 0)))
}

/// What `domain_prepare` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DomainPrepared {
    pub domain: String,
    /// VFs leased now, to `libvirt/DOMAIN/PCI`.
    pub leased: Vec<PciAddr>,
    /// VFs the domain held already: its own lease from an earlier prepare (libvirtd
    /// restarted, a retry), or the vfpool VM's of the same name (`vm/DOMAIN/nicN`).
    pub held: Vec<(PciAddr, String)>,
    /// PCI addresses of the XML that are no VF of this host (a whole NIC passed
    /// through): not vfpool's to lease.
    pub not_vfs: Vec<PciAddr>,
    /// Leases of an earlier run of the domain on VFs its XML no longer names: released.
    pub released: Vec<PciAddr>,
}

/// What `domain_release` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DomainReleased {
    pub domain: String,
    pub released: Vec<PciAddr>,
}

impl Engine {
    /// Where libvirt's QEMU driver keeps running domains' status XML (default
    /// [`LIBVIRT_RUN_DIR`]; the demo host's is under its own root).
    pub fn with_libvirt_run_dir(mut self, dir: PathBuf) -> Self {
        self.libvirt_run = dir;
        self
    }

    pub fn libvirt_run_dir(&self) -> &Path {
        &self.libvirt_run
    }

    /// libvirt prepares domain `domain` whose hostdev interfaces pass through `vfs`: each VF
    /// is leased to `libvirt/DOMAIN/PCI`, all or nothing. A VF leased to anyone else refuses
    /// the start, naming the VF and its owner, with nothing leased; a VF the domain holds
    /// already (an earlier prepare, or the vfpool VM of the same name) is kept as it is.
    /// Leases of an earlier run on VFs the XML no longer names are released.
    pub fn domain_prepare(
        &mut self,
        domain: &str,
        vfs: &[PciAddr],
    ) -> Result<DomainPrepared, EngineError> {
        validate_domain(domain)?;
        // libvirt accepts the same hostdev twice (and fails only at start): once here.
        let wanted: BTreeSet<PciAddr> = vfs.iter().copied().collect();
        let mut report = DomainPrepared {
            domain: domain.to_owned(),
            ..DomainPrepared::default()
        };
        let leases = self.ledger.read(|tx| tx.leases())?;
        let mut to_lease = Vec::new();
        let mut stale_own = Vec::new();
        for vf in &wanted {
            let mine = domain_owner(domain, *vf);
            match leases.iter().find(|l| l.vf_pci == *vf) {
                Some(l) if l.owner == mine && l.state == LeaseState::Active => {
                    report.held.push((*vf, l.owner.clone()));
                }
                // Our own lease left half made (a hook killed by its timeout): again.
                Some(l) if l.owner == mine => stale_own.push(mine),
                Some(l)
                    if l.owner_kind == OwnerKind::Vm
                        && vm_of_owner(&l.owner) == Some(domain)
                        && l.state == LeaseState::Active =>
                {
                    report.held.push((*vf, l.owner.clone()));
                }
                Some(l) => {
                    return Err(EngineError::DomainVfTaken {
                        domain: domain.to_owned(),
                        vf: *vf,
                        owner: l.owner.clone(),
                    });
                }
                None => to_lease.push(*vf),
            }
        }
        for owner in stale_own {
            let vf = leases.iter().find(|l| l.owner == owner).map(|l| l.vf_pci);
            self.release(&ReleaseTarget::Owner(owner))?;
            to_lease.extend(vf);
        }
        let mut taken: Vec<String> = Vec::new();
        let result = (|| {
            for vf in &to_lease {
                let (pool, named) = match self.resolve_source(&VfSource::Device(*vf)) {
                    Ok(p) => p,
                    Err(EngineError::UnknownVf { .. }) => {
                        report.not_vfs.push(*vf);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let owner = domain_owner(domain, *vf);
                let mut req = AcquireRequest::new(&pool, &owner);
                req.owner_kind = OwnerKind::Vm;
                req.vf = named;
                match self.acquire(&req) {
                    Ok(_) => {
                        taken.push(owner);
                        report.leased.push(*vf);
                        crate::fault::point("domain-prepare:after-acquire");
                    }
                    // Taken meanwhile by another process: name its owner as above.
                    Err(EngineError::VfLeased { vf, owner }) => {
                        return Err(EngineError::DomainVfTaken {
                            domain: domain.to_owned(),
                            vf,
                            owner,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for owner in taken {
                if let Err(re) = self.release(&ReleaseTarget::Owner(owner.clone())) {
                    tracing::warn!(owner = %owner, error = %chain(&re), "rolling back a domain's lease failed; `lease gc` releases it");
                }
            }
            return Err(e);
        }
        for l in &leases {
            if domain_of_owner(&l.owner) == Some(domain) && !wanted.contains(&l.vf_pci) {
                self.release(&ReleaseTarget::Owner(l.owner.clone()))?;
                report.released.push(l.vf_pci);
            }
        }
        tracing::info!(
            domain,
            leased = report.leased.len(),
            held = report.held.len(),
            "domain prepared"
        );
        Ok(report)
    }

    /// libvirt released domain `domain`: every `libvirt/DOMAIN/...` lease is released
    /// (none: nothing to do). Goes on past a failure and reports the first.
    pub fn domain_release(&mut self, domain: &str) -> Result<DomainReleased, EngineError> {
        validate_domain(domain)?;
        let leases = self.ledger.read(|tx| tx.leases())?;
        let mut report = DomainReleased {
            domain: domain.to_owned(),
            released: Vec::new(),
        };
        let mut first_err = None;
        for l in leases
            .into_iter()
            .filter(|l| domain_of_owner(&l.owner) == Some(domain))
        {
            match self.release(&ReleaseTarget::Owner(l.owner.clone())) {
                Ok(_) => report.released.push(l.vf_pci),
                // Released meanwhile (a second release, gc): done.
                Err(EngineError::UnknownOwner { .. }) => {}
                Err(e) => {
                    tracing::warn!(owner = %l.owner, error = %chain(&e), "releasing a domain's lease failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    pub(crate) fn libvirt_domains(&self) -> LibvirtDomains {
        LibvirtDomains {
            run_dir: self.libvirt_run.clone(),
        }
    }
}

/// libvirt's running domains, as `lease gc` sees them: a domain runs while its status
/// file `RUN/DOMAIN.xml` exists. Without the directory itself (libvirt not installed, or
/// not started since boot) nobody can tell: the leases are kept.
#[derive(Debug, Clone)]
pub struct LibvirtDomains {
    pub run_dir: PathBuf,
}

impl LibvirtDomains {
    /// Whether this is an owner of a libvirt domain (`libvirt/DOMAIN/...`).
    pub fn owns(owner: &str) -> bool {
        domain_of_owner(owner).is_some()
    }
}

impl VmOwners for LibvirtDomains {
    fn vm_status(&self, owner: &str) -> OwnerStatus {
        let Some(domain) = domain_of_owner(owner) else {
            return OwnerStatus::Unknown;
        };
        if validate_domain(domain).is_err() || !self.run_dir.is_dir() {
            return OwnerStatus::Unknown;
        }
        match self.run_dir.join(format!("{domain}.xml")).try_exists() {
            Ok(true) => OwnerStatus::Present,
            Ok(false) => OwnerStatus::Gone,
            Err(_) => OwnerStatus::Unknown,
        }
    }
}

/// The first lines of every hook script vfpool installs: how a hook is known as ours.
const HOOK_MARKER: &str = "# vfpool libvirt hook: installed by `vfpool libvirt-hook install`";

/// Quotes one argument for sh: single quotes, a quote inside as `'\''`.
fn sh_quote(arg: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut q = vec![b'\''];
    for &b in arg.as_bytes() {
        if b == b'\'' {
            q.extend_from_slice(b"'\\''");
        } else {
            q.push(b);
        }
    }
    q.push(b'\'');
    q
}

/// The hook script: `exec EXE ARGS... libvirt-hook qemu "$@"`, every word quoted.
pub fn hook_script(exe: &Path, args: &[std::ffi::OsString]) -> Vec<u8> {
    let mut s = format!("#!/bin/sh\n{HOOK_MARKER}\n# libvirt runs it as: qemu DOMAIN OPERATION SUB-OPERATION EXTRA, the domain XML on stdin.\nexec ").into_bytes();
    s.extend(sh_quote(exe.as_os_str()));
    for a in args {
        s.push(b' ');
        s.extend(sh_quote(a));
    }
    s.extend_from_slice(b" libvirt-hook qemu \"$@\"\n");
    s
}

/// Where libvirt's QEMU driver looks for its hook under `root`.
pub fn hook_path(root: &Path) -> PathBuf {
    root.join("etc/libvirt/hooks/qemu")
}

impl Engine {
    /// Installs the libvirt hook under `root` (`ROOT/etc/libvirt/hooks/qemu`, mode 0755): a
    /// script that runs `exe` on this same host and state directory. A hook that vfpool did
    /// not write is refused, named. libvirtd reads its hooks when it starts: restart it.
    pub fn libvirt_hook_install(&self, root: &Path, exe: &Path) -> Result<PathBuf, EngineError> {
        use std::os::unix::fs::PermissionsExt;
        let path = hook_path(root);
        match std::fs::read(&path) {
            Ok(old) if !String::from_utf8_lossy(&old).contains(HOOK_MARKER) => {
                let cmd = String::from_utf8_lossy(&hook_script(exe, &self.boot_args))
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim_start_matches("exec ")
                    .to_owned();
                return Err(EngineError::HookNotOurs { path, command: cmd });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(EngineError::Install { path, source }),
        }
        let install = |source| EngineError::Install {
            path: path.clone(),
            source,
        };
        vfpool_host::persist::write_atomic(&path, &hook_script(exe, &self.boot_args))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(install)?;
        tracing::info!(path = %path.display(), "libvirt hook installed");
        Ok(path)
    }
}
