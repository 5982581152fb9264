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
//!
//! The PostgreSQL runs are made at each round trip of `--pg-rtt-ms` (default
//! `0,0.5`). At 0 the nodes talk to PostgreSQL and the receiver over loopback,
//! where a statement's round trip costs microseconds. Above 0, each node runs
//! in its own network namespace, joined to this one by a veth pair, and reaches
//! PostgreSQL and the receiver only through a relay on this side, so every
//! packet between them crosses the delay: half the round trip each way, as on
//! a network between machines. The kernel's `netem` does the delay where it
//! exists; where it does not (this machine's kernel has no netem), the relay
//! holds every chunk for the one-way delay itself, and its round trip is
//! measured before the runs. The raising clients reach the nodes directly
//! (through the veth, undelayed: a panel sits next to its integration).
//! Without the rights to make namespaces, the delayed runs say so and use the
//! relay on loopback.
//!
//! The last lines compare the delivery rates; the very last is one JSON object
//! with the headline figures.
//!
//! `-- --only transform` measures what a webhook's transformation (#24) costs
//! per delivery: one run of the example `examples/transform-slack` (built
//! here for wasm32-wasip2), compiled and cached, timed on its own (p50, p99),
//! and the same backlog drained through one webhook with and without it.
//!
//! `-- --only mixed` runs only the mixed phase on SQLite; `-- --only postgres`
//! only its PostgreSQL runs, with the SQLite node at fan-out 3 as their
//! reference. The receiver of those phases, the relay and the relay's ping are
//! this same executable, re-run with `WEBHOOKS_BENCH_RECEIVER=1`,
//! `WEBHOOKS_BENCH_RELAY=…` or `WEBHOOKS_BENCH_PING=…`, so their CPU is counted
//! apart and they take no turns on the raisers' runtime.

use std::net::{Ipv4Addr, SocketAddr};
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
    /// PostgreSQL runs: the round trips, in ms, between each node and PostgreSQL (and the
    /// receiver), comma-separated; 1, 2 and 3 nodes run at each; 0 is plain loopback.
    #[arg(long, value_delimiter = ',', default_value = "0,0.5")]
    pg_rtt_ms: Vec<f64>,
    /// PostgreSQL runs: raising clients.
    #[arg(long, default_value_t = MIXED_CLIENTS)]
    pg_clients: usize,
    /// PostgreSQL runs: the nodes' WEBHOOKS_PER_WEBHOOK_CONCURRENCY [default: the host's].
    #[arg(long)]
    pg_per_webhook_concurrency: Option<u32>,
    /// Mixed phase: also run it on this other `webhooks-host` binary (a release
    /// build of an earlier commit, say), alternating with this build's in the
    /// order A B B A at each fan-out so that drift on the machine falls on both,
    /// and print the two side by side (mean rates, mean p99, highest peak RSS).
    #[arg(long, value_name = "PATH")]
    compare_host: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A phase that can run alone.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// Mixed load over HTTP: raising through the API while the workers deliver.
    Mixed,
    /// The mixed load at fan-out 3 on 1, 2 and 3 nodes sharing one PostgreSQL database, at
    /// each round trip, beside one SQLite node.
    Postgres,
    /// A transformation's cost per delivery (#24): the example one, cached, against none.
    Transform,
}

/// In the environment of a re-run of this executable: be only the mixed
/// phase's receiver (see [`receiver_main`]).
const RECEIVER_ENV: &str = "WEBHOOKS_BENCH_RECEIVER";
/// … be only a delay relay (see [`relay_main`]).
const RELAY_ENV: &str = "WEBHOOKS_BENCH_RELAY";
/// … be only the ping-pong client that measures the relay's round trip (see [`ping_main`]).
const PING_ENV: &str = "WEBHOOKS_BENCH_PING";
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

/// Starts a new peak for this process's `VmHWM` (`clear_refs` 5, Linux 4.0+), so
/// each in-process phase reports its own peak; answers whether it could.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
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
    if let Ok(spec) = std::env::var(RELAY_ENV) {
        return relay_main(&spec);
    }
    if let Ok(spec) = std::env::var(PING_ENV) {
        return ping_main(&spec);
    }
    let args = Args::parse();
    anyhow::ensure!(
        args.pg_rtt_ms.iter().all(|r| r.is_finite() && *r >= 0.0),
        "--pg-rtt-ms: round trips are milliseconds, 0 or more"
    );
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(async {
        // On Ctrl-C the run is dropped where it waits, so its guards still remove the
        // namespaces and stop the processes they hold.
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let k = args.webhooks.max(1);
    let tmp = tempfile_dir()?;
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_webhooks-host"));
    // The compiled-component cache of the `webhooks-host` processes (cold start fills it).
    let serve_cache = tmp.join("cold-cache");
    println!("webhooks-bench: {k} webhooks, {} mode", if args.quick { "quick" } else { "full" });
    let mut out = serde_json::Map::new();
    if args.only == Some(Phase::Transform) {
        transform_phase(&args, &tmp, &mut out).await?;
        let _ = std::fs::remove_dir_all(&tmp);
        println!("{}", serde_json::Value::Object(out));
        return Ok(());
    }
    if args.only.is_none() {
        library_phases(&args, k, &tmp, &mut out).await?;
        binary_phases(&exe, k, &tmp, &serve_cache, &mut out).await?;
        transform_phase(&args, &tmp, &mut out).await?;
    }

    // 6. Mixed load over HTTP, as a panel drives it: fan-out 1, then 3, each on a new host and data folder.
    let seconds = if args.quick { 5 } else { 20 };
    // With --only postgres, fan-out 3 still runs: it is the PostgreSQL runs' reference.
    let fan_outs: &[usize] = if args.only == Some(Phase::Postgres) { &[3] } else { &[1, 3] };
    for &fan_out in fan_outs {
        let Some(other) = args.compare_host.as_deref().filter(|_| args.only != Some(Phase::Postgres)) else {
            let m = mixed(&exe, &tmp, &serve_cache, fan_out, seconds, "").await?;
            m.print();
            m.record(&mut out);
            continue;
        };
        let (mut this, mut that) = (Vec::new(), Vec::new());
        for (round, on_other) in [false, true, true, false].into_iter().enumerate() {
            let (bin, runs, tag) =
                if on_other { (other, &mut that, "other") } else { (exe.as_path(), &mut this, "this") };
            let mut m = mixed(bin, &tmp, &serve_cache, fan_out, seconds, &format!("-{tag}{round}")).await?;
            m.title = format!("{} [{tag} build, round {}]", m.title, round + 1);
            m.print();
            runs.push(m);
        }
        this[0].record(&mut out);
        print_build_comparison(fan_out, other, &this, &that, &mut out);
    }
    // 7. The same at fan-out 3 on 1, 2, 3 nodes sharing one PostgreSQL database, if a server answers.
    if args.only != Some(Phase::Mixed) {
        postgres_phase(&args, &exe, &tmp, &serve_cache, 3, seconds, &mut out).await?;
    }
    print_comparison(&out, &args.pg_rtt_ms);
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
    //    Peak RSS per phase is this process's: the library, the in-process
    //    receiver and the baseline client together.
    let peaks = reset_peak_rss();
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
    let ingest_rss = peak_rss_mib(std::process::id());
    if peaks {
        println!("  peak RSS of this process during ingest: {ingest_rss:.1} MiB");
    }
    reset_peak_rss();

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
    let drain_rss = peak_rss_mib(std::process::id());
    if peaks {
        println!("  peak RSS of this process during the queue and the drain: {drain_rss:.1} MiB");
    }

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
    if peaks {
        out.insert("ingest_peak_rss_mib".into(), json!((ingest_rss * 10.0).round() / 10.0));
        out.insert("drain_peak_rss_mib".into(), json!((drain_rss * 10.0).round() / 10.0));
    }
    Ok(())
}

/// Builds the example transformation `name` (`examples/`, a workspace of
/// its own) for wasm32-wasip2 in `target/examples`; answers its bytes.
fn example_component(name: &str) -> anyhow::Result<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host-shim sits in the workspace");
    let target = root.join("target").join("examples");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root.join("examples"))
        .args(["build", "--release", "--target", "wasm32-wasip2", "-p", name, "--target-dir"])
        .arg(&target);
    for v in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR"] {
        cmd.env_remove(v);
    }
    anyhow::ensure!(cmd.status()?.success(), "building examples/{name} for wasm32-wasip2 failed");
    Ok(std::fs::read(target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_"))))?)
}

/// A transformation's cost per delivery (#24): the example Slack one.
/// 1. One run, compiled and cached as deliveries find it: a fresh instance,
///    the call, its answer checked (`Transformer::run`), timed alone.
/// 2. A backlog of `user.created` deliveries to one webhook, drained by the
///    library with one worker, without and then with the transformation;
///    the difference per delivery is what it adds to the whole path (the
///    plugin's call into the host, the run, the note kept with the attempt).
async fn transform_phase(
    args: &Args,
    tmp: &Path,
    out: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    use webhooks_host::bindings::transform::Input;
    use webhooks_host::transform::Transformer;
    let wasm = example_component("transform-slack")?;
    let t = Transformer::new(&tmp.join("transform-cache"), 4)?;
    let t0 = Instant::now();
    let digest = t.load(&wasm).map_err(|e| anyhow::anyhow!("loading the example: {e:?}"))?;
    let compile_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let fresh = Transformer::new(&tmp.join("transform-cache"), 4)?;
    let t0 = Instant::now();
    fresh.load(&wasm).map_err(|e| anyhow::anyhow!("loading the example again: {e:?}"))?;
    let cached_load_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let input = Input {
        event_type: "user.created".into(),
        msg_id: "msg_bench".into(),
        timestamp: "2026-01-01T00:00:00.000Z".into(),
        body: format!(r#"{{"type":"user.created","timestamp":"2026-01-01T00:00:00.000Z","data":{}}}"#, data_json(1)),
    };
    let runs = if args.quick { 2_000 } else { 20_000 };
    for _ in 0..200 {
        t.run(&digest, &input).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let mut us = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let r = t.run(&digest, &input).await;
        us.push(t0.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(r.is_ok(), "the example failed: {r:?}");
    }
    us.sort_by(f64::total_cmp);
    let (run_p50, run_p99) = (percentile(&us, 0.5), percentile(&us, 0.99));
    println!(
        "transform: compile {compile_ms:.1} ms (from the compiled cache {cached_load_ms:.1} ms); one cached run of \
         examples/transform-slack p50 {run_p50:.1} µs, p99 {run_p99:.1} µs ({runs} runs)"
    );

    // 2. The whole delivery path, with and without.
    let n = if args.quick { 3_000 } else { 10_000 };
    let (addr, recv) = start_receiver().await;
    let mut per = [0.0f64; 2];
    let mut in_path = (f64::NAN, f64::NAN);
    for (i, with) in [false, true].into_iter().enumerate() {
        let data = tmp.join(format!("transform-{with}"));
        let cache = tmp.join("cache");
        let mut cfg = config(&data, 0);
        cfg.cache_dir = Some(cache.clone());
        let intake = Webhooks::start(cfg).await?;
        create_webhooks(&intake, addr, 1).await;
        if with {
            use base64::Engine as _;
            let body = json!({"component": base64::engine::general_purpose::STANDARD.encode(&wasm)}).to_string();
            let r = intake
                .api(&webhooks_host::bindings::ex::management::ApiRequest {
                    method: "PUT".into(),
                    path: "/webhooks/1/transform".into(),
                    query: vec![],
                    body,
                    actor: "bench".into(),
                })
                .await?;
            anyhow::ensure!(r.status == 200, "attaching the example: {} {}", r.status, r.body);
        }
        for b in 0..n / 100 {
            let evs = (0..100).map(|i| Event::new("user.created", data_json(b * 100 + i))).collect();
            intake.raise_batch(evs).await?;
        }
        intake.shutdown().await;
        drop(intake);
        let mut cfg = config(&data, 1);
        cfg.cache_dir = Some(cache);
        let start_count = recv.count.load(Ordering::Relaxed);
        let hooks = Webhooks::start(cfg).await?;
        // Timed from the first delivery: the start (migrations, the component) is the same either way.
        while recv.count.load(Ordering::Relaxed) == start_count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let t = Instant::now();
        while recv.count.load(Ordering::Relaxed) - start_count < n as u64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        per[i] = secs * 1e6 / (n as f64 - 1.0);
        println!(
            "transform: {n} deliveries to one webhook {} in {secs:.2} s = {:.0}/s, {:.1} µs each",
            if with { "with the example transformation" } else { "without a transformation" },
            (n as f64 - 1.0) / secs,
            per[i]
        );
        if with {
            // Each run as the drain made it (the host's own histogram of
            // runs): on the path, beside the plugin and the receiver.
            let text = hooks.metrics_text().await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let buckets = histogram(&text, "webhooks_transform_duration_seconds", "result=\"sent\"");
            let total = buckets.last().map_or(0.0, |b| b.1);
            anyhow::ensure!(total >= n as f64, "the histogram counted {total} runs of {n}");
            let within_50 = buckets.iter().find(|(le, _)| (*le - 50e-6).abs() < 1e-9).map_or(f64::NAN, |b| b.1);
            in_path = (histogram_quantile(&buckets, 0.5) * 1e6, within_50 / total);
            println!(
                "transform: on the whole path, runs p50 {:.1} µs (interpolated in its bucket), {:.1} % of {total} runs within 50 µs",
                in_path.0,
                in_path.1 * 100.0
            );
        }
        hooks.shutdown().await;
        drop(hooks);
    }
    let added = per[1] - per[0];
    println!(
        "transform: a cached transformation adds {run_p50:.1} µs per delivery at p50 (the run alone); {added:.1} µs per delivery on the whole path (drained with one worker)"
    );
    out.extend([
        ("transform_compile_ms".into(), json!((compile_ms * 10.0).round() / 10.0)),
        ("transform_run_p50_us".into(), json!((run_p50 * 10.0).round() / 10.0)),
        ("transform_run_p99_us".into(), json!((run_p99 * 10.0).round() / 10.0)),
        ("transform_delivery_us_without".into(), json!((per[0] * 10.0).round() / 10.0)),
        ("transform_delivery_us_with".into(), json!((per[1] * 10.0).round() / 10.0)),
        ("transform_added_us_per_delivery".into(), json!((added * 10.0).round() / 10.0)),
        ("transform_in_path_run_p50_us".into(), json!((in_path.0 * 10.0).round() / 10.0)),
        ("transform_in_path_share_within_50us".into(), json!((in_path.1 * 1000.0).round() / 1000.0)),
    ]);
    Ok(())
}

/// The cumulative buckets `(le, count)` of one series of a histogram in an
/// OpenMetrics text (`+Inf` last).
fn histogram(text: &str, name: &str, label: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside the
/// bucket it falls in (as Prometheus' `histogram_quantile`).
fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return below.0;
            }
            let share = if count > below.1 { (rank - below.1) / (count - below.1) } else { 0.0 };
            return below.0 + (le - below.0) * share;
        }
        below = (le, count);
    }
    f64::NAN
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

/// Where a `webhooks-host serve` node runs: a network namespace (or this one)
/// and the address it listens on there.
#[derive(Clone)]
struct Place {
    netns: Option<String>,
    ip: Ipv4Addr,
}

impl Place {
    fn loopback() -> Self {
        Place { netns: None, ip: Ipv4Addr::LOCALHOST }
    }

    /// `program` started in this place.
    fn command(&self, program: &Path) -> Command {
        match &self.netns {
            // `ip netns exec` execs the program, so the child's pid is the program's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }
}

/// Starts `webhooks-host serve` at `at` on a free port and waits until it
/// listens; returns the process and its base URL. Its log (warnings and
/// errors) goes to `log`, if given; `env` is added to its environment (the
/// default egress policy unless it sets `WEBHOOKS_ALLOWED_HOSTS`).
fn start_serve(
    exe: &Path,
    data: &Path,
    cache: &Path,
    workers: usize,
    at: &Place,
    log: Option<&Path>,
    env: &[(&str, String)],
) -> anyhow::Result<(Child, String)> {
    use std::io::BufRead;
    let mut cmd = at.command(exe);
    cmd.args(["serve", "--listen", &format!("{}:0", at.ip)]);
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
    let (child, base) = start_serve(exe, data, cache, 0, &Place::loopback(), None, &[])?;
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
    /// Arrivals per `webhook-id`. The id is the same on every attempt of one event to
    /// one webhook, and attempts carry nothing else that tells them apart (the
    /// timestamp has whole seconds), so the count is per delivery. This receiver
    /// answers every request at once with 200, so no attempt fails or times out and
    /// a second arrival is a delivery sent twice (two nodes sending one claimed
    /// row, or a lease that ran out under a live send).
    ids: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Deliveries without a `webhook-id` header.
    no_id: AtomicU64,
}

impl Received {
    /// Ids that arrived more than once, the arrivals beyond the first, and a few of them.
    fn duplicates(&self) -> (u64, u64, Vec<String>) {
        let ids = self.ids.lock().unwrap();
        let twice: Vec<(&String, &u32)> = ids.iter().filter(|(_, n)| **n > 1).collect();
        let extra = twice.iter().map(|(_, n)| u64::from(**n - 1)).sum();
        let examples = twice.iter().take(3).map(|(id, n)| format!("{id} ×{n}")).collect();
        (twice.len() as u64, extra, examples)
    }
}

/// The mixed phase's receiver, in its own process: a keep-alive HTTP server on
/// 127.0.0.1 that prints its port, counts `POST /hook/{i}` (and each
/// `webhook-id`), answers `GET /count` (the count as text) and `GET /stats`
/// (JSON with percentiles and duplicates), and exits when its stdin closes
/// (the bench ended, however it ended).
fn receiver_main() -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let state = Arc::new(Received::default());
        let (hook, count, stats) = (state.clone(), state.clone(), state);
        let app = axum::Router::new()
            .route(
                "/hook/{i}",
                post(move |headers: http::HeaderMap, body: Bytes| {
                    let st = hook.clone();
                    async move {
                        let now = now_us();
                        if let Some(sent) = raised_at_us(&body) {
                            st.latencies.lock().unwrap().push(now.saturating_sub(sent) as f64 / 1000.0);
                        }
                        match headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                            Some(id) => *st.ids.lock().unwrap().entry(id.to_owned()).or_default() += 1,
                            None => {
                                st.no_id.fetch_add(1, Ordering::Relaxed);
                            }
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
                    let (duplicates, extra, examples) = stats.duplicates();
                    axum::Json(json!({
                        "count": stats.count.load(Ordering::Relaxed),
                        "timed": l.len(),
                        "p50_ms": percentile(&l, 0.5),
                        "p99_ms": percentile(&l, 0.99),
                        "max_ms": l.last().copied().unwrap_or(0.0),
                        "duplicates": duplicates,
                        "duplicate_arrivals": extra,
                        "duplicate_examples": examples,
                        "no_id": stats.no_id.load(Ordering::Relaxed),
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
    /// The JSON key prefix (`mixed_f3`, `pg_n2_rtt0.5`) and the heading of the printed lines.
    key: String,
    title: String,
    nodes: usize,
    clients: usize,
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
    cores: Cores,
    /// Attempts each node recorded as succeeded during the window (its `/metrics`).
    node_sent: Vec<u64>,
    /// Round trips to PostgreSQL in the window, from the nodes' `/metrics`.
    round_trips: Option<RoundTrips>,
    /// Attempts the nodes recorded as failed (retrying or exhausted), window and drain.
    failed_attempts: u64,
    /// Deliveries (`webhook-id`s) that arrived more than once, the arrivals beyond
    /// the first, and a few of them; over the window and the drain.
    duplicates: u64,
    duplicate_arrivals: u64,
    duplicate_examples: Vec<String>,
    /// How long the relay held each chunk during the window, when the run had one.
    holds: Option<Holds>,
    /// Each node's peak RSS (`VmHWM`, MiB) over its whole life: start, window and drain.
    peak_rss: Vec<f64>,
}

/// Round trips to PostgreSQL during a window, all nodes together.
#[derive(Clone, Copy)]
struct RoundTrips {
    /// `deliveries.step` calls.
    steps: u64,
    /// Round trips per step.
    per_step: f64,
    /// Round trips of every plugin call (raises, steps, builds) per delivery.
    per_delivery: f64,
}

/// CPU during the window, in cores: the nodes (summed), the receiver, this
/// process (the raisers), every `postgres` process and the relay, if any.
#[derive(Clone, Copy, Default)]
struct Cores {
    hosts: f64,
    receiver: f64,
    raisers: f64,
    postgres: f64,
    relay: Option<f64>,
}

impl Cores {
    /// From two readings of CPU seconds `window_s` apart.
    fn between(before: Cores, after: Cores, window_s: f64) -> Cores {
        let d = |a: f64, b: f64| (b - a) / window_s;
        Cores {
            hosts: d(before.hosts, after.hosts),
            receiver: d(before.receiver, after.receiver),
            raisers: d(before.raisers, after.raisers),
            postgres: d(before.postgres, after.postgres),
            relay: before.relay.zip(after.relay).map(|(a, b)| d(a, b)),
        }
    }
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
    /// Each node's part of the attempts that succeeded in the window, 0 to 1.
    fn shares(&self) -> Vec<f64> {
        let total = self.node_sent.iter().sum::<u64>().max(1) as f64;
        self.node_sent.iter().map(|&n| n as f64 / total).collect()
    }

    fn print(&self) {
        println!(
            "{}: {} clients for {:.1} s: {} events accepted = {:.0}/s \
             (POST /api/events p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms; {} refused, {} failed)",
            self.title,
            self.clients,
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
        let c = self.cores;
        let host = match self.nodes {
            1 => format!("webhooks-host {:.2} cores", c.hosts),
            n => format!("webhooks-host {:.2} cores (sum of {n} nodes)", c.hosts),
        };
        let relay = c.relay.map(|r| format!(", relay {r:.2}")).unwrap_or_default();
        println!(
            "  CPU in the window: {host}, postgres {:.2}{relay}, receiver {:.2}, raisers {:.2}",
            c.postgres, c.receiver, c.raisers
        );
        if self.nodes > 1 {
            let shares: Vec<String> = self.shares().iter().map(|s| format!("{:.0}%", s * 100.0)).collect();
            let sent: Vec<String> = self.node_sent.iter().map(u64::to_string).collect();
            println!(
                "  node shares of the deliveries in the window: {} (attempts succeeded per node: {})",
                shares.join(" "),
                sent.join(" / ")
            );
        }
        if let Some(t) = self.round_trips {
            println!(
                "  round trips to PostgreSQL: {:.1} per step ({} steps, {:.0}/s), {:.2} per delivery (every call: raises, steps, builds)",
                t.per_step,
                t.steps,
                t.steps as f64 / self.window_s,
                t.per_delivery
            );
        }
        if let Some(h) = self.holds {
            println!(
                "  relay: {} chunks in the window, each held p50 {:.3} ms, p99 {:.3} ms, max {:.2} ms (one way)",
                h.chunks,
                h.p50_us / 1000.0,
                h.p99_us / 1000.0,
                h.max_us / 1000.0
            );
        }
        let rss: Vec<String> = self.peak_rss.iter().map(|m| format!("{m:.1}")).collect();
        println!("  peak RSS of webhooks-host: {} MiB", rss.join(" / "));
        if self.duplicates > 0 {
            println!(
                "  !!!!!!!! DUPLICATES: {} deliveries arrived more than once ({} arrivals beyond the first), e.g. {}; \
                 the nodes recorded {} failed attempts (a retry carries the same webhook-id) !!!!!!!!",
                self.duplicates,
                self.duplicate_arrivals,
                self.duplicate_examples.join(", "),
                self.failed_attempts,
            );
        } else {
            println!(
                "  duplicates: none (each of {} deliveries arrived once; {} attempts failed)",
                self.received, self.failed_attempts
            );
        }
    }

    fn record(&self, out: &mut serde_json::Map<String, serde_json::Value>) {
        let k = &self.key;
        let r2 = |v: f64| (v * 100.0).round() / 100.0;
        let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
        out.extend([
            (format!("{k}_accepted_per_s"), json!(self.accepted_per_s().round())),
            (format!("{k}_delivered_per_s"), json!(self.delivered_per_s().round())),
            (format!("{k}_owed_end"), json!(self.owed)),
            (format!("{k}_backlog_end"), json!(self.backlog_end())),
            (format!("{k}_drain_s"), json!(self.drain_s.map(r2))),
            (format!("{k}_p50_ms"), json!(r2(self.e2e_p50))),
            (format!("{k}_p99_ms"), json!(r2(self.e2e_p99))),
            (format!("{k}_req_p50_ms"), json!(r3(self.req_p50))),
            (format!("{k}_req_p99_ms"), json!(r3(self.req_p99))),
            (format!("{k}_host_cores"), json!(r2(self.cores.hosts))),
            (format!("{k}_postgres_cores"), json!(r2(self.cores.postgres))),
            (format!("{k}_shares"), json!(self.shares().into_iter().map(r3).collect::<Vec<_>>())),
            (format!("{k}_duplicates"), json!(self.duplicates)),
            (format!("{k}_peak_rss_mib"), json!(self.peak_rss.iter().copied().fold(0.0, f64::max))),
        ]);
        if let Some(r) = self.cores.relay {
            out.insert(format!("{k}_relay_cores"), json!(r2(r)));
        }
        if let Some(t) = self.round_trips {
            out.insert(format!("{k}_trips_per_step"), json!(r2(t.per_step)));
            out.insert(format!("{k}_trips_per_delivery"), json!(r3(t.per_delivery)));
        }
        if let Some(h) = self.holds {
            out.insert(format!("{k}_relay_hold_p50_ms"), json!(r3(h.p50_us / 1000.0)));
            out.insert(format!("{k}_relay_hold_p99_ms"), json!(r3(h.p99_us / 1000.0)));
        }
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
/// `tag` tells the data folders of repeated runs apart.
async fn mixed(exe: &Path, tmp: &Path, cache: &Path, fan_out: usize, seconds: u64, tag: &str) -> anyhow::Result<Mixed> {
    let load = Load {
        name: format!("mixed-f{fan_out}{tag}"),
        key: format!("mixed_f{fan_out}"),
        title: format!("mixed over HTTP, SQLite, 1 node, fan-out {fan_out}"),
        nodes: 1,
        fan_out,
        seconds,
        clients: MIXED_CLIENTS,
        env: Vec::new(),
        database: None,
        delay: None,
    };
    drive(exe, tmp, cache, &load).await
}

/// One run of the mixed load: what runs where, and for how long.
struct Load<'a> {
    /// Names the nodes' data folders and logs.
    name: String,
    key: String,
    title: String,
    nodes: usize,
    fan_out: usize,
    seconds: u64,
    clients: usize,
    /// Added to every node's environment.
    env: Vec<(&'static str, String)>,
    /// The nodes' PostgreSQL database; None: SQLite in each node's data folder.
    database: Option<url::Url>,
    /// The delayed path and the round trip in ms; None: the nodes dial over loopback.
    delay: Option<(&'a Lab, f64)>,
}

/// What a node's `/metrics` counts so far.
#[derive(Clone, Copy, Default)]
struct NodeCounts {
    /// Attempts recorded as succeeded.
    ok: u64,
    /// Attempts recorded as failed (retrying or exhausted).
    failed: u64,
    /// `deliveries.step` calls on PostgreSQL, and their round trips to the server.
    steps: u64,
    step_trips: u64,
    /// Round trips of every plugin call (steps, builds, raises, …).
    trips: u64,
}

/// Each node's counts so far, from its `/metrics`.
async fn node_attempts(api: &reqwest::Client, bases: &[String]) -> anyhow::Result<Vec<NodeCounts>> {
    let mut all = Vec::new();
    for base in bases {
        let text =
            api.get(format!("{base}/metrics")).bearer_auth(API_TOKEN).send().await?.error_for_status()?.text().await?;
        let mut c = NodeCounts::default();
        for line in text.lines() {
            // webhooks_delivery_attempts_total{outcome="succeeded"} 3
            // webhooks_db_round_trips_total{call="step"} 120
            let Some((name, rest)) = line.split_once("{") else { continue };
            let Some((label, value)) = rest.split_once("\"}") else { continue };
            let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
            match (name, label) {
                ("webhooks_delivery_attempts_total", "outcome=\"succeeded") => c.ok += n,
                ("webhooks_delivery_attempts_total", _) => c.failed += n,
                ("webhooks_db_calls_total", "call=\"step") => c.steps += n,
                ("webhooks_db_round_trips_total", "call=\"step") => {
                    c.step_trips += n;
                    c.trips += n;
                }
                ("webhooks_db_round_trips_total", _) => c.trips += n,
                _ => {}
            }
        }
        all.push(c);
    }
    Ok(all)
}

/// Mixed load over HTTP: `load.nodes` new `webhooks-host serve` processes
/// (default workers, each with its own data folder), `load.fan_out` signed
/// webhooks created through the first node's API to a receiver in another
/// process; `load.clients` keep-alive clients raise `user.created` one per
/// `POST /api/events`, round-robin over the nodes, for `load.seconds`, then the
/// backlog drains. With a delay, the nodes run in their places and reach
/// PostgreSQL and the receiver through a relay started for this run.
async fn drive(exe: &Path, tmp: &Path, cache: &Path, load: &Load<'_>) -> anyhow::Result<Mixed> {
    let (receiver, port) = tokio::task::spawn_blocking(spawn_receiver).await??;
    let receiver_here = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // What the nodes dial: the receiver and PostgreSQL themselves, or the relay's
    // ports in front of them.
    let mut relay = None;
    let (receiver_for_nodes, database) = match load.delay {
        None => (receiver_here, load.database.clone()),
        Some((lab, rtt_ms)) => {
            let mut targets = vec![receiver_here];
            if let Some(db) = &load.database {
                targets.push(postgres_addr(db)?);
            }
            let (delay, ip) = (lab.relay_delay(rtt_ms), lab.service_ip());
            let (r, ports) = tokio::task::spawn_blocking(move || Relay::spawn(delay, ip, &targets)).await??;
            relay = Some(r);
            let database = match &load.database {
                Some(db) => Some(via(db, ip, ports[1])?),
                None => None,
            };
            (SocketAddr::from((ip, ports[0])), database)
        }
    };
    let mut env = load.env.clone();
    env.push(("WEBHOOKS_ALLOWED_HOSTS", receiver_for_nodes.ip().to_string()));
    if let Some(db) = database {
        env.push(("WEBHOOKS_DATABASE_URL", db.to_string()));
    }
    // The host's default worker count unless BENCH_MIXED_WORKERS says otherwise.
    let workers = std::env::var("BENCH_MIXED_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    let mut hosts = Vec::new();
    let mut bases = Vec::new();
    let mut logs = Vec::new();
    for n in 1..=load.nodes {
        let name = &load.name;
        let (data, log) = (tmp.join(format!("{name}-node{n}")), tmp.join(format!("{name}-node{n}.log")));
        let at = load.delay.map_or_else(Place::loopback, |(lab, _)| lab.place(n));
        let (e, c, l, env) = (exe.to_owned(), cache.to_owned(), log.clone(), env.clone());
        let (host, base) =
            tokio::task::spawn_blocking(move || start_serve(&e, &data, &c, workers, &at, Some(&l), &env)).await??;
        hosts.push(KillOnDrop(host));
        bases.push(base);
        logs.push(log);
    }
    let host_pids: Vec<u32> = hosts.iter().map(|h| h.0.id()).collect();
    let recv_pid = receiver.0.id();
    let relay_pid = relay.as_ref().map(Relay::pid);
    let api = reqwest::Client::new();
    for i in 0..load.fan_out {
        let r = api
            .post(format!("{}/api/webhooks", bases[0]))
            .bearer_auth(API_TOKEN)
            .json(&json!({
                "name": format!("mixed {i}"),
                "url": format!("http://{receiver_for_nodes}/hook/{i}"),
                "events": ["user.created"],
                "secret": SECRET,
            }))
            .send()
            .await?;
        let status = r.status().as_u16();
        anyhow::ensure!(status == 201, "creating a webhook answered {status}: {}", r.text().await?);
    }
    let count_url = format!("http://{receiver_here}/count");
    let received = || async { anyhow::Ok(api.get(&count_url).send().await?.text().await?.trim().parse::<u64>()?) };

    let cpu = || Cores {
        hosts: host_pids.iter().map(|&p| cpu_seconds(p)).sum(),
        receiver: cpu_seconds(recv_pid),
        raisers: cpu_seconds(std::process::id()),
        postgres: postgres_cpu_seconds(),
        relay: relay_pid.map(cpu_seconds),
    };
    let attempts0 = node_attempts(&api, &bases).await?;
    if let Some(r) = &mut relay {
        r.reset()?;
    }
    let cpu0 = cpu();
    let t = Instant::now();
    let until = t + Duration::from_secs(load.seconds);
    let urls: Arc<Vec<String>> = Arc::new(bases.iter().map(|b| format!("{b}/api/events")).collect());
    let mut tasks = Vec::new();
    for c in 0..load.clients {
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
    let attempts1 = node_attempts(&api, &bases).await?;
    let holds = match &mut relay {
        Some(r) => Some(r.holds()?),
        None => None,
    };

    let end = Instant::now();
    let mut got = received_in_window;
    while got < all.queued && end.elapsed() < MIXED_DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = received().await?;
    }
    let drain_s = (got >= all.queued).then(|| end.elapsed().as_secs_f64());
    let failed_attempts = node_attempts(&api, &bases).await?.iter().map(|c| c.failed).sum();
    let stats: serde_json::Value = api.get(format!("http://{receiver_here}/stats")).send().await?.json().await?;
    let (count, timed) = (stats["count"].as_u64().unwrap_or(0), stats["timed"].as_u64().unwrap_or(0));
    if timed < count {
        println!("  warning: {} of {count} deliveries carried no raised_at_us", count - timed);
    }
    if let Some(n) = stats["no_id"].as_u64().filter(|&n| n > 0) {
        println!("  warning: {n} deliveries carried no webhook-id (not checked for duplicates)");
    }
    let duplicates = stats["duplicates"].as_u64().unwrap_or(0);
    let peak_rss = host_pids.iter().map(|&p| peak_rss_mib(p)).collect();
    drop(hosts);
    drop(relay);
    drop(receiver);
    // Something went wrong on the host's side: show why.
    if all.refused + all.failed > 0 || drain_s.is_none() || window_s > load.seconds as f64 + 1.0 || duplicates > 0 {
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
    Ok(Mixed {
        key: load.key.clone(),
        title: load.title.clone(),
        nodes: load.nodes,
        clients: load.clients,
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
        cores: Cores::between(cpu0, cpu1, window_s),
        node_sent: attempts0.iter().zip(&attempts1).map(|(a, b)| b.ok.saturating_sub(a.ok)).collect(),
        round_trips: {
            let d = |f: fn(&NodeCounts) -> u64| -> u64 {
                attempts0.iter().zip(&attempts1).map(|(a, b)| f(b).saturating_sub(f(a))).sum()
            };
            let (steps, step_trips, trips, sent) = (d(|c| c.steps), d(|c| c.step_trips), d(|c| c.trips), d(|c| c.ok));
            (steps > 0).then(|| RoundTrips {
                steps,
                per_step: step_trips as f64 / steps as f64,
                per_delivery: trips as f64 / sent.max(1) as f64,
            })
        },
        failed_attempts,
        duplicates,
        duplicate_arrivals: stats["duplicate_arrivals"].as_u64().unwrap_or(0),
        duplicate_examples: stats["duplicate_examples"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        holds,
        peak_rss,
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

/// The TCP address a PostgreSQL URL names (what the relay forwards to).
fn postgres_addr(db: &url::Url) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let host = db.host_str().filter(|h| !h.is_empty()).ok_or_else(|| anyhow::anyhow!("{db} names no TCP host"))?;
    let port = db.port().unwrap_or(5432);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port).to_socket_addrs()?.next().ok_or_else(|| anyhow::anyhow!("{host} resolves to no address"))
}

/// The same database through the relay: `db` with its host and port replaced.
fn via(db: &url::Url, ip: Ipv4Addr, port: u16) -> anyhow::Result<url::Url> {
    let mut u = db.clone();
    u.set_host(Some(&ip.to_string()))?;
    u.set_port(Some(port)).map_err(|()| anyhow::anyhow!("{db} takes no port"))?;
    Ok(u)
}

/// The JSON key prefix of a PostgreSQL run.
fn pg_key(nodes: usize, rtt_ms: f64) -> String {
    format!("pg_n{nodes}_rtt{rtt_ms}")
}

/// The same load as the mixed phase with fan-out `fan_out`, on 1, 2 and 3 nodes
/// sharing one new PostgreSQL database per run (dropped afterwards), at each
/// round trip of `--pg-rtt-ms`.
async fn postgres_phase(
    args: &Args,
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
    // A run interrupted mid-way (Ctrl-C drops it before its DROP DATABASE) leaves its
    // scratch database: dropped here once its pid no longer runs.
    let rows = admin.query("SELECT datname FROM pg_database WHERE datname LIKE 'webhooks\\_bench\\_%'", &[]).await?;
    for db in rows.iter().map(|r| r.get::<_, String>(0)) {
        let pid = db.trim_start_matches("webhooks_bench_").split('_').next().unwrap_or("");
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await?;
        }
    }
    // Every node must seal and open webhook secrets with the same key.
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random key: {e}"))?;
    // The delayed path is made once for all round trips above 0, and removed when
    // this function returns, however it returns.
    let lab = match args.pg_rtt_ms.iter().any(|&r| r > 0.0) {
        true => Some(tokio::task::spawn_blocking(|| Lab::new(3)).await?),
        false => None,
    };
    for (i, &rtt) in args.pg_rtt_ms.iter().enumerate() {
        let delay = match &lab {
            Some(lab) if rtt > 0.0 => {
                // Blocks this thread (block_on's, not a worker's) for a fraction of a second.
                lab.prepare(rtt)?;
                Some((lab, rtt))
            }
            _ => None,
        };
        let path = match delay {
            Some((lab, _)) => format!("round trip {rtt} ms, {}", lab.describe()),
            None => "loopback".into(),
        };
        for nodes in 1..=3 {
            let db = format!("webhooks_bench_{}_{i}_{nodes}", std::process::id());
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await?;
            admin.batch_execute(&format!("CREATE DATABASE \"{db}\"")).await?;
            let mut env = vec![("WEBHOOKS_SECRET_KEY", hex::encode(key))];
            if let Some(c) = args.pg_per_webhook_concurrency {
                env.push(("WEBHOOKS_PER_WEBHOOK_CONCURRENCY", c.to_string()));
            }
            let load = Load {
                name: format!("pg-{i}-n{nodes}"),
                key: pg_key(nodes, rtt),
                title: format!(
                    "mixed over HTTP, PostgreSQL, {nodes} node{}, fan-out {fan_out}, {path}",
                    if nodes == 1 { "" } else { "s" }
                ),
                nodes,
                fan_out,
                seconds,
                clients: args.pg_clients,
                env,
                database: Some(url::Url::parse(&format!("{}/{db}", postgres_server()))?),
                delay,
            };
            let run = drive(exe, tmp, cache, &load).await;
            // Dropped whether or not the run succeeded (the nodes are stopped by now).
            let dropped = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).await;
            let m = run?;
            dropped?;
            m.print();
            m.record(out);
        }
    }
    Ok(())
}

/// The headline figures of this run side by side at fan-out 3 (what is present):
/// the raw hyper client, one SQLite node and 1–3 PostgreSQL nodes at each round
/// trip; then the ratios between them.
/// This build against `--compare-host` at one fan-out: the mean of each
/// build's runs for rates and p99 (the runs alternate, A B B A), the highest
/// peak RSS, and this build's figures as a share of the other's.
fn print_build_comparison(
    fan_out: usize,
    other: &Path,
    this: &[Mixed],
    that: &[Mixed],
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    let mean = |runs: &[Mixed], f: &dyn Fn(&Mixed) -> f64| runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64;
    let peak = |runs: &[Mixed]| runs.iter().flat_map(|m| m.peak_rss.iter().copied()).fold(0.0, f64::max);
    type Figure<'a> = (&'a str, &'a str, &'a dyn Fn(&[Mixed]) -> f64);
    let figures: [Figure; 5] = [
        ("accepted/s", "accepted_per_s", &|r| mean(r, &|m| m.accepted_per_s())),
        ("delivered/s", "delivered_per_s", &|r| mean(r, &|m| m.delivered_per_s())),
        ("raise → receipt p99 ms", "p99_ms", &|r| mean(r, &|m| m.e2e_p99)),
        ("POST /api/events p99 ms", "req_p99_ms", &|r| mean(r, &|m| m.req_p99)),
        ("peak RSS MiB", "peak_rss_mib", &peak),
    ];
    println!(
        "mixed fan-out {fan_out}, this build against {} ({} runs each, alternating):",
        other.display(),
        this.len()
    );
    println!("  {:<26} {:>10} {:>10} {:>8}", "", "this", "other", "this/other");
    for (label, key, f) in figures {
        let (a, b) = (f(this), f(that));
        let ratio = if b > 0.0 { a / b } else { f64::NAN };
        println!("  {label:<26} {a:>10.2} {b:>10.2} {ratio:>8.3}");
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        out.insert(format!("mixed_f{fan_out}_this_{key}"), json!(r(a)));
        out.insert(format!("mixed_f{fan_out}_other_{key}"), json!(r(b)));
    }
}

fn print_comparison(out: &serde_json::Map<String, serde_json::Value>, rtts: &[f64]) {
    let get = |key: &str, s: &str| out.get(&format!("{key}_{s}")).and_then(|v| v.as_f64());
    let mut rows = vec![("mixed_f3".to_owned(), "SQLite, 1 node".to_owned())];
    for &rtt in rtts {
        for n in 1..=3 {
            let label = format!("PostgreSQL, {n} node{}, rtt {rtt} ms", if n == 1 { "" } else { "s" });
            rows.push((pg_key(n, rtt), label));
        }
    }
    rows.retain(|(key, _)| get(key, "delivered_per_s").is_some());
    let baseline = out.get("baseline_per_s").and_then(|v| v.as_f64());
    if rows.len() + usize::from(baseline.is_some()) < 2 {
        return;
    }
    let cell = |v: Option<f64>| v.map_or("-".to_owned(), |v| v.to_string());
    println!("comparison at fan-out 3 (same run, same 2 cores; raise → receipt; CPU in cores during the window):");
    println!(
        "  {:<34} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>6} {:>9} {:>9}  {:<12} duplicates",
        "",
        "deliv/s",
        "accept/s",
        "p50 ms",
        "p99 ms",
        "hosts",
        "postgres",
        "relay",
        "trips/stp",
        "trips/dlv",
        "node shares"
    );
    if let Some(b) = baseline {
        println!("  {:<34} {b:>8} (raw hyper client, no storage, in-process receiver)", "baseline");
    }
    for (key, label) in &rows {
        let shares = match out.get(&format!("{key}_shares")).and_then(|v| v.as_array()) {
            Some(a) if a.len() > 1 => {
                a.iter().map(|s| format!("{:.0}", s.as_f64().unwrap_or(0.0) * 100.0)).collect::<Vec<_>>().join("/")
                    + "%"
            }
            _ => "-".into(),
        };
        let duplicates = get(key, "duplicates").unwrap_or(0.0);
        println!(
            "  {label:<34} {:>8} {:>8} {:>8} {:>8} {:>6} {:>8} {:>6} {:>9} {:>9}  {shares:<12} {}",
            cell(get(key, "delivered_per_s")),
            cell(get(key, "accepted_per_s")),
            cell(get(key, "p50_ms")),
            cell(get(key, "p99_ms")),
            cell(get(key, "host_cores")),
            cell(get(key, "postgres_cores")),
            cell(get(key, "relay_cores")),
            cell(get(key, "trips_per_step")),
            cell(get(key, "trips_per_delivery")),
            if duplicates > 0.0 { format!("{duplicates} !!!") } else { "0".into() },
        );
    }
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let delivered = |n: usize, rtt: f64| get(&pg_key(n, rtt), "delivered_per_s");
    for &rtt in rtts {
        if delivered(1, rtt).is_none() {
            continue;
        }
        let mut line = format!(
            "  deliveries/s at rtt {rtt} ms: 2 nodes / 1 node {}, 3 nodes / 1 node {}",
            ratio(delivered(2, rtt), delivered(1, rtt)),
            ratio(delivered(3, rtt), delivered(1, rtt)),
        );
        if rtt > 0.0 && delivered(1, 0.0).is_some() {
            line += &format!(
                "; against loopback: 1 node {}, 2 nodes {}, 3 nodes {}",
                ratio(delivered(1, rtt), delivered(1, 0.0)),
                ratio(delivered(2, rtt), delivered(2, 0.0)),
                ratio(delivered(3, rtt), delivered(3, 0.0)),
            );
        }
        println!("{line}");
    }
    if let (Some(pg), Some(sqlite)) = (delivered(1, 0.0), get("mixed_f3", "delivered_per_s")) {
        println!("  deliveries/s, PostgreSQL 1 node (rtt 0) / SQLite 1 node: {}", ratio(Some(pg), Some(sqlite)));
    }
}

/// The delayed path of the PostgreSQL runs: namespaces for the nodes where they
/// can be made, and what makes the delay. Made once; removed when dropped.
struct Lab {
    /// One namespace per node; None where they cannot be made (not root): the nodes
    /// then run in this namespace and dial the relay on 127.0.0.1.
    ns: Option<Namespaces>,
    /// The kernel delays every packet on the veths (netem); the relay only forwards.
    netem: bool,
}

impl Lab {
    /// Pings through the relay, to measure its round trip.
    const PINGS: usize = 500;

    fn new(nodes: usize) -> Lab {
        let ns = match Namespaces::create(nodes) {
            Ok(ns) => Some(ns),
            Err(e) => {
                println!(
                    "PostgreSQL, delayed runs: network namespaces cannot be made here ({e:#}); the nodes run in \
                     this namespace and reach PostgreSQL and the receiver through the relay on 127.0.0.1"
                );
                None
            }
        };
        let netem = match &ns {
            Some(ns) => match ns.netem(Duration::from_micros(250)) {
                Ok(()) => true,
                Err(e) => {
                    println!(
                        "PostgreSQL, delayed runs: no netem here ({e:#}); a relay in userspace holds every chunk \
                         for the one-way delay instead"
                    );
                    false
                }
            },
            None => false,
        };
        Lab { ns, netem }
    }

    /// How the delayed runs are made, for their titles.
    fn describe(&self) -> &'static str {
        match (&self.ns, self.netem) {
            (Some(_), true) => "namespaces, netem",
            (Some(_), false) => "namespaces, relay delay",
            (None, _) => "relay delay on loopback",
        }
    }

    /// Where the relay listens: an address every node reaches.
    fn service_ip(&self) -> Ipv4Addr {
        self.ns.as_ref().map_or(Ipv4Addr::LOCALHOST, Namespaces::service_ip)
    }

    /// Where node `n` (from 1) runs.
    fn place(&self, n: usize) -> Place {
        match &self.ns {
            Some(ns) => Place { netns: Some(ns.name(n)), ip: ns.node_ip(n) },
            None => Place::loopback(),
        }
    }

    /// What the relay holds each chunk for at a round trip of `rtt_ms`: half of it,
    /// unless netem delays the packets already.
    fn relay_delay(&self, rtt_ms: f64) -> Duration {
        if self.netem { Duration::ZERO } else { one_way(rtt_ms) }
    }

    /// Sets the delay for the runs at `rtt_ms` and measures the round trip the
    /// nodes will see; prints it.
    fn prepare(&self, rtt_ms: f64) -> anyhow::Result<()> {
        if let (Some(ns), true) = (&self.ns, self.netem) {
            ns.netem(one_way(rtt_ms))?;
        }
        let ping = self.ping(self.relay_delay(rtt_ms))?;
        // The relay's own cost, without a delay (with netem the veths delay anyway).
        let bare = match self.netem {
            false => format!("; without a delay {:.3} ms", self.ping(Duration::ZERO)?.p50_us / 1000.0),
            true => String::new(),
        };
        println!(
            "relay round trip for rtt {rtt_ms} ms ({}, relay threads at {}; node 1's place → relay → 127.0.0.1 and \
             back, {} pings of 64 bytes): p50 {:.3} ms, p99 {:.3} ms, min {:.3} ms{bare}",
            self.describe(),
            if ping.fifo { "SCHED_FIFO" } else { "normal priority" },
            ping.count,
            ping.p50_us / 1000.0,
            ping.p99_us / 1000.0,
            ping.min_us / 1000.0,
        );
        Ok(())
    }

    /// The round trip from node 1's place through a relay holding chunks `delay`
    /// to an echo in this process.
    fn ping(&self, delay: Duration) -> anyhow::Result<Ping> {
        let echo = echo_once()?;
        let (relay, ports) = Relay::spawn(delay, self.service_ip(), &[echo])?;
        let fifo = relay.fifo;
        let out = self
            .place(1)
            .command(&std::env::current_exe()?)
            .env(PING_ENV, format!("{}:{};{}", self.service_ip(), ports[0], Self::PINGS))
            .stderr(Stdio::inherit())
            .output()?;
        drop(relay);
        anyhow::ensure!(out.status.success(), "the relay's ping failed: {}", out.status);
        Ok(Ping { fifo, ..serde_json::from_slice(&out.stdout)? })
    }
}

/// Half of a round trip of `rtt_ms`.
fn one_way(rtt_ms: f64) -> Duration {
    Duration::from_secs_f64(rtt_ms / 2000.0)
}

/// Network namespaces, one per node, each joined to this namespace by a veth
/// pair. Node k is 10.X.k.2 in `whb<pid>n<k>`, this side of its veth is
/// 10.X.k.1, and the relay listens on 10.X.255.1, an address on this
/// namespace's loopback device that each node reaches through its veth (its
/// default route); so the nodes reach PostgreSQL (on 127.0.0.1 here) and the
/// receiver only through the relay. Named with this process's id, so runs never
/// collide; removed when dropped.
///
/// With a relay doing the delay, the namespaces do not make it: they keep the
/// path honest. A node cannot reach PostgreSQL or the receiver but through the
/// relay, so a setting that bypassed it would fail rather than measure loopback,
/// and the packets cross a veth as between containers. Their risk, leftovers
/// after a crash, is handled by the pid in the names ([`Namespaces::remove_stale`]).
struct Namespaces {
    pid: u32,
    /// The X of 10.X.0.0/16.
    x: u8,
    /// What exists so far, so that a setup that fails half-way is undone too.
    names: Vec<String>,
    links: Vec<String>,
    service: bool,
}

impl Namespaces {
    fn create(nodes: usize) -> anyhow::Result<Namespaces> {
        Self::remove_stale();
        let mut me =
            Namespaces { pid: std::process::id(), x: free_subnet()?, names: vec![], links: vec![], service: false };
        ip(&["addr", "add", &format!("{}/32", me.service_ip()), "dev", "lo", "label", &me.label()])?;
        me.service = true;
        for k in 1..=nodes {
            let (ns, link, here) = (me.name(k), format!("wb{}n{k}", me.pid), format!("10.{}.{k}.1", me.x));
            ip(&["netns", "add", &ns])?;
            me.names.push(ns.clone());
            ip(&["link", "add", &link, "type", "veth", "peer", "name", "veth0", "netns", &ns])?;
            me.links.push(link.clone());
            ip(&["addr", "add", &format!("{here}/30"), "dev", &link])?;
            ip(&["link", "set", &link, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/30", me.node_ip(k)), "dev", "veth0"])?;
            ip(&["-n", &ns, "link", "set", "veth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "route", "add", "default", "via", &here])?;
        }
        Ok(me)
    }

    fn name(&self, k: usize) -> String {
        format!("whb{}n{k}", self.pid)
    }
    fn node_ip(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.x, k as u8, 2)
    }
    fn service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.x, 255, 1)
    }
    /// The label of the relay's address on `lo`, so a leftover can be told by its pid.
    fn label(&self) -> String {
        format!("lo:wb{}", self.pid)
    }

    /// netem delaying every packet `one_way` on both ends of every veth (so each
    /// direction once); an error where the kernel has no netem.
    fn netem(&self, one_way: Duration) -> anyhow::Result<()> {
        let delay = format!("{}us", one_way.as_micros());
        for (ns, link) in self.names.iter().zip(&self.links) {
            command_ok("tc", &["qdisc", "replace", "dev", link, "root", "netem", "delay", &delay])?;
            command_ok("tc", &["-n", ns, "qdisc", "replace", "dev", "veth0", "root", "netem", "delay", &delay])?;
        }
        Ok(())
    }

    /// Removes what earlier runs, killed before their guards ran, left behind:
    /// namespaces and addresses whose pid no longer runs.
    fn remove_stale() {
        let dead = |pid: &str| pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists();
        let listed = |args: &[&str]| {
            Command::new("ip").args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        for line in listed(&["netns", "list"]).unwrap_or_default().lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let pid = name.strip_prefix("whb").and_then(|r| r.split_once('n')).map(|(pid, _)| pid);
            if pid.is_some_and(dead) {
                let _ = ip(&["netns", "del", name]);
            }
        }
        for line in listed(&["-4", "-o", "addr", "show", "dev", "lo"]).unwrap_or_default().lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let label = words.iter().find_map(|w| w.strip_prefix("lo:wb"));
            let addr = words.iter().skip_while(|w| **w != "inet").nth(1);
            if let (Some(pid), Some(addr)) = (label, addr)
                && dead(pid)
            {
                let _ = ip(&["addr", "del", addr, "dev", "lo"]);
            }
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // A veth pair goes with either end; its namespace would take it too.
        let links = self.links.iter().map(|l| vec!["link", "del", l.as_str()]);
        let names = self.names.iter().map(|n| vec!["netns", "del", n.as_str()]);
        let service = format!("{}/32", self.service_ip());
        let service = self.service.then(|| vec!["addr", "del", service.as_str(), "dev", "lo"]);
        for args in links.chain(names).chain(service) {
            if let Err(e) = ip(&args) {
                println!("warning: {e:#}");
            }
        }
    }
}

/// A 10.X.0.0/16 that no address or route in this namespace uses, starting from
/// one picked by this process's id.
fn free_subnet() -> anyhow::Result<u8> {
    let mut used = String::new();
    for args in [["-4", "addr"], ["-4", "route"]] {
        used += &String::from_utf8_lossy(&Command::new("ip").args(args).output()?.stdout);
    }
    let start = std::process::id() % 200;
    (0..200)
        .map(|i| (20 + (start + i) % 200) as u8)
        .find(|x| !used.split_whitespace().any(|w| w.starts_with(&format!("10.{x}."))))
        .ok_or_else(|| anyhow::anyhow!("no free 10.X.0.0/16"))
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    command_ok("ip", args)
}

/// Runs a command to its end; its stderr makes the error.
fn command_ok(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output()?;
    let why = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(out.status.success(), "{program} {}: {}", args.join(" "), why.trim());
    Ok(())
}

/// The relay's ping: round trips in µs.
#[derive(serde::Deserialize)]
struct Ping {
    /// The relay's threads ran at SCHED_FIFO.
    #[serde(default)]
    fifo: bool,
    count: usize,
    p50_us: f64,
    p99_us: f64,
    min_us: f64,
}

/// How long the relay held chunks, in µs, since it was last reset.
#[derive(Clone, Copy, serde::Deserialize)]
struct Holds {
    chunks: u64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

/// A relay process (see [`relay_main`]), killed when dropped.
struct Relay {
    child: KillOnDrop,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    /// Its threads run at SCHED_FIFO (see [`relay_main`]).
    fifo: bool,
}

impl Relay {
    /// Starts a relay listening on `ip`, one port per target, holding each chunk
    /// `delay`; returns it and its ports in the targets' order.
    fn spawn(delay: Duration, ip: Ipv4Addr, targets: &[SocketAddr]) -> anyhow::Result<(Relay, Vec<u16>)> {
        use std::io::BufRead;
        let routes: Vec<String> = targets.iter().map(|t| format!("{ip}:0>{t}")).collect();
        let mut child = KillOnDrop(
            Command::new(std::env::current_exe()?)
                .env(RELAY_ENV, format!("{};{}", delay.as_nanos(), routes.join(",")))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?,
        );
        let stdin = child.0.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let ports: Vec<u16> = line.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        anyhow::ensure!(ports.len() == targets.len(), "the relay did not start: {line:?}");
        let fifo = line.split_whitespace().last() == Some("fifo");
        Ok((Relay { child, stdin, stdout, fifo }, ports))
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn ask(&mut self, what: &str) -> anyhow::Result<String> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{what}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line)
    }

    /// Forgets the hold times so far.
    fn reset(&mut self) -> anyhow::Result<()> {
        self.ask("reset")?;
        Ok(())
    }

    /// The hold times since the last reset.
    fn holds(&mut self) -> anyhow::Result<Holds> {
        Ok(serde_json::from_str(&self.ask("stats")?)?)
    }
}

/// Hold times of the chunks the relay sent since the last `reset`, in µs.
static HOLDS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// How late the relay's sleeps end, in ns: a running average over all its
/// writers, which aim that much early (see [`delay_line`]).
static LATE_NS: AtomicU64 = AtomicU64::new(0);

/// The delay relay, in its own process. `WEBHOOKS_BENCH_RELAY=<ns>;<listen>><target>,…`:
/// it listens on each `listen` address, prints the ports it got (one line, in
/// order, then `fifo` or `normal`), and forwards every connection to its target,
/// both ways, through a delay line: per direction, a reader stamps each chunk as
/// it arrives and a writer sends it at that stamp plus the delay, in order. A
/// chunk waits for its own deadline, not for the chunk before it to have waited,
/// so a stream is delayed once, as on a wire, not once per chunk.
///
/// Timing: blocking sockets and threads (two per direction) with `thread::sleep`,
/// because tokio's timer counts whole milliseconds. The timer slack is set to
/// 1 ns, else each sleep ends up to 50 µs late. The threads run at SCHED_FIFO
/// (lowest real-time priority) where allowed: netem delays packets in the
/// kernel, ahead of every process, and a relay waiting its turn behind the nodes
/// and PostgreSQL on 2 cores would add their run queue to the delay. They use
/// the CPU they used before, only sooner. No spinning: it would take the cores
/// the nodes need. What is left of the wake-up latency (tens of µs in this VM) is
/// taken off the next sleeps (see [`LATE_NS`]).
///
/// On stdin, `reset` forgets the hold times and `stats` answers them as one JSON
/// line; the end of stdin ends the relay.
fn relay_main(spec: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let bad = || anyhow::anyhow!("{RELAY_ENV}={spec:?} is not <ns>;<listen>><target>,…");
    let (delay, routes) = spec.split_once(';').ok_or_else(bad)?;
    let delay = Duration::from_nanos(delay.parse()?);
    const SLACK_NS: libc::c_ulong = 1;
    // SAFETY: PR_SET_TIMERSLACK reads one integer and sets only this thread's timer
    // slack, which the threads started afterwards inherit.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, SLACK_NS) };
    let fifo = libc::sched_param { sched_priority: 1 };
    // SAFETY: sets this thread's policy from a valid sched_param; threads started
    // afterwards inherit it. Refused without CAP_SYS_NICE: the relay then runs as usual.
    let fifo = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &fifo) } == 0;
    let mut ports = Vec::new();
    for route in routes.split(',') {
        let (listen, target) = route.split_once('>').ok_or_else(bad)?;
        let target: SocketAddr = target.parse()?;
        let listener = std::net::TcpListener::bind(listen)?;
        ports.push(listener.local_addr()?.port().to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(conn) => {
                        if let Err(e) = relay_connection(conn, target, delay) {
                            eprintln!("relay to {target}: {e}");
                        }
                    }
                    // Out of descriptors, say: never a busy loop at real-time priority.
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
    }
    println!("{} {}", ports.join(" "), if fifo { "fifo" } else { "normal" });
    let mut stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        match line?.trim() {
            "reset" => {
                HOLDS.lock().unwrap().clear();
                writeln!(stdout, "ok")?;
            }
            "stats" => {
                let mut h = HOLDS.lock().unwrap().clone();
                h.sort_unstable();
                let p = |q: f64| h.get(((h.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(0);
                let stats = json!({"chunks": h.len(), "p50_us": p(0.5), "p99_us": p(0.99), "max_us": p(1.0)});
                writeln!(stdout, "{stats}")?;
            }
            other => writeln!(stdout, "unknown command {other:?}")?,
        }
        stdout.flush()?;
    }
    std::process::exit(0)
}

/// One relayed connection: dials `target`, then a delay line each way.
fn relay_connection(a: std::net::TcpStream, target: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let b = std::net::TcpStream::connect(target)?;
    // The relay must not add Nagle's wait to the delay: the ends decide their own.
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    delay_line(a.try_clone()?, b.try_clone()?, delay)?;
    delay_line(b, a, delay)
}

/// Copies `from` to `to`, each chunk sent `delay` after it arrived.
fn delay_line(mut from: std::net::TcpStream, mut to: std::net::TcpStream, delay: Duration) -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::net::Shutdown;
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let stop = from.try_clone()?;
    let thread = || std::thread::Builder::new().stack_size(256 * 1024);
    thread().spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // Dropping `tx` lets the writer send what it holds, then pass the end on.
    })?;
    // The estimate of the sleeps' lateness: at most a quarter of the delay, and
    // one sample counts at most 200 µs, so a stall does not make the next chunks early.
    let most_early = delay.as_nanos() as u64 / 4;
    thread().spawn(move || {
        for (arrived, chunk) in rx {
            let early = Duration::from_nanos(LATE_NS.load(Ordering::Relaxed).min(most_early));
            let aim = arrived + delay.saturating_sub(early);
            let now = Instant::now();
            if aim > now {
                std::thread::sleep(aim - now);
                let late = aim.elapsed().as_nanos().min(200_000) as u64;
                let was = LATE_NS.load(Ordering::Relaxed);
                LATE_NS.store((was * 15 + late) / 16, Ordering::Relaxed);
            }
            let held = arrived.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            {
                let mut holds = HOLDS.lock().unwrap();
                // Bounded: a long run keeps the first 10 million.
                if holds.len() < 10_000_000 {
                    holds.push(held);
                }
            }
            if to.write_all(&chunk).is_err() {
                // The far end is gone: stop reading this side too.
                let _ = stop.shutdown(Shutdown::Both);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    })?;
    Ok(())
}

/// The relay's ping, run where node 1 runs. `WEBHOOKS_BENCH_PING=<addr>;<count>`:
/// sends 64 bytes to `addr` (a relay port in front of an echo) and waits for them
/// back, `count` times after 50 unmeasured ones, and prints the round trips' p50,
/// p99 and minimum in µs as one JSON line.
fn ping_main(spec: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let (addr, count) = spec.split_once(';').ok_or_else(|| anyhow::anyhow!("{PING_ENV}={spec:?}"))?;
    let count: usize = count.parse()?;
    // Unmeasured: they also let the relay learn how late its sleeps end.
    const WARM_UP: usize = 50;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut buf = [0u8; 64];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count + WARM_UP {
        let t = Instant::now();
        s.write_all(&[i as u8; 64])?;
        s.read_exact(&mut buf)?;
        if i >= WARM_UP {
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    rtts.sort_by(f64::total_cmp);
    let p = |q| percentile(&rtts, q);
    println!("{}", json!({"count": count, "p50_us": p(0.5), "p99_us": p(0.99), "min_us": p(0.0)}));
    Ok(())
}

/// An echo server on 127.0.0.1 for one connection (the relay's ping), in a
/// thread that gives up after 10 s without one.
fn echo_once() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_nodelay(true);
                    if let Ok(mut r) = s.try_clone() {
                        let _ = std::io::copy(&mut r, &mut s);
                    }
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    Ok(addr)
}
