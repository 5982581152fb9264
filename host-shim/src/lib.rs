//! # webhooks-host
//!
//! A small wasmtime host that runs the webhooks plugin (a WebAssembly
//! component built from `plugin/`) inside a panel. The component decides;
//! this crate provides capabilities and limits, one module each:
//!
//! | module | capability |
//! |---|---|
//! | [`runtime`] | compile (cached), instantiate, call under deadlines and memory limits |
//! | [`storage`] | the plugin's database, SQLite (rusqlite, WAL) or PostgreSQL (tokio-postgres, pooled): the `storage` interface |
//! | [`host_info`] | mount path, settings and the egress check: the `host-info` interface |
//! | [`telemetry`] | the plugin's log lines and attempt counts: the `log` and `telemetry` interfaces |
//! | [`transform`] | webhooks' transformations (#24): check, compile (cached) and run components that import nothing, under a deadline and a memory cap: the `transform` interface |
//! | [`datadir`] | a private data folder: folders 0700, the database, keys and cache 0600 |
//! | [`egress`] | policed, pooled outbound HTTP for `wasi:http` |
//! | [`scheduler`] | the delivery engine: one loop that drives `deliveries.step` (the process's one writer) and sends through the egress |
//! | [`intake`] | the queue of events raised one at a time, committed in groups by the engine (or on their own when it does not run) |
//! | [`health`] | whether the database can be reached: what the storage reports, read by `/healthz`, the API, the pages and the engine |
//! | [`metrics`] | Prometheus metrics for `/metrics` |
//! | [`secrets`] | webhook secrets sealed at rest with a host-held key (the `secrets` interface); every secret file of the data folder |
//! | [`auth`] | admin sign-in and sessions for `serve` |
//! | [`admin_ui`] | the panel layout, menu, CSRF and flash messages around the plugin's pages |
//! | [`server`] | `webhooks-host serve`: a minimal panel over HTTP |
//!
//! A Rust panel embeds [`Webhooks`] directly (this example runs in `cargo test --doc`):
//!
//! ```
//! # #[tokio::main] async fn main() -> anyhow::Result<()> {
//! use webhooks_host::bindings::ex::admin::{Request, Response};
//! use webhooks_host::{Config, Event, Webhooks};
//!
//! let dir = tempfile::tempdir()?; // your panel's data folder
//! let hooks = Webhooks::start(Config::new(dir.path())).await?;
//!
//! // Your admin menu gets the plugin's entries.
//! let menu = &hooks.manifest().menu;
//! assert_eq!((menu[0].section.as_str(), menu[0].label.as_str()), ("Integrations", "Webhooks"));
//!
//! // Something happened: commit it; deliveries go out in the background.
//! let raised = hooks.raise(Event::new("user.created", r#"{"id": 42, "email": "ada@example.com"}"#)).await?;
//! assert_eq!(raised.queued, 0); // no webhook subscribed yet
//!
//! // An admin opens the dashboard: the plugin answers a fragment for your layout.
//! let req = Request {
//!     method: "GET".into(),
//!     path: "/".into(),
//!     query: vec![],
//!     form: vec![],
//!     actor: "alice".into(),
//!     csrf_token: "token-from-your-session".into(),
//!     csrf_field: "_token".into(),
//! };
//! let Response::Page(page) = hooks.admin(&req).await? else { unreachable!() };
//! assert_eq!((page.status, page.title.as_str()), (200, "Webhooks"));
//! assert!(page.fragment.contains("Create webhook"));
//!
//! hooks.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod admin_ui;
pub mod auth;
pub mod bindings;
pub mod config;
pub mod datadir;
pub mod egress;
pub mod health;
pub mod host_info;
pub mod intake;
pub mod listener;
pub mod metrics;
pub mod runtime;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod transform;

use std::sync::Arc;
use std::time::Duration;

pub use config::{Clock, Config, SystemClock};
pub use runtime::CallError;

use bindings::ex;
use runtime::Runtime;
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
    ///
    /// ```
    /// let mut e = webhooks_host::Event::new("ticket.closed", r#"{"id": 5012, "user_id": 42, "status": "closed"}"#);
    /// e.id = Some("ticket-5012-closed-1".into()); // idempotency key: raising it twice queues once
    /// e.occurred_at_ms = Some(1_795_857_243_000); // when it happened, if not now
    /// assert_eq!(e.event_type, "ticket.closed");
    /// ```
    pub fn new(event_type: impl Into<String>, data_json: impl Into<String>) -> Self {
        Event { id: None, event_type: event_type.into(), occurred_at_ms: None, data_json: data_json.into() }
    }
}

/// Which input of an event was refused, and why: the contract's own type.
pub use bindings::ex::events::Invalid;
/// What raising one event committed: the event's id and the deliveries
/// queued (0 when the id had been raised before). The contract's own type,
/// as the component answers it.
pub use bindings::ex::events::Raised;

/// Why raising failed; nothing was stored. The contract's `raise-error`
/// cases, plus the one the contract cannot have: the call into the plugin
/// failed. Converted from the contract's type in one place (`raise_error`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RaiseError {
    /// The type is not in the catalog.
    #[error("{0}")]
    UnknownType(String),
    /// The id, time or data is malformed; `field` names it as the event API
    /// does (`id`, `occurred_at_ms`, `data`, `data.id`, `events[3].data.id`).
    #[error("{}", .0.message)]
    InvalidData(Invalid),
    /// The id was raised before with a different type or data.
    #[error("{0}")]
    Conflict(String),
    /// Storage refused the write; retry later.
    #[error("storage: {0}")]
    Storage(String),
    /// The database cannot be reached ([`Webhooks::health`]); retry once
    /// it is back, with the same id (raising an id again never queues it twice).
    #[error("{0}")]
    Unavailable(String),
    /// The plugin failed.
    #[error("{0}")]
    Plugin(String),
}

impl From<CallError> for RaiseError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unavailable(why) => RaiseError::Unavailable(why),
            e => RaiseError::Plugin(e.to_string()),
        }
    }
}

/// A running webhooks integration: the component, its delivery engine and its database.
pub struct Webhooks {
    rt: Arc<Runtime>,
    waker: scheduler::Waker,
    intake: intake::Intake,
    scheduler: std::sync::Mutex<Option<Scheduler>>,
    manifest: ex::plugin::Manifest,
}

impl Webhooks {
    /// Makes the data folder private (see [`datadir`]), loads the component
    /// (compiled artifact cached under the data folder), migrates the schema
    /// and starts the delivery engine.
    ///
    /// ```no_run
    /// # async fn demo() -> anyhow::Result<()> {
    /// use std::time::Duration;
    /// use webhooks_host::{Config, Webhooks};
    /// let mut config = Config::new("/var/lib/panel/webhooks");
    /// config.retry_schedule = webhooks_host::config::parse_schedule("0s,10s,10m,1h").map_err(anyhow::Error::msg)?;
    /// config.attempt_timeout = Duration::from_secs(10);
    /// config.allowed_hosts = webhooks_host::egress::parse_allowlist("10.0.0.0/8").map_err(anyhow::Error::msg)?;
    /// let hooks = Webhooks::start(config).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        // PostgreSQL first: an unreachable server, a refused sign-in or a
        // missing database stops the start before anything is created.
        let backend = storage::Backend::connect(&config).await?;
        // Logged once the start has succeeded: a refused start says one line.
        let link = backend.link().await;
        // Before anything else touches the folder: SQLite then opens a 0600
        // database and gives its -wal/-shm files the same mode.
        datadir::prepare(&config)?;
        let rt = Runtime::new(config, backend)?;
        let version = rt.migrate().await?.map_err(|e| anyhow::anyhow!("migrating the plugin's schema: {e}"))?;
        let manifest = rt.describe().await?;
        tracing::info!(plugin = %manifest.name, version = %manifest.version, schema = version, "plugin ready");
        if let Some(link) = link {
            tracing::info!("{link}");
        }
        let (intake, queue) = intake::Intake::new();
        let scheduler = Scheduler::start(rt.clone(), queue.clone());
        let waker = scheduler.waker();
        // On PostgreSQL the engine never holds the queue (see
        // `Scheduler::start`): two committers, so that one group's commit
        // (its WAL flush) overlaps the next group's statements.
        let committers = if rt.config().database_url.is_some() { 2 } else { 1 };
        for _ in 0..committers {
            intake::serve_when_idle(rt.clone(), queue.clone(), waker.clone());
        }
        Ok(Webhooks { rt, waker, intake, scheduler: std::sync::Mutex::new(Some(scheduler)), manifest })
    }

    /// The plugin's manifest: name, version, the entries for your admin menu
    /// (paths relative to [`Config::mount_path`]) and the event catalog with
    /// each event's JSON Schema and example.
    ///
    /// ```no_run
    /// # fn demo(hooks: &webhooks_host::Webhooks) {
    /// for m in &hooks.manifest().menu {
    ///     println!("{} → {}: {}{}", m.section, m.label, hooks.config().mount_path, m.path);
    /// }
    /// # }
    /// ```
    pub fn manifest(&self) -> &ex::plugin::Manifest {
        &self.manifest
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        self.rt.config()
    }

    /// Raises one event: the engine commits it and its deliveries in its next
    /// step (claiming them in the same transaction) and answers once committed.
    /// Raising an id again queues nothing (`queued == 0`). Concurrent calls
    /// share one transaction (group commit); each is answered on its own.
    ///
    /// ```no_run
    /// # async fn demo(hooks: &webhooks_host::Webhooks) -> Result<(), webhooks_host::RaiseError> {
    /// use webhooks_host::Event;
    /// let mut e = Event::new(
    ///     "transaction.success",
    ///     r#"{"id": "txn_1", "user_id": 42, "amount": 1999, "currency": "EUR", "status": "succeeded"}"#,
    /// );
    /// e.id = Some("txn_1-paid".into()); // your own idempotency key
    /// let raised = hooks.raise(e).await?;
    /// assert_eq!(raised.event_id, "txn_1-paid");
    /// # Ok(()) }
    /// ```
    pub async fn raise(&self, event: Event) -> Result<Raised, RaiseError> {
        let event_type = event.event_type.clone();
        let r = self.intake.raise(self.to_wit(event)).await?.map_err(raise_error)?;
        self.rt.metrics().event_raised(&event_type);
        Ok(r)
    }

    fn to_wit(&self, e: Event) -> bindings::types::Event {
        bindings::types::Event {
            id: e.id.unwrap_or_else(new_event_id),
            event_type: e.event_type,
            occurred_at_ms: e.occurred_at_ms.unwrap_or_else(|| self.rt.config().clock.now_ms()),
            data_json: e.data_json,
        }
    }

    /// Raises several events in one transaction: all or nothing.
    ///
    /// ```no_run
    /// # async fn demo(hooks: &webhooks_host::Webhooks) -> Result<(), webhooks_host::RaiseError> {
    /// use webhooks_host::Event;
    /// let raised = hooks
    ///     .raise_batch(vec![
    ///         Event::new("ticket.created", r#"{"id": 5012, "user_id": 42, "subject": "Help", "status": "open"}"#),
    ///         Event::new("ticket.closed", r#"{"id": 5011, "user_id": 42, "status": "closed"}"#),
    ///     ])
    ///     .await?;
    /// assert_eq!(raised.len(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn raise_batch(&self, events: Vec<Event>) -> Result<Vec<Raised>, RaiseError> {
        let types: Vec<String> = events.iter().map(|e| e.event_type.clone()).collect();
        let wit: Vec<_> = events.into_iter().map(|e| self.to_wit(e)).collect();
        let out = self.rt.raise_batch(wit).await?.map_err(raise_error)?;
        for t in &types {
            self.rt.metrics().event_raised(t);
        }
        if out.iter().any(|r| r.queued > 0) {
            self.waker.wake();
        }
        Ok(out)
    }

    /// Hands one admin request (already authenticated and CSRF-checked) to
    /// the plugin; answers its page (an HTML fragment and a title for your
    /// layout), a redirect, or not-found.
    ///
    /// ```no_run
    /// # async fn demo(hooks: &webhooks_host::Webhooks) -> anyhow::Result<()> {
    /// use webhooks_host::bindings::ex::admin::{Request, Response};
    /// let req = Request {
    ///     method: "GET".into(),
    ///     path: "/".into(), // below the mount path
    ///     query: vec![],
    ///     form: vec![],
    ///     actor: "alice".into(),
    ///     csrf_token: "your-panel's-token".into(),
    ///     csrf_field: "_token".into(),
    /// };
    /// match hooks.admin(&req).await? {
    ///     Response::Page(p) => println!("<title>{}</title>{}", p.title, p.fragment),
    ///     Response::Redirect(r) => println!("303 to {}", r.location),
    ///     Response::NotFound => println!("404"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn admin(&self, req: &ex::admin::Request) -> Result<ex::admin::Response, CallError> {
        let r = self.rt.admin(req.clone()).await;
        // A test send or resend may have changed what is due.
        if req.method.eq_ignore_ascii_case("POST") {
            self.waker.wake();
        }
        r
    }

    /// One call to the JSON management API (what `serve` exposes under
    /// `/api`; see `docs/openapi.json`). Answers the status and JSON body.
    ///
    /// ```no_run
    /// # async fn demo(hooks: &webhooks_host::Webhooks) -> anyhow::Result<()> {
    /// use webhooks_host::bindings::ex::management::ApiRequest;
    /// let resp = hooks
    ///     .api(&ApiRequest {
    ///         method: "POST".into(),
    ///         path: "/webhooks".into(),
    ///         query: vec![],
    ///         body: r#"{"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["user.created"]}"#.into(),
    ///         actor: "provisioning-script".into(),
    ///     })
    ///     .await?;
    /// assert_eq!(resp.status, 201);
    /// # Ok(()) }
    /// ```
    pub async fn api(&self, req: &ex::management::ApiRequest) -> Result<ex::management::ApiResponse, CallError> {
        let r = self.rt.api(req.clone()).await;
        if !req.method.eq_ignore_ascii_case("GET") {
            self.waker.wake();
        }
        r
    }

    /// The Prometheus text exposition (OpenMetrics) of this integration:
    /// events raised, delivery attempts by outcome, attempt latency, queue
    /// depth and the oldest waiting delivery's age.
    ///
    /// ```no_run
    /// # async fn demo(hooks: &webhooks_host::Webhooks) -> anyhow::Result<()> {
    /// let text = hooks.metrics_text().await?;
    /// assert!(text.contains("webhooks_queue_depth"));
    /// # Ok(()) }
    /// ```
    pub async fn metrics_text(&self) -> Result<String, CallError> {
        let s = self.rt.stats().await?;
        let now = self.rt.config().clock.now_ms();
        let age = s.oldest_waiting_ms.map(|t| Duration::from_millis(now.saturating_sub(t)));
        Ok(self.rt.metrics().render(s.pending, s.retrying, age))
    }

    /// Keeps a new admin session of `user` under `key` (64 lowercase hex
    /// digits: a keyed hash of the cookie, never the cookie), in the
    /// database every node shares. For `serve`'s own sign-in
    /// ([`auth::Auth::session_key`]); a panel embedding the library has its
    /// own sessions.
    pub async fn open_session(&self, key: &str, user: &str) -> Result<(), CallError> {
        self.rt.open_session(key.to_owned(), user.to_owned()).await
    }

    /// The user of the live session under `key`, noting its use; `None` when
    /// signed out or expired (the plugin's rules: `plugin/src/sessions.rs`).
    pub async fn find_session(&self, key: &str) -> Result<Option<String>, CallError> {
        self.rt.find_session(key.to_owned()).await
    }

    /// Ends the session under `key` on every node.
    pub async fn close_session(&self, key: &str) -> Result<(), CallError> {
        self.rt.close_session(key.to_owned()).await
    }

    /// A key for `serve`'s own MACs (CSRF tokens; the admin account, which
    /// keys its sessions and salts a given password), derived
    /// from the sealing key for `purpose`: every node started with the same
    /// `WEBHOOKS_SECRET_KEY` derives the same one, so a form signed on one
    /// node is accepted by another. The sealing key itself never leaves.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        self.rt.derived_key(purpose)
    }

    /// Whether the database can be reached now. On PostgreSQL a server that
    /// stopped, restarted or cannot be connected to makes it unavailable
    /// until a statement succeeds again (the node finds out by itself, at
    /// least every second); SQLite is always available. `serve` answers
    /// `/healthz` from it; a panel may do the same.
    ///
    /// ```no_run
    /// # fn demo(hooks: &webhooks_host::Webhooks) {
    /// if !hooks.health().available() {
    ///     println!("webhooks: database unavailable for {:?}", hooks.health().down_for());
    /// }
    /// # }
    /// ```
    pub fn health(&self) -> &health::Health {
        self.rt.health()
    }

    /// Wakes the delivery engine (after a clock change, for example).
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Prunes history older than the retention period now (the scheduler
    /// also does it every `maintenance_every`).
    pub async fn maintain(&self) -> Result<(u64, u64, u64), CallError> {
        let p = self.rt.maintain().await?;
        Ok((p.attempts, p.deliveries, p.events))
    }

    /// Stops the delivery engine: it claims nothing more, hands back what it
    /// claimed but had not started (another node, or the next start, sends
    /// it at once) and lets attempts in flight finish for up to 20 s; what is
    /// still on the wire then is sent again after its lease. Later calls do
    /// nothing.
    pub async fn shutdown(&self) {
        let s = self.scheduler.lock().ok().and_then(|mut s| s.take());
        if let Some(s) = s {
            s.shutdown(Duration::from_secs(20)).await;
        }
    }
}

fn raise_error(e: ex::events::RaiseError) -> RaiseError {
    match e {
        ex::events::RaiseError::UnknownType(m) => RaiseError::UnknownType(m),
        ex::events::RaiseError::InvalidData(i) => RaiseError::InvalidData(i),
        ex::events::RaiseError::Conflict(m) => RaiseError::Conflict(m),
        ex::events::RaiseError::Storage(m) => RaiseError::Storage(m),
    }
}

// The Rust guide's snippets run as doc tests, so the guide cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../docs/guides/rust.md")]
struct RustGuide;

/// `evt_` + 16 random bytes in hex.
pub fn new_event_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    format!("evt_{}", hex::encode(b))
}
