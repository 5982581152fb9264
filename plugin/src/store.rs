//! Webhook records and the history queries behind the admin pages.

use crate::catalog;
use crate::controls;
use crate::host::{DbError, Dialect, Host, Row, Value, transaction};
use crate::outbox::DeliveryState;
use crate::webhook::{MAX_WEBHOOKS, Valid};
// The skipped note's prefix (#24) is a `LIKE` pattern as it is: no quote or wildcard in it.
use crate::transform::SKIPPED_PREFIX;

/// A webhook as the dashboard and forms show it. Secrets are sealed by the
/// host and never read here; pages learn only whether one is set.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub has_secret: bool,
    pub secret_set_at: Option<u64>,
    /// While a rotation lasts, the previous secret also signs until then.
    pub previous_secret_until: Option<u64>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<u64>,
    pub events: Vec<String>,
    pub last_event_type: Option<String>,
    pub last_event_at: Option<u64>,
    pub last_status: Option<i64>,
    pub last_ok: Option<bool>,
    /// Deliveries waiting for a retry, and the earliest retry time.
    pub retrying: i64,
    pub next_retry_at: Option<u64>,
    /// Custom headers (#24), sealed values still sealed.
    pub headers: Vec<controls::StoredHeader>,
    /// The payload filter (#24).
    pub filter: Option<String>,
    /// When the current failure streak began, if one is open.
    pub failing_since: Option<u64>,
    /// A `webhook.failing` notice was raised for the open streak.
    pub failing_noticed: bool,
    /// Deliveries per second at most; `None`: no limit.
    pub rate_limit: Option<u32>,
    /// The last time the rate limit held a due delivery back.
    pub rate_limited_at: Option<u64>,
    /// Its transformation (#24), if it has one (never its bytes).
    pub transform: Option<crate::transform::Attached>,
}

impl Webhook {
    /// Being held back by its rate limit: it held a due delivery back in the
    /// last [`HELD_SHOWN_MS`](crate::outbox::bucket::HELD_SHOWN_MS).
    pub fn held_back(&self, now: u64) -> bool {
        self.rate_limit.is_some()
            && self.rate_limited_at.is_some_and(|t| now.saturating_sub(t) < crate::outbox::bucket::HELD_SHOWN_MS)
    }
}

impl Webhook {
    /// Disabled by the product (a failure streak, 410 Gone), not an admin.
    pub fn auto_disabled(&self) -> bool {
        !self.enabled && self.disabled_reason.as_deref().is_some_and(|r| r != ADMIN_DISABLED)
    }

    /// Failing: a notice was raised for its open failure streak.
    pub fn failing(&self) -> bool {
        self.enabled && self.failing_noticed && self.failing_since.is_some()
    }
}

/// The reason a webhook disabled by an admin carries.
pub const ADMIN_DISABLED: &str = "Disabled by an admin.";

const WEBHOOK_COLUMNS: &str = "w.id, w.name, w.url, CASE WHEN w.secret_sealed IS NULL THEN 0 ELSE 1 END, w.enabled, w.disabled_reason, w.disabled_at, \
     w.last_event_type, w.last_event_at, w.last_status, w.last_ok, \
     (SELECT COUNT(*) FROM deliveries d WHERE d.webhook_id = w.id AND d.state = 'retrying'), \
     (SELECT MIN(d.next_attempt_at) FROM deliveries d WHERE d.webhook_id = w.id AND d.state = 'retrying'), \
     w.secret_set_at, w.prev_secret_until, w.custom_headers, w.payload_filter, w.failing_since, \
     CASE WHEN w.failing_noticed IS NOT NULL AND w.failing_noticed = w.failing_since THEN 1 ELSE 0 END, \
     w.rate_limit, (SELECT b.held_at FROM webhook_buckets b WHERE b.webhook_id = w.id), \
     (SELECT t.digest FROM webhook_transforms t WHERE t.webhook_id = w.id), \
     (SELECT t.size FROM webhook_transforms t WHERE t.webhook_id = w.id), \
     (SELECT t.uploaded_at FROM webhook_transforms t WHERE t.webhook_id = w.id)";

fn webhook_from(r: &Row<'_>) -> Webhook {
    Webhook {
        id: r.i64(0),
        name: r.str(1),
        url: r.str(2),
        has_secret: r.bool(3),
        secret_set_at: r.opt_i64(13).map(|v| v as u64),
        previous_secret_until: r.opt_i64(14).map(|v| v as u64),
        enabled: r.bool(4),
        disabled_reason: r.opt_str(5),
        disabled_at: r.opt_i64(6).map(|v| v as u64),
        events: Vec::new(),
        last_event_type: r.opt_str(7),
        last_event_at: r.opt_i64(8).map(|v| v as u64),
        last_status: r.opt_i64(9),
        last_ok: r.opt_i64(10).map(|v| v != 0),
        retrying: r.i64(11),
        next_retry_at: r.opt_i64(12).map(|v| v as u64),
        headers: controls::parse_stored(r.opt_str(15).as_deref()),
        filter: r.opt_str(16),
        failing_since: r.opt_i64(17).map(|v| v as u64),
        failing_noticed: r.bool(18),
        rate_limit: r.opt_i64(19).and_then(|v| u32::try_from(v).ok()),
        rate_limited_at: r.opt_i64(20).and_then(|v| u64::try_from(v).ok()),
        transform: r.opt_str(21).map(|digest| crate::transform::Attached {
            digest,
            size: r.u64(22),
            uploaded_at: r.u64(23),
        }),
    }
}

fn attach_events(host: &dyn Host, hooks: &mut [Webhook]) -> Result<(), DbError> {
    let rows = host.query("SELECT webhook_id, event_type FROM webhook_events ORDER BY webhook_id", &[])?;
    for r in rows.iter() {
        let id = r.i64(0);
        if let Some(h) = hooks.iter_mut().find(|h| h.id == id) {
            h.events.push(r.str(1));
        }
    }
    for h in hooks.iter_mut() {
        h.events.sort_by_key(|e| crate::catalog::EVENTS.iter().position(|c| c.name == e));
    }
    Ok(())
}

/// Every webhook, oldest first.
pub fn list(host: &dyn Host) -> Result<Vec<Webhook>, DbError> {
    let rows = host.query(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w ORDER BY w.id"), &[])?;
    let mut hooks: Vec<Webhook> = rows.iter().map(|r| webhook_from(&r)).collect();
    attach_events(host, &mut hooks)?;
    Ok(hooks)
}

/// One webhook.
pub fn get(host: &dyn Host, id: i64) -> Result<Option<Webhook>, DbError> {
    let rows = host.query(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = ?1"), &[id.into()])?;
    let Some(mut hook) = rows.first().map(|r| webhook_from(&r)) else {
        return Ok(None);
    };
    let ev = host.query("SELECT event_type FROM webhook_events WHERE webhook_id = ?1", &[id.into()])?;
    hook.events = ev.iter().map(|r| r.str(0)).collect();
    hook.events.sort_by_key(|e| crate::catalog::EVENTS.iter().position(|c| c.name == e));
    Ok(Some(hook))
}

/// Why a create was refused.
#[derive(Debug)]
pub enum CreateError {
    TooMany,
    /// The create form with this one-time id was submitted before: the
    /// webhook it made (id, name).
    AlreadyCreated(i64, String),
    Db(DbError),
}

impl From<DbError> for CreateError {
    fn from(e: DbError) -> Self {
        CreateError::Db(e)
    }
}

/// Stores a new webhook; answers its id.
pub fn create(host: &dyn Host, v: &Valid) -> Result<i64, CreateError> {
    create_once(host, v, None)
}

/// [`create`] for a form submission carrying `form_id`: a second submission
/// of the same form (Back, then submit again) creates nothing and answers
/// the webhook the first one made.
pub fn create_once(host: &dyn Host, v: &Valid, form_id: Option<&str>) -> Result<i64, CreateError> {
    let now = host.now_ms();
    transaction(host, || {
        // The next id from the counter (schema 8), never one used before.
        // The larger of two values is SQLite's two-argument `MAX`,
        // PostgreSQL's `GREATEST`. Taken first: on PostgreSQL, where nodes
        // write side by side, the counter's row lock makes creations take
        // turns, so the form check and the count below see every webhook
        // created before (SQLite's write lock already does).
        let next = host.query(
            match host.dialect() {
                Dialect::Sqlite => {
                    "UPDATE id_counters SET last = MAX(last, (SELECT COALESCE(MAX(id), 0) FROM webhooks)) + 1 \
                     WHERE name = 'webhooks' RETURNING last"
                }
                Dialect::Postgres => {
                    "UPDATE id_counters SET last = GREATEST(last, (SELECT COALESCE(MAX(id), 0) FROM webhooks)) + 1 \
                     WHERE name = 'webhooks' RETURNING last"
                }
            },
            &[],
        )?;
        let Some(new_id) = next.first().map(|r| r.i64(0)) else {
            return Err(DbError::Io("the webhook id counter is missing".into()).into());
        };
        if let Some(f) = form_id {
            let done = host.query("SELECT id, name FROM webhooks WHERE form_id = ?1", &[f.into()])?;
            if let Some(r) = done.first() {
                return Err(CreateError::AlreadyCreated(r.i64(0), r.str(1)));
            }
        }
        let count = host.query("SELECT COUNT(*) FROM webhooks", &[])?.first().map(|r| r.i64(0)).unwrap_or(0);
        if count >= MAX_WEBHOOKS {
            return Err(CreateError::TooMany);
        }
        let sealed = v.secret.clone().flatten().map(|s| seal_secret(host, &s)).transpose()?;
        let set_at = sealed.as_ref().map(|_| now);
        let rate_limit = v.rate_limit.flatten();
        let rows = host.query(
            "INSERT INTO webhooks (id, name, url, secret_sealed, secret_set_at, enabled, created_at, updated_at, form_id, \
             rate_limit) VALUES (?7, ?1, ?2, ?3, ?4, ?5, ?6, ?6, ?8, ?9) RETURNING id",
            &[
                v.name.as_str().into(),
                v.url.as_str().into(),
                sealed.into(),
                set_at.into(),
                v.enabled.into(),
                now.into(),
                new_id.into(),
                form_id.into(),
                rate_limit.map(i64::from).into(),
            ],
        )?;
        let id = rows.first().map(|r| r.i64(0)).unwrap_or_default();
        set_events(host, id, &v.events)?;
        set_controls(host, id, v)?;
        set_bucket(host, id, v.rate_limit, now)?;
        Ok(id)
    })
}

/// Updates a webhook; answers false when it does not exist.
pub fn update(host: &dyn Host, id: i64, v: &Valid) -> Result<bool, DbError> {
    let now = host.now_ms();
    transaction(host, || {
        let mut sql = String::from(
            "UPDATE webhooks SET name = ?2, url = ?3, updated_at = ?4, enabled = ?5, \
             disabled_reason = CASE WHEN ?5 = 1 THEN NULL WHEN enabled = 1 THEN 'Disabled by an admin.' \
             ELSE disabled_reason END, \
             disabled_at = CASE WHEN ?5 = 1 THEN NULL WHEN enabled = 1 THEN ?4 ELSE disabled_at END, \
             failing_since = CASE WHEN ?5 = 1 AND enabled = 0 THEN NULL ELSE failing_since END",
        );
        let mut params: Vec<Value> =
            vec![id.into(), v.name.as_str().into(), v.url.as_str().into(), now.into(), v.enabled.into()];
        match &v.secret {
            None => {}
            Some(None) => sql.push_str(
                ", secret_sealed = NULL, secret_set_at = NULL, prev_secret_sealed = NULL, prev_secret_until = NULL",
            ),
            Some(Some(new)) => {
                params.push(seal_secret(host, new)?.into());
                if v.rotate {
                    // The current secret keeps signing beside the new one.
                    // (The CAST types the parameter for PostgreSQL, which
                    // reads an untyped CASE of NULL and ?7 as text.)
                    params.push((now + ROTATION_WINDOW_MS).into());
                    sql.push_str(
                        ", prev_secret_sealed = secret_sealed, prev_secret_until = CASE WHEN secret_sealed IS NULL \
                         THEN NULL ELSE CAST(?7 AS BIGINT) END, secret_sealed = ?6, secret_set_at = ?4",
                    );
                } else {
                    sql.push_str(
                        ", secret_sealed = ?6, secret_set_at = ?4, prev_secret_sealed = NULL, prev_secret_until = NULL",
                    );
                }
            }
        }
        if let Some(limit) = v.rate_limit {
            params.push(limit.map(i64::from).into());
            // The CAST types the parameter for PostgreSQL when it is NULL.
            sql.push_str(&format!(", rate_limit = CAST(?{} AS BIGINT)", params.len()));
        }
        sql.push_str(" WHERE id = ?1");
        if host.execute(&sql, &params)? == 0 {
            return Ok(false);
        }
        set_bucket(host, id, v.rate_limit, now)?;
        host.execute("DELETE FROM webhook_events WHERE webhook_id = ?1", &[id.into()])?;
        set_events(host, id, &v.events)?;
        set_controls(host, id, v)?;
        Ok(true)
    })
}

/// Stores the custom headers (secret values sealed) and the filter, where
/// the input changes them (#24).
fn set_controls(host: &dyn Host, id: i64, v: &Valid) -> Result<(), DbError> {
    if let Some(h) = &v.headers {
        let json = controls::seal_headers(host, h)?;
        host.execute("UPDATE webhooks SET custom_headers = ?2 WHERE id = ?1", &[id.into(), json.into()])?;
    }
    if let Some(f) = &v.filter {
        host.execute("UPDATE webhooks SET payload_filter = ?2 WHERE id = ?1", &[id.into(), f.clone().into()])?;
    }
    Ok(())
}

/// Gives a webhook that gets a rate limit its bucket, full (a bucket it
/// already has keeps its tokens; the claim caps them at the new burst), and
/// drops the bucket of one whose limit is removed: `webhook_buckets` holds
/// limited webhooks only.
fn set_bucket(host: &dyn Host, id: i64, limit: Option<Option<u32>>, now: u64) -> Result<(), DbError> {
    match limit {
        None => Ok(()),
        Some(None) => host.execute("DELETE FROM webhook_buckets WHERE webhook_id = ?1", &[id.into()]).map(|_| ()),
        Some(Some(rate)) => host
            .execute(
                "INSERT INTO webhook_buckets (webhook_id, tokens, at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (webhook_id) DO NOTHING",
                &[id.into(), crate::outbox::bucket::capacity(i64::from(rate)).into(), now.into()],
            )
            .map(|_| ()),
    }
}

fn set_events(host: &dyn Host, id: i64, events: &[String]) -> Result<(), DbError> {
    for e in events {
        host.execute(
            "INSERT INTO webhook_events (webhook_id, event_type) VALUES (?1, ?2)",
            &[id.into(), e.as_str().into()],
        )?;
    }
    Ok(())
}

/// Deletes a webhook with its deliveries and history; answers false when absent.
pub fn delete(host: &dyn Host, id: i64) -> Result<bool, DbError> {
    transaction(host, || {
        // The webhook's row first, as every other writer of its rows takes it
        // (a node's bookkeeping locks the webhook, then its rollup rows): on
        // PostgreSQL, where nodes write side by side, the other order could
        // deadlock. SQLite's write lock already orders everything.
        if host.dialect() == Dialect::Postgres {
            host.query("SELECT id FROM webhooks WHERE id = ?1 FOR UPDATE", &[id.into()])?;
        }
        // Explicit rather than relying on ON DELETE CASCADE, which needs a
        // per-connection pragma a host might not set.
        host.execute("DELETE FROM attempts WHERE webhook_id = ?1", &[id.into()])?;
        host.execute("DELETE FROM attempt_rollups WHERE webhook_id = ?1", &[id.into()])?;
        host.execute("DELETE FROM deliveries WHERE webhook_id = ?1", &[id.into()])?;
        host.execute("DELETE FROM webhook_events WHERE webhook_id = ?1", &[id.into()])?;
        host.execute("DELETE FROM filtered_events WHERE webhook_id = ?1", &[id.into()])?;
        host.execute("DELETE FROM webhook_buckets WHERE webhook_id = ?1", &[id.into()])?;
        host.execute("DELETE FROM webhook_transforms WHERE webhook_id = ?1", &[id.into()])?;
        Ok(host.execute("DELETE FROM webhooks WHERE id = ?1", &[id.into()])? > 0)
    })
}

/// Flips enabled; answers the new state, or None when absent.
pub fn toggle(host: &dyn Host, id: i64) -> Result<Option<bool>, DbError> {
    let now = host.now_ms();
    let rows = host.query(
        "UPDATE webhooks SET enabled = 1 - enabled, updated_at = ?2, \
         disabled_reason = CASE WHEN enabled = 0 THEN NULL ELSE 'Disabled by an admin.' END, \
         disabled_at = CASE WHEN enabled = 0 THEN NULL ELSE ?2 END, \
         failing_since = CASE WHEN enabled = 0 THEN NULL ELSE failing_since END \
         WHERE id = ?1 RETURNING enabled",
        &[id.into(), now.into()],
    )?;
    Ok(rows.first().map(|r| r.bool(0)))
}

/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// One history row: an attempt with its event.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: i64,
    pub attempt_no: i64,
    pub event_type: String,
    pub event_id: String,
    pub attempted_at: u64,
    pub duration_ms: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub success: bool,
    /// Not sent: the webhook's transformation skipped it (#24).
    pub skipped: bool,
}

/// History filters.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// `Some(true)` successes only, `Some(false)` failures only.
    pub success: Option<bool>,
    pub event_type: Option<String>,
}

/// Where a history row sits in the page order: history is newest first by
/// attempt time, ties by attempt id — the `attempts_history` index's order.
/// The time alone is no key (attempts can share a millisecond) and the id
/// alone would change the order (an answer recorded late keeps its earlier
/// start time), so the key is the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryKey {
    pub attempted_at: u64,
    pub id: i64,
}

impl HistoryKey {
    /// The key of a row on a page.
    pub fn of(a: &AttemptRow) -> Self {
        HistoryKey { attempted_at: a.attempted_at, id: a.id }
    }

    /// Reads the `<attempted_at>_<id>` a link carries; `None` for anything
    /// else, which the page treats as no cursor at all.
    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('_')?;
        let digits = |t: &str| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(at) || !digits(id) {
            return None;
        }
        // Both are SQLite integers: at most i64::MAX; ids start at 1.
        let attempted_at = at.parse::<i64>().ok()?;
        let id = id.parse::<i64>().ok().filter(|i| *i > 0)?;
        Some(HistoryKey { attempted_at: attempted_at as u64, id })
    }
}

impl std::fmt::Display for HistoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.attempted_at, self.id)
    }
}

/// Which history page: the newest rows, or the rows just older or just
/// newer than a row of another page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryCursor {
    #[default]
    Newest,
    Before(HistoryKey),
    After(HistoryKey),
}

/// A page of history, newest first, with the keys its "Older" and "Newer"
/// links carry (`None`: nothing that way). `newest` is whether this is the
/// first page.
#[derive(Debug, Clone)]
pub struct HistoryRows {
    pub rows: Vec<AttemptRow>,
    pub older: Option<HistoryKey>,
    pub newer: Option<HistoryKey>,
    pub newest: bool,
}

/// The query for `limit` history rows from `from` in one direction: older
/// than the key, newest first (`older`), or newer than it, oldest first.
/// Keyset paging, as the API's `deliveries` does: the row-value bound and
/// the ORDER BY both follow `attempts_history` (webhook_id, attempted_at
/// DESC, id DESC), so SQLite seeks to the key and reads `limit` entries in
/// either direction instead of counting past an OFFSET.
pub(crate) fn history_query(
    webhook_id: i64,
    filter: &HistoryFilter,
    from: Option<HistoryKey>,
    older: bool,
    limit: u32,
) -> (String, Vec<Value>) {
    let mut sql = format!(
        "SELECT a.id, a.delivery_id, a.attempt_no, e.type, e.id, a.attempted_at, a.duration_ms, \
         a.response_status, a.error, a.success, \
         CASE WHEN a.transform LIKE '{SKIPPED_PREFIX}%' THEN 1 ELSE 0 END \
         FROM attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN events e ON e.id = d.event_id \
         WHERE a.webhook_id = ?1",
    );
    let mut params: Vec<Value> = vec![webhook_id.into()];
    if let Some(k) = from {
        push_bound(k, if older { "<" } else { ">" }, &mut sql, &mut params);
    }
    push_filter(filter, &mut sql, &mut params);
    params.push(limit.into());
    let dir = if older { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY a.attempted_at {dir}, a.id {dir} LIMIT ?{}", params.len()));
    (sql, params)
}

/// Rows before (`<`, older) or after (`>`, newer) `k` in the page order:
/// a row-value bound on the index's own columns, so SQLite seeks to it.
fn push_bound(k: HistoryKey, op: &str, sql: &mut String, params: &mut Vec<Value>) {
    params.push(k.attempted_at.into());
    params.push(k.id.into());
    let n = params.len();
    sql.push_str(&format!(" AND (a.attempted_at, a.id) {op} (?{}, ?{n})", n - 1));
}

/// The history filter's conditions on `a` (attempts) and `e` (events).
fn push_filter(filter: &HistoryFilter, sql: &mut String, params: &mut Vec<Value>) {
    if let Some(s) = filter.success {
        params.push(s.into());
        sql.push_str(&format!(" AND a.success = ?{}", params.len()));
        if !s {
            // A skip (#24) was sent to nobody: it is not a failure.
            sql.push_str(&format!(" AND (a.transform IS NULL OR a.transform NOT LIKE '{SKIPPED_PREFIX}%')"));
        }
    }
    if let Some(t) = &filter.event_type {
        params.push(t.as_str().into());
        sql.push_str(&format!(" AND e.type = ?{}", params.len()));
    }
}

fn history_rows(
    host: &dyn Host,
    webhook_id: i64,
    filter: &HistoryFilter,
    from: Option<HistoryKey>,
    older: bool,
    limit: u32,
) -> Result<Vec<AttemptRow>, DbError> {
    let (sql, params) = history_query(webhook_id, filter, from, older, limit);
    let rows = host.query(&sql, &params)?;
    Ok(rows
        .iter()
        .map(|r| AttemptRow {
            id: r.i64(0),
            delivery_id: r.i64(1),
            attempt_no: r.i64(2),
            event_type: r.str(3),
            event_id: r.str(4),
            attempted_at: r.u64(5),
            duration_ms: r.i64(6),
            status: r.opt_i64(7),
            error: r.opt_str(8),
            success: r.bool(9),
            skipped: r.bool(10),
        })
        .collect())
}

/// A page of at most `per_page` attempts, newest first.
pub fn history(
    host: &dyn Host,
    webhook_id: i64,
    filter: &HistoryFilter,
    cursor: HistoryCursor,
    per_page: u32,
) -> Result<HistoryRows, DbError> {
    // One row past the page says whether more follow that way, as in `deliveries`.
    let (mut rows, newest) = match cursor {
        HistoryCursor::Newest => (history_rows(host, webhook_id, filter, None, true, per_page + 1)?, true),
        HistoryCursor::Before(k) => (history_rows(host, webhook_id, filter, Some(k), true, per_page + 1)?, false),
        HistoryCursor::After(k) => {
            let mut up = history_rows(host, webhook_id, filter, Some(k), false, per_page + 1)?;
            if up.len() <= per_page as usize {
                // Nothing newer beyond these: this is the top, so answer the
                // first page itself — full, and the same rows as a fresh visit.
                return history(host, webhook_id, filter, HistoryCursor::Newest, per_page);
            }
            up.truncate(per_page as usize);
            up.reverse();
            // Rows newer than this page exist (the extra row); the link
            // carries the page's first key like any other.
            let newer = up.first().map(HistoryKey::of);
            let older = match up.last().map(HistoryKey::of) {
                Some(last) => {
                    (!history_rows(host, webhook_id, filter, Some(last), true, 1)?.is_empty()).then_some(last)
                }
                None => None,
            };
            return Ok(HistoryRows { rows: up, older, newer, newest: false });
        }
    };
    let more = rows.len() > per_page as usize;
    rows.truncate(per_page as usize);
    let older = if more { rows.last().map(HistoryKey::of) } else { None };
    // A deeper page usually has newer rows (the page it came from), but they
    // may have been pruned since: one index probe says. An empty deep page
    // offers only the way back to the first page.
    let newer = match rows.first().map(HistoryKey::of) {
        Some(first) if !newest => {
            (!history_rows(host, webhook_id, filter, Some(first), false, 1)?.is_empty()).then_some(first)
        }
        _ => None,
    };
    Ok(HistoryRows { rows, older, newer, newest })
}

/// A delivery with its event and every attempt, for the details page.
#[derive(Debug, Clone)]
pub struct DeliveryDetail {
    pub id: i64,
    pub msg_id: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: Option<u64>,
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: u64,
    pub data: String,
    pub tries: Vec<AttemptDetail>,
}

/// One attempt with its request and response.
#[derive(Debug, Clone)]
pub struct AttemptDetail {
    pub attempt_no: i64,
    pub attempted_at: u64,
    pub duration_ms: i64,
    pub request_headers: Vec<(String, String)>,
    pub status: Option<i64>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<String>,
    pub response_body_size: Option<i64>,
    pub error: Option<String>,
    pub success: bool,
    /// What the webhook's transformation made of it (#24): a
    /// [`crate::transform::Note`] as JSON.
    pub transform: Option<String>,
}

fn pairs(json: Option<String>) -> Vec<(String, String)> {
    json.and_then(|j| serde_json::from_str::<Vec<(String, String)>>(&j).ok()).unwrap_or_default()
}

/// A delivery of this webhook, or None.
pub fn delivery(host: &dyn Host, webhook_id: i64, delivery_id: i64) -> Result<Option<DeliveryDetail>, DbError> {
    let rows = host.query(
        "SELECT d.id, d.msg_id, d.state, d.attempts, d.next_attempt_at, e.id, e.type, e.occurred_at, e.data \
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = ?1 AND d.webhook_id = ?2",
        &[delivery_id.into(), webhook_id.into()],
    )?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    let mut d = DeliveryDetail {
        id: r.i64(0),
        msg_id: r.str(1),
        state: DeliveryState::from_stored(&r.str(2)),
        attempts: r.i64(3),
        next_attempt_at: r.opt_i64(4).map(|v| v as u64),
        event_id: r.str(5),
        event_type: r.str(6),
        occurred_at: r.u64(7),
        data: r.str(8),
        tries: Vec::new(),
    };
    let rows = host.query(
        "SELECT attempt_no, attempted_at, duration_ms, request_headers, response_status, response_headers, \
         response_body, response_body_size, error, success, transform FROM attempts WHERE delivery_id = ?1 \
         ORDER BY id DESC",
        &[delivery_id.into()],
    )?;
    d.tries = rows
        .iter()
        .map(|r| AttemptDetail {
            attempt_no: r.i64(0),
            attempted_at: r.u64(1),
            duration_ms: r.i64(2),
            request_headers: pairs(r.opt_str(3)),
            status: r.opt_i64(4),
            response_headers: pairs(r.opt_str(5)),
            response_body: r.opt_str(6),
            response_body_size: r.opt_i64(7),
            error: r.opt_str(8),
            success: r.bool(9),
            transform: r.opt_str(10),
        })
        .collect();
    Ok(Some(d))
}

/// Deliveries of a webhook that gave up (for the "retry failed" form).
pub fn exhausted_count(host: &dyn Host, webhook_id: i64) -> Result<i64, DbError> {
    // A failed test is one attempt the admin asked for, not a delivery that
    // gave up after every retry (#13): not counted, not retried in bulk.
    let rows = host.query(
        "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.webhook_id = ?1 AND d.state = 'exhausted' AND e.type <> ?2",
        &[webhook_id.into(), catalog::TEST_EVENT.into()],
    )?;
    Ok(rows.first().map(|r| r.i64(0)).unwrap_or(0))
}

/// Most rows a history page counts for its position; past it the page says
/// "of 10,000+" rather than count millions of attempts on every view.
pub const HISTORY_COUNT_CAP: i64 = 10_000;

/// Where a history page sits: how many rows (under `filter`) come before
/// its first row, and how many there are in all — "26–50 of 65". Counts
/// over the same index the page seeks in, each stopping at
/// [`HISTORY_COUNT_CAP`] + 1.
pub fn history_position(
    host: &dyn Host,
    webhook_id: i64,
    filter: &HistoryFilter,
    first: Option<HistoryKey>,
) -> Result<(i64, i64), DbError> {
    let count = |newer_than: Option<HistoryKey>| -> Result<i64, DbError> {
        // The joins only when the event type filters.
        let mut sql = String::from(if filter.event_type.is_some() {
            "SELECT 1 FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             JOIN events e ON e.id = d.event_id WHERE a.webhook_id = ?1"
        } else {
            "SELECT 1 FROM attempts a WHERE a.webhook_id = ?1"
        });
        let mut params: Vec<Value> = vec![webhook_id.into()];
        if let Some(k) = newer_than {
            push_bound(k, ">", &mut sql, &mut params);
        }
        push_filter(filter, &mut sql, &mut params);
        let sql = format!("SELECT COUNT(*) FROM ({sql} LIMIT {}) AS capped", HISTORY_COUNT_CAP + 1);
        Ok(host.query(&sql, &params)?.first().map(|r| r.i64(0)).unwrap_or(0))
    };
    let before = match first {
        Some(k) => count(Some(k))?,
        None => 0,
    };
    Ok((before, count(None)?))
}

/// One delivery in a list: its event, state and latest attempt.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: i64,
    pub msg_id: String,
    pub event_id: String,
    pub event_type: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub created_at: u64,
    pub next_attempt_at: Option<u64>,
    pub last_attempt_at: Option<u64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// Delivery list filters.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only these states.
    pub states: Vec<DeliveryState>,
    pub event_type: Option<String>,
    /// Only deliveries with a smaller id (the cursor of the previous page).
    pub before: Option<i64>,
}

/// Deliveries of a webhook, newest first, at most `limit`; also answers
/// whether more follow. Keyset paging on the id stays fast deep in history.
pub fn deliveries(
    host: &dyn Host,
    webhook_id: i64,
    filter: &DeliveryFilter,
    limit: u32,
) -> Result<(Vec<DeliveryRow>, bool), DbError> {
    let mut sql = String::from(
        "SELECT d.id, d.msg_id, e.id, e.type, d.state, d.attempts, d.created_at, d.next_attempt_at, \
         (SELECT MAX(a.attempted_at) FROM attempts a WHERE a.delivery_id = d.id), d.last_status, d.last_error \
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.webhook_id = ?1",
    );
    let mut params: Vec<Value> = vec![webhook_id.into()];
    if let Some(b) = filter.before {
        params.push(b.into());
        sql.push_str(&format!(" AND d.id < ?{}", params.len()));
    }
    if !filter.states.is_empty() {
        let mut marks = Vec::new();
        for s in &filter.states {
            params.push(s.as_str().into());
            marks.push(format!("?{}", params.len()));
        }
        sql.push_str(&format!(" AND d.state IN ({})", marks.join(", ")));
    }
    if let Some(t) = &filter.event_type {
        params.push(t.as_str().into());
        sql.push_str(&format!(" AND e.type = ?{}", params.len()));
    }
    params.push((limit + 1).into());
    sql.push_str(&format!(" ORDER BY d.id DESC LIMIT ?{}", params.len()));
    let rows = host.query(&sql, &params)?;
    let mut out: Vec<DeliveryRow> = rows
        .iter()
        .map(|r| DeliveryRow {
            id: r.i64(0),
            msg_id: r.str(1),
            event_id: r.str(2),
            event_type: r.str(3),
            state: DeliveryState::from_stored(&r.str(4)),
            attempts: r.i64(5),
            created_at: r.u64(6),
            next_attempt_at: r.opt_i64(7).map(|v| v as u64),
            last_attempt_at: r.opt_i64(8).map(|v| v as u64),
            last_status: r.opt_i64(9),
            last_error: r.opt_str(10),
        })
        .collect();
    let more = out.len() > limit as usize;
    out.truncate(limit as usize);
    Ok((out, more))
}

/// Seals a secret's signing key: the key bytes it stands for (see
/// `signing::key_bytes`), which the host signs with from then on.
pub fn seal_secret(host: &dyn Host, secret: &str) -> Result<Vec<u8>, DbError> {
    host.seal(&crate::signing::key_bytes(secret)).map_err(|e| DbError::Io(format!("sealing the secret failed: {e}")))
}

/// A webhook's sealed signing keys, for checking a signature: the current
/// one and, after a rotation, the previous one with the end of its window
/// (kept until the secret changes again, even once the window is over).
#[derive(Debug, Clone, Default)]
pub struct SigningKeys {
    pub current: Option<Vec<u8>>,
    pub previous: Option<(Vec<u8>, u64)>,
}

/// The sealed keys of a webhook, or None when it does not exist.
pub fn signing_keys(host: &dyn Host, webhook_id: i64) -> Result<Option<SigningKeys>, DbError> {
    let rows = host.query(
        "SELECT secret_sealed, prev_secret_sealed, prev_secret_until FROM webhooks WHERE id = ?1",
        &[webhook_id.into()],
    )?;
    Ok(rows.first().map(|r| SigningKeys {
        current: r.opt_blob(0),
        previous: r.opt_blob(1).zip(r.opt_i64(2)).map(|(k, until)| (k, u64::try_from(until).unwrap_or(0))),
    }))
}

/// The id of this webhook's delivery whose `webhook-id` is `msg_id`.
/// There is no index on `msg_id`: this walks the webhook's own deliveries
/// (`deliveries_by_webhook`), acceptable for an admin's one-off check, not
/// for a hot path.
pub fn delivery_by_msg_id(host: &dyn Host, webhook_id: i64, msg_id: &str) -> Result<Option<i64>, DbError> {
    let rows = host.query(
        "SELECT id FROM deliveries WHERE webhook_id = ?1 AND msg_id = ?2 LIMIT 1",
        &[webhook_id.into(), msg_id.into()],
    )?;
    Ok(rows.first().map(|r| r.i64(0)))
}

/// An event a webhook's payload filter kept from it (#24).
#[derive(Debug, Clone)]
pub struct FilteredRow {
    pub event_id: String,
    pub event_type: String,
    pub filtered_at: u64,
    /// The filter the event did not match, as it was then.
    pub filter: String,
}

/// The newest `limit` events this webhook's filter kept from it, newest first.
pub fn filtered(host: &dyn Host, webhook_id: i64, limit: u32) -> Result<Vec<FilteredRow>, DbError> {
    let rows = host.query(
        "SELECT event_id, event_type, filtered_at, filter FROM filtered_events WHERE webhook_id = ?1 \
         ORDER BY filtered_at DESC, event_id DESC LIMIT ?2",
        &[webhook_id.into(), limit.into()],
    )?;
    Ok(rows
        .iter()
        .map(|r| FilteredRow { event_id: r.str(0), event_type: r.str(1), filtered_at: r.u64(2), filter: r.str(3) })
        .collect())
}
