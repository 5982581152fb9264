//! An in-memory [`Host`] for native tests: the component's logic runs against
//! it directly, in milliseconds, without wasmtime.
//!
//! It mirrors the real host (`host-shim`) where the logic can tell:
//! - storage is SQLite through rusqlite, as in `host-shim/src/storage.rs`:
//!   numbered `?N` parameters, values mapped one to one, `execute_many` runs
//!   one prepared statement per parameter row, `begin` is `BEGIN IMMEDIATE`
//!   and refuses a nested transaction, `commit` refuses when none is open,
//!   `rollback` is a no-op outside one, errors map to the same [`DbError`]s;
//! - `seal`/`sign` keep `host-shim/src/secrets.rs`'s contract (a version byte,
//!   a fresh "nonce" per seal, `sign` = HMAC-SHA256 under the opened key,
//!   anything not sealed with this host's key refuses to open) with a plain
//!   XOR instead of an AEAD, and the key kept next to it in the clear
//!   ([`TestHost::set_key`] stands for a node started with another key);
//! - the schema migrations run on creation, as `plugin.migrate` does at start.
//!
//! Everything else is scripted: a settable clock, deterministic random bytes
//! (with scripted answers for exact jitter), refused destinations, the
//! outcome of every HTTP request, and the settings.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use rusqlite::{Connection, ErrorCode, params_from_iter};
use sha2::Digest as _;

use crate::host::{
    DbError, Dialect, Host, Level, OutRequest, OutResponse, Refused, RefusedKind, Rows, Sent, Settings, Ticket,
    TransformError, TransformInput, TransformOutcome, Value,
};

/// 2023-11-14T22:13:20Z: the clock's start.
pub const T0: u64 = 1_700_000_000_000;

/// The version byte of a value sealed here (as in the real host).
const SEALED: u8 = 1;
/// The XOR "key" sealing uses until [`TestHost::set_key`].
const SEAL_KEY: u8 = 0x5a;

/// What a scripted HTTP request comes to.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A response, after `duration_ms`.
    Respond { response: OutResponse, duration_ms: Option<u64> },
    /// A transport failure (timeout, refused connection) after the start.
    Fail(String),
    /// `http_start` itself refuses (an invalid URL, the egress policy).
    Refuse(String),
}

impl Reply {
    /// A response with this status, headers and body, taking 12 ms.
    pub fn status(status: u16) -> Reply {
        Reply::Respond { response: response(status, &[], b""), duration_ms: Some(12) }
    }
}

/// An [`OutResponse`] with its body's size.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> OutResponse {
    OutResponse {
        status,
        headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        body: body.to_vec(),
        body_size: body.len() as u64,
    }
}

type Responder = Box<dyn Fn(&OutRequest) -> Reply>;
/// A scripted transformation (#24): what its runs answer.
pub type TransformFn = std::rc::Rc<dyn Fn(&TransformInput) -> Result<TransformOutcome, TransformError>>;

/// The bytes of a scripted transformation named `name` (see
/// [`TestHost::script_transform`]): what a test uploads.
pub fn fake_component(name: &str) -> Vec<u8> {
    format!("fake-transform:{name}").into_bytes()
}
type WaitHook = Box<dyn Fn(&TestHost)>;

/// The test double of the component's host.
pub struct TestHost {
    conn: Connection,
    now: Cell<u64>,
    rng: Cell<u64>,
    scripted_random: RefCell<VecDeque<Vec<u8>>>,
    settings: RefCell<Settings>,
    refused: RefCell<Vec<(String, Refused)>>,
    responder: RefCell<Responder>,
    on_wait: RefCell<Option<WaitHook>>,
    next_ticket: Cell<Ticket>,
    flying: RefCell<Vec<(Ticket, Reply)>>,
    /// Every request `http_start` was given, in order.
    pub sent: RefCell<Vec<OutRequest>>,
    /// Every log line.
    pub logs: RefCell<Vec<(Level, String)>>,
    /// Sums of `attempts_recorded`: succeeded, retrying, exhausted.
    pub recorded: Cell<(u32, u32, u32)>,
    /// How many times `attempts_recorded` was called.
    pub recorded_calls: Cell<u32>,
    /// Sum of `attempts_recorded`'s `skipped`.
    pub skipped_recorded: Cell<u32>,
    /// Scripted transformations by name (#24); bytes made by
    /// [`fake_component`] load as the one named, anything else is refused.
    transforms: RefCell<std::collections::HashMap<String, TransformFn>>,
    /// What the host holds loaded: name by digest.
    loaded_transforms: RefCell<std::collections::HashMap<String, String>>,
    /// How many times `transform_load` was called.
    pub transform_loads: Cell<u32>,
    /// Every input a transformation ran on.
    pub transform_inputs: RefCell<Vec<TransformInput>>,
    seals: Cell<u8>,
    key: Cell<u8>,
}

/// The host's default settings (`host-shim/src/config.rs`).
pub fn default_settings() -> Settings {
    const S: u64 = 1000;
    Settings {
        retry_schedule_ms: vec![0, 5 * S, 300 * S, 1800 * S, 7200 * S, 18_000 * S, 36_000 * S, 36_000 * S],
        attempt_timeout_ms: 15 * S,
        lease_ms: 60 * S,
        auto_disable_after_ms: 5 * 86_400 * S,
        retention_ms: 30 * 86_400 * S,
        per_webhook_concurrency: 16,
    }
}

impl TestHost {
    /// A fresh host with an empty, migrated database, its clock at [`T0`].
    pub fn new() -> TestHost {
        let conn = Connection::open_in_memory().expect("an in-memory database opens");
        conn.pragma_update(None, "foreign_keys", "ON").expect("pragma");
        conn.set_prepared_statement_cache_capacity(128);
        let h = TestHost {
            conn,
            now: Cell::new(T0),
            rng: Cell::new(0x5eed),
            scripted_random: RefCell::new(VecDeque::new()),
            settings: RefCell::new(default_settings()),
            refused: RefCell::new(Vec::new()),
            responder: RefCell::new(Box::new(|_| Reply::status(200))),
            on_wait: RefCell::new(None),
            next_ticket: Cell::new(1),
            flying: RefCell::new(Vec::new()),
            sent: RefCell::new(Vec::new()),
            logs: RefCell::new(Vec::new()),
            recorded: Cell::new((0, 0, 0)),
            recorded_calls: Cell::new(0),
            skipped_recorded: Cell::new(0),
            transforms: RefCell::new(std::collections::HashMap::new()),
            loaded_transforms: RefCell::new(std::collections::HashMap::new()),
            transform_loads: Cell::new(0),
            transform_inputs: RefCell::new(Vec::new()),
            seals: Cell::new(0),
            key: Cell::new(SEAL_KEY),
        };
        let version = crate::schema::migrate(&h).expect("migrations run");
        assert!(version > 0);
        h
    }

    // ------------------------------------------------------------ scripting

    /// Sets the clock.
    pub fn set_now(&self, ms: u64) {
        self.now.set(ms);
    }

    /// Seals and opens with another key from now on, as a node started with
    /// another `WEBHOOKS_SECRET_KEY` would.
    pub fn set_key(&self, key: u8) {
        self.key.set(key);
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }

    /// Changes the settings.
    pub fn settings_mut(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.settings.borrow_mut());
    }

    /// The next `random_bytes` call answers these bytes (repeated or cut to
    /// the length asked) instead of the generator's.
    pub fn script_random(&self, bytes: Vec<u8>) {
        assert!(!bytes.is_empty());
        self.scripted_random.borrow_mut().push_back(bytes);
    }

    /// The next `random_bytes` call answers jitter factor 1.0 for every
    /// attempt (`u32::MAX / 2` in each four bytes).
    pub fn no_jitter_next(&self) {
        self.script_random((u32::MAX / 2).to_le_bytes().to_vec());
    }

    /// The egress policy refuses URLs starting with `prefix` as `kind`.
    pub fn refuse(&self, prefix: &str, kind: RefusedKind) {
        let detail = format!("refused by the egress policy: {prefix}… ({kind:?})");
        self.refused.borrow_mut().push((prefix.to_owned(), Refused { kind, detail }));
    }

    /// Every request from now on comes to what `f` says.
    pub fn respond(&self, f: impl Fn(&OutRequest) -> Reply + 'static) {
        *self.responder.borrow_mut() = Box::new(f);
    }

    /// Runs `f` in `http_wait`, while requests are in flight.
    pub fn on_wait(&self, f: impl Fn(&TestHost) + 'static) {
        *self.on_wait.borrow_mut() = Some(Box::new(f));
    }

    // ------------------------------------------------------------ inspecting

    /// The first column of the first row, as an integer (0 when NULL).
    pub fn int(&self, sql: &str, params: &[Value]) -> i64 {
        let rows = self.query(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.first().map(|r| r.i64(0)).unwrap_or(0)
    }

    /// The first column of every row, as integers.
    pub fn ints(&self, sql: &str, params: &[Value]) -> Vec<i64> {
        let rows = self.query(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(|r| r.i64(0)).collect()
    }

    /// The first column of every row, as text.
    pub fn texts(&self, sql: &str, params: &[Value]) -> Vec<String> {
        let rows = self.query(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(|r| r.str(0)).collect()
    }

    /// The first row, as values.
    pub fn row(&self, sql: &str, params: &[Value]) -> Vec<Value> {
        let rows = self.query(sql, params).unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.rows.into_iter().next().unwrap_or_else(|| panic!("{sql}: no row"))
    }

    /// Every log line, at any level.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.borrow().iter().map(|(_, m)| m.clone()).collect()
    }

    /// Log lines at warn or error level.
    pub fn problems(&self) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(l, _)| matches!(l, Level::Warn | Level::Error))
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Whether a transaction is open (none should be between calls).
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    fn next_random_byte(&self) -> u8 {
        // splitmix64: deterministic, and distinct from call to call.
        let mut z = self.rng.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.rng.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as u8
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < 3 || sealed[0] != SEALED {
            return Err("not a sealed secret".into());
        }
        if sealed[2] != self.key.get() {
            return Err("the secret could not be decrypted (altered, or the key changed)".into());
        }
        Ok(sealed[3..].iter().map(|b| b ^ self.key.get()).collect())
    }
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost::new()
    }
}

/// Binds a value (as `host-shim/src/storage.rs`'s `Param`).
struct Param<'a>(&'a Value);

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Owned(SqlValue::Null),
            Value::Integer(i) => ToSqlOutput::Owned(SqlValue::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Owned(SqlValue::Real(*r)),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn from_sql(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// As `host-shim/src/storage.rs`'s `map_err`.
fn map_err(e: rusqlite::Error) -> DbError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => match f.code {
            ErrorCode::ConstraintViolation => DbError::Constraint(msg.clone().unwrap_or_else(|| e.to_string())),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => DbError::Busy,
            ErrorCode::TooBig => DbError::TooLarge,
            _ => DbError::Io(e.to_string()),
        },
        rusqlite::Error::SqlInputError { .. }
        | rusqlite::Error::InvalidParameterCount(..)
        | rusqlite::Error::InvalidParameterName(..)
        | rusqlite::Error::MultipleStatement
        | rusqlite::Error::InvalidColumnIndex(..) => DbError::InvalidStatement(e.to_string()),
        _ => DbError::Io(e.to_string()),
    }
}

impl Host for TestHost {
    fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        Ok(stmt.execute(params_from_iter(params.iter().map(Param))).map_err(map_err)? as u64)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
        let n = columns.len();
        let mut rows = stmt.query(params_from_iter(params.iter().map(Param))).map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_err)? {
            out.push((0..n).map(|i| row.get_ref(i).map(from_sql)).collect::<Result<Vec<_>, _>>().map_err(map_err)?);
        }
        Ok(Rows { columns, rows: out })
    }

    fn execute_many(&self, sql: &str, rows: &[Vec<Value>]) -> Result<Vec<u64>, DbError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        rows.iter()
            .map(|p| stmt.execute(params_from_iter(p.iter().map(Param))).map(|n| n as u64).map_err(map_err))
            .collect()
    }

    fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(map_err)
    }

    fn begin(&self) -> Result<(), DbError> {
        if !self.conn.is_autocommit() {
            return Err(DbError::InvalidStatement("a transaction is already open".into()));
        }
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)
    }

    fn commit(&self) -> Result<(), DbError> {
        if self.conn.is_autocommit() {
            return Err(DbError::InvalidStatement("no transaction is open".into()));
        }
        self.conn.execute_batch("COMMIT").map_err(map_err)
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn now_ms(&self) -> u64 {
        self.now.get()
    }

    fn random_bytes(&self, n: usize) -> Vec<u8> {
        if let Some(script) = self.scripted_random.borrow_mut().pop_front() {
            return script.iter().copied().cycle().take(n).collect();
        }
        (0..n).map(|_| self.next_random_byte()).collect()
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    fn mount_path(&self) -> String {
        "/admin/integrations/webhooks".into()
    }

    fn settings(&self) -> Settings {
        self.settings.borrow().clone()
    }

    /// Always SQLite: the PostgreSQL branches run in the end-to-end tests
    /// against a real server (`tests/postgres.rs`, `WEBHOOKS_TEST_ENGINE`).
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn node_id(&self) -> String {
        "test-node".into()
    }

    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        // A fresh "nonce" each time, as the real AEAD has.
        let nonce = self.seals.get().wrapping_add(1);
        self.seals.set(nonce);
        let key = self.key.get();
        let mut out = vec![SEALED, nonce, key];
        out.extend(plaintext.iter().map(|b| b ^ key));
        Ok(out)
    }

    fn sign(&self, sealed: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
        use hmac::{Hmac, Mac};
        let key = self.open(sealed)?;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    fn open_legacy(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        self.open(sealed)
    }

    fn check_destination(&self, url: &str) -> Result<(), Refused> {
        match self.refused.borrow().iter().find(|(prefix, _)| url.starts_with(prefix.as_str())) {
            Some((_, refused)) => Err(refused.clone()),
            None => Ok(()),
        }
    }

    fn http_start(&self, request: &OutRequest) -> Result<Ticket, String> {
        self.sent.borrow_mut().push(request.clone());
        let reply = (self.responder.borrow())(request);
        if let Reply::Refuse(e) = reply {
            return Err(e);
        }
        let t = self.next_ticket.get();
        self.next_ticket.set(t + 1);
        self.flying.borrow_mut().push((t, reply));
        Ok(t)
    }

    fn http_wait(&self, _timeout_ms: u64) -> Vec<(Ticket, Sent)> {
        if self.flying.borrow().is_empty() {
            return Vec::new();
        }
        if let Some(f) = self.on_wait.borrow().as_ref() {
            f(self);
        }
        self.flying
            .take()
            .into_iter()
            .map(|(t, reply)| {
                let sent = match reply {
                    Reply::Respond { response, duration_ms } => Sent { result: Ok(response), duration_ms },
                    Reply::Fail(e) => Sent { result: Err(e), duration_ms: Some(15_000) },
                    Reply::Refuse(_) => unreachable!("refused at the start"),
                };
                (t, sent)
            })
            .collect()
    }

    fn attempts_recorded(&self, succeeded: u32, retrying: u32, exhausted: u32, skipped: u32) {
        let (s, r, e) = self.recorded.get();
        self.recorded.set((s + succeeded, r + retrying, e + exhausted));
        self.skipped_recorded.set(self.skipped_recorded.get() + skipped);
        self.recorded_calls.set(self.recorded_calls.get() + 1);
    }

    fn transform_load(&self, component: &[u8]) -> Result<String, TransformError> {
        self.transform_loads.set(self.transform_loads.get() + 1);
        let name = component
            .strip_prefix(b"fake-transform:")
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| self.transforms.borrow().contains_key(n))
            .ok_or_else(|| TransformError::Invalid("This file is not a WebAssembly component.".into()))?;
        let digest = crate::outbox::hex(&sha2::Sha256::digest(component));
        self.loaded_transforms.borrow_mut().insert(digest.clone(), name);
        Ok(digest)
    }

    fn transform_run(&self, digest: &str, input: &TransformInput) -> Result<TransformOutcome, TransformError> {
        let name = self.loaded_transforms.borrow().get(digest).cloned().ok_or(TransformError::NotLoaded)?;
        let f = self.transforms.borrow().get(&name).cloned().ok_or(TransformError::NotLoaded)?;
        self.transform_inputs.borrow_mut().push(input.clone());
        f(input)
    }
}

impl TestHost {
    /// Scripts the transformation that bytes from [`fake_component`]`(name)`
    /// load as.
    pub fn script_transform(
        &self,
        name: &str,
        f: impl Fn(&TransformInput) -> Result<TransformOutcome, TransformError> + 'static,
    ) {
        self.transforms.borrow_mut().insert(name.to_owned(), std::rc::Rc::new(f));
    }

    /// Forgets every loaded transformation, as a restarted host (or another
    /// node) would: the next run answers `not-loaded`.
    pub fn forget_transforms(&self) {
        self.loaded_transforms.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::transaction;

    #[test]
    fn storage_mirrors_the_host() {
        let h = TestHost::new();
        assert!(h.int("SELECT MAX(version) FROM plugin_schema", &[]) >= 8, "migrated on creation");
        assert!(!h.in_transaction());
        h.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT UNIQUE, c REAL, d BLOB)").unwrap();
        let n = h
            .execute_many(
                "INSERT INTO t (b, c, d) VALUES (?1, ?2, ?3) ON CONFLICT (b) DO NOTHING",
                &[
                    vec!["x".into(), Value::Real(1.5), vec![1u8, 2].into()],
                    vec!["x".into(), Value::Null, Value::Null],
                    vec!["y".into(), Value::Null, Value::Null],
                ],
            )
            .unwrap();
        assert_eq!(n, [1, 0, 1]);
        let r = h.query("SELECT a, b, c, d FROM t ORDER BY a", &[]).unwrap();
        assert_eq!(r.columns, ["a", "b", "c", "d"]);
        assert_eq!(r.rows[0], [Value::Integer(1), "x".into(), Value::Real(1.5), Value::Blob(vec![1, 2])]);
        assert!(matches!(h.execute("INSERT INTO t (b) VALUES (?1)", &["x".into()]), Err(DbError::Constraint(_))));
        assert!(matches!(h.query("SELEC nonsense", &[]), Err(DbError::InvalidStatement(_))));
        assert!(matches!(h.execute("INSERT INTO t (b) VALUES (?1)", &[]), Err(DbError::InvalidStatement(_))));
        // Transactions: nested begin and a commit outside one are refused;
        // a failed closure rolls back.
        h.begin().unwrap();
        assert!(matches!(h.begin(), Err(DbError::InvalidStatement(_))));
        h.rollback();
        assert!(matches!(h.commit(), Err(DbError::InvalidStatement(_))));
        let r: Result<(), DbError> = transaction(&h, || {
            h.execute("INSERT INTO t (b) VALUES ('z')", &[])?;
            Err(DbError::Busy)
        });
        assert_eq!(r, Err(DbError::Busy));
        assert_eq!(h.int("SELECT COUNT(*) FROM t", &[]), 2);
        assert!(!h.in_transaction());
    }

    #[test]
    fn secrets_clock_and_randomness() {
        let h = TestHost::new();
        let a = h.seal(b"key").unwrap();
        assert_ne!(h.seal(b"key").unwrap(), a, "a fresh nonce per seal");
        assert!(!a.windows(3).any(|w| w == b"key"));
        assert_eq!(h.open_legacy(&a).unwrap(), b"key");
        assert!(h.sign(b"plain", b"m").is_err());
        // HMAC-SHA256 under the sealed key: the Standard Webhooks reference vector.
        let key = crate::signing::key_bytes("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let msg = br#"msg_27UH4WbU6Z5A5EzD8u03UvzRbpk.1649367553.{"email":"test@example.com","username":"test_user"}"#;
        let mac = h.sign(&h.seal(&key).unwrap(), msg).unwrap();
        assert_eq!(crate::signing::signature(&mac), "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");

        h.advance(5);
        assert_eq!(h.now_ms(), T0 + 5);
        h.set_now(7);
        assert_eq!(h.now_ms(), 7);

        let (x, y) = (h.random_bytes(16), h.random_bytes(16));
        assert_ne!(x, y);
        assert_eq!(TestHost::new().random_bytes(16), TestHost::new().random_bytes(16), "deterministic");
        h.script_random(vec![1, 2]);
        assert_eq!(h.random_bytes(5), [1, 2, 1, 2, 1]);
        assert_ne!(h.random_bytes(5), [1, 2, 1, 2, 1], "a script answers one call");
    }
}
