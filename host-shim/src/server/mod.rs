//! `webhooks-host serve`: a minimal panel over HTTP, so anyone can run the
//! integration — the admin pages inside a panel layout, the event API, the
//! stylesheet, a health check.
//!
//! | module | what it answers |
//! |---|---|
//! | this one | the routes, the response headers every answer gets, static files, `/healthz` |
//! | [`session`] | `/login`, `/logout`: the admin's sign-in and its cookies |
//! | [`admin`] | the admin pages: who acts (session or panel), CSRF, the layout around the plugin's fragment |
//! | [`api`] | `/api/*` and `/metrics`: the bearer token, bodies, the event API, the management gateway |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::Webhooks;
use crate::admin_ui;
use crate::auth::Auth;

mod admin;
mod api;
mod multipart;
mod session;

use admin::admin;
pub use admin::{ACTOR_HEADER, CSRF_FIELD_HEADER, CSRF_TOKEN_HEADER, FRAGMENT_HEADER, TITLE_HEADER};
pub use api::MAX_BATCH;
use api::{api_batch, api_error, api_event, api_management, metrics};
use session::{login, login_page, logout};

/// Largest request body the API and forms accept.
pub const MAX_BODY: usize = 256 * 1024;
/// Largest body of a call that carries a webhook's transformation (#24):
/// the admin form with its file (multipart) and `PUT /api/webhooks/{id}/transform`
/// (base64 in JSON): 1 MiB of component, a third more as base64, and the
/// rest. The plugin refuses a component over 1 MiB with a clear message;
/// a body past this is refused here, unread.
pub const MAX_UPLOAD: usize = 2 * 1024 * 1024;

/// The HTTP API's OpenAPI 3.1 description, checked in at `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// What the HTTP server needs.
pub struct App {
    /// The running integration.
    pub hooks: Webhooks,
    /// Bearer token for `/api/*`.
    pub api_token: String,
    /// Key for CSRF tokens.
    pub key: Vec<u8>,
    /// The admin account, its session keys and the sign-in limits.
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
            || peer.is_some_and(|p| self.trusted(p.ip()))
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    // A chain of proxies appends; the first is where the client came in.
                    .and_then(|v| v.split(',').next())
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
    }

    fn trusted(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The address sign-in failures are counted against: the peer, or, when
    /// the peer is a trusted proxy (a load balancer), the client it names in
    /// `X-Forwarded-For` (see [`forwarded_client`]). Behind a balancer every
    /// peer is the balancer; counting it would let twenty wrong guesses from
    /// anyone lock every admin out. From any other peer the header is
    /// ignored, so a client cannot pick the address it is counted under.
    fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
        forwarded_client(peer.ip(), |ip| self.trusted(ip), headers)
    }
}

/// The client behind a chain of proxies: starting from `peer`, while the
/// address reached so far is `trusted`, step to the hop before it in
/// `X-Forwarded-For` (each proxy appends the address it was reached from,
/// so the walk reads from the right; every line of the header, in order).
/// A hop that is no address (garbage, or bytes that are not text) ends the
/// walk at the last address reached: what lies further out came from the
/// client and cannot be believed anyway. A hop may carry a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:80`), as some balancers write it.
fn forwarded_client(
    peer: std::net::IpAddr,
    trusted: impl Fn(std::net::IpAddr) -> bool,
    headers: &HeaderMap,
) -> std::net::IpAddr {
    let mut client = peer.to_canonical();
    // Split bytes, not text: one byte a proxy passed through from the
    // client must not make the whole line (and the real hop beside it) unreadable.
    let hops: Vec<&[u8]> =
        headers.get_all("x-forwarded-for").iter().flat_map(|v| v.as_bytes().split(|b| *b == b',')).collect();
    for hop in hops.iter().rev() {
        if !trusted(client) {
            break;
        }
        let Some(ip) = std::str::from_utf8(hop).ok().and_then(|h| parse_hop(h.trim())) else { break };
        client = ip.to_canonical();
    }
    client
}

/// One `X-Forwarded-For` hop: an address, with or without a port.
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    hop.parse::<std::net::IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
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
        .route("/healthz", get(healthz))
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
        .layer(axum::middleware::map_request(Lingering::wrap))
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

/// `ok` while the node can reach its database; `503 database unavailable`
/// while it cannot ([`crate::health`]), so that a load balancer sends
/// elsewhere and a person sees why. The state is the node's own: no
/// statement runs here, so a busy database never makes this slow.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.hooks.health().available() {
        return "ok".into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, retry_after())], "database unavailable").into_response()
}

/// `Retry-After` on answers refused because the database is unavailable.
fn retry_after() -> HeaderValue {
    HeaderValue::from(crate::health::RETRY_AFTER_SECS)
}

/// What an admin sees when a page cannot be answered because the database
/// cannot be reached: what happened, what to do, nothing of the error.
const UNAVAILABLE_TITLE: &str = "Database unavailable";

fn unavailable_fragment(changing: bool) -> String {
    let saved =
        if changing { " What you submitted may not have been saved: check it once the page loads again." } else { "" };
    format!(
        "<div class=\"wh\"><h1>The database cannot be reached</h1><p>The webhooks integration cannot reach its \
         database just now, so this page cannot be shown.{saved} Deliveries wait and resume by themselves once it \
         is back. Try again in a few seconds.</p></div>"
    )
}

/// The same as a whole page, for a request that cannot be tied to an
/// admin yet (the session itself is kept in the database).
fn unavailable_page() -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{UNAVAILABLE_TITLE}</title>\
         <link rel=\"stylesheet\" href=\"/static/panel.css\"><link rel=\"stylesheet\" href=\"/static/webhooks.css\">\
         </head><body><main>{}</main></body></html>",
        unavailable_fragment(false)
    );
    let mut resp = html(StatusCode::SERVICE_UNAVAILABLE, body, false);
    resp.headers_mut().insert(header::RETRY_AFTER, retry_after());
    resp
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

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
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

/// What a page or an API body says when a plugin call failed: an error id
/// the admin can quote, never the failure itself (a trap's message carries
/// a wasm backtrace). The detail goes to the log under the same id.
fn plugin_failed(e: &dyn std::fmt::Display) -> String {
    let id = format!("E-{}", crate::secrets::random_hex(4));
    tracing::error!(error_id = %id, "a plugin call failed: {e}");
    format!("The webhooks plugin could not answer (error {id}); the operator's log has the details.")
}

/// Why a body was not read whole.
enum Unread {
    TooLarge,
    /// It stopped coming (the listener's body timeout) or the connection broke.
    Stalled,
}

/// Reads at most `limit` bytes of `body` (past that, the rest is read and
/// thrown away as the answer goes out: [`Lingering`]).
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, Unread> {
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(Unread::TooLarge),
        Err(_) => Err(Unread::Stalled),
    }
}

/// Every request's body, so that one answered before it was read whole (a
/// 413 past a limit, a 401 before a large upload, a 404, a 405) still
/// reaches its client: dropped before its end, it hands the rest to
/// [`linger`].
struct Lingering {
    inner: Option<Body>,
    ended: bool,
}

impl Lingering {
    async fn wrap(req: axum::extract::Request) -> axum::extract::Request {
        req.map(|b| Body::new(Lingering { inner: Some(b), ended: false }))
    }
}

impl http_body::Body for Lingering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let polled = std::pin::Pin::new(inner).poll_frame(cx);
        if matches!(polled, std::task::Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if let Some(rest) = self.inner.take()
            && !self.ended
            && !http_body::Body::is_end_stream(&rest)
        {
            linger(rest);
        }
    }
}

/// How much of a refused body is read and thrown away, and for how long,
/// so that its sender gets the answer (see [`linger`]).
const LINGER_BYTES: usize = 16 * 1024 * 1024;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads the rest of a body that was not read whole (see [`Lingering`]),
/// discarding it, up to [`LINGER_BYTES`] and [`LINGER_TIME`], while the
/// answer goes out.
///
/// Why: hyper stops reading a request whose body is dropped and closes the
/// socket with the client's bytes still unread in it; the kernel then sends
/// a reset, and a client still writing (any body larger than the socket
/// buffers, e.g. a 2 MiB upload) loses the 413 that was already sent and sees
/// only "broken pipe". Holding the body keeps hyper reading until it ends;
/// the connection then closes as the answer's `connection: close` asks
/// (nginx's lingering close, bounded the same way). A body past the bounds
/// is dropped: a client sending that much past a documented limit gets the
/// reset.
fn linger(mut body: Body) {
    use http_body_util::BodyExt;
    // Dropped outside a runtime (a test's router), there is no socket to keep.
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let drain = async {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len());
                if seen > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn client(peer: &str, lines: &[&[u8]]) -> String {
        let trusted: Vec<ipnet::IpNet> = ["127.0.0.1/32", "10.0.0.0/8"].iter().map(|n| n.parse().unwrap()).collect();
        let mut headers = HeaderMap::new();
        for l in lines {
            headers.append("x-forwarded-for", HeaderValue::from_bytes(l).unwrap());
        }
        let peer: IpAddr = peer.parse().unwrap();
        forwarded_client(peer, |ip| trusted.iter().any(|n| n.contains(&ip)), &headers).to_string()
    }

    #[test]
    fn the_forwarded_client_is_read_from_the_right_past_trusted_proxies() {
        assert_eq!(client("127.0.0.1", &[b"203.0.113.7"]), "203.0.113.7");
        // A client's own claim stays on the left, unread.
        assert_eq!(client("127.0.0.1", &[b"1.1.1.1, 203.0.113.7"]), "203.0.113.7");
        // Our own proxies are stepped past, across header lines.
        assert_eq!(client("127.0.0.1", &[b"1.1.1.1, 203.0.113.7", b"10.1.2.3"]), "203.0.113.7");
        // An untrusted peer: the header is ignored.
        assert_eq!(client("192.0.2.1", &[b"203.0.113.7"]), "192.0.2.1");
        // No header: the balancer itself.
        assert_eq!(client("127.0.0.1", &[]), "127.0.0.1");
        // Ports and IPv6, as some balancers write them.
        assert_eq!(client("127.0.0.1", &[b"203.0.113.7:5678"]), "203.0.113.7");
        assert_eq!(client("127.0.0.1", &[b"[2001:db8::1]:80"]), "2001:db8::1");
        assert_eq!(client("127.0.0.1", &[b"2001:db8::2"]), "2001:db8::2");
        assert_eq!(client("::ffff:127.0.0.1", &[b"203.0.113.7"]), "203.0.113.7", "a v4-mapped peer");
    }

    #[test]
    fn garbage_from_the_client_does_not_hide_the_hop_our_proxy_added() {
        // nginx and ALB append to the client's own line: bytes that are not
        // text, or words, before the real hop.
        assert_eq!(client("127.0.0.1", &[b"\xff\xfe, 203.0.113.7"]), "203.0.113.7");
        assert_eq!(client("127.0.0.1", &[b"unknown, 203.0.113.7"]), "203.0.113.7");
        // Garbage as the nearest hop: the walk stops at the balancer.
        assert_eq!(client("127.0.0.1", &[b"203.0.113.7, nonsense"]), "127.0.0.1");
        assert_eq!(client("127.0.0.1", &[b""]), "127.0.0.1");
    }
}
