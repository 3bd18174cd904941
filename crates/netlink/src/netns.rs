//! Network namespaces by file descriptor, and a container's namespace checked and known
//! by identity.
//!
//! A path is only a name: `/run/netns/pod-1` deleted and created again names another
//! namespace, and a `/proc/PID/ns/net` whose pid was reused names another process's. So a
//! lease records the namespace's identity (the device and inode of its nsfs file, what
//! `ip netns identify` compares) and `gc` takes a namespace whose path is gone, or names
//! another namespace now, for a container that is gone.

use std::fs::File;
use std::os::fd::{BorrowedFd, OwnedFd};

use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs, statfs};
use vfpool_model::InvalidValue;

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

/// The identity of a namespace: its nsfs file's device and inode (`st_dev`, `st_ino`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

const GIVE: &str = "give a path like /run/netns/NAME or /proc/PID/ns/net";

/// Checks that `path` names a network namespace other than this process's own (the
/// host's, for the CLI and the CNI plugin) and returns its identity. The checks, in order:
/// an absolute path that exists; on nsfs (statfs, so nothing is opened that is not a
/// namespace: no FIFO or device is touched); a namespace of type net (`setns(..,
/// CLONE_NEWNET)` refuses any other type with EINVAL; tried on a short-lived thread, so the
/// caller never changes namespace); not the namespace of this process or of pid 1.
pub fn check(path: &Path) -> Result<NetnsId, InvalidValue> {
    let bad = |why: String| InvalidValue::new("netns", path.display(), why);
    if !path.is_absolute() {
        return Err(bad(format!("not an absolute path; {GIVE}")));
    }
    match statfs(path) {
        Ok(fs) if fs.filesystem_type() == NSFS_MAGIC => {}
        Ok(_) => return Err(bad(format!("not a network namespace (nsfs); {GIVE}"))),
        Err(Errno::ENOENT) => return Err(bad(format!("no such file; {GIVE}"))),
        Err(e) => return Err(bad(format!("cannot read it ({}); {GIVE}", e.desc()))),
    }
    // Opened read-only (an nsfs file has no data); checked again on the file opened, in case
    // the path changed since.
    let file =
        std::fs::File::open(path).map_err(|e| bad(format!("cannot open it ({e}); {GIVE}")))?;
    if !fstatfs(&file).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC) {
        return Err(bad(format!("not a network namespace (nsfs); {GIVE}")));
    }
    match std::thread::scope(|s| {
        s.spawn(|| setns(file.as_fd(), CloneFlags::CLONE_NEWNET))
            .join()
    }) {
        Ok(Ok(())) => {}
        Ok(Err(Errno::EINVAL)) => {
            return Err(bad(format!(
                "a namespace of another type, not a network namespace; {GIVE}"
            )));
        }
        Ok(Err(e)) => return Err(bad(format!("cannot enter it ({}); {GIVE}", e.desc()))),
        Err(_) => return Err(bad(format!("cannot enter it; {GIVE}"))),
    }
    let st = nix::sys::stat::fstat(&file)
        .map_err(|e| bad(format!("cannot read it ({}); {GIVE}", e.desc())))?;
    let id = NetnsId {
        dev: st.st_dev,
        ino: st.st_ino,
    };
    // This process's namespace, and pid 1's when it can be read (another PID namespace may
    // hide it): the host's own would never go away, so its lease would never be freed.
    for own in ["/proc/self/ns/net", "/proc/1/ns/net"] {
        if netns_identity(Path::new(own)) == Some(id) {
            return Err(bad(
                "the host's own network namespace (it never goes away, so the \
                 lease would never be freed); give a container's, like /run/netns/NAME or \
                 /proc/PID/ns/net"
                    .to_owned(),
            ));
        }
    }
    Ok(id)
}

/// The identity of what `path` names now (following symlinks such as /proc/PID/ns/net);
/// `None` when it cannot be read (gone). A file that is not a namespace has an identity
/// too, never equal to a namespace's (another device).
pub fn netns_identity(path: &Path) -> Option<NetnsId> {
    nix::sys::stat::stat(path).ok().map(|st| NetnsId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

#[cfg(test)]
mod check_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn why(path: &str) -> String {
        check(Path::new(path)).unwrap_err().to_string()
    }

    #[test]
    fn paths_that_are_not_a_containers_network_namespace_are_refused() {
        let dir = std::env::temp_dir();
        let dir = dir.to_str().unwrap();
        for (path, want) in [
            (
                "/etc/passwd",
                "invalid netns '/etc/passwd': not a network namespace (nsfs); give a path like /run/netns/NAME or /proc/PID/ns/net",
            ),
            (dir, "not a network namespace (nsfs)"),
            (
                "/dev/null",
                "invalid netns '/dev/null': not a network namespace (nsfs)",
            ),
            ("/nonexistent/ns", "no such file"),
            ("run/netns/x", "not an absolute path"),
            // nsfs, but a UTS namespace.
            (
                "/proc/self/ns/uts",
                "a namespace of another type, not a network namespace",
            ),
            (
                "/proc/self/ns/net",
                "invalid netns '/proc/self/ns/net': the host's own network namespace",
            ),
            (
                "/proc/thread-self/ns/net",
                "the host's own network namespace",
            ),
        ] {
            let got = why(path);
            assert!(got.contains(want), "{path}: {got}");
            assert!(!got.contains('\n'));
        }
    }

    #[test]
    fn identity_follows_proc_links_and_tells_namespaces_apart() {
        let me = netns_identity(Path::new("/proc/self/ns/net")).unwrap();
        assert_eq!(
            netns_identity(Path::new("/proc/thread-self/ns/net")),
            Some(me)
        );
        assert_ne!(netns_identity(Path::new("/proc/self/ns/uts")), Some(me));
        assert_eq!(netns_identity(Path::new("/nonexistent")), None);
    }
}
