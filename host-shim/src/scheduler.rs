//! Scheduler capability: the delivery engine that drives the plugin's
//! pipeline (`deliveries.step`), plus the background checkpoint and pruning.
//!
//! Each delivery worker is an async loop that owns the requests it has in
//! flight (a `JoinSet` of egress sends) and calls `step` only when there is
//! something to do:
//!
//! - **a response arrived**: every finished attempt collected so far is
//!   recorded in that one step, and the freed slots are filled from what is
//!   due, in the same transaction;
//! - **an event was raised** ([`Waker`]): claim at once;
//! - **the next due time came** (a retry, as answered by the last step);
//! - **another worker is full** and due work may remain that only the
//!   others have room for.
//!
//! There is no fixed-interval polling: an idle worker sleeps until one of
//! those happens. Plugin calls run on blocking threads (see `runtime.rs`);
//! the requests themselves run on the async runtime through the egress, so a
//! receiver that never answers holds one slot until the attempt deadline and
//! nothing else. A worker whose `step` fails backs off and goes on (its
//! batch's leases expire and those deliveries are sent again); a worker that
//! panics is restarted. Both are counted in `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::bindings::ex::deliveries::{Outgoing, Response, Sent};
use crate::runtime::Runtime;

/// How long a worker whose due rows are all held back (the per-webhook bound
/// is full with leases of another process, or of a dead one) waits before it
/// looks again, unless a worker here fills up first (see `overflow`).
const BLOCKED_RECHECK: Duration = Duration::from_secs(1);
/// Longest back-off after failed steps.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Wakes the delivery workers; cheap to clone and call.
#[derive(Clone)]
pub struct Waker(watch::Sender<u64>);

impl Waker {
    /// Wakes every worker.
    pub fn wake(&self) {
        self.0.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// Running delivery workers.
pub struct Scheduler {
    wake: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Scheduler {
    /// Starts `config.delivery_workers` workers, the checkpointer and the pruner.
    pub fn start(rt: Arc<Runtime>) -> Self {
        let (wake, _) = watch::channel(0u64);
        let (stop, _) = watch::channel(false);
        let overflow = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        for n in 0..rt.config().delivery_workers {
            let (rt, wake, stop, overflow) = (rt.clone(), wake.clone(), stop.subscribe(), overflow.clone());
            tasks.spawn(supervise(n, rt, wake, stop, overflow));
        }
        tasks.spawn(checkpoints(rt.clone(), stop.subscribe()));
        tasks.spawn(pruning(rt, stop.subscribe()));
        Scheduler { wake, stop, tasks }
    }

    /// A handle that wakes every worker (after events were raised).
    pub fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    /// Stops claiming, lets requests in flight finish and records them, for
    /// up to `grace`; what is left stays leased and resumes on the next start.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("delivery workers did not finish within {grace:?}; the rest resumes on the next start");
            self.tasks.abort_all();
        }
    }
}

/// Runs worker `n`, restarting it when it panics.
async fn supervise(
    n: usize,
    rt: Arc<Runtime>,
    wake: watch::Sender<u64>,
    stop: watch::Receiver<bool>,
    overflow: Arc<Notify>,
) {
    loop {
        let worker = tokio::spawn(deliver(n, rt.clone(), wake.subscribe(), stop.clone(), overflow.clone()));
        match worker.await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                // Its in-flight rows stay leased and come back when the lease ends.
                tracing::error!(worker = n, "delivery worker panicked; restarting it");
                rt.metrics().worker_restarted("panic");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return,
        }
    }
}

/// One delivery worker; returns once draining is done.
async fn deliver(
    n: usize,
    rt: Arc<Runtime>,
    mut wake: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
    overflow: Arc<Notify>,
) {
    tracing::debug!(worker = n, "delivery worker started");
    let max = rt.config().batch_size.max(1);
    let mut flying: JoinSet<Sent> = JoinSet::new();
    let mut finished: Vec<Sent> = Vec::new();
    let mut failures = 0u32;
    // When to look for due work; `None` sleeps until woken.
    let mut due: Option<Instant> = Some(Instant::now());
    loop {
        let draining = *stop.borrow();
        let free = max.saturating_sub(flying.len() as u32);
        // Claim when work is due, and whenever responses freed slots: rows held
        // back by the per-webhook bound may go now.
        let claim =
            if !draining && (!finished.is_empty() || due.is_some_and(|d| d <= Instant::now())) { free } else { 0 };
        if !finished.is_empty() || claim > 0 {
            match rt.step(std::mem::take(&mut finished), claim).await {
                Ok(report) => {
                    failures = 0;
                    let got = report.claimed.len() as u32;
                    for o in report.claimed {
                        flying.spawn(send(rt.clone(), o));
                    }
                    // Full again after claiming all it asked for: due rows may
                    // remain that only the others have room for. (Slots this
                    // step freed it refilled itself in the same transaction,
                    // so waking the others for those would only make them
                    // contend for the write lock to find nothing.)
                    if claim > 0 && got >= claim {
                        overflow.notify_waiters();
                    }
                    if claim > 0 {
                        let now_ms = rt.config().clock.now_ms();
                        due = report.next_due_ms.map(|at| match at.checked_sub(now_ms) {
                            Some(wait) if wait > 0 => Instant::now() + Duration::from_millis(wait),
                            // Due now and we took all we asked for: more may wait.
                            _ if got >= claim => Instant::now(),
                            // Due now but held back by the per-webhook bound.
                            _ => Instant::now() + BLOCKED_RECHECK,
                        });
                    }
                }
                Err(e) => {
                    // The batch's rows stay leased; they are sent again (same
                    // webhook-id) when the lease ends.
                    failures += 1;
                    rt.metrics().worker_restarted("plugin");
                    let backoff = (Duration::from_millis(100) * 2u32.saturating_pow(failures)).min(MAX_BACKOFF);
                    tracing::error!(worker = n, "delivery step failed, retrying in {backoff:?}: {e}");
                    due = Some(Instant::now() + backoff);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            continue;
        }
        if draining && flying.is_empty() {
            break;
        }
        let sleep = due.map(tokio::time::Instant::from_std);
        tokio::select! {
            Some(r) = flying.join_next(), if !flying.is_empty() => {
                collect(n, r, &mut finished);
                while let Some(r) = flying.try_join_next() {
                    collect(n, r, &mut finished);
                }
            }
            Ok(()) = wake.changed(), if !draining => due = Some(Instant::now()),
            () = overflow.notified(), if !draining && due.is_some() => due = Some(Instant::now()),
            () = async { tokio::time::sleep_until(sleep.expect("guarded")).await }, if sleep.is_some() && !draining => {}
            _ = stop.changed() => {}
        }
    }
    tracing::debug!(worker = n, "delivery worker stopped");
}

fn collect(n: usize, r: Result<Sent, tokio::task::JoinError>, finished: &mut Vec<Sent>) {
    match r {
        Ok(sent) => finished.push(sent),
        // A send task cannot panic short of a bug; its row's lease ends and it is sent again.
        Err(e) => tracing::error!(worker = n, "a delivery send failed: {e}"),
    }
}

/// Sends one request the plugin built through the policed egress.
async fn send(rt: Arc<Runtime>, o: Outgoing) -> Sent {
    let started_ms = rt.config().clock.now_ms();
    let t0 = Instant::now();
    let timeout = if o.timeout_ms == 0 { rt.egress().timeout() } else { Duration::from_millis(o.timeout_ms) };
    let result = rt.egress().post(&o.url, &o.headers, o.body, timeout).await;
    let took = t0.elapsed();
    rt.metrics().attempt_finished(took, result.is_ok());
    Sent {
        delivery_id: o.delivery_id,
        started_ms,
        duration_ms: took.as_millis() as u64,
        outcome: result.map(|f| Response {
            status: f.head.status.as_u16(),
            headers: f
                .head
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body_size: f.body.len() as u64,
            body: f.body.to_vec(),
        }),
        request_headers: o.headers,
    }
}

/// WAL checkpoints, off the commit path (see `storage::open`), on a blocking thread.
async fn checkpoints(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let path = rt.config().db_path();
    let durability = rt.config().durability;
    let conn = match tokio::task::spawn_blocking(move || crate::storage::open(&path, durability)).await {
        Ok(Ok(c)) => Arc::new(std::sync::Mutex::new(c)),
        _ => {
            tracing::error!("could not open the database for checkpoints");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::storage::CHECKPOINT_EVERY) => {}
            _ = stop.changed() => break,
        }
        let c = conn.clone();
        let r = tokio::task::spawn_blocking(move || c.lock().ok().map(|c| crate::storage::checkpoint(&c))).await;
        if let Ok(Some(Err(e))) = r {
            tracing::debug!("checkpoint skipped: {e}");
        }
    }
    // A last checkpoint so a clean stop leaves a small WAL.
    let _ = tokio::task::spawn_blocking(move || conn.lock().ok().map(|c| crate::storage::checkpoint(&c).is_ok())).await;
}

/// History pruning every `maintenance_every`, off the delivery workers.
async fn pruning(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(rt.config().maintenance_every) => {}
            _ = stop.changed() => break,
        }
        match rt.maintain().await {
            Ok(p) => {
                tracing::info!(attempts = p.attempts, deliveries = p.deliveries, events = p.events, "pruned history")
            }
            Err(e) => tracing::error!("pruning history failed: {e}"),
        }
    }
}
