//! A transformation that reads the clock (#24): built with the standard
//! library, it imports `wasi:clocks` (and the rest of what std needs), so
//! the host refuses it at upload, naming what it imports. The tests prove
//! that; never attach it.

// The generated export shim takes the event's fields one by one.
#![allow(clippy::too_many_arguments)]

use std::time::SystemTime;

wit_bindgen::generate!({
    path: "../../wit/transform",
    world: "webhooks:transform/transformer",
});

struct Clock;

impl Guest for Clock {
    fn transform(_event: Event) -> Result<Outgoing, SkipOrError> {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Ok(Outgoing { body: None, headers: vec![("x-sent-at".into(), now.to_string())], path: None })
    }
}

export!(Clock);
