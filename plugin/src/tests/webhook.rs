//! Webhook validation (`webhook::validate`), the rules the pages and the
//! API share, with the host's egress verdict.

use super::*;
use crate::webhook::{FieldError, Input, MAX_NAME, validate};

fn input() -> Input {
    Input {
        name: "CRM".into(),
        url: "https://crm.example/hook".into(),
        secret: Some(String::new()),
        rotate: false,
        events: vec!["user.created".into()],
        enabled: true,
    }
}

fn fields(errors: &[FieldError]) -> Vec<&'static str> {
    errors.iter().map(|e| e.field).collect()
}

fn message_for(h: &TestHost, i: &Input, field: &str) -> String {
    let errors = validate(h, i).unwrap_err();
    errors.iter().find(|e| e.field == field).unwrap_or_else(|| panic!("no {field} error in {errors:?}")).message.clone()
}

#[test]
fn a_good_input_is_normalised() {
    let h = TestHost::new();
    let mut i = input();
    i.name = "  CRM  ".into();
    i.url = " HTTPS://CRM.Example:443/hook ".into();
    i.events = vec!["user.deleted".into(), "user.created".into(), "user.deleted".into()];
    i.enabled = false;
    let v = validate(&h, &i).unwrap();
    assert_eq!(v.name, "CRM");
    assert_eq!(v.url, "https://crm.example/hook", "default port dropped, host lower-cased");
    assert_eq!(v.events, ["user.created", "user.deleted"]);
    assert!(!v.enabled && !v.rotate);
    assert_eq!(v.secret, Some(None), "an empty box is no secret");
}

#[test]
fn every_problem_is_reported_at_once() {
    let h = TestHost::new();
    let i = Input {
        name: String::new(),
        url: "not a url".into(),
        secret: Some("short".into()),
        rotate: false,
        events: Vec::new(),
        enabled: true,
    };
    assert_eq!(fields(&validate(&h, &i).unwrap_err()), ["name", "url", "secret", "events"]);
}

#[test]
fn names_are_limited_in_characters_not_bytes() {
    let h = TestHost::new();
    let mut i = input();
    i.name = "é".repeat(MAX_NAME);
    assert!(validate(&h, &i).is_ok(), "100 two-byte characters");
    i.name = "a".repeat(MAX_NAME + 1);
    assert_eq!(message_for(&h, &i, "name"), "Name must be at most 100 characters.");
    i.name = "tab\there".into();
    assert_eq!(message_for(&h, &i, "name"), "Name must not contain control characters.");
}

#[test]
fn the_host_is_asked_about_the_normalised_url() {
    let h = TestHost::new();
    h.refuse("http://10.", "refused: the destination address is not allowed");
    let mut i = input();
    // 0x0a000001 is 10.0.0.1 once parsed.
    i.url = "http://0x0a000001/".into();
    assert_eq!(message_for(&h, &i, "url"), "refused: the destination address is not allowed");
    i.url = "http://10.1.2.3:8080/".into();
    assert!(validate(&h, &i).is_err());
    i.url = "http://11.1.2.3/".into();
    assert!(validate(&h, &i).is_ok());
}

#[test]
fn syntax_errors_come_before_the_host_is_asked() {
    let h = TestHost::new();
    h.refuse("", "the host was asked");
    let mut i = input();
    i.url = "https://user:pw@crm.example/".into();
    assert_eq!(message_for(&h, &i, "url"), "URL must not contain a user name or password.");
    i.url = String::new();
    assert_eq!(message_for(&h, &i, "url"), "URL is required.");
}

#[test]
fn secrets_keep_set_or_clear() {
    let h = TestHost::new();
    let mut i = input();
    i.secret = None;
    assert_eq!(validate(&h, &i).unwrap().secret, None, "absent: keep the stored one");
    i.secret = Some(format!("  {SECRET}  "));
    assert_eq!(validate(&h, &i).unwrap().secret, Some(Some(SECRET.to_owned())), "trimmed");
    i.secret = Some("   ".into());
    assert_eq!(message_for(&h, &i, "secret"), "A secret cannot be only spaces. Leave the box empty for no secret.");
    i.secret = Some("whsec_AAAA".into());
    assert!(message_for(&h, &i, "secret").contains("24 to 64 bytes"), "a 3-byte key");
    i.secret = Some("whsec_not base64!".into());
    assert!(validate(&h, &i).is_err());
}

#[test]
fn events_must_be_known_and_subscribable() {
    let h = TestHost::new();
    let mut i = input();
    i.events = vec!["user.created".into(), "test.webhook".into(), "user.nope".into()];
    let errors = validate(&h, &i).unwrap_err();
    assert_eq!(
        errors,
        [
            FieldError { field: "events", message: "Unknown event type: test.webhook.".into() },
            FieldError { field: "events", message: "Unknown event type: user.nope.".into() },
        ]
    );
    i.events = Vec::new();
    assert_eq!(message_for(&h, &i, "events"), "Choose at least one event.");
}

#[test]
fn a_stored_secret_is_sealed_key_bytes() {
    let h = TestHost::new();
    let w = hook_with(&h, "https://a.example/", &["user.created"], Some(SECRET));
    let sealed = h.query("SELECT secret_sealed, secret FROM webhooks WHERE id = ?1", &[w.into()]).unwrap();
    let r = sealed.first().unwrap();
    assert_eq!(r.opt_str(1), None, "never in clear");
    let sealed = r.opt_blob(0).unwrap();
    assert_eq!(h.open_legacy(&sealed).unwrap(), crate::signing::key_bytes(SECRET));
}
