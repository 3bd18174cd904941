//! Who may call: bearer tokens (an admin one, a read-only one apart), compared in constant
//! time; the console's cookie carries the same token. Without a token (the default: a unix
//! socket and loopback only) every caller on the host is trusted, but a browser page from
//! another site is not: mutating requests with a foreign `Origin` are refused, and the
//! `Host` must name the loopback (no DNS rebinding).

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use vfpool_model::InvalidValue;

use crate::error::{ApiError, DaemonError};
use crate::state::AppState;

/// The console's cookie, holding the token (HttpOnly, SameSite=Strict).
pub const COOKIE: &str = "vfpool_token";

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    Admin,
    /// `GET` and `HEAD` only.
    Read,
}

/// The tokens the daemon was given.
#[derive(Default)]
pub struct Auth {
    admin: Option<Vec<u8>>,
    read: Option<Vec<u8>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("admin", &self.admin.is_some())
            .field("read", &self.read.is_some())
            .finish()
    }
}

/// The shortest token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

impl Auth {
    /// No token: every caller is trusted (unix socket and loopback only).
    pub fn none() -> Self {
        Self::default()
    }

    /// Tokens as given (tests); each at least [`MIN_TOKEN_CHARS`] long.
    pub fn with_tokens(admin: Option<&str>, read: Option<&str>) -> Result<Self, InvalidValue> {
        let check = |field: &'static str, t: &str| {
            if t.chars().count() < MIN_TOKEN_CHARS
                || t.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                Err(InvalidValue::new(
                    field,
                    "(hidden)",
                    format!(
                        "at least {MIN_TOKEN_CHARS} characters without spaces or control characters"
                    ),
                ))
            } else {
                Ok(t.as_bytes().to_vec())
            }
        };
        if admin.is_none() && read.is_some() {
            return Err(InvalidValue::new(
                "read-token-file",
                "(given)",
                "only together with --token-file (a read-only token needs an admin one)",
            ));
        }
        Ok(Self {
            admin: admin.map(|t| check("token-file", t)).transpose()?,
            read: read.map(|t| check("read-token-file", t)).transpose()?,
        })
    }

    /// Tokens read from files (the first line, without its line end).
    pub fn from_files(admin: Option<&Path>, read: Option<&Path>) -> Result<Self, DaemonError> {
        let load = |p: Option<&Path>| -> Result<Option<String>, DaemonError> {
            p.map(|p| {
                std::fs::read_to_string(p)
                    .map(|s| s.lines().next().unwrap_or("").to_string())
                    .map_err(|source| DaemonError::TokenFile {
                        path: p.to_owned(),
                        source,
                    })
            })
            .transpose()
        };
        Ok(Self::with_tokens(
            load(admin)?.as_deref(),
            load(read)?.as_deref(),
        )?)
    }

    /// Whether callers must present a token.
    pub fn required(&self) -> bool {
        self.admin.is_some()
    }

    /// What a presented token allows, if anything.
    pub fn check(&self, presented: &[u8]) -> Option<Access> {
        let eq = |t: &Option<Vec<u8>>| {
            t.as_ref()
                .is_some_and(|t| bool::from(t.as_slice().ct_eq(presented)))
        };
        if eq(&self.admin) {
            Some(Access::Admin)
        } else if eq(&self.read) {
            Some(Access::Read)
        } else {
            None
        }
    }
}

/// The token a request presents: `Authorization: Bearer T`, else the console's cookie.
/// Says which, since a cookie needs a same-origin check on changes.
fn presented(headers: &HeaderMap) -> Option<(Vec<u8>, bool)> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        return v
            .strip_prefix(b"Bearer ")
            .map(|t| (t.trim_ascii().to_vec(), false));
    }
    cookie(headers, COOKIE).map(|t| (t, true))
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .filter_map(|kv| {
            let kv = kv.trim_ascii();
            let eq = kv.iter().position(|b| *b == b'=')?;
            (&kv[..eq] == name.as_bytes()).then(|| kv[eq + 1..].to_vec())
        })
        .next()
}

fn mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The host part of a `Host` header or of an origin's authority (`[::1]:7878` → `[::1]`).
fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        authority.find(']').map_or(authority, |i| &authority[..=i])
    } else {
        authority.split(':').next().unwrap_or(authority)
    }
}

/// Whether `Origin` names the server the request was sent to (`Host`).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// Paths anyone may read: the console's login page (and logout, which only clears the
/// cookie) and its static files, health.
pub fn is_public(path: &str) -> bool {
    path == "/login" || path == "/logout" || path == "/healthz" || path.starts_with("/static/")
}

/// The middleware that applies the rules above to every request.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match allow(state.auth(), &req) {
        Ok(()) => next.run(req).await,
        // A person opening a console page without a valid token gets the login form.
        Err(e)
            if e.status == StatusCode::UNAUTHORIZED
                && *req.method() == Method::GET
                && crate::console::is_page(req.uri().path()) =>
        {
            axum::response::Redirect::to("/login").into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn allow(auth: &Auth, req: &Request) -> Result<(), ApiError> {
    let headers = req.headers();
    let changes = mutating(req.method());
    // A browser sends Origin on every cross-site change: a page elsewhere never acts here.
    if changes && headers.contains_key(header::ORIGIN) && !same_origin(headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a change from another origin is refused (Origin does not match Host)",
        ));
    }
    if !auth.required() {
        // Trusted by where it comes from (unix socket, loopback): refuse a Host that is not
        // the loopback, or a page on a rebound DNS name could read the API.
        if let Some(h) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
            let h = host_part(h);
            if !matches!(h, "127.0.0.1" | "localhost" | "[::1]") {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "host '{h}' refused: without a token the daemon answers only to 127.0.0.1, localhost or [::1]"
                    ),
                ));
            }
        }
        return Ok(());
    }
    if is_public(req.uri().path()) {
        return Ok(());
    }
    let Some((token, by_cookie)) = presented(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a token is required: Authorization: Bearer TOKEN",
        ));
    };
    match auth.check(&token) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token is not valid",
        )),
        Some(Access::Read) if changes => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the read-only token cannot change anything",
        )),
        Some(_) if changes && by_cookie && !same_origin(headers) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a change made with the console's cookie needs an Origin matching Host",
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().method(method).uri("/api/v1/nics");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    const ADMIN: &str = "admin-token-0123456789";
    const READ: &str = "read-token-0123456789";

    fn auth() -> Auth {
        Auth::with_tokens(Some(ADMIN), Some(READ)).unwrap()
    }

    #[test]
    fn tokens_decide_access() {
        let a = auth();
        let bearer = |t: &str| format!("Bearer {t}");
        assert!(allow(&a, &req(Method::GET, &[])).is_err());
        assert_eq!(
            allow(
                &a,
                &req(
                    Method::GET,
                    &[("authorization", &bearer("wrong-token-0123456789"))]
                )
            )
            .unwrap_err()
            .status,
            StatusCode::UNAUTHORIZED
        );
        assert!(allow(&a, &req(Method::GET, &[("authorization", &bearer(READ))])).is_ok());
        assert_eq!(
            allow(&a, &req(Method::POST, &[("authorization", &bearer(READ))]))
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert!(allow(&a, &req(Method::POST, &[("authorization", &bearer(ADMIN))])).is_ok());
    }

    #[test]
    fn a_cookie_change_needs_the_same_origin() {
        let a = auth();
        let c = format!("theme=dark; {COOKIE}={ADMIN}");
        assert!(allow(&a, &req(Method::GET, &[("cookie", &c)])).is_ok());
        assert!(
            allow(
                &a,
                &req(Method::POST, &[("cookie", &c), ("host", "h:7878")])
            )
            .is_err()
        );
        assert!(
            allow(
                &a,
                &req(
                    Method::POST,
                    &[
                        ("cookie", &c),
                        ("host", "h:7878"),
                        ("origin", "http://h:7878")
                    ]
                )
            )
            .is_ok()
        );
        assert!(
            allow(
                &a,
                &req(
                    Method::POST,
                    &[
                        ("cookie", &c),
                        ("host", "h:7878"),
                        ("origin", "http://evil:7878")
                    ]
                )
            )
            .is_err()
        );
    }

    #[test]
    fn without_a_token_only_loopback_hosts_and_no_foreign_origin() {
        let a = Auth::none();
        assert!(allow(&a, &req(Method::GET, &[("host", "127.0.0.1:7878")])).is_ok());
        assert!(allow(&a, &req(Method::GET, &[("host", "[::1]:7878")])).is_ok());
        assert!(allow(&a, &req(Method::GET, &[("host", "localhost")])).is_ok());
        assert!(allow(&a, &req(Method::GET, &[("host", "rebound.example:7878")])).is_err());
        assert!(
            allow(
                &a,
                &req(
                    Method::POST,
                    &[
                        ("host", "127.0.0.1:7878"),
                        ("origin", "http://evil.example")
                    ]
                )
            )
            .is_err()
        );
    }

    #[test]
    fn bad_tokens_are_refused_naming_the_option() {
        let e = Auth::with_tokens(Some("short"), None).unwrap_err();
        assert_eq!(e.field, "token-file");
        assert!(!e.to_string().contains("short"), "{e}");
        let e = Auth::with_tokens(None, Some(READ)).unwrap_err();
        assert_eq!(e.field, "read-token-file");
        let e = Auth::with_tokens(Some("has a space in it, long enough"), None).unwrap_err();
        assert_eq!(e.field, "token-file");
    }
}
