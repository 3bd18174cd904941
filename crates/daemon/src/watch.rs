//! Live change detection, without polling: whoever changed the ledger or the host (this
//! process, the CLI, the CNI plugin, another engine), [`AppState::changed`] is called once per
//! burst.
//!
//! - The ledger: inotify on the state directory for writes to `state.db-wal` / `state.db`,
//!   confirmed by SQLite's `PRAGMA data_version` on a connection held open (a checkpoint
//!   writes `state.db` without changing the data; a reader writes nothing).
//! - A real host: rtnetlink link events (`RTNLGRP_LINK`: a netdev appearing or vanishing, its
//!   carrier, a PF's VF list) and the kernel's uevents (`NETLINK_KOBJECT_UEVENT`: PCI devices
//!   and netdevs added or removed, drivers bound or unbound).
//! - The demo host: inotify on the directories the simulator writes (its devices, netdevs,
//!   driver links, each PF's `sriov_numvfs`, its netlink state files).
//!
//! Every source fires a [`Trigger`]; one [`Coalescer`] task turns a burst of triggers (a
//! split writes hundreds of files) into one bump: after `quiet` without a trigger, or at most
//! `max` after the first one.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::state::AppState;

/// Why a watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {path} with inotify: {source}")]
    Inotify {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the ledger {path} to follow its changes: {source}")]
    Ledger {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Engine(#[from] vfpool_engine::EngineError),
    #[error("cannot open a netlink socket for {what}: {source}")]
    Netlink {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Something changed: cheap to clone, callable from any thread.
#[derive(Clone, Default)]
pub struct Trigger(Arc<TriggerInner>);

#[derive(Default)]
struct TriggerInner {
    notify: Notify,
    fired: AtomicU64,
}

impl Trigger {
    pub fn fire(&self) {
        self.0.fired.fetch_add(1, Ordering::Relaxed);
        self.0.notify.notify_one();
    }

    /// How many times it fired (for tests and logs).
    pub fn fired(&self) -> u64 {
        self.0.fired.load(Ordering::Relaxed)
    }
}

/// How a burst of triggers becomes one change.
#[derive(Debug, Clone, Copy)]
pub struct Coalescer {
    /// A change is announced once no trigger came for this long...
    pub quiet: Duration,
    /// ...or this long after the burst's first trigger, whichever comes first; and after a
    /// change, the next one is announced no sooner than this (a long split is a change every
    /// `max` at most, not one per file or per pause).
    pub max: Duration,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self {
            quiet: Duration::from_millis(10),
            max: Duration::from_millis(50),
        }
    }
}

impl Coalescer {
    /// Runs forever: calls `on_change` once per burst of `trigger`'s firings.
    pub async fn run(self, trigger: Trigger, on_change: impl Fn()) {
        loop {
            trigger.0.notify.notified().await;
            let first = Instant::now();
            loop {
                let until = (Instant::now() + self.quiet).min(first + self.max);
                tokio::select! {
                    () = trigger.0.notify.notified() => {
                        if Instant::now() >= first + self.max {
                            break;
                        }
                    }
                    () = tokio::time::sleep_until(until) => break,
                }
            }
            on_change();
            // Triggers meanwhile are kept (one Notify permit) and start the next burst.
            tokio::time::sleep(self.max).await;
        }
    }
}

/// The running watchers; dropping it stops them.
pub struct Watchers {
    pub trigger: Trigger,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts every watcher that fits the host, and the coalescer that bumps `state`'s change
/// counter. Must run inside a tokio runtime.
pub fn start(state: &AppState, coalescer: Coalescer) -> Result<Watchers, WatchError> {
    let trigger = Trigger::default();
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn({
        let state = state.clone();
        let trigger = trigger.clone();
        async move { coalescer.run(trigger, || state.changed()).await }
    }));
    // The NIC list is computed again after each change, before anyone asks.
    tasks.push(tokio::spawn({
        let state = state.clone();
        let mut rx = state.subscribe();
        async move {
            while rx.changed().await.is_ok() {
                if let Err(e) = state.snapshots().nics(&state).await {
                    tracing::warn!(error = %e.body.message, "cannot read the NIC list");
                }
            }
        }
    }));
    let host = state.host();
    // Opening an engine creates the ledger if this is a new state directory.
    drop(host.engine()?);
    tasks.push(watch_ledger(host.state_dir(), trigger.clone())?);
    match &host.sim {
        Some(sim) => tasks.push(watch_sim(sim.root(), trigger.clone())?),
        None => {
            spawn_netlink(trigger.clone())?;
        }
    }
    Ok(Watchers { trigger, tasks })
}

// --- The ledger -----------------------------------------------------------------------------

/// When a write to the WAL was seen, `data_version` is read again after these delays until
/// it moved: SQLite writes a commit's frames to the WAL before it publishes them in the
/// shared-memory index (no inotify event for that), so the first read may come too early.
const LEDGER_RECHECKS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(2),
    Duration::from_millis(10),
    Duration::from_millis(50),
];

fn watch_ledger(state_dir: &Path, trigger: Trigger) -> Result<JoinHandle<()>, WatchError> {
    let db = state_dir.join("state.db");
    let ino_err = |source| WatchError::Inotify {
        path: state_dir.to_owned(),
        source,
    };
    let ino = Inotify::init().map_err(ino_err)?;
    ino.watches()
        .add(
            state_dir,
            WatchMask::MODIFY | WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE,
        )
        .map_err(ino_err)?;
    let mut events = ino.into_event_stream([0u8; 4096]).map_err(ino_err)?;
    let conn = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| WatchError::Ledger {
        path: db.clone(),
        source,
    })?;
    let version = |c: &rusqlite::Connection| -> Option<i64> {
        c.query_row("PRAGMA data_version", [], |r| r.get(0)).ok()
    };
    let mut last = version(&conn);
    Ok(tokio::spawn(async move {
        // The next recheck: its index in LEDGER_RECHECKS and when the write was seen.
        let mut pending: Option<(usize, Instant)> = None;
        loop {
            let next = pending.map(|(i, seen)| seen + LEDGER_RECHECKS[i]);
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        if ev.name.as_deref().is_some_and(is_ledger_file) {
                            pending = Some((0, Instant::now()));
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "ledger watch failed; assuming a change");
                        trigger.fire();
                    }
                    None => return,
                },
                () = sleep_until_opt(next) => {
                    let now = version(&conn);
                    if now != last {
                        last = now;
                        pending = None;
                        trigger.fire();
                    } else {
                        pending = pending.and_then(|(i, seen)| {
                            (i + 1 < LEDGER_RECHECKS.len()).then_some((i + 1, seen))
                        });
                    }
                }
            }
        }
    }))
}

fn is_ledger_file(name: &OsStr) -> bool {
    name == "state.db-wal" || name == "state.db"
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// --- The demo host --------------------------------------------------------------------------

/// Watches what the simulator writes under its root: devices appearing or vanishing
/// (`sys/bus/pci/devices`), netdevs (`sys/class/net`), driver links (`sys/bus/pci/drivers/*`),
/// each PF's `sriov_numvfs` and its netdev's `operstate`/`carrier`/`flags`, and the VF
/// configurations (`netlink/PF.json`). Lock files and temporary files are ignored: readers
/// open locks for writing too.
fn watch_sim(root: &Path, trigger: Trigger) -> Result<JoinHandle<()>, WatchError> {
    let sys = root.join("sys");
    let ino = Inotify::init().map_err(|source| WatchError::Inotify {
        path: root.to_owned(),
        source,
    })?;
    let links = WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_TO | WatchMask::MOVED_FROM;
    let mut dirs: Vec<(PathBuf, WatchMask)> = vec![
        (sys.join("bus/pci/devices"), links),
        (sys.join("class/net"), links),
        (root.join("netlink"), links | WatchMask::CLOSE_WRITE),
    ];
    let list = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for d in list(&sys.join("bus/pci/drivers")) {
        dirs.push((d, links));
    }
    // PFs: each PCI function with `sriov_totalvfs`, and its netdevs.
    for dev in list(&sys.join("bus/pci/devices")) {
        if !dev.join("sriov_totalvfs").exists() {
            continue;
        }
        let Ok(real) = std::fs::canonicalize(&dev) else {
            continue;
        };
        for nd in list(&real.join("net")) {
            dirs.push((nd, WatchMask::CLOSE_WRITE));
        }
        dirs.push((real, links | WatchMask::CLOSE_WRITE));
    }
    for (d, mask) in &dirs {
        ino.watches()
            .add(d, *mask)
            .map_err(|source| WatchError::Inotify {
                path: d.clone(),
                source,
            })?;
    }
    tracing::debug!(watches = dirs.len(), root = %root.display(), "watching the demo host");
    let mut events = ino
        .into_event_stream([0u8; 16384])
        .map_err(|source| WatchError::Inotify {
            path: root.to_owned(),
            source,
        })?;
    Ok(tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            match ev {
                Ok(ev) => {
                    if ev.name.as_deref().is_none_or(sim_name_matters) {
                        trigger.fire();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "demo host watch failed; assuming a change");
                    trigger.fire();
                }
            }
        }
    }))
}

/// Whether a file the simulator changed is one the host's state is read from (not a lock,
/// not a temporary file before its rename).
fn sim_name_matters(name: &OsStr) -> bool {
    let n = name.to_string_lossy();
    !(n.starts_with('.') || n.ends_with(".lock") || n.contains(".tmp"))
}

// --- A real host: rtnetlink and uevents ------------------------------------------------------

/// Starts the rtnetlink link watcher and the uevent watcher, each on its own thread (the
/// sockets are blocking, as everywhere in vfpool's netlink code).
fn spawn_netlink(trigger: Trigger) -> Result<(), WatchError> {
    let links = link_socket()?;
    let uevents = uevent_socket()?;
    let t = trigger.clone();
    std::thread::Builder::new()
        .name("vfpool-rtnl-watch".into())
        .spawn(move || recv_loop(&links, "rtnetlink", &t, link_messages_matter))
        .map_err(|source| WatchError::Netlink {
            what: "rtnetlink",
            source,
        })?;
    std::thread::Builder::new()
        .name("vfpool-uevent-watch".into())
        .spawn(move || recv_loop(&uevents, "uevent", &trigger, uevent_matters))
        .map_err(|source| WatchError::Netlink {
            what: "uevents",
            source,
        })?;
    Ok(())
}

/// A socket on the `RTNLGRP_LINK` group: every RTM_NEWLINK / RTM_DELLINK.
pub fn link_socket() -> Result<netlink_sys::Socket, WatchError> {
    let err = |source| WatchError::Netlink {
        what: "rtnetlink link events",
        source,
    };
    let mut s = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE).map_err(err)?;
    s.bind_auto().map_err(err)?;
    // RTNLGRP_LINK = 1 (linux/rtnetlink.h).
    s.add_membership(1).map_err(err)?;
    Ok(s)
}

/// A socket on the kernel's uevents (group 1: the kernel's, not udev's).
pub fn uevent_socket() -> Result<netlink_sys::Socket, WatchError> {
    let err = |source| WatchError::Netlink {
        what: "kernel uevents",
        source,
    };
    let mut s =
        netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_KOBJECT_UEVENT).map_err(err)?;
    s.bind(&netlink_sys::SocketAddr::new(0, 1)).map_err(err)?;
    Ok(s)
}

/// Receives forever; fires the trigger for each datagram `matters` keeps. A lost datagram
/// (ENOBUFS: the socket's buffer overflowed) counts as a change.
pub fn recv_loop(
    s: &netlink_sys::Socket,
    what: &'static str,
    trigger: &Trigger,
    matters: fn(&[u8]) -> bool,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match s.recv(&mut buf, 0) {
            Ok(_) => {
                if matters(&buf) {
                    trigger.fire();
                }
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                tracing::warn!(source = what, "netlink events were lost; assuming a change");
                trigger.fire();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!(source = what, error = %e, "netlink watch stopped");
                return;
            }
        }
    }
}

/// Whether a datagram from `RTNLGRP_LINK` holds a link added, changed or removed.
pub fn link_messages_matter(buf: &[u8]) -> bool {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::RouteNetlinkMessage;
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len])
            && let NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_),
            ) = m.payload
        {
            return true;
        }
        off += (len + 3) & !3;
    }
    false
}

/// Whether a kernel uevent is about a PCI device or a netdev coming, going, or changing
/// driver: `ACTION@DEVPATH\0ACTION=..\0SUBSYSTEM=..\0...`.
pub fn uevent_matters(buf: &[u8]) -> bool {
    let mut action = None;
    let mut subsystem = None;
    for field in buf.split(|b| *b == 0) {
        if let Some(v) = field.strip_prefix(b"ACTION=") {
            action = Some(v);
        } else if let Some(v) = field.strip_prefix(b"SUBSYSTEM=") {
            subsystem = Some(v);
        }
    }
    matches!(subsystem, Some(b"pci" | b"net"))
        && matches!(
            action,
            Some(b"add" | b"remove" | b"bind" | b"unbind" | b"change" | b"move")
        )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn counted() -> (Trigger, Arc<AtomicUsize>, JoinHandle<()>) {
        let trigger = Trigger::default();
        let bumps = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (t, b) = (trigger.clone(), bumps.clone());
            async move {
                Coalescer::default()
                    .run(t, move || {
                        b.fetch_add(1, Ordering::SeqCst);
                    })
                    .await
            }
        });
        (trigger, bumps, task)
    }

    async fn ms(n: u64) {
        tokio::time::sleep(Duration::from_millis(n)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_change_within_a_few_ms() {
        let (t, bumps, _task) = counted();
        ms(1).await;
        for _ in 0..500 {
            t.fire();
        }
        ms(9).await;
        assert_eq!(bumps.load(Ordering::SeqCst), 0, "announced before quiet");
        ms(2).await;
        assert_eq!(bumps.load(Ordering::SeqCst), 1);
        ms(100).await;
        assert_eq!(bumps.load(Ordering::SeqCst), 1, "one burst, one change");
        assert_eq!(t.fired(), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_apart_are_announced_apart() {
        let (t, bumps, _task) = counted();
        ms(1).await;
        t.fire();
        ms(15).await;
        assert_eq!(bumps.load(Ordering::SeqCst), 1);
        ms(100).await;
        t.fire();
        ms(15).await;
        assert_eq!(bumps.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_burst_is_announced_at_most_every_max() {
        let (t, bumps, _task) = counted();
        ms(1).await;
        // A trigger every 1 ms for 200 ms: never quiet, so `max` decides: a change at 51 ms,
        // then a pause of 50 ms, a change at 151 ms, and the last after the triggers stop.
        for _ in 0..200 {
            t.fire();
            ms(1).await;
        }
        ms(30).await;
        let n = bumps.load(Ordering::SeqCst);
        assert_eq!(n, 3, "changes in 200 ms of triggers");
    }

    #[test]
    fn uevents_of_pci_and_net_devices_matter() {
        let ev = |s: &str| s.replace('|', "\0").into_bytes();
        assert!(uevent_matters(&ev(
            "add@/devices/pci0000:00/0000:00:03.0/0000:03:10.0|ACTION=add|DEVPATH=/devices/pci0000:00/0000:00:03.0/0000:03:10.0|SUBSYSTEM=pci|PCI_SLOT_NAME=0000:03:10.0|SEQNUM=4021"
        )));
        assert!(uevent_matters(&ev(
            "unbind@/devices/x|ACTION=unbind|SUBSYSTEM=pci|DRIVER=igbvf"
        )));
        assert!(uevent_matters(&ev(
            "remove@/devices/virtual/net/x|ACTION=remove|SUBSYSTEM=net|INTERFACE=x"
        )));
        assert!(!uevent_matters(&ev(
            "add@/devices/virtual/block/loop0|ACTION=add|SUBSYSTEM=block"
        )));
        assert!(!uevent_matters(&ev(
            "online@/devices/system/cpu/cpu1|ACTION=online|SUBSYSTEM=cpu"
        )));
    }

    #[test]
    fn sim_locks_and_temporary_files_do_not_matter() {
        assert!(!sim_name_matters(OsStr::new(".lock")));
        assert!(!sim_name_matters(OsStr::new(".eno49.json.tmp-12-0")));
        assert!(sim_name_matters(OsStr::new("eno49.json")));
        assert!(sim_name_matters(OsStr::new("sriov_numvfs")));
        assert!(sim_name_matters(OsStr::new("0000:03:10.0")));
    }
}
