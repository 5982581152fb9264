//! Telemetry capability: the component's log lines and its reports of
//! recorded attempts. Log lines go to the host's `tracing` log under the
//! target `webhooks::plugin`, bounded in length; attempt counts feed the
//! Prometheus counters in [`crate::metrics`].

use wasmtime::component::{HasData, Linker};

use crate::bindings::{log, telemetry};
use crate::metrics::Metrics;

/// Longest log line a component may write, in characters: a component
/// cannot flood the operator's log.
const MAX_LOG_LINE: usize = 2000;

/// What a store's `log` and `telemetry` calls reach.
pub struct Telemetry<'a> {
    /// The metrics they feed.
    pub metrics: &'a Metrics,
    /// The current call already found the database unreachable: what the
    /// component says about failing now is that, once per call, while
    /// [`crate::health`] logs the outage once for all calls; its warnings
    /// and errors go to the debug level until the call ends.
    pub quiet: bool,
}

struct HasTelemetry;

impl HasData for HasTelemetry {
    type Data<'a> = Telemetry<'a>;
}

/// Links `log` and `telemetry` to the metrics `get` picks out of the store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> Telemetry<'_>,
) -> wasmtime::Result<()> {
    log::add_to_linker::<T, HasTelemetry>(linker, get)?;
    telemetry::add_to_linker::<T, HasTelemetry>(linker, get)
}

impl log::Host for Telemetry<'_> {
    async fn log(&mut self, level: log::Level, message: String) {
        let message: String = message.chars().take(MAX_LOG_LINE).collect();
        use log::Level;
        let level = if self.quiet && matches!(level, Level::Warn | Level::Error) { Level::Debug } else { level };
        match level {
            Level::Debug => tracing::debug!(target: "webhooks::plugin", "{message}"),
            Level::Info => tracing::info!(target: "webhooks::plugin", "{message}"),
            Level::Warn => tracing::warn!(target: "webhooks::plugin", "{message}"),
            Level::Error => tracing::error!(target: "webhooks::plugin", "{message}"),
        }
    }
}

impl telemetry::Host for Telemetry<'_> {
    async fn attempts_recorded(&mut self, succeeded: u32, retrying: u32, exhausted: u32, skipped: u32) {
        self.metrics.attempts(succeeded, retrying, exhausted, skipped);
    }
}
