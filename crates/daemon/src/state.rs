//! What every request shares.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use vfpool_engine::{Engine, EngineError, Host};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::snapshot::SnapshotCache;

/// The daemon's shared state; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    host: Arc<Host>,
    /// Engines not in use. Each has its own SQLite connection, so requests on different
    /// engines run at once; their writes still queue on the ledger's writers' lock and
    /// share fsyncs (the ledger's group commit).
    idle: Mutex<Vec<Engine>>,
    auth: Auth,
    /// Bumped whenever the host or the ledger changed (by this process or another one);
    /// live views (server-sent events, the device plugin) re-read on a change.
    changes: watch::Sender<u64>,
    /// The last `GET /api/v1/nics` answer, until the next change.
    snapshots: SnapshotCache,
    metrics: Metrics,
    /// Set when the daemon is asked to stop: long-lived answers (server-sent events) end, so
    /// that the graceful shutdown does not wait for their clients.
    stopping: watch::Sender<bool>,
}

/// How many idle engines are kept open (more may be open while requests are in flight).
const MAX_IDLE_ENGINES: usize = 8;

impl AppState {
    pub fn new(host: Host, auth: Auth) -> Self {
        let (changes, _) = watch::channel(0);
        Self(Arc::new(Inner {
            host: Arc::new(host),
            idle: Mutex::new(Vec::new()),
            auth,
            changes,
            snapshots: SnapshotCache::default(),
            metrics: Metrics::default(),
            stopping: watch::channel(false).0,
        }))
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.0.host
    }

    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }

    /// A receiver of the change counter.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Asks long-lived answers to end: the daemon is stopping.
    pub fn stop(&self) {
        self.0.stopping.send_replace(true);
    }

    /// Resolves once [`Self::stop`] was called.
    pub async fn stopped(&self) {
        let mut rx = self.0.stopping.subscribe();
        // The sender lives as long as `self`: an error cannot happen while we wait.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The change counter now.
    pub fn generation(&self) -> u64 {
        *self.0.changes.borrow()
    }

    /// The cached answers of reads ([`crate::snapshot`]).
    pub fn snapshots(&self) -> &SnapshotCache {
        &self.0.snapshots
    }

    /// Drops the cached answers: this daemon just changed something (its own clients then
    /// read their writes before the watchers' bump).
    pub fn invalidate_snapshots(&self) {
        self.0.snapshots.invalidate();
    }

    /// Says that the host or the ledger changed.
    pub fn changed(&self) {
        self.0.changes.send_modify(|g| *g += 1);
    }

    /// Runs `f` with an open engine on a blocking thread (engine calls are synchronous:
    /// SQLite, sysfs, rtnetlink).
    pub async fn engine<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Host, &mut Engine) -> Result<T, EngineError> + Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut engine = state.checkout()?;
            let out = f(&state.0.host, &mut engine);
            state.checkin(engine);
            Ok(out?)
        })
        .await
        .map_err(ApiError::join)?
    }

    /// Runs `f` with the host on a blocking thread (inventory reads).
    pub async fn with_host<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Host) -> Result<T, EngineError> + Send + 'static,
    {
        let host = self.0.host.clone();
        tokio::task::spawn_blocking(move || Ok(f(&host)?))
            .await
            .map_err(ApiError::join)?
    }

    fn checkout(&self) -> Result<Engine, EngineError> {
        let idle = self.0.idle.lock().ok().and_then(|mut v| v.pop());
        match idle {
            Some(e) => Ok(e),
            None => self.0.host.engine(),
        }
    }

    fn checkin(&self, engine: Engine) {
        if let Ok(mut v) = self.0.idle.lock()
            && v.len() < MAX_IDLE_ENGINES
        {
            v.push(engine);
        }
    }
}
