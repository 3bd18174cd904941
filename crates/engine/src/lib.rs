//! vfpool's engine: VF pools, leases and their life cycle.
//!
//! Where to look:
//! - [`engine::Engine`]: the one front door (struct, `open`, builders); its methods live
//!   in the module of their job:
//!   - [`pools`]: pool create, list, show, delete ([`pool`]: the types, membership, ranking;
//!     [`selector`]: which VFs a pool holds, `eno49#0-3`, `vendor=8086`, ...);
//!   - [`acquire`]: where a VF is chosen (request, ranked pick, lease row);
//!   - [`configure`]: where it is configured (snapshot, apply, restore; no ledger);
//!   - [`recover`]: where it is given back (release, `gc`, `reapply`);
//!   - [`attach`]: its netdev into a container's netns, `verify`;
//!   - [`nics`]: split, restore, persist, boot apply (under [`lock`]'s per-PF locks);
//!   - [`vm`]: L2 and L3 networks, VMs and their NICs, a VM's start and stop over leases;
//!   - [`pfcache`]: the host's PFs kept between acquires;
//! - [`lease`]: the lease types; [`ledger`]: pools and leases in SQLite, shared by every
//!   vfpool process on the host;
//! - [`hostview`]: the host's VFs and their health, from the inventory;
//! - [`backend`]: the real or simulated host wired up; [`error`]: errors and their kinds.
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

pub mod acquire;
pub mod attach;
pub mod backend;
pub mod configure;
pub mod domain;
pub mod engine;
pub mod error;
pub mod fault;
pub mod hostview;
pub mod lease;
pub mod ledger;
pub mod libvirt;
pub mod lock;
pub mod nics;
pub mod owner;
pub mod pfcache;
pub mod pod;
pub mod pool;
pub mod pools;
pub mod recover;
pub mod selector;
pub mod view;
pub mod vm;
mod vm_libvirt;

pub use acquire::{AcquireInput, AcquireRequest};
pub use attach::Mismatch;
pub use backend::{Host, HostConfig};
pub use domain::{
    DomainPrepared, DomainReleased, LIBVIRT_OWNER_PREFIX, LIBVIRT_RUN_DIR, LibvirtDomains,
    domain_of_owner, domain_owner,
};
pub use engine::Engine;
pub use error::{EngineError, ErrorKind, chain};
pub use hostview::{Health, HostView};
pub use lease::{Applied, DesiredNic, DriverChoice, Lease, LeaseState, Original, OwnerKind};
pub use ledger::{Durability, Ledger, SCHEMA_VERSION, VfLock};
pub use nics::{
    ApplyOutcome, BootHook, NicChange, NicFailure, NicsOutcome, PersistReport, SplitRequest,
    parse_timeout,
};
pub use owner::{NoVmLayer, OwnerStatus, VmOwners};
pub use pod::{
    DEVICE_PLUGIN_OWNER_PREFIX, PodAttachment, PodGcReport, PodIp, PodRelease, PodRequest,
    SERVICE_GATEWAY, ServiceEnds, ServicePath, VfSource, service_host_ifname, service_pod_ifname,
};
pub use pool::{Policy, Pool, PoolStatus, PoolVf, VfState};
pub use recover::{
    GcAction, GcKind, GcReport, ReapplyAction, ReapplyKind, ReapplyReport, ReleaseTarget,
};
pub use selector::PoolSelector;
pub use vfpool_netlink::NetnsId;
pub use view::{
    ApplyView, CheckItemView, CheckView, DesiredView, GcActionView, GcView, IommuChangeView,
    IommuStatusView, LeaseStateView, LeaseView, NicApplyView, NicChangeView, NicDetail,
    NicFailureView, NicShow, NicView, PersistView, PoolDeleted, PoolDetail, PoolVfView, PoolView,
    ReapplyView, Shown, VfDetail, VfView,
};
pub use vm::{
    FreedAddress, Ipv4Cidr, L2Request, L2Type, L2View, L3AddressView, L3Allocation, L3Request,
    L3View, LedgerVms, MigrateView, NicType, VfCheckView, VmNicSpec, VmNicView, VmResources,
    VmState, VmView, parse_nic_ref,
};
