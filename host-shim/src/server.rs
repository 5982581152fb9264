//! `webhooks-host serve`: a minimal panel over HTTP, so anyone can run the
//! integration — the admin pages inside a panel layout, the event API, the
//! stylesheet, a health check.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::admin_ui;
use crate::auth::{Auth, LoginError};
use crate::bindings::ex::admin as wit_admin;
use crate::bindings::ex::management::ApiRequest;
use crate::bindings::types::{Flash, FlashKind};
use crate::{Event, RaiseError, Webhooks};

/// Largest request body the API and forms accept.
pub const MAX_BODY: usize = 256 * 1024;

/// Largest sign-in form: a user name, a password, a token and a return path
/// fit many times over. The form is open to anyone; before this bound a
/// stranger's 200 KiB user names were read, parsed and echoed back, and
/// glibc's arenas kept ~230 MiB of them after 600 attempts.
const MAX_LOGIN_FORM: usize = 8 * 1024;
/// Most events in one batch call.
pub const MAX_BATCH: usize = 1000;

/// The HTTP API's OpenAPI 3.1 description, checked in at `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

const SESSION_COOKIE: &str = "wh_session";
const PRE_SESSION_COOKIE: &str = "wh_pre";
const FLASH_COOKIE: &str = "wh_flash";

/// What the HTTP server needs.
pub struct App {
    /// The running integration.
    pub hooks: Webhooks,
    /// Bearer token for `/api/*`.
    pub api_token: String,
    /// Key for CSRF tokens.
    pub key: Vec<u8>,
    /// The admin account and sessions.
    pub auth: Auth,
    /// Admins reach the panel over https (`--public-url`): cookies are
    /// `Secure` and HSTS is sent on every response.
    pub https: bool,
    /// Reverse proxies whose `X-Forwarded-Proto: https` is believed
    /// (`--trusted-proxies`): a request they forward over https gets
    /// `Secure` cookies and HSTS. From anyone else the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl App {
    /// The attributes every cookie of ours carries; `Secure` is added by
    /// [`https_only`] when the request came over https.
    fn cookie_attrs(&self) -> &'static str {
        "Path=/; HttpOnly; SameSite=Strict"
    }

    /// Whether this request reached the panel over https: always when the
    /// public URL is https; otherwise when a trusted proxy says so.
    fn over_https(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
        self.https
            || peer.is_some_and(|p| {
                let ip = p.ip().to_canonical();
                self.trusted_proxies.iter().any(|n| n.contains(&ip))
            }) && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                // A chain of proxies appends; the first is where the client came in.
                .and_then(|v| v.split(',').next())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }
}

/// For a request that came over https: `Secure` on every cookie set and
/// HSTS. Only then: on a plain-http panel either would lock admins out.
async fn https_only(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0);
    let https = app.over_https(peer, req.headers());
    let mut resp = next.run(req).await;
    if https {
        let h = resp.headers_mut();
        let cookies: Vec<HeaderValue> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| match v.to_str() {
                Ok(s) if !s.contains("; Secure") => HeaderValue::from_str(&format!("{s}; Secure")).unwrap_or(v.clone()),
                _ => v.clone(),
            })
            .collect();
        h.remove(header::SET_COOKIE);
        for c in cookies {
            h.append(header::SET_COOKIE, c);
        }
        h.entry(header::STRICT_TRANSPORT_SECURITY).or_insert(HeaderValue::from_static("max-age=31536000"));
    }
    resp
}

/// The panel's routes.
pub fn router(app: Arc<App>) -> Router {
    let mount = app.hooks.config().mount_path.clone();
    Router::new()
        .route(
            "/",
            get({
                let to = mount.clone();
                move || async move { axum::response::Redirect::to(&to) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/static/panel.css", get(|| async { asset("text/css", admin_ui::PANEL_CSS) }))
        .route("/static/webhooks.css", get(|| async { asset("text/css", admin_ui::WEBHOOKS_CSS) }))
        .route("/static/webhooks.js", get(|| async { asset("text/javascript", admin_ui::WEBHOOKS_JS) }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/api/events", post(api_event))
        .route("/api/events/batch", post(api_batch))
        .route("/api/openapi.json", get(|| async { asset("application/json", OPENAPI) }))
        .route("/api/event-types", axum::routing::any(api_management))
        .route("/api/webhooks", axum::routing::any(api_management))
        .route("/api/webhooks/{*rest}", axum::routing::any(api_management))
        .route("/metrics", get(metrics))
        .route(&mount, get(admin).post(admin))
        .route(&format!("{mount}/"), get(admin).post(admin))
        .route(&format!("{mount}/{{*rest}}"), get(admin).post(admin))
        .fallback(|uri: Uri| async move {
            // API clients get the API's error shape; browsers get text.
            if uri.path().starts_with("/api/") {
                api_error(StatusCode::NOT_FOUND, "not_found", format!("No API route {}.", uri.path()), None)
            } else {
                (StatusCode::NOT_FOUND, "not found").into_response()
            }
        })
        .method_not_allowed_fallback(|uri: Uri| async move {
            api_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} does not take this method.", uri.path()),
                None,
            )
        })
        .layer(axum::middleware::from_fn_with_state(app.clone(), https_only))
        .with_state(app)
        // No extractor reads more than the API's own limit (axum's default is 2 MiB).
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(baseline_headers))
}

/// On every response, whoever answered it: `nosniff`, and `no-store` on
/// JSON (it carries webhooks, deliveries and payloads) unless a handler set
/// its own caching (the static OpenAPI document may be cached).
async fn baseline_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.entry("x-content-type-options").or_insert(HeaderValue::from_static("nosniff"));
    let json =
        h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    if json {
        h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    }
    resp
}

/// Serves until `shutdown` resolves; answers the bound address through `bound`.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listener::serve(listener, router(app), crate::listener::Limits::default(), shutdown).await
}

fn asset(ct: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, ct), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert("content-security-policy", HeaderValue::from_static(admin_ui::CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn see_other(to: &str) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .body(Body::empty())
        .unwrap_or_default();
    secure_headers(resp.headers_mut());
    resp
}

fn valid_session(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Headers a panel in front of `serve` sends to act for a signed-in admin
/// (see docs/EMBEDDING.md). They count only with the API token.
pub const ACTOR_HEADER: &str = "x-webhooks-actor";
/// The panel's own CSRF token, already checked by the panel, to put in forms.
pub const CSRF_TOKEN_HEADER: &str = "x-webhooks-csrf-token";
/// The form field name of the panel's CSRF token (default `_csrf`).
pub const CSRF_FIELD_HEADER: &str = "x-webhooks-csrf-field";
/// `1`: answer the fragment alone, for a panel that wraps it in its layout.
pub const FRAGMENT_HEADER: &str = "x-webhooks-fragment";
/// The page title of a fragment answer, percent-encoded UTF-8.
pub const TITLE_HEADER: &str = "x-webhooks-title";

/// Who is acting on an admin request, and how its forms are protected.
struct Acting {
    actor: String,
    csrf: String,
    csrf_field: String,
    /// The panel checked CSRF itself (it sent its token): we do not.
    panel_checks_csrf: bool,
    fragment: bool,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

/// A panel acting for its admin: the API token plus the actor header.
fn trusted_panel(app: &App, headers: &HeaderMap) -> Result<Option<Acting>, (StatusCode, &'static str)> {
    if headers.get(header::AUTHORIZATION).is_none() {
        return Ok(None);
    }
    if !authorized(app, headers) {
        return Err((StatusCode::UNAUTHORIZED, "The API token is not valid."));
    }
    let actor = header_str(headers, ACTOR_HEADER).unwrap_or("");
    if actor.is_empty() || actor.len() > 100 || actor.chars().any(char::is_control) {
        return Err((StatusCode::BAD_REQUEST, "X-Webhooks-Actor must name the acting admin (1-100 characters)."));
    }
    let field = header_str(headers, CSRF_FIELD_HEADER).unwrap_or("_csrf");
    if field.len() > 64 || !field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err((StatusCode::BAD_REQUEST, "X-Webhooks-Csrf-Field must be a plain form field name."));
    }
    let panel_token = header_str(headers, CSRF_TOKEN_HEADER).filter(|t| t.len() <= 512);
    let acting = Acting {
        actor: actor.to_owned(),
        // Without the panel's token we protect our own forms, with a token
        // bound to the actor (a proxy such as nginx cannot check CSRF).
        csrf: panel_token.map_or_else(|| admin_ui::csrf_token(&app.key, &format!("actor:{actor}")), str::to_owned),
        csrf_field: field.to_owned(),
        panel_checks_csrf: panel_token.is_some(),
        fragment: header_str(headers, FRAGMENT_HEADER) == Some("1"),
    };
    Ok(Some(acting))
}

async fn admin(State(app): State<Arc<App>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mount = app.hooks.config().mount_path.clone();
    let acting = match trusted_panel(&app, &headers) {
        Err((status, msg)) => return plain(status, msg),
        Ok(Some(a)) => a,
        Ok(None) => {
            let signed_in = cookie(&headers, SESSION_COOKIE)
                .filter(|s| valid_session(s))
                .and_then(|s| app.auth.session_user(&s).map(|u| (s, u)));
            let Some((session, user)) = signed_in else {
                // Nothing runs for an anonymous request: back to the sign-in page.
                let next = if method == Method::GET { uri.to_string() } else { mount.clone() };
                let to =
                    format!("/login?next={}", form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
                return see_other(&to);
            };
            Acting {
                actor: user,
                csrf: admin_ui::csrf_token(&app.key, &session),
                csrf_field: "_csrf".into(),
                panel_checks_csrf: false,
                fragment: false,
            }
        }
    };
    let frame =
        admin_ui::Frame { manifest: app.hooks.manifest(), mount: &mount, actor: &acting.actor, csrf: &acting.csrf };
    let path = uri.path().strip_prefix(mount.as_str()).unwrap_or("");
    let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();

    let mut form: Vec<(String, String)> = Vec::new();
    if method == Method::POST {
        if body.len() > MAX_BODY {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
        }
        form = form_urlencoded::parse(&body).into_owned().collect();
        let submitted =
            form.iter().find(|(k, _)| *k == acting.csrf_field).map(|(_, v)| v.as_str()).unwrap_or("").to_owned();
        let ok = acting.panel_checks_csrf || admin_ui::same_secret(&acting.csrf, &submitted);
        if !ok {
            let body = "<div class=\"wh\"><h1>Form expired</h1><p>Nothing was changed. The form's security token did not match your session; go back, reload the page and submit again.</p></div>";
            if acting.fragment {
                return fragment_response(StatusCode::FORBIDDEN, "Form expired", body.to_owned(), false);
            }
            return html(StatusCode::FORBIDDEN, frame.render(uri.path(), "Form expired", body, None), false);
        }
        form.retain(|(k, _)| *k != acting.csrf_field);
    }

    let req = wit_admin::Request {
        method: method.as_str().to_owned(),
        path,
        query,
        form,
        actor: acting.actor.clone(),
        csrf_token: acting.csrf.clone(),
        csrf_field: acting.csrf_field.clone(),
    };
    let incoming_flash = cookie(&headers, FLASH_COOKIE).and_then(|v| admin_ui::parse_flash_cookie(&v));
    let had_flash = incoming_flash.is_some();
    let (status, title, fragment, flash) = match app.hooks.admin(&req).await {
        Ok(wit_admin::Response::Page(p)) => {
            let flash = p.flash.or(incoming_flash);
            (StatusCode::from_u16(p.status).unwrap_or(StatusCode::OK), p.title, p.fragment, flash)
        }
        Ok(wit_admin::Response::Redirect(r)) => {
            // Only same-site paths: a plugin cannot send the admin elsewhere.
            let location =
                if r.location.starts_with('/') && !r.location.starts_with("//") { r.location } else { mount.clone() };
            let mut resp = see_other(&location);
            if let Some(f) = r.flash
                && let Ok(v) = HeaderValue::from_str(&format!(
                    "{FLASH_COOKIE}={}; {}; Max-Age=60",
                    admin_ui::flash_cookie_value(&f),
                    app.cookie_attrs()
                ))
            {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            return resp;
        }
        Ok(wit_admin::Response::NotFound) => (
            StatusCode::NOT_FOUND,
            "Not found".to_owned(),
            "<div class=\"wh\"><h1>Not found</h1><p>There is no such webhook or page. It may have been deleted.</p></div>".to_owned(),
            None,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error".to_owned(),
            "<div class=\"wh\"><h1>The webhooks plugin failed</h1><p>The error was logged and the plugin was restarted.</p></div>".to_owned(),
            Some(Flash { kind: FlashKind::Error, message: format!("{} Nothing was changed; try again.", plugin_failed(&e)) }),
        ),
    };
    if acting.fragment {
        let body = match &flash {
            Some(f) => format!("{}{fragment}", admin_ui::flash_html(f)),
            None => fragment,
        };
        return fragment_response(status, &title, body, had_flash);
    }
    html(status, frame.render(uri.path(), &title, &fragment, flash.as_ref()), had_flash)
}

/// A fragment for the panel's own layout; the title travels in a header.
fn fragment_response(status: StatusCode, title: &str, body: String, clear_flash: bool) -> Response {
    let mut resp = html(status, body, clear_flash);
    // The panel sets its own page policy around our fragment.
    resp.headers_mut().remove("content-security-policy");
    resp.headers_mut().remove("x-frame-options");
    let encoded: String = form_urlencoded::byte_serialize(title.as_bytes()).collect();
    if let Ok(v) = HeaderValue::from_str(&encoded.replace('+', "%20")) {
        resp.headers_mut().insert(TITLE_HEADER, v);
    }
    resp
}

fn html(status: StatusCode, body: String, clear_flash: bool) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    secure_headers(resp.headers_mut());
    if clear_flash {
        resp.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("wh_flash=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        );
    }
    resp
}

/// A refusal sent before the request's body was read: the connection cannot
/// carry another request (the rest of the body would come first), so the
/// client is told not to reuse it.
fn unread(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    (status, msg).into_response()
}

fn api_error(status: StatusCode, code: &str, message: impl Into<String>, field: Option<&str>) -> Response {
    let body = json!({ "error": { "code": code, "message": message.into(), "field": field } });
    (status, axum::Json(body)).into_response()
}

fn authorized(app: &App, headers: &HeaderMap) -> bool {
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

/// What a page or an API body says when a plugin call failed: an error id
/// the admin can quote, never the failure itself (a trap's message carries
/// a wasm backtrace). The detail goes to the log under the same id.
fn plugin_failed(e: &dyn std::fmt::Display) -> String {
    let id = format!("E-{}", crate::secrets::random_hex(4));
    tracing::error!(error_id = %id, "a plugin call failed: {e}");
    format!("The webhooks plugin could not answer (error {id}); the operator's log has the details.")
}

fn raise_error(e: RaiseError) -> Response {
    match e {
        RaiseError::UnknownType(m) => api_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_type", m, Some("type")),
        RaiseError::InvalidData { field, message } => {
            api_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_data", message, Some(&field))
        }
        RaiseError::Conflict(m) => api_error(StatusCode::CONFLICT, "id_conflict", m, Some("id")),
        RaiseError::Storage(m) => api_error(StatusCode::SERVICE_UNAVAILABLE, "storage", m, None),
        RaiseError::Plugin(m) => api_error(StatusCode::SERVICE_UNAVAILABLE, "plugin", plugin_failed(&m), None),
    }
}

/// An API body of at most [`MAX_BODY`] bytes; refused early when the
/// declared length is already too large.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        unread(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {MAX_BODY} bytes"),
            None,
        ))
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        && len > MAX_BODY
    {
        return Err(too_large());
    }
    read_limited(body, MAX_BODY).await.map_err(|e| match e {
        Unread::TooLarge => too_large(),
        Unread::Stalled => {
            unread(api_error(StatusCode::REQUEST_TIMEOUT, "body_timeout", "the body did not arrive in time", None))
        }
    })
}

/// Why a body was not read whole.
enum Unread {
    TooLarge,
    /// It stopped coming (the listener's body timeout) or the connection broke.
    Stalled,
}

/// Reads at most `limit` bytes of `body`.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, Unread> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(Unread::TooLarge),
        Err(_) => Err(Unread::Stalled),
    }
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
async fn api_management(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&app, &headers) {
        return unauthorized();
    }
    let body = match read_body(&headers, body).await {
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
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "plugin", plugin_failed(&e), None),
    }
}

/// Prometheus metrics, behind the API token (they name event types and volumes).
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
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
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "plugin", plugin_failed(&e), None),
    }
}

async fn api_event(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let ev: ApiEvent = match api_body(&app, &headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match app.hooks.raise(ev.into_event()).await {
        Ok(r) => (StatusCode::ACCEPTED, axum::Json(json!({ "id": r.event_id, "queued": r.queued }))).into_response(),
        Err(e) => raise_error(e),
    }
}

async fn api_batch(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
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

#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    next: &'a str,
    username: &'a str,
    error: Option<String>,
}

/// Where to go after signing in: only a path under the admin mount.
fn safe_next(mount: &str, next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == mount || n.starts_with(&format!("{mount}/")) || n.starts_with(&format!("{mount}?")))
                && !n.contains("//")
                && !n.contains('\\')
                // CR/LF would break the `Location` header (a blank page).
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => mount.to_owned(),
    }
}

fn login_response(
    app: &App,
    status: StatusCode,
    pre: &str,
    fresh: bool,
    next: &str,
    username: &str,
    error: Option<String>,
) -> Response {
    use askama::Template;
    let csrf = admin_ui::csrf_token(&app.key, &format!("pre:{pre}"));
    let body = LoginPage { csrf: &csrf, next, username, error }.render().unwrap_or_default();
    let mut resp = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    secure_headers(resp.headers_mut());
    if fresh && let Ok(v) = HeaderValue::from_str(&format!("{PRE_SESSION_COOKIE}={pre}; {}", app.cookie_attrs())) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

fn pre_session(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, PRE_SESSION_COOKIE).filter(|s| valid_session(s)) {
        Some(s) => (s, false),
        None => (crate::secrets::random_hex(32), true),
    }
}

async fn login_page(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    let mount = app.hooks.config().mount_path.clone();
    let next: Option<String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned());
    let next = safe_next(&mount, next.as_deref());
    let (pre, fresh) = pre_session(&headers);
    login_response(&app, StatusCode::OK, &pre, fresh, &next, "", None)
}

async fn login(
    State(app): State<Arc<App>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mount = app.hooks.config().mount_path.clone();
    // Anyone can post here: read no more than a sign-in form can need.
    let body = match read_limited(body, MAX_LOGIN_FORM).await {
        Ok(b) => b,
        Err(Unread::TooLarge) => return unread(plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")),
        Err(Unread::Stalled) => return unread(plain(StatusCode::REQUEST_TIMEOUT, "The form did not arrive in time.")),
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |n: &str| form.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str()).unwrap_or("");
    let next = safe_next(&mount, Some(field("next")));
    let (pre, fresh) = pre_session(&headers);
    if fresh || !admin_ui::csrf_ok(&app.key, &format!("pre:{pre}"), field("_csrf")) {
        let msg = "The sign-in form expired; please try again.".to_owned();
        return login_response(&app, StatusCode::FORBIDDEN, &pre, fresh, &next, field("username"), Some(msg));
    }
    // The password is checked on the checker's own thread (auth::Checker);
    // this task only awaits its answer.
    match app.auth.login(&peer.ip().to_string(), field("username"), field("password")).await {
        Ok(session) => {
            tracing::info!(user = field("username"), "admin signed in");
            let mut resp = see_other(&next);
            if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}={session}; {}", app.cookie_attrs())) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(LoginError::Invalid) => {
            tracing::warn!(client = %peer.ip(), "failed admin sign-in");
            let msg = "Wrong user name or password.".to_owned();
            login_response(&app, StatusCode::UNAUTHORIZED, &pre, false, &next, field("username"), Some(msg))
        }
        Err(LoginError::Busy) => {
            tracing::warn!(client = %peer.ip(), "admin sign-in refused: too many sign-ins being checked");
            let msg = "Too many sign-ins are being checked right now. Try again in a moment.".to_owned();
            login_response(&app, StatusCode::SERVICE_UNAVAILABLE, &pre, false, &next, field("username"), Some(msg))
        }
        Err(LoginError::Locked(left)) => {
            tracing::warn!(client = %peer.ip(), "admin sign-in refused: too many failures");
            let msg = format!("Too many failed attempts. Try again in {} minutes.", left.as_secs() / 60 + 1);
            login_response(&app, StatusCode::TOO_MANY_REQUESTS, &pre, false, &next, field("username"), Some(msg))
        }
    }
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let token = form.iter().find(|(k, _)| k == "_csrf").map(|(_, v)| v.as_str()).unwrap_or("");
        if !admin_ui::csrf_ok(&app.key, &session, token) {
            return plain(StatusCode::FORBIDDEN, "The form expired; reload the page and try again.");
        }
        app.auth.logout(&session);
    }
    let mut resp = see_other("/login");
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("wh_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}
