//! The Rust library API with an injectable clock: the default retry schedule
//! and retention, checked without sleeping for minutes. Real component, real
//! database (the SQLite file, or a scratch PostgreSQL database with
//! `WEBHOOKS_TEST_ENGINE=postgres`), real receiver on 127.0.0.1.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::{Receiver, Store};
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

/// A temp data folder and where the integration keeps its tables: the
/// SQLite file there, or a scratch PostgreSQL database of its own when the
/// tests run on PostgreSQL. Reads either through [`Store`].
struct Data {
    store: Store,
    _tmp: tempfile::TempDir,
}

impl Data {
    fn new() -> Data {
        let tmp = tempfile::tempdir().unwrap();
        Data { store: Store::for_data(&tmp.path().join("data")), _tmp: tmp }
    }

    /// A configuration on this folder and database, sharing the suite's
    /// compiled component.
    fn config(&self) -> Config {
        let mut cfg = Config::new(self.store.data.clone());
        cfg.cache_dir = Some(concat!(env!("CARGO_TARGET_TMPDIR"), "/cwasm-cache").into());
        if let Some(db) = &self.store.pg {
            cfg.database_url = Some(webhooks_host::storage::postgres::DatabaseUrl::parse(&db.url()).unwrap());
        }
        cfg
    }
}

impl std::ops::Deref for Data {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

async fn start(clock: Arc<ManualClock>) -> (Webhooks, Data) {
    let dir = Data::new();
    let mut cfg = dir.config();
    cfg.allowed_hosts = vec![Allowed::Net("127.0.0.1/32".parse().unwrap())];
    cfg.clock = clock;
    cfg.attempt_timeout = Duration::from_secs(3);
    (Webhooks::start(cfg).await.unwrap(), dir)
}

async fn create(hooks: &Webhooks, url: &str) {
    create_for(hooks, url, "user.created").await
}

async fn create_for(hooks: &Webhooks, url: &str, event: &str) {
    post(hooks, "/", &[("name", "Lib"), ("url", url), ("events", event), ("enabled", "on")]).await;
}

async fn post(hooks: &Webhooks, path: &str, form: &[(&str, &str)]) {
    let req = Request {
        method: "POST".into(),
        path: path.into(),
        query: vec![],
        form: form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        actor: "test".into(),
        csrf_token: String::new(),
        csrf_field: "_token".into(),
    };
    let r = hooks.admin(&req).await.unwrap();
    assert!(matches!(r, Response::Redirect(_)), "{r:?}");
}

/// How many requests `path` has seen once it has seen `n` (waiting up to
/// 20 s for them on a loaded machine) and things have settled: the caller
/// asserts the exact count, so one too many still fails, and a count that
/// should not have grown is checked after the same settle as before.
async fn seen(r: &Receiver, path: &str, n: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while r.seen_at(path).len() < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    settle().await;
    r.seen_at(path).len()
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
    let raised = hooks.raise(Event::new("user.created", r#"{"id":1,"email":"ada@example.com"}"#)).await.unwrap();
    assert_eq!(raised.queued, 1);

    // Attempt 1 at once.
    assert_eq!(seen(&r, "/flaky/5/x", 1).await, 1);
    let next = dir.count("SELECT next_attempt_at FROM deliveries");
    let delay = next - T0 as i64;
    assert!((4000..=6000).contains(&delay), "second attempt due after {delay} ms (5 s ± 20 %)");

    // Not before it is due…
    clock.advance(Duration::from_millis(3900));
    hooks.wake();
    assert_eq!(seen(&r, "/flaky/5/x", 1).await, 1);
    // …and sent once it is.
    clock.advance(Duration::from_millis(2200));
    hooks.wake();
    assert_eq!(seen(&r, "/flaky/5/x", 2).await, 2);
    let row = dir.row("SELECT state, next_attempt_at FROM deliveries", &[]);
    let (state, next) = (row[0].text(), row[1].int());
    assert_eq!(state, "retrying");
    let delay = next - clock.now_ms() as i64;
    assert!((240_000..=360_100).contains(&delay), "third attempt due after {delay} ms (5 min ± 20 %)");
    clock.advance(Duration::from_secs(361));
    hooks.wake();
    assert_eq!(seen(&r, "/flaky/5/x", 3).await, 3);
    hooks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_retention_is_pruned_but_pending_work_is_kept() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let r = Receiver::start();
    let (hooks, dir) = start(clock.clone()).await;
    create(&hooks, &r.url("/ok/p")).await;
    for _ in 0..5 {
        hooks.raise(Event::new("user.created", r#"{"id":1,"email":"ada@example.com"}"#)).await.unwrap();
    }
    for _ in 0..400 {
        if dir.count("SELECT COUNT(*) FROM deliveries WHERE state = 'succeeded'") == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dir.count("SELECT COUNT(*) FROM attempts"), 5);
    // A delivery still on its schedule must survive pruning, with its history:
    // its endpoint fails, then its webhook is disabled so it waits forever.
    create_for(&hooks, &r.url("/status/500/keep"), "ticket.created").await;
    hooks.raise(Event::new("ticket.created", r#"{"id":1,"user_id":2,"subject":"Hi","status":"open"}"#)).await.unwrap();
    for _ in 0..400 {
        if dir.count("SELECT COUNT(*) FROM deliveries WHERE state = 'retrying'") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dir.execute("UPDATE webhooks SET enabled = 0 WHERE url LIKE '%/keep'", &[]);

    // 29 days later nothing goes; 31 days later the finished history does.
    clock.advance(Duration::from_secs(29 * 86_400));
    assert_eq!(hooks.maintain().await.unwrap(), (0, 0, 0));
    clock.advance(Duration::from_secs(2 * 86_400));
    let (a, d, _e) = hooks.maintain().await.unwrap();
    assert_eq!((a, d), (5, 5));
    assert_eq!(dir.count("SELECT COUNT(*) FROM attempts"), 1, "the waiting delivery keeps its attempt");
    assert_eq!(dir.count("SELECT COUNT(*) FROM deliveries WHERE state = 'retrying'"), 1);
    assert_eq!(dir.count("SELECT COUNT(*) FROM events"), 1, "only the waiting delivery's event is left");
    hooks.shutdown().await;
}

fn sigs(s: &support::Seen) -> Vec<String> {
    s.header("webhook-signature").split(' ').map(str::to_owned).collect()
}

fn expected_sig(secret: &str, s: &support::Seen) -> String {
    let ts: i64 = s.header("webhook-timestamp").parse().unwrap();
    standardwebhooks::Webhook::new(secret).unwrap().sign(&s.header("webhook-id"), ts, &s.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_both_secrets_for_24_hours_then_only_the_new_one() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let r = Receiver::start();
    let (hooks, dir) = start(clock.clone()).await;
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let new = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let url = r.url("/ok/rot");
    post(
        &hooks,
        "/",
        &[("name", "Rot"), ("url", &url), ("secret", old), ("events", "user.created"), ("enabled", "on")],
    )
    .await;
    let id = dir.count("SELECT id FROM webhooks");
    let edit = format!("/{id}");
    let form = |action: &'static str, secret: &'static str| {
        vec![
            ("name", "Rot"),
            ("url", url.as_str()),
            ("secret_action", action),
            ("secret", secret),
            ("events", "user.created"),
            ("enabled", "on"),
        ]
    };
    post(&hooks, &edit, &form("rotate", new)).await;

    hooks.raise(Event::new("user.created", r#"{"id":1,"email":"ada@example.com"}"#)).await.unwrap();
    seen(&r, "/ok/rot", 1).await;
    let got = r.seen_at("/ok/rot");
    assert_eq!(got.len(), 1);
    let s = sigs(&got[0]);
    assert_eq!(s.len(), 2, "two signatures while rotating: {s:?}");
    assert_eq!(s[0], expected_sig(new, &got[0]));
    assert_eq!(s[1], expected_sig(old, &got[0]));

    // After the 24-hour window only the new secret signs.
    clock.advance(Duration::from_secs(24 * 3600 + 60));
    hooks.raise(Event::new("user.created", r#"{"id":1,"email":"ada@example.com"}"#)).await.unwrap();
    seen(&r, "/ok/rot", 2).await;
    let got = r.seen_at("/ok/rot");
    assert_eq!(got.len(), 2);
    assert_eq!(sigs(&got[1]), [expected_sig(new, &got[1])]);

    // The database never holds either secret in clear.
    let bytes = dir.stored_bytes();
    assert!(bytes.windows(url.len()).any(|w| w == url.as_bytes()), "the search sees what is stored");
    for secret in [old, new] {
        let needle = &secret.as_bytes()[6..20];
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "secret found in the database");
    }
    hooks.shutdown().await;
}

/// A resolver under an attacker's control: every name answers 127.0.0.1.
#[derive(Debug)]
struct Rebinding(u16);

impl webhooks_host::egress::Resolver for Rebinding {
    fn lookup<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::SocketAddr>>> + Send + 'a>>
    {
        let port = self.0;
        Box::pin(async move { Ok(vec![([93, 184, 216, 34], port).into(), ([127, 0, 0, 1], port).into()]) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_loopback_is_refused_at_send_time() {
    let listener = support::Listener::start();
    let dir = Data::new();
    let mut cfg = dir.config();
    cfg.resolver = Arc::new(Rebinding(listener.port));
    cfg.retry_schedule = vec![Duration::ZERO];
    let hooks = Webhooks::start(cfg).await.unwrap();
    // The name passes save-time checks: nothing in the URL shows it is internal.
    create(&hooks, &format!("http://hooks.example.com:{}/in", listener.port)).await;
    hooks.raise(Event::new("user.created", r#"{"id":1,"email":"ada@example.com"}"#)).await.unwrap();
    let mut error = None;
    for _ in 0..100 {
        error = dir.rows("SELECT error FROM attempts", &[]).first().and_then(|r| r[0].opt_text());
        if error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = error.expect("the attempt was recorded");
    assert!(error.contains("127.0.0.1") && error.contains("refused by the egress policy"), "{error}");
    assert_eq!(listener.connections(), 0);
    hooks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_raises_share_a_commit_and_are_answered_each_on_their_own() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let r = Receiver::start();
    let (hooks, dir) = start(clock).await;
    create(&hooks, &r.url("/ok/group")).await;
    let hooks = Arc::new(hooks);
    // 40 callers at once; two carry events the plugin refuses. Whatever group
    // each lands in, a refused event must not refuse its neighbours.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let hooks = hooks.clone();
        tasks.spawn(async move {
            let e = match i {
                7 => Event::new("user.created", "[1]"),
                23 => Event::new("user.exploded", "{}"),
                _ => Event::new("user.created", format!(r#"{{"id":{},"email":"ada@example.com"}}"#, i + 1)),
            };
            (i, hooks.raise(e).await)
        });
    }
    let mut ok = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, raised) = joined.unwrap();
        match (i, raised) {
            (7, Err(webhooks_host::RaiseError::InvalidData { .. }))
            | (23, Err(webhooks_host::RaiseError::UnknownType(_))) => {}
            (_, Ok(raised)) if i != 7 && i != 23 => {
                assert_eq!(raised.queued, 1);
                ok += 1;
            }
            (i, other) => panic!("event {i}: {other:?}"),
        }
    }
    assert_eq!(ok, 38);
    assert_eq!(dir.count("SELECT COUNT(*) FROM events"), 38);
    assert_eq!(dir.count("SELECT COUNT(*) FROM deliveries"), 38);
    r.wait_for("/ok/group", 38, Duration::from_secs(10));
    let Ok(hooks) = Arc::try_unwrap(hooks) else { panic!("callers still hold the integration") };
    hooks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_schedule_entry_delays_the_first_attempt() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let r = Receiver::start();
    let dir = Data::new();
    let mut cfg = dir.config();
    cfg.allowed_hosts = vec![Allowed::Net("127.0.0.1/32".parse().unwrap())];
    cfg.clock = clock.clone();
    cfg.retry_schedule = webhooks_host::config::parse_schedule("2s,5s").unwrap();
    let hooks = Webhooks::start(cfg).await.unwrap();
    create(&hooks, &r.url("/ok/later")).await;
    hooks.raise(Event::new("user.created", r#"{"id":1,"email":"ada@example.com"}"#)).await.unwrap();
    let due = dir.count("SELECT next_attempt_at FROM deliveries");
    assert_eq!(due, T0 as i64 + 2000);
    assert_eq!(seen(&r, "/ok/later", 0).await, 0, "sent before the first entry's delay");
    clock.advance(Duration::from_millis(2100));
    hooks.wake();
    assert_eq!(seen(&r, "/ok/later", 1).await, 1);
    hooks.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_sealed_by_an_older_version_still_sign_after_the_upgrade() {
    if support::on_postgres() {
        // A PostgreSQL database starts at schema 10: no version that sealed
        // a secret's text (before 5) ever wrote one.
        println!("skipped on PostgreSQL: only SQLite databases predate schema 5");
        return;
    }
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let r = Receiver::start();
    let url = r.url("/ok/upgraded");
    let tmp = tempfile::tempdir().unwrap();
    let config = || {
        let mut cfg = Config::new(tmp.path().join("data"));
        cfg.cache_dir = Some(concat!(env!("CARGO_TARGET_TMPDIR"), "/cwasm-cache").into());
        cfg.allowed_hosts = vec![Allowed::Net("127.0.0.1/32".parse().unwrap())];
        cfg
    };
    let hooks = Webhooks::start(config()).await.unwrap();
    post(
        &hooks,
        "/",
        &[("name", "Old"), ("url", &url), ("secret", secret), ("events", "user.created"), ("enabled", "on")],
    )
    .await;
    hooks.shutdown().await;
    drop(hooks);
    // What a version before 0.2 left: the secret's text sealed, schema 4.
    let key = webhooks_host::secrets::SecretKey::load_or_create(&tmp.path().join("data/secret.key")).unwrap();
    {
        let db = rusqlite::Connection::open(tmp.path().join("data/webhooks.db")).unwrap();
        db.execute("UPDATE webhooks SET secret_sealed = ?1", [key.seal(secret.as_bytes()).unwrap()]).unwrap();
        db.execute("DELETE FROM plugin_schema WHERE version >= 5", []).unwrap();
        // And without what later versions added that cannot be added twice.
        db.execute_batch(
            "DROP INDEX webhooks_form_id; ALTER TABLE webhooks DROP COLUMN form_id; \
             ALTER TABLE deliveries DROP COLUMN lease_owner; \
             ALTER TABLE webhooks DROP COLUMN custom_headers; ALTER TABLE webhooks DROP COLUMN payload_filter; \
             ALTER TABLE webhooks DROP COLUMN failing_noticed; ALTER TABLE webhooks DROP COLUMN rate_limit; \
             DROP TABLE webhook_transforms; ALTER TABLE attempts DROP COLUMN transform;",
        )
        .unwrap();
    }
    let hooks = Webhooks::start(config()).await.unwrap();
    hooks.raise(Event::new("user.created", r#"{"id":1,"email":"ada@example.com"}"#)).await.unwrap();
    let got = r.wait_for("/ok/upgraded", 1, Duration::from_secs(10));
    assert_eq!(sigs(&got[0]), [expected_sig(secret, &got[0])]);
    hooks.shutdown().await;
}

/// CPU time this thread has used, in clock ticks (`/proc/thread-self/stat`:
/// user + system).
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// An embedder that drops the integration without `shutdown` leaves nothing
/// running: the delivery engine ends with it. (It once outlived its
/// supervisor and, its stop channel closed, went round its loop without
/// waiting, a core's worth of CPU for ever.) On a one-thread runtime every
/// task runs on this thread, so what it does shows in this thread's CPU.
#[tokio::test(flavor = "current_thread")]
async fn an_integration_dropped_without_shutdown_leaves_nothing_running() {
    let (hooks, _dir) = start(Arc::new(ManualClock(AtomicU64::new(T0)))).await;
    settle().await;
    drop(hooks);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = thread_cpu_ticks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = thread_cpu_ticks() - before;
    // Idle, a tick or two; the loop that spun used all 100 ticks of the second.
    assert!(used < 30, "this thread used {used} of 100 clock ticks in a second after the drop");
}

/// #24 part 2: the rate limit's bucket is kept in the database, so a
/// restart does not start it full. With the clock standing still, a webhook
/// limited to 5/s (a burst of one) sends one delivery and holds the rest;
/// stopped and started again at the same instant, it sends nothing more
/// (a bucket started afresh would send another); the next token, 200 ms
/// later, sends one; an idle second refills the burst, one, not five.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_rate_limit_bucket_and_sends_no_burst_beyond_it() {
    let clock = Arc::new(ManualClock(AtomicU64::new(T0)));
    let r = Receiver::start();
    let dir = Data::new();
    let config = || {
        let mut cfg = dir.config();
        cfg.allowed_hosts = vec![Allowed::Net("127.0.0.1/32".parse().unwrap())];
        cfg.clock = clock.clone();
        cfg.attempt_timeout = Duration::from_secs(3);
        cfg
    };
    let path = "/ok/limited";
    let hooks = Webhooks::start(config()).await.unwrap();
    post(
        &hooks,
        "/",
        &[("name", "Lib"), ("url", &r.url(path)), ("events", "user.created"), ("enabled", "on"), ("rate_limit", "5")],
    )
    .await;
    let events =
        (1..7).map(|i| Event::new("user.created", format!(r#"{{"id":{i},"email":"ada@example.com"}}"#))).collect();
    hooks.raise_batch(events).await.unwrap();
    assert_eq!(seen(&r, path, 1).await, 1, "the burst: one");
    hooks.shutdown().await;
    drop(hooks);
    assert_eq!(dir.count("SELECT tokens FROM webhook_buckets"), 0, "the stored bucket is empty");

    let hooks = Webhooks::start(config()).await.unwrap();
    hooks.wake();
    settle().await;
    assert_eq!(seen(&r, path, 1).await, 1, "restarted at the same instant: nothing more until the next token");
    clock.advance(Duration::from_millis(200));
    hooks.wake();
    assert_eq!(seen(&r, path, 2).await, 2, "the next token, 200 ms later");
    clock.advance(Duration::from_secs(1));
    hooks.wake();
    assert_eq!(seen(&r, path, 3).await, 3, "an idle second refills the burst of one, not five");
    assert_eq!(dir.count("SELECT COUNT(*) FROM deliveries WHERE state = 'pending'"), 3, "the rest waits, none failed");
    hooks.shutdown().await;
}
