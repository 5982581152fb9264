//! Per-webhook controls (#24) against the test host: custom headers sealed,
//! sent and masked; payload filters at intake; operational notices once
//! per transition.

use super::*;
use crate::controls::{HeaderInput, MASK};
use crate::host::Value;

fn with_controls(h: &TestHost, url: &str, events: &[&str], headers: &[(&str, &str)], filter: &str) -> i64 {
    let input = wh::Input {
        name: format!("hook {url}"),
        url: url.to_owned(),
        secret: Some(String::new()),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        enabled: true,
        headers: Some(
            headers.iter().map(|(n, v)| HeaderInput { name: (*n).into(), value: Some((*v).into()) }).collect(),
        ),
        filter: Some(filter.into()),
        ..Default::default()
    };
    store::create(h, &wh::validate(h, &input).expect("valid")).expect("created")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn custom_headers_are_sent_sealed_at_rest_and_masked_in_history() {
    let h = TestHost::new();
    let w = with_controls(
        &h,
        "https://example.com/a",
        &["user.created"],
        &[("X-Tenant", "acme"), ("Authorization", "Bearer s3cret-token")],
        "",
    );
    // At rest: the plain value as it is, the secret one sealed.
    let stored = h.texts("SELECT custom_headers FROM webhooks WHERE id = ?1", &[w.into()]).remove(0);
    assert!(stored.contains("acme"), "{stored}");
    assert!(!stored.contains("s3cret"), "sealed at rest: {stored}");
    // Shown masked.
    let hook = store::get(&h, w).unwrap().unwrap();
    assert_eq!(hook.headers[1].shown(), MASK);
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed;
    let o = outbox::build(&h, &d).unwrap().remove(0).unwrap();
    assert_eq!(header(&o.request.headers, "x-tenant"), Some("acme"));
    assert_eq!(header(&o.request.headers, "authorization"), Some("Bearer s3cret-token"));
    assert!(header(&o.request.headers, "webhook-id").is_some(), "the product's own headers stay");
    // The history keeps them as sent, the secret one masked.
    let sent = Finished {
        delivery_id: d[0],
        started_ms: h.now_ms(),
        duration_ms: 5,
        result: Ok(crate::testhost::response(200, &[], b"")),
        request_headers: o.request.headers.clone(),
        transformed: None,
    };
    record(&h, vec![sent]);
    let kept = h.texts("SELECT request_headers FROM attempts", &[]).remove(0);
    assert!(kept.contains(r#"["x-tenant","acme"]"#), "{kept}");
    assert!(kept.contains(&format!(r#"["authorization","{MASK}"]"#)), "{kept}");
    assert!(!kept.contains("s3cret"), "{kept}");

    // Editing keeps a sealed value that is not typed again, and drops a removed row.
    let input = wh::Input {
        name: "renamed".into(),
        url: "https://example.com/a".into(),
        events: vec!["user.created".into()],
        enabled: true,
        headers: Some(vec![HeaderInput { name: "Authorization".into(), value: None }]),
        stored_headers: hook.headers.clone(),
        ..Default::default()
    };
    assert!(store::update(&h, w, &wh::validate(&h, &input).unwrap()).unwrap());
    raise(&h, "e2", "user.created");
    h.advance(1);
    let d = claim(&h, 5).claimed;
    let o = outbox::build(&h, &d).unwrap().remove(0).unwrap();
    assert_eq!(header(&o.request.headers, "authorization"), Some("Bearer s3cret-token"));
    assert_eq!(header(&o.request.headers, "x-tenant"), None);
}

#[test]
fn a_sealed_header_that_does_not_open_is_a_failed_attempt_not_a_trap() {
    let h = TestHost::new();
    let w = with_controls(&h, "https://example.com/a", &["user.created"], &[("X-Api-Key", "k-123")], "");
    h.execute(
        "UPDATE webhooks SET custom_headers = ?2 WHERE id = ?1",
        &[w.into(), Value::from(r#"[{"name":"X-Api-Key","sealed":"AAAA"}]"#)],
    )
    .unwrap();
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed;
    let failed = outbox::build(&h, &d).unwrap().remove(0).unwrap_err();
    let crate::outbox::AttemptError::Transport(e) = failed.result.unwrap_err() else { panic!("unsendable") };
    assert!(e.contains("X-Api-Key") && e.contains("does not open"), "{e}");
    // An unreadable stored value is no headers, not a failure.
    h.execute("UPDATE webhooks SET custom_headers = 'not json' WHERE id = ?1", &[w.into()]).unwrap();
    assert!(store::get(&h, w).unwrap().unwrap().headers.is_empty());
}

#[test]
fn a_filter_keeps_unmatched_events_from_its_webhook_and_says_so() {
    let h = TestHost::new();
    let pro = with_controls(&h, "https://example.com/pro", &["user.created"], &[], "@.n >= 2");
    let all = hook(&h, "https://example.com/all", &["user.created"]);
    let raised = |id: &str, n: i64| {
        let e = NewEvent {
            id: id.into(),
            event_type: "user.created".into(),
            occurred_at_ms: 1_000,
            data_json: data("user.created", n),
        };
        outbox::raise_batch(&h, &[e]).unwrap()[0].queued
    };
    assert_eq!(raised("small", 1), 1, "only the unfiltered webhook");
    assert_eq!(raised("big", 5), 2);
    assert_eq!(deliveries_of(&h, pro).len(), 1);
    assert_eq!(deliveries_of(&h, all).len(), 2);
    let f = store::filtered(&h, pro, 10).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].event_id.as_str(), f[0].filter.as_str()), ("small", "@.n >= 2"));
    assert!(store::filtered(&h, all, 10).unwrap().is_empty());
    // The step's intake (the engine's path) filters too.
    let e = NewEvent {
        id: "step-small".into(),
        event_type: "user.created".into(),
        occurred_at_ms: 1,
        data_json: data("user.created", 0),
    };
    outbox::step(&h, &[e], &[], 0).unwrap();
    assert_eq!(store::filtered(&h, pro, 10).unwrap().len(), 2);
    // Pruned with the history.
    h.settings_mut(|s| s.retention_ms = 1000);
    h.advance(2000);
    assert_eq!(outbox::maintain(&h).unwrap().filtered, 2);
    // Deleting the webhook deletes its records.
    raised("small-again", 1);
    assert!(store::delete(&h, pro).unwrap());
    assert_eq!(h.int("SELECT COUNT(*) FROM filtered_events", &[]), 0);
}

#[test]
fn an_invalid_filter_is_refused_on_save_and_changes_nothing() {
    let h = TestHost::new();
    let input = wh::Input {
        name: "f".into(),
        url: "https://example.com/f".into(),
        events: vec!["user.created".into()],
        enabled: true,
        filter: Some("@.plan = 'pro'".into()),
        ..Default::default()
    };
    let e = wh::validate(&h, &input).unwrap_err();
    assert_eq!(e[0].field, "filter");
    assert!(e[0].message.contains("not a valid JSONPath condition"), "{}", e[0].message);
}

#[test]
fn notices_go_once_per_transition_to_the_other_subscribers_only() {
    let h = TestHost::new();
    h.settings_mut(|s| s.auto_disable_after_ms = 10_000);
    let bad = hook(&h, "https://example.com/bad", &["user.created", "webhook.failing", "webhook.disabled"]);
    let ops = hook(&h, "https://example.com/ops", &["webhook.failing", "webhook.disabled"]);
    let notices = |ty: &str| {
        h.texts(
            "SELECT e.id FROM deliveries d JOIN events e ON e.id = d.event_id WHERE e.type = ?1 AND d.webhook_id = ?2",
            &[ty.into(), ops.into()],
        )
    };
    let to_bad = || {
        h.int(
            "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id WHERE e.type LIKE 'webhook.%' \
             AND d.webhook_id = ?1",
            &[bad.into()],
        )
    };
    raise(&h, "e1", "user.created");
    raise(&h, "e2", "user.created");
    let ds = deliveries_of(&h, bad);
    claim(&h, 10);
    // The first failure opens a streak: one notice.
    record(&h, vec![status(&h, ds[0], 503)]);
    assert_eq!(notices("webhook.failing").len(), 1);
    // Failing on: no second notice for the same streak.
    h.advance(1000);
    record(&h, vec![status(&h, ds[1], 500)]);
    assert_eq!(notices("webhook.failing").len(), 1);
    let data = h.texts("SELECT data FROM events WHERE type = 'webhook.failing'", &[]).remove(0);
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["webhook_id"], bad);
    assert_eq!(data["last_status"], 503);
    assert!(crate::catalog::find("webhook.failing").unwrap().validate(&data).is_ok(), "{data}");
    // A success ends the streak; the next failure opens a new one.
    h.advance(1000);
    let again = deliveries_of(&h, bad);
    h.execute("UPDATE deliveries SET lease_until = ?2 WHERE id = ?1", &[again[0].into(), (h.now_ms() + 60_000).into()])
        .unwrap();
    record(&h, vec![status(&h, again[0], 200)]);
    assert!(!store::get(&h, bad).unwrap().unwrap().failing());
    h.advance(1000);
    record(&h, vec![status(&h, again[1], 500)]);
    assert_eq!(notices("webhook.failing").len(), 2);
    assert!(store::get(&h, bad).unwrap().unwrap().failing());
    // Failing past the auto-disable period: disabled, one notice.
    h.advance(11_000);
    record(&h, vec![status(&h, again[1], 500)]);
    let w = store::get(&h, bad).unwrap().unwrap();
    assert!(!w.enabled && w.auto_disabled());
    assert_eq!(notices("webhook.disabled").len(), 1);
    let data = h.texts("SELECT data FROM events WHERE type = 'webhook.disabled'", &[]).remove(0);
    assert!(crate::catalog::find("webhook.disabled").unwrap().validate(&serde_json::from_str(&data).unwrap()).is_ok());
    record(&h, vec![status(&h, again[1], 500)]);
    assert_eq!(notices("webhook.disabled").len(), 1, "once");
    assert_eq!(to_bad(), 0, "never to the webhook it is about");
    assert!(h.log_lines().iter().any(|l| l.contains(&format!("webhook {bad} is failing"))), "{:?}", h.log_lines());
    assert!(h.log_lines().iter().any(|l| l.contains(&format!("webhook {bad} disabled"))));
}

#[test]
fn a_panel_cannot_raise_a_notice() {
    let h = TestHost::new();
    let e = NewEvent {
        id: "forged".into(),
        event_type: "webhook.disabled".into(),
        occurred_at_ms: 1,
        data_json: crate::catalog::find("webhook.disabled").unwrap().example(),
    };
    assert!(
        matches!(outbox::raise_batch(&h, &[e]), Err(outbox::RaiseError::UnknownType(m)) if m.contains("product raises it"))
    );
}

// ------------------------------------------------------------ the pages

fn admin_req(method: &str, path: &str, form: &[(&str, &str)]) -> crate::admin::Request {
    crate::admin::Request {
        method: method.into(),
        path: path.into(),
        form: form.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        actor: "alice".into(),
        ..crate::admin::Request::default()
    }
}

fn fragment(r: crate::admin::Response) -> (u16, String) {
    match r {
        crate::admin::Response::Page { status, fragment, .. } => (status, fragment),
        other => panic!("not a page: {other:?}"),
    }
}

#[test]
fn the_form_adds_removes_and_keeps_header_rows_without_script() {
    let h = TestHost::new();
    let base = [("name", "CRM"), ("url", "https://a.example/h"), ("events", "user.created"), ("enabled", "on")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut f: Vec<(&str, &str)> = base.to_vec();
        f.extend_from_slice(extra);
        f
    };
    // "Add header" re-renders with the typed rows and one more empty row; nothing saved.
    let (status, page) = fragment(crate::admin::handle(
        &h,
        &admin_req(
            "POST",
            "/new",
            &with(&[("header_name", "X-Tenant"), ("header_value", "acme"), ("add_header", "1")]),
        ),
    ));
    assert_eq!(status, 200);
    assert!(page.contains(r#"value="X-Tenant""#) && page.contains(r#"id="wh-header-name-1""#), "a new row");
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 0);
    // "Remove" drops its row.
    let (_, page) = fragment(crate::admin::handle(
        &h,
        &admin_req(
            "POST",
            "/new",
            &with(&[
                ("header_name", "X-Tenant"),
                ("header_value", "acme"),
                ("header_name", "X-Other"),
                ("header_value", "1"),
                ("remove_header", "0"),
            ]),
        ),
    ));
    assert!(!page.contains(r#"value="X-Tenant""#) && page.contains(r#"value="X-Other""#));
    // A refused header comes back with its message, linked from the summary; nothing saved.
    let (status, page) = fragment(crate::admin::handle(
        &h,
        &admin_req("POST", "/new", &with(&[("header_name", "Host"), ("header_value", "evil.example")])),
    ));
    assert_eq!(status, 422);
    assert!(page.contains("set by the product itself") && page.contains("#wh-header-name-0"), "{page}");
    let (status, page) =
        fragment(crate::admin::handle(&h, &admin_req("POST", "/new", &with(&[("filter", "@.plan = 1")]))));
    assert_eq!(status, 422);
    assert!(page.contains("not a valid JSONPath condition") && page.contains("#wh-filter"));
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 0);
    // Saved with a secret header: the edit form never shows it again, and
    // saving the form as it comes keeps it.
    let r = crate::admin::handle(
        &h,
        &admin_req(
            "POST",
            "/new",
            &with(&[
                ("header_name", "Authorization"),
                ("header_value", "Bearer very-secret"),
                ("header_name", "X-Tenant"),
                ("header_value", "acme"),
                ("filter", "@.id > 1"),
            ]),
        ),
    );
    assert!(matches!(r, crate::admin::Response::Redirect { .. }), "{r:?}");
    let id = h.int("SELECT id FROM webhooks", &[]);
    let (_, page) = fragment(crate::admin::handle(&h, &admin_req("GET", &format!("/{id}/edit"), &[])));
    assert!(!page.contains("very-secret"), "never shown again");
    assert!(page.contains("saved (empty keeps it)") && page.contains(r#"value="acme""#));
    assert!(page.contains(r#"value="@.id &gt; 1""#) || page.contains(r#"value="@.id &#62; 1""#), "filter shown");
    let r = crate::admin::handle(
        &h,
        &admin_req(
            "POST",
            &format!("/{id}/edit"),
            &with(&[
                ("secret_action", "keep"),
                ("header_name", "Authorization"),
                ("header_value", ""),
                ("header_name", "X-Tenant"),
                ("header_value", "acme"),
                ("header_name", ""),
                ("header_value", ""),
                ("filter", "@.id > 1"),
            ]),
        ),
    );
    assert!(matches!(r, crate::admin::Response::Redirect { .. }), "{r:?}");
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed;
    let o = outbox::build(&h, &d).unwrap().remove(0).unwrap();
    assert_eq!(header(&o.request.headers, "authorization"), Some("Bearer very-secret"), "kept");
}

#[test]
fn the_dashboard_shows_a_banner_for_a_failing_or_auto_disabled_webhook() {
    let h = TestHost::new();
    h.settings_mut(|s| s.auto_disable_after_ms = 10_000);
    let w = hook(&h, "https://example.com/bad", &["user.created"]);
    let (_, page) = fragment(crate::admin::handle(&h, &admin_req("GET", "/", &[])));
    assert!(!page.contains("data-attention"), "nothing to say");
    raise(&h, "e1", "user.created");
    let d = claim(&h, 1).claimed[0];
    record(&h, vec![status(&h, d, 503)]);
    let (_, page) = fragment(crate::admin::handle(&h, &admin_req("GET", "/", &[])));
    assert!(page.contains("1 webhook needs attention") && page.contains("is failing since"), "{page}");
    assert!(page.contains("HTTP 503"));
    h.advance(11_000);
    h.execute("UPDATE deliveries SET lease_until = ?2 WHERE id = ?1", &[d.into(), (h.now_ms() + 60_000).into()])
        .unwrap();
    record(&h, vec![status(&h, d, 503)]);
    let (_, page) = fragment(crate::admin::handle(&h, &admin_req("GET", "/", &[])));
    assert!(page.contains("was disabled automatically") && page.contains("without a success"), "{page}");
    // Disabled by an admin is no news.
    store::toggle(&h, w).unwrap();
    store::toggle(&h, w).unwrap();
    let (_, page) = fragment(crate::admin::handle(&h, &admin_req("GET", "/", &[])));
    assert!(!page.contains("data-attention"), "enabled again, streak reset");
}
