//! Native tests of the component's logic against [`TestHost`]: the public
//! functions the glue (`glue.rs`) calls — `outbox::raise_batch`,
//! `raise_each`, `step`, `build`, `stats`, `maintain`, `api::handle`,
//! `schema::migrate` — on an in-memory SQLite, without wasmtime.

mod api;
mod controls;
mod health;
mod history;
mod intake;
mod pages;
mod pipeline;
mod playground;
mod policy;
mod ratelimit;
mod schema;
mod sessions;
mod transform;
mod webhook;

use crate::host::{Host, OutResponse};
use crate::outbox::{self, Finished, NewEvent, StepReport};
use crate::testhost::{TestHost, response};
use crate::{store, webhook as wh};

/// A valid raw secret.
pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// A webhook subscribed to `events`, created as the pages and the API do
/// (validated, then stored); answers its id.
pub fn hook(h: &TestHost, url: &str, events: &[&str]) -> i64 {
    hook_with(h, url, events, None)
}

/// [`hook`] with a secret.
pub fn hook_with(h: &TestHost, url: &str, events: &[&str], secret: Option<&str>) -> i64 {
    let input = wh::Input {
        name: format!("hook {url}"),
        url: url.to_owned(),
        secret: Some(secret.unwrap_or_default().to_owned()),
        rotate: false,
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        enabled: true,
        ..Default::default()
    };
    let valid = wh::validate(h, &input).expect("valid webhook");
    store::create(h, &valid).expect("created")
}

/// An event of `event_type` with id `id` and data valid against the type's
/// schema (its published example) plus `"n": 1`.
pub fn ev(id: &str, event_type: &str) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        event_type: event_type.to_owned(),
        occurred_at_ms: 1_000,
        data_json: data(event_type, 1),
    }
}

/// Valid `data` for `event_type` (its schema's example) with `"n": n` added,
/// so events can differ.
pub fn data(event_type: &str, n: i64) -> String {
    let mut d = crate::catalog::find(event_type).map(|t| t.example_value()).unwrap_or_else(|| serde_json::json!({}));
    d["n"] = n.into();
    d.to_string()
}

/// Raises one event through `raise_batch`; answers how many deliveries it queued.
pub fn raise(h: &TestHost, id: &str, event_type: &str) -> u32 {
    outbox::raise_batch(h, &[ev(id, event_type)]).expect("raised")[0].queued
}

/// One `deliveries.step` without raising or recording.
pub fn claim(h: &TestHost, max: u32) -> StepReport {
    let r = outbox::step(h, &[], &[], max).expect("step");
    assert!(!h.in_transaction());
    r
}

/// A finished attempt of `delivery` answered by `resp`, started now.
pub fn answered(h: &TestHost, delivery: i64, resp: OutResponse) -> Finished {
    Finished {
        delivery_id: delivery,
        started_ms: h.now_ms(),
        duration_ms: 20,
        result: Ok(resp),
        request_headers: vec![("webhook-id".into(), "msg_x".into())],
        transformed: None,
    }
}

/// A finished attempt of `delivery` answered `status` with an empty body.
pub fn status(h: &TestHost, delivery: i64, status: u16) -> Finished {
    answered(h, delivery, response(status, &[], b""))
}

/// A finished attempt of `delivery` that failed in transport.
pub fn failed(h: &TestHost, delivery: i64, error: &str) -> Finished {
    Finished {
        delivery_id: delivery,
        started_ms: h.now_ms(),
        duration_ms: 15_000,
        result: Err(error.into()),
        request_headers: Vec::new(),
        transformed: None,
    }
}

/// Records `finished` through a step that claims nothing.
pub fn record(h: &TestHost, finished: Vec<Finished>) {
    outbox::step(h, &[], &finished, 0).expect("step records");
    assert!(!h.in_transaction());
}

/// A delivery's (state, attempts, next_attempt_at, lease_until).
pub fn delivery(h: &TestHost, id: i64) -> (String, i64, Option<i64>, Option<i64>) {
    let r = h
        .query("SELECT state, attempts, next_attempt_at, lease_until FROM deliveries WHERE id = ?1", &[id.into()])
        .unwrap();
    let r = r.first().unwrap_or_else(|| panic!("no delivery {id}"));
    (r.str(0), r.i64(1), r.opt_i64(2), r.opt_i64(3))
}

/// The ids of a webhook's deliveries, oldest first.
pub fn deliveries_of(h: &TestHost, webhook: i64) -> Vec<i64> {
    h.query("SELECT id FROM deliveries WHERE webhook_id = ?1 ORDER BY id", &[webhook.into()])
        .unwrap()
        .iter()
        .map(|r| r.i64(0))
        .collect()
}
