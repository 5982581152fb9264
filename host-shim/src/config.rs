//! Operator settings with their defaults, and the clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::egress::{Allowed, Resolver, SystemResolver};
use crate::storage::Durability;

/// Where the admin pages are mounted by default.
pub const DEFAULT_MOUNT: &str = "/admin/integrations/webhooks";

/// The default retry schedule: immediately, then 5 s, 5 min, 30 min, 2 h,
/// 5 h, 10 h, 10 h (each with ±20 % jitter, applied by the plugin).
pub const DEFAULT_RETRY_SCHEDULE: &str = "0s,5s,5m,30m,2h,5h,10h,10h";

/// Everything that shapes one running integration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Folder for the database, the compiled-component cache and keys.
    pub data_dir: PathBuf,
    /// Key sealing webhook secrets at rest; `<data_dir>/secret.key` (created
    /// on first start, mode 0600) when `None`.
    pub secret_key: Option<crate::secrets::SecretKey>,
    /// Where compiled components are cached; `<data_dir>/cache` when `None`.
    pub cache_dir: Option<PathBuf>,
    /// URL path of the admin pages, without a trailing slash.
    pub mount_path: String,
    /// Egress allowlist: internal hosts or CIDRs opened on purpose. Empty by default.
    pub allowed_hosts: Vec<Allowed>,
    /// Delay before each attempt; its length is the number of attempts.
    pub retry_schedule: Vec<Duration>,
    /// Deadline for one attempt: connect, response and body. Default 15 s.
    pub attempt_timeout: Duration,
    /// How long a claimed delivery is leased before another engine (a restart,
    /// another host) may take it. Default 60 s.
    pub lease: Duration,
    /// Disable a webhook whose deliveries fail without a success this long. Default 5 days.
    pub auto_disable_after: Duration,
    /// Prune history older than this. Default 30 days.
    pub retention: Duration,
    /// Requests on the wire to one webhook from this host at once. Default
    /// 16. (Twice as many are leased across all hosts; see `scheduler.rs`.)
    pub per_webhook_concurrency: u32,
    /// How often history is pruned. Default 1 hour.
    pub maintenance_every: Duration,
    /// SQLite `synchronous` setting.
    pub durability: Durability,
    /// PostgreSQL instead of the embedded SQLite file: the plugin's tables
    /// live in this database, which several hosts may share. `None` (the
    /// default): `<data_dir>/webhooks.db`.
    pub database_url: Option<crate::storage::postgres::DatabaseUrl>,
    /// Delivery capacity: `delivery_workers × batch_size` requests in flight
    /// at most, driven by one engine loop. Default 2;
    /// 0 makes an intake-only node (events are queued, another node delivers).
    pub delivery_workers: usize,
    /// Requests in flight per unit of `delivery_workers`. Default 64.
    pub batch_size: u32,
    /// Linear memory one instance may use. Default 256 MiB.
    pub memory_limit: usize,
    /// Plugin instances that may exist at once, busy or idle: each has its
    /// linear memory, its connection (on SQLite with its page cache, see
    /// `storage::open`) and, while busy, a blocking thread. Calls beyond
    /// wait for one. Pages, the API and sessions may hold at most half, so
    /// the delivery engine always has the rest. Default 16 (at least 2): a
    /// raise holds its instance until its group commit returns, so the cap is
    /// also how many raises one commit can gather (with 8, 16 raising clients
    /// ran 11 % slower at fan-out 1; with 16, within 3 % of no cap, at the
    /// same peak RSS: BENCHMARKS.md, #25).
    pub instances: usize,
    /// Deadline of a call that does no network I/O (raise, pages without a
    /// send). Default 10 s. Calls that send add the attempt deadline.
    pub call_timeout: Duration,
    /// Load this component instead of the built-in one (a newer plugin build,
    /// or a test component).
    pub component_path: Option<PathBuf>,
    /// Compile the component, when the cache has no compiled copy, in a
    /// child process: this program, run as `PROGRAM compile-component --out
    /// FILE [--component PATH]` (what `webhooks-host` answers). Cranelift's
    /// parallel code generation peaks at about 80 MiB of heap that the
    /// allocator keeps afterwards; in a child it is handed back when the
    /// child exits, and the serving process never holds it. The webhooks'
    /// transformations are compiled the same way when uploaded
    /// (`compile-component --transform`). `serve` names itself; `None` (the
    /// default, for embedders) compiles in this process.
    pub compiler: Option<PathBuf>,
    /// The clock the plugin and the scheduler read (replaceable in tests).
    pub clock: Arc<dyn Clock>,
    /// Name resolution for egress (replaceable in tests).
    pub resolver: Arc<dyn Resolver>,
}

impl Config {
    /// Defaults with the given data folder; change any field before
    /// [`crate::Webhooks::start`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut c = webhooks_host::Config::new("/var/lib/panel/webhooks");
    /// c.mount_path = "/admin/webhooks".into();
    /// c.retention = Duration::from_secs(7 * 86_400);
    /// assert_eq!(c.db_path(), std::path::Path::new("/var/lib/panel/webhooks/webhooks.db"));
    /// assert_eq!(c.retry_schedule.len(), 8); // 0s, 5s, 5m, 30m, 2h, 5h, 10h, 10h
    /// ```
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            secret_key: None,
            cache_dir: None,
            mount_path: DEFAULT_MOUNT.into(),
            allowed_hosts: Vec::new(),
            retry_schedule: parse_schedule(DEFAULT_RETRY_SCHEDULE).expect("default schedule parses"),
            attempt_timeout: Duration::from_secs(15),
            lease: Duration::from_secs(60),
            auto_disable_after: Duration::from_secs(5 * 86_400),
            retention: Duration::from_secs(30 * 86_400),
            per_webhook_concurrency: 16,
            maintenance_every: Duration::from_secs(3600),
            durability: Durability::Normal,
            database_url: None,
            delivery_workers: 2,
            batch_size: 64,
            memory_limit: 256 << 20,
            instances: 16,
            call_timeout: Duration::from_secs(10),
            component_path: None,
            compiler: None,
            clock: Arc::new(SystemClock),
            resolver: Arc::new(SystemResolver),
        }
    }

    /// The compiled-component cache folder.
    pub fn cache_path(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| self.data_dir.join("cache"))
    }

    /// The SQLite database file (unused with [`Config::database_url`]).
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("webhooks.db")
    }
}

/// The `serve --config FILE` settings (TOML). Every key is optional; an
/// environment variable or a command-line flag overrides it, and unknown
/// keys are refused so a typo is not silently ignored. See
/// `docs/webhooks.example.toml`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// `listen = "127.0.0.1:8080"`
    pub listen: Option<String>,
    /// `data_dir = "./data"` (relative to the file's folder).
    pub data_dir: Option<PathBuf>,
    /// `cache_dir = "./data/cache"` (relative to the file's folder).
    pub cache_dir: Option<PathBuf>,
    /// `mount_path = "/admin/integrations/webhooks"`
    pub mount_path: Option<String>,
    /// `secret_key = "<64 hex>"`
    pub secret_key: Option<String>,
    /// `admin_user = "admin"`
    pub admin_user: Option<String>,
    /// `admin_password = "…"`
    pub admin_password: Option<String>,
    /// `api_token = "…"`
    pub api_token: Option<String>,
    /// `allowed_hosts = ["10.0.0.0/8", "hooks.internal"]` or one comma-separated string.
    pub allowed_hosts: Option<StringList>,
    /// `retry_schedule = ["0s", "5s", "5m"]` or `"0s,5s,5m"`.
    pub retry_schedule: Option<StringList>,
    /// `attempt_timeout = "15s"`
    pub attempt_timeout: Option<String>,
    /// `lease = "60s"`
    pub lease: Option<String>,
    /// `auto_disable_after = "5days"`
    pub auto_disable_after: Option<String>,
    /// `retention = "30days"`
    pub retention: Option<String>,
    /// `per_webhook_concurrency = 16`
    pub per_webhook_concurrency: Option<u32>,
    /// `durability = "normal"` or `"full"`.
    pub durability: Option<Durability>,
    /// `database_url = "postgres://webhooks@127.0.0.1/webhooks"`; unset: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// `call_timeout = "10s"`
    pub call_timeout: Option<String>,
    /// `memory_limit_mib = 256`
    pub memory_limit_mib: Option<usize>,
    /// `instances = 16`
    pub instances: Option<usize>,
    /// `component = "path/to/webhooks_plugin.wasm"` (relative to the file's folder).
    pub component: Option<PathBuf>,
    /// `workers = 2`
    pub workers: Option<usize>,
    /// `log_format = "text"` or `"json"`.
    pub log_format: Option<String>,
    /// `public_url = "https://panel.example.com"`
    pub public_url: Option<String>,
    /// `trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]` or `"127.0.0.1,10.0.0.0/8"`.
    pub trusted_proxies: Option<StringList>,
}

/// Parses `trusted_proxies`: addresses or CIDRs, comma-separated.
pub fn parse_proxies(list: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{s:?} is not an IP address or CIDR (e.g. 127.0.0.1 or 10.0.0.0/8)"))
        })
        .collect()
}

/// A list written as a TOML array or as one comma-separated string.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum StringList {
    /// `"a,b"`
    One(String),
    /// `["a", "b"]`
    Many(Vec<String>),
}

impl StringList {
    /// The comma-separated form the flags and environment use.
    pub fn joined(&self) -> String {
        match self {
            StringList::One(s) => s.clone(),
            StringList::Many(v) => v.join(","),
        }
    }
}

impl FileSettings {
    /// Reads and parses a settings file; relative paths in it are made
    /// relative to the file's folder, so the file means the same from anywhere.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut s: FileSettings = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        for p in [&mut s.data_dir, &mut s.cache_dir, &mut s.component].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(s)
    }
}

/// Checks a mount path: absolute, no trailing slash, plain path characters.
pub fn check_mount_path(p: &str) -> Result<(), String> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && !p.ends_with('/')
        && !p.contains("//")
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if ok { Ok(()) } else { Err(format!("{p:?} must look like /admin/integrations/webhooks")) }
}

/// Parses a duration setting such as `15s` or `5days`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e}"))
}

/// Parses `0s,5s,5m` into durations (humantime units: ms, s, m, h, d).
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let v: Vec<Duration> = s
        .split(',')
        .map(|p| humantime::parse_duration(p.trim()).map_err(|e| format!("{:?}: {e}", p.trim())))
        .collect::<Result<_, _>>()?;
    if v.is_empty() || v.len() > 50 {
        return Err("the retry schedule needs 1 to 50 entries".into());
    }
    Ok(v)
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// Adapts a [`Clock`] to WASI's wall clock, so the plugin sees the host's time.
pub(crate) struct WasiClock(pub Arc<dyn Clock>);

impl wasmtime_wasi::HostWallClock for WasiClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(
            parse_schedule("0s,1s,2m").unwrap(),
            [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(120)]
        );
        assert_eq!(parse_schedule(DEFAULT_RETRY_SCHEDULE).unwrap().len(), 8);
        assert!(parse_schedule("5 parsecs").is_err());
        assert!(parse_schedule("").is_err());
    }

    #[test]
    fn example_settings_file_parses_and_resolves_paths() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/webhooks.example.toml");
        let s = FileSettings::load(&path).unwrap();
        assert_eq!(s.listen.as_deref(), Some("127.0.0.1:8080"));
        assert!(s.data_dir.unwrap().ends_with("docs/./data"));
        assert_eq!(parse_schedule(&s.retry_schedule.unwrap().joined()).unwrap().len(), 8);
        assert_eq!(s.durability, Some(Durability::Normal));
        assert_eq!(s.database_url, None, "SQLite unless the operator asks");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pg.toml");
        std::fs::write(&p, "database_url = \"postgres://hooks@127.0.0.1/webhooks\"\n").unwrap();
        assert_eq!(
            FileSettings::load(&p).unwrap().database_url.as_deref(),
            Some("postgres://hooks@127.0.0.1/webhooks")
        );
    }

    #[test]
    fn unknown_keys_and_bad_mounts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "listn = \"127.0.0.1:1\"\n").unwrap();
        let e = FileSettings::load(&p).unwrap_err();
        assert!(e.contains("unknown field `listn`"), "{e}");
        assert!(check_mount_path("/admin/webhooks").is_ok());
        for bad in ["admin", "/", "/admin/", "//evil", "/a b", "/a?b"] {
            assert!(check_mount_path(bad).is_err(), "{bad}");
        }
    }
}
