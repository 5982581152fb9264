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
//! cache, and peak RSS of that process with 100,000 pending deliveries. The
//! last line printed is one JSON object with the headline figures.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

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
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
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
                ("secret".into(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
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
    let us = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
    format!(r#"{{"id":{i},"email":"user{i}@example.com","name":"User {i}","raised_at_us":{us}}}"#)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let k = args.webhooks.max(1);
    let (ingest_n, deliver_events, e2e_seconds) = if args.quick { (10_000, 5_000, 3) } else { (50_000, 20_000, 10) };
    let tmp = tempfile_dir()?;
    let cache = tmp.join("cache");
    let (addr, recv) = start_receiver().await;
    println!("webhooks-bench: {k} webhooks, {} mode", if args.quick { "quick" } else { "full" });

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

    // 5. Cold start of the binary, without and with the compiled cache; then
    //    peak RSS of that process with 100,000 pending deliveries.
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_webhooks-host"));
    let cold_dir = tmp.join("cold");
    let (e, d, c) = (exe.clone(), cold_dir.clone(), tmp.join("cold-cache"));
    let cold_nocache = tokio::task::spawn_blocking(move || cold_start(&e, &d, &c)).await??;
    let (e, d, c) = (exe.clone(), cold_dir.clone(), tmp.join("cold-cache"));
    let (cold_cached, pid, base, mut child) =
        tokio::task::spawn_blocking(move || cold_start_keep(&e, &d, &c)).await??;
    println!("cold start to the first admin page: {cold_nocache:.0} ms without the cache, {cold_cached:.0} ms with it");
    let api = reqwest::Client::new();
    // Intake-only so the pending rows stay pending.
    let pending_events = 100_000usize.div_ceil(k);
    let hooks_made = {
        let mut cfg = config(&cold_dir, 0);
        cfg.cache_dir = Some(tmp.join("cold-cache"));
        let h = Webhooks::start(cfg).await?;
        create_webhooks(&h, "127.0.0.1:9".parse().unwrap(), k).await;
        h.shutdown().await;
        k
    };
    let mut sent = 0;
    while sent < pending_events {
        let n = (pending_events - sent).min(1000);
        let events: Vec<_> = (0..n)
            .map(|i| json!({"type": "user.created", "data": {"id": sent + i, "email": "x@example.com"}}))
            .collect();
        let r = api
            .post(format!("{base}/api/events/batch"))
            .bearer_auth("bench-token")
            .json(&json!({"events": events}))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 202, "batch refused: {}", r.status());
        sent += n;
    }
    let rss = peak_rss_mib(pid);
    println!("peak RSS of webhooks-host with {} pending deliveries: {rss:.1} MiB", pending_events * hooks_made);
    let _ = child.kill();
    let _ = child.wait();

    let out = json!({
        "ingest_events_per_s": ingest_per_s.round(),
        "ingest_p99_ms": (ingest_p99 * 1000.0).round() / 1000.0,
        "ingest_batch_events_per_s": batch_per_s.round(),
        "delivery_per_s": delivery_per_s.round(),
        "baseline_per_s": baseline_per_s.round(),
        "ratio": (ratio * 100.0).round() / 100.0,
        "e2e_p99_ms": (e2e_p99 * 100.0).round() / 100.0,
        "cold_start_ms": cold_cached.round(),
        "cold_start_uncached_ms": cold_nocache.round(),
        "peak_rss_mib": (rss * 10.0).round() / 10.0,
    });
    let _ = std::fs::remove_dir_all(&tmp);
    println!("{out}");
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("webhooks-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

fn spawn_serve(exe: &Path, data: &Path, cache: &Path) -> anyhow::Result<std::process::Child> {
    Ok(Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "0", "--data"])
        .arg(data)
        .env("WEBHOOKS_CACHE_DIR", cache)
        .env("WEBHOOKS_API_TOKEN", "bench-token")
        .env("WEBHOOKS_ADMIN_PASSWORD", "bench-password")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?)
}

/// Start → signed in → the dashboard rendered by the component.
fn cold_start_keep(exe: &Path, data: &Path, cache: &Path) -> anyhow::Result<(f64, u32, String, std::process::Child)> {
    use std::io::BufRead;
    let t = Instant::now();
    let mut child = spawn_serve(exe, data, cache)?;
    let pid = child.id();
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
    anyhow::ensure!(!base.is_empty(), "webhooks-host did not start");
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
