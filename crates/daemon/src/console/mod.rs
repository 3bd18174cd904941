//! The web console: server-rendered HTML ([`maud`] escapes every value) from the engine's
//! own views, one small script (`static/console.js`) that sends forms as JSON to the REST
//! API, shows an error next to the field the API names, and keeps the page live from
//! `/api/v1/events`. The static files are in the binary.
//!
//! Pages read the engine directly (the same calls the API makes); every change goes
//! through the API, so the console has no write path of its own.

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::Markup;
use serde::Deserialize;

use crate::auth::{self, COOKIE};
use crate::error::ApiError;
use crate::state::AppState;

mod data;
mod pages;

pub use data::{CellKind, VfCell};

/// The one script and the style sheet, embedded.
const CONSOLE_JS: &str = include_str!("../../static/console.js");
const CONSOLE_CSS: &str = include_str!("../../static/console.css");

/// Every console route (the guard in [`crate::auth`] applies to them as to the API).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/nics") }))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/hosts", get(hosts))
        .route("/nics", get(nics))
        .route("/nics/{nic}", get(nic_map))
        .route("/nics/{nic}/map", get(nic_map_fragment))
        .route("/pools", get(pools))
        .route("/leases", get(leases))
        .route("/networks", get(networks))
        .route("/vms", get(vms))
        .route("/vms/{vm}", get(vm))
        .route(
            "/static/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route(
            "/static/console.css",
            get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }),
        )
}

fn asset(mime: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// A page, or the engine's error as a page with the API's status.
fn page(r: Result<Markup, ApiError>, s: &AppState) -> Response {
    match r {
        Ok(m) => m.into_response(),
        Err(e) => (e.status, pages::error(&e.body, s.auth().required())).into_response(),
    }
}

async fn hosts(State(s): State<AppState>) -> Response {
    let cx = pages::Cx::of(&s);
    page(data::hosts(&s).await.map(|h| pages::hosts(&h, cx)), &s)
}

async fn nics(State(s): State<AppState>) -> Response {
    let cx = pages::Cx::of(&s);
    page(
        s.with_host(|h| h.nics())
            .await
            .map(|n| pages::nics(&n.view, &n.warnings, cx)),
        &s,
    )
}

async fn nic_map(State(s): State<AppState>, Path(nic): Path<String>) -> Response {
    let cx = pages::Cx::of(&s);
    page(
        data::vf_map(&s, nic).await.map(|m| pages::nic_map(&m, cx)),
        &s,
    )
}

/// The VF map alone (what the page swaps in on a change).
async fn nic_map_fragment(State(s): State<AppState>, Path(nic): Path<String>) -> Response {
    match data::vf_map(&s, nic).await {
        Ok(m) => pages::vf_map(&m).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn pools(State(s): State<AppState>) -> Response {
    let cx = pages::Cx::of(&s);
    page(data::pools(&s).await.map(|p| pages::pools(&p, cx)), &s)
}

async fn leases(State(s): State<AppState>) -> Response {
    let cx = pages::Cx::of(&s);
    page(data::leases(&s).await.map(|l| pages::leases(&l, cx)), &s)
}

async fn networks(State(s): State<AppState>) -> Response {
    let cx = pages::Cx::of(&s);
    page(
        data::networks(&s).await.map(|n| pages::networks(&n, cx)),
        &s,
    )
}

async fn vms(State(s): State<AppState>) -> Response {
    let cx = pages::Cx::of(&s);
    page(data::vms(&s).await.map(|v| pages::vms(&v, cx)), &s)
}

async fn vm(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let cx = pages::Cx::of(&s);
    page(
        s.engine(move |_, e| Ok((e.vm_show(&name)?, e.l3_list()?)))
            .await
            .map(|(v, l3)| pages::vm(&v, &l3, cx)),
        &s,
    )
}

// ---- login -----------------------------------------------------------------------------

#[derive(Deserialize)]
struct LoginForm {
    /// Missing is the same as wrong.
    #[serde(default)]
    token: String,
}

/// The cookie's attributes: only this site's requests carry it, no script reads it.
const COOKIE_ATTRS: &str = "HttpOnly; SameSite=Strict; Path=/";

async fn login_form(State(s): State<AppState>) -> Response {
    if !s.auth().required() {
        return Redirect::to("/").into_response();
    }
    pages::login(None).into_response()
}

/// `POST /login`: a valid token (admin or read-only) becomes the cookie.
async fn login(State(s): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    if !s.auth().required() {
        return Redirect::to("/").into_response();
    }
    let token = f.token.trim();
    if s.auth().check(token.as_bytes()).is_none() {
        tracing::warn!("console login refused: the token is not valid");
        return (
            StatusCode::UNAUTHORIZED,
            pages::login(Some("the token is not valid")),
        )
            .into_response();
    }
    // A cookie's value cannot hold every character a token may have (RFC 6265's
    // cookie-octet): such a token works with `Authorization: Bearer` only.
    let cookie_safe = token
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'));
    let cookie = format!("{COOKIE}={token}; {COOKIE_ATTRS}");
    match HeaderValue::from_str(&cookie) {
        Ok(v) if cookie_safe => {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().insert(header::SET_COOKIE, v);
            r
        }
        _ => (
            StatusCode::BAD_REQUEST,
            pages::login(Some(
                "this token has characters a cookie cannot hold (\", ; \\ or non-ASCII); use it with Authorization: Bearer",
            )),
        )
            .into_response(),
    }
}

/// `POST /logout`: the cookie is cleared.
async fn logout() -> Response {
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("vfpool_token=; Max-Age=0; HttpOnly; SameSite=Strict; Path=/"),
    );
    r
}

/// Whether a path is a console page (an unauthenticated `GET` of one is sent to the login
/// form rather than answered with JSON).
pub fn is_page(path: &str) -> bool {
    !path.starts_with("/api/") && path != "/metrics" && path != "/healthz" && !auth::is_public(path)
}
