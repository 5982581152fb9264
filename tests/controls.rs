//! Per-webhook controls (#24) end to end: the real binary, component and
//! database (SQLite, or PostgreSQL with `WEBHOOKS_TEST_ENGINE=postgres`),
//! a real receiver on 127.0.0.1. Custom headers on every delivery and test
//! send, sealed at rest and masked in the history; the payload filter at
//! intake with the history saying why an event was not sent; operational
//! notices once per transition, never to the failing webhook itself, with
//! a log line and the dashboard's banner.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(20);
const SECRET_VALUE: &str = "Bearer e2e-very-secret-token";

fn api_create(h: &Host, body: Value) -> Value {
    let r = h.api().post(format!("{}/api/webhooks", h.base)).bearer_auth(TOKEN).json(&body).send().unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap();
    assert_eq!(status, 201, "{v}");
    v
}

#[test]
fn custom_headers_reach_the_receiver_on_deliveries_and_test_sends_and_stay_secret() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();
    // Created through the admin form, as an admin would.
    let (status, _, body) = a.post(
        MOUNT,
        &[
            ("name", "CRM"),
            ("url", &r.url("/ok/crm")),
            ("events", "user.created"),
            ("enabled", "on"),
            ("header_name", "X-Tenant"),
            ("header_value", "acme"),
            ("header_name", "Authorization"),
            ("header_value", SECRET_VALUE),
        ],
    );
    assert!(status == 303 || status == 302 || status == 200, "{status} {body}");
    let id = h.int("SELECT id FROM webhooks WHERE name = 'CRM'", &[]);
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    let got = r.wait_for("/ok/crm", 1, WAIT);
    assert_eq!(got[0].header("x-tenant"), "acme");
    assert_eq!(got[0].header("authorization"), SECRET_VALUE);
    assert!(!got[0].header("webhook-id").is_empty(), "the product's headers are still there");
    // A test send carries them too.
    let t = h.api().post(format!("{}/api/webhooks/{id}/test", h.base)).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(t.status().as_u16(), 200);
    let got = r.wait_for("/ok/crm", 2, WAIT);
    assert_eq!((got[1].header("x-tenant").as_str(), got[1].header("authorization").as_str()), ("acme", SECRET_VALUE));
    // Sealed at rest: not in the database's bytes (SQLite file or PostgreSQL rows).
    eventually(WAIT, "attempts recorded", || h.count("SELECT COUNT(*) FROM attempts") == 2);
    let stored = h.text("SELECT custom_headers FROM webhooks WHERE id = ?1", &[id.into()]);
    assert!(stored.contains("acme") && !stored.contains("e2e-very-secret"), "{stored}");
    // The history shows the headers as sent, the secret one masked.
    let d = h.int("SELECT MIN(id) FROM deliveries", &[]);
    let (_, page) = a.get(&format!("{MOUNT}/{id}/deliveries/{d}"));
    assert!(page.contains("x-tenant") && page.contains("acme"), "as sent");
    assert!(page.contains("authorization") && page.contains("********"), "masked");
    let detail: Value = h
        .api()
        .get(format!("{}/api/webhooks/{id}/deliveries/{d}", h.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        detail["attempts"][0]["request_headers"].as_array().unwrap().contains(&json!(["authorization", "********"]))
    );
    // The edit form never shows it; the pages, the API and the log never hold it.
    let (_, form) = a.get(&format!("{MOUNT}/{id}/edit"));
    assert!(form.contains("X-Tenant") && form.contains("saved (empty keeps it)"));
    let (_, dash) = a.get(MOUNT);
    let listed = h.api().get(format!("{}/api/webhooks", h.base)).bearer_auth(TOKEN).send().unwrap().text().unwrap();
    for text in [&page, &form, &dash, &listed, &detail.to_string(), &h.log()] {
        assert!(!text.contains("e2e-very-secret"), "a sealed value leaked");
    }
    // Saving the edit form as it comes keeps the sealed value.
    let (status, _, _) = a.post(
        &format!("{MOUNT}/{id}/edit"),
        &[
            ("name", "CRM"),
            ("url", &r.url("/ok/crm")),
            ("secret_action", "keep"),
            ("events", "user.created"),
            ("enabled", "on"),
            ("header_name", "X-Tenant"),
            ("header_value", "acme-2"),
            ("header_name", "Authorization"),
            ("header_value", ""),
        ],
    );
    assert!(status < 400);
    h.raise(json!({"type": "user.created", "data": {"id": 2, "email": "ada@example.com"}}));
    let got = r.wait_for("/ok/crm", 3, WAIT);
    assert_eq!((got[2].header("x-tenant").as_str(), got[2].header("authorization").as_str()), ("acme-2", SECRET_VALUE));
}

#[test]
fn a_refused_header_or_filter_changes_nothing() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();
    for (name, value) in [("webhook-signature", "v1,forged"), ("Transfer-Encoding", "chunked"), ("Bad Name", "x")] {
        let (status, _, page) = a.post(
            MOUNT,
            &[
                ("name", "Bad"),
                ("url", &r.url("/ok/bad")),
                ("events", "user.created"),
                ("header_name", name),
                ("header_value", value),
            ],
        );
        assert_eq!(status, 422, "{name}");
        assert!(page.contains("There is a problem"), "{page}");
    }
    let over = "v".repeat(4097);
    let (status, _, _) = a.post(
        MOUNT,
        &[
            ("name", "Bad"),
            ("url", &r.url("/ok/bad")),
            ("events", "user.created"),
            ("header_name", "X-A"),
            ("header_value", &over),
        ],
    );
    assert_eq!(status, 422);
    let (status, _, page) =
        a.post(MOUNT, &[("name", "Bad"), ("url", &r.url("/ok/bad")), ("events", "user.created"), ("filter", "@.id =")]);
    assert_eq!(status, 422);
    assert!(page.contains("not a valid JSONPath condition"));
    let api = h
        .api()
        .post(format!("{}/api/webhooks", h.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Bad", "url": r.url("/ok/bad"), "events": ["user.created"],
                      "headers": [{"name": "X-A", "value": "a\r\nInjected: yes"}]}))
        .send()
        .unwrap();
    assert_eq!(api.status().as_u16(), 422);
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 0, "nothing stored");
}

#[test]
fn a_payload_filter_keeps_unmatched_events_from_its_webhook_and_the_history_says_why() {
    let h = host();
    let r = Receiver::start();
    let big = api_create(
        &h,
        json!({"name": "Big payments", "url": r.url("/ok/big"), "events": ["transaction.success"],
               "filter": "@.amount >= 100 && @.currency == 'EUR'"}),
    );
    api_create(&h, json!({"name": "All payments", "url": r.url("/ok/all"), "events": ["transaction.success"]}));
    let id = big["id"].as_i64().unwrap();
    let mut tx = example_data("transaction.success");
    let raise = |n: &str, amount: f64, currency: &str, tx: &mut Value| {
        tx["amount"] = json!(amount);
        tx["currency"] = json!(currency);
        let (s, v) = h.raise(json!({"type": "transaction.success", "id": n, "data": tx}));
        assert_eq!(s, 202, "{v}");
        v["queued"].as_u64().unwrap()
    };
    assert_eq!(raise("tx-small", 5.0, "EUR", &mut tx), 1);
    assert_eq!(raise("tx-big", 250.0, "EUR", &mut tx), 2);
    assert_eq!(raise("tx-usd", 250.0, "USD", &mut tx), 1);
    r.wait_for("/ok/all", 3, WAIT);
    let got = r.wait_for("/ok/big", 1, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.seen_at("/ok/big").len(), 1, "only the matching event");
    assert_eq!(got[0].json()["data"]["amount"], 250.0);
    // Why the others were not sent: the API and the history page.
    let listed: Value = h
        .api()
        .get(format!("{}/api/webhooks/{id}/filtered", h.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|f| f["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"tx-small") && ids.contains(&"tx-usd"), "{listed}");
    let (_, page) = h.admin().get(&format!("{MOUNT}/{id}/history"));
    assert!(page.contains("Not sent: filtered out") && page.contains("tx-small") && page.contains("did not match"));
    // RFC 9535's functions work inside the component too.
    api_create(
        &h,
        json!({"name": "Functions", "url": r.url("/ok/fn"), "events": ["transaction.success"],
               "filter": "length(@.currency) == 3 && match(@.currency, 'E.R')"}),
    );
    assert_eq!(raise("tx-fn-eur", 1.0, "EUR", &mut tx), 2, "All and Functions");
    assert_eq!(raise("tx-fn-usd", 1.0, "USD", &mut tx), 1, "All only");
}

#[test]
fn notices_tell_the_other_webhooks_once_when_one_starts_failing_and_when_it_is_disabled() {
    let h = host_with(&[
        ("WEBHOOKS_AUTO_DISABLE_AFTER", "1s"),
        ("WEBHOOKS_RETRY_SCHEDULE", "0s,400ms,400ms,400ms,400ms,400ms"),
    ]);
    let r = Receiver::start();
    let broken = api_create(
        &h,
        json!({"name": "Broken", "url": r.url("/status/503/broken"),
               "events": ["user.created", "webhook.failing", "webhook.disabled"]}),
    );
    let broken_id = broken["id"].as_i64().unwrap();
    api_create(&h, json!({"name": "Ops", "url": r.url("/ok/ops"), "events": ["webhook.failing", "webhook.disabled"]}));
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    // Failing: one notice; then disabled: one notice.
    let kinds =
        || r.seen_at("/ok/ops").iter().map(|s| s.json()["type"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>();
    eventually(WAIT, "both notices", || {
        let k = kinds();
        k.contains(&"webhook.failing".to_owned()) && k.contains(&"webhook.disabled".to_owned())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let k = kinds();
    assert_eq!(k.iter().filter(|t| *t == "webhook.failing").count(), 1, "{k:?}");
    assert_eq!(k.iter().filter(|t| *t == "webhook.disabled").count(), 1, "{k:?}");
    let seen = r.seen_at("/ok/ops");
    let disabled = seen.iter().find(|s| s.json()["type"] == "webhook.disabled").unwrap().json();
    assert_eq!(disabled["data"]["webhook_id"], broken_id);
    assert_eq!(disabled["data"]["name"], "Broken");
    assert!(disabled["data"]["reason"].as_str().unwrap().contains("without a success"), "{disabled}");
    let failing = seen.iter().find(|s| s.json()["type"] == "webhook.failing").unwrap().json();
    assert_eq!(failing["data"]["last_status"], 503);
    // Never to the failing webhook itself.
    assert!(r.seen_at("/status/503/broken").iter().all(|s| s.json()["type"] == "user.created"));
    // A log line for each, and the dashboard's banner.
    let log = h.log();
    assert!(log.contains(&format!("webhook {broken_id} is failing")), "{log}");
    assert!(log.contains(&format!("webhook {broken_id} disabled")), "{log}");
    let (_, dash) = h.admin().get(MOUNT);
    assert!(dash.contains("1 webhook needs attention") && dash.contains("was disabled automatically"), "{dash}");
}
