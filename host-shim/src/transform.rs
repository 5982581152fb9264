//! Transformation capability (#24, part 4): the `transform` interface of
//! `wit/webhooks.wit`. An admin attaches a WebAssembly component to a
//! webhook (world `webhooks:transform/transformer` in
//! `wit/transform/transform.wit`); the plugin keeps its bytes and asks this
//! module to check, compile and run it. The plugin decides when a delivery
//! runs it and what the answer does; this module decides only what a
//! component may do while it runs.
//!
//! Guarantees:
//! - **a transformation imports nothing.** A component with any import (a
//!   clock, random numbers, files, sockets, stdio: everything WASI offers) is
//!   refused at [`Transformer::load`], naming what it imports; nothing is
//!   linked into its store, so there is nothing to call. It cannot see the
//!   database, the secrets, the network or another delivery;
//! - **its own engine and store.** A separate [`Engine`] (its own compiled
//!   code and configuration, so a setting of the plugin's engine never widens
//!   what a transformation may do), and a fresh instance per run: no state
//!   survives from one delivery to the next;
//! - **limits on every run**: [`DEADLINE`] of CPU time (the thread's own:
//!   a guest is charged for what it ran, not for time a busy machine gave
//!   to others) and never more than [`WALL_LIMIT`] of wall time, checked at
//!   every epoch tick (the plugin's ticker, [`crate::runtime::TICK`]), so a
//!   loop is interrupted within one tick past it; [`MEMORY_LIMIT`] of linear memory
//!   (a growth past it traps at once, so a 1 GiB allocation never happens);
//!   caps on what it answers ([`MAX_BODY`], [`MAX_HEADERS`],
//!   [`MAX_HEADER_NAME`], [`MAX_HEADER_VALUE`], [`MAX_PATH`]). A trap, the
//!   deadline, the memory cap or an answer over a cap is an `error.failed`
//!   with the reason in words; the plugin records that delivery's attempt as
//!   failed and goes on with the others;
//! - **never on an async executor thread.** A run is called by the plugin
//!   from inside one of its calls, which run on a blocking thread of their
//!   own ([`crate::runtime`]); at each tick the guest yields to that
//!   thread's driver (`UpdateDeadline::Yield`) until its deadline, then is
//!   interrupted (`UpdateDeadline::Interrupt`);
//! - **compiled once**: by the SHA-256 of its bytes, kept compiled in memory
//!   (at most [`MAX_LOADED`]) and in the compiled cache beside the plugin's
//!   (`<data>/cache/transform-….cwasm`), so a restart does not recompile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasData, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use crate::bindings::transform::{self as wit, Error, Input, Outcome, Output};

/// Largest component accepted (bytes of the `.wasm` file).
pub const MAX_COMPONENT: usize = 1 << 20;
/// CPU time a run may take; interrupted at the first epoch tick past it.
pub const DEADLINE: Duration = Duration::from_millis(10);
/// Wall time a run may take whatever its CPU time (a thread the machine
/// starves still ends).
pub const WALL_LIMIT: Duration = Duration::from_secs(1);
/// Linear memory a run may hold (all its memories together).
pub const MEMORY_LIMIT: usize = 16 << 20;
/// Largest body a run may answer.
pub const MAX_BODY: usize = 1 << 20;
/// Headers a run may add, and the size of each name and value (the custom
/// headers' caps, `controls::MAX_HEADERS` and friends in the plugin).
pub const MAX_HEADERS: usize = 20;
/// See [`MAX_HEADERS`].
pub const MAX_HEADER_NAME: usize = 100;
/// See [`MAX_HEADERS`].
pub const MAX_HEADER_VALUE: usize = 4096;
/// Longest path a run may answer.
pub const MAX_PATH: usize = 1024;
/// Compiled components kept in memory; past it the least recently used is
/// dropped (loading it again reads the compiled cache, a millisecond).
pub const MAX_LOADED: usize = 64;
/// A guest's native stack: enough for any sane transformation; deeper
/// recursion traps as a stack overflow.
const MAX_WASM_STACK: usize = 256 << 10;

/// The host-side bindings of the transformation world.
mod guest {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit/transform",
        world: "webhooks:transform/transformer",
        exports: { default: async },
    });
}

/// What a run's store holds: its limits, and what it ran into.
struct Sandbox {
    clock: RunClock,
    /// Set when a memory growth was refused (the size asked for).
    memory_refused: Option<usize>,
    /// Linear memory held now.
    memory: usize,
}

/// How long a run has run: CPU time of the thread it runs on (it stays on
/// the plugin call's thread), or wall time where that cannot be read (another
/// platform, or the run moved threads).
struct RunClock {
    wall: Instant,
    thread: std::thread::ThreadId,
    cpu: Option<Duration>,
}

impl RunClock {
    fn start() -> Self {
        RunClock { wall: Instant::now(), thread: std::thread::current().id(), cpu: thread_cpu() }
    }

    /// The time charged to the run so far.
    fn used(&self) -> Duration {
        match (self.cpu, thread_cpu()) {
            (Some(a), Some(b)) if std::thread::current().id() == self.thread => b.saturating_sub(a),
            _ => self.wall.elapsed(),
        }
    }

    fn over(&self) -> bool {
        self.used() >= DEADLINE || self.wall.elapsed() >= WALL_LIMIT
    }
}

/// CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the one timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32))
}

impl wasmtime::ResourceLimiter for Sandbox {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = (self.memory + desired).saturating_sub(current);
        if total > MEMORY_LIMIT {
            // A trap now, not a failed `memory.grow`: a guest that checks
            // nothing would otherwise go on with a null pointer, and the
            // reason would be lost in whatever it did next.
            self.memory_refused = Some(total);
            return Err(wasmtime::Error::msg("memory limit"));
        }
        self.memory = total;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        // A component is a few core instances; a thousand is not a transformation.
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

/// A compiled transformation, ready to instantiate.
struct Loaded {
    pre: guest::TransformerPre<Sandbox>,
    /// For dropping the least recently used one.
    used: Mutex<Instant>,
}

/// The transformations' engine and their compiled components.
pub struct Transformer {
    engine: Engine,
    cache_dir: PathBuf,
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
    /// The program that compiles an uploaded component in a child process
    /// ([`Transformer::compile_in`]); `None`: in this process.
    compiler: Option<PathBuf>,
}

/// SHA-256 of `wasm`, lower-case hex: the name a transformation is known by.
pub fn digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

fn invalid(m: impl Into<String>) -> Error {
    Error::Invalid(m.into())
}

impl Transformer {
    /// An engine for transformations, caching compiled ones in `cache_dir`,
    /// with room for `slots` runs at once: one per plugin instance (each runs
    /// at most one transformation at a time, inside its call), so the
    /// runtime passes its instance cap ([`crate::Config::instances`]).
    pub fn new(cache_dir: &Path, slots: u32) -> anyhow::Result<Self> {
        let slots = slots.max(1);
        let mut cfg = wasmtime::Config::new();
        cfg.wasm_component_model(true);
        cfg.epoch_interruption(true);
        cfg.max_wasm_stack(MAX_WASM_STACK);
        // Each run's fiber stack: the guest's stack and the host's frames.
        cfg.async_stack_size(MAX_WASM_STACK + (256 << 10));
        // Memories stay small (16 MiB): no 4 GiB reservation each.
        cfg.memory_reservation(MEMORY_LIMIT as u64 * 2);
        cfg.memory_guard_size(64 << 10);
        // A fresh instance per delivery must cost microseconds: a pool of
        // memories, tables and fiber stacks made once, reset after each run
        // (the first 64 KiB kept resident) instead of mapped and unmapped
        // each time, which also spares every other thread the TLB shootdown
        // of an munmap. Measured with the example: p50 53.6 µs per run
        // without the pool (BENCHMARKS.md). Its caps are the sandbox's.
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 4)
            .total_memories(slots * 2)
            .total_tables(slots * 4)
            .total_stacks(slots)
            .max_core_instances_per_component(16)
            .max_memories_per_component(2)
            .max_tables_per_component(8)
            .max_memories_per_module(1)
            .max_tables_per_module(4)
            .max_memory_size(MEMORY_LIMIT)
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10)
            .async_stack_keep_resident(64 << 10);
        cfg.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        Ok(Transformer {
            engine: Engine::new(&cfg)?,
            cache_dir: cache_dir.to_owned(),
            loaded: Mutex::new(HashMap::new()),
            compiler: None,
        })
    }

    /// Compiles components in a child process, `program` (run as `PROGRAM
    /// compile-component --transform --component IN --out OUT`), as the
    /// plugin is ([`crate::Config::compiler`]): Cranelift's memory for an
    /// upload of up to 1 MiB (its parallel code generation, tens of MiB,
    /// which the allocator would keep) is the child's, handed back when it
    /// exits; the serving process only maps the result.
    pub fn compile_in(mut self, program: Option<PathBuf>) -> Self {
        self.compiler = program;
        self
    }

    /// The engine, for the epoch ticker.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks and compiles `wasm` (from the compiled cache when it is
    /// there), keeps it ready and answers its digest. Refuses, with the
    /// reason in words: more than [`MAX_COMPONENT`] bytes, a core module or
    /// anything that is not a component, a component that imports
    /// anything, one that does not export the world's `transform`.
    /// Compiling takes a while (tens of milliseconds for a small one): the
    /// caller is on a blocking thread (see the module comment).
    pub fn load(&self, wasm: &[u8]) -> Result<String, Error> {
        if wasm.len() > MAX_COMPONENT {
            return Err(invalid(format!(
                "The component is {} bytes; a transformation may be at most {} KiB (1 MiB).",
                wasm.len(),
                MAX_COMPONENT / 1024
            )));
        }
        let name = digest(wasm);
        if self.get(&name).is_some() {
            return Ok(name);
        }
        match wasm.get(..8) {
            Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => {}
            Some([0, b'a', b's', b'm', 0x01, 0, 0, 0]) => {
                return Err(invalid(
                    "This is a core WebAssembly module, not a component: build it for wasm32-wasip2 (or wrap it \
                     with `wasm-tools component new`).",
                ));
            }
            _ => return Err(invalid("This file is not a WebAssembly component (it does not start with \\0asm).")),
        }
        let path = crate::runtime::cache_path(&self.engine, wasm, &self.cache_dir, "transform");
        let component = match crate::runtime::cached(&self.engine, &path) {
            Some(c) => c,
            None => self.compile(wasm, &path)?,
        };
        let loaded = self.prepare(&component)?;
        let mut all = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() >= MAX_LOADED {
            let oldest = all
                .iter()
                .min_by_key(|(_, l)| *l.used.lock().unwrap_or_else(|p| p.into_inner()))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                all.remove(&k);
            }
        }
        all.insert(name.clone(), Arc::new(loaded));
        Ok(name)
    }

    /// Compiles `wasm` into the cache file `path` and loads it: in the child
    /// process when there is a compiler program (a component it refuses is
    /// refused with its reason; only a child that cannot be started leaves
    /// the work to this process), else here.
    fn compile(&self, wasm: &[u8], path: &Path) -> Result<Component, Error> {
        let refused = |why: String| invalid(format!("The component does not compile: {}", why.replace('\n', " ")));
        if let Some(program) = &self.compiler {
            use crate::runtime::{ChildCompile, compile_in_child};
            let started = Instant::now();
            std::fs::create_dir_all(&self.cache_dir).ok();
            let source = crate::runtime::temp_beside(path, "wasm.");
            let compiled = crate::secrets::write_private(&source, wasm)
                .map_err(ChildCompile::NotRun)
                .and_then(|()| compile_in_child(program, Some(&source), true, path, Some(COMPILE_TIME_LIMIT)));
            let _ = std::fs::remove_file(&source);
            match compiled {
                Ok(()) => {
                    if let Some(c) = crate::runtime::cached(&self.engine, path) {
                        tracing::info!(
                            took_ms = started.elapsed().as_millis() as u64,
                            "a transformation was compiled in a child process"
                        );
                        return Ok(c);
                    }
                    tracing::warn!("a transformation compiled in a child process does not load, compiling here");
                }
                Err(e @ ChildCompile::TimedOut(_)) => return Err(refused(e.to_string())),
                Err(ChildCompile::Refused(why)) => {
                    let why = why.strip_prefix("compiling the transformation: ").unwrap_or(&why);
                    return Err(refused(clip(why, 500)));
                }
                Err(e @ ChildCompile::NotRun(_)) => {
                    tracing::warn!("could not compile a transformation in a child process, compiling here: {e}")
                }
            }
        }
        crate::runtime::compile_and_cache(&self.engine, wasm, path).map_err(|e| refused(e.root_cause().to_string()))
    }

    /// Refuses a component that imports anything or lacks `transform`.
    fn prepare(&self, component: &Component) -> Result<Loaded, Error> {
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        if !imports.is_empty() {
            let shown = imports.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            let more = if imports.len() > 5 { format!(" and {} more", imports.len() - 5) } else { String::new() };
            return Err(invalid(format!(
                "The component imports {shown}{more}; a transformation may import nothing (no clock, random \
                 numbers, network, files or environment). Build it as a library that only exports `transform` \
                 (see examples/transform-slack)."
            )));
        }
        let linker: Linker<Sandbox> = Linker::new(&self.engine);
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| invalid(format!("The component cannot be instantiated: {}", root_cause(&e))))?;
        let pre = guest::TransformerPre::new(pre).map_err(|e| {
            invalid(format!(
                "The component does not export `transform` of webhooks:transform/transformer@0.1.0: {}",
                root_cause(&e)
            ))
        })?;
        Ok(Loaded { pre, used: Mutex::new(Instant::now()) })
    }

    fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        let all = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let l = all.get(name)?.clone();
        *l.used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Some(l)
    }

    /// Runs the transformation loaded under `name` on one delivery, in a
    /// fresh instance, under the limits (see the module comment).
    pub async fn run(&self, name: &str, input: &Input) -> Result<Outcome, Error> {
        let Some(loaded) = self.get(name) else {
            return Err(Error::NotLoaded);
        };
        let sandbox = Sandbox { clock: RunClock::start(), memory_refused: None, memory: 0 };
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|s| s);
        // Every tick: past the deadline, interrupt (a trap); otherwise yield
        // to the thread driving the call and run on for another tick.
        store.epoch_deadline_callback(|ctx| {
            Ok(if ctx.data().clock.over() { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        store.set_epoch_deadline(1);
        let event = guest::Event {
            event_type: input.event_type.clone(),
            msg_id: input.msg_id.clone(),
            timestamp: input.timestamp.clone(),
            body: input.body.clone(),
        };
        let answer = match loaded.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance.call_transform(&mut store, &event).await,
            Err(e) => Err(e),
        };
        let answer = answer.map_err(|e| Error::Failed(failure(&e, store.data())))?;
        match answer {
            Ok(out) => check_output(out).map(Outcome::Send),
            Err(guest::SkipOrError::Skip(why)) => Ok(Outcome::Skip(clip(&why, 500))),
            Err(guest::SkipOrError::Error(why)) => {
                Err(Error::Failed(format!("The transformation reported an error: {}", clip(&why, 500))))
            }
        }
    }
}

/// A run's failure in words: the deadline, the memory cap, or the trap.
fn failure(e: &wasmtime::Error, sandbox: &Sandbox) -> String {
    if let Some(asked) = sandbox.memory_refused {
        return format!(
            "The transformation tried to use more than {} MiB of memory ({} MiB asked) and was stopped.",
            MEMORY_LIMIT >> 20,
            asked.div_ceil(1 << 20)
        );
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return format!(
            "The transformation ran past its {} ms limit and was stopped (after {} ms).",
            DEADLINE.as_millis(),
            sandbox.clock.used().as_millis()
        );
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => "The transformation overflowed its stack (too deep a recursion).".to_owned(),
        Some(Trap::UnreachableCodeReached) => {
            "The transformation trapped (it panicked or aborted: wasm `unreachable`).".to_owned()
        }
        Some(t) => format!("The transformation trapped: {t}."),
        None => format!("The transformation failed: {}", clip(&root_cause(e), 300)),
    }
}

/// The innermost cause of an error, on one line.
fn root_cause(e: &wasmtime::Error) -> String {
    e.root_cause().to_string().replace('\n', " ")
}

/// At most `max` bytes of `s` (on a character boundary), marked when cut.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An answer within the caps, or why not. (Its header names and path are
/// the plugin's to judge against the product's rules.)
fn check_output(out: guest::Outgoing) -> Result<Output, Error> {
    let failed = |m: String| Err(Error::Failed(m));
    if let Some(b) = &out.body
        && b.len() > MAX_BODY
    {
        return failed(format!(
            "The transformation answered a body of {} bytes; at most {} KiB (1 MiB) is sent.",
            b.len(),
            MAX_BODY / 1024
        ));
    }
    if out.headers.len() > MAX_HEADERS {
        return failed(format!(
            "The transformation answered {} headers; at most {MAX_HEADERS} may be added.",
            out.headers.len()
        ));
    }
    for (name, value) in &out.headers {
        if name.len() > MAX_HEADER_NAME || value.len() > MAX_HEADER_VALUE {
            return failed(format!(
                "The transformation answered the header {} with a name over {MAX_HEADER_NAME} bytes or a value \
                 over {} KiB.",
                clip(name, 100),
                MAX_HEADER_VALUE / 1024
            ));
        }
    }
    if let Some(p) = &out.path
        && p.len() > MAX_PATH
    {
        return failed(format!("The transformation answered a path of {} bytes; at most {MAX_PATH}.", p.len()));
    }
    Ok(Output { body: out.body, headers: out.headers, path: out.path })
}

/// What a store's `transform` calls reach.
pub struct TransformHost<'a> {
    /// The host's transformations.
    pub transformer: &'a Transformer,
    /// Where each run's time goes (`webhooks_transform_duration_seconds`).
    pub metrics: &'a crate::metrics::Metrics,
}

struct HasTransform;

impl HasData for HasTransform {
    type Data<'a> = TransformHost<'a>;
}

/// How long the compiler may take with one upload (a 1 MiB component takes
/// well under a second; the admin is waiting for the answer).
const COMPILE_TIME_LIMIT: Duration = Duration::from_secs(60);

/// What the child of [`Transformer::compile`] does: compiles the component
/// in `source` for the transformations' engine and writes the result to
/// `out`, private to the operator.
pub fn compile_to(source: &Path, out: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let wasm = std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
    // The same engine configuration as the serving process's (the number of
    // slots is the pool's, not the compiled code's).
    let t = Transformer::new(out.parent().unwrap_or(Path::new(".")), 1)?;
    let bytes =
        t.engine.precompile_component(&wasm).map_err(anyhow::Error::from).context("compiling the transformation")?;
    crate::secrets::write_private(out, &bytes).with_context(|| format!("writing {}", out.display()))
}

/// Links `transform` to the transformer `get` picks out of the store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> TransformHost<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasTransform>(linker, get)
}

impl wit::Host for TransformHost<'_> {
    async fn load(&mut self, component: Vec<u8>) -> Result<String, Error> {
        self.transformer.load(&component)
    }

    async fn run(&mut self, digest: String, input: Input) -> Result<Outcome, Error> {
        let started = Instant::now();
        let answer = self.transformer.run(&digest, &input).await;
        let result = match &answer {
            Ok(Outcome::Send(_)) => Some("sent"),
            Ok(Outcome::Skip(_)) => Some("skipped"),
            Err(Error::Failed(_)) => Some("failed"),
            // Nothing ran: the plugin loads it and asks again.
            Err(Error::NotLoaded | Error::Invalid(_)) => None,
        };
        if let Some(result) = result {
            self.metrics.transform_ran(started.elapsed(), result);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transformer() -> (tempfile::TempDir, Transformer) {
        let dir = tempfile::tempdir().unwrap();
        let t = Transformer::new(dir.path(), 2).unwrap();
        (dir, t)
    }

    #[test]
    fn what_is_not_a_component_is_refused_in_words() {
        let (_d, t) = transformer();
        let Err(Error::Invalid(m)) = t.load(b"hello") else { panic!("accepted") };
        assert!(m.contains("not a WebAssembly component"), "{m}");
        let Err(Error::Invalid(m)) = t.load(b"\0asm\x01\0\0\0") else { panic!("accepted") };
        assert!(m.contains("core WebAssembly module"), "{m}");
        let Err(Error::Invalid(m)) = t.load(&vec![0u8; MAX_COMPONENT + 1]) else { panic!("accepted") };
        assert!(m.contains("at most 1024 KiB"), "{m}");
        // A component header with garbage after it: does not compile.
        let Err(Error::Invalid(m)) = t.load(b"\0asm\x0d\0\x01\0\xff\xff") else { panic!("accepted") };
        assert!(m.starts_with("The component does not compile"), "{m}");
    }

    #[test]
    fn a_run_of_nothing_loaded_asks_for_a_load() {
        let (_d, t) = transformer();
        let input =
            Input { event_type: "user.created".into(), msg_id: "m".into(), timestamp: "t".into(), body: "{}".into() };
        let r = futures_util::FutureExt::now_or_never(t.run(&digest(b"x"), &input)).expect("answers at once");
        assert!(matches!(r, Err(Error::NotLoaded)));
    }

    #[test]
    fn answers_over_the_caps_are_failures() {
        let big = guest::Outgoing { body: Some("x".repeat(MAX_BODY + 1)), headers: vec![], path: None };
        let Err(Error::Failed(m)) = check_output(big) else { panic!() };
        assert!(m.contains("at most 1024 KiB"), "{m}");
        let many = guest::Outgoing {
            body: None,
            headers: (0..21).map(|i| (format!("x-{i}"), "v".into())).collect(),
            path: None,
        };
        assert!(matches!(check_output(many), Err(Error::Failed(_))));
        let long = guest::Outgoing { body: None, headers: vec![], path: Some("/".repeat(MAX_PATH + 1)) };
        assert!(matches!(check_output(long), Err(Error::Failed(_))));
        let fine = guest::Outgoing { body: Some("{}".into()), headers: vec![("x-a".into(), "b".into())], path: None };
        assert!(check_output(fine).is_ok());
    }
}
