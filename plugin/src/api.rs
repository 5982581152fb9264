//! The JSON management API (`management.handle`): the admin pages' rules for
//! panels and scripts. Validation is `webhook::validate`, storage is `store`,
//! sends are `outbox` — the same functions the pages call, so the two can
//! never disagree. Errors are `{"error": {"code", "message", "field"}}`.

use serde_json::{Map, Value as Json, json};

use crate::catalog;
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
    })
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

const CREATE_FIELDS: &[&str] = &["name", "url", "events", "enabled", "secret", "generate_secret"];
const UPDATE_FIELDS: &[&str] = &["name", "url", "events", "enabled", "secret", "generate_secret", "rotate_secret"];

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
    };
    let valid = webhook::validate(host, &input).map_err(invalid)?;
    if !store::update(host, id, &valid)? {
        return Err(not_found("webhook"));
    }
    host.log(Level::Info, &format!("{} updated webhook {id} (API)", req.actor));
    let w = store::get(host, id)?.ok_or_else(|| not_found("webhook"))?;
    ok(200, with_secret(webhook_json(&w, host.now_ms()), secret.filter(|_| generated)))
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
                            "state must be pending, retrying, waiting, succeeded or exhausted.",
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
