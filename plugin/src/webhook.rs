//! What a webhook is, and the rules its fields must follow.

use crate::catalog;
use crate::host::Host;
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
    if name.is_empty() {
        errors.push(err("name", "Name is required."));
    } else if name.chars().count() > MAX_NAME {
        errors.push(err("name", format!("Name must be at most {MAX_NAME} characters.")));
    } else if name.chars().any(char::is_control) {
        errors.push(err("name", "Name must not contain control characters."));
    }

    let url = match validate_url(input.url.trim()) {
        Ok(url) => match host.check_destination(&url) {
            Ok(()) => url,
            Err(reason) => {
                errors.push(err("url", reason));
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

    if errors.is_empty() {
        Ok(Valid { name, url, secret, rotate: input.rotate, events, enabled: input.enabled })
    } else {
        Err(errors)
    }
}

/// Syntax rules a URL must pass before the host's policy is asked; answers
/// the normalised URL (numeric hosts such as `0x7f000001` become dotted).
pub fn validate_url(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("URL is required.".into());
    }
    if raw.len() > MAX_URL {
        return Err(format!("URL must be at most {MAX_URL} bytes."));
    }
    // The WHATWG parser silently drops tabs and newlines and turns `\` into
    // `/`; an admin who typed them did not mean the URL the parser would make.
    if raw.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return Err("URL must not contain spaces, backslashes or control characters.".into());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("URL is not valid: {e}."))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("URL must start with http:// or https://.".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL must name a host.".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URL must not contain a user name or password.".into());
    }
    if url.fragment().is_some() {
        return Err("URL must not contain a fragment (#…): it is never sent.".into());
    }
    if url.port() == Some(0) {
        return Err("URL port must be between 1 and 65535.".into());
    }
    Ok(url.as_str().to_owned())
}

/// Key sizes the Standard Webhooks specification allows for `whsec_` secrets.
const WHSEC_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

fn secret_problem(s: &str) -> Option<String> {
    if s.len() > MAX_SECRET {
        return Some(format!("Secret must be at most {MAX_SECRET} characters."));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("Secret must not contain spaces or control characters.".into());
    }
    if s.starts_with("whsec_") && !signing::is_valid_whsec(s) {
        return Some("A secret starting with whsec_ must be followed by base64.".into());
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
        return Some("Secret must be at least 8 characters (or use Generate).".into());
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
