//! Admin sign-in for `serve` (a panel embedding the library authenticates its
//! own admins and passes the actor instead).
//!
//! - The password is kept only as an Argon2id hash: from
//!   `WEBHOOKS_ADMIN_PASSWORD` (hashed at start, never written), or generated
//!   on first start, printed once, and stored hashed in `<data>/admin-password.hash`.
//! - Sessions are random 256-bit ids in an `HttpOnly; SameSite=Strict`
//!   cookie; a new id is issued at sign-in (no session fixation). The
//!   plugin keeps them in the database every node shares (WIT `sessions`;
//!   the plugin decides how long they live), under [`Auth::session_key`]: an
//!   HMAC of the id keyed by the account — the user name and password hash
//!   under a key derived from the sealing key — so the database holds
//!   nothing a reader could sign in with, a writer of the database cannot
//!   make a session without the sealing key (the hash file alone is not
//!   enough), and a changed password or user name finds none of the old
//!   sessions.
//! - A password given in `WEBHOOKS_ADMIN_PASSWORD` is hashed with a salt
//!   derived from that same key and the user name, so every node given the
//!   same password and key has the same hash, hence the same account and
//!   the same sessions. (A random salt per node made a session opened on
//!   one node unknown to the next.)
//! - Failed sign-ins are limited per (client address, user name) —
//!   [`MAX_FAILURES`] — and per client address whatever the name —
//!   [`MAX_ADDRESS_FAILURES`] — within [`FAILURE_WINDOW`]; past either,
//!   sign-in from there is refused for that window, before the password is
//!   even checked. Not per user name alone: a stranger failing as `admin`
//!   from elsewhere must not lock the real admin out.
//! - The table of failures is bounded: entries expire with the window, at
//!   most [`MAX_TRACKED`] are kept (the oldest go first), and a user name
//!   counts by its first [`MAX_USER_LEN`] bytes only.
//! - Passwords are checked one at a time on a thread of their own
//!   ([`Checker`]): an Argon2id check takes ~19 MiB and tens of milliseconds.
//!   On whatever thread called, a burst of failed sign-ins left each
//!   thread's malloc arena holding its own 19 MiB (+130 MiB measured) and
//!   stalled the tokio worker it ran on. The caller awaits the answer (no
//!   thread waits), and at most [`MAX_QUEUED`] checks wait their turn; past
//!   that a sign-in is answered "busy" at once.
//! - An attempt is counted before its password is checked (and uncounted
//!   if it succeeds), so attempts sent in parallel cannot outrun the limits
//!   while the first ones are being checked.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use subtle::ConstantTimeEq;

use crate::secrets::{random_hex, read_or_create};

/// Failed sign-ins allowed per (address, user name) within the window.
pub const MAX_FAILURES: u32 = 5;
/// Failed sign-ins allowed per address, whatever the user names, within the window.
pub const MAX_ADDRESS_FAILURES: u32 = 20;
/// Most (address, user name) and address entries kept in the failure table.
pub const MAX_TRACKED: usize = 10_000;
/// Bytes of a user name that count (longer names cannot be the admin's).
pub const MAX_USER_LEN: usize = 128;
/// The failure-counting window and the lockout that follows.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Password checks waiting for the checker before sign-ins are refused as busy.
pub const MAX_QUEUED: usize = 16;
/// The admin account and the sign-in limits.
pub struct Auth {
    user: String,
    /// HMAC of the user name and password hash under the account key: keys
    /// [`Auth::session_key`].
    account: [u8; 32],
    checker: Checker,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// The password checker: one thread that verifies against the stored hash,
/// one password at a time (callers queue), so the Argon2 memory is one
/// block, reused, and no async worker ever runs a check.
struct Checker {
    tx: mpsc::SyncSender<(String, tokio::sync::oneshot::Sender<bool>)>,
}

impl Checker {
    fn start(hash: String) -> Checker {
        let (tx, rx) = mpsc::sync_channel::<(String, tokio::sync::oneshot::Sender<bool>)>(MAX_QUEUED);
        let spawned = std::thread::Builder::new().name("password-check".into()).spawn(move || {
            for (password, reply) in rx {
                let ok = PasswordHash::new(&hash)
                    .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok());
                let _ = reply.send(ok);
            }
        });
        if let Err(e) = spawned {
            // Without the thread every check fails closed (no sign-in).
            tracing::error!("could not start the password checker: {e}");
        }
        Checker { tx }
    }

    /// Whether `password` matches, once the checker gets to it; `None` when
    /// [`MAX_QUEUED`] checks already wait. False if the checker is gone.
    async fn verify(&self, password: &str) -> Option<bool> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        match self.tx.try_send((password.to_owned(), reply)) {
            Ok(()) => Some(answer.await.unwrap_or(false)),
            Err(mpsc::TrySendError::Full(_)) => None,
            Err(mpsc::TrySendError::Disconnected(_)) => Some(false),
        }
    }
}

/// Why a sign-in was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user name or password.
    Invalid,
    /// Too many failures; try again after this long.
    Locked(Duration),
    /// Too many sign-ins are being checked right now; try again shortly.
    Busy,
}

/// Hashes a password with Argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> String {
    hash_with_salt(password, &SaltString::generate(&mut OsRng))
}

fn hash_with_salt(password: &str, salt: &SaltString) -> String {
    Argon2::default().hash_password(password.as_bytes(), salt).expect("argon2 hashes any password").to_string()
}

/// HMAC-SHA256 under `key` of `parts`, each ended by a 0 byte (no part
/// holds one: user names have no control characters, PHC hashes and labels
/// are ASCII), so different parts never make the same message.
fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
        mac.update(&[0]);
    }
    mac.finalize().into_bytes().into()
}

/// The salt of a password given by the operator: 16 bytes of an HMAC of the
/// user name under the account key (which every node derives alike), so
/// nodes given the same password, user and key make the same hash. It is
/// still secret and unique to the installation, which is what a salt is for.
fn shared_salt(account_key: &[u8], user: &str) -> SaltString {
    let bytes = mac(account_key, &[b"password salt", user.as_bytes()]);
    SaltString::encode_b64(&bytes[..16]).expect("16 bytes make a valid salt")
}

impl Auth {
    /// An account with a known password hash; `account_key` is a secret
    /// every node shares (`serve` derives it from the sealing key).
    pub fn new(user: impl Into<String>, hash: String, account_key: &[u8]) -> Self {
        let user = user.into();
        let account = mac(account_key, &[b"account", user.as_bytes(), hash.as_bytes()]);
        Auth { user, account, checker: Checker::start(hash), failures: Mutex::default() }
    }

    /// Loads the account for `serve`: the given password (hashed with a salt
    /// from `account_key`, see [`shared_salt`]), or the stored hash, or a new
    /// generated password (answered so the caller prints it once).
    pub fn load(
        user: String,
        password: Option<String>,
        data: &Path,
        account_key: &[u8],
    ) -> std::io::Result<(Self, Option<String>)> {
        if let Some(p) = password.filter(|p| !p.is_empty()) {
            let hash = hash_with_salt(&p, &shared_salt(account_key, &user));
            return Ok((Auth::new(user, hash, account_key), None));
        }
        let mut generated = None;
        let (hash, _) = read_or_create(&data.join("admin-password.hash"), || {
            let password = random_hex(10);
            let hash = hash_password(&password);
            generated = Some(password);
            Ok(hash.into_bytes())
        })?;
        let hash = String::from_utf8(hash)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "admin-password.hash is not UTF-8"))?;
        Ok((Auth::new(user, hash.trim().to_owned(), account_key), generated))
    }

    /// Counts an attempt against `keys`, unless one of them is already at
    /// its limit (then: how long until it is not). One lock for both, so
    /// parallel attempts are counted one by one.
    fn reserve(&self, keys: &[(String, u32)]) -> Result<(), LoginError> {
        let Ok(mut f) = self.failures.lock() else { return Err(LoginError::Busy) };
        let locked = keys
            .iter()
            .filter_map(|(k, max)| {
                let (n, since) = f.get(k)?;
                let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
                (*n >= *max).then_some(left)
            })
            .max();
        if let Some(left) = locked {
            return Err(LoginError::Locked(left));
        }
        for (k, _) in keys {
            Self::count(&mut f, k);
        }
        Ok(())
    }

    /// Takes back one counted attempt (it succeeded, or was never checked).
    fn unreserve(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock()
            && let Some(e) = f.get_mut(key)
        {
            e.0 = e.0.saturating_sub(1);
        }
    }

    #[cfg(test)]
    fn fail(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            Self::count(&mut f, key);
        }
    }

    /// Counts one attempt under `key` in the bounded table.
    fn count(f: &mut HashMap<String, (u32, Instant)>, key: &str) {
        if f.len() >= MAX_TRACKED && !f.contains_key(key) {
            f.retain(|_, (_, since)| since.elapsed() <= FAILURE_WINDOW);
            if f.len() >= MAX_TRACKED {
                // Still full of live entries: forget the oldest half.
                let mut ages: Vec<Instant> = f.values().map(|(_, since)| *since).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                f.retain(|_, (_, since)| *since > cut);
            }
        }
        let e = f.entry(key.to_owned()).or_insert((0, Instant::now()));
        if e.1.elapsed() > FAILURE_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    /// How many failures are tracked now (for tests and metrics).
    pub fn tracked_failures(&self) -> usize {
        self.failures.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// The admin's user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// What the plugin keeps a session under: HMAC-SHA256 of the cookie's
    /// id keyed by this account, in lowercase hex.
    pub fn session_key(&self, id: &str) -> String {
        hex::encode(mac(&self.account, &[b"session", id.as_bytes()]))
    }

    /// Checks credentials from `client`; answers `Ok` for the admin (the
    /// caller then opens a session under a new id).
    pub async fn login(&self, client: &str, user: &str, password: &str) -> Result<(), LoginError> {
        let mut end = user.len().min(MAX_USER_LEN);
        while !user.is_char_boundary(end) {
            end -= 1;
        }
        let name = user[..end].to_lowercase();
        let keys = [(format!("addr:{client}"), MAX_ADDRESS_FAILURES), (format!("pair:{client}\n{name}"), MAX_FAILURES)];
        self.reserve(&keys)?;
        let user_ok = bool::from(user.as_bytes().ct_eq(self.user.as_bytes()));
        // Verify even for a wrong user name so timing does not tell which was wrong.
        let Some(pass_ok) = self.checker.verify(password).await else {
            // Never checked: not a failure of this address.
            for (k, _) in &keys {
                self.unreserve(k);
            }
            return Err(LoginError::Busy);
        };
        if !(user_ok && pass_ok) {
            return Err(LoginError::Invalid);
        }
        // The admin is in: this pair starts afresh, and this attempt was no
        // failure. (The address keeps its other failures: one right guess
        // must not wipe a scan's trace.)
        self.unreserve(&keys[0].0);
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&keys[1].0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wrong_password_never_creates_a_session_and_locks_out() {
        let a = Auth::new("admin", hash_password("correct horse"), b"account key");
        assert_eq!(a.login("1.2.3.4", "admin", "nope").await, Err(LoginError::Invalid));
        assert_eq!(a.login("1.2.3.4", "root", "correct horse").await, Err(LoginError::Invalid));
        assert_eq!(a.login("1.2.3.4", "admin", "correct horse").await, Ok(()));
        for _ in 0..MAX_FAILURES {
            let _ = a.login("5.6.7.8", "admin", "bad").await;
        }
        assert!(matches!(a.login("5.6.7.8", "admin", "correct horse").await, Err(LoginError::Locked(_))));
        // A stranger failing as the admin does not lock the admin out elsewhere.
        assert!(a.login("9.9.9.9", "admin", "correct horse").await.is_ok());
        // Many user names from one address: the address is limited too.
        for i in 0..MAX_ADDRESS_FAILURES {
            let _ = a.login("7.7.7.7", &format!("guess{i}"), "bad").await;
        }
        assert!(matches!(a.login("7.7.7.7", "admin", "correct horse").await, Err(LoginError::Locked(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_attempts_cannot_outrun_the_limits() {
        let a = std::sync::Arc::new(Auth::new("admin", hash_password("correct horse"), b"account key"));
        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(async move { a.login("6.6.6.6", &format!("u{i}"), "bad").await })
            })
            .collect();
        let mut checked = 0;
        for t in tasks {
            match t.await.unwrap() {
                Err(LoginError::Invalid) => checked += 1,
                Err(LoginError::Locked(_) | LoginError::Busy) => {}
                Ok(_) => panic!("signed in with a wrong password"),
            }
        }
        assert!(checked <= MAX_ADDRESS_FAILURES, "{checked} guesses checked from one address");
        // And the real admin elsewhere is not locked out.
        assert!(a.login("9.9.9.9", "admin", "correct horse").await.is_ok());
    }

    #[tokio::test]
    async fn the_failure_table_stays_bounded() {
        let a = Auth::new("admin", hash_password("correct horse"), b"account key");
        let long = "x".repeat(200 * 1024);
        // Without the password work (it is what makes a sign-in slow), the
        // same bookkeeping as `login`.
        for i in 0..(MAX_TRACKED + 500) {
            a.fail(&format!("addr:10.0.{}.{}", i / 256, i % 256));
        }
        assert!(a.tracked_failures() <= MAX_TRACKED, "{}", a.tracked_failures());
        // A 200 KiB user name counts by its first bytes only.
        assert_eq!(a.login("1.1.1.1", &long, "bad").await, Err(LoginError::Invalid));
        let longest = a.failures.lock().unwrap().keys().map(String::len).max().unwrap();
        assert!(longest < MAX_USER_LEN + 64, "{longest}");
    }

    #[test]
    fn session_keys_are_per_account_and_hide_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let load = |user: &str, pw: &str, salt_key: &[u8]| {
            Auth::load(user.into(), Some(pw.into()), dir.path(), salt_key).unwrap().0
        };
        let id = random_hex(32);
        let a = load("admin", "correct horse", b"key one");
        let k = a.session_key(&id);
        assert!(k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{k}");
        assert!(!k.contains(&id));
        // Another node with the same password, user and key: the same account.
        assert_eq!(load("admin", "correct horse", b"key one").session_key(&id), k);
        // A changed password, user name or key: none of the old sessions.
        assert_ne!(load("admin", "battery staple", b"key one").session_key(&id), k);
        assert_ne!(load("root", "correct horse", b"key one").session_key(&id), k);
        assert_ne!(load("admin", "correct horse", b"key two").session_key(&id), k);
        assert_ne!(a.session_key(&random_hex(32)), k);
        // The password hash alone (the hash file, say) does not give the
        // account: without the key no session key can be made.
        let hash = hash_password("correct horse");
        assert_ne!(
            Auth::new("admin", hash.clone(), b"key one").session_key(&id),
            Auth::new("admin", hash, b"another").session_key(&id)
        );
        // No password file is written for a given password.
        assert!(!dir.path().join("admin-password.hash").exists());
    }

    #[tokio::test]
    async fn a_given_password_still_signs_in_with_its_shared_salt() {
        let dir = tempfile::tempdir().unwrap();
        let (a, generated) = Auth::load("admin".into(), Some("correct horse".into()), dir.path(), b"salt key").unwrap();
        assert!(generated.is_none());
        assert_eq!(a.login("1.2.3.4", "admin", "correct horse").await, Ok(()));
        assert_eq!(a.login("1.2.3.4", "admin", "correct hors").await, Err(LoginError::Invalid));
    }

    #[tokio::test]
    async fn generated_password_is_stored_only_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let (_, pw) = Auth::load("admin".into(), None, dir.path(), b"salt key").unwrap();
        let pw = pw.unwrap();
        let stored = std::fs::read_to_string(dir.path().join("admin-password.hash")).unwrap();
        assert!(stored.starts_with("$argon2id$") && !stored.contains(&pw));
        let (again, none) = Auth::load("admin".into(), None, dir.path(), b"salt key").unwrap();
        assert!(none.is_none());
        assert!(again.login("a", "admin", &pw).await.is_ok());
    }
}
