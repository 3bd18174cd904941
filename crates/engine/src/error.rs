//! The one error type of the engine.

use std::io;
use std::path::PathBuf;

use vfpool_host::HostError;
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

    #[error("cannot read the host")]
    Host(#[from] HostError),

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

    #[error("pool {pool} has no free VF ({total} total, {leased} leased, {unhealthy} unhealthy)")]
    Exhausted {
        pool: String,
        total: usize,
        leased: usize,
        unhealthy: usize,
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

    #[error("cannot bind {vf} to {driver}: writing {}", .path.display())]
    BindDriver {
        vf: PciAddr,
        driver: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "probing {vf} with {driver} did not bind it (bound now: {found}); vfio-pci needs an IOMMU"
    )]
    DriverNotBound {
        vf: PciAddr,
        driver: String,
        found: String,
    },

    #[error("no known kernel VF driver for PF driver {pf_driver} ({vf}); use --driver vfio-pci")]
    NoVfDriver { vf: PciAddr, pf_driver: String },

    /// Restoring a VF failed part-way; the lease is kept (state releasing) for `lease gc`.
    #[error("restoring {vf} (owner {owner}) failed: {errors}; the lease is kept for `lease gc`")]
    Restore {
        vf: PciAddr,
        owner: String,
        errors: String,
    },

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

impl EngineError {
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
