//! Runtime capability: loading, compiling (cached on disk), instantiating and
//! calling the component under limits.
//!
//! Guarantees:
//! - the compiled artifact is cached in `<data>/cache/` keyed by the component
//!   bytes and the engine's compatibility hash, so a restart does not
//!   recompile;
//! - **no plugin call runs on an async executor thread.** Each call runs on a
//!   blocking-pool thread of its own ([`Runtime::call`]), driven by
//!   `Handle::block_on`: the component's code and its storage statements
//!   (SQLite's synchronous, PostgreSQL's awaited through that `block_on`, on
//!   that thread) can never hold a tokio worker, so the HTTP
//!   server, the egress and other calls go on whatever a call does. Host
//!   futures it awaits (wasi:http, timers) still run on the runtime's I/O
//!   driver;
//! - every call has a hard deadline and a memory limit. The epoch ticks every
//!   [`TICK`]; at each tick guest code yields (`UpdateDeadline::Yield`) and the
//!   deadline is checked, so a runaway call is interrupted, never a busy loop
//!   that nobody can stop. A trap or a limit hit fails that one call and the
//!   instance is thrown away (the next call gets a fresh one);
//! - WASI gets no filesystem, no environment, no arguments, no stdio and no
//!   sockets: the only ways out are the imports in `wit/webhooks.wit` and
//!   `wasi:http`, which goes through [`crate::egress`];
//! - each instance has its own storage ([`Backend::open`]: its own SQLite
//!   connection, or a session on the shared PostgreSQL pool); instances are
//!   pooled.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::{self, Webhooks, WebhooksPre};
use crate::config::{Config, WasiClock};
use crate::egress::{Egress, Hooks, Policy};
use crate::health::Health;
use crate::host_info::HostInfo;
use crate::metrics::Metrics;
use crate::storage::{self, Backend, Storage};
use crate::telemetry::Telemetry;

/// The component, built from `plugin/` by this crate's build script.
pub static COMPONENT_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/webhooks_plugin.wasm"));

/// Epoch tick: how often guest code yields and its deadline is checked.
pub const TICK: Duration = Duration::from_millis(5);
/// An instance whose linear memory grew past this is dropped after its call
/// instead of pooled. A wasm memory never shrinks: an instance that once
/// built a large batch would hold that much while idle. A step or a page
/// needs a few MiB; the rare call that needed more pays one instantiation
/// (about a millisecond) next time.
const POOLED_MEMORY_MAX: usize = 16 << 20;

/// What an instance's store holds: WASI contexts, its connection, limits.
pub struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    pub(crate) db: Storage,
    limits: Limits,
    caps: Arc<Capabilities>,
    /// When the current call is interrupted.
    deadline: Instant,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// What the host provides every instance, shared by all of them: the
/// settings, the egress, the sealing key and the metrics. Each capability
/// module reaches its part through the getter it is linked with.
pub(crate) struct Capabilities {
    pub config: Config,
    pub egress: Egress,
    /// Seals webhook signing keys and signs with them.
    pub key: crate::secrets::SecretKey,
    /// Where each instance's storage comes from.
    pub backend: Backend,
    /// Fed by the egress and the scheduler, read by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// This host's name among the nodes of one database (`host-info.node-id`).
    pub node: String,
    /// The webhooks' transformations (#24): their own engine and sandbox.
    pub transformer: crate::transform::Transformer,
}

// `types` declares records only; it links no functions of its own.
impl bindings::types::Host for State {}

/// The store's limits, and how much linear memory the instance holds now
/// (what [`Runtime::finish`] reads to decide whether to pool it).
struct Limits {
    inner: StoreLimits,
    memory: usize,
}

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory = (self.memory + desired).saturating_sub(current);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// One instance with its store.
pub struct Worker {
    store: Store<State>,
    bindings: Webhooks,
}

/// Why a call into the component failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The component trapped, ran past its deadline or over its memory.
    #[error("the plugin failed: {0}")]
    Trap(String),
    /// A new instance could not be made (database could not open, …).
    #[error("the plugin could not start: {0}")]
    Instantiate(String),
    /// The plugin answered an error (its database refused, …).
    #[error("the plugin reported an error: {0}")]
    Failed(String),
    /// The call failed because the database could not be reached (the
    /// storage's error, which says so): nothing is wrong with the plugin or
    /// the request, so retry once the database is back
    /// ([`crate::health::Health`] says when).
    #[error("{0}")]
    Unavailable(String),
}

/// The loaded component and its instance pool.
pub struct Runtime {
    engine: Engine,
    pre: WebhooksPre<State>,
    caps: Arc<Capabilities>,
    idle: Mutex<Vec<Worker>>,
    /// One permit per instance that may exist: a call holds one from before
    /// it checks an instance out until it has put it back. This bounds the
    /// instances, their memories and connections, and the blocking threads
    /// running calls ([`Config::instances`]); a call beyond it waits, as a
    /// future, for a permit.
    instances: Arc<tokio::sync::Semaphore>,
    /// What calls made for people (pages, the API, sessions, stats) may hold
    /// of [`Runtime::instances`] at once: half. A test send holds its
    /// instance for the whole attempt, so without this a few admins could
    /// leave the delivery engine no instance to step with.
    interactive: Arc<tokio::sync::Semaphore>,
    /// Whether the database can be reached (the storage reports into it).
    health: Health,
}

fn engine() -> anyhow::Result<Engine> {
    let mut cfg = wasmtime::Config::new();
    cfg.wasm_component_model(true);
    cfg.epoch_interruption(true);
    Ok(Engine::new(&cfg)?)
}

/// Loads the compiled component from the cache, compiling and caching it on
/// a miss: in a child process when `compiler` names one (see
/// [`Config::compiler`]), otherwise, or if the child fails, here.
fn load_component(
    engine: &Engine,
    wasm: &[u8],
    source: Option<&Path>,
    cache_dir: &Path,
    compiler: Option<&Path>,
) -> anyhow::Result<Component> {
    let path = cache_path(engine, wasm, cache_dir, "webhooks");
    if let Some(c) = cached(engine, &path) {
        return Ok(c);
    }
    std::fs::create_dir_all(cache_dir).ok();
    if let Some(program) = compiler {
        match compile_in_child(program, source, false, &path, None) {
            // SAFETY: the child is this program, which compiled the same
            // component with the same engine configuration (`engine`).
            Ok(()) => match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!("the component compiled by a child process does not load, compiling here: {e:#}")
                }
            },
            Err(e) => tracing::warn!("compiling the component in a child process failed, compiling here: {e}"),
        }
    }
    compile_and_cache(engine, wasm, &path)
}

/// Where the compiled artifact of `wasm` for `engine` is cached:
/// `<cache_dir>/<prefix>-<key>.cwasm` (see [`cache_key`]). Shared by the
/// plugin and the webhooks' transformations ([`crate::transform`]).
pub(crate) fn cache_path(engine: &Engine, wasm: &[u8], cache_dir: &Path, prefix: &str) -> std::path::PathBuf {
    cache_dir.join(format!("{prefix}-{}.cwasm", cache_key(engine, wasm)))
}

/// The compiled component at `path`, if this host cached one there that
/// still loads.
pub(crate) fn cached(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.exists() {
        return None;
    }
    // SAFETY: the file is one this host wrote into the operator's private
    // cache folder for these exact bytes and this exact engine
    // configuration (the key covers both).
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("compiled-component cache {} unusable, recompiling: {e:#}", path.display());
            None
        }
    }
}

/// Compiles `wasm` here and writes the artifact to `path` (private, like
/// everything in the data folder; a failed write only costs a compile at
/// the next start).
pub(crate) fn compile_and_cache(engine: &Engine, wasm: &[u8], path: &Path) -> anyhow::Result<Component> {
    let bytes = engine.precompile_component(wasm).map_err(anyhow::Error::from).context("compiling the component")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let tmp = temp_beside(path, "");
    if crate::secrets::write_private(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, path)).is_err() {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!("could not write the compiled-component cache {}", path.display());
    }
    // SAFETY: these bytes were just produced by `precompile_component` on this engine.
    Ok(unsafe { Component::deserialize(engine, &bytes) }?)
}

/// A temporary name beside `path`, unique across processes (the pid) and
/// within this one (a counter): two compiles of one transformation at once
/// (an upload while a step loads it after a restart) must not share files.
pub(crate) fn temp_beside(path: &Path, tag: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("{tag}{}.{n}.tmp", std::process::id()))
}

/// The cache file's key: the component's bytes and the engine's compatibility hash.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let mut key = Sha256::new();
    key.update(wasm);
    key.update(h.finish().to_le_bytes());
    hex::encode(&key.finalize()[..12])
}

/// How a compile in a child process ([`compile_in_child`]) fell short of a
/// compiled file.
#[derive(Debug)]
pub(crate) enum ChildCompile {
    /// The child could not be started: the caller may compile in its own process.
    NotRun(std::io::Error),
    /// It ran and refused: its report (`Error: …`, which may span lines), as one line.
    Refused(String),
    /// It ran past its time limit and was killed.
    TimedOut(Duration),
}

impl std::fmt::Display for ChildCompile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildCompile::NotRun(e) => write!(f, "the compiler could not be started: {e}"),
            ChildCompile::Refused(why) => f.write_str(why),
            ChildCompile::TimedOut(limit) => {
                write!(f, "compiling it took longer than {} s, and was stopped", limit.as_secs())
            }
        }
    }
}

/// Runs `program compile-component [--transform] [--component SOURCE] --out
/// TMP` (see [`compile_component`] and `transform::compile_to`), waits for it
/// (killing it past `limit`, if any) and moves what it wrote to `path`.
pub(crate) fn compile_in_child(
    program: &Path,
    source: Option<&Path>,
    transform: bool,
    path: &Path,
    limit: Option<Duration>,
) -> Result<(), ChildCompile> {
    let tmp = temp_beside(path, "");
    let mut cmd = std::process::Command::new(program);
    cmd.arg("compile-component").arg("--out").arg(&tmp);
    if transform {
        cmd.arg("--transform");
    }
    if let Some(s) = source {
        cmd.arg("--component").arg(s);
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(ChildCompile::NotRun)?;
    let ended = match wait_or_kill(child, limit) {
        Some(done) if done.status.success() => std::fs::rename(&tmp, path)
            .map_err(|e| ChildCompile::Refused(format!("its result could not be moved into the cache: {e}"))),
        Some(done) => {
            let report = String::from_utf8_lossy(&done.stderr).split_whitespace().collect::<Vec<_>>().join(" ");
            let report = report.strip_prefix("Error: ").unwrap_or(&report);
            Err(ChildCompile::Refused(if report.is_empty() {
                format!("the compiler stopped ({})", done.status)
            } else {
                report.to_owned()
            }))
        }
        None => Err(ChildCompile::TimedOut(limit.unwrap_or_default())),
    };
    if ended.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    ended
}

/// The child's end (its status and what it wrote to stderr), or `None` when
/// it was still running after `limit` and was killed.
fn wait_or_kill(mut child: std::process::Child, limit: Option<Duration>) -> Option<std::process::Output> {
    let Some(limit) = limit else {
        return child.wait_with_output().ok();
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return child.wait_with_output().ok(),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// What the child of [`compile_in_child`] does: compiles the component
/// (`source`, or the built-in one) for this engine configuration and writes
/// the result to `out`, private to the operator.
pub fn compile_component(source: Option<&Path>, out: &Path) -> anyhow::Result<()> {
    let custom = match source {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading the component {}", p.display()))?),
        None => None,
    };
    let bytes = engine()?
        .precompile_component(custom.as_deref().unwrap_or(COMPONENT_WASM))
        .map_err(anyhow::Error::from)
        .context("compiling the component")?;
    crate::secrets::write_private(out, &bytes).with_context(|| format!("writing {}", out.display()))
}

impl Runtime {
    /// Loads the component and prepares instantiation; instances get their
    /// storage from `backend`.
    pub fn new(config: Config, backend: Backend) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
        let engine = engine()?;
        let custom = match &config.component_path {
            Some(p) => Some(std::fs::read(p).with_context(|| format!("reading the component {}", p.display()))?),
            None => None,
        };
        let component = load_component(
            &engine,
            custom.as_deref().unwrap_or(COMPONENT_WASM),
            config.component_path.as_deref(),
            &config.cache_path(),
            config.compiler.as_deref(),
        )?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        // Each capability links its own interface, reaching its part of the
        // store through the getter it is given.
        bindings::types::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        storage::add_to_linker(&mut linker, |s| &mut s.db)?;
        crate::secrets::add_to_linker(&mut linker, |s| &s.caps.key)?;
        crate::telemetry::add_to_linker(&mut linker, |s| Telemetry {
            metrics: &s.caps.metrics,
            quiet: s.db.met_unreachable(),
        })?;
        crate::transform::add_to_linker(&mut linker, |s| crate::transform::TransformHost {
            transformer: &s.caps.transformer,
            metrics: &s.caps.metrics,
        })?;
        crate::host_info::add_to_linker(&mut linker, |s| HostInfo {
            config: &s.caps.config,
            egress: &s.caps.egress,
            dialect: s.caps.backend.dialect(),
            node: &s.caps.node,
        })?;
        // A component built against another version of the contract (or not
        // a plugin at all) fails here: say which contract it must speak.
        let pre =
            linker.instantiate_pre(&component).and_then(WebhooksPre::new).map_err(anyhow::Error::from).with_context(
                || {
                    format!(
                        "the component is not a webhooks plugin for this host's contract {}; a plugin built \
                     against another version of wit/webhooks.wit must be rebuilt against this release's",
                        bindings::CONTRACT
                    )
                },
            )?;
        let key = match &config.secret_key {
            Some(k) => k.clone(),
            None => crate::secrets::SecretKey::load_or_create(&config.data_dir.join("secret.key"))
                .context("reading or creating the secret key")?,
        };
        let egress = Egress::new(
            Policy { allowed: config.allowed_hosts.clone() },
            config.resolver.clone(),
            config.attempt_timeout,
        );
        let health = backend.health();
        let instances = config.instances.max(2);
        let transformer = crate::transform::Transformer::new(&config.cache_path(), instances as u32)?
            .compile_in(config.compiler.clone());
        let transforms = transformer.engine().weak();
        let rt = Arc::new(Runtime {
            engine: engine.clone(),
            pre,
            caps: Arc::new(Capabilities {
                config,
                egress,
                key,
                backend,
                metrics: Default::default(),
                node: crate::host_info::new_node_id(),
                transformer,
            }),
            idle: Mutex::new(Vec::new()),
            instances: Arc::new(tokio::sync::Semaphore::new(instances)),
            interactive: Arc::new(tokio::sync::Semaphore::new(instances.div_ceil(2))),
            health,
        });
        // The epoch ticker: deadlines are counted in its ticks, the plugin's
        // and the transformations'. It stops when the plugin's engine is
        // dropped.
        let weak = engine.weak();
        std::thread::Builder::new().name("webhooks-epoch".into()).spawn(move || {
            while let Some(e) = weak.upgrade() {
                e.increment_epoch();
                drop(e);
                if let Some(t) = transforms.upgrade() {
                    t.increment_epoch();
                }
                std::thread::sleep(TICK);
            }
        })?;
        Ok(rt)
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.caps.config
    }

    async fn instantiate(&self) -> Result<Worker, CallError> {
        let c = &self.caps.config;
        let db = self.caps.backend.open().map_err(CallError::Instantiate)?;
        // No preopens, no env, no args, no stdio, no sockets.
        let wasi = WasiCtxBuilder::new()
            .wall_clock(WasiClock(c.clock.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = State {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks::new(self.caps.egress.clone(), self.caps.metrics.clone()),
            db,
            limits: Limits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(c.memory_limit)
                    .instances(16)
                    .trap_on_grow_failure(true)
                    .build(),
                memory: 0,
            },
            caps: self.caps.clone(),
            deadline: Instant::now() + c.call_timeout,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Every tick: past the call's deadline, interrupt (a trap); otherwise
        // yield to whatever drives the call and run on for another tick.
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        store.set_epoch_deadline(1);
        let bindings =
            self.pre.instantiate_async(&mut store).await.map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        Ok(Worker { store, bindings })
    }

    async fn checkout(&self, deadline: Duration) -> Result<Worker, CallError> {
        let pooled = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        let mut w = match pooled {
            Some(w) => w,
            None => self.instantiate().await?,
        };
        w.store.data_mut().deadline = Instant::now() + deadline;
        w.store.set_epoch_deadline(1);
        Ok(w)
    }

    /// Ends a call: rolls back what it left open, pools the instance (unless
    /// it trapped) and says how the call went. A call that met an
    /// unreachable database and failed (trapped, or answered what `failed`
    /// calls a failure) failed for the database: `Unavailable`, and not
    /// logged here (the outage is logged once, by [`Health`]).
    fn finish<R>(
        &self,
        name: &'static str,
        mut w: Worker,
        r: wasmtime::Result<R>,
        failed: impl FnOnce(&R) -> bool,
        handle: &tokio::runtime::Handle,
    ) -> Result<R, CallError> {
        let (open, trips) = handle.block_on(w.store.data_mut().db.end_call());
        if open {
            tracing::warn!("the plugin left a transaction open; it was rolled back");
        }
        if let Some(n) = trips {
            self.caps.metrics.round_trips(name, n);
        }
        let unreachable = w.store.data_mut().db.take_unreachable();
        match r {
            Ok(v) => {
                // At most one idle instance per permit (the permits bound
                // them all); one that grew large is not kept.
                if w.store.data().limits.memory <= POOLED_MEMORY_MAX
                    && let Ok(mut idle) = self.idle.lock()
                {
                    idle.push(w);
                }
                match unreachable {
                    Some(why) if failed(&v) => Err(CallError::Unavailable(why)),
                    _ => Ok(v),
                }
            }
            // The instance may be in any state after a trap: drop it.
            Err(e) => match unreachable {
                Some(why) => {
                    tracing::debug!("plugin call failed on an unreachable database, instance replaced: {e:#}");
                    Err(CallError::Unavailable(why))
                }
                None => {
                    tracing::error!("plugin call failed, instance replaced: {e:#}");
                    Err(CallError::Trap(format!("{e:#}")))
                }
            },
        }
    }

    /// Runs one plugin call on a blocking-pool thread of its own (see the
    /// module comment) with a pooled instance and `deadline`. `f` makes the
    /// call; it gets the instance and the handle to drive it with. `failed`
    /// says whether an answer is a failure (an error the plugin answered),
    /// which is the database's when the call found it unreachable.
    async fn call<R, F>(
        self: &Arc<Self>,
        name: &'static str,
        deadline: Duration,
        failed: impl FnOnce(&R) -> bool + Send + 'static,
        f: F,
    ) -> Result<R, CallError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Worker, &tokio::runtime::Handle) -> wasmtime::Result<R> + Send + 'static,
    {
        // The permits go with the blocking task, so a caller that stops
        // waiting does not free its instance's place while the call runs on.
        let lane = match name {
            "admin" | "api" | "stats" | "sessions-open" | "sessions-find" | "sessions-close" => {
                Some(self.interactive.clone().acquire_owned().await)
            }
            _ => None,
        };
        let permit = self.instances.clone().acquire_owned().await;
        let rt = self.clone();
        let handle = tokio::runtime::Handle::current();
        let r = tokio::task::spawn_blocking(move || {
            let _held = (lane, permit);
            let mut w = handle.block_on(rt.checkout(deadline))?;
            let r = f(&mut w, &handle);
            rt.finish(name, w, r, failed, &handle)
        })
        .await
        .unwrap_or_else(|e| Err(CallError::Trap(format!("the plugin call panicked in the host: {e}"))));
        if r.is_err() {
            self.caps.metrics.plugin_error(name);
        }
        r
    }

    /// `plugin.describe`.
    pub async fn describe(self: &Arc<Self>) -> Result<bindings::ex::plugin::Manifest, CallError> {
        self.call(
            "describe",
            self.caps.config.call_timeout,
            |_| false,
            |w, h| h.block_on(w.bindings.panel_webhooks_plugin().call_describe(&mut w.store)),
        )
        .await
    }

    /// `plugin.migrate`, under the backend's migration lock (PostgreSQL:
    /// hosts starting together on one database migrate once).
    pub async fn migrate(self: &Arc<Self>) -> Result<Result<u32, String>, CallError> {
        let _lock = match self.caps.backend.migration_lock().await {
            Ok(lock) => lock,
            Err(e) => return Ok(Err(e)),
        };
        self.call("migrate", Duration::from_secs(60), Result::is_err, |w, h| {
            h.block_on(w.bindings.panel_webhooks_plugin().call_migrate(&mut w.store))
        })
        .await
    }

    /// `admin.handle`; may send a test delivery, so its deadline covers one attempt.
    pub async fn admin(
        self: &Arc<Self>,
        req: bindings::ex::admin::Request,
    ) -> Result<bindings::ex::admin::Response, CallError> {
        let deadline = self.caps.config.call_timeout + self.caps.config.attempt_timeout;
        let failed =
            |r: &bindings::ex::admin::Response| matches!(r, bindings::ex::admin::Response::Page(p) if p.status >= 500);
        self.call("admin", deadline, failed, move |w, h| {
            h.block_on(w.bindings.panel_webhooks_admin().call_handle(&mut w.store, &req))
        })
        .await
    }

    /// `management.handle`; a test send or resend is one attempt, so its
    /// deadline covers one.
    pub async fn api(
        self: &Arc<Self>,
        req: bindings::ex::management::ApiRequest,
    ) -> Result<bindings::ex::management::ApiResponse, CallError> {
        let deadline = self.caps.config.call_timeout + self.caps.config.attempt_timeout;
        self.call(
            "api",
            deadline,
            |r: &bindings::ex::management::ApiResponse| r.status >= 500,
            move |w, h| h.block_on(w.bindings.panel_webhooks_management().call_handle(&mut w.store, &req)),
        )
        .await
    }

    /// `deliveries.stats`.
    pub async fn stats(self: &Arc<Self>) -> Result<bindings::ex::deliveries::QueueStats, CallError> {
        let r = self
            .call("stats", self.caps.config.call_timeout, Result::is_err, |w, h| {
                h.block_on(w.bindings.panel_webhooks_deliveries().call_stats(&mut w.store))
            })
            .await?;
        self.answered("stats", r)
    }

    /// Whether the database can be reached ([`crate::health`]).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Asks the database whether it answers, reporting into
    /// [`Runtime::health`] (see [`Backend::probe`]).
    pub async fn probe(&self) {
        self.caps.backend.probe().await;
    }

    /// The metrics this runtime's calls and requests feed.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.caps.metrics
    }

    /// The policed egress every request goes through.
    pub fn egress(&self) -> &Egress {
        &self.caps.egress
    }

    /// `events.raise-batch`.
    pub async fn raise_batch(
        self: &Arc<Self>,
        events: Vec<bindings::types::Event>,
    ) -> Result<Result<Vec<bindings::ex::events::Raised>, bindings::ex::events::RaiseError>, CallError> {
        let failed = |r: &Result<_, _>| matches!(r, Err(bindings::ex::events::RaiseError::Storage(_)));
        self.call("raise-batch", self.caps.config.call_timeout, failed, move |w, h| {
            h.block_on(w.bindings.panel_webhooks_events().call_raise_batch(&mut w.store, &events))
        })
        .await
    }

    /// `events.raise-each`.
    pub async fn raise_each(
        self: &Arc<Self>,
        events: Vec<bindings::types::Event>,
    ) -> Result<Vec<Result<bindings::ex::events::Raised, bindings::ex::events::RaiseError>>, CallError> {
        // One transaction: a storage failure fails every valid event of it.
        let failed =
            |r: &Vec<Result<_, _>>| r.iter().any(|a| matches!(a, Err(bindings::ex::events::RaiseError::Storage(_))));
        self.call("raise-each", self.caps.config.call_timeout, failed, move |w, h| {
            h.block_on(w.bindings.panel_webhooks_events().call_raise_each(&mut w.store, &events))
        })
        .await
    }

    /// `deliveries.maintain`.
    pub async fn maintain(self: &Arc<Self>) -> Result<bindings::ex::deliveries::Pruned, CallError> {
        let r = self
            .call("maintain", Duration::from_secs(120), Result::is_err, |w, h| {
                h.block_on(w.bindings.panel_webhooks_deliveries().call_maintain(&mut w.store))
            })
            .await?;
        self.answered("maintain", r)
    }

    /// `sessions.open`.
    pub async fn open_session(self: &Arc<Self>, key: String, user: String) -> Result<(), CallError> {
        let r = self
            .call("sessions-open", self.caps.config.call_timeout, Result::is_err, move |w, h| {
                h.block_on(w.bindings.panel_webhooks_sessions().call_open(&mut w.store, &key, &user))
            })
            .await?;
        self.answered("sessions-open", r)
    }

    /// `sessions.find`.
    pub async fn find_session(self: &Arc<Self>, key: String) -> Result<Option<String>, CallError> {
        let r = self
            .call("sessions-find", self.caps.config.call_timeout, Result::is_err, move |w, h| {
                h.block_on(w.bindings.panel_webhooks_sessions().call_find(&mut w.store, &key))
            })
            .await?;
        self.answered("sessions-find", r)
    }

    /// `sessions.close`.
    pub async fn close_session(self: &Arc<Self>, key: String) -> Result<(), CallError> {
        let r = self
            .call("sessions-close", self.caps.config.call_timeout, Result::is_err, move |w, h| {
                h.block_on(w.bindings.panel_webhooks_sessions().call_close(&mut w.store, &key))
            })
            .await?;
        self.answered("sessions-close", r)
    }

    /// A key derived from the sealing key for `purpose` (see
    /// [`crate::secrets::SecretKey::derive`]).
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        self.caps.key.derive(purpose)
    }

    /// `deliveries.step`: commits `raised`, records `finished`, claims up to
    /// `claim_max`. `finished` is shared so that a caller can record it again
    /// if the call fails.
    pub async fn step(
        self: &Arc<Self>,
        raised: Vec<bindings::types::Event>,
        finished: Arc<Vec<bindings::ex::deliveries::Sent>>,
        claim_max: u32,
    ) -> Result<bindings::ex::deliveries::StepReport, CallError> {
        let r = self
            .call("step", self.caps.config.call_timeout, Result::is_err, move |w, h| {
                h.block_on(w.bindings.panel_webhooks_deliveries().call_step(
                    &mut w.store,
                    &raised,
                    &finished,
                    claim_max,
                ))
            })
            .await?;
        self.answered("step", r)
    }

    /// `deliveries.build`: the requests of claimed deliveries, built and
    /// signed (or why one cannot be sent).
    pub async fn build(
        self: &Arc<Self>,
        claimed: Vec<i64>,
    ) -> Result<Vec<Result<bindings::ex::deliveries::Outgoing, bindings::ex::deliveries::Unsendable>>, CallError> {
        let r = self
            .call("build", self.caps.config.call_timeout, Result::is_err, move |w, h| {
                h.block_on(w.bindings.panel_webhooks_deliveries().call_build(&mut w.store, &claimed))
            })
            .await?;
        self.answered("build", r)
    }

    /// `deliveries.release`: hands back claimed deliveries this host will
    /// not send (it is stopping); answers how many leases ended.
    pub async fn release(self: &Arc<Self>, claimed: Vec<i64>) -> Result<u64, CallError> {
        let r = self
            .call("release", self.caps.config.call_timeout, Result::is_err, move |w, h| {
                h.block_on(w.bindings.panel_webhooks_deliveries().call_release(&mut w.store, &claimed))
            })
            .await?;
        self.answered("release", r)
    }

    /// An error the plugin answered (a database failure) is a failed call:
    /// logged and counted like a trap, never read as "nothing to do".
    fn answered<T>(&self, name: &'static str, r: Result<T, String>) -> Result<T, CallError> {
        r.map_err(|e| {
            tracing::error!(call = name, "plugin call answered an error: {e}");
            self.caps.metrics.plugin_error(name);
            CallError::Failed(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiler_past_its_time_is_killed_and_one_that_ends_is_heard() {
        let sh = |script: &str| {
            std::process::Command::new("sh").args(["-c", script]).stderr(std::process::Stdio::piped()).spawn().unwrap()
        };
        let t = Instant::now();
        assert!(wait_or_kill(sh("sleep 30"), Some(Duration::from_millis(200))).is_none());
        assert!(t.elapsed() < Duration::from_secs(10), "killed at its limit, not waited for");
        let done = wait_or_kill(sh("echo refused >&2; exit 3"), Some(Duration::from_secs(30))).unwrap();
        assert_eq!((done.status.code(), String::from_utf8_lossy(&done.stderr).trim()), (Some(3), "refused"));
        let done = wait_or_kill(sh("exit 0"), None).unwrap();
        assert!(done.status.success());
    }
}
