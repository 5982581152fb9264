//! Intake capability: group commit of raised events.
//!
//! Panels raise events one at a time from many requests at once. Each would
//! be its own SQLite write transaction, and those queue on the database's
//! one write lock. Instead, [`Intake::raise`] puts the event on a queue and
//! waits for its answer; whoever holds the queue commits everything queued
//! meanwhile in one transaction and answers each caller on its own (one bad
//! event does not refuse the others). The group size follows the load: 1
//! when idle, hundreds under a burst.
//!
//! Holders take turns, never two at once:
//! - **the delivery engine** (`scheduler.rs`), while it runs, on SQLite: the
//!   events go into its next `deliveries.step`, in the same transaction as
//!   the attempts it records and the deliveries it claims, so the process has
//!   one writer and a raised event can be claimed in the step that stored it;
//! - **[`serve_when_idle`]**, a plain group commit through
//!   `events.raise-each`, whenever the engine does not hold the queue: on an
//!   intake-only node (`--workers 0`), after shutdown stopped
//!   delivering, while a panicked engine restarts, and always on PostgreSQL,
//!   where no writer waits for another: there two of them run, each holding
//!   the queue only while it takes a group, so that one group commits while
//!   the next is gathered and stored.

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot};

use crate::bindings::ex::events::{RaiseError, Raised};
use crate::bindings::types::Event;
use crate::runtime::{CallError, Runtime};
use crate::scheduler::Waker;

/// Most events committed in one group.
pub const MAX_GROUP: usize = 1000;
/// Events waiting for a group; callers wait (back-pressure) beyond it.
const QUEUE: usize = 8192;

/// What a caller of [`Intake::raise`] gets back.
pub type Answer = Result<Result<Raised, RaiseError>, CallError>;
/// One queued event and where its answer goes.
pub type Raising = (Event, oneshot::Sender<Answer>);

/// The sending side: where events are raised.
pub struct Intake {
    tx: mpsc::Sender<Raising>,
}

/// The receiving side, held by one committer at a time.
#[derive(Clone)]
pub struct Queue(Arc<Mutex<mpsc::Receiver<Raising>>>);

/// The queue as one committer holds it.
pub type Held = OwnedMutexGuard<mpsc::Receiver<Raising>>;

impl Queue {
    /// Takes the queue now if nobody holds it (the engine at start, so that
    /// it, not [`serve_when_idle`], commits the first events).
    pub fn try_hold(&self) -> Option<Held> {
        self.0.clone().try_lock_owned().ok()
    }

    /// Waits for the queue (a restarted engine).
    pub async fn hold(&self) -> Held {
        self.0.clone().lock_owned().await
    }
}

impl Intake {
    /// A new queue: the `Intake` to raise into and the [`Queue`] to commit from.
    pub fn new() -> (Self, Queue) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Intake { tx }, Queue(Arc::new(Mutex::new(rx))))
    }

    /// Raises one event in the next group; answers once that group committed.
    pub async fn raise(&self, event: Event) -> Answer {
        let (reply, answer) = oneshot::channel();
        let gone = || CallError::Instantiate("the event intake has stopped".into());
        self.tx.send((event, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Commits queued events through `events.raise-each` whenever the engine
/// does not hold the queue; ends when every [`Intake`] is gone.
pub fn serve_when_idle(rt: Arc<Runtime>, queue: Queue, waker: Waker) {
    tokio::spawn(async move {
        let mut group = Vec::with_capacity(MAX_GROUP);
        loop {
            let mut rx = queue.hold().await;
            let n = rx.recv_many(&mut group, MAX_GROUP).await;
            // Let a waiting engine have the queue back between groups.
            drop(rx);
            if n == 0 {
                return;
            }
            let (events, replies): (Vec<Event>, Vec<_>) = group.drain(..).unzip();
            let answers = rt.raise_each(events).await;
            if answers.as_ref().is_ok_and(|a| a.iter().any(|a| a.as_ref().is_ok_and(|r| r.queued > 0))) {
                waker.wake();
            }
            answer(replies, answers);
        }
    });
}

/// Answers each caller of a group: its own result, or the call's failure.
pub fn answer(replies: Vec<oneshot::Sender<Answer>>, answers: Result<Vec<Result<Raised, RaiseError>>, CallError>) {
    match answers {
        Ok(answers) => {
            let mut answers = answers.into_iter();
            for reply in replies {
                let a = answers
                    .next()
                    .ok_or_else(|| CallError::Failed("the plugin answered fewer events than were raised".into()));
                let _ = reply.send(a);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
