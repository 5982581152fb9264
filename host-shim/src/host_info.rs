//! Host-info capability: what the component may know of its host — where
//! its pages are mounted, the operator's delivery settings, and whether the
//! egress policy would refuse a URL (asked when an admin saves one, so the
//! refusal is shown in the form rather than at the first delivery).

use wasmtime::component::{HasData, Linker};

use crate::bindings::host_info::{self as wit, Dialect, Settings};
use crate::config::Config;
use crate::egress::Egress;

/// What a store's `host-info` calls read.
pub struct HostInfo<'a> {
    /// The settings in force.
    pub config: &'a Config,
    /// The egress whose policy `check-destination` applies.
    pub egress: &'a Egress,
    /// The engine the storage runs on.
    pub dialect: Dialect,
    /// This host's name among the nodes sharing the database.
    pub node: &'a str,
}

/// A name for this host among the nodes of one database, new at every start:
/// the machine's host name (for an operator reading the `nodes` table), the
/// process id and 32 random bits, so two starts never share one.
pub fn new_node_id() -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(32)
        .collect();
    let mut r = [0u8; 4];
    // Without randomness the pid alone still tells this start from others
    // on the machine; a clash across machines needs the same host name too.
    let _ = getrandom::fill(&mut r);
    let host = if host.is_empty() { "node".to_owned() } else { host };
    format!("{host}-{}-{:08x}", std::process::id(), u32::from_le_bytes(r))
}

struct HasHostInfo;

impl HasData for HasHostInfo {
    type Data<'a> = HostInfo<'a>;
}

/// Links `host-info` to the settings `get` picks out of the store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> HostInfo<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasHostInfo>(linker, get)
}

impl wit::Host for HostInfo<'_> {
    async fn mount_path(&mut self) -> String {
        self.config.mount_path.clone()
    }
    async fn get_settings(&mut self) -> Settings {
        let c = self.config;
        Settings {
            retry_schedule_ms: c.retry_schedule.iter().map(|d| d.as_millis() as u64).collect(),
            attempt_timeout_ms: c.attempt_timeout.as_millis() as u64,
            lease_ms: c.lease.as_millis() as u64,
            auto_disable_after_ms: c.auto_disable_after.as_millis() as u64,
            retention_ms: c.retention.as_millis() as u64,
            per_webhook_concurrency: c.per_webhook_concurrency,
        }
    }
    async fn get_dialect(&mut self) -> Dialect {
        self.dialect
    }
    async fn node_id(&mut self) -> String {
        self.node.to_owned()
    }
    async fn check_destination(&mut self, url: String) -> Result<(), wit::Refused> {
        self.egress.policy().check_url(&url)
    }
}
