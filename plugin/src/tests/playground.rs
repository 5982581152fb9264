//! The signature playground (#13): a pasted request is checked against the
//! webhook's secrets (signed by the test host's HMAC, as the real host signs)
//! and each way it can fail is explained on its own.

use super::*;
use crate::admin::{self, Request, Response};
use crate::playground::{self, Key, Report, Verdict};
use crate::signing;

const OTHER: &str = "whsec_b3RoZXIgc2VjcmV0IG9mIGFub3RoZXIgaG9vaw==";

/// A request as a receiver got it: headers and body.
#[derive(Clone)]
struct Got {
    headers: Vec<(String, String)>,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> String {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }
    /// The headers as a receiver's log prints them, names in any case.
    fn pasted(&self) -> String {
        self.headers.iter().map(|(k, v)| format!("{}: {v}\n", k.to_uppercase())).collect()
    }
    fn with(&self, name: &str, value: &str) -> Got {
        let mut g = self.clone();
        g.headers.retain(|(k, _)| k != name);
        g.headers.push((name.to_owned(), value.to_owned()));
        g
    }
    fn without(&self, name: &str) -> Got {
        let mut g = self.clone();
        g.headers.retain(|(k, _)| k != name);
        g
    }
}

/// A webhook with `secret` and one delivery of it built and signed by the
/// pipeline; answers (webhook, delivery, the request).
fn delivered(h: &TestHost, secret: Option<&str>) -> (i64, i64, Got) {
    let w = hook_with(h, "https://example.com/hook", &["user.created"], secret);
    raise(h, &format!("e-{}", h.now_ms()), "user.created");
    let d = claim(h, 1).claimed;
    let o = outbox::build(h, &d).unwrap().remove(0).unwrap();
    let body = String::from_utf8(o.request.body.clone()).unwrap();
    (w, o.delivery_id, Got { headers: o.request.headers.clone(), body })
}

fn check(h: &TestHost, w: i64, got: &Got) -> Report {
    check_text(h, w, &got.pasted(), &got.body)
}

fn check_text(h: &TestHost, w: i64, headers: &str, body: &str) -> Report {
    playground::check(h, w, headers, body).unwrap().expect("the webhook exists").expect("checked")
}

fn codes(r: &Report) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code).collect()
}

fn detail(r: &Report, code: &str) -> String {
    r.findings.iter().find(|f| f.code == code).map(|f| format!("{} {}", f.title, f.detail)).unwrap_or_else(|| {
        panic!("no {code} finding: {:#?}", r.findings);
    })
}

fn rotate_to(h: &TestHost, w: i64, secret: &str, rotate: bool) {
    let input = wh::Input {
        name: "rotated".into(),
        url: "https://example.com/hook".into(),
        secret: Some(secret.into()),
        rotate,
        events: vec!["user.created".into()],
        enabled: true,
        ..Default::default()
    };
    assert!(store::update(h, w, &wh::validate(h, &input).unwrap()).unwrap());
}

#[test]
fn a_genuine_delivery_verifies_with_the_current_secret() {
    let h = TestHost::new();
    let (w, d, got) = delivered(&h, Some(SECRET));
    let r = check(&h, w, &got);
    assert_eq!(r.verdict, Verdict::Verified(Key::Current), "{r:#?}");
    assert_eq!(r.summary, "Verified with the current secret.");
    assert!(r.findings.is_empty(), "{r:#?}");
    assert_eq!(r.delivery_id, Some(d), "the id names the recorded delivery");
}

#[test]
fn after_a_rotation_an_old_delivery_verifies_with_the_rotating_secret() {
    let h = TestHost::new();
    let (w, _, old) = delivered(&h, Some(SECRET));
    rotate_to(&h, w, OTHER, true);
    let r = check(&h, w, &old);
    assert_eq!(r.verdict, Verdict::Verified(Key::Rotating), "{r:#?}");
    assert!(r.summary.contains("rotating (previous) secret") && r.summary.contains("until"), "{}", r.summary);
    // A delivery signed now carries both signatures, the current one first.
    raise(&h, "e-new", "user.created");
    let d = claim(&h, 1).claimed;
    let o = outbox::build(&h, &d).unwrap().remove(0).unwrap();
    let new = Got { headers: o.request.headers, body: String::from_utf8(o.request.body).unwrap() };
    assert_eq!(check(&h, w, &new).verdict, Verdict::Verified(Key::Current));
    // Once the window is over, the old secret no longer counts.
    h.advance(store::ROTATION_WINDOW_MS + 1);
    let r = check(&h, w, &old);
    assert_eq!(r.verdict, Verdict::Refused);
    assert!(detail(&r, "retired-secret").contains("rotation has ended"), "{r:#?}");
    assert!(r.has("too-old"), "{r:#?}");
}

#[test]
fn missing_and_malformed_headers_are_each_named() {
    let h = TestHost::new();
    let (w, _, got) = delivered(&h, Some(SECRET));
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let r = check(&h, w, &got.without(name));
        assert_eq!(r.verdict, Verdict::Refused);
        assert_eq!(codes(&r), ["missing-header"], "{name}: {r:#?}");
        assert!(r.findings[0].title.contains(name), "{r:#?}");
    }
    let none = check_text(&h, w, "POST /hook HTTP/1.1\nno headers here", &got.body);
    assert_eq!(codes(&none), ["missing-header", "missing-header", "missing-header", "ignored-lines"], "{none:#?}");

    let r = check(&h, w, &got.with("webhook-signature", "v1,not base64! abc"));
    assert!(detail(&r, "malformed-signature").contains("is not base64"), "{r:#?}");
    assert!(detail(&r, "malformed-signature").contains("has no version"), "{r:#?}");
    let r = check(&h, w, &got.with("webhook-signature", "v1,AAAA"));
    assert!(detail(&r, "malformed-signature").contains("decodes to 3 bytes"), "{r:#?}");
    let r = check(&h, w, &got.with("webhook-timestamp", "2026-11-28T09:14:03Z"));
    assert!(detail(&r, "malformed-timestamp").contains("whole seconds"), "{r:#?}");
    assert_eq!(r.verdict, Verdict::Refused);
    let ms = (h.now_ms()).to_string();
    let r = check(&h, w, &got.with("webhook-timestamp", &format!("{ms}000")));
    assert!(detail(&r, "malformed-timestamp").contains("milliseconds"), "{r:#?}");
}

#[test]
fn an_old_or_future_timestamp_says_by_how_much_and_that_it_would_verify_otherwise() {
    let h = TestHost::new();
    let (w, _, got) = delivered(&h, Some(SECRET));
    h.advance(2 * 3_600_000 + 5_000);
    let r = check(&h, w, &got);
    assert_eq!(r.verdict, Verdict::Refused);
    assert_eq!(codes(&r), ["too-old"], "{r:#?}");
    let d = detail(&r, "too-old");
    assert!(d.contains("2 h 5 s old") && d.contains("Apart from the time it verifies"), "{d}");
    assert!(d.contains("the current secret"), "{d}");

    h.advance(4 * 3_600_000);
    let stale = check(&h, w, &got);
    assert!(detail(&stale, "too-old").contains("6 h 5 s old"), "{stale:#?}");

    // Signed ten minutes ahead of this server's clock.
    let ahead = h.now_ms() / 1000 + 600;
    let id = got.header("webhook-id");
    let sig = signing::sign(SECRET, &id, ahead, got.body.as_bytes());
    let r = check(&h, w, &got.with("webhook-timestamp", &ahead.to_string()).with("webhook-signature", &sig));
    let d = detail(&r, "too-new");
    assert!(d.contains("10 min in the future") && d.contains("Apart from the time it verifies"), "{d}");
    // Inside the tolerance it verifies.
    let near = h.now_ms() / 1000 - 299;
    let sig = signing::sign(SECRET, &id, near, got.body.as_bytes());
    let r = check(&h, w, &got.with("webhook-timestamp", &near.to_string()).with("webhook-signature", &sig));
    assert!(r.verified(), "{r:#?}");
}

#[test]
fn a_changed_body_is_compared_with_the_one_sent() {
    let h = TestHost::new();
    let (w, _, got) = delivered(&h, Some(SECRET));

    let tampered = Got { body: got.body.replacen("\"data\":{", "\"data\":{\"admin\":true,", 1), ..got.clone() };
    let r = check(&h, w, &tampered);
    assert_eq!(r.verdict, Verdict::Refused);
    let d = detail(&r, "body-changed");
    assert!(d.contains("First difference at byte") && d.contains("admin"), "{d}");
    assert!(detail(&r, "signature-genuine").contains("the current secret"), "{r:#?}");
    assert!(!r.has("wrong-secret"), "{r:#?}");

    let trailing = Got { body: format!("{}\r\n", got.body), ..got.clone() };
    let r = check(&h, w, &trailing);
    assert!(detail(&r, "body-trailing-whitespace").contains("ends with a line break"), "{r:#?}");

    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    let pretty = Got { body: serde_json::to_string_pretty(&v).unwrap(), ..got.clone() };
    let r = check(&h, w, &pretty);
    let d = detail(&r, "body-reencoded");
    assert!(d.contains("Same JSON, different bytes") && d.contains("verify the raw body"), "{d}");
}

#[test]
fn a_wrong_secret_is_told_apart_from_a_changed_body() {
    let h = TestHost::new();
    let (w, _, got) = delivered(&h, Some(SECRET));
    // Same id, timestamp and body, signed with another secret.
    let ts: u64 = got.header("webhook-timestamp").parse().unwrap();
    let forged = signing::sign(OTHER, &got.header("webhook-id"), ts, got.body.as_bytes());
    let r = check(&h, w, &got.with("webhook-signature", &forged));
    assert_eq!(r.verdict, Verdict::Refused);
    assert_eq!(codes(&r), ["wrong-secret"], "the body is the one sent: {r:#?}");
    assert!(detail(&r, "wrong-secret").contains("WEBHOOK_SECRET"), "{r:#?}");

    // An id this webhook never sent: nothing to compare the body with.
    let unknown = got.with("webhook-id", "msg_unknown");
    let sig = signing::sign(OTHER, "msg_unknown", ts, got.body.as_bytes());
    let r = check(&h, w, &unknown.with("webhook-signature", &sig));
    assert_eq!(codes(&r), ["unknown-id", "wrong-secret"], "{r:#?}");
    // … but the usual changes are still recognised by trying them.
    let sig = signing::sign(SECRET, "msg_unknown", ts, got.body.as_bytes());
    let signed = unknown.with("webhook-signature", &sig);
    let r = check(&h, w, &Got { body: format!("{}\n", got.body), ..signed.clone() });
    assert_eq!(codes(&r), ["unknown-id", "body-trailing-whitespace"], "{r:#?}");
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    let r = check(&h, w, &Got { body: serde_json::to_string_pretty(&v).unwrap(), ..signed });
    assert_eq!(codes(&r), ["unknown-id", "body-reencoded"], "{r:#?}");
}

#[test]
fn a_signature_sent_under_a_replaced_secret_says_the_secret_changed() {
    let h = TestHost::new();
    let (w, d, got) = delivered(&h, Some(SECRET));
    // The attempt is recorded with the headers it carried.
    record(
        &h,
        vec![Finished {
            delivery_id: d,
            started_ms: h.now_ms(),
            duration_ms: 5,
            result: Ok(response(200, &[], b"")),
            request_headers: got.headers.clone(),
            transformed: None,
        }],
    );
    rotate_to(&h, w, OTHER, false);
    let r = check(&h, w, &got);
    assert_eq!(codes(&r), ["secret-changed"], "{r:#?}");
    assert!(detail(&r, "secret-changed").contains("Attempt 1"), "{r:#?}");
}

#[test]
fn a_webhook_without_a_secret_says_so() {
    let h = TestHost::new();
    let (w, _, got) = delivered(&h, None);
    assert!(got.header("webhook-signature").is_empty(), "not signed");
    let r = check(&h, w, &got);
    assert_eq!(r.verdict, Verdict::Refused);
    assert_eq!(codes(&r), ["missing-header", "no-secret"], "{r:#?}");
    let sig = signing::sign(SECRET, &got.header("webhook-id"), h.now_ms() / 1000, got.body.as_bytes());
    let r = check(&h, w, &got.with("webhook-signature", &sig));
    assert!(detail(&r, "no-secret").contains("not made by this webhook"), "{r:#?}");
}

#[test]
fn line_breaks_a_browser_turned_into_cr_lf_still_verify() {
    let h = TestHost::new();
    let w = hook_with(&h, "https://example.com/hook", &["user.created"], Some(SECRET));
    // The panel's data is kept as sent, line breaks and all.
    let data =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&data("user.created", 1)).unwrap())
            .unwrap();
    assert!(data.contains('\n'));
    let e = outbox::NewEvent {
        id: "pretty".into(),
        event_type: "user.created".into(),
        occurred_at_ms: 1_000,
        data_json: data,
    };
    outbox::raise_batch(&h, &[e]).unwrap();
    let d = claim(&h, 1).claimed;
    let o = outbox::build(&h, &d).unwrap().remove(0).unwrap();
    let body = String::from_utf8(o.request.body).unwrap();
    let got = Got { headers: o.request.headers, body: body.replace('\n', "\r\n") };
    let r = check(&h, w, &got);
    assert_eq!(r.verdict, Verdict::Verified(Key::Current), "{r:#?}");
    assert_eq!(codes(&r), ["line-breaks"]);
}

fn post(path: &str, form: &[(&str, &str)]) -> Request {
    Request {
        method: "POST".into(),
        path: path.into(),
        form: form.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        actor: "alice".into(),
        csrf_token: "tok".into(),
        csrf_field: "_csrf".into(),
        ..Request::default()
    }
}

fn changes(h: &TestHost) -> Vec<i64> {
    ["webhooks", "events", "deliveries", "attempts"]
        .iter()
        .map(|t| h.int(&format!("SELECT COUNT(*) FROM {t}"), &[]))
        .chain([h.int("SELECT COALESCE(SUM(length(secret_sealed)), 0) FROM webhooks", &[])])
        .collect()
}

#[test]
fn the_page_shows_the_verdict_and_keeps_nothing() {
    let h = TestHost::new();
    let (w, _, got) = delivered(&h, Some(SECRET));
    let before = changes(&h);
    let logs = h.log_lines().len();
    let headers = got.pasted();
    let Response::Page { status, fragment, .. } =
        admin::handle(&h, &post(&format!("/{w}/verify"), &[("headers", &headers), ("body", &got.body)]))
    else {
        panic!("not a page")
    };
    assert_eq!(status, 200);
    assert!(fragment.contains("Verified with the current secret."), "{fragment}");
    assert!(fragment.contains("name=\"_csrf\" value=\"tok\""), "the form carries the CSRF token again");
    // The secret is in no form: not as text, not as its key bytes in base64.
    assert!(!fragment.contains(SECRET) && !fragment.contains(&SECRET["whsec_".len()..]));
    let tampered = got.body.replace("user.created", "user.deleted");
    let Response::Page { fragment, .. } =
        admin::handle(&h, &post(&format!("/{w}/verify"), &[("headers", &headers), ("body", &tampered)]))
    else {
        panic!("not a page")
    };
    assert!(fragment.contains("data-finding=\"body-changed\""), "{fragment}");
    assert!(fragment.contains("Not verified"), "{fragment}");
    // Too large: refused with the limit, nothing echoed, nothing checked.
    let big = "x".repeat(playground::MAX_BODY + 1);
    let Response::Page { status, fragment, .. } =
        admin::handle(&h, &post(&format!("/{w}/verify"), &[("headers", &headers), ("body", &big)]))
    else {
        panic!("not a page")
    };
    assert_eq!(status, 422);
    assert!(fragment.contains("at most 64 KiB"), "{fragment}");
    assert!(!fragment.contains(&big[..1000]), "the oversized body is not shown back");
    assert!(!fragment.contains("wh-verdict"), "nothing was checked");
    assert_eq!(changes(&h), before, "no table changed");
    assert_eq!(h.log_lines().len(), logs, "nothing logged");
    // What is pasted comes back escaped, in the form and in the findings.
    let evil = "</textarea><script>alert(1)</script>";
    let Response::Page { fragment, .. } = admin::handle(
        &h,
        &post(&format!("/{w}/verify"), &[("headers", &format!("{headers}x-evil: {evil}\n")), ("body", evil)]),
    ) else {
        panic!("not a page")
    };
    assert!(fragment.contains("data-finding=\"body-changed\""), "{fragment}");
    assert!(!fragment.contains("<script>") && fragment.contains("&#60;script&#62;alert(1)"), "{fragment}");
    // The page on its own, empty, for a bookmark or a reload.
    let get = Request { method: "GET".into(), ..post(&format!("/{w}/verify"), &[]) };
    let Response::Page { status, fragment, .. } = admin::handle(&h, &get) else { panic!("not a page") };
    assert_eq!(status, 200);
    assert!(fragment.contains("id=\"wh-pg-headers\"") && !fragment.contains("wh-verdict"), "{fragment}");
    assert_eq!(changes(&h), before, "no table changed");
    // An unknown webhook is not found.
    let missing = admin::handle(&h, &post("/999/verify", &[("headers", &headers), ("body", &got.body)]));
    assert_eq!(missing, Response::NotFound);
}

#[test]
fn the_history_page_offers_the_playground_and_the_receiver_code() {
    let h = TestHost::new();
    let (w, _, _) = delivered(&h, Some(SECRET));
    let get = Request { method: "GET".into(), path: format!("/{w}/history"), ..post("", &[]) };
    let Response::Page { fragment, .. } = admin::handle(&h, &get) else { panic!("not a page") };
    assert!(fragment.contains(&format!("action=\"/admin/integrations/webhooks/{w}/verify\"")), "{fragment}");
    for lang in ["python", "node", "php", "rust"] {
        assert!(fragment.contains(&format!("id=\"wh-snippet-{lang}\"")), "{lang}");
    }
    assert!(fragment.contains("Verifies the deliveries of https://example.com/hook"), "the endpoint's own URL");
    assert!(!fragment.contains(admin::SNIPPET_URL), "no placeholder left");
    assert!(!fragment.contains(SECRET));
}

#[test]
fn a_secret_the_host_cannot_open_is_said_plainly() {
    let h = TestHost::new();
    let (w, _, got) = delivered(&h, Some(SECRET));
    // Sealed under another host key, as if the key file changed.
    h.execute(
        "UPDATE webhooks SET secret_sealed = ?2 WHERE id = ?1",
        &[w.into(), crate::host::Value::Blob(vec![9, 9])],
    )
    .unwrap();
    let r = check(&h, w, &got);
    assert_eq!(r.verdict, Verdict::Refused);
    assert_eq!(codes(&r), ["secret-unusable"], "{r:#?}");
}
