//! `vfpool-cni`: the CNI plugin binary. Stdout carries only results and error results;
//! logs go to stderr.

use std::io::Write;
use std::process::ExitCode;

use vfpool_cni::daemon::{self, Answer, CallError, HostId};
use vfpool_cni::plugin::Engines;
use vfpool_cni::{CniEnv, CniError, Command, PluginConf, SUPPORTED_VERSIONS, version_output};

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
VFPOOL_SYSFS_ROOT / VFPOOL_NETLINK.
With vfpool serve running on the same host (its socket: vfpoolDaemonSocket, default
/run/vfpool/api.sock; \"\" never asks it), the daemon does the work with its ledger open;
without it, the plugin does it itself.";

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
    if env.command == Command::Version {
        return print(&Answer::of(&Ok(Some(version_output()))));
    }
    let conf = match PluginConf::parse(&stdin, &env) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if let Some(socket) = &conf.daemon_socket {
        match through_daemon(socket, &env, &conf, stdin) {
            Ok(answer) => return print(&answer),
            Err(CallError::Unavailable(why)) => {
                tracing::debug!(socket = %socket.display(), reason = %why, "not through the daemon: doing the work here");
            }
            Err(CallError::Failed(why)) => {
                let e = CniError::try_again(why);
                tracing::warn!(command = %env.command, error = %e.msg, "failed");
                return fail(&e);
            }
        }
    }
    let out = vfpool_cni::plugin::run_with(&env, &conf, &mut Engines::per_call());
    if let Err(e) = &out {
        tracing::warn!(command = %env.command, code = e.code, error = %e.msg, "failed");
    }
    print(&Answer::of(&out))
}

/// Asks `vfpool serve` at `socket` to run the verb.
fn through_daemon(
    socket: &std::path::Path,
    env: &CniEnv,
    conf: &PluginConf,
    stdin: Vec<u8>,
) -> Result<Answer, CallError> {
    let host = HostId::of(conf).map_err(|e| CallError::Unavailable(e.msg))?;
    let stdin = String::from_utf8(stdin)
        .map_err(|_| CallError::Unavailable("the config is not UTF-8".into()))?;
    let mut vars = Vec::new();
    for k in daemon::VARS {
        if let Some(v) = std::env::var_os(k) {
            let v = v.into_string().map_err(|_| {
                CallError::Unavailable(format!("{k} is not UTF-8 (the request is JSON)"))
            })?;
            vars.push((k.to_owned(), v));
        }
    }
    tracing::debug!(socket = %socket.display(), command = %env.command, "through the daemon");
    daemon::call(
        socket,
        &daemon::Request {
            env: vars,
            stdin,
            host,
        },
    )
}

/// Prints an answer (the result, or the error result) and exits with its status.
fn print(a: &Answer) -> ExitCode {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(a.stdout.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::from(a.exit)
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
