//! The admin pages: who is acting (a `serve` session, or a panel's API token
//! plus `X-Webhooks-Actor`), the CSRF check on every POST, and the panel
//! layout (or the bare fragment) around what `admin.handle` answers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;

use super::session::{SESSION_COOKIE, valid_session};
use super::{
    App, MAX_BODY, MAX_UPLOAD, UNAVAILABLE_TITLE, Unread, api::authorized, cookie, header_str, html, plain,
    plugin_failed, retry_after, see_other, unavailable_fragment, unavailable_page,
};
use crate::CallError;
use crate::admin_ui;
use crate::bindings::ex::admin as wit_admin;
use crate::bindings::types::{Flash, FlashKind};

const FLASH_COOKIE: &str = "wh_flash";

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

pub(super) async fn admin(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mount = app.hooks.config().mount_path.clone();
    let acting = match trusted_panel(&app, &headers) {
        Err((status, msg)) => return plain(status, msg),
        Ok(Some(a)) => a,
        Ok(None) => {
            // Any node knows the session: the plugin keeps it in the shared
            // database. A failing database is said, not taken for a sign-out.
            let mut signed_in = None;
            if let Some(s) = cookie(&headers, SESSION_COOKIE).filter(|s| valid_session(s)) {
                match app.hooks.find_session(&app.auth.session_key(&s)).await {
                    Ok(user) => signed_in = user.map(|u| (s, u)),
                    // Logged once for the whole outage, by `health`.
                    Err(CallError::Unavailable(_)) => return unavailable_page(),
                    Err(e) => {
                        tracing::error!("checking an admin session failed: {e}");
                        return plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Your session could not be checked just now (the database did not answer). Try again in a moment.",
                        );
                    }
                }
            }
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
        // A multipart form may carry a transformation (#24): the component's
        // 1 MiB and the form around it; every other form stays small.
        let multipart = header_str(&headers, "content-type").and_then(super::multipart::boundary);
        let limit = if multipart.is_some() { MAX_UPLOAD } else { MAX_BODY };
        let body = match super::read_limited(body, limit).await {
            Ok(b) => b,
            Err(Unread::TooLarge) => {
                return super::unread(plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The form is too large (a transformation may be at most 1 MiB). Nothing was changed.",
                ));
            }
            Err(Unread::Stalled) => return plain(StatusCode::REQUEST_TIMEOUT, "The form did not arrive in time."),
        };
        form = match &multipart {
            Some(b) => match super::multipart::parse(b, &body) {
                Ok(f) => f,
                Err(why) => {
                    tracing::debug!("a malformed multipart form was refused: {why}");
                    return plain(StatusCode::BAD_REQUEST, "The form did not arrive whole. Nothing was changed.");
                }
            },
            None => form_urlencoded::parse(&body).into_owned().collect(),
        };
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
        Err(CallError::Unavailable(_)) => {
            let fragment = unavailable_fragment(method == Method::POST);
            let mut resp = if acting.fragment {
                fragment_response(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_TITLE, fragment, false)
            } else {
                let page = frame.render(uri.path(), UNAVAILABLE_TITLE, &fragment, None);
                html(StatusCode::SERVICE_UNAVAILABLE, page, false)
            };
            resp.headers_mut().insert(header::RETRY_AFTER, retry_after());
            return resp;
        }
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
