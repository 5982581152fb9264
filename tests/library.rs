//! The Rust library API with an injectable clock: the default retry schedule
//! and retention, checked without sleeping for minutes. Real component, real
//! SQLite file, real receiver on 127.0.0.1.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::Receiver;
use webhooks_host::bindings::ex::admin::{Request, Response};
use webhooks_host::egress::Allowed;
use webhooks_host::{Clock, Config, Event, Webhooks};

#[derive(Debug)]
struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl ManualClock {
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

const T0: u64 = 1_800_000_000_000;

async fn start(clock: Arc<ManualClock>) -> (Webhooks, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(tmp.path().join("data"));
    cfg.cache_dir = Some(concat!(env!("CARGO_TARGET_TMPDIR"), "/cwasm-cache").into());
    cfg.allowed_hosts = vec![Allowed::Net("127.0.0.1/32".parse().unwrap())];
    cfg.clock = clock;
    cfg.attempt_timeout = Duration::from_secs(3);
    (Webhooks::start(cfg).await.unwrap(), tmp)
}

async fn create(hooks: &Webhooks, url: &str) {
    create_for(hooks, url, "user.created").await
}

async fn create_for(hooks: &Webhooks, url: &str, event: &str) {
    let req = Request {
        method: "POST".into(),
        path: "/".into(),
        query: vec![],
        form: vec![
            ("name".into(), "Lib".into()),
            ("url".into(), url.into()),
            ("events".into(), event.into()),
            ("enabled".into(), "on".into()),
        ],
        actor: "test".into(),
        csrf_token: String::new(),
    };
    assert!(matches!(hooks.admin(&req).await.unwrap(), Response::Redirect(_)));
}

fn db(dir: &tempfile::TempDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.path().join("data/webhooks.db")).unwrap()
}

fn count(dir: &tempfile::TempDir, sql: &str) -> i64 {
    db(dir).query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_schedule_waits_5s_then_5min_with_jitter() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let r = Receiver::start();
    let (hooks, dir) = start(clock.clone()).await;
    create(&hooks, &r.url("/flaky/5/x")).await;
    let raised = hooks.raise(Event::new("user.created", r#"{"id":1}"#)).await.unwrap();
    assert_eq!(raised.queued, 1);

    // Attempt 1 at once.
    settle().await;
    assert_eq!(r.seen_at("/flaky/5/x").len(), 1);
    let next: i64 = db(&dir).query_row("SELECT next_attempt_at FROM deliveries", [], |r| r.get(0)).unwrap();
    let delay = next - T0 as i64;
    assert!((4000..=6000).contains(&delay), "second attempt due after {delay} ms (5 s ± 20 %)");

    // Not before it is due…
    clock.advance(Duration::from_millis(3900));
    hooks.wake();
    settle().await;
    assert_eq!(r.seen_at("/flaky/5/x").len(), 1);
    // …and sent once it is.
    clock.advance(Duration::from_millis(2200));
    hooks.wake();
    settle().await;
    assert_eq!(r.seen_at("/flaky/5/x").len(), 2);
    let (state, next): (String, i64) = db(&dir)
        .query_row("SELECT state, next_attempt_at FROM deliveries", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(state, "retrying");
    let delay = next - clock.now_ms() as i64;
    assert!((240_000..=360_100).contains(&delay), "third attempt due after {delay} ms (5 min ± 20 %)");
    clock.advance(Duration::from_secs(361));
    hooks.wake();
    settle().await;
    assert_eq!(r.seen_at("/flaky/5/x").len(), 3);
    hooks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_retention_is_pruned_but_pending_work_is_kept() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let r = Receiver::start();
    let (hooks, dir) = start(clock.clone()).await;
    create(&hooks, &r.url("/ok/p")).await;
    for _ in 0..5 {
        hooks.raise(Event::new("user.created", "{}")).await.unwrap();
    }
    for _ in 0..50 {
        if count(&dir, "SELECT COUNT(*) FROM deliveries WHERE state = 'succeeded'") == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&dir, "SELECT COUNT(*) FROM attempts"), 5);
    // A delivery still on its schedule must survive pruning, with its history:
    // its endpoint fails, then its webhook is disabled so it waits forever.
    create_for(&hooks, &r.url("/status/500/keep"), "ticket.created").await;
    hooks.raise(Event::new("ticket.created", "{}")).await.unwrap();
    for _ in 0..50 {
        if count(&dir, "SELECT COUNT(*) FROM deliveries WHERE state = 'retrying'") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db(&dir).execute("UPDATE webhooks SET enabled = 0 WHERE url LIKE '%/keep'", []).unwrap();

    // 29 days later nothing goes; 31 days later the finished history does.
    clock.advance(Duration::from_secs(29 * 86_400));
    assert_eq!(hooks.maintain().await.unwrap(), (0, 0, 0));
    clock.advance(Duration::from_secs(2 * 86_400));
    let (a, d, _e) = hooks.maintain().await.unwrap();
    assert_eq!((a, d), (5, 5));
    assert_eq!(count(&dir, "SELECT COUNT(*) FROM attempts"), 1, "the waiting delivery keeps its attempt");
    assert_eq!(count(&dir, "SELECT COUNT(*) FROM deliveries WHERE state = 'retrying'"), 1);
    assert_eq!(count(&dir, "SELECT COUNT(*) FROM events"), 1, "only the waiting delivery's event is left");
    hooks.shutdown().await;
}
