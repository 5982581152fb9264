//! Intake capability: group commit of raised events.
//!
//! Panels raise events one at a time from many requests at once. Each would
//! be its own SQLite write transaction, and those queue on the database's
//! one write lock. Instead, [`Intake::raise`] queues the event and one task
//! hands everything queued meanwhile to the plugin's `events.raise-each` in a
//! single call and transaction, then answers each caller on its own (one bad
//! event does not refuse the others). While one group commits, the next one
//! gathers, so the group size follows the load: 1 when idle, hundreds under a
//! burst.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::bindings::ex::events::{RaiseError, Raised};
use crate::bindings::types::Event;
use crate::runtime::{CallError, Runtime};
use crate::scheduler::Waker;

/// Most events committed in one group.
pub const MAX_GROUP: usize = 1000;
/// Events waiting for a group; callers wait (back-pressure) beyond it.
const QUEUE: usize = 8192;

type Answer = Result<Result<Raised, RaiseError>, CallError>;

/// The queue in front of the group-commit task.
pub struct Intake {
    tx: mpsc::Sender<(Event, oneshot::Sender<Answer>)>,
}

impl Intake {
    /// Starts the group-commit task; it ends when the `Intake` is dropped.
    pub fn start(rt: Arc<Runtime>, waker: Waker) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Event, oneshot::Sender<Answer>)>(QUEUE);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                let (events, replies): (Vec<Event>, Vec<_>) = group.drain(..).unzip();
                match rt.raise_each(events).await {
                    Ok(answers) => {
                        if answers.iter().any(|a| a.as_ref().is_ok_and(|r| r.queued > 0)) {
                            waker.wake();
                        }
                        for (reply, a) in replies.into_iter().zip(answers) {
                            let _ = reply.send(Ok(a));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Intake { tx }
    }

    /// Raises one event in the next group; answers once that group committed.
    pub async fn raise(&self, event: Event) -> Answer {
        let (reply, answer) = oneshot::channel();
        let gone = || CallError::Instantiate("the event intake has stopped".into());
        self.tx.send((event, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}
