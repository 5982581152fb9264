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
    h.execute_batch("DROP INDEX webhooks_form_id; ALTER TABLE webhooks DROP COLUMN form_id;").unwrap();
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
