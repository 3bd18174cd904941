//! `vfpool-cni`: the CNI plugin binary. Stdout carries only results and error results;
//! logs go to stderr.

use std::io::Write;
use std::process::ExitCode;

use vfpool_cni::{CniEnv, CniError, Command, SUPPORTED_VERSIONS, version_output};

const USAGE: &str = "\
vfpool-cni: a CNI plugin that gives a container an SR-IOV VF from vfpool (a lease), with its
settings, IPAM by delegation and an optional service route.

It is run by a container runtime with CNI_COMMAND set (ADD, DEL, CHECK, STATUS, GC, VERSION)
and the network config on stdin, for example:
  {\"cniVersion\": \"1.1.0\", \"name\": \"vf-net\", \"type\": \"vfpool-cni\",
   \"pool\": \"web\", \"vlan\": 100, \"mtu\": 9000,
   \"ipam\": {\"type\": \"host-local\", \"ranges\": [[{\"subnet\": \"10.56.0.0/24\"}]]},
   \"serviceRoute\": {\"cidr\": \"10.96.0.0/12\"}}
The VF comes from exactly one of: deviceID (a device plugin's VF, as Multus passes it; or
runtimeConfig.deviceID), pool (a vfpool pool), master (a PF's netdev name or PCI address).
IPAM: any plugin in CNI_PATH by exec, or {\"type\": \"vfpool\", \"l3\": \"NAME\"} for the addresses
of a vfpool L3 network, shared with VM NICs (vfpool l3 show lists who holds each).
VF settings: mac, vlan, vlanQoS, vlanProto, spoofchk, trust, link_state, min_tx_rate,
max_tx_rate, mtu. State: vfpoolState / vfpoolSysfsRoot / vfpoolNetlink, else VFPOOL_STATE /
VFPOOL_SYSFS_ROOT / VFPOOL_NETLINK.";

fn main() -> ExitCode {
    let env = match CniEnv::from_env() {
        Ok(Some(env)) => env,
        Ok(None) => {
            eprintln!("{USAGE}");
            eprintln!(
                "CNI protocol versions supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e),
    };
    init_logging();
    let mut stdin = Vec::new();
    if env.command != Command::Version
        && let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut stdin)
    {
        return fail(&CniError::io(format!(
            "cannot read the network config from stdin: {e}"
        )));
    }
    let out = if env.command == Command::Version {
        Ok(Some(version_output()))
    } else {
        vfpool_cni::plugin::run(&env, &stdin)
    };
    match out {
        Ok(Some(text)) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{text}").is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::warn!(command = %env.command, code = e.code, error = %e.msg, "failed");
            fail(&e)
        }
    }
}

/// Logs to stderr (the runtime keeps it), at `VFPOOL_LOG` (default `warn`; `debug`, or
/// per target like `vfpool_engine=debug,warn`).
fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("VFPOOL_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .with(filter)
        .try_init();
}

/// Prints the error result on stdout (where the runtime reads it) and fails.
fn fail(e: &CniError) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", e.to_json_latest());
    ExitCode::FAILURE
}
