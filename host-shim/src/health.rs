//! Database health: whether this node can reach its database now, in one
//! place. `/healthz`, the event and management API, the admin pages, the
//! delivery engine and the log all read it from here; only the storage
//! reports into it.
//!
//! - A statement that fails because the server cannot be reached (no
//!   connection could be opened, the connection closed, the server is
//!   shutting down or starting up: [`crate::storage::postgres::unreachable_reason`])
//!   marks the database **unavailable**; the first such failure logs one
//!   warning.
//! - The next statement that succeeds, on any connection, marks it
//!   **available** again and logs one line saying how long it was away
//!   (one sent [`SETTLE`] after the latest failure: an answer to one sent
//!   before, or while a stopping server still ends its sessions one by
//!   one, proves nothing about now).
//! - Between the two, nothing more is logged for the failed calls: an
//!   outage is one warning and one info line, not a line per call.
//! - A statement that fails for any other reason (a constraint, a lock
//!   timeout, a bad statement) says nothing about reachability and changes
//!   nothing here.
//!
//! SQLite is a file this process opens itself: it cannot be unreachable, so
//! its storage never reports here and a SQLite node is always available
//! (its errors are `busy` or I/O errors of the file, answered as before).
//!
//! While nothing runs (an intake-only node, or an idle one), nothing would
//! notice an outage or its end; [`watch`] then asks the server itself,
//! through the same pool, at most every [`PROBE_EVERY`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch as channel;

/// How often [`watch`] checks, and how long the database may go without a
/// statement before it asks the server itself.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long after the latest failure to reach the server a statement must
/// have been sent for its success to end the outage. A server shutting
/// down (`pg_ctl stop -m fast`) ends its sessions one by one: a statement
/// on one not yet ended still succeeds a few milliseconds after another
/// failed, and counted as "back" it made one outage log twice. Recovery is
/// noticed at most this much later.
pub const SETTLE: Duration = Duration::from_millis(500);
/// What `Retry-After` says on answers refused because the database is
/// unavailable (seconds): long enough for a restart, short enough that an
/// event waits little once it is back.
pub const RETRY_AFTER_SECS: u64 = 5;

/// This node's view of its database; cheap to clone (one shared state).
#[derive(Clone)]
pub struct Health(Arc<Inner>);

struct Inner {
    /// The fast path of every statement: one load when nothing changes.
    down: AtomicBool,
    /// Unavailable since (and why): `Some` while down. The transitions go
    /// through this channel, so that two threads reporting at once log
    /// once, and the engine can wait for the database to come back.
    state: channel::Sender<Option<Outage>>,
    /// When the last statement succeeded, in µs since `born` (for [`watch`]).
    last_ok_us: AtomicU64,
    /// When the latest statement that succeeded was sent, in µs since `born`.
    ok_sent_us: AtomicU64,
    /// When the latest failure to reach the server was reported, in µs
    /// since `born`.
    failed_us: AtomicU64,
    born: Instant,
}

#[derive(Clone, Debug)]
struct Outage {
    since: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("available", &self.available()).finish()
    }
}

impl Health {
    /// A database that is available until its storage says otherwise.
    pub fn new() -> Self {
        Health(Arc::new(Inner {
            down: AtomicBool::new(false),
            state: channel::Sender::new(None),
            last_ok_us: AtomicU64::new(0),
            ok_sent_us: AtomicU64::new(0),
            failed_us: AtomicU64::new(0),
            born: Instant::now(),
        }))
    }

    /// Whether the database can be reached, as far as the last statements
    /// showed.
    pub fn available(&self) -> bool {
        !self.0.down.load(Ordering::Relaxed)
    }

    /// How long the database has been unavailable; `None` while available.
    pub fn down_for(&self) -> Option<Duration> {
        self.0.state.borrow().as_ref().map(|o| o.since.elapsed())
    }

    /// A statement sent at `sent` failed because the server cannot be
    /// reached (`why`: the error, which says so, for the one warning an
    /// outage logs). Stale news is ignored: when a statement sent later
    /// has succeeded (the failure took a while to come back: a connection
    /// that timed out), the server was reachable after all.
    pub fn unreachable(&self, why: &str, sent: Instant) {
        if self.us(sent) < self.0.ok_sent_us.load(Ordering::Relaxed) {
            return;
        }
        self.0.failed_us.fetch_max(self.us(Instant::now()), Ordering::Relaxed);
        // The flag changes under the channel's lock, with the state.
        let began = self.0.state.send_if_modified(|s| {
            self.0.down.store(true, Ordering::Relaxed);
            if s.is_some() {
                return false;
            }
            *s = Some(Outage { since: Instant::now() });
            true
        });
        if began {
            tracing::warn!(
                "{why}; until it can, /healthz answers 503, raises and pages answer 503 (retry later) and \
                 deliveries wait; checking again every {PROBE_EVERY:?}"
            );
        }
    }

    /// A statement that started at `started` succeeded. It ends an outage
    /// only if it started [`SETTLE`] after the latest failure: a statement
    /// sent before (say, one answered just before a shutting-down server
    /// ended its session) proves nothing about now, and would make one
    /// outage log twice.
    pub fn reached(&self, started: Instant) {
        self.0.last_ok_us.store(self.us(Instant::now()), Ordering::Relaxed);
        self.0.ok_sent_us.fetch_max(self.us(started), Ordering::Relaxed);
        if !self.0.down.load(Ordering::Relaxed) {
            return;
        }
        let settled = self.us(started) >= self.0.failed_us.load(Ordering::Relaxed) + SETTLE.as_micros() as u64;
        let mut away = None;
        self.0.state.send_if_modified(|s| {
            match s {
                Some(o) if settled && o.since <= started => away = Some(o.since.elapsed()),
                _ => return false,
            }
            *s = None;
            self.0.down.store(false, Ordering::Relaxed);
            true
        });
        if let Some(away) = away {
            tracing::info!("the database is reachable again after {:.1} s; resuming", away.as_secs_f64());
        }
    }

    /// Resolves once the database is available (at once when it is).
    pub async fn back(&self) {
        let mut rx = self.0.state.subscribe();
        let _ = rx.wait_for(Option::is_none).await;
    }

    /// How long since a statement last succeeded.
    fn quiet_for(&self) -> Duration {
        let last = self.0.last_ok_us.load(Ordering::Relaxed);
        self.0.born.elapsed().saturating_sub(Duration::from_micros(last))
    }

    /// `t` in µs since this state was made (0 before).
    fn us(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.0.born).as_micros() as u64
    }
}

/// Keeps [`Health`] true while nothing else runs statements: every
/// [`PROBE_EVERY`], if the database is unavailable or no statement
/// succeeded meanwhile, `probe` asks the server (on PostgreSQL a `SELECT 1`
/// on a pooled connection, reporting into `health` like any statement).
/// A busy node never probes: its own statements keep the state fresh.
/// Ends when `stop` changes.
pub async fn watch<F, Fut>(health: Health, probe: F, mut stop: tokio::sync::watch::Receiver<bool>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.changed() => return,
        }
        if !health.available() || health.quiet_for() >= PROBE_EVERY {
            probe().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_begins_with_the_first_unreachable_statement_and_ends_with_the_next_success() {
        let h = Health::new();
        assert!(h.available());
        assert_eq!(h.down_for(), None);
        h.reached(Instant::now());
        assert!(h.available(), "a success while available changes nothing");
        let sent_before = Instant::now();
        h.unreachable("the database cannot be reached: connection refused", Instant::now());
        h.unreachable("the database cannot be reached: connection refused", Instant::now());
        assert!(!h.available());
        assert!(h.down_for().is_some());
        h.reached(sent_before);
        assert!(!h.available(), "a statement sent before the outage began does not end it");
        h.reached(Instant::now());
        assert!(!h.available(), "nor one sent while a stopping server may still answer some sessions");
        h.reached(Instant::now() + SETTLE);
        assert!(h.available());
        assert_eq!(h.down_for(), None);
        // A failure of a statement sent before that success is old news.
        h.unreachable("the database cannot be reached: timed out", sent_before);
        assert!(h.available(), "a failure older than the last success does not begin an outage");
    }

    #[tokio::test]
    async fn back_waits_for_the_database() {
        let h = Health::new();
        h.back().await; // available: at once
        h.unreachable("the database cannot be reached: connection closed", Instant::now());
        let waiting = tokio::spawn({
            let h = h.clone();
            async move { h.back().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        h.reached(Instant::now() + SETTLE);
        tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
    }
}
