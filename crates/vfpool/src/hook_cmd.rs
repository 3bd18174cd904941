//! `vfpool libvirt-hook ...`: the hook libvirt runs as `/etc/libvirt/hooks/qemu` (engine:
//! `domain.rs`), and its install. libvirtd runs the hook as root with a minimal
//! environment, waits for it, and at `prepare begin` aborts the start on a non-zero exit
//! showing what the hook wrote on stderr: so nothing but the error goes there, and the
//! hook never waits longer than `--timeout` for another vfpool process.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;

use crate::context::{Context, print_json};

#[derive(Debug, Subcommand)]
pub enum HookCmd {
    /// What libvirt runs (`/etc/libvirt/hooks/qemu DOMAIN OPERATION SUB-OPERATION EXTRA`,
    /// the domain XML on stdin): `prepare begin` leases the VFs of the domain's hostdev
    /// interfaces (refusing the start when one is someone else's), `release end` gives them
    /// back; every other operation does nothing.
    Qemu {
        /// Give up (exit 1) when another vfpool process keeps the ledger or a PF locked
        /// longer than this many seconds; libvirtd waits for the hook meanwhile.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        timeout: u64,
        /// The domain's name.
        #[arg(allow_hyphen_values = true)]
        domain: String,
        /// libvirt's operation: prepare, start, started, stopped, release, migrate,
        /// restore, reconnect, attach.
        #[arg(allow_hyphen_values = true)]
        operation: String,
        /// libvirt's sub-operation: begin, end, `-`.
        #[arg(allow_hyphen_values = true)]
        sub_operation: String,
        /// libvirt's extra arguments (`-`).
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        extra: Vec<String>,
    },
    /// Installs the hook as ROOT/etc/libvirt/hooks/qemu (a script running this vfpool on
    /// this state directory); a hook vfpool did not write is refused. Restart libvirtd
    /// afterwards: it reads its hooks when it starts.
    Install {
        /// Install under this directory instead of / (the demo host: under its state
        /// directory).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
}

/// Whether the log filter of this command defaults to off: libvirt shows the hook's whole
/// stderr as the reason a start failed.
pub fn quiet(cmd: &HookCmd) -> bool {
    matches!(cmd, HookCmd::Qemu { .. })
}

pub fn run(ctx: &Context, cmd: HookCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        HookCmd::Qemu {
            timeout,
            domain,
            operation,
            sub_operation,
            extra: _,
        } => qemu(ctx, timeout, &domain, &operation, &sub_operation),
        HookCmd::Install { root } => {
            let default_root = ctx.host.default_install_root();
            let root = root.unwrap_or(default_root);
            let exe =
                std::env::current_exe().context("cannot find the vfpool executable's path")?;
            let path = ctx.engine()?.libvirt_hook_install(&root, &exe)?;
            if ctx.json() {
                print_json(&serde_json::json!({ "installed": path }))?;
            } else {
                crate::outln!("installed {}", path.display());
                crate::outln!("restart libvirtd: it reads its hooks when it starts");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The domain XML libvirt writes on stdin (nothing when stdin is a terminal).
fn read_stdin() -> anyhow::Result<String> {
    let mut xml = String::new();
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        stdin
            .lock()
            .read_to_string(&mut xml)
            .context("cannot read the domain XML on stdin")?;
    }
    Ok(xml)
}

fn qemu(
    ctx: &Context,
    timeout: u64,
    domain: &str,
    operation: &str,
    sub_operation: &str,
) -> anyhow::Result<ExitCode> {
    // Read in any case: libvirt writes the XML to every hook call.
    let xml = read_stdin()?;
    enum Act {
        Prepare(Vec<vfpool_model::PciAddr>),
        Release,
    }
    let act = match (operation, sub_operation) {
        ("prepare", "begin") => Act::Prepare(
            vfpool_libvirt::vf_addresses_of(&xml)
                .with_context(|| format!("cannot read the XML of domain '{domain}'"))?,
        ),
        ("release", "end") => Act::Release,
        _ => return Ok(ExitCode::SUCCESS),
    };
    // The engine's work on a thread, so that a lock another vfpool process keeps (a split
    // under way, a stuck process) cannot hang libvirtd: past the bound, exit. What an
    // acquire left half done is an `acquiring` lease of this domain: the next prepare of
    // the domain, or `lease gc` (the domain is not running), releases it.
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            let r = (|| -> anyhow::Result<()> {
                let mut e = ctx.engine()?;
                match act {
                    Act::Prepare(vfs) => {
                        let r = e.domain_prepare(domain, &vfs)?;
                        tracing::info!(domain, leased = ?r.leased, held = ?r.held, "prepared");
                    }
                    Act::Release => {
                        let r = e.domain_release(domain)?;
                        tracing::info!(domain, released = ?r.released, "released");
                    }
                }
                Ok(())
            })();
            let _ = tx.send(r);
        });
        match rx.recv_timeout(Duration::from_secs(timeout)) {
            Ok(r) => r.map(|()| ExitCode::SUCCESS),
            Err(_) => {
                eprintln!(
                    "error: vfpool libvirt-hook: {operation} of domain '{domain}' did not finish within {timeout}s: another vfpool process holds the ledger or a PF lock (a split, a restore under way?); `vfpool lease gc` releases whatever was left half done"
                );
                // Not joined: the thread waits on the lock; the process ends here.
                std::process::exit(1);
            }
        }
    })
}
