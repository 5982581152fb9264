//! What the plugin needs from its host, as plain Rust.
//!
//! The product logic is written against [`Host`] so that it builds and
//! unit-tests on the native target; the wasm glue (`glue.rs`) implements it
//! with the WIT imports. The types mirror `wit/webhooks.wit` one to one.

use std::fmt;

/// A SQL value (mirrors `storage.value`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        // Times in ms and counts stay far below i64::MAX; saturate rather than wrap.
        Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Integer(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Integer(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Result rows of a query (mirrors `storage.rows`).
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// One row, read by column index with typed getters.
pub struct Row<'a>(pub &'a [Value]);

impl Row<'_> {
    pub fn i64(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Value::Integer(v)) => *v,
            Some(Value::Real(v)) => *v as i64,
            _ => 0,
        }
    }
    pub fn opt_i64(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Value::Integer(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn u64(&self, i: usize) -> u64 {
        u64::try_from(self.i64(i)).unwrap_or(0)
    }
    pub fn str(&self, i: usize) -> String {
        self.opt_str(i).unwrap_or_default()
    }
    pub fn opt_str(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Value::Text(v)) => Some(v.clone()),
            Some(Value::Blob(v)) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        }
    }
    pub fn opt_blob(&self, i: usize) -> Option<Vec<u8>> {
        match self.0.get(i) {
            Some(Value::Blob(v)) => Some(v.clone()),
            _ => None,
        }
    }
    pub fn bool(&self, i: usize) -> bool {
        self.i64(i) != 0
    }
}

impl Rows {
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|r| Row(r))
    }
    pub fn first(&self) -> Option<Row<'_>> {
        self.rows.first().map(|r| Row(r))
    }
}

/// What kind of destination the host's egress policy refuses (the WIT's
/// `host-info.refused-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedKind {
    InvalidUrl,
    ThisMachine,
    PrivateNetwork,
    LinkLocal,
    Documentation,
    SpecialPurpose,
}

/// A refused destination: its kind, and the host's sentence for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub kind: RefusedKind,
    pub detail: String,
}

/// Why a statement failed (mirrors `storage.error`).
#[derive(Debug, Clone, PartialEq)]
pub enum DbError {
    Constraint(String),
    Busy,
    InvalidStatement(String),
    TooLarge,
    Io(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Constraint(m) => write!(f, "constraint violated: {m}"),
            DbError::Busy => f.write_str("database busy"),
            DbError::InvalidStatement(m) => write!(f, "invalid statement: {m}"),
            DbError::TooLarge => f.write_str("result too large"),
            DbError::Io(m) => write!(f, "storage error: {m}"),
        }
    }
}

impl std::error::Error for DbError {}

/// Log levels (mirrors `log.level`).
#[derive(Debug, Clone, Copy)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Operator settings (mirrors `host-info.settings`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub retry_schedule_ms: Vec<u64>,
    pub attempt_timeout_ms: u64,
    pub lease_ms: u64,
    pub auto_disable_after_ms: u64,
    pub retention_ms: u64,
    pub per_webhook_concurrency: u32,
}

/// The SQL dialect the host's storage speaks (mirrors `host-info.get-dialect`).
/// The SQL stays in the subset both engines share; code branches on this
/// only where they must differ (DDL, the claim, scalar functions, the
/// shared database's one-second look in `next_due`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One outgoing HTTP request the plugin wants sent.
#[derive(Debug, Clone)]
pub struct OutRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// What came back. Bodies are capped by the transport: `body` holds at most
/// [`crate::outbox::MAX_STORED_BODY`] bytes and `body_size` counts them all.
#[derive(Debug, Clone)]
pub struct OutResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub body_size: u64,
}

/// Identifies a request in flight.
pub type Ticket = u32;

/// The result of sending one request.
#[derive(Debug, Clone)]
pub struct Sent {
    pub result: Result<OutResponse, String>,
    /// Time from sending to the end of the response, when measured.
    pub duration_ms: Option<u64>,
}

/// One delivery as a webhook's transformation sees it (mirrors
/// `transform.input`).
#[derive(Debug, Clone, PartialEq)]
pub struct TransformInput {
    pub event_type: String,
    pub msg_id: String,
    pub timestamp: String,
    /// The exact body the webhook would send.
    pub body: String,
}

/// What a transformation answered to send (mirrors `transform.output`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TransformOutput {
    pub body: Option<String>,
    pub headers: Vec<(String, String)>,
    pub path: Option<String>,
}

/// What a run decided (mirrors `transform.outcome`).
#[derive(Debug, Clone, PartialEq)]
pub enum TransformOutcome {
    Send(TransformOutput),
    Skip(String),
}

/// Why a component was refused or a run gave no outcome (mirrors
/// `transform.error`).
#[derive(Debug, Clone, PartialEq)]
pub enum TransformError {
    /// The host holds no compiled component under that digest: load it.
    NotLoaded,
    /// Not a transformation this host runs; the reason for the admin.
    Invalid(String),
    /// The run failed (trap, deadline, memory, caps, its own error).
    Failed(String),
}

/// Everything the plugin asks of its host.
pub trait Host {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError>;
    /// One statement run once per parameter row; rows changed by each.
    fn execute_many(&self, sql: &str, rows: &[Vec<Value>]) -> Result<Vec<u64>, DbError>;
    fn execute_batch(&self, sql: &str) -> Result<(), DbError>;
    fn begin(&self) -> Result<(), DbError>;
    fn commit(&self) -> Result<(), DbError>;
    fn rollback(&self);
    fn now_ms(&self) -> u64;
    fn random_bytes(&self, n: usize) -> Vec<u8>;
    fn log(&self, level: Level, message: &str);
    fn mount_path(&self) -> String;
    fn settings(&self) -> Settings;
    /// Which engine runs the SQL.
    fn dialect(&self) -> Dialect;
    /// This host's name among the nodes sharing the database
    /// (`host-info.node-id`): its leases and heartbeat row carry it.
    fn node_id(&self) -> String;
    /// Seals a signing key with the host's key (AEAD).
    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, String>;
    /// HMAC-SHA256 of `message` under a key `seal` sealed; the key is opened
    /// only inside the host.
    fn sign(&self, sealed: &[u8], message: &[u8]) -> Result<Vec<u8>, String>;
    /// Opens what `seal` produced: only for migrating rows sealed by versions
    /// before 0.2, which sealed the secret text instead of its key bytes,
    /// for the key check at migrate (`schema::check_key`), and for a
    /// webhook's sealed custom header values while a request is built
    /// (`controls::headers_to_send`, #24).
    fn open_legacy(&self, sealed: &[u8]) -> Result<Vec<u8>, String>;
    /// The host egress policy's verdict on a URL's destination (no DNS).
    fn check_destination(&self, url: &str) -> Result<(), Refused>;
    /// Starts sending a request; answers a ticket to wait on.
    fn http_start(&self, request: &OutRequest) -> Result<Ticket, String>;
    /// Waits until at least one started request finishes, or `timeout_ms`
    /// passes; answers the finished ones. Answers at once when none is in flight.
    fn http_wait(&self, timeout_ms: u64) -> Vec<(Ticket, Sent)>;
    /// Attempt outcomes just committed, for the host's metrics; `skipped`:
    /// deliveries a transformation skipped (#24).
    fn attempts_recorded(&self, succeeded: u32, retrying: u32, exhausted: u32, skipped: u32);
    /// Checks and compiles a transformation (#24); answers its digest.
    fn transform_load(&self, component: &[u8]) -> Result<String, TransformError>;
    /// Runs the transformation loaded under `digest` on one delivery, in
    /// the host's sandbox.
    fn transform_run(&self, digest: &str, input: &TransformInput) -> Result<TransformOutcome, TransformError>;
}

/// Runs `f` inside a write transaction: commit on `Ok`, roll back on `Err`.
pub fn transaction<T, E: From<DbError>>(host: &dyn Host, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    host.begin()?;
    match f() {
        Ok(v) => {
            if let Err(e) = host.commit() {
                host.rollback();
                return Err(e.into());
            }
            Ok(v)
        }
        Err(e) => {
            host.rollback();
            Err(e)
        }
    }
}

/// An `IN (…)` list of `values` as marks `?1, …, ?k`, padded to a size
/// bucket (1, 4, 16, 64, 256, 1024, then the exact count) by repeating the
/// last value, which `IN` ignores. A statement's text then depends on the
/// bucket, not the exact count, so the host's prepared-statement cache holds
/// a handful of them instead of one per count, and does not thrash.
pub fn in_list(mut values: Vec<Value>) -> (String, Vec<Value>) {
    let n = values.len();
    let mut bucket = 1;
    while bucket < n && bucket < 1024 {
        bucket *= 4;
    }
    let size = bucket.max(n);
    if let Some(last) = values.last().cloned() {
        values.resize(size, last);
    }
    let marks = (1..=values.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
    (marks, values)
}
