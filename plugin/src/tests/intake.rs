//! Raising events: `raise_batch` (all or nothing) and `raise_each` (each
//! answered), as `events.raise`, `raise-batch` and `raise-each` call them.

use super::*;
use crate::catalog;
use crate::outbox::{MAX_TIME_MS, RaiseError, Raised, policy};
use crate::testhost::T0;

fn raised(id: &str, queued: u32) -> Raised {
    Raised { event_id: id.to_owned(), queued }
}

fn count(h: &TestHost, table: &str) -> i64 {
    h.int(&format!("SELECT COUNT(*) FROM {table}"), &[])
}

#[test]
fn one_delivery_per_enabled_subscriber() {
    let h = TestHost::new();
    let a = hook(&h, "https://a.example/", &["user.created", "user.deleted"]);
    let b = hook(&h, "https://b.example/", &["user.created"]);
    let off = hook(&h, "https://off.example/", &["user.created"]);
    hook(&h, "https://other.example/", &["ticket.created"]);
    store::toggle(&h, off).unwrap();
    let out =
        outbox::raise_batch(&h, &[ev("e1", "user.created"), ev("e2", "user.deleted"), ev("e3", "server.created")])
            .unwrap();
    assert_eq!(out, [raised("e1", 2), raised("e2", 1), raised("e3", 0)]);
    let rows = h.query("SELECT event_id, webhook_id FROM deliveries ORDER BY event_id, webhook_id", &[]).unwrap();
    let pairs: Vec<(String, i64)> = rows.iter().map(|r| (r.str(0), r.i64(1))).collect();
    assert_eq!(pairs, [("e1".into(), a), ("e1".into(), b), ("e2".into(), a)]);
    assert_eq!(count(&h, "events"), 3, "an event without subscribers is still stored");
    assert!(!h.in_transaction());
}

#[test]
fn a_delivery_row_is_pending_due_with_a_stable_message_id() {
    let h = TestHost::new();
    h.settings_mut(|s| s.retry_schedule_ms = vec![2_000, 5_000]);
    let w = hook(&h, "https://a.example/", &["user.created"]);
    raise(&h, "evt_9", "user.created");
    let created_at = h.int("SELECT created_at FROM webhooks WHERE id = ?1", &[w.into()]);
    let r = h.row("SELECT msg_id, state, attempts, next_attempt_at, lease_until, created_at FROM deliveries", &[]);
    assert_eq!(
        r,
        [
            outbox::msg_id("evt_9", w, created_at).into(),
            "pending".into(),
            0i64.into(),
            (policy::first_due(&[2_000], T0) as i64).into(),
            crate::host::Value::Null,
            (T0 as i64).into(),
        ]
    );
}

#[test]
fn the_data_is_stored_as_the_panel_sent_it() {
    let h = TestHost::new();
    let mut e = ev("e1", "user.created");
    e.data_json = "\n  {\"b\": 2, \"id\": 1,  \"email\": \"a@example.com\",   \"a\": 1.50}  \n".into();
    e.occurred_at_ms = 1_234;
    outbox::raise_batch(&h, &[e]).unwrap();
    let r = h.row("SELECT type, occurred_at, data, raised_at FROM events WHERE id = 'e1'", &[]);
    assert_eq!(
        r,
        [
            "user.created".into(),
            1_234i64.into(),
            "{\"b\": 2, \"id\": 1,  \"email\": \"a@example.com\",   \"a\": 1.50}".into(),
            (T0 as i64).into()
        ]
    );
}

#[test]
fn a_batch_is_all_or_nothing() {
    let h = TestHost::new();
    hook(&h, "https://a.example/", &["user.created"]);
    let mut bad = ev("e2", "user.created");
    bad.data_json = "[1,2]".into();
    let r = outbox::raise_batch(&h, &[ev("e1", "user.created"), bad, ev("e3", "user.created")]);
    assert!(matches!(r, Err(RaiseError::InvalidData { .. })), "{r:?}");
    assert_eq!((count(&h, "events"), count(&h, "deliveries")), (0, 0));
    let r = outbox::raise_batch(&h, &[ev("e1", "user.created"), ev("e2", "user.nope")]);
    assert!(matches!(r, Err(RaiseError::UnknownType(ref m)) if m.contains("user.nope")), "{r:?}");
    assert_eq!(count(&h, "events"), 0);
}

#[test]
fn an_empty_batch_answers_nothing() {
    let h = TestHost::new();
    assert_eq!(outbox::raise_batch(&h, &[]).unwrap(), []);
    assert!(outbox::raise_each(&h, &[]).is_empty());
}

#[test]
fn the_same_event_again_queues_nothing() {
    let h = TestHost::new();
    hook(&h, "https://a.example/", &["user.created"]);
    assert_eq!(raise(&h, "e1", "user.created"), 1);
    h.advance(1_000);
    assert_eq!(outbox::raise_batch(&h, &[ev("e1", "user.created")]).unwrap(), [raised("e1", 0)]);
    assert_eq!(count(&h, "deliveries"), 1);
    assert_eq!(h.int("SELECT raised_at FROM events", &[]), T0 as i64, "the first raise stands");
}

#[test]
fn the_same_event_twice_in_one_batch_is_queued_once() {
    let h = TestHost::new();
    hook(&h, "https://a.example/", &["user.created"]);
    let out = outbox::raise_batch(&h, &[ev("e1", "user.created"), ev("e1", "user.created")]).unwrap();
    assert_eq!(out, [raised("e1", 1), raised("e1", 0)]);
    assert_eq!(count(&h, "deliveries"), 1);
}

#[test]
fn a_reused_id_with_other_data_or_type_conflicts() {
    let h = TestHost::new();
    hook(&h, "https://a.example/", &["user.created", "user.deleted"]);
    raise(&h, "e1", "user.created");
    let mut other_data = ev("e1", "user.created");
    other_data.data_json = data("user.created", 2);
    let r = outbox::raise_batch(&h, &[other_data.clone()]);
    assert!(matches!(r, Err(RaiseError::Conflict(ref m)) if m.contains("\"e1\"")), "{r:?}");
    let r = outbox::raise_batch(&h, &[ev("e1", "user.deleted")]);
    assert!(matches!(r, Err(RaiseError::Conflict(_))), "{r:?}");
    assert_eq!(h.texts("SELECT data FROM events", &[]), [data("user.created", 1)], "nothing was overwritten");
    // In a batch the conflict refuses the others too.
    let r = outbox::raise_batch(&h, &[ev("e2", "user.created"), other_data]);
    assert!(matches!(r, Err(RaiseError::Conflict(_))));
    assert_eq!((count(&h, "events"), count(&h, "deliveries")), (1, 1), "e2 rolled back");
}

#[test]
fn test_webhook_and_unknown_types_are_refused() {
    let h = TestHost::new();
    hook(&h, "https://a.example/", &["user.created"]);
    let r = outbox::raise_batch(&h, &[ev("t1", catalog::TEST_EVENT)]);
    assert!(matches!(r, Err(RaiseError::UnknownType(ref m)) if m.contains("Send test")), "{r:?}");
    let r = outbox::raise_batch(&h, &[ev("t2", "")]);
    assert!(matches!(r, Err(RaiseError::UnknownType(_))));
    assert_eq!(count(&h, "events"), 0);
}

#[test]
fn ids_and_times_are_checked() {
    let h = TestHost::new();
    for id in ["", "has space", "semi;colon", &"x".repeat(129)] {
        let r = outbox::raise_batch(&h, &[ev(id, "user.created")]);
        assert!(matches!(r, Err(RaiseError::InvalidData { .. })), "{id:?}: {r:?}");
    }
    let longest = "a".repeat(128);
    assert!(outbox::raise_batch(&h, &[ev(&longest, "user.created")]).is_ok());
    assert!(outbox::raise_batch(&h, &[ev("ok_-.:1", "user.created")]).is_ok());
    let mut late = ev("late", "user.created");
    late.occurred_at_ms = MAX_TIME_MS + 1;
    let r = outbox::raise_batch(&h, &[late.clone()]);
    assert!(matches!(r, Err(RaiseError::InvalidData { message: ref m, .. }) if m.contains("microseconds")), "{r:?}");
    late.occurred_at_ms = MAX_TIME_MS;
    assert!(outbox::raise_batch(&h, &[late]).is_ok(), "the last instant is fine");
}

#[test]
fn data_is_limited_in_size() {
    let h = TestHost::new();
    let mut e = ev("big", "user.created");
    let filler = "x".repeat(outbox::MAX_DATA);
    e.data_json = format!("{{\"a\":\"{filler}\"}}");
    assert!(
        matches!(outbox::raise_batch(&h, &[e]), Err(RaiseError::InvalidData { message: ref m, .. }) if m.contains("larger"))
    );
}

#[test]
fn raise_each_answers_every_event_on_its_own() {
    let h = TestHost::new();
    hook(&h, "https://a.example/", &["user.created"]);
    raise(&h, "dup", "user.created");
    let mut conflicting = ev("dup", "user.created");
    conflicting.data_json = data("user.created", 3);
    let mut bad = ev("bad", "user.created");
    bad.data_json = "not json".into();
    let out = outbox::raise_each(
        &h,
        &[ev("e1", "user.created"), bad, ev("dup", "user.created"), conflicting, ev("t", catalog::TEST_EVENT)],
    );
    assert_eq!(out.len(), 5);
    assert_eq!(out[0], Ok(raised("e1", 1)));
    assert!(matches!(out[1], Err(RaiseError::InvalidData { .. })));
    assert_eq!(out[2], Ok(raised("dup", 0)));
    assert!(matches!(out[3], Err(RaiseError::Conflict(_))));
    assert!(matches!(out[4], Err(RaiseError::UnknownType(_))));
    assert_eq!(h.texts("SELECT id FROM events ORDER BY id", &[]), ["dup", "e1"], "the valid ones are stored");
    assert_eq!(count(&h, "deliveries"), 2);
    assert!(!h.in_transaction());
}

#[test]
fn raise_each_fails_every_valid_event_when_storage_fails() {
    let h = TestHost::new();
    hook(&h, "https://a.example/", &["user.created"]);
    h.execute_batch("DROP TABLE attempts; DROP TABLE deliveries").unwrap();
    let out = outbox::raise_each(&h, &[ev("e1", "user.created"), ev("e2", "user.nope")]);
    assert!(matches!(out[0], Err(RaiseError::Storage(_))), "{:?}", out[0]);
    assert!(matches!(out[1], Err(RaiseError::UnknownType(_))), "its own refusal, not the storage error");
    assert_eq!(count(&h, "events"), 0, "rolled back");
    assert!(!h.in_transaction());
}
