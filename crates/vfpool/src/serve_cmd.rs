//! `vfpool serve`: the daemon (crates/daemon).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vfpool_daemon::ServeConfig;

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
