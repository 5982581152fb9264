//! The delivery pipeline.
//!
//! The host drives it with `deliveries.step` (see the WIT): each step
//! records the attempts that finished since the last one — in one
//! transaction, whatever their number — then claims due deliveries with a
//! lease and answers their requests, built and signed. The host sends them and
//! brings the results to the next step. No call here waits on the network,
//! and the write lock is never held across one.
//!
//! Test sends and resends from the admin pages and the API are one-offs: they
//! send through wasi:http inside their call ([`send_now`]) and are recorded
//! by the same [`record_attempts`].

use std::collections::HashMap;

use serde_json::json;

use super::intake::{INSERT_DELIVERY, NewEvent, RaiseError, Raised, commit_each, delivery_row};
use super::state::DeliveryState;
use super::{MAX_STORED_BODY, Mode, bucket, hex, payload, policy};
use crate::catalog;
use crate::health;
use crate::host::{DbError, Dialect, Host, Level, OutRequest, OutResponse, Row, Settings, Value, in_list, transaction};
use crate::signing;
use crate::transform::{self, Note};

/// Largest stored response header value and total header bytes.
const MAX_HEADER_VALUE: usize = 1024;
const MAX_HEADERS_TOTAL: usize = 16 * 1024;

/// Deliveries leased per webhook for each request the host may have on the
/// wire to it (`per-webhook-concurrency`). A slot stays leased from the claim
/// until its answer is recorded, a step or two after the answer came: with
/// one lease per wire slot the receiver would sit idle for that time. The
/// host holds the rest back, so a receiver still sees at most the bound.
const LEASED_PER_WIRE_SLOT: u32 = 2;

/// A request built and signed for one delivery.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub request: OutRequest,
    /// What the webhook's transformation made of it ([`Note`] as JSON).
    pub transformed: Option<String>,
}

/// One finished attempt, as the sender saw it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub delivery_id: i64,
    pub started_ms: u64,
    pub duration_ms: u64,
    pub result: Result<OutResponse, AttemptError>,
    pub request_headers: Vec<(String, String)>,
    /// What the webhook's transformation made of it ([`Note`] as JSON),
    /// recorded with the attempt.
    pub transformed: Option<String>,
}

/// Why an attempt has no response (`deliveries.attempt-error`).
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptError {
    /// Not sent or not answered: egress policy, DNS, connect, timeout…
    Transport(String),
    /// Not sent: building its request trapped, this delivery alone; the
    /// text is the host's error id for the detail in its log.
    BuildFailed(String),
    /// Not sent, and not to be: the webhook's transformation skipped it
    /// (#24); the text is its reason. Neither a success nor a failure.
    Skipped(String),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Transport(m) => f.write_str(m),
            AttemptError::BuildFailed(id) => write!(f, "{BUILD_FAILED} (error {id})"),
            AttemptError::Skipped(why) => write!(f, "{SKIPPED}: {why}"),
        }
    }
}

/// How a skipped delivery's attempt reads in the history (#24).
pub const SKIPPED: &str = "Skipped by the webhook's transformation";

impl From<String> for AttemptError {
    fn from(e: String) -> Self {
        AttemptError::Transport(e)
    }
}

impl From<&str> for AttemptError {
    fn from(e: &str) -> Self {
        AttemptError::Transport(e.to_owned())
    }
}

/// How a failed build is recorded; a delivery whose last error starts so
/// and fails to build again is quarantined.
const BUILD_FAILED: &str = "not sent: the plugin failed while building this request";

/// The outcome of one attempt, as recorded.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub success: bool,
    /// The delivery's state after this attempt.
    pub state: DeliveryState,
}

/// What to send next (see `deliveries.step-report`). Outcome counts reach
/// the host through `telemetry.attempts-recorded`, from [`record_attempts`].
#[derive(Debug, Default)]
pub struct StepReport {
    /// One answer per raised event, in order.
    pub raised: Vec<Result<Raised, RaiseError>>,
    /// Leased deliveries, for [`build`].
    pub claimed: Vec<i64>,
    pub next_due_ms: Option<u64>,
}

/// Commits `raised`, records `finished`, then claims and builds up to
/// `claim_max` requests.
///
/// All three share one write transaction: on SQLite a step takes the
/// database's one write lock once, whatever it carries, and the deliveries
/// of events raised in it can be claimed in it (no second lock, no wake-up
/// in between). On PostgreSQL the transaction takes no lock of its own:
/// every row it writes is new (events, deliveries, attempts) or already
/// this node's (the deliveries it recorded, locked in id order; the ones it
/// claims, `SKIP LOCKED`), so the steps of several nodes run side by side.
/// The rows all nodes write to (each webhook's last hit and failure streak,
/// the health rollup) are written after the commit there, in their own
/// short statements (see [`Recorded::bookkeep`]).
pub fn step(
    host: &dyn Host,
    raised: &[NewEvent],
    finished: &[Finished],
    claim_max: u32,
) -> Result<StepReport, DbError> {
    let settings = host.settings();
    let now = host.now_ms();
    let random = host.random_bytes(4 * finished.len());
    let dialect = host.dialect();
    let (answers, recorded, ids) = transaction(host, || {
        let answers = commit_each(host, raised, &settings.retry_schedule_ms, now)?;
        let recorded = record_in(host, &settings, finished, Mode::Scheduled, now, &random)?;
        if dialect == Dialect::Sqlite {
            recorded.bookkeep(host, &settings, now)?;
        }
        let ids = if claim_max == 0 {
            if dialect == Dialect::Postgres {
                // Every slot busy, or stopping: a node still delivering stays
                // one of those sharing each webhook's bound; a stopping one
                // left (its row is gone, see `release`) and is not brought back.
                host.execute(HEARTBEAT, &[host.node_id().into(), now.into()])?;
            }
            Vec::new()
        } else {
            let bound = settings.per_webhook_concurrency.max(1).saturating_mul(LEASED_PER_WIRE_SLOT);
            claim(host, claim_max, now, now + settings.lease_ms, bound)?
        };
        Ok::<_, DbError>((answers, recorded, ids))
    })?;
    if dialect == Dialect::Postgres {
        recorded.bookkeep_after_commit(host, &settings, now);
    }
    count_outcomes(host, &recorded.outcomes);
    if claim_max == 0 {
        return Ok(StepReport { raised: answers, ..StepReport::default() });
    }
    // The step has committed: from here on nothing may fail it, or the host
    // would record its attempts again in the next step. A failed look ahead
    // is answered as "look again shortly".
    let next_due_ms = if ids.len() as u32 >= claim_max {
        Some(now)
    } else {
        next_due(host, host.now_ms()).unwrap_or_else(|e| {
            host.log(Level::Warn, &format!("reading when the next delivery is due failed: {e}"));
            Some(now + SHARED_RECHECK_MS)
        })
    };
    Ok(StepReport { raised: answers, claimed: ids, next_due_ms })
}

/// Builds and signs the requests of claimed deliveries (`deliveries.build`):
/// reads only. A delivery that cannot be built comes back as a failed
/// attempt for the next step to record; it then follows the retry schedule.
pub fn build(host: &dyn Host, ids: &[i64]) -> Result<Vec<Result<Outgoing, Finished>>, DbError> {
    let settings = host.settings();
    let (ok, failed) = build_all(host, ids, host.now_ms(), settings.attempt_timeout_ms)?;
    Ok(ok.into_iter().map(Ok).chain(failed.into_iter().map(Err)).collect())
}

/// Claims up to `n` due rows, oldest first, at most `per_webhook` leased per
/// webhook: on SQLite across the one host; on PostgreSQL across all nodes
/// together, each node taking its own share (see [`CLAIM_POSTGRES`]).
fn claim(host: &dyn Host, n: u32, now: u64, lease_until: u64, per_webhook: u32) -> Result<Vec<i64>, DbError> {
    // `f` counts what is in flight per webhook (leased rows, on the small
    // partial index of leased rows); `room` is what each enabled webhook may
    // still take. For each webhook with room, the subquery walks the front of
    // its own due rows (the per-webhook `deliveries_due` index; at most the
    // bound's worth of leased rows to skip), so the cost follows the number
    // of webhooks and the bound, never the backlog: a dead endpoint with
    // 100,000 due rows costs one index seek. The oldest `n` of those are
    // leased. On SQLite `CROSS JOIN` pins that order (SQLite never reorders
    // it): with its statistics the planner would otherwise scan every
    // delivery and run the subquery for each. PostgreSQL runs the same plan
    // as a `LATERAL` join.
    let rows = match host.dialect() {
        Dialect::Sqlite => {
            let rows = host.query(
                CLAIM_SQLITE,
                &[lease_until.into(), now.into(), n.into(), per_webhook.min(n).into(), per_webhook.into()],
            )?;
            // Rate-limited webhooks that took rows: their buckets are debited
            // in this transaction (see `bucket`). None limited, no statement.
            let mut limited: Vec<(i64, u64)> = Vec::new();
            for r in rows.iter().filter(|r| r.opt_i64(2).is_some()) {
                match limited.iter_mut().find(|(w, _)| *w == r.i64(1)) {
                    Some((_, k)) => *k += 1,
                    None => limited.push((r.i64(1), 1)),
                }
            }
            if !limited.is_empty() {
                let debits: Vec<Vec<Value>> =
                    limited.iter().map(|(w, k)| vec![(*w).into(), (*k).into(), now.into()]).collect();
                host.execute_many(bucket::DEBIT_SQLITE, &debits)?;
            }
            rows
        }
        Dialect::Postgres => host.query(
            CLAIM_POSTGRES,
            &[
                lease_until.into(),
                now.into(),
                n.into(),
                per_webhook.min(n).into(),
                per_webhook.into(),
                host.node_id().into(),
                now.saturating_sub(NODE_SILENT_MS).into(),
            ],
        )?,
    };
    Ok(rows.iter().map(|r| r.i64(0)).collect())
}

/// A node whose heartbeat is older than this no longer counts among those
/// sharing each webhook's bound: the others take its share. A delivering
/// node beats at every step, and on PostgreSQL its engine steps at least
/// every second (with every slot busy too, and while it drains); a stopped
/// node removes its row at once ([`release`]). Well inside the lease (60 s
/// by default), so a dead node's share goes to the others before its
/// leased rows do.
const NODE_SILENT_MS: u64 = 5_000;

/// This node's heartbeat (`?1` the node, `?2` now) when a step claims
/// nothing; only a row the claim made ([`CLAIM_POSTGRES`]) is kept fresh.
const HEARTBEAT: &str = "UPDATE nodes SET seen_at = ?2 WHERE id = ?1";

/// [`claim`] on SQLite. `CROSS JOIN` pins the join order (SQLite never
/// reorders it); `+webhook_id` keeps the count on the leased-rows index.
/// A rate-limited webhook's room is also capped by the whole tokens its
/// bucket holds now (see [`bucket`]): a lookup evaluated for limited
/// webhooks only, so the path of the others is as it was. Each claimed row
/// comes back with its webhook's limit (a key lookup per claimed row), so
/// that [`bucket::DEBIT_SQLITE`] runs only when a limited webhook took rows.
const CLAIM_SQLITE: &str = "WITH f AS (SELECT +webhook_id AS webhook_id, COUNT(*) AS n FROM deliveries \
       WHERE lease_until > ?2 GROUP BY +webhook_id), \
 room AS (SELECT id, room FROM (SELECT w.id, CASE WHEN w.rate_limit IS NULL THEN ?5 - COALESCE(f.n, 0) \
         ELSE MIN(?5 - COALESCE(f.n, 0), COALESCE((SELECT MIN(MAX(1000, w.rate_limit * 200), \
              b.tokens + MAX(0, ?2 - b.at_ms) * w.rate_limit) FROM webhook_buckets b WHERE b.webhook_id = w.id), \
            MAX(1000, w.rate_limit * 200)) / 1000) END AS room \
       FROM webhooks w LEFT JOIN f ON f.webhook_id = w.id WHERE w.enabled = 1) AS r0 WHERE room > 0), \
 c AS (SELECT d.id, d.next_attempt_at, r.room, \
       ROW_NUMBER() OVER (PARTITION BY d.webhook_id ORDER BY d.next_attempt_at, d.id) AS k \
       FROM room r CROSS JOIN deliveries d ON d.id IN (\
         SELECT d2.id FROM deliveries d2 WHERE d2.webhook_id = r.id \
           AND d2.state IN ('pending', 'retrying') AND d2.next_attempt_at <= ?2 \
           AND (d2.lease_until IS NULL OR d2.lease_until <= ?2) \
         ORDER BY d2.next_attempt_at, d2.id LIMIT ?4)) \
 UPDATE deliveries SET lease_until = ?1 WHERE id IN (\
    SELECT id FROM c WHERE k <= room ORDER BY next_attempt_at, id LIMIT ?3) \
 RETURNING id, webhook_id, (SELECT w.rate_limit FROM webhooks w WHERE w.id = deliveries.webhook_id)";

/// [`claim`] on PostgreSQL, where several nodes claim at once and no lock
/// makes them take turns. The same plan as on SQLite, written as a
/// `LATERAL` join (a `CROSS JOIN` takes no `ON` there), with these changes:
/// - the front rows of each webhook are locked `FOR UPDATE SKIP LOCKED`: a
///   row another node is claiming is passed over, never waited on, and
///   never claimed twice (PostgreSQL re-checks a row it locks, so one that
///   another node leased and committed meanwhile drops out);
/// - each node counts only its own leases (`lease_owner`) against its
///   share of the bound `?5`: `?5 / n` for `n` live nodes, the remainder
///   going to one more node per webhook, turned by the webhook's id so that
///   no node is always the one short. Together the shares are the bound;
/// - it writes this node's heartbeat (`beat`), read by the others' `live`.
///   A statement does not see its own `WITH` writes, hence `id <> ?6` and
///   the `+ 1`;
/// - rate limits ([`bucket`]): the buckets of the enabled limited webhooks
///   with due rows are locked `FOR UPDATE SKIP LOCKED` (`bk`; a locked row
///   is read as its newest committed version). A limited webhook takes at
///   most the whole tokens of its bucket, and one row more is looked at to
///   tell whether the limit held anything back; one whose bucket another
///   node holds (`avail` −1) is passed over for this step. The bucket is
///   debited by what was claimed, in this statement (`debit`), so no other
///   node can spend the same tokens; a missing bucket row is a full bucket,
///   inserted. The bucket is shared by all nodes: the rate is the
///   webhook's, not a node's share of it. Unlimited webhooks take the same
///   path as before (`avail` NULL); `bk` and `debit` find nothing to do.
///
/// The rows are updated by `id = ANY(ARRAY(…))`: with `id IN (…)` the
/// planner, expecting few deliveries, hash-joined the picked ids against a
/// scan of the whole table (2 ms at 15,000 rows, measured with `EXPLAIN
/// ANALYZE`) instead of looking each up by its key.
///
/// `?6` is this node, `?7` the oldest heartbeat still alive.
const CLAIM_POSTGRES: &str = "WITH beat AS (INSERT INTO nodes (id, seen_at) VALUES (?6, ?2) \
       ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at), \
 live AS (SELECT COUNT(*) + 1 AS n, COUNT(*) FILTER (WHERE id < ?6) AS rank FROM nodes \
       WHERE seen_at > ?7 AND id <> ?6), \
 f AS (SELECT webhook_id, COUNT(*) AS n FROM deliveries \
       WHERE lease_until > ?2 AND lease_owner = ?6 GROUP BY webhook_id), \
 bk AS (SELECT b.webhook_id, b.at_ms, b.held_at, LEAST(GREATEST(1000, w.rate_limit * 200), \
         b.tokens + GREATEST(0, ?2 - b.at_ms) * w.rate_limit) AS avail \
       FROM webhook_buckets b JOIN webhooks w ON w.id = b.webhook_id \
       WHERE w.enabled = 1 AND w.rate_limit IS NOT NULL AND EXISTS (SELECT 1 FROM deliveries d0 \
         WHERE d0.webhook_id = b.webhook_id AND d0.state IN ('pending', 'retrying') AND d0.next_attempt_at <= ?2 \
           AND (d0.lease_until IS NULL OR d0.lease_until <= ?2)) \
       FOR UPDATE OF b SKIP LOCKED), \
 room AS (SELECT w.id, ?5 / l.n + CASE WHEN (l.rank + w.id) % l.n < ?5 % l.n THEN 1 ELSE 0 END \
         - COALESCE(f.n, 0) AS room, \
         CASE WHEN w.rate_limit IS NULL THEN NULL WHEN bk.webhook_id IS NOT NULL THEN bk.avail \
           WHEN EXISTS (SELECT 1 FROM webhook_buckets x WHERE x.webhook_id = w.id) THEN -1 \
           ELSE GREATEST(1000, w.rate_limit * 200) END AS avail, bk.at_ms \
       FROM webhooks w CROSS JOIN live l LEFT JOIN f ON f.webhook_id = w.id \
       LEFT JOIN bk ON bk.webhook_id = w.id WHERE w.enabled = 1), \
 lim AS (SELECT id, avail, at_ms, CASE WHEN avail IS NULL THEN room ELSE LEAST(room, avail / 1000) END AS take, \
         CASE WHEN avail IS NULL THEN LEAST(room, ?4) WHEN avail < 0 THEN 0 \
           ELSE LEAST(room, avail / 1000 + 1, ?4) END AS look FROM room), \
 c AS (SELECT d.id, d.next_attempt_at, r.id AS webhook_id, r.take, \
       ROW_NUMBER() OVER (PARTITION BY r.id ORDER BY d.next_attempt_at, d.id) AS k \
       FROM lim r CROSS JOIN LATERAL (\
         SELECT d2.id, d2.next_attempt_at FROM deliveries d2 WHERE d2.webhook_id = r.id \
           AND d2.state IN ('pending', 'retrying') AND d2.next_attempt_at <= ?2 \
           AND (d2.lease_until IS NULL OR d2.lease_until <= ?2) \
         ORDER BY d2.next_attempt_at, d2.id LIMIT r.look FOR UPDATE SKIP LOCKED) d \
       WHERE r.look > 0), \
 claimed AS (UPDATE deliveries SET lease_until = ?1, lease_owner = ?6 WHERE id = ANY(ARRAY(\
    SELECT id FROM c WHERE k <= take ORDER BY next_attempt_at, id LIMIT ?3)) RETURNING id, webhook_id), \
 debit AS (INSERT INTO webhook_buckets (webhook_id, tokens, at_ms, held_at) \
    SELECT r.id, GREATEST(0, r.avail - 1000 * COALESCE(n.n, 0)), GREATEST(?2, COALESCE(r.at_ms, 0)), \
      CASE WHEN r.avail - 1000 * COALESCE(n.n, 0) < 1000 AND s.seen > COALESCE(n.n, 0) THEN ?2 END \
    FROM lim r JOIN (SELECT webhook_id, COUNT(*) AS seen FROM c GROUP BY webhook_id) s ON s.webhook_id = r.id \
    LEFT JOIN (SELECT webhook_id, COUNT(*) AS n FROM claimed GROUP BY webhook_id) n ON n.webhook_id = r.id \
    WHERE r.avail >= 0 \
    ON CONFLICT (webhook_id) DO UPDATE SET tokens = excluded.tokens, at_ms = excluded.at_ms, \
      held_at = COALESCE(excluded.held_at, webhook_buckets.held_at)) \
 SELECT id FROM claimed";

/// How often a PostgreSQL node looks for work it was not told about. Other
/// nodes share the database, and what they claimed can become this node's
/// at any time: a stopping node hands back what it had not sent
/// ([`release`]), a dead node's leases run out, and events raised on another
/// node wait there when that node stops. Nothing wakes this node for those,
/// so it never sleeps longer than this. (A step that finds nothing is one
/// short transaction.) SQLite has one node, woken by everything that
/// changes its work, so it sleeps until the next due time.
const SHARED_RECHECK_MS: u64 = 1_000;

/// When the next delivery falls due, if any waits: the earliest unleased
/// due time of an enabled webhook — for a rate-limited one, no earlier than
/// its bucket's next whole token, or the engine would step again and again
/// with nothing it may claim — or the earliest lease expiry; on
/// PostgreSQL, [`SHARED_RECHECK_MS`] from now at the latest.
fn next_due(host: &dyn Host, now: u64) -> Result<Option<u64>, DbError> {
    // Per webhook, the front of its due rows (past its few leased ones); and
    // the partial index of leased rows. The bucket is read for limited
    // webhooks only ([`bucket::ready_at`]; a missing row is a full bucket).
    let sql = match host.dialect() {
        Dialect::Sqlite => NEXT_DUE_SQLITE,
        Dialect::Postgres => NEXT_DUE_POSTGRES,
    };
    let rows = host.query(sql, &[now.into()])?;
    let due = rows.first().and_then(|r| r.opt_i64(0)).map(|v| u64::try_from(v).unwrap_or(0));
    Ok(match host.dialect() {
        Dialect::Sqlite => due,
        Dialect::Postgres => {
            let recheck = now + SHARED_RECHECK_MS;
            Some(due.map_or(recheck, |t| t.min(recheck)))
        }
    })
}

/// [`next_due`]'s statement; `{max}` is the dialect's larger-of-two.
macro_rules! next_due_sql {
    ($max:literal) => {
        concat!(
            "SELECT MIN(t) FROM (\
               SELECT CASE WHEN s.rate_limit IS NULL OR s.t IS NULL THEN s.t \
                 ELSE COALESCE((SELECT ",
            $max,
            "(s.t, b.at_ms + ",
            $max,
            "(0, (1000 - b.tokens + s.rate_limit - 1) / s.rate_limit)) \
                   FROM webhook_buckets b WHERE b.webhook_id = s.id), s.t) END AS t \
               FROM (SELECT w.id, w.rate_limit, (SELECT d.next_attempt_at FROM deliveries d WHERE d.webhook_id = w.id \
                     AND d.state IN ('pending', 'retrying') AND (d.lease_until IS NULL OR d.lease_until <= ?1) \
                   ORDER BY d.next_attempt_at LIMIT 1) AS t \
                 FROM webhooks w WHERE w.enabled = 1) AS s \
             UNION ALL SELECT MIN(lease_until) FROM deliveries WHERE lease_until > ?1) AS due"
        )
    };
}
const NEXT_DUE_SQLITE: &str = next_due_sql!("MAX");
const NEXT_DUE_POSTGRES: &str = next_due_sql!("GREATEST");

/// Hands back claimed deliveries the host will not send (`deliveries.release`):
/// their leases end now, so the next claim on any node takes them. Nothing
/// is recorded, as nothing was sent. Only rows still leased by this node
/// and waiting are touched: one recorded meanwhile (an attempt that did
/// finish) keeps its state, and one whose lease ran out and was claimed
/// again by another node keeps that node's lease. Called with no ids, when
/// the host has stopped delivering (nothing left on the wire): on
/// PostgreSQL the node then leaves the set sharing each webhook's bound
/// (its heartbeat row), so the others take its share at their next claim.
pub fn release(host: &dyn Host, ids: &[i64]) -> Result<u64, DbError> {
    let node = host.node_id();
    if ids.is_empty() {
        if host.dialect() == Dialect::Postgres {
            host.execute("DELETE FROM nodes WHERE id = ?1", &[node.as_str().into()])?;
        }
        return Ok(0);
    }
    let now = host.now_ms();
    let mut released = 0;
    // One short write per chunk, outside any step: the caller is stopping
    // and other nodes are waiting for these rows.
    // 256: a size `in_list` does not pad.
    for chunk in ids.chunks(256) {
        let (marks, mut params) = in_list(chunk.iter().map(|i| Value::from(*i)).collect());
        params.push(now.into());
        params.push(node.as_str().into());
        let sql = format!(
            "UPDATE deliveries SET lease_until = NULL WHERE id IN ({marks}) AND lease_until > ?{} \
             AND state IN ('pending', 'retrying') AND (lease_owner IS NULL OR lease_owner = ?{})",
            params.len() - 1,
            params.len()
        );
        released += host.execute(&sql, &params)?;
    }
    Ok(released)
}

/// One delivery loaded for an attempt.
struct Job {
    delivery_id: i64,
    webhook_id: i64,
    msg_id: String,
    url: String,
    /// Sealed signing keys, current first; the previous one while a rotation lasts.
    keys: Vec<Vec<u8>>,
    event_type: String,
    occurred_at: u64,
    data: String,
    /// The webhook's custom headers (#24), sealed values still sealed.
    custom: Vec<crate::controls::StoredHeader>,
    /// The digest of the webhook's transformation (#24), if it has one.
    transform: Option<String>,
}

fn load_jobs(host: &dyn Host, ids: &[i64]) -> Result<Vec<Job>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (marks, params) = in_list(ids.iter().map(|i| Value::from(*i)).collect());
    let sql = format!(
        "SELECT d.id, d.msg_id, w.url, e.type, e.occurred_at, e.data, \
         w.secret_sealed, w.prev_secret_sealed, w.prev_secret_until, d.webhook_id, w.custom_headers, t.digest \
         FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id JOIN events e ON e.id = d.event_id \
         LEFT JOIN webhook_transforms t ON t.webhook_id = d.webhook_id \
         WHERE d.id IN ({marks}) ORDER BY d.id"
    );
    let rows = host.query(&sql, &params)?;
    let now = host.now_ms();
    Ok(rows
        .iter()
        .map(|r: Row<'_>| {
            let mut keys: Vec<Vec<u8>> = r.opt_blob(6).into_iter().collect();
            if r.opt_i64(8).is_some_and(|until| until > now as i64) {
                keys.extend(r.opt_blob(7));
            }
            Job {
                delivery_id: r.i64(0),
                webhook_id: r.i64(9),
                msg_id: r.str(1),
                url: r.str(2),
                event_type: r.str(3),
                occurred_at: r.u64(4),
                data: r.str(5),
                keys,
                custom: crate::controls::parse_stored(r.opt_str(10).as_deref()),
                transform: r.opt_str(11),
            }
        })
        .collect())
}

/// Builds every claimed delivery's request; those that cannot be built come
/// back as failed attempts.
fn build_all(
    host: &dyn Host,
    ids: &[i64],
    now: u64,
    timeout_ms: u64,
) -> Result<(Vec<Outgoing>, Vec<Finished>), DbError> {
    let mut ok = Vec::with_capacity(ids.len());
    let mut failed = Vec::new();
    for job in load_jobs(host, ids)? {
        match build_one(host, &job, now, timeout_ms) {
            Ok((request, transformed)) => {
                ok.push(Outgoing { delivery_id: job.delivery_id, webhook_id: job.webhook_id, request, transformed })
            }
            Err(u) => failed.push(Finished {
                delivery_id: job.delivery_id,
                started_ms: now,
                duration_ms: 0,
                result: Err(u.error),
                request_headers: u.headers,
                transformed: u.transformed,
            }),
        }
    }
    Ok((ok, failed))
}

/// Why a delivery's request was not built: the attempt's error, the
/// headers as far as they were built, and what its transformation did.
struct Unbuilt {
    error: AttemptError,
    headers: Vec<(String, String)>,
    transformed: Option<String>,
}

impl Unbuilt {
    fn new(error: impl Into<String>, headers: Vec<(String, String)>) -> Self {
        Unbuilt { error: AttemptError::Transport(error.into()), headers, transformed: None }
    }
}

/// What a transformation made of a delivery, for [`build_one`]: what to
/// send instead, or why nothing is sent.
struct Transformed {
    url: String,
    body: String,
    headers: Vec<(String, String)>,
    note: Note,
}

/// Runs the webhook's transformation on a delivery (#24); `Ok(None)` when
/// it has none.
fn transform_one(host: &dyn Host, j: &Job, body: &str) -> Result<Option<Transformed>, Unbuilt> {
    let Some(digest) = &j.transform else {
        return Ok(None);
    };
    let input = crate::host::TransformInput {
        event_type: j.event_type.clone(),
        msg_id: j.msg_id.clone(),
        timestamp: super::rfc3339(j.occurred_at),
        body: body.to_owned(),
    };
    let failed = |reason: String| Unbuilt {
        error: AttemptError::Transport(reason.clone()),
        headers: Vec::new(),
        transformed: Some(Note::Failed(reason).to_json()),
    };
    match transform::run(host, j.webhook_id, digest, &input) {
        Err(reason) => Err(failed(reason)),
        Ok(crate::host::TransformOutcome::Skip(why)) => Err(Unbuilt {
            transformed: Some(Note::Skipped(why.clone()).to_json()),
            error: AttemptError::Skipped(why),
            headers: Vec::new(),
        }),
        Ok(crate::host::TransformOutcome::Send(out)) => {
            let (url, headers) = transform::apply(&j.url, &out).map_err(failed)?;
            let note = Note::Sent {
                body: out.body.clone(),
                path: out.path.clone(),
                url: url.clone(),
                headers: headers.iter().map(|(n, _)| n.clone()).collect(),
            };
            Ok(Some(Transformed { url, body: out.body.unwrap_or_else(|| body.to_owned()), headers, note }))
        }
    }
}

/// The signed request for one delivery. The host signs with the sealed keys;
/// the plaintext never enters the component.
fn build_one(host: &dyn Host, j: &Job, now: u64, timeout_ms: u64) -> Result<(OutRequest, Option<String>), Unbuilt> {
    #[cfg(feature = "test-hooks")]
    if j.data.contains(r#""__hook":"trap-build""#) {
        panic!("test hook: trap while building a request");
    }
    if j.occurred_at > super::MAX_TIME_MS {
        // Refused at intake since 0.2; a row stored before may hold one.
        return Err(Unbuilt::new(
            format!("not sent: the event's time ({} ms since 1970) is past the year 9999", j.occurred_at),
            Vec::new(),
        ));
    }
    let ts = now / 1000;
    let body = payload(&j.event_type, j.occurred_at, &j.data);
    // The transformation runs first, so that the signature covers the body
    // actually sent (#24).
    let transformed = transform_one(host, j, &body)?;
    let (url, body) = match &transformed {
        Some(t) => (t.url.clone(), t.body.clone()),
        None => (j.url.clone(), body),
    };
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("user-agent".to_owned(), concat!("panel-webhooks/", env!("CARGO_PKG_VERSION")).to_owned()),
        ("webhook-id".to_owned(), j.msg_id.clone()),
        ("webhook-timestamp".to_owned(), ts.to_string()),
    ];
    if !j.keys.is_empty() {
        let content = signing::signed_content(&j.msg_id, ts, body.as_bytes());
        // Several signatures, space-separated, while a rotation lasts.
        let sigs = j
            .keys
            .iter()
            .map(|k| host.sign(k, &content).map(|mac| signing::signature(&mac)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Unbuilt::new(format!("not sent: the signing secret is unusable: {e}"), headers.clone()))?;
        headers.push(("webhook-signature".to_owned(), sigs.join(" ")));
    }
    // The webhook's custom headers (#24), after the product's own (their
    // names can never be one of those: `controls::validate_headers`).
    let custom = crate::controls::headers_to_send(host, &j.custom).map_err(|e| Unbuilt::new(e, headers.clone()))?;
    headers.extend(custom);
    let mut note = None;
    if let Some(t) = transformed {
        // The transformation's headers come last and replace a custom header
        // of the same name: it is the more specific of the two. (Neither can
        // name one of the product's own: `controls::refused_name`.)
        headers.retain(|(n, _)| !t.headers.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)));
        headers.extend(t.headers);
        note = Some(t.note.to_json());
    }
    Ok((OutRequest { url, headers, body: body.into_bytes(), timeout_ms }, note))
}

/// What a recorded attempt changes on its webhook, summed over a batch.
#[derive(Default)]
struct WebhookTouch {
    last: Option<(u64, String, Option<u16>, bool)>,
    had_success: bool,
    /// First failure after the batch's last success.
    failing_since: Option<u64>,
    gone: bool,
    /// The webhook's failure streak as stored before this batch.
    stored_failing_since: Option<u64>,
    /// The batch's last failure (status, words), for a `webhook.failing`
    /// notice (#24).
    last_failure: Option<(Option<u16>, String)>,
}

/// A webhook's change of state after a batch (#24): disabled (why; 410
/// Gone), or failing (the last failure's status and words).
enum Transition {
    Disable(String, bool),
    Failing(Option<u16>, String),
}

/// What a recorded batch leaves to write on rows every node shares: the
/// health rollup and each webhook's last hit and failure streak.
struct Recorded {
    outcomes: Vec<Outcome>,
    rollup: health::Rollup,
    touched: Vec<(i64, WebhookTouch)>,
}

/// Each webhook's last hit and failure streak after a batch, on SQLite
/// (one writer: the batch recorded last is the last hit). `failing_since`
/// marks the first failure after the last success.
const TOUCH_WEBHOOK: &str = "UPDATE webhooks SET last_event_type = ?2, last_event_at = ?3, last_status = ?4, \
     last_ok = ?5, failing_since = CASE WHEN ?6 = 1 THEN ?7 ELSE COALESCE(failing_since, ?7) END WHERE id = ?1";

/// [`Recorded::bookkeep`] on PostgreSQL, in one statement: `?1` the
/// webhooks' last hits (JSON, one object per webhook, as [`TOUCH_WEBHOOK`]'s
/// parameters), `?2` the rollup's increments. The last hit only moves
/// forward: another node may have written a later one first. The webhooks' rows are locked
/// in id order and the rollup's inserted in key order, so two nodes writing
/// the same rows never deadlock. Its commit does not wait for the WAL to
/// reach the disk (`synchronous_commit` off for this transaction alone): a
/// server crash may lose the last moments of health counts and last hits,
/// never an attempt, and each step's own commit (the attempts, the raised
/// events) still waits for the disk.
const BOOKKEEP_POSTGRES: &str = "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS s), \
 hits AS (SELECT * FROM jsonb_to_recordset(?1::jsonb) AS x(id bigint, event_type text, at bigint, \
       status bigint, ok bigint, had_success bigint, failing_since bigint)), \
 locked AS (SELECT w.id FROM webhooks w WHERE w.id IN (SELECT id FROM hits) ORDER BY w.id FOR NO KEY UPDATE), \
 touched AS (UPDATE webhooks w SET \
       last_event_type = CASE WHEN COALESCE(w.last_event_at, 0) <= x.at THEN x.event_type ELSE w.last_event_type END, \
       last_status = CASE WHEN COALESCE(w.last_event_at, 0) <= x.at THEN x.status ELSE w.last_status END, \
       last_ok = CASE WHEN COALESCE(w.last_event_at, 0) <= x.at THEN x.ok ELSE w.last_ok END, \
       last_event_at = CASE WHEN COALESCE(w.last_event_at, 0) <= x.at THEN x.at ELSE w.last_event_at END, \
       failing_since = CASE WHEN x.had_success = 1 THEN x.failing_since \
                            ELSE COALESCE(w.failing_since, x.failing_since) END \
       FROM hits x WHERE w.id = x.id AND w.id IN (SELECT id FROM locked) RETURNING 1), \
 rolled AS (INSERT INTO attempt_rollups (webhook_id, hour, bucket, attempts, successes) \
       SELECT w, h, b, n, ok FROM jsonb_to_recordset(?2::jsonb) AS r(w bigint, h bigint, b bigint, n bigint, ok bigint) \
       ORDER BY w, h, b \
       ON CONFLICT (webhook_id, hour, bucket) DO UPDATE SET attempts = attempt_rollups.attempts + excluded.attempts, \
       successes = attempt_rollups.successes + excluded.successes RETURNING 1) \
 SELECT (SELECT s FROM relaxed), (SELECT COUNT(*) FROM touched), (SELECT COUNT(*) FROM rolled)";

impl Recorded {
    /// Writes the rollup, then each webhook's last hit and streak, and
    /// disables a webhook the policy says must go; in the caller's
    /// transaction (SQLite), or on its own (PostgreSQL, see
    /// [`Recorded::bookkeep_after_commit`]). Rows in key order (the rollup
    /// is a `BTreeMap`, webhooks sorted by id), so two nodes writing the
    /// same rows lock them in the same order and never deadlock.
    fn bookkeep(&self, host: &dyn Host, settings: &Settings, done: u64) -> Result<(), DbError> {
        let mut touched: Vec<_> =
            self.touched.iter().filter_map(|(w, t)| t.last.as_ref().map(|last| (*w, t, last))).collect();
        touched.sort_by_key(|(w, _, _)| *w);
        // Transitions (#24) in webhook id order, the order every writer of
        // these rows locks them in (two nodes never deadlock on them).
        let mut transitions: Vec<(i64, Transition)> = Vec::new();
        for (webhook_id, t, _) in &touched {
            // The streak as the update leaves it.
            let failing_since =
                if t.had_success { t.failing_since } else { t.stored_failing_since.or(t.failing_since) };
            if let Some(reason) = policy::disable_reason(t.gone, failing_since, done, settings.auto_disable_after_ms) {
                transitions.push((*webhook_id, Transition::Disable(reason, t.gone)));
            } else if failing_since.is_some()
                && let Some((status, words)) = &t.last_failure
            {
                transitions.push((*webhook_id, Transition::Failing(*status, words.clone())));
            }
        }
        match host.dialect() {
            Dialect::Sqlite => {
                self.rollup.write(host)?;
                let rows: Vec<Vec<Value>> = touched
                    .iter()
                    .map(|(webhook_id, t, (at, event_type, status, ok))| {
                        vec![
                            (*webhook_id).into(),
                            event_type.as_str().into(),
                            (*at).into(),
                            status.map(i64::from).into(),
                            (*ok).into(),
                            t.had_success.into(),
                            t.failing_since.into(),
                        ]
                    })
                    .collect();
                host.execute_many(TOUCH_WEBHOOK, &rows)?;
            }
            Dialect::Postgres => {
                // Flags as 0/1: the statement reads them as bigint.
                let hits: Vec<serde_json::Value> = touched
                    .iter()
                    .map(|(webhook_id, t, (at, event_type, status, ok))| {
                        json!({"id": webhook_id, "event_type": event_type, "at": at, "status": status,
                               "ok": u8::from(*ok), "had_success": u8::from(t.had_success),
                               "failing_since": t.failing_since})
                    })
                    .collect();
                let rollup: Vec<serde_json::Value> = self
                    .rollup
                    .entries()
                    .map(|(w, h, b, n, ok)| json!({"w": w, "h": h, "b": b, "n": n, "ok": ok}))
                    .collect();
                if !hits.is_empty() || !rollup.is_empty() {
                    host.query(BOOKKEEP_POSTGRES, &[json!(hits).to_string().into(), json!(rollup).to_string().into()])?;
                }
            }
        }
        if transitions.is_empty() {
            return Ok(());
        }
        // The transitions and their notices (#24) commit together: in the
        // step's transaction on SQLite, in one of their own on PostgreSQL
        // (this runs after the step's commit there).
        let transitions = || -> Result<(), DbError> {
            for (webhook_id, transition) in &transitions {
                let (reason, gone) = match transition {
                    Transition::Failing(status, words) => {
                        super::notices::failing(host, *webhook_id, *status, words, done)?;
                        continue;
                    }
                    Transition::Disable(reason, gone) => (reason, gone),
                };
                // The streak is checked again on the stored row: another node may
                // have recorded a success since this batch read it.
                let taken = host.query(
                    "UPDATE webhooks SET enabled = 0, disabled_reason = ?2, disabled_at = ?3 WHERE id = ?1 \
                     AND enabled = 1 AND (?4 = 1 OR failing_since <= ?5) RETURNING name, url",
                    &[
                        (*webhook_id).into(),
                        reason.as_str().into(),
                        done.into(),
                        (*gone).into(),
                        done.saturating_sub(settings.auto_disable_after_ms).into(),
                    ],
                )?;
                if let Some(r) = taken.first() {
                    let queued = super::notices::disabled(host, *webhook_id, &r.str(0), &r.str(1), done, reason)?;
                    host.log(
                        Level::Warn,
                        &format!("webhook {webhook_id} disabled: {reason} (notice queued to {queued})"),
                    );
                }
            }
            Ok(())
        };
        match host.dialect() {
            Dialect::Sqlite => transitions(),
            Dialect::Postgres => transaction(host, transitions),
        }
    }

    /// [`Recorded::bookkeep`] after the step's commit, on PostgreSQL: every
    /// node writes these rows, and inside the step's transaction their row
    /// locks would make the nodes' steps wait on each other until each
    /// commit. Here it is one statement ([`BOOKKEEP_POSTGRES`]), its own
    /// transaction, its locks held only while it runs: one round trip. A
    /// failure costs the health view and the last hit one batch, never an
    /// attempt (those are committed): it is logged, and the step goes on.
    fn bookkeep_after_commit(&self, host: &dyn Host, settings: &Settings, done: u64) {
        if let Err(e) = self.bookkeep(host, settings, done) {
            host.log(Level::Warn, &format!("recording webhooks' last hit and health failed for one batch: {e}"));
        }
    }
}

/// Records finished attempts in one transaction: one attempt row each, the
/// delivery's next state from [`policy`], and each webhook's last hit and
/// failure streak once per batch (disabling it when the policy says so).
/// Deliveries deleted meanwhile (their webhook was deleted) are skipped:
/// deleting wins.
pub fn record_attempts(
    host: &dyn Host,
    settings: &Settings,
    finished: &[Finished],
    mode: Mode,
) -> Result<Vec<Outcome>, DbError> {
    if finished.is_empty() {
        return Ok(Vec::new());
    }
    let done = host.now_ms();
    let random = host.random_bytes(4 * finished.len());
    let recorded = match host.dialect() {
        Dialect::Sqlite => transaction(host, || {
            let r = record_in(host, settings, finished, mode, done, &random)?;
            r.bookkeep(host, settings, done)?;
            Ok::<_, DbError>(r)
        })?,
        Dialect::Postgres => {
            let r = transaction(host, || record_in(host, settings, finished, mode, done, &random))?;
            r.bookkeep_after_commit(host, settings, done);
            r
        }
    };
    count_outcomes(host, &recorded.outcomes);
    Ok(recorded.outcomes)
}

/// Telemetry: how the recorded attempts left their deliveries.
fn count_outcomes(host: &dyn Host, outcomes: &[Outcome]) {
    if outcomes.is_empty() {
        return;
    }
    let count = |s: DeliveryState| outcomes.iter().filter(|o| o.state == s).count() as u32;
    host.attempts_recorded(
        count(DeliveryState::Succeeded),
        count(DeliveryState::Retrying),
        count(DeliveryState::Exhausted),
        count(DeliveryState::Skipped),
    );
}

/// [`record_attempts`]'s work, inside the caller's write transaction; `random` holds
/// four bytes of jitter per finished attempt.
fn record_in(
    host: &dyn Host,
    settings: &Settings,
    finished: &[Finished],
    mode: Mode,
    done: u64,
    random: &[u8],
) -> Result<Recorded, DbError> {
    if finished.is_empty() {
        return Ok(Recorded { outcomes: Vec::new(), rollup: health::Rollup::default(), touched: Vec::new() });
    }
    {
        let (marks, ids) = in_list(finished.iter().map(|f| Value::from(f.delivery_id)).collect());
        // On PostgreSQL the rows are locked, in id order: a delivery whose
        // lease ran out and that another node sent again may be recorded by
        // both at once, and the second must see the first's attempt count.
        let lock = match host.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " ORDER BY d.id FOR UPDATE OF d",
        };
        let sql = format!(
            "SELECT d.id, d.webhook_id, d.attempts, e.type, d.last_error, d.state, w.failing_since FROM deliveries d \
             JOIN events e ON e.id = d.event_id JOIN webhooks w ON w.id = d.webhook_id WHERE d.id IN ({marks}){lock}"
        );
        type Facts = (i64, i64, String, String, DeliveryState, Option<u64>);
        let facts: HashMap<i64, Facts> = host
            .query(&sql, &ids)?
            .iter()
            .map(|r| {
                let failing_since = r.opt_i64(6).and_then(|v| u64::try_from(v).ok());
                (
                    r.i64(0),
                    (r.i64(1), r.i64(2), r.str(3), r.str(4), DeliveryState::from_stored(&r.str(5)), failing_since),
                )
            })
            .collect();
        let mut attempt_rows = Vec::with_capacity(finished.len());
        let mut delivery_rows = Vec::with_capacity(finished.len());
        let mut touched: Vec<(i64, WebhookTouch)> = Vec::new();
        let mut outcomes = Vec::with_capacity(finished.len());
        let mut rollup = health::Rollup::default();
        // Attempt numbers run on from the stored count, across this batch:
        // two answers for one delivery (a late one and a retry) never share
        // a number, and a late answer kept only as history still counts.
        let mut numbered: HashMap<i64, u64> = HashMap::new();
        let mut counted_only = Vec::new();
        let mut order: Vec<usize> = (0..finished.len()).collect();
        order.sort_by_key(|&i| finished[i].started_ms);
        for i in order {
            let f = &finished[i];
            let Some((webhook_id, attempts, event_type, last_error, state, stored_failing_since)) =
                facts.get(&f.delivery_id)
            else {
                continue;
            };
            let n = numbered.entry(f.delivery_id).or_insert_with(|| u64::try_from(*attempts).unwrap_or(0));
            *n += 1;
            let attempt_no = *n;
            // A delivery whose build trapped twice running is ended, not
            // retried for days: the same row traps the same code again.
            let mut quarantined = false;
            let (status, error, resp_headers, body, body_size, retry_after) = match &f.result {
                Ok(resp) => (
                    Some(resp.status),
                    None,
                    Some(headers_json(&resp.headers)),
                    Some(String::from_utf8_lossy(&resp.body[..resp.body.len().min(MAX_STORED_BODY)]).into_owned()),
                    Some(resp.body_size),
                    policy::retry_after_ms(resp, done),
                ),
                Err(AttemptError::Transport(e)) => (None, Some(e.clone()), None, None, None, None),
                Err(AttemptError::BuildFailed(id)) => {
                    let mut e = format!("{BUILD_FAILED} (error {id}; the operator's log has the details)");
                    if last_error.starts_with(BUILD_FAILED) {
                        quarantined = true;
                        e.push_str(
                            "; quarantined: it failed the same way before, so it is not retried. \
                             Resend it once the cause is fixed.",
                        );
                    }
                    (None, Some(e), None, None, None, None)
                }
                Err(e @ AttemptError::Skipped(_)) => (None, Some(e.to_string()), None, None, None, None),
            };
            let skipped = matches!(f.result, Err(AttemptError::Skipped(_)));
            let success = status.is_some_and(policy::is_success);
            let error = match (status, error) {
                (Some(s), None) if (300..400).contains(&s) => Some(format!("HTTP {s}: redirects are not followed")),
                (_, e) => e,
            };
            let r = random.get(4 * i..4 * i + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            let next = if skipped {
                policy::Next { state: DeliveryState::Skipped, at_ms: None }
            } else if quarantined {
                policy::Next { state: DeliveryState::Exhausted, at_ms: None }
            } else {
                policy::after_attempt(&settings.retry_schedule_ms, attempt_no, status, retry_after, mode, done, r)
            };
            attempt_rows.push(vec![
                f.delivery_id.into(),
                (*webhook_id).into(),
                attempt_no.into(),
                f.started_ms.into(),
                f.duration_ms.into(),
                headers_json(&crate::controls::mask_sent(&f.request_headers)).into(),
                status.map(i64::from).into(),
                resp_headers.into(),
                body.into(),
                body_size.into(),
                error.clone().into(),
                success.into(),
                f.transformed.clone().into(),
            ]);
            // A skip was sent to nobody: neither a success nor a failure, so
            // it counts in neither the health view nor the failure streak,
            // and is not the webhook's last hit (#24).
            if skipped {
                delivery_rows.push(vec![
                    f.delivery_id.into(),
                    next.state.as_str().into(),
                    attempt_no.into(),
                    next.at_ms.into(),
                    Value::Null,
                    error.clone().into(),
                ]);
                outcomes.push(Outcome { delivery_id: f.delivery_id, status, error, success, state: next.state });
                continue;
            }
            // Every attempt at a real event counts toward the health view,
            // the late answer below included (the receiver did answer it);
            // a test send is the admin's one-off, as for the failure streak.
            if event_type != catalog::TEST_EVENT {
                rollup.add(*webhook_id, f.started_ms, status, f.duration_ms, success);
            }
            // An answer that comes after the delivery succeeded (its lease
            // ran out while it waited, and another attempt got through) is
            // history, not news: kept as an attempt, but it neither undoes
            // the success nor counts against the webhook. A resend
            // (`Mode::Once`) is the admin asking again, and does count.
            if mode == Mode::Scheduled && *state == DeliveryState::Succeeded && !success {
                counted_only.push(vec![f.delivery_id.into(), attempt_no.into()]);
                continue;
            }
            delivery_rows.push(vec![
                f.delivery_id.into(),
                next.state.as_str().into(),
                attempt_no.into(),
                next.at_ms.into(),
                status.map(i64::from).into(),
                error.clone().into(),
            ]);
            // A test is one attempt the admin asked for: it is in the
            // history, but it is not the webhook's last event hit and does
            // not start (or end) a failure streak toward auto-disable (#13).
            if event_type == catalog::TEST_EVENT {
                outcomes.push(Outcome { delivery_id: f.delivery_id, status, error, success, state: next.state });
                continue;
            }
            let t = match touched.iter_mut().find(|(w, _)| w == webhook_id) {
                Some((_, t)) => t,
                None => {
                    touched.push((
                        *webhook_id,
                        WebhookTouch { stored_failing_since: *stored_failing_since, ..WebhookTouch::default() },
                    ));
                    &mut touched.last_mut().expect("just pushed").1
                }
            };
            t.last = Some((f.started_ms, event_type.clone(), status, success));
            if success {
                t.had_success = true;
                t.failing_since = None;
            } else {
                t.failing_since.get_or_insert(f.started_ms);
                let words = match (status, &error) {
                    (_, Some(e)) => e.clone(),
                    (Some(s), None) => format!("HTTP {s}"),
                    (None, None) => "no response".to_owned(),
                };
                t.last_failure = Some((status, words));
            }
            t.gone |= status == Some(410);
            outcomes.push(Outcome { delivery_id: f.delivery_id, status, error, success, state: next.state });
        }
        host.execute_many(
            "INSERT INTO attempts (delivery_id, webhook_id, attempt_no, attempted_at, duration_ms, request_headers, \
             response_status, response_headers, response_body, response_body_size, error, success, transform) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            &attempt_rows,
        )?;
        host.execute_many(
            "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, lease_until = NULL, \
             last_status = ?5, last_error = ?6 WHERE id = ?1",
            &delivery_rows,
        )?;
        if !counted_only.is_empty() {
            host.execute_many("UPDATE deliveries SET attempts = ?2 WHERE id = ?1 AND attempts < ?2", &counted_only)?;
        }
        Ok(Recorded { outcomes, rollup, touched })
    }
}

/// Headers as a JSON array of `[name, value]`, each value and the total capped.
fn headers_json(headers: &[(String, String)]) -> String {
    let mut total = 0;
    let mut out = Vec::new();
    for (k, v) in headers {
        let v: String = if v.len() > MAX_HEADER_VALUE {
            let mut end = MAX_HEADER_VALUE;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &v[..end])
        } else {
            v.clone()
        };
        total += k.len() + v.len();
        if total > MAX_HEADERS_TOTAL {
            out.push(json!(["…", "further headers not stored"]));
            break;
        }
        out.push(json!([k, v]));
    }
    serde_json::Value::Array(out).to_string()
}

/// Sends the given (already leased) deliveries now through wasi:http, waits
/// for every answer (the host's attempt deadline bounds it) and records one
/// attempt each; answers their outcomes.
pub fn send_now(host: &dyn Host, ids: &[i64], mode: Mode) -> Result<Vec<Outcome>, DbError> {
    let now = host.now_ms();
    let (built, finished) = build_all(host, ids, now, host.settings().attempt_timeout_ms)?;
    send_built(host, built, finished, now, mode)
}

/// [`send_now`] for requests already built (`finished`: those that could
/// not be, recorded as failed attempts).
fn send_built(
    host: &dyn Host,
    built: Vec<Outgoing>,
    mut finished: Vec<Finished>,
    now: u64,
    mode: Mode,
) -> Result<Vec<Outcome>, DbError> {
    let settings = host.settings();
    let timeout = settings.attempt_timeout_ms;
    let mut flying = Vec::new();
    for o in built {
        match host.http_start(&o.request) {
            Ok(ticket) => flying.push((ticket, o)),
            Err(e) => finished.push(Finished {
                delivery_id: o.delivery_id,
                started_ms: now,
                duration_ms: 0,
                result: Err(e.into()),
                request_headers: o.request.headers,
                transformed: o.transformed,
            }),
        }
    }
    while !flying.is_empty() {
        for (ticket, sent) in host.http_wait(timeout + 1000) {
            if let Some(i) = flying.iter().position(|(t, _)| *t == ticket) {
                let (_, o) = flying.swap_remove(i);
                let started_ms = now;
                finished.push(Finished {
                    delivery_id: o.delivery_id,
                    started_ms,
                    duration_ms: sent.duration_ms.unwrap_or_else(|| host.now_ms().saturating_sub(started_ms)),
                    result: sent.result.map_err(AttemptError::Transport),
                    request_headers: o.request.headers,
                    transformed: o.transformed,
                });
            }
        }
    }
    record_attempts(host, &settings, &finished, mode)
}

/// Sends `test.webhook` to one webhook now and records it; one attempt only.
pub fn send_test(host: &dyn Host, webhook_id: i64, actor: &str) -> Result<Option<Outcome>, DbError> {
    let now = host.now_ms();
    let lease = now + host.settings().lease_ms;
    let id = format!("evt_test_{}", hex(&host.random_bytes(8)));
    let delivery = transaction(host, || {
        let rows = host.query("SELECT created_at FROM webhooks WHERE id = ?1", &[webhook_id.into()])?;
        let Some(created_at) = rows.first().map(|r| r.i64(0)) else {
            return Ok(None);
        };
        let data = json!({
            "webhook_id": webhook_id,
            "message": "This is a test delivery sent from the panel's webhook settings.",
            "sent_by": actor,
        });
        host.execute(
            "INSERT INTO events (id, type, occurred_at, data, raised_at) VALUES (?1, ?2, ?3, ?4, ?3)",
            &[id.as_str().into(), catalog::TEST_EVENT.into(), now.into(), data.to_string().into()],
        )?;
        // Leased at once so no worker picks it up while we send it here.
        let row = delivery_row(&id, webhook_id, created_at, now, now, Some(lease));
        host.execute(INSERT_DELIVERY, &row)?;
        let rows = host.query(
            "SELECT id FROM deliveries WHERE event_id = ?1 AND webhook_id = ?2",
            &[id.as_str().into(), webhook_id.into()],
        )?;
        Ok(rows.first().map(|r| r.i64(0)))
    })?;
    let Some(delivery) = delivery else {
        return Ok(None);
    };
    Ok(send_now(host, &[delivery], Mode::Once)?.into_iter().next())
}

/// Sends one delivery again now (same `webhook-id`). Answers `None` when the
/// delivery does not belong to the webhook or is being sent right now.
pub fn resend(host: &dyn Host, webhook_id: i64, delivery_id: i64) -> Result<Option<Outcome>, DbError> {
    let now = host.now_ms();
    let settings = host.settings();
    // Built before the lease is taken: building only reads, so a row that
    // makes the component fail (a quarantined one, before its fix) leaves
    // the delivery as it was, free to resend, not leased for a minute.
    let (built, failed) = build_all(host, &[delivery_id], now, settings.attempt_timeout_ms)?;
    let lease = now + settings.lease_ms;
    let leased = host.query(
        "UPDATE deliveries SET lease_until = ?3, lease_owner = ?5 WHERE id = ?1 AND webhook_id = ?2 \
         AND (lease_until IS NULL OR lease_until <= ?4) RETURNING state",
        &[delivery_id.into(), webhook_id.into(), lease.into(), now.into(), host.node_id().into()],
    )?;
    let Some(state) = leased.first().map(|r| DeliveryState::from_stored(&r.str(0))) else {
        return Ok(None);
    };
    // A delivery still on its schedule stays on it; a finished one gets one more try.
    let mode = if state.is_waiting() { Mode::Scheduled } else { Mode::Once };
    Ok(send_built(host, built, failed, now, mode)?.into_iter().next())
}

/// Puts every exhausted delivery of a webhook created at or after `since_ms`
/// back on the schedule, due now (one more attempt each). Answers how many.
pub fn retry_failed_since(host: &dyn Host, webhook_id: i64, since_ms: u64) -> Result<u64, DbError> {
    host.execute(
        "UPDATE deliveries SET state = 'retrying', next_attempt_at = ?3, lease_until = NULL \
         WHERE webhook_id = ?1 AND state = 'exhausted' AND created_at >= ?2 \
         AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = deliveries.event_id AND e.type = ?4)",
        &[webhook_id.into(), since_ms.into(), host.now_ms().into(), catalog::TEST_EVENT.into()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_capped() {
        let big = vec![("x-big".to_owned(), "v".repeat(5000))];
        let j = headers_json(&big);
        assert!(j.len() < 1100);
        let many: Vec<_> = (0..100).map(|i| (format!("h{i}"), "v".repeat(1000))).collect();
        assert!(headers_json(&many).len() < MAX_HEADERS_TOTAL + 200);
    }
}
