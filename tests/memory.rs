//! Memory under sustained load (#25): the real binary, its component and
//! database, raising through `POST /api/events` while a real receiver on
//! 127.0.0.1 takes the deliveries. What the host holds is bounded by design
//! (instances, their memories, the page caches, the allocator's arenas:
//! docs/ARCHITECTURE.md, "Memory"), so its RSS levels off instead of
//! growing with the time it runs.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[test]
fn rss_after_a_minute_of_sustained_load_is_within_ten_percent_of_rss_after_twenty_seconds() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();
    // Fan-out 3: every event becomes three signed deliveries.
    for i in 0..3 {
        let (s, _, _) = a.create(&format!("Sink {i}"), &r.url(&format!("/ok/{i}")), "", &["user.created"], true);
        assert_eq!(s, 303, "webhook {i} created");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut raisers = Vec::new();
    for c in 0..8u64 {
        let (stop, accepted, base) = (stop.clone(), accepted.clone(), h.base.clone());
        raisers.push(std::thread::spawn(move || {
            let api = reqwest::blocking::Client::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = json!({"type": "user.created", "data": {
                    "id": c * 1_000_000_000 + n, "email": format!("user{n}@example.com"), "name": format!("User {n}")}});
                let resp = api.post(format!("{base}/api/events")).bearer_auth(TOKEN).json(&body).send();
                match resp.map(|r| r.status().as_u16()) {
                    Ok(202) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("raise answered {other:?}"),
                }
            }
        }));
    }
    let pid = h.child.id();
    let t = Instant::now();
    // The largest resident set seen in the 2 s before `at`: one reading can
    // land between an allocation and its release.
    let level_at = |at: Duration| {
        let mut most = 0;
        while t.elapsed() < at {
            if t.elapsed() + Duration::from_secs(2) >= at {
                most = most.max(rss_kib(pid));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        most
    };
    let at_20 = level_at(Duration::from_secs(20));
    let received_20 = r.count_at("/ok/0");
    let at_60 = level_at(Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    for t in raisers {
        t.join().expect("a raiser panicked");
    }
    let (accepted, received_60) = (accepted.load(Ordering::Relaxed), r.count_at("/ok/0"));
    println!(
        "RSS {:.1} MiB after 20 s, {:.1} MiB after 60 s; {accepted} events accepted; \
         {received_20} then {received_60} delivered per webhook",
        at_20 as f64 / 1024.0,
        at_60 as f64 / 1024.0
    );
    // The load was real and kept flowing through the second window (at a
    // quarter of the first window's rate at least: on PostgreSQL intake
    // outruns delivery and the backlog grows, docs/SCALING.md).
    assert!(received_20 >= 200, "only {received_20} deliveries in the first 20 s");
    assert!(
        received_60 - received_20 >= received_20 / 2,
        "deliveries stalled: {received_20} after 20 s, {received_60} after 60 s"
    );
    assert!(
        at_60 * 10 <= at_20 * 11,
        "RSS grew with time: {at_20} KiB after 20 s, {at_60} KiB after 60 s (more than 10 %)"
    );
}

/// The resident set a `serve` gains over 10 batches of 1,000 events raised
/// after a warm-up (signed in, the dashboard, three webhooks, one event),
/// intake only, so that only the raising is measured: in KiB.
fn rss_gained_by_ten_batches(env: &[(&str, &str)]) -> (u64, u64) {
    let mut env = env.to_vec();
    env.push(("WEBHOOKS_WORKERS", "0"));
    let h = host_with(&env);
    let a = h.admin();
    for i in 0..3 {
        let (s, _, _) = a.create(&format!("Sink {i}"), &format!("http://127.0.0.1:9/{i}"), "", &["user.created"], true);
        assert_eq!(s, 303, "webhook {i} created");
    }
    assert_eq!(a.get(MOUNT).0, 200);
    assert_eq!(h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "x@example.com"}})).0, 202);
    let pid = h.child.id();
    let before = rss_kib(pid);
    for b in 0..10u64 {
        let events: Vec<_> = (0..1000u64)
            .map(|i| json!({"type": "user.created", "data": {"id": 2 + b * 1000 + i, "email": "x@example.com"}}))
            .collect();
        assert_eq!(h.raise_batch(&events).0, 202, "batch {b}");
    }
    assert_eq!(h.count("SELECT COUNT(*) FROM deliveries"), 30_003, "every delivery pending");
    (before, rss_kib(pid))
}

/// Batches of 1,000 events leave nothing behind in the host's heap (#25).
/// glibc raises its mmap threshold each time a large block is freed (up to
/// 32 MiB), after which large buffers (a batch's, the component's on load)
/// are carved from a thread's heap and stay resident once freed: the
/// benchmark's 100,000-pending phase peaked at 64.6 MiB. `serve` holds the
/// threshold at 128 KiB (src/main.rs). The control is the same run with the
/// threshold where glibc's raising takes it (`MALLOC_MMAP_THRESHOLD_`, which
/// `serve` leaves to glibc): on the build before, both ended within 1.5 MiB
/// of each other (debug build: 70.6–71.7 MiB against 71.9); held,
/// 51.6–52.4 MiB.
#[test]
fn batches_of_a_thousand_events_leave_no_heap_behind() {
    let (before, after) = rss_gained_by_ten_batches(&[]);
    let (raised_before, raised_after) = rss_gained_by_ten_batches(&[("MALLOC_MMAP_THRESHOLD_", "33554432")]);
    println!(
        "10 batches of 1,000: {before} → {after} KiB with the threshold held; {raised_before} → {raised_after} KiB at 32 MiB"
    );
    assert!(
        after + 8 * 1024 <= raised_after,
        "the held threshold kept no less resident: {after} KiB against {raised_after} KiB at 32 MiB"
    );
}
