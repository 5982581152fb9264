//! Secrets capability: webhook secrets are sealed at rest with an AEAD
//! (ChaCha20-Poly1305) under a host-held key. The component seals a signing
//! key once and then asks the host to sign with it ([`SecretKey::sign`]): it
//! never sees the host key, a sealed signing key is opened only here, and the
//! database never holds a secret in clear. A stolen database without the key
//! reveals nothing.
//!
//! Format: `0x01 || nonce (12 bytes) || ciphertext+tag`. The key comes from
//! `WEBHOOKS_SECRET_KEY` (64 hex characters) or from `<data>/secret.key`,
//! created with mode 0600 on first start.
//!
//! This module is also the one place a secret file is read or created
//! ([`read_or_create`]): the sealing key, the API token and the admin
//! password hash. Other keys `serve` needs (CSRF, the admin account) are
//! derived from the sealing key ([`SecretKey::derive`]), so that every node
//! sharing it has them.

use std::io::Write as _;
use std::path::Path;

use wasmtime::component::{HasData, Linker};

use crate::bindings::secrets as wit;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

const VERSION: u8 = 1;
const NONCE: usize = 12;

/// A 256-bit sealing key.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key from 32 bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        SecretKey(b)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let v = hex::decode(s.trim()).map_err(|_| "the secret key must be 64 hex characters".to_string())?;
        let b: [u8; 32] =
            v.try_into().map_err(|_| "the secret key must be 32 bytes (64 hex characters)".to_string())?;
        Ok(SecretKey(b))
    }

    /// Reads `path`, or creates it with a random key (mode 0600).
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        let (hex_key, _) = read_or_create(path, || {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(hex::encode(b).into_bytes())
        })?;
        let text = String::from_utf8_lossy(&hex_key);
        Self::from_hex(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Encrypts under a fresh random nonce. Fails only when the OS random
    /// source does, or for a plaintext past ChaCha20-Poly1305's 256 GiB.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let mut nonce = [0u8; NONCE];
        getrandom::fill(&mut nonce).map_err(|e| format!("the OS random source failed: {e}"))?;
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| "the secret could not be sealed (too long)".to_string())?;
        let mut out = Vec::with_capacity(1 + NONCE + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// HMAC-SHA256 of `message` under the key bytes sealed in `sealed`; the
    /// opened key lives only for this call.
    pub fn sign(&self, sealed: &[u8], message: &[u8]) -> Result<Vec<u8>, String> {
        use hmac::{Hmac, Mac};
        let key = self.open(sealed)?;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// A 256-bit key for `purpose`, derived from this one: HKDF-Expand
    /// (RFC 5869) of one block, this key serving as the pseudorandom key
    /// (it is uniformly random already). Every node started with the same
    /// sealing key derives the same keys, so what one node signs (a CSRF
    /// token) another checks, with nothing more to share; and no derived key
    /// tells anything about this one.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"webhooks-host derived key v1\0");
        mac.update(purpose.as_bytes());
        mac.update(&[1]);
        mac.finalize().into_bytes().into()
    }

    /// Decrypts and authenticates.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < 1 + NONCE + 16 || sealed[0] != VERSION {
            return Err("not a sealed secret".into());
        }
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let pt = cipher
            .decrypt(Nonce::from_slice(&sealed[1..1 + NONCE]), &sealed[1 + NONCE..])
            .map_err(|_| "the secret could not be decrypted (altered, or the key changed)".to_string())?;
        Ok(pt)
    }
}

/// The bytes of the secret file `path`, or, when there is none, new bytes
/// from `make` written to it with mode 0600; `true` when it was created.
/// Every key, token and password hash of the data folder goes through here.
pub fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> std::io::Result<Vec<u8>>,
) -> std::io::Result<(Vec<u8>, bool)> {
    match std::fs::read(path) {
        // An empty file is what a write cut short leaves: never a secret
        // (an empty API token would match an empty bearer).
        Ok(b) if b.trim_ascii().is_empty() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is empty; delete it to have a new one made", path.display()),
            ));
        }
        Ok(b) => return Ok((b, false)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let bytes = make()?;
    // Written whole under another name, then linked into place (which
    // fails if someone else made it meanwhile): a crash never leaves a
    // short file where the secret should be.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, &bytes)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked?;
    Ok((bytes, true))
}

/// Creates `path` with mode 0600 (never overwriting) and writes `bytes`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(bytes)
}

/// `n` bytes from the OS CSPRNG, hex-encoded: session ids, tokens.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

/// The `secrets` interface sees the host key through a shared reference:
/// sealing and signing need no mutable state, and the key is never copied
/// into a store.
pub struct Sealing;

impl HasData for Sealing {
    type Data<'a> = &'a SecretKey;
}

/// Links the `secrets` interface to the key `get` picks out of the store.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> &SecretKey) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Sealing>(linker, get)
}

impl wit::Host for &SecretKey {
    async fn seal(&mut self, plaintext: Vec<u8>) -> Result<Vec<u8>, String> {
        SecretKey::seal(self, &plaintext)
    }
    async fn sign(&mut self, sealed: Vec<u8>, message: Vec<u8>) -> Result<Vec<u8>, String> {
        SecretKey::sign(self, &sealed, &message)
    }
    async fn open(&mut self, sealed: Vec<u8>) -> Result<Vec<u8>, String> {
        SecretKey::open(self, &sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_are_hkdf_expand_and_apart_per_purpose() {
        let k = SecretKey::from_bytes([7; 32]);
        // The known answer, from Python's `cryptography` (HKDFExpand, SHA-256,
        // info = "webhooks-host derived key v1\0serve csrf", PRK = [7; 32]).
        assert_eq!(
            hex::encode(k.derive("serve csrf")),
            "066f40617dc7428e4579659ce40a32ff9310c015182aaf8df2ff6e35fa6d1923"
        );
        assert_ne!(k.derive("serve csrf"), k.derive("serve admin account"));
        assert_ne!(k.derive("serve csrf"), SecretKey::from_bytes([8; 32]).derive("serve csrf"));
        assert_ne!(k.derive("serve csrf"), [7; 32], "not the key itself");
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let k = SecretKey::from_bytes([7; 32]);
        let s = k.seal(b"whsec_abc").unwrap();
        assert!(!s.windows(9).any(|w| w == b"whsec_abc"), "no plaintext in the sealed bytes");
        assert_eq!(k.open(&s).unwrap(), b"whsec_abc");
        assert_ne!(k.seal(b"whsec_abc").unwrap(), s, "fresh nonce each time");
        let mut bad = s.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(k.open(&bad).is_err());
        assert!(SecretKey::from_bytes([8; 32]).open(&s).is_err());
        assert!(k.open(b"short").is_err());
        assert!(format!("{k:?}").contains(".."));
    }

    #[test]
    fn signs_with_the_sealed_key() {
        use base64::Engine as _;
        // The Standard Webhooks reference vector: the key bytes of
        // whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD over "id.timestamp.body".
        let key_bytes = base64::engine::general_purpose::STANDARD.decode("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let k = SecretKey::from_bytes([3; 32]);
        let sealed = k.seal(&key_bytes).unwrap();
        let msg = br#"msg_27UH4WbU6Z5A5EzD8u03UvzRbpk.1649367553.{"email":"test@example.com","username":"test_user"}"#;
        let mac = k.sign(&sealed, msg).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(mac),
            "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        assert!(SecretKey::from_bytes([4; 32]).sign(&sealed, msg).is_err());
    }

    #[test]
    fn an_empty_secret_file_is_refused_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("api-token");
        std::fs::write(&p, "  \n").unwrap();
        let e = read_or_create(&p, || Ok(b"new".to_vec())).unwrap_err();
        assert!(e.to_string().contains("is empty; delete it"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"  \n", "left as it was");
        std::fs::remove_file(&p).unwrap();
        assert_eq!(read_or_create(&p, || Ok(b"new".to_vec())).unwrap(), (b"new".to_vec(), true));
        assert_eq!(read_or_create(&p, || Ok(b"other".to_vec())).unwrap(), (b"new".to_vec(), false));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left behind");
        assert!(!crate::admin_ui::same_secret("", ""), "an empty secret matches nothing");
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.key");
        let a = SecretKey::load_or_create(&p).unwrap();
        let b = SecretKey::load_or_create(&p).unwrap();
        assert_eq!(b.open(&a.seal(b"x").unwrap()).unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(SecretKey::from_hex("zz").is_err());
    }
}
