//! Example transformation (#24): `user.created` as a Slack-style message.
//!
//! A webhook whose URL is a Slack incoming webhook
//! (`https://hooks.slack.com/services/…`) with this transformation posts
//!
//! ```json
//! {"text": "New user: Ada Lovelace <ada@example.com> (id 42)"}
//! ```
//!
//! for each `user.created`, and skips every other event (Slack would not
//! know what to do with it). Build and upload:
//!
//! ```sh
//! cd examples && cargo build --release --target wasm32-wasip2 -p transform-slack
//! # target/wasm32-wasip2/release/transform_slack.wasm: the webhook's form, or
//! # PUT /api/webhooks/{id}/transform {"component": "<base64>"}
//! ```
#![no_std]
// The generated export shim takes the event's fields one by one.
#![allow(clippy::too_many_arguments)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;

#[path = "../../common/guest.rs"]
mod guest;

wit_bindgen::generate!({
    path: "../../wit/transform",
    world: "webhooks:transform/transformer",
});

struct Slack;

impl Guest for Slack {
    fn transform(event: Event) -> Result<Outgoing, SkipOrError> {
        if event.event_type != "user.created" {
            return Err(SkipOrError::Skip(format!("only user.created goes to Slack, not {}", event.event_type)));
        }
        // The body is {"type", "timestamp", "data": {…}}: the fields below are the data's.
        let Some(email) = guest::string_field(&event.body, "email") else {
            return Err(SkipOrError::Error(String::from("the event has no email")));
        };
        let id = guest::number_field(&event.body, "id").map(|i| format!(" (id {i})")).unwrap_or_default();
        let who = match guest::string_field(&event.body, "name") {
            Some(name) => format!("{name} <{email}>"),
            None => email,
        };
        let text = format!("New user: {who}{id}");
        Ok(Outgoing {
            body: Some(format!("{{\"text\":{}}}", guest::json_string(&text))),
            headers: vec![(String::from("x-transform"), String::from("transform-slack"))],
            path: None,
        })
    }
}

export!(Slack);
