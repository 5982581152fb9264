//! `serve`'s admin sign-in sessions (`sessions` in the WIT), kept in the
//! plugin's database so that every node on one database knows every session:
//! a load balancer need not stick an admin to one node, a restart or a
//! rolling upgrade signs nobody out, and signing out on one node ends the
//! session on all of them.
//!
//! The host keeps the cookie and passes only a keyed hash of it (the
//! `key`), so the table holds nothing a reader of the database could sign
//! in with; the host also keys that hash with the admin account, so a
//! changed password or user name finds none of the old sessions.
//!
//! The rules are here, once, for both engines: how long a session lives
//! without use ([`IDLE_MS`]) and at most ([`LIFETIME_MS`]), how often its
//! use is written ([`TOUCH_EVERY_MS`]), and how many one user keeps
//! ([`MAX_PER_USER`]).

use crate::host::{DbError, Host, Value};

/// A session ends after this long without a request (as before sessions
/// were shared: 12 hours).
pub const IDLE_MS: u64 = 12 * 3600 * 1000;
/// A session ends this long after sign-in, however busy: a stolen cookie
/// cannot be kept alive for ever.
pub const LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000;
/// A session's last use is written at most this often: an admin's every
/// page view would otherwise be a write (and, on PostgreSQL, a round trip
/// more) for a timer counted in hours.
pub const TOUCH_EVERY_MS: u64 = 60 * 1000;
/// Live sessions kept per user; the least recently used go first. Only the
/// admin can open sessions (the host checks the password first), so this
/// bounds the table against a script that signs in in a loop.
pub const MAX_PER_USER: u32 = 100;
/// Longest user name kept (the host's sign-in counts no more).
const MAX_USER: usize = 128;

/// Why a session call was refused.
#[derive(Debug, PartialEq)]
pub enum SessionError {
    /// The key or user is not what the host sends.
    Invalid(&'static str),
    /// The database failed.
    Db(DbError),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Invalid(why) => f.write_str(why),
            SessionError::Db(e) => write!(f, "session storage failed: {e}"),
        }
    }
}

impl From<DbError> for SessionError {
    fn from(e: DbError) -> Self {
        SessionError::Db(e)
    }
}

/// A key is 64 lowercase hex digits (an HMAC-SHA256), nothing else.
fn valid_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Keeps a new session of `user` under `key`, and makes room: sessions past
/// their time are deleted, and `user` keeps at most [`MAX_PER_USER`].
pub fn open(host: &dyn Host, key: &str, user: &str) -> Result<(), SessionError> {
    if !valid_key(key) {
        return Err(SessionError::Invalid("a session key is 64 lowercase hex digits"));
    }
    if user.is_empty() || user.len() > MAX_USER || user.chars().any(char::is_control) {
        return Err(SessionError::Invalid("a session's user name is 1 to 128 bytes without control characters"));
    }
    let now = host.now_ms();
    prune(host, now)?;
    host.execute(
        "INSERT INTO admin_sessions (key, user_name, created_at, seen_at) VALUES (?1, ?2, ?3, ?3)",
        &[key.into(), user.into(), now.into()],
    )?;
    host.execute(
        "DELETE FROM admin_sessions WHERE user_name = ?1 AND key NOT IN (\
           SELECT key FROM admin_sessions WHERE user_name = ?1 ORDER BY seen_at DESC, key LIMIT ?2)",
        &[user.into(), MAX_PER_USER.into()],
    )?;
    Ok(())
}

/// The user of the live session under `key`, noting its use; `None` when
/// there is none (never opened, signed out, idle past [`IDLE_MS`], or older
/// than [`LIFETIME_MS`]) or the key is malformed.
pub fn find(host: &dyn Host, key: &str) -> Result<Option<String>, SessionError> {
    if !valid_key(key) {
        return Ok(None);
    }
    let now = host.now_ms();
    let live = [key.into(), now.saturating_sub(IDLE_MS).into(), now.saturating_sub(LIFETIME_MS).into()];
    let rows = host.query(
        "SELECT user_name, seen_at FROM admin_sessions WHERE key = ?1 AND seen_at > ?2 AND created_at > ?3",
        &live,
    )?;
    let Some(row) = rows.iter().next() else { return Ok(None) };
    let user = row.str(0);
    if row.u64(1).saturating_add(TOUCH_EVERY_MS) <= now {
        host.execute("UPDATE admin_sessions SET seen_at = ?2 WHERE key = ?1", &[key.into(), now.into()])?;
    }
    Ok(Some(user))
}

/// Ends the session under `key` (signing out); nothing when there is none.
pub fn close(host: &dyn Host, key: &str) -> Result<(), SessionError> {
    if valid_key(key) {
        host.execute("DELETE FROM admin_sessions WHERE key = ?1", &[Value::from(key)])?;
    }
    Ok(())
}

/// Deletes the sessions past their time; answers how many. Called at every
/// sign-in and by `maintain`.
pub fn prune(host: &dyn Host, now: u64) -> Result<u64, DbError> {
    host.execute(
        "DELETE FROM admin_sessions WHERE seen_at <= ?1 OR created_at <= ?2",
        &[now.saturating_sub(IDLE_MS).into(), now.saturating_sub(LIFETIME_MS).into()],
    )
}
