//! Network namespaces by file descriptor.

use std::fs::File;
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::sched::{CloneFlags, setns};

use crate::NetlinkError;

/// Opens the calling thread's network namespace (`/proc/thread-self/ns/net`).
///
/// Keep the fd to come back to this namespace, or to hand it to
/// [`crate::NetOps::move_to_netns`] from a backend living in another namespace.
pub fn current_netns() -> Result<OwnedFd, NetlinkError> {
    File::open("/proc/thread-self/ns/net")
        .map(OwnedFd::from)
        .map_err(|source| NetlinkError::EnterNetns { source })
}

/// Runs `f` inside the network namespace `netns` on a dedicated, short-lived thread, and
/// returns its result. The calling thread never changes namespace.
///
/// Sockets opened by `f` stay in `netns` after it returns (this is how
/// [`crate::RtNetlink::in_netns`] works). A panic in `f` is propagated.
pub fn run_in_netns<T, F>(netns: BorrowedFd<'_>, f: F) -> Result<T, NetlinkError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    std::thread::scope(|s| {
        let handle = s.spawn(move || {
            setns(netns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetlinkError::EnterNetns { source: e.into() })?;
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
