//! The host never stalls while it delivers: `/healthz` and the admin dashboard
//! answer within 100 ms, every time, while bursts of thousands of events are
//! raised and delivered to a fast, a slow and a silent receiver. The real
//! binary, component and SQLite file; a real receiver on 127.0.0.1.
//!
//! Only responsiveness is timed. Arrivals get a generous deadline: throughput
//! is measured by the benchmarks, not here.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Rounds of events; each round is one burst of back-to-back batch calls.
const ROUNDS: usize = 3;
const PER_ROUND: usize = 2000;
/// The API's largest batch.
const PER_CALL: usize = 1000;
const TOTAL: usize = ROUNDS * PER_ROUND;
/// How often each sampler asks.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// What every sample must meet.
const BOUND: Duration = Duration::from_millis(100);
/// From the first burst until every live delivery arrived and was recorded.
const ARRIVALS: Duration = Duration::from_secs(120);

/// Answers 200 at once.
const FAST: (&str, &str, &str) = ("Fast", "/ok/stall-fast", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
/// Answers 200 after 200 ms: well inside the attempt timeout.
const SLOW: (&str, &str, &str) = ("Slow", "/slow/200/stall-slow", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
/// Takes the request and never answers: every attempt runs into the timeout.
const SILENT: (&str, &str, &str) = ("Silent", "/hang/stall-silent", "whsec_dGhpcyBpcyBhIHZlcnkgc2VjcmV0IGtleSEh");

/// One probe: when it started (since the test began), how long the request
/// took, and its status (`None`: no answer at all).
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    took: Duration,
    status: Option<u16>,
}

impl Sample {
    fn bad(&self) -> bool {
        self.took > BOUND || !self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// GETs `url` every [`SAMPLE_EVERY`] on its own thread until `stop`. The client
/// is the thread's own and keeps its connection alive, so a sample times the
/// host's answer, not a connect or a queue in the test. Ticks missed while a
/// request hung are dropped rather than fired back to back.
fn sampler(
    client: reqwest::blocking::Client,
    url: String,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let start = Instant::now();
            // Until the whole body is read: that is when a browser has the page.
            let status = client
                .get(&url)
                .send()
                .and_then(|r| {
                    let s = r.status().as_u16();
                    r.bytes().map(|_| s)
                })
                .ok();
            let took = start.elapsed();
            samples.push(Sample { at: start - t0, took, status });
            next = (next + SAMPLE_EVERY).max(Instant::now());
        }
        samples
    })
}

/// Prints what a sampler saw, worst first; answers how many samples failed the bound.
fn report(name: &str, samples: &[Sample]) -> usize {
    let mut worst = samples.to_vec();
    worst.sort_by_key(|s| std::cmp::Reverse(s.took));
    let pct = |p: usize| worst.get(worst.len().saturating_sub(1) * (100 - p) / 100).map_or(Duration::ZERO, |s| s.took);
    let over = samples.iter().filter(|s| s.took > BOUND).count();
    let unanswered = samples.iter().filter(|s| !s.status.is_some_and(|c| (200..300).contains(&c))).count();
    let bad = samples.iter().filter(|s| s.bad()).count();
    println!(
        "{name}: {} samples; max {:?}, p99 {:?}, p50 {:?}; {over} over {BOUND:?}, {unanswered} without a 2xx",
        samples.len(),
        pct(100),
        pct(99),
        pct(50),
    );
    for s in worst.iter().filter(|s| s.bad()).take(10) {
        println!("  at {:>7.2}s took {:>9.1?} status {:?}", s.at.as_secs_f64(), s.took, s.status);
    }
    bad
}

/// Polls `f` every 100 ms until it holds or `deadline` passes; answers whether
/// it held. Not `eventually`: a miss must not panic before the latency report.
fn until(deadline: Instant, mut f: impl FnMut() -> bool) -> bool {
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn webhook_id(h: &Host, name: &str) -> i64 {
    h.int("SELECT id FROM webhooks WHERE name = ?1", &[name.into()])
}

fn succeeded(h: &Host, webhook: i64) -> usize {
    h.count(&format!("SELECT COUNT(*) FROM deliveries WHERE webhook_id = {webhook} AND state = 'succeeded'")) as usize
}

#[test]
fn health_and_dashboard_answer_within_100ms_while_delivering() {
    // 2 s attempts: the silent receiver costs 2 s a try instead of 15, and
    // 200 ms stays far inside it. 32 in flight per webhook: the 200 ms receiver
    // takes its 6,000 deliveries in ~40 s rather than ~75 s at the default 16.
    let h = host_with(&[("WEBHOOKS_ATTEMPT_TIMEOUT", "2s"), ("WEBHOOKS_PER_WEBHOOK_CONCURRENCY", "32")]);
    let r = Receiver::start();
    let a = h.admin();
    for (name, path, secret) in [FAST, SLOW, SILENT] {
        let (s, _, body) = a.create(name, &r.url(path), secret, &["user.created"], true);
        assert_eq!(s, 303, "{name}: {body}");
    }
    let (fast, slow, silent) = (webhook_id(&h, FAST.0), webhook_id(&h, SLOW.0), webhook_id(&h, SILENT.0));

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let health_client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let health = sampler(health_client, format!("{}/healthz", h.base), t0, stop.clone());
    // Its own signed-in session, so the sampler owns its client.
    let dashboard = sampler(h.admin().client, format!("{}{MOUNT}", h.base), t0, stop.clone());
    // A few samples of the idle host before the first burst.
    std::thread::sleep(Duration::from_millis(200));

    // Raising may itself be slow on a stalling host; that is not what fails here.
    let api = reqwest::blocking::Client::builder().timeout(ARRIVALS).build().unwrap();
    let started = Instant::now();
    let deadline = started + ARRIVALS;
    let mut raised = BTreeSet::new();
    for round in 0..ROUNDS {
        let burst = Instant::now();
        for call in 0..PER_ROUND / PER_CALL {
            let events: Vec<serde_json::Value> = (0..PER_CALL)
                .map(|i| {
                    let n = round * PER_ROUND + call * PER_CALL + i + 1;
                    let id = format!("stall-{n}");
                    raised.insert(id.clone());
                    // The body a receiver gets has no event id; `data.event` carries it.
                    let data = json!({"id": n, "email": format!("user{n}@example.com"), "event": id});
                    json!({"type": "user.created", "id": id, "data": data})
                })
                .collect();
            let resp = api
                .post(format!("{}/api/events/batch", h.base))
                .bearer_auth(TOKEN)
                .json(&json!({"events": events}))
                .send();
            let status = resp.map(|r| r.status().as_u16());
            assert!(matches!(status, Ok(202)), "round {round} call {call}: {status:?}");
        }
        println!("round {round}: {PER_ROUND} events raised in {:?}", burst.elapsed());
        // The next burst lands while this one is still being delivered to the
        // slow and silent receivers, but not before the fast one has it all.
        let want = (round + 1) * PER_ROUND;
        until(deadline, || r.count_at(FAST.1) >= want);
    }
    // Counting on the receiver first keeps the database polls few.
    let arrived = until(deadline, || {
        r.count_at(FAST.1) >= TOTAL
            && r.count_at(SLOW.1) >= TOTAL
            && succeeded(&h, fast) >= TOTAL
            && succeeded(&h, slow) >= TOTAL
    });
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let health = health.join().unwrap();
    let dashboard = dashboard.join().unwrap();

    println!(
        "arrivals after {took:?}: fast {}, slow {}, silent {} requests (of {TOTAL} events)",
        r.count_at(FAST.1),
        r.count_at(SLOW.1),
        r.count_at(SILENT.1)
    );
    let bad_health = report("GET /healthz", &health);
    let bad_dashboard = report(&format!("GET {MOUNT}"), &dashboard);
    assert!(
        bad_health == 0 && bad_dashboard == 0,
        "the host stalled: {bad_health} /healthz and {bad_dashboard} dashboard samples took over {BOUND:?} or failed"
    );
    for (name, samples) in [("/healthz", &health), ("dashboard", &dashboard)] {
        // Guards against a pass that sampled nothing while the host was busy.
        assert!(samples.len() as u128 >= took.as_millis() / SAMPLE_EVERY.as_millis() / 4, "{name}: too few samples");
    }
    assert!(
        arrived,
        "not every delivery to the live receivers arrived and was recorded within {ARRIVALS:?}: \
         fast {} arrived, {} succeeded; slow {} arrived, {} succeeded (of {TOTAL})",
        r.count_at(FAST.1),
        succeeded(&h, fast),
        r.count_at(SLOW.1),
        succeeded(&h, slow)
    );

    // Every live delivery arrived signed: exactly the events raised.
    for (name, path, secret) in [FAST, SLOW] {
        let wh = standardwebhooks::Webhook::new(secret).unwrap();
        let seen = r.seen_at(path);
        let mut got = BTreeSet::new();
        for s in &seen {
            wh.verify(&s.body, &s.headers).unwrap_or_else(|e| panic!("{name}: signature does not verify: {e:?}"));
            let body = s.json();
            assert_eq!(body["type"], "user.created", "{name}");
            got.insert(body["data"]["event"].as_str().expect("data.event").to_owned());
        }
        let missing: Vec<_> = raised.difference(&got).take(5).collect();
        let unexpected: Vec<_> = got.difference(&raised).take(5).collect();
        assert!(
            missing.is_empty() && unexpected.is_empty(),
            "{name}: got {} distinct events of {TOTAL}; missing e.g. {missing:?}, unexpected e.g. {unexpected:?}",
            got.len()
        );
        // At least once: a repeat would be legal, but say so.
        if seen.len() > got.len() {
            println!("{name}: {} repeated deliveries", seen.len() - got.len());
        }
    }

    // And recorded: one delivery per event and webhook, each live one
    // succeeded with a successful attempt on file.
    for (name, id) in [(FAST.0, fast), (SLOW.0, slow), (SILENT.0, silent)] {
        let n = h.count(&format!("SELECT COUNT(*) FROM deliveries WHERE webhook_id = {id}"));
        assert_eq!(n, TOTAL as i64, "{name}: deliveries queued");
    }
    for (name, id) in [(FAST.0, fast), (SLOW.0, slow)] {
        assert_eq!(succeeded(&h, id), TOTAL, "{name}: deliveries succeeded");
        let unproven = h.count(&format!(
            "SELECT COUNT(*) FROM deliveries d WHERE d.webhook_id = {id} \
             AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id AND a.success = 1)"
        ));
        assert_eq!(unproven, 0, "{name}: succeeded deliveries without a successful attempt");
    }
    // The silent receiver never answered: its attempts are on file (the first
    // ones end one attempt timeout after they started), every one timed out.
    let silent_attempts = || -> (i64, i64) {
        let r = h.row(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN success = 0 AND error LIKE '%timed out%' THEN 1 ELSE 0 END), 0) \
             FROM attempts WHERE webhook_id = ?1",
            &[silent.into()],
        );
        (r[0].int(), r[1].int())
    };
    eventually(Duration::from_secs(30), "an attempt to the silent receiver recorded", || silent_attempts().0 >= 1);
    let (tried, timed_out) = silent_attempts();
    assert_eq!(timed_out, tried, "{}: every attempt timed out", SILENT.0);
}
