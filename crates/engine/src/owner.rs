//! Is a lease's owner still there? `lease gc` releases the leases of owners that are gone.

use std::path::Path;

use crate::lease::{Lease, OwnerKind};
use vfpool_netlink::netns_identity as identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerStatus {
    Present,
    Gone,
    /// Nobody can tell: keep the lease.
    Unknown,
}

/// What the VM layer fills in: whether a VM still exists. The default knows nothing.
pub trait VmOwners: Send + Sync {
    fn vm_status(&self, vm: &str) -> OwnerStatus {
        let _ = vm;
        OwnerStatus::Unknown
    }
}

/// The VM layer before there is one: every VM is "unknown, keep".
#[derive(Debug, Default, Clone, Copy)]
pub struct NoVmLayer;

impl VmOwners for NoVmLayer {}

/// What a container lease's netns path names now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetnsNow {
    /// The namespace recorded at acquire (or, for a lease from before schema 4, something).
    Same,
    /// Nothing: the namespace was deleted.
    Gone,
    /// Another namespace (or file): deleted and created again under the same name.
    Replaced,
}

/// What lease `l`'s netns path names now; `None` for a lease without one.
pub fn netns_now(l: &Lease) -> Option<NetnsNow> {
    let path = Path::new(l.netns.as_deref()?);
    Some(match (identity(path), l.netns_id) {
        (None, _) => NetnsNow::Gone,
        (Some(now), Some(then)) if now != then => NetnsNow::Replaced,
        _ => NetnsNow::Same,
    })
}

/// A container is gone when the netns path recorded at acquire no longer exists or names
/// another namespace than then; a VM asks `vms`; a manual lease is never gone.
pub fn owner_status(lease: &Lease, vms: &dyn VmOwners) -> OwnerStatus {
    match lease.owner_kind {
        OwnerKind::Container => match netns_now(lease) {
            Some(NetnsNow::Same) => OwnerStatus::Present,
            Some(NetnsNow::Gone | NetnsNow::Replaced) => OwnerStatus::Gone,
            None => OwnerStatus::Unknown,
        },
        OwnerKind::Vm => vms.vm_status(&lease.owner),
        OwnerKind::Manual => OwnerStatus::Unknown,
    }
}

/// This process's pid and start time (field 22 of `/proc/self/stat`), which together name
/// it even after the pid is reused.
pub fn this_process() -> (i64, u64) {
    // Read once per process (a forked child has another pid and reads its own).
    static ME: std::sync::Mutex<Option<(i64, u64)>> = std::sync::Mutex::new(None);
    let pid = i64::from(std::process::id());
    let mut me = ME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match *me {
        Some(m) if m.0 == pid => m,
        _ => {
            let m = (pid, start_time(pid).unwrap_or(0));
            *me = Some(m);
            m
        }
    }
}

fn start_time(pid: i64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process that recorded `(pid, start)` is still running.
pub fn process_alive(pid: (i64, u64)) -> bool {
    start_time(pid.0) == Some(pid.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_one_is_not() {
        let me = this_process();
        assert!(me.1 > 0);
        assert!(process_alive(me));
        assert!(
            !process_alive((me.0, me.1 + 1)),
            "same pid, other start: reused"
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i64::from(child.id());
        let st = start_time(pid);
        child.wait().unwrap();
        if let Some(st) = st {
            assert!(!process_alive((pid, st)));
        }
    }
}
