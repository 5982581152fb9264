//! Test harness: the real `webhooks-host` binary on a temp data dir, a real
//! HTTP receiver on 127.0.0.1, and an admin browser-less client (cookies +
//! CSRF like a browser). Nothing here stands in for our own parts.
//!
//! With `WEBHOOKS_TEST_ENGINE=postgres` every host started here runs on a
//! fresh scratch database of the PostgreSQL server at
//! `WEBHOOKS_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`),
//! dropped with the host, and so does every integration `tests/library.rs`
//! starts ([`Store::for_data`]); [`Store`] (and [`Host::count`],
//! [`Host::int`], [`Host::text`], [`Host::rows`], [`Host::execute`],
//! [`Host::stored_bytes`]) reads whichever engine the host runs on, so the
//! same test bodies check both. `.ci/run` runs the whole suite that way after
//! the SQLite run. A test about the SQLite file itself ([`Host::db`]) returns
//! on PostgreSQL, saying why; `tests/postgres.rs` has what is PostgreSQL's own.

#![allow(dead_code)]

pub mod cluster;
pub mod scripts;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

pub const TOKEN: &str = "test-token-0123456789";
pub const ADMIN_PASSWORD: &str = "test-password-123";

/// Every subscribable event type, as the issue lists them (an expectation
/// written independently of the plugin's catalog).
pub const ALL_EVENTS: [&str; 12] = [
    "user.created",
    "user.updated",
    "user.deleted",
    "server.created",
    "server.deleted",
    "transaction.created",
    "transaction.success",
    "transaction.failed",
    "transaction.refunded",
    "ticket.created",
    "ticket.closed",
    "ticket.reopened",
];

/// The published example `data` of an event type (the first `examples`
/// entry of `plugin/events/<type>.json`): valid against the type's schema,
/// which intake enforces.
pub fn example_data(event_type: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../plugin/events/{event_type}.json"));
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .expect("schema is JSON");
    schema["examples"][0].clone()
}

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived (for tests that reason about the time between copies).
    pub at: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }
}

#[derive(Default)]
struct RecvState {
    seen: Mutex<Vec<Seen>>,
    counts: Mutex<HashMap<String, u32>>,
    /// Requests being answered now, and the most there ever were at once.
    active: std::sync::atomic::AtomicUsize,
    most_active: std::sync::atomic::AtomicUsize,
}

/// Counts a request as being answered until dropped.
struct Active<'a>(&'a RecvState);

impl<'a> Active<'a> {
    fn enter(st: &'a RecvState) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let now = st.active.fetch_add(1, SeqCst) + 1;
        st.most_active.fetch_max(now, SeqCst);
        Active(st)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A real HTTP receiver on 127.0.0.1 with programmable answers by path:
/// `/ok/..` 200; `/status/{code}/..` that code; `/flaky/{n}/..` 500 for the
/// first n hits then 200; `/slow/{ms}/..` waits then 200; `/html/..` answers
/// HTML with script in body and headers; `/retry-after/{s}/..` 429 once.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<RecvState>,
    _thread: std::thread::JoinHandle<()>,
}

async fn receive(
    State(st): State<Arc<RecvState>>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/{path}");
    let _active = Active::enter(&st);
    st.seen.lock().unwrap().push(Seen { path: path.clone(), headers, body, at: Instant::now() });
    let hits = {
        let mut c = st.counts.lock().unwrap();
        let n = c.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["status", code, ..] => {
            let code = code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::OK);
            (code, [("x-receiver", "status")], format!("answered {code}")).into_response()
        }
        ["flaky", n, ..] => {
            if hits <= n.parse::<u32>().unwrap_or(0) {
                (StatusCode::INTERNAL_SERVER_ERROR, "not yet").into_response()
            } else {
                (StatusCode::OK, "finally").into_response()
            }
        }
        ["slow", ms, ..] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            (StatusCode::OK, "slow ok").into_response()
        }
        ["hang", ..] => {
            // Accepts the request and never answers.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (StatusCode::OK, "too late").into_response()
        }
        ["html", ..] => (
            StatusCode::OK,
            [("content-type", "text/html"), ("x-evil", "<script>alert('hdr')</script>")],
            "<script>alert('body')</script><img src=x onerror=alert(2)>",
        )
            .into_response(),
        ["redirect-to", port, ..] => {
            (StatusCode::FOUND, [("location", format!("http://127.0.0.1:{port}/internal"))], "moved").into_response()
        }
        ["retry-after", s, ..] => {
            if hits == 1 {
                (StatusCode::TOO_MANY_REQUESTS, [("retry-after", s.to_string())], "slow down").into_response()
            } else {
                (StatusCode::OK, "ok").into_response()
            }
        }
        _ => (StatusCode::OK, [("x-receiver", "ok")], "thanks").into_response(),
    }
}

impl Receiver {
    pub fn start() -> Receiver {
        let state = Arc::new(RecvState::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route("/{*path}", post(receive)).with_state(st);
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                axum::serve(l, app).await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Receiver { addr, state, _thread: thread }
    }

    /// The most requests this receiver was answering at once.
    pub fn most_at_once(&self) -> usize {
        self.state.most_active.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    /// How many requests arrived at `path` so far, without copying them (cheap
    /// enough to poll while thousands arrive).
    pub fn count_at(&self, path: &str) -> usize {
        self.state.counts.lock().unwrap().get(path).copied().unwrap_or(0) as usize
    }

    /// Waits until `n` requests arrived at `path`.
    pub fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Seen> {
        let t = Instant::now();
        loop {
            let s = self.seen_at(path);
            if s.len() >= n {
                return s;
            }
            assert!(t.elapsed() < within, "waited {within:?} for {n} requests at {path}, saw {}", s.len());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether this test process runs its hosts on PostgreSQL
/// (`WEBHOOKS_TEST_ENGINE=postgres`) rather than SQLite.
pub fn on_postgres() -> bool {
    match std::env::var("WEBHOOKS_TEST_ENGINE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("WEBHOOKS_TEST_ENGINE={other:?}: use sqlite or postgres"),
    }
}

/// The PostgreSQL server the tests use, as a URL without a database.
pub fn postgres_server() -> String {
    std::env::var("WEBHOOKS_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_owned()
}

/// Runs `f`, which blocks on the synchronous PostgreSQL client (it drives
/// a runtime of its own), where blocking is allowed: here, or on a thread of
/// its own when this thread drives a tokio runtime (the async browser and
/// library tests), where the client would panic.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
}

/// A client on `database` of the test server (not for a thread that drives
/// a tokio runtime: see [`off_runtime`]).
pub fn postgres_client(database: &str) -> postgres::Client {
    let url = format!("{}/{database}", postgres_server());
    postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("PostgreSQL for the tests at {url}: {e} (is the server running? see .ci/run)"))
}

/// A database of its own on the test server (or on a test's own
/// [`cluster::ScratchCluster`]), dropped with this value.
pub struct ScratchDb {
    pub name: String,
    /// The server it is on, as a URL without a database.
    pub server: String,
}

/// Scratch databases older than this are left over by a test process that
/// was killed; the next one to create a database drops them.
const SCRATCH_STALE_SECS: u64 = 3 * 3600;

impl ScratchDb {
    /// Creates `webhooks_test_<unix seconds>_<random>`.
    pub fn create() -> ScratchDb {
        off_runtime(|| ScratchDb::create_here(&postgres_server()))
    }

    /// The same, on `server` (a URL without a database).
    pub fn create_on(server: &str) -> ScratchDb {
        off_runtime(|| ScratchDb::create_here(server))
    }

    fn create_here(server: &str) -> ScratchDb {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut rand = [0u8; 6];
        getrandom::fill(&mut rand).unwrap();
        let name = format!("webhooks_test_{now}_{}", hex::encode(rand));
        let url = format!("{server}/postgres");
        let mut c = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL for the tests at {url}: {e} (is the server running? see .ci/run)"));
        for row in c.query(r"SELECT datname FROM pg_database WHERE datname LIKE 'webhooks\_test\_%'", &[]).unwrap() {
            let old: String = row.get(0);
            let born = old.split('_').nth(2).and_then(|t| t.parse::<u64>().ok()).unwrap_or(now);
            if now.saturating_sub(born) > SCRATCH_STALE_SECS {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{old}\" WITH (FORCE)"));
            }
        }
        c.batch_execute(&format!("CREATE DATABASE \"{name}\"")).unwrap();
        ScratchDb { name, server: server.to_owned() }
    }

    /// The URL a host is given.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub fn client(&self) -> postgres::Client {
        let url = self.url();
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL for the tests at {url}: {e} (is the server running? see .ci/run)"))
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        off_runtime(|| {
            if let Ok(mut c) = postgres::Client::connect(&format!("{}/postgres", self.server), postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name));
            }
        })
    }
}

/// The scratch database of each data folder started by [`spawn_host`], so a
/// restart on the same folder finds the same database (kept to the end of
/// the test process; a later process drops it once stale).
fn scratch_for(data: &Path) -> Arc<ScratchDb> {
    static DBS: Mutex<Vec<(PathBuf, Arc<ScratchDb>)>> = Mutex::new(Vec::new());
    let mut dbs = DBS.lock().unwrap();
    if let Some((_, db)) = dbs.iter().find(|(p, _)| p == data) {
        return db.clone();
    }
    let db = Arc::new(ScratchDb::create());
    dbs.push((data.to_owned(), db.clone()));
    db
}

/// One cell of a row read by [`Host::rows`], from either engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(i) => *i,
            c => panic!("not an integer: {c:?}"),
        }
    }
    pub fn opt_int(&self) -> Option<i64> {
        match self {
            Cell::Null => None,
            c => Some(c.int()),
        }
    }
    pub fn text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            c => panic!("not a text: {c:?}"),
        }
    }
    pub fn opt_text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            c => Some(c.text()),
        }
    }
}

/// A parameter of [`Host::rows`]: `?N` in the SQL, on either engine.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Int(i) => (*i).into(),
            Arg::Text(t) => t.as_str().into(),
        })
    }
}

/// The real `webhooks-host serve` process.
pub struct Host {
    pub child: Child,
    pub base: String,
    pub data: PathBuf,
    /// Its PostgreSQL database, when the tests run on PostgreSQL.
    pub pg: Option<Arc<ScratchDb>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the host logged besides the usual.
        if std::thread::panicking() {
            let log = self.log();
            let notable: Vec<&str> = log.lines().filter(|l| !l.contains(" INFO ")).collect();
            eprintln!("--- the host's log (but INFO lines):\n{}", notable.join("\n"));
        }
    }
}

pub fn host_with(env: &[(&str, &str)]) -> Host {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut h =
        if on_postgres() { spawn_on(&data, Arc::new(ScratchDb::create()), env) } else { spawn_host(&data, env) };
    h._tmp = Some(tmp);
    h
}

/// A host on a scratch PostgreSQL database of its own (dropped with it),
/// whatever `WEBHOOKS_TEST_ENGINE` says.
pub fn host_on_postgres(env: &[(&str, &str)]) -> Host {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = spawn_on(&tmp.path().join("data"), Arc::new(ScratchDb::create()), env);
    h._tmp = Some(tmp);
    h
}

/// Starts the binary on `data` with its tables in `db`.
pub fn spawn_on(data: &Path, db: Arc<ScratchDb>, env: &[(&str, &str)]) -> Host {
    let mut cmd = host_command(data, env);
    cmd.env("WEBHOOKS_DATABASE_URL", db.url());
    let mut h = spawn(cmd, data);
    h.pg = Some(db);
    h
}

pub fn host() -> Host {
    host_with(&[])
}

/// Starts the binary on `data` (kept by the caller); on PostgreSQL, on the
/// scratch database of that folder.
pub fn spawn_host(data: &Path, env: &[(&str, &str)]) -> Host {
    if on_postgres() {
        return spawn_on(data, scratch_for(data), env);
    }
    spawn(host_command(data, env), data)
}

/// The command [`spawn_host`] runs, to adjust before [`spawn`].
pub fn host_command(data: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_webhooks-host"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("WEBHOOKS_API_TOKEN", TOKEN)
        .env("WEBHOOKS_ADMIN_USER", "admin")
        .env("WEBHOOKS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("WEBHOOKS_ALLOWED_HOSTS", "127.0.0.1")
        .env("WEBHOOKS_RETRY_SCHEDULE", "0s,300ms,300ms")
        .env("WEBHOOKS_ATTEMPT_TIMEOUT", "3s");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a prepared `serve` command that must refuse to start: waits for it
/// to exit (within 60 s) and answers its exit success and its stderr.
pub fn run_refused(mut cmd: Command) -> (bool, String) {
    if !cmd.get_envs().any(|(k, _)| k == "WEBHOOKS_CACHE_DIR") {
        cmd.env("WEBHOOKS_CACHE_DIR", concat!(env!("CARGO_TARGET_TMPDIR"), "/cwasm-cache"));
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start webhooks-host");
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.success(), err);
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("webhooks-host started; it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a prepared `webhooks-host serve` command; its log goes next to `data`.
pub fn spawn(mut cmd: Command, data: &Path) -> Host {
    if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
        cmd.env_remove("RUST_LOG");
    }
    if !cmd.get_envs().any(|(k, _)| k == "WEBHOOKS_CACHE_DIR") {
        // One compile for the whole suite: the cache is keyed by the component.
        cmd.env("WEBHOOKS_CACHE_DIR", concat!(env!("CARGO_TARGET_TMPDIR"), "/cwasm-cache"));
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start webhooks-host");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(l)) = lines.next() {
            if let Some(a) = l.strip_prefix("webhooks-host listening on ") {
                let _ = tx.send(a.to_owned());
            }
        }
    });
    let stderr = child.stderr.take().unwrap();
    let log_path = data.with_extension("log");
    std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(log_path).ok();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = f.as_mut() {
                let _ = writeln!(f, "{l}");
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(120)).expect("host printed its address");
    Host { child, base, data: data.to_owned(), pg: None, _tmp: None }
}

/// Where a host keeps its tables: the SQLite file in its data folder, or its
/// scratch PostgreSQL database. The same SQL (`?N` parameters) reads and
/// writes either, so one test body checks both engines.
#[derive(Clone)]
pub struct Store {
    pub data: PathBuf,
    pub pg: Option<Arc<ScratchDb>>,
}

impl Store {
    /// The engine this test process runs on for a host on `data`: a scratch
    /// PostgreSQL database of its own with `WEBHOOKS_TEST_ENGINE=postgres`
    /// (dropped with the last clone), else the SQLite file there.
    pub fn for_data(data: &Path) -> Store {
        Store { data: data.to_owned(), pg: on_postgres().then(|| Arc::new(ScratchDb::create())) }
    }

    /// The SQLite file itself, for tests that run on SQLite only.
    pub fn db(&self) -> rusqlite::Connection {
        assert!(self.pg.is_none(), "this test reads the SQLite file: run it without WEBHOOKS_TEST_ENGINE=postgres");
        let c = rusqlite::Connection::open(self.data.join("webhooks.db")).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c
    }

    /// Every row of `sql` (`?N` parameters), on the engine the host runs on.
    pub fn rows(&self, sql: &str, args: &[Arg]) -> Vec<Vec<Cell>> {
        match &self.pg {
            Some(db) => off_runtime(|| {
                use postgres::types::{ToSql, Type};
                let mut c = db.client();
                let sql = webhooks_host::storage::postgres::rewrite_placeholders(sql);
                let params: Vec<Box<dyn ToSql + Sync>> = args
                    .iter()
                    .map(|a| -> Box<dyn ToSql + Sync> {
                        match a {
                            Arg::Int(i) => Box::new(*i),
                            Arg::Text(t) => Box::new(t.clone()),
                        }
                    })
                    .collect();
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
                let rows = c.query(&sql, &refs).unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| match *r.columns()[i].type_() {
                                Type::INT8 => r.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int),
                                Type::INT4 => r.get::<_, Option<i32>>(i).map_or(Cell::Null, |v| Cell::Int(v.into())),
                                Type::BOOL => r.get::<_, Option<bool>>(i).map_or(Cell::Null, |v| Cell::Int(v.into())),
                                Type::FLOAT8 => r.get::<_, Option<f64>>(i).map_or(Cell::Null, Cell::Real),
                                Type::BYTEA => r.get::<_, Option<Vec<u8>>>(i).map_or(Cell::Null, Cell::Blob),
                                _ => r.get::<_, Option<String>>(i).map_or(Cell::Null, Cell::Text),
                            })
                            .collect()
                    })
                    .collect()
            }),
            None => {
                use rusqlite::types::ValueRef;
                let c = self.db();
                let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let n = st.column_count();
                st.query_map(rusqlite::params_from_iter(args), |r| {
                    (0..n)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                ValueRef::Null => Cell::Null,
                                ValueRef::Integer(v) => Cell::Int(v),
                                ValueRef::Real(v) => Cell::Real(v),
                                ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                                ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                            })
                        })
                        .collect()
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
            }
        }
    }

    /// Runs one statement (`?N` parameters) on the engine the host runs on;
    /// answers the rows changed.
    pub fn execute(&self, sql: &str, args: &[Arg]) -> u64 {
        match &self.pg {
            Some(db) => off_runtime(|| {
                let sql = webhooks_host::storage::postgres::rewrite_placeholders(sql);
                let params: Vec<Box<dyn postgres::types::ToSql + Sync>> = args
                    .iter()
                    .map(|a| -> Box<dyn postgres::types::ToSql + Sync> {
                        match a {
                            Arg::Int(i) => Box::new(*i),
                            Arg::Text(t) => Box::new(t.clone()),
                        }
                    })
                    .collect();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
                db.client().execute(&sql, &refs).unwrap_or_else(|e| panic!("{sql}: {e}"))
            }),
            None => self.db().execute(sql, rusqlite::params_from_iter(args)).unwrap() as u64,
        }
    }

    /// The first row of `sql`; it must have one.
    pub fn row(&self, sql: &str, args: &[Arg]) -> Vec<Cell> {
        self.rows(sql, args).into_iter().next().unwrap_or_else(|| panic!("no row: {sql}"))
    }

    /// The integer in the first column of the first row.
    pub fn int(&self, sql: &str, args: &[Arg]) -> i64 {
        self.row(sql, args)[0].int()
    }

    /// The text in the first column of the first row.
    pub fn text(&self, sql: &str, args: &[Arg]) -> String {
        self.row(sql, args)[0].text()
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.int(sql, &[])
    }

    /// Everything the database holds, as bytes to search for what must never
    /// be stored in clear. On SQLite: the file and its write-ahead log, pages
    /// the engine has not reused included. On PostgreSQL (whose files are the
    /// server's): every value of every table, a blob as its bytes, any other
    /// value as its text.
    pub fn stored_bytes(&self) -> Vec<u8> {
        if self.pg.is_none() {
            let mut bytes = std::fs::read(self.data.join("webhooks.db")).unwrap();
            bytes.extend(std::fs::read(self.data.join("webhooks.db-wal")).unwrap_or_default());
            return bytes;
        }
        let tables = self.rows("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'", &[]);
        assert!(!tables.is_empty(), "the scratch database has the host's tables");
        let mut bytes = Vec::new();
        for t in tables {
            for row in self.rows(&format!("SELECT * FROM \"{}\"", t[0].text()), &[]) {
                for cell in row {
                    match cell {
                        Cell::Null => {}
                        Cell::Int(i) => bytes.extend(i.to_string().into_bytes()),
                        Cell::Real(r) => bytes.extend(r.to_string().into_bytes()),
                        Cell::Text(t) => bytes.extend(t.into_bytes()),
                        Cell::Blob(b) => bytes.extend(b),
                    }
                    bytes.push(0);
                }
            }
        }
        bytes
    }
}

impl Host {
    /// Where this host keeps its tables.
    pub fn store(&self) -> Store {
        Store { data: self.data.clone(), pg: self.pg.clone() }
    }

    /// The SQLite file itself, for tests that run on SQLite only.
    pub fn db(&self) -> rusqlite::Connection {
        self.store().db()
    }

    /// Every row of `sql` (`?N` parameters), on the engine the host runs on.
    pub fn rows(&self, sql: &str, args: &[Arg]) -> Vec<Vec<Cell>> {
        self.store().rows(sql, args)
    }

    /// Runs one statement (`?N` parameters) on the engine the host runs on;
    /// answers the rows changed.
    pub fn execute(&self, sql: &str, args: &[Arg]) -> u64 {
        self.store().execute(sql, args)
    }

    /// The first row of `sql`; it must have one.
    pub fn row(&self, sql: &str, args: &[Arg]) -> Vec<Cell> {
        self.store().row(sql, args)
    }

    /// The integer in the first column of the first row.
    pub fn int(&self, sql: &str, args: &[Arg]) -> i64 {
        self.store().int(sql, args)
    }

    /// The text in the first column of the first row.
    pub fn text(&self, sql: &str, args: &[Arg]) -> String {
        self.store().text(sql, args)
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.int(sql, &[])
    }

    /// Everything its database holds, as bytes ([`Store::stored_bytes`]).
    pub fn stored_bytes(&self) -> Vec<u8> {
        self.store().stored_bytes()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    /// An admin signed in through the real sign-in page.
    pub fn admin(&self) -> Admin {
        let mut a = self.anonymous();
        let (s, loc, _) = a.sign_in("admin", ADMIN_PASSWORD);
        assert_eq!((s, loc.as_str()), (303, MOUNT), "signed in");
        let page = a.get(MOUNT);
        a.csrf = csrf_of(&page.1);
        a
    }

    /// A browser-like client that has not signed in.
    pub fn anonymous(&self) -> Admin {
        let client = reqwest::blocking::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Admin { client, base: self.base.clone(), csrf: String::new() }
    }

    /// A browser without a session whose connections come from `from` (any
    /// 127.x address reaches the loopback listener): another client address.
    pub fn anonymous_from(&self, from: std::net::IpAddr) -> Admin {
        let client = reqwest::blocking::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .local_address(from)
            .build()
            .unwrap();
        Admin { client, base: self.base.clone(), csrf: String::new() }
    }

    pub fn api(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::new()
    }

    /// POST /api/events with the token; answers (status, JSON).
    /// `POST /api/events/batch` with these events; answers (status, body).
    pub fn raise_batch(&self, events: &[serde_json::Value]) -> (u16, serde_json::Value) {
        self.raise_at("/api/events/batch", serde_json::json!({ "events": events }))
    }

    pub fn raise(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.raise_at("/api/events", body)
    }

    fn raise_at(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.api().post(format!("{}{path}", self.base)).bearer_auth(TOKEN).json(&body).send().unwrap();
        let s = r.status().as_u16();
        (s, r.json().unwrap_or(serde_json::Value::Null))
    }
}

pub fn csrf_of(html: &str) -> String {
    let m = "name=\"csrf-token\" content=\"";
    let i = html.find(m).expect("page has a csrf meta") + m.len();
    html[i..i + 64].to_owned()
}

/// An admin with a session, like a browser.
pub struct Admin {
    pub client: reqwest::blocking::Client,
    pub base: String,
    pub csrf: String,
}

pub const MOUNT: &str = "/admin/integrations/webhooks";

impl Admin {
    /// Loads /login and submits it; answers (status, location, body).
    pub fn sign_in(&self, user: &str, password: &str) -> (u16, String, String) {
        let (_, page) = self.get("/login");
        let csrf = csrf_of(&page);
        self.post_raw("/login", &[("username", user), ("password", password), ("_csrf", &csrf), ("next", MOUNT)])
    }

    /// GET; answers (status, body). Follows one redirect.
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(format!("{}{path}", self.base)).send().unwrap();
        let s = r.status().as_u16();
        (s, r.text().unwrap())
    }

    /// POST a form with the CSRF token; answers (status, location, body).
    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let mut f: Vec<(&str, &str)> = form.to_vec();
        f.push(("_csrf", &self.csrf));
        self.post_raw(path, &f)
    }

    pub fn post_raw(&self, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let r = self.client.post(format!("{}{path}", self.base)).form(form).send().unwrap();
        let s = r.status().as_u16();
        let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        (s, loc, r.text().unwrap())
    }

    /// POST a `multipart/form-data` form with the CSRF token, as a browser
    /// sends a form with a file box: `file` goes in the `transform_file`
    /// box (#24). Answers (status, location, body).
    pub fn post_multipart(&self, path: &str, form: &[(&str, &str)], file: Option<&[u8]>) -> (u16, String, String) {
        const B: &str = "----webhooks-test-boundary-7MA4YWxkTrZu0gW";
        let mut body: Vec<u8> = Vec::new();
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("_csrf", &self.csrf));
        for (k, v) in fields {
            body.extend_from_slice(
                format!("--{B}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{B}\r\nContent-Disposition: form-data; name=\"transform_file\"; filename=\"{}\"\r\n\
                 Content-Type: application/wasm\r\n\r\n",
                if file.is_some() { "transform.wasm" } else { "" }
            )
            .as_bytes(),
        );
        body.extend_from_slice(file.unwrap_or_default());
        body.extend_from_slice(format!("\r\n--{B}--\r\n").as_bytes());
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", format!("multipart/form-data; boundary={B}"))
            .body(body)
            .send()
            .unwrap();
        let s = r.status().as_u16();
        let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        (s, loc, r.text().unwrap())
    }

    /// Creates a webhook; answers its id (from the database order).
    pub fn create(&self, name: &str, url: &str, secret: &str, events: &[&str], enabled: bool) -> (u16, String, String) {
        let mut f = vec![("name", name), ("url", url), ("secret", secret)];
        for e in events {
            f.push(("events", e));
        }
        if enabled {
            f.push(("enabled", "on"));
        }
        self.post(MOUNT, &f)
    }
}

/// Polls `f` until it answers true.
pub fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "timed out after {within:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A raw TCP listener on 127.0.0.1 that counts connections: an egress test
/// passes only if it stays at zero.
pub struct Listener {
    pub port: u16,
    count: Arc<std::sync::atomic::AtomicUsize>,
}

impl Listener {
    pub fn start() -> Listener {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(s);
            }
        });
        Listener { port, count }
    }

    pub fn connections(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// `cargo build --release --target wasm32-wasip2 ARGS` in `dir` into a
/// target folder of its own (the outer cargo holds the lock on ours);
/// answers whether it succeeded.
fn guest_build(dir: &Path, args: &[&str], target: &Path) -> bool {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(args)
        .arg("--target-dir")
        .arg(target);
    // Flags meant for the host build would miscompile the guests.
    for v in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        cmd.env_remove(v);
    }
    cmd.status().unwrap().success()
}

/// Builds the plugin with its `test-hooks` feature (misbehaviour on demand)
/// once per test binary; answers the component's path.
pub fn hooks_component() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
            let target = root.join("target").join("plugin-test-hooks");
            let built = guest_build(&root, &["-p", "webhooks-plugin", "--features", "test-hooks"], &target);
            assert!(built, "building the test-hooks component");
            target.join("wasm32-wasip2/release/webhooks_plugin.wasm")
        })
        .clone()
}

/// The example transformations (#24, `examples/`), built once per test
/// binary for wasm32-wasip2 (a workspace of their own, with its own target
/// folder: the outer cargo holds the lock on ours); answers the `.wasm` of
/// the crate `name` (`transform-slack`, `transform-hostile`, `transform-clock`).
pub fn example_component(name: &str) -> Vec<u8> {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let target = root.join("target").join("examples");
        let built = guest_build(&root.join("examples"), &["--workspace"], &target);
        assert!(built, "building the example transformations (examples/)");
        target.join("wasm32-wasip2/release")
    });
    let file = dir.join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Attaches a transformation to webhook `id` through the API (#24);
/// answers (status, JSON).
pub fn put_transform(h: &Host, id: i64, wasm: &[u8]) -> (u16, serde_json::Value) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(wasm);
    api(h, "PUT", &format!("/api/webhooks/{id}/transform"), Some(serde_json::json!({ "component": b64 })))
}

/// The resident set of process `pid` (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc/PID/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// POST/PATCH/GET `path` on `h`'s API with the token; answers (status, JSON).
pub fn api(h: &Host, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", h.base);
    let c = h.api();
    let req = match method {
        "POST" => c.post(url),
        "PATCH" => c.patch(url),
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        _ => c.get(url),
    }
    .bearer_auth(TOKEN);
    let r = match body {
        Some(b) => req.json(&b),
        None => req,
    }
    .send()
    .unwrap();
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(serde_json::Value::Null))
}
