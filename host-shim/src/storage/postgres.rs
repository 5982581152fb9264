//! PostgreSQL storage: the same `storage` interface as SQLite, for hosts
//! that share one database (`serve --database postgres://…`).
//!
//! The component keeps one set of SQL with `?N` parameters and asks
//! `host-info.get-dialect` only where the engines must differ. Here:
//! - `?N` becomes `$N` ([`rewrite_placeholders`]; quoted text and comments
//!   are left alone);
//! - a statement is prepared letting PostgreSQL infer its parameter types;
//!   where it cannot (SQL written for SQLite's dynamic types: `CASE WHEN ?5
//!   = 1 …` beside `enabled = ?5`, a `CASE` of `NULL` and `?7`), it is
//!   prepared again with each parameter declared as its value's own type
//!   ([`declared_type`]: integer → int8, real → float8, text → text, blob →
//!   bytea, null → left to infer), as SQLite would take it. So is a
//!   statement where it inferred text for a number or a blob (`SELECT CASE
//!   … ELSE ?2 END`): SQLite would answer the number. What worked is
//!   remembered for the host's life ([`Prepared`]); inside a transaction a
//!   try that may fail runs under a savepoint, since a failed statement
//!   would abort the transaction;
//! - each WIT value is bound as the type the prepared statement expects
//!   ([`bind`]: an integer as int2/int4/int8/bool/float/text, a text as
//!   text/varchar/json, a blob as bytea…), and a value that cannot be one is
//!   refused as `invalid-statement` naming the parameter, before anything runs;
//! - result cells come back as the WIT values SQLite would give ([`Cell`]:
//!   int* and bool → integer, float → real, numeric → integer or real,
//!   text → text, bytea → blob, NULL → null);
//! - a statement outside a transaction takes a pooled connection for itself;
//!   `begin` takes one and holds it until `commit` or `rollback` (or the end
//!   of the exported call, which rolls back);
//! - `begin` takes no lock: transactions of several nodes run side by side
//!   under READ COMMITTED, and the component locks the rows it must (the
//!   deliveries it records, in id order; the ones it claims, `SKIP
//!   LOCKED`; the id counter's row). `BEGIN` itself is not a round trip of
//!   its own: it is sent with the transaction's first statement
//!   (pipelined), and a transaction that ran none sends nothing;
//! - a statement's round trip is one exchange with the server however many
//!   rows it carries: `execute-many` pipelines its runs, inside a
//!   transaction or, outside one, inside one of its own (all or nothing);
//! - every connection (the pool's and the migration lock's) speaks TLS as
//!   the URL's libpq `sslmode` and `sslrootcert` ask ([`tls`]);
//! - the limits are SQLite's: [`MAX_ROWS`](super::MAX_ROWS), [`MAX_RESULT_BYTES`](super::MAX_RESULT_BYTES), and a lock
//!   (or a free pooled connection) is waited on for [`BUSY_TIMEOUT`] before
//!   `busy`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, TimeoutType};
use futures_util::{TryStreamExt, pin_mut};
use postgres_types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use super::{BUSY_TIMEOUT, Capped};
use crate::bindings::storage::{Error, Rows, Value};

/// Connections one host keeps open to the server at most. Plugin calls take
/// one per statement (or per transaction) and wait up to [`BUSY_TIMEOUT`]
/// for a free one; the engine's step, the pages and the API rarely need more
/// than a few at once, and every node counts against the server's
/// `max_connections` (100 by default).
pub const POOL_SIZE: usize = 16;

/// The session-level advisory lock migrations run under
/// (`pg_advisory_lock`): hosts starting together migrate once.
pub const MIGRATE_LOCK: i64 = 0x7765_6268_6f6f_6b02;

/// How long connecting to the server may take before the start is refused.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub mod tls;

/// A `postgres://` URL, parsed, with its TLS settings ([`tls`]). Its
/// `Debug` and [`DatabaseUrl::describe`] never show the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    tls: tls::Tls,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({})", self.describe())
    }
}

impl DatabaseUrl {
    /// Parses `postgres://user[:password]@host[:port]/database[?options]`
    /// (or `postgresql://`); `sslmode` and `sslrootcert` are libpq's.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("only postgres:// URLs are supported (e.g. postgres://webhooks@127.0.0.1/webhooks); \
                        leave it unset for the embedded SQLite database"
                .into());
        }
        let (rest, tls) = tls::split(url)?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
            // The cause names the option ("unknown option `x`").
            let why = std::error::Error::source(&e).map_or(e.to_string(), |c| format!("{e}: {c}"));
            format!("not a PostgreSQL URL ({why}), e.g. postgres://webhooks@127.0.0.1/webhooks")
        })?;
        if config.get_dbname().is_none() {
            return Err("the URL names no database (postgres://user@host/DATABASE)".into());
        }
        tls.apply(&mut config);
        Ok(DatabaseUrl { config, tls })
    }

    /// `user@host:port/database`, for messages and logs: no password.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let host = match c.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        format!("{}@{host}:{port}/{}", self.user(), c.get_dbname().unwrap_or(""))
    }

    fn user(&self) -> String {
        self.config.get_user().map(str::to_owned).unwrap_or_else(|| std::env::var("USER").unwrap_or_default())
    }

    /// The connection settings every connection of this host uses: the
    /// operator's, plus a name in `pg_stat_activity`, a connect timeout and
    /// a lock timeout as long as SQLite's busy timeout.
    fn session_config(&self) -> tokio_postgres::Config {
        let mut c = self.config.clone();
        if c.get_application_name().is_none() {
            c.application_name("webhooks-host");
        }
        if c.get_connect_timeout().is_none() {
            c.connect_timeout(CONNECT_TIMEOUT);
        }
        // Notices ("relation … already exists, skipping") are not news.
        let lock = format!("-c lock_timeout={} -c client_min_messages=warning", BUSY_TIMEOUT.as_millis());
        let options = match c.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {lock}"),
            _ => lock,
        };
        c.options(options);
        c
    }

    /// Explains a failed connection in one line naming the problem.
    fn explain(&self, e: &tokio_postgres::Error) -> String {
        let at = self.describe();
        match e.as_db_error() {
            Some(db) => match db.code().code() {
                "28P01" | "28000" => format!(
                    "PostgreSQL refused to sign in user {:?} at {at}: {} (check the user and password in database_url)",
                    self.user(),
                    db.message()
                ),
                "3D000" => format!(
                    "the PostgreSQL database {:?} does not exist at {at}: create it first (createdb {}) or fix database_url",
                    self.config.get_dbname().unwrap_or(""),
                    self.config.get_dbname().unwrap_or("")
                ),
                "53300" => format!("PostgreSQL at {at} has no free connection slot: {}", db.message()),
                _ => format!("PostgreSQL at {at} refused the connection: {}", db.message()),
            },
            None => {
                if let Some(line) = self.tls.explain(e, &at) {
                    return line;
                }
                // The innermost cause says it best ("Connection refused (os error 111)").
                let mut cause: &dyn std::error::Error = e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                let why = if std::ptr::addr_eq(cause, e) { e.to_string() } else { format!("{e}: {cause}") };
                // The client gave up signing in (e.g. channel_binding=require
                // without TLS): the server was reached.
                if why.starts_with("authentication error") {
                    return format!("signing in user {:?} at {at} failed: {why}", self.user());
                }
                format!("cannot reach the PostgreSQL server at {at}: {why}")
            }
        }
    }
}

/// Opens the pool and proves now that the server answers (with the TLS the
/// URL asks for, its certificate checked as far as `sslmode` says), the user
/// may sign in and the database exists: a bad URL is refused at start with
/// one line, before anything is created.
pub async fn connect(url: &DatabaseUrl) -> Result<Pool, String> {
    let manager = Manager::from_config(
        url.session_config(),
        url.tls.connector(),
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Some(BUSY_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(1)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| format!("PostgreSQL connection pool: {e}"))?;
    let client = pool.get().await.map_err(|e| match e {
        PoolError::Backend(e) => url.explain(&e),
        PoolError::Timeout(_) => {
            format!("cannot reach the PostgreSQL server at {}: no answer within {CONNECT_TIMEOUT:?}", url.describe())
        }
        e => format!("PostgreSQL at {}: {e}", url.describe()),
    })?;
    client.simple_query("SELECT 1").await.map_err(|e| url.explain(&e))?;
    Ok(pool)
}

/// What the pool's connections are, as the server sees them (pg_stat_ssl):
/// `PostgreSQL at …: TLSv1.3 (sslmode=…)` or `…: plain TCP, not encrypted
/// (…)`, for the start's log (whether `prefer` got TLS is the operator's to
/// know). `None` where the server cannot say (a proxy without pg_stat_ssl).
pub async fn link(pool: &Pool, url: &DatabaseUrl) -> Option<String> {
    let client = pool.get().await.ok()?;
    let row =
        client.query_opt("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.ok()??;
    let (ssl, version): (bool, Option<String>) = (row.try_get(0).ok()?, row.try_get(1).ok()?);
    let (at, how) = (url.describe(), url.tls.describe());
    Some(match ssl {
        true => format!("PostgreSQL at {at}: {} ({how})", version.unwrap_or_else(|| "TLS".into())),
        false => format!("PostgreSQL at {at}: plain TCP, not encrypted ({how})"),
    })
}

/// Holds [`MIGRATE_LOCK`] on a connection of its own until dropped (the
/// server releases a session's locks when it closes).
pub struct MigrationLock {
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MigrationLock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits for the migration lock: one host migrates while the others wait,
/// then find the schema current.
pub async fn migration_lock(url: &DatabaseUrl) -> Result<MigrationLock, String> {
    let (client, conn) = url.session_config().connect(url.tls.connector()).await.map_err(|e| url.explain(&e))?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    // Its own connection, without the lock timeout: a migration may take
    // longer than a statement waits for a lock.
    client
        .batch_execute(&format!("SET lock_timeout = 0; SELECT pg_advisory_lock({MIGRATE_LOCK})"))
        .await
        .map_err(|e| format!("taking the migration lock at {}: {e}", url.describe()))?;
    Ok(MigrationLock { _client: client, task })
}

/// Rewrites SQLite's `?N` (and bare `?`, numbered in order) to PostgreSQL's
/// `$N`, leaving string literals, quoted identifiers and comments alone.
///
/// ```
/// use webhooks_host::storage::postgres::rewrite_placeholders as r;
/// assert_eq!(r("SELECT ?1, ?2 WHERE a = '?3' -- ?4"), "SELECT $1, $2 WHERE a = '?3' -- ?4");
/// assert_eq!(r("INSERT INTO t VALUES (?, ?)"), "INSERT INTO t VALUES ($1, $2)");
/// ```
pub fn rewrite_placeholders(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let (mut i, mut start, mut next) = (0, 0, 1u32);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                // To the closing quote; a doubled quote is an escaped one and
                // simply closes and reopens.
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
            }
            b'?' => {
                out.push_str(&sql[start..i]);
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 {
                    out.push('$');
                    out.push_str(&sql[i + 1..i + 1 + digits]);
                    next = sql[i + 1..i + 1 + digits].parse::<u32>().map_or(next, |n| n + 1);
                } else {
                    out.push_str(&format!("${next}"));
                    next += 1;
                }
                i += 1 + digits;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[start.min(sql.len())..]);
    out
}

/// A WIT value as the type its parameter has.
#[derive(Debug)]
enum Param<'a> {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    U32(u32),
    F32(f32),
    F64(f64),
    Text(std::borrow::Cow<'a, str>),
    Jsonb(&'a str),
    Bytes(&'a [u8]),
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Bool(v) => v.to_sql(ty, out),
            Param::I16(v) => v.to_sql(ty, out),
            Param::I32(v) => v.to_sql(ty, out),
            Param::I64(v) => v.to_sql(ty, out),
            Param::U32(v) => v.to_sql(ty, out),
            Param::F32(v) => v.to_sql(ty, out),
            Param::F64(v) => v.to_sql(ty, out),
            Param::Text(v) => v.as_ref().to_sql(ty, out),
            Param::Jsonb(v) => {
                // jsonb's binary form: a version byte, then the text.
                out.put_u8(1);
                out.put_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            Param::Bytes(v) => v.to_sql(ty, out),
        }
    }

    // `bind` chose each variant for its parameter's type.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn is_text(ty: &Type) -> bool {
    [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::UNKNOWN].contains(ty)
}

/// Binds `params` to the statement's parameter types; a value that cannot be
/// of its parameter's type, or a wrong count, is an invalid statement.
fn bind<'a>(types: &[Type], params: &'a [Value]) -> Result<Vec<Param<'a>>, Error> {
    if types.len() != params.len() {
        return Err(Error::InvalidStatement(format!(
            "the statement has {} parameters but {} values were given",
            types.len(),
            params.len()
        )));
    }
    let out_of_range = |i: usize, ty: &Type| {
        Error::InvalidStatement(format!("parameter ?{}: the value does not fit in {}", i + 1, ty.name()))
    };
    types
        .iter()
        .zip(params)
        .enumerate()
        .map(|(i, (ty, v))| {
            Ok(match v {
                Value::Null => Param::Null,
                Value::Integer(n) => match *ty {
                    Type::INT8 => Param::I64(*n),
                    Type::INT4 => Param::I32(i32::try_from(*n).map_err(|_| out_of_range(i, ty))?),
                    Type::INT2 => Param::I16(i16::try_from(*n).map_err(|_| out_of_range(i, ty))?),
                    Type::OID => Param::U32(u32::try_from(*n).map_err(|_| out_of_range(i, ty))?),
                    // SQLite's truth: any non-zero integer.
                    Type::BOOL => Param::Bool(*n != 0),
                    Type::FLOAT8 => Param::F64(*n as f64),
                    Type::FLOAT4 => Param::F32(*n as f32),
                    ref t if is_text(t) => Param::Text(n.to_string().into()),
                    _ => return Err(mismatch(i, "an integer", ty)),
                },
                Value::Real(r) => match *ty {
                    Type::FLOAT8 => Param::F64(*r),
                    Type::FLOAT4 => Param::F32(*r as f32),
                    ref t if is_text(t) => Param::Text(r.to_string().into()),
                    _ => return Err(mismatch(i, "a real", ty)),
                },
                Value::Text(s) => match *ty {
                    ref t if is_text(t) || *t == Type::JSON => Param::Text(s.as_str().into()),
                    Type::JSONB => Param::Jsonb(s),
                    _ => return Err(mismatch(i, "a text", ty)),
                },
                Value::Blob(b) => match *ty {
                    Type::BYTEA => Param::Bytes(b),
                    _ => return Err(mismatch(i, "a blob", ty)),
                },
            })
        })
        .collect()
}

fn mismatch(i: usize, what: &str, ty: &Type) -> Error {
    Error::InvalidStatement(format!("parameter ?{} is {what} but the statement expects {}", i + 1, ty.name()))
}

/// One result cell as a WIT value, with its approximate size.
struct Cell(Value, usize);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Cell(Value::Integer(i64::from_sql(ty, raw)?), 8),
            Type::INT4 => Cell(Value::Integer(i32::from_sql(ty, raw)?.into()), 8),
            Type::INT2 => Cell(Value::Integer(i16::from_sql(ty, raw)?.into()), 8),
            Type::OID => Cell(Value::Integer(u32::from_sql(ty, raw)?.into()), 8),
            Type::BOOL => Cell(Value::Integer(bool::from_sql(ty, raw)?.into()), 8),
            Type::FLOAT8 => Cell(Value::Real(f64::from_sql(ty, raw)?), 8),
            Type::FLOAT4 => Cell(Value::Real(f32::from_sql(ty, raw)?.into()), 8),
            Type::NUMERIC => Cell(numeric(raw)?, 8),
            Type::BYTEA => Cell(Value::Blob(raw.to_vec()), raw.len()),
            Type::JSONB => {
                let text = raw.get(1..).ok_or("empty jsonb")?;
                Cell(Value::Text(String::from_utf8_lossy(text).into_owned()), raw.len())
            }
            ref t if is_text(t) || *t == Type::JSON => {
                Cell(Value::Text(String::from_utf8_lossy(raw).into_owned()), raw.len())
            }
            _ => return Err(format!("a column of type {} has no storage value; CAST it", ty.name()).into()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(Value::Null, 1))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A `numeric` in PostgreSQL's binary form (base-10,000 digits): an integer
/// when it has no fraction and fits, else a real (`SUM` of a bigint column
/// is a numeric).
fn numeric(raw: &[u8]) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> Result<i16, Box<dyn std::error::Error + Sync + Send>> {
        Ok(i16::from_be_bytes(raw.get(i..i + 2).ok_or("short numeric")?.try_into()?))
    };
    let (ndigits, weight, sign, dscale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
    match sign {
        0xC000 => return Ok(Value::Real(f64::NAN)),
        0xD000 => return Ok(Value::Real(f64::INFINITY)),
        0xF000 => return Ok(Value::Real(f64::NEG_INFINITY)),
        _ => {}
    }
    let digits = (0..ndigits.max(0) as usize).map(|k| word(8 + 2 * k)).collect::<Result<Vec<_>, _>>()?;
    let negative = sign == 0x4000;
    // Exact as an integer when no digit lies after the point.
    let integral = dscale == 0 && (digits.len() as i32) <= i32::from(weight) + 1;
    if integral {
        let mut v: i128 = 0;
        for k in 0..=i32::from(weight).max(-1) {
            v = v * 10_000 + i128::from(digits.get(k as usize).copied().unwrap_or(0));
        }
        let v = if negative { -v } else { v };
        if let Ok(v) = i64::try_from(v) {
            return Ok(Value::Integer(v));
        }
    }
    let mut v = 0f64;
    for (k, d) in digits.iter().enumerate() {
        v += f64::from(*d) * 10_000f64.powi(i32::from(weight) - k as i32);
    }
    Ok(Value::Real(if negative { -v } else { v }))
}

/// Maps a PostgreSQL error to what the plugin can act on. A server that
/// cannot be reached is an `io` error beginning with [`UNREACHABLE`].
pub fn map_err(e: tokio_postgres::Error) -> Error {
    if unreachable(&e) {
        return Error::Io(format!("{UNREACHABLE}: {}", with_cause(&e)));
    }
    let Some(db) = e.as_db_error() else {
        // A cell the storage interface cannot carry (see `Cell`).
        if std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("has no storage value")) {
            return Error::InvalidStatement(format!("{e}: {}", std::error::Error::source(&e).expect("checked")));
        }
        return Error::Io(e.to_string());
    };
    let msg = match db.detail() {
        Some(d) => format!("{} ({d})", db.message()),
        None => db.message().to_owned(),
    };
    match db.code().code() {
        // integrity_constraint_violation: unique, foreign key, not null, check.
        c if c.starts_with("23") => Error::Constraint(msg),
        // serialization_failure, deadlock_detected, lock_not_available
        // (the lock timeout), query_canceled: try again later.
        "40001" | "40P01" | "55P03" | "57014" => Error::Busy,
        // program_limit_exceeded and its kin.
        "54000" | "54001" => Error::TooLarge,
        // syntax_error_or_access_rule_violation (syntax, unknown table or
        // column, type mismatch…) and data exceptions (a bad cast).
        c if c.starts_with("42") || c.starts_with("22") => Error::InvalidStatement(msg),
        _ => Error::Io(msg),
    }
}

pub(crate) fn pool_err(e: PoolError) -> Error {
    match e {
        // Every pooled connection stayed busy past the busy timeout.
        PoolError::Timeout(TimeoutType::Wait) => Error::Busy,
        // Opening a connection took longer than the connect timeout: the
        // server does not answer.
        PoolError::Timeout(_) => Error::Io(format!("{UNREACHABLE}: no connection within {CONNECT_TIMEOUT:?}")),
        PoolError::Backend(e) => map_err(e),
        e => Error::Io(format!("PostgreSQL connection pool: {e}")),
    }
}

/// How the `io` error of a statement that failed because the server could
/// not be reached begins. The component sees it as any `io` error; the
/// host reads it back ([`unreachable_reason`]) to know that the database,
/// not the statement, failed ([`crate::health`]).
pub const UNREACHABLE: &str = "the database cannot be reached";

/// The message of `e`, as [`map_err`] and [`pool_err`] made it, when it
/// says the server could not be reached.
pub fn unreachable_reason(e: &Error) -> Option<&str> {
    match e {
        Error::Io(m) if m.starts_with(UNREACHABLE) => Some(m),
        _ => None,
    }
}

/// Whether the server could not be reached: no connection could be opened
/// (refused, timed out, the server starting up or shutting down), or the
/// one in use broke or was closed (the server stopped or restarted, a
/// network failure). The session is gone with it; the pool opens a new one
/// for the next statement. Not an error of the statement itself.
fn unreachable(e: &tokio_postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        // connection_exception (08…); admin_shutdown (`pg_ctl stop -m
        // fast`, `pg_terminate_backend`), crash_shutdown, cannot_connect_now
        // (starting up, shutting down, in recovery).
        let code = db.code().code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    if e.is_closed() {
        return true;
    }
    // Connecting or talking to the server failed at the socket (the cause
    // is the OS's error); a malformed message (InvalidData/InvalidInput)
    // is no sign of an outage.
    let io = std::error::Error::source(e).and_then(|c| c.downcast_ref::<std::io::Error>());
    if io.is_some_and(|io| !matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput)) {
        return true;
    }
    // tokio-postgres' own timeout while connecting; a TLS handshake cut short.
    let what = e.to_string();
    what == "timeout waiting for server" || what == "error performing TLS handshake"
}

/// The error and its innermost cause, in one line.
fn with_cause(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if std::ptr::addr_eq(cause, e) { e.to_string() } else { format!("{e}: {cause}") }
}

/// What the host learnt preparing statements (after
/// [`rewrite_placeholders`]): those whose parameter types PostgreSQL infers,
/// and those prepared with declared types because it cannot. Shared by the
/// host's sessions.
#[derive(Default)]
pub struct Learnt {
    inferred: HashSet<String>,
    declared: HashSet<String>,
}

/// [`Learnt`], shared.
pub type Prepared = Arc<Mutex<Learnt>>;

/// Whether preparing failed only for want of parameter types: inconsistent
/// or undeterminable types, a mismatch (an untyped `CASE` read as text), no
/// operator or function for unknown operands.
fn needs_declared_types(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| ["42P08", "42P18", "42804", "42883", "42725"].contains(&d.code().code()))
}

/// The type a value has on its own, as SQLite would take it; a null is left
/// for PostgreSQL to infer (type 0 on the wire: unspecified).
fn declared_type(v: Option<&Value>) -> Type {
    match v {
        Some(Value::Integer(_)) => Type::INT8,
        Some(Value::Real(_)) => Type::FLOAT8,
        Some(Value::Text(_)) => Type::TEXT,
        Some(Value::Blob(_)) => Type::BYTEA,
        Some(Value::Null) | None => Type::new("unspecified".into(), 0, Kind::Pseudo, "pg_catalog".into()),
    }
}

/// One component instance's storage: the shared pool, and the connection its
/// open transaction holds.
pub struct Session {
    pool: Pool,
    learnt: Prepared,
    tx: Option<Tx>,
    /// Exchanges with the server since the last [`Session::end_call`]: each
    /// statement, pipelined runs and a `BEGIN` sent with them counting one,
    /// a prepare that misses the cache is not counted (`/metrics`:
    /// `webhooks_db_round_trips_total{call}`).
    round_trips: u64,
}

/// A connection inside `BEGIN`. Dropped while still open (an instance thrown
/// away mid-call), the connection is closed rather than returned to the pool
/// inside a transaction.
struct Tx {
    conn: Option<Object>,
    /// A statement failed: PostgreSQL has aborted the transaction, so
    /// `commit` answers the error instead of quietly rolling back.
    failed: bool,
    /// `BEGIN` was sent (with the first statement).
    begun: bool,
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            drop(Object::take(c));
        }
    }
}

impl Tx {
    /// Gives back to the pool the connection of a transaction that never
    /// sent `BEGIN`: it is outside any transaction.
    fn release(mut self) {
        drop(self.conn.take());
    }

    fn conn(&self) -> &Object {
        self.conn.as_ref().expect("a transaction holds its connection until it ends")
    }

    /// Ends the transaction with `sql` (`COMMIT` or `ROLLBACK`) and gives the
    /// connection back to the pool, or closes it when that failed.
    async fn end(mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        let conn = self.conn.take().expect("held");
        let r = conn.batch_execute(sql).await;
        if r.is_err() {
            drop(Object::take(conn));
        }
        r
    }
}

/// The connection a statement runs on: the transaction's, or one of its own.
// A short-lived value on the stack of one statement: no gain in boxing.
#[allow(clippy::large_enum_variant)]
enum Held<'a> {
    Tx(&'a mut Tx),
    Own(Object),
}

impl Held<'_> {
    fn client(&self) -> &Object {
        match self {
            Held::Tx(t) => t.conn(),
            Held::Own(o) => o,
        }
    }

    /// Whether this statement opens the transaction: `BEGIN` goes with it.
    fn opens(&mut self) -> bool {
        match self {
            Held::Tx(t) => !std::mem::replace(&mut t.begun, true),
            Held::Own(_) => false,
        }
    }

    /// Runs `work`, after `BEGIN` when `open`: both sent before either
    /// answer is read, so opening a transaction costs no round trip of its
    /// own (the server runs them in order; tokio-postgres sends requests in
    /// the order they are first polled).
    async fn run<T>(&self, open: bool, work: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let begin = async {
            match open {
                true => self.client().batch_execute("BEGIN").await.map_err(map_err),
                false => Ok(()),
            }
        };
        futures_util::future::try_join(begin, work).await.map(|((), r)| r)
    }

    /// Notes a failed statement inside a transaction.
    fn failed<T>(&mut self, r: Result<T, Error>) -> Result<T, Error> {
        if r.is_err()
            && let Held::Tx(t) = self
        {
            t.failed = true;
        }
        r
    }
}

impl Session {
    /// A session on the shared pool.
    pub fn new(pool: Pool, learnt: Prepared) -> Self {
        Session { pool, learnt, tx: None, round_trips: 0 }
    }

    async fn held(&mut self) -> Result<Held<'_>, Error> {
        match &mut self.tx {
            Some(t) => Ok(Held::Tx(t)),
            None => Ok(Held::Own(self.pool.get().await.map_err(pool_err)?)),
        }
    }

    /// Prepares `sql` (cached per connection), with parameter types inferred,
    /// or declared from `rows` (the first non-null value of each column) when
    /// inferring fails or reads a number as text; see the module comment.
    async fn prepared(
        h: &Held<'_>,
        learnt: &Prepared,
        sql: &str,
        rows: &[&[Value]],
    ) -> Result<tokio_postgres::Statement, Error> {
        let c = h.client();
        let text = rewrite_placeholders(sql);
        let n = rows.first().map_or(0, |r| r.len());
        let types: Vec<Type> = (0..n)
            .map(|i| declared_type(rows.iter().filter_map(|r| r.get(i)).find(|v| !matches!(v, Value::Null))))
            .collect();
        let (inferred, declared) =
            learnt.lock().map(|l| (l.inferred.contains(&text), l.declared.contains(&text))).unwrap_or_default();
        if declared {
            return c.prepare_typed_cached(&text, &types).await.map_err(map_err);
        }
        let stmt = if inferred {
            c.prepare_cached(&text).await.map_err(map_err)?
        } else {
            match Self::guarded(h, c.prepare_cached(&text)).await? {
                Ok(stmt) => {
                    if let Ok(mut l) = learnt.lock() {
                        l.inferred.insert(text.clone());
                    }
                    stmt
                }
                Err(e) if needs_declared_types(&e) => {
                    if let Ok(mut l) = learnt.lock() {
                        l.declared.insert(text.clone());
                    }
                    return c.prepare_typed_cached(&text, &types).await.map_err(map_err);
                }
                Err(e) => return Err(map_err(e)),
            }
        };
        // A number or a blob where PostgreSQL inferred text: declared, it
        // stays a number, as on SQLite; where PostgreSQL refuses that (a
        // text column compared with it), the text reading stands.
        let lost = stmt
            .params()
            .iter()
            .zip(&types)
            .any(|(inferred, own)| is_text(inferred) && !is_text(own) && own.oid() != 0);
        if lost && let Ok(Ok(typed)) = Self::guarded(h, c.prepare_typed_cached(&text, &types)).await {
            return Ok(typed);
        }
        Ok(stmt)
    }

    /// Runs `prepare` so that its failure cannot abort the open transaction
    /// (under a savepoint); answers its own result inside.
    async fn guarded<T>(
        h: &Held<'_>,
        prepare: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<Result<T, tokio_postgres::Error>, Error> {
        let in_tx = matches!(h, Held::Tx(_));
        if in_tx {
            h.client().batch_execute("SAVEPOINT webhooks_prepare").await.map_err(map_err)?;
        }
        let tried = prepare.await;
        if in_tx {
            let undo = if tried.is_ok() { "" } else { "ROLLBACK TO SAVEPOINT webhooks_prepare; " };
            h.client().batch_execute(&format!("{undo}RELEASE SAVEPOINT webhooks_prepare")).await.map_err(map_err)?;
        }
        Ok(tried)
    }

    /// Runs one statement; answers rows changed.
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, Error> {
        self.round_trips += 1;
        let learnt = self.learnt.clone();
        let mut h = self.held().await?;
        let open = h.opens();
        let r = h
            .run(open, async {
                let stmt = Self::prepared(&h, &learnt, sql, &[params]).await?;
                let args = bind(stmt.params(), params)?;
                h.client().execute_raw(&stmt, args.iter()).await.map_err(map_err)
            })
            .await;
        h.failed(r)
    }

    /// Runs one statement and collects its rows within the caps.
    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, Error> {
        self.round_trips += 1;
        let learnt = self.learnt.clone();
        let mut h = self.held().await?;
        let open = h.opens();
        let r = h
            .run(open, async {
                let stmt = Self::prepared(&h, &learnt, sql, &[params]).await?;
                let args = bind(stmt.params(), params)?;
                let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
                let stream = h.client().query_raw(&stmt, args.iter()).await.map_err(map_err)?;
                pin_mut!(stream);
                let mut out = Capped::default();
                while let Some(row) = stream.try_next().await.map_err(map_err)? {
                    out.room()?;
                    let mut cells = Vec::with_capacity(columns.len());
                    let mut size = 0;
                    for i in 0..columns.len() {
                        let Cell(v, s) = row.try_get(i).map_err(map_err)?;
                        size += s;
                        cells.push(v);
                    }
                    out.push(cells, size)?;
                }
                Ok(Rows { columns, rows: out.rows })
            })
            .await;
        h.failed(r)
    }

    /// Runs one statement once per parameter row; answers rows changed by
    /// each. The runs are pipelined (sent without waiting for each answer: a
    /// step's hundreds of rows cost one round trip, not one each). Inside a
    /// transaction a failure aborts it there, so nothing after it takes
    /// effect either; outside one they run in a transaction of their own
    /// (`BEGIN` … `COMMIT` in the same pipeline), all or nothing.
    pub async fn execute_many(&mut self, sql: &str, rows: &[Vec<Value>]) -> Result<Vec<u64>, Error> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.round_trips += 1;
        let learnt = self.learnt.clone();
        let all: Vec<&[Value]> = rows.iter().map(Vec::as_slice).collect();
        let mut h = self.held().await?;
        if matches!(h, Held::Own(_)) {
            let r = async {
                // Prepared first, outside the transaction below: a first try
                // that fails must not abort it (see `prepared`).
                let stmt = Self::prepared(&h, &learnt, sql, &all).await?;
                let binds = rows.iter().map(|p| bind(stmt.params(), p)).collect::<Result<Vec<_>, _>>()?;
                let c = h.client();
                if binds.len() == 1 {
                    return Ok(vec![c.execute_raw(&stmt, binds[0].iter()).await.map_err(map_err)?]);
                }
                let runs =
                    futures_util::future::try_join_all(binds.iter().map(|args| c.execute_raw(&stmt, args.iter())));
                let (_, counts, _) =
                    futures_util::future::try_join3(c.batch_execute("BEGIN"), runs, c.batch_execute("COMMIT"))
                        .await
                        .map_err(map_err)?;
                Ok(counts)
            }
            .await;
            if r.is_err()
                && let Held::Own(o) = h
            {
                // Its transaction may be left open (aborted) on the
                // connection: close it rather than pool it.
                drop(Object::take(o));
            }
            return r;
        }
        let open = h.opens();
        let r = h
            .run(open, async {
                let stmt = Self::prepared(&h, &learnt, sql, &all).await?;
                let binds = rows.iter().map(|p| bind(stmt.params(), p)).collect::<Result<Vec<_>, _>>()?;
                let runs = binds.iter().map(|args| h.client().execute_raw(&stmt, args.iter()));
                futures_util::future::try_join_all(runs).await.map_err(map_err)
            })
            .await;
        h.failed(r)
    }

    /// Runs `;`-separated statements without parameters.
    pub async fn execute_batch(&mut self, sql: &str) -> Result<(), Error> {
        self.round_trips += 1;
        let mut h = self.held().await?;
        let open = h.opens();
        let r = h.run(open, async { h.client().batch_execute(sql).await.map_err(map_err) }).await;
        h.failed(r)
    }

    /// Opens a transaction: takes a pooled connection and holds it until
    /// `commit` or `rollback`. `BEGIN` is sent with the first statement.
    pub async fn begin(&mut self) -> Result<(), Error> {
        if self.tx.is_some() {
            return Err(Error::InvalidStatement("a transaction is already open".into()));
        }
        let conn = self.pool.get().await.map_err(pool_err)?;
        self.tx = Some(Tx { conn: Some(conn), failed: false, begun: false });
        Ok(())
    }

    /// Commits the open transaction. One whose statement failed was already
    /// aborted by PostgreSQL: it is rolled back and the commit refused.
    pub async fn commit(&mut self) -> Result<(), Error> {
        let Some(tx) = self.tx.take() else {
            return Err(Error::InvalidStatement("no transaction is open".into()));
        };
        if !tx.begun {
            // Nothing was sent: nothing to commit.
            tx.release();
            return Ok(());
        }
        if tx.failed {
            let _ = tx.end("ROLLBACK").await;
            return Err(Error::InvalidStatement(
                "a statement of this transaction failed, so it was rolled back instead of committed".into(),
            ));
        }
        self.round_trips += 1;
        tx.end("COMMIT").await.map_err(map_err)
    }

    /// Rolls back the open transaction, if any.
    pub async fn rollback(&mut self) {
        if let Some(tx) = self.tx.take() {
            match tx.begun {
                true => {
                    self.round_trips += 1;
                    let _ = tx.end("ROLLBACK").await;
                }
                false => tx.release(),
            }
        }
    }

    /// After every exported call: rolls back a transaction the component
    /// left open; answers whether one was, and the call's round trips.
    pub async fn end_call(&mut self) -> (bool, u64) {
        let open = self.tx.is_some();
        self.rollback().await;
        (open, std::mem::take(&mut self.round_trips))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_outside_quotes_and_comments_are_rewritten() {
        assert_eq!(rewrite_placeholders("a = ?1 AND b = ?12"), "a = $1 AND b = $12");
        assert_eq!(rewrite_placeholders("'it''s ?1' || ?2"), "'it''s ?1' || $2");
        assert_eq!(
            rewrite_placeholders(r#"SELECT "?1" FROM t /* ?2 */ WHERE x = ?3"#),
            r#"SELECT "?1" FROM t /* ?2 */ WHERE x = $3"#
        );
        assert_eq!(rewrite_placeholders("-- ?1\nSELECT ?1"), "-- ?1\nSELECT $1");
        assert_eq!(rewrite_placeholders("VALUES (?3, ?)"), "VALUES ($3, $4)");
        assert_eq!(rewrite_placeholders("'unterminated ?1"), "'unterminated ?1");
    }

    #[test]
    fn values_bind_to_the_parameter_types_or_are_refused() {
        let v = [Value::Integer(1), Value::Integer(70_000), Value::Text("x".into()), Value::Blob(vec![1])];
        let p = bind(&[Type::BOOL, Type::INT8, Type::VARCHAR, Type::BYTEA], &v).unwrap();
        assert!(matches!(p[..], [Param::Bool(true), Param::I64(70_000), Param::Text(_), Param::Bytes(_)]));
        assert!(matches!(bind(&[Type::INT2], &v[1..2]), Err(Error::InvalidStatement(m)) if m.contains("?1")));
        assert!(
            matches!(bind(&[Type::INT8], &v[2..3]), Err(Error::InvalidStatement(m)) if m.contains("bigint") || m.contains("int8"))
        );
        assert!(matches!(bind(&[Type::INT8, Type::INT8], &v[..1]), Err(Error::InvalidStatement(_))));
        assert!(matches!(bind(&[Type::TEXT], &v[..1]).unwrap()[..], [Param::Text(ref t)] if t == "1"));
    }

    #[test]
    fn urls_are_checked_and_never_shown_with_their_password() {
        let u = DatabaseUrl::parse("postgres://hooks:s3cret@db.internal:6543/webhooks").unwrap();
        assert_eq!(u.describe(), "hooks@db.internal:6543/webhooks");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(DatabaseUrl::parse("postgresql://hooks@127.0.0.1/webhooks").is_ok());
        for bad in ["sqlite:///tmp/x.db", "/var/lib/webhooks.db", "mysql://root@h/db"] {
            assert!(DatabaseUrl::parse(bad).unwrap_err().contains("only postgres:// URLs"), "{bad}");
        }
        assert!(DatabaseUrl::parse("postgres://hooks@127.0.0.1").unwrap_err().contains("names no database"));
        assert!(
            DatabaseUrl::parse("postgres://hooks@127.0.0.1:notaport/db").unwrap_err().contains("not a PostgreSQL URL")
        );
    }

    #[test]
    fn numerics_read_as_integers_when_whole() {
        // 123456789 = [1, 2345, 6789] base 10,000, weight 2, scale 0.
        let mut raw = vec![];
        for w in [3i16, 2, 0, 0, 1, 2345, 6789] {
            raw.extend(w.to_be_bytes());
        }
        assert!(matches!(numeric(&raw).unwrap(), Value::Integer(123_456_789)));
        // -1.5 = [1, 5000], weight 0, negative, scale 1.
        let mut raw = vec![];
        for w in [2i16, 0, 0x4000, 1, 1, 5000] {
            raw.extend(w.to_be_bytes());
        }
        assert!(matches!(numeric(&raw).unwrap(), Value::Real(r) if r == -1.5));
        // Zero has no digits.
        assert!(matches!(numeric(&[0, 0, 0, 0, 0, 0, 0, 0]).unwrap(), Value::Integer(0)));
    }
}
