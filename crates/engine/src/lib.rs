//! vfpool's engine: VF pools, leases and their life cycle.
//!
//! - [`selector`]: which VFs a pool holds (`eno49#0-3`, `vendor=8086`, `numa=0`, ...);
//! - [`ledger`]: pools and leases in SQLite, shared by every vfpool process on the host;
//! - [`engine::Engine`]: acquire (pick a VF by policy, snapshot it, configure it through
//!   [`vfpool_netlink::NetOps`] and sysfs), release (restore it), and `gc` (finish what
//!   crashed processes left, release leases whose owner is gone, drop leases on VFs that
//!   vanished);
//! - [`hostview`]: the host's VFs and their health, from the inventory;
//! - [`view`]: what front ends show (the `-o json` contract, the REST API's bodies next),
//!   and `Host::nics` / `Host::nic`, which join the inventory, the leases and the VF configs.
//!
//! Crash safety: a lease row is committed (state `acquiring`) before its VF is touched and
//! is marked `releasing` before a release touches it, and the process doing either holds
//! the VF's in-flight lock ([`ledger::lock_vf`], a `flock` the kernel frees when the process
//! dies) for the whole step. `gc` rolls back or finishes in-flight rows whose lock is free,
//! holding the lock while it does: no pid is read, so processes in other PID namespaces
//! (a daemon, a device plugin) never take each other's steps for abandoned ones. Restores compare each setting
//! with the VF's current value, so running one twice is harmless.

#![forbid(unsafe_code)]

pub mod attach;
pub mod backend;
pub mod engine;
pub mod error;
pub mod fault;
pub mod hostview;
pub mod ledger;
pub mod lock;
pub mod nics;
pub mod owner;
pub mod pool;
pub mod selector;
pub mod view;

pub use attach::Mismatch;
pub use backend::{Host, HostConfig};
pub use engine::{
    AcquireRequest, Engine, GcAction, GcReport, ReapplyAction, ReapplyReport, ReleaseTarget,
};
pub use error::{EngineError, ErrorKind, chain};
pub use hostview::{Health, HostView};
pub use ledger::{
    Applied, DesiredNic, DriverChoice, Lease, LeaseState, Ledger, Original, OwnerKind,
    SCHEMA_VERSION, VfLock,
};
pub use nics::{
    ApplyOutcome, BootHook, NicChange, NicFailure, NicsOutcome, PersistReport, SplitRequest,
};
pub use owner::{NoVmLayer, OwnerStatus, VmOwners};
pub use pool::{Policy, Pool, PoolStatus, PoolVf};
pub use selector::PoolSelector;
pub use vfpool_netlink::NetnsId;
pub use view::{
    ApplyView, CheckItemView, CheckView, DesiredView, GcActionView, GcView, LeaseStateView,
    LeaseView, NicApplyView, NicChangeView, NicDetail, NicFailureView, NicShow, NicView,
    PersistView, PoolDeleted, PoolDetail, PoolVfView, PoolView, ReapplyView, Shown, VfDetail,
    VfView,
};
