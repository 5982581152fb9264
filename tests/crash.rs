//! Crash safety: the real `webhooks-host` process takes 10,000 events across
//! several webhooks and is killed with SIGKILL at random points while raising
//! and while delivering. After restarts, every (event, webhook) pair committed
//! has reached the receiver at least once — checked by `webhook-id` — and, on
//! SQLite, the database file passes `PRAGMA integrity_check`.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::*;

const EVENTS: usize = 10_000;
const BATCH: usize = 500;
const TYPES: [&str; 12] = ALL_EVENTS;

/// xorshift64*: enough randomness for kill points; the seed is printed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ENV: &[(&str, &str)] = &[
    ("WEBHOOKS_LEASE", "2s"),
    ("WEBHOOKS_RETRY_SCHEDULE", "0s,100ms,200ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s"),
    ("WEBHOOKS_WORKERS", "2"),
];

#[test]
fn sigkill_at_random_points_loses_nothing() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    println!("crash test seed: {seed} (rerun with CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let r = Receiver::start();
    let mut h = spawn_host(&data, ENV);

    let subs: [(&str, &[&str]); 3] = [
        ("users", &["user.created", "user.updated", "user.deleted"]),
        ("tickets", &["user.created", "ticket.created", "ticket.closed", "ticket.reopened"]),
        ("everything", &TYPES),
    ];
    {
        let a = h.admin();
        for (name, events) in subs {
            let (s, _, _) =
                a.create(name, &r.url(&format!("/ok/{name}")), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", events, true);
            assert_eq!(s, 303);
        }
    }
    let events: Vec<(String, &str)> =
        (0..EVENTS).map(|i| (format!("evt_crash_{i}"), TYPES[rng.below(TYPES.len() as u64) as usize])).collect();
    let expected_pairs: usize = events.iter().map(|(_, t)| subs.iter().filter(|(_, ev)| ev.contains(t)).count()).sum();

    let mut kills = 0;
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    // Raise in batches; kill the process at random points while doing so.
    let mut next = 0;
    while next < EVENTS {
        let chunk = &events[next..(next + BATCH).min(EVENTS)];
        let body = json!({"events": chunk.iter().map(|(id, t)| {
            let mut data = example_data(t);
            data["event"] = json!(id);
            json!({"id": id, "type": t, "data": data})
        }).collect::<Vec<_>>()});
        let kill_now = rng.below(4) == 0;
        let handle = if kill_now {
            // Kill while this batch is in flight or just after.
            let delay = rng.below(40);
            let pid = h.child.id();
            Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }))
        } else {
            None
        };
        let res = client.post(format!("{}/api/events/batch", h.base)).bearer_auth(TOKEN).json(&body).send();
        let accepted = matches!(&res, Ok(r) if r.status().as_u16() == 202);
        if let Some(k) = handle {
            k.join().unwrap();
            let _ = h.child.wait();
            kills += 1;
            h = spawn_host(&data, ENV);
        }
        if accepted {
            next += chunk.len();
        } else {
            assert!(kill_now, "a batch failed without a kill: {res:?}");
        }
    }
    // Kill a few more times while delivering.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
        h.child.kill().unwrap();
        h.child.wait().unwrap();
        kills += 1;
        h = spawn_host(&data, ENV);
    }
    println!("killed {kills} times");
    assert!(kills >= 3);

    // Every committed pair is delivered.
    let t = Instant::now();
    loop {
        let done = h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'succeeded'");
        if done as usize == expected_pairs {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(240), "{done} of {expected_pairs} delivered after 240 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(h.count("SELECT COUNT(*) FROM events") as usize, EVENTS);
    assert_eq!(h.count("SELECT COUNT(*) FROM deliveries") as usize, expected_pairs);

    let committed: HashSet<String> =
        h.rows("SELECT msg_id FROM deliveries", &[]).into_iter().map(|r| r[0].text()).collect();
    let received: HashSet<String> = r.seen().iter().map(|s| s.header("webhook-id")).collect();
    let missing = committed.difference(&received).count();
    assert_eq!(missing, 0, "{missing} pairs never reached the receiver");
    assert_eq!(received.len(), expected_pairs, "no webhook-id the database does not know");
    println!(
        "{} requests for {} pairs ({} duplicates)",
        r.seen().len(),
        expected_pairs,
        r.seen().len() - expected_pairs
    );
    if h.pg.is_some() {
        // SQLite runs inside the killed process, so its file is checked here;
        // the PostgreSQL server was never killed, and its files are its own.
        println!("integrity_check skipped: the tables are on PostgreSQL, whose server was not killed");
        return;
    }
    let ok: String = h.db().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}
