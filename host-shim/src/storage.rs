//! Storage capability: the plugin's own database. [`Storage`] is one
//! instance's: SQLite by default ([`Sqlite`], this module: one connection per
//! component instance, rusqlite, WAL), or PostgreSQL when the operator sets
//! `database_url` ([`postgres`]: a bounded pool shared by the instances).
//! [`Backend`] is what the runtime opens each instance's storage from; the
//! runtime never knows which engine it is.
//!
//! SQLite statements run synchronously on the thread of the plugin call that issues
//! them. That is never an async executor thread: every plugin call runs on a
//! blocking-pool thread of its own (see `runtime.rs`), so a slow statement or
//! a lock wait holds that call alone, never the HTTP server or another call.
//!
//! The host knows nothing about the plugin's tables; it runs the statements it
//! is given with typed parameters, caps what a query may return, and makes
//! sure no transaction outlives the exported call that opened it.
//!
//! Limits (defaults set here):
//! - a query returns at most [`MAX_ROWS`] rows and about [`MAX_RESULT_BYTES`];
//! - a locked database is waited on for about [`BUSY_TIMEOUT`] before `busy`,
//!   in short sleeps on the calling thread ([`busy_wait`]): write
//!   transactions here last well under a millisecond, so the first retries
//!   come after 100 µs rather than SQLite's default 1, 2, 5, 10 ms.

pub mod postgres;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, params_from_iter, types::Value as SqlValue};

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::host_info::Dialect;
use crate::bindings::storage::{self as wit, Error, Rows, Value};
use crate::config::Config;
use crate::health::Health;

/// Largest number of rows one query may return.
pub const MAX_ROWS: usize = 100_000;
/// Largest total size of one query's result, in bytes (approximate).
pub const MAX_RESULT_BYTES: usize = 32 * 1024 * 1024;

/// A query's rows as they are collected, within [`MAX_ROWS`] and
/// [`MAX_RESULT_BYTES`] (both engines collect through it).
#[derive(Default)]
pub(crate) struct Capped {
    pub(crate) rows: Vec<Vec<Value>>,
    bytes: usize,
}

impl Capped {
    /// Whether one more row may come; call before reading it.
    pub(crate) fn room(&self) -> Result<(), Error> {
        if self.rows.len() >= MAX_ROWS { Err(Error::TooLarge) } else { Ok(()) }
    }

    /// Adds a row of `size` bytes.
    pub(crate) fn push(&mut self, cells: Vec<Value>, size: usize) -> Result<(), Error> {
        self.bytes += size;
        if self.bytes > MAX_RESULT_BYTES {
            return Err(Error::TooLarge);
        }
        self.rows.push(cells);
        Ok(())
    }
}
/// How long a statement waits for a lock held by another connection.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How hard SQLite works to keep committed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL: safe against process crashes; the last
    /// commits may be lost on power loss.
    #[default]
    Normal,
    /// `synchronous=FULL`: safe against power loss, slower commits.
    Full,
}

/// Each connection's page cache, in KiB (see [`open`]).
const PAGE_CACHE_KIB: i64 = 1024;

/// Opens (creating if needed) the database file with the pragmas every
/// connection needs.
pub fn open(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_handler(Some(busy_wait))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoints run in the background (`checkpoint`), not inside whichever
    // commit happens to cross the threshold: that commit would take
    // milliseconds instead of microseconds.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    // Every plugin instance has a connection of its own (up to
    // `Config::instances` of them), each with a private page cache that stays
    // full once warm: SQLite's default 2 MiB each added up to a third of the
    // process under load. The file's pages stay in the OS page cache, so a
    // page that falls out of this one costs a read from memory, not a disk
    // read.
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Copies the WAL back into the database without blocking writers
/// (`PASSIVE`); the scheduler calls it every [`CHECKPOINT_EVERY`].
///
/// Under a steady stream of commits a passive checkpoint never catches up
/// with the end of the WAL, and SQLite starts the WAL over only once it has
/// caught up: measured, the file grew to 2.7 GB in 15 s of batch raising.
/// So once the WAL holds more than [`WAL_RESTART_PAGES`], a `RESTART`
/// checkpoint follows: it makes writers wait (through their busy handler)
/// while it copies the few frames written since the passive pass, so the
/// next commit starts the WAL over, and `journal_size_limit` (set in
/// [`open`]) trims the file back to [`WAL_SIZE_LIMIT`].
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let (log, done): (i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))?;
    if log > WAL_RESTART_PAGES {
        return conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get(1)?, r.get(2)?)));
    }
    Ok((log, done))
}

/// How often the background checkpoint runs.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL size (pages) past which the checkpoint restarts the WAL.
pub const WAL_RESTART_PAGES: i64 = 16_384;
/// Size the WAL file is trimmed back to when it starts over.
pub const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Binds a WIT value without copying it.
struct Param<'a>(&'a Value);

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Owned(SqlValue::Null),
            Value::Integer(i) => ToSqlOutput::Owned(SqlValue::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Owned(SqlValue::Real(*r)),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// SQLite's busy handler: answers whether to try again after the
/// `retries`-th refusal, sleeping first. 100 µs steps for the first 5 ms, then
/// 500 µs up to about 80 ms, then 2 ms steps until about [`BUSY_TIMEOUT`].
fn busy_wait(retries: i32) -> bool {
    let (step, limit) = match retries {
        0..50 => (Duration::from_micros(100), true),
        50..200 => (Duration::from_micros(500), true),
        n => (Duration::from_millis(2), Duration::from_millis(2) * (n as u32 - 200) < BUSY_TIMEOUT),
    };
    if limit {
        std::thread::sleep(step);
    }
    limit
}

fn from_sql(v: rusqlite::types::ValueRef<'_>) -> (Value, usize) {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => (Value::Null, 1),
        ValueRef::Integer(i) => (Value::Integer(i), 8),
        ValueRef::Real(r) => (Value::Real(r), 8),
        ValueRef::Text(t) => (Value::Text(String::from_utf8_lossy(t).into_owned()), t.len()),
        ValueRef::Blob(b) => (Value::Blob(b.to_vec()), b.len()),
    }
}

/// Maps a SQLite error to what the plugin can act on.
pub fn map_err(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => match f.code {
            ErrorCode::ConstraintViolation => Error::Constraint(msg.clone().unwrap_or_else(|| e.to_string())),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Busy,
            ErrorCode::TooBig => Error::TooLarge,
            _ => Error::Io(e.to_string()),
        },
        rusqlite::Error::SqlInputError { .. }
        | rusqlite::Error::InvalidParameterCount(..)
        | rusqlite::Error::InvalidParameterName(..)
        | rusqlite::Error::MultipleStatement
        | rusqlite::Error::InvalidColumnIndex(..) => Error::InvalidStatement(e.to_string()),
        _ => Error::Io(e.to_string()),
    }
}

/// Where every instance's storage comes from: the SQLite file, or the pool
/// of PostgreSQL connections the instances share.
// One per host, made once: no gain in boxing the larger variant.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Backend {
    /// `<data>/webhooks.db`, one connection per instance.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Its `synchronous` setting.
        durability: Durability,
    },
    /// A bounded pool on the operator's database.
    Postgres {
        /// Shared by every instance of this host.
        pool: deadpool_postgres::Pool,
        /// Where it points, for the migration lock's own connection.
        url: postgres::DatabaseUrl,
        /// How each statement is prepared.
        learnt: postgres::Prepared,
        /// Whether the server can be reached; every session reports into it.
        health: Health,
    },
}

impl Backend {
    /// The backend `config` asks for. For PostgreSQL this connects now, so
    /// an unreachable server, a refused sign-in or a missing database stops
    /// the start with one line before anything is created.
    pub async fn connect(config: &Config) -> anyhow::Result<Backend> {
        Ok(match &config.database_url {
            None => Backend::Sqlite { path: config.db_path(), durability: config.durability },
            Some(url) => Backend::Postgres {
                pool: postgres::connect(url).await.map_err(anyhow::Error::msg)?,
                url: url.clone(),
                learnt: Default::default(),
                health: Health::new(),
            },
        })
    }

    /// On PostgreSQL, whether the connections are encrypted and how
    /// ([`postgres::link`]), for the start's log.
    pub async fn link(&self) -> Option<String> {
        match self {
            Backend::Sqlite { .. } => None,
            Backend::Postgres { pool, url, .. } => postgres::link(pool, url).await,
        }
    }

    /// A new instance's storage.
    pub fn open(&self) -> Result<Storage, String> {
        Ok(match self {
            Backend::Sqlite { path, durability } => {
                Storage::Sqlite(Sqlite::new(open(path, *durability).map_err(|e| e.to_string())?))
            }
            Backend::Postgres { pool, learnt, health, .. } => Storage::Postgres(Pg {
                session: postgres::Session::new(pool.clone(), learnt.clone()),
                health: health.clone(),
                unreachable: None,
            }),
        })
    }

    /// Whether the database can be reached ([`crate::health`]): on
    /// PostgreSQL, what its sessions report; SQLite, a file of this
    /// process, is never unreachable and never reports.
    pub fn health(&self) -> Health {
        match self {
            Backend::Sqlite { .. } => Health::new(),
            Backend::Postgres { health, .. } => health.clone(),
        }
    }

    /// On PostgreSQL, asks the server whether it answers (`SELECT 1` on a
    /// pooled connection, within [`BUSY_TIMEOUT`]) and reports the answer
    /// into [`Backend::health`] as a statement would ([`crate::health::watch`]
    /// calls it while nothing else runs). A pool too busy to lend a
    /// connection says nothing either way.
    pub async fn probe(&self) {
        let Backend::Postgres { pool, health, .. } = self else { return };
        let sent = Instant::now();
        let asked = async {
            let conn = pool.get().await.map_err(postgres::pool_err)?;
            conn.simple_query("SELECT 1").await.map_err(postgres::map_err)
        };
        match tokio::time::timeout(BUSY_TIMEOUT, asked).await {
            Ok(Ok(_)) => health.reached(sent),
            Ok(Err(e)) => {
                if let Some(why) = postgres::unreachable_reason(&e) {
                    health.unreachable(why, sent);
                }
            }
            Err(_) => {
                let why = format!("{}: no answer to SELECT 1 within {BUSY_TIMEOUT:?}", postgres::UNREACHABLE);
                health.unreachable(&why, sent)
            }
        }
    }

    /// The SQL dialect the component is told (`host-info.get-dialect`).
    pub fn dialect(&self) -> Dialect {
        match self {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres { .. } => Dialect::Postgres,
        }
    }

    /// Held while the component migrates: on PostgreSQL a session-level
    /// advisory lock, so hosts starting together migrate one after another
    /// (the later ones find the schema current). SQLite's `BEGIN IMMEDIATE`
    /// already serialises migrations on one file.
    pub async fn migration_lock(&self) -> Result<Option<postgres::MigrationLock>, String> {
        match self {
            Backend::Sqlite { .. } => Ok(None),
            Backend::Postgres { url, .. } => postgres::migration_lock(url).await.map(Some),
        }
    }
}

/// One instance's storage, on either engine.
pub enum Storage {
    /// Its own SQLite connection.
    Sqlite(Sqlite),
    /// Its session on the PostgreSQL pool.
    Postgres(Pg),
}

impl Storage {
    /// Called after every exported call: a transaction the component left
    /// open is rolled back so it cannot hold the write lock between calls.
    /// Answers whether one was open, and (PostgreSQL) how many round trips
    /// to the server the call made.
    pub async fn end_call(&mut self) -> (bool, Option<u64>) {
        match self {
            Storage::Sqlite(s) => (s.end_call(), None),
            Storage::Postgres(p) => {
                let (open, trips) = p.session.end_call().await;
                (open, Some(trips))
            }
        }
    }

    /// Whether a statement of the current call found the database
    /// unreachable (never on SQLite).
    pub fn met_unreachable(&self) -> bool {
        matches!(self, Storage::Postgres(Pg { unreachable: Some(_), .. }))
    }

    /// Why the current call found the database unreachable, if it did; the
    /// next call starts afresh. The runtime asks after every call: a call
    /// that failed for it failed for the database, not for the plugin.
    pub fn take_unreachable(&mut self) -> Option<String> {
        match self {
            Storage::Sqlite(_) => None,
            Storage::Postgres(p) => p.unreachable.take(),
        }
    }
}

/// One instance's PostgreSQL session, reporting each statement's fate into
/// the node's [`Health`]: a success means the server answers, a failure
/// to reach it ([`postgres::unreachable_reason`]) that it cannot be reached.
pub struct Pg {
    session: postgres::Session,
    health: Health,
    /// The first such failure of the current call.
    unreachable: Option<String>,
}

impl Pg {
    /// Reports how a statement sent at `sent` went.
    fn observe<T>(&mut self, sent: Instant, r: Result<T, Error>) -> Result<T, Error> {
        match &r {
            Ok(_) => self.health.reached(sent),
            Err(e) => {
                // Otherwise the server answered (a constraint, a lock
                // timeout), or the statement never reached it (a value that
                // cannot bind, a pool too busy): nothing learnt.
                if let Some(why) = postgres::unreachable_reason(e) {
                    self.health.unreachable(why, sent);
                    self.unreachable.get_or_insert_with(|| why.to_owned());
                }
            }
        }
        r
    }
}

/// One instance's SQLite connection.
pub struct Sqlite {
    conn: Connection,
}

impl Sqlite {
    /// Wraps an open connection.
    pub fn new(conn: Connection) -> Self {
        Sqlite { conn }
    }

    /// Runs one statement; answers rows changed.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        let n = stmt.execute(params_from_iter(params.iter().map(Param))).map_err(map_err)?;
        Ok(n as u64)
    }

    /// Runs one statement and collects its rows within the caps.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
        let n = columns.len();
        let mut rows = stmt.query(params_from_iter(params.iter().map(Param))).map_err(map_err)?;
        let mut out = Capped::default();
        while let Some(row) = rows.next().map_err(map_err)? {
            out.room()?;
            let mut cells = Vec::with_capacity(n);
            let mut size = 0;
            for i in 0..n {
                let (v, s) = from_sql(row.get_ref(i).map_err(map_err)?);
                size += s;
                cells.push(v);
            }
            out.push(cells, size)?;
        }
        Ok(Rows { columns, rows: out.rows })
    }

    /// Runs one statement once per parameter row; answers rows changed by each.
    pub fn execute_many(&mut self, sql: &str, rows: &[Vec<Value>]) -> Result<Vec<u64>, Error> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for params in rows {
            out.push(stmt.execute(params_from_iter(params.iter().map(Param))).map_err(map_err)? as u64);
        }
        Ok(out)
    }

    /// Runs `;`-separated statements without parameters.
    pub fn execute_batch(&mut self, sql: &str) -> Result<(), Error> {
        self.conn.execute_batch(sql).map_err(map_err)
    }

    /// A statement without parameters, from the prepared-statement cache
    /// (a transaction's `BEGIN` and `COMMIT` run on every step).
    fn run_cached(&mut self, sql: &str) -> Result<(), Error> {
        self.conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop).map_err(map_err)
    }

    /// `BEGIN IMMEDIATE`: takes the write lock now, so a transaction never
    /// fails half-way on a lock upgrade.
    pub fn begin(&mut self) -> Result<(), Error> {
        if !self.conn.is_autocommit() {
            return Err(Error::InvalidStatement("a transaction is already open".into()));
        }
        self.run_cached("BEGIN IMMEDIATE")
    }

    /// Commits the open transaction.
    pub fn commit(&mut self) -> Result<(), Error> {
        if self.conn.is_autocommit() {
            return Err(Error::InvalidStatement("no transaction is open".into()));
        }
        self.run_cached("COMMIT")
    }

    /// Rolls back the open transaction, if any.
    pub fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// Called after every exported call: a transaction the component left
    /// open is rolled back so it cannot hold the write lock between calls.
    /// Answers whether one was open.
    pub fn end_call(&mut self) -> bool {
        let open = !self.conn.is_autocommit();
        self.rollback();
        open
    }
}

/// Links the `storage` interface: each store's calls go to its own
/// [`Storage`], which `get` picks out of the store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut Storage,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasSelf<Storage>>(linker, get)
}

// SQLite runs synchronously on purpose: plugin calls run on blocking threads
// (see the module comment), and its statements take microseconds.
// PostgreSQL's are awaited: the call's `Handle::block_on` drives them while
// the connection's I/O runs on the tokio runtime.
impl wit::Host for Storage {
    async fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<u64, Error> {
        match self {
            Storage::Sqlite(s) => s.execute(&sql, &params),
            Storage::Postgres(p) => {
                let t = Instant::now();
                let r = p.session.execute(&sql, &params).await;
                p.observe(t, r)
            }
        }
    }
    async fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Rows, Error> {
        match self {
            Storage::Sqlite(s) => s.query(&sql, &params),
            Storage::Postgres(p) => {
                let t = Instant::now();
                let r = p.session.query(&sql, &params).await;
                p.observe(t, r)
            }
        }
    }
    async fn execute_many(&mut self, sql: String, rows: Vec<Vec<Value>>) -> Result<Vec<u64>, Error> {
        match self {
            Storage::Sqlite(s) => s.execute_many(&sql, &rows),
            Storage::Postgres(p) => {
                let t = Instant::now();
                let r = p.session.execute_many(&sql, &rows).await;
                p.observe(t, r)
            }
        }
    }
    async fn execute_batch(&mut self, sql: String) -> Result<(), Error> {
        match self {
            Storage::Sqlite(s) => s.execute_batch(&sql),
            Storage::Postgres(p) => {
                let t = Instant::now();
                let r = p.session.execute_batch(&sql).await;
                p.observe(t, r)
            }
        }
    }
    async fn begin(&mut self) -> Result<(), Error> {
        match self {
            Storage::Sqlite(s) => s.begin(),
            Storage::Postgres(p) => {
                let t = Instant::now();
                let r = p.session.begin().await;
                p.observe(t, r)
            }
        }
    }
    async fn commit(&mut self) -> Result<(), Error> {
        match self {
            Storage::Sqlite(s) => s.commit(),
            Storage::Postgres(p) => {
                let t = Instant::now();
                let r = p.session.commit().await;
                p.observe(t, r)
            }
        }
    }
    async fn rollback(&mut self) {
        match self {
            Storage::Sqlite(s) => s.rollback(),
            Storage::Postgres(p) => p.session.rollback().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::new(open(&dir.path().join("t.db"), Durability::Normal).unwrap());
        std::mem::forget(dir);
        s
    }

    #[test]
    fn typed_round_trip_and_errors() {
        let mut s = mem();
        s.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT UNIQUE, c REAL, d BLOB)").unwrap();
        let n = s
            .execute(
                "INSERT INTO t (b, c, d) VALUES (?1, ?2, ?3)",
                &[Value::Text("x".into()), Value::Real(1.5), Value::Blob(vec![1, 2])],
            )
            .unwrap();
        assert_eq!(n, 1);
        let r = s.query("SELECT a, b, c, d FROM t", &[]).unwrap();
        assert_eq!(r.columns, ["a", "b", "c", "d"]);
        assert!(matches!(r.rows[0][1], Value::Text(ref t) if t == "x"));
        assert!(matches!(
            s.execute("INSERT INTO t (b) VALUES (?1)", &[Value::Text("x".into())]),
            Err(Error::Constraint(_))
        ));
        assert!(matches!(s.query("SELEC nonsense", &[]), Err(Error::InvalidStatement(_))));
        assert!(matches!(s.execute("INSERT INTO t (b) VALUES (?1)", &[]), Err(Error::InvalidStatement(_))));
    }

    #[test]
    fn open_transaction_is_rolled_back_at_end_of_call() {
        let mut s = mem();
        s.execute_batch("CREATE TABLE t (a INTEGER)").unwrap();
        s.begin().unwrap();
        s.execute("INSERT INTO t VALUES (1)", &[]).unwrap();
        assert!(s.end_call());
        let r = s.query("SELECT COUNT(*) FROM t", &[]).unwrap();
        assert!(matches!(r.rows[0][0], Value::Integer(0)));
        assert!(!s.end_call());
    }

    #[test]
    fn result_caps() {
        let mut s = mem();
        let r = s.query(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x <= ?1) SELECT x FROM n",
            &[Value::Integer(MAX_ROWS as i64 + 5)],
        );
        assert!(matches!(r, Err(Error::TooLarge)));
    }
}
