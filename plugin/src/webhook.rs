//! What a webhook is, and the rules its fields must follow.

use crate::catalog;
use crate::controls;
use crate::host::{Host, Refused, RefusedKind};
use crate::signing;

/// Longest name, in characters: a name is a label on a dashboard row and in
/// a page title, and the form says so.
pub const MAX_NAME: usize = 100;
/// Longest URL, in bytes: what browsers, proxies and receivers' servers
/// reliably accept in a request line (RFC 9110 recommends supporting 8,000;
/// common servers cut at 2–8 KiB), and what a history row repeats.
pub const MAX_URL: usize = 2048;
/// Longest secret, in bytes: far above any real key (a `whsec_` key is 24–64
/// bytes), and small enough that it never bloats a row or a form.
pub const MAX_SECRET: usize = 256;
/// Most webhooks per panel: every raised event is matched against each
/// subscriber in its commit, and a dashboard lists them on one page.
pub const MAX_WEBHOOKS: i64 = 500;
/// Highest rate limit, in deliveries per second: above what one node
/// delivers to one webhook (BENCHMARKS.md), so a higher one would limit
/// nothing.
pub const MAX_RATE_LIMIT: u32 = 10_000;

/// The fields an admin submits.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub name: String,
    pub url: String,
    /// `None`: keep the stored secret (edit); `Some("")`: no secret.
    pub secret: Option<String>,
    /// Keep the current secret valid beside the new one for a while.
    pub rotate: bool,
    pub events: Vec<String>,
    pub enabled: bool,
    /// Custom headers (#24); `None`: keep the stored ones.
    pub headers: Option<Vec<controls::HeaderInput>>,
    /// The webhook's headers as stored, for values kept without being
    /// typed again (a sealed value the admin cannot see).
    pub stored_headers: Vec<controls::StoredHeader>,
    /// Payload filter (#24); `None`: keep the stored one; `Some("")`: none.
    pub filter: Option<String>,
    /// Deliveries per second at most, as typed. `None`: keep the stored one
    /// (edit) or none (create); `Some("")`: no limit.
    pub rate_limit: Option<String>,
}

/// A validated webhook ready to store.
#[derive(Debug, Clone)]
pub struct Valid {
    pub name: String,
    pub url: String,
    pub secret: Option<Option<String>>,
    pub rotate: bool,
    pub events: Vec<String>,
    pub enabled: bool,
    /// `None`: keep the stored headers.
    pub headers: Option<Vec<controls::PendingHeader>>,
    /// `None`: keep the stored filter; `Some(None)`: no filter.
    pub filter: Option<Option<String>>,
    /// `None`: keep the stored limit; `Some(None)`: no limit.
    pub rate_limit: Option<Option<u32>>,
}

/// One field's problem, shown next to the field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError { field, message: message.into() }
}

/// Validates an admin's input; every problem is reported, not just the first.
pub fn validate(host: &dyn Host, input: &Input) -> Result<Valid, Vec<FieldError>> {
    let mut errors = Vec::new();

    let name = input.name.trim().to_owned();
    let chars = name.chars().count();
    if name.is_empty() {
        errors.push(err("name", "Enter a name, for example \u{201c}Billing CRM\u{201d}."));
    } else if chars > MAX_NAME {
        errors.push(err("name", format!("Shorten the name to {MAX_NAME} characters or fewer (it has {chars}).")));
    } else if name.chars().any(char::is_control) {
        errors.push(err("name", "Remove the tabs, line breaks or other invisible characters from the name."));
    }

    let url = match validate_url(input.url.trim()) {
        Ok(url) => match host.check_destination(&url) {
            Ok(()) => url,
            Err(reason) => {
                errors.push(err("url", refusal_message(&reason)));
                String::new()
            }
        },
        Err(message) => {
            errors.push(err("url", message));
            String::new()
        }
    };

    let secret = match &input.secret {
        None => None,
        Some(s) => {
            let typed = !s.is_empty();
            let s = s.trim();
            if s.is_empty() && typed {
                // Spaces are not "no secret" by accident: say so.
                errors.push(err("secret", "A secret cannot be only spaces. Leave the box empty for no secret."));
                None
            } else if s.is_empty() {
                Some(None)
            } else if let Some(m) = secret_problem(s) {
                errors.push(err("secret", m));
                None
            } else {
                Some(Some(s.to_owned()))
            }
        }
    };

    let mut events: Vec<String> = Vec::new();
    for e in &input.events {
        if !catalog::is_subscribable(e) {
            errors.push(err("events", format!("Unknown event type: {e}.")));
        } else if !events.contains(e) {
            events.push(e.clone());
        }
    }
    if events.is_empty() && !errors.iter().any(|e| e.field == "events") {
        errors.push(err("events", "Choose at least one event."));
    }
    // Keep catalog order so pages and payloads are stable.
    events.sort_by_key(|e| catalog::EVENTS.iter().position(|c| c.name == e));

    let headers = match &input.headers {
        None => None,
        Some(h) => match controls::validate_headers(h, &input.stored_headers) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.extend(e);
                None
            }
        },
    };
    let filter = match input.filter.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(f) => match controls::filter_problem(f) {
            None => Some(Some(f.to_owned())),
            Some(m) => {
                errors.push(err("filter", m));
                None
            }
        },
    };

    let rate_limit = match input.rate_limit.as_deref().map(parse_rate_limit) {
        None => None,
        Some(Ok(limit)) => Some(limit),
        Some(Err(message)) => {
            errors.push(err("rate_limit", message));
            None
        }
    };

    if errors.is_empty() {
        Ok(Valid {
            name,
            url,
            secret,
            rotate: input.rotate,
            events,
            enabled: input.enabled,
            headers,
            filter,
            rate_limit,
        })
    } else {
        Err(errors)
    }
}

/// A rate limit as typed: empty is no limit, otherwise a whole number of
/// deliveries per second from 1 to [`MAX_RATE_LIMIT`]. Each refusal says
/// what to type instead.
pub fn parse_rate_limit(raw: &str) -> Result<Option<u32>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let range = "a whole number of deliveries per second from 1 to 10,000, or leave it empty for no limit";
    if raw.len() > 1 && raw.starts_with('-') && raw[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("A rate limit cannot be negative: enter {range}."));
    }
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("Enter the rate limit as {range} (for example 50)."));
    }
    match raw.trim_start_matches('0').parse::<u64>() {
        _ if raw.bytes().all(|b| b == b'0') => {
            Err(format!("A rate limit of 0 would never deliver anything: enter {range}."))
        }
        Ok(n) if n <= u64::from(MAX_RATE_LIMIT) => Ok(Some(n as u32)),
        // Too many digits for u64 is too large too.
        _ => Err("Lower the rate limit to 10,000 per second or less, or leave it empty for no limit.".into()),
    }
}

/// How an address should look, for messages.
const URL_EXAMPLE: &str = "https://example.com/hooks";

/// Syntax rules a URL must pass before the host's policy is asked; answers
/// the normalised URL (numeric hosts such as `0x7f000001` become dotted).
/// Each refusal says what to change, in words, never the parser's.
pub fn validate_url(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err(format!("Enter the address that should receive the webhooks, for example {URL_EXAMPLE}."));
    }
    if raw.len() > MAX_URL {
        // Bytes, as a request line counts them: a letter outside ASCII takes 2 to 4.
        return Err(format!(
            "Shorten the address to {MAX_URL} bytes or fewer (a character outside plain ASCII counts 2 to 4)."
        ));
    }
    // The WHATWG parser silently drops tabs and newlines and turns `\` into
    // `/`; an admin who typed them did not mean the URL the parser would make.
    if raw.chars().any(char::is_control) {
        return Err("Remove the line breaks, tabs or other invisible characters from the address.".into());
    }
    if raw.chars().any(char::is_whitespace) {
        return Err("Remove the spaces from the address (a space inside a path is written %20).".into());
    }
    if raw.contains('\\') {
        return Err("Use / instead of \\ in the address.".into());
    }
    let url = url::Url::parse(raw).map_err(|e| parse_problem(raw, e))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        // "example.com:8080/x" and "localhost:8080" parse with the host name
        // as their scheme: what is missing is https://.
        let rest = raw.get(url.scheme().len() + 1..).unwrap_or_default();
        if url.scheme().contains('.') || rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(missing_scheme());
        }
        return Err(format!(
            "Use an address that starts with https:// (or http://); webhooks cannot be sent to {}: addresses.",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(no_host());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Remove the user name and password (the part before @) from the address. \
                    To prove the webhooks come from you, set a signing secret."
            .into());
    }
    if url.fragment().is_some() {
        return Err("Remove the # and everything after it from the address: that part is never sent.".into());
    }
    if url.port() == Some(0) {
        return Err(bad_port());
    }
    Ok(url.as_str().to_owned())
}

fn missing_scheme() -> String {
    format!("Add https:// in front of the address (for example {URL_EXAMPLE}).")
}

fn no_host() -> String {
    format!("Add the receiving server's name after https://, for example {URL_EXAMPLE}.")
}

fn bad_port() -> String {
    "Use a port number from 1 to 65535 after the colon, or leave the port out.".into()
}

/// The parser's refusal, as what to change.
fn parse_problem(raw: &str, e: url::ParseError) -> String {
    use url::ParseError as P;
    match e {
        // "http//x", "https:x.example": the scheme is there, its :// is not.
        P::RelativeUrlWithoutBase if raw.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("http")) => {
            format!("Start the address with https:// (a colon and two slashes), for example {URL_EXAMPLE}.")
        }
        P::RelativeUrlWithoutBase => missing_scheme(),
        P::EmptyHost => no_host(),
        P::InvalidPort => bad_port(),
        P::InvalidIpv4Address => "Check the IP address: four numbers from 0 to 255, separated by dots.".into(),
        P::InvalidIpv6Address => "Check the IPv6 address between [ and ]: it is not a valid IPv6 address.".into(),
        P::InvalidDomainCharacter | P::IdnaError => {
            "The server name has characters a domain name cannot have; check it for typing mistakes.".into()
        }
        _ => format!("Check the address for typing mistakes; it should look like {URL_EXAMPLE}."),
    }
}

/// The host's egress refusal (`host-info.check-destination`) as what the
/// admin can do about it, by the kind of address the host names.
fn refusal_message(refused: &Refused) -> String {
    const ASK: &str = "Webhooks can only reach public addresses; ask your operator to allow it.";
    match refused.kind {
        RefusedKind::ThisMachine => format!("This address points back at this server itself. {ASK}"),
        RefusedKind::PrivateNetwork => format!("This address is on a private network. {ASK}"),
        RefusedKind::LinkLocal => {
            format!("This is a link-local address (a cloud server's metadata service lives there). {ASK}")
        }
        RefusedKind::Documentation => "This address is reserved for examples in documentation; no server answers \
                                       there. Use the receiver's real address."
            .into(),
        RefusedKind::SpecialPurpose => "This is a special-purpose address (such as multicast or reserved) that \
                                        cannot receive webhooks. Use the receiver's public address, or ask your \
                                        operator to allow this one."
            .into(),
        RefusedKind::InvalidUrl => "Webhooks cannot be sent to this address. Use the receiver's public address, \
                                    or ask your operator to allow this one."
            .into(),
    }
}

/// Key sizes the Standard Webhooks specification allows for `whsec_` secrets.
const WHSEC_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

fn secret_problem(s: &str) -> Option<String> {
    if s.len() > MAX_SECRET {
        return Some(format!("Shorten the secret to {MAX_SECRET} bytes or fewer, or use Generate."));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("Remove the spaces and line breaks from the secret, or use Generate.".into());
    }
    if s.starts_with("whsec_") && !signing::is_valid_whsec(s) {
        return Some(
            "After whsec_ the secret must be base64 (letters, digits, + and /): check it was copied whole, \
             or use Generate."
                .into(),
        );
    }
    if let Some(n) = signing::whsec_key_len(s).filter(|n| !(WHSEC_KEY_BYTES.contains(n))) {
        // Standard Webhooks: keys of 24 to 64 bytes; shorter ones are guessable.
        return Some(format!(
            "The key after whsec_ must be {} to {} bytes (32 recommended); this one has {n}. Use Generate for a good one.",
            WHSEC_KEY_BYTES.start(),
            WHSEC_KEY_BYTES.end()
        ));
    }
    if s.len() < 8 {
        return Some("Use a secret of at least 8 characters, or use Generate.".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert_eq!(validate_url("https://example.com/hook").unwrap(), "https://example.com/hook");
        assert_eq!(validate_url("http://0x7f000001/").unwrap(), "http://127.0.0.1/");
        assert_eq!(validate_url("HTTP://Example.COM").unwrap(), "http://example.com/");
        for bad in [
            "",
            "example.com",
            "ftp://x/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "data:,x",
            "gopher://x/",
            "http://good.example@127.0.0.1/",
            "http://u:p@example.com/",
            "http://evil#@good.example/",
            "http://exa mple.com/",
            "http://example.com/\n",
            "http://example.com\\@evil/",
            "http://[example.com]/",
            "http://example.com:0/",
            "http://example.com:65536/",
            "http://",
            "https://:443/",
        ] {
            assert!(validate_url(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(validate_url(&long).is_err());
    }

    #[test]
    fn secret_rules() {
        assert!(secret_problem("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_none());
        assert!(secret_problem("a-raw-secret-string").is_none());
        assert!(secret_problem("whsec_!!!").is_some());
        assert!(secret_problem("whsec_AAAAAAAAAAAAAAAAAAAAAA==").is_some(), "16 bytes");
        assert!(secret_problem(&format!("whsec_{}", "A".repeat(88))).is_some(), "66 bytes");
        assert!(secret_problem("short").is_some());
        assert!(secret_problem("has space inside").is_some());
    }
}
