//! # webhooks-host
//!
//! A small wasmtime host that runs the webhooks plugin (a WebAssembly
//! component built from `plugin/`) inside a panel. The component decides;
//! this crate provides capabilities and limits, one module each:
//!
//! | module | capability |
//! |---|---|
//! | [`runtime`] | compile (cached), instantiate, call under deadlines and memory limits |
//! | [`storage`] | the plugin's SQLite database (rusqlite, WAL) |
//! | [`egress`] | policed, pooled outbound HTTP for `wasi:http` |
//! | [`scheduler`] | delivery workers woken by raised events |
//! | [`secrets`] | webhook secrets sealed at rest with a host-held key |
//! | [`auth`] | admin sign-in and sessions for `serve` |
//! | [`admin_ui`] | the panel layout, menu, CSRF and flash messages around the plugin's pages |
//! | [`server`] | `webhooks-host serve`: a minimal panel over HTTP |
//!
//! A Rust panel embeds [`Webhooks`] directly:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use webhooks_host::{Config, Event, Webhooks};
//! let hooks = Webhooks::start(Config::new("./data")).await?;
//! let raised = hooks.raise(Event::new("user.created", r#"{"id": 42}"#)).await?;
//! println!("queued {} deliveries for {}", raised.queued, raised.event_id);
//! hooks.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod admin_ui;
pub mod auth;
pub mod bindings;
pub mod config;
pub mod egress;
pub mod runtime;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

pub use config::{Clock, Config, SystemClock};

use bindings::ex;
use runtime::{CallError, Runtime};
use scheduler::Scheduler;

/// An event the panel raises.
#[derive(Debug, Clone)]
pub struct Event {
    /// Idempotency key; generated when `None`.
    pub id: Option<String>,
    /// A name from the catalog, e.g. `user.created`.
    pub event_type: String,
    /// When it happened (ms since the epoch); now when `None`.
    pub occurred_at_ms: Option<u64>,
    /// The `data` object as JSON text.
    pub data_json: String,
}

impl Event {
    /// An event of `event_type` with `data_json`, id and time chosen for you.
    pub fn new(event_type: impl Into<String>, data_json: impl Into<String>) -> Self {
        Event { id: None, event_type: event_type.into(), occurred_at_ms: None, data_json: data_json.into() }
    }
}

/// What raising one event committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    /// The event's id.
    pub event_id: String,
    /// Deliveries queued (0 when the id had been raised before).
    pub queued: u32,
}

/// Why raising failed; nothing was stored.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RaiseError {
    /// The type is not in the catalog.
    #[error("{0}")]
    UnknownType(String),
    /// The id or data is malformed.
    #[error("{0}")]
    InvalidData(String),
    /// Storage refused the write; retry later.
    #[error("storage: {0}")]
    Storage(String),
    /// The plugin failed.
    #[error("{0}")]
    Plugin(String),
}

impl From<CallError> for RaiseError {
    fn from(e: CallError) -> Self {
        RaiseError::Plugin(e.to_string())
    }
}

/// A running webhooks integration: the component, its workers and its database.
pub struct Webhooks {
    rt: Arc<Runtime>,
    waker: scheduler::Waker,
    scheduler: std::sync::Mutex<Option<Scheduler>>,
    manifest: ex::plugin::Manifest,
}

impl Webhooks {
    /// Loads the component (compiled artifact cached under the data folder),
    /// migrates the schema and starts the delivery workers.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let rt = Runtime::new(config)?;
        let version = rt.migrate().await?.map_err(|e| anyhow::anyhow!("migrating the plugin's schema: {e}"))?;
        let manifest = rt.describe().await?;
        tracing::info!(plugin = %manifest.name, version = %manifest.version, schema = version, "plugin ready");
        let scheduler = Scheduler::start(rt.clone());
        let waker = scheduler.waker();
        Ok(Webhooks { rt, waker, scheduler: std::sync::Mutex::new(Some(scheduler)), manifest })
    }

    /// The plugin's manifest: name, version, menu entries, event catalog.
    pub fn manifest(&self) -> &ex::plugin::Manifest {
        &self.manifest
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        self.rt.config()
    }

    /// Raises one event: commits its deliveries and wakes the workers.
    pub async fn raise(&self, event: Event) -> Result<Raised, RaiseError> {
        let mut v = self.raise_batch(vec![event]).await?;
        v.pop().ok_or_else(|| RaiseError::Plugin("nothing raised".into()))
    }

    /// Raises several events in one transaction: all or nothing.
    pub async fn raise_batch(&self, events: Vec<Event>) -> Result<Vec<Raised>, RaiseError> {
        let now = self.rt.config().clock.now_ms();
        let wit: Vec<_> = events
            .into_iter()
            .map(|e| bindings::types::Event {
                id: e.id.unwrap_or_else(new_event_id),
                event_type: e.event_type,
                occurred_at_ms: e.occurred_at_ms.unwrap_or(now),
                data_json: e.data_json,
            })
            .collect();
        let out = self.rt.raise_batch(&wit).await?.map_err(|e| match e {
            ex::events::RaiseError::UnknownType(m) => RaiseError::UnknownType(m),
            ex::events::RaiseError::InvalidData(m) => RaiseError::InvalidData(m),
            ex::events::RaiseError::Storage(m) => RaiseError::Storage(m),
        })?;
        if out.iter().any(|r| r.queued > 0) {
            self.waker.wake();
        }
        Ok(out.into_iter().map(|r| Raised { event_id: r.event_id, queued: r.queued }).collect())
    }

    /// Hands one admin request (already authenticated and CSRF-checked) to
    /// the plugin; answers its page, redirect or not-found.
    pub async fn admin(&self, req: &ex::admin::Request) -> Result<ex::admin::Response, CallError> {
        let r = self.rt.admin(req).await;
        // A test send or resend may have changed what is due.
        if req.method.eq_ignore_ascii_case("POST") {
            self.waker.wake();
        }
        r
    }

    /// Wakes the delivery workers (after a clock change, for example).
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Prunes history older than the retention period now (the scheduler
    /// also does it every `maintenance_every`).
    pub async fn maintain(&self) -> Result<(u64, u64, u64), CallError> {
        let p = self.rt.maintain().await?;
        Ok((p.attempts, p.deliveries, p.events))
    }

    /// Stops the workers, letting attempts in flight finish for up to 20 s;
    /// what is left resumes on the next start. Later calls do nothing.
    pub async fn shutdown(&self) {
        let s = self.scheduler.lock().ok().and_then(|mut s| s.take());
        if let Some(s) = s {
            s.shutdown(Duration::from_secs(20)).await;
        }
    }
}

/// `evt_` + 16 random bytes in hex.
pub fn new_event_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    format!("evt_{}", hex::encode(b))
}
