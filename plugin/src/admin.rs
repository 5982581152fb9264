//! The admin pages: routing under the mount path, forms, and the fragments
//! rendered from `ui-fragments/` (auto-escaped, checked at compile time).

use askama::Template;

use crate::catalog;
use crate::controls;
use crate::health;
use crate::host::{DbError, Host, Level};
use crate::outbox::{self, DeliveryState, Outcome, rfc3339};
use crate::playground;
use crate::signing;
use crate::store::{self, HistoryCursor, HistoryFilter, Webhook};
use crate::webhook::{self, FieldError, Input};

/// One admin request (mirrors `admin.request`).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
    pub actor: String,
    pub csrf_token: String,
    /// The form field carrying `csrf_token` (`_csrf`, or the panel's own).
    pub csrf_field: String,
}

impl Request {
    fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn f(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn f_all(&self, name: &str) -> Vec<String> {
        self.form.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

/// Flash message kinds (mirror `types.flash-kind`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlashKind {
    Success,
    Info,
    Error,
}

/// A flash message.
#[derive(Debug, Clone, PartialEq)]
pub struct Flash {
    pub kind: FlashKind,
    pub message: String,
}

fn flash(kind: FlashKind, message: impl Into<String>) -> Option<Flash> {
    Some(Flash { kind, message: message.into() })
}

/// What a handler answers (mirrors `admin.response`).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Page { status: u16, title: String, fragment: String, flash: Option<Flash> },
    Redirect { location: String, flash: Option<Flash> },
    NotFound,
}

const PER_PAGE: u32 = 25;

/// Routes one admin request.
pub fn handle(host: &dyn Host, req: &Request) -> Response {
    match route(host, req) {
        Ok(r) => r,
        Err(e) => {
            host.log(Level::Error, &format!("admin {} {}: {e}", req.method, req.path));
            page(500, "Something went wrong", error_fragment(&e.to_string()), None)
        }
    }
}

fn route(host: &dyn Host, req: &Request) -> Result<Response, DbError> {
    let base = host.mount_path();
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method.eq_ignore_ascii_case("GET");
    let post = req.method.eq_ignore_ascii_case("POST");
    let id = |s: &str| s.parse::<i64>().ok().filter(|v| *v > 0);
    match (segs.as_slice(), get, post) {
        ([], true, _) => dashboard(host, req, &base),
        // The forms post to their own address, so an invalid submission
        // comes back where the admin was; `POST /` and `POST /{id}` stay for
        // pages rendered before and for scripts.
        ([], _, true) | (["new"], _, true) => save(host, req, &base, None),
        (["new"], true, _) => {
            let blank =
                FormValues { enabled: true, form_id: outbox::hex(&host.random_bytes(16)), ..FormValues::default() };
            Ok(form_page(host, req, &base, None, blank, Vec::new(), 200))
        }
        ([i], _, true) | ([i, "edit"], _, true) => match id(i) {
            Some(i) => save(host, req, &base, Some(i)),
            None => Ok(Response::NotFound),
        },
        ([i, "edit"], true, _) => {
            let Some(w) = id(i).map(|i| store::get(host, i)).transpose()?.flatten() else {
                return Ok(Response::NotFound);
            };
            Ok(form_page(host, req, &base, Some(&w), edit_values(&w), Vec::new(), 200))
        }
        ([i, "transform", "try"], _, true) => {
            let Some(w) = id(i).map(|i| store::get(host, i)).transpose()?.flatten() else {
                return Ok(Response::NotFound);
            };
            try_transform(host, req, &base, &w)
        }
        ([i, "delete"], true, _) => {
            let Some(w) = id(i).map(|i| store::get(host, i)).transpose()?.flatten() else {
                return Ok(Response::NotFound);
            };
            let t = ConfirmDelete { base: &base, csrf: &req.csrf_token, csrf_field: &req.csrf_field, w: &w };
            Ok(page(200, &format!("Delete {}", w.name), render(&t), None))
        }
        ([i, "delete"], _, true) => {
            let Some(i) = id(i) else {
                return Ok(Response::NotFound);
            };
            let name = store::get(host, i)?.map(|w| w.name);
            if !store::delete(host, i)? {
                return Ok(Response::NotFound);
            }
            host.log(Level::Info, &format!("{} deleted webhook {i}", req.actor));
            Ok(redirect(
                &base,
                "",
                flash(FlashKind::Success, format!("Webhook \u{201c}{}\u{201d} was deleted.", name.unwrap_or_default())),
            ))
        }
        ([i, "toggle"], _, true) => {
            let Some(i) = id(i) else {
                return Ok(Response::NotFound);
            };
            match store::toggle(host, i)? {
                None => Ok(Response::NotFound),
                Some(on) => {
                    host.log(
                        Level::Info,
                        &format!("{} {} webhook {i}", req.actor, if on { "enabled" } else { "disabled" }),
                    );
                    let msg = if on { "Webhook enabled." } else { "Webhook disabled." };
                    Ok(redirect(&base, "", flash(FlashKind::Success, msg)))
                }
            }
        }
        ([i, "test"], _, true) => {
            let Some(i) = id(i) else {
                return Ok(Response::NotFound);
            };
            match outbox::send_test(host, i, &req.actor)? {
                None => Ok(Response::NotFound),
                Some(o) => Ok(redirect(&base, &format!("/{i}/history"), Some(outcome_flash("Test", &o)))),
            }
        }
        ([i, "history"], true, _) => history(host, req, &base, id(i)),
        ([i, "verify"], true, _) => {
            let Some(w) = id(i).map(|i| store::get(host, i)).transpose()?.flatten() else {
                return Ok(Response::NotFound);
            };
            Ok(verify_page(req, &base, &w, PlaygroundForm::default(), None, 200))
        }
        ([i, "verify"], _, true) => {
            let Some(w) = id(i).map(|i| store::get(host, i)).transpose()?.flatten() else {
                return Ok(Response::NotFound);
            };
            // What was pasted is checked and shown back, never stored or logged.
            let pasted = PlaygroundForm {
                headers: req.f("headers").unwrap_or_default().to_owned(),
                body: req.f("body").unwrap_or_default().to_owned(),
                errors: Vec::new(),
            };
            match playground::check(host, w.id, &pasted.headers, &pasted.body)? {
                None => Ok(Response::NotFound),
                Some(Ok(report)) => Ok(verify_page(req, &base, &w, pasted, Some(report), 200)),
                Some(Err(errors)) => {
                    // Too large to check: not shown back either.
                    let mut form = PlaygroundForm { errors, ..PlaygroundForm::default() };
                    if form.error("headers").is_none() {
                        form.headers = pasted.headers;
                    }
                    if form.error("body").is_none() {
                        form.body = pasted.body;
                    }
                    Ok(verify_page(req, &base, &w, form, None, 422))
                }
            }
        }
        ([i, "retry-failed"], _, true) => {
            let Some(i) = id(i) else { return Ok(Response::NotFound) };
            if store::get(host, i)?.is_none() {
                return Ok(Response::NotFound);
            }
            let back = format!("/{i}/history");
            let Some(window) = req.f("since").and_then(since_window) else {
                return Ok(redirect(&base, &back, flash(FlashKind::Error, "Choose how far back to retry.")));
            };
            let since = host.now_ms().saturating_sub(window);
            let n = outbox::retry_failed_since(host, i, since)?;
            host.log(Level::Info, &format!("{} queued {n} failed deliveries of webhook {i} again", req.actor));
            let msg = match n {
                0 => "No failed deliveries in that period.".to_owned(),
                1 => "1 failed delivery will be sent again now.".to_owned(),
                n => format!("{n} failed deliveries will be sent again now."),
            };
            Ok(redirect(&base, &back, flash(FlashKind::Success, msg)))
        }
        ([i, "deliveries", d], true, _) => {
            let (Some(i), Some(d)) = (id(i), id(d)) else {
                return Ok(Response::NotFound);
            };
            let (Some(w), Some(del)) = (store::get(host, i)?, store::delivery(host, i, d)?) else {
                return Ok(Response::NotFound);
            };
            let view = DeliveryView::new(&del, host.now_ms());
            let t = DeliveryPage { base: &base, csrf: &req.csrf_token, csrf_field: &req.csrf_field, w: &w, d: &view };
            Ok(page(200, &format!("Delivery {}", del.msg_id), render(&t), None))
        }
        ([i, "deliveries", d, "resend"], _, true) => {
            let (Some(i), Some(d)) = (id(i), id(d)) else {
                return Ok(Response::NotFound);
            };
            if store::delivery(host, i, d)?.is_none() {
                return Ok(Response::NotFound);
            }
            let back = format!("/{i}/deliveries/{d}");
            match outbox::resend(host, i, d)? {
                None => Ok(redirect(
                    &base,
                    &back,
                    flash(FlashKind::Info, "This delivery is being sent right now; try again in a moment."),
                )),
                Some(o) => Ok(redirect(&base, &back, Some(outcome_flash("Resend", &o)))),
            }
        }
        _ => Ok(Response::NotFound),
    }
}

/// The "retry failed since" choices, in milliseconds back from now.
pub const SINCE_CHOICES: &[(&str, &str, u64)] = &[
    ("1h", "the last hour", 3_600_000),
    ("24h", "the last 24 hours", 86_400_000),
    ("7d", "the last 7 days", 7 * 86_400_000),
    ("30d", "the last 30 days", 30 * 86_400_000),
    ("all", "all time", u64::MAX),
];

fn since_window(v: &str) -> Option<u64> {
    SINCE_CHOICES.iter().find(|(k, _, _)| *k == v).map(|(_, _, ms)| *ms)
}

fn outcome_flash(what: &str, o: &Outcome) -> Flash {
    match (o.success, o.status, &o.error) {
        (true, Some(s), _) => {
            Flash { kind: FlashKind::Success, message: format!("{what} delivered: the endpoint answered HTTP {s}.") }
        }
        (false, Some(s), _) => {
            Flash { kind: FlashKind::Error, message: format!("{what} failed: the endpoint answered HTTP {s}.") }
        }
        (_, None, Some(e)) => Flash { kind: FlashKind::Error, message: format!("{what} failed: {e}") },
        _ => Flash { kind: FlashKind::Error, message: format!("{what} failed.") },
    }
}

fn page(status: u16, title: &str, fragment: String, flash: Option<Flash>) -> Response {
    Response::Page { status, title: title.to_owned(), fragment, flash }
}

fn redirect(base: &str, rel: &str, flash: Option<Flash>) -> Response {
    Response::Redirect { location: format!("{base}{rel}"), flash }
}

fn render(t: &impl Template) -> String {
    // Our templates only format strings and numbers; rendering cannot fail
    // short of a formatter bug, and then an empty fragment beats a trap.
    t.render().unwrap_or_else(|e| format!("<p class=\"wh-error\">template error: {e}</p>"))
}

fn error_fragment(message: &str) -> String {
    render(&ErrorPage { message })
}

/// "3 min ago" / "in 5 s".
pub fn relative(ms: u64, now: u64) -> String {
    let (d, future) = if ms > now { (ms - now, true) } else { (now - ms, false) };
    let s = d / 1000;
    let amount = match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    if s == 0 {
        "just now".into()
    } else if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// "5 days", "3 h", "40 s": a duration for sentences.
pub fn duration_words(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// A time for templates: relative text, exact title, machine value, and an
/// absolute time to show (UTC, with its zone; the page script shows it in
/// the admin's own zone) that tells rows apart and matches a receiver's log.
pub struct When {
    pub rel: String,
    pub exact: String,
    pub abs: String,
}

impl When {
    fn new(ms: u64, now: u64) -> Self {
        When { rel: relative(ms, now), exact: rfc3339(ms), abs: outbox::utc_text(ms) }
    }
}

// ---------------------------------------------------------------- dashboard

struct Row<'a> {
    w: &'a Webhook,
    events_shown: Vec<&'a str>,
    events_more: usize,
    /// The events after the first [`CHIPS_SHOWN`]: what "+N more" unfolds.
    events_rest: Vec<&'a str>,
    last: Option<When>,
    next_retry: Option<When>,
    disabled_at: Option<When>,
    /// Its rate limit held a due delivery back just now.
    held: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard<'a> {
    base: &'a str,
    csrf: &'a str,
    csrf_field: &'a str,
    rows: Vec<Row<'a>>,
    /// The operational notices' banner (#24): webhooks disabled
    /// automatically, or failing.
    attention: Vec<Attention<'a>>,
}

/// One line of the dashboard's banner.
struct Attention<'a> {
    w: &'a Webhook,
    /// Disabled automatically (else: failing).
    disabled: bool,
    since: Option<When>,
}

const CHIPS_SHOWN: usize = 3;

fn dashboard(host: &dyn Host, req: &Request, base: &str) -> Result<Response, DbError> {
    let hooks = store::list(host)?;
    let now = host.now_ms();
    let rows = hooks
        .iter()
        .map(|w| Row {
            w,
            events_shown: w.events.iter().take(CHIPS_SHOWN).map(String::as_str).collect(),
            events_more: w.events.len().saturating_sub(CHIPS_SHOWN),
            events_rest: w.events.iter().skip(CHIPS_SHOWN).map(String::as_str).collect(),
            last: w.last_event_at.map(|t| When::new(t, now)),
            next_retry: w.next_retry_at.map(|t| When::new(t, now)),
            disabled_at: w.disabled_at.map(|t| When::new(t, now)),
            held: w.enabled && w.held_back(now),
        })
        .collect();
    let attention = hooks
        .iter()
        .filter_map(|w| {
            if w.auto_disabled() {
                Some(Attention { w, disabled: true, since: w.disabled_at.map(|t| When::new(t, now)) })
            } else if w.failing() {
                Some(Attention { w, disabled: false, since: w.failing_since.map(|t| When::new(t, now)) })
            } else {
                None
            }
        })
        .collect();
    let t = Dashboard { base, csrf: &req.csrf_token, csrf_field: &req.csrf_field, rows, attention };
    Ok(page(200, "Webhooks", render(&t), None))
}

// ---------------------------------------------------------------- form

#[derive(Debug, Clone, Default)]
struct FormValues {
    name: String,
    url: String,
    secret: String,
    secret_action: String,
    events: Vec<String>,
    enabled: bool,
    /// The secret field holds a secret generated just now.
    generated: bool,
    /// The create form's one-time id (32 hex digits), kept across re-renders.
    form_id: String,
    /// Custom header rows (#24), in order.
    headers: Vec<FormHeader>,
    /// The payload filter (#24).
    filter: String,
    /// Deliveries per second at most, as typed; empty for none.
    rate_limit: String,
    /// "Remove the transformation" is ticked (#24).
    transform_remove: bool,
    /// A component was uploaded with a form that had other errors: a file
    /// box cannot be filled again, so the page asks for the file again.
    upload_lost: bool,
}

/// One custom header row of the form.
#[derive(Debug, Clone, Default)]
struct FormHeader {
    name: String,
    /// Empty for a sealed value (never sent back to the page).
    value: String,
    /// A sealed value is stored under this name: an empty box keeps it.
    sealed: bool,
}

impl FormValues {
    /// The header rows to show: the admin's, then one empty row to type a
    /// new one into, while there is room.
    fn header_rows(&self) -> Vec<FormHeader> {
        let mut rows: Vec<FormHeader> =
            self.headers.iter().filter(|h| !h.name.trim().is_empty() || !h.value.is_empty()).cloned().collect();
        if rows.len() < controls::MAX_HEADERS {
            rows.push(FormHeader::default());
        }
        rows
    }
}

struct EventBox {
    /// The first box of the form: the target of the events error's link.
    first: bool,
    name: &'static str,
    description: &'static str,
    checked: bool,
    /// The whole body a receiver gets for this event, pretty-printed.
    example: String,
}

struct Group {
    category: &'static str,
    events: Vec<EventBox>,
}

#[derive(Template)]
#[template(path = "form.html")]
struct FormPage<'a> {
    base: &'a str,
    csrf: &'a str,
    csrf_field: &'a str,
    action: String,
    editing: Option<&'a Webhook>,
    v: FormValues,
    groups: Vec<Group>,
    errors: Vec<FieldError>,
    /// Every error, in the order of the fields, each with the id of the
    /// field its link leads to.
    summary: Vec<(&'static str, String)>,
    generated: bool,
    secret_since: Option<When>,
    rotation_until: Option<When>,
    /// The attached transformation's digest, shortened, and when it came (#24).
    transform_short: String,
    transform_since: Option<When>,
    has_transform: bool,
    try_it: Option<TryIt>,
}

/// The form's fields in page order, with the id of the control an error's
/// link focuses (for the events, the first checkbox).
const FIELD_TARGETS: &[(&str, &str)] = &[
    ("name", "wh-name"),
    ("url", "wh-url"),
    ("secret", "wh-secret"),
    ("events", "wh-events"),
    ("headers", "wh-header-name-0"),
    ("filter", "wh-filter"),
    ("rate_limit", "wh-rate-limit"),
    ("transform", "wh-transform"),
];

impl FormPage<'_> {
    /// The field's messages, for the line under it.
    fn error(&self, field: &str) -> Option<String> {
        let m: Vec<&str> = self.errors.iter().filter(|e| e.field == field).map(|e| e.message.as_str()).collect();
        (!m.is_empty()).then(|| m.join(" "))
    }
}

/// The edit form's values: the webhook as stored.
fn edit_values(w: &Webhook) -> FormValues {
    FormValues {
        name: w.name.clone(),
        url: w.url.clone(),
        secret: String::new(),
        secret_action: "keep".into(),
        events: w.events.clone(),
        enabled: w.enabled,
        generated: false,
        form_id: String::new(),
        headers: w
            .headers
            .iter()
            .map(|h| FormHeader {
                name: h.name.clone(),
                value: h.value.clone().unwrap_or_default(),
                sealed: h.is_sealed(),
            })
            .collect(),
        filter: w.filter.clone().unwrap_or_default(),
        rate_limit: w.rate_limit.map(|r| r.to_string()).unwrap_or_default(),
        transform_remove: false,
        upload_lost: false,
    }
}

/// The "Try it" box of the edit page (#24): the example event to run the
/// webhook's transformation on, and what the last try gave.
struct TryIt {
    /// The webhook's events (all of them when it has none), the chosen one marked.
    events: Vec<EventOption>,
    data: String,
    error: Option<String>,
    result: Option<TryResult>,
}

/// One try's outcome, as shown.
struct TryResult {
    /// `send`, `skip` or `failed` (the box's data attribute).
    kind: &'static str,
    label: &'static str,
    badge: &'static str,
    reason: Option<String>,
    url: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<String>,
    body_changed: bool,
}

impl TryIt {
    /// The box for `w`, with `event` chosen (by default its first event) and
    /// `data` (by default that event's example).
    fn new(w: &Webhook, event: Option<&str>, data: Option<String>) -> Self {
        let names: Vec<&'static str> = if w.events.is_empty() {
            catalog::EVENTS.iter().filter(|e| catalog::is_subscribable(e.name)).map(|e| e.name).collect()
        } else {
            catalog::EVENTS.iter().filter(|e| w.events.iter().any(|x| x == e.name)).map(|e| e.name).collect()
        };
        let chosen = event.and_then(|e| names.iter().find(|n| **n == e).copied()).or(names.first().copied());
        let data = data.unwrap_or_else(|| {
            chosen.and_then(catalog::find).map(|e| pretty(&e.example())).unwrap_or_else(|| "{}".to_owned())
        });
        let events = names.iter().map(|n| EventOption { name: n, selected: Some(*n) == chosen }).collect();
        TryIt { events, data, error: None, result: None }
    }
}

/// JSON text pretty-printed; as it is when it is not JSON.
fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// `POST /{id}/transform/try`: runs the webhook's transformation on the
/// example event typed into the edit page's "Try it" box and shows the
/// edit page with what it gave (#24). Nothing is sent or stored.
fn try_transform(host: &dyn Host, req: &Request, base: &str, w: &Webhook) -> Result<Response, DbError> {
    let event = req.f("event_type").unwrap_or_default();
    let typed = req.f("data").unwrap_or_default().trim().to_owned();
    let mut t = TryIt::new(w, Some(event), (!typed.is_empty()).then(|| typed.clone()));
    let Some(entry) = catalog::find(event) else {
        t.error = Some("Choose one of the listed events.".into());
        return Ok(form_page_with(host, req, base, Some(w), edit_values(w), Vec::new(), 422, Some(t)));
    };
    // Empty: the event's example.
    let data = if typed.is_empty() { entry.example() } else { typed };
    let parsed = serde_json::from_str::<serde_json::Value>(&data);
    let problem = match &parsed {
        _ if data.len() > outbox::MAX_DATA => {
            Some(format!("Shorten the data to {} KiB or less.", outbox::MAX_DATA / 1024))
        }
        Err(e) => Some(format!("The data is not valid JSON: {e}.")),
        Ok(v) if !v.is_object() => Some("The data must be a JSON object, such as {\"id\": 42}.".to_owned()),
        Ok(_) => None,
    };
    if let Some(p) = problem {
        t.error = Some(p);
        return Ok(form_page_with(host, req, base, Some(w), edit_values(w), Vec::new(), 422, Some(t)));
    }
    let compact = parsed.map(|v| v.to_string()).unwrap_or(data);
    let preview = crate::transform::preview(host, w.id, &w.url, entry.name, &compact, host.now_ms())?;
    use crate::transform::Preview;
    let blank = TryResult {
        kind: "send",
        label: "would be sent",
        badge: "wh-ok",
        reason: None,
        url: None,
        headers: Vec::new(),
        body: None,
        body_changed: false,
    };
    t.result = match preview {
        None => {
            t.error = Some("This webhook has no transformation; upload one above and save first.".into());
            None
        }
        Some(Preview::Send { url, headers, body, body_changed }) => {
            Some(TryResult { url: Some(url), headers, body: Some(pretty(&body)), body_changed, ..blank })
        }
        Some(Preview::Skip(why)) => {
            Some(TryResult { kind: "skip", label: "would be skipped", badge: "wh-skip", reason: Some(why), ..blank })
        }
        Some(Preview::Failed(why)) => {
            Some(TryResult { kind: "failed", label: "failed", badge: "wh-bad", reason: Some(why), ..blank })
        }
    };
    Ok(form_page_with(host, req, base, Some(w), edit_values(w), Vec::new(), 200, Some(t)))
}

fn form_page(
    host: &dyn Host,
    req: &Request,
    base: &str,
    editing: Option<&Webhook>,
    v: FormValues,
    errors: Vec<FieldError>,
    status: u16,
) -> Response {
    let t = editing.map(|w| TryIt::new(w, None, None));
    form_page_with(host, req, base, editing, v, errors, status, t)
}

/// [`form_page`] with the "Try it" box as given.
#[allow(clippy::too_many_arguments)]
fn form_page_with(
    host: &dyn Host,
    req: &Request,
    base: &str,
    editing: Option<&Webhook>,
    v: FormValues,
    errors: Vec<FieldError>,
    status: u16,
    try_it: Option<TryIt>,
) -> Response {
    let first_box =
        catalog::CATEGORIES.first().and_then(|c| catalog::EVENTS.iter().find(|e| e.category == *c)).map(|e| e.name);
    let groups = catalog::CATEGORIES
        .iter()
        .map(|c| Group {
            category: c,
            events: catalog::EVENTS
                .iter()
                .filter(|e| e.category == *c)
                .map(|e| EventBox {
                    first: Some(e.name) == first_box,
                    name: e.name,
                    description: e.description,
                    checked: v.events.iter().any(|x| x == e.name),
                    example: example_payload(e),
                })
                .collect(),
        })
        .collect();
    let action = match editing {
        Some(w) => format!("{base}/{}/edit", w.id),
        None => format!("{base}/new"),
    };
    let generated = v.generated;
    let mut title = match editing {
        Some(w) => format!("Edit {}", w.name),
        None => "Create webhook".to_owned(),
    };
    if !errors.is_empty() {
        // The first words a screen reader says of the page (GOV.UK's pattern).
        title.insert_str(0, "Error: ");
    }
    let summary = FIELD_TARGETS
        .iter()
        .flat_map(|(field, target)| {
            errors.iter().filter(move |e| e.field == *field).map(move |e| (*target, e.message.clone()))
        })
        .collect();
    let now = host.now_ms();
    let secret_since = editing.and_then(|w| w.secret_set_at).map(|t| When::new(t, now));
    let rotation_until = editing.and_then(|w| w.previous_secret_until).filter(|t| *t > now).map(|t| When::new(t, now));
    let attached = editing.and_then(|w| w.transform.as_ref());
    let transform_short = attached.map(|t| t.digest.chars().take(12).collect()).unwrap_or_default();
    let transform_since = attached.map(|t| When::new(t.uploaded_at, now));
    let t = FormPage {
        transform_short,
        transform_since,
        has_transform: attached.is_some(),
        try_it,
        base,
        csrf: &req.csrf_token,
        csrf_field: &req.csrf_field,
        action,
        editing,
        v,
        groups,
        errors,
        summary,
        generated,
        secret_since,
        rotation_until,
    };
    // The page's error summary says what a flash would have.
    page(status, &title, render(&t), None)
}

/// An event's example as the body a receiver gets (the same envelope as
/// `outbox::payload`), pretty-printed.
fn example_payload(e: &catalog::EventType) -> String {
    outbox::payload_pretty(e.name, catalog::EXAMPLE_TIME_MS, &e.example())
}

fn save(host: &dyn Host, req: &Request, base: &str, id: Option<i64>) -> Result<Response, DbError> {
    let existing = match id {
        Some(i) => match store::get(host, i)? {
            Some(w) => Some(w),
            None => return Ok(Response::NotFound),
        },
        None => None,
    };
    let mut action = req.f("secret_action").unwrap_or(if existing.is_some() { "keep" } else { "set" }).to_owned();
    // A secret typed into the box while "Keep" is selected (the default)
    // means "use this one": saving must never drop it silently (#13).
    if action == "keep" && existing.is_some() && req.f("secret").is_some_and(|s| !s.trim().is_empty()) {
        action = "replace".into();
    }
    let mut values = FormValues {
        name: req.f("name").unwrap_or_default().to_owned(),
        url: req.f("url").unwrap_or_default().to_owned(),
        secret: req.f("secret").unwrap_or_default().to_owned(),
        secret_action: action.clone(),
        events: req.f_all("events"),
        enabled: req.f("enabled").is_some_and(|v| v == "on" || v == "1" || v == "true"),
        generated: false,
        // Only a well-formed id counts; a form without one (an old page, a
        // script) simply creates.
        form_id: req
            .f("form_id")
            .filter(|f| f.len() == 32 && f.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_default()
            .to_owned(),
        headers: Vec::new(),
        filter: req.f("filter").unwrap_or_default().to_owned(),
        rate_limit: req.f("rate_limit").unwrap_or_default().to_owned(),
        transform_remove: req.f("transform_remove").is_some_and(|v| v == "on"),
        upload_lost: false,
    };
    // An uploaded component (#24): the host hands the file box's bytes over
    // in base64 (`transform_wasm`); an empty box uploads nothing.
    let upload = req.f("transform_wasm").filter(|b| !b.is_empty());
    // Custom header rows (#24): names and values pair up in order. An empty
    // value under a name whose value is stored sealed keeps that value.
    let stored: &[controls::StoredHeader] = existing.as_ref().map_or(&[], |w| w.headers.as_slice());
    let names = req.f_all("header_name");
    let header_values = req.f_all("header_value");
    values.headers = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let value = header_values.get(i).cloned().unwrap_or_default();
            let sealed =
                value.is_empty() && stored.iter().any(|s| s.is_sealed() && s.name.eq_ignore_ascii_case(n.trim()));
            FormHeader { name: n.clone(), value, sealed }
        })
        .collect();
    if let Some(i) = req.f("remove_header").and_then(|i| i.parse::<usize>().ok()) {
        // "Remove" re-renders the form without the row and saves nothing,
        // so it works without JavaScript (as "Generate" does).
        if i < values.headers.len() {
            values.headers.remove(i);
        }
        return Ok(form_page(host, req, base, existing.as_ref(), values, Vec::new(), 200));
    }
    if req.f("add_header").is_some() {
        // The rows typed so far come back, with a new empty one after them.
        return Ok(form_page(host, req, base, existing.as_ref(), values, Vec::new(), 200));
    }

    // "Generate" re-renders the form with a fresh secret and saves nothing,
    // so it works without JavaScript.
    if req.f("generate").is_some() {
        values.secret = signing::generate_secret(&host.random_bytes(32));
        values.generated = true;
        // On edit, a generated secret rotates: the old one keeps signing for a day.
        values.secret_action = if existing.as_ref().is_some_and(|w| w.has_secret) {
            "rotate".into()
        } else if existing.is_some() {
            "replace".into()
        } else {
            "generated".into()
        };
        return Ok(form_page(host, req, base, existing.as_ref(), values, Vec::new(), 200));
    }

    let mut errors = Vec::new();
    let secret = match action.as_str() {
        "keep" if existing.is_some() => None,
        "remove" if existing.is_some() => Some(String::new()),
        "replace" | "rotate" if values.secret.trim().is_empty() => {
            errors.push(FieldError {
                field: "secret",
                message: "Enter the new secret (or Generate one), or choose Keep.".into(),
            });
            None
        }
        _ => Some(values.secret.clone()),
    };
    // The component is checked (by the host: a component of the right world
    // that imports nothing and compiles) before anything is saved, so a bad
    // one changes nothing.
    let transform = match upload {
        None => None,
        Some(b64) => {
            use base64::Engine as _;
            let checked = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| "The upload did not arrive whole; choose the file again.".to_owned())
                .and_then(|wasm| crate::transform::check(host, &wasm).map(|digest| (wasm, digest)));
            match checked {
                Ok(t) => Some(t),
                Err(m) => {
                    errors.push(FieldError { field: "transform", message: format!("{m} Nothing was saved.") });
                    None
                }
            }
        }
    };
    let input = Input {
        name: values.name.clone(),
        url: values.url.clone(),
        secret,
        rotate: action == "rotate",
        events: values.events.clone(),
        enabled: values.enabled,
        headers: Some(
            values
                .headers
                .iter()
                .map(|h| controls::HeaderInput {
                    name: h.name.clone(),
                    value: if h.sealed { None } else { Some(h.value.clone()) },
                })
                .collect(),
        ),
        stored_headers: stored.to_vec(),
        filter: Some(values.filter.clone()),
        // A form without the field (a page rendered before it existed, a
        // script) keeps the stored limit.
        rate_limit: req.f("rate_limit").map(str::to_owned),
    };
    let valid = match webhook::validate(host, &input) {
        Ok(v) if errors.is_empty() => v,
        Ok(_) => {
            values.upload_lost = transform.is_some();
            return Ok(form_page(host, req, base, existing.as_ref(), values, errors, 422));
        }
        Err(mut e) => {
            e.extend(errors);
            values.upload_lost = transform.is_some();
            return Ok(form_page(host, req, base, existing.as_ref(), values, e, 422));
        }
    };
    // What the form did to the transformation, for the flash message.
    let remove_asked = values.transform_remove;
    let transform_words = |changed: bool| match (&transform, remove_asked && changed) {
        (Some(_), _) => " Its transformation was attached.",
        (None, true) => " Its transformation was removed.",
        (None, false) => "",
    };
    match id {
        None => match store::create_once(host, &valid, Some(values.form_id.as_str()).filter(|f| !f.is_empty())) {
            Ok(new_id) => {
                host.log(Level::Info, &format!("{} created webhook {new_id}", req.actor));
                if let Some((wasm, digest)) = &transform {
                    crate::transform::attach(host, new_id, wasm, digest)?;
                    host.log(
                        Level::Info,
                        &format!("{} attached a transformation (sha256 {digest}) to webhook {new_id}", req.actor),
                    );
                }
                let mut message =
                    format!("Webhook \u{201c}{}\u{201d} was created.{}", valid.name, transform_words(false));
                if store::list(host)?.iter().any(|w| w.id != new_id && w.name == valid.name) {
                    message.push_str(" Another webhook has the same name; rename one to tell them apart.");
                }
                Ok(redirect(base, "", flash(FlashKind::Success, message)))
            }
            Err(store::CreateError::AlreadyCreated(_, name)) => Ok(redirect(
                base,
                "",
                flash(
                    FlashKind::Info,
                    format!(
                        "This form was already submitted: webhook \u{201c}{name}\u{201d} was created then. \
                         Nothing new was created."
                    ),
                ),
            )),
            Err(store::CreateError::TooMany) => {
                let e = vec![FieldError {
                    field: "name",
                    message: format!("At most {} webhooks can exist; delete one first.", webhook::MAX_WEBHOOKS),
                }];
                Ok(form_page(host, req, base, None, values, e, 422))
            }
            Err(store::CreateError::Db(e)) => Err(e),
        },
        Some(i) => {
            store::update(host, i, &valid)?;
            host.log(Level::Info, &format!("{} updated webhook {i}", req.actor));
            let mut removed = false;
            if let Some((wasm, digest)) = &transform {
                crate::transform::attach(host, i, wasm, digest)?;
                host.log(
                    Level::Info,
                    &format!("{} attached a transformation (sha256 {digest}) to webhook {i}", req.actor),
                );
            } else if values.transform_remove && crate::transform::remove(host, i)? {
                host.log(Level::Info, &format!("{} removed the transformation of webhook {i}", req.actor));
                removed = true;
            }
            Ok(redirect(
                base,
                "",
                flash(
                    FlashKind::Success,
                    format!("Webhook \u{201c}{}\u{201d} was saved.{}", valid.name, transform_words(removed)),
                ),
            ))
        }
    }
}

// ---------------------------------------------------------------- delete

#[derive(Template)]
#[template(path = "confirm_delete.html")]
struct ConfirmDelete<'a> {
    base: &'a str,
    csrf: &'a str,
    csrf_field: &'a str,
    w: &'a Webhook,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    message: &'a str,
}

// ---------------------------------------------------------------- history

struct HistoryRow {
    a: store::AttemptRow,
    when: When,
}

struct EventOption {
    name: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage<'a> {
    base: &'a str,
    csrf: &'a str,
    csrf_field: &'a str,
    w: &'a Webhook,
    rows: Vec<HistoryRow>,
    status: &'a str,
    event_options: Vec<EventOption>,
    /// Not the first page: the empty-page text says "on this page".
    deep: bool,
    /// A filter is set: an empty page says the filter matched nothing.
    filtered: bool,
    /// Where this page is: rows `from`–`to` of `total` (under the filter),
    /// `total` shown as "10,000+" past the counting cap; no position on an
    /// empty page or deeper than the cap.
    position: Option<(i64, i64)>,
    total: String,
    /// The first page, from any other.
    first_link: Option<String>,
    prev_link: Option<String>,
    next_link: Option<String>,
    since_choices: &'static [(&'static str, &'static str, u64)],
    failed_count: i64,
    /// The health view (`ui-fragments/health.html`), from the hourly rollups.
    health: health::HealthView,
    pg: PlaygroundForm,
    snippets: Vec<Snippet>,
    /// Events the payload filter kept from this webhook, newest first (#24).
    skipped: Vec<(store::FilteredRow, When)>,
}

/// Filtered events the history page lists.
const SKIPPED_SHOWN: u32 = 20;

fn history(host: &dyn Host, req: &Request, base: &str, id: Option<i64>) -> Result<Response, DbError> {
    let Some(w) = id.map(|i| store::get(host, i)).transpose()?.flatten() else {
        return Ok(Response::NotFound);
    };
    let status = match req.q("status") {
        Some("success") => "success",
        Some("failed") => "failed",
        _ => "",
    };
    let event = req.q("event").filter(|e| catalog::find(e).is_some()).map(str::to_owned);
    // Keyset paging (`before`/`after` carry a row's key), so a deep page
    // costs what the first does. A key that does not parse answers the
    // first page, as does the old `page=N` of a bookmark; both keys at once
    // is no page we link to, so the first page too.
    let key = |name: &str| req.q(name).map(store::HistoryKey::parse);
    let cursor = match (key("before"), key("after")) {
        (Some(Some(k)), None) => HistoryCursor::Before(k),
        (None, Some(Some(k))) => HistoryCursor::After(k),
        _ => HistoryCursor::Newest,
    };
    let filter = HistoryFilter {
        success: match status {
            "success" => Some(true),
            "failed" => Some(false),
            _ => None,
        },
        event_type: event.clone(),
    };
    let found = store::history(host, w.id, &filter, cursor, PER_PAGE)?;
    let (before, total) = store::history_position(host, w.id, &filter, found.rows.first().map(store::HistoryKey::of))?;
    // Deeper than the counting cap, the position is not known: say the total only.
    let shown = found.rows.len() as i64;
    let position = (shown > 0 && before <= store::HISTORY_COUNT_CAP).then_some((before + 1, before + shown));
    let now = host.now_ms();
    // Every link keeps the filters; the values are fixed words, catalog
    // names and digits, so none needs percent-encoding.
    let link = |cursor: Option<(&str, store::HistoryKey)>| {
        let mut q = Vec::new();
        if let Some((name, k)) = cursor {
            q.push(format!("{name}={k}"));
        }
        if !status.is_empty() {
            q.push(format!("status={status}"));
        }
        if let Some(e) = &event {
            q.push(format!("event={e}"));
        }
        let mut url = format!("{base}/{}/history", w.id);
        if !q.is_empty() {
            url.push('?');
            url.push_str(&q.join("&"));
        }
        url
    };
    let t = HistoryPage {
        base,
        csrf: &req.csrf_token,
        csrf_field: &req.csrf_field,
        w: &w,
        rows: found.rows.into_iter().map(|a| HistoryRow { when: When::new(a.attempted_at, now), a }).collect(),
        status,
        event_options: catalog::EVENTS
            .iter()
            .map(|e| EventOption { name: e.name, selected: event.as_deref() == Some(e.name) })
            .collect(),
        deep: !found.newest,
        filtered: !status.is_empty() || event.is_some(),
        position,
        total: if total > store::HISTORY_COUNT_CAP {
            format!("{}+", store::HISTORY_COUNT_CAP)
        } else {
            total.to_string()
        },
        first_link: (!found.newest).then(|| link(None)),
        prev_link: found.newer.map(|k| link(Some(("after", k)))),
        next_link: found.older.map(|k| link(Some(("before", k)))),
        since_choices: SINCE_CHOICES,
        failed_count: store::exhausted_count(host, w.id)?,
        health: health::HealthView::new(&health::load(host, w.id, now)?, host.settings().retention_ms),
        pg: PlaygroundForm::default(),
        snippets: receiver_snippets(&w.url),
        skipped: store::filtered(host, w.id, SKIPPED_SHOWN)?
            .into_iter()
            .map(|f| {
                let when = When::new(f.filtered_at, now);
                (f, when)
            })
            .collect(),
    };
    Ok(page(200, &format!("History of {}", w.name), render(&t), None))
}

// ---------------------------------------------------------------- playground

/// The playground's form: what was pasted, and why it was refused.
#[derive(Debug, Clone, Default)]
struct PlaygroundForm {
    headers: String,
    body: String,
    errors: Vec<FieldError>,
}

impl PlaygroundForm {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors.iter().find(|e| e.field == field).map(|e| e.message.as_str())
    }
    fn max_headers_kib(&self) -> usize {
        playground::MAX_HEADERS / 1024
    }
    fn max_body_kib(&self) -> usize {
        playground::MAX_BODY / 1024
    }
}

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage<'a> {
    base: &'a str,
    csrf: &'a str,
    csrf_field: &'a str,
    w: &'a Webhook,
    pg: PlaygroundForm,
    report: Option<playground::Report>,
}

fn verify_page(
    req: &Request,
    base: &str,
    w: &Webhook,
    pg: PlaygroundForm,
    report: Option<playground::Report>,
    status: u16,
) -> Response {
    let fl = (status == 422).then(|| Flash { kind: FlashKind::Error, message: "Nothing was checked.".into() });
    let t = VerifyPage { base, csrf: &req.csrf_token, csrf_field: &req.csrf_field, w, pg, report };
    page(status, &format!("Check a request to {}", w.name), render(&t), fl)
}

/// The URL each receiver snippet names in its opening comment; the page shows
/// the webhook's own URL there.
pub const SNIPPET_URL: &str = "https://example.com/webhooks";

/// One receiver snippet: verification code for one language, from its file
/// in `ui-fragments/snippets/` (the tests run those files).
pub struct Snippet {
    pub lang: &'static str,
    pub label: &'static str,
    pub file: &'static str,
    pub code: String,
}

/// The receiver snippets, naming `url` as the endpoint they serve.
pub fn receiver_snippets(url: &str) -> Vec<Snippet> {
    const FILES: [(&str, &str, &str, &str); 4] = [
        ("python", "Python", "receiver.py", include_str!("../../ui-fragments/snippets/receiver.py")),
        ("node", "Node.js", "receiver.mjs", include_str!("../../ui-fragments/snippets/receiver.mjs")),
        ("php", "PHP (Laravel)", "receiver.php", include_str!("../../ui-fragments/snippets/receiver.php")),
        ("rust", "Rust", "receiver.rs", include_str!("../../ui-fragments/snippets/receiver.rs")),
    ];
    FILES
        .iter()
        .map(|(lang, label, file, code)| Snippet { lang, label, file, code: code.replacen(SNIPPET_URL, url, 1) })
        .collect()
}

// ---------------------------------------------------------------- delivery

struct TryView {
    t: store::AttemptDetail,
    when: When,
    body_note: Option<String>,
    /// Not sent: the webhook's transformation skipped it (#24).
    skipped: bool,
}

/// What the webhook's transformation made of an attempt (#24), for the
/// delivery's details.
struct TransformView {
    /// `sent`, `skipped` or `failed` (the section's data attribute).
    kind: &'static str,
    label: &'static str,
    badge: &'static str,
    reason: Option<String>,
    url: Option<String>,
    headers: Vec<String>,
    body: Option<String>,
    body_note: Option<String>,
}

impl TransformView {
    fn of(note: &crate::transform::Note) -> Self {
        use crate::transform::Note;
        let blank = TransformView {
            kind: "sent",
            label: "",
            badge: "wh-ok",
            reason: None,
            url: None,
            headers: Vec::new(),
            body: None,
            body_note: None,
        };
        match note {
            Note::Sent { body, url, headers, .. } => TransformView {
                label: if body.is_some() { "sent, changed" } else { "sent" },
                url: Some(url.clone()),
                headers: headers.clone(),
                // Pretty when it is JSON, as the payload is; as sent otherwise.
                body: body.as_ref().map(|b| {
                    serde_json::from_str::<serde_json::Value>(b)
                        .ok()
                        .and_then(|v| serde_json::to_string_pretty(&v).ok())
                        .unwrap_or_else(|| b.clone())
                }),
                ..blank
            },
            Note::Skipped(why) => TransformView {
                kind: "skipped",
                label: "skipped",
                badge: "wh-skip",
                reason: Some(format!("Not sent: the transformation skipped this delivery: {why}")),
                ..blank
            },
            Note::Failed(why) => {
                TransformView { kind: "failed", label: "failed", badge: "wh-bad", reason: Some(why.clone()), ..blank }
            }
        }
    }
}

struct DeliveryView {
    d: store::DeliveryDetail,
    /// The state in words: a test send is one attempt the admin asked for,
    /// so it reads "test failed", never "exhausted" (it gave up on nothing).
    state_label: String,
    payload_pretty: String,
    occurred: When,
    next: Option<When>,
    tries: Vec<TryView>,
    /// The latest attempt's transformation result (#24).
    transform: Option<TransformView>,
}

impl DeliveryView {
    fn new(d: &store::DeliveryDetail, now: u64) -> Self {
        let payload_pretty = outbox::payload_pretty(&d.event_type, d.occurred_at, &d.data);
        let state_label = if d.event_type == catalog::TEST_EVENT {
            match d.state {
                DeliveryState::Succeeded => "test succeeded".to_owned(),
                DeliveryState::Exhausted => "test failed".to_owned(),
                s => format!("test {}", s.as_str()),
            }
        } else {
            d.state.as_str().to_owned()
        };
        // `tries` is newest first.
        let transform = d
            .tries
            .first()
            .and_then(|t| crate::transform::Note::parse(t.transform.as_deref()))
            .map(|n| TransformView::of(&n));
        DeliveryView {
            transform,
            state_label,
            payload_pretty,
            occurred: When::new(d.occurred_at, now),
            next: d.next_attempt_at.filter(|_| d.state.is_waiting()).map(|t| When::new(t, now)),
            tries: d
                .tries
                .iter()
                .map(|t| TryView {
                    when: When::new(t.attempted_at, now),
                    body_note: match (t.response_body.as_ref(), t.response_body_size) {
                        (Some(b), Some(size)) if (b.len() as i64) < size => {
                            Some(format!("Showing the first {} of {size} bytes.", b.len()))
                        }
                        _ => None,
                    },
                    skipped: crate::transform::Note::is_skip(t.transform.as_deref()),
                    t: t.clone(),
                })
                .collect(),
            d: d.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage<'a> {
    base: &'a str,
    csrf: &'a str,
    csrf_field: &'a str,
    w: &'a Webhook,
    d: &'a DeliveryView,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        assert_eq!(relative(1000, 1000), "just now");
        assert_eq!(relative(0, 5_000), "5 s ago");
        assert_eq!(relative(0, 180_000), "3 min ago");
        assert_eq!(relative(7_200_000, 0), "in 2 h");
        assert_eq!(relative(0, 3 * 86_400_000), "3 d ago");
    }
}
