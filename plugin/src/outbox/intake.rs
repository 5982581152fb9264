//! Intake: raising events into delivery rows. One short transaction per
//! call (events, then one delivery per enabled subscriber, each as one
//! batched statement); never touches the network.

use super::{MAX_DATA, msg_id, policy};
use crate::catalog;
use crate::host::{DbError, Dialect, Host, Value, in_list, transaction};

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
    /// `field` names the input as the event API does: `id`,
    /// `occurred_at_ms`, `data` or a path into it (`data.id`).
    InvalidData {
        field: String,
        message: String,
    },
    /// The id was raised before with a different type or data.
    Conflict(String),
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

/// Checks one event without touching storage; answers its `data` as stored:
/// the panel's own JSON text (trimmed), parsed once here only to validate,
/// so the bytes a receiver gets are the bytes the panel sent.
pub fn check_event(e: &NewEvent) -> Result<&str, RaiseError> {
    let Some(ty) = catalog::find(&e.event_type) else {
        return Err(RaiseError::UnknownType(format!("unknown event type: {}", e.event_type)));
    };
    if e.event_type == catalog::TEST_EVENT {
        // It would reach every webhook at once and look like the admin's own test.
        return Err(RaiseError::UnknownType(format!(
            "{} is not raised by the panel: it is sent to one webhook by \"Send test\" \
             (POST /api/webhooks/{{id}}/test)",
            catalog::TEST_EVENT
        )));
    }
    if catalog::is_notice(&e.event_type) {
        // Raised by the product itself when one of its webhooks fails or is
        // disabled (#24): a panel raising one would forge that news.
        return Err(RaiseError::UnknownType(format!(
            "{} is not raised by the panel: the product raises it itself when a webhook starts failing \
             or is disabled automatically",
            e.event_type
        )));
    }
    let invalid = |field: &str, message: String| RaiseError::InvalidData { field: field.into(), message };
    // The id travels in the payload, in logs, in URLs of the API and (hashed)
    // in `webhook-id`: a short, URL- and header-safe alphabet keeps it one
    // token everywhere, and 128 characters fit any panel's own key plus a
    // suffix (`txn_1-paid`, a UUID, `invoice:2026:42`).
    if e.id.is_empty() || e.id.len() > 128 || !e.id.chars().all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c)) {
        return Err(invalid("id", "event id must be 1-128 characters of letters, digits, '_', '-', '.' or ':'".into()));
    }
    if e.occurred_at_ms > super::MAX_TIME_MS {
        return Err(invalid(
            "occurred_at_ms",
            format!(
                "occurred_at_ms: {} is past the year 9999; it must be milliseconds since 1970 \
                 (a value this large is often microseconds or nanoseconds)",
                e.occurred_at_ms
            ),
        ));
    }
    if e.data_json.len() > MAX_DATA {
        return Err(invalid("data", format!("data is larger than {MAX_DATA} bytes")));
    }
    let data = e.data_json.trim();
    let value = match serde_json::from_str::<serde_json::Value>(data) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => return Err(invalid("data", "data must be a JSON object".into())),
        Err(err) => return Err(invalid("data", format!("data is not valid JSON: {err}"))),
    };
    // Receivers rely on the published schema (docs/EVENTS.md): what does not
    // match it is refused here, not delivered.
    if let Err(e) = ty.validate(&value) {
        return Err(invalid(&e.field, e.message));
    }
    Ok(data)
}

/// Raises events in one transaction: all are stored or none.
pub fn raise_batch(host: &dyn Host, events: &[NewEvent]) -> Result<Vec<Raised>, RaiseError> {
    let checked = events
        .iter()
        .enumerate()
        .map(|(i, e)| check_event(e).map(|d| (e, d)).map_err(|err| in_batch(i, err)))
        .collect::<Result<Vec<_>, _>>()?;
    commit(host, &checked)
}

/// A batch's refusal names the event it is about: `events[3].data.id`.
fn in_batch(i: usize, e: RaiseError) -> RaiseError {
    match e {
        RaiseError::InvalidData { field, message } => RaiseError::InvalidData {
            field: format!("events[{i}].{field}"),
            message: format!("events[{i}]: {message}"),
        },
        RaiseError::UnknownType(m) => RaiseError::UnknownType(format!("events[{i}]: {m}")),
        other => other,
    }
}

/// Raises independent events in one transaction (the host's group commit):
/// each is checked and answered on its own; a storage failure fails all.
pub fn raise_each(host: &dyn Host, events: &[NewEvent]) -> Vec<Result<Raised, RaiseError>> {
    let now = host.now_ms();
    let schedule = host.settings().retry_schedule_ms;
    match transaction(host, || commit_each(host, events, &schedule, now)) {
        Ok(answers) => answers,
        Err(e) => refuse_all(events, &e),
    }
}

/// Every event's answer when the transaction holding them failed: its own
/// check's refusal, or the storage error.
pub fn refuse_all(events: &[NewEvent], e: &DbError) -> Vec<Result<Raised, RaiseError>> {
    let msg = e.to_string();
    events.iter().map(|ev| check_event(ev).and(Err(RaiseError::Storage(msg.clone())))).collect()
}

/// [`raise_each`]'s work inside the caller's write transaction: each event
/// checked on its own, the valid ones stored. `Err` only for a storage
/// failure, which must fail the whole transaction.
pub fn commit_each(
    host: &dyn Host,
    events: &[NewEvent],
    schedule: &[u64],
    now: u64,
) -> Result<Vec<Result<Raised, RaiseError>>, DbError> {
    let checks: Vec<Result<&str, RaiseError>> = events.iter().map(check_event).collect();
    let valid: Vec<(&NewEvent, &str)> =
        events.iter().zip(&checks).filter_map(|(e, c)| c.as_ref().ok().map(|d| (e, *d))).collect();
    let mut committed = commit_in(host, &valid, schedule, now)?.into_iter();
    Ok(checks.into_iter().map(|c| c.and_then(|_| committed.next().expect("one answer per valid event"))).collect())
}

/// Stores checked events and their deliveries in one transaction; answers
/// one `Raised` per event, in order. An id raised before (in an earlier call
/// or earlier in this one) queues nothing.
fn commit(host: &dyn Host, events: &[(&NewEvent, &str)]) -> Result<Vec<Raised>, RaiseError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let now = host.now_ms();
    let schedule = host.settings().retry_schedule_ms;
    // All or nothing: a conflicting id refuses the batch (rolled back).
    transaction(host, || commit_in(host, events, &schedule, now)?.into_iter().collect())
}

/// [`commit`]'s work inside the caller's write transaction.
fn commit_in(
    host: &dyn Host,
    events: &[(&NewEvent, &str)],
    schedule: &[u64],
    now: u64,
) -> Result<Vec<Result<Raised, RaiseError>>, DbError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let due = policy::first_due(schedule, now);
    {
        let subscribers = subscribers_of(host, events)?;
        let rows: Vec<Vec<Value>> = events
            .iter()
            .map(|(e, data)| {
                vec![
                    e.id.as_str().into(),
                    e.event_type.as_str().into(),
                    e.occurred_at_ms.into(),
                    (*data).into(),
                    now.into(),
                ]
            })
            .collect();
        let inserted = host.execute_many(
            "INSERT INTO events (id, type, occurred_at, data, raised_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (id) DO NOTHING",
            &rows,
        )?;
        let mut deliveries = Vec::new();
        let mut filtered = Vec::new();
        let mut filters = crate::controls::Filters::default();
        let mut out = Vec::with_capacity(events.len());
        for ((e, data), n) in events.iter().zip(inserted) {
            if n == 0 {
                // Raised before. The same event again is the panel retrying:
                // its deliveries exist already. Another event under the same
                // id is a mistake the panel must hear of (as Stripe answers
                // a reused idempotency key), not a silent `queued: 0`.
                let stored = host.query("SELECT type, data FROM events WHERE id = ?1", &[e.id.as_str().into()])?;
                let same = stored.first().is_some_and(|r| r.str(0) == e.event_type && r.str(1) == *data);
                out.push(if same {
                    Ok(Raised { event_id: e.id.clone(), queued: 0 })
                } else {
                    Err(RaiseError::Conflict(format!(
                        "id {:?} was raised before with a different type or data; use a new id for a new event",
                        e.id
                    )))
                });
                continue;
            }
            let mut queued = 0;
            let mut parsed = None;
            for (_, webhook_id, created_at, filter) in subscribers.iter().filter(|s| s.0 == e.event_type) {
                // The webhook's payload filter (#24): an event it does not
                // admit is not queued for it, and the history says why.
                if let Some(f) = filter
                    && !filters.admits(f, data, &mut parsed)
                {
                    filtered.push(vec![
                        (*webhook_id).into(),
                        e.id.as_str().into(),
                        e.event_type.as_str().into(),
                        now.into(),
                        f.as_str().into(),
                    ]);
                    continue;
                }
                deliveries.push(delivery_row(&e.id, *webhook_id, *created_at, now, due, None));
                queued += 1;
            }
            out.push(Ok(Raised { event_id: e.id.clone(), queued }));
        }
        if !deliveries.is_empty() {
            host.execute_many(INSERT_DELIVERY, &deliveries)?;
        }
        if !filtered.is_empty() {
            host.execute_many(crate::controls::INSERT_FILTERED, &filtered)?;
        }
        Ok(out)
    }
}

/// A subscription: (event type, webhook id, webhook created-at, payload filter).
type Subscriber = (String, i64, i64, Option<String>);

/// Every enabled subscription to the types among `events`, in one query.
fn subscribers_of(host: &dyn Host, events: &[(&NewEvent, &str)]) -> Result<Vec<Subscriber>, DbError> {
    let mut types: Vec<&str> = events.iter().map(|(e, _)| e.event_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let (marks, params) = in_list(types.iter().map(|t| Value::from(*t)).collect());
    // On PostgreSQL a webhook deleted by another transaction meanwhile must
    // not make this one's deliveries fail their foreign key (and with them
    // every event of the group): `KEY SHARE` makes a delete wait for this
    // commit, or, deleted first, drops the webhook from what this reads.
    // It does not wait for edits or toggles.
    let lock = match host.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => " FOR KEY SHARE OF w",
    };
    let sql = format!(
        "SELECT s.event_type, w.id, w.created_at, w.payload_filter FROM webhook_events s \
         JOIN webhooks w ON w.id = s.webhook_id \
         WHERE w.enabled = 1 AND s.event_type IN ({marks}) ORDER BY w.id{lock}"
    );
    Ok(host.query(&sql, &params)?.iter().map(|r| (r.str(0), r.i64(1), r.i64(2), r.opt_str(3))).collect())
}

/// Inserts one delivery row (parameters from [`delivery_row`]).
pub const INSERT_DELIVERY: &str = "INSERT INTO deliveries (webhook_id, event_id, msg_id, state, attempts, next_attempt_at, lease_until, created_at) \
     VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?6)";

/// The parameters of [`INSERT_DELIVERY`].
pub fn delivery_row(
    event_id: &str,
    webhook_id: i64,
    webhook_created_at: i64,
    now: u64,
    due: u64,
    lease_until: Option<u64>,
) -> Vec<Value> {
    vec![
        webhook_id.into(),
        event_id.into(),
        msg_id(event_id, webhook_id, webhook_created_at).into(),
        due.into(),
        lease_until.into(),
        now.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_checks() {
        let ok = NewEvent {
            id: "evt_1".into(),
            event_type: "user.created".into(),
            occurred_at_ms: 0,
            data_json: " { \"id\" : 1, \"email\": \"a@example.com\" }\n".into(),
        };
        // The panel's bytes, trimmed; not re-serialised.
        assert_eq!(check_event(&ok).unwrap(), "{ \"id\" : 1, \"email\": \"a@example.com\" }");
        let mut e = ok.clone();
        e.event_type = "user.exploded".into();
        assert!(matches!(check_event(&e), Err(RaiseError::UnknownType(_))));
        for bad in ["[1]", "{", "1", "\"{}\"", "{} {}", "{\"a\":1}x"] {
            let mut e = ok.clone();
            e.data_json = bad.into();
            assert!(
                matches!(check_event(&e), Err(RaiseError::InvalidData { ref field, .. }) if field == "data"),
                "{bad}"
            );
        }
        let mut e = ok.clone();
        e.event_type = catalog::TEST_EVENT.into();
        assert!(matches!(check_event(&e), Err(RaiseError::UnknownType(_))), "test.webhook is not raised");
        let mut e = ok.clone();
        e.id = "has space".into();
        assert!(matches!(check_event(&e), Err(RaiseError::InvalidData { ref field, .. }) if field == "id"));
        let mut e = ok.clone();
        e.occurred_at_ms = 253_402_300_800_000;
        assert!(matches!(check_event(&e), Err(RaiseError::InvalidData { ref field, .. }) if field == "occurred_at_ms"));
    }

    #[test]
    fn data_must_match_the_published_schema() {
        let ev = |data: &str| NewEvent {
            id: "evt_1".into(),
            event_type: "user.created".into(),
            occurred_at_ms: 0,
            data_json: data.into(),
        };
        let refused = |data: &str| match check_event(&ev(data)) {
            Err(RaiseError::InvalidData { field, message }) => (field, message),
            other => panic!("{data}: {other:?}"),
        };
        assert!(check_event(&ev(r#"{"id": 42, "email": "ada@example.com", "extra": [1]}"#)).is_ok());
        let (field, message) = refused(r#"{"id": "not-an-int", "email": "ada@example.com"}"#);
        assert_eq!(field, "data.id");
        assert!(message.contains("integer"), "{message}");
        assert_eq!(refused(r#"{"email": "ada@example.com"}"#).0, "data");
        assert_eq!(refused(r#"{"id": 0, "email": "ada@example.com"}"#).0, "data.id");
        assert_eq!(refused(r#"{"id": 1, "email": "not an address"}"#).0, "data.email");
        assert_eq!(refused(r#"{"id": 1, "email": "a@example.com", "role": "root"}"#).0, "data.role");
        assert_eq!(refused(r#"{"id": 1, "email": "a@example.com", "created_at": "yesterday"}"#).0, "data.created_at");
        // A huge refused value is not echoed back whole.
        let big = format!(r#"{{"id": "{}", "email": "a@example.com"}}"#, "x".repeat(100_000));
        assert!(refused(&big).1.len() < 400);
        // Every type's own example passes intake.
        for t in catalog::EVENTS.iter().filter(|t| t.name != catalog::TEST_EVENT && !catalog::is_notice(t.name)) {
            let mut e = ev(&t.example());
            e.event_type = t.name.into();
            assert!(check_event(&e).is_ok(), "{}", t.name);
        }
    }

    #[test]
    fn a_batch_refusal_names_the_event() {
        let e = in_batch(3, RaiseError::InvalidData { field: "data.id".into(), message: "m".into() });
        assert!(matches!(e, RaiseError::InvalidData { ref field, .. } if field == "events[3].data.id"));
    }
}
