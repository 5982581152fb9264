//! The benchmark: throughput and latency of the real component and host,
//! measured against the physical limit of this machine in the same run.
//!
//! ```sh
//! cargo bench -p webhooks-host --bench webhooks -- [--quick]
//! ```
//!
//! Phases: ingest (events raised through the component into the outbox),
//! delivery (the outbox drained to a keep-alive hyper receiver on 127.0.0.1),
//! baseline (a raw pooled hyper client posting the same bodies to the same
//! receiver at the same concurrency), raise → receipt latency under load,
//! cold start of the `webhooks-host` binary with and without the compiled
//! cache, peak RSS of that process with 100,000 pending deliveries, and mixed
//! load over HTTP (16 clients raising through `POST /api/events` of that binary
//! while its workers deliver to a receiver in another process, fan-out 1 and 3),
//! and the same mixed load at fan-out 3 on 1, 2 and 3 nodes sharing one
//! PostgreSQL database (skipped when no server answers at
//! `WEBHOOKS_BENCH_POSTGRES`, default postgres://postgres@127.0.0.1:5432).
//! The last lines compare the delivery rates; the very last is one JSON object
//! with the headline figures.
//!
//! `-- --only mixed` runs only the mixed phase on SQLite, `-- --only postgres`
//! only its PostgreSQL runs. The receiver of those phases is this same
//! executable, re-run with `WEBHOOKS_BENCH_RECEIVER=1`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::Mutex;
use webhooks_host::bindings::ex::admin::{Request, Response};
use webhooks_host::egress::Allowed;
use webhooks_host::{Config, Event, Webhooks};

/// Benchmark the webhooks integration on this machine.
#[derive(Parser)]
struct Args {
    /// A short run (under a minute) with smaller counts.
    #[arg(long)]
    quick: bool,
    /// Webhooks subscribed to the benchmark event.
    #[arg(long, default_value_t = 3)]
    webhooks: usize,
    /// Run only this phase.
    #[arg(long, value_enum)]
    only: Option<Phase>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A phase that can run alone.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// Mixed load over HTTP: raising through the API while the workers deliver.
    Mixed,
    /// The mixed load at fan-out 3 on 1, 2 and 3 nodes sharing one PostgreSQL database.
    Postgres,
}

/// In the environment of a re-run of this executable: be only the mixed
/// phase's receiver (see [`receiver_main`]).
const RECEIVER_ENV: &str = "WEBHOOKS_BENCH_RECEIVER";
/// The `webhooks-host serve` API token and the webhooks' signing secret.
const API_TOKEN: &str = "bench-token";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Mixed phase: concurrent API clients, and how long to wait for the backlog.
const MIXED_CLIENTS: usize = 16;
const MIXED_DRAIN_LIMIT: Duration = Duration::from_secs(30);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// The receiver: counts requests; in latency mode, also raise → receipt times.
#[derive(Default)]
struct Recv {
    count: AtomicU64,
    latencies: Mutex<Vec<f64>>,
    measure: std::sync::atomic::AtomicBool,
}

async fn start_receiver() -> (SocketAddr, Arc<Recv>) {
    let state = Arc::new(Recv::default());
    let st = state.clone();
    let app = axum::Router::new().route(
        "/{*p}",
        axum::routing::post(move |body: Bytes| {
            let st = st.clone();
            async move {
                st.count.fetch_add(1, Ordering::Relaxed);
                if st.measure.load(Ordering::Relaxed)
                    && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                    && let Some(sent) = v["data"]["raised_at_us"].as_u64()
                {
                    let now = now_us();
                    st.latencies.lock().await.push(now.saturating_sub(sent) as f64 / 1000.0);
                }
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, state)
}

fn config(data: &Path, workers: usize) -> Config {
    let mut c = Config::new(data);
    c.allowed_hosts = vec![Allowed::Net("127.0.0.1/32".parse().unwrap())];
    c.delivery_workers = workers;
    c
}

async fn create_webhooks(hooks: &Webhooks, addr: SocketAddr, k: usize) {
    for i in 0..k {
        let req = Request {
            method: "POST".into(),
            path: "/".into(),
            query: vec![],
            form: vec![
                ("name".into(), format!("bench {i}")),
                ("url".into(), format!("http://{addr}/hook/{i}")),
                ("secret".into(), SECRET.into()),
                ("events".into(), "user.created".into()),
                ("enabled".into(), "on".into()),
            ],
            actor: "bench".into(),
            csrf_token: String::new(),
            csrf_field: "_csrf".into(),
        };
        assert!(matches!(hooks.admin(&req).await.unwrap(), Response::Redirect(_)));
    }
}

fn data_json(i: usize) -> String {
    let us = now_us();
    // user.created's schema: an id from 1, an email.
    let id = i + 1;
    format!(r#"{{"id":{id},"email":"user{id}@example.com","name":"User {id}","raised_at_us":{us}}}"#)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os(RECEIVER_ENV).is_some() {
        return receiver_main();
    }
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let k = args.webhooks.max(1);
    let tmp = tempfile_dir()?;
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_webhooks-host"));
    // The compiled-component cache of the `webhooks-host` processes (cold start fills it).
    let serve_cache = tmp.join("cold-cache");
    println!("webhooks-bench: {k} webhooks, {} mode", if args.quick { "quick" } else { "full" });
    let mut out = serde_json::Map::new();
    if args.only.is_none() {
        library_phases(&args, k, &tmp, &mut out).await?;
        binary_phases(&exe, k, &tmp, &serve_cache, &mut out).await?;
    }

    // 6. Mixed load over HTTP, as a panel drives it: fan-out 1, then 3, each on a new host and data folder.
    let seconds = if args.quick { 5 } else { 20 };
    if args.only != Some(Phase::Postgres) {
        for fan_out in [1, 3] {
            let m = mixed(&exe, &tmp, &serve_cache, fan_out, seconds).await?;
            m.print();
            m.record(&mut out);
        }
    }
    // 7. The same at fan-out 3 on 1, 2, 3 nodes sharing one PostgreSQL database, if a server answers.
    if args.only != Some(Phase::Mixed) {
        postgres_phase(&exe, &tmp, &serve_cache, 3, seconds, &mut out).await?;
    }
    print_comparison(&out);
    let _ = std::fs::remove_dir_all(&tmp);
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// Phases 1–4, in this process: the library with an in-process receiver.
async fn library_phases(
    args: &Args,
    k: usize,
    tmp: &Path,
    out: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let (ingest_n, deliver_events, e2e_seconds) = if args.quick { (10_000, 5_000, 3) } else { (50_000, 20_000, 10) };
    let cache = tmp.join("cache");
    let (addr, recv) = start_receiver().await;

    // 1. Ingest: an intake-only node (no workers), events raised one by one.
    let data = tmp.join("ingest");
    let mut cfg = config(&data, 0);
    cfg.cache_dir = Some(cache.clone());
    let hooks = Webhooks::start(cfg).await?;
    create_webhooks(&hooks, addr, k).await;
    let mut lat = Vec::with_capacity(ingest_n);
    let t = Instant::now();
    for i in 0..ingest_n {
        let t0 = Instant::now();
        let r = hooks.raise(Event::new("user.created", data_json(i))).await?;
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        debug_assert_eq!(r.queued as usize, k);
    }
    let ingest_secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let ingest_per_s = ingest_n as f64 / ingest_secs;
    let (ingest_p50, ingest_p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!(
        "ingest: {ingest_n} events × {k} webhooks in {ingest_secs:.2} s = {ingest_per_s:.0} events/s; raise p50 {ingest_p50:.3} ms, p99 {ingest_p99:.3} ms"
    );
    // One event per call from 16 concurrent callers (a panel's request
    // handlers): the intake commits what queued meanwhile as one group.
    let hooks = Arc::new(hooks);
    let t = Instant::now();
    let callers = 16;
    let per_caller = ingest_n / callers;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..callers {
        let hooks = hooks.clone();
        tasks.spawn(async move {
            for i in 0..per_caller {
                hooks.raise(Event::new("user.created", data_json(ingest_n + c * per_caller + i))).await?;
            }
            Ok::<_, webhooks_host::RaiseError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let concurrent_per_s = (callers * per_caller) as f64 / t.elapsed().as_secs_f64();
    println!("ingest, one event per call from {callers} concurrent callers: {concurrent_per_s:.0} events/s");
    let Ok(hooks) = Arc::try_unwrap(hooks) else { anyhow::bail!("the ingest callers still hold the integration") };
    // Batched raising (the /api/events/batch path).
    let t = Instant::now();
    let batches = ingest_n / 100;
    for b in 0..batches {
        let evs = (0..100).map(|i| Event::new("user.created", data_json(b * 100 + i))).collect();
        hooks.raise_batch(evs).await?;
    }
    let batch_per_s = (batches * 100) as f64 / t.elapsed().as_secs_f64();
    println!("ingest, batches of 100: {batch_per_s:.0} events/s");
    hooks.shutdown().await;
    drop(hooks);

    // 2. Delivery: queue, then drain with the default workers.
    let data = tmp.join("deliver");
    let mut cfg = config(&data, 0);
    cfg.cache_dir = Some(cache.clone());
    let intake = Webhooks::start(cfg).await?;
    create_webhooks(&intake, addr, k).await;
    for b in 0..deliver_events / 100 {
        let evs = (0..100).map(|i| Event::new("user.created", data_json(b * 100 + i))).collect();
        intake.raise_batch(evs).await?;
    }
    intake.shutdown().await;
    drop(intake);
    let total = (deliver_events / 100 * 100 * k) as u64;
    let mut cfg = config(&data, std::env::var("BENCH_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1));
    cfg.cache_dir = Some(cache.clone());
    let concurrency = (cfg.delivery_workers * cfg.batch_size as usize).min(k * cfg.per_webhook_concurrency as usize);
    let start_count = recv.count.load(Ordering::Relaxed);
    let t = Instant::now();
    let hooks = Webhooks::start(cfg).await?;
    while recv.count.load(Ordering::Relaxed) - start_count < total {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivery_secs = t.elapsed().as_secs_f64();
    let delivery_per_s = total as f64 / delivery_secs;
    println!(
        "delivery: {total} signed deliveries recorded in {delivery_secs:.2} s = {delivery_per_s:.0}/s (concurrency {concurrency})"
    );

    // 3. Baseline: a raw pooled hyper client, same bodies, same receiver, same concurrency.
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let body = Bytes::from(format!(
        r#"{{"type":"user.created","timestamp":"2026-01-01T00:00:00.000Z","data":{}}}"#,
        data_json(1)
    ));
    let next = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, body, next) = (client.clone(), body.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let req = http::Request::post(format!("http://{addr}/baseline"))
                    .header("content-type", "application/json")
                    .header("webhook-id", "msg_baseline")
                    .body(Full::new(body.clone()))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let baseline_per_s = total as f64 / t.elapsed().as_secs_f64();
    let ratio = delivery_per_s / baseline_per_s;
    println!("baseline: raw pooled hyper client {baseline_per_s:.0}/s; delivery/baseline = {ratio:.2}");

    // 4. Raise → receipt under load: a steady stream at half the measured delivery rate.
    recv.latencies.lock().await.clear();
    recv.measure.store(true, Ordering::Relaxed);
    let rate = (delivery_per_s / k as f64 / 2.0).max(100.0);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let t = Instant::now();
    let mut i = 0;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while t.elapsed() < Duration::from_secs(e2e_seconds) {
        tick.tick().await;
        hooks.raise(Event::new("user.created", data_json(i))).await?;
        i += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    recv.measure.store(false, Ordering::Relaxed);
    let mut e2e = recv.latencies.lock().await.clone();
    e2e.sort_by(f64::total_cmp);
    let (e2e_p50, e2e_p99) = (percentile(&e2e, 0.5), percentile(&e2e, 0.99));
    println!(
        "raise → receipt at {:.0} events/s × {k}: {} deliveries, p50 {e2e_p50:.2} ms, p99 {e2e_p99:.2} ms",
        rate,
        e2e.len()
    );
    hooks.shutdown().await;
    drop(hooks);
    out.extend([
        ("ingest_events_per_s".into(), json!(ingest_per_s.round())),
        ("ingest_p99_ms".into(), json!((ingest_p99 * 1000.0).round() / 1000.0)),
        ("ingest_concurrent_events_per_s".into(), json!(concurrent_per_s.round())),
        ("ingest_batch_events_per_s".into(), json!(batch_per_s.round())),
        ("delivery_per_s".into(), json!(delivery_per_s.round())),
        ("baseline_per_s".into(), json!(baseline_per_s.round())),
        ("ratio".into(), json!((ratio * 100.0).round() / 100.0)),
        ("e2e_p99_ms".into(), json!((e2e_p99 * 100.0).round() / 100.0)),
    ]);
    Ok(())
}

/// Phase 5, the `webhooks-host` binary: cold start, then peak RSS with 100,000 pending deliveries.
async fn binary_phases(
    exe: &Path,
    k: usize,
    tmp: &Path,
    serve_cache: &Path,
    out: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    // 5. Cold start of the binary, without and with the compiled cache; then
    //    peak RSS of that process with 100,000 pending deliveries.
    let cold_dir = tmp.join("cold");
    let (e, d, c) = (exe.to_owned(), cold_dir.clone(), serve_cache.to_owned());
    let cold_nocache = tokio::task::spawn_blocking(move || cold_start(&e, &d, &c)).await??;
    let (e, d, c) = (exe.to_owned(), cold_dir.clone(), serve_cache.to_owned());
    let (cold_cached, pid, base, mut child) =
        tokio::task::spawn_blocking(move || cold_start_keep(&e, &d, &c)).await??;
    println!("cold start to the first admin page: {cold_nocache:.0} ms without the cache, {cold_cached:.0} ms with it");
    let api = reqwest::Client::new();
    // Intake-only so the pending rows stay pending.
    let pending_events = 100_000usize.div_ceil(k);
    let hooks_made = {
        let mut cfg = config(&cold_dir, 0);
        cfg.cache_dir = Some(serve_cache.to_owned());
        let h = Webhooks::start(cfg).await?;
        create_webhooks(&h, "127.0.0.1:9".parse().unwrap(), k).await;
        h.shutdown().await;
        k
    };
    let mut sent = 0;
    while sent < pending_events {
        let n = (pending_events - sent).min(1000);
        let events: Vec<_> = (0..n)
            .map(|i| json!({"type": "user.created", "data": {"id": sent + i + 1, "email": "x@example.com"}}))
            .collect();
        let r = api
            .post(format!("{base}/api/events/batch"))
            .bearer_auth(API_TOKEN)
            .json(&json!({"events": events}))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "batch refused: {}", r.status());
        sent += n;
    }
    let rss = peak_rss_mib(pid);
    println!("peak RSS of webhooks-host with {} pending deliveries: {rss:.1} MiB", pending_events * hooks_made);
    let _ = child.kill();
    out.extend([
        ("cold_start_ms".into(), json!(cold_cached.round())),
        ("cold_start_uncached_ms".into(), json!(cold_nocache.round())),
        ("peak_rss_mib".into(), json!((rss * 10.0).round() / 10.0)),
    ]);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("webhooks-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

/// Starts `webhooks-host serve` on a free port and waits until it listens;
/// returns the process and its base URL. An empty `allowed_hosts` keeps the
/// default egress policy; its log (warnings and errors) goes to `log`, if given;
/// `env` is added to its environment.
fn start_serve(
    exe: &Path,
    data: &Path,
    cache: &Path,
    workers: usize,
    allowed_hosts: &str,
    log: Option<&Path>,
    env: &[(&str, String)],
) -> anyhow::Result<(Child, String)> {
    use std::io::BufRead;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    if workers != usize::MAX {
        cmd.args(["--workers", &workers.to_string()]);
    }
    cmd.arg("--data")
        .arg(data)
        .env("WEBHOOKS_CACHE_DIR", cache)
        .env("WEBHOOKS_API_TOKEN", API_TOKEN)
        .env("WEBHOOKS_ADMIN_PASSWORD", "bench-password")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(match log {
            Some(p) => Stdio::from(std::fs::File::create(p)?),
            None => Stdio::null(),
        });
    if !allowed_hosts.is_empty() {
        cmd.env("WEBHOOKS_ALLOWED_HOSTS", allowed_hosts);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn()?;
    let out = child.stdout.take().unwrap();
    let mut base = String::new();
    let mut lines = std::io::BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(a) = line.strip_prefix("webhooks-host listening on ") {
            base = a.to_owned();
            break;
        }
    }
    // Keep draining its output so the process never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    if base.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("webhooks-host did not start");
    }
    Ok((child, base))
}

/// Start → signed in → the dashboard rendered by the component.
fn cold_start_keep(exe: &Path, data: &Path, cache: &Path) -> anyhow::Result<(f64, u32, String, Child)> {
    let t = Instant::now();
    let (child, base) = start_serve(exe, data, cache, 0, "", None, &[])?;
    let pid = child.id();
    let c =
        reqwest::blocking::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()?;
    let login = c.get(format!("{base}/login")).send()?.text()?;
    let m = "name=\"csrf-token\" content=\"";
    let i = login.find(m).map(|i| i + m.len()).unwrap_or(0);
    let csrf = &login[i..i + 64];
    c.post(format!("{base}/login"))
        .form(&[
            ("username", "admin"),
            ("password", "bench-password"),
            ("_csrf", csrf),
            ("next", "/admin/integrations/webhooks"),
        ])
        .send()?;
    let page = c.get(format!("{base}/admin/integrations/webhooks")).send()?;
    anyhow::ensure!(page.status().as_u16() == 200, "dashboard answered {}", page.status());
    Ok((t.elapsed().as_secs_f64() * 1000.0, pid, base, child))
}

/// A first start: no compiled cache, a new database.
fn cold_start(exe: &Path, data: &Path, cache: &Path) -> anyhow::Result<f64> {
    let _ = std::fs::remove_dir_all(cache);
    let (ms, _, _, mut child) = cold_start_keep(exe, data, cache)?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(ms)
}

/// A child process killed when dropped, so a failed phase leaves nothing running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Microseconds since the epoch.
fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// CPU time (user + system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    static TICKS_PER_S: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let hz = *TICKS_PER_S.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().ok();
        out.and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok()).unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised command name: field 3 (state) onwards; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (field(14) + field(15)) / hz
}

/// The `raised_at_us` number in a delivered body, without parsing the JSON.
fn raised_at_us(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"raised_at_us\":";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = body[at..].trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// What the mixed phase's receiver has seen.
#[derive(Default)]
struct Received {
    count: AtomicU64,
    /// Raise → receipt, in ms, of every delivery that carried `raised_at_us`.
    latencies: std::sync::Mutex<Vec<f64>>,
}

/// The mixed phase's receiver, in its own process: a keep-alive HTTP server on
/// 127.0.0.1 that prints its port, counts `POST /hook/{i}`, answers
/// `GET /count` (the count as text) and `GET /stats` (JSON with percentiles),
/// and exits when its stdin closes (the bench ended, however it ended).
fn receiver_main() -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let state = Arc::new(Received::default());
        let (hook, count, stats) = (state.clone(), state.clone(), state);
        let app = axum::Router::new()
            .route(
                "/hook/{i}",
                post(move |body: Bytes| {
                    let st = hook.clone();
                    async move {
                        let now = now_us();
                        if let Some(sent) = raised_at_us(&body) {
                            st.latencies.lock().unwrap().push(now.saturating_sub(sent) as f64 / 1000.0);
                        }
                        st.count.fetch_add(1, Ordering::Relaxed);
                        "ok"
                    }
                }),
            )
            .route("/count", get(move || async move { count.count.load(Ordering::Relaxed).to_string() }))
            .route(
                "/stats",
                get(move || async move {
                    let mut l = stats.latencies.lock().unwrap().clone();
                    l.sort_by(f64::total_cmp);
                    axum::Json(json!({
                        "count": stats.count.load(Ordering::Relaxed),
                        "timed": l.len(),
                        "p50_ms": percentile(&l, 0.5),
                        "p99_ms": percentile(&l, 0.99),
                        "max_ms": l.last().copied().unwrap_or(0.0),
                    }))
                }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", l.local_addr()?.port());
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
        axum::serve(l, app).await?;
        Ok(())
    })
}

/// Re-runs this executable as the receiver; returns it and its port.
fn spawn_receiver() -> anyhow::Result<(KillOnDrop, u16)> {
    use std::io::BufRead;
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe()?)
            .env(RECEIVER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line)?;
    let port = line.trim().parse().map_err(|_| anyhow::anyhow!("the receiver did not start: {line:?}"))?;
    Ok((child, port))
}

/// One run of the mixed load: on one SQLite node, or on `nodes` nodes sharing one PostgreSQL database.
struct Mixed {
    /// The JSON key prefix (`mixed_f3`, `pg_n2`) and the heading of the printed lines.
    key: String,
    title: String,
    nodes: usize,
    window_s: f64,
    accepted: u64,
    refused: u64,
    failed: u64,
    /// Deliveries queued by the accepted events (sum of `queued`).
    owed: u64,
    received_in_window: u64,
    /// Seconds from the end of the window until every owed delivery arrived; None if not within the limit.
    drain_s: Option<f64>,
    received: u64,
    e2e_p50: f64,
    e2e_p99: f64,
    req_p50: f64,
    req_p99: f64,
    req_max: f64,
    /// Cores used during the window by the host (summed over its nodes), the receiver, this
    /// process (the raisers) and every `postgres` process on the machine.
    cores: [f64; 4],
}

impl Mixed {
    fn accepted_per_s(&self) -> f64 {
        self.accepted as f64 / self.window_s
    }
    fn delivered_per_s(&self) -> f64 {
        self.received_in_window as f64 / self.window_s
    }
    fn backlog_end(&self) -> u64 {
        self.owed.saturating_sub(self.received_in_window)
    }

    fn print(&self) {
        println!(
            "{}: {MIXED_CLIENTS} clients for {:.1} s: {} events accepted = {:.0}/s \
             (POST /api/events p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms; {} refused, {} failed)",
            self.title,
            self.window_s,
            self.accepted,
            self.accepted_per_s(),
            self.req_p50,
            self.req_p99,
            self.req_max,
            self.refused,
            self.failed,
        );
        let drain = match self.drain_s {
            Some(s) => format!("drained in {s:.2} s"),
            None => format!(
                "NOT drained within {} s ({} still owed)",
                MIXED_DRAIN_LIMIT.as_secs(),
                self.owed.saturating_sub(self.received)
            ),
        };
        println!(
            "  deliveries received in the window {} = {:.0}/s; backlog at window end {} of {} owed, {drain}; \
             raise → receipt p50 {:.2} ms, p99 {:.2} ms",
            self.received_in_window,
            self.delivered_per_s(),
            self.backlog_end(),
            self.owed,
            self.e2e_p50,
            self.e2e_p99,
        );
        let [host, recv, me, pg] = self.cores;
        let host = match self.nodes {
            1 => format!("webhooks-host {host:.2} cores"),
            n => format!("webhooks-host {host:.2} cores (sum of {n} nodes)"),
        };
        println!("  CPU in the window: {host}, postgres {pg:.2}, receiver {recv:.2}, raisers {me:.2}");
    }

    fn record(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        let k = &self.key;
        let r2 = |v: f64| (v * 100.0).round() / 100.0;
        out.extend([
            (format!("{k}_accepted_per_s"), json!(self.accepted_per_s().round())),
            (format!("{k}_delivered_per_s"), json!(self.delivered_per_s().round())),
            (format!("{k}_owed_end"), json!(self.owed)),
            (format!("{k}_backlog_end"), json!(self.backlog_end())),
            (format!("{k}_drain_s"), json!(self.drain_s.map(r2))),
            (format!("{k}_p50_ms"), json!(r2(self.e2e_p50))),
            (format!("{k}_p99_ms"), json!(r2(self.e2e_p99))),
            (format!("{k}_req_p50_ms"), json!((self.req_p50 * 1000.0).round() / 1000.0)),
            (format!("{k}_req_p99_ms"), json!((self.req_p99 * 1000.0).round() / 1000.0)),
            (format!("{k}_host_cores"), json!(r2(self.cores[0]))),
            (format!("{k}_postgres_cores"), json!(r2(self.cores[3]))),
        ]);
    }
}

/// What one raising client did.
#[derive(Default)]
struct Raiser {
    latencies: Vec<f64>,
    accepted: u64,
    refused: u64,
    failed: u64,
    queued: u64,
    /// The first refusal: status and body.
    refusal: Option<String>,
}

/// CPU time every `postgres` process (server and backends) has used so far, in seconds.
fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(cpu_seconds)
        .sum()
}

/// Mixed load over HTTP on one new `webhooks-host serve` (default workers) and
/// its own SQLite file in a new data folder.
async fn mixed(exe: &Path, tmp: &Path, cache: &Path, fan_out: usize, seconds: u64) -> anyhow::Result<Mixed> {
    let title = format!("mixed over HTTP, SQLite, 1 node, fan-out {fan_out}");
    let name = format!("mixed-f{fan_out}");
    drive(exe, tmp, cache, &name, &[], 1, fan_out, seconds, format!("mixed_f{fan_out}"), title).await
}

/// Mixed load over HTTP: `nodes` new `webhooks-host serve` processes (default
/// workers, each with its own data folder and `env`), `fan_out` signed webhooks
/// created through the first node's API to a receiver in another process;
/// [`MIXED_CLIENTS`] keep-alive clients raise `user.created` one per
/// `POST /api/events`, round-robin over the nodes, for `seconds`, then the backlog drains.
#[allow(clippy::too_many_arguments)]
async fn drive(
    exe: &Path,
    tmp: &Path,
    cache: &Path,
    name: &str,
    env: &[(&'static str, String)],
    nodes: usize,
    fan_out: usize,
    seconds: u64,
    key: String,
    title: String,
) -> anyhow::Result<Mixed> {
    let (receiver, port) = tokio::task::spawn_blocking(spawn_receiver).await??;
    // The host's default worker count unless BENCH_MIXED_WORKERS says otherwise.
    let workers = std::env::var("BENCH_MIXED_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    let mut hosts = Vec::new();
    let mut bases = Vec::new();
    let mut logs = Vec::new();
    for n in 1..=nodes {
        let (data, log) = (tmp.join(format!("{name}-node{n}")), tmp.join(format!("{name}-node{n}.log")));
        let (e, c, l, env) = (exe.to_owned(), cache.to_owned(), log.clone(), env.to_vec());
        let (host, base) =
            tokio::task::spawn_blocking(move || start_serve(&e, &data, &c, workers, "127.0.0.1", Some(&l), &env))
                .await??;
        hosts.push(KillOnDrop(host));
        bases.push(base);
        logs.push(log);
    }
    let host_pids: Vec<u32> = hosts.iter().map(|h| h.0.id()).collect();
    let recv_pid = receiver.0.id();
    let api = reqwest::Client::new();
    for i in 0..fan_out {
        let r = api
            .post(format!("{}/api/webhooks", bases[0]))
            .bearer_auth(API_TOKEN)
            .json(&json!({
                "name": format!("mixed {i}"),
                "url": format!("http://127.0.0.1:{port}/hook/{i}"),
                "events": ["user.created"],
                "secret": SECRET,
            }))
            .send()
            .await?;
        let status = r.status().as_u16();
        anyhow::ensure!(status == 201, "creating a webhook answered {status}: {}", r.text().await?);
    }
    let count_url = format!("http://127.0.0.1:{port}/count");
    let received = || async { anyhow::Ok(api.get(&count_url).send().await?.text().await?.trim().parse::<u64>()?) };

    let cpu = || {
        let host: f64 = host_pids.iter().map(|&p| cpu_seconds(p)).sum();
        [host, cpu_seconds(recv_pid), cpu_seconds(std::process::id()), postgres_cpu_seconds()]
    };
    let cpu0 = cpu();
    let t = Instant::now();
    let until = t + Duration::from_secs(seconds);
    let urls: Arc<Vec<String>> = Arc::new(bases.iter().map(|b| format!("{b}/api/events")).collect());
    let mut tasks = Vec::new();
    for c in 0..MIXED_CLIENTS {
        let urls = urls.clone();
        tasks.push(tokio::spawn(async move {
            // One idle connection per node: each request goes to the next node, kept alive.
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let mut r = Raiser::default();
            let mut n = 0;
            while Instant::now() < until {
                let body = format!(r#"{{"type":"user.created","data":{}}}"#, data_json(c * 100_000_000 + n));
                let url = &urls[(c + n) % urls.len()];
                n += 1;
                let t0 = Instant::now();
                let resp = client
                    .post(url)
                    .bearer_auth(API_TOKEN)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let Ok(resp) = resp else {
                    r.failed += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let status = resp.status().as_u16();
                let Ok(answer) = resp.bytes().await else {
                    r.failed += 1;
                    continue;
                };
                r.latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                if status == 202 {
                    r.accepted += 1;
                    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
                    r.queued += v["queued"].as_u64().unwrap_or(0);
                } else {
                    r.refused += 1;
                    if r.refusal.is_none() {
                        r.refusal = Some(format!("{status} {}", String::from_utf8_lossy(&answer)));
                    }
                }
            }
            r
        }));
    }
    let mut all = Raiser::default();
    for task in tasks {
        let r = task.await?;
        all.latencies.extend(r.latencies);
        all.accepted += r.accepted;
        all.refused += r.refused;
        all.failed += r.failed;
        all.queued += r.queued;
        all.refusal = all.refusal.or(r.refusal);
    }
    let window_s = t.elapsed().as_secs_f64();
    let received_in_window = received().await?;
    let cpu1 = cpu();

    let end = Instant::now();
    let mut got = received_in_window;
    while got < all.queued && end.elapsed() < MIXED_DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = received().await?;
    }
    let drain_s = (got >= all.queued).then(|| end.elapsed().as_secs_f64());
    let stats: serde_json::Value = api.get(format!("http://127.0.0.1:{port}/stats")).send().await?.json().await?;
    let (count, timed) = (stats["count"].as_u64().unwrap_or(0), stats["timed"].as_u64().unwrap_or(0));
    if timed < count {
        println!("  warning: {} of {count} deliveries carried no raised_at_us", count - timed);
    }
    drop(hosts);
    drop(receiver);
    // Something went wrong on the host's side: show why.
    if all.refused + all.failed > 0 || drain_s.is_none() || window_s > seconds as f64 + 1.0 {
        if let Some(r) = &all.refusal {
            println!("  first refusal: {r}");
        }
        for (n, log) in logs.iter().enumerate() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            println!("  webhooks-host node {} log, last {} of {} lines:", n + 1, lines.len().min(20), lines.len());
            for l in &lines[lines.len().saturating_sub(20)..] {
                println!("    {l}");
            }
        }
    }

    all.latencies.sort_by(f64::total_cmp);
    let cores = std::array::from_fn(|i| (cpu1[i] - cpu0[i]) / window_s);
    Ok(Mixed {
        key,
        title,
        nodes,
        window_s,
        accepted: all.accepted,
        refused: all.refused,
        failed: all.failed,
        owed: all.queued,
        received_in_window,
        drain_s,
        received: count,
        e2e_p50: stats["p50_ms"].as_f64().unwrap_or(0.0),
        e2e_p99: stats["p99_ms"].as_f64().unwrap_or(0.0),
        req_p50: percentile(&all.latencies, 0.5),
        req_p99: percentile(&all.latencies, 0.99),
        req_max: all.latencies.last().copied().unwrap_or(0.0),
        cores,
    })
}

/// The PostgreSQL server the PostgreSQL phase uses (`WEBHOOKS_BENCH_POSTGRES`, without a database).
fn postgres_server() -> String {
    std::env::var("WEBHOOKS_BENCH_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_owned()
}

/// A connection to the server's `postgres` database, or None when no server answers.
async fn postgres_admin() -> Option<tokio_postgres::Client> {
    let url = format!("{}/postgres", postgres_server());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(conn);
    Some(client)
}

/// The same load as the mixed phase with fan-out `fan_out`, on 1, 2 and 3 nodes
/// sharing one new PostgreSQL database per node count (dropped afterwards).
async fn postgres_phase(
    exe: &Path,
    tmp: &Path,
    cache: &Path,
    fan_out: usize,
    seconds: u64,
    out: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let Some(admin) = postgres_admin().await else {
        println!("PostgreSQL: skipped (no server answers at {})", postgres_server());
        return Ok(());
    };
    // Every node must seal and open webhook secrets with the same key.
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random key: {e}"))?;
    for nodes in 1..=3 {
        let db = format!("webhooks_bench_{}_{nodes}", std::process::id());
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await?;
        admin.batch_execute(&format!("CREATE DATABASE \"{db}\"")).await?;
        let env = [
            ("WEBHOOKS_DATABASE_URL", format!("{}/{db}", postgres_server())),
            ("WEBHOOKS_SECRET_KEY", hex::encode(key)),
        ];
        let title = format!(
            "mixed over HTTP, PostgreSQL, {nodes} node{}, fan-out {fan_out}",
            if nodes == 1 { "" } else { "s" }
        );
        let run = drive(
            exe,
            tmp,
            cache,
            &format!("pg-n{nodes}"),
            &env,
            nodes,
            fan_out,
            seconds,
            format!("pg_n{nodes}"),
            title,
        )
        .await;
        // Dropped whether or not the run succeeded (the nodes are stopped by now).
        let dropped = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
        let m = run?;
        dropped?;
        m.print();
        m.record(out);
    }
    Ok(())
}

/// The headline figures of this run side by side: the raw hyper client, one
/// SQLite node and 1–3 PostgreSQL nodes, at fan-out 3 (what is present).
fn print_comparison(out: &serde_json::Map<String, serde_json::Value>) {
    let mut lines = Vec::new();
    if let Some(b) = out.get("baseline_per_s").and_then(|v| v.as_f64()) {
        lines.push(format!("  {:<24} {b:>6}/s (raw hyper client, no storage, in-process receiver)", "baseline"));
    }
    for (key, label) in [
        ("mixed_f3", "SQLite, 1 node".to_owned()),
        ("pg_n1", "PostgreSQL, 1 node".to_owned()),
        ("pg_n2", "PostgreSQL, 2 nodes".to_owned()),
        ("pg_n3", "PostgreSQL, 3 nodes".to_owned()),
    ] {
        let g = |s: &str| match out.get(&format!("{key}_{s}")).and_then(|v| v.as_f64()) {
            Some(v) => v.to_string(),
            None => "-".into(),
        };
        if out.get(&format!("{key}_delivered_per_s")).is_none() {
            continue;
        }
        lines.push(format!(
            "  {label:<24} {:>6}/s delivered ({:>5}/s accepted); raise → receipt p50 {} ms, p99 {} ms; \
             backlog {}, drained in {} s; CPU: host {} cores, postgres {}",
            g("delivered_per_s"),
            g("accepted_per_s"),
            g("p50_ms"),
            g("p99_ms"),
            g("backlog_end"),
            g("drain_s"),
            g("host_cores"),
            g("postgres_cores"),
        ));
    }
    if lines.len() > 1 {
        println!("comparison, deliveries/s over HTTP at fan-out 3 (same run, same 2 cores):");
        lines.iter().for_each(|l| println!("{l}"));
    }
}
