//! The rate limit of a webhook: a token bucket per limited webhook.
//!
//! A webhook may carry a ceiling in deliveries per second (`webhooks.rate_limit`,
//! 1 to [`MAX_RATE_LIMIT`](crate::webhook::MAX_RATE_LIMIT)). Each claim may
//! take at most as many of its due rows as the bucket holds whole tokens, and
//! debits them in the same transaction; rows past it stay due and wait —
//! they are never dropped or marked failed for it. The bucket lives in the
//! database (`webhook_buckets`), so it holds across restarts and, on
//! PostgreSQL, across nodes: there the claim locks a bucket row `FOR UPDATE
//! SKIP LOCKED`, so two nodes never spend the same tokens (a node that finds
//! the bucket locked passes over that webhook for this step, never waits).
//!
//! Arithmetic is in thousandths of a token ("milli-tokens"), in integers, so
//! that both engines compute exactly the same thing: a webhook limited to
//! `r` per second gains `r` milli-tokens per millisecond, up to its
//! [`capacity`] (the burst), and a delivery costs [`COST`]. The SQL of the
//! claim (`pipeline.rs`) computes the same values as the functions here;
//! `plugin/src/tests/ratelimit.rs` checks one against the other.
//!
//! **Burst.** A full bucket holds a fifth of a second's worth, at least one
//! delivery: over any window of `t` seconds a receiver gets at most
//! `r × t + r / 5` deliveries (`r ≥ 5`), so a 10 s window sees at most 2 %
//! above the rate, and a webhook idle for a while starts at once without a
//! storm. A restart keeps the bucket as it was (and refills it only by the
//! time that passed, up to the same burst).
//!
//! **What counts.** Every delivery the engine claims: first attempts and
//! retries alike. The admin's one-offs (a test send, a resend) are not
//! counted and not held back. A claimed delivery handed back unsent (a node
//! stopping) keeps its token spent: the limit errs below the rate, never
//! above it.

/// One delivery, in milli-tokens.
pub const COST: i64 = 1000;

/// How long after the limit last held a delivery back the dashboard and the
/// API still say "held back by its rate limit". A held webhook is marked at
/// each claim that spends its last whole token, at least once a second for
/// any rate from 1/s.
pub const HELD_SHOWN_MS: u64 = 5_000;

/// The bucket's size (its burst) in milli-tokens for `rate` per second: a
/// fifth of a second's worth, at least one delivery.
pub fn capacity(rate: i64) -> i64 {
    (rate * 200).max(COST)
}

/// Milli-tokens available at `now` in a bucket that held `tokens` at `at_ms`.
/// Time running backwards (another node's clock behind this one's) adds
/// nothing.
pub fn available(rate: i64, tokens: i64, at_ms: i64, now: i64) -> i64 {
    capacity(rate).min(tokens + (now - at_ms).max(0) * rate)
}

/// When a bucket that held `tokens` at `at_ms` next holds a whole token.
pub fn ready_at(rate: i64, tokens: i64, at_ms: i64) -> i64 {
    at_ms + ((COST - tokens + rate - 1) / rate).max(0)
}

/// After a SQLite claim, debits each limited webhook it took rows of (`?1`
/// the webhook, `?2` how many, `?3` now) and marks it held back when its
/// last whole token went while due rows still wait. The claim computed the
/// same [`available`] in the same transaction (SQLite's one writer), so
/// the debit never goes below zero. A missing row is a full bucket.
pub const DEBIT_SQLITE: &str = "INSERT INTO webhook_buckets (webhook_id, tokens, at_ms, held_at) \
    SELECT t.id, t.left, t.at_ms, \
      CASE WHEN t.left < 1000 AND EXISTS (SELECT 1 FROM deliveries d WHERE d.webhook_id = t.id \
          AND d.state IN ('pending', 'retrying') AND d.next_attempt_at <= ?3 \
          AND (d.lease_until IS NULL OR d.lease_until <= ?3)) THEN ?3 ELSE t.held_at END \
    FROM (SELECT w.id, MAX(0, COALESCE(MIN(MAX(1000, w.rate_limit * 200), \
              b.tokens + MAX(0, ?3 - b.at_ms) * w.rate_limit), MAX(1000, w.rate_limit * 200)) - 1000 * ?2) AS left, \
            MAX(?3, COALESCE(b.at_ms, 0)) AS at_ms, b.held_at \
          FROM webhooks w LEFT JOIN webhook_buckets b ON b.webhook_id = w.id \
          WHERE w.id = ?1 AND w.rate_limit IS NOT NULL) t WHERE true \
    ON CONFLICT (webhook_id) DO UPDATE SET tokens = excluded.tokens, at_ms = excluded.at_ms, held_at = excluded.held_at";
