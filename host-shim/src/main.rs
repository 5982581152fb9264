//! `webhooks-host`: run the webhooks integration as a minimal panel.

use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use webhooks_host::Webhooks;
use webhooks_host::config::{self, Config};
use webhooks_host::egress;
use webhooks_host::secrets::{random_hex, read_or_create};
use webhooks_host::server::{self, App};
use webhooks_host::storage::Durability;

/// Webhooks for a self-hosted panel: signed deliveries, retries, history.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the admin pages and the event API (a minimal panel).
    Serve(Serve),
    /// Compile the plugin component for this build's engine into FILE (what `serve` runs
    /// in a child process when its cache has no compiled copy).
    #[command(hide = true)]
    CompileComponent {
        /// Where to write the compiled component.
        #[arg(long)]
        out: PathBuf,
        /// The component to compile [default: the built-in plugin].
        #[arg(long)]
        component: Option<PathBuf>,
        /// Compile it as a webhook's transformation (for their engine), which
        /// `serve` does in a child process when one is uploaded.
        #[arg(long, requires = "component")]
        transform: bool,
    },
}

/// Every setting comes from, in order: a flag, its environment variable, the
/// `--config` file, the default shown.
#[derive(Parser, Default)]
struct Serve {
    /// TOML settings file (keys as in docs/webhooks.example.toml); flags and environment override it.
    #[arg(long, env = "WEBHOOKS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "WEBHOOKS_LISTEN")]
    listen: Option<SocketAddr>,
    /// Folder for the database, compiled-component cache and keys [default: ./data].
    #[arg(long = "data", env = "WEBHOOKS_DATA_DIR")]
    data: Option<PathBuf>,
    /// Where the admin pages are mounted [default: /admin/integrations/webhooks].
    #[arg(long, env = "WEBHOOKS_MOUNT_PATH")]
    mount_path: Option<String>,
    /// Key sealing webhook secrets at rest, 64 hex characters [default: DATA/secret.key, created on first start].
    #[arg(long, env = "WEBHOOKS_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Folder for the compiled-component cache [default: DATA/cache].
    #[arg(long, env = "WEBHOOKS_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Admin user name for the sign-in page [default: admin].
    #[arg(long, env = "WEBHOOKS_ADMIN_USER")]
    admin_user: Option<String>,
    /// Admin password; when unset, one is generated on first start, printed once and stored only as an Argon2 hash.
    #[arg(long, env = "WEBHOOKS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Bearer token for /api/*, /metrics and panels acting for their admins; generated and saved in DATA/api-token when unset.
    #[arg(long, env = "WEBHOOKS_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Internal hosts or CIDRs webhooks may reach on purpose, comma-separated
    /// (e.g. "127.0.0.1,10.0.0.0/8,hooks.internal") [default: none].
    #[arg(long, env = "WEBHOOKS_ALLOWED_HOSTS")]
    allowed_hosts: Option<String>,
    /// Delay before each attempt, comma-separated [default: 0s,5s,5m,30m,2h,5h,10h,10h].
    #[arg(long, env = "WEBHOOKS_RETRY_SCHEDULE")]
    retry_schedule: Option<String>,
    /// Deadline of one attempt: connect, response and body [default: 15s].
    #[arg(long, env = "WEBHOOKS_ATTEMPT_TIMEOUT")]
    attempt_timeout: Option<humantime::Duration>,
    /// How long a claimed delivery is leased (crash recovery) [default: 60s].
    #[arg(long, env = "WEBHOOKS_LEASE")]
    lease: Option<humantime::Duration>,
    /// Disable a webhook whose deliveries fail without a success for this long [default: 5days].
    #[arg(long, env = "WEBHOOKS_AUTO_DISABLE_AFTER")]
    auto_disable_after: Option<humantime::Duration>,
    /// Prune delivery history older than this [default: 30days].
    #[arg(long, env = "WEBHOOKS_RETENTION")]
    retention: Option<humantime::Duration>,
    /// Requests on the wire to one webhook at once, from this host [default: 16].
    #[arg(long, env = "WEBHOOKS_PER_WEBHOOK_CONCURRENCY")]
    per_webhook_concurrency: Option<u32>,
    /// PostgreSQL database for the plugin's tables, e.g. postgres://webhooks@127.0.0.1/webhooks;
    /// several hosts may share one [default: none: SQLite in DATA/webhooks.db].
    #[arg(long = "database", env = "WEBHOOKS_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// SQLite durability: normal (safe against crashes) or full (safe against power loss) [default: normal].
    #[arg(long, env = "WEBHOOKS_DURABILITY", value_enum)]
    durability: Option<Durability>,
    /// Deadline of one call into the plugin that sends nothing [default: 10s].
    #[arg(long, env = "WEBHOOKS_CALL_TIMEOUT")]
    call_timeout: Option<humantime::Duration>,
    /// Linear memory one plugin instance may use, in MiB [default: 256].
    #[arg(long, env = "WEBHOOKS_MEMORY_LIMIT_MIB")]
    memory_limit_mib: Option<usize>,
    /// Plugin instances at once, busy or idle; each holds its memory and its database
    /// connection, and calls beyond wait. Pages and the API get at most half [default: 16].
    #[arg(long, env = "WEBHOOKS_INSTANCES")]
    instances: Option<usize>,
    /// Load this plugin component instead of the built-in one.
    #[arg(long, env = "WEBHOOKS_COMPONENT")]
    component: Option<PathBuf>,
    /// Delivery capacity in units of 64 requests in flight; 0 = intake only [default: 2].
    #[arg(long, env = "WEBHOOKS_WORKERS")]
    workers: Option<usize>,
    /// Log lines as text or JSON; RUST_LOG picks what is logged [default: text].
    #[arg(long, env = "WEBHOOKS_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// The address admins reach the panel at, e.g. https://panel.example.com; with https,
    /// cookies are `Secure` and HSTS is sent [default: none: plain http on the listen address].
    #[arg(long, env = "WEBHOOKS_PUBLIC_URL")]
    public_url: Option<String>,
    /// Reverse proxies and load balancers (addresses or CIDRs, comma-separated) whose
    /// `X-Forwarded-Proto: https` is believed (their https requests get `Secure` cookies and
    /// HSTS) and whose `X-Forwarded-For` names the client that sign-in limits count [default: none].
    #[arg(long, env = "WEBHOOKS_TRUSTED_PROXIES")]
    trusted_proxies: Option<String>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A duration from a flag/env value, else from the file, else the default.
fn duration(
    name: &str,
    flag: Option<humantime::Duration>,
    file: Option<&str>,
    default: Duration,
) -> anyhow::Result<Duration> {
    match (flag, file) {
        (Some(d), _) => Ok(d.into()),
        (None, Some(f)) => config::parse_duration(f).map_err(|e| anyhow::anyhow!("{name}: {e}")),
        (None, None) => Ok(default),
    }
}

/// Settings after layering flags and environment over the file over defaults.
struct Resolved {
    cfg: Config,
    listen: SocketAddr,
    data: PathBuf,
    admin_user: String,
    admin_password: Option<String>,
    api_token: Option<String>,
    log_format: LogFormat,
    /// The public address is https: `Secure` cookies and HSTS.
    https: bool,
    trusted_proxies: Vec<ipnet::IpNet>,
}

fn resolve(s: Serve) -> anyhow::Result<Resolved> {
    let f = match &s.config {
        Some(p) => config::FileSettings::load(p).map_err(|e| anyhow::anyhow!("--config: {e}"))?,
        None => config::FileSettings::default(),
    };
    let listen = match (s.listen, f.listen.as_deref()) {
        (Some(l), _) => l,
        (None, Some(l)) => l.parse().map_err(|e| anyhow::anyhow!("listen: {l:?}: {e}"))?,
        (None, None) => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    let data = s.data.or(f.data_dir.clone()).unwrap_or_else(|| PathBuf::from("./data"));
    let mut cfg = Config::new(&data);
    if let Some(m) = s.mount_path.or(f.mount_path.clone()) {
        config::check_mount_path(&m).map_err(|e| anyhow::anyhow!("mount_path: {e}"))?;
        cfg.mount_path = m;
    }
    let allowed = s.allowed_hosts.or(f.allowed_hosts.as_ref().map(config::StringList::joined)).unwrap_or_default();
    cfg.allowed_hosts = egress::parse_allowlist(&allowed).map_err(|e| anyhow::anyhow!("allowed_hosts: {e}"))?;
    if let Some(r) = s.retry_schedule.or(f.retry_schedule.as_ref().map(config::StringList::joined)) {
        cfg.retry_schedule = config::parse_schedule(&r).map_err(|e| anyhow::anyhow!("retry_schedule: {e}"))?;
    }
    cfg.attempt_timeout =
        duration("attempt_timeout", s.attempt_timeout, f.attempt_timeout.as_deref(), cfg.attempt_timeout)?;
    cfg.lease = duration("lease", s.lease, f.lease.as_deref(), cfg.lease)?;
    cfg.auto_disable_after =
        duration("auto_disable_after", s.auto_disable_after, f.auto_disable_after.as_deref(), cfg.auto_disable_after)?;
    cfg.retention = duration("retention", s.retention, f.retention.as_deref(), cfg.retention)?;
    cfg.call_timeout = duration("call_timeout", s.call_timeout, f.call_timeout.as_deref(), cfg.call_timeout)?;
    cfg.durability = s.durability.or(f.durability).unwrap_or_default();
    if let Some(u) = s.database_url.or(f.database_url.clone()).filter(|u| !u.trim().is_empty()) {
        cfg.database_url = Some(
            webhooks_host::storage::postgres::DatabaseUrl::parse(&u)
                .map_err(|e| anyhow::anyhow!("database_url: {e}"))?,
        );
    }
    cfg.memory_limit = s.memory_limit_mib.or(f.memory_limit_mib).unwrap_or(256).clamp(16, 4096) << 20;
    cfg.instances = s.instances.or(f.instances).unwrap_or(16).clamp(2, 256);
    cfg.component_path = s.component.or(f.component.clone());
    // The compiler's memory stays out of the serving process (`Config::compiler`).
    cfg.compiler = std::env::current_exe().ok();
    cfg.per_webhook_concurrency = s.per_webhook_concurrency.or(f.per_webhook_concurrency).unwrap_or(16).clamp(1, 1024);
    cfg.cache_dir = s.cache_dir.or(f.cache_dir.clone());
    cfg.delivery_workers = s.workers.or(f.workers).unwrap_or(2).min(64);
    if let Some(k) = s.secret_key.or(f.secret_key.clone()).filter(|k| !k.is_empty()) {
        cfg.secret_key =
            Some(webhooks_host::secrets::SecretKey::from_hex(&k).map_err(|e| anyhow::anyhow!("secret_key: {e}"))?);
    }
    let https = match s.public_url.or(f.public_url.clone()).filter(|u| !u.is_empty()) {
        None => false,
        Some(u) => match url::Url::parse(&u).map_err(|e| anyhow::anyhow!("public_url: {u:?} is not a URL ({e})"))? {
            p if p.scheme() == "https" => true,
            p if p.scheme() == "http" => false,
            p => anyhow::bail!("public_url: the scheme must be http or https, not {:?}", p.scheme()),
        },
    };
    let proxies = s.trusted_proxies.or(f.trusted_proxies.as_ref().map(config::StringList::joined)).unwrap_or_default();
    let trusted_proxies = config::parse_proxies(&proxies).map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?;
    let admin_user = s.admin_user.or(f.admin_user.clone()).unwrap_or_else(|| "admin".into());
    // What a sign-in counts and a session keeps (`auth::MAX_USER_LEN`, the
    // plugin's `sessions`): another name could never sign in.
    if admin_user.is_empty()
        || admin_user.len() > webhooks_host::auth::MAX_USER_LEN
        || admin_user.chars().any(char::is_control)
    {
        anyhow::bail!("admin_user: 1 to 128 bytes without control characters");
    }
    Ok(Resolved {
        https,
        trusted_proxies,
        cfg,
        listen,
        data,
        admin_user,
        admin_password: s.admin_password.or(f.admin_password.clone()).filter(|p| !p.is_empty()),
        api_token: s.api_token.or(f.api_token.clone()).filter(|t| !t.is_empty()),
        log_format: match (s.log_format, f.log_format.as_deref()) {
            (Some(l), _) => l,
            (None, Some("json")) => LogFormat::Json,
            (None, Some("text") | None) => LogFormat::Text,
            (None, Some(other)) => anyhow::bail!("log_format: {other:?} must be \"text\" or \"json\""),
        },
    })
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Serve(s) => resolve(s).and_then(|r| {
            init_logging(r.log_format);
            fixed_mmap_threshold();
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(r))
        }),
        Command::CompileComponent { out, component: Some(c), transform: true } => {
            webhooks_host::transform::compile_to(&c, &out)
        }
        Command::CompileComponent { out, component, transform: _ } => {
            webhooks_host::runtime::compile_component(component.as_deref(), &out)
        }
    };
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the problem and its causes, never a backtrace
            // (which `RUST_BACKTRACE` would add to anyhow's own report).
            let _ = writeln!(std::io::stderr(), "Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The largest allocation glibc serves from its heaps; bigger ones get pages
/// of their own, handed back to the system when freed (glibc's default start).
const MMAP_THRESHOLD: usize = 128 * 1024;

/// Holds glibc's mmap threshold at [`MMAP_THRESHOLD`] for the serving process
/// (#25). By default glibc raises the threshold each time a mapped block is
/// freed, up to 32 MiB, so after the first large request the buffers of a
/// batch (a 1,000-event `POST /api/events/batch`, SQLite's statement memory)
/// are carved from a thread's heap and stay resident there after they are
/// freed: 13 MiB kept after one batch, the 100,000-pending phase of the
/// benchmark peaking at 64.6 MiB against 45.4 MiB with the threshold held
/// (docs/BENCHMARKS.md). Setting it explicitly turns the raising off. An
/// operator's own `MALLOC_MMAP_THRESHOLD_` is left to glibc, which reads it.
/// The library (`Webhooks`) leaves its embedder's allocator alone.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a parameter of glibc's allocator; it is
        // called before the runtime starts any thread.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) };
        if ok != 1 {
            tracing::warn!("could not hold glibc's mmap threshold; memory after large requests may stay higher");
        }
    }
}

/// `RUST_LOG` picks what is logged (default `info`); the format is text for
/// people or JSON lines for log shippers.
fn init_logging(format: LogFormat) {
    // deadpool warns once per pooled connection it finds closed: a database
    // restart is logged once, by the host's own health line.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,wasmtime=warn,deadpool=error".into());
    // Colours only for a person at a terminal, never in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Reads a secret file, or creates it (mode 0600) with `make()`.
fn secret_file(path: &Path, make: impl FnOnce() -> Vec<u8>) -> anyhow::Result<(Vec<u8>, bool)> {
    read_or_create(path, || Ok(make())).with_context(|| format!("reading or creating {}", path.display()))
}

async fn serve(r: Resolved) -> anyhow::Result<()> {
    let Resolved { cfg, listen, data, admin_user, admin_password, api_token, log_format: _, https, trusted_proxies } =
        r;
    // Bound first, and the component started (which makes `data` a private
    // folder, see `datadir`) before a password is generated: a busy port or
    // a failed start must not swallow a password that is shown only once.
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let hooks = Webhooks::start(cfg).await?;
    // Derived from the sealing key (which every node on one database must
    // share, and `migrate` checks), so a CSRF token made on one node is
    // accepted by the next. (`host.key`, the per-node key this replaced, is
    // no longer read; an old one is left where it is.)
    let key = hooks.derived_key("serve csrf").to_vec();
    let token_path = data.join("api-token");
    let (api_token, token_created) = match api_token {
        Some(t) => (t, false),
        None => {
            let (t, created) = secret_file(&token_path, || random_hex(24).into_bytes())?;
            (String::from_utf8(t).context("api-token is not UTF-8")?.trim().to_owned(), created)
        }
    };
    let (auth, generated) = webhooks_host::auth::Auth::load(
        admin_user.clone(),
        admin_password,
        &data,
        &hooks.derived_key("serve admin account"),
    )
    .context("loading the admin account")?;
    let app = Arc::new(App { hooks, api_token, key, auth, https, trusted_proxies });

    // Not println!: a closed stdout must not take the server down. Stdout, not
    // the log on stderr (maybe JSON for a log shipper): the one-time password
    // is shown here once, to whoever started it, and is never a log line.
    let mut text = format!("webhooks-host listening on http://{addr}\n");
    if token_created || generated.is_some() {
        let first = FirstStart {
            addr,
            mount_path: &app.hooks.config().mount_path,
            user: &admin_user,
            password: generated.as_deref(),
            token_file: token_created.then_some(token_path.as_path()),
        };
        text.push_str(&first.to_string());
    }
    let mut out = std::io::stdout();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();

    // The engine starts draining at the signal, beside the server's own
    // graceful stop rather than after it: a node told to stop claims nothing
    // more and hands back what it has not sent while its last connections
    // finish. Events raised on those are still committed.
    let (stopping, stop) = tokio::sync::oneshot::channel::<()>();
    let drain = tokio::spawn({
        let app = app.clone();
        async move {
            if stop.await.is_ok() {
                tracing::info!("shutting down: claiming nothing more, finishing attempts in flight");
                app.hooks.shutdown().await;
            }
        }
    });
    let signal = async move {
        shutdown_signal().await;
        let _ = stopping.send(());
    };
    let served = server::serve(app.clone(), listener, signal).await;
    let _ = drain.await;
    // If the server stopped on its own (an error), the engine stops here;
    // after the drain above this does nothing.
    app.hooks.shutdown().await;
    served?;
    Ok(())
}

/// What a new user reads on the first start: where to sign in, with what,
/// where the API token is, and a first event to send.
struct FirstStart<'a> {
    addr: SocketAddr,
    mount_path: &'a str,
    user: &'a str,
    /// The generated password; `None` when it was configured.
    password: Option<&'a str>,
    /// The generated token's file; `None` when it was configured.
    token_file: Option<&'a Path>,
}

impl std::fmt::Display for FirstStart<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Listening on every interface: this machine reaches it on loopback.
        let mut a = self.addr;
        if a.ip().is_unspecified() {
            a.set_ip(if a.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
        }
        let (password, token, bearer) = (
            self.password
                .map_or("the one you configured".into(), |p| format!("{p} (shown this once; only its hash is kept)")),
            self.token_file.map_or("the one you configured".into(), |p| p.display().to_string()),
            self.token_file
                .map_or("$WEBHOOKS_API_TOKEN".into(), |p| format!("$(cat {})", shell_word(&p.display().to_string()))),
        );
        writeln!(f)?;
        writeln!(f, "First start. Next steps:")?;
        writeln!(f, "  Sign in:   http://{a}{}", self.mount_path)?;
        writeln!(f, "  user:      {}", self.user)?;
        writeln!(f, "  password:  {password}")?;
        writeln!(f, "  API token: {token}")?;
        writeln!(f, "  Send a first event (add a webhook on the admin pages to see it delivered):")?;
        writeln!(f, "    curl -X POST http://{a}/api/events \\")?;
        writeln!(f, "      -H \"Authorization: Bearer {bearer}\" -H 'content-type: application/json' \\")?;
        writeln!(
            f,
            r#"      -d '{{"type": "user.created", "id": "user-42-created", "data": {{"id": 42, "email": "ada@example.com"}}}}'"#
        )
    }
}

/// `s` as one shell word: as it is when plainly safe, else single-quoted.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
