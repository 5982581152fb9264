//! The admin's sign-in for `serve`: the sign-in page and form (bounded, CSRF
//! bound to a pre-session), the session cookie, sign-out. Passwords are
//! checked by [`crate::auth`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::{App, Unread, cookie, plain, read_limited, secure_headers, see_other, unread};
use crate::CallError;
use crate::admin_ui;
use crate::auth::LoginError;

/// Largest sign-in form: a user name, a password, a token and a return path
/// fit many times over. The form is open to anyone; before this bound a
/// stranger's 200 KiB user names were read, parsed and echoed back, and
/// glibc's arenas kept ~230 MiB of them after 600 attempts.
const MAX_LOGIN_FORM: usize = 8 * 1024;

pub(super) const SESSION_COOKIE: &str = "wh_session";
const PRE_SESSION_COOKIE: &str = "wh_pre";

pub(super) fn valid_session(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
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

pub(super) async fn login_page(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    let mount = app.hooks.config().mount_path.clone();
    let next: Option<String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned());
    let next = safe_next(&mount, next.as_deref());
    let (pre, fresh) = pre_session(&headers);
    login_response(&app, StatusCode::OK, &pre, fresh, &next, "", None)
}

pub(super) async fn login(
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
    let client = app.client_ip(peer, &headers);
    match app.auth.login(&client.to_string(), field("username"), field("password")).await {
        Ok(()) => {
            // A session this browser still held ends here (best effort: it
            // ends by itself when unused).
            if let Some(old) = cookie(&headers, SESSION_COOKIE).filter(|s| valid_session(s))
                && let Err(e) = app.hooks.close_session(&app.auth.session_key(&old)).await
                && !matches!(e, CallError::Unavailable(_))
            {
                tracing::warn!("ending the session replaced at sign-in failed: {e}");
            }
            let session = crate::secrets::random_hex(32);
            if let Err(e) = app.hooks.open_session(&app.auth.session_key(&session), app.auth.user()).await {
                // An unreachable database is logged once, by `health`.
                let msg = if matches!(e, CallError::Unavailable(_)) {
                    "Signing in failed: the database cannot be reached just now. Try again in a few seconds."
                } else {
                    tracing::error!("keeping a new admin session failed: {e}");
                    "Signing in failed: the session could not be stored. Try again in a moment; if it keeps failing, the operator's log says why."
                }
                .to_owned();
                return login_response(
                    &app,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &pre,
                    false,
                    &next,
                    field("username"),
                    Some(msg),
                );
            }
            tracing::info!(user = field("username"), "admin signed in");
            let mut resp = see_other(&next);
            if let Ok(v) = HeaderValue::from_str(&format!("{SESSION_COOKIE}={session}; {}", app.cookie_attrs())) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(LoginError::Invalid) => {
            tracing::warn!(%client, "failed admin sign-in");
            let msg = "Wrong user name or password.".to_owned();
            login_response(&app, StatusCode::UNAUTHORIZED, &pre, false, &next, field("username"), Some(msg))
        }
        Err(LoginError::Busy) => {
            tracing::warn!(%client, "admin sign-in refused: too many sign-ins being checked");
            let msg = "Too many sign-ins are being checked right now. Try again in a moment.".to_owned();
            login_response(&app, StatusCode::SERVICE_UNAVAILABLE, &pre, false, &next, field("username"), Some(msg))
        }
        Err(LoginError::Locked(left)) => {
            tracing::warn!(%client, "admin sign-in refused: too many failures");
            let msg = format!("Too many failed attempts. Try again in {} minutes.", left.as_secs() / 60 + 1);
            login_response(&app, StatusCode::TOO_MANY_REQUESTS, &pre, false, &next, field("username"), Some(msg))
        }
    }
}

pub(super) async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let token = form.iter().find(|(k, _)| k == "_csrf").map(|(_, v)| v.as_str()).unwrap_or("");
        if !admin_ui::csrf_ok(&app.key, &session, token) {
            return plain(StatusCode::FORBIDDEN, "The form expired; reload the page and try again.");
        }
        // Ended for every node. If the database fails the session lives on,
        // so the admin is told so rather than shown the sign-in page.
        if let Err(e) = app.hooks.close_session(&app.auth.session_key(&session)).await {
            if !matches!(e, CallError::Unavailable(_)) {
                tracing::error!("ending an admin session failed: {e}");
            }
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Signing out failed: the database did not answer. Try again in a moment.",
            );
        }
    }
    let mut resp = see_other("/login");
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("wh_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}
