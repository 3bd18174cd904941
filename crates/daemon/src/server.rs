//! The listeners and the router.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use vfpool_engine::Host;
use vfpool_model::InvalidValue;

use crate::auth::{self, Auth};
use crate::error::DaemonError;
use crate::state::AppState;

/// The default TCP address: the loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// The default unix socket on a real host (the demo host keeps it in its state directory).
pub const DEFAULT_SOCKET: &str = "/run/vfpool/api.sock";
/// The largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How `vfpool serve` was asked to run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// TCP address; `None` serves on the unix socket only.
    pub listen: Option<SocketAddr>,
    /// The unix socket (mode 0600); `None` for the default.
    pub socket: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub read_token_file: Option<PathBuf>,
    /// How often `gc` runs (leases whose owner is gone, steps a crash left).
    pub gc_interval: Duration,
    /// Serve TCP over TLS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// The kubelet plugins and ResourceSlices; `None`: not on Kubernetes.
    pub kubernetes: Option<crate::k8s::KubernetesConfig>,
}

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().ok(),
            socket: None,
            token_file: None,
            read_token_file: None,
            gc_interval: Duration::from_secs(60),
            tls: None,
            kubernetes: None,
        }
    }
}

/// Every route: the REST API, then the auth guard over all of it.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/metrics", axum::routing::get(crate::metrics::scrape))
        .merge(crate::api::router())
        .merge(crate::console::router())
        // On the matched routes only: the metrics key on the route, not the raw path.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Checks the configuration: a TCP address other than the loopback needs a token.
pub fn check_listen(listen: Option<SocketAddr>, auth: &Auth) -> Result<(), InvalidValue> {
    match listen {
        Some(a) if !a.ip().is_loopback() && !auth.required() => Err(InvalidValue::new(
            "listen",
            a,
            "a loopback address (127.0.0.1:PORT, [::1]:PORT) unless --token-file is given",
        )),
        _ => Ok(()),
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn serve(host: Host, cfg: ServeConfig) -> Result<(), DaemonError> {
    let auth = Auth::from_files(cfg.token_file.as_deref(), cfg.read_token_file.as_deref())?;
    check_listen(cfg.listen, &auth)?;
    let tls = cfg.tls.as_ref().map(tls_config).transpose()?;
    let socket = cfg.socket.clone().unwrap_or_else(|| {
        if host.is_simulated() {
            host.state_dir().join("api.sock")
        } else {
            PathBuf::from(DEFAULT_SOCKET)
        }
    });
    let state = AppState::new(host, auth);
    let app = router(state.clone());
    // Live changes: the ledger and the host, whoever changed them (stopped when dropped).
    let _watchers = crate::watch::start(&state, crate::watch::Coalescer::default())?;

    // SIGINT or SIGTERM: the listeners stop accepting, event streams end.
    tokio::spawn({
        let state = state.clone();
        async move {
            shutdown().await;
            state.stop();
        }
    });
    let unix = bind_unix(&socket)?;
    tracing::info!(socket = %socket.display(), "serving on the unix socket");
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        // The CNI endpoint on the unix socket only (crate::cni): the TCP router lacks it.
        let app = crate::cni::router(state.clone()).merge(app.clone());
        let state = state.clone();
        async move {
            axum::serve(unix, app)
                .with_graceful_shutdown(async move { state.stopped().await })
                .await
        }
    });
    if let Some(addr) = cfg.listen {
        let tcp = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| DaemonError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, scheme, "serving over TCP");
        eprintln!(
            "vfpool serve: {scheme}://{addr}/ (API under /api/v1/), socket {}",
            socket.display()
        );
        match tls {
            Some(tls) => {
                let handle = axum_server::Handle::new();
                tokio::spawn({
                    let handle = handle.clone();
                    let state = state.clone();
                    async move {
                        state.stopped().await;
                        handle.graceful_shutdown(Some(Duration::from_secs(5)));
                    }
                });
                let server = axum_server::from_tcp_rustls(tcp, tls).map_err(|source| {
                    DaemonError::Listen {
                        addr: addr.to_string(),
                        source,
                    }
                })?;
                tasks.spawn(
                    async move { server.handle(handle).serve(app.into_make_service()).await },
                );
            }
            None => {
                let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|source| {
                    DaemonError::Listen {
                        addr: addr.to_string(),
                        source,
                    }
                })?;
                let state = state.clone();
                tasks.spawn(async move {
                    axum::serve(tcp, app)
                        .with_graceful_shutdown(async move { state.stopped().await })
                        .await
                });
            }
        }
    }
    if let Some(k) = &cfg.kubernetes {
        crate::k8s::start(&state, k, &mut tasks).await?;
    }
    tasks.spawn(gc_loop(state, cfg.gc_interval));
    let out = match tasks.join_next().await {
        Some(Ok(r)) => r.map_err(DaemonError::Serve),
        Some(Err(e)) => Err(DaemonError::Serve(std::io::Error::other(e))),
        None => Ok(()),
    };
    tasks.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    out
}

/// The TLS configuration from PEM files: TLS 1.2 and 1.3 with rustls's safe defaults
/// (the `ring` provider), HTTP/1.1.
pub fn tls_config(files: &TlsFiles) -> Result<axum_server::tls_rustls::RustlsConfig, DaemonError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &std::path::Path, what: &str, e: &dyn std::fmt::Display| DaemonError::Tls {
        path: path.to_owned(),
        reason: format!("{what}: {e}"),
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&files.cert, "not a PEM certificate chain", &e))?;
    if certs.is_empty() {
        return Err(bad(
            &files.cert,
            "not a PEM certificate chain",
            &"no CERTIFICATE block",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad(&files.key, "not a PEM private key", &e))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.cert, "no TLS version", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&files.key, "the key does not fit the certificate", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        std::sync::Arc::new(config),
    ))
}

/// Binds the unix socket, mode 0600, replacing a stale one.
fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| DaemonError::Listen {
        addr: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    // The socket is made under a umask that leaves it to its owner only, then checked.
    let l = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(l)
}

/// Runs `gc` every `every`: leases whose owner is gone, steps a crash left.
async fn gc_loop(state: AppState, every: Duration) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.engine(|_, e| e.gc()).await {
            Ok(report) if !report.actions.is_empty() => {
                tracing::info!(actions = report.actions.len(), "gc");
                state.changed();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.body.message, "gc failed"),
        }
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon runs until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
