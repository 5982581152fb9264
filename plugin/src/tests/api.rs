//! The management API (`management.handle`): routing, webhooks CRUD,
//! validation errors, 404 and 405, deliveries and their paging.

use serde_json::{Value as Json, json};

use super::*;
use crate::api::{self, Request};
use crate::testhost::{Reply, T0};

fn call(h: &TestHost, method: &str, path: &str, body: Json) -> (u16, Json, Option<String>) {
    call_q(h, method, path, &[], body)
}

fn call_q(h: &TestHost, method: &str, path: &str, query: &[(&str, &str)], body: Json) -> (u16, Json, Option<String>) {
    let req = Request {
        method: method.into(),
        path: path.into(),
        query: query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        body: if body.is_null() { String::new() } else { body.to_string() },
        actor: "alice".into(),
    };
    let r = api::handle(h, &req);
    assert!(!h.in_transaction(), "{method} {path} left a transaction open");
    let json = if r.body.is_empty() { Json::Null } else { serde_json::from_str(&r.body).expect("JSON body") };
    (r.status, json, r.allow)
}

fn raw(h: &TestHost, method: &str, path: &str, body: &str) -> (u16, Json) {
    let req = Request { method: method.into(), path: path.into(), body: body.into(), ..Request::default() };
    let r = api::handle(h, &req);
    (r.status, serde_json::from_str(&r.body).unwrap())
}

fn create(h: &TestHost, body: Json) -> Json {
    let (s, j, _) = call(h, "POST", "/webhooks", body);
    assert_eq!(s, 201, "{j}");
    j
}

fn basic() -> Json {
    json!({"name": "CRM", "url": "https://crm.example/hook", "events": ["user.created"]})
}

#[test]
fn event_types_lists_the_catalog() {
    let h = TestHost::new();
    let (s, j, _) = call(&h, "GET", "/event-types", Json::Null);
    assert_eq!(s, 200);
    let data = j["data"].as_array().unwrap();
    assert_eq!(data.len(), crate::catalog::EVENTS.len());
    let test = data.iter().find(|e| e["name"] == "test.webhook").unwrap();
    assert_eq!(test["subscribable"], false);
    let user = data.iter().find(|e| e["name"] == "user.created").unwrap();
    assert_eq!((user["subscribable"].as_bool(), user["category"].as_str()), (Some(true), Some("User")));
    assert!(user["schema"].is_object() && user["example"].is_object());
}

#[test]
fn create_answers_the_webhook_without_its_secret() {
    let h = TestHost::new();
    let mut body = basic();
    body["secret"] = json!(SECRET);
    body["events"] = json!(["user.deleted", "user.created", "user.created"]);
    let j = create(&h, body);
    assert_eq!(j["id"], 1);
    assert_eq!(j["name"], "CRM");
    assert_eq!(j["url"], "https://crm.example/hook");
    assert_eq!(j["events"], json!(["user.created", "user.deleted"]), "catalog order, once each");
    assert_eq!(j["enabled"], true);
    assert_eq!(j["has_secret"], true);
    assert_eq!(j["secret_set_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(j["last_delivery"], Json::Null);
    assert!(j.get("secret").is_none(), "a given secret is never echoed");
    assert!(!j.to_string().contains("C2FVsBQIhrscChlQIMV"));
    assert!(h.logs.borrow().iter().any(|(_, m)| m == "alice created webhook 1 (API)"));
}

#[test]
fn a_generated_secret_is_shown_once() {
    let h = TestHost::new();
    let mut body = basic();
    body["generate_secret"] = json!(true);
    let j = create(&h, body);
    let secret = j["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && crate::signing::whsec_key_len(&secret) == Some(32), "{secret}");
    let (_, again, _) = call(&h, "GET", "/webhooks/1", Json::Null);
    assert!(again.get("secret").is_none());
    assert_eq!(again["has_secret"], true);
    // And it is the one deliveries are signed with.
    raise(&h, "e1", "user.created");
    let o = outbox::build(&h, &claim(&h, 1).claimed).unwrap().remove(0).unwrap();
    let (id, ts) = (o.request.headers.iter().find(|(k, _)| k == "webhook-id").unwrap().1.clone(), T0 / 1000);
    let sig = o.request.headers.iter().find(|(k, _)| k == "webhook-signature").unwrap().1.clone();
    assert_eq!(sig, crate::signing::sign(&secret, &id, ts, &o.request.body));
}

#[test]
fn validation_failures_name_every_field() {
    let h = TestHost::new();
    let (s, j, _) = call(&h, "POST", "/webhooks", json!({"name": " ", "url": "ftp://x/", "events": []}));
    assert_eq!(s, 422);
    let e = &j["error"];
    assert_eq!(e["code"], "validation_failed");
    assert_eq!(e["field"], "name");
    assert_eq!(e["message"], "Enter a name, for example \u{201c}Billing CRM\u{201d}.");
    let fields: Vec<&str> = e["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "url", "events"]);
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 0);
}

#[test]
fn malformed_bodies_are_refused() {
    let h = TestHost::new();
    let (s, j) = raw(&h, "POST", "/webhooks", "{not json");
    assert_eq!((s, j["error"]["code"].as_str()), (400, Some("invalid_json")));
    let (s, j) = raw(&h, "POST", "/webhooks", "[1]");
    assert_eq!((s, j["error"]["code"].as_str()), (422, Some("invalid_body")));
    let mut body = basic();
    body["colour"] = json!("red");
    let (s, j, _) = call(&h, "POST", "/webhooks", body);
    assert_eq!(
        (s, j["error"]["code"].as_str(), j["error"]["field"].as_str()),
        (422, Some("unknown_field"), Some("colour"))
    );
    for (field, value) in
        [("name", json!(5)), ("enabled", json!("yes")), ("events", json!("user.created")), ("secret", json!(1))]
    {
        let mut body = basic();
        body[field] = value;
        let (s, j, _) = call(&h, "POST", "/webhooks", body);
        assert_eq!((s, j["error"]["code"].as_str()), (422, Some("invalid_type")), "{field}");
        assert_eq!(j["error"]["field"], field);
    }
    let mut body = basic();
    body["events"] = json!(["user.created", 3]);
    assert_eq!(call(&h, "POST", "/webhooks", body).1["error"]["code"], "invalid_type");
    let mut body = basic();
    body["secret"] = json!("abcdefgh12");
    body["generate_secret"] = json!(true);
    let (s, j, _) = call(&h, "POST", "/webhooks", body);
    assert_eq!((s, j["error"]["code"].as_str()), (422, Some("conflicting_fields")));
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 0);
}

#[test]
fn a_destination_the_host_refuses_is_a_url_error() {
    let h = TestHost::new();
    h.refuse("http://127.0.0.1", crate::host::RefusedKind::ThisMachine);
    let mut body = basic();
    body["url"] = json!("http://0x7f000001:8080/x");
    let (s, j, _) = call(&h, "POST", "/webhooks", body);
    assert_eq!(s, 422);
    assert_eq!(j["error"]["field"], "url");
    assert_eq!(
        j["error"]["message"],
        "This address points back at this server itself. \
         Webhooks can only reach public addresses; ask your operator to allow it."
    );
}

#[test]
fn list_get_update_delete() {
    let h = TestHost::new();
    create(&h, basic());
    let mut second = basic();
    second["name"] = json!("Billing");
    second["enabled"] = json!(false);
    create(&h, second);
    let (s, j, _) = call(&h, "GET", "/webhooks", Json::Null);
    assert_eq!(s, 200);
    let names: Vec<&str> = j["data"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["CRM", "Billing"]);
    assert_eq!(j["data"][1]["enabled"], false);

    h.advance(1_000);
    let (s, j, _) = call(&h, "PATCH", "/webhooks/1", json!({"name": "CRM v2", "enabled": false}));
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["name"], "CRM v2");
    assert_eq!(j["url"], "https://crm.example/hook", "fields not sent are kept");
    assert_eq!(j["events"], json!(["user.created"]));
    assert_eq!(j["enabled"], false);
    assert_eq!(j["disabled_reason"], "Disabled by an admin.");
    assert_eq!(j["disabled_at"], "2023-11-14T22:13:21.000Z");
    let (_, j, _) = call(&h, "PATCH", "/webhooks/1", json!({"enabled": true}));
    assert_eq!((j["enabled"].as_bool(), &j["disabled_reason"]), (Some(true), &Json::Null));

    let (s, j, _) = call(&h, "DELETE", "/webhooks/1", Json::Null);
    assert_eq!((s, j), (204, Json::Null));
    assert_eq!(call(&h, "GET", "/webhooks/1", Json::Null).0, 404);
    assert_eq!(call(&h, "DELETE", "/webhooks/1", Json::Null).0, 404);
    assert_eq!(call(&h, "GET", "/webhooks", Json::Null).1["data"].as_array().unwrap().len(), 1);
}

#[test]
fn an_update_is_validated_like_a_create() {
    let h = TestHost::new();
    create(&h, basic());
    let (s, j, _) = call(&h, "PATCH", "/webhooks/1", json!({"events": ["user.nope"]}));
    assert_eq!((s, j["error"]["field"].as_str()), (422, Some("events")));
    assert_eq!(j["error"]["message"], "Unknown event type: user.nope.");
    let (s, j, _) = call(&h, "PATCH", "/webhooks/1", json!({"rotate_secret": true}));
    assert_eq!((s, j["error"]["code"].as_str()), (422, Some("conflicting_fields")));
    assert_eq!(call(&h, "PATCH", "/webhooks/7", json!({"name": "x"})).0, 404);
    assert_eq!(call(&h, "GET", "/webhooks/1", Json::Null).1["events"], json!(["user.created"]), "unchanged");
}

#[test]
fn secrets_can_be_set_rotated_and_removed() {
    let h = TestHost::new();
    let mut body = basic();
    body["secret"] = json!("first-secret-1");
    create(&h, body);
    let (s, j, _) = call(&h, "PATCH", "/webhooks/1", json!({"generate_secret": true, "rotate_secret": true}));
    assert_eq!(s, 200, "{j}");
    assert!(j["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(j["previous_secret_valid_until"], "2023-11-15T22:13:20.000Z", "a day beside the new one");
    h.advance(crate::store::ROTATION_WINDOW_MS + 1);
    assert_eq!(call(&h, "GET", "/webhooks/1", Json::Null).1["previous_secret_valid_until"], Json::Null);
    let (_, j, _) = call(&h, "PATCH", "/webhooks/1", json!({"secret": null}));
    assert_eq!((j["has_secret"].as_bool(), &j["secret_set_at"]), (Some(false), &Json::Null));
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks WHERE secret_sealed IS NOT NULL OR secret IS NOT NULL", &[]), 0);
}

#[test]
fn ids_are_never_reused() {
    let h = TestHost::new();
    create(&h, basic());
    create(&h, basic());
    assert_eq!(call(&h, "DELETE", "/webhooks/2", Json::Null).0, 204);
    assert_eq!(create(&h, basic())["id"], 3);
}

#[test]
fn the_number_of_webhooks_is_limited() {
    let h = TestHost::new();
    h.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1) \
         INSERT INTO webhooks (id, name, url, created_at, updated_at) SELECT x, 'h', 'https://x.example/', 0, 0 FROM n",
        &[crate::webhook::MAX_WEBHOOKS.into()],
    )
    .unwrap();
    let (s, j, _) = call(&h, "POST", "/webhooks", basic());
    assert_eq!((s, j["error"]["code"].as_str()), (422, Some("limit_reached")));
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), crate::webhook::MAX_WEBHOOKS);
}

#[test]
fn unknown_paths_and_ids_are_404() {
    let h = TestHost::new();
    create(&h, basic());
    for path in ["/webhooks/0", "/webhooks/-1", "/webhooks/abc", "/webhooks/99", "/nope", "/webhooks/1/nope", "/"] {
        let (s, j, allow) = call(&h, "GET", path, Json::Null);
        assert_eq!((s, j["error"]["code"].as_str(), allow), (404, Some("not_found"), None), "{path}");
    }
    assert_eq!(call(&h, "GET", "/webhooks/99/deliveries", Json::Null).0, 404);
    assert_eq!(
        call(&h, "GET", "/webhooks/1/deliveries/5", Json::Null).1["error"]["message"],
        "There is no such delivery."
    );
    assert_eq!(call(&h, "POST", "/webhooks/99/test", Json::Null).0, 404);
    // A malformed delivery id names the delivery, not the webhook.
    for path in ["/webhooks/1/deliveries/abc", "/webhooks/1/deliveries/0/resend"] {
        let method = if path.ends_with("resend") { "POST" } else { "GET" };
        assert_eq!(call(&h, method, path, Json::Null).1["error"]["message"], "There is no such delivery.", "{path}");
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let h = TestHost::new();
    for (method, path, allow) in [
        ("POST", "/event-types", "GET"),
        ("PUT", "/webhooks", "GET, POST"),
        ("POST", "/webhooks/1", "GET, PATCH, DELETE"),
        ("GET", "/webhooks/1/test", "POST"),
        ("DELETE", "/webhooks/1/deliveries", "GET"),
        ("PATCH", "/webhooks/1/deliveries/2", "GET"),
        ("GET", "/webhooks/1/deliveries/2/resend", "POST"),
    ] {
        let (s, j, a) = call(&h, method, path, Json::Null);
        assert_eq!((s, a.as_deref()), (405, Some(allow)), "{method} {path}");
        assert_eq!(j["error"]["code"], "method_not_allowed");
    }
    let (_, j, _) = call(&h, "PUT", "/webhooks", Json::Null);
    assert_eq!(j["error"]["message"], "Use GET or POST on this path.");
    let (_, j, _) = call(&h, "PUT", "/webhooks/1", Json::Null);
    assert_eq!(j["error"]["message"], "Use GET, PATCH or DELETE on this path.");
    assert_eq!(call(&h, "get", "/webhooks/", Json::Null).0, 200, "methods and a trailing slash are forgiven");
}

/// A webhook with `n` deliveries of user.created (ids 1..=n), and one of
/// user.deleted last.
fn with_deliveries(h: &TestHost, n: usize) {
    create(h, json!({"name": "A", "url": "https://a.example/", "events": ["user.created", "user.deleted"]}));
    for i in 0..n {
        raise(h, &format!("e{i}"), "user.created");
    }
    raise(h, "del", "user.deleted");
}

#[test]
fn deliveries_page_newest_first() {
    let h = TestHost::new();
    with_deliveries(&h, 4);
    let (s, j, _) = call_q(&h, "GET", "/webhooks/1/deliveries", &[("limit", "2")], Json::Null);
    assert_eq!(s, 200);
    let ids = |j: &Json| j["data"].as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(&j), [5, 4]);
    assert_eq!((j["has_more"].as_bool(), j["next_before"].as_i64()), (Some(true), Some(4)));
    let (_, j, _) = call_q(&h, "GET", "/webhooks/1/deliveries", &[("limit", "2"), ("before", "4")], Json::Null);
    assert_eq!(ids(&j), [3, 2]);
    let (_, j, _) = call_q(&h, "GET", "/webhooks/1/deliveries", &[("limit", "2"), ("before", "2")], Json::Null);
    assert_eq!(ids(&j), [1]);
    assert_eq!((j["has_more"].as_bool(), &j["next_before"]), (Some(false), &Json::Null));
    let first = &j["data"][0];
    assert_eq!(first["event_id"], "e0");
    assert_eq!(first["state"], "pending");
    assert_eq!(first["next_attempt_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(first["last_attempt_at"], Json::Null);
    // The default page holds everything here.
    assert_eq!(ids(&call(&h, "GET", "/webhooks/1/deliveries", Json::Null).1).len(), 5);
}

#[test]
fn deliveries_filter_by_state_and_type() {
    let h = TestHost::new();
    with_deliveries(&h, 3);
    let ids: Vec<i64> = claim(&h, 10).claimed;
    record(&h, vec![status(&h, ids[0], 200), status(&h, ids[1], 500)]);
    let get = |q: &[(&str, &str)]| {
        let (s, j, _) = call_q(&h, "GET", "/webhooks/1/deliveries", q, Json::Null);
        assert_eq!(s, 200, "{j}");
        j["data"].as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(get(&[("state", "succeeded")]), [1]);
    assert_eq!(get(&[("state", "retrying")]), [2]);
    assert_eq!(get(&[("state", "waiting")]), [4, 3, 2]);
    assert_eq!(get(&[("event_type", "user.deleted")]), [4]);
    assert_eq!(get(&[("state", "pending"), ("event_type", "user.created")]), [3]);
    let (_, j, _) = call_q(&h, "GET", "/webhooks/1/deliveries", &[("state", "succeeded")], Json::Null);
    let d = &j["data"][0];
    assert_eq!((d["last_status"].as_i64(), &d["next_attempt_at"]), (Some(200), &Json::Null));
    assert_eq!(d["last_attempt_at"], "2023-11-14T22:13:20.000Z");
}

#[test]
fn bad_delivery_queries_are_422() {
    let h = TestHost::new();
    with_deliveries(&h, 1);
    for (k, v) in [
        ("limit", "0"),
        ("limit", "101"),
        ("limit", "ten"),
        ("before", "0"),
        ("before", "x"),
        ("state", "gone"),
        ("event_type", "user.nope"),
        ("page", "2"),
    ] {
        let (s, j, _) = call_q(&h, "GET", "/webhooks/1/deliveries", &[(k, v)], Json::Null);
        assert_eq!(
            (s, j["error"]["code"].as_str(), j["error"]["field"].as_str()),
            (422, Some("invalid_query"), Some(k))
        );
    }
    assert_eq!(call_q(&h, "GET", "/webhooks/1/deliveries", &[("limit", "100")], Json::Null).0, 200);
}

#[test]
fn a_delivery_shows_its_payload_and_attempts() {
    let h = TestHost::new();
    with_deliveries(&h, 1);
    let d = claim(&h, 1).claimed[0];
    h.advance(2_000);
    record(&h, vec![answered(&h, d, crate::testhost::response(503, &[("retry-after", "9")], b"busy"))]);
    let (s, j, _) = call(&h, "GET", &format!("/webhooks/1/deliveries/{d}"), Json::Null);
    assert_eq!(s, 200);
    assert_eq!(j["state"], "retrying");
    assert_eq!(j["attempts_made"], 1);
    assert_eq!(j["event"]["id"], "e0");
    assert_eq!(
        j["payload"],
        format!(
            r#"{{"type":"user.created","timestamp":"1970-01-01T00:00:01.000Z","data":{}}}"#,
            data("user.created", 1)
        )
    );
    let a = &j["attempts"][0];
    assert_eq!(a["attempt_no"], 1);
    assert_eq!(a["attempted_at"], "2023-11-14T22:13:22.000Z");
    assert_eq!(a["response"]["status"], 503);
    assert_eq!(a["response"]["body"], "busy");
    assert_eq!(a["response"]["headers"], json!([["retry-after", "9"]]));
    // Another webhook's delivery is not found through this one.
    create(&h, basic());
    assert_eq!(call(&h, "GET", &format!("/webhooks/2/deliveries/{d}"), Json::Null).0, 404);
}

#[test]
fn test_and_resend_send_now() {
    let h = TestHost::new();
    with_deliveries(&h, 1);
    h.respond(|_| Reply::status(204));
    let (s, j, _) = call(&h, "POST", "/webhooks/1/test", Json::Null);
    assert_eq!(s, 200, "{j}");
    assert_eq!(
        (j["success"].as_bool(), j["status"].as_i64(), j["state"].as_str()),
        (Some(true), Some(204), Some("succeeded"))
    );
    let (s, j, _) = call(&h, "POST", "/webhooks/1/deliveries/1/resend", Json::Null);
    assert_eq!((s, j["delivery_id"].as_i64(), j["success"].as_bool()), (200, Some(1), Some(true)));
    assert_eq!(h.sent.borrow().len(), 2);
    assert_eq!(call(&h, "POST", "/webhooks/1/deliveries/99/resend", Json::Null).0, 404);
}

#[test]
fn resending_a_delivery_in_flight_is_409() {
    let h = TestHost::new();
    with_deliveries(&h, 1);
    claim(&h, 10);
    let (s, j, _) = call(&h, "POST", "/webhooks/1/deliveries/1/resend", Json::Null);
    assert_eq!((s, j["error"]["code"].as_str()), (409, Some("in_flight")));
    assert!(h.sent.borrow().is_empty());
}

#[test]
fn a_last_delivery_is_shown_on_the_webhook() {
    let h = TestHost::new();
    with_deliveries(&h, 1);
    let d = claim(&h, 1).claimed[0];
    record(&h, vec![status(&h, d, 500)]);
    let (_, j, _) = call(&h, "GET", "/webhooks/1", Json::Null);
    assert_eq!(
        j["last_delivery"],
        json!({"event_type": "user.created", "attempted_at": "2023-11-14T22:13:20.000Z", "status": 500, "success": false})
    );
    assert_eq!(j["retrying"], 1);
    assert_eq!(j["next_retry_at"].as_str().map(|s| s.starts_with("2023-11-14T22:13:2")), Some(true));
}

#[test]
fn storage_failures_are_500_and_logged() {
    let h = TestHost::new();
    h.execute_batch("DROP TABLE webhook_events").unwrap();
    let (s, j, _) = call(&h, "GET", "/webhooks", Json::Null);
    assert_eq!((s, j["error"]["code"].as_str()), (500, Some("storage")));
    assert_eq!(h.problems().len(), 1);
    assert!(h.problems()[0].starts_with("api GET /webhooks: Storage failed"), "{:?}", h.problems());
}
