//! Webhook transformations (#24, part 4): a WebAssembly component an admin
//! attaches to a webhook, run on each of its deliveries before the request
//! is signed. It may change the body, add headers, change the path under
//! the webhook's URL, or skip the delivery (world
//! `webhooks:transform/transformer`, `wit/transform/transform.wit`).
//!
//! The split: the host checks, compiles, caches and runs a component in its
//! sandbox (nothing imported, a deadline, a memory cap, caps on the answer:
//! `host-shim/src/transform.rs`); this module keeps the bytes (table
//! `webhook_transforms`, migration 16), decides when one runs and what its
//! answer does to a delivery:
//! - the answer's headers obey the custom headers' rules (the product's
//!   own headers and hop-by-hop ones are refused, as in
//!   [`controls::validate_headers`]) and its path must stay under the
//!   webhook's URL ([`apply`]); a refused answer fails the attempt;
//! - the signature covers the body actually sent (the transformed one);
//! - `skip` ends the delivery as [`DeliveryState::Skipped`]: not sent, not a
//!   success and not a failure (neither in the health view nor in the
//!   failure streak), shown as skipped with the reason;
//! - a failure (trap, deadline, memory, caps, its own error, a refused
//!   answer) is a failed attempt with the reason, on the retry schedule like
//!   any other; the other deliveries are not concerned.
//!
//! What an attempt's transformation did is recorded with the attempt
//! ([`Note`], column `attempts.transform`) and shown in the delivery's
//! details and the API.
//!
//! [`DeliveryState::Skipped`]: crate::outbox::DeliveryState::Skipped

use serde_json::{Value as Json, json};

use crate::controls;
use crate::host::{DbError, Host, TransformError, TransformInput, TransformOutcome, TransformOutput};
use crate::outbox::MAX_STORED_BODY;

/// Largest component accepted, in bytes (the host refuses larger ones too).
pub const MAX_COMPONENT: usize = 1 << 20;
/// Longest path a transformation may send to (the host caps it as well).
pub const MAX_PATH: usize = 1024;

/// A webhook's transformation as pages and the API show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attached {
    /// SHA-256 of the component, lower-case hex.
    pub digest: String,
    pub size: u64,
    pub uploaded_at: u64,
}

/// The transformation attached to a webhook, if any (never its bytes).
pub fn attached(host: &dyn Host, webhook_id: i64) -> Result<Option<Attached>, DbError> {
    let rows = host.query(
        "SELECT digest, size, uploaded_at FROM webhook_transforms WHERE webhook_id = ?1",
        &[webhook_id.into()],
    )?;
    Ok(rows.first().map(|r| Attached { digest: r.str(0), size: r.u64(1), uploaded_at: r.u64(2) }))
}

/// Checks a component before anything is stored: its size, then the host's
/// verdict (a component of the right world that imports nothing, which
/// compiles). Answers its digest, or the reason for the admin.
pub fn check(host: &dyn Host, wasm: &[u8]) -> Result<String, String> {
    if wasm.is_empty() {
        return Err("The file is empty; choose the component's .wasm file.".into());
    }
    if wasm.len() > MAX_COMPONENT {
        return Err(format!(
            "The component is {} KiB; a transformation may be at most 1 MiB (1,024 KiB).",
            wasm.len().div_ceil(1024)
        ));
    }
    match host.transform_load(wasm) {
        Ok(digest) => Ok(digest),
        Err(TransformError::Invalid(m) | TransformError::Failed(m)) => Err(m),
        Err(TransformError::NotLoaded) => Err("The host could not load the component.".into()),
    }
}

/// Attaches a checked component (see [`check`]) to a webhook, replacing the
/// one it had. Answers false when there is no such webhook.
pub fn attach(host: &dyn Host, webhook_id: i64, wasm: &[u8], digest: &str) -> Result<bool, DbError> {
    let now = host.now_ms();
    crate::host::transaction(host, || {
        if host.query("SELECT id FROM webhooks WHERE id = ?1", &[webhook_id.into()])?.first().is_none() {
            return Ok(false);
        }
        host.execute("DELETE FROM webhook_transforms WHERE webhook_id = ?1", &[webhook_id.into()])?;
        host.execute(
            "INSERT INTO webhook_transforms (webhook_id, digest, size, wasm, uploaded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            &[webhook_id.into(), digest.into(), (wasm.len() as u64).into(), wasm.to_vec().into(), now.into()],
        )?;
        Ok(true)
    })
}

/// Removes a webhook's transformation; answers whether it had one.
pub fn remove(host: &dyn Host, webhook_id: i64) -> Result<bool, DbError> {
    Ok(host.execute("DELETE FROM webhook_transforms WHERE webhook_id = ?1", &[webhook_id.into()])? > 0)
}

/// Runs a webhook's transformation (`digest`) on one delivery. A host that
/// does not hold it compiled (it restarted; another node loaded it) gets
/// the stored bytes once and runs it again. `Err` is the reason the attempt
/// fails, in words.
pub fn run(host: &dyn Host, webhook_id: i64, digest: &str, input: &TransformInput) -> Result<TransformOutcome, String> {
    let first = host.transform_run(digest, input);
    let answer = match first {
        Err(TransformError::NotLoaded) => {
            let rows = host
                .query(
                    "SELECT wasm FROM webhook_transforms WHERE webhook_id = ?1 AND digest = ?2",
                    &[webhook_id.into(), digest.into()],
                )
                .map_err(|e| format!("Not sent: reading the webhook's transformation failed: {e}"))?;
            let wasm = rows
                .first()
                .and_then(|r| r.opt_blob(0))
                .ok_or("Not sent: the webhook's transformation was replaced or removed meanwhile; it is tried again")?;
            match host.transform_load(&wasm) {
                Ok(_) => host.transform_run(digest, input),
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    match answer {
        Ok(o) => Ok(o),
        Err(TransformError::Failed(m)) => Err(format!("Not sent: {m}")),
        Err(TransformError::Invalid(m)) => Err(format!("Not sent: this host cannot run the transformation: {m}")),
        Err(TransformError::NotLoaded) => Err("Not sent: the host could not load the transformation".into()),
    }
}

/// What a transformation's `send` changes in a request: the URL (a path
/// under the webhook's) and the headers to add, after the product's rules.
/// `Err` says which rule the answer broke.
pub fn apply(url: &str, out: &TransformOutput) -> Result<(String, Vec<(String, String)>), String> {
    let url = match &out.path {
        None => url.to_owned(),
        Some(p) => under(url, p)?,
    };
    let mut headers: Vec<(String, String)> = Vec::with_capacity(out.headers.len());
    for (name, value) in &out.headers {
        if let Some(why) = controls::refused_name(name) {
            return Err(format!("Not sent: the transformation added a header the product refuses: {why}"));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("Not sent: the transformation's header {name} has control characters or line breaks."));
        }
        if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(format!("Not sent: the transformation added the header {name} twice."));
        }
        headers.push((name.clone(), value.clone()));
    }
    Ok((url, headers))
}

/// `base` with `path` appended under its path (its query kept). The path
/// cannot climb out of the webhook's URL or change its host: it starts with
/// `/`, has no `?`, `#`, `\`, `.`/`..` segments or control characters, and
/// its percent-escapes are well-formed.
fn under(base: &str, path: &str) -> Result<String, String> {
    let refuse = |why: &str| Err(format!("Not sent: the transformation's path {path:?} is refused: {why}."));
    if path.len() > MAX_PATH {
        return refuse("it is longer than 1,024 characters");
    }
    if !path.starts_with('/') {
        return refuse("it must start with /");
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '?' | '#' | '\\')) {
        return refuse("it may not contain ?, #, \\, spaces or control characters");
    }
    // Escaped dots too: a receiver's server may decode them first.
    if path.split('/').map(|s| s.to_ascii_lowercase().replace("%2e", ".")).any(|s| s == "." || s == "..") {
        return refuse("it may not contain . or .. segments");
    }
    let b = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) {
            return refuse("a % must start an escape such as %20");
        }
    }
    let Ok(mut u) = url::Url::parse(base) else {
        return refuse("the webhook's URL does not parse");
    };
    let joined = format!("{}{}", u.path().trim_end_matches('/'), path);
    u.set_path(&joined);
    Ok(u.to_string())
}

/// What an attempt's transformation did, as recorded with it (JSON text in
/// `attempts.transform`; `result` first, which the history list reads).
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// Sent as it answered.
    Sent { body: Option<String>, path: Option<String>, url: String, headers: Vec<String> },
    /// Not sent: it skipped the delivery.
    Skipped(String),
    /// Not sent: it failed, or its answer was refused.
    Failed(String),
}

/// How a skip is recorded in `attempts.transform`: the history list finds
/// skipped attempts by this prefix.
pub const SKIPPED_PREFIX: &str = r#"{"result":"skipped""#;

impl Note {
    /// The JSON stored with the attempt: the body sent up to
    /// [`MAX_STORED_BODY`] (its full size beside it).
    pub fn to_json(&self) -> String {
        let v = match self {
            Note::Sent { body, path, url, headers } => {
                let (shown, size) = match body {
                    Some(b) => {
                        let mut end = b.len().min(MAX_STORED_BODY);
                        while !b.is_char_boundary(end) {
                            end -= 1;
                        }
                        (Some(&b[..end]), Some(b.len()))
                    }
                    None => (None, None),
                };
                json!({"result": "sent", "body": shown, "body_size": size, "path": path, "url": url,
                       "headers_added": headers})
            }
            Note::Skipped(reason) => json!({"result": "skipped", "reason": reason}),
            Note::Failed(reason) => json!({"result": "failed", "reason": reason}),
        };
        v.to_string()
    }

    /// Reads a stored note; `None` for none or one this version cannot read.
    pub fn parse(text: Option<&str>) -> Option<Note> {
        let v: Json = serde_json::from_str(text?).ok()?;
        let s = |k: &str| v.get(k).and_then(Json::as_str).map(str::to_owned);
        match v.get("result")?.as_str()? {
            "sent" => Some(Note::Sent {
                body: s("body"),
                path: s("path"),
                url: s("url").unwrap_or_default(),
                headers: v
                    .get("headers_added")
                    .and_then(Json::as_array)
                    .map(|a| a.iter().filter_map(|h| h.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
            }),
            "skipped" => Some(Note::Skipped(s("reason").unwrap_or_default())),
            "failed" => Some(Note::Failed(s("reason").unwrap_or_default())),
            _ => None,
        }
    }

    /// Whether a stored note says the delivery was skipped.
    pub fn is_skip(text: Option<&str>) -> bool {
        text.is_some_and(|t| t.starts_with(SKIPPED_PREFIX))
    }

    /// The note as the API shows it (the stored JSON, parsed).
    pub fn api_json(text: Option<&str>) -> Json {
        text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Json::Null)
    }
}

/// What "Try it" shows: the run's outcome on an example delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Preview {
    /// What would be sent.
    Send { url: String, headers: Vec<(String, String)>, body: String, body_changed: bool },
    /// Skipped, with the reason.
    Skip(String),
    /// Failed, with the reason.
    Failed(String),
}

/// Runs a webhook's transformation on an example delivery of `event_type`
/// with `data_json`, raised at `now`, as a delivery would (nothing is sent
/// or stored).
/// `Ok(None)`: the webhook has no transformation.
pub fn preview(
    host: &dyn Host,
    webhook_id: i64,
    url: &str,
    event_type: &str,
    data_json: &str,
    now: u64,
) -> Result<Option<Preview>, DbError> {
    let Some(t) = attached(host, webhook_id)? else {
        return Ok(None);
    };
    let body = crate::outbox::payload(event_type, now, data_json);
    let input = TransformInput {
        event_type: event_type.to_owned(),
        msg_id: "msg_preview".to_owned(),
        timestamp: crate::outbox::rfc3339(now),
        body: body.clone(),
    };
    let strip = |m: String| m.strip_prefix("Not sent: ").map(str::to_owned).unwrap_or(m);
    Ok(Some(match run(host, webhook_id, &t.digest, &input) {
        Err(m) => Preview::Failed(strip(m)),
        Ok(TransformOutcome::Skip(why)) => Preview::Skip(why),
        Ok(TransformOutcome::Send(out)) => match apply(url, &out) {
            Err(m) => Preview::Failed(strip(m)),
            Ok((url, headers)) => {
                let body_changed = out.body.is_some();
                Preview::Send { url, headers, body: out.body.unwrap_or(body), body_changed }
            }
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_webhook_url() {
        let base = "https://hooks.example.com/services?token=1";
        assert_eq!(under(base, "/T0/B0/x").unwrap(), "https://hooks.example.com/services/T0/B0/x?token=1");
        assert_eq!(under("https://h.example/", "/a").unwrap(), "https://h.example/a");
        assert_eq!(under("https://h.example/x/", "/a%20b").unwrap(), "https://h.example/x/a%20b");
        for bad in
            ["a", "/../admin", "/a/./b", "/%2e%2e/x", "/.%2E/x", "/a?b", "/a#b", "/a b", "/a\\b", "/a%zz", "/a%2"]
        {
            assert!(under(base, bad).is_err(), "{bad}");
        }
        // A doubled slash stays on the same host, under the same path.
        assert_eq!(under(base, "//evil.example").unwrap(), "https://hooks.example.com/services//evil.example?token=1");
        assert!(under(base, "/../admin").unwrap_err().contains(". or .. segments"));
        assert!(under(base, &format!("/{}", "a".repeat(MAX_PATH))).is_err());
    }

    #[test]
    fn product_headers_are_refused_as_in_custom_headers() {
        let out = |name: &str| TransformOutput { headers: vec![(name.into(), "v".into())], ..Default::default() };
        for name in ["webhook-signature", "Content-Type", "host", "transfer-encoding", "bad name"] {
            assert!(apply("https://h.example/", &out(name)).is_err(), "{name}");
        }
        let (url, h) = apply("https://h.example/", &out("X-Slack-Tag")).unwrap();
        assert_eq!((url.as_str(), h), ("https://h.example/", vec![("X-Slack-Tag".to_owned(), "v".to_owned())]));
    }

    #[test]
    fn notes_round_trip_and_skips_are_found_by_prefix() {
        let notes = [
            Note::Sent {
                body: Some("{}".into()),
                path: Some("/x".into()),
                url: "u".into(),
                headers: vec!["x-a".into()],
            },
            Note::Skipped("not for us".into()),
            Note::Failed("trap".into()),
        ];
        for n in notes {
            let j = n.to_json();
            assert_eq!(Note::parse(Some(&j)), Some(n.clone()));
            assert_eq!(Note::is_skip(Some(&j)), matches!(n, Note::Skipped(_)), "{j}");
        }
        let big = Note::Sent { body: Some("é".repeat(MAX_STORED_BODY)), path: None, url: "u".into(), headers: vec![] };
        let j: Json = serde_json::from_str(&big.to_json()).unwrap();
        assert!(j["body"].as_str().unwrap().len() <= MAX_STORED_BODY);
        assert_eq!(j["body_size"], 2 * MAX_STORED_BODY);
    }
}
