//! The per-webhook rate limit (#24 part 2): the bucket's arithmetic, the
//! claim that spends it, `next_due` while it is empty, the held-back mark,
//! and the field's validation in the API and the form.

use serde_json::{Value as Json, json};

use super::*;
use crate::admin::{self, Response};
use crate::api;
use crate::outbox::bucket::{self, COST, HELD_SHOWN_MS};
use crate::webhook::parse_rate_limit;

/// A webhook limited to `rate` per second, created through the API.
fn limited(h: &TestHost, url: &str, event: &str, rate: Option<u32>) -> i64 {
    let (s, j) =
        api_call(h, "POST", "/webhooks", json!({"name": url, "url": url, "events": [event], "rate_limit": rate}));
    assert_eq!(s, 201, "{j}");
    j["id"].as_i64().unwrap()
}

fn api_call(h: &TestHost, method: &str, path: &str, body: Json) -> (u16, Json) {
    let req = api::Request {
        method: method.into(),
        path: path.into(),
        body: if body.is_null() { String::new() } else { body.to_string() },
        actor: "alice".into(),
        ..api::Request::default()
    };
    let r = api::handle(h, &req);
    assert!(!h.in_transaction());
    (r.status, if r.body.is_empty() { Json::Null } else { serde_json::from_str(&r.body).unwrap() })
}

fn backlog(h: &TestHost, prefix: &str, event: &str, n: usize) {
    let events: Vec<_> = (0..n).map(|i| ev(&format!("{prefix}{i}"), event)).collect();
    outbox::raise_batch(h, &events).unwrap();
}

/// Claimed ids of webhook `w` in `r`.
fn of(h: &TestHost, w: i64, claimed: &[i64]) -> usize {
    let mine = deliveries_of(h, w);
    claimed.iter().filter(|d| mine.contains(d)).count()
}

fn bucket_row(h: &TestHost, w: i64) -> Option<(i64, i64)> {
    let rows = h.query("SELECT tokens, at_ms FROM webhook_buckets WHERE webhook_id = ?1", &[w.into()]).unwrap();
    rows.first().map(|r| (r.i64(0), r.i64(1)))
}

#[test]
fn the_bucket_holds_a_fifth_of_a_second_at_least_one_and_refills_at_the_rate() {
    assert_eq!(bucket::capacity(50), 10 * COST, "50/s: a burst of 10");
    assert_eq!(bucket::capacity(1), COST, "at least one delivery");
    assert_eq!(bucket::capacity(4), COST);
    assert_eq!(bucket::capacity(10_000), 2_000 * COST);
    // 50/s: 50 milli-tokens a millisecond, one delivery every 20 ms.
    assert_eq!(bucket::available(50, 0, 1_000, 1_020), COST);
    assert_eq!(bucket::available(50, 0, 1_000, 1_019), COST - 50);
    assert_eq!(bucket::available(50, 0, 1_000, 9_999_999), 10 * COST, "capped at the burst");
    assert_eq!(bucket::available(50, 300, 1_000, 500), 300, "a clock behind adds nothing");
    assert_eq!(bucket::ready_at(50, 0, 1_000), 1_020);
    assert_eq!(bucket::ready_at(50, 999, 1_000), 1_001, "rounded up: never a token early");
    assert_eq!(bucket::ready_at(3, 0, 1_000), 1_334);
    assert_eq!(bucket::ready_at(50, 5 * COST, 1_000), 1_000, "a whole token now");
}

#[test]
fn rate_limits_are_whole_numbers_from_1_to_10000_or_empty() {
    assert_eq!(parse_rate_limit(""), Ok(None));
    assert_eq!(parse_rate_limit("   "), Ok(None));
    assert_eq!(parse_rate_limit(" 50 "), Ok(Some(50)));
    assert_eq!(parse_rate_limit("1"), Ok(Some(1)));
    assert_eq!(parse_rate_limit("10000"), Ok(Some(10_000)));
    assert_eq!(parse_rate_limit("007"), Ok(Some(7)));
    for (bad, says) in [
        ("0", "would never deliver"),
        ("000", "would never deliver"),
        ("-5", "cannot be negative"),
        ("10001", "10,000 per second or less"),
        ("99999999999999999999999999", "10,000 per second or less"),
        ("1.5", "whole number"),
        ("50/s", "whole number"),
        ("fifty", "whole number"),
        ("+5", "whole number"),
        ("-", "whole number"),
        ("٥", "whole number"),
    ] {
        let e = parse_rate_limit(bad).unwrap_err();
        assert!(e.contains(says), "{bad:?}: {e}");
    }
}

#[test]
fn a_limited_webhook_takes_its_burst_then_one_per_token_and_an_unlimited_one_is_not_slowed() {
    let h = TestHost::new();
    let slow = limited(&h, "https://slow.example/", "user.created", Some(50));
    let fast = limited(&h, "https://fast.example/", "user.deleted", None);
    assert_eq!(bucket_row(&h, slow), Some((10 * COST, h.now_ms() as i64)), "a new limit starts full");
    assert_eq!(bucket_row(&h, fast), None, "only limited webhooks have a bucket");
    backlog(&h, "s", "user.created", 40);
    backlog(&h, "f", "user.deleted", 30);

    let r = claim(&h, 100);
    assert_eq!(of(&h, slow, &r.claimed), 10, "the burst: a fifth of a second's worth");
    assert_eq!(of(&h, fast, &r.claimed), 30, "the unlimited webhook takes all it has due");
    assert_eq!(bucket_row(&h, slow), Some((0, h.now_ms() as i64)), "debited in the step");
    // Nothing more for the limited one until its next token: 20 ms at 50/s.
    let r = claim(&h, 100);
    assert_eq!(of(&h, slow, &r.claimed), 0);
    assert_eq!(r.next_due_ms, Some(h.now_ms() + 20), "due when its next token arrives, not now");
    h.advance(19);
    assert_eq!(of(&h, slow, &claim(&h, 100).claimed), 0, "not a token early");
    h.advance(1);
    assert_eq!(of(&h, slow, &claim(&h, 100).claimed), 1);
    h.advance(50);
    assert_eq!(of(&h, slow, &claim(&h, 100).claimed), 2, "2.5 tokens: two whole ones");
    assert_eq!(bucket_row(&h, slow).unwrap().0, COST / 2, "the half token is kept, not lost");
    h.advance(10);
    assert_eq!(of(&h, slow, &claim(&h, 100).claimed), 1, "the kept half makes the next token sooner");
    // An idle second refills up to the burst only.
    h.advance(1_000);
    assert_eq!(of(&h, slow, &claim(&h, 100).claimed), 10);
    // Nothing was failed or dropped: the rest waits, pending.
    assert_eq!(
        h.int("SELECT COUNT(*) FROM deliveries WHERE webhook_id = ?1 AND state = 'pending'", &[slow.into()]),
        40
    );
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts", &[]), 0);
}

#[test]
fn over_ten_seconds_a_limited_webhook_gets_its_rate() {
    // The engine steps when the last step said the next delivery is due;
    // followed 1,000 times at 50/s with a backlog, the claims add up to the
    // rate (plus the first burst), and record nothing as failed.
    let h = TestHost::new();
    h.settings_mut(|s| s.per_webhook_concurrency = 1_000);
    let w = limited(&h, "https://slow.example/", "user.created", Some(50));
    backlog(&h, "s", "user.created", 700);
    let start = h.now_ms();
    let mut claimed = claim(&h, 1_000).claimed.len();
    assert_eq!(claimed, 10);
    let mut steps = 0;
    while h.now_ms() <= start + 10_000 {
        let next = claim(&h, 1_000);
        claimed += next.claimed.len();
        steps += 1;
        let due = next.next_due_ms.expect("rows wait");
        assert!(due > h.now_ms(), "never due now with an empty bucket (the engine would spin)");
        h.set_now(due);
    }
    assert_eq!(claimed, 10 + 500, "the burst, then 50 a second for 10 s");
    assert!(steps <= 502, "one step per token: {steps}");
    assert_eq!(h.int("SELECT COUNT(*) FROM deliveries WHERE webhook_id = ?1 AND state = 'pending'", &[w.into()]), 700);
}

#[test]
fn the_limit_held_back_mark_is_set_while_rows_wait_and_fades() {
    let h = TestHost::new();
    let w = limited(&h, "https://slow.example/", "user.created", Some(5));
    backlog(&h, "s", "user.created", 3);
    let hook = || store::get(&h, w).unwrap().unwrap();
    assert!(!hook().held_back(h.now_ms()));
    // A burst of 1 at 5/s: one goes, two wait for tokens.
    assert_eq!(claim(&h, 10).claimed.len(), 1);
    let now = h.now_ms();
    assert_eq!(hook().rate_limited_at, Some(now));
    assert!(hook().held_back(now));
    let (_, j) = api_call(&h, "GET", &format!("/webhooks/{w}"), Json::Null);
    assert_eq!((j["rate_limit"].as_i64(), j["rate_limited"].as_bool()), (Some(5), Some(true)), "{j}");
    assert!(j["rate_limited_at"].is_string());
    let Response::Page { fragment, .. } = admin::handle(&h, &admin_req("GET", "/", &[])) else { panic!() };
    assert!(fragment.contains("data-held-back") && fragment.contains("Limit: 5/s"), "{fragment}");
    // Spending the last row's token with nothing left waiting does not mark it.
    h.advance(200);
    claim(&h, 10);
    h.advance(200);
    let mark = hook().rate_limited_at;
    assert_eq!(claim(&h, 10).claimed.len(), 1);
    assert_eq!(hook().rate_limited_at, mark, "nothing waits any more");
    h.advance(HELD_SHOWN_MS);
    assert!(!hook().held_back(h.now_ms()), "the mark fades");
    let Response::Page { fragment, .. } = admin::handle(&h, &admin_req("GET", "/", &[])) else { panic!() };
    assert!(!fragment.contains("data-held-back"));
    let (_, j) = api_call(&h, "GET", &format!("/webhooks/{w}"), Json::Null);
    assert_eq!(j["rate_limited"], false);
}

#[test]
fn a_limit_can_be_changed_and_removed_and_a_delete_takes_the_bucket() {
    let h = TestHost::new();
    let w = limited(&h, "https://slow.example/", "user.created", Some(50));
    let (s, j) = api_call(&h, "PATCH", &format!("/webhooks/{w}"), json!({"name": "renamed"}));
    assert_eq!((s, j["rate_limit"].as_i64()), (200, Some(50)), "absent: kept");
    let (s, j) = api_call(&h, "PATCH", &format!("/webhooks/{w}"), json!({"rate_limit": 5}));
    assert_eq!((s, j["rate_limit"].as_i64()), (200, Some(5)));
    backlog(&h, "s", "user.created", 5);
    assert_eq!(claim(&h, 10).claimed.len(), 1, "the full old bucket is capped at the new burst");
    let (s, j) = api_call(&h, "PATCH", &format!("/webhooks/{w}"), json!({"rate_limit": null}));
    assert_eq!((s, &j["rate_limit"]), (200, &Json::Null));
    assert_eq!(bucket_row(&h, w), None);
    assert_eq!(claim(&h, 10).claimed.len(), 4, "no limit: everything due goes");
    api_call(&h, "PATCH", &format!("/webhooks/{w}"), json!({"rate_limit": 7}));
    assert!(bucket_row(&h, w).is_some());
    let (s, _) = api_call(&h, "DELETE", &format!("/webhooks/{w}"), Json::Null);
    assert_eq!(s, 204);
    assert_eq!(h.int("SELECT COUNT(*) FROM webhook_buckets", &[]), 0);
}

#[test]
fn bad_rate_limits_are_refused_with_the_field_named_and_nothing_changes() {
    let h = TestHost::new();
    for (body, code) in [
        (json!(0), "validation_failed"),
        (json!(-1), "validation_failed"),
        (json!(10_001), "validation_failed"),
        (json!(u64::MAX), "validation_failed"),
        (json!(1.5), "invalid_type"),
        (json!(0.0), "validation_failed"),
        (json!("50"), "invalid_type"),
        (json!(true), "invalid_type"),
        (json!([50]), "invalid_type"),
    ] {
        let (s, j) = api_call(
            &h,
            "POST",
            "/webhooks",
            json!({"name": "x", "url": "https://x.example/", "events": ["user.created"], "rate_limit": body}),
        );
        assert_eq!(
            (s, j["error"]["code"].as_str(), j["error"]["field"].as_str()),
            (422, Some(code), Some("rate_limit")),
            "{body}: {j}"
        );
    }
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 0, "nothing created");
    let w = limited(&h, "https://slow.example/", "user.created", Some(50));
    let before = h.row("SELECT name, rate_limit, updated_at FROM webhooks WHERE id = ?1", &[w.into()]);
    let (s, j) = api_call(&h, "PATCH", &format!("/webhooks/{w}"), json!({"name": "new", "rate_limit": 0}));
    assert_eq!((s, j["error"]["field"].as_str()), (422, Some("rate_limit")));
    assert!(j["error"]["message"].as_str().unwrap().contains("would never deliver"), "{j}");
    assert_eq!(h.row("SELECT name, rate_limit, updated_at FROM webhooks WHERE id = ?1", &[w.into()]), before);

    // The form: the message under the field, linked from the summary.
    let form = [("name", "CRM"), ("url", "https://a.example/h"), ("events", "user.created"), ("rate_limit", "lots")];
    let Response::Page { status, fragment, .. } = admin::handle(&h, &admin_req("POST", "/new", &form)) else {
        panic!("not a page")
    };
    assert_eq!(status, 422);
    assert!(fragment.contains("<li><a href=\"#wh-rate-limit\">Enter the rate limit as a whole number"), "{fragment}");
    assert!(fragment.contains("id=\"wh-rate-limit-err\"") && fragment.contains("value=\"lots\""));
    let tag = &fragment[fragment.find("<input id=\"wh-rate-limit\"").unwrap()..];
    assert!(tag[..tag.find('>').unwrap()].contains("aria-invalid=\"true\""));
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 1, "nothing created");
    let edit = [
        ("name", "CRM"),
        ("url", "https://a.example/h"),
        ("events", "user.created"),
        ("secret_action", "keep"),
        ("rate_limit", "20000"),
    ];
    let Response::Page { status, .. } = admin::handle(&h, &admin_req("POST", &format!("/{w}/edit"), &edit)) else {
        panic!("not a page")
    };
    assert_eq!(status, 422);
    assert_eq!(h.row("SELECT name, rate_limit, updated_at FROM webhooks WHERE id = ?1", &[w.into()]), before);

    // Saved from the form: shown back in the edit form; emptied: no limit.
    let edit = [
        ("name", "CRM"),
        ("url", "https://a.example/h"),
        ("events", "user.created"),
        ("secret_action", "keep"),
        ("rate_limit", "25"),
    ];
    assert!(matches!(admin::handle(&h, &admin_req("POST", &format!("/{w}/edit"), &edit)), Response::Redirect { .. }));
    let Response::Page { fragment, .. } = admin::handle(&h, &admin_req("GET", &format!("/{w}/edit"), &[])) else {
        panic!()
    };
    assert!(
        fragment.contains(
            "name=\"rate_limit\" type=\"text\" inputmode=\"numeric\" autocomplete=\"off\" size=\"6\" value=\"25\""
        ),
        "{fragment}"
    );
    let edit = [
        ("name", "CRM"),
        ("url", "https://a.example/h"),
        ("events", "user.created"),
        ("secret_action", "keep"),
        ("rate_limit", ""),
    ];
    assert!(matches!(admin::handle(&h, &admin_req("POST", &format!("/{w}/edit"), &edit)), Response::Redirect { .. }));
    assert_eq!(store::get(&h, w).unwrap().unwrap().rate_limit, None);
}

fn admin_req(method: &str, path: &str, form: &[(&str, &str)]) -> admin::Request {
    admin::Request {
        method: method.into(),
        path: path.into(),
        form: form.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        actor: "alice".into(),
        ..admin::Request::default()
    }
}
