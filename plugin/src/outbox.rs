//! The outbox: raising events into delivery rows, and the delivery work that
//! sends due rows and records every attempt.
//!
//! Raising is one short transaction (event row + one delivery row per enabled
//! subscriber) and never touches the network. Delivery claims rows with a
//! lease, sends them concurrently through the host, then records all outcomes
//! in one transaction; the write lock is never held across a network wait. A
//! worker that dies leaves its lease to expire and the rows are claimed again
//! with the same `webhook-id`: delivery is at-least-once.

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::catalog;
use crate::host::{DbError, Host, Level, OutRequest, OutResponse, Row, Sent, Value, transaction};
use crate::signing;

/// Response bodies are stored up to this many bytes; the rest is counted.
pub const MAX_STORED_BODY: usize = 64 * 1024;
/// Largest `data` accepted for one event.
pub const MAX_DATA: usize = 256 * 1024;
/// Largest stored response header value and total header bytes.
const MAX_HEADER_VALUE: usize = 1024;
const MAX_HEADERS_TOTAL: usize = 16 * 1024;
/// Upper bound for a receiver's `Retry-After`.
const MAX_RETRY_AFTER_MS: u64 = 6 * 60 * 60 * 1000;

/// An event as the panel raises it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub event_type: String,
    pub occurred_at_ms: u64,
    pub data_json: String,
}

/// Why an event was refused; nothing was stored.
#[derive(Debug, Clone, PartialEq)]
pub enum RaiseError {
    UnknownType(String),
    InvalidData(String),
    Storage(String),
}

impl From<DbError> for RaiseError {
    fn from(e: DbError) -> Self {
        RaiseError::Storage(e.to_string())
    }
}

/// What raising committed for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    pub event_id: String,
    pub queued: u32,
}

/// Checks one event without touching storage; answers its compact data.
fn check(e: &NewEvent) -> Result<String, RaiseError> {
    if catalog::find(&e.event_type).is_none() {
        return Err(RaiseError::UnknownType(format!("unknown event type: {}", e.event_type)));
    }
    if e.id.is_empty() || e.id.len() > 128 || !e.id.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c)) {
        return Err(RaiseError::InvalidData(
            "event id must be 1-128 characters of letters, digits, '_', '-', '.' or ':'".into(),
        ));
    }
    if e.data_json.len() > MAX_DATA {
        return Err(RaiseError::InvalidData(format!("data is larger than {MAX_DATA} bytes")));
    }
    match serde_json::from_str::<serde_json::Value>(&e.data_json) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v.to_string()),
        Ok(_) => Err(RaiseError::InvalidData("data must be a JSON object".into())),
        Err(err) => Err(RaiseError::InvalidData(format!("data is not valid JSON: {err}"))),
    }
}

/// Raises events in one transaction: all are stored or none.
pub fn raise_batch(host: &dyn Host, events: &[NewEvent]) -> Result<Vec<Raised>, RaiseError> {
    let datas = events.iter().map(check).collect::<Result<Vec<_>, _>>()?;
    let now = host.now_ms();
    transaction(host, || {
        let mut subscribers: Vec<(String, Vec<(i64, i64)>)> = Vec::new();
        let mut out = Vec::with_capacity(events.len());
        for (e, data) in events.iter().zip(datas) {
            let inserted = host.execute(
                "INSERT INTO events (id, type, occurred_at, data, raised_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO NOTHING",
                &[e.id.as_str().into(), e.event_type.as_str().into(), e.occurred_at_ms.into(), data.into(), now.into()],
            )?;
            if inserted == 0 {
                // Raised before: the panel retried. Its deliveries exist already.
                out.push(Raised { event_id: e.id.clone(), queued: 0 });
                continue;
            }
            let subs = match subscribers.iter().find(|(t, _)| *t == e.event_type) {
                Some((_, s)) => s.clone(),
                None => {
                    let s = subscribers_of(host, &e.event_type)?;
                    subscribers.push((e.event_type.clone(), s.clone()));
                    s
                }
            };
            for (webhook_id, created_at) in &subs {
                insert_delivery(host, &e.id, *webhook_id, *created_at, now, None)?;
            }
            out.push(Raised { event_id: e.id.clone(), queued: subs.len() as u32 });
        }
        Ok(out)
    })
}

fn subscribers_of(host: &dyn Host, event_type: &str) -> Result<Vec<(i64, i64)>, DbError> {
    let rows = host.query(
        "SELECT w.id, w.created_at FROM webhooks w JOIN webhook_events s ON s.webhook_id = w.id \
         WHERE s.event_type = ?1 AND w.enabled = 1 ORDER BY w.id",
        &[event_type.into()],
    )?;
    Ok(rows.iter().map(|r| (r.i64(0), r.i64(1))).collect())
}

fn insert_delivery(
    host: &dyn Host,
    event_id: &str,
    webhook_id: i64,
    webhook_created_at: i64,
    now: u64,
    lease_until: Option<u64>,
) -> Result<i64, DbError> {
    let rows = host.query(
        "INSERT INTO deliveries (webhook_id, event_id, msg_id, state, attempts, next_attempt_at, lease_until, created_at) \
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?4) RETURNING id",
        &[
            webhook_id.into(),
            event_id.into(),
            msg_id(event_id, webhook_id, webhook_created_at).into(),
            now.into(),
            lease_until.into(),
        ],
    )?;
    Ok(rows.first().map(|r| r.i64(0)).unwrap_or_default())
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

/// RFC 3339 in UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// The exact body bytes sent for an event.
pub fn payload(event_type: &str, occurred_at_ms: u64, data_json: &str) -> String {
    // `data_json` was stored compact by `check`; embed it as-is so the bytes
    // signed are the bytes the panel's data became.
    format!(
        "{{\"type\":{},\"timestamp\":{},\"data\":{}}}",
        json!(event_type),
        json!(rfc3339(occurred_at_ms)),
        data_json
    )
}

/// `payload`, pretty-printed for people (pages, docs); the bytes sent stay compact.
pub fn payload_pretty(event_type: &str, occurred_at_ms: u64, data_json: &str) -> String {
    let body = payload(event_type, occurred_at_ms, data_json);
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(body)
}

/// A delay with ±20 % jitter; `r` is a uniformly random u32.
pub fn jittered(delay_ms: u64, r: u32) -> u64 {
    // factor in [0.8, 1.2]
    let factor = 0.8 + 0.4 * (f64::from(r) / f64::from(u32::MAX));
    (delay_ms as f64 * factor).round() as u64
}

/// What the report of one `run-due` holds.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub attempted: u32,
    pub succeeded: u32,
    pub next_due_ms: Option<u64>,
    pub outcomes: Vec<Outcome>,
}

/// How an attempt's failure is followed up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// The retry schedule applies.
    Scheduled,
    /// One attempt only (test sends, resends of finished deliveries).
    Once,
}

/// One delivery loaded for an attempt.
struct Job {
    delivery_id: i64,
    webhook_id: i64,
    msg_id: String,
    attempts: i64,
    url: String,
    /// Signing secrets, current first; the previous one while a rotation lasts.
    secrets: Result<Vec<String>, String>,
    event_type: String,
    occurred_at: u64,
    data: String,
}

/// The outcome of one attempt, as recorded.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub delivery_id: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub success: bool,
    /// The delivery state after this attempt: `succeeded`, `retrying` or `exhausted`.
    pub state: &'static str,
}

/// How long one `run-due` keeps claiming new work before it drains and returns.
pub const RUN_BUDGET_MS: u64 = 10_000;
/// How long to wait for responses before looking for newly due rows.
const CLAIM_EVERY_MS: u64 = 5;
/// Due rows considered per claim, as a multiple of the free slots; the
/// per-webhook bound is applied among them.
const CANDIDATES_FACTOR: u32 = 8;

/// Keeps up to `max` deliveries in flight for a bounded time; see the WIT.
pub fn run_due(host: &dyn Host, max: u32) -> Result<Report, DbError> {
    let started = host.now_ms();
    let mut report = drive(host, Vec::new(), Some(max.max(1)), Mode::Scheduled, started)?;
    report.next_due_ms = next_due(host, host.now_ms())?;
    Ok(report)
}

/// Claims up to `n` due rows, oldest first, at most `per-webhook-concurrency`
/// in flight per webhook across all workers.
fn claim(host: &dyn Host, n: u32, now: u64, lease_until: u64, per_webhook: u32) -> Result<Vec<i64>, DbError> {
    // `CROSS JOIN` keeps SQLite walking the due index in order; `+webhook_id`
    // keeps the in-flight count on the small index of leased rows. Both are
    // plain SQL elsewhere.
    let rows = host.query(
        "WITH c AS (\
            SELECT d.id, d.webhook_id, d.next_attempt_at FROM deliveries d CROSS JOIN webhooks w \
            WHERE w.id = d.webhook_id AND d.state IN ('pending', 'retrying') AND d.next_attempt_at <= ?2 \
              AND (d.lease_until IS NULL OR d.lease_until <= ?2) AND w.enabled = 1 \
            ORDER BY d.next_attempt_at, d.id LIMIT ?4), \
         f AS (SELECT +webhook_id AS webhook_id, COUNT(*) AS n FROM deliveries \
               WHERE lease_until > ?2 GROUP BY +webhook_id), \
         ranked AS (SELECT c.id, c.next_attempt_at, \
               ROW_NUMBER() OVER (PARTITION BY c.webhook_id ORDER BY c.next_attempt_at, c.id) \
               + COALESCE(f.n, 0) AS slot FROM c LEFT JOIN f ON f.webhook_id = c.webhook_id) \
         UPDATE deliveries SET lease_until = ?1 WHERE id IN (\
            SELECT id FROM ranked WHERE slot <= ?5 ORDER BY next_attempt_at, id LIMIT ?3) RETURNING id",
        &[lease_until.into(), now.into(), n.into(), (n * CANDIDATES_FACTOR).into(), per_webhook.into()],
    )?;
    Ok(rows.iter().map(|r| r.i64(0)).collect())
}

/// A request in flight.
struct Flight {
    ticket: crate::host::Ticket,
    job: Job,
    request: OutRequest,
    started: u64,
}

/// The delivery pipeline: sends `initial` (already leased), and with
/// `claim_max` also claims due rows to keep that many in flight, recording
/// each outcome as it arrives. Returns when nothing is left in flight.
fn drive(
    host: &dyn Host,
    initial: Vec<i64>,
    claim_max: Option<u32>,
    mode: Mode,
    run_started: u64,
) -> Result<Report, DbError> {
    let settings = host.settings();
    let mut flying: Vec<Flight> = Vec::new();
    let mut report = Report::default();
    let mut outcomes_done: Vec<Outcome> = Vec::new();
    let launch =
        |ids: &[i64], flying: &mut Vec<Flight>, failed: &mut Vec<(Job, OutRequest, Sent)>| -> Result<(), DbError> {
            let now = host.now_ms();
            for job in load_jobs(host, ids)? {
                match build_request(&job, now, settings.attempt_timeout_ms) {
                    Ok(request) => match host.http_start(&request) {
                        Ok(ticket) => flying.push(Flight { ticket, job, request, started: now }),
                        Err(e) => failed.push((job, request, Sent { result: Err(e), duration_ms: Some(0) })),
                    },
                    Err(e) => {
                        let request =
                            OutRequest { url: job.url.clone(), headers: Vec::new(), body: Vec::new(), timeout_ms: 0 };
                        failed.push((job, request, Sent { result: Err(e), duration_ms: Some(0) }));
                    }
                }
            }
            Ok(())
        };
    let mut failed_to_start = Vec::new();
    if !initial.is_empty() {
        launch(&initial, &mut flying, &mut failed_to_start)?;
    }
    let mut last_claim: Option<u64> = None;
    loop {
        let now = host.now_ms();
        let claiming = claim_max.is_some() && !host.draining() && now.saturating_sub(run_started) < RUN_BUDGET_MS;
        if let Some(max) = claim_max.filter(|_| claiming) {
            let free = max.saturating_sub(flying.len() as u32);
            // A claim is a query over the due rows: make it when a quarter of
            // the slots are free, or the pipeline ran dry, or now and then for
            // rows that fell due meanwhile — not after every response.
            let worth = free > 0
                && (flying.is_empty()
                    || free >= (max / 4).max(1)
                    || last_claim.is_none_or(|t| now.saturating_sub(t) >= CLAIM_EVERY_MS));
            if worth {
                last_claim = Some(now);
                let ids = claim(host, free, now, now + settings.lease_ms, settings.per_webhook_concurrency.max(1))?;
                if !ids.is_empty() {
                    launch(&ids, &mut flying, &mut failed_to_start)?;
                }
            }
        }
        let mut finished: Vec<(Job, OutRequest, Sent, u64)> =
            failed_to_start.drain(..).map(|(j, r, s)| (j, r, s, now)).collect();
        if flying.is_empty() && finished.is_empty() {
            break;
        }
        if !flying.is_empty() {
            let wait = if claiming { CLAIM_EVERY_MS } else { settings.attempt_timeout_ms + 1000 };
            for (ticket, sent) in host.http_wait(wait) {
                if let Some(i) = flying.iter().position(|f| f.ticket == ticket) {
                    let f = flying.swap_remove(i);
                    finished.push((f.job, f.request, sent, f.started));
                }
            }
        }
        if finished.is_empty() {
            continue;
        }
        let done = host.now_ms();
        let outcomes = transaction(host, || {
            finished
                .iter()
                .map(|(job, req, sent, started)| record(host, job, req, sent, *started, done, mode, &settings))
                .collect::<Result<Vec<_>, DbError>>()
        })?;
        report.attempted += outcomes.len() as u32;
        report.succeeded += outcomes.iter().filter(|o| o.success).count() as u32;
        let count = |state: &str| outcomes.iter().filter(|o| o.state == state).count() as u32;
        host.attempts_recorded(count("succeeded"), count("retrying"), count("exhausted"));
        outcomes_done.extend(outcomes);
    }
    report.outcomes = outcomes_done;
    Ok(report)
}

fn build_request(j: &Job, now: u64, timeout_ms: u64) -> Result<OutRequest, String> {
    let ts = now / 1000;
    let secrets = j.secrets.as_ref().map_err(|e| format!("not sent: the signing secret is unusable: {e}"))?;
    let body = payload(&j.event_type, j.occurred_at, &j.data);
    let mut headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("user-agent".to_owned(), concat!("panel-webhooks/", env!("CARGO_PKG_VERSION")).to_owned()),
        ("webhook-id".to_owned(), j.msg_id.clone()),
        ("webhook-timestamp".to_owned(), ts.to_string()),
    ];
    if !secrets.is_empty() {
        // Several signatures, space-separated, while a rotation lasts.
        let sigs: Vec<String> = secrets.iter().map(|s| signing::sign(s, &j.msg_id, ts, body.as_bytes())).collect();
        headers.push(("webhook-signature".to_owned(), sigs.join(" ")));
    }
    Ok(OutRequest { url: j.url.clone(), headers, body: body.into_bytes(), timeout_ms })
}

/// When the next delivery falls due, if any waits: the earliest unleased
/// due time of an enabled webhook, or the earliest lease expiry.
fn next_due(host: &dyn Host, now: u64) -> Result<Option<u64>, DbError> {
    let due = host.query(
        "SELECT d.next_attempt_at FROM deliveries d CROSS JOIN webhooks w \
         WHERE w.id = d.webhook_id AND w.enabled = 1 AND d.state IN ('pending', 'retrying') \
           AND (d.lease_until IS NULL OR d.lease_until <= ?1) \
         ORDER BY d.next_attempt_at LIMIT 1",
        &[now.into()],
    )?;
    let lease = host.query("SELECT MIN(lease_until) FROM deliveries WHERE lease_until > ?1", &[now.into()])?;
    let first = |r: &crate::host::Rows| r.first().and_then(|r| r.opt_i64(0)).map(|v| u64::try_from(v).unwrap_or(0));
    Ok(match (first(&due), first(&lease)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

fn load_jobs(host: &dyn Host, ids: &[i64]) -> Result<Vec<Job>, DbError> {
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "SELECT d.id, d.webhook_id, d.msg_id, d.attempts, w.url, e.type, e.occurred_at, e.data, \
         w.secret_sealed, w.prev_secret_sealed, w.prev_secret_until \
         FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id JOIN events e ON e.id = d.event_id \
         WHERE d.id IN ({}) ORDER BY d.id",
        placeholders.join(", ")
    );
    let params: Vec<Value> = ids.iter().map(|i| Value::from(*i)).collect();
    let rows = host.query(&sql, &params)?;
    let now = host.now_ms();
    Ok(rows
        .iter()
        .map(|r: Row<'_>| {
            let mut sealed: Vec<Vec<u8>> = r.opt_blob(8).into_iter().collect();
            if r.opt_i64(10).is_some_and(|until| until > now as i64) {
                sealed.extend(r.opt_blob(9));
            }
            Job {
                delivery_id: r.i64(0),
                webhook_id: r.i64(1),
                msg_id: r.str(2),
                attempts: r.i64(3),
                url: r.str(4),
                event_type: r.str(5),
                occurred_at: r.u64(6),
                data: r.str(7),
                secrets: sealed.iter().map(|s| host.open(s)).collect(),
            }
        })
        .collect())
}

/// Sends the given (already leased) deliveries now and records one attempt
/// each; answers their outcomes. The caller holds no transaction.
pub fn attempt(host: &dyn Host, ids: &[i64], mode: Mode) -> Result<Vec<Outcome>, DbError> {
    Ok(drive(host, ids.to_vec(), None, mode, host.now_ms())?.outcomes)
}

#[allow(clippy::too_many_arguments)]
fn record(
    host: &dyn Host,
    job: &Job,
    req: &OutRequest,
    sent: &crate::host::Sent,
    started: u64,
    finished: u64,
    mode: Mode,
    settings: &crate::host::Settings,
) -> Result<Outcome, DbError> {
    let schedule = &settings.retry_schedule_ms;
    let attempt_no = job.attempts + 1;
    let duration = sent.duration_ms.unwrap_or(finished.saturating_sub(started));
    let (status, error, resp_headers, body, body_size, retry_after) = match &sent.result {
        Ok(resp) => (
            Some(resp.status),
            None,
            Some(headers_json(&resp.headers)),
            Some(String::from_utf8_lossy(&resp.body[..resp.body.len().min(MAX_STORED_BODY)]).into_owned()),
            Some(resp.body_size),
            retry_after_ms(resp, finished),
        ),
        Err(e) => (None, Some(e.clone()), None, None, None, None),
    };
    let success = status.is_some_and(|s| (200..300).contains(&s));
    let error = match (status, error) {
        (Some(s), None) if (300..400).contains(&s) => Some(format!("HTTP {s}: redirects are not followed")),
        (_, e) => e,
    };
    host.execute(
        "INSERT INTO attempts (delivery_id, webhook_id, attempt_no, attempted_at, duration_ms, request_headers, \
         response_status, response_headers, response_body, response_body_size, error, success) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        &[
            job.delivery_id.into(),
            job.webhook_id.into(),
            attempt_no.into(),
            started.into(),
            duration.into(),
            headers_json(&req.headers).into(),
            status.map(i64::from).into(),
            resp_headers.into(),
            body.into(),
            body_size.into(),
            error.clone().into(),
            success.into(),
        ],
    )?;

    let gone = status == Some(410);
    let (state, next_at) = if success {
        ("succeeded", None)
    } else if gone || mode == Mode::Once {
        ("exhausted", None)
    } else {
        match schedule.get(usize::try_from(attempt_no).unwrap_or(usize::MAX)) {
            Some(&delay) => {
                let r = host.random_bytes(4);
                let r = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
                let mut delay = jittered(delay, r);
                if let Some(ra) = retry_after {
                    delay = delay.max(ra.min(MAX_RETRY_AFTER_MS));
                }
                ("retrying", Some(finished + delay))
            }
            None => ("exhausted", None),
        }
    };
    host.execute(
        "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_at = ?4, lease_until = NULL, \
         last_status = ?5, last_error = ?6 WHERE id = ?1",
        &[
            job.delivery_id.into(),
            state.into(),
            attempt_no.into(),
            next_at.into(),
            status.map(i64::from).into(),
            error.clone().into(),
        ],
    )?;
    // `failing_since` marks the first failure after the last success.
    let failing_since = host
        .query(
            "UPDATE webhooks SET last_event_type = ?2, last_event_at = ?3, last_status = ?4, last_ok = ?5, \
             failing_since = CASE WHEN ?5 = 1 THEN NULL ELSE COALESCE(failing_since, ?3) END \
             WHERE id = ?1 RETURNING failing_since",
            &[
                job.webhook_id.into(),
                job.event_type.as_str().into(),
                started.into(),
                status.map(i64::from).into(),
                success.into(),
            ],
        )?
        .first()
        .and_then(|r| r.opt_i64(0))
        .map(|v| v as u64);
    let disable = if gone {
        Some("The endpoint answered 410 Gone.".to_owned())
    } else {
        failing_since.filter(|since| finished.saturating_sub(*since) >= settings.auto_disable_after_ms).map(|since| {
            format!(
                "Every delivery failed for {} without a success (since {}).",
                crate::admin::duration_words(finished - since),
                rfc3339(since)
            )
        })
    };
    if let Some(reason) = disable {
        let n = host.execute(
            "UPDATE webhooks SET enabled = 0, disabled_reason = ?2, disabled_at = ?3 WHERE id = ?1 AND enabled = 1",
            &[job.webhook_id.into(), reason.as_str().into(), finished.into()],
        )?;
        if n > 0 {
            host.log(Level::Warn, &format!("webhook {} disabled: {reason}", job.webhook_id));
        }
    }
    Ok(Outcome { delivery_id: job.delivery_id, status, error, success, state })
}

/// `Retry-After` on 429 and 503 — delay-seconds or an HTTP-date — as a
/// delay in milliseconds from `now_ms`.
fn retry_after_ms(resp: &OutResponse, now_ms: u64) -> Option<u64> {
    if resp.status != 429 && resp.status != 503 {
        return None;
    }
    let v = resp.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))?.1.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(s.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(v).ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(at.saturating_sub(now_ms))
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
        insert_delivery(host, &id, webhook_id, created_at, now, Some(lease)).map(Some)
    })?;
    let Some(delivery) = delivery else {
        return Ok(None);
    };
    Ok(attempt(host, &[delivery], Mode::Once)?.into_iter().next())
}

/// Sends one delivery again now (same `webhook-id`). Answers `None` when the
/// delivery does not belong to the webhook or is being sent right now.
pub fn resend(host: &dyn Host, webhook_id: i64, delivery_id: i64) -> Result<Option<Outcome>, DbError> {
    let now = host.now_ms();
    let lease = now + host.settings().lease_ms;
    let leased = host.query(
        "UPDATE deliveries SET lease_until = ?3 WHERE id = ?1 AND webhook_id = ?2 \
         AND (lease_until IS NULL OR lease_until <= ?4) RETURNING state",
        &[delivery_id.into(), webhook_id.into(), lease.into(), now.into()],
    )?;
    let Some(state) = leased.first().map(|r| r.str(0)) else {
        return Ok(None);
    };
    // A delivery still on its schedule stays on it; a finished one gets one more try.
    let mode = if state == "pending" || state == "retrying" { Mode::Scheduled } else { Mode::Once };
    Ok(attempt(host, &[delivery_id], mode)?.into_iter().next())
}

/// Puts every exhausted delivery of a webhook created at or after `since_ms`
/// back on the schedule, due now (one more attempt each). Answers how many.
pub fn retry_failed_since(host: &dyn Host, webhook_id: i64, since_ms: u64) -> Result<u64, DbError> {
    host.execute(
        "UPDATE deliveries SET state = 'retrying', next_attempt_at = ?3, lease_until = NULL \
         WHERE webhook_id = ?1 AND state = 'exhausted' AND created_at >= ?2",
        &[webhook_id.into(), since_ms.into(), host.now_ms().into()],
    )
}

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
}

/// Rows deleted per statement, so the write lock is held briefly.
const PRUNE_BATCH: u32 = 2000;
/// Statements per table per pass; the next pass continues.
const PRUNE_ROUNDS: u32 = 50;

/// Deletes history older than the retention period: attempts of finished
/// deliveries, then finished deliveries without attempts, then events
/// without deliveries. Pending and retrying work is never pruned.
pub fn maintain(host: &dyn Host) -> Result<Pruned, DbError> {
    let cutoff = host.now_ms().saturating_sub(host.settings().retention_ms);
    let mut p = Pruned::default();
    let steps: [(&str, &mut u64); 3] = [
        (
            "DELETE FROM attempts WHERE id IN (SELECT a.id FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE a.attempted_at < ?1 AND d.state IN ('succeeded', 'exhausted') LIMIT ?2)",
            &mut p.attempts,
        ),
        (
            "DELETE FROM deliveries WHERE id IN (SELECT d.id FROM deliveries d WHERE d.created_at < ?1 \
             AND d.state IN ('succeeded', 'exhausted') \
             AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id) LIMIT ?2)",
            &mut p.deliveries,
        ),
        (
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.raised_at < ?1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) LIMIT ?2)",
            &mut p.events,
        ),
    ];
    for (sql, count) in steps {
        for _ in 0..PRUNE_ROUNDS {
            let n = host.execute(sql, &[cutoff.into(), PRUNE_BATCH.into()])?;
            *count += n;
            if n < u64::from(PRUNE_BATCH) {
                break;
            }
        }
    }
    Ok(p)
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
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(jittered(1000, 0), 800);
        assert_eq!(jittered(1000, u32::MAX), 1200);
        assert_eq!(jittered(0, 12345), 0);
        let mid = jittered(1000, u32::MAX / 2);
        assert!((999..=1001).contains(&mid));
    }

    #[test]
    fn msg_id_is_stable_and_distinct() {
        assert_eq!(msg_id("e1", 1, 5), msg_id("e1", 1, 5));
        assert_ne!(msg_id("e1", 1, 5), msg_id("e1", 2, 5));
        assert_ne!(msg_id("e1", 1, 5), msg_id("e1", 1, 6));
        assert!(msg_id("e1", 1, 5).starts_with("msg_"));
    }

    #[test]
    fn event_checks() {
        let ok = NewEvent {
            id: "evt_1".into(),
            event_type: "user.created".into(),
            occurred_at_ms: 0,
            data_json: "{ \"a\" : 1 }".into(),
        };
        assert_eq!(check(&ok).unwrap(), r#"{"a":1}"#);
        let mut e = ok.clone();
        e.event_type = "user.exploded".into();
        assert!(matches!(check(&e), Err(RaiseError::UnknownType(_))));
        let mut e = ok.clone();
        e.data_json = "[1]".into();
        assert!(matches!(check(&e), Err(RaiseError::InvalidData(_))));
        let mut e = ok.clone();
        e.data_json = "{".into();
        assert!(matches!(check(&e), Err(RaiseError::InvalidData(_))));
        let mut e = ok;
        e.id = "has space".into();
        assert!(matches!(check(&e), Err(RaiseError::InvalidData(_))));
    }

    #[test]
    fn retry_after_forms() {
        let resp = |status: u16, v: &str| OutResponse {
            status,
            headers: vec![("Retry-After".into(), v.into())],
            body: Vec::new(),
            body_size: 0,
        };
        assert_eq!(retry_after_ms(&resp(429, "7"), 0), Some(7000));
        // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 s.
        let now = 1_445_412_470_000;
        assert_eq!(retry_after_ms(&resp(503, "Wed, 21 Oct 2015 07:28:00 GMT"), now), Some(10_000));
        assert_eq!(retry_after_ms(&resp(503, "Wed, 21 Oct 2015 07:28:00 GMT"), now + 60_000), Some(0));
        assert_eq!(retry_after_ms(&resp(500, "7"), 0), None);
        assert_eq!(retry_after_ms(&resp(429, "soon"), 0), None);
    }

    #[test]
    fn headers_are_capped() {
        let big = vec![("x-big".to_owned(), "v".repeat(5000))];
        let j = headers_json(&big);
        assert!(j.len() < 1100);
        let many: Vec<_> = (0..100).map(|i| (format!("h{i}"), "v".repeat(1000))).collect();
        assert!(headers_json(&many).len() < MAX_HEADERS_TOTAL + 200);
    }
}
