//! Scheduler capability: the delivery workers that call `deliveries.run-due`.
//!
//! Each worker loops: run a batch; if the batch was full, run again at once;
//! otherwise sleep until the next delivery falls due or an event is raised
//! (a wake-up, not polling), at most [`MAX_SLEEP`]. Workers use their own
//! instances, so a slow receiver never blocks admin pages or event intake.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::runtime::Runtime;

/// Longest sleep between runs even when nothing is due (picks up rows whose
/// lease expired after a crash, and clock changes).
pub const MAX_SLEEP: Duration = Duration::from_secs(5);

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
    rt: Arc<Runtime>,
}

impl Scheduler {
    /// Starts `config.delivery_workers` workers.
    pub fn start(rt: Arc<Runtime>) -> Self {
        let (wake, _) = watch::channel(0u64);
        let (stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for n in 0..rt.config().delivery_workers {
            let rt = rt.clone();
            let mut wake_rx = wake.subscribe();
            let mut stop_rx = stop.subscribe();
            tasks.spawn(async move {
                tracing::debug!(worker = n, "delivery worker started");
                loop {
                    if *stop_rx.borrow() {
                        break;
                    }
                    let batch = rt.config().batch_size;
                    let sleep = match rt.run_due(batch).await {
                        Ok(r) if r.attempted >= batch => Duration::ZERO,
                        Ok(r) => {
                            let now = rt.config().clock.now_ms();
                            r.next_due_ms
                                .map_or(MAX_SLEEP, |due| Duration::from_millis(due.saturating_sub(now)))
                                .min(MAX_SLEEP)
                        }
                        // The component failed this run; its rows stay leased
                        // and come back when the lease ends.
                        Err(e) => {
                            tracing::error!(worker = n, "delivery run failed: {e}");
                            Duration::from_secs(1)
                        }
                    };
                    if sleep.is_zero() {
                        continue;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(sleep) => {}
                        _ = wake_rx.changed() => {}
                        _ = stop_rx.changed() => {}
                    }
                }
            });
        }
        // WAL checkpoints, off the commit path (see `storage::open`).
        {
            let rt = rt.clone();
            let mut stop_rx = stop.subscribe();
            tasks.spawn(async move {
                let path = rt.config().db_path();
                let durability = rt.config().durability;
                let conn = match tokio::task::spawn_blocking(move || crate::storage::open(&path, durability)).await {
                    Ok(Ok(c)) => std::sync::Arc::new(std::sync::Mutex::new(c)),
                    _ => {
                        tracing::error!("could not open the database for checkpoints");
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(crate::storage::CHECKPOINT_EVERY) => {}
                        _ = stop_rx.changed() => break,
                    }
                    let c = conn.clone();
                    let r = tokio::task::spawn_blocking(move || c.lock().ok().map(|c| crate::storage::checkpoint(&c)))
                        .await;
                    if let Ok(Some(Err(e))) = r {
                        tracing::debug!("checkpoint skipped: {e}");
                    }
                }
                // A last checkpoint so a clean stop leaves a small WAL.
                let _ = tokio::task::spawn_blocking(move || {
                    conn.lock().ok().map(|c| crate::storage::checkpoint(&c).is_ok())
                })
                .await;
            });
        }
        // History pruning, off the delivery workers.
        {
            let rt = rt.clone();
            let mut stop_rx = stop.subscribe();
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(rt.config().maintenance_every) => {}
                        _ = stop_rx.changed() => break,
                    }
                    match rt.maintain().await {
                        Ok(p) => tracing::info!(
                            attempts = p.attempts,
                            deliveries = p.deliveries,
                            events = p.events,
                            "pruned history"
                        ),
                        Err(e) => tracing::error!("pruning history failed: {e}"),
                    }
                }
            });
        }
        Scheduler { wake, stop, tasks, rt }
    }

    /// A handle that wakes every worker (after events were raised).
    pub fn waker(&self) -> Waker {
        Waker(self.wake.clone())
    }

    /// Stops taking new work and waits up to `grace` for runs in progress;
    /// unfinished rows stay leased and resume on the next start.
    pub async fn shutdown(mut self, grace: Duration) {
        self.rt.start_draining();
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("delivery workers did not finish within {grace:?}; the rest resumes on the next start");
            self.tasks.abort_all();
        }
    }
}
