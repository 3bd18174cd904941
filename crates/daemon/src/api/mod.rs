//! The REST API under `/api/v1/`: one module per resource. Handlers parse, make one engine
//! call, and answer with the engine's view types (the CLI's `-o json`); warnings a view
//! carries go in `Vfpool-Warning` headers.
//!
//! Every route is declared once, with its `#[utoipa::path]`: [`router`] registers it and
//! [`openapi`] documents it from the same declaration (utoipa-axum's `routes!`), so the
//! document at `GET /api/v1/openapi.json` cannot miss a route. Request bodies are read by
//! [`Body`]: unknown fields refused, and a body that does not parse is a 400 naming the
//! field (`nics[0].type`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vfpool_engine::view::Shown;
use vfpool_engine::{ErrorKind, PoolDeleted};
use vfpool_model::InvalidValue;

use crate::error::{ApiError, ErrorResponse};
use crate::state::AppState;

pub mod events;
pub mod host;
pub mod leases;
pub mod net;
pub mod nics;
pub mod pools;
pub mod vms;

/// The document's own path.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vfpool",
        description = "SR-IOV VF pools, leases, networks and VMs of one host (`vfpool serve`). \
            Bodies are the CLI's `-o json` views; errors are `{\"error\": {\"kind\", \"message\", \"field\"?}}`."
    ),
    paths(leases::show, leases::release),
    components(schemas(ErrorResponse, PoolDeleted)),
    tags(
        (name = "host", description = "Host readiness and the IOMMU"),
        (name = "nics", description = "Physical NICs and their VFs"),
        (name = "pools", description = "Named sets of VFs"),
        (name = "leases", description = "VFs leased to owners"),
        (name = "networks", description = "L2 and L3 networks"),
        (name = "vms", description = "VMs and their NICs"),
    )
)]
struct ApiDoc;

/// Every route with its documentation.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(host::check))
        .routes(routes!(host::iommu_status, host::iommu_change))
        .routes(routes!(nics::list))
        .routes(routes!(nics::show))
        .routes(routes!(nics::split))
        .routes(routes!(nics::restore))
        .routes(routes!(pools::list, pools::create))
        .routes(routes!(pools::show, pools::delete))
        .routes(routes!(leases::list, leases::acquire))
        // Owners contain '/' (`vm/web/nic0`): a wildcard, which the document spells
        // `{owner}` (ApiDoc's `paths`).
        .route(
            "/api/v1/leases/{*owner}",
            axum::routing::get(leases::show).delete(leases::release),
        )
        .routes(routes!(leases::gc))
        .routes(routes!(net::l2_list, net::l2_create))
        .routes(routes!(net::l2_show, net::l2_set, net::l2_delete))
        .routes(routes!(net::l3_list, net::l3_create))
        .routes(routes!(net::l3_show, net::l3_delete))
        .routes(routes!(vms::list, vms::create))
        .routes(routes!(vms::show, vms::delete))
        .routes(routes!(vms::start))
        .routes(routes!(vms::stop))
        .routes(routes!(vms::nic_add))
        .routes(routes!(vms::nic_remove, vms::nic_set_type))
}

/// The OpenAPI 3 document of every API route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().into_openapi();
    utoipa::Modify::modify(&ErrorResponses, &mut doc);
    doc.paths.paths.insert(
        OPENAPI_PATH.to_owned(),
        utoipa::openapi::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document (OpenAPI 3)"))
                .operation_id(Some("openapi"))
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description("The OpenAPI document")
                        .content(
                            "application/json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(
                                    utoipa::openapi::ObjectBuilder::new()
                                        .schema_type(utoipa::openapi::schema::Type::Object),
                                ))
                                .build(),
                        ),
                ),
        ),
    );
    doc
}

/// Every API route, and the document at [`OPENAPI_PATH`].
pub fn router() -> Router<AppState> {
    let (router, _) = routes().split_for_parts();
    let router = router.merge(events::router());
    // Written once; serializing a document of plain maps and strings does not fail.
    let doc: Arc<Result<axum::body::Bytes, String>> = Arc::new(
        serde_json::to_vec(&openapi())
            .map(Into::into)
            .map_err(|e| e.to_string()),
    );
    router.route(
        OPENAPI_PATH,
        axum::routing::get(move || {
            let doc = doc.clone();
            async move {
                match &*doc {
                    Ok(b) => {
                        ([(header::CONTENT_TYPE, "application/json")], b.clone()).into_response()
                    }
                    Err(e) => ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ErrorKind::Io.as_str(),
                        format!("cannot write the OpenAPI document: {e}"),
                    )
                    .into_response(),
                }
            }
        }),
    )
}

/// The error responses every operation may give, added to each (a body's 413 and 415 only
/// where there is a body, 403 only on changes).
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.responses.insert(
            "Error".to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(
                        "An error: `kind` is invalid-input (400, `field` names the field), \
                         unauthorized (401), forbidden (403), not-found (404), conflict or \
                         exhausted (409), too-large (413), unsupported-media-type (415), \
                         refused (422), io or corrupt-state (500), busy (503)",
                    )
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name(
                                "ErrorResponse",
                            )))
                            .build(),
                    )
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            let ops: [(&mut Option<Operation>, bool); 4] = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (op, change) in ops {
                let Some(op) = op.as_mut() else { continue };
                let body = op.request_body.is_some();
                let mut codes = vec!["400", "401", "404", "500", "503"];
                if change {
                    codes.extend(["403", "409", "422"]);
                }
                if body {
                    codes.extend(["413", "415"]);
                }
                for c in codes {
                    op.responses
                        .responses
                        .entry(c.to_owned())
                        .or_insert_with(|| {
                            RefOr::Ref(utoipa::openapi::Ref::from_response_name("Error"))
                        });
                }
            }
        }
    }
}

/// A view as JSON, its warnings as `Vfpool-Warning` headers.
pub fn shown<T: Serialize>(s: Shown<T>) -> Response {
    with_warnings(axum::Json(s.view).into_response(), &s.warnings)
}

/// A response with `Vfpool-Warning` headers, one per warning.
pub fn with_warnings(mut r: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&w.replace(['\r', '\n'], " ")) {
            r.headers_mut().append("vfpool-warning", v);
        }
    }
    r
}

/// A view that was just created: `201 Created`.
pub fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

/// A bad value of the body's field `field` (a list's element: `select[1]`), the engine's
/// message kept.
pub fn invalid_in(field: String, e: &InvalidValue) -> ApiError {
    let mut err = ApiError::invalid(e);
    err.body.field = Some(field);
    err
}

/// A bad value inside a list of the body: its field named with its place
/// (`nics[1].l3`).
pub fn invalid_at(prefix: &str, e: &InvalidValue) -> ApiError {
    let mut err = ApiError::invalid(e);
    err.body.field = Some(format!("{prefix}.{}", e.field));
    err
}

/// A JSON request body: unknown fields refused (`#[serde(deny_unknown_fields)]` on each
/// body type), and a body that does not parse is a 400 whose `field` is the path of the
/// value that is wrong (`vfs`, `nics[0].type`; `body` for the body as a whole). A body
/// over the limit is a 413, one that is not JSON (`Content-Type`) a 415.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let json = ct
                .to_str()
                .ok()
                .and_then(|c| c.split(';').next())
                .is_some_and(|c| {
                    let c = c.trim().to_ascii_lowercase();
                    c == "application/json"
                        || (c.starts_with("application/") && c.ends_with("+json"))
                });
            if !json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    format!(
                        "invalid content-type '{}': allowed application/json",
                        ct.to_str().unwrap_or("(not text)")
                    ),
                ));
            }
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too-large",
                        format!(
                            "the request body is too large: allowed at most {} bytes",
                            crate::server::BODY_LIMIT
                        ),
                    )
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorKind::InvalidInput.as_str(),
                        format!("cannot read the request body: {e}"),
                    )
                }
            })?;
        parse_body(&bytes).map(Body)
    }
}

/// `bytes` as a `T` (every body is a JSON object), or the error naming the field that is
/// wrong.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would take an array for a struct, field by field, and name `[0]`.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(bad_body(
            "body".to_owned(),
            "invalid body: a JSON object expected".to_owned(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| body_error(&e))?;
    de.end().map_err(|e| {
        bad_body(
            "body".to_owned(),
            format!("invalid body: {e} (one JSON value expected)"),
        )
    })?;
    Ok(value)
}

fn body_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    let msg = inner.to_string();
    let mut path = e.path().to_string();
    if path == "." {
        path.clear();
    }
    // A missing or unknown field is reported at the object that holds it: name the field.
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = msg.strip_prefix(prefix)
            && let Some((name, _)) = rest.split_once('`')
            && !path.ends_with(name)
        {
            path = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
        }
    }
    if path.is_empty() {
        path = "body".to_owned();
    }
    // serde_json's position (`at line 1 column 9`) says nothing to an API client that
    // built the JSON; the field does.
    let detail = match msg.rfind(" at line ") {
        Some(i) if inner.line() > 0 => &msg[..i],
        _ => msg.as_str(),
    };
    // Broken JSON is the body's fault, not the field's where the parser stopped.
    if inner.is_syntax() || inner.is_eof() {
        return bad_body("body".to_owned(), format!("invalid body: not JSON: {msg}"));
    }
    let message = format!("invalid {path}: {detail}");
    bad_body(path, message)
}

fn bad_body(field: String, message: String) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorKind::InvalidInput.as_str(),
        message,
    );
    err.body.field = Some(field);
    err
}

/// A number of the body as the engine's parsers take it (the CLI's text).
pub fn text<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|v| v.to_string())
}

/// An on/off flag of the body as the CLI spells it.
pub fn on_off(v: Option<bool>) -> Option<String> {
    v.map(|b| if b { "on" } else { "off" }.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        nics: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        l3: String,
        #[serde(rename = "type")]
        nic_type: Option<String>,
    }

    fn field(body: &str) -> (String, String) {
        let e = parse_body::<Outer>(body.as_bytes()).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        (e.body.field.unwrap(), e.body.message)
    }

    /// A client (`vfpool --api`) may build its bodies from these types: what they write,
    /// the daemon reads back the same.
    #[test]
    fn bodies_written_by_a_client_read_back() {
        let vm = vms::VmBody {
            name: "v".into(),
            nics: vec![vms::VmNicBody {
                l3: "n".into(),
                nic_type: Some("vf".into()),
                mac: None,
            }],
            memory_mib: Some(2048),
            vcpus: None,
        };
        let bytes = serde_json::to_vec(&vm).unwrap();
        let back: vms::VmBody = parse_body(&bytes).unwrap();
        assert_eq!(format!("{back:?}"), format!("{vm:?}"));
        let split = nics::SplitBody {
            vfs: 4,
            autoprobe: None,
            force: false,
            keep_link: true,
            timeout: Some(30),
        };
        let back: nics::SplitBody = parse_body(&serde_json::to_vec(&split).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{split:?}"));
    }

    #[test]
    fn a_body_that_does_not_parse_names_its_field() {
        assert_eq!(field(r#"{}"#).0, "name");
        assert_eq!(field(r#"{"name": 5}"#).0, "name");
        assert_eq!(field(r#"{"name": "a", "bogus": 1}"#).0, "bogus");
        assert_eq!(
            field(r#"{"name": "a", "nics": [{"l3": "x"}, {}]}"#).0,
            "nics[1].l3"
        );
        assert_eq!(
            field(r#"{"name": "a", "nics": [{"l3": "x", "type": 5}]}"#).0,
            "nics[0].type"
        );
        assert_eq!(
            field(r#"{"name": "a", "nics": [{"l3": "x", "x": 1}]}"#).0,
            "nics[0].x"
        );
        assert_eq!(field("").0, "body");
        assert_eq!(field("[1]").0, "body");
        assert_eq!(field(r#"{"name": "a"} {}"#).0, "body");
        let (f, m) = field(r#"{"name": true}"#);
        assert_eq!(f, "name");
        assert!(
            m.starts_with("invalid name: invalid type: boolean `true`"),
            "{m}"
        );
        assert!(!m.contains("line 1"), "{m}");
        assert!(parse_body::<Outer>(br#"{"name": "a"}"#).is_ok());
    }
}
