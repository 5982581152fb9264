//! Standard Webhooks signing: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.
//!
//! The specification: <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>
//! ("Signature scheme"); its reference vector is tested below. A `whsec_` secret is the
//! base64 of the key bytes; any other string is used as its raw bytes, and
//! [`whsec_form`] gives the `whsec_` string a verification library needs for it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const PREFIX: &str = "whsec_";

/// The key bytes a secret string stands for.
pub fn key_bytes(secret: &str) -> Vec<u8> {
    match secret.strip_prefix(PREFIX) {
        Some(b64) => match STANDARD.decode(b64) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            // A `whsec_` string that is not base64 is validated away at save
            // time; fall back to raw bytes rather than signing with nothing.
            _ => secret.as_bytes().to_vec(),
        },
        None => secret.as_bytes().to_vec(),
    }
}

/// Whether a `whsec_…` secret decodes to a usable key (what save-time
/// validation checks).
pub fn is_valid_whsec(secret: &str) -> bool {
    whsec_key_len(secret).is_some_and(|n| n > 0)
}

/// The key size of a valid `whsec_` secret, in bytes; `None` for other secrets.
pub fn whsec_key_len(secret: &str) -> Option<usize> {
    secret.strip_prefix(PREFIX).and_then(|b64| STANDARD.decode(b64).ok()).map(|b| b.len())
}

/// The `whsec_` form of a secret, as verification libraries expect it.
pub fn whsec_form(secret: &str) -> String {
    format!("{PREFIX}{}", STANDARD.encode(key_bytes(secret)))
}

/// A new `whsec_` secret from 32 random bytes.
pub fn generate_secret(random: &[u8]) -> String {
    format!("{PREFIX}{}", STANDARD.encode(random))
}

/// What is signed: `{webhook-id}.{webhook-timestamp}.{body}`.
pub fn signed_content(msg_id: &str, timestamp_s: u64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp_s.to_string();
    let mut m = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    m.extend_from_slice(msg_id.as_bytes());
    m.push(b'.');
    m.extend_from_slice(ts.as_bytes());
    m.push(b'.');
    m.extend_from_slice(body);
    m
}

/// One `webhook-signature` entry from the HMAC-SHA256 of [`signed_content`]
/// (the host computes it with the sealed key).
pub fn signature(mac: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(mac))
}

/// The `webhook-signature` value for one message, computed here: for tests
/// that check [`signed_content`] and [`signature`] against the reference
/// vector and verification libraries. Deliveries are signed by the host.
#[cfg(test)]
pub fn sign(secret: &str, msg_id: &str, timestamp_s: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key_bytes(secret)).expect("hmac takes any key length");
    mac.update(&signed_content(msg_id, timestamp_s, body));
    signature(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: u64 = 1649367553;
    const BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;

    #[test]
    fn reference_vector() {
        assert_eq!(sign(SECRET, ID, TS, BODY.as_bytes()), "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn verifies_with_standardwebhooks_crate_for_raw_and_whsec_secrets() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        for secret in [SECRET, "not a whsec secret: raw bytes"] {
            let sig = sign(secret, ID, now, BODY.as_bytes());
            let wh = standardwebhooks::Webhook::new(&whsec_form(secret)).unwrap();
            assert_eq!(wh.sign(ID, now as i64, BODY.as_bytes()).unwrap(), sig);
            let mut headers = http::HeaderMap::new();
            headers.insert("webhook-id", ID.parse().unwrap());
            headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
            headers.insert("webhook-signature", sig.parse().unwrap());
            wh.verify(BODY.as_bytes(), &headers).unwrap();
            // A different body must not verify.
            assert!(wh.verify(b"{}", &headers).is_err());
        }
    }

    #[test]
    fn raw_secret_is_its_bytes() {
        assert_eq!(key_bytes("abc"), b"abc");
        assert_eq!(whsec_form("abc"), "whsec_YWJj");
        assert!(!is_valid_whsec("whsec_***"));
        assert!(!is_valid_whsec("whsec_"));
        assert!(is_valid_whsec(SECRET));
    }
}
