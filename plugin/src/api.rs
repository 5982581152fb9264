//! The JSON management API (`management.handle`): the admin pages' rules for
//! panels and scripts. Validation is `webhook::validate`, storage is `store`,
//! sends are `outbox` — the same functions the pages call, so the two can
//! never disagree. Errors are `{"error": {"code", "message", "field"}}`.

use serde_json::{Map, Value as Json, json};

use crate::catalog;
use crate::controls;
use crate::host::{DbError, Host, Level};
use crate::outbox::{self, DeliveryState, Outcome, rfc3339};
use crate::signing;
use crate::store::{self, DeliveryFilter, Webhook};
use crate::webhook::{self, FieldError, Input};

/// One API request (mirrors `management.api-request`).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: String,
    pub actor: String,
}

/// One API response (mirrors `management.api-response`).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// With a 405: the methods the path takes.
    pub allow: Option<String>,
}

/// Deliveries per page by default, and at most.
pub const DEFAULT_LIMIT: u32 = 25;
pub const MAX_LIMIT: u32 = 100;

/// An API error; rendered as `{"error": {...}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
    field: Option<String>,
    details: Vec<FieldError>,
    /// With a 405: the methods the path takes, for the `Allow` header.
    allow: Option<String>,
}

fn error(status: u16, code: &'static str, message: impl Into<String>, field: Option<&str>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
        field: field.map(str::to_owned),
        details: Vec::new(),
        allow: None,
    }
}

/// 405 for a path that takes only `methods`; they go in `Allow` too.
fn method_not_allowed(methods: &[&str]) -> ApiError {
    let words = match methods {
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => "no method".to_owned(),
    };
    let mut e = error(405, "method_not_allowed", format!("Use {words} on this path."), None);
    e.allow = Some(methods.join(", "));
    e
}

fn not_found(what: &str) -> ApiError {
    error(404, "not_found", format!("There is no such {what}."), None)
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Busy => error(503, "busy", "The database is busy; try again.", None),
            e => error(500, "storage", format!("Storage failed: {e}"), None),
        }
    }
}

impl ApiError {
    fn response(self) -> Response {
        let mut err = json!({ "code": self.code, "message": self.message, "field": self.field });
        if !self.details.is_empty() {
            err["details"] =
                self.details.iter().map(|d| json!({ "field": d.field, "message": d.message })).collect::<Json>();
        }
        Response { status: self.status, body: json!({ "error": err }).to_string(), allow: self.allow }
    }
}

fn ok(status: u16, body: Json) -> Result<Response, ApiError> {
    Ok(Response { status, body: body.to_string(), allow: None })
}

/// Routes one API request.
pub fn handle(host: &dyn Host, req: &Request) -> Response {
    match route(host, req) {
        Ok(r) => r,
        Err(e) => {
            if e.status >= 500 {
                host.log(Level::Error, &format!("api {} {}: {}", req.method, req.path, e.message));
            }
            e.response()
        }
    }
}

fn route(host: &dyn Host, req: &Request) -> Result<Response, ApiError> {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let m = req.method.to_ascii_uppercase();
    // An id that is not a positive integer names nothing: 404, saying what.
    let id_of =
        |what: &'static str| move |s: &str| s.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| not_found(what));
    let id = id_of("webhook");
    let delivery_id = id_of("delivery");
    match (segs.as_slice(), m.as_str()) {
        (["event-types"], "GET") => event_types(),
        (["event-types"], _) => Err(method_not_allowed(&["GET"])),
        (["webhooks"], "GET") => {
            let hooks = store::list(host)?;
            ok(200, json!({ "data": hooks.iter().map(|w| webhook_json(w, host.now_ms())).collect::<Vec<_>>() }))
        }
        (["webhooks"], "POST") => create(host, req),
        (["webhooks"], _) => Err(method_not_allowed(&["GET", "POST"])),
        (["webhooks", i], "GET") => {
            let w = store::get(host, id(i)?)?.ok_or_else(|| not_found("webhook"))?;
            ok(200, webhook_json(&w, host.now_ms()))
        }
        (["webhooks", i], "PATCH") => update(host, req, id(i)?),
        (["webhooks", i], "DELETE") => {
            let i = id(i)?;
            if !store::delete(host, i)? {
                return Err(not_found("webhook"));
            }
            host.log(Level::Info, &format!("{} deleted webhook {i} (API)", req.actor));
            Ok(Response { status: 204, body: String::new(), allow: None })
        }
        (["webhooks", _], _) => Err(method_not_allowed(&["GET", "PATCH", "DELETE"])),
        (["webhooks", i, "test"], "POST") => {
            let i = id(i)?;
            let o = outbox::send_test(host, i, &req.actor)?.ok_or_else(|| not_found("webhook"))?;
            host.log(Level::Info, &format!("{} sent a test to webhook {i} (API)", req.actor));
            ok(200, outcome_json(&o))
        }
        (["webhooks", _, "test"], _) => Err(method_not_allowed(&["POST"])),
        (["webhooks", i, "deliveries"], "GET") => deliveries(host, req, id(i)?),
        (["webhooks", _, "deliveries"], _) => Err(method_not_allowed(&["GET"])),
        (["webhooks", i, "filtered"], "GET") => filtered(host, req, id(i)?),
        (["webhooks", _, "filtered"], _) => Err(method_not_allowed(&["GET"])),
        (["webhooks", i, "transform"], "PUT") => put_transform(host, req, id(i)?),
        (["webhooks", i, "transform"], "DELETE") => {
            let i = id(i)?;
            if store::get(host, i)?.is_none() {
                return Err(not_found("webhook"));
            }
            if crate::transform::remove(host, i)? {
                host.log(Level::Info, &format!("{} removed the transformation of webhook {i} (API)", req.actor));
            }
            Ok(Response { status: 204, body: String::new(), allow: None })
        }
        (["webhooks", _, "transform"], _) => Err(method_not_allowed(&["PUT", "DELETE"])),
        (["webhooks", i, "transform", "preview"], "POST") => preview_transform(host, req, id(i)?),
        (["webhooks", _, "transform", "preview"], _) => Err(method_not_allowed(&["POST"])),
        (["webhooks", i, "deliveries", d], "GET") => {
            let d = store::delivery(host, id(i)?, delivery_id(d)?)?.ok_or_else(|| not_found("delivery"))?;
            ok(200, delivery_json(&d))
        }
        (["webhooks", _, "deliveries", _], _) => Err(method_not_allowed(&["GET"])),
        (["webhooks", i, "deliveries", d, "resend"], "POST") => {
            let (i, d) = (id(i)?, delivery_id(d)?);
            if store::delivery(host, i, d)?.is_none() {
                return Err(not_found("delivery"));
            }
            let o = outbox::resend(host, i, d)?.ok_or_else(|| {
                error(409, "in_flight", "This delivery is being sent right now; try again in a moment.", None)
            })?;
            ok(200, outcome_json(&o))
        }
        (["webhooks", _, "deliveries", _, "resend"], _) => Err(method_not_allowed(&["POST"])),
        _ => Err(error(404, "not_found", format!("No API route {}.", req.path), None)),
    }
}

fn event_types() -> Result<Response, ApiError> {
    let data: Vec<Json> = catalog::EVENTS
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "category": e.category,
                "description": e.description,
                "subscribable": catalog::is_subscribable(e.name),
                "schema": serde_json::from_str::<Json>(e.schema).unwrap_or(Json::Null),
                "example": e.example_value(),
            })
        })
        .collect();
    ok(200, json!({ "data": data }))
}

fn time(ms: Option<u64>) -> Json {
    ms.map_or(Json::Null, |t| Json::String(rfc3339(t)))
}

/// A webhook as the API shows it; never its secret.
pub fn webhook_json(w: &Webhook, now: u64) -> Json {
    json!({
        "id": w.id,
        "name": w.name,
        "url": w.url,
        "events": w.events,
        "enabled": w.enabled,
        "disabled_reason": w.disabled_reason,
        "disabled_at": time(w.disabled_at),
        "has_secret": w.has_secret,
        "secret_set_at": time(w.secret_set_at),
        "previous_secret_valid_until": time(w.previous_secret_until.filter(|t| *t > now)),
        "last_delivery": w.last_event_at.map(|at| json!({
            "event_type": w.last_event_type,
            "attempted_at": rfc3339(at),
            "status": w.last_status,
            "success": w.last_ok.unwrap_or(false),
        })),
        "retrying": w.retrying,
        "next_retry_at": time(w.next_retry_at),
        "headers": w.headers.iter().map(|h| json!({
            "name": h.name, "value": h.shown(), "sealed": h.is_sealed(),
        })).collect::<Vec<_>>(),
        "filter": w.filter,
        "failing_since": time(w.failing_since),
        "rate_limit": w.rate_limit,
        "rate_limited": w.held_back(now),
        "rate_limited_at": time(w.rate_limited_at),
        "transform": w.transform.as_ref().map(transform_json),
    })
}

/// A webhook's transformation as the API shows it (#24); never its bytes.
fn transform_json(t: &crate::transform::Attached) -> Json {
    json!({ "digest": t.digest, "size": t.size, "uploaded_at": rfc3339(t.uploaded_at) })
}

/// `PUT /webhooks/{id}/transform`: attaches a transformation (#24), the
/// component's bytes in base64 as `component`; replaces the one there was.
/// Checked by the host before anything is stored: a refusal changes nothing.
fn put_transform(host: &dyn Host, req: &Request, id: i64) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let map = body_object(req, &["component"])?;
    if store::get(host, id)?.is_none() {
        return Err(not_found("webhook"));
    }
    let Some(text) = get_str(&map, "component")? else {
        return Err(error(
            422,
            "validation_failed",
            "component is required: the .wasm file's bytes in base64.",
            Some("component"),
        ));
    };
    let wasm = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| {
        error(422, "invalid_component", format!("component is not valid base64: {e}."), Some("component"))
    })?;
    let digest =
        crate::transform::check(host, &wasm).map_err(|m| error(422, "invalid_component", m, Some("component")))?;
    if !crate::transform::attach(host, id, &wasm, &digest)? {
        return Err(not_found("webhook"));
    }
    host.log(
        Level::Info,
        &format!(
            "{} attached a transformation ({} bytes, sha256 {digest}) to webhook {id} (API)",
            req.actor,
            wasm.len()
        ),
    );
    let w = store::get(host, id)?.ok_or_else(|| not_found("webhook"))?;
    ok(200, webhook_json(&w, host.now_ms()))
}

/// `POST /webhooks/{id}/transform/preview`: runs the webhook's
/// transformation on an example delivery (#24): `event_type` (by default
/// the webhook's first event) and `data` (by default that event's example).
/// Nothing is sent or stored. 409 `no_transform` when the webhook has none
/// (the webhook exists: 404 is kept for a missing webhook).
fn preview_transform(host: &dyn Host, req: &Request, id: i64) -> Result<Response, ApiError> {
    let map = if req.body.trim().is_empty() { Map::new() } else { body_object(req, &["event_type", "data"])? };
    let w = store::get(host, id)?.ok_or_else(|| not_found("webhook"))?;
    let event_type = match get_str(&map, "event_type")? {
        Some(t) => t,
        None => w.events.first().cloned().unwrap_or_else(|| "user.created".to_owned()),
    };
    let Some(entry) = catalog::find(&event_type) else {
        return Err(error(422, "validation_failed", format!("Unknown event type: {event_type}."), Some("event_type")));
    };
    let data = match map.get("data") {
        None => entry.example(),
        Some(v @ Json::Object(_)) => v.to_string(),
        Some(_) => return Err(wrong_type("data", "a JSON object")),
    };
    if data.len() > outbox::MAX_DATA {
        return Err(error(
            422,
            "validation_failed",
            format!("data is larger than {} KiB.", outbox::MAX_DATA / 1024),
            Some("data"),
        ));
    }
    let now = host.now_ms();
    let Some(p) = crate::transform::preview(host, id, &w.url, &event_type, &data, now)? else {
        return Err(error(
            409,
            "no_transform",
            "This webhook has no transformation to try; attach one first (PUT /webhooks/{id}/transform).",
            None,
        ));
    };
    let input = outbox::payload(&event_type, now, &data);
    let body = match p {
        crate::transform::Preview::Send { url, headers, body, body_changed } => json!({
            "result": "send", "url": url, "headers": pairs_json(&headers), "body": body,
            "body_changed": body_changed, "event_type": event_type, "input": input,
        }),
        crate::transform::Preview::Skip(reason) => {
            json!({ "result": "skip", "reason": reason, "event_type": event_type, "input": input })
        }
        crate::transform::Preview::Failed(reason) => {
            json!({ "result": "failed", "reason": reason, "event_type": event_type, "input": input })
        }
    };
    ok(200, body)
}

fn outcome_json(o: &Outcome) -> Json {
    json!({
        "delivery_id": o.delivery_id,
        "success": o.success,
        "status": o.status,
        "error": o.error,
        "state": o.state,
    })
}

fn pairs_json(p: &[(String, String)]) -> Json {
    p.iter().map(|(k, v)| json!([k, v])).collect()
}

fn delivery_json(d: &store::DeliveryDetail) -> Json {
    let payload = outbox::payload(&d.event_type, d.occurred_at, &d.data);
    json!({
        "id": d.id,
        "msg_id": d.msg_id,
        "state": d.state,
        "attempts_made": d.attempts,
        "next_attempt_at": time(d.next_attempt_at.filter(|_| d.state.is_waiting())),
        "event": {
            "id": d.event_id,
            "type": d.event_type,
            "occurred_at": rfc3339(d.occurred_at),
        },
        "payload": payload,
        "attempts": d.tries.iter().map(|t| json!({
            "attempt_no": t.attempt_no,
            "attempted_at": rfc3339(t.attempted_at),
            "duration_ms": t.duration_ms,
            "success": t.success,
            "error": t.error,
            "skipped": crate::transform::Note::is_skip(t.transform.as_deref()),
            "transform": crate::transform::Note::api_json(t.transform.as_deref()),
            "request_headers": pairs_json(&t.request_headers),
            "response": t.status.map(|s| json!({
                "status": s,
                "headers": pairs_json(&t.response_headers),
                "body": t.response_body,
                "body_size": t.response_body_size,
            })),
        })).collect::<Vec<_>>(),
    })
}

// ------------------------------------------------------------ bodies

/// The JSON object body, with unknown fields refused by name.
fn body_object(req: &Request, allowed: &[&str]) -> Result<Map<String, Json>, ApiError> {
    let v: Json = serde_json::from_str(&req.body)
        .map_err(|e| error(400, "invalid_json", format!("The body is not valid JSON: {e}."), None))?;
    let Json::Object(map) = v else {
        // JSON, but of the wrong shape: a value refused, like a wrong field (422).
        return Err(error(422, "invalid_body", "The body must be a JSON object.", None));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(error(
            422,
            "unknown_field",
            format!("Unknown field {k:?}; expected one of: {}.", allowed.join(", ")),
            Some(k),
        ));
    }
    Ok(map)
}

fn wrong_type(field: &str, want: &str) -> ApiError {
    error(422, "invalid_type", format!("{field} must be {want}."), Some(field))
}

fn get_str(map: &Map<String, Json>, field: &str) -> Result<Option<String>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

fn get_bool(map: &Map<String, Json>, field: &str) -> Result<Option<bool>, ApiError> {
    match map.get(field) {
        None => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong_type(field, "true or false")),
    }
}

fn get_events(map: &Map<String, Json>) -> Result<Option<Vec<String>>, ApiError> {
    match map.get("events") {
        None => Ok(None),
        Some(Json::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| wrong_type("events", "an array of event names")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong_type("events", "an array of event names")),
    }
}

/// `rate_limit`: absent (keep, or none on create), null (none) or an
/// integer, as the text `webhook::validate` checks (its range message is the
/// form's).
fn get_rate_limit(map: &Map<String, Json>) -> Result<Option<String>, ApiError> {
    match map.get("rate_limit") {
        None => Ok(None),
        Some(Json::Null) => Ok(Some(String::new())),
        Some(Json::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        // JSON Schema counts 50.0 as an integer; so does this.
        Some(Json::Number(n)) if n.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15) => {
            Ok(Some(format!("{}", n.as_f64().unwrap_or_default() as i64)))
        }
        Some(_) => Err(wrong_type("rate_limit", "a whole number of deliveries per second from 1 to 10000, or null")),
    }
}

/// `secret`: absent (keep), null (none) or a string (set); `generate_secret`
/// makes one. Answers the new secret (`Some("")` for none) and whether it
/// was generated.
fn secret_change(host: &dyn Host, map: &Map<String, Json>) -> Result<(Option<String>, bool), ApiError> {
    let generate = get_bool(map, "generate_secret")?.unwrap_or(false);
    let given = match map.get("secret") {
        None => None,
        Some(Json::Null) => Some(String::new()),
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => return Err(wrong_type("secret", "a string or null")),
    };
    match (given, generate) {
        (Some(_), true) => Err(error(
            422,
            "conflicting_fields",
            "Send either secret or generate_secret, not both.",
            Some("generate_secret"),
        )),
        (None, true) => Ok((Some(signing::generate_secret(&host.random_bytes(32))), true)),
        (given, false) => Ok((given, false)),
    }
}

fn invalid(errors: Vec<FieldError>) -> ApiError {
    let first = errors.first().cloned().unwrap_or(FieldError { field: "body", message: "Invalid input.".into() });
    ApiError {
        status: 422,
        code: "validation_failed",
        message: first.message,
        field: Some(first.field.to_owned()),
        details: errors,
        allow: None,
    }
}

const CREATE_FIELDS: &[&str] =
    &["name", "url", "events", "enabled", "secret", "generate_secret", "headers", "filter", "rate_limit"];
const UPDATE_FIELDS: &[&str] = &[
    "name",
    "url",
    "events",
    "enabled",
    "secret",
    "generate_secret",
    "rotate_secret",
    "headers",
    "filter",
    "rate_limit",
];

/// `headers`: absent (keep), or an array of `{"name", "value"}`; a value
/// left out (or null) keeps the sealed value stored under that name (#24).
fn get_headers(map: &Map<String, Json>) -> Result<Option<Vec<controls::HeaderInput>>, ApiError> {
    const WANT: &str = "an array of {\"name\": string, \"value\": string} objects";
    let Some(v) = map.get("headers") else { return Ok(None) };
    let Json::Array(a) = v else { return Err(wrong_type("headers", WANT)) };
    a.iter()
        .map(|h| {
            let Json::Object(o) = h else { return Err(wrong_type("headers", WANT)) };
            if o.keys().any(|k| k != "name" && k != "value" && k != "sealed") {
                return Err(wrong_type("headers", WANT));
            }
            let name = o.get("name").and_then(Json::as_str).ok_or_else(|| wrong_type("headers", WANT))?;
            // The form's empty rows and stray spaces are the form's; the API
            // takes a name as it is documented (an HTTP token) or refuses it.
            if name.is_empty() || name.trim() != name {
                return Err(error(
                    422,
                    "validation_failed",
                    "Every header needs a name: an HTTP token (letters, digits, -), without spaces.",
                    Some("headers"),
                ));
            }
            let sealed = match o.get("sealed") {
                None => false,
                Some(Json::Bool(b)) => *b,
                Some(_) => return Err(wrong_type("headers", WANT)),
            };
            let value = match o.get("value") {
                None | Some(Json::Null) => None,
                // A header as GET shows it, sent back unchanged: keep.
                Some(Json::String(s)) if sealed && s == controls::MASK => None,
                Some(Json::String(s)) => Some(s.clone()),
                Some(_) => return Err(wrong_type("headers", WANT)),
            };
            Ok(controls::HeaderInput { name: name.to_owned(), value })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `filter`: absent (keep), null or "" (none), or a condition.
fn get_filter(map: &Map<String, Json>) -> Result<Option<String>, ApiError> {
    match map.get("filter") {
        None => Ok(None),
        Some(Json::Null) => Ok(Some(String::new())),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type("filter", "a string or null")),
    }
}

fn with_secret(mut body: Json, generated: Option<String>) -> Json {
    // A generated secret is shown once, in the answer to the call that made it.
    if let Some(s) = generated {
        body["secret"] = Json::String(s);
    }
    body
}

fn create(host: &dyn Host, req: &Request) -> Result<Response, ApiError> {
    let map = body_object(req, CREATE_FIELDS)?;
    let (secret, generated) = secret_change(host, &map)?;
    let input = Input {
        name: get_str(&map, "name")?.unwrap_or_default(),
        url: get_str(&map, "url")?.unwrap_or_default(),
        secret: Some(secret.clone().unwrap_or_default()),
        rotate: false,
        events: get_events(&map)?.unwrap_or_default(),
        enabled: get_bool(&map, "enabled")?.unwrap_or(true),
        headers: Some(get_headers(&map)?.unwrap_or_default()),
        stored_headers: Vec::new(),
        filter: get_filter(&map)?,
        rate_limit: get_rate_limit(&map)?,
    };
    let valid = webhook::validate(host, &input).map_err(invalid)?;
    let id = match store::create(host, &valid) {
        Ok(id) => id,
        Err(store::CreateError::TooMany) => {
            return Err(error(
                422,
                "limit_reached",
                format!("At most {} webhooks can exist; delete one first.", webhook::MAX_WEBHOOKS),
                None,
            ));
        }
        Err(store::CreateError::Db(e)) => return Err(e.into()),
        // The API sends no form id; an id given twice would mean the same.
        Err(store::CreateError::AlreadyCreated(id, _)) => id,
    };
    host.log(Level::Info, &format!("{} created webhook {id} (API)", req.actor));
    let w = store::get(host, id)?.ok_or_else(|| not_found("webhook"))?;
    ok(201, with_secret(webhook_json(&w, host.now_ms()), secret.filter(|_| generated)))
}

fn update(host: &dyn Host, req: &Request, id: i64) -> Result<Response, ApiError> {
    let map = body_object(req, UPDATE_FIELDS)?;
    let w = store::get(host, id)?.ok_or_else(|| not_found("webhook"))?;
    let (secret, generated) = secret_change(host, &map)?;
    let rotate = get_bool(&map, "rotate_secret")?.unwrap_or(false);
    if rotate && secret.as_deref().is_none_or(str::is_empty) {
        return Err(error(
            422,
            "conflicting_fields",
            "rotate_secret needs a new secret or generate_secret.",
            Some("rotate_secret"),
        ));
    }
    let input = Input {
        name: get_str(&map, "name")?.unwrap_or_else(|| w.name.clone()),
        url: get_str(&map, "url")?.unwrap_or_else(|| w.url.clone()),
        secret: secret.clone(),
        rotate,
        events: get_events(&map)?.unwrap_or_else(|| w.events.clone()),
        enabled: get_bool(&map, "enabled")?.unwrap_or(w.enabled),
        headers: get_headers(&map)?,
        stored_headers: w.headers.clone(),
        filter: get_filter(&map)?,
        rate_limit: get_rate_limit(&map)?,
    };
    let valid = webhook::validate(host, &input).map_err(invalid)?;
    if !store::update(host, id, &valid)? {
        return Err(not_found("webhook"));
    }
    host.log(Level::Info, &format!("{} updated webhook {id} (API)", req.actor));
    let w = store::get(host, id)?.ok_or_else(|| not_found("webhook"))?;
    ok(200, with_secret(webhook_json(&w, host.now_ms()), secret.filter(|_| generated)))
}

/// `GET /webhooks/{id}/filtered`: the newest events this webhook's payload
/// filter kept from it (#24), at most `limit` (default 25, at most 100).
fn filtered(host: &dyn Host, req: &Request, id: i64) -> Result<Response, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    for (k, v) in &req.query {
        match k.as_str() {
            "limit" => {
                limit = v.parse::<u32>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                    error(422, "invalid_query", format!("limit must be 1 to {MAX_LIMIT}."), Some("limit"))
                })?;
            }
            other => {
                return Err(error(
                    422,
                    "invalid_query",
                    format!("Unknown query parameter {other:?}; expected limit."),
                    Some(other),
                ));
            }
        }
    }
    if store::get(host, id)?.is_none() {
        return Err(not_found("webhook"));
    }
    let rows = store::filtered(host, id, limit)?;
    ok(
        200,
        json!({ "data": rows.iter().map(|f| json!({
            "event_id": f.event_id,
            "event_type": f.event_type,
            "filtered_at": rfc3339(f.filtered_at),
            "filter": f.filter,
            "reason": "The event's data did not match the webhook's payload filter.",
        })).collect::<Vec<_>>() }),
    )
}

fn deliveries(host: &dyn Host, req: &Request, id: i64) -> Result<Response, ApiError> {
    let mut filter = DeliveryFilter::default();
    let mut limit = DEFAULT_LIMIT;
    for (k, v) in &req.query {
        match k.as_str() {
            "state" => {
                filter.states = match (v.as_str(), DeliveryState::parse(v)) {
                    (_, Some(state)) => vec![state],
                    ("waiting", None) => DeliveryState::ALL.into_iter().filter(|s| s.is_waiting()).collect(),
                    _ => {
                        return Err(error(
                            422,
                            "invalid_query",
                            "state must be pending, retrying, waiting, succeeded, exhausted or skipped.",
                            Some("state"),
                        ));
                    }
                }
            }
            "event_type" => {
                if catalog::find(v).is_none() {
                    return Err(error(422, "invalid_query", format!("Unknown event type: {v}."), Some("event_type")));
                }
                filter.event_type = Some(v.clone());
            }
            "limit" => {
                limit = v.parse::<u32>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                    error(422, "invalid_query", format!("limit must be 1 to {MAX_LIMIT}."), Some("limit"))
                })?;
            }
            "before" => {
                filter.before = Some(v.parse::<i64>().ok().filter(|b| *b > 0).ok_or_else(|| {
                    error(422, "invalid_query", "before must be a delivery id from next_before.", Some("before"))
                })?);
            }
            other => {
                return Err(error(
                    422,
                    "invalid_query",
                    format!("Unknown query parameter {other:?}; expected state, event_type, limit or before."),
                    Some(other),
                ));
            }
        }
    }
    if store::get(host, id)?.is_none() {
        return Err(not_found("webhook"));
    }
    let (rows, more) = store::deliveries(host, id, &filter, limit)?;
    let next_before = if more { rows.last().map(|r| r.id) } else { None };
    let data: Vec<Json> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "msg_id": r.msg_id,
                "event_id": r.event_id,
                "event_type": r.event_type,
                "state": r.state,
                "attempts_made": r.attempts,
                "created_at": rfc3339(r.created_at),
                "last_attempt_at": time(r.last_attempt_at),
                "last_status": r.last_status,
                "last_error": r.last_error,
                "next_attempt_at": time(r.next_attempt_at.filter(|_| r.state.is_waiting())),
            })
        })
        .collect();
    ok(200, json!({ "data": data, "has_more": more, "next_before": next_before }))
}
