//! The outbox, split by job:
//!
//! - [`intake`]: raising events into delivery rows (one short transaction,
//!   no network);
//! - [`pipeline`]: the delivery pipeline the host drives (`deliveries.step`:
//!   record what finished, claim what is due with a lease, build and sign the
//!   requests), and the one-off sends of the admin pages and the API;
//! - [`policy`]: the pure retry/disable rules;
//! - [`bucket`]: the per-webhook rate limit (a token bucket the claim spends);
//! - [`maintenance`]: queue statistics and history pruning;
//! - [`state`]: the [`DeliveryState`] every part speaks.
//!
//! A worker that dies leaves its leases to expire and the rows are claimed
//! again with the same `webhook-id`: delivery is at-least-once.

pub mod bucket;
pub mod intake;
pub mod maintenance;
pub mod notices;
pub mod pipeline;
pub mod policy;
pub mod state;

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};

pub use intake::{NewEvent, RaiseError, Raised, raise_batch, raise_each};
pub use maintenance::{Pruned, QueueStats, maintain, stats};
pub use pipeline::{
    AttemptError, Finished, Outcome, StepReport, build, release, resend, retry_failed_since, send_test, step,
};
pub use state::DeliveryState;

/// Response bodies are stored up to this many bytes; `response_body_size`
/// keeps the size the host read.
pub const MAX_STORED_BODY: usize = 64 * 1024;
/// Largest `data` accepted for one event.
pub const MAX_DATA: usize = 256 * 1024;

/// How an attempt's failure is followed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The retry schedule applies.
    Scheduled,
    /// One attempt only (test sends, resends of finished deliveries).
    Once,
}

/// The `webhook-id` of an (event, webhook) pair: stable on every retry and
/// resend, and not reused when a deleted webhook's row id is taken again
/// (the webhook's creation time is part of it).
pub fn msg_id(event_id: &str, webhook_id: i64, webhook_created_at: i64) -> String {
    let mut h = Sha256::new();
    h.update(event_id.as_bytes());
    h.update(b"\n");
    h.update(webhook_id.to_le_bytes());
    h.update(webhook_created_at.to_le_bytes());
    let digest = h.finalize();
    format!("msg_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18]))
}

/// The latest time an event may carry: 9999-12-31T23:59:59.999Z, the last
/// instant RFC 3339 (four-digit years) can write. A panel sending
/// microseconds instead of milliseconds lands far past it.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// RFC 3339 in UTC with milliseconds. Never fails: a time past
/// [`MAX_TIME_MS`] (refused at intake; only a row stored by an older version
/// can hold one) shows as that last instant.
pub fn rfc3339(ms: u64) -> String {
    let ms = ms.min(MAX_TIME_MS);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// A time as pages show it, to the second and with its zone:
/// "2026-11-28 09:14:03 UTC" (it tells rows apart and matches a receiver's log).
pub fn utc_text(ms: u64) -> String {
    let exact = rfc3339(ms);
    match (exact.get(..10), exact.get(11..19)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => exact,
    }
}

/// The exact body bytes sent for an event.
pub fn payload(event_type: &str, occurred_at_ms: u64, data_json: &str) -> String {
    // `data_json` is the panel's JSON text, validated at intake; embedded
    // as-is so the bytes signed are the bytes the panel's data became.
    format!(
        "{{\"type\":{},\"timestamp\":{},\"data\":{}}}",
        json!(event_type),
        json!(rfc3339(occurred_at_ms)),
        data_json
    )
}

/// `payload`, pretty-printed for people (pages, docs); the bytes sent stay as built.
pub fn payload_pretty(event_type: &str, occurred_at_ms: u64, data_json: &str) -> String {
    let body = payload(event_type, occurred_at_ms, data_json);
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(body)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_shape() {
        let p = payload("user.created", 1_700_000_000_123, r#"{"id":7}"#);
        assert_eq!(p, r#"{"type":"user.created","timestamp":"2023-11-14T22:13:20.123Z","data":{"id":7}}"#);
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["data"]["id"], 7);
    }

    #[test]
    fn msg_id_is_stable_and_distinct() {
        assert_eq!(msg_id("e1", 1, 5), msg_id("e1", 1, 5));
        assert_ne!(msg_id("e1", 1, 5), msg_id("e1", 2, 5));
        assert_ne!(msg_id("e1", 1, 5), msg_id("e1", 1, 6));
        assert!(msg_id("e1", 1, 5).starts_with("msg_"));
    }
}
