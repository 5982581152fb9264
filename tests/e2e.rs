//! End-to-end: the real `webhooks-host` binary, the real component, a real
//! SQLite file and a real HTTP receiver on 127.0.0.1.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(15);

fn webhook_id(h: &Host, name: &str) -> i64 {
    h.int("SELECT id FROM webhooks WHERE name = ?1", &[name.into()])
}

fn verify(secret: &str, s: &Seen) {
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    wh.verify(&s.body, &s.headers).expect("signature verifies with the standardwebhooks crate");
}

#[test]
fn create_update_toggle_delete() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();

    // Empty state tells the admin what to do.
    let (_, page) = a.get(MOUNT);
    assert!(page.contains("No webhooks yet"), "{page}");

    let (s, loc, _) = a.create("CRM", &r.url("/ok/crm"), "", &["user.created", "ticket.closed"], true);
    assert_eq!((s, loc.as_str()), (303, MOUNT));
    let (_, page) = a.get(MOUNT);
    assert!(page.contains("was created"), "flash shown after redirect");
    assert!(page.contains("CRM") && page.contains(&r.url("/ok/crm")) && page.contains("ticket.closed"));
    let id = webhook_id(&h, "CRM");

    // Update: name, URL, events; values are stored.
    let url2 = r.url("/ok/crm2");
    let (s, _, _) = a.post(
        &format!("{MOUNT}/{id}"),
        &[
            ("name", "CRM v2"),
            ("url", &url2),
            ("secret_action", "keep"),
            ("events", "server.created"),
            ("enabled", "on"),
        ],
    );
    assert_eq!(s, 303);
    let row = h.row("SELECT name, url, enabled FROM webhooks WHERE id = ?1", &[id.into()]);
    let (name, url, enabled) = (row[0].text(), row[1].text(), row[2].int() == 1);
    assert_eq!((name.as_str(), url.as_str(), enabled), ("CRM v2", url2.as_str(), true));
    assert_eq!(h.count(&format!("SELECT COUNT(*) FROM webhook_events WHERE webhook_id = {id}")), 1);

    // The edit form shows stored values.
    let (s, form) = a.get(&format!("{MOUNT}/{id}/edit"));
    assert_eq!(s, 200);
    assert!(form.contains("value=\"CRM v2\"") && form.contains("value=\"server.created\" checked"));

    // Toggle off and on.
    assert_eq!(a.post(&format!("{MOUNT}/{id}/toggle"), &[]).0, 303);
    assert_eq!(h.count(&format!("SELECT enabled FROM webhooks WHERE id = {id}")), 0);
    assert_eq!(a.post(&format!("{MOUNT}/{id}/toggle"), &[]).0, 303);
    assert_eq!(h.count(&format!("SELECT enabled FROM webhooks WHERE id = {id}")), 1);

    // Delete asks first without JavaScript, then deletes.
    let (s, confirm) = a.get(&format!("{MOUNT}/{id}/delete"));
    assert_eq!(s, 200);
    assert!(confirm.contains("permanently"));
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 1, "GET changed nothing");
    assert_eq!(a.post(&format!("{MOUNT}/{id}/delete"), &[]).0, 303);
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 0);
    let (_, page) = a.get(MOUNT);
    assert!(page.contains("was deleted"));

    // Unknown ids answer 404 on every route.
    for p in ["/999/edit", "/999/history", "/999/deliveries/1", "/999/delete", "/abc/edit", "/nope"] {
        assert_eq!(a.get(&format!("{MOUNT}{p}")).0, 404, "{p}");
    }
    for p in ["/999", "/999/toggle", "/999/test", "/999/delete", "/999/deliveries/1/resend"] {
        assert_eq!(a.post(&format!("{MOUNT}{p}"), &[("name", "x")]).0, 404, "{p}");
    }
}

#[test]
fn invalid_input_is_refused_with_values_kept_and_nothing_stored() {
    let h = host();
    let a = h.admin();
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("Bad URL", "http//nope", &["user.created"], "Start the address with https:// (a colon and two slashes)"),
        (
            "No scheme",
            "example.com/hooks",
            &["user.created"],
            "Add https:// in front of the address (for example https://example.com/hooks).",
        ),
        ("FTP", "ftp://example.com/x", &["user.created"], "webhooks cannot be sent to ftp: addresses"),
        ("Unknown", "https://example.com/h", &["user.exploded"], "Unknown event type: user.exploded"),
        ("", "https://example.com/h", &["user.created"], "Enter a name, for example"),
        ("No events", "https://example.com/h", &[], "Choose at least one event"),
        ("Spaces", "https://exa mple.com/", &["user.created"], "Remove the spaces from the address"),
        ("Userinfo", "http://u:p@example.com/", &["user.created"], "Remove the user name and password"),
        // The real host's egress refusals, named in words (#13 item 8).
        ("Loopback", "http://127.0.0.2/h", &["user.created"], "This address points back at this server itself."),
        ("Localhost", "http://localhost:8080/h", &["user.created"], "This address points back at this server itself."),
        (
            "Private",
            "http://192.168.1.10/h",
            &["user.created"],
            "This address is on a private network. Webhooks can only reach public addresses; ask your operator to allow it.",
        ),
        ("Metadata", "http://169.254.169.254/latest/", &["user.created"], "This is a link-local address"),
    ];
    for (name, url, events, message) in cases {
        let (s, _, body) = a.create(name, url, "", events, true);
        assert_eq!(s, 422, "{name}: {body}");
        assert!(body.contains(message), "{name}: expected {message:?}");
        for jargon in ["egress policy", "relative URL", "URL is not valid", "WEBHOOKS_ALLOWED_HOSTS"] {
            assert!(!body.contains(jargon), "{name}: {jargon:?} shown");
        }
        if !name.is_empty() {
            assert!(body.contains(&format!("value=\"{name}\"")), "{name}: value kept");
        }
    }
    let (s, _, body) = a.create("Short secret", "https://example.com/h", "abc", &["user.created"], true);
    assert_eq!(s, 422);
    assert!(body.contains("at least 8 characters"));
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 0);
}

#[test]
fn events_reach_exactly_the_subscribed_enabled_webhooks_signed() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let raw = "a-raw-shared-secret";
    a.create("users", &r.url("/ok/users"), secret, &["user.created", "user.updated", "user.deleted"], true);
    a.create("ops", &r.url("/ok/ops"), raw, &["server.created", "server.deleted", "ticket.closed"], true);
    a.create("off", &r.url("/ok/off"), "", &["user.created", "server.created", "ticket.closed"], false);
    a.create("plain", &r.url("/ok/plain"), "", &["transaction.success"], true);

    let all = ALL_EVENTS;
    for (i, t) in all.iter().enumerate() {
        let mut data = example_data(t);
        data["n"] = json!(i);
        data["name"] = json!("Ada");
        let (s, body) = h.raise(json!({"type": t, "data": data}));
        assert_eq!(s, 202, "{t}: {body}");
        assert!(body["id"].as_str().unwrap().starts_with("evt_"));
    }
    let users = r.wait_for("/ok/users", 3, WAIT);
    let ops = r.wait_for("/ok/ops", 3, WAIT);
    let plain = r.wait_for("/ok/plain", 1, WAIT);
    // Nothing more arrives, and the disabled webhook never gets anything.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(r.seen_at("/ok/users").len(), 3);
    assert_eq!(r.seen_at("/ok/ops").len(), 3);
    assert_eq!(r.seen_at("/ok/plain").len(), 1);
    assert!(r.seen_at("/ok/off").is_empty());
    let off = webhook_id(&h, "off");
    assert_eq!(h.count(&format!("SELECT COUNT(*) FROM deliveries WHERE webhook_id = {off}")), 0);

    let types = |v: &[Seen]| {
        let mut t: Vec<String> = v.iter().map(|s| s.json()["type"].as_str().unwrap().to_owned()).collect();
        t.sort();
        t
    };
    assert_eq!(types(&users), ["user.created", "user.deleted", "user.updated"]);
    assert_eq!(types(&ops), ["server.created", "server.deleted", "ticket.closed"]);
    assert_eq!(types(&plain), ["transaction.success"]);

    for s in &users {
        assert_eq!(s.header("content-type"), "application/json");
        assert!(s.header("webhook-id").starts_with("msg_"));
        let body = s.json();
        assert_eq!(body["data"]["name"], "Ada");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        verify(secret, s);
    }
    // A raw secret signs with its bytes; its whsec_ form verifies.
    let whsec_raw = format!("whsec_{}", base64_std(raw.as_bytes()));
    for s in &ops {
        verify(&whsec_raw, s);
        assert!(standardwebhooks::Webhook::new(secret).unwrap().verify(&s.body, &s.headers).is_err());
    }
    // No secret: no signature header.
    assert!(plain[0].header("webhook-signature").is_empty());
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn send_test_history_and_delivery_details() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    a.create("Shop", &r.url("/html/shop"), secret, &["transaction.success"], true);
    let id = webhook_id(&h, "Shop");

    let (s, loc, _) = a.post(&format!("{MOUNT}/{id}/test"), &[]);
    assert_eq!((s, loc.clone()), (303, format!("{MOUNT}/{id}/history")));
    let got = r.wait_for("/html/shop", 1, WAIT);
    assert_eq!(got[0].json()["type"], "test.webhook");
    verify(secret, &got[0]);

    let (s, hist) = a.get(&loc);
    assert_eq!(s, 200);
    assert!(hist.contains("Test delivered: the endpoint answered HTTP 200"), "flash with the outcome");
    assert!(hist.contains("test.webhook") && hist.contains(">200<") && hist.contains("Success"));
    assert!(hist.contains("Shop") && hist.contains(&r.url("/html/shop")));

    // Details: payload, request headers with signature, response status, headers, body — inert.
    let delivery: i64 = h.int("SELECT id FROM deliveries WHERE webhook_id = ?1", &[id.into()]);
    let (s, det) = a.get(&format!("{MOUNT}/{id}/deliveries/{delivery}"));
    assert_eq!(s, 200);
    assert!(det.contains("&#34;type&#34;: &#34;test.webhook&#34;"), "pretty payload");
    assert!(det.contains("webhook-signature") && det.contains("v1,"));
    assert!(det.contains(&got[0].header("webhook-id")));
    assert!(det.contains("x-evil"));
    assert!(!det.contains("<script>alert"), "receiver HTML is escaped");
    assert!(det.contains("&#60;script&#62;alert(&#39;body&#39;)&#60;/script&#62;"), "receiver body shown as text");
    assert!(!det.contains(&secret[6..]), "the secret never appears");

    // A failing endpoint shows Failed with its code; history filters work.
    a.post(
        &format!("{MOUNT}/{id}"),
        &[
            ("name", "Shop"),
            ("url", &r.url("/status/500/shop")),
            ("secret_action", "keep"),
            ("events", "transaction.success"),
            ("enabled", "on"),
        ],
    );
    let (_, loc, _) = a.post(&format!("{MOUNT}/{id}/test"), &[]);
    let (_, hist) = a.get(&loc);
    assert!(hist.contains("Test failed: the endpoint answered HTTP 500"));
    assert!(hist.contains(">500<") && hist.contains("Failed"));
    let (_, only_ok) = a.get(&format!("{MOUNT}/{id}/history?status=success"));
    assert!(only_ok.contains(">200<") && !only_ok.contains(">500<"));
    let (_, only_failed) = a.get(&format!("{MOUNT}/{id}/history?status=failed"));
    assert!(only_failed.contains(">500<") && !only_failed.contains(">200<"));

    // Resend keeps the webhook-id.
    let first = r.seen_at("/html/shop")[0].header("webhook-id");
    a.post(
        &format!("{MOUNT}/{id}"),
        &[
            ("name", "Shop"),
            ("url", &r.url("/ok/resend")),
            ("secret_action", "keep"),
            ("events", "transaction.success"),
            ("enabled", "on"),
        ],
    );
    let (s, _, _) = a.post(&format!("{MOUNT}/{id}/deliveries/{delivery}/resend"), &[]);
    assert_eq!(s, 303);
    let again = r.wait_for("/ok/resend", 1, WAIT);
    assert_eq!(again[0].header("webhook-id"), first);
}

#[test]
fn failed_deliveries_are_retried_and_every_attempt_recorded() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();
    a.create("Flaky", &r.url("/flaky/2/x"), "", &["ticket.created"], true);
    let (s, _) =
        h.raise(json!({"type": "ticket.created", "data": {"user_id": 2, "subject": "Hi", "status": "open", "id": 1}}));
    assert_eq!(s, 202);
    let seen = r.wait_for("/flaky/2/x", 3, WAIT);
    let ids: Vec<String> = seen.iter().map(|s| s.header("webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "same webhook-id on every retry");
    eventually(WAIT, "delivery succeeded", || {
        h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'succeeded' AND attempts = 3") == 1
    });
    assert_eq!(h.count("SELECT COUNT(*) FROM attempts WHERE success = 0"), 2);
    assert_eq!(h.count("SELECT COUNT(*) FROM attempts WHERE success = 1"), 1);
}

#[test]
fn api_refuses_bad_input_and_stores_nothing() {
    let h = host();
    let url = format!("{}/api/events", h.base);
    let c = h.api();
    let r = c
        .post(&url)
        .json(&json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .post(&url)
        .bearer_auth("wrong")
        .json(&json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r =
        c.post(&url).bearer_auth(TOKEN).header("content-type", "application/json").body("{not json").send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: serde_json::Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "invalid_json");
    let (s, e) = h.raise(json!({"type": "user.exploded", "data": {}}));
    assert_eq!(s, 422);
    assert_eq!(e["error"]["field"], "type");
    let (s, e) = h.raise(json!({"type": "user.created", "data": [1, 2]}));
    assert_eq!(s, 422);
    assert_eq!(e["error"]["code"], "invalid_data");
    assert_eq!(e["error"]["field"], "data");
    // `data` must match the type's published schema (docs/EVENTS.md): the
    // field at fault is named, nothing is stored.
    for (data, field) in [
        (json!({"id": "not-an-int", "email": "ada@example.com"}), "data.id"),
        (json!({"id": 42}), "data"),
        (json!({"id": 42, "email": "not an address"}), "data.email"),
        (json!({"id": 42, "email": "ada@example.com", "role": "root"}), "data.role"),
        (json!({"id": 42, "email": "ada@example.com", "created_at": "last tuesday"}), "data.created_at"),
    ] {
        let (s, e) = h.raise(json!({"type": "user.created", "data": data}));
        assert_eq!(
            (s, e["error"]["code"].as_str(), e["error"]["field"].as_str()),
            (422, Some("invalid_data"), Some(field)),
            "{e}"
        );
    }
    let (s, e) = h.raise_batch(&[
        json!({"type": "ticket.created", "data": {"id": 1, "user_id": 2, "subject": "Hi", "status": "open"}}),
        json!({"type": "transaction.success", "data": {"id": "t1", "user_id": 2, "amount": 100, "currency": "eur", "status": "succeeded"}}),
    ]);
    assert_eq!((s, e["error"]["field"].as_str()), (422, Some("events[1].data.currency")), "{e}");
    let big = "x".repeat(300 * 1024);
    let r = c
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com", "big": big}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 0);

    // The same id twice is stored once.
    assert_eq!(
        h.raise(json!({"type": "user.created", "id": "evt_same", "data": {"id": 1, "email": "ada@example.com"}})).0,
        202
    );
    assert_eq!(
        h.raise(json!({"type": "user.created", "id": "evt_same", "data": {"id": 1, "email": "ada@example.com"}})).0,
        202
    );
    assert_eq!(h.count("SELECT COUNT(*) FROM events"), 1);
}

/// #15: `data` reaches the receiver byte for byte: integers beyond u64 and
/// exact decimals are not turned into floats, keys keep their order,
/// spacing stays.
#[test]
fn data_arrives_exactly_as_the_panel_sent_it() {
    let h = host();
    let r = Receiver::start();
    h.admin().create("Exact", &r.url("/ok/exact"), "", &["user.created"], true);
    let data = r#"{"zeta": 1, "id": 18446744073709551616123, "email": "ada@example.com", "amount": 1.10, "tiny": 1e-400, "alpha": [3, 2, 1]}"#;
    let resp = h
        .api()
        .post(format!("{}/api/events", h.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(format!(r#"{{"type": "user.created", "data": {data}}}"#))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{}", resp.text().unwrap());
    let got = r.wait_for("/ok/exact", 1, Duration::from_secs(20));
    let body = String::from_utf8(got[0].body.to_vec()).unwrap();
    assert!(body.ends_with(&format!(r#","data":{data}}}"#)), "{body}");
}

#[test]
fn csrf_and_escaping_on_admin_pages() {
    let h = host();
    let a = h.admin();
    // No token, or a wrong one: 403 and nothing stored.
    let (s, _, body) = a.post_raw(
        MOUNT,
        &[("name", "x"), ("url", "https://example.com/"), ("events", "user.created"), ("enabled", "on")],
    );
    assert_eq!(s, 403, "{body}");
    let (s, _, _) = a.post_raw(
        MOUNT,
        &[("name", "x"), ("url", "https://example.com/"), ("events", "user.created"), ("_csrf", &"0".repeat(64))],
    );
    assert_eq!(s, 403);
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 0);

    // A hostile name shows as text.
    let (s, _, _) = a.create("<script>alert(1)</script>", "https://example.com/h", "", &["user.created"], true);
    assert_eq!(s, 303);
    let (_, page) = a.get(MOUNT);
    assert!(!page.contains("<script>alert(1)</script>"));
    assert!(page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));

    // Security headers on admin pages.
    let r = a.client.get(format!("{}{MOUNT}", h.base)).send().unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    for d in
        ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"]
    {
        assert!(csp.contains(d), "{d}");
    }
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

#[test]
fn secret_is_never_shown_after_saving() {
    let h = host();
    let a = h.admin();
    let secret = "whsec_dGhpcyBpcyBhIHZlcnkgc2VjcmV0IGtleSEh";
    a.create("Secretive", "https://example.com/h", secret, &["user.created"], true);
    let id = webhook_id(&h, "Secretive");
    for p in [MOUNT.to_owned(), format!("{MOUNT}/{id}/edit"), format!("{MOUNT}/{id}/history")] {
        let (_, page) = a.get(&p);
        assert!(!page.contains("dGhpcyBpcyBhIHZlcnkgc2VjcmV0"), "{p} leaks the secret");
    }
    let (_, edit) = a.get(&format!("{MOUNT}/{id}/edit"));
    assert!(edit.contains("A secret is set"));
    // "Generate" fills a fresh whsec_ secret into the form and saves nothing.
    let (s, _, page) = a.post(MOUNT, &[("name", "Gen"), ("url", "https://example.com/g"), ("generate", "1")]);
    assert_eq!(s, 200);
    assert!(page.contains("value=\"whsec_"));
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 1);
    assert!(!h.log().contains("dGhpcyBpcyBhIHZlcnkgc2VjcmV0"));
}

#[test]
fn compiled_component_is_cached_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cache = tmp.path().join("cache");
    let c = cache.to_str().unwrap();
    let first = spawn_host(&data, &[("WEBHOOKS_CACHE_DIR", c)]);
    drop(first);
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().filter_map(Result::ok).collect();
    assert_eq!(files.len(), 1, "one compiled artifact");
    let modified = files[0].metadata().unwrap().modified().unwrap();
    let second = spawn_host(&data, &[("WEBHOOKS_CACHE_DIR", c)]);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    assert_eq!(std::fs::metadata(files[0].path()).unwrap().modified().unwrap(), modified, "not recompiled");
    assert_eq!(second.admin().get(MOUNT).0, 200);
}
