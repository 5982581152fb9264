//! The rate limit per webhook (#24 part 2) in the real host with a real
//! receiver on 127.0.0.1, on the engine `WEBHOOKS_TEST_ENGINE` names: a
//! webhook limited to 50/s under a backlog of 2,000 receives 50 ± 5 a second
//! over 10 s and, in the end, every delivery once; a webhook without a limit
//! beside it is not slowed; the dashboard and the API say it is held back.
//! (Across a restart: `tests/library.rs`; across nodes: `tests/postgres.rs`.)

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn events(event_type: &str, prefix: &str, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| json!({"type": event_type, "id": format!("{prefix}-{i}"), "data": {"id": i + 1, "email": "ada@example.com"}}))
        .collect()
}

#[test]
fn a_webhook_limited_to_50_a_second_gets_50_a_second_over_10_s_loses_nothing_and_slows_no_other() {
    let h = host();
    let r = Receiver::start();
    let (limited_path, free_path) = ("/ok/limited", "/ok/free");
    let (s, limited) = api(
        &h,
        "POST",
        "/api/webhooks",
        Some(json!({"name": "Limited", "url": r.url(limited_path), "events": ["user.created"], "rate_limit": 50})),
    );
    assert_eq!((s, limited["rate_limit"].as_i64()), (201, Some(50)), "{limited}");
    let (s, free) = api(
        &h,
        "POST",
        "/api/webhooks",
        Some(json!({"name": "Free", "url": r.url(free_path), "events": ["user.deleted"]})),
    );
    assert_eq!((s, &free["rate_limit"]), (201, &serde_json::Value::Null), "{free}");
    let (limited, free) = (limited["id"].as_i64().unwrap(), free["id"].as_i64().unwrap());

    // A backlog of 2,000, raised in two batches.
    for batch in events("user.created", "rl", 2000).chunks(1000) {
        assert_eq!(h.raise_batch(batch).0, 202);
    }
    let first = r.wait_for(limited_path, 1, Duration::from_secs(20))[0].at;

    // Past the first burst, a second webhook's 1,000 deliveries are raised:
    // without a limit they are not held to the other's pace (at 50/s they
    // would take 20 s).
    std::thread::sleep(Duration::from_secs(1));
    let raised_free = Instant::now();
    assert_eq!(h.raise_batch(&events("user.deleted", "free", 1000)).0, 202);

    // Meanwhile the dashboard and the API say the limited one is held back.
    std::thread::sleep(Duration::from_millis(500));
    let (_, w) = api(&h, "GET", &format!("/api/webhooks/{limited}"), None);
    assert_eq!((w["rate_limited"].as_bool(), w["rate_limited_at"].is_string()), (Some(true), true), "{w}");
    let (_, page) = h.admin().get(MOUNT);
    let row = |id: i64| {
        let start = page.find(&format!("data-webhook-id=\"{id}\"")).expect("a row per webhook");
        let end = page[start..].find("</tr>").unwrap() + start;
        page[start..end].to_owned()
    };
    assert!(row(limited).contains("data-held-back") && row(limited).contains("Limit: 50/s"), "{}", row(limited));
    assert!(!row(free).contains("data-held-back") && !row(free).contains("Limit:"));

    let free_seen = r.wait_for(free_path, 1000, Duration::from_secs(15));
    let free_took = free_seen.iter().map(|s| s.at).max().unwrap() - raised_free;

    // Ten seconds, from a second after the first delivery (past the burst).
    let from = first + Duration::from_secs(1);
    let to = from + Duration::from_secs(10);
    while Instant::now() < to + Duration::from_millis(200) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let in_window = r.seen_at(limited_path).iter().filter(|s| s.at >= from && s.at < to).count();
    let (_, w) = api(&h, "GET", &format!("/api/webhooks/{free}"), None);
    assert_eq!(w["rate_limited"], false, "{w}");
    eprintln!(
        "rate limit 50/s: {in_window} deliveries in 10 s ({:.1}/s); the unlimited webhook's 1,000 took {free_took:?}",
        in_window as f64 / 10.0
    );
    assert!((450..=550).contains(&in_window), "{in_window} deliveries in 10 s: not 50 ± 5 a second");
    assert!(free_took < Duration::from_secs(10), "the unlimited webhook was slowed: {free_took:?}");

    // In the end every delivery arrives, once; none failed, none dropped.
    let seen = r.wait_for(limited_path, 2000, Duration::from_secs(60));
    let ids: BTreeSet<String> = seen.iter().map(|s| s.header("webhook-id")).collect();
    assert_eq!(ids.len(), 2000, "every delivery, once");
    eventually(Duration::from_secs(20), "every delivery recorded as succeeded", || {
        h.count(&format!("SELECT COUNT(*) FROM deliveries WHERE webhook_id = {limited} AND state = 'succeeded'"))
            == 2000
    });
    assert_eq!(
        h.count(&format!("SELECT COUNT(*) FROM attempts WHERE webhook_id = {limited}")),
        2000,
        "no failed attempt"
    );
    let overall = seen.iter().map(|s| s.at).max().unwrap() - first;
    eprintln!("all 2,000 arrived {overall:?} after the first");
    // 2,000 at 50/s: at least 39.8 s after the first (the burst of 10 aside).
    assert!(overall >= Duration::from_millis(39_000), "{overall:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.seen_at(limited_path).len(), 2000, "nothing sent twice");
}
