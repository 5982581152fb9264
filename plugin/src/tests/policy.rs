//! The retry and disable policy as the pipeline applies it: schedules,
//! exhaustion, jitter, Retry-After, auto-disable.

use super::*;
use crate::outbox::policy::MAX_RETRY_AFTER_MS;
use crate::testhost::{T0, response};

const S: u64 = 1000;

fn webhook_row(h: &TestHost, id: i64) -> (bool, Option<String>, Option<i64>, Option<i64>) {
    let r = h
        .query("SELECT enabled, disabled_reason, failing_since, disabled_at FROM webhooks WHERE id = ?1", &[id.into()])
        .unwrap();
    let r = r.first().unwrap();
    (r.bool(0), r.opt_str(1), r.opt_i64(2), r.opt_i64(3))
}

/// Fails delivery `d` (due now) once with `code`, without jitter.
fn fail_once(h: &TestHost, d: i64, code: u16) {
    h.no_jitter_next();
    record(h, vec![status(h, d, code)]);
}

#[test]
fn every_failure_follows_the_schedule_until_exhausted() {
    let h = TestHost::new();
    h.settings_mut(|s| s.retry_schedule_ms = vec![0, 5 * S, 60 * S, 600 * S]);
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    assert_eq!(raise(&h, "e1", "user.created"), 1);
    let d = deliveries_of(&h, w)[0];
    assert_eq!(delivery(&h, d), ("pending".into(), 0, Some(T0 as i64), None));
    for (n, delay) in [(1, 5 * S), (2, 60 * S), (3, 600 * S)] {
        let r = claim(&h, 10);
        assert_eq!(r.claimed, [d], "due again after attempt {}", n - 1);
        fail_once(&h, d, 500);
        let at = h.now_ms() + delay;
        assert_eq!(delivery(&h, d), ("retrying".into(), n, Some(at as i64), None), "after attempt {n}");
        h.set_now(at - 1);
        assert!(claim(&h, 10).claimed.is_empty(), "not due before its time");
        h.set_now(at);
    }
    assert_eq!(claim(&h, 10).claimed, [d]);
    fail_once(&h, d, 500);
    assert_eq!(delivery(&h, d), ("exhausted".into(), 4, None, None), "four entries, four attempts");
    assert_eq!(h.recorded.get(), (0, 3, 1));
    h.advance(86_400 * S);
    let r = claim(&h, 10);
    assert!(r.claimed.is_empty() && r.next_due_ms.is_none(), "an exhausted delivery is never sent again");
    assert_eq!(h.int("SELECT COUNT(*) FROM attempts WHERE delivery_id = ?1", &[d.into()]), 4);
}

#[test]
fn a_one_entry_schedule_gives_one_attempt() {
    let h = TestHost::new();
    h.settings_mut(|s| s.retry_schedule_ms = vec![0]);
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    claim(&h, 1);
    record(&h, vec![failed(&h, d, "connection refused")]);
    assert_eq!(delivery(&h, d).0, "exhausted");
}

#[test]
fn the_first_entry_delays_the_first_attempt() {
    let h = TestHost::new();
    h.settings_mut(|s| s.retry_schedule_ms = vec![30 * S, 60 * S]);
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    assert_eq!(delivery(&h, d).2, Some((T0 + 30 * S) as i64));
    let r = claim(&h, 5);
    assert!(r.claimed.is_empty());
    assert_eq!(r.next_due_ms, Some(T0 + 30 * S), "the scheduler hears when to come back");
    h.advance(30 * S);
    assert_eq!(claim(&h, 5).claimed, [d]);
}

#[test]
fn jitter_stays_within_twenty_percent_either_way() {
    let h = TestHost::new();
    h.settings_mut(|s| s.retry_schedule_ms = vec![0, 10 * S, 10 * S]);
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    raise(&h, "e2", "user.created");
    let ids = deliveries_of(&h, w);
    claim(&h, 10);
    // Lowest jitter for the first attempt, highest for the second.
    h.script_random(vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    record(&h, vec![status(&h, ids[0], 503), status(&h, ids[1], 503)]);
    assert_eq!(delivery(&h, ids[0]).2, Some((T0 + 8 * S) as i64));
    assert_eq!(delivery(&h, ids[1]).2, Some((T0 + 12 * S) as i64));
    // Unscripted randomness stays in range too.
    h.set_now(T0 + 12 * S);
    claim(&h, 10);
    record(&h, vec![failed(&h, ids[0], "timeout"), failed(&h, ids[1], "timeout")]);
    for d in ids {
        let at = delivery(&h, d).2.unwrap() as u64 - h.now_ms();
        assert!((8 * S..=12 * S).contains(&at), "{at}");
    }
}

#[test]
fn success_ends_the_delivery_and_resets_the_streak() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    claim(&h, 1);
    fail_once(&h, d, 500);
    assert_eq!(webhook_row(&h, w).2, Some(T0 as i64), "failing since the first failure");
    h.advance(5 * S);
    claim(&h, 1);
    record(&h, vec![status(&h, d, 204)]);
    assert_eq!(delivery(&h, d), ("succeeded".into(), 2, None, None));
    assert_eq!(webhook_row(&h, w), (true, None, None, None));
    assert_eq!(h.recorded.get(), (1, 1, 0));
}

#[test]
fn redirects_are_failures_and_say_so() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    claim(&h, 1);
    record(&h, vec![answered(&h, d, response(301, &[("location", "https://elsewhere.example/")], b""))]);
    assert_eq!(delivery(&h, d).0, "retrying");
    let err = h.texts("SELECT error FROM attempts WHERE delivery_id = ?1", &[d.into()]);
    assert_eq!(err, ["HTTP 301: redirects are not followed"]);
    assert_eq!(h.texts("SELECT last_error FROM deliveries WHERE id = ?1", &[d.into()]), err);
}

#[test]
fn gone_exhausts_the_delivery_and_disables_the_webhook() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    let other = hook(&h, "https://example.com/b", &["user.created"]);
    raise(&h, "e1", "user.created");
    raise(&h, "e2", "user.created");
    let ds = deliveries_of(&h, w);
    claim(&h, 10);
    record(&h, vec![status(&h, ds[0], 410)]);
    assert_eq!(delivery(&h, ds[0]).0, "exhausted");
    let (enabled, reason, _, disabled_at) = webhook_row(&h, w);
    assert!(!enabled);
    assert!(reason.unwrap().contains("410"));
    assert_eq!(disabled_at, Some(T0 as i64));
    assert!(webhook_row(&h, other).0, "only the webhook that answered 410");
    assert_eq!(h.problems().len(), 1, "one warning: {:?}", h.problems());
    assert!(h.problems()[0].contains(&format!("webhook {w} disabled")));
    // Its remaining delivery stays queued but is not claimed while disabled.
    h.advance(60 * S + 1);
    let r = claim(&h, 10);
    assert!(!r.claimed.iter().any(|id| ds.contains(id)));
    assert_eq!(delivery(&h, ds[1]).0, "pending");
}

#[test]
fn failing_for_the_whole_window_disables_the_webhook() {
    let h = TestHost::new();
    h.settings_mut(|s| {
        s.retry_schedule_ms = vec![0; 100];
        s.auto_disable_after_ms = 3_600 * S;
    });
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    for _ in 0..3 {
        claim(&h, 1);
        record(&h, vec![status(&h, d, 500)]);
        assert!(webhook_row(&h, w).0, "still enabled within the window");
        h.advance(1_000 * S);
    }
    // 3000 s after the first failure: not yet.
    h.set_now(T0 + 3_600 * S - 1);
    claim(&h, 1);
    record(&h, vec![status(&h, d, 500)]);
    assert!(webhook_row(&h, w).0);
    h.set_now(T0 + 3_600 * S);
    claim(&h, 1);
    record(&h, vec![failed(&h, d, "connection refused")]);
    let (enabled, reason, failing_since, _) = webhook_row(&h, w);
    assert!(!enabled);
    assert_eq!(failing_since, Some(T0 as i64));
    let reason = reason.unwrap();
    assert!(reason.starts_with("Every delivery failed for 60 min"), "{reason}");
    assert!(reason.contains("2023-11-14T22:13:20.000Z"), "{reason}");
}

#[test]
fn a_success_in_between_restarts_the_window() {
    let h = TestHost::new();
    h.settings_mut(|s| {
        s.retry_schedule_ms = vec![0; 100];
        s.auto_disable_after_ms = 100 * S;
    });
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    raise(&h, "e2", "user.created");
    let ds = deliveries_of(&h, w);
    claim(&h, 10);
    record(&h, vec![status(&h, ds[0], 500)]);
    h.advance(90 * S);
    claim(&h, 10);
    record(&h, vec![status(&h, ds[1], 200)]);
    assert_eq!(webhook_row(&h, w).2, None);
    h.advance(20 * S);
    claim(&h, 10);
    record(&h, vec![status(&h, ds[0], 500)]);
    assert_eq!(webhook_row(&h, w).2, Some((T0 + 110 * S) as i64), "a new streak");
    assert!(webhook_row(&h, w).0, "110 s of failures, but not without a success");
}

#[test]
fn a_batch_keeps_the_order_attempts_started_in() {
    // Given out of order, a success that started after a failure leaves the
    // webhook healthy; a failure after a success starts a streak at its start.
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    raise(&h, "e2", "user.created");
    let ds = deliveries_of(&h, w);
    claim(&h, 10);
    let mut late_ok = status(&h, ds[1], 200);
    late_ok.started_ms += 10;
    let early_fail = status(&h, ds[0], 500);
    record(&h, vec![late_ok, early_fail]);
    let r = h.row("SELECT last_status, last_ok, failing_since FROM webhooks WHERE id = ?1", &[w.into()]);
    assert_eq!(r, [200i64.into(), 1i64.into(), crate::host::Value::Null]);

    h.advance(5 * S);
    claim(&h, 10);
    let mut late_fail = status(&h, ds[0], 502);
    late_fail.started_ms += 10;
    record(&h, vec![late_fail]);
    assert_eq!(webhook_row(&h, w).2, Some((h.now_ms() + 10) as i64));
}

#[test]
fn a_disabled_webhook_re_enabled_starts_a_new_streak() {
    let h = TestHost::new();
    h.settings_mut(|s| s.auto_disable_after_ms = 0);
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    claim(&h, 1);
    record(&h, vec![status(&h, d, 500)]);
    assert!(!webhook_row(&h, w).0, "a zero window disables at the first failure");
    assert_eq!(store::toggle(&h, w).unwrap(), Some(true));
    assert_eq!(webhook_row(&h, w), (true, None, None, None));
}

#[test]
fn retry_after_in_seconds_lengthens_the_delay() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    claim(&h, 1);
    h.no_jitter_next();
    record(&h, vec![answered(&h, d, response(429, &[("Retry-After", "120")], b""))]);
    assert_eq!(delivery(&h, d).2, Some((T0 + 120 * S) as i64), "120 s rather than the schedule's 5 s");
}

#[test]
fn retry_after_never_shortens_the_schedule() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    claim(&h, 1);
    h.no_jitter_next();
    record(&h, vec![answered(&h, d, response(503, &[("retry-after", "1")], b""))]);
    assert_eq!(delivery(&h, d).2, Some((T0 + 5 * S) as i64));
}

#[test]
fn retry_after_as_an_http_date() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    claim(&h, 1);
    // T0 is Tue, 14 Nov 2023 22:13:20 GMT.
    h.no_jitter_next();
    record(&h, vec![answered(&h, d, response(503, &[("Retry-After", "Tue, 14 Nov 2023 22:23:20 GMT")], b""))]);
    assert_eq!(delivery(&h, d).2, Some((T0 + 600 * S) as i64));
}

#[test]
fn retry_after_is_capped_and_ignored_on_other_statuses() {
    let h = TestHost::new();
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    raise(&h, "e2", "user.created");
    let ds = deliveries_of(&h, w);
    claim(&h, 10);
    h.no_jitter_next();
    record(
        &h,
        vec![
            answered(&h, ds[0], response(429, &[("Retry-After", "99999999")], b"")),
            answered(&h, ds[1], response(500, &[("Retry-After", "3600")], b"")),
        ],
    );
    assert_eq!(delivery(&h, ds[0]).2, Some((T0 + MAX_RETRY_AFTER_MS) as i64));
    assert_eq!(delivery(&h, ds[1]).2, Some((T0 + 5 * S) as i64), "Retry-After counts on 429 and 503 only");
}

#[test]
fn retry_after_does_not_outlive_the_schedule() {
    let h = TestHost::new();
    h.settings_mut(|s| s.retry_schedule_ms = vec![0]);
    let w = hook(&h, "https://example.com/a", &["user.created"]);
    raise(&h, "e1", "user.created");
    let d = deliveries_of(&h, w)[0];
    claim(&h, 1);
    record(&h, vec![answered(&h, d, response(429, &[("Retry-After", "5")], b""))]);
    assert_eq!(delivery(&h, d).0, "exhausted");
}
