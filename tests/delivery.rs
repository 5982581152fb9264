//! Delivery semantics against a real receiver: failures, 410, Retry-After,
//! timeouts, a dead endpoint beside a healthy one, manual recovery,
//! auto-disable, graceful shutdown. The real binary, component and SQLite file.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(20);

fn id_of(h: &Host, name: &str) -> i64 {
    h.int("SELECT id FROM webhooks WHERE name = ?1", &[name.into()])
}

/// attempted_at, duration_ms, response_status, error, success
type AttemptRow = (i64, i64, Option<i64>, Option<String>, bool);

fn attempts(h: &Host) -> Vec<AttemptRow> {
    h.rows("SELECT attempted_at, duration_ms, response_status, error, success FROM attempts ORDER BY id", &[])
        .into_iter()
        .map(|r| (r[0].int(), r[1].int(), r[2].opt_int(), r[3].opt_text(), r[4].int() == 1))
        .collect()
}

#[test]
fn gone_410_disables_the_webhook_with_a_reason() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();
    a.create("Gone", &r.url("/status/410/g"), "", &["user.created"], true);
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    r.wait_for("/status/410/g", 1, WAIT);
    eventually(WAIT, "webhook disabled", || h.count("SELECT COUNT(*) FROM webhooks WHERE enabled = 0") == 1);
    assert_eq!(h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'exhausted'"), 1);
    let (_, page) = a.get(MOUNT);
    assert!(page.contains("410 Gone"), "dashboard shows why");
    // Disabled: a new event queues nothing for it.
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(r.seen_at("/status/410/g").len(), 1);
}

#[test]
fn redirects_are_failures_and_never_followed() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();
    a.create("Redirect", &r.url("/status/302/x"), "", &["user.created"], true);
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    r.wait_for("/status/302/x", 1, WAIT);
    eventually(WAIT, "attempt recorded", || h.count("SELECT COUNT(*) FROM attempts") >= 1);
    let at = attempts(&h);
    assert_eq!(at[0].2, Some(302));
    assert!(!at[0].4);
    assert!(at[0].3.as_deref().unwrap_or("").contains("redirects are not followed"));
}

#[test]
fn retry_after_on_429_is_honoured() {
    let h = host();
    let r = Receiver::start();
    h.admin().create("Busy", &r.url("/retry-after/2/x"), "", &["user.created"], true);
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    r.wait_for("/retry-after/2/x", 2, WAIT);
    eventually(WAIT, "two attempts", || h.count("SELECT COUNT(*) FROM attempts") == 2);
    let at = attempts(&h);
    assert_eq!(at[0].2, Some(429));
    assert_eq!(at[1].2, Some(200));
    let gap = at[1].0 - at[0].0;
    // The schedule says 300 ms; the receiver asked for 2 s.
    assert!(gap >= 1900, "second attempt {gap} ms after the first");
}

#[test]
fn slow_and_silent_receivers_time_out_and_are_recorded() {
    let h = host_with(&[("WEBHOOKS_ATTEMPT_TIMEOUT", "1s"), ("WEBHOOKS_RETRY_SCHEDULE", "0s")]);
    let r = Receiver::start();
    let a = h.admin();
    a.create("Slow", &r.url("/slow/3000/x"), "", &["user.created"], true);
    a.create("Silent", &r.url("/hang/x"), "", &["user.created"], true);
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    eventually(WAIT, "both attempts recorded", || h.count("SELECT COUNT(*) FROM attempts") == 2);
    for (_, duration, status, error, ok) in attempts(&h) {
        assert!(!ok);
        assert_eq!(status, None);
        assert!(error.as_deref().unwrap_or("").contains("timed out"), "{error:?}");
        assert!((900..2500).contains(&duration), "took {duration} ms");
    }
    assert_eq!(h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'exhausted'"), 2);
}

#[test]
fn a_dead_endpoint_does_not_delay_a_healthy_one() {
    // The dead endpoint's attempts hang for 30 s: everything below happens
    // while they do, checked on the database (not on a wall-clock guess that
    // a loaded machine can miss).
    let h = host_with(&[("WEBHOOKS_ATTEMPT_TIMEOUT", "30s"), ("WEBHOOKS_PER_WEBHOOK_CONCURRENCY", "4")]);
    let r = Receiver::start();
    let a = h.admin();
    a.create("Dead", &r.url("/hang/dead"), "", &["user.created"], true);
    a.create("Healthy", &r.url("/ok/healthy"), "", &["user.created"], true);
    // The dead endpoint fills its slots first.
    for i in 0..10 {
        h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com", "i": i}}));
    }
    r.wait_for("/hang/dead", 4, WAIT);
    r.wait_for("/ok/healthy", 10, WAIT);
    // While the dead endpoint still hangs, new events reach the healthy one at once.
    let t = Instant::now();
    for i in 10..30 {
        h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com", "i": i}}));
    }
    r.wait_for("/ok/healthy", 30, WAIT);
    let took = t.elapsed();
    // Had they waited for a dead slot, they would have waited for its 30 s.
    assert!(took < Duration::from_secs(15), "healthy deliveries took {took:?} beside a dead endpoint");
    let dead = "SELECT COUNT(*) FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
                JOIN webhooks w ON w.id = d.webhook_id WHERE w.name = 'Dead'";
    assert_eq!(h.count(dead), 0, "all 30 healthy deliveries arrived while the dead endpoint's first four still hung");
    // The per-webhook bound held: at most 4 requests to the dead endpoint.
    assert!(r.seen_at("/hang/dead").len() <= 4, "{}", r.seen_at("/hang/dead").len());
    // Admin pages and event intake stay responsive too.
    let t = Instant::now();
    assert_eq!(a.get(MOUNT).0, 200);
    assert_eq!(
        h.raise(json!({"type": "ticket.created", "data": {"id": 1, "user_id": 2, "subject": "Hi", "status": "open"}}))
            .0,
        202
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(h.count(dead), 0, "the page and the raise answered while the dead endpoint still hung");
}

#[test]
fn a_slow_receiver_never_sees_more_than_the_per_webhook_bound_at_once() {
    // The engine leases twice the bound ahead (so recording never idles a
    // slot); the extra requests must wait in the host, not at the receiver.
    let h = host_with(&[("WEBHOOKS_PER_WEBHOOK_CONCURRENCY", "4")]);
    let r = Receiver::start();
    h.admin().create("Slow", &r.url("/slow/150/a"), "", &["user.created"], true);
    let batch: Vec<_> = (0..40)
        .map(|i| json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com", "i": i}}))
        .collect();
    assert_eq!(h.raise_batch(&batch).0, 202);
    let seen = r.wait_for("/slow/150/a", 40, WAIT);
    assert_eq!(seen.len(), 40);
    let most = r.most_at_once();
    assert!(most <= 4, "the receiver had {most} requests at once; the bound is 4");
    assert!(most >= 2, "deliveries to one webhook still run side by side (saw {most})");
    eventually(WAIT, "all recorded", || h.count("SELECT COUNT(*) FROM attempts WHERE success = 1") == 40);
}

#[test]
fn retry_failed_since_sends_exhausted_deliveries_again() {
    let h = host_with(&[("WEBHOOKS_RETRY_SCHEDULE", "0s")]);
    let r = Receiver::start();
    let a = h.admin();
    a.create("Down", &r.url("/status/500/a"), "", &["user.created"], true);
    let id = id_of(&h, "Down");
    for _ in 0..3 {
        h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    }
    eventually(WAIT, "all exhausted", || h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'exhausted'") == 3);
    let (_, hist) = a.get(&format!("{MOUNT}/{id}/history"));
    assert!(hist.contains("gave up after every retry") && hist.contains("Retry failed"));
    let first_ids: Vec<String> = r.seen_at("/status/500/a").iter().map(|s| s.header("webhook-id")).collect();

    // The endpoint is fixed; the admin retries everything from the last 24 hours.
    let url = r.url("/ok/a");
    a.post(
        &format!("{MOUNT}/{id}"),
        &[("name", "Down"), ("url", &url), ("secret_action", "keep"), ("events", "user.created"), ("enabled", "on")],
    );
    let (s, loc, _) = a.post(&format!("{MOUNT}/{id}/retry-failed"), &[("since", "24h")]);
    assert_eq!(s, 303);
    let (_, page) = a.get(&loc);
    assert!(page.contains("3 failed deliveries will be sent again now"));
    let again = r.wait_for("/ok/a", 3, WAIT);
    let mut ids: Vec<String> = again.iter().map(|s| s.header("webhook-id")).collect();
    let mut first = first_ids.clone();
    ids.sort();
    first.sort();
    assert_eq!(ids, first, "same webhook-ids as the failed attempts");
    eventually(WAIT, "succeeded", || h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'succeeded'") == 3);
}

#[test]
fn failing_without_success_for_the_configured_time_disables_until_re_enabled() {
    let h = host_with(&[("WEBHOOKS_AUTO_DISABLE_AFTER", "1s"), ("WEBHOOKS_RETRY_SCHEDULE", "0s,600ms,600ms,600ms")]);
    let r = Receiver::start();
    let a = h.admin();
    a.create("Broken", &r.url("/status/503/b"), "", &["user.created"], true);
    let id = id_of(&h, "Broken");
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    eventually(WAIT, "auto-disabled", || h.count("SELECT COUNT(*) FROM webhooks WHERE enabled = 0") == 1);
    let reason = h.text("SELECT disabled_reason FROM webhooks", &[]);
    assert!(reason.contains("failed for"), "{reason}");
    let (_, page) = a.get(MOUNT);
    assert!(page.contains("without a success"));
    // While disabled, the pending retry waits.
    let n = r.seen_at("/status/503/b").len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.seen_at("/status/503/b").len(), n, "no attempts while disabled");
    // Re-enabling resumes, with a fresh failure streak.
    let url = r.url("/ok/b");
    a.post(
        &format!("{MOUNT}/{id}"),
        &[("name", "Broken"), ("url", &url), ("secret_action", "keep"), ("events", "user.created"), ("enabled", "on")],
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks WHERE enabled = 1 AND failing_since IS NULL"), 1);
    r.wait_for("/ok/b", 1, WAIT);
}

#[cfg(unix)]
#[test]
fn sigterm_lets_attempts_in_flight_finish() {
    let mut h = host_with(&[("WEBHOOKS_RETRY_SCHEDULE", "0s")]);
    let r = Receiver::start();
    h.admin().create("Slowish", &r.url("/slow/1500/s"), "", &["user.created"], true);
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    r.wait_for("/slow/1500/s", 1, WAIT);
    let t = Instant::now();
    let pid = h.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = h.child.wait().unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    // The attempt in flight finished and was recorded before exit.
    assert_eq!(h.count("SELECT COUNT(*) FROM attempts WHERE success = 1"), 1);
}

/// SIGTERM while requests wait for a per-webhook slot: those were claimed
/// but never started, so the stopping node hands them back (their leases
/// end) instead of sending them or leaving them leased; started again, it
/// sends them at once, not when the (60 s) lease would have ended.
#[cfg(unix)]
#[test]
fn sigterm_hands_back_what_was_claimed_but_not_started_and_a_restart_sends_it_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Two on the wire; the plugin leases twice that, so two more wait for a slot.
    let env = [("WEBHOOKS_LEASE", "60s"), ("WEBHOOKS_PER_WEBHOOK_CONCURRENCY", "2")];
    let mut h = spawn_host(&data, &env);
    let r = Receiver::start();
    let path = "/slow/1500/drain";
    h.admin().create("Slow", &r.url(path), "", &["user.created"], true);
    let events: Vec<_> = (0..10)
        .map(|i| json!({"type": "user.created", "id": format!("evt-drain-{i}"), "data": {"id": i + 1, "email": "ada@example.com"}}))
        .collect();
    assert_eq!(h.raise_batch(&events).0, 202);
    // The first two are on the wire; their answers are 1.5 s away, so
    // nothing else starts before the signal.
    let on_the_wire = r.wait_for(path, 2, WAIT);
    let t = Instant::now();
    let pid = h.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = h.child.wait().unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "exited within its grace period: {:?}", t.elapsed());
    assert_eq!(r.seen().len(), 2, "nothing started after the signal");
    // The two on the wire were recorded as answered; nothing is left leased.
    assert_eq!(h.count("SELECT COUNT(*) FROM attempts WHERE success = 1 AND response_status = 200"), 2);
    assert_eq!(h.count("SELECT COUNT(*) FROM attempts"), 2);
    assert_eq!(h.count("SELECT COUNT(*) FROM deliveries WHERE lease_until IS NOT NULL"), 0);
    assert_eq!(h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'pending' AND attempts = 0"), 8);

    // Started again on the same folder: the other eight go now, each once.
    // Within 40 s: before the 60 s lease taken before the stop would end.
    let again = spawn_host(&data, &env);
    let seen = r.wait_for(path, 10, Duration::from_secs(40));
    let ids: std::collections::BTreeSet<String> = seen.iter().map(|s| s.header("webhook-id")).collect();
    assert_eq!(ids.len(), 10, "every delivery once");
    for first in &on_the_wire {
        assert_eq!(seen.iter().filter(|s| s.header("webhook-id") == first.header("webhook-id")).count(), 1);
    }
    eventually(WAIT, "every delivery recorded", || {
        again.count("SELECT COUNT(*) FROM deliveries WHERE state = 'succeeded' AND attempts = 1") == 10
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.seen().len(), 10, "nothing sent twice");
}

/// The latest time RFC 3339 can write: 9999-12-31T23:59:59.999Z.
const LAST_MS: u64 = 253_402_300_799_999;

#[test]
fn an_event_time_past_the_year_9999_is_refused_at_the_door() {
    let h = host();
    let r = Receiver::start();
    h.admin().create("A", &r.url("/ok/a"), "", &["user.created"], true);
    // A panel sending microseconds instead of milliseconds.
    let (s, body) = h.raise(
        json!({"type": "user.created", "occurred_at_ms": LAST_MS + 1, "data": {"email": "ada@example.com", "id": 1}}),
    );
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["field"], "occurred_at_ms", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("microseconds"), "{body}");
    // In a batch beside 20 good events: nothing of it is stored.
    let mut batch: Vec<_> = (0..20)
        .map(|i| json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com", "i": i}}))
        .collect();
    batch.insert(7, json!({"type": "user.created", "occurred_at_ms": 1_795_857_243_000_000u64, "data": {"id": 1, "email": "ada@example.com"}}));
    let (s, body) = h.raise_batch(&batch);
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["field"], "events[7].occurred_at_ms", "{body}");
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 0);
    // The last representable instant is fine.
    assert_eq!(
        h.raise(
            json!({"type": "user.created", "occurred_at_ms": LAST_MS, "data": {"id": 1, "email": "ada@example.com"}})
        )
        .0,
        202
    );
    let got = r.wait_for("/ok/a", 1, WAIT);
    assert!(got[0].json()["timestamp"].as_str().unwrap().starts_with("9999-12-31T23:59:59.999"));
}

#[test]
fn a_poison_delivery_is_recorded_as_failed_and_the_others_go_on() {
    // The hooks component traps while building a request whose event data
    // asks for it; a row stored by an older version carries a time no
    // payload can hold. Neither may stop the deliveries beside them.
    let component = hooks_component();
    let h = host_with(&[("WEBHOOKS_COMPONENT", component.to_str().unwrap()), ("WEBHOOKS_RETRY_SCHEDULE", "0s")]);
    let r = Receiver::start();
    h.admin().create("A", &r.url("/ok/a"), "", &["user.created"], true);
    {
        let row = h.row("SELECT id, created_at FROM webhooks", &[]);
        let (webhook, created) = (row[0].int(), row[1].int());
        h.execute(
            "INSERT INTO events (id, type, occurred_at, data, raised_at) VALUES ('evt_old', 'user.created', ?1, '{}', 0)",
            &[((LAST_MS + 1) as i64).into()],
        );
        h.execute(
            "INSERT INTO deliveries (webhook_id, event_id, msg_id, state, attempts, next_attempt_at, created_at) \
             VALUES (?1, 'evt_old', 'msg_old', 'pending', 0, 0, ?2)",
            &[webhook.into(), created.into()],
        );
    }
    let mut batch: Vec<_> = (0..20)
        .map(|i| json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com", "i": i}}))
        .collect();
    batch.insert(10, json!({"type": "user.created", "id": "evt_trap", "data": {"id": 1, "email": "ada@example.com", "__hook": "trap-build"}}));
    assert_eq!(h.raise_batch(&batch).0, 202);
    let t = Instant::now();
    r.wait_for("/ok/a", 20, WAIT);
    assert!(t.elapsed() < Duration::from_secs(5), "the 20 good deliveries took {:?}", t.elapsed());
    // Both poison deliveries were attempted once, failed with a reason an
    // admin can read, and are exhausted (resendable), not retried forever.
    let failed = || {
        h.count(
            "SELECT COUNT(*) FROM deliveries d JOIN attempts a ON a.delivery_id = d.id \
             WHERE d.event_id IN ('evt_old', 'evt_trap') AND a.success = 0 AND d.state = 'exhausted'",
        )
    };
    eventually(WAIT, "both poison deliveries recorded as failed", || failed() == 2);
    let errors: Vec<String> = h
        .rows("SELECT a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE a.success = 0 ORDER BY d.event_id", &[])
        .iter()
        .map(|r| r[0].text())
        .collect();
    assert!(errors[0].contains("past the year 9999"), "{errors:?}");
    assert!(errors[1].contains("failed while building"), "{errors:?}");
    for e in &errors {
        assert!(!e.contains("backtrace") && !e.contains("panicked") && !e.contains("wasm"), "{e}");
    }
    assert_eq!(r.count_at("/ok/a"), 20, "no poison request was sent");
    assert!(h.log().contains("failed building this delivery"), "the detail is in the log");
}

/// #15: a delivery whose build traps again on its retry is quarantined:
/// ended after two attempts instead of retried on the whole schedule,
/// visible in the history with an error id the log explains, and
/// resendable.
#[test]
fn a_delivery_that_keeps_trapping_is_quarantined() {
    let component = hooks_component();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let schedule = ("WEBHOOKS_RETRY_SCHEDULE", "0s,200ms,200ms,200ms,200ms,200ms");
    let h = spawn_host(&data, &[("WEBHOOKS_COMPONENT", component.to_str().unwrap()), schedule]);
    let r = Receiver::start();
    h.admin().create("A", &r.url("/ok/a"), "", &["user.created"], true);
    let webhook = h.int("SELECT id FROM webhooks", &[]);
    let trap = json!({"type": "user.created", "id": "evt_trap", "data": {"id": 1, "email": "ada@example.com", "__hook": "trap-build"}});
    let good = json!({"type": "user.created", "id": "evt_good", "data": {"id": 2, "email": "bob@example.com"}});
    assert_eq!(h.raise_batch(&[trap, good]).0, 202);
    r.wait_for("/ok/a", 1, WAIT);
    let state = || -> (String, i64) {
        let r = h.row("SELECT state, attempts FROM deliveries WHERE event_id = 'evt_trap'", &[]);
        (r[0].text(), r[1].int())
    };
    eventually(WAIT, "the trapping delivery is ended", || state().0 == "exhausted");
    // Longer than the rest of the schedule: no third attempt comes.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state(), ("exhausted".to_owned(), 2), "quarantined after its second failed build");
    let errors: Vec<String> = h
        .rows(
            "SELECT a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.event_id = 'evt_trap' ORDER BY a.attempt_no",
            &[],
        )
        .iter()
        .map(|r| r[0].text())
        .collect();
    assert!(errors[0].contains("failed while building") && !errors[0].contains("quarantined"), "{errors:?}");
    assert!(errors[1].contains("quarantined") && errors[1].contains("Resend"), "{errors:?}");
    for e in &errors {
        let id = e.split("error ").nth(1).and_then(|s| s.get(..10)).unwrap_or_else(|| panic!("no error id in {e}"));
        assert!(id.starts_with("E-"), "{e}");
        assert!(h.log().contains(id), "the log explains {id}");
        assert!(!e.contains("backtrace") && !e.contains("wasm"), "{e}");
    }
    assert_eq!(r.count_at("/ok/a"), 1, "only the good one was sent");
    let delivery = h.int("SELECT id FROM deliveries WHERE event_id = 'evt_trap'", &[]);
    let resend = |h: &Host| {
        let r = h
            .api()
            .post(format!("{}/api/webhooks/{webhook}/deliveries/{delivery}/resend", h.base))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    // Resent before the cause is fixed, it traps again: an error id, no
    // backtrace, nothing else changed.
    let (status, body) = resend(&h);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("E-") && !body.contains("wasm") && !body.contains("backtrace"), "{body}");
    assert_eq!(state(), ("exhausted".to_owned(), 2));
    // The fix (here: the shipped component, which has no trap) deployed,
    // the same delivery is resent and arrives.
    drop(h);
    let h = spawn_host(&data, &[schedule]);
    let (status, body) = resend(&h);
    assert_eq!(status, 200, "{body}");
    r.wait_for("/ok/a", 2, WAIT);
    let state = h.text("SELECT state FROM deliveries WHERE id = ?1", &[delivery.into()]);
    assert_eq!(state, "succeeded");
}

/// CPU seconds a process has used (user + system), from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn a_host_whose_every_slot_hangs_waits_without_spinning() {
    // One unit of 64 slots, all taken by a receiver that never answers, and
    // more due behind them: the engine must sleep until a slot frees, not
    // wake again and again for the work it cannot take.
    let h = host_with(&[
        ("WEBHOOKS_WORKERS", "1"),
        ("WEBHOOKS_PER_WEBHOOK_CONCURRENCY", "64"),
        ("WEBHOOKS_ATTEMPT_TIMEOUT", "30s"),
    ]);
    let r = Receiver::start();
    h.admin().create("Dead", &r.url("/hang/dead"), "", &["user.created"], true);
    let batch: Vec<_> = (0..100)
        .map(|i| json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com", "i": i}}))
        .collect();
    assert_eq!(h.raise_batch(&batch).0, 202);
    r.wait_for("/hang/dead", 64, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let pid = h.child.id();
    // The quietest of three seconds: a loaded machine may leave the host
    // finishing what it claimed in the first; a spinning engine uses a whole
    // core in every one of them.
    let used: Vec<f64> = (0..3)
        .map(|_| {
            let before = cpu_seconds(pid);
            std::thread::sleep(Duration::from_secs(1));
            cpu_seconds(pid) - before
        })
        .collect();
    let quietest = used.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(quietest < 0.15, "the idle host used {used:.2?} s of CPU in each second while every slot hung");
    assert_eq!(r.count_at("/hang/dead"), 64, "no more than the slots were sent");
}

/// The kind of a transport failure reaches the component as wasi:http's own
/// error code, and the history says it in words with the host's detail
/// beside them: on the engine's path and on a test send's own `wasi:http`
/// request. (Before, every failure arrived as `internal-error(string)`.)
#[test]
fn transport_failures_are_told_by_kind_in_words() {
    let h = host_with(&[("WEBHOOKS_RETRY_SCHEDULE", "0s")]);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let a = h.admin();
    a.create("Closed", &format!("http://127.0.0.1:{closed}/x"), "", &["user.created"], true);
    a.create("Nowhere", "http://no-such-host.invalid/x", "", &["user.created"], true);
    // https to a server that speaks plain HTTP: the handshake fails.
    let plain = Receiver::start();
    let tls_url = plain.url("/x").replacen("http://", "https://", 1);
    a.create("Plain", &tls_url, "", &["user.created"], true);
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    eventually(WAIT, "every attempt recorded", || h.count("SELECT COUNT(*) FROM attempts") == 3);
    let error_of = |name: &str| -> String {
        h.text(
            "SELECT a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             JOIN webhooks w ON w.id = d.webhook_id WHERE w.name = ?1",
            &[name.into()],
        )
    };
    let closed_error = error_of("Closed");
    assert!(closed_error.starts_with("Not sent: the receiver refused the connection"), "{closed_error}");
    assert!(closed_error.contains(&format!("connecting to 127.0.0.1:{closed} failed")), "{closed_error}");
    let dns_error = error_of("Nowhere");
    assert!(dns_error.starts_with("Not sent: the host name could not be found (DNS)"), "{dns_error}");
    assert!(dns_error.contains("no-such-host.invalid"), "{dns_error}");
    let tls_error = error_of("Plain");
    assert!(tls_error.starts_with("Not sent: the TLS handshake with the receiver failed"), "{tls_error}");

    // A test send: the component's own wasi:http request gets the code.
    let id = h.int("SELECT id FROM webhooks WHERE name = 'Closed'", &[]);
    let r = h.api().post(format!("{}/api/webhooks/{id}/test", h.base)).bearer_auth(support::TOKEN).send().unwrap();
    let body = r.text().unwrap();
    assert!(body.contains("Not sent: the receiver refused the connection"), "{body}");
}
