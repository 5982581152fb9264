//! Webhook validation (`webhook::validate`), the rules the pages and the
//! API share, with the host's egress verdict.

use super::*;
use crate::host::RefusedKind;
use crate::webhook::{FieldError, Input, MAX_NAME, validate};

fn input() -> Input {
    Input {
        name: "CRM".into(),
        url: "https://crm.example/hook".into(),
        secret: Some(String::new()),
        rotate: false,
        events: vec!["user.created".into()],
        enabled: true,
        ..Default::default()
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
        rate_limit: Some("0".into()),
        ..Default::default()
    };
    assert_eq!(fields(&validate(&h, &i).unwrap_err()), ["name", "url", "secret", "events", "rate_limit"]);
}

#[test]
fn names_are_limited_in_characters_not_bytes() {
    let h = TestHost::new();
    let mut i = input();
    i.name = "é".repeat(MAX_NAME);
    assert!(validate(&h, &i).is_ok(), "100 two-byte characters");
    i.name = "a".repeat(MAX_NAME + 1);
    assert_eq!(message_for(&h, &i, "name"), "Shorten the name to 100 characters or fewer (it has 101).");
    i.name = "tab\there".into();
    assert_eq!(
        message_for(&h, &i, "name"),
        "Remove the tabs, line breaks or other invisible characters from the name."
    );
}

#[test]
fn the_host_is_asked_about_the_normalised_url() {
    let h = TestHost::new();
    h.refuse("http://10.", RefusedKind::SpecialPurpose);
    let mut i = input();
    // 0x0a000001 is 10.0.0.1 once parsed.
    i.url = "http://0x0a000001/".into();
    assert_eq!(
        message_for(&h, &i, "url"),
        "This is a special-purpose address (such as multicast or reserved) that cannot receive webhooks. \
         Use the receiver's public address, or ask your operator to allow this one."
    );
    i.url = "http://10.1.2.3:8080/".into();
    assert!(validate(&h, &i).is_err());
    i.url = "http://11.1.2.3/".into();
    assert!(validate(&h, &i).is_ok());
}

#[test]
fn syntax_errors_come_before_the_host_is_asked() {
    let h = TestHost::new();
    h.refuse("", RefusedKind::InvalidUrl);
    let mut i = input();
    i.url = "https://user:pw@crm.example/".into();
    assert!(message_for(&h, &i, "url").starts_with("Remove the user name and password (the part before @)"));
    i.url = String::new();
    assert_eq!(
        message_for(&h, &i, "url"),
        "Enter the address that should receive the webhooks, for example https://example.com/hooks."
    );
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

/// #13 item 8: each address problem says, in plain words, what to change;
/// never the parser's wording ("relative URL without a base").
#[test]
fn each_url_problem_says_what_to_do() {
    let h = TestHost::new();
    let cases: &[(&str, &str)] = &[
        ("example.com/hooks", "Add https:// in front of the address (for example https://example.com/hooks)."),
        ("example.com:8080/hooks", "Add https:// in front of the address"),
        ("localhost:8080", "Add https:// in front of the address"),
        ("http//example.com/hooks", "Start the address with https:// (a colon and two slashes)"),
        (
            "ftp://example.com/x",
            "Use an address that starts with https:// (or http://); webhooks cannot be sent to ftp: addresses.",
        ),
        ("javascript:alert(1)", "webhooks cannot be sent to javascript: addresses"),
        ("https://exa mple.com/", "Remove the spaces from the address"),
        ("https://example.com/a\tb", "Remove the line breaks, tabs or other invisible characters"),
        ("https://example.com\\@evil/", "Use / instead of \\ in the address."),
        ("https://user:pw@example.com/", "Remove the user name and password (the part before @)"),
        ("https://example.com/#top", "Remove the # and everything after it"),
        ("https://", "Add the receiving server's name after https://"),
        ("https://example.com:0/", "Use a port number from 1 to 65535"),
        ("https://example.com:65536/", "Use a port number from 1 to 65535"),
        ("https://1.2.3.256/", "Check the IP address"),
        ("https://[example.com]/", "Check the IPv6 address"),
        ("https://exa%mple.com/", "The server name has characters a domain name cannot have"),
    ];
    for (url, want) in cases {
        let mut i = input();
        i.url = (*url).to_owned();
        let got = message_for(&h, &i, "url");
        assert!(got.starts_with(want) || got.contains(want), "{url:?}: {got:?}");
        for jargon in ["relative URL", "base", "URL is not valid", "egress"] {
            assert!(!got.contains(jargon), "{url:?}: {got:?}");
        }
    }
    let mut i = input();
    i.url = format!("https://example.com/{}", "a".repeat(2048));
    assert_eq!(
        message_for(&h, &i, "url"),
        "Shorten the address to 2048 bytes or fewer (a character outside plain ASCII counts 2 to 4)."
    );
}

/// #13 item 8: the host's egress refusals, by the kind the host names
/// (`host-info.refused-kind`), told as what kind of address it is and what
/// to do. `tests/e2e.rs` checks the same against the real host.
#[test]
fn egress_refusals_name_the_kind_of_address() {
    let h = TestHost::new();
    h.refuse("http://10.", RefusedKind::PrivateNetwork);
    h.refuse("http://[fd00::1]", RefusedKind::PrivateNetwork);
    h.refuse("http://127.", RefusedKind::ThisMachine);
    h.refuse("http://localhost", RefusedKind::ThisMachine);
    h.refuse("http://169.254.", RefusedKind::LinkLocal);
    h.refuse("http://192.0.2.", RefusedKind::Documentation);
    h.refuse("http://224.", RefusedKind::SpecialPurpose);
    let ask = "Webhooks can only reach public addresses; ask your operator to allow it.";
    let cases = [
        ("http://10.0.0.1/", format!("This address is on a private network. {ask}")),
        ("http://[fd00::1]/", format!("This address is on a private network. {ask}")),
        ("http://127.0.0.1:8080/", format!("This address points back at this server itself. {ask}")),
        ("http://localhost/", format!("This address points back at this server itself. {ask}")),
        (
            "http://169.254.169.254/latest/",
            format!("This is a link-local address (a cloud server's metadata service lives there). {ask}"),
        ),
        (
            "http://192.0.2.1/",
            "This address is reserved for examples in documentation; no server answers there. \
             Use the receiver's real address."
                .to_owned(),
        ),
        (
            "http://224.0.0.1/",
            "This is a special-purpose address (such as multicast or reserved) that cannot receive webhooks. \
             Use the receiver's public address, or ask your operator to allow this one."
                .to_owned(),
        ),
    ];
    for (url, want) in cases {
        let mut i = input();
        i.url = url.to_owned();
        assert_eq!(message_for(&h, &i, "url"), want, "{url}");
    }
}

/// #13 item 8: name and secret messages say what to do, with the limit.
#[test]
fn name_and_secret_messages_say_what_to_do() {
    let h = TestHost::new();
    let mut i = input();
    i.name = "  ".into();
    assert_eq!(message_for(&h, &i, "name"), "Enter a name, for example \u{201c}Billing CRM\u{201d}.");
    i = input();
    i.secret = Some("short".into());
    assert_eq!(message_for(&h, &i, "secret"), "Use a secret of at least 8 characters, or use Generate.");
    i.secret = Some("two words here".into());
    assert_eq!(message_for(&h, &i, "secret"), "Remove the spaces and line breaks from the secret, or use Generate.");
    i.secret = Some("whsec_!!!!".into());
    assert!(message_for(&h, &i, "secret").starts_with("After whsec_ the secret must be base64"));
    i.secret = Some("s".repeat(300));
    assert_eq!(message_for(&h, &i, "secret"), "Shorten the secret to 256 bytes or fewer, or use Generate.");
}
