//! `/api/*` and `/metrics`: the bearer token, bounded JSON bodies, the event
//! API (`/api/events`, `/api/events/batch`), and the gateway to the plugin's
//! management interface. Errors have one shape: `{"error": {code, message, field}}`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::admin::ACTOR_HEADER;
use super::{App, MAX_BODY, MAX_UPLOAD, Unread, header_str, plugin_failed, read_limited, unread};
use crate::bindings::ex::management::ApiRequest;
use crate::{CallError, Event, RaiseError, admin_ui};

/// Most events in one batch call.
pub const MAX_BATCH: usize = 1000;

pub(super) fn api_error(status: StatusCode, code: &str, message: impl Into<String>, field: Option<&str>) -> Response {
    let body = json!({ "error": { "code": code, "message": message.into(), "field": field } });
    (status, axum::Json(body)).into_response()
}

pub(super) fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer).unwrap_or("");
    admin_ui::same_secret(&app.api_token, given)
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// matched without regard to case and may be followed by several spaces
/// (RFC 9110 §11.1, §11.4).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' ')).filter(|t| !t.is_empty())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiEvent {
    #[serde(rename = "type")]
    event_type: String,
    /// Kept as the panel's own JSON text: never built into a tree and
    /// written out again (the plugin validates it once and stores it as is).
    data: Box<serde_json::value::RawValue>,
    id: Option<String>,
    /// Milliseconds since the epoch; now when absent or null.
    #[serde(default, deserialize_with = "whole_ms")]
    occurred_at_ms: Option<u64>,
}

/// A time in whole milliseconds: an integer, or a number with a zero
/// fraction (`1.0e12`, `1500.0`), as JSON Schema's `integer` reads it and as
/// panels that compute times in floating point send them. Negative or
/// fractional values are refused.
fn whole_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(63)).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("occurred_at_ms: {n} is not a whole number of milliseconds ≥ 0"))),
    }
}

impl ApiEvent {
    fn into_event(self) -> Event {
        Event {
            id: self.id,
            event_type: self.event_type,
            occurred_at_ms: self.occurred_at_ms,
            data_json: self.data.get().to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiBatch {
    events: Vec<ApiEvent>,
}

/// The database cannot be reached ([`crate::health`]): a 503 that says so
/// and when to retry, never the error itself (it names the server).
pub(super) fn unavailable(message: &str) -> Response {
    let mut resp = api_error(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", message, None);
    resp.headers_mut().insert(header::RETRY_AFTER, super::retry_after());
    resp
}

/// [`unavailable`] for any call but a raise.
fn unavailable_call() -> Response {
    unavailable("The database cannot be reached just now. Retry in a few seconds.")
}

fn raise_error(e: RaiseError) -> Response {
    match e {
        RaiseError::Unavailable(_) => unavailable(
            "The database cannot be reached just now, so the event was not accepted. Raise it again in a few \
             seconds, with the same id: an id raised again is never queued twice.",
        ),
        RaiseError::UnknownType(m) => api_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_type", m, Some("type")),
        RaiseError::InvalidData(i) => {
            api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_data", i.message, Some(&i.field))
        }
        RaiseError::Conflict(m) => api_error(StatusCode::CONFLICT, "id_conflict", m, Some("id")),
        RaiseError::Storage(m) => api_error(StatusCode::SERVICE_UNAVAILABLE, "storage", m, None),
        RaiseError::Plugin(m) => api_error(StatusCode::SERVICE_UNAVAILABLE, "plugin", plugin_failed(&m), None),
    }
}

/// An API body of at most [`MAX_BODY`] bytes; refused early when the
/// declared length is already too large.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    read_body_up_to(headers, body, MAX_BODY).await
}

/// [`read_body`] with another cap.
async fn read_body_up_to(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        unread(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes"),
            None,
        ))
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        && len > limit
    {
        return Err(too_large());
    }
    read_limited(body, limit).await.map_err(|e| match e {
        Unread::TooLarge => too_large(),
        Unread::Stalled => {
            unread(api_error(StatusCode::REQUEST_TIMEOUT, "body_timeout", "the body did not arrive in time", None))
        }
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, Response> {
    let bytes = read_body(headers, body).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // One class per kind of mistake: text that is not JSON is a 400;
        // JSON of the wrong shape (a float or a negative time, an unknown
        // field, a missing one) is a 422, like every other refusal of a value.
        let (status, code) = match e.classify() {
            serde_json::error::Category::Data => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            _ => (StatusCode::BAD_REQUEST, "invalid_json"),
        };
        // serde quotes the offending value; a 100 kB one is not echoed back.
        let mut message = e.to_string();
        if message.len() > MAX_ERROR_ECHO {
            let mut end = MAX_ERROR_ECHO;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message = format!("{}… (line {}, column {})", &message[..end], e.line(), e.column());
        }
        api_error(status, code, format!("the body does not fit this endpoint: {message}"), None)
    })
}

/// Longest parser message quoted back in an error body.
const MAX_ERROR_ECHO: usize = 300;

/// The token check, then the JSON body: what every API call starts with.
async fn api_body<T: serde::de::DeserializeOwned>(app: &App, headers: &HeaderMap, body: Body) -> Result<T, Response> {
    if !authorized(app, headers) {
        return Err(unauthorized());
    }
    read_json(headers, body).await
}

fn unauthorized() -> Response {
    api_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid 'Authorization: Bearer <token>' header is required",
        None,
    )
}

/// `/api/webhooks…` and `/api/event-types`: authenticated here, answered by
/// the plugin's management interface.
pub(super) async fn api_management(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&app, &headers) {
        return unauthorized();
    }
    // Uploading a transformation (#24) carries up to 1 MiB of component in base64.
    let limit = if method == Method::PUT && uri.path().ends_with("/transform") { MAX_UPLOAD } else { MAX_BODY };
    let body = match read_body_up_to(&headers, body, limit).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return api_error(StatusCode::BAD_REQUEST, "invalid_json", "the body is not UTF-8", None);
    };
    let req = ApiRequest {
        method: method.as_str().to_owned(),
        path: uri.path().strip_prefix("/api").unwrap_or("/").to_owned(),
        query: form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect(),
        body,
        actor: header_str(&headers, ACTOR_HEADER).unwrap_or("api").chars().take(100).collect(),
    };
    match app.hooks.api(&req).await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = if r.body.is_empty() {
                status.into_response()
            } else {
                (status, [(header::CONTENT_TYPE, "application/json")], r.body).into_response()
            };
            if let Some(allow) = r.allow.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
                resp.headers_mut().insert(header::ALLOW, allow);
            }
            resp
        }
        Err(CallError::Unavailable(_)) => unavailable_call(),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "plugin", plugin_failed(&e), None),
    }
}

/// Prometheus metrics, behind the API token (they name event types and volumes).
pub(super) async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return unauthorized();
    }
    // OpenMetrics unless the scraper asks for the classic text format only.
    let accept = header_str(&headers, "accept").unwrap_or("");
    let classic = accept.contains("text/plain") && !accept.contains("application/openmetrics-text");
    match app.hooks.metrics_text().await {
        Ok(text) if classic => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            crate::metrics::to_prometheus_text(&text),
        )
            .into_response(),
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(CallError::Unavailable(_)) => unavailable_call(),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "plugin", plugin_failed(&e), None),
    }
}

pub(super) async fn api_event(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let ev: ApiEvent = match api_body(&app, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match app.hooks.raise(ev.into_event()).await {
        Ok(r) => (StatusCode::ACCEPTED, axum::Json(json!({ "id": r.event_id, "queued": r.queued }))).into_response(),
        Err(e) => raise_error(e),
    }
}

pub(super) async fn api_batch(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let batch: ApiBatch = match api_body(&app, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_batch",
            format!("send 1 to {MAX_BATCH} events"),
            Some("events"),
        );
    }
    let events = batch.events.into_iter().map(ApiEvent::into_event).collect();
    match app.hooks.raise_batch(events).await {
        Ok(rs) => {
            let items: Vec<_> = rs.into_iter().map(|r| json!({ "id": r.event_id, "queued": r.queued })).collect();
            (StatusCode::ACCEPTED, axum::Json(json!({ "events": items }))).into_response()
        }
        Err(e) => raise_error(e),
    }
}
