//! Maintenance: what waits in the outbox, and pruning old history.

use crate::host::{DbError, Host};

/// What waits in the outbox (see `deliveries.queue-stats`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct QueueStats {
    pub pending: u64,
    pub retrying: u64,
    pub oldest_waiting_ms: Option<u64>,
}

/// Counts waiting deliveries; served by the partial `deliveries_due` index.
pub fn stats(host: &dyn Host) -> Result<QueueStats, DbError> {
    let rows = host.query(
        "SELECT COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN state = 'retrying' THEN 1 ELSE 0 END), 0), MIN(created_at) \
         FROM deliveries WHERE state IN ('pending', 'retrying')",
        &[],
    )?;
    Ok(rows
        .first()
        .map(|r| QueueStats {
            pending: r.u64(0),
            retrying: r.u64(1),
            oldest_waiting_ms: r.opt_i64(2).map(|v| v as u64),
        })
        .unwrap_or_default())
}

/// Rows deleted by one maintenance pass.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pruned {
    pub attempts: u64,
    pub deliveries: u64,
    pub events: u64,
    /// Rows of the health view's hourly rollup (not reported to the host:
    /// `deliveries.pruned` keeps its three fields).
    pub rollups: u64,
    /// Admin sessions past their time (see `sessions`; not reported either).
    pub sessions: u64,
    /// Records of events a payload filter kept out (#24; not reported).
    pub filtered: u64,
}

/// Rows deleted per statement, so the write lock is held briefly.
const PRUNE_BATCH: u32 = 2000;
/// Statements per table per pass; the next pass continues.
const PRUNE_ROUNDS: u32 = 50;

/// A heartbeat this old names a node that is gone (a live one beats every
/// second), kept only for an operator to see for a while.
const STALE_NODE_MS: u64 = 60 * 60 * 1000;

/// Deletes history older than the retention period: attempts of finished
/// deliveries, then finished deliveries without attempts, then events
/// without deliveries, then the health rollups of hours before the cutoff;
/// admin sessions past their time, and heartbeats of nodes long gone.
/// Pending and retrying work is never pruned.
pub fn maintain(host: &dyn Host) -> Result<Pruned, DbError> {
    let cutoff = host.now_ms().saturating_sub(host.settings().retention_ms);
    let mut p = Pruned::default();
    let steps: [(&str, u64, &mut u64); 5] = [
        (
            "DELETE FROM attempts WHERE id IN (SELECT a.id FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE a.attempted_at < ?1 AND d.state IN ('succeeded', 'exhausted') LIMIT ?2)",
            cutoff,
            &mut p.attempts,
        ),
        (
            "DELETE FROM deliveries WHERE id IN (SELECT d.id FROM deliveries d WHERE d.created_at < ?1 \
             AND d.state IN ('succeeded', 'exhausted') \
             AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id) LIMIT ?2)",
            cutoff,
            &mut p.deliveries,
        ),
        (
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.raised_at < ?1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT ?2)",
            cutoff,
            &mut p.events,
        ),
        (crate::health::PRUNE_SQL, crate::health::prune_before(cutoff), &mut p.rollups),
        (
            "DELETE FROM filtered_events WHERE (webhook_id, event_id) IN (SELECT f.webhook_id, f.event_id \
             FROM filtered_events f WHERE f.filtered_at < ?1 LIMIT ?2)",
            cutoff,
            &mut p.filtered,
        ),
    ];
    for (sql, before, count) in steps {
        for _ in 0..PRUNE_ROUNDS {
            let n = host.execute(sql, &[before.into(), PRUNE_BATCH.into()])?;
            *count += n;
            if n < u64::from(PRUNE_BATCH) {
                break;
            }
        }
    }
    p.sessions = crate::sessions::prune(host, host.now_ms())?;
    // Heartbeat rows of nodes that stopped without leaving (a crash, a
    // kill): every start is a new node, so they would pile up.
    host.execute("DELETE FROM nodes WHERE seen_at < ?1", &[host.now_ms().saturating_sub(STALE_NODE_MS).into()])?;
    Ok(p)
}
