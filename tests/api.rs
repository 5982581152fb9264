//! The HTTP API against its OpenAPI document: every documented operation is
//! called on the real `webhooks-host serve`, every documented status is
//! produced (503 by a database that cannot be reached, on a PostgreSQL
//! server of the test's own), and every answer's body is validated against
//! the documented schema. Along the way, the management API's behaviour: the
//! pages' validation rules, nothing stored on refusal, secrets shown once,
//! rotation, paging, test sends, resends and deletes.

mod support;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Receiver, TOKEN, eventually, example_component, host};

const DOC: &str = include_str!("../docs/openapi.json");

/// Calls the API and checks each answer against the document.
struct Spec<'h> {
    doc: Value,
    host: &'h support::Host,
    seen: RefCell<BTreeSet<(String, String, u16)>>,
}

struct Answer {
    status: u16,
    json: Value,
    text: String,
    retry_after: Option<String>,
}

impl<'h> Spec<'h> {
    fn new(host: &'h support::Host) -> Self {
        Spec { doc: serde_json::from_str(DOC).unwrap(), host, seen: RefCell::default() }
    }

    /// `template` is the documented path; `path` the concrete one (with query).
    fn call(&self, method: &str, template: &str, path: &str, token: bool, body: Option<String>) -> Answer {
        let url = format!("{}{path}", self.host.base);
        let c = self.host.api();
        let mut rb = c.request(method.parse().unwrap(), url);
        if token {
            rb = rb.bearer_auth(TOKEN);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let r = rb.send().unwrap();
        let status = r.status().as_u16();
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = r.text().unwrap();
        let op = &self.doc["paths"][template][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let doc_resp = &op["responses"][status.to_string()];
        assert!(doc_resp.is_object(), "{method} {path} answered {status}, not documented: {text}");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        match doc_resp.get("content").and_then(Value::as_object) {
            None => assert!(text.is_empty(), "{method} {path} {status}: documented without a body: {text}"),
            Some(content) => {
                let media = ct.split(';').next().unwrap_or("").trim();
                let entry = content.get(media).unwrap_or_else(|| {
                    panic!("{method} {path} {status}: content-type {ct:?} not documented ({:?})", content.keys())
                });
                if media == "application/json" {
                    self.validate(&entry["schema"], &json, &format!("{method} {path} {status}"));
                }
            }
        }
        self.seen.borrow_mut().insert((method.to_ascii_lowercase(), template.to_owned(), status));
        Answer { status, json, text, retry_after }
    }

    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let mut root = schema.clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["components"] = self.doc["components"].clone();
        let v = jsonschema::options().should_validate_formats(true).build(&root).unwrap();
        let errors: Vec<String> = v.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{what}: the body does not match the document: {errors:#?}\n{instance:#}");
    }

    /// Every documented operation answered every documented status but 503.
    fn assert_covered(&self) {
        let seen = self.seen.borrow();
        let mut missing = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                for status in op["responses"].as_object().unwrap().keys() {
                    let s: u16 = status.parse().unwrap();
                    if s != 503 && !seen.contains(&(method.clone(), path.clone(), s)) {
                        missing.push(format!("{method} {path} {s}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "documented but never produced: {missing:#?}");
    }
}

fn big() -> String {
    format!("{{\"name\":\"{}\"}}", "x".repeat(300 * 1024))
}

/// The event bodies the document describes are the schemas intake enforces:
/// `data.<type>` is `plugin/events/<type>.json` (less `$schema` and `$id`),
/// and each event type's `data` refers to its own.
#[test]
fn the_document_describes_each_event_type_with_its_enforced_schema() {
    let doc: Value = serde_json::from_str(DOC).unwrap();
    let schemas = &doc["components"]["schemas"];
    let variants = schemas["EventIn"]["oneOf"].as_array().unwrap();
    use support::ALL_EVENTS;
    assert_eq!(variants.len(), ALL_EVENTS.len());
    for t in ALL_EVENTS.iter().chain(std::iter::once(&"test.webhook")) {
        let path = format!("{}/../plugin/events/{t}.json", env!("CARGO_MANIFEST_DIR"));
        let mut enforced: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let o = enforced.as_object_mut().unwrap();
        o.remove("$schema");
        o.remove("$id");
        assert_eq!(schemas[format!("data.{t}")], enforced, "docs/openapi.json's data.{t} is stale");
        if *t != "test.webhook" {
            assert!(
                variants.iter().any(|v| v["properties"]["type"]["const"] == *t
                    && v["properties"]["data"]["$ref"] == format!("#/components/schemas/data.{t}")),
                "EventIn has no variant for {t}"
            );
        }
    }
}

#[test]
fn every_route_answers_as_documented() {
    let h = host();
    let rx = Receiver::start();
    let api = Spec::new(&h);
    let served = api.call("GET", "/api/openapi.json", "/api/openapi.json", false, None);
    assert_eq!(serde_json::from_str::<Value>(&served.text).unwrap(), api.doc, "served = checked-in document");
    assert_eq!(api.doc["openapi"], "3.1.0");
    assert_eq!(api.call("GET", "/healthz", "/healthz", false, None).text, "ok");
    // Outside the documented operations, the API still answers in its error shape.
    for (method, path, status, code) in [
        ("GET", "/api/events", 405, "method_not_allowed"),
        ("GET", "/api/nothing-here", 404, "not_found"),
        ("PUT", "/api/webhooks", 405, "method_not_allowed"),
    ] {
        let r =
            h.api().request(method.parse().unwrap(), format!("{}{path}", h.base)).bearer_auth(TOKEN).send().unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let body: Value = r.json().unwrap();
        api.validate(&json!({"$ref": "#/components/schemas/Error"}), &body, path);
        assert_eq!(body["error"]["code"], code, "{method} {path}");
    }

    // ---- event catalog
    assert_eq!(api.call("GET", "/api/event-types", "/api/event-types", false, None).status, 401);
    let types = api.call("GET", "/api/event-types", "/api/event-types", true, None).json;
    let types = types["data"].as_array().unwrap();
    assert_eq!(types.len(), 15);
    let uc = types.iter().find(|t| t["name"] == "user.created").unwrap();
    assert_eq!(uc["schema"]["examples"][0], uc["example"]);
    assert_eq!(types.iter().filter(|t| t["subscribable"] == false).count(), 1, "only test.webhook");

    // ---- create: refusals change nothing
    let w = "/api/webhooks";
    assert_eq!(api.call("POST", w, w, false, Some("{}".into())).status, 401);
    assert_eq!(api.call("POST", w, w, true, Some("not json".into())).json["error"]["code"], "invalid_json");
    assert_eq!(api.call("POST", w, w, true, Some("[]".into())).status, 422);
    assert_eq!(api.call("POST", w, w, true, Some(big())).json["error"]["code"], "too_large");
    let bad = api.call("POST", w, w, true, Some(json!({"name": "", "url": "ftp://x", "events": []}).to_string()));
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json["error"]["code"], "validation_failed");
    let fields: Vec<&str> =
        bad.json["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "url", "events"], "every problem, not just the first");
    let unknown = api.call("POST", w, w, true, Some(json!({"name": "a", "colour": "red"}).to_string()));
    assert_eq!(
        (unknown.json["error"]["code"].as_str(), unknown.json["error"]["field"].as_str()),
        (Some("unknown_field"), Some("colour"))
    );
    let typed = api.call("POST", w, w, true, Some(json!({"name": 5}).to_string()));
    assert_eq!(
        (typed.json["error"]["code"].as_str(), typed.json["error"]["field"].as_str()),
        (Some("invalid_type"), Some("name"))
    );
    let both = api.call(
        "POST",
        w,
        w,
        true,
        Some(json!({"name": "a", "url": rx.url("/ok"), "events": ["user.created"], "secret": "abcdefgh1", "generate_secret": true}).to_string()),
    );
    assert_eq!(both.json["error"]["code"], "conflicting_fields");
    let metadata = api.call(
        "POST",
        w,
        w,
        true,
        Some(
            json!({"name": "a", "url": "http://169.254.169.254/latest/meta-data/", "events": ["user.created"]})
                .to_string(),
        ),
    );
    assert_eq!((metadata.status, metadata.json["error"]["field"].as_str()), (422, Some("url")));
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 0, "refused creates store nothing");

    // ---- create A (generated secret) and B (slow receiver, for the in-flight resend)
    let a = api.call(
        "POST",
        w,
        w,
        true,
        Some(json!({"name": "CRM", "url": rx.url("/ok"), "events": ["user.created", "ticket.closed"], "generate_secret": true}).to_string()),
    );
    assert_eq!(a.status, 201, "{}", a.text);
    let first_secret = a.json["secret"].as_str().unwrap().to_owned();
    assert!(first_secret.starts_with("whsec_"));
    assert_eq!(a.json["has_secret"], true);
    assert_eq!(a.json["events"], json!(["user.created", "ticket.closed"]));
    let a_id = a.json["id"].as_i64().unwrap();
    let b = api.call(
        "POST",
        w,
        w,
        true,
        Some(json!({"name": "Slow", "url": rx.url("/slow/2500"), "events": ["server.created"]}).to_string()),
    );
    assert_eq!((b.status, b.json["has_secret"].as_bool()), (201, Some(false)));
    assert!(b.json.get("secret").is_none(), "no secret unless generated");
    let b_id = b.json["id"].as_i64().unwrap();

    let list = api.call("GET", w, w, true, None);
    assert_eq!(list.json["data"].as_array().unwrap().len(), 2);
    assert!(!list.text.contains(&first_secret), "a secret is shown once");
    assert_eq!(api.call("GET", w, w, false, None).status, 401);

    let one = "/api/webhooks/{id}";
    let a_path = format!("/api/webhooks/{a_id}");
    assert_eq!(api.call("GET", one, &a_path, true, None).json["name"], "CRM");
    assert_eq!(api.call("GET", one, "/api/webhooks/9999", true, None).status, 404);
    assert_eq!(api.call("GET", one, "/api/webhooks/abc", true, None).status, 404);
    assert_eq!(api.call("GET", one, &a_path, false, None).status, 401);

    // ---- update: partial, validated, atomic
    assert_eq!(api.call("PATCH", one, &a_path, false, Some("{}".into())).status, 401);
    assert_eq!(api.call("PATCH", one, &a_path, true, Some("{".into())).status, 400);
    assert_eq!(api.call("PATCH", one, &a_path, true, Some(big())).status, 413);
    assert_eq!(api.call("PATCH", one, "/api/webhooks/9999", true, Some("{}".into())).status, 404);
    let refused = api.call("PATCH", one, &a_path, true, Some(json!({"name": "New", "events": ["nope"]}).to_string()));
    assert_eq!((refused.status, refused.json["error"]["field"].as_str()), (422, Some("events")));
    let private = api.call("PATCH", one, &a_path, true, Some(json!({"url": "http://10.0.0.1/"}).to_string()));
    assert_eq!((private.status, private.json["error"]["field"].as_str()), (422, Some("url")));
    let lonely = api.call("PATCH", one, &a_path, true, Some(json!({"rotate_secret": true}).to_string()));
    assert_eq!(lonely.json["error"]["code"], "conflicting_fields");
    assert_eq!(api.call("GET", one, &a_path, true, None).json["name"], "CRM", "refused patches change nothing");
    let off = api.call("PATCH", one, &a_path, true, Some(json!({"enabled": false}).to_string()));
    assert_eq!((off.json["enabled"].as_bool(), off.json["name"].as_str()), (Some(false), Some("CRM")));
    assert_eq!(off.json["disabled_reason"], "Disabled by an admin.");
    let on = api.call("PATCH", one, &a_path, true, Some(json!({"enabled": true}).to_string()));
    assert_eq!((on.json["enabled"].as_bool(), on.json["disabled_reason"].is_null()), (Some(true), true));
    let rotated = api.call(
        "PATCH",
        one,
        &a_path,
        true,
        Some(json!({"generate_secret": true, "rotate_secret": true}).to_string()),
    );
    assert_eq!(rotated.status, 200);
    let new_secret = rotated.json["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, first_secret);
    assert!(rotated.json["previous_secret_valid_until"].is_string(), "{}", rotated.text);

    // ---- events
    let ev = "/api/events";
    assert_eq!(api.call("POST", ev, ev, false, Some("{}".into())).status, 401);
    assert_eq!(api.call("POST", ev, ev, true, Some("nope".into())).status, 400);
    assert_eq!(api.call("POST", ev, ev, true, Some(big())).status, 413);
    let unknown_type = api.call("POST", ev, ev, true, Some(json!({"type": "user.exploded", "data": {}}).to_string()));
    assert_eq!(unknown_type.json["error"]["code"], "unknown_type");
    let event =
        json!({"type": "user.created", "id": "user-42-created", "data": {"id": 42, "email": "ada@example.com"}})
            .to_string();
    let raised = api.call("POST", ev, ev, true, Some(event.clone()));
    assert_eq!((raised.status, raised.json["queued"].as_u64()), (202, Some(1)));
    // The same event again: the panel retrying, 202 with nothing queued.
    // Another event under that id: 409, nothing stored.
    let again = api.call("POST", ev, ev, true, Some(event));
    assert_eq!((again.status, again.json["queued"].as_u64()), (202, Some(0)));
    let reused = api.call(
        "POST",
        ev,
        ev,
        true,
        Some(
            json!({"type": "user.created", "id": "user-42-created", "data": {"email": "ada@example.com", "id": 43}})
                .to_string(),
        ),
    );
    assert_eq!((reused.status, reused.json["error"]["code"].as_str()), (409, Some("id_conflict")), "{}", reused.text);
    let batch = "/api/events/batch";
    assert_eq!(api.call("POST", batch, batch, false, Some("{}".into())).status, 401);
    assert_eq!(api.call("POST", batch, batch, true, Some("[".into())).status, 400);
    assert_eq!(api.call("POST", batch, batch, true, Some(big())).status, 413);
    assert_eq!(api.call("POST", batch, batch, true, Some(json!({"events": []}).to_string())).status, 422);
    let two = api.call(
        "POST",
        batch,
        batch,
        true,
        Some(
            json!({"events": [
                {"type": "ticket.closed", "data": {"id": 1, "user_id": 42, "status": "closed"}},
                {"type": "server.created", "data": {"id": 7, "user_id": 42, "status": "active"}},
            ]})
            .to_string(),
        ),
    );
    assert_eq!(two.json["events"].as_array().unwrap().len(), 2);
    // A batch reusing an id for another event is refused whole (409), and
    // its other, new event is not stored either.
    let conflicting = api.call(
        "POST",
        batch,
        batch,
        true,
        Some(
            json!({"events": [
                {"type": "ticket.closed", "id": "fresh-1", "data": {"id": 2, "user_id": 42, "status": "closed"}},
                {"type": "user.deleted", "id": "user-42-created", "data": {"id": 42}},
            ]})
            .to_string(),
        ),
    );
    assert_eq!(conflicting.status, 409, "{}", conflicting.text);
    assert_eq!(h.count("SELECT COUNT(*) FROM events WHERE id = 'fresh-1'"), 0);

    // The new (rotated) secret signs what A receives: the secret returned is the real one.
    let got = rx.wait_for("/ok", 2, Duration::from_secs(15));
    let wh = standardwebhooks::Webhook::new(&new_secret).unwrap();
    for s in &got {
        let mut hm = http::HeaderMap::new();
        for k in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            hm.insert(k, s.header(k).parse().unwrap());
        }
        wh.verify(&s.body, &hm).expect("signed with the rotated-in secret");
    }

    // ---- test send
    let t = "/api/webhooks/{id}/test";
    let test = api.call("POST", t, &format!("{a_path}/test"), true, None);
    assert_eq!((test.json["success"].as_bool(), test.json["status"].as_u64()), (Some(true), Some(200)));
    assert_eq!(api.call("POST", t, "/api/webhooks/9999/test", true, None).status, 404);
    assert_eq!(api.call("POST", t, &format!("{a_path}/test"), false, None).status, 401);

    // ---- deliveries: list, filters, keyset paging
    let d = "/api/webhooks/{id}/deliveries";
    eventually(Duration::from_secs(10), "A's deliveries recorded", || {
        h.count(&format!("SELECT COUNT(*) FROM deliveries WHERE webhook_id = {a_id} AND state = 'succeeded'")) == 3
    });
    let all = api.call("GET", d, &format!("{a_path}/deliveries"), true, None);
    let rows = all.json["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["event_type"], "test.webhook", "newest first");
    let page1 = api.call("GET", d, &format!("{a_path}/deliveries?limit=2&state=succeeded"), true, None);
    assert_eq!((page1.json["data"].as_array().unwrap().len(), page1.json["has_more"].as_bool()), (2, Some(true)));
    let before = page1.json["next_before"].as_i64().unwrap();
    let page2 = api.call("GET", d, &format!("{a_path}/deliveries?limit=2&before={before}"), true, None);
    assert_eq!((page2.json["data"].as_array().unwrap().len(), page2.json["has_more"].as_bool()), (1, Some(false)));
    assert_eq!(page2.json["data"][0]["event_type"], "user.created");
    let by_type = api.call("GET", d, &format!("{a_path}/deliveries?event_type=ticket.closed"), true, None);
    assert_eq!(by_type.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.call("GET", d, &format!("{a_path}/deliveries?state=lost"), true, None).json["error"]["field"],
        "state"
    );
    assert_eq!(api.call("GET", d, &format!("{a_path}/deliveries?limit=0"), true, None).status, 422);
    assert_eq!(api.call("GET", d, &format!("{a_path}/deliveries?colour=1"), true, None).status, 422);
    assert_eq!(api.call("GET", d, "/api/webhooks/9999/deliveries", true, None).status, 404);
    assert_eq!(api.call("GET", d, &format!("{a_path}/deliveries"), false, None).status, 401);

    let dd = "/api/webhooks/{id}/deliveries/{delivery_id}";
    let first_id = page2.json["data"][0]["id"].as_i64().unwrap();
    let detail = api.call("GET", dd, &format!("{a_path}/deliveries/{first_id}"), true, None);
    assert_eq!(detail.json["event"]["id"], "user-42-created");
    let payload: Value = serde_json::from_str(detail.json["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["data"]["email"], "ada@example.com");
    let attempt = &detail.json["attempts"][0];
    assert_eq!(attempt["response"]["status"], 200);
    assert!(attempt["request_headers"].as_array().unwrap().iter().any(|p| p[0] == "webhook-signature"));
    assert!(!detail.text.contains(&new_secret) && !detail.text.contains(&first_secret), "no secret in history");
    assert_eq!(api.call("GET", dd, &format!("{a_path}/deliveries/99999"), true, None).status, 404);
    assert_eq!(api.call("GET", dd, &format!("/api/webhooks/{b_id}/deliveries/{first_id}"), true, None).status, 404);
    assert_eq!(api.call("GET", dd, &format!("{a_path}/deliveries/{first_id}"), false, None).status, 401);

    // ---- resend, including one that is being sent right now
    let rs = "/api/webhooks/{id}/deliveries/{delivery_id}/resend";
    let again = api.call("POST", rs, &format!("{a_path}/deliveries/{first_id}/resend"), true, None);
    assert_eq!((again.json["success"].as_bool(), again.json["delivery_id"].as_i64()), (Some(true), Some(first_id)));
    let msg_id = detail.json["msg_id"].as_str().unwrap().to_owned();
    let same = rx.seen_at("/ok").iter().filter(|s| s.header("webhook-id") == msg_id).count();
    assert_eq!(same, 2, "a resend keeps the webhook-id");
    assert_eq!(api.call("POST", rs, &format!("{a_path}/deliveries/99999/resend"), true, None).status, 404);
    assert_eq!(api.call("POST", rs, &format!("{a_path}/deliveries/{first_id}/resend"), false, None).status, 401);
    let slow =
        json!({"type": "server.created", "id": "srv-slow", "data": {"id": 8, "user_id": 42, "status": "active"}});
    assert_eq!(h.raise(slow).0, 202);
    let leased = "SELECT COUNT(*) FROM deliveries WHERE event_id = 'srv-slow' AND lease_until IS NOT NULL";
    eventually(Duration::from_secs(10), "B's delivery in flight", || h.count(leased) == 1);
    let b_delivery: i64 = h.int("SELECT id FROM deliveries WHERE event_id = 'srv-slow'", &[]);
    let busy = api.call("POST", rs, &format!("/api/webhooks/{b_id}/deliveries/{b_delivery}/resend"), true, None);
    assert_eq!((busy.status, busy.json["error"]["code"].as_str()), (409, Some("in_flight")));

    // ---- metrics
    assert_eq!(api.call("GET", "/metrics", "/metrics", false, None).status, 401);
    let m = api.call("GET", "/metrics", "/metrics", true, None).text;
    // The panel's retry of the same event was accepted too (202, nothing queued).
    assert!(m.contains("webhooks_events_raised_total{type=\"user.created\"} 2"), "{m}");
    assert!(m.contains("webhooks_events_raised_total{type=\"ticket.closed\"} 1"), "{m}");
    let succeeded = metric(&m, "webhooks_delivery_attempts_total{outcome=\"succeeded\"}");
    assert!(succeeded >= 2.0, "{m}");
    assert!(metric(&m, "webhooks_attempt_duration_seconds_count{result=\"response\"}") >= 4.0, "{m}");
    assert!(m.contains("webhooks_queue_depth{state=\"pending\"}"), "{m}");
    assert!(m.contains("webhooks_oldest_waiting_age_seconds"), "{m}");

    // ---- custom headers and the payload filter (#24)
    let with_controls = api.call(
        "PATCH",
        one,
        &a_path,
        true,
        Some(
            json!({"headers": [{"name": "X-Tenant", "value": "acme"}, {"name": "Authorization", "value": "Bearer t0k3n-for-api"}],
                   "filter": "@.id == 7"})
            .to_string(),
        ),
    );
    assert_eq!(with_controls.status, 200, "{}", with_controls.text);
    assert_eq!(with_controls.json["headers"][1], json!({"name": "Authorization", "value": "********", "sealed": true}));
    assert!(!with_controls.text.contains("t0k3n-for-api"), "a sealed value is never shown");
    let refused =
        api.call("PATCH", one, &a_path, true, Some(json!({"headers": [{"name": "Host", "value": "x"}]}).to_string()));
    assert_eq!((refused.status, refused.json["error"]["field"].as_str()), (422, Some("headers")));
    let refused = api.call("PATCH", one, &a_path, true, Some(json!({"filter": "@.id = 7"}).to_string()));
    assert_eq!((refused.status, refused.json["error"]["field"].as_str()), (422, Some("filter")));
    // GET's headers sent back as they are keep the sealed value.
    let shown = api.call("GET", one, &a_path, true, None).json["headers"].clone();
    let back = api.call("PATCH", one, &a_path, true, Some(json!({"headers": shown}).to_string()));
    assert_eq!(back.json["headers"], shown);
    let fl = "/api/webhooks/{id}/filtered";
    let ev_of = |id: i64| json!({"type": "user.created", "id": format!("filter-{id}"), "data": {"id": id, "email": "ada@example.com"}});
    assert_eq!(h.raise(ev_of(6)).1["queued"], 0, "filtered out");
    assert_eq!(h.raise(ev_of(7)).1["queued"], 1);
    eventually(Duration::from_secs(10), "the filtered-in event sent", || {
        rx.seen_at("/ok").iter().any(|s| s.header("x-tenant") == "acme")
    });
    let seen = rx.seen_at("/ok");
    let sent = seen.iter().find(|s| s.header("x-tenant") == "acme").unwrap();
    assert!(String::from_utf8_lossy(&sent.body).contains("\"id\":7"), "only the matching event");
    assert_eq!(
        (sent.header("x-tenant").as_str(), sent.header("authorization").as_str()),
        ("acme", "Bearer t0k3n-for-api")
    );
    let listed = api.call("GET", fl, &format!("{a_path}/filtered"), true, None);
    assert_eq!(listed.json["data"][0]["event_id"], "filter-6", "{}", listed.text);
    assert_eq!(listed.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(api.call("GET", fl, &format!("{a_path}/filtered?limit=0"), true, None).status, 422);
    assert_eq!(api.call("GET", fl, &format!("{a_path}/filtered?colour=1"), true, None).status, 422);
    assert_eq!(api.call("GET", fl, "/api/webhooks/9999/filtered", true, None).status, 404);
    assert_eq!(api.call("GET", fl, &format!("{a_path}/filtered"), false, None).status, 401);
    let cleared = api.call("PATCH", one, &a_path, true, Some(json!({"headers": [], "filter": null}).to_string()));
    assert_eq!((cleared.json["headers"].as_array().unwrap().len(), cleared.json["filter"].is_null()), (0, true));

    // ---- transformations (#24, part 4)
    let tr = "/api/webhooks/{id}/transform";
    let pv = "/api/webhooks/{id}/transform/preview";
    let t_path = format!("{a_path}/transform");
    let p_path = format!("{a_path}/transform/preview");
    // The webhook exists but has none: 409 `no_transform` (404 is for a missing webhook).
    let none = api.call("POST", pv, &p_path, true, None);
    assert_eq!((none.status, none.json["error"]["code"].as_str()), (409, Some("no_transform")));
    assert_eq!(api.call("POST", pv, "/api/webhooks/9999/transform/preview", true, None).status, 404);
    assert_eq!(api.call("POST", pv, &p_path, false, None).status, 401);
    let slack = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(example_component("transform-slack"))
    };
    assert_eq!(api.call("PUT", tr, &t_path, false, None).status, 401);
    assert_eq!(api.call("PUT", tr, &t_path, true, Some("not json".into())).status, 400);
    let not_wasm = api.call("PUT", tr, &t_path, true, Some(json!({"component": "aGVsbG8="}).to_string()));
    assert_eq!((not_wasm.status, not_wasm.json["error"]["code"].as_str()), (422, Some("invalid_component")));
    // Just over the 2 MiB an upload may have (far larger ones: below).
    let huge = format!("{{\"component\":\"{}\"}}", "A".repeat(2 << 20));
    assert_eq!(api.call("PUT", tr, &t_path, true, Some(huge)).json["error"]["code"], "too_large");
    let body = json!({"component": slack}).to_string();
    assert_eq!(api.call("PUT", tr, "/api/webhooks/9999/transform", true, Some(body.clone())).status, 404);
    let put = api.call("PUT", tr, &t_path, true, Some(body));
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.json["transform"]["size"].as_u64(), Some(example_component("transform-slack").len() as u64));
    assert_eq!(api.call("POST", pv, &p_path, true, Some("{".into())).status, 400);
    assert_eq!(api.call("POST", pv, &p_path, true, Some(json!({"event_type": "nope"}).to_string())).status, 422);
    let tried = api.call(
        "POST",
        pv,
        &p_path,
        true,
        Some(json!({"event_type": "user.created", "data": {"id": 5, "email": "eve@example.com"}}).to_string()),
    );
    assert_eq!(
        (tried.json["result"].as_str(), tried.json["body"].as_str()),
        (Some("send"), Some(r#"{"text":"New user: eve@example.com (id 5)"}"#))
    );
    assert_eq!(api.call("DELETE", tr, &t_path, false, None).status, 401);
    assert_eq!(api.call("DELETE", tr, "/api/webhooks/9999/transform", true, None).status, 404);
    assert_eq!(api.call("DELETE", tr, &t_path, true, None).status, 204);
    assert!(api.call("GET", one, &a_path, true, None).json["transform"].is_null());

    // ---- delete
    assert_eq!(api.call("DELETE", one, &a_path, false, None).status, 401);
    assert_eq!(api.call("DELETE", one, &a_path, true, None).status, 204);
    assert_eq!(api.call("DELETE", one, &a_path, true, None).status, 404);
    assert_eq!(h.count(&format!("SELECT COUNT(*) FROM deliveries WHERE webhook_id = {a_id}")), 0);

    assert!(!h.log().contains(&new_secret) && !h.log().contains(&first_secret), "no secret in the log");
    assert!(h.log().contains("INFO") && !h.log().contains('\u{1b}'), "plain text lines, no terminal colours in a file");
    api.assert_covered();
}

/// The value of one sample line.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
}

/// A body past a documented limit is refused with a 413 the client actually
/// receives, however it sends it: a `content-length` past the limit (refused
/// before the body is read) or a chunked body that grows past it; and any
/// other answer given before a large body was read (a wrong token, no such
/// route, a method a route does not take) arrives too. Bodies larger than
/// the socket buffers are the case that matters: the client is still
/// writing when the answer is ready, and a server that closes then resets
/// the connection under it ("broken pipe", the answer lost). Nothing is
/// stored either way.
#[test]
fn a_body_past_its_limit_gets_its_413_while_the_client_is_still_sending() {
    use std::io::{Read, Write};
    let h = host();
    let (s, made) = support::api(
        &h,
        "POST",
        "/api/webhooks",
        Some(json!({"name": "n", "url": "https://example.com/h", "events": ["user.created"]})),
    );
    assert_eq!(s, 201, "{made}");
    let id = made["id"].as_u64().unwrap();
    let mb8 = 8 << 20;
    let upload = format!("{{\"component\":\"{}\"}}", "A".repeat(mb8));
    for (path, method, token, body, status, code) in [
        (format!("/api/webhooks/{id}/transform"), "PUT", TOKEN, upload.clone(), 413, "too_large"),
        (
            "/api/events".to_owned(),
            "POST",
            TOKEN,
            format!("{{\"type\":\"user.created\",\"data\":\"{}\"}}", "x".repeat(mb8)),
            413,
            "too_large",
        ),
        ("/api/webhooks".to_owned(), "POST", TOKEN, format!("{{\"name\":\"{}\"}}", "x".repeat(mb8)), 413, "too_large"),
        (format!("/api/webhooks/{id}/transform"), "PUT", "not-the-token", upload.clone(), 401, "unauthorized"),
        ("/api/nothing-here".to_owned(), "POST", TOKEN, upload.clone(), 404, "not_found"),
        ("/api/events".to_owned(), "PUT", TOKEN, upload.clone(), 405, "method_not_allowed"),
    ] {
        for round in 0..3 {
            let r = h
                .api()
                .request(method.parse().unwrap(), format!("{}{path}", h.base))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .unwrap_or_else(|e| panic!("{method} {path} (round {round}): the answer was lost: {e:?}"));
            assert_eq!(r.status().as_u16(), status, "{method} {path}");
            let v: Value = r.json().unwrap();
            assert_eq!(v["error"]["code"], code, "{method} {path}");
        }
    }

    // Chunked: no length up front, so the limit is found while reading.
    let addr = h.base.trim_start_matches("http://").to_owned();
    for round in 0..3 {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST /api/events HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        c.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for i in 0..(mb8 / chunk.len()) {
            c.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|()| c.write_all(&chunk))
                .and_then(|()| c.write_all(b"\r\n"))
                .unwrap_or_else(|e| panic!("chunked round {round}: reset after {i} chunks of 64 KiB: {e}"));
        }
        c.write_all(b"0\r\n\r\n").unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap_or_else(|e| panic!("chunked round {round}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 413"), "chunked round {round}: {}", &answer[..answer.len().min(200)]);
        assert!(answer.contains("too_large"), "{answer}");
    }
    let (_, list) = support::api(&h, "GET", "/api/webhooks", None);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "nothing stored: {list}");
    let (_, w) = support::api(&h, "GET", &format!("/api/webhooks/{id}"), None);
    assert!(w["transform"].is_null(), "no transform stored: {w}");
}

#[test]
fn the_bearer_scheme_is_matched_without_regard_to_case() {
    let h = host();
    let get = |auth: &str| {
        h.api().get(format!("{}/api/webhooks", h.base)).header("authorization", auth).send().unwrap().status().as_u16()
    };
    // RFC 9110: the scheme is case-insensitive and may be followed by several spaces.
    for auth in [format!("Bearer {TOKEN}"), format!("bearer {TOKEN}"), format!("BEARER  {TOKEN}")] {
        assert_eq!(get(&auth), 200, "{auth}");
    }
    for auth in [format!("Basic {TOKEN}"), "Bearer ".to_owned(), format!("Bearer{TOKEN}"), format!("Bearer {TOKEN}x")] {
        assert_eq!(get(&auth), 401, "{auth}");
    }
}

#[test]
fn a_secret_of_only_spaces_or_a_short_whsec_key_is_refused() {
    let h = host();
    let create = |secret: &str| {
        let r = h
            .api()
            .post(format!("{}/api/webhooks", h.base))
            .bearer_auth(TOKEN)
            .json(&json!({"name": "S", "url": "https://example.com/h", "events": ["user.created"], "secret": secret}))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().unwrap_or_default())
    };
    // 16 bytes after whsec_: Standard Webhooks asks for 24 to 64.
    for bad in ["   ", "whsec_AAAAAAAAAAAAAAAAAAAAAA=="] {
        let (s, body) = create(bad);
        assert_eq!(s, 422, "{bad:?}: {body}");
        assert_eq!(body["error"]["field"], "secret", "{body}");
    }
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 0, "nothing stored");
    // Empty still means "no secret"; a 24-byte key is fine.
    assert_eq!(create("").0, 201);
    assert_eq!(create("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").0, 201);
}

#[test]
fn test_webhook_cannot_be_raised_through_the_events_api() {
    let h = host();
    let r = Receiver::start();
    h.api()
        .post(format!("{}/api/webhooks", h.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "A", "url": r.url("/ok/a"), "events": ["user.created"]}))
        .send()
        .unwrap();
    let (s, body) = h.raise(json!({"type": "test.webhook", "data": {}}));
    assert_eq!(s, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("Send test"), "{body}");
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 0);
}

#[test]
fn every_response_carries_nosniff_json_is_not_stored_and_405_says_what_is_allowed() {
    let h = host();
    let send = |method: &str, path: &str| {
        h.api().request(method.parse().unwrap(), format!("{}{path}", h.base)).bearer_auth(TOKEN).send().unwrap()
    };
    for path in
        ["/api/webhooks", "/api/openapi.json", "/metrics", "/healthz", "/static/panel.css", "/api/nope", "/login"]
    {
        let r = send("GET", path);
        let hd = r.headers();
        assert_eq!(hd.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
        let json = hd.get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("application/json"));
        // The OpenAPI document is public and static: it may be cached.
        if json && path != "/api/openapi.json" {
            assert_eq!(hd.get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "{path}");
        }
    }
    // 405s, from the host's routes and from the plugin's router alike.
    for (method, path, allow) in [
        ("PUT", "/api/webhooks", "GET, POST"),
        ("DELETE", "/api/event-types", "GET"),
        ("PUT", "/api/webhooks/1", "GET, PATCH, DELETE"),
        ("GET", "/api/webhooks/1/test", "POST"),
        ("DELETE", "/api/events", "POST"),
    ] {
        let r = send(method, path);
        assert_eq!(r.status().as_u16(), 405, "{method} {path}");
        let got = r.headers().get("allow").map(|v| v.to_str().unwrap().replace(' ', ""));
        assert_eq!(got.as_deref(), Some(allow.replace(' ', "").as_str()), "{method} {path}");
    }
}

#[test]
fn json_of_the_wrong_shape_is_422_and_never_echoed_whole() {
    let h = host();
    let post = |path: &str, body: String| {
        let r = h
            .api()
            .post(format!("{}{path}", h.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    };
    let huge = "x".repeat(100 * 1024);
    for body in [
        json!({"type": "user.created", "occurred_at_ms": 1500.5, "data": {"id": 1, "email": "ada@example.com"}})
            .to_string(),
        json!({"type": "user.created", "occurred_at_ms": -5, "data": {"id": 1, "email": "ada@example.com"}})
            .to_string(),
        json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}, "extra": 1}).to_string(),
        json!({"data": {}}).to_string(),
        json!({"type": 7, "data": {}}).to_string(),
        json!({"type": "user.created", "occurred_at_ms": huge, "data": {"id": 1, "email": "ada@example.com"}})
            .to_string(),
    ] {
        let (s, text) = post("/api/events", body.clone());
        assert_eq!(s, 422, "{}: {text}", &body[..body.len().min(80)]);
        assert!(text.len() < 2048, "a {}-byte error body", text.len());
    }
    // A whole number written with a fraction or an exponent is an integer
    // (JSON Schema's reading, and what a PHP panel's floats look like).
    let body = r#"{"type": "user.created", "occurred_at_ms": 1.0e12, "data": {"id": 1, "email": "ada@example.com"}}"#;
    assert_eq!(post("/api/events", body.into()).0, 202);
    let body = r#"{"type": "user.created", "occurred_at_ms": 1500.0, "data": {"id": 2, "email": "ada@example.com"}}"#;
    assert_eq!(post("/api/events", body.into()).0, 202);
    for path in ["/api/events", "/api/events/batch"] {
        assert_eq!(post(path, "nope".into()).0, 400, "{path}");
        assert_eq!(post(path, "{".into()).0, 400, "{path}");
    }
    assert_eq!(post("/api/events/batch", json!({"events": [{"type": "user.created"}]}).to_string()).0, 422);
    // The management API too: JSON that is not an object is the wrong shape.
    assert_eq!(post("/api/webhooks", "[]".into()).0, 422);
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 2, "only the two whole-number times");
}

#[test]
fn metrics_answer_the_classic_text_format_when_asked() {
    let h = host();
    let get = |accept: &str| {
        let r = h.api().get(format!("{}/metrics", h.base)).bearer_auth(TOKEN).header("accept", accept).send().unwrap();
        let ct = r.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
        (ct, r.text().unwrap())
    };
    let (ct, text) = get("text/plain;version=0.0.4;q=0.5,*/*;q=0.1");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    assert!(text.contains("# TYPE webhooks_events_raised_total counter"), "{text}");
    // Every family has its `# HELP` (as `promtool check metrics` demands).
    let families: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    assert!(families.len() >= 7, "{text}");
    for f in families {
        assert!(text.lines().any(|l| l.starts_with(&format!("# HELP {f} "))), "no HELP for {f}");
    }
    let (ct, text) = get("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn webhook_ids_are_never_reused() {
    let h = host();
    let create = |name: &str| {
        let r = h
            .api()
            .post(format!("{}/api/webhooks", h.base))
            .bearer_auth(TOKEN)
            .json(&json!({"name": name, "url": "https://example.com/h", "events": ["user.created"]}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        r.json::<Value>().unwrap()["id"].as_i64().unwrap()
    };
    let a = create("A");
    let b = create("B");
    let del = h.api().delete(format!("{}/api/webhooks/{b}", h.base)).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(del.status().as_u16(), 204);
    // The newest was deleted: its id must not come back.
    let c = create("C");
    assert!(c > b && b > a, "ids {a}, {b}, then {c}");
    let old = h.api().get(format!("{}/api/webhooks/{b}", h.base)).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(old.status().as_u16(), 404, "an old id opens nothing");
}

#[test]
fn deleting_a_webhook_while_its_test_is_in_flight_wins_cleanly() {
    let h = host();
    let r = Receiver::start();
    let created = h
        .api()
        .post(format!("{}/api/webhooks", h.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Slow", "url": r.url("/slow/1500/a"), "events": ["user.created"]}))
        .send()
        .unwrap();
    let id = created.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let (base, client) = (h.base.clone(), h.api());
    let test = std::thread::spawn(move || {
        let r = client.post(format!("{base}/api/webhooks/{id}/test")).bearer_auth(TOKEN).send().unwrap();
        let s = r.status().as_u16();
        (s, r.text().unwrap())
    });
    r.wait_for("/slow/1500/a", 1, Duration::from_secs(10));
    let del = h.api().delete(format!("{}/api/webhooks/{id}", h.base)).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(del.status().as_u16(), 204);
    let (s, body) = test.join().unwrap();
    assert!(s == 404 || s == 200, "the test send answered {s}: {body}");
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 0);
    assert_eq!(h.count("SELECT COUNT(*) FROM deliveries"), 0, "nothing of the deleted webhook remains");
    let log = h.log();
    assert!(!log.contains("ERROR") && !log.contains("FOREIGN KEY"), "{log}");
}

/// While the node cannot reach its database (#23: a PostgreSQL server of
/// the test's own, stopped), every documented operation that needs it
/// answers its documented 503: `storage_unavailable` in the Error shape,
/// with `Retry-After`, and `/healthz` its text; what needs no database
/// (the catalog, this document) still answers. Once the server is back the
/// same node answers as before, without a restart.
#[test]
fn while_the_database_cannot_be_reached_every_route_answers_its_documented_503() {
    use std::sync::Arc;
    use support::cluster::ScratchCluster;
    let Some(pg) = ScratchCluster::start() else { return };
    let db = Arc::new(support::ScratchDb::create_on(&pg.server()));
    let tmp = tempfile::tempdir().unwrap();
    let h = support::spawn_on(&tmp.path().join("data"), db, &[]);
    let rx = Receiver::start();
    let api = Spec::new(&h);
    let created = api.call(
        "POST",
        "/api/webhooks",
        "/api/webhooks",
        true,
        Some(json!({"name": "crm", "url": rx.url("/ok/crm"), "events": ["user.created"]}).to_string()),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_i64().unwrap();
    let event = json!({"type": "user.created", "id": "evt-down-1", "data": {"id": 1, "email": "ada@example.com"}});
    assert_eq!(api.call("POST", "/api/events", "/api/events", true, Some(event.to_string())).status, 202);
    rx.wait_for("/ok/crm", 1, Duration::from_secs(20));
    let deliveries = format!("/api/webhooks/{id}/deliveries");
    let mut delivery = None;
    eventually(Duration::from_secs(10), "the delivery is listed", || {
        delivery =
            api.call("GET", "/api/webhooks/{id}/deliveries", &deliveries, true, None).json["data"][0]["id"].as_i64();
        delivery.is_some()
    });
    let delivery = delivery.unwrap();

    pg.stop();
    eventually(Duration::from_secs(10), "/healthz says the database is unavailable", || {
        api.call("GET", "/healthz", "/healthz", false, None).status == 503
    });
    let health = api.call("GET", "/healthz", "/healthz", false, None);
    assert_eq!((health.text.as_str(), health.retry_after.as_deref()), ("database unavailable", Some("5")));
    let batch =
        json!({"events": [{"type": "user.created", "id": "evt-down-2", "data": {"id": 2, "email": "b@example.com"}}]});
    let one = format!("/api/webhooks/{id}");
    let detail = format!("/api/webhooks/{id}/deliveries/{delivery}");
    let calls: Vec<(&str, &str, String, Option<String>)> = vec![
        ("POST", "/api/events", "/api/events".into(), Some(event.to_string())),
        ("POST", "/api/events/batch", "/api/events/batch".into(), Some(batch.to_string())),
        ("GET", "/api/webhooks", "/api/webhooks".into(), None),
        (
            "POST",
            "/api/webhooks",
            "/api/webhooks".into(),
            Some(json!({"name": "new", "url": rx.url("/ok/new"), "events": ["user.created"]}).to_string()),
        ),
        ("GET", "/api/webhooks/{id}", one.clone(), None),
        ("PATCH", "/api/webhooks/{id}", one.clone(), Some(json!({"name": "renamed"}).to_string())),
        ("DELETE", "/api/webhooks/{id}", one.clone(), None),
        ("POST", "/api/webhooks/{id}/test", format!("{one}/test"), None),
        ("GET", "/api/webhooks/{id}/deliveries", deliveries.clone(), None),
        ("GET", "/api/webhooks/{id}/deliveries/{delivery_id}", detail.clone(), None),
        ("POST", "/api/webhooks/{id}/deliveries/{delivery_id}/resend", format!("{detail}/resend"), None),
        ("GET", "/metrics", "/metrics".into(), None),
    ];
    for (method, template, path, body) in calls {
        let a = api.call(method, template, &path, true, body);
        assert_eq!(a.status, 503, "{method} {path}: {}", a.text);
        assert_eq!(a.json["error"]["code"], "storage_unavailable", "{method} {path}: {}", a.text);
        assert_eq!(a.retry_after.as_deref(), Some("5"), "{method} {path}: Retry-After");
    }
    // What needs no database still answers.
    assert_eq!(api.call("GET", "/api/event-types", "/api/event-types", true, None).status, 200);
    assert_eq!(api.call("GET", "/api/openapi.json", "/api/openapi.json", false, None).status, 200);

    // Back, by itself: the webhook was neither renamed nor deleted, and the
    // refused raises go through when raised again.
    pg.start_again();
    eventually(Duration::from_secs(15), "/healthz says ok again", || {
        api.call("GET", "/healthz", "/healthz", false, None).text == "ok"
    });
    assert_eq!(api.call("GET", "/api/webhooks/{id}", &one, true, None).json["name"], "crm");
    assert_eq!(api.call("POST", "/api/events/batch", "/api/events/batch", true, Some(batch.to_string())).status, 202);
    rx.wait_for("/ok/crm", 2, Duration::from_secs(20));
}
