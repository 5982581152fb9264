//! The delivery pipeline: claiming with leases and per-webhook bounds,
//! `next_due`, building signed requests, recording attempts, one-off sends,
//! queue statistics and pruning.

use super::*;
use crate::host::Value;
use crate::outbox::{DeliveryState, MAX_STORED_BODY};
use crate::testhost::{Reply, T0, response};

const S: u64 = 1000;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn a_step_leases_what_is_due() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    raise(&h, "e2", "user.created");
    let ds = deliveries_of(&h, w);
    let r = claim(&h, 10);
    assert_eq!(r.claimed, ds);
    for d in &ds {
        assert_eq!(delivery(&h, *d), ("pending".into(), 0, Some(T0 as i64), Some((T0 + 60 * S) as i64)));
    }
    assert_eq!(r.next_due_ms, Some(T0 + 60 * S), "nothing else waits: come back when the leases end");
    assert!(claim(&h, 10).claimed.is_empty(), "leased rows are not claimed twice");
}

#[test]
fn an_expired_lease_is_claimed_again_with_the_same_message_id() {
    let h = TestHost::new();
    let w = hook_with(&h, "https://example.com/a", &["user.created"], Some(SECRET));
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    let first = outbox::build(&h, &claim(&h, 1).claimed).unwrap().remove(0).unwrap();
    h.advance(60 * S - 1);
    assert!(claim(&h, 1).claimed.is_empty());
    h.advance(1);
    assert_eq!(claim(&h, 1).claimed, [d], "a worker that died leaves its lease to expire");
    let again = outbox::build(&h, &[d]).unwrap().remove(0).unwrap();
    assert_eq!(header(&first.request.headers, "webhook-id"), header(&again.request.headers, "webhook-id"));
    assert_eq!(first.request.body, again.request.body);
}

#[test]
fn released_deliveries_are_claimed_again_at_once_and_nothing_is_recorded() {
    let h = TestHost::new();
    let w = hook_with(&h, "https://example.com/a", &["user.created"], Some(SECRET));
    for i in 0..3 {
        raise(&h, &format!("e{i}"), "user.created");
    }
    let ds = deliveries_of(&h, w);
    let first = outbox::build(&h, &claim(&h, 3).claimed).unwrap();
    // One attempt finished and was recorded; a stopping host hands back the
    // other two (and names the recorded one too: a late call changes nothing).
    record(&h, vec![status(&h, ds[0], 200)]);
    h.advance(S);
    assert_eq!(outbox::release(&h, &ds).unwrap(), 2);
    assert_eq!(delivery(&h, ds[0]), ("succeeded".into(), 1, None, None));
    for d in &ds[1..] {
        assert_eq!(delivery(&h, *d), ("pending".into(), 0, Some(T0 as i64), None), "waiting, not leased, no attempt");
    }
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts", &[]), 1);
    // Long before the lease would have ended, the next claim takes them,
    // with the same webhook-id.
    assert_eq!(claim(&h, 10).claimed, ds[1..]);
    let again = outbox::build(&h, &ds[1..]).unwrap();
    for (a, b) in first[1..].iter().zip(&again) {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert_eq!(header(&a.request.headers, "webhook-id"), header(&b.request.headers, "webhook-id"));
    }
    assert_eq!(outbox::release(&h, &[]).unwrap(), 0);
    assert_eq!(outbox::release(&h, &[9_999]).unwrap(), 0, "an unknown id is no error");
}

#[test]
fn claims_the_oldest_first_up_to_the_maximum() {
    let h = TestHost::new();
    h.settings_mut(|s| s.per_webhook_concurrency = 100);
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    for i in 0..5 {
        raise(&h, &format!("e{i}"), "user.created");
        h.advance(1);
    }
    let ds = deliveries_of(&h, w);
    let r = claim(&h, 3);
    assert_eq!(r.claimed, ds[..3]);
    assert_eq!(r.next_due_ms, Some(h.now_ms()), "a full claim means: come back at once");
    let r = claim(&h, 3);
    assert_eq!(r.claimed, ds[3..]);
}

#[test]
fn claim_max_zero_claims_nothing() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let r = outbox::step(&h, &[], &[], 0).unwrap();
    assert!(r.claimed.is_empty() && r.next_due_ms.is_none());
    assert_eq!(delivery(&h, deliveries_of(&h, w)[0]).3, None);
}

#[test]
fn each_webhook_has_at_most_twice_its_concurrency_leased() {
    let h = TestHost::new();
    h.settings_mut(|s| s.per_webhook_concurrency = 2);
    let busy = hook(&h, "https://busy.example/", &["user.created"]);
    for i in 0..10 {
        raise(&h, &format!("e{i}"), "user.created");
    }
    let quiet = hook(&h, "https://quiet.example/", &["user.deleted"]);
    raise(&h, "q1", "user.deleted");
    let r = claim(&h, 100);
    let busy_ids = deliveries_of(&h, busy);
    assert_eq!(r.claimed.iter().filter(|d| busy_ids.contains(d)).count(), 4, "2 × per_webhook_concurrency");
    assert!(r.claimed.contains(&deliveries_of(&h, quiet)[0]), "a backlog does not starve another webhook");
    assert_eq!(r.claimed.len(), 5);
    // The bound counts leases held from earlier steps.
    assert!(claim(&h, 100).claimed.is_empty());
    // Recording one frees one slot.
    record(&h, vec![status(&h, r.claimed[0], 200)]);
    let next = claim(&h, 100).claimed;
    assert_eq!(next, [busy_ids[4]]);
}

#[test]
fn a_concurrency_of_zero_still_sends() {
    let h = TestHost::new();
    h.settings_mut(|s| s.per_webhook_concurrency = 0);
    hook(&h, "https://example.com/a", &["user.created"]);
    for i in 0..4 {
        raise(&h, &format!("e{i}"), "user.created");
    }
    assert_eq!(claim(&h, 10).claimed.len(), 2, "treated as 1, so 2 leased");
}

#[test]
fn disabled_webhooks_are_neither_claimed_nor_waited_for() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    assert_eq!(store::toggle(&h, w).unwrap(), Some(false));
    let r = claim(&h, 10);
    assert!(r.claimed.is_empty());
    assert_eq!(r.next_due_ms, None, "a disabled webhook's backlog does not wake the scheduler");
    assert_eq!(store::toggle(&h, w).unwrap(), Some(true));
    assert_eq!(claim(&h, 10).claimed.len(), 1, "re-enabled, its backlog goes out");
}

#[test]
fn next_due_is_the_earliest_retry() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    assert!(claim(&h, 0).next_due_ms.is_none());
    claim(&h, 5);
    h.no_jitter_next();
    record(&h, vec![status(&h, d, 500)]);
    let r = claim(&h, 5);
    assert!(r.claimed.is_empty());
    assert_eq!(r.next_due_ms, Some(T0 + 5 * S));
    // Nothing at all waits.
    h.advance(5 * S);
    claim(&h, 5);
    record(&h, vec![status(&h, d, 200)]);
    assert_eq!(claim(&h, 5).next_due_ms, None);
}

#[test]
fn a_step_raises_records_and_claims_in_one_go() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e0", "user.created");
    let d0 = deliveries_of(&h, w)[0];
    claim(&h, 10);
    let r = outbox::step(&h, &[ev("e1", "user.created"), ev("bad", "nope.nope")], &[status(&h, d0, 200)], 10).unwrap();
    assert_eq!(r.raised.len(), 2);
    assert_eq!(r.raised[0], Ok(outbox::Raised { event_id: "e1".into(), queued: 1 }));
    assert!(matches!(r.raised[1], Err(outbox::RaiseError::UnknownType(_))));
    let d1 = deliveries_of(&h, w)[1];
    assert_eq!(r.claimed, [d1], "raised in the step, claimed in the same step");
    assert_eq!(delivery(&h, d0).0, "succeeded");
    assert_eq!(h.recorded.get(), (1, 0, 0));
    assert!(!h.in_transaction());
}

#[test]
fn build_signs_the_payload_as_standard_webhooks_verifies_it() {
    let h = TestHost::new();
    h.settings_mut(|s| s.attempt_timeout_ms = 7 * S);
    let w = hook_with(&h, "https://example.com/a?x=1", &["user.created"], Some(SECRET));
    let e = NewEvent {
        id: "evt_1".into(),
        event_type: "user.created".into(),
        occurred_at_ms: 1_700_000_000_123,
        data_json: r#"{"id":7,"email":"a@example.com"}"#.into(),
    };
    outbox::raise_batch(&h, &[e]).unwrap();
    h.advance(1_500);
    let built = outbox::build(&h, &claim(&h, 1).claimed).unwrap();
    let o = built.into_iter().next().unwrap().unwrap();
    assert_eq!(o.webhook_id, w);
    let r = &o.request;
    assert_eq!(r.url, "https://example.com/a?x=1");
    assert_eq!(r.timeout_ms, 7 * S);
    let body = String::from_utf8(r.body.clone()).unwrap();
    assert_eq!(
        body,
        r#"{"type":"user.created","timestamp":"2023-11-14T22:13:20.123Z","data":{"id":7,"email":"a@example.com"}}"#
    );
    let msg_id = header(&r.headers, "webhook-id").unwrap();
    let created_at = h.int("SELECT created_at FROM webhooks WHERE id = ?1", &[w.into()]);
    assert_eq!(msg_id, outbox::msg_id("evt_1", w, created_at));
    let ts = (T0 + 1_500) / 1000;
    assert_eq!(header(&r.headers, "webhook-timestamp"), Some(ts.to_string().as_str()));
    assert_eq!(header(&r.headers, "content-type"), Some("application/json"));
    let expected = standardwebhooks::Webhook::new(SECRET).unwrap().sign(msg_id, ts as i64, body.as_bytes()).unwrap();
    assert_eq!(header(&r.headers, "webhook-signature"), Some(expected.as_str()));
}

#[test]
fn build_without_a_secret_sends_no_signature() {
    let h = TestHost::new();
    hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let o = outbox::build(&h, &claim(&h, 1).claimed).unwrap().remove(0).unwrap();
    assert_eq!(header(&o.request.headers, "webhook-signature"), None);
    assert!(header(&o.request.headers, "webhook-id").is_some());
}

#[test]
fn a_rotation_signs_with_both_secrets_for_a_day() {
    let h = TestHost::new();
    let w = hook_with(&h, "https://example.com/a", &["user.created"], Some("first-secret-123"));
    let input = wh::Input {
        name: "rotated".into(),
        url: "https://example.com/a".into(),
        secret: Some("second-secret-456".into()),
        rotate: true,
        events: vec!["user.created".into()],
        enabled: true,
        ..Default::default()
    };
    assert!(store::update(&h, w, &wh::validate(&h, &input).unwrap()).unwrap());
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed;
    let o = outbox::build(&h, &d).unwrap().remove(0).unwrap();
    let r = &o.request;
    let (id, ts) = (header(&r.headers, "webhook-id").unwrap(), T0 / 1000);
    let new = crate::signing::sign("second-secret-456", id, ts, &r.body);
    let old = crate::signing::sign("first-secret-123", id, ts, &r.body);
    assert_eq!(header(&r.headers, "webhook-signature"), Some(format!("{new} {old}").as_str()), "current first");
    h.advance(store::ROTATION_WINDOW_MS + 1);
    let o = outbox::build(&h, &d).unwrap().remove(0).unwrap();
    let new = crate::signing::sign("second-secret-456", id, h.now_ms() / 1000, &o.request.body);
    assert_eq!(header(&o.request.headers, "webhook-signature"), Some(new.as_str()), "the old one expired");
}

#[test]
fn an_unusable_secret_becomes_a_failed_attempt() {
    let h = TestHost::new();
    let w = hook_with(&h, "https://example.com/a", &["user.created"], Some(SECRET));
    // Sealed under another host key, as if the key file changed.
    h.execute("UPDATE webhooks SET secret_sealed = ?2 WHERE id = ?1", &[w.into(), Value::Blob(vec![9, 9, 9])]).unwrap();
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed;
    let f = outbox::build(&h, &d).unwrap().remove(0).unwrap_err();
    assert_eq!(f.delivery_id, d[0]);
    let err = f.result.clone().unwrap_err().to_string();
    assert!(err.starts_with("not sent: the signing secret is unusable"), "{err}");
    assert!(header(&f.request_headers, "webhook-id").is_some(), "the headers it would have sent are kept");
    record(&h, vec![f]);
    assert_eq!(delivery(&h, d[0]).0, "retrying", "it follows the retry schedule");
}

#[test]
fn building_unknown_ids_answers_nothing() {
    let h = TestHost::new();
    assert!(outbox::build(&h, &[]).unwrap().is_empty());
    assert!(outbox::build(&h, &[42, 43]).unwrap().is_empty());
}

#[test]
fn a_success_is_recorded_with_its_response() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed[0];
    h.advance(300);
    let f = answered(&h, d, response(201, &[("x-request-id", "abc")], b"{\"ok\":true}"));
    record(&h, vec![f]);
    assert_eq!(delivery(&h, d), ("succeeded".into(), 1, None, None));
    let a = h.row(
        "SELECT attempt_no, attempted_at, duration_ms, response_status, response_headers, response_body, \
         response_body_size, error, success, request_headers FROM attempts WHERE delivery_id = ?1",
        &[d.into()],
    );
    assert_eq!(
        a,
        [
            Value::Integer(1),
            Value::Integer((T0 + 300) as i64),
            Value::Integer(20),
            Value::Integer(201),
            Value::from(r#"[["x-request-id","abc"]]"#),
            Value::from("{\"ok\":true}"),
            Value::Integer(11),
            Value::Null,
            Value::Integer(1),
            Value::from(r#"[["webhook-id","msg_x"]]"#),
        ]
    );
    let hook_row =
        h.row("SELECT last_event_type, last_event_at, last_status, last_ok FROM webhooks WHERE id = ?1", &[w.into()]);
    assert_eq!(hook_row, [Value::from("user.created"), Value::Integer((T0 + 300) as i64), 201i64.into(), 1i64.into()]);
    assert_eq!((h.recorded.get(), h.recorded_calls.get()), ((1, 0, 0), 1));
}

#[test]
fn client_and_server_errors_retry() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    for i in 0..4 {
        raise(&h, &format!("e{i}"), "user.created");
    }
    let ds = deliveries_of(&h, w);
    claim(&h, 10);
    record(&h, vec![status(&h, ds[0], 400), status(&h, ds[1], 404), status(&h, ds[2], 500), status(&h, ds[3], 599)]);
    for d in &ds {
        let (state, attempts, next, lease) = delivery(&h, *d);
        assert_eq!((state.as_str(), attempts, lease), ("retrying", 1, None));
        assert!(next.unwrap() > T0 as i64);
    }
    let statuses: Vec<i64> =
        h.query("SELECT last_status FROM deliveries ORDER BY id", &[]).unwrap().iter().map(|r| r.i64(0)).collect();
    assert_eq!(statuses, [400, 404, 500, 599]);
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts WHERE success = 0 AND error IS NULL", &[]), 4);
    assert_eq!(h.recorded.get(), (0, 4, 0));
}

#[test]
fn a_transport_error_is_recorded_without_a_response() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed[0];
    record(&h, vec![failed(&h, d, "connection refused")]);
    let a = h.row(
        "SELECT response_status, response_headers, response_body, response_body_size, error, success, duration_ms \
         FROM attempts WHERE delivery_id = ?1",
        &[d.into()],
    );
    assert_eq!(
        a,
        [
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            "connection refused".into(),
            0i64.into(),
            15_000i64.into()
        ]
    );
    let r = h.row("SELECT state, last_status, last_error FROM deliveries WHERE id = ?1", &[d.into()]);
    assert_eq!(r, ["retrying".into(), Value::Null, "connection refused".into()]);
    let r = h.row("SELECT last_status, last_ok FROM webhooks WHERE id = ?1", &[w.into()]);
    assert_eq!(r, [Value::Null, 0i64.into()]);
}

#[test]
fn a_large_body_is_stored_cut_with_its_full_size() {
    let h = TestHost::new();
    hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed[0];
    let mut resp = response(500, &[], &vec![b'x'; MAX_STORED_BODY + 10]);
    resp.body_size = 1_000_000;
    record(&h, vec![answered(&h, d, resp)]);
    let r = h.row("SELECT LENGTH(response_body), response_body_size FROM attempts", &[]);
    assert_eq!(r, [Value::Integer(MAX_STORED_BODY as i64), Value::Integer(1_000_000)]);
}

#[test]
fn results_of_deleted_webhooks_are_dropped() {
    let h = TestHost::new();
    let gone = hook(&h, "https://example.com/a", &["user.created"]);
    let kept = hook(&h, "https://example.com/b", &["user.created"]);
    raise(&h, "e1", "user.created");
    let r = claim(&h, 10);
    assert_eq!(r.claimed.len(), 2);
    assert!(store::delete(&h, gone).unwrap());
    let fin: Vec<_> = r.claimed.iter().map(|d| status(&h, *d, 200)).collect();
    record(&h, fin);
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts", &[]), 1, "only the kept webhook's");
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts WHERE webhook_id = ?1", &[kept.into()]), 1);
    assert_eq!(h.recorded.get(), (1, 0, 0));
    assert!(h.problems().is_empty(), "{:?}", h.problems());
}

#[test]
fn a_test_send_is_one_attempt() {
    let h = TestHost::new();
    let w = hook_with(&h, "https://example.com/a", &["user.created"], Some(SECRET));
    h.respond(|_| Reply::status(500));
    let o = outbox::send_test(&h, w, "alice").unwrap().unwrap();
    assert_eq!((o.status, o.success, o.state), (Some(500), false, DeliveryState::Exhausted));
    let sent = h.sent.borrow();
    assert_eq!(sent.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["type"], "test.webhook");
    assert_eq!(body["data"]["webhook_id"], w);
    assert_eq!(body["data"]["sent_by"], "alice");
    assert!(header(&sent[0].headers, "webhook-signature").is_some());
    assert_eq!(delivery(&h, o.delivery_id), ("exhausted".into(), 1, None, None));
    assert_eq!(h.recorded.get(), (0, 0, 1));
    // Never claimed by the pipeline afterwards.
    h.advance(86_400 * S);
    assert!(claim(&h, 10).claimed.is_empty());
    // Not the webhook's last event hit, and no failure streak (#13).
    let r =
        h.row("SELECT last_event_type, last_status, last_ok, failing_since FROM webhooks WHERE id = ?1", &[w.into()]);
    assert_eq!(r, [Value::Null, Value::Null, Value::Null, Value::Null]);
}

#[test]
fn a_test_send_to_an_unknown_webhook_sends_nothing() {
    let h = TestHost::new();
    assert!(outbox::send_test(&h, 99, "alice").unwrap().is_none());
    assert!(h.sent.borrow().is_empty());
    assert_eq!(h.int("SELECT COUNT(*) FROM events", &[]), 0);
}

#[test]
fn a_refused_start_and_a_transport_failure_are_recorded() {
    let h = TestHost::new();
    let a = hook(&h, "https://refused.example/", &["user.created"]);
    let b = hook(&h, "https://slow.example/", &["user.created"]);
    h.respond(|r| {
        if r.url.contains("refused") {
            Reply::Refuse("refused by the egress policy".into())
        } else {
            Reply::Fail("timed out waiting for the response".into())
        }
    });
    let o = outbox::send_test(&h, a, "alice").unwrap().unwrap();
    assert_eq!((o.status, o.error.as_deref()), (None, Some("refused by the egress policy")));
    let o = outbox::send_test(&h, b, "alice").unwrap().unwrap();
    assert_eq!(o.error.as_deref(), Some("timed out waiting for the response"));
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts WHERE success = 0", &[]), 2);
    assert_eq!(h.int("SELECT duration_ms FROM attempts WHERE webhook_id = ?1", &[b.into()]), 15_000);
}

#[test]
fn deleting_a_webhook_during_its_test_send_wins() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    h.on_wait(move |h| {
        assert!(store::delete(h, w).unwrap());
    });
    assert!(outbox::send_test(&h, w, "alice").unwrap().is_none());
    assert_eq!(h.int("SELECT COUNT(*) FROM deliveries", &[]), 0);
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts", &[]), 0);
    assert!(h.problems().is_empty(), "{:?}", h.problems());
    assert!(!h.in_transaction());
}

#[test]
fn resend_of_a_finished_delivery_is_one_more_attempt() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed[0];
    record(&h, vec![status(&h, d, 200)]);
    h.respond(|_| Reply::status(500));
    let o = outbox::pipeline::resend(&h, w, d).unwrap().unwrap();
    assert_eq!((o.state, o.status), (DeliveryState::Exhausted, Some(500)), "a one-off");
    assert_eq!(delivery(&h, d), ("exhausted".into(), 2, None, None));
    let ids: Vec<String> =
        h.sent.borrow().iter().map(|r| header(&r.headers, "webhook-id").unwrap().to_owned()).collect();
    assert_eq!(ids, [h.texts("SELECT msg_id FROM deliveries", &[])[0].clone()], "same webhook-id");
}

#[test]
fn resend_of_a_waiting_delivery_keeps_its_schedule() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    h.respond(|_| Reply::status(503));
    let o = outbox::pipeline::resend(&h, w, d).unwrap().unwrap();
    assert_eq!(o.state, DeliveryState::Retrying);
    assert_eq!(delivery(&h, d).1, 1);
}

#[test]
fn resend_refuses_a_leased_or_foreign_delivery() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    let other = hook(&h, "https://example.com/b", &["user.deleted"]);
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed[0];
    assert!(outbox::pipeline::resend(&h, w, d).unwrap().is_none(), "being sent right now");
    assert!(outbox::pipeline::resend(&h, other, d).unwrap().is_none(), "not this webhook's");
    assert!(h.sent.borrow().is_empty());
}

#[test]
fn retry_failed_since_requeues_exhausted_deliveries_only() {
    let h = TestHost::new();
    h.settings_mut(|s| s.retry_schedule_ms = vec![0]);
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "old", "user.created");
    h.advance(10 * S);
    raise(&h, "new", "user.created");
    raise(&h, "ok", "user.created");
    let ds = deliveries_of(&h, w);
    claim(&h, 10);
    record(&h, vec![status(&h, ds[0], 500), status(&h, ds[1], 500), status(&h, ds[2], 200)]);
    h.advance(S);
    assert_eq!(outbox::retry_failed_since(&h, w, T0 + 10 * S).unwrap(), 1);
    assert_eq!(delivery(&h, ds[0]).0, "exhausted", "older than the window");
    assert_eq!(delivery(&h, ds[1]), ("retrying".into(), 1, Some((T0 + 11 * S) as i64), None));
    assert_eq!(delivery(&h, ds[2]).0, "succeeded");
    assert_eq!(claim(&h, 10).claimed, [ds[1]]);
}

#[test]
fn stats_count_what_waits() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    assert_eq!(outbox::stats(&h).unwrap(), outbox::QueueStats::default());
    raise(&h, "e1", "user.created");
    h.advance(S);
    raise(&h, "e2", "user.created");
    raise(&h, "e3", "user.created");
    let ds = deliveries_of(&h, w);
    claim(&h, 10);
    record(&h, vec![status(&h, ds[0], 500), status(&h, ds[1], 200)]);
    let s = outbox::stats(&h).unwrap();
    assert_eq!(s, outbox::QueueStats { pending: 1, retrying: 1, oldest_waiting_ms: Some(T0) });
}

#[test]
fn maintenance_prunes_finished_history_only() {
    let h = TestHost::new();
    h.settings_mut(|s| s.retention_ms = 86_400 * S);
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "done", "user.created");
    raise(&h, "waiting", "user.created");
    let ds = deliveries_of(&h, w);
    claim(&h, 10);
    record(&h, vec![status(&h, ds[0], 200), status(&h, ds[1], 500)]);
    h.advance(86_400 * S - 1);
    assert_eq!(outbox::maintain(&h).unwrap(), outbox::Pruned::default(), "nothing is old enough yet");
    h.advance(1 + 1);
    let p = outbox::maintain(&h).unwrap();
    assert_eq!(p, outbox::Pruned { attempts: 1, deliveries: 1, events: 1, rollups: 0, sessions: 0, filtered: 0 });
    assert_eq!(deliveries_of(&h, w), [ds[1]], "retrying work is never pruned");
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts", &[]), 1);
    assert_eq!(h.texts("SELECT id FROM events", &[]), ["waiting"]);
}

/// A delivery whose first answer is late: engine A claimed and sent it, its
/// answer was slow and the lease ended, engine B claimed it again. Answers
/// the delivery and A's (failed) answer, not yet recorded.
fn overtaken(h: &TestHost) -> (i64, Finished) {
    let w = hook(h, "https://example.com/a", &["user.created"]);
    raise(h, "e1", "user.created");
    let d = deliveries_of(h, w)[0];
    claim(h, 1);
    let slow = failed(h, d, "timed out waiting for the response");
    h.advance(60 * S);
    assert_eq!(claim(h, 1).claimed, [d]);
    (d, slow)
}

#[test]
fn a_late_answer_does_not_undo_a_success() {
    let h = TestHost::new();
    let (d, slow) = overtaken(&h);
    // B records a success.
    record(&h, vec![status(&h, d, 200)]);
    assert_eq!(delivery(&h, d).0, "succeeded");
    // A's answer comes last.
    record(&h, vec![slow]);
    assert_eq!(delivery(&h, d).0, "succeeded", "the receiver has the message: it must not be sent again");
    h.advance(3_600 * S);
    assert!(claim(&h, 10).claimed.is_empty());
    // It is history all the same: its own attempt number, and the next one
    // (a resend) goes on from it.
    assert_eq!(h.ints("SELECT attempt_no FROM attempts ORDER BY id", &[]), [1, 2]);
    assert_eq!(delivery(&h, d).1, 2, "the late answer counts as an attempt");
}

/// Two answers for one delivery recorded in the same step (a late one and
/// the retry that overtook it) get attempt numbers of their own.
#[test]
fn two_answers_in_one_step_never_share_an_attempt_number() {
    let h = TestHost::new();
    let (d, slow) = overtaken(&h);
    let ok = status(&h, d, 200);
    record(&h, vec![ok, slow]);
    assert_eq!(h.ints("SELECT attempt_no FROM attempts ORDER BY attempt_no", &[]), [1, 2]);
    assert_eq!(delivery(&h, d).0, "succeeded");
    assert_eq!(delivery(&h, d).1, 2);
}
