//! Operational notices (#24): when a webhook starts failing or is disabled
//! automatically, the product raises `webhook.failing` / `webhook.disabled`
//! itself, delivered to the other enabled webhooks subscribed to that type
//! (never to the webhook it is about: it is the one not answering), and
//! logs a line; the dashboard shows a banner from the same columns.
//!
//! **Exactly once per transition, on both engines.** "Failing" is a failure
//! streak opening: the first failed attempt after the last success (or a
//! webhook's first attempt failing), the moment `webhooks.failing_since` is
//! set. Its notice is taken by a conditional update of the webhook's row
//! (`failing_noticed = failing_since WHERE failing_noticed` differs), and
//! a disable's by the disable's own conditional update (`WHERE enabled =
//! 1`); the notice's event and deliveries are written in the same
//! transaction as that update (SQLite: the step's; PostgreSQL: a short one
//! of its own after the step's bookkeeping). On PostgreSQL two nodes taking
//! the same transition run the update one after the other on the locked
//! row, and the second finds nothing to take. The event id is derived from
//! the transition (webhook and time), so even a repeat would store nothing.

use serde_json::{Value as Json, json};

use super::intake::delivery_row;
use super::policy;
use crate::catalog;
use crate::host::{DbError, Dialect, Host, Level, Value};

/// What a notice says about one webhook.
pub struct Notice {
    pub event_type: &'static str,
    pub webhook_id: i64,
    /// When the transition happened (the streak's start, the disable).
    pub at_ms: u64,
    pub data: Json,
}

impl Notice {
    /// `webhook.failing` for a streak that began at `since`.
    pub fn failing(webhook_id: i64, name: &str, url: &str, since: u64, status: Option<u16>, reason: &str) -> Self {
        Notice {
            event_type: catalog::NOTICE_FAILING,
            webhook_id,
            at_ms: since,
            data: json!({
                "webhook_id": webhook_id, "name": name, "url": url, "reason": reason,
                "failing_since": super::rfc3339(since), "last_status": status,
            }),
        }
    }

    /// `webhook.disabled` at `at`.
    pub fn disabled(webhook_id: i64, name: &str, url: &str, at: u64, reason: &str) -> Self {
        Notice {
            event_type: catalog::NOTICE_DISABLED,
            webhook_id,
            at_ms: at,
            data: json!({
                "webhook_id": webhook_id, "name": name, "url": url, "reason": reason,
                "disabled_at": super::rfc3339(at),
            }),
        }
    }

    /// The event id: one per transition.
    fn event_id(&self) -> String {
        let kind = self.event_type.trim_start_matches("webhook.");
        format!("evt_webhook_{kind}_{}_{}", self.webhook_id, self.at_ms)
    }
}

/// Raises a notice inside the caller's transaction; answers how many
/// deliveries it queued. Payload filters apply as for any event.
pub fn raise(host: &dyn Host, n: &Notice, now: u64) -> Result<u32, DbError> {
    let id = n.event_id();
    let data = n.data.to_string();
    let lock = match host.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR KEY SHARE OF w",
    };
    let subs = host.query(
        &format!(
            "SELECT w.id, w.created_at, w.payload_filter FROM webhook_events s JOIN webhooks w ON w.id = s.webhook_id \
             WHERE w.enabled = 1 AND s.event_type = ?1 AND w.id <> ?2 ORDER BY w.id{lock}"
        ),
        &[n.event_type.into(), n.webhook_id.into()],
    )?;
    let due = policy::first_due(&host.settings().retry_schedule_ms, now);
    let mut filters = crate::controls::Filters::default();
    let mut parsed = None;
    let mut deliveries = Vec::new();
    let mut filtered: Vec<Vec<Value>> = Vec::new();
    for r in subs.iter() {
        let (webhook_id, created_at, filter) = (r.i64(0), r.i64(1), r.opt_str(2));
        if let Some(f) = filter
            && !filters.admits(&f, &data, &mut parsed)
        {
            filtered.push(vec![
                webhook_id.into(),
                id.as_str().into(),
                n.event_type.into(),
                now.into(),
                f.as_str().into(),
            ]);
            continue;
        }
        deliveries.push(delivery_row(&id, webhook_id, created_at, now, due, None));
    }
    // Stored only when someone gets it (a notice nobody subscribed to
    // leaves no event row behind). Raised twice, it is stored once.
    if !deliveries.is_empty() {
        let inserted = host.execute(
            "INSERT INTO events (id, type, occurred_at, data, raised_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (id) DO NOTHING",
            &[id.as_str().into(), n.event_type.into(), n.at_ms.into(), data.as_str().into(), now.into()],
        )?;
        if inserted == 0 {
            return Ok(0);
        }
        host.execute_many(super::intake::INSERT_DELIVERY, &deliveries)?;
    }
    if !filtered.is_empty() {
        host.execute_many(crate::controls::INSERT_FILTERED, &filtered)?;
    }
    Ok(deliveries.len() as u32)
}

/// Takes the "failing" transition of a webhook whose streak is open, if no
/// notice was raised for this streak yet, and raises it. `status` and
/// `reason` describe the failure that opened or continued it.
pub fn failing(host: &dyn Host, webhook_id: i64, status: Option<u16>, reason: &str, now: u64) -> Result<(), DbError> {
    let taken = host.query(
        "UPDATE webhooks SET failing_noticed = failing_since WHERE id = ?1 AND enabled = 1 \
         AND failing_since IS NOT NULL AND (failing_noticed IS NULL OR failing_noticed <> failing_since) \
         RETURNING name, url, failing_since",
        &[webhook_id.into()],
    )?;
    let Some(r) = taken.first() else { return Ok(()) };
    let (name, url, since) = (r.str(0), r.str(1), r.u64(2));
    let queued = raise(host, &Notice::failing(webhook_id, &name, &url, since, status, reason), now)?;
    host.log(
        Level::Warn,
        &format!(
            "webhook {webhook_id} is failing since {}: {reason} (notice queued to {queued})",
            super::rfc3339(since)
        ),
    );
    Ok(())
}

/// Raises `webhook.disabled` for a disable just taken (the caller's
/// conditional update answered the row).
pub fn disabled(
    host: &dyn Host,
    webhook_id: i64,
    name: &str,
    url: &str,
    at: u64,
    reason: &str,
) -> Result<u32, DbError> {
    raise(host, &Notice::disabled(webhook_id, name, url, at, reason), at)
}
