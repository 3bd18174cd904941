//! The one error type of the engine.

use std::io;
use std::path::PathBuf;

use vfpool_host::HostError;
use vfpool_host::driver::DriverError;
use vfpool_host::iommu::IommuError;
use vfpool_model::{InvalidValue, PciAddr};
use vfpool_netlink::NetlinkError;

/// What failed, naming the pool, owner, VF or value. Messages are one lower-case line; the
/// cause is chained with `#[source]` and not repeated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A value given by the user is malformed or out of range (`invalid vlan '5000': ...`).
    #[error(transparent)]
    Invalid(#[from] InvalidValue),

    #[error("cannot open the state database {}", .path.display())]
    OpenDb {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The ledger file exists but lost its content; nothing is written to it.
    #[error(
        "the ledger {} is corrupt ({what}); refusing to use it: restore it from a backup or move it aside (a new ledger starts with no pools and no leases)",
        .path.display()
    )]
    CorruptLedger { path: PathBuf, what: String },

    /// The ledger was opened read-only (its state directory cannot be written).
    #[error(
        "the ledger {} is read-only here (its state directory cannot be written); this command changes it",
        .path.display()
    )]
    ReadOnlyLedger { path: PathBuf },

    #[error("cannot take the in-flight lock of VF {vf} ({})", .path.display())]
    LockVf {
        vf: PciAddr,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("state database: cannot {op}")]
    Db {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error("state database: cannot make a commit durable: fsync of {path} failed")]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("a ledger row is corrupt: {what}")]
    CorruptRow {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// The host's own error, which names the NIC or the file.
    #[error(transparent)]
    Host(#[from] HostError),

    /// `host iommu`: the boot configuration, the CPU vendor, the root.
    #[error(transparent)]
    Iommu(#[from] IommuError),

    #[error("unknown pool '{pool}' (known: {known})")]
    UnknownPool { pool: String, known: String },

    #[error("pool '{pool}' exists already")]
    PoolExists { pool: String },

    #[error("pool '{pool}' would overlap pool '{other}' on {overlap}")]
    PoolOverlap {
        pool: String,
        other: String,
        overlap: String,
    },

    #[error("pool '{pool}' selects no VF on this host ({selectors})")]
    PoolSelectsNothing { pool: String, selectors: String },

    #[error("pool '{pool}' has {leased} leased VFs; release them first")]
    PoolLeased { pool: String, leased: usize },

    /// `unhealthy` says how many and why (`7 unhealthy: 7 × PF eno1 lost carrier ...`).
    #[error("pool {pool} has no free VF ({total} total, {leased} leased, {unhealthy})")]
    Exhausted {
        pool: String,
        total: usize,
        leased: usize,
        unhealthy: String,
    },

    #[error("owner '{owner}' already holds a lease on {vf} (pool {pool})")]
    OwnerHasLease {
        owner: String,
        vf: PciAddr,
        pool: String,
    },

    #[error("unknown owner '{owner}': it holds no lease")]
    UnknownOwner { owner: String },

    #[error("the lease of '{owner}' on {vf} is {state} by process {pid}; try again")]
    LeaseBusy {
        owner: String,
        vf: PciAddr,
        state: &'static str,
        pid: i64,
    },

    #[error("VF {vf} is not leased")]
    VfNotLeased { vf: PciAddr },

    #[error("unknown VF {vf}: no VF of this host has that PCI address")]
    UnknownVf { vf: PciAddr },

    #[error("VF {vf} is not in pool {pool}")]
    VfNotInPool { vf: PciAddr, pool: String },

    #[error("VF {vf} is leased to '{owner}' already")]
    VfLeased { vf: PciAddr, owner: String },

    #[error("VF {vf} is unhealthy: {reason}")]
    VfUnhealthy { vf: PciAddr, reason: String },

    #[error("cannot read the VF configuration of {pf}")]
    ReadVf {
        pf: String,
        #[source]
        source: Box<NetlinkError>,
    },

    #[error("VF {vf} of {pf} is missing from the VF list of {pf}")]
    VfNotReported { pf: String, vf: PciAddr },

    /// A PF-side setting was refused by the PF driver; everything applied was rolled back.
    #[error("driver {driver} refused {setting} for {vf} (pool {pool}, owner {owner})")]
    SetVf {
        setting: &'static str,
        driver: String,
        vf: PciAddr,
        pool: String,
        owner: String,
        #[source]
        source: Box<NetlinkError>,
    },

    #[error("cannot set {setting} on {netdev}, the netdev of {vf}")]
    SetNetdev {
        setting: &'static str,
        netdev: String,
        vf: PciAddr,
        #[source]
        source: Box<NetlinkError>,
    },

    #[error("cannot read netdev {netdev}")]
    ReadNetdev {
        netdev: String,
        #[source]
        source: Box<NetlinkError>,
    },

    #[error(transparent)]
    Driver(#[from] DriverError),

    #[error("no known kernel VF driver for PF driver {pf_driver} ({vf}); use --driver vfio-pci")]
    NoVfDriver { vf: PciAddr, pf_driver: String },

    /// A step of attaching a VF netdev to a container's namespace failed; what was done
    /// is undone (the netdev back in the host under its name).
    #[error("cannot attach {vf} {what}: {step} failed{}",
        if .undo.is_empty() { String::new() } else { format!(" (and undoing it: {})", .undo) })]
    Attach {
        vf: PciAddr,
        /// `(NETDEV) to NETNS as IFNAME`.
        what: String,
        step: &'static str,
        undo: String,
        #[source]
        source: Box<NetlinkError>,
    },

    /// The lease's VF has no netdev to attach (bound to vfio-pci, or none appeared).
    #[error("cannot attach {vf} (owner {owner}): it has no netdev{}", if .driver.is_empty() { String::new() } else { format!(" (driver {})", .driver) })]
    NoNetdev {
        vf: PciAddr,
        owner: String,
        driver: String,
    },

    /// A pod's network step failed (addresses, routes, the service path): everything that
    /// step added was taken away again.
    #[error("cannot set up the network of '{owner}': {what}")]
    PodNet {
        owner: String,
        what: String,
        #[source]
        source: Box<vfpool_netlink::NetlinkError>,
    },

    /// libvirt XML could not be rendered from the ledger's VM or L2.
    #[error("cannot render {what}")]
    Render {
        what: String,
        #[source]
        source: Box<vfpool_libvirt::RenderError>,
    },

    /// The lease is attached elsewhere already.
    #[error(
        "the lease of '{owner}' on {vf} is attached to {netns} as {ifname} already; release it first"
    )]
    AlreadyAttached {
        owner: String,
        vf: PciAddr,
        netns: String,
        ifname: String,
    },

    /// The lease is not in a state that can be attached or checked.
    #[error("the lease of '{owner}' on {vf} is {state}, not active")]
    NotActive {
        owner: String,
        vf: PciAddr,
        state: &'static str,
    },

    /// Restoring a VF failed part-way; the lease is kept (state releasing) for `lease gc`.
    #[error("restoring {vf} (owner {owner}) failed: {errors}; the lease is kept for `lease gc`")]
    Restore {
        vf: PciAddr,
        owner: String,
        errors: String,
    },

    #[error("cannot lock {}", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A count-changing split or a restore of NICs with leases, without `force`.
    #[error("{what}: changing the VF count destroys every VF; release the leases or add --force")]
    NicLeased { what: String },

    #[error("NIC '{nic}' ({pci}) is named twice")]
    NamedTwice { nic: String, pci: PciAddr },

    #[error(
        "nothing to persist: no NIC has VFs (split one first with `vfpool nic split NIC --vfs N`)"
    )]
    NothingToPersist,

    /// The kernel's boot id, or the one `host apply` recorded, cannot be read.
    #[error("cannot read the boot id {}", .path.display())]
    BootId {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot install {}", .path.display())]
    Install {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An L2, L3, VM or VM NIC that does not exist.
    #[error("unknown {what} '{name}' (known: {known})")]
    UnknownName {
        what: &'static str,
        name: String,
        known: String,
    },

    #[error("{what} '{name}' exists already")]
    NameExists { what: &'static str, name: String },

    #[error("{what} '{name}' is used by {by}; {hint}")]
    InUse {
        what: &'static str,
        name: String,
        by: String,
        hint: &'static str,
    },

    #[error(
        "l3 '{l3}' is not an SR-IOV network (l2 '{l2}' has no SR-IOV flag; `vfpool l2 set {l2} --sriov on`)"
    )]
    NotSriov { l3: String, l2: String },

    #[error("cidr {cidr} of l3 '{l3}' overlaps l3 '{other}' ({other_cidr}) on l2 '{l2}'")]
    CidrOverlap {
        cidr: String,
        l3: String,
        other: String,
        other_cidr: String,
        l2: String,
    },

    #[error("mac {mac} is taken on l2 '{l2}' by {by}")]
    MacTaken {
        mac: vfpool_model::MacAddr,
        l2: String,
        by: String,
    },

    #[error("l3 '{l3}' has no free address in {range}")]
    NoFreeAddress { l3: String, range: String },

    /// `l3_allocate` for an owner that already holds an address on another L3.
    #[error("{owner} already holds {address} on l3 '{l3}'; release it first")]
    AddressHeld {
        owner: String,
        l3: String,
        address: std::net::Ipv4Addr,
    },

    /// A VM start that finds too few free VFs: nothing was leased.
    #[error("vm '{vm}' cannot start: l3 '{l3}' has {free} free VFs on {nic}, {needed} needed")]
    NoFreeVf {
        vm: String,
        l3: String,
        nic: String,
        free: usize,
        needed: usize,
    },

    /// `--libvirt` in a build without libvirt's API.
    #[error(
        "--libvirt: this vfpool was built without libvirt's API (cargo feature `libvirt` of the `vfpool` crate); without --libvirt it leases only, and `vm xml` gives the domain"
    )]
    LibvirtUnbuilt,

    /// libvirt refused or could not be reached (its message names the URI or the domain).
    #[error(transparent)]
    Libvirt(Box<dyn std::error::Error + Send + Sync>),

    /// A libvirt domain of the VM's name that is not this VM (another UUID).
    #[error(
        "libvirt at '{uri}' has a domain '{vm}' with UUID {found}, not VM '{vm}''s {uuid}: {what}"
    )]
    ForeignDomain {
        uri: String,
        vm: String,
        found: String,
        uuid: String,
        what: &'static str,
    },

    /// A start through libvirt that failed; what it had done was undone (or not: `undo`).
    #[error(
        "vm {vm} not started through libvirt at '{uri}'; {}",
        match .undo { None => "its VFs and addresses were given back".to_string(), Some(u) => format!("and undoing it failed too ({u}); `lease gc` gives back what is left") }
    )]
    LibvirtStart {
        vm: String,
        uri: String,
        undo: Option<String>,
        #[source]
        source: Box<EngineError>,
    },

    /// A stop through libvirt that could not destroy the domain: the VM keeps its VFs.
    #[error("vm {vm} still running in libvirt at '{uri}': its VFs are kept")]
    LibvirtStillRunning {
        vm: String,
        uri: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A stop that gave the VFs back but could not undefine the domain vfpool defined.
    #[error("vm {vm} stopped and its VFs given back, but its domain is still defined at '{uri}'")]
    LibvirtStillDefined {
        vm: String,
        uri: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("vm '{vm}' is {state}: {what}")]
    VmState {
        vm: String,
        state: &'static str,
        what: String,
    },

    #[error(
        "vm '{vm}' is running with VF {vf} attached to {nic}; a VM with a VF cannot migrate while it runs: stop it first"
    )]
    VfAttached {
        vm: String,
        nic: String,
        vf: PciAddr,
    },

    #[error(
        "{nic} has VFs attached to VMs ({vms}); stop them, or add --force to detach the VFs from them"
    )]
    VfsInVms { nic: String, vms: String },

    #[error(
        "vm '{vm}' is stopped, but releasing its VFs failed: {errors}; `lease gc` releases them"
    )]
    VmStop { vm: String, errors: String },

    #[error("cannot read random bytes from /dev/urandom")]
    Random {
        #[source]
        source: io::Error,
    },

    /// The libvirt hook refuses a domain's start: one of its VFs is someone else's.
    #[error("domain '{domain}' cannot start: VF {vf} is leased to '{owner}'")]
    DomainVfTaken {
        domain: String,
        vf: PciAddr,
        owner: String,
    },

    /// A libvirt hook is installed that vfpool did not write.
    #[error("{} is a libvirt hook vfpool did not install; remove it or call `{}` from it yourself", .path.display(), .command)]
    HookNotOurs { path: PathBuf, command: String },

    #[error("a ledger row of the VM layer is corrupt: {what}")]
    CorruptVmRow { what: String },

    /// Applying a lease failed, and so did its rollback.
    #[error("rolling back {vf} (owner {owner}) failed: {errors}; the lease is kept for `lease gc`")]
    Rollback {
        vf: PciAddr,
        owner: String,
        errors: String,
        #[source]
        source: Box<EngineError>,
    },
}

/// What kind of failure an error is, so that each front end maps errors once: the CLI to
/// exit codes, the REST API to HTTP statuses, the CNI plugin to its error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// A value given by the caller is malformed or out of range.
    InvalidInput,
    /// A named pool, owner, NIC or VF does not exist.
    NotFound,
    /// The request contradicts the state (an owner with a lease, a leased NIC, a pool
    /// that exists, overlaps or is in use).
    Conflict,
    /// Another process holds what is needed right now; trying again may succeed.
    Busy,
    /// No free healthy VF is left.
    Exhausted,
    /// The kernel or a driver refused a change (the request was valid).
    Refused,
    /// Reading or writing the host or the state failed.
    Io,
    /// The state directory holds something vfpool cannot read as its own.
    CorruptState,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid-input",
            Self::NotFound => "not-found",
            Self::Conflict => "conflict",
            Self::Busy => "busy",
            Self::Exhausted => "exhausted",
            Self::Refused => "refused",
            Self::Io => "io",
            Self::CorruptState => "corrupt-state",
        }
    }
}

impl EngineError {
    /// What kind of failure this is (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        use EngineError as E;
        match self {
            E::Invalid(_) | E::NoVfDriver { .. } => ErrorKind::InvalidInput,
            E::Host(h) => Self::kind_of_host(h),
            E::Iommu(i) => match i {
                IommuError::InvalidVendor(_)
                | IommuError::UnknownVendor { .. }
                | IommuError::UnknownBootLoader { .. }
                | IommuError::Root { .. } => ErrorKind::InvalidInput,
                IommuError::Conflict { .. } => ErrorKind::Conflict,
                IommuError::Command { .. } => ErrorKind::Refused,
                IommuError::Host(h) => Self::kind_of_host(h),
            },
            E::Driver(DriverError::Bind { .. }) => ErrorKind::Io,
            E::Driver(DriverError::NotBound { .. }) => ErrorKind::Refused,
            E::Driver(DriverError::Sysfs(h)) => Self::kind_of_host(h),
            E::UnknownPool { .. }
            | E::UnknownOwner { .. }
            | E::VfNotLeased { .. }
            | E::UnknownVf { .. }
            | E::VfNotInPool { .. }
            | E::UnknownName { .. } => ErrorKind::NotFound,
            E::Render { .. } => ErrorKind::InvalidInput,
            E::NameExists { .. }
            | E::InUse { .. }
            | E::CidrOverlap { .. }
            | E::MacTaken { .. }
            | E::VmState { .. }
            | E::ForeignDomain { .. }
            | E::VfAttached { .. }
            | E::VfsInVms { .. }
            | E::DomainVfTaken { .. }
            | E::HookNotOurs { .. }
            | E::NotSriov { .. }
            | E::AddressHeld { .. } => ErrorKind::Conflict,
            E::NoFreeVf { .. } | E::NoFreeAddress { .. } => ErrorKind::Exhausted,
            E::VmStop { .. } | E::Random { .. } => ErrorKind::Io,
            E::LibvirtUnbuilt => ErrorKind::Refused,
            E::Libvirt(_) | E::LibvirtStillRunning { .. } | E::LibvirtStillDefined { .. } => {
                ErrorKind::Io
            }
            E::LibvirtStart { source, .. } => source.kind(),
            E::CorruptVmRow { .. } => ErrorKind::CorruptState,
            E::PoolExists { .. }
            | E::PoolOverlap { .. }
            | E::PoolSelectsNothing { .. }
            | E::PoolLeased { .. }
            | E::OwnerHasLease { .. }
            | E::VfLeased { .. }
            | E::NicLeased { .. }
            | E::NamedTwice { .. }
            | E::AlreadyAttached { .. }
            | E::NotActive { .. }
            | E::NothingToPersist => ErrorKind::Conflict,
            E::LeaseBusy { .. } => ErrorKind::Busy,
            E::Exhausted { .. } | E::VfUnhealthy { .. } => ErrorKind::Exhausted,
            E::SetVf { .. }
            | E::Rollback { .. }
            | E::Restore { .. }
            | E::Attach { .. }
            | E::NoNetdev { .. } => ErrorKind::Refused,
            E::PodNet { source, .. } => match source.errno() {
                Some(e) if e == nix::libc::EEXIST => ErrorKind::Conflict,
                Some(e) if e == nix::libc::EINVAL || e == nix::libc::ENETUNREACH => {
                    ErrorKind::InvalidInput
                }
                _ => ErrorKind::Refused,
            },
            E::CorruptRow { .. } | E::CorruptLedger { .. } => ErrorKind::CorruptState,
            E::ReadOnlyLedger { .. } | E::LockVf { .. } => ErrorKind::Io,
            E::OpenDb { source, .. } | E::Db { source, .. } => match source {
                rusqlite::Error::SqliteFailure(f, _)
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                    ) =>
                {
                    ErrorKind::CorruptState
                }
                _ => ErrorKind::Io,
            },
            E::Sync { .. }
            | E::Lock { .. }
            | E::ReadVf { .. }
            | E::VfNotReported { .. }
            | E::SetNetdev { .. }
            | E::ReadNetdev { .. }
            | E::Install { .. }
            | E::BootId { .. } => ErrorKind::Io,
        }
    }

    /// The kind of a host error (see [`ErrorKind`]).
    pub fn kind_of_host(h: &HostError) -> ErrorKind {
        match h {
            HostError::Invalid(_)
            | HostError::VfCountOutOfRange { .. }
            | HostError::NotSriov { .. }
            | HostError::IsVf { .. } => ErrorKind::InvalidInput,
            HostError::UnknownNic { .. } => ErrorKind::NotFound,
            HostError::NumVfs { .. } | HostError::SplitTimeout { .. } => ErrorKind::Refused,
            HostError::Corrupt { .. } => ErrorKind::CorruptState,
            _ => ErrorKind::Io,
        }
    }

    pub(crate) fn db(op: &'static str) -> impl FnOnce(rusqlite::Error) -> EngineError {
        move |source| EngineError::Db { op, source }
    }
}

/// Renders an error with its whole source chain on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
