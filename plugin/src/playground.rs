//! The signature playground: an admin pastes a request their receiver got
//! (headers and body) and learns whether it verifies with this webhook's
//! current or rotating secret, and if not, why — each cause with its own
//! explanation.
//!
//! Read-only and secret-free: nothing pasted is stored or logged; every HMAC
//! is computed by the host with the sealed key (`secrets.sign`, as the
//! outbox signs deliveries), so no secret enters the component, the page or
//! the log. Signatures are compared in constant time.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;

use crate::host::{DbError, Host};
use crate::outbox::{self, rfc3339};
use crate::signing;
use crate::store;
use crate::webhook::FieldError;

/// Largest body checked. The form travels URL-encoded (up to three bytes
/// per byte of JSON) under the host's 256 KiB form limit, so this and
/// [`MAX_HEADERS`] stay well inside it.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest block of pasted headers checked.
pub const MAX_HEADERS: usize = 8 * 1024;
/// Standard Webhooks' tolerance between a request's timestamp and the
/// receiver's clock, either way.
pub const TOLERANCE_S: u64 = 5 * 60;

/// Which of the webhook's keys made a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Current,
    /// The previous secret while its rotation window lasts.
    Rotating,
    /// The previous secret after its window ended: no longer signs.
    Retired,
}

impl Key {
    fn words(self) -> &'static str {
        match self {
            Key::Current => "the current secret",
            Key::Rotating => "the rotating (previous) secret",
            Key::Retired => "the previous secret",
        }
    }
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Verifies now with this key.
    Verified(Key),
    /// Does not verify; the findings say why.
    Refused,
}

/// One thing the check found: a reason it fails (`problem`), or a note.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// A stable name (the page's `data-finding`).
    pub code: &'static str,
    pub problem: bool,
    pub title: String,
    pub detail: String,
}

fn problem(code: &'static str, title: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding { code, problem: true, title: title.into(), detail: detail.into() }
}

fn note(code: &'static str, title: impl Into<String>, detail: impl Into<String>) -> Finding {
    Finding { code, problem: false, title: title.into(), detail: detail.into() }
}

/// What the page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub verdict: Verdict,
    pub summary: String,
    pub findings: Vec<Finding>,
    /// This webhook's delivery that the pasted `webhook-id` names.
    pub delivery_id: Option<i64>,
}

impl Report {
    pub fn verified(&self) -> bool {
        matches!(self.verdict, Verdict::Verified(_))
    }
    /// Whether a finding with this code is present (tests, the page).
    pub fn has(&self, code: &str) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }
}

/// The pasted headers: lower-cased names, trimmed values, in order.
#[derive(Debug, Default)]
struct Headers {
    pairs: Vec<(String, String)>,
    /// Lines that are not `Name: value`.
    ignored: usize,
}

/// A header token (RFC 9110 `tchar`).
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_headers(text: &str) -> Headers {
    let mut h = Headers::default();
    // Logs often print headers as a JSON object: take that as it is.
    if text.trim_start().starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
    {
        for (k, v) in map {
            let values = match v {
                serde_json::Value::String(s) => vec![s],
                serde_json::Value::Array(a) => a.into_iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
                _ => Vec::new(),
            };
            if values.is_empty() || !is_token(&k) {
                h.ignored += 1;
                continue;
            }
            for v in values {
                h.pairs.push((k.to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        return h;
    }
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if is_token(name.trim_end()) => {
                h.pairs.push((name.trim_end().to_ascii_lowercase(), value.trim().to_owned()));
            }
            _ => h.ignored += 1,
        }
    }
    h
}

enum One<'a> {
    Missing,
    Value(&'a str),
    /// Present more than once with different values (the first is used).
    Conflicting(&'a str, usize),
}

impl Headers {
    fn one(&self, name: &str) -> One<'_> {
        let all: Vec<&str> = self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect();
        match all.as_slice() {
            [] => One::Missing,
            [first, rest @ ..] if rest.iter().all(|v| v == first) => One::Value(first),
            [first, ..] => One::Conflicting(first, all.len()),
        }
    }
}

/// A pasted value quoted in an explanation, shortened.
fn quote(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("\u{201c}{out}\u{201d}")
}

fn missing(name: &'static str, has_secret: bool) -> Finding {
    let detail = match name {
        "webhook-id" => {
            "Every delivery carries webhook-id, the message id: it is part of what is signed, and what a \
             receiver drops duplicates by. Paste every header the receiver got; a proxy or framework may \
             have dropped it."
        }
        "webhook-timestamp" => {
            "Every delivery carries webhook-timestamp (seconds since 1970): it is part of what is signed, and \
             receivers refuse requests more than 5 minutes from their clock. Paste every header the receiver got."
        }
        _ if has_secret => {
            "This webhook has a secret, so every delivery carries webhook-signature. Without it nothing can be \
             verified: paste every header the receiver got, or check that no proxy strips it."
        }
        _ => "This webhook has no secret, so its deliveries carry no signature to check.",
    };
    problem("missing-header", format!("The {name} header is missing."), detail)
}

/// The signatures of a `webhook-signature` value.
struct Signatures {
    v1: Vec<Vec<u8>>,
    malformed: Vec<String>,
    other_versions: Vec<String>,
}

fn parse_signatures(value: &str) -> Signatures {
    let mut s = Signatures { v1: Vec::new(), malformed: Vec::new(), other_versions: Vec::new() };
    for entry in value.split_ascii_whitespace() {
        match entry.split_once(',') {
            None => s.malformed.push(format!("{} has no version (expected v1,<base64>)", quote(entry))),
            Some(("v1", b64)) => match STANDARD.decode(b64) {
                Ok(mac) if mac.len() == 32 => s.v1.push(mac),
                Ok(mac) => s.malformed.push(format!(
                    "{} decodes to {} bytes; an HMAC-SHA256 signature has 32",
                    quote(entry),
                    mac.len()
                )),
                Err(_) => s.malformed.push(format!("{} is not base64 after v1,", quote(entry))),
            },
            Some((version, _)) => s.other_versions.push(version.to_owned()),
        }
    }
    s
}

/// Seconds since 1970, as the header carries them.
fn parse_timestamp(value: &str) -> Result<u64, String> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "It must be whole seconds since 1970, such as 1764321243; the pasted value is {}.",
            quote(value)
        ));
    }
    let ts = value.parse::<u64>().map_err(|_| format!("{} is out of range.", quote(value)))?;
    if ts > outbox::MAX_TIME_MS / 1000 {
        return Err(format!(
            "{} is past the year 9999{}.",
            quote(value),
            if value.len() >= 13 { ": it looks like milliseconds, and the header carries seconds" } else { "" }
        ));
    }
    Ok(ts)
}

/// "2 h 5 s": a span of seconds to the second (how far off a timestamp is).
fn span(secs: u64) -> String {
    let parts = [(secs / 86_400, "d"), (secs / 3600 % 24, "h"), (secs / 60 % 60, "min"), (secs % 60, "s")];
    let words: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n} {unit}")).collect();
    if words.is_empty() { "0 s".to_owned() } else { words.join(" ") }
}

/// Why a timestamp falls outside the tolerance, if it does.
fn out_of_tolerance(ts: u64, now_s: u64) -> Option<Finding> {
    let when = outbox::utc_text(ts.saturating_mul(1000));
    if ts + TOLERANCE_S < now_s {
        let by = now_s - ts;
        Some(problem(
            "too-old",
            format!("The timestamp is {} old.", span(by)),
            format!(
                "It says {when}; receivers refuse a request more than 5 minutes older than their clock, so that a \
                 captured request cannot be replayed later. A request pasted from a log is usually this old: \
                 resend the delivery from the history for a fresh one."
            ),
        ))
    } else if ts > now_s + TOLERANCE_S {
        let by = ts - now_s;
        Some(problem(
            "too-new",
            format!("The timestamp is {} in the future.", span(by)),
            format!(
                "It says {when}; receivers refuse a request more than 5 minutes ahead of their clock. Is the clock \
                 of the receiver or of this server wrong?"
            ),
        ))
    } else {
        None
    }
}

/// The pasted body in the forms the check tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    AsPasted,
    /// CR LF turned back into LF: browsers send a text box's line breaks as
    /// CR LF whatever was pasted.
    LfLineBreaks,
}

fn forms(body: &str) -> Vec<(Form, Cow<'_, [u8]>)> {
    let mut out = vec![(Form::AsPasted, Cow::Borrowed(body.as_bytes()))];
    if body.contains("\r\n") {
        out.push((Form::LfLineBreaks, Cow::Owned(body.replace("\r\n", "\n").into_bytes())));
    }
    out
}

/// Signs with the host; `Err` only when the host cannot use a sealed key.
struct Signer<'a> {
    host: &'a dyn Host,
    keys: Vec<(Key, Vec<u8>)>,
    msg_id: &'a str,
    ts: u64,
    sigs: &'a [Vec<u8>],
}

impl Signer<'_> {
    /// The first key whose HMAC of `body` is one of the signatures.
    fn matches(&self, body: &[u8]) -> Result<Option<Key>, String> {
        let content = signing::signed_content(self.msg_id, self.ts, body);
        for (kind, key) in &self.keys {
            let mac = self.host.sign(key, &content)?;
            // Each comparison in constant time; which one matched is no secret.
            if self.sigs.iter().any(|s| bool::from(s.as_slice().ct_eq(&mac))) {
                return Ok(Some(*kind));
            }
        }
        Ok(None)
    }
}

/// Checks a pasted request against webhook `webhook_id`; `Ok(None)` when the
/// webhook does not exist, `Ok(Some(Err))` for input the check refuses.
pub fn check(
    host: &dyn Host,
    webhook_id: i64,
    headers_text: &str,
    body: &str,
) -> Result<Option<Result<Report, Vec<FieldError>>>, DbError> {
    let Some(keys) = store::signing_keys(host, webhook_id)? else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    if headers_text.len() > MAX_HEADERS {
        errors.push(FieldError {
            field: "headers",
            message: format!(
                "The headers are {} bytes; the check reads at most {} KiB. Paste the webhook-* headers only.",
                headers_text.len(),
                MAX_HEADERS / 1024
            ),
        });
    }
    if body.len() > MAX_BODY {
        errors.push(FieldError {
            field: "body",
            message: format!(
                "The body is {} bytes; the check reads at most {} KiB. Verify a larger request in your receiver \
                 with the receiver code below.",
                body.len(),
                MAX_BODY / 1024
            ),
        });
    }
    if headers_text.trim().is_empty() && body.is_empty() {
        errors.push(FieldError { field: "headers", message: "Paste the request's headers and body.".into() });
    }
    if !errors.is_empty() {
        return Ok(Some(Err(errors)));
    }

    let now = host.now_ms();
    let now_s = now / 1000;
    let mut findings = Vec::new();
    let has_secret = keys.current.is_some();
    let headers = parse_headers(headers_text);

    let mut header = |name: &'static str| match headers.one(name) {
        One::Missing => {
            findings.push(missing(name, has_secret));
            None
        }
        One::Value(v) => Some(v.to_owned()),
        One::Conflicting(v, n) => {
            findings.push(note(
                "repeated-header",
                format!("{name} appears {n} times with different values."),
                "A delivery carries it once; the first value is checked.",
            ));
            Some(v.to_owned())
        }
    };
    let msg_id = header("webhook-id");
    let ts_text = header("webhook-timestamp");
    let sig_text = header("webhook-signature");
    if findings.iter().any(|f| f.code == "missing-header") && headers.ignored > 0 {
        findings.push(note(
            "ignored-lines",
            format!("{} pasted line(s) are not headers.", headers.ignored),
            "Each header goes on a line of its own as Name: value (a JSON object of headers works too).",
        ));
    }

    let ts = ts_text.as_deref().and_then(|t| match parse_timestamp(t) {
        Ok(ts) => Some(ts),
        Err(why) => {
            findings.push(problem("malformed-timestamp", "The webhook-timestamp header is malformed.", why));
            None
        }
    });
    let time_problem = ts.and_then(|t| out_of_tolerance(t, now_s));

    let sigs = sig_text.as_deref().map(parse_signatures);
    if let Some(s) = &sigs {
        if !s.malformed.is_empty() || (s.v1.is_empty() && s.other_versions.is_empty()) {
            let what = if s.malformed.is_empty() { "it holds no signature".to_owned() } else { s.malformed.join("; ") };
            findings.push(problem(
                "malformed-signature",
                "The webhook-signature header is malformed.",
                format!(
                    "It is a space-separated list of v1,<base64 of the 32-byte HMAC-SHA256>: {what}. Was it cut \
                     short or re-wrapped when copied?"
                ),
            ));
        }
        if !s.other_versions.is_empty() {
            findings.push(note(
                "other-version",
                "Signatures of other versions are ignored.",
                format!(
                    "This webhook signs with v1 (HMAC-SHA256) only; {} ignored.",
                    s.other_versions.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }

    if !has_secret {
        findings.push(problem(
            "no-secret",
            "This webhook has no secret.",
            if sigs.is_some() {
                "Its deliveries are not signed, so this signature was not made by this webhook as it is now (the \
                 secret may have been removed after this request was sent). Set a secret on the Edit page; from \
                 then on every delivery is signed."
            } else {
                "Its deliveries are not signed, so there is nothing to verify. Set a secret on the Edit page; from \
                 then on every delivery is signed."
            },
        ));
    }

    // The delivery this id names, with the exact body that was sent.
    let delivery = match msg_id.as_deref() {
        Some(id) if !id.is_empty() && id.len() <= 256 => match store::delivery_by_msg_id(host, webhook_id, id)? {
            Some(d) => store::delivery(host, webhook_id, d)?,
            None => None,
        },
        _ => None,
    };
    let sent_body = delivery.as_ref().map(|d| outbox::payload(&d.event_type, d.occurred_at, &d.data));

    let mut key_list: Vec<(Key, Vec<u8>)> = keys.current.iter().map(|k| (Key::Current, k.clone())).collect();
    if let Some((k, until)) = &keys.previous {
        key_list.push((if *until > now { Key::Rotating } else { Key::Retired }, k.clone()));
    }

    let mut verdict = Verdict::Refused;
    if let (Some(id), Some(ts), Some(s)) = (msg_id.as_deref(), ts, &sigs)
        && !s.v1.is_empty()
        && !key_list.is_empty()
    {
        let signer = Signer { host, keys: key_list, msg_id: id, ts, sigs: &s.v1 };
        match diagnose(&signer, body, sent_body.as_deref(), delivery.as_ref(), sig_text.as_deref(), &mut findings) {
            Ok(Some(key)) => match (key, &time_problem) {
                (Key::Retired, t) => {
                    findings.extend(t.clone());
                    let until = keys.previous.as_ref().map(|(_, u)| rfc3339(*u)).unwrap_or_default();
                    findings.push(problem(
                        "retired-secret",
                        "It was signed with the previous secret, whose rotation has ended.",
                        format!(
                            "The previous secret signed deliveries until {until}; since then only the current \
                             secret does. Set your receiver's WEBHOOK_SECRET to the current secret."
                        ),
                    ));
                }
                (key, Some(t)) => {
                    let mut t = t.clone();
                    t.detail
                        .push_str(&format!(" Apart from the time it verifies: the signature matches {}.", key.words()));
                    findings.push(t);
                }
                (key, None) => verdict = Verdict::Verified(key),
            },
            Ok(None) => {
                if let Some(t) = &time_problem {
                    findings.push(t.clone());
                }
            }
            Err(_) => findings.push(problem(
                "secret-unusable",
                "This webhook's secret cannot be used.",
                "The host could not open the stored secret (its own key may have changed). Set a new secret on \
                 the Edit page.",
            )),
        }
    } else if let Some(t) = &time_problem {
        findings.push(t.clone());
    }

    // A body that differs from the one sent is worth saying even when the
    // signature could not be checked (a header missing, no secret).
    if verdict == Verdict::Refused
        && !findings.iter().any(|f| f.code.starts_with("body-"))
        && let Some(sent) = &sent_body
        && let Some(f) = body_difference(body, sent)
    {
        findings.push(f);
    }

    let summary = match verdict {
        Verdict::Verified(Key::Rotating) => {
            let until = keys.previous.as_ref().map(|(_, u)| rfc3339(*u)).unwrap_or_default();
            format!(
                "Verified with the rotating (previous) secret. It signs deliveries until {until}; move your \
                 receiver to the current secret before then."
            )
        }
        Verdict::Verified(_) => "Verified with the current secret.".to_owned(),
        Verdict::Refused => "Does not verify.".to_owned(),
    };
    Ok(Some(Ok(Report { verdict, summary, findings, delivery_id: delivery.map(|d| d.id) })))
}

/// Finds the key that signed the pasted request, or explains why none did.
fn diagnose(
    signer: &Signer<'_>,
    body: &str,
    sent_body: Option<&str>,
    delivery: Option<&store::DeliveryDetail>,
    sig_text: Option<&str>,
    findings: &mut Vec<Finding>,
) -> Result<Option<Key>, String> {
    for (form, bytes) in forms(body) {
        if let Some(key) = signer.matches(&bytes)? {
            if form == Form::LfLineBreaks {
                findings.push(note(
                    "line-breaks",
                    "Checked with LF line breaks.",
                    "Browsers send a text box's line breaks as CR LF, so the check also tries the body with LF, as \
                     it was most likely sent. Your receiver must verify the bytes exactly as it received them.",
                ));
            }
            return Ok(Some(key));
        }
    }
    // No key gives this signature for this body. Was the body changed?
    if let Some(sent) = sent_body {
        let same = forms(body).iter().any(|(_, b)| b.as_ref() == sent.as_bytes());
        if !same {
            if let Some(f) = body_difference(body, sent) {
                findings.push(f);
            }
            // The signature made for the body that was sent: only the body changed.
            if let Some(key) = signer.matches(sent.as_bytes())? {
                findings.push(note(
                    "signature-genuine",
                    "The signature itself is genuine.",
                    format!(
                        "It matches {} for the body this webhook sent: only the body changed on the way or in \
                         the receiver.",
                        key.words()
                    ),
                ));
            } else {
                findings.push(wrong_secret(signer, delivery, sig_text, true));
            }
            return Ok(None);
        }
        findings.push(wrong_secret(signer, delivery, sig_text, false));
        return Ok(None);
    }
    // Nothing recorded to compare with: try the usual changes.
    findings.push(note(
        "unknown-id",
        "This webhook recorded no delivery with this webhook-id.",
        "So the pasted body cannot be compared with what was sent (the request may belong to another webhook, or \
         its history was pruned).",
    ));
    let trimmed = body.trim_end();
    if trimmed.len() != body.len() && signer.matches(trimmed.as_bytes())?.is_some() {
        findings.push(problem(
            "body-trailing-whitespace",
            "The body has trailing whitespace that was not signed.",
            "Without the line break or spaces at its end it verifies: they were added after the request was sent \
             (by a logger, an editor or the copy). Verify the raw body bytes.",
        ));
        return Ok(None);
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        && let Ok(compact) = serde_json::to_string(&v)
        && compact != body
        && signer.matches(compact.as_bytes())?.is_some()
    {
        findings.push(problem(
            "body-reencoded",
            "The body was re-encoded.",
            "Written as compact JSON it verifies: your framework parsed the JSON and serialised it again \
             (spacing, escapes). Verify the raw body, before any parsing.",
        ));
        return Ok(None);
    }
    findings.push(wrong_secret(signer, delivery, sig_text, false));
    Ok(None)
}

fn wrong_secret(
    signer: &Signer<'_>,
    delivery: Option<&store::DeliveryDetail>,
    sig_text: Option<&str>,
    body_changed: bool,
) -> Finding {
    // The signature this webhook sent then, under a secret it no longer has.
    let sent_then = delivery.and_then(|d| {
        d.tries.iter().find(|t| {
            let h = |n: &str| t.request_headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.trim());
            h("webhook-signature").is_some_and(|s| Some(s) == sig_text.map(str::trim))
                && h("webhook-timestamp") == Some(signer.ts.to_string().as_str())
        })
    });
    if let Some(t) = sent_then {
        return problem(
            "secret-changed",
            "This webhook sent this signature, but its secret has changed since.",
            format!(
                "Attempt {} at {} was signed with a secret this webhook no longer has (replaced, or its rotation \
                 ended), so it cannot be verified now. Resend the delivery from the history: it is signed anew.",
                t.attempt_no,
                rfc3339(t.attempted_at)
            ),
        );
    }
    let which = if signer.keys.iter().any(|(k, _)| *k == Key::Rotating) {
        "Neither the current secret nor the rotating one"
    } else {
        "The current secret does not"
    };
    problem(
        "wrong-secret",
        if body_changed {
            "The signature does not match the body that was sent either."
        } else {
            "The signature was made with another secret."
        },
        format!(
            "{which} gives this signature for this webhook-id, timestamp and body. Check that your receiver's \
             WEBHOOK_SECRET is this webhook's secret (not another webhook's, nor an old one); a secret that does \
             not start with whsec_ goes into the libraries as whsec_ followed by its base64."
        ),
    )
}

/// How the pasted body differs from the one sent; None when equal (as
/// pasted, or with the browser's CR LF taken back to LF).
fn body_difference(pasted: &str, sent: &str) -> Option<Finding> {
    // Compare the form closest to what was sent: LF line breaks unless the
    // delivery itself had CR LF.
    let pasted: Cow<'_, str> = if pasted.contains("\r\n") && !sent.contains("\r\n") {
        pasted.replace("\r\n", "\n").into()
    } else {
        pasted.into()
    };
    if pasted == sent {
        return None;
    }
    if pasted.trim_end() == sent.trim_end() {
        let core = sent.trim_end().len();
        let words = |ws: &str| if ws.is_empty() { "no whitespace".to_owned() } else { whitespace_words(ws) };
        return Some(problem(
            "body-trailing-whitespace",
            "The body differs only in the whitespace at its end.",
            format!(
                "The pasted body ends with {}; the body sent ended with {}. Verify the bytes exactly as received: \
                 a logger, an editor or the copy added or removed it.",
                words(&pasted[core..]),
                words(&sent[core..])
            ),
        ));
    }
    let as_json = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    if let (Some(a), Some(b)) = (as_json(&pasted), as_json(sent))
        && a == b
    {
        return Some(problem(
            "body-reencoded",
            "Same JSON, different bytes: the body was re-encoded.",
            format!(
                "It holds the same JSON value as the body that was sent, written differently ({}). Your framework \
                 re-encoded the JSON; verify the raw body, before any parsing.",
                first_difference(&pasted, sent)
            ),
        ));
    }
    Some(problem(
        "body-changed",
        "The body differs from the one this webhook sent.",
        format!("{}. The signature covers every byte of the body.", first_difference(&pasted, sent)),
    ))
}

fn whitespace_words(s: &str) -> String {
    let mut parts = Vec::new();
    let (mut lf, mut cr, mut sp, mut other) = (0, 0, 0, 0);
    for c in s.chars() {
        match c {
            '\n' => lf += 1,
            '\r' => cr += 1,
            ' ' => sp += 1,
            _ => other += 1,
        }
    }
    for (n, one, many) in [
        (lf, "a line break", "line breaks"),
        (cr, "a carriage return", "carriage returns"),
        (sp, "a space", "spaces"),
        (other, "a tab or other space", "tabs or other spaces"),
    ] {
        match n {
            0 => {}
            1 => parts.push(one.to_owned()),
            n => parts.push(format!("{n} {many}")),
        }
    }
    parts.join(", ")
}

/// "first difference at byte 31 (line 1, column 32): pasted …, sent …".
fn first_difference(pasted: &str, sent: &str) -> String {
    let at = pasted.bytes().zip(sent.bytes()).take_while(|(a, b)| a == b).count();
    let before = &sent.as_bytes()[..at];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = at - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
    let excerpt = |s: &str| {
        // From a few bytes before the difference, on character boundaries.
        let mut start = at.saturating_sub(12);
        while !s.is_char_boundary(start) {
            start -= 1;
        }
        let rest = s.get(start..).unwrap_or("");
        let shown: String = rest.chars().take(40).collect();
        let shown = shown.replace('\r', "\\r").replace('\n', "\\n").replace('\t', "\\t");
        if shown.is_empty() {
            "(the end)".to_owned()
        } else {
            format!(
                "\u{201c}{}{shown}{}\u{201d}",
                if start > 0 { "…" } else { "" },
                if rest.chars().count() > 40 { "…" } else { "" }
            )
        }
    };
    let mut s = format!("First difference at byte {} (line {line}, column {column})", at + 1);
    if at == pasted.len() {
        s.push_str(&format!(
            ": the pasted body ends there, after {} bytes; the body sent has {}",
            pasted.len(),
            sent.len()
        ));
    } else if at == sent.len() {
        s.push_str(&format!(
            ": the body sent ends there, after {} bytes; the pasted body goes on: {}",
            sent.len(),
            excerpt(pasted)
        ));
    } else {
        s.push_str(&format!(": pasted {}, sent {}", excerpt(pasted), excerpt(sent)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_in_any_case_and_as_json() {
        let h = parse_headers("POST /hook HTTP/1.1\r\nWebhook-Id: msg_1\r\nWEBHOOK-TIMESTAMP:  17 \r\n\r\n");
        assert!(matches!(h.one("webhook-id"), One::Value("msg_1")));
        assert!(matches!(h.one("webhook-timestamp"), One::Value("17")));
        assert_eq!(h.ignored, 1);
        let h = parse_headers(r#"{"Webhook-Id": "msg_2", "webhook-signature": ["v1,a"]}"#);
        assert!(matches!(h.one("webhook-id"), One::Value("msg_2")));
        assert!(matches!(h.one("webhook-signature"), One::Value("v1,a")));
        // A name that is no header name is ignored, not used.
        let h = parse_headers(r#"{"webhook id": "msg_3", "webhook-id": "msg_4"}"#);
        assert_eq!(h.ignored, 1);
        assert!(matches!(h.one("webhook-id"), One::Value("msg_4")));
        assert!(h.pairs.iter().all(|(k, _)| k != "webhook id"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1764321243"), Ok(1764321243));
        assert!(parse_timestamp("-5").is_err());
        assert!(parse_timestamp("2026-11-28T00:00:00Z").is_err());
        assert!(parse_timestamp("1764321243000000").unwrap_err().contains("milliseconds"));
    }

    #[test]
    fn differences() {
        let sent = r#"{"type":"user.created","data":{"id":1}}"#;
        assert_eq!(body_difference(sent, sent), None);
        let f = body_difference(&format!("{sent}\r\n"), sent).unwrap();
        assert_eq!(f.code, "body-trailing-whitespace");
        assert!(f.detail.contains("ends with a line break; the body sent ended with no whitespace"), "{}", f.detail);
        let f = body_difference(r#"{"type": "user.created", "data": {"id": 1}}"#, sent).unwrap();
        assert_eq!(f.code, "body-reencoded");
        assert!(f.detail.contains("byte 9 (line 1, column 9)"), "{}", f.detail);
        let f = body_difference(r#"{"type":"user.created","data":{"id":2}}"#, sent).unwrap();
        assert_eq!(f.code, "body-changed");
        assert!(f.detail.contains("byte 37") && f.detail.contains("2}}") && f.detail.contains("1}}"), "{}", f.detail);
        let f = body_difference(&sent[..10], sent).unwrap();
        assert!(f.detail.contains("ends there, after 10 bytes"), "{}", f.detail);
    }
}
