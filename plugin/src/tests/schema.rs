//! Migrations (`plugin.migrate`): idempotent, refusing a newer database,
//! and upgrading secrets stored by older versions.

use super::*;
use crate::host::Value;
use crate::schema::migrate;

fn version(h: &TestHost) -> i64 {
    h.int("SELECT MAX(version) FROM plugin_schema", &[])
}

#[test]
fn migrating_again_changes_nothing() {
    let h = TestHost::new();
    let v = version(&h);
    hook(&h, "https://a.example/", &["user.created"]);
    assert_eq!(migrate(&h).unwrap() as i64, v);
    assert_eq!(h.int("SELECT COUNT(*) FROM plugin_schema", &[]), v, "one row per version");
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 1);
    assert!(!h.in_transaction());
}

#[test]
fn a_newer_database_is_refused() {
    let h = TestHost::new();
    let v = version(&h);
    h.execute("INSERT INTO plugin_schema (version) VALUES (?1)", &[(v + 1).into()]).unwrap();
    let e = migrate(&h).unwrap_err();
    assert!(e.contains("newer than this plugin"), "{e}");
    assert!(!h.in_transaction());
}

#[test]
fn plaintext_secrets_are_sealed_on_upgrade() {
    let h = TestHost::new();
    let w = hook(&h, "https://a.example/", &["user.created"]);
    h.execute("UPDATE webhooks SET secret = ?2, updated_at = 77 WHERE id = ?1", &[w.into(), SECRET.into()]).unwrap();
    migrate(&h).unwrap();
    let r = h.row("SELECT secret, secret_set_at FROM webhooks", &[]);
    assert_eq!(r, [Value::Null, Value::Integer(77)]);
    let sealed = h.query("SELECT secret_sealed FROM webhooks", &[]).unwrap().first().unwrap().opt_blob(0).unwrap();
    assert_eq!(h.open_legacy(&sealed).unwrap(), crate::signing::key_bytes(SECRET));
}

#[test]
fn secrets_sealed_as_text_before_version_5_are_resealed_as_key_bytes() {
    let h = TestHost::new();
    let w = hook(&h, "https://a.example/", &["user.created"]);
    // A database at version 4: the sealed values hold the secret's text.
    h.execute_batch("DELETE FROM plugin_schema WHERE version > 4").unwrap();
    // And without what later versions added that cannot be added twice.
    h.execute_batch(&format!(
        "DROP INDEX webhooks_form_id; ALTER TABLE webhooks DROP COLUMN form_id; \
         ALTER TABLE deliveries DROP COLUMN lease_owner; ALTER TABLE webhooks DROP COLUMN rate_limit; {} {}",
        crate::schema::DROP_14,
        crate::schema::DROP_16
    ))
    .unwrap();
    h.execute(
        "UPDATE webhooks SET secret_sealed = ?2, prev_secret_sealed = ?3 WHERE id = ?1",
        &[w.into(), h.seal(SECRET.as_bytes()).unwrap().into(), Value::Blob(vec![0xde, 0xad])],
    )
    .unwrap();
    migrate(&h).unwrap();
    assert!(version(&h) >= 8);
    let r = h.query("SELECT secret_sealed, prev_secret_sealed FROM webhooks", &[]).unwrap();
    let r = r.first().unwrap();
    assert_eq!(h.open_legacy(&r.opt_blob(0).unwrap()).unwrap(), crate::signing::key_bytes(SECRET));
    assert_eq!(r.opt_blob(1), Some(vec![0xde, 0xad]), "one that no longer opens is left alone");
}

/// Everything a migration could touch, to show a refusal changed nothing.
fn snapshot(h: &TestHost) -> Vec<Vec<Value>> {
    let mut rows = h.query("SELECT version FROM plugin_schema ORDER BY 1", &[]).unwrap().rows;
    rows.extend(h.query("SELECT * FROM key_check", &[]).unwrap().rows);
    rows.extend(h.query("SELECT * FROM webhooks ORDER BY id", &[]).unwrap().rows);
    rows
}

#[test]
fn a_host_with_another_key_is_refused_and_nothing_changes() {
    let h = TestHost::new();
    hook_with(&h, "https://a.example/", &["user.created"], Some(SECRET));
    assert_eq!(h.int("SELECT COUNT(*) FROM key_check", &[]), 1, "a new database keeps the check");
    let before = snapshot(&h);
    h.set_key(0x33);
    let e = migrate(&h).unwrap_err();
    assert_eq!(e, crate::schema::WRONG_KEY);
    assert!(e.contains("WEBHOOKS_SECRET_KEY") && e.contains("nothing was changed"), "{e}");
    assert_eq!(snapshot(&h), before);
    assert!(!h.in_transaction());
    // Even with no secret stored at all, the check row alone refuses it.
    let empty = TestHost::new();
    empty.set_key(0x33);
    assert_eq!(migrate(&empty).unwrap_err(), crate::schema::WRONG_KEY);
    // Back with the right key, it starts.
    h.set_key(0x5a);
    migrate(&h).unwrap();
    assert_eq!(snapshot(&h), before);
}

/// A database from before the check: version 10, without `key_check`.
fn before_the_check(h: &TestHost) {
    h.execute_batch(&format!(
        "DELETE FROM plugin_schema WHERE version > 10; DROP TABLE key_check; \
         ALTER TABLE deliveries DROP COLUMN lease_owner; ALTER TABLE webhooks DROP COLUMN rate_limit; {} {}",
        crate::schema::DROP_14,
        crate::schema::DROP_16
    ))
    .unwrap();
}

#[test]
fn upgrading_adopts_the_key_its_stored_secrets_open_with() {
    let h = TestHost::new();
    hook_with(&h, "https://a.example/", &["user.created"], Some(SECRET));
    before_the_check(&h);
    migrate(&h).unwrap();
    assert_eq!(h.int("SELECT COUNT(*) FROM key_check", &[]), 1);
    h.set_key(0x33);
    assert_eq!(migrate(&h).unwrap_err(), crate::schema::WRONG_KEY, "the adopted key is the one checked");
    // No secrets stored: whichever key upgrades it is the database's key.
    let empty = TestHost::new();
    before_the_check(&empty);
    empty.set_key(0x33);
    migrate(&empty).unwrap();
    assert_eq!(empty.int("SELECT COUNT(*) FROM key_check", &[]), 1);
}

#[test]
fn upgrading_with_a_key_none_of_its_secrets_open_with_is_refused() {
    let h = TestHost::new();
    hook_with(&h, "https://a.example/", &["user.created"], Some(SECRET));
    before_the_check(&h);
    let version_before = version(&h);
    let webhooks = h.query("SELECT * FROM webhooks", &[]).unwrap().rows;
    h.set_key(0x33);
    assert_eq!(migrate(&h).unwrap_err(), crate::schema::WRONG_KEY);
    assert_eq!(version(&h), version_before, "not upgraded");
    assert_eq!(h.int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'key_check'", &[]), 0, "nothing created");
    assert_eq!(h.query("SELECT * FROM webhooks", &[]).unwrap().rows, webhooks);
}
