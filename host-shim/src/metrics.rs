//! Observability capability: Prometheus metrics for `/metrics`.
//!
//! Counters are bumped where the host already sees the fact (events it
//! raised, outcomes the plugin reports, requests its egress sent, plugin
//! calls that failed, delivery engine restarts); the queue gauges are read
//! from the plugin (`deliveries.stats`) when scraped, so they are never stale
//! and cost nothing between scrapes.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, String); 1];

/// The integration's metrics, one registry per [`crate::Webhooks`].
pub struct Metrics {
    registry: Registry,
    events_raised: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    attempt_duration: Family<Labels, Histogram>,
    transform_duration: Family<Labels, Histogram>,
    queue_depth: Family<Labels, Gauge>,
    oldest_waiting: Gauge<f64, AtomicU64>,
    plugin_errors: Family<Labels, Counter>,
    worker_restarts: Family<Labels, Counter>,
    calls: Family<Labels, Counter>,
    round_trips: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Attempt latency buckets, seconds: 5 ms to 30 s (the attempt deadline's range).
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0];

/// A transformation's run, seconds: 25 µs (a small one, cached: about 27 µs,
/// BENCHMARKS.md) to its 10 ms deadline and the 1 s wall-clock backstop, so
/// that an operator sees one creeping towards its limit.
const TRANSFORM_BUCKETS: &[f64] =
    &[0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.015, 0.025, 0.1, 1.0];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics, registered under the `webhooks_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("webhooks");
        let events_raised = Family::<Labels, Counter>::default();
        registry.register("events_raised", "Events accepted from the panel, by event type", events_raised.clone());
        let attempts = Family::<Labels, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts by outcome: succeeded, retrying (failed, another attempt is scheduled), \
             exhausted (failed for the last time), skipped (not sent: the webhook's transformation skipped it)",
            attempts.clone(),
        );
        let attempt_duration =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(BUCKETS.iter().copied()));
        registry.register_with_unit(
            "attempt_duration",
            "Time from sending a delivery to its whole response (or error), by result: response or error",
            prometheus_client::registry::Unit::Seconds,
            attempt_duration.clone(),
        );
        let transform_duration =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(TRANSFORM_BUCKETS.iter().copied()));
        registry.register_with_unit(
            "transform_duration",
            "Time a webhook's transformation took per run (a fresh instance, the call, its answer checked), \
             by result: sent, skipped or failed (a trap, the deadline, the memory cap, an answer over a cap, its own error)",
            prometheus_client::registry::Unit::Seconds,
            transform_duration.clone(),
        );
        let queue_depth = Family::<Labels, Gauge>::default();
        registry.register("queue_depth", "Deliveries waiting, by state: pending or retrying", queue_depth.clone());
        let oldest_waiting = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "oldest_waiting_age",
            "Age of the oldest waiting delivery (0 when none waits)",
            prometheus_client::registry::Unit::Seconds,
            oldest_waiting.clone(),
        );
        let plugin_errors = Family::<Labels, Counter>::default();
        registry.register(
            "plugin_errors",
            "Plugin calls that failed (a trap, a deadline, or an error the plugin answered), by call",
            plugin_errors.clone(),
        );
        let worker_restarts = Family::<Labels, Counter>::default();
        registry.register(
            "worker_restarts",
            "Delivery engine restarts, by reason: panic (the engine task panicked and was restarted) or plugin (a step failed; the engine backed off and went on)",
            worker_restarts.clone(),
        );
        let calls = Family::<Labels, Counter>::default();
        registry.register(
            "db_calls",
            "Plugin calls on PostgreSQL storage, by call (step, build, handle, …); with db_round_trips, the round trips per call",
            calls.clone(),
        );
        let round_trips = Family::<Labels, Counter>::default();
        registry.register(
            "db_round_trips",
            "Exchanges with the PostgreSQL server (a statement, or pipelined statements sent together), by plugin call",
            round_trips.clone(),
        );
        Metrics {
            registry,
            calls,
            round_trips,
            events_raised,
            attempts,
            attempt_duration,
            transform_duration,
            queue_depth,
            oldest_waiting,
            plugin_errors,
            worker_restarts,
        }
    }

    /// One event accepted.
    pub fn event_raised(&self, event_type: &str) {
        self.events_raised.get_or_create(&[("type", event_type.to_owned())]).inc();
    }

    /// Outcomes the plugin just committed, by the state each left its delivery in.
    /// `skipped`: deliveries a webhook's transformation skipped (#24), never
    /// sent: neither a success nor a failure.
    pub fn attempts(&self, succeeded: u32, retrying: u32, exhausted: u32, skipped: u32) {
        for (outcome, n) in
            [("succeeded", succeeded), ("retrying", retrying), ("exhausted", exhausted), ("skipped", skipped)]
        {
            // Created even at zero so every series exists from the first scrape.
            self.attempts.get_or_create(&[("outcome", outcome.to_owned())]).inc_by(u64::from(n));
        }
    }

    /// A plugin call (`call` names it, e.g. `step`) failed.
    pub fn plugin_error(&self, call: &'static str) {
        self.plugin_errors.get_or_create(&[("call", call.to_owned())]).inc();
    }

    /// A plugin call on PostgreSQL storage ended after `n` round trips.
    pub fn round_trips(&self, call: &'static str, n: u64) {
        self.calls.get_or_create(&[("call", call.to_owned())]).inc();
        self.round_trips.get_or_create(&[("call", call.to_owned())]).inc_by(n);
    }

    /// A delivery worker was restarted.
    pub fn worker_restarted(&self, reason: &'static str) {
        self.worker_restarts.get_or_create(&[("reason", reason.to_owned())]).inc();
    }

    /// One request through the egress: how long, and whether a response came.
    pub fn attempt_finished(&self, took: Duration, response: bool) {
        let result = if response { "response" } else { "error" };
        self.attempt_duration.get_or_create(&[("result", result.to_owned())]).observe(took.as_secs_f64());
    }

    /// A transformation ran for `took` and `result`ed in `sent`, `skipped`
    /// or `failed`.
    pub fn transform_ran(&self, took: Duration, result: &'static str) {
        self.transform_duration.get_or_create(&[("result", result.to_owned())]).observe(took.as_secs_f64());
    }

    /// The text exposition, after setting the queue gauges from `stats`.
    pub fn render(&self, pending: u64, retrying: u64, oldest_waiting_age: Option<Duration>) -> String {
        self.queue_depth.get_or_create(&[("state", "pending".to_owned())]).set(clamp(pending));
        self.queue_depth.get_or_create(&[("state", "retrying".to_owned())]).set(clamp(retrying));
        self.oldest_waiting.set(oldest_waiting_age.map_or(0.0, |d| d.as_secs_f64()));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition,
/// for scrapers that ask for `text/plain`: counter families take their
/// samples' `_total` name in `# HELP` and `# TYPE`; `# UNIT`, `_created`
/// samples and `# EOF` have no place there.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        if let Some(l) = renamed {
            out.push_str(&l);
        } else {
            let sample = line.split(['{', ' ']).next().unwrap_or("");
            if sample.strip_suffix("_created").is_some_and(|family| counters.contains(family)) {
                continue;
            }
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_values() {
        let m = Metrics::new();
        m.event_raised("user.created");
        m.event_raised("user.created");
        m.attempts(3, 1, 0, 0);
        m.attempt_finished(Duration::from_millis(30), true);
        let text = m.render(5, 2, Some(Duration::from_secs(90)));
        assert!(text.contains("webhooks_events_raised_total{type=\"user.created\"} 2"), "{text}");
        assert!(text.contains("webhooks_delivery_attempts_total{outcome=\"succeeded\"} 3"), "{text}");
        assert!(text.contains("webhooks_delivery_attempts_total{outcome=\"exhausted\"} 0"), "{text}");
        assert!(text.contains("webhooks_attempt_duration_seconds_bucket{le=\"0.05\",result=\"response\"} 1"), "{text}");
        assert!(text.contains("webhooks_queue_depth{state=\"pending\"} 5"), "{text}");
        assert!(text.contains("webhooks_oldest_waiting_age_seconds 90.0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        // The classic format: every family has HELP and TYPE under the name
        // its samples carry, and nothing OpenMetrics-only remains.
        let classic = to_prometheus_text(&text);
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT") && !classic.contains("_created"),
            "{classic}"
        );
        assert!(classic.contains("# TYPE webhooks_events_raised_total counter"), "{classic}");
        assert!(classic.contains("# HELP webhooks_events_raised_total "), "{classic}");
        assert!(classic.contains("webhooks_events_raised_total{type=\"user.created\"} 2"), "{classic}");
        let types: Vec<&str> =
            classic.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|r| r.split(' ').next()).collect();
        assert!(!types.is_empty());
        for family in &types {
            assert!(classic.contains(&format!("# HELP {family} ")), "no HELP for {family}");
        }
        for sample in classic.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let name = sample.split(['{', ' ']).next().unwrap();
            assert!(
                types
                    .iter()
                    .any(|f| name == *f
                        || ["_bucket", "_sum", "_count"].iter().any(|sfx| name.strip_suffix(sfx) == Some(f))),
                "{name} has no family"
            );
        }
    }
}
