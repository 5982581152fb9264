//! `serve`'s admin sessions (`sessions.open|find|close`): what makes one
//! live, how it ends, and what the table keeps.

use super::*;
use crate::host::Value;
use crate::sessions::{self, IDLE_MS, LIFETIME_MS, MAX_PER_USER, SessionError, TOUCH_EVERY_MS};

fn key(n: u32) -> String {
    format!("{n:064x}")
}

fn seen_at(h: &TestHost, k: &str) -> i64 {
    h.int("SELECT seen_at FROM admin_sessions WHERE key = ?1", &[Value::from(k)])
}

#[test]
fn an_opened_session_is_found_until_signed_out() {
    let h = TestHost::new();
    assert_eq!(sessions::find(&h, &key(1)).unwrap(), None, "never opened");
    sessions::open(&h, &key(1), "admin").unwrap();
    assert_eq!(sessions::find(&h, &key(1)).unwrap().as_deref(), Some("admin"));
    assert_eq!(sessions::find(&h, &key(2)).unwrap(), None, "another key finds nothing");
    sessions::close(&h, &key(1)).unwrap();
    assert_eq!(sessions::find(&h, &key(1)).unwrap(), None, "signed out");
    assert_eq!(h.int("SELECT COUNT(*) FROM admin_sessions", &[]), 0);
    // Closing what is not there is no error.
    sessions::close(&h, &key(1)).unwrap();
    assert!(!h.in_transaction());
}

#[test]
fn a_session_ends_after_idle_time_and_use_keeps_it() {
    let h = TestHost::new();
    sessions::open(&h, &key(1), "admin").unwrap();
    sessions::open(&h, &key(2), "admin").unwrap();
    // Used within the idle time, key 1 lives on past the first 12 hours.
    h.advance(IDLE_MS - 1000);
    assert!(sessions::find(&h, &key(1)).unwrap().is_some());
    h.advance(2000);
    assert_eq!(sessions::find(&h, &key(2)).unwrap(), None, "idle past the limit");
    assert!(sessions::find(&h, &key(1)).unwrap().is_some(), "its use was noted");
}

#[test]
fn use_is_written_at_most_once_a_minute() {
    let h = TestHost::new();
    h.set_now(1_000_000);
    sessions::open(&h, &key(1), "admin").unwrap();
    h.advance(TOUCH_EVERY_MS - 1);
    sessions::find(&h, &key(1)).unwrap();
    assert_eq!(seen_at(&h, &key(1)), 1_000_000, "not written within the minute");
    h.advance(1);
    sessions::find(&h, &key(1)).unwrap();
    assert_eq!(seen_at(&h, &key(1)), (1_000_000 + TOUCH_EVERY_MS) as i64);
}

#[test]
fn a_busy_session_still_ends_after_its_lifetime() {
    let h = TestHost::new();
    sessions::open(&h, &key(1), "admin").unwrap();
    let mut used = 0;
    while used + IDLE_MS / 2 < LIFETIME_MS {
        h.advance(IDLE_MS / 2);
        used += IDLE_MS / 2;
        assert!(sessions::find(&h, &key(1)).unwrap().is_some(), "alive after {used} ms of use");
    }
    h.advance(IDLE_MS / 2);
    assert_eq!(sessions::find(&h, &key(1)).unwrap(), None, "past seven days");
}

#[test]
fn malformed_keys_and_users_are_refused_and_nothing_is_kept() {
    let h = TestHost::new();
    for bad in ["", "abc", &"A".repeat(64), &"g".repeat(64), &"0".repeat(65), "' OR 1=1 --"] {
        assert!(matches!(sessions::open(&h, bad, "admin"), Err(SessionError::Invalid(_))), "{bad:?}");
        assert_eq!(sessions::find(&h, bad).unwrap(), None);
        sessions::close(&h, bad).unwrap();
    }
    for bad in ["", "a\nb", &"u".repeat(129)] {
        let e = sessions::open(&h, &key(1), bad).unwrap_err();
        assert!(e.to_string().contains("user name"), "{e}");
    }
    assert_eq!(h.int("SELECT COUNT(*) FROM admin_sessions", &[]), 0);
}

#[test]
fn one_user_keeps_at_most_the_bound_and_the_least_recent_go() {
    let h = TestHost::new();
    for n in 0..MAX_PER_USER + 5 {
        h.advance(1);
        sessions::open(&h, &key(n), "admin").unwrap();
    }
    sessions::open(&h, &key(9999), "someone-else").unwrap();
    assert_eq!(h.int("SELECT COUNT(*) FROM admin_sessions WHERE user_name = 'admin'", &[]), MAX_PER_USER as i64);
    for n in 0..5 {
        assert_eq!(sessions::find(&h, &key(n)).unwrap(), None, "session {n} was the least recent");
    }
    assert!(sessions::find(&h, &key(MAX_PER_USER + 4)).unwrap().is_some());
    assert!(sessions::find(&h, &key(9999)).unwrap().is_some(), "another user's are kept");
}

#[test]
fn expired_sessions_are_deleted_at_sign_in_and_by_maintain() {
    let h = TestHost::new();
    sessions::open(&h, &key(1), "admin").unwrap();
    sessions::open(&h, &key(2), "admin").unwrap();
    h.advance(IDLE_MS);
    sessions::open(&h, &key(3), "admin").unwrap();
    assert_eq!(h.texts("SELECT key FROM admin_sessions", &[]), [key(3)]);
    h.advance(IDLE_MS);
    let p = outbox::maintain(&h).unwrap();
    assert_eq!(p.sessions, 1);
    assert_eq!(h.int("SELECT COUNT(*) FROM admin_sessions", &[]), 0);
}

#[test]
fn a_failing_database_is_an_error_not_a_signed_out_admin() {
    let h = TestHost::new();
    sessions::open(&h, &key(1), "admin").unwrap();
    h.execute_batch("DROP TABLE admin_sessions").unwrap();
    assert!(matches!(sessions::find(&h, &key(1)), Err(SessionError::Db(_))));
    assert!(sessions::open(&h, &key(2), "admin").unwrap_err().to_string().contains("session storage failed"));
}
