//! The event catalog: every event type the plugin accepts.

use std::sync::OnceLock;

/// One event type.
#[derive(Debug, Clone, Copy)]
pub struct EventType {
    pub name: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    /// JSON Schema (2020-12) of the event's `data`, from `plugin/events/`;
    /// its first `examples` entry is the example shown to admins.
    pub schema: &'static str,
}

impl EventType {
    /// The example `data` object from the schema, compact JSON.
    pub fn example(&self) -> String {
        self.example_value().to_string()
    }

    /// The example `data` object as a value.
    pub fn example_value(&self) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(self.schema)
            .ok()
            .and_then(|mut s| s.get_mut("examples")?.get_mut(0).map(serde_json::Value::take))
            .unwrap_or_else(|| serde_json::json!({}))
    }
}

/// Why `data` does not match its event type's schema: where (a path such
/// as `data.items[2].sku`) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaError {
    pub field: String,
    pub message: String,
}

/// A refusal's message quotes the value it refused; a 100 kB one is not
/// echoed back to the panel.
const MAX_QUOTE: usize = 200;

impl EventType {
    /// Checks `data` against this type's published schema (formats such as
    /// `email` and `date-time` asserted, as `docs/EVENTS.md` promises
    /// receivers). The first problem is answered, with its path.
    pub fn validate(&self, data: &serde_json::Value) -> Result<(), SchemaError> {
        let Some(v) = self.validator() else {
            // Cannot happen for a schema the catalog tests compile; refuse
            // rather than deliver what nobody checked.
            return Err(SchemaError { field: "data".into(), message: format!("no schema for {}", self.name) });
        };
        // The common case first: `is_valid` stops at the first failing
        // keyword and builds no error; only a refusal walks for its path.
        if v.is_valid(data) {
            return Ok(());
        }
        let Some(e) = v.iter_errors(data).next() else { return Ok(()) };
        let mut field = String::from("data");
        for seg in &e.instance_path {
            match seg {
                jsonschema::paths::LocationSegment::Property(p) => {
                    field.push('.');
                    field.push_str(&p);
                }
                jsonschema::paths::LocationSegment::Index(i) => field.push_str(&format!("[{i}]")),
            }
        }
        let mut message = e.to_string();
        if message.len() > MAX_QUOTE {
            let mut end = MAX_QUOTE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        Err(SchemaError { message: format!("{field}: {message}"), field })
    }

    /// This type's compiled schema, built once per instance of the component.
    fn validator(&self) -> Option<&'static jsonschema::Validator> {
        static VALIDATORS: [OnceLock<Option<jsonschema::Validator>>; EVENTS.len()] =
            [const { OnceLock::new() }; EVENTS.len()];
        let i = EVENTS.iter().position(|e| e.name == self.name)?;
        VALIDATORS[i]
            .get_or_init(|| {
                let schema = serde_json::from_str::<serde_json::Value>(self.schema).ok()?;
                jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .should_validate_formats(true)
                    .build(&schema)
                    .ok()
            })
            .as_ref()
    }
}

/// One catalog entry; the schema file is named after the event.
macro_rules! event {
    ($name:literal, $category:expr, $description:literal) => {
        EventType {
            name: $name,
            category: $category,
            description: $description,
            schema: include_str!(concat!("../events/", $name, ".json")),
        }
    };
}

/// The event sent by "Send test"; not subscribable, always delivered to the
/// one webhook being tested.
pub const TEST_EVENT: &str = "test.webhook";

/// Every event type, in the order the admin form shows them.
pub const EVENTS: &[EventType] = &[
    event!("user.created", "User", "A user account was created."),
    event!("user.updated", "User", "A user's profile or settings changed."),
    event!("user.deleted", "User", "A user account was deleted."),
    event!("server.created", "Server", "A server was provisioned."),
    event!("server.deleted", "Server", "A server was removed."),
    event!("transaction.created", "Transaction", "A payment was started."),
    event!("transaction.success", "Transaction", "A payment succeeded."),
    event!("transaction.failed", "Transaction", "A payment failed."),
    event!("transaction.refunded", "Transaction", "A payment was refunded."),
    event!("ticket.created", "Ticket", "A support ticket was opened."),
    event!("ticket.closed", "Ticket", "A support ticket was closed."),
    event!("ticket.reopened", "Ticket", "A closed support ticket was reopened."),
    event!("webhook.failing", "Webhook", "Another webhook started failing."),
    event!("webhook.disabled", "Webhook", "Another webhook was disabled automatically."),
    event!("test.webhook", "Test", "Sent by \"Send test\" to check an endpoint."),
];

/// Operational notices (#24): raised by the product itself about one of its
/// webhooks, delivered to the others subscribed to them; never raised by a
/// panel.
pub const NOTICE_FAILING: &str = "webhook.failing";
pub const NOTICE_DISABLED: &str = "webhook.disabled";

/// Whether the product raises this type itself (a panel may not).
pub fn is_notice(name: &str) -> bool {
    name == NOTICE_FAILING || name == NOTICE_DISABLED
}

/// 2026-11-28T09:14:03Z: the fixed time of example bodies, so they do not
/// change from one view (or doc build) to the next.
pub const EXAMPLE_TIME_MS: u64 = 1_795_857_243_000;

/// Categories in display order.
pub const CATEGORIES: &[&str] = &["User", "Server", "Transaction", "Ticket", "Webhook"];

/// Looks an event type up by name.
pub fn find(name: &str) -> Option<&'static EventType> {
    EVENTS.iter().find(|e| e.name == name)
}

/// Whether admins can subscribe a webhook to this type.
pub fn is_subscribable(name: &str) -> bool {
    name != TEST_EVENT && find(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_every_issue_event_once() {
        let names: Vec<_> = EVENTS.iter().map(|e| e.name).collect();
        for n in [
            "user.created",
            "user.updated",
            "user.deleted",
            "server.created",
            "server.deleted",
            "transaction.created",
            "transaction.success",
            "transaction.failed",
            "transaction.refunded",
            "ticket.created",
            "ticket.closed",
            "ticket.reopened",
            "test.webhook",
            "webhook.failing",
            "webhook.disabled",
        ] {
            assert_eq!(names.iter().filter(|x| **x == n).count(), 1, "{n}");
        }
        assert_eq!(names.len(), 15);
        for e in EVENTS.iter().filter(|e| e.name != TEST_EVENT) {
            assert!(CATEGORIES.contains(&e.category), "{}", e.name);
        }
    }

    #[test]
    fn every_example_matches_its_schema() {
        for e in EVENTS {
            let schema: serde_json::Value =
                serde_json::from_str(e.schema).unwrap_or_else(|err| panic!("{}: {err}", e.name));
            assert_eq!(schema["$id"], format!("urn:panel-webhooks:event:{}", e.name));
            let v = jsonschema::validator_for(&schema).unwrap_or_else(|err| panic!("{}: {err}", e.name));
            let example = e.example_value();
            assert!(example.as_object().is_some_and(|o| !o.is_empty()), "{} has no example", e.name);
            let errors: Vec<String> = v.iter_errors(&example).map(|x| x.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", e.name);
            // And the schema does say something: an empty object fails it.
            assert!(!v.is_valid(&serde_json::json!({})), "{} requires nothing", e.name);
        }
    }

    #[test]
    fn test_event_is_not_subscribable() {
        assert!(!is_subscribable(TEST_EVENT));
        assert!(is_subscribable("user.created"));
        assert!(!is_subscribable("user.exploded"));
    }
}

/// `docs/EVENTS.md`, generated from this catalog and the schemas so the
/// document cannot drift; `cargo test` fails when it is stale and
/// `UPDATE_DOCS=1 cargo test -p webhooks-plugin` rewrites it.
#[cfg(test)]
mod events_doc {
    use super::*;
    use serde_json::Value;
    use std::fmt::Write as _;

    fn type_of(p: &Value) -> String {
        let t = match &p["type"] {
            Value::String(s) => s.clone(),
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
            _ => "any".into(),
        };
        match (p.get("format").and_then(Value::as_str), p.get("enum").and_then(Value::as_array)) {
            (_, Some(e)) => format!(
                "{t}: {}",
                e.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
            ),
            (Some(f), _) => format!("{t} ({f})"),
            _ => t,
        }
    }

    fn render() -> String {
        let mut out = String::from(
            "# Events\n\n\
             <!-- Generated from plugin/src/catalog.rs and plugin/events/*.json by \
             `UPDATE_DOCS=1 cargo test -p webhooks-plugin`; do not edit by hand. -->\n\n\
             Every delivery is an HTTP `POST` with a JSON body and the\n\
             [Standard Webhooks](https://www.standardwebhooks.com/) headers:\n\n\
             | Header | Value |\n|---|---|\n\
             | `webhook-id` | `msg_…`: the same on every retry and resend of one event to one webhook; use it to drop duplicates |\n\
             | `webhook-timestamp` | Unix seconds when this attempt was signed |\n\
             | `webhook-signature` | `v1,<base64 HMAC-SHA256 of id.timestamp.body>`; two, space-separated, while a secret rotation lasts |\n\
             | `content-type` | `application/json` |\n\n\
             The body is `{\"type\", \"timestamp\", \"data\"}`: the event type, when it happened\n\
             (RFC 3339, UTC) and the event's data, as the panel raised it. Each event's\n\
             `data` is described by a JSON Schema (2020-12) in `plugin/events/` and served\n\
             by `GET /api/event-types`; the schemas list what receivers can rely on, and\n\
             panels may send more fields. Intake enforces them (formats such as `email`\n\
             and `date-time` included): an event whose `data` does not match is refused\n\
             with `422 invalid_data` naming the field (`data.id`), and nothing is stored.\n\
             Delivery is at least once; order is best-effort\n\
             oldest-first per webhook. Verify and parse as shown in `docs/guides/`.\n",
        );
        for category in CATEGORIES.iter().chain(std::iter::once(&"Test")) {
            let _ = write!(out, "\n## {category}\n");
            for e in EVENTS.iter().filter(|e| e.category == *category) {
                let schema: Value = serde_json::from_str(e.schema).expect("schema parses");
                let _ = write!(
                    out,
                    "\n### `{}`\n\n{}\n\n",
                    e.name,
                    schema["description"].as_str().unwrap_or(e.description)
                );
                out.push_str("| Field | Type | Required | Meaning |\n|---|---|---|---|\n");
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for (name, p) in schema["properties"].as_object().into_iter().flatten() {
                    let _ = writeln!(
                        out,
                        "| `{name}` | {} | {} | {} |",
                        type_of(p),
                        if required.contains(&name.as_str()) { "yes" } else { "" },
                        p["description"].as_str().unwrap_or("")
                    );
                }
                let pretty = crate::outbox::payload_pretty(e.name, EXAMPLE_TIME_MS, &e.example());
                let _ = write!(out, "\nExample body:\n\n```json\n{pretty}\n```\n");
            }
        }
        out.push_str(NOTICES_AND_FILTERS);
        out
    }

    /// The end of `docs/EVENTS.md`: operational notices and payload filters (#24).
    const NOTICES_AND_FILTERS: &str = r#"
## Operational notices

`webhook.failing` and `webhook.disabled` (category Webhook above) are raised by the
product itself, never by the panel (`POST /api/events` refuses them with
`unknown_type`). Subscribe a webhook to them (a chat channel, an incident tool, the
panel's own endpoint) to hear when another webhook needs attention:

- **`webhook.failing`**: a webhook's failure streak opened: an attempt failed after
  its last success (or its very first attempt failed). One notice per streak: later
  failures of the same streak raise nothing; a success ends the streak, and the next
  failure opens a new one. Test sends do not count (as for auto-disable).
- **`webhook.disabled`**: the product disabled a webhook (410 Gone, or failing
  without a success for `WEBHOOKS_AUTO_DISABLE_AFTER`). One notice per disable. An
  admin disabling a webhook raises nothing.

A notice is delivered to every enabled webhook subscribed to its type **except the
webhook it is about** (which is the one not answering), signed and retried like any
event; payload filters apply. The same moment writes a warning line to the log
(`webhook 3 is failing since …`, `webhook 3 disabled: …`) and puts a banner on the
dashboard until the webhook succeeds again or an admin enables it. On PostgreSQL,
with several nodes, each transition is taken by one conditional update of the
webhook's row, in the same transaction as the notice: exactly one notice per
transition, whichever node records it.

## Payload filters

A webhook may carry a **payload filter**: a condition on the event's `data`. Events
whose data does not match are not delivered to that webhook; each one is recorded
(event, time, the filter as it was) and listed on the webhook's history page under
"Not sent: filtered out" and by `GET /api/webhooks/{id}/filtered`, kept as long as
the delivery history (`WEBHOOKS_RETENTION`). Test sends are not filtered.

The condition is an [RFC 9535](https://www.rfc-editor.org/rfc/rfc9535) JSONPath
**filter expression** (what follows `?` in `$[?…]`), with `@` standing for the
event's `data`:

| Filter | Sends events whose data… |
|---|---|
| `@.plan == 'pro'` | has `plan` equal to `"pro"` |
| `@.amount >= 100 && @.currency == 'EUR'` | has an amount of at least 100 euros |
| `@.status == 'closed' \|\| @.status == 'resolved'` | has either status |
| `@.email` | has an `email` field (any value) |
| `!@.deleted_at` | has no `deleted_at` field |
| `@.tags[?@ == 'vip']` | has `"vip"` among its `tags` |
| `@.user.country == 'DE'` | has a nested `user.country` of `"DE"` |
| `match(@.email, '.*@example\\.com')` | has an address at example.com (I-Regexp, whole value) |
| `length(@.items) > 2` | has more than two `items` |

Comparisons are `==`, `!=`, `<`, `<=`, `>`, `>=` between paths and literals
(strings in single or double quotes, numbers, `true`, `false`, `null`); `&&`, `||`,
`!` and parentheses combine them; a path alone tests that the field exists. The
functions are RFC 9535's `length`, `count`, `match`, `search` and `value`. A path
that does not exist compares as nothing (so `@.amount > 5` is false when there is
no `amount`). Limits: 1,000 characters, at most two nested `[?…]` filters, two
`..` (descendant) steps and 16 levels of parentheses, brackets or function calls,
which keeps every evaluation linear in the size of the data and within the
component's stack. A filter that does not parse is refused when the webhook is saved, with the
parser's reason; nothing is changed.

## Transformations

A webhook may carry a **transformation**: a WebAssembly component (world
`webhooks:transform/transformer` in `wit/transform/transform.wit`) that sees each
delivery as it would be sent (`event-type`, `msg-id`, `timestamp` and the exact
body above) and answers what to send instead: another body (any text, sent with
`content-type: application/json`), headers to add (not `webhook-*`, `content-type`,
`host` or other headers the product sets), a path under the webhook's URL; or
`skip`. A receiver of a transformed webhook gets the transformation's body, and the
`webhook-signature` is computed over **that** body, so verification is unchanged.
`webhook-id` and `webhook-timestamp` stay the product's.

A skipped delivery is not sent; its state is **`skipped`** (final, like `succeeded`
and `exhausted`), with the transformation's reason in the history. It is neither a
success nor a failure: it counts in neither the health view nor the failure streak.
A transformation that traps, runs past 10 ms, uses more than 16 MiB or answers more
than its caps fails that attempt, with the reason, and the retry schedule applies.
`examples/transform-slack` turns `user.created` into `{"text": "New user: …"}` and
skips every other event.
"#;

    #[test]
    fn events_md_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/EVENTS.md");
        let want = render();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).expect("write docs/EVENTS.md");
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "docs/EVENTS.md is stale: run UPDATE_DOCS=1 cargo test -p webhooks-plugin");
    }
}
