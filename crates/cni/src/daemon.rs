//! The plugin as a client of `vfpool serve`: the daemon keeps the ledger open and runs the
//! same verbs ([`crate::plugin::run_with`]) with one of its engines, so a call costs the
//! plugin process a connect, one request and one answer instead of opening SQLite,
//! rebuilding the WAL index and committing durably itself.
//!
//! The wire: one HTTP/1.1 request on the daemon's unix socket (mode 0600: the peer is root
//! on the host), `POST /api/v1/cni` with a JSON [`Request`], `Connection: close`; the answer
//! is read to its end and parsed with `httparse`. HTTP because the daemon already serves
//! HTTP on that socket (one listener, one router); a hand-written request line and the
//! `httparse` parser (no dependencies) keep the static plugin small.
//!
//! - `200`: an [`Answer`], exactly what the plugin prints and its exit status.
//! - `409`: the daemon serves another host (state directory, sysfs root, netlink backend:
//!   [`HostId`]); the plugin does the work itself.
//! - Any other `4xx` (a daemon without this endpoint answers `404`): the daemon declined
//!   before doing anything; the plugin does the work itself.
//! - No socket, or nobody listening (`ENOENT`, `ECONNREFUSED`): the plugin does the work
//!   itself (logged at debug).
//! - Anything else once the request was sent (`5xx`, a broken answer, the connection
//!   lost): the daemon may have done the work, so the plugin does not do it again and
//!   fails with code 11 (try again).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::PluginConf;
use crate::spec::CniError;

/// The endpoint's path.
pub const PATH: &str = "/api/v1/cni";

/// The variables the plugin passes on (what [`crate::CniEnv::from_vars`] reads).
pub const VARS: [&str; 9] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "VFPOOL_STATE",
    "VFPOOL_SYSFS_ROOT",
    "VFPOOL_PROC_ROOT",
];

/// What the plugin sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The [`VARS`] the plugin was given, as (name, value).
    pub env: Vec<(String, String)>,
    /// The network config from stdin (JSON, so UTF-8: the plugin parsed it already).
    pub stdin: String,
    /// The host the plugin would open itself.
    pub host: HostId,
}

/// Which host a ledger belongs to: the plugin's and the daemon's must be the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostId {
    /// The state directory, absolute.
    pub state: PathBuf,
    /// Where sysfs is (`/sys` on a real host).
    pub sysfs_root: PathBuf,
    /// The kernel's rtnetlink on a simulated sysfs tree (`VFPOOL_NETLINK=kernel`).
    pub kernel_netlink: bool,
}

impl HostId {
    /// The host the plugin would open for `conf` (its fields, else the process's
    /// `VFPOOL_*` variables, else the defaults).
    pub fn of(conf: &PluginConf) -> Result<Self, CniError> {
        let state = conf
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(vfpool_engine::backend::DEFAULT_STATE));
        let state = std::path::absolute(&state).map_err(|e| {
            CniError::io(format!(
                "cannot make the state directory '{}' absolute: {e}",
                state.display()
            ))
        })?;
        let kernel_netlink = match conf.kernel_netlink {
            Some(k) => k,
            None => {
                vfpool_engine::backend::kernel_netlink_from_env().map_err(CniError::invalid_env)?
            }
        };
        Ok(Self {
            state,
            sysfs_root: conf
                .sysfs_root
                .clone()
                .unwrap_or_else(|| PathBuf::from("/sys")),
            kernel_netlink,
        })
    }
}

/// What the daemon answers (`200`): what the plugin prints on stdout, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub stdout: String,
    pub exit: u8,
}

impl Answer {
    /// What the plugin prints for the outcome of a verb: the result (or nothing) and 0, or
    /// the error result and 1.
    pub fn of(out: &Result<Option<String>, CniError>) -> Self {
        match out {
            Ok(Some(text)) => Self {
                stdout: format!("{text}\n"),
                exit: 0,
            },
            Ok(None) => Self {
                stdout: String::new(),
                exit: 0,
            },
            Err(e) => Self {
                stdout: format!("{}\n", e.to_json_latest()),
                exit: 1,
            },
        }
    }
}

/// What the daemon answers when it serves another host (`409`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherHost {
    /// The daemon's own host.
    pub host: HostId,
    pub message: String,
}

/// Why the daemon did not answer.
#[derive(Debug)]
pub enum CallError {
    /// Nothing was done there (no daemon, another host, the endpoint declined): do the
    /// work in this process.
    Unavailable(String),
    /// The request was sent but no answer came back: the work may be done.
    Failed(String),
}

/// Sends `req` to the daemon at `socket` and reads its answer.
pub fn call(socket: &Path, req: &Request) -> Result<Answer, CallError> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        CallError::Unavailable(format!("cannot connect to {}: {e}", socket.display()))
    })?;
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        CallError::Failed(format!(
            "vfpool daemon at {}: {what}: {e}",
            socket.display()
        ))
    };
    let body = serde_json::to_vec(req).map_err(|e| failed("cannot encode the request", &e))?;
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(&body))
        .map_err(|e| failed("cannot send the request", &e))?;
    let mut buf = Vec::with_capacity(4096);
    s.read_to_end(&mut buf)
        .map_err(|e| failed("cannot read the answer", &e))?;
    let (status, body) = parse_response(&buf).map_err(|e| failed("a broken answer", &e))?;
    match status {
        200 => serde_json::from_slice(body).map_err(|e| failed("a broken answer", &e)),
        409 => {
            let why = serde_json::from_slice::<OtherHost>(body)
                .map(|o| o.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
            Err(CallError::Unavailable(why))
        }
        400..=499 => Err(CallError::Unavailable(format!(
            "the daemon at {} declined ({status}): {}",
            socket.display(),
            String::from_utf8_lossy(body).trim()
        ))),
        _ => Err(CallError::Failed(format!(
            "vfpool daemon at {}: status {status}: {}",
            socket.display(),
            String::from_utf8_lossy(body).trim()
        ))),
    }
}

/// The status and the body (by `Content-Length`) of a whole HTTP/1.1 response.
fn parse_response(buf: &[u8]) -> Result<(u16, &[u8]), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let start = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(format!("{} bytes, the head incomplete", buf.len()));
        }
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.code.ok_or("no status")?;
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or("no Content-Length")?;
    let body = buf
        .get(start..start.saturating_add(len))
        .ok_or_else(|| format!("the body cut at {} of {len} bytes", buf.len() - start))?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_response_is_read_by_its_length() {
        let r = b"HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\n{}xyz";
        assert_eq!(parse_response(r).unwrap(), (409, &b"{}xy"[..]));
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}";
        assert!(parse_response(cut).unwrap_err().contains("cut at 2 of 10"));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap_err(), "no Content-Length");
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\n")
                .unwrap_err()
                .contains("incomplete")
        );
    }

    #[test]
    fn answers_are_what_the_plugin_prints() {
        assert_eq!(
            Answer::of(&Ok(Some("{}".into()))),
            Answer {
                stdout: "{}\n".into(),
                exit: 0
            }
        );
        assert_eq!(Answer::of(&Ok(None)).stdout, "");
        let e = Answer::of(&Err(CniError::try_again("busy")));
        assert_eq!(e.exit, 1);
        assert!(e.stdout.contains("\"code\":11"), "{}", e.stdout);
    }

    #[test]
    fn no_socket_is_unavailable() {
        let d = tempfile::tempdir().unwrap();
        let req = Request {
            env: vec![],
            stdin: "{}".into(),
            host: HostId {
                state: d.path().into(),
                sysfs_root: "/sys".into(),
                kernel_netlink: false,
            },
        };
        assert!(matches!(
            call(&d.path().join("api.sock"), &req),
            Err(CallError::Unavailable(_))
        ));
        // A socket file nobody listens on: connection refused.
        let l = std::os::unix::net::UnixListener::bind(d.path().join("dead.sock")).unwrap();
        drop(l);
        assert!(matches!(
            call(&d.path().join("dead.sock"), &req),
            Err(CallError::Unavailable(_))
        ));
    }
}
