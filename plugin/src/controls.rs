//! Per-webhook controls (#24): custom request headers and the payload
//! filter. The rules live here once; the form, the API, the outbox and the
//! history all call these functions.
//!
//! **Custom headers.** Up to [`MAX_HEADERS`] name/value pairs, added to every
//! delivery and test send after the product's own headers. The names the
//! product owns (`webhook-*`, `content-type`, `content-length`, `host`,
//! `user-agent`) and hop-by-hop headers are refused: a receiver must always
//! be able to verify a signature over exactly what the product signed, and
//! a proxy header could turn a delivery into something else on the way.
//! Values whose header *name* looks secret ([`is_secret_name`]:
//! `authorization`, `cookie`, `…token…`, `…key…`, `…secret…`, …) are sealed at
//! rest with the host's key (`secrets.seal`, as signing secrets are), opened
//! only to build a request, never shown again (the pages and the API show
//! [`MASK`]) and masked in the history's request headers ([`mask_sent`]).
//!
//! **Payload filter.** An RFC 9535 JSONPath filter expression over the
//! event's `data` (`@`): `@.plan == 'pro' && @.amount >= 100`. Parsed by the
//! `serde_json_path` crate (see plugin/Cargo.toml), evaluated at intake, once
//! per event and filtered subscriber. RFC 9535 has no loops and no
//! recursion but the descendant segment; the nesting is capped
//! ([`filter_problem`]) so that an expression's cost stays linear-ish in the
//! size of `data` (at most 256 KiB).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::host::{DbError, Host};
use crate::webhook::FieldError;

/// Most custom headers per webhook.
pub const MAX_HEADERS: usize = 20;
/// Longest header value, in bytes.
pub const MAX_HEADER_VALUE: usize = 4096;
/// Longest header name, in bytes (real ones are under 40).
pub const MAX_HEADER_NAME: usize = 100;
/// What pages, the API and the history show instead of a sealed value.
pub const MASK: &str = "********";
/// Longest filter expression, in bytes.
pub const MAX_FILTER: usize = 1000;

/// One header as an admin submits it. `value: None` keeps the value stored
/// under the same name (a sealed value the admin cannot see).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderInput {
    pub name: String,
    pub value: Option<String>,
}

/// One header as stored (`webhooks.custom_headers`, a JSON array): a plain
/// value, or a sealed one (base64 of what `secrets.seal` answered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHeader {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

impl StoredHeader {
    /// The value to show: the plain value, or [`MASK`] for a sealed one.
    pub fn shown(&self) -> &str {
        if self.sealed.is_some() { MASK } else { self.value.as_deref().unwrap_or("") }
    }

    /// Whether the value is sealed (shown masked).
    pub fn is_sealed(&self) -> bool {
        self.sealed.is_some()
    }
}

/// A validated header, its value not yet sealed.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingValue {
    Plain(String),
    /// A secret-looking value to seal when stored.
    Secret(String),
    /// A sealed value kept as it was (base64).
    Kept(String),
}

/// A validated header ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingHeader {
    pub name: String,
    pub value: PendingValue,
}

/// Reads the stored JSON; anything unreadable is no headers (a row is never
/// a reason to fail a delivery or a page).
pub fn parse_stored(json: Option<&str>) -> Vec<StoredHeader> {
    json.and_then(|j| serde_json::from_str::<Vec<StoredHeader>>(j).ok()).unwrap_or_default()
}

/// Whether a header's value is treated as a secret: sealed at rest, masked
/// on pages, in the API and in the history.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(n.as_str(), "authorization" | "proxy-authorization" | "cookie" | "set-cookie")
        || ["auth", "token", "key", "secret", "password", "passwd", "session", "credential", "signature"]
            .iter()
            .any(|w| n.contains(w))
            && !n.starts_with("webhook-")
}

/// Why a header name cannot be added to a delivery, by a webhook's custom
/// headers or its transformation (#24): not an HTTP token of at most
/// [`MAX_HEADER_NAME`] bytes, or one of the product's own or a hop-by-hop
/// header ([`reserved`]). `None`: it may be sent.
pub fn refused_name(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_HEADER_NAME || !is_token(name) {
        let shown: String = name.chars().filter(|c| !c.is_control()).take(MAX_HEADER_NAME).collect();
        return Some(format!(
            "\u{201c}{shown}\u{201d} is not a valid header name (letters, digits and -, at most {MAX_HEADER_NAME})."
        ));
    }
    reserved(name)
}

/// Why a name is refused: the product's own headers and hop-by-hop ones.
fn reserved(name: &str) -> Option<String> {
    let n = name.to_ascii_lowercase();
    if n.starts_with("webhook-") {
        return Some(format!(
            "{name} is set by the product itself (the webhook-* headers carry the id, time and signature a \
             receiver checks); choose another name."
        ));
    }
    if matches!(n.as_str(), "content-type" | "content-length" | "host" | "user-agent") {
        return Some(format!("{name} is set by the product itself for every delivery; remove this header."));
    }
    if matches!(n.as_str(), "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade")
        || n.starts_with("proxy-")
    {
        return Some(format!(
            "{name} is a hop-by-hop header that controls the connection, not the message; it cannot be set here."
        ));
    }
    None
}

/// An HTTP token (RFC 9110 §5.6.2): the characters a header name may have.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks submitted headers; `stored` are the webhook's current ones (for
/// values kept without being typed again). Rows with neither a name nor a
/// value are ignored (the form's empty rows). Every problem is reported.
pub fn validate_headers(input: &[HeaderInput], stored: &[StoredHeader]) -> Result<Vec<PendingHeader>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out: Vec<PendingHeader> = Vec::new();
    let e = |m: String| FieldError { field: "headers", message: m };
    let rows: Vec<&HeaderInput> =
        input.iter().filter(|h| !(h.name.trim().is_empty() && h.value.as_deref().is_none_or(str::is_empty))).collect();
    if rows.len() > MAX_HEADERS {
        errors.push(e(format!("Use at most {MAX_HEADERS} custom headers (there are {}).", rows.len())));
    }
    for h in rows {
        let name = h.name.trim();
        if name.is_empty() {
            errors.push(e("Enter a name for every header that has a value, or remove the row.".into()));
            continue;
        }
        if name.len() > MAX_HEADER_NAME {
            errors.push(e(format!("Shorten the header name to {MAX_HEADER_NAME} characters or fewer.")));
            continue;
        }
        if !is_token(name) {
            errors.push(e(format!(
                "\u{201c}{}\u{201d} is not a valid header name: use letters, digits and - (no spaces or colons).",
                name.chars().filter(|c| !c.is_control()).take(MAX_HEADER_NAME).collect::<String>()
            )));
            continue;
        }
        if let Some(m) = reserved(name) {
            errors.push(e(m));
            continue;
        }
        if out.iter().any(|o| o.name.eq_ignore_ascii_case(name)) {
            errors.push(e(format!("{name} appears twice; keep one.")));
            continue;
        }
        let value = match &h.value {
            None => {
                // Kept: only a sealed value stored under this name can be.
                match stored.iter().find(|s| s.name.eq_ignore_ascii_case(name) && s.sealed.is_some()) {
                    Some(s) if is_secret_name(name) => PendingValue::Kept(s.sealed.clone().unwrap_or_default()),
                    _ => {
                        errors.push(e(format!("Enter a value for {name}.")));
                        continue;
                    }
                }
            }
            Some(v) => {
                let v = v.trim_matches([' ', '\t']);
                if v.contains(['\r', '\n']) {
                    errors.push(e(format!("Remove the line breaks from the value of {name}.")));
                    continue;
                }
                if v.chars().any(|c| c.is_control() && c != '\t') {
                    errors.push(e(format!("Remove the invisible control characters from the value of {name}.")));
                    continue;
                }
                if v.len() > MAX_HEADER_VALUE {
                    errors.push(e(format!(
                        "Shorten the value of {name} to {} KiB or fewer (it has {} bytes).",
                        MAX_HEADER_VALUE / 1024,
                        v.len()
                    )));
                    continue;
                }
                if v.is_empty() {
                    errors.push(e(format!("Enter a value for {name}, or remove the header.")));
                    continue;
                }
                if is_secret_name(name) {
                    PendingValue::Secret(v.to_owned())
                } else {
                    PendingValue::Plain(v.to_owned())
                }
            }
        };
        out.push(PendingHeader { name: name.to_owned(), value });
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The JSON to store for validated headers, sealing secret values; `None`
/// for no headers.
pub fn seal_headers(host: &dyn Host, headers: &[PendingHeader]) -> Result<Option<String>, DbError> {
    if headers.is_empty() {
        return Ok(None);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(headers.len());
    for h in headers {
        let (value, sealed) = match &h.value {
            PendingValue::Plain(v) => (Some(v.clone()), None),
            PendingValue::Kept(s) => (None, Some(s.clone())),
            PendingValue::Secret(v) => {
                let s =
                    host.seal(v.as_bytes()).map_err(|e| DbError::Io(format!("sealing a header value failed: {e}")))?;
                (None, Some(b64.encode(s)))
            }
        };
        out.push(StoredHeader { name: h.name.clone(), value, sealed });
    }
    Ok(Some(serde_json::to_string(&out).unwrap_or_else(|_| "[]".into())))
}

/// The headers to send, values opened: `Err` names a header whose sealed
/// value does not open (another host key, or an altered row), without it.
pub fn headers_to_send(host: &dyn Host, stored: &[StoredHeader]) -> Result<Vec<(String, String)>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    stored
        .iter()
        .map(|h| match (&h.value, &h.sealed) {
            (_, Some(s)) => b64
                .decode(s)
                .map_err(|e| e.to_string())
                .and_then(|bytes| host.open_legacy(&bytes))
                .and_then(|plain| String::from_utf8(plain).map_err(|e| e.to_string()))
                .map(|v| (h.name.to_ascii_lowercase(), v))
                .map_err(|_| format!("not sent: the sealed value of the custom header {} does not open", h.name)),
            (Some(v), None) => Ok((h.name.to_ascii_lowercase(), v.clone())),
            (None, None) => Ok((h.name.to_ascii_lowercase(), String::new())),
        })
        .collect()
}

/// Request headers as the history keeps them: a secret-looking header's
/// value replaced by [`MASK`] (the same rule that sealed it).
pub fn mask_sent(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| if is_secret_name(k) { (k.clone(), MASK.to_owned()) } else { (k.clone(), v.clone()) })
        .collect()
}

// ------------------------------------------------------------ filter

/// A compiled filter.
#[derive(Debug)]
pub struct Filter(serde_json_path::JsonPath);

/// Why a filter expression is refused, in words; `None` when it compiles.
pub fn filter_problem(expr: &str) -> Option<String> {
    compile(expr).err()
}

/// Compiles an expression; `Err` says what to change.
pub fn compile(expr: &str) -> Result<Filter, String> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Err("Enter a condition, or leave the filter empty to send every event.".into());
    }
    if expr.len() > MAX_FILTER {
        return Err(format!("Shorten the filter to {MAX_FILTER} characters or fewer."));
    }
    if expr.chars().any(char::is_control) {
        return Err("Remove the line breaks and other invisible characters from the filter.".into());
    }
    // Cost: each nested filter multiplies the nodes visited, and each `..`
    // visits every node below. Two of each is plenty for a condition.
    if expr.matches("[?").count() > 2 || expr.matches("..").count() > 2 {
        return Err("Simplify the filter: at most two nested [?…] filters and two .. (descendant) steps.".into());
    }
    // The parser and the evaluation recurse once per nesting level, and the
    // component's stack is 1 MiB: a filter of 500 nested parentheses would
    // overflow it (a trap for every event of the step). Real conditions
    // nest a few levels.
    if nesting(expr) > MAX_NESTING {
        return Err(format!(
            "Simplify the filter: at most {MAX_NESTING} nested parentheses, brackets or function calls."
        ));
    }
    if !expr.contains('@') {
        return Err("A filter is a condition on the event's data, written with @ for the data, for example \
             @.plan == 'pro' && @.amount >= 100."
            .into());
    }
    serde_json_path::JsonPath::parse(&format!("$[?{expr}]")).map(Filter).map_err(|e| {
        let e = e.to_string();
        let e: String = e.chars().take(200).collect();
        format!(
            "The filter is not a valid JSONPath condition ({e}). Write it as in the docs, for example \
             @.plan == 'pro' && @.amount >= 100."
        )
    })
}

/// Deepest nesting of parentheses and brackets a filter may have.
pub const MAX_NESTING: usize = 16;

/// How deep `(` and `[` nest in `expr`, outside quoted strings.
fn nesting(expr: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ')' | ']' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    deepest
}

impl Filter {
    /// Whether an event's `data` (parsed) satisfies the condition.
    pub fn admits(&self, data: &serde_json::Value) -> bool {
        // `$[?cond]` selects the children of the root that satisfy `cond`;
        // the root's one child is the data, so `@` is the data.
        let root = serde_json::json!({ "data": data });
        !self.0.query(&root).all().is_empty()
    }
}

/// Filters compiled once per intake call, and each event's data parsed
/// once, however many filtered subscribers it has.
#[derive(Default)]
pub struct Filters {
    compiled: std::collections::HashMap<String, Option<Filter>>,
}

/// The `filtered_events` row an event a filter kept out leaves.
pub const INSERT_FILTERED: &str = "INSERT INTO filtered_events (webhook_id, event_id, event_type, filtered_at, filter) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (webhook_id, event_id) DO NOTHING";

impl Filters {
    /// Whether `filter` admits the event whose data is `data` (`parsed`
    /// caches its parse across the event's subscribers). A stored filter
    /// that no longer compiles admits everything: it was valid when saved,
    /// and losing events silently is worse than sending them.
    pub fn admits(&mut self, filter: &str, data: &str, parsed: &mut Option<serde_json::Value>) -> bool {
        let f = self.compiled.entry(filter.to_owned()).or_insert_with(|| compile(filter).ok());
        let Some(f) = f else { return true };
        if parsed.is_none() {
            *parsed = Some(serde_json::from_str(data).unwrap_or(serde_json::Value::Null));
        }
        parsed.as_ref().is_none_or(|d| f.admits(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> HeaderInput {
        HeaderInput { name: name.into(), value: Some(value.into()) }
    }

    #[test]
    fn header_names_and_values_are_checked() {
        let ok = validate_headers(&[h("X-Tenant", "acme"), h("Authorization", "Bearer abc")], &[]).unwrap();
        assert_eq!(ok[0].value, PendingValue::Plain("acme".into()));
        assert_eq!(ok[1].value, PendingValue::Secret("Bearer abc".into()));
        for (name, value, says) in [
            ("webhook-id", "x", "set by the product"),
            ("Webhook-Signature", "x", "set by the product"),
            ("Content-Type", "text/plain", "set by the product"),
            ("content-length", "1", "set by the product"),
            ("Host", "evil.example", "set by the product"),
            ("Connection", "close", "hop-by-hop"),
            ("Transfer-Encoding", "chunked", "hop-by-hop"),
            ("Proxy-Authorization", "x", "hop-by-hop"),
            ("Keep-Alive", "x", "hop-by-hop"),
            ("TE", "trailers", "hop-by-hop"),
            ("Upgrade", "h2c", "hop-by-hop"),
            ("X Bad", "x", "not a valid header name"),
            ("X-Bad:", "x", "not a valid header name"),
            ("X-A", "a\r\nInjected: 1", "line breaks"),
            ("X-A", "a\nb", "line breaks"),
            ("X-A", "a\u{0}b", "control"),
            ("X-A", "", "Enter a value"),
        ] {
            let e = validate_headers(&[h(name, value)], &[]).unwrap_err();
            assert!(e[0].message.contains(says), "{name}: {value:?}: {}", e[0].message);
            assert_eq!(e[0].field, "headers");
        }
        let big = "v".repeat(MAX_HEADER_VALUE + 1);
        assert!(validate_headers(&[h("X-A", &big)], &[]).unwrap_err()[0].message.contains("4 KiB"));
        assert!(validate_headers(&[h("X-A", &"v".repeat(MAX_HEADER_VALUE))], &[]).is_ok());
        let many: Vec<_> = (0..21).map(|i| h(&format!("X-{i}"), "v")).collect();
        assert!(validate_headers(&many, &[]).unwrap_err()[0].message.contains("at most 20"));
        assert!(validate_headers(&many[..20], &[]).is_ok());
        let dup = validate_headers(&[h("X-A", "1"), h("x-a", "2")], &[]).unwrap_err();
        assert!(dup[0].message.contains("twice"));
        // Empty form rows are ignored.
        assert_eq!(validate_headers(&[h("", "")], &[]).unwrap(), vec![]);
    }

    #[test]
    fn a_sealed_value_can_be_kept_without_typing_it_again() {
        let stored = vec![StoredHeader { name: "Authorization".into(), value: None, sealed: Some("c2VhbGVk".into()) }];
        let keep = HeaderInput { name: "authorization".into(), value: None };
        let v = validate_headers(std::slice::from_ref(&keep), &stored).unwrap();
        assert_eq!(v[0].value, PendingValue::Kept("c2VhbGVk".into()));
        // Nothing stored to keep: a value is asked for.
        assert!(validate_headers(&[HeaderInput { name: "X-Token".into(), value: None }], &stored).is_err());
    }

    #[test]
    fn secret_looking_names() {
        for n in ["Authorization", "X-Api-Key", "X-Auth-Token", "Cookie", "X-Client-Secret", "apikey", "X-Password"] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["X-Tenant", "Accept", "X-Request-Source", "webhook-id"] {
            assert!(!is_secret_name(n), "{n}");
        }
        let sent = mask_sent(&[("authorization".into(), "Bearer abc".into()), ("x-tenant".into(), "acme".into())]);
        assert_eq!(sent[0].1, MASK);
        assert_eq!(sent[1].1, "acme");
    }

    #[test]
    fn filters_compile_and_match() {
        let data = serde_json::json!({"plan": "pro", "amount": 120, "tags": ["vip", "eu"], "user": {"country": "DE"}});
        let yes = |f: &str| compile(f).unwrap_or_else(|e| panic!("{f}: {e}")).admits(&data);
        assert!(yes("@.plan == 'pro'"));
        assert!(yes("@.plan == 'pro' && @.amount >= 100"));
        assert!(!yes("@.amount > 200"));
        assert!(yes("@.user.country == 'DE' || @.user.country == 'FR'"));
        assert!(yes("@.tags[?@ == 'vip']"));
        assert!(!yes("@.tags[?@ == 'us']"));
        assert!(yes("@.plan"), "existence");
        assert!(!yes("@.missing"));
        assert!(!yes("!@.plan"));
        assert!(yes("length(@.tags) == 2") && !yes("length(@.tags) > 2"));
        let mail = serde_json::json!({"email": "ada@example.com"});
        assert!(compile(r"match(@.email, '.*@example\\.com')").unwrap().admits(&mail));
        assert!(!compile(r"match(@.email, '.*@example\\.org')").unwrap().admits(&mail));
        for bad in ["", "   ", "@.plan ==", "@.plan = 'pro'", "$.plan", "@.a[?@.b[?@.c[?@.d]]]", "@.a\n == 1"] {
            assert!(compile(bad).is_err(), "{bad:?}");
        }
        assert!(compile(&format!("@.a == '{}'", "x".repeat(MAX_FILTER))).is_err());
        // Deep nesting is refused before the parser recurses into it.
        for deep in [
            format!("{}@.a{}", "(".repeat(400), ")".repeat(400)),
            format!("{}@.a{} == 1", "length(".repeat(100), ")".repeat(100)),
        ] {
            assert!(compile(&deep).unwrap_err().contains("nested"), "{deep}");
        }
        assert!(compile(&format!("{}@.a{}", "(".repeat(17), ")".repeat(17))).unwrap_err().contains("nested"));
        assert!(compile(&format!("{}@.a{}", "(".repeat(16), ")".repeat(16))).is_ok());
        assert!(compile("@.a == '((((((((((((((((((((('").is_ok(), "inside a string it does not count");
    }
}
