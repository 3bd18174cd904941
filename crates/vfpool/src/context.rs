//! What every command needs: where the host's files are and how to write them.

use vfpool_engine::{Engine, Host, HostConfig};

use crate::client::Client;
use crate::{Cli, Output};

/// Where a command's views come from: this host (the engine in this process) or a running
/// daemon's API (`--api`). Each command fetches through it and prints the same way.
pub enum Backend {
    Local(Context),
    Remote(Remote),
}

/// A daemon's API, and how to print.
pub struct Remote {
    pub client: Client,
    pub output: Output,
}

impl Backend {
    pub fn json(&self) -> bool {
        match self {
            Backend::Local(c) => c.json(),
            Backend::Remote(r) => r.output == Output::Json,
        }
    }

    /// This host, for a command the API does not cover (`main` refuses those with `--api`
    /// before they run; this is the second guard).
    pub fn local(&self, command: &'static str) -> anyhow::Result<&Context> {
        match self {
            Backend::Local(c) => Ok(c),
            Backend::Remote(_) => Err(not_remote(command)),
        }
    }
}

/// The one-line refusal of a command that only runs on the host itself.
pub fn not_remote(command: &'static str) -> anyhow::Error {
    crate::client::ClientError::NotCovered { command }.into()
}

/// The host the command works on, and how to print.
pub struct Context {
    pub host: Host,
    pub output: Output,
}

impl Context {
    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        let host = Host::open(&HostConfig {
            demo: cli.demo,
            sysfs_root: cli.sysfs_root.clone(),
            proc_root: cli.proc_root.clone(),
            // Read here rather than by clap, which takes an empty variable for a missing
            // value and names an option the user never typed.
            state: cli
                .state
                .clone()
                .or_else(|| std::env::var_os("VFPOOL_STATE").map(Into::into)),
            kernel_netlink: vfpool_engine::backend::kernel_netlink_from_env()?,
        })?;
        Ok(Self {
            host,
            output: cli.output,
        })
    }

    /// The engine over the ledger in the state directory.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        Ok(self.host.engine()?)
    }

    pub fn json(&self) -> bool {
        self.output == Output::Json
    }
}

pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    out(&format!("{}\n", serde_json::to_string_pretty(v)?));
    Ok(())
}

/// Writes to stdout; a closed pipe (`vfpool nic list | head`) ends output quietly.
pub fn out(s: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if o.write_all(s.as_bytes()).and_then(|_| o.flush()).is_err() {
        std::process::exit(0);
    }
}

/// `println!` that does not panic on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::context::out(&format!("{}\n", format_args!($($arg)*))) };
}
