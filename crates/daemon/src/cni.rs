//! `POST /api/v1/cni`: the CNI plugin's verbs, run here for `vfpool-cni` with one of the
//! daemon's open engines (no SQLite open and WAL index rebuild per call). The same code as
//! the plugin's in-process path ([`vfpool_cni::plugin::run_with`]); the answer is exactly
//! what the plugin would print and its exit status ([`vfpool_cni::daemon::Answer`]).
//!
//! Served on the unix socket only: [`crate::server::serve`] merges [`router`] into the
//! unix listener's router and not into the TCP one, where the path does not exist (`404`).
//! The socket is mode 0600, so the peer is root on the host, as a runtime running a CNI
//! plugin is: the route sits outside the token guard, like the plugin binary itself. The
//! plugin's paths (`CNI_NETNS`, `CNI_PATH`, the device-info file) are resolved in the
//! daemon's mount namespace, which must be the host's, as the plugin's is.
//!
//! After answering: the packet socket of a gratuitous ARP is closed by a thread of its own
//! ([`vfpool_netlink::announce::close_sockets_in_background`]), since closing it waits for
//! an RCU grace period (10-12 ms) after the frames are out.

use std::path::Path;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use vfpool_cni::daemon::{Answer, HostId, OtherHost, PATH, Request};
use vfpool_cni::plugin::{Engines, run_with};
use vfpool_cni::{CniEnv, CniError, Command, PluginConf};
use vfpool_engine::Host;

use crate::error::ApiError;
use crate::state::AppState;

/// The largest request accepted (a config with a `prevResult`, the variables).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The route, for the unix listener only.
pub fn router(state: AppState) -> Router {
    vfpool_netlink::announce::close_sockets_in_background();
    Router::new()
        .route(PATH, post(cni))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// This daemon's host, as the plugin names its own.
pub fn host_id(host: &Host) -> HostId {
    HostId {
        state: host.state_dir().to_owned(),
        sysfs_root: host.paths.sys.clone(),
        kernel_netlink: host.kernel_netlink(),
    }
}

/// Whether the plugin's host is this daemon's; else what differs.
pub fn same_host(host: &Host, theirs: &HostId) -> Result<(), String> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let mine = host_id(host);
    if canon(&mine.state) != canon(&theirs.state) {
        return Err(format!(
            "the daemon's state directory is {}, the plugin's {}",
            mine.state.display(),
            theirs.state.display()
        ));
    }
    if canon(&mine.sysfs_root) != canon(&theirs.sysfs_root) {
        return Err(format!(
            "the daemon's sysfs root is {}, the plugin's {}",
            mine.sysfs_root.display(),
            theirs.sysfs_root.display()
        ));
    }
    // On a real host netlink is the kernel's whatever was asked.
    if host.is_simulated() && mine.kernel_netlink != theirs.kernel_netlink {
        let name = |k: bool| if k { "kernel" } else { "auto" };
        return Err(format!(
            "the daemon's netlink is {}, the plugin's {}",
            name(mine.kernel_netlink),
            name(theirs.kernel_netlink)
        ));
    }
    Ok(())
}

async fn cni(State(state): State<AppState>, Json(req): Json<Request>) -> Response {
    if let Err(message) = same_host(state.host(), &req.host) {
        tracing::debug!(%message, "cni: another host's call declined");
        let host = host_id(state.host());
        return (StatusCode::CONFLICT, Json(OtherHost { host, message })).into_response();
    }
    let env = CniEnv::from_vars(req.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let command = env.as_ref().map(|e| e.command).ok();
    let out = match env {
        Err(e) => Answer::of(&Err(e)),
        Ok(env) => {
            let stdin = req.stdin;
            match state
                .engine(move |_, engine| Ok(run(&env, stdin.as_bytes(), engine)))
                .await
            {
                Ok(a) => a,
                Err(e) => Answer::of(&Err(no_engine(command, &e))),
            }
        }
    };
    if matches!(command, Some(Command::Add | Command::Del | Command::Gc)) {
        state.changed();
    }
    Json(out).into_response()
}

/// The verb of `env`, as the plugin runs it, with `engine`.
fn run(env: &CniEnv, stdin: &[u8], engine: &mut vfpool_engine::Engine) -> Answer {
    let out = PluginConf::parse(stdin, env)
        .and_then(|conf| run_with(env, &conf, &mut Engines::Lent(engine)));
    if let Err(e) = &out {
        tracing::warn!(command = %env.command, code = e.code, error = %e.msg, "cni: failed");
    }
    Answer::of(&out)
}

/// The daemon could not lend an engine (the ledger would not open): the error the plugin
/// gives when it cannot open one itself.
fn no_engine(command: Option<Command>, e: &ApiError) -> CniError {
    let msg = format!("vfpool daemon: {}", e.body.message);
    if command == Some(Command::Status) {
        return CniError::not_available(msg);
    }
    let code = match e.body.kind.as_str() {
        "busy" => CniError::TRY_AGAIN,
        "corrupt-state" => vfpool_cni::plugin::CORRUPT_STATE,
        _ => CniError::IO,
    };
    CniError::new(code, msg).with_details(format!("vfpool error kind: {}", e.body.kind))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_plugin_looks_where_the_daemon_listens() {
        assert_eq!(
            vfpool_cni::DEFAULT_DAEMON_SOCKET,
            crate::server::DEFAULT_SOCKET
        );
    }
}
