//! `webhooks-host`: run the webhooks integration as a minimal panel.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use webhooks_host::Webhooks;
use webhooks_host::config::{self, Config};
use webhooks_host::egress;
use webhooks_host::secrets::{random_hex, write_private};
use webhooks_host::server::{self, App};
use webhooks_host::storage::Durability;

/// Webhooks for a self-hosted panel: signed deliveries, retries, history.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the admin pages and the event API (a minimal panel).
    Serve(Serve),
}

#[derive(Parser)]
struct Serve {
    /// Address to listen on.
    #[arg(long, env = "WEBHOOKS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Folder for the database, compiled-component cache and keys.
    #[arg(long = "data", env = "WEBHOOKS_DATA_DIR", default_value = "./data")]
    data: PathBuf,
    /// Key sealing webhook secrets at rest, 64 hex characters [default: DATA/secret.key, created on first start].
    #[arg(long, env = "WEBHOOKS_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Folder for the compiled-component cache [default: DATA/cache].
    #[arg(long, env = "WEBHOOKS_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Admin user name for the sign-in page.
    #[arg(long, env = "WEBHOOKS_ADMIN_USER", default_value = "admin")]
    admin_user: String,
    /// Admin password; when unset, one is generated on first start, printed once and stored only as an Argon2 hash.
    #[arg(long, env = "WEBHOOKS_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Bearer token for /api/*; generated and saved in DATA/api-token when unset.
    #[arg(long, env = "WEBHOOKS_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Internal hosts or CIDRs webhooks may reach on purpose, comma-separated
    /// (e.g. "127.0.0.1,10.0.0.0/8,hooks.internal"). Empty by default.
    #[arg(long, env = "WEBHOOKS_ALLOWED_HOSTS", default_value = "")]
    allowed_hosts: String,
    /// Delay before each attempt, comma-separated.
    #[arg(long, env = "WEBHOOKS_RETRY_SCHEDULE", default_value = config::DEFAULT_RETRY_SCHEDULE)]
    retry_schedule: String,
    /// Deadline of one attempt: connect, response and body.
    #[arg(long, env = "WEBHOOKS_ATTEMPT_TIMEOUT", default_value = "15s")]
    attempt_timeout: humantime::Duration,
    /// How long a claimed delivery is leased (crash recovery).
    #[arg(long, env = "WEBHOOKS_LEASE", default_value = "60s")]
    lease: humantime::Duration,
    /// Disable a webhook whose deliveries fail without a success for this long.
    #[arg(long, env = "WEBHOOKS_AUTO_DISABLE_AFTER", default_value = "5days")]
    auto_disable_after: humantime::Duration,
    /// Prune delivery history older than this.
    #[arg(long, env = "WEBHOOKS_RETENTION", default_value = "30days")]
    retention: humantime::Duration,
    /// Requests in flight to one webhook at once, across workers.
    #[arg(long, env = "WEBHOOKS_PER_WEBHOOK_CONCURRENCY", default_value_t = 16)]
    per_webhook_concurrency: u32,
    /// SQLite durability: normal (safe against crashes) or full (safe against power loss).
    #[arg(long, env = "WEBHOOKS_DURABILITY", value_enum, default_value_t = Durability::Normal)]
    durability: Durability,
    /// Deadline of one call into the plugin that sends nothing.
    #[arg(long, env = "WEBHOOKS_CALL_TIMEOUT", default_value = "10s")]
    call_timeout: humantime::Duration,
    /// Linear memory one plugin instance may use, in MiB.
    #[arg(long, env = "WEBHOOKS_MEMORY_LIMIT_MIB", default_value_t = 256)]
    memory_limit_mib: usize,
    /// Load this plugin component instead of the built-in one.
    #[arg(long, env = "WEBHOOKS_COMPONENT")]
    component: Option<PathBuf>,
    /// Delivery workers.
    #[arg(long, env = "WEBHOOKS_WORKERS", default_value_t = 2)]
    workers: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,wasmtime=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(s) => tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(s)),
    }
}

/// Reads a secret file, or creates it (mode 0600) with `make()`.
fn secret_file(path: &Path, make: impl FnOnce() -> Vec<u8>) -> anyhow::Result<(Vec<u8>, bool)> {
    if let Ok(b) = std::fs::read(path) {
        return Ok((b, false));
    }
    let bytes = make();
    write_private(path, &bytes).with_context(|| format!("creating {}", path.display()))?;
    Ok((bytes, true))
}

async fn serve(s: Serve) -> anyhow::Result<()> {
    let mut cfg = Config::new(&s.data);
    cfg.allowed_hosts =
        egress::parse_allowlist(&s.allowed_hosts).map_err(|e| anyhow::anyhow!("WEBHOOKS_ALLOWED_HOSTS: {e}"))?;
    cfg.retry_schedule =
        config::parse_schedule(&s.retry_schedule).map_err(|e| anyhow::anyhow!("WEBHOOKS_RETRY_SCHEDULE: {e}"))?;
    cfg.attempt_timeout = s.attempt_timeout.into();
    cfg.lease = s.lease.into();
    cfg.durability = s.durability;
    cfg.call_timeout = s.call_timeout.into();
    cfg.memory_limit = s.memory_limit_mib.clamp(16, 4096) << 20;
    cfg.component_path = s.component.clone();
    cfg.auto_disable_after = s.auto_disable_after.into();
    cfg.retention = s.retention.into();
    cfg.per_webhook_concurrency = s.per_webhook_concurrency.clamp(1, 1024);
    cfg.cache_dir = s.cache_dir.clone();
    if let Some(k) = s.secret_key.as_deref().filter(|k| !k.is_empty()) {
        cfg.secret_key = Some(
            webhooks_host::secrets::SecretKey::from_hex(k).map_err(|e| anyhow::anyhow!("WEBHOOKS_SECRET_KEY: {e}"))?,
        );
    }
    cfg.delivery_workers = s.workers.min(64);
    std::fs::create_dir_all(&s.data).with_context(|| format!("creating {}", s.data.display()))?;

    let (key, _) = secret_file(&s.data.join("host.key"), || random_hex(32).into_bytes())?;
    let api_token = match s.api_token.filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            let path = s.data.join("api-token");
            let (t, created) = secret_file(&path, || random_hex(24).into_bytes())?;
            let t = String::from_utf8(t).context("api-token is not UTF-8")?.trim().to_owned();
            if created {
                // Printed once, on the terminal of whoever started it; never logged.
                eprintln!("Generated an API token (saved in {}): {t}", path.display());
            }
            t
        }
    };

    let (auth, generated) = webhooks_host::auth::Auth::load(s.admin_user.clone(), s.admin_password.clone(), &s.data)
        .context("loading the admin account")?;
    if let Some(p) = generated {
        // Printed once, on the terminal of whoever started it; stored only hashed.
        eprintln!("Generated the admin password for user {:?} (shown once): {p}", s.admin_user);
    }
    let hooks = Webhooks::start(cfg).await?;
    let app = Arc::new(App { hooks, api_token, key, auth });
    let listener =
        tokio::net::TcpListener::bind(s.listen).await.with_context(|| format!("listening on {}", s.listen))?;
    let addr = listener.local_addr()?;
    // Not println!: a closed stdout must not take the server down.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "webhooks-host listening on http://{addr}");
    let _ = writeln!(out, "admin pages: http://{addr}{}", app.hooks.config().mount_path);
    let _ = out.flush();

    server::serve(app.clone(), listener, shutdown_signal()).await?;
    tracing::info!("shutting down: finishing attempts in flight");
    app.hooks.shutdown().await;
    Ok(())
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
