//! `vfpool`: the command line. It parses arguments, builds the host context, and calls the
//! libraries; what it prints with `-o json` is a documented contract (README).

#![forbid(unsafe_code)]

mod client;
mod context;
mod hook_cmd;
mod host_cmd;
mod lease_cmd;
mod net_cmd;
mod nic_cmd;
mod pool_cmd;
mod serve_cmd;
mod table;
mod vm_cmd;
mod vm_libvirt;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "vfpool",
    version,
    about = "SR-IOV VF pools for VMs and containers"
)]
pub struct Cli {
    /// Run against the built-in simulated host (a server with I350, 82599ES, ConnectX-5 and
    /// an onboard NIC); with no --state, in a fresh temporary directory.
    #[arg(long, global = true)]
    pub demo: bool,
    /// Where sysfs is mounted (default /sys).
    #[arg(
        long,
        global = true,
        env = "VFPOOL_SYSFS_ROOT",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub sysfs_root: Option<PathBuf>,
    /// Where procfs is mounted (default /proc; for the kernel command line and interrupts).
    #[arg(
        long,
        global = true,
        env = "VFPOOL_PROC_ROOT",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub proc_root: Option<PathBuf>,
    /// The state directory (ledger, desired VF counts; with --demo also the simulated host)
    /// [env: VFPOOL_STATE; default /var/lib/vfpool].
    #[arg(long, global = true, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Work through a running daemon (`vfpool serve`) instead of this host: http://HOST:PORT,
    /// https://HOST[:PORT] or unix:/path/to/api.sock; the same output and exit status.
    #[arg(
        long,
        global = true,
        env = "VFPOOL_API",
        value_name = "URL",
        conflicts_with_all = ["demo", "state"]
    )]
    pub api: Option<String>,
    /// With --api: a file whose first line is the daemon's token (`Authorization: Bearer`);
    /// give it before the command.
    #[arg(long, env = "VFPOOL_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// With an https:// --api: the CA certificates (PEM) to trust instead of the system's.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Output format: table (for people) or json (the documented contract, README).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The host: readiness checks and reboot persistence.
    #[command(subcommand)]
    Host(host_cmd::HostCmd),
    /// Physical NICs and their SR-IOV state.
    #[command(subcommand)]
    Nic(nic_cmd::NicCmd),
    /// VF pools: named sets of VFs that leases are taken from.
    #[command(subcommand)]
    Pool(pool_cmd::PoolCmd),
    /// Leases: a VF of a pool held by a container, a VM or a person.
    #[command(subcommand)]
    Lease(lease_cmd::LeaseCmd),
    /// L2 networks: a physical NIC, its VLAN, the SR-IOV flag.
    #[command(subcommand)]
    L2(net_cmd::L2Cmd),
    /// L3 networks: IPv4 on an L2, the addresses VM NICs get.
    #[command(subcommand)]
    L3(net_cmd::L3Cmd),
    /// VMs: NICs of type VF or vNIC, VFs leased at start and given back at stop.
    #[command(subcommand)]
    Vm(vm_cmd::VmCmd),
    /// The libvirt hook (/etc/libvirt/hooks/qemu): a domain's VFs leased when libvirt
    /// starts it, given back when it ends, and the hook's install.
    #[command(subcommand)]
    LibvirtHook(hook_cmd::HookCmd),
    /// The daemon: the REST API (/api/v1/), the web console and metrics, on a unix socket
    /// and the loopback.
    Serve(serve_cmd::ServeArgs),
    /// Tools for developers and the test tiers.
    #[command(subcommand, hide = true)]
    Debug(host_cmd::DebugCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The libvirt hook: libvirt shows its whole stderr as the reason a start failed.
    let default_log = match &cli.command {
        Command::LibvirtHook(c) if hook_cmd::quiet(c) => "off",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VFPOOL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit status of a failure, by its kind (README, "Exit status and errors").
fn exit_code(e: &anyhow::Error) -> u8 {
    use vfpool_engine::ErrorKind as K;
    let kind = if let Some(e) = e.downcast_ref::<vfpool_engine::EngineError>() {
        e.kind()
    } else if let Some(d) = e.downcast_ref::<vfpool_daemon::DaemonError>() {
        match d {
            vfpool_daemon::DaemonError::Invalid(_) => K::InvalidInput,
            vfpool_daemon::DaemonError::Engine(e) => e.kind(),
            _ => K::Io,
        }
    } else if e.downcast_ref::<vfpool_model::InvalidValue>().is_some() {
        K::InvalidInput
    } else if let Some(h) = e.downcast_ref::<vfpool_host::HostError>() {
        vfpool_engine::EngineError::kind_of_host(h)
    } else if let Some(f) = e.downcast_ref::<client::ApiFailure>() {
        f.engine_kind()
    } else if let Some(client::ClientError::NotCovered { .. }) = e.downcast_ref() {
        K::InvalidInput
    } else {
        K::Io
    };
    match kind {
        K::Io | K::Refused => 1,
        K::InvalidInput => 2,
        K::NotFound => 3,
        K::Conflict => 4,
        K::Busy => 5,
        K::Exhausted => 6,
        K::CorruptState => 7,
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    use context::Backend;
    let b = match &cli.api {
        Some(url) => {
            if let Some(command) = local_only(&cli.command) {
                return Err(context::not_remote(command));
            }
            Backend::Remote(context::Remote {
                client: client::Client::new(&client::ClientConfig {
                    url,
                    token_file: cli.token_file.as_deref(),
                    ca_file: cli.ca_file.as_deref(),
                })?,
                output: cli.output,
            })
        }
        None => Backend::Local(context::Context::new(&cli)?),
    };
    match cli.command {
        Command::Host(c) => host_cmd::run(&b, c),
        Command::Nic(c) => nic_cmd::run(&b, c),
        Command::Pool(c) => pool_cmd::run(&b, c),
        Command::Lease(c) => lease_cmd::run(&b, c),
        Command::L2(c) => net_cmd::run_l2(&b, c),
        Command::L3(c) => net_cmd::run_l3(&b, c),
        Command::Vm(c) => vm_cmd::run(&b, c),
        Command::LibvirtHook(c) => hook_cmd::run(b.local("libvirt-hook")?, c),
        Command::Debug(c) => host_cmd::run_debug(b.local("debug")?, c),
        Command::Serve(a) => match b {
            Backend::Local(ctx) => serve_cmd::run(ctx, a),
            Backend::Remote(_) => Err(context::not_remote("serve")),
        },
    }
}

/// The commands the daemon's API does not cover (refused with `--api`, naming the
/// command).
fn local_only(c: &Command) -> Option<&'static str> {
    use host_cmd::HostCmd as H;
    Some(match c {
        Command::Host(H::Check { root: Some(_) }) => "host check --root",
        Command::Host(H::Iommu(
            host_cmd::IommuCmd::Status { root: Some(_) }
            | host_cmd::IommuCmd::Enable { root: Some(_), .. }
            | host_cmd::IommuCmd::Disable { root: Some(_) },
        )) => "host iommu --root",
        Command::Host(H::Persist { .. }) => "host persist",
        Command::Host(H::Desired) => "host desired",
        Command::Host(H::Apply { .. }) => "host apply",
        Command::L2(net_cmd::L2Cmd::LibvirtNetwork { .. }) => "l2 libvirt-network",
        Command::L3(net_cmd::L3Cmd::CheckVf { .. }) => "l3 check-vf",
        Command::Vm(vm_cmd::VmCmd::Xml { .. }) => "vm xml",
        Command::Vm(vm_cmd::VmCmd::Migrate { .. }) => "vm migrate",
        Command::LibvirtHook(_) => "libvirt-hook",
        Command::Serve(_) => "serve",
        Command::Debug(_) => "debug",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every subcommand says what it does, and every argument and option of every
    /// subcommand has a one-line description (issue 9: `lease acquire --help` listed
    /// options without any).
    #[test]
    fn every_command_and_option_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(format!("{p} (the command)"));
                }
                walk(sub, &p, missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "vfpool", &mut missing);
        assert!(missing.is_empty(), "without a description: {missing:?}");
    }

    /// Each option that takes a number in a range shows the range where the value goes.
    #[test]
    fn numeric_options_show_their_range() {
        let cmd = Cli::command();
        let acquire = cmd
            .find_subcommand("lease")
            .and_then(|l| l.find_subcommand("acquire"))
            .map(|c| c.clone().render_help().to_string())
            .unwrap_or_default();
        for want in ["--vlan <0..=4094>", "--qos <0..=7>", "0..=4294967295"] {
            assert!(acquire.contains(want), "{want} missing in:\n{acquire}");
        }
    }
}
