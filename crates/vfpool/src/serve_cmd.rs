//! `vfpool serve`: the daemon (crates/daemon).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vfpool_daemon::ServeConfig;
use vfpool_daemon::k8s::KubernetesConfig;

use crate::context::Context;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP address of the API and the console (default 127.0.0.1:7878; another address than
    /// the loopback needs --token-file).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Serve on the unix socket only, no TCP.
    #[arg(long, conflicts_with = "listen")]
    no_tcp: bool,
    /// The unix socket, mode 0600 (default /run/vfpool/api.sock; STATE/api.sock on the
    /// demo host).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// A file whose first line is the token every request must present
    /// (`Authorization: Bearer TOKEN`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// A file whose first line is a read-only token (GET only).
    #[arg(long, value_name = "FILE", requires = "token_file")]
    read_token_file: Option<PathBuf>,
    /// Serve TCP over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "no_tcp"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds between two `gc` runs (1..=86400).
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    gc_interval: String,
    /// Serve on Kubernetes (the DRA driver; --device-plugin too) with the kubelet in
    /// /var/lib/kubelet (STATE/kubelet on the demo host).
    #[arg(long, help_heading = "Kubernetes")]
    kubernetes: bool,
    /// Serve on Kubernetes with the kubelet's directory DIR (implies --kubernetes).
    #[arg(long, value_name = "DIR", help_heading = "Kubernetes")]
    kubelet_root: Option<PathBuf>,
    /// The DRA driver's name (default vfpool.io).
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    dra_driver: Option<String>,
    /// This node's Kubernetes name (the DRA driver's ResourceSlices).
    #[arg(
        long,
        value_name = "NAME",
        env = "NODE_NAME",
        help_heading = "Kubernetes"
    )]
    node_name: Option<String>,
    /// Serve the device plugins (v1beta1), resource PREFIX/POOL per vfpool pool.
    #[arg(long, help_heading = "Kubernetes")]
    device_plugin: bool,
    /// No DRA driver (no ResourceSlices, no DRA kubelet plugin): with --device-plugin.
    #[arg(long, help_heading = "Kubernetes")]
    no_dra: bool,
    /// The device plugins' resource prefix (default vfpool.io).
    #[arg(long, value_name = "PREFIX", help_heading = "Kubernetes")]
    resource_prefix: Option<String>,
    /// Where the DRA plugin writes CDI specs (default /var/run/cdi; STATE/cdi on the demo
    /// host).
    #[arg(long, value_name = "DIR", help_heading = "Kubernetes")]
    cdi_dir: Option<PathBuf>,
}

/// The Kubernetes part of `args`: `None` unless --kubernetes or --kubelet-root; a
/// Kubernetes flag without either is an error naming it.
fn kubernetes(args: &ServeArgs) -> Result<Option<KubernetesConfig>, vfpool_model::InvalidValue> {
    if !args.kubernetes && args.kubelet_root.is_none() {
        let given = [
            (
                "device-plugin",
                args.device_plugin.then(|| "true".to_owned()),
            ),
            ("no-dra", args.no_dra.then(|| "true".to_owned())),
            ("dra-driver", args.dra_driver.clone()),
            ("resource-prefix", args.resource_prefix.clone()),
            (
                "cdi-dir",
                args.cdi_dir.as_ref().map(|p| p.display().to_string()),
            ),
        ];
        if let Some((flag, v)) = given.into_iter().find_map(|(f, v)| v.map(|v| (f, v))) {
            return Err(vfpool_model::InvalidValue::new(
                flag,
                v,
                "only on Kubernetes: add --kubelet-root DIR or --kubernetes",
            ));
        }
        return Ok(None);
    }
    let d = KubernetesConfig::default();
    Ok(Some(KubernetesConfig {
        kubelet_root: args.kubelet_root.clone(),
        dra: !args.no_dra,
        device_plugin: args.device_plugin,
        driver: args.dra_driver.clone().unwrap_or(d.driver),
        node_name: args.node_name.clone(),
        resource_prefix: args.resource_prefix.clone().unwrap_or(d.resource_prefix),
        cdi_dir: args.cdi_dir.clone(),
    }))
}

pub fn run(ctx: Context, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let listen = if args.no_tcp {
        None
    } else {
        let a = args
            .listen
            .as_deref()
            .unwrap_or(vfpool_daemon::server::DEFAULT_LISTEN);
        Some(a.parse::<SocketAddr>().map_err(|_| {
            vfpool_model::InvalidValue::new(
                "listen",
                a,
                "an IP address and port, e.g. 127.0.0.1:7878 or [::1]:7878",
            )
        })?)
    };
    let gc = args
        .gc_interval
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=86400).contains(s))
        .ok_or_else(|| {
            vfpool_model::InvalidValue::new("gc-interval", &args.gc_interval, "1..=86400 seconds")
        })?;
    let kubernetes = kubernetes(&args)?;
    let cfg = ServeConfig {
        listen,
        socket: args.socket,
        token_file: args.token_file,
        read_token_file: args.read_token_file,
        gc_interval: Duration::from_secs(gc),
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| vfpool_daemon::server::TlsFiles { cert, key }),
        kubernetes,
    };
    if ctx.host.is_simulated() {
        eprintln!(
            "vfpool serve: demo host, state in {} (use --state there from the CLI)",
            ctx.host.state_dir().display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(vfpool_daemon::serve(ctx.host, cfg))?;
    Ok(ExitCode::SUCCESS)
}
