//! Scheduler capability: the delivery engine that drives the plugin's
//! pipeline (`deliveries.step`), plus the background checkpoint and pruning.
//!
//! The engine is one async loop: on SQLite the process's one writer. It owns
//! the requests in flight (a `JoinSet` of egress sends, up to
//! `delivery_workers × batch_size`) and, on SQLite, the event intake's queue
//! (see `intake.rs`), and calls `step` whenever there is something to do,
//! with everything gathered since the last one, in one call and one write
//! transaction:
//!
//! - **events were raised** (SQLite): committed and answered; their
//!   deliveries can be claimed in that same step. On PostgreSQL the intake
//!   commits them in transactions of its own, beside the steps, and wakes
//!   the engine;
//! - **responses arrived**: every finished attempt is recorded, and the freed
//!   slots are filled from what is due;
//! - **the next due time came** (a retry, as answered by the last step), or
//!   something else changed what is due ([`Waker`]: a webhook enabled, a
//!   batch raised, a resend scheduled).
//!
//! While one step runs (on a blocking thread, see `runtime.rs`), the next one
//! gathers, so steps grow with the load instead of multiplying: there is no
//! fixed-interval polling and no second writer to wait for. (On PostgreSQL
//! the plugin answers a due time at most a second ahead: another node's
//! work can become this one's without anything waking it.) The requests
//! themselves run on the async runtime through the egress, so a receiver that
//! never answers holds one slot until the attempt deadline and nothing else.
//! A failed `step` backs off and goes on (its batch's leases expire and those
//! deliveries are sent again); a panicking engine is restarted. Both are
//! counted in `/metrics`. A step that failed because the database cannot be
//! reached (`CallError::Unavailable`, see `health.rs`) backs off the same
//! way, up to [`MAX_BACKOFF`], but keeps the answers it had gathered for the
//! first step after the outage, refuses events raised meanwhile at once,
//! and steps as soon as the database is back.
//!
//! Stopping (SIGTERM) drains: no more claims; requests on the wire finish
//! and are recorded; claimed deliveries not yet on the wire (being built,
//! or waiting for a per-webhook slot) are handed back at once
//! (`deliveries.release`), so another node — or this one, restarted —
//! sends them now rather than when their lease ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::bindings::ex::deliveries::{AttemptError, Outgoing, Response, Sent, TransportError, Unsendable};
use crate::intake::{self, Held, MAX_GROUP, Queue, Raising};
use crate::runtime::{CallError, Runtime};

/// How long the engine waits before it looks again when every due row is
/// held back by the per-webhook bound with leases it does not own (another
/// process's, or a dead one's). Its own free up as their responses arrive.
const BLOCKED_RECHECK: Duration = Duration::from_secs(1);
/// On PostgreSQL, the longest an engine goes without a step (a heartbeat
/// for the plugin's fair shares; the plugin counts a node silent for 5 s
/// as gone).
const BEAT: Duration = Duration::from_secs(1);
/// Longest back-off after failed steps.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Wakes the delivery engine; cheap to clone and call.
#[derive(Clone)]
pub struct Waker(watch::Sender<u64>);

impl Waker {
    /// Makes the engine look for due work now.
    pub fn wake(&self) {
        self.0.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// The running engine and background tasks.
pub struct Scheduler {
    wake: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Scheduler {
    /// Starts the engine (unless `delivery_workers` is 0: an intake-only
    /// node), the SQLite checkpointer and the pruner. The engine takes `queue` now,
    /// so it commits the first events raised.
    pub fn start(rt: Arc<Runtime>, queue: Queue) -> Self {
        let (wake, _) = watch::channel(0u64);
        let (stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        if rt.config().delivery_workers > 0 {
            // On SQLite the engine commits raised events in its own step (one
            // writer). On PostgreSQL nodes write side by side, so the
            // intake's own group commits (`intake::serve_when_idle`) take
            // them beside the engine's steps: a raise waits for its own
            // short transaction, not for a step and a build, and the two
            // transactions' commits overlap.
            let queue = rt.config().database_url.is_none().then_some(queue);
            let held = queue.as_ref().and_then(Queue::try_hold);
            tasks.spawn(supervise(rt.clone(), queue, held, wake.clone(), stop.subscribe()));
        }
        // PostgreSQL checkpoints its own WAL.
        if rt.config().database_url.is_none() {
            tasks.spawn(checkpoints(rt.clone(), stop.subscribe()));
        }
        // While nothing else runs statements, someone must notice that the
        // database went away or came back (`health::watch`; SQLite's never
        // changes).
        if rt.config().database_url.is_some() {
            let probing = rt.clone();
            let probe = move || {
                let rt = probing.clone();
                async move { rt.probe().await }
            };
            tasks.spawn(crate::health::watch(rt.health().clone(), probe, stop.subscribe()));
        }
        tasks.spawn(pruning(rt, stop.subscribe()));
        Scheduler { wake, stop, tasks }
    }

    /// A handle that wakes the engine (after something changed what is due).
    pub fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    /// Stops claiming, hands back what was claimed but is not on the wire
    /// yet, lets requests in flight finish and records them, for up to
    /// `grace`; what is still on the wire then stays leased and is sent again
    /// when its lease ends. Events raised meanwhile are still committed;
    /// afterwards the intake's own group commit takes them.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("delivery did not finish within {grace:?}; the rest resumes on the next start");
            self.tasks.abort_all();
        }
    }
}

/// Runs the engine, restarting it when it panics.
async fn supervise(
    rt: Arc<Runtime>,
    queue: Option<Queue>,
    mut held: Option<Held>,
    wake: watch::Sender<u64>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let rx = match (held.take(), &queue) {
            (Some(rx), _) => Some(rx),
            (None, Some(q)) => Some(q.hold().await),
            (None, None) => None,
        };
        // Its own task, so that a panic is caught here; in a set of its own,
        // which aborts it when this one is aborted (a shutdown past its grace,
        // or the scheduler dropped): never left running on its own.
        let mut engine = JoinSet::new();
        engine.spawn(deliver(rt.clone(), rx, wake.subscribe(), stop.clone()));
        match engine.join_next().await.expect("one task was spawned") {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                // Its in-flight rows stay leased and come back when the lease
                // ends; events it held were answered with an error.
                tracing::error!("the delivery engine panicked; restarting it");
                rt.metrics().worker_restarted("panic");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return,
        }
    }
}

/// The engine loop; returns once draining is done (and hands the intake
/// queue back by dropping `rx`).
async fn deliver(
    rt: Arc<Runtime>,
    mut rx: Option<Held>,
    mut wake: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::debug!("delivery engine started");
    let cfg = rt.config();
    let max = (cfg.delivery_workers as u32).saturating_mul(cfg.batch_size.max(1));
    let mut flying: JoinSet<Flight> = JoinSet::new();
    // `deliveries.build` calls for claimed ids (reads only); how many ids
    // they hold. One at a time, right after its step, except the halves of a
    // build that trapped.
    let mut building: JoinSet<Built> = JoinSet::new();
    let being_built = Arc::new(AtomicU32::new(0));
    let mut finished: Vec<Sent> = Vec::new();
    // Claimed but never sent, because the engine is stopping: handed back.
    let mut unsent: Vec<i64> = Vec::new();
    // PostgreSQL: several nodes share the bounds (heartbeats, see `beat`).
    let shared = cfg.database_url.is_some();
    let mut last_step = Instant::now();
    let mut raising: Vec<Raising> = Vec::new();
    let mut failures = 0u32;
    let mut wire = Wire::new(cfg.per_webhook_concurrency.max(1), stop.clone());
    // When to look for due work; `None` sleeps until woken.
    let mut due: Option<Instant> = Some(Instant::now());
    loop {
        // Everything that came in since the last step goes into the next:
        // raised events and finished attempts alike, so neither waits on
        // the other.
        while raising.len() < MAX_GROUP
            && let Some(Ok(r)) = rx.as_mut().map(|rx| rx.try_recv())
        {
            raising.push(r);
        }
        while let Some(r) = flying.try_join_next() {
            collect(r, &mut finished, &mut unsent);
        }
        while let Some(b) = building.try_join_next() {
            built(&rt, b, &mut wire, &mut flying, &mut building, &being_built, &mut finished);
        }
        // A stop sent, or its sender gone (the scheduler dropped without a
        // shutdown): either way nothing more is claimed.
        let draining = *stop.borrow() || stop.has_changed().is_err();
        if !unsent.is_empty() {
            // At once, before waiting on anything in flight: other nodes
            // may take them in their next claim.
            release(&rt, std::mem::take(&mut unsent)).await;
        }
        let free = max.saturating_sub(flying.len() as u32 + being_built.load(Ordering::Relaxed));
        // Claim when work is due, and whenever responses freed slots or events
        // were raised: rows held back by the per-webhook bound may go now, and
        // new deliveries are due at once.
        let claim =
            if !draining && (!finished.is_empty() || !raising.is_empty() || due.is_some_and(|d| d <= Instant::now())) {
                free
            } else {
                0
            };
        // On PostgreSQL a step at least every second, even with every slot
        // busy or while draining: its heartbeat keeps this node counted
        // among those sharing each webhook's bound while it still has
        // requests out (see `deliveries.release`).
        let beat = shared && last_step.elapsed() >= BEAT;
        if !finished.is_empty() || !raising.is_empty() || claim > 0 || beat {
            last_step = Instant::now();
            let (events, replies): (Vec<_>, Vec<_>) = raising.drain(..).unzip();
            let had_events = !events.is_empty();
            let done = Arc::new(std::mem::take(&mut finished));
            let stepped_at = cfg.clock.now_ms();
            let mut r = rt.step(events, done.clone(), claim).await;
            if let Err(e) = &r {
                // Whatever failed, the callers must hear now.
                intake::answer(replies, Err(e.clone()));
                if had_events && !matches!(e, CallError::Unavailable(_)) {
                    // Perhaps it was one of the events: record the attempts
                    // without them rather than send those again later.
                    r = rt.step(Vec::new(), done.clone(), claim).await;
                }
            } else if let Ok(report) = &mut r {
                intake::answer(replies, Ok(std::mem::take(&mut report.raised)));
            }
            match r {
                Ok(report) => {
                    failures = 0;
                    let got = report.claimed.len() as u32;
                    if got > 0 {
                        // Built at once, before the next step: measured, that
                        // beats building beside the next step on both
                        // throughput and latency (they only compete for the
                        // two cores). A separate call all the same, so that a
                        // row that traps the build is found and recorded
                        // (see `built`) without failing the step's commit.
                        spawn_build(&mut building, &rt, report.claimed, &being_built);
                        if let Some(b) = building.join_next().await {
                            built(&rt, b, &mut wire, &mut flying, &mut building, &being_built, &mut finished);
                        }
                    }
                    if claim > 0 {
                        let now_ms = cfg.clock.now_ms();
                        due = report.next_due_ms.map(|at| match at.checked_sub(now_ms) {
                            Some(wait) if wait > 0 => Instant::now() + Duration::from_millis(wait),
                            // Due now and we took all we asked for: more may wait.
                            _ if got >= claim => Instant::now(),
                            // Fell due while the step ran (a rate-limited
                            // webhook's next token, a retry): nothing held
                            // it back at the step's claim, so look now. A
                            // row held back by the bound was due before it.
                            _ if at > stepped_at => Instant::now(),
                            // Due now but held back by the per-webhook bound.
                            _ => Instant::now() + BLOCKED_RECHECK,
                        });
                    }
                }
                Err(e) => {
                    failures += 1;
                    let backoff = (Duration::from_millis(100) * 2u32.saturating_pow(failures)).min(MAX_BACKOFF);
                    due = Some(Instant::now() + backoff);
                    let unavailable = matches!(e, CallError::Unavailable(_));
                    if unavailable {
                        // Nothing of the step was committed, and the database,
                        // not the batch, is at fault: the answers gathered
                        // are recorded in the first step it takes again,
                        // rather than sent again when their leases end (the
                        // plugin records a late answer as any other). The
                        // outage itself is logged once, by `health`.
                        rt.metrics().worker_restarted("database");
                        finished = Arc::unwrap_or_clone(done);
                        tracing::debug!(
                            "delivery step failed, retrying in {backoff:?} or once the database is back: {e}"
                        );
                    } else {
                        // The batch's rows stay leased; they are sent again
                        // (same webhook-id) when the lease ends.
                        rt.metrics().worker_restarted("plugin");
                        tracing::error!("delivery step failed, retrying in {backoff:?}: {e}");
                    }
                    backoff_wait(&rt, backoff, unavailable.then_some(&e), &mut rx, &mut stop, draining).await;
                    if unavailable && rt.health().available() {
                        // Back before the back-off ended: look for due work now.
                        due = Some(Instant::now());
                    }
                }
            }
            continue;
        }
        if draining && flying.is_empty() && building.is_empty() {
            if shared {
                // Nothing left on the wire: this node leaves the set sharing
                // each webhook's bound; the others take its share at once.
                if let Err(e) = rt.release(Vec::new()).await {
                    tracing::warn!(
                        "stopping: leaving the nodes that share the delivery bounds failed; the others take this node's share in a few seconds: {e}"
                    );
                }
            }
            break;
        }
        let sleep = due.map(tokio::time::Instant::from_std);
        tokio::select! {
            Some(r) = flying.join_next(), if !flying.is_empty() => {
                collect(r, &mut finished, &mut unsent);
                while let Some(r) = flying.try_join_next() {
                    collect(r, &mut finished, &mut unsent);
                }
            }
            Some(b) = building.join_next(), if !building.is_empty() => {
                built(&rt, b, &mut wire, &mut flying, &mut building, &being_built, &mut finished);
            }
            Some(r) = next_raised(&mut rx) => raising.push(r),
            Ok(()) = wake.changed(), if !draining => due = Some(Instant::now()),
            // A due time matters only with a free slot to fill; with none, a
            // past due time would wake the loop at once, again and again.
            () = async { tokio::time::sleep_until(sleep.expect("guarded")).await }, if sleep.is_some() && !draining && free > 0 => {}
            // Only to notice the stop: once draining, a closed channel would
            // answer at once, again and again.
            _ = stop.changed(), if !draining => {}
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(last_step + BEAT)), if shared => {}
        }
    }
    tracing::debug!("delivery engine stopped");
}

/// The next raised event, when the engine holds the intake's queue; never
/// otherwise.
async fn next_raised(rx: &mut Option<Held>) -> Option<Raising> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits out the back-off after a failed step: until it ends, the engine
/// is told to stop, or — when the step failed because the database cannot
/// be reached (`unavailable`, that error) — the database is back (another
/// call or the health probe reached it: step at once). Meanwhile, while it
/// is unreachable, events raised are refused at once with that error
/// rather than held for the back-off: the panel hears 503 now and retries.
async fn backoff_wait(
    rt: &Arc<Runtime>,
    backoff: Duration,
    unavailable: Option<&CallError>,
    rx: &mut Option<Held>,
    stop: &mut watch::Receiver<bool>,
    draining: bool,
) {
    let until = tokio::time::Instant::now() + backoff;
    let health = rt.health().clone();
    // Never sooner than the first back-off: a database that answers some
    // calls and not others must not make the engine spin.
    let back = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        health.back().await
    };
    tokio::pin!(back);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return,
            _ = stop.changed(), if !draining => return,
            () = &mut back, if unavailable.is_some() => return,
            Some((_, reply)) = next_raised(rx), if unavailable.is_some() => {
                let _ = reply.send(Err(unavailable.cloned().expect("guarded")));
            }
        }
    }
}

/// The per-webhook bound on requests on the wire from this host: one
/// semaphore per webhook. (The plugin leases up to twice the bound, so a
/// slot whose answer is being recorded is refilled at once; the extra leased
/// requests wait here for a slot, never at the receiver.)
struct Wire {
    bound: usize,
    slots: HashMap<i64, Arc<Semaphore>>,
    stop: watch::Receiver<bool>,
}

impl Wire {
    fn new(bound: u32, stop: watch::Receiver<bool>) -> Self {
        Wire { bound: bound as usize, slots: HashMap::new(), stop }
    }

    /// A place in the queue for one of `webhook`'s slots.
    fn turn(&mut self, webhook: i64) -> Turn {
        if self.slots.len() >= 1024 {
            // Forget webhooks with nothing in flight (deleted ones among them).
            self.slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let slot = self.slots.entry(webhook).or_insert_with(|| Arc::new(Semaphore::new(self.bound))).clone();
        Turn { slot, stop: self.stop.clone() }
    }
}

/// One request's wait for a slot on the wire to its webhook.
struct Turn {
    slot: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Turn {
    /// Waits for the slot; `None` once the engine is stopping: a request that
    /// has not started by then is handed back, not sent.
    async fn take(mut self) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            // Stopping wins over a free slot: nothing starts after the stop.
            biased;
            _ = self.stop.wait_for(|stopping| *stopping) => None,
            permit = self.slot.acquire_owned() => permit.ok(),
        }
    }
}

/// What became of one built request.
enum Flight {
    /// Sent (or failed on the way): to be recorded.
    Sent(Sent),
    /// Not started because the engine is stopping: its lease is to be
    /// released (the delivery id).
    NotSent(i64),
}

/// A finished `deliveries.build` call: the ids it was given and its answer.
type Built = (Vec<i64>, Result<Vec<Result<Outgoing, Unsendable>>, CallError>);

/// Counts ids as being built until dropped (even if the task panics), so the
/// engine's free slots stay right.
struct Building(Arc<AtomicU32>, u32);

impl Drop for Building {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

/// Builds the requests of claimed deliveries (a plugin call on a blocking
/// thread, as every call); the ids count as busy slots from now on.
fn spawn_build(building: &mut JoinSet<Built>, rt: &Arc<Runtime>, ids: Vec<i64>, count: &Arc<AtomicU32>) {
    count.fetch_add(ids.len() as u32, Ordering::Relaxed);
    let counted = Building(count.clone(), ids.len() as u32);
    let rt = rt.clone();
    building.spawn(async move {
        let _counted = counted;
        let r = rt.build(ids.clone()).await;
        (ids, r)
    });
}

/// Acts on a finished build: sends what was built; hands what cannot be sent
/// to the next step as a failed attempt. When the call itself trapped, one
/// of its rows may be to blame: the ids are built again in halves, until the
/// one that traps is alone and is recorded as failed (`build-failed`, with
/// the error id of its log line). It is tried once more on the retry
/// schedule; failing again, the plugin quarantines it: `exhausted` at once,
/// visible in the history and resendable. The other rows go on.
fn built(
    rt: &Arc<Runtime>,
    b: Result<Built, tokio::task::JoinError>,
    wire: &mut Wire,
    flying: &mut JoinSet<Flight>,
    building: &mut JoinSet<Built>,
    being_built: &Arc<AtomicU32>,
    finished: &mut Vec<Sent>,
) {
    let now_ms = rt.config().clock.now_ms();
    match b {
        Ok((_, Ok(answers))) => {
            for a in answers {
                match a {
                    // While stopping, the send answers `NotSent` at once.
                    Ok(o) => {
                        let turn = wire.turn(o.webhook_id);
                        flying.spawn(send(rt.clone(), turn, o));
                    }
                    Err(u) => finished.push(Sent {
                        delivery_id: u.delivery_id,
                        started_ms: now_ms,
                        duration_ms: 0,
                        outcome: Err(AttemptError::Unsendable(u.error)),
                        request_headers: u.request_headers,
                        transformed: u.transformed,
                    }),
                }
            }
        }
        Ok((mut ids, Err(CallError::Trap(e)))) => {
            if ids.len() > 1 {
                let second = ids.split_off(ids.len() / 2);
                spawn_build(building, rt, ids, being_built);
                spawn_build(building, rt, second, being_built);
            } else if let Some(id) = ids.pop() {
                // The admin sees the id in the history; the detail (a wasm
                // backtrace) stays in the log under it.
                let error_id = format!("E-{}", crate::secrets::random_hex(4));
                tracing::error!(delivery = id, error_id = %error_id, "the plugin failed building this delivery's request: {e}");
                finished.push(Sent {
                    delivery_id: id,
                    started_ms: now_ms,
                    duration_ms: 0,
                    outcome: Err(AttemptError::BuildFailed(error_id)),
                    request_headers: Vec::new(),
                    transformed: None,
                });
            }
        }
        // The database or an instance failed, not a row: the leases run out
        // and the rows are claimed again. (An unreachable database is
        // logged once, by `health`.)
        Ok((ids, Err(e @ CallError::Unavailable(_)))) => {
            tracing::debug!(
                deliveries = ids.len(),
                "building requests failed; they are retried when their lease ends: {e}"
            )
        }
        Ok((ids, Err(e))) => {
            tracing::error!(
                deliveries = ids.len(),
                "building requests failed; they are retried when their lease ends: {e}"
            )
        }
        Err(e) => tracing::error!("a build task failed: {e}"),
    }
}

fn collect(r: Result<Flight, tokio::task::JoinError>, finished: &mut Vec<Sent>, unsent: &mut Vec<i64>) {
    match r {
        Ok(Flight::Sent(sent)) => finished.push(sent),
        Ok(Flight::NotSent(id)) => unsent.push(id),
        // A send task cannot panic short of a bug; its row's lease ends and it is sent again.
        Err(e) => tracing::error!("a delivery send failed: {e}"),
    }
}

/// Hands claimed deliveries this engine will not send back to the plugin,
/// which ends their leases. If that fails, they wait for their lease to end,
/// as after a crash.
async fn release(rt: &Arc<Runtime>, ids: Vec<i64>) {
    let n = ids.len();
    match rt.release(ids).await {
        Ok(_) if n == 0 => {}
        Ok(released) => tracing::info!(claimed = n, released, "stopping: handed back deliveries not yet sent"),
        Err(e) => tracing::error!(
            deliveries = n,
            "stopping: handing back deliveries not yet sent failed; they are sent when their lease ends: {e}"
        ),
    }
}

/// Sends one request the plugin built through the policed egress, unless
/// the engine stops before it has a slot.
async fn send(rt: Arc<Runtime>, turn: Turn, o: Outgoing) -> Flight {
    // Held until the answer is read: the receiver never sees more than the
    // per-webhook bound from this host. The attempt starts once it has a slot.
    let Some(_on_the_wire) = turn.take().await else {
        return Flight::NotSent(o.delivery_id);
    };
    let started_ms = rt.config().clock.now_ms();
    let t0 = Instant::now();
    let timeout = if o.timeout_ms == 0 { rt.egress().timeout() } else { Duration::from_millis(o.timeout_ms) };
    let result = rt.egress().post(&o.url, &o.headers, o.body, timeout).await;
    // Handed back untouched: the plugin records what its transformation did.
    let transformed = o.transformed;
    let took = t0.elapsed();
    rt.metrics().attempt_finished(took, result.is_ok());
    Flight::Sent(Sent {
        delivery_id: o.delivery_id,
        started_ms,
        duration_ms: took.as_millis() as u64,
        outcome: result
            .map(|f| Response {
                status: f.head.status.as_u16(),
                headers: f
                    .head
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
                body_size: f.body.len() as u64,
                body: f.body.to_vec(),
            })
            .map_err(|e| AttemptError::Transport(TransportError { code: e.code, detail: e.detail })),
        request_headers: o.headers,
        transformed,
    })
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

/// History pruning every `maintenance_every`, off the delivery engine.
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
            // Logged once, by `health`; the next round prunes.
            Err(e @ CallError::Unavailable(_)) => tracing::debug!("pruning history failed: {e}"),
            Err(e) => tracing::error!("pruning history failed: {e}"),
        }
    }
}
