//! `vfpool --api URL`: the REST API of a running daemon (`vfpool serve`) as the CLI's
//! backend. One HTTP/1.1 request per connection (hyper) over TCP, TLS (rustls) or the
//! daemon's unix socket, on a current-thread tokio runtime; success bodies are the engine's
//! views, errors the daemon's `{"error": {"kind", "message"}}` ([`ApiFailure`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use vfpool_engine::{ErrorKind, Shown};
use vfpool_model::InvalidValue;

/// What `--api` takes.
const API_ALLOWED: &str = "http://HOST:PORT, https://HOST[:PORT] or unix:/path/to/api.sock";

/// A request the daemon refused or could not do: its error JSON, printed as the local
/// command prints the same error (`error: MESSAGE`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    /// `invalid-input`, `not-found`, ... (the engine's kinds), or `unauthorized`,
    /// `forbidden`, `too-large`, `unsupported-media-type`.
    pub kind: String,
    pub message: String,
}

impl ApiFailure {
    /// The engine's kind, for the exit status; the daemon's own kinds (`unauthorized`,
    /// `forbidden`, ...) are refusals.
    pub fn engine_kind(&self) -> ErrorKind {
        use ErrorKind as K;
        [
            K::InvalidInput,
            K::NotFound,
            K::Conflict,
            K::Busy,
            K::Exhausted,
            K::Refused,
            K::Io,
            K::CorruptState,
        ]
        .into_iter()
        .find(|k| k.as_str() == self.kind)
        .unwrap_or(K::Refused)
    }
}

/// The daemon could not be reached or answered something that is not the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the token file {path}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot connect to the daemon at {url}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the request to the daemon at {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("the daemon at {url} answered {status} to {method} {path}: {reason}")]
    Answer {
        url: String,
        status: StatusCode,
        method: Method,
        path: String,
        reason: String,
    },
    #[error(
        "`vfpool {command}` runs only on the host itself (the daemon's API does not cover it): run it without --api"
    )]
    NotCovered { command: &'static str },
    #[error("cannot start the HTTP client")]
    Runtime(#[source] std::io::Error),
}

enum Target {
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
        connector: tokio_rustls::TlsConnector,
        name: rustls::pki_types::ServerName<'static>,
    },
    Unix(PathBuf),
}

/// A daemon's API.
pub struct Client {
    url: String,
    target: Target,
    /// The `Host` header: the URL's authority (`localhost` on the unix socket).
    authority: String,
    token: Option<String>,
    rt: tokio::runtime::Runtime,
}

/// `--api`, `--token-file`, `--ca-file`.
pub struct ClientConfig<'a> {
    pub url: &'a str,
    pub token_file: Option<&'a Path>,
    pub ca_file: Option<&'a Path>,
}

impl Client {
    pub fn new(cfg: &ClientConfig<'_>) -> anyhow::Result<Self> {
        let url = cfg.url.trim();
        let bad = || InvalidValue::new("api", url, API_ALLOWED);
        let (target, authority) = if let Some(path) = url.strip_prefix("unix:") {
            // `unix:/run/vfpool/api.sock`; `unix:///run/...` as well.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad().into());
            }
            (Target::Unix(PathBuf::from(path)), "localhost".to_owned())
        } else {
            let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
                (true, r)
            } else if let Some(r) = url.strip_prefix("http://") {
                (false, r)
            } else {
                return Err(bad().into());
            };
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
                return Err(bad().into());
            }
            let (host, port) =
                split_authority(authority, if tls { 443 } else { 80 }).ok_or_else(bad)?;
            let target = if tls {
                let name =
                    rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| bad())?;
                Target::Tls {
                    host,
                    port,
                    connector: tls_connector(cfg.ca_file)?,
                    name,
                }
            } else {
                Target::Tcp { host, port }
            };
            (target, authority.to_owned())
        };
        if cfg.ca_file.is_some() && !matches!(target, Target::Tls { .. }) {
            return Err(InvalidValue::new(
                "ca-file",
                cfg.ca_file
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                "only with an https:// --api",
            )
            .into());
        }
        let token = match cfg.token_file {
            Some(p) => Some(read_token(p)?),
            None => None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        Ok(Self {
            url: url.to_owned(),
            target,
            authority,
            token,
            rt,
        })
    }

    /// `GET path`: the view and its warnings (`Vfpool-Warning` headers).
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Shown<T>> {
        self.call::<T, ()>(Method::GET, path, None)
    }

    /// A request with a JSON body (or none): the view and its warnings.
    pub fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<Shown<T>> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let (status, warnings, bytes) = self.rt.block_on(self.send(&method, path, body))?;
        let answer = |reason: String| ClientError::Answer {
            url: self.url.clone(),
            status,
            method: method.clone(),
            path: path.to_owned(),
            reason,
        };
        if !status.is_success() {
            let e: vfpool_daemon::error::ErrorResponse =
                serde_json::from_slice(&bytes).map_err(|_| answer(first_line(&bytes)))?;
            return Err(ApiFailure {
                kind: e.error.kind,
                message: e.error.message,
            }
            .into());
        }
        let view = serde_json::from_slice(&bytes)
            .map_err(|e| answer(format!("not the view expected: {e}")))?;
        Ok(Shown { view, warnings })
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<String>, Bytes), ClientError> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.http(e))?;
        let connect = |e| ClientError::Connect {
            url: self.url.clone(),
            source: e,
        };
        match &self.target {
            Target::Tcp { host, port } => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(connect)?;
                self.exchange(s, req).await
            }
            Target::Tls {
                host,
                port,
                connector,
                name,
            } => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(connect)?;
                let s = connector.connect(name.clone(), s).await.map_err(connect)?;
                self.exchange(s, req).await
            }
            Target::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p).await.map_err(connect)?;
                self.exchange(s, req).await
            }
        }
    }

    async fn exchange<S>(
        &self,
        io: S,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Vec<String>, Bytes), ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.http(e))?;
        let conn = tokio::spawn(conn);
        let resp = sender.send_request(req).await.map_err(|e| self.http(e))?;
        let status = resp.status();
        let warnings = resp
            .headers()
            .get_all("vfpool-warning")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.http(e))?
            .to_bytes();
        drop(sender);
        conn.abort();
        Ok((status, warnings, bytes))
    }

    fn http(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Http {
            url: self.url.clone(),
            reason: e.to_string(),
        }
    }
}

/// `HOST[:PORT]`, `[V6][:PORT]`.
fn split_authority(a: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        None => default_port,
    };
    Some((host.to_owned(), port))
}

fn first_line(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let l = s.lines().next().unwrap_or("").trim();
    if l.is_empty() {
        "no body".to_owned()
    } else {
        l.chars().take(200).collect()
    }
}

/// The token: the file's first line, as the daemon reads its own.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| ClientError::TokenFile {
        path: path.to_owned(),
        source: e,
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidValue::new(
            "token-file",
            path.display().to_string(),
            "a file whose first line is the token (no spaces)",
        )
        .into());
    }
    Ok(token.to_owned())
}

/// rustls over ring, trusting `ca_file`'s certificates, else the system's roots.
fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let ca = |reason: String| ClientError::CaFile {
                path: p.to_owned(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(p)
                .map_err(|e| ca(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca("no PEM certificate in it".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| ca(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // A system certificate rustls cannot use is skipped, as curl does.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(ClientError::Tls(
                    "no trusted root certificate on this system: give --ca-file".into(),
                ));
            }
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// A name as one path segment (`%XX` for everything but letters, digits and `-._~`).
pub fn seg(s: &str) -> String {
    encode(s, false)
}

/// A lease owner as the tail of `/api/v1/leases/{*owner}`: its '/' kept.
pub fn owner_path(s: &str) -> String {
    encode(s, true)
}

fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn authorities_and_paths() {
        assert_eq!(
            split_authority("127.0.0.1:7878", 80),
            Some(("127.0.0.1".into(), 7878))
        );
        assert_eq!(split_authority("[::1]:9", 80), Some(("::1".into(), 9)));
        assert_eq!(split_authority("[::1]", 443), Some(("::1".into(), 443)));
        assert_eq!(split_authority("h", 80), Some(("h".into(), 80)));
        assert_eq!(split_authority("h:0", 80), None);
        assert_eq!(split_authority("h:x", 80), None);
        assert_eq!(split_authority(":80", 80), None);
        assert_eq!(owner_path("vm/web nic?0"), "vm/web%20nic%3F0");
        assert_eq!(seg("a/b"), "a%2Fb");
    }

    /// A canned answer on a unix socket: what the client makes of it.
    fn answer(raw: &'static str) -> anyhow::Result<Shown<Vec<u32>>> {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(raw.as_bytes()).unwrap();
            String::from_utf8(req).unwrap()
        });
        let url = format!("unix:{}", sock.display());
        let c = Client::new(&ClientConfig {
            url: &url,
            token_file: None,
            ca_file: None,
        })
        .unwrap();
        let r = c.get("/api/v1/x");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /api/v1/x HTTP/1.1\r\n"), "{req}");
        assert!(
            req.to_ascii_lowercase().contains("host: localhost"),
            "{req}"
        );
        r
    }

    #[test]
    fn warnings_come_from_the_headers_and_errors_from_the_body() {
        let s = answer(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nvfpool-warning: one\r\nvfpool-warning: two\r\ncontent-length: 5\r\n\r\n[1,2]",
        )
        .unwrap();
        assert_eq!(s.view, vec![1, 2]);
        assert_eq!(s.warnings, vec!["one", "two"]);
        let e = answer(
            "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: 47\r\n\r\n{\"error\":{\"kind\":\"conflict\",\"message\":\"taken\"}}",
        )
        .unwrap_err();
        let f = e.downcast_ref::<ApiFailure>().unwrap();
        assert_eq!(
            (f.engine_kind(), f.message.as_str()),
            (ErrorKind::Conflict, "taken")
        );
        let e = answer("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 4\r\n\r\noops").unwrap_err();
        assert!(e.downcast_ref::<ApiFailure>().is_none());
        assert!(
            e.to_string()
                .contains("answered 502 Bad Gateway to GET /api/v1/x: oops"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_url_names_the_option() {
        for url in [
            "ftp://x",
            "http://",
            "unix:",
            "http://h:70000",
            "http://h/x",
        ] {
            let e = Client::new(&ClientConfig {
                url,
                token_file: None,
                ca_file: None,
            })
            .err()
            .unwrap();
            assert_eq!(
                e.to_string(),
                format!("invalid api '{url}': {API_ALLOWED}"),
                "{url}"
            );
        }
    }
}
