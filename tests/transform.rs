//! Transformations (#24, part 4) end to end: the real binary, component and
//! database (SQLite, or PostgreSQL with `WEBHOOKS_TEST_ENGINE=postgres`), a
//! real receiver on 127.0.0.1, and the example components of `examples/`
//! built for wasm32-wasip2 here. The Slack example reshapes `user.created`
//! and the receiver verifies the signature over the body it got; the
//! hostile one's loop, 1 GiB allocation and 100 MiB output each end as a
//! failed attempt with the reason, within the limit, while another
//! webhook's deliveries keep flowing and the host's memory stays put; a
//! component that imports the clock is refused at upload.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(30);
/// A `whsec_` secret: base64 of 24 bytes.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn create(h: &Host, name: &str, url: &str, events: &[&str], secret: Option<&str>) -> i64 {
    let mut body = json!({"name": name, "url": url, "events": events});
    if let Some(s) = secret {
        body["secret"] = json!(s);
    }
    let (status, v) = api(h, "POST", "/api/webhooks", Some(body));
    assert_eq!(status, 201, "{v}");
    v["id"].as_i64().unwrap()
}

/// The edit form's fields for an enabled `user.created` webhook, secret kept.
fn edit_form<'a>(name: &'a str, url: &'a str) -> [(&'static str, &'a str); 5] {
    [("name", name), ("url", url), ("secret_action", "keep"), ("events", "user.created"), ("enabled", "on")]
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// The newest attempt of webhook `w` (its error and transform note).
fn last_attempt(h: &Host, w: i64) -> (Option<String>, Option<String>, i64) {
    let r = h.row(
        "SELECT error, transform, success FROM attempts WHERE webhook_id = ?1 ORDER BY id DESC LIMIT 1",
        &[w.into()],
    );
    (r[0].opt_text(), r[1].opt_text(), r[2].int())
}

#[test]
fn the_slack_example_reshapes_user_created_signed_over_the_body_sent_and_skips_the_rest() {
    // A compiled cache of its own, so that the upload below is compiled.
    let cache = tempfile::tempdir().unwrap();
    let h = host_with(&[("WEBHOOKS_CACHE_DIR", cache.path().to_str().unwrap())]);
    let r = Receiver::start();
    let slack = example_component("transform-slack");
    let w = create(&h, "Slack", &r.url("/ok/slack"), &["user.created", "ticket.created"], Some(SECRET));

    // Attached through the API: the answer names it by its SHA-256.
    let (status, v) = put_transform(&h, w, &slack);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["transform"]["digest"], sha256_hex(&slack));
    assert_eq!(v["transform"]["size"], slack.len());
    // Compiled by a child process: Cranelift's memory never the server's.
    eventually(WAIT, "the compile logged", || h.log().contains("a transformation was compiled in a child process"));

    h.raise(json!({"type": "user.created", "id": "u42",
                   "data": {"id": 42, "email": "ada@example.com", "name": "Ada \"Countess\" Lovelace"}}));
    let got = r.wait_for("/ok/slack", 1, WAIT);
    assert_eq!(got[0].json(), json!({"text": "New user: Ada \"Countess\" Lovelace <ada@example.com> (id 42)"}));
    assert_eq!(got[0].header("x-transform"), "transform-slack");
    assert_eq!(got[0].header("content-type"), "application/json");
    // The signature covers the transformed body, as the receiver got it.
    standardwebhooks::Webhook::new(SECRET).unwrap().verify(&got[0].body, &got[0].headers).expect("signature verifies");

    // What it did is kept with the attempt: shown in the details and the API.
    eventually(WAIT, "the attempt recorded", || h.count("SELECT COUNT(*) FROM attempts") == 1);
    let d = h.int("SELECT id FROM deliveries WHERE webhook_id = ?1", &[w.into()]);
    let (_, detail) = api(&h, "GET", &format!("/api/webhooks/{w}/deliveries/{d}"), None);
    let t = &detail["attempts"][0]["transform"];
    assert_eq!(t["result"], "sent", "{detail}");
    assert_eq!(t["body"].as_str().unwrap(), std::str::from_utf8(&got[0].body).unwrap());
    assert_eq!(t["headers_added"], json!(["x-transform"]));
    let a = h.admin();
    let (_, page) = a.get(&format!("{MOUNT}/{w}/deliveries/{d}"));
    assert!(page.contains("data-transform-result=\"sent\""), "{page}");
    assert!(page.contains("Body sent") && page.contains("New user: Ada"), "the body sent is shown");

    // Any other event is skipped: not sent, its own state, neither a
    // success nor a failure anywhere (health, streak, last hit, metrics).
    h.raise(json!({"type": "ticket.created", "id": "t1", "data": example_data("ticket.created")}));
    eventually(WAIT, "the skip recorded", || h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'skipped'") == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.count_at("/ok/slack"), 1, "a skipped delivery is not sent");
    let (error, note, success) = last_attempt(&h, w);
    assert_eq!(success, 0);
    assert!(error.unwrap().contains("Skipped by the webhook's transformation: only user.created goes to Slack"));
    assert!(note.unwrap().starts_with(r#"{"result":"skipped""#));
    assert_eq!(
        h.int("SELECT CAST(SUM(attempts) AS BIGINT) FROM attempt_rollups WHERE webhook_id = ?1", &[w.into()]),
        1
    );
    assert_eq!(h.text("SELECT last_event_type FROM webhooks WHERE id = ?1", &[w.into()]), "user.created");
    assert!(h.rows("SELECT failing_since FROM webhooks WHERE id = ?1", &[w.into()])[0][0].opt_int().is_none());
    let (_, list) = api(&h, "GET", &format!("/api/webhooks/{w}/deliveries?state=skipped"), None);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let (_, history) = a.get(&format!("{MOUNT}/{w}/history"));
    assert!(history.contains("wh-skip") && history.contains(">Skipped<"), "the history says skipped");
    let (_, failed_only) = a.get(&format!("{MOUNT}/{w}/history?status=failed"));
    assert!(!failed_only.contains(">Skipped<"), "a skip is not listed as a failure");
    let metrics = h.api().get(format!("{}/metrics", h.base)).bearer_auth(TOKEN).send().unwrap().text().unwrap();
    assert!(metrics.contains("webhooks_delivery_attempts_total{outcome=\"skipped\"} 1"), "{metrics}");
    // Each run's time, by result, for an operator to watch.
    for result in ["sent", "skipped"] {
        let count = format!("webhooks_transform_duration_seconds_count{{result=\"{result}\"}} 1");
        assert!(metrics.contains(&count), "{count}: {metrics}");
    }

    // "Try it" against an example event, through the API.
    let (status, p) = api(
        &h,
        "POST",
        &format!("/api/webhooks/{w}/transform/preview"),
        Some(json!({"event_type": "user.created", "data": {"id": 7, "email": "grace@example.com"}})),
    );
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["result"], "send");
    assert_eq!(p["body"], r#"{"text":"New user: grace@example.com (id 7)"}"#);
    assert_eq!(p["url"], r.url("/ok/slack"));
    let (_, p) =
        api(&h, "POST", &format!("/api/webhooks/{w}/transform/preview"), Some(json!({"event_type": "ticket.created"})));
    assert_eq!(
        (p["result"].as_str(), p["reason"].as_str()),
        (Some("skip"), Some("only user.created goes to Slack, not ticket.created"))
    );
    assert_eq!(r.count_at("/ok/slack"), 1, "a preview sends nothing");

    // Removed: the next delivery goes out as the event's own payload.
    let (status, _) = api(&h, "DELETE", &format!("/api/webhooks/{w}/transform"), None);
    assert_eq!(status, 204);
    let (status, p) = api(&h, "POST", &format!("/api/webhooks/{w}/transform/preview"), None);
    assert_eq!((status, p["error"]["code"].as_str()), (409, Some("no_transform")), "{p}");
    h.raise(json!({"type": "user.created", "id": "u43", "data": {"id": 43, "email": "bob@example.com"}}));
    let got = r.wait_for("/ok/slack", 2, WAIT);
    assert_eq!(got[1].json()["data"]["email"], "bob@example.com");
}

#[test]
fn after_a_restart_the_transformation_is_loaded_from_the_database_and_the_compiled_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cache = tmp.path().join("cache");
    let env = [("WEBHOOKS_CACHE_DIR", cache.to_str().unwrap())];
    let r = Receiver::start();
    let slack = example_component("transform-slack");
    let w;
    {
        let h = spawn_host(&data, &env);
        w = create(&h, "Slack", &r.url("/ok/restart"), &["user.created"], None);
        assert_eq!(put_transform(&h, w, &slack).0, 200);
    }
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("transform-"))
        .collect();
    assert_eq!(cached.len(), 1, "compiled once, cached beside the plugin's");
    let h = spawn_host(&data, &env);
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "ada@example.com"}}));
    let got = r.wait_for("/ok/restart", 1, WAIT);
    assert_eq!(got[0].json(), json!({"text": "New user: ada@example.com (id 1)"}));
}

#[test]
fn hostile_transformations_fail_their_attempts_within_the_limits_while_other_deliveries_flow() {
    // One attempt each: what each mode comes to is the first one.
    let h = host_with(&[("WEBHOOKS_RETRY_SCHEDULE", "0s")]);
    let r = Receiver::start();
    let hostile = example_component("transform-hostile");
    let bad = create(&h, "Hostile", &r.url("/ok/hostile"), &["user.created"], Some(SECRET));
    let steady = create(&h, "Steady", &r.url("/ok/steady"), &["user.created"], None);
    assert_eq!(put_transform(&h, bad, &hostile).0, 200);
    // Warm: one harmless run, so the baseline holds what a run needs.
    h.raise(json!({"type": "user.created", "data": {"id": 1, "email": "a@example.com", "mode": "none"}}));
    r.wait_for("/ok/hostile", 1, WAIT);
    r.wait_for("/ok/steady", 1, WAIT);
    let before = rss_kib(h.child.id());

    let cases: [(&str, Value, &str); 5] = [
        ("loop", json!({}), "ran past its 10 ms limit"),
        ("alloc", json!({}), "more than 16 MiB of memory"),
        ("output", json!({}), "more than 16 MiB of memory"),
        ("output", json!({"bytes": 2 << 20}), "at most 1024 KiB (1 MiB) is sent"),
        ("trap", json!({}), "trapped"),
    ];
    let mut sent_steady = 1;
    for (i, (mode, extra, reason)) in cases.iter().enumerate() {
        let mut data = json!({"id": 100 + i, "email": "h@example.com", "mode": mode});
        for (k, v) in extra.as_object().unwrap() {
            data[k] = v.clone();
        }
        let t0 = Instant::now();
        h.raise(json!({"type": "user.created", "id": format!("hostile-{i}"), "data": data}));
        // Other deliveries keep flowing while it misbehaves: a burst to the
        // steady webhook right behind it arrives whole.
        let burst: Vec<Value> = (0..20)
            .map(|k| {
                json!({"type": "user.created", "id": format!("burst-{i}-{k}"),
                            "data": {"id": 1000 + k, "email": "s@example.com", "mode": "none"}})
            })
            .collect();
        let (status, _) = h.raise_batch(&burst);
        assert_eq!(status, 202);
        sent_steady += 21;
        r.wait_for("/ok/steady", sent_steady, WAIT);
        let d = h.int(
            "SELECT id FROM deliveries WHERE event_id = ?1 AND webhook_id = ?2",
            &[format!("hostile-{i}").as_str().into(), bad.into()],
        );
        eventually(WAIT, "the hostile attempt recorded", || {
            h.count(&format!("SELECT COUNT(*) FROM attempts WHERE delivery_id = {d}")) == 1
        });
        let took = t0.elapsed();
        let error = h.text("SELECT error FROM attempts WHERE delivery_id = ?1", &[d.into()]);
        assert!(error.contains(reason), "{mode}: {error}");
        assert_eq!(h.text("SELECT state FROM deliveries WHERE id = ?1", &[d.into()]), "exhausted", "{mode}");
        let note = h.text("SELECT transform FROM attempts WHERE delivery_id = ?1", &[d.into()]);
        assert!(note.starts_with(r#"{"result":"failed""#), "{note}");
        if *mode == "loop" {
            // Interrupted at the first 5 ms tick past 10 ms of CPU: "(after
            // N ms)", 12-13 ms on a quiet machine. On a loaded one the ticker
            // thread can wake late while the loop runs on, so the bound is
            // what tells the CPU deadline from the 1 s wall-clock backstop.
            let after: u64 = error.split("(after ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
            assert!((10..=500).contains(&after), "stopped after {after} ms: {error}");
        }
        assert!(took < Duration::from_secs(10), "{mode} took {took:?} to be recorded");
    }
    // The steady webhook got every one of its deliveries; the hostile one
    // every harmless one (the bursts), none of the misbehaving ones.
    assert_eq!(r.count_at("/ok/steady"), sent_steady);
    eventually(WAIT, "the hostile webhook's harmless deliveries", || {
        r.count_at("/ok/hostile") == sent_steady - cases.len()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.count_at("/ok/hostile"), sent_steady - cases.len());
    eventually(WAIT, "the steady webhook's attempts recorded", || {
        h.count(&format!("SELECT COUNT(*) FROM deliveries WHERE webhook_id = {steady} AND state = 'succeeded'"))
            == sent_steady as i64
    });
    let after = rss_kib(h.child.id());
    assert!(after < before + 64 * 1024, "RSS grew from {before} KiB to {after} KiB");
    // Every misbehaving run is counted as a failed one, and only those.
    let metrics = h.api().get(format!("{}/metrics", h.base)).bearer_auth(TOKEN).send().unwrap().text().unwrap();
    let failed = format!("webhooks_transform_duration_seconds_count{{result=\"failed\"}} {}", cases.len());
    assert!(metrics.contains(&failed), "{failed}: {metrics}");
}

#[test]
fn a_transformation_may_send_under_the_webhook_url_but_never_escape_it_or_forge_the_products_headers() {
    let h = host_with(&[("WEBHOOKS_RETRY_SCHEDULE", "0s")]);
    let r = Receiver::start();
    let hostile = example_component("transform-hostile");
    let w = create(&h, "Paths", &r.url("/ok/base"), &["user.created"], Some(SECRET));
    assert_eq!(put_transform(&h, w, &hostile).0, 200);
    let raise = |id: &str, data: Value| {
        let mut d = json!({"id": 1, "email": "p@example.com"});
        for (k, v) in data.as_object().unwrap() {
            d[k] = v.clone();
        }
        h.raise(json!({"type": "user.created", "id": id, "data": d}));
    };
    raise("p1", json!({"mode": "path", "path": "/T000/B000/xyz"}));
    let got = r.wait_for("/ok/base/T000/B000/xyz", 1, WAIT);
    standardwebhooks::Webhook::new(SECRET).unwrap().verify(&got[0].body, &got[0].headers).unwrap();
    raise("p2", json!({"mode": "header", "header": "x-extra"}));
    let got = r.wait_for("/ok/base", 1, WAIT);
    assert_eq!(got[0].header("x-extra"), "forged");
    for (id, data, why) in [
        ("e1", json!({"mode": "path", "path": "/../../status/500"}), ". or .. segments"),
        ("e2", json!({"mode": "path", "path": "/x?token=1"}), "may not contain ?"),
        ("e3", json!({"mode": "header", "header": "webhook-signature"}), "webhook-signature is set by the product"),
        ("e4", json!({"mode": "header", "header": "Host"}), "Host is set by the product"),
        ("e5", json!({"mode": "error"}), "The transformation reported an error: hostile: cannot handle this event"),
    ] {
        raise(id, data);
        let d = h.int("SELECT id FROM deliveries WHERE event_id = ?1", &[id.into()]);
        eventually(WAIT, "the refused attempt recorded", || {
            h.count(&format!("SELECT COUNT(*) FROM attempts WHERE delivery_id = {d}")) == 1
        });
        let error = h.text("SELECT error FROM attempts WHERE delivery_id = ?1", &[d.into()]);
        assert!(error.contains(why), "{id}: {error}");
    }
    assert_eq!(r.seen().len(), 2, "nothing refused reached the receiver");
}

#[test]
fn components_that_import_anything_or_are_no_components_are_refused_and_change_nothing() {
    let h = host();
    let r = Receiver::start();
    let w = create(&h, "Refusals", &r.url("/ok/refused"), &["user.created"], None);
    let clock = example_component("transform-clock");
    let (status, v) = put_transform(&h, w, &clock);
    assert_eq!(
        (status, v["error"]["code"].as_str(), v["error"]["field"].as_str()),
        (422, Some("invalid_component"), Some("component")),
        "{v}"
    );
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("imports") && m.contains("wasi:") && m.contains("may import nothing"), "{m}");
    for (bytes, why) in [
        (b"not wasm at all".to_vec(), "not a WebAssembly component"),
        (b"\0asm\x01\0\0\0".to_vec(), "core WebAssembly module"),
        // A component's header, then nothing valid: the compiler (a child
        // process of `serve`) refuses it, and its reason comes back.
        (b"\0asm\x0d\0\x01\0 and then nothing valid".to_vec(), "does not compile"),
        (vec![0u8; (1 << 20) + 1], "at most 1 MiB"),
        (Vec::new(), "empty"),
    ] {
        let (status, v) = put_transform(&h, w, &bytes);
        assert_eq!(status, 422, "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(why) && !m.contains('\n') && !m.contains("Error:"), "one sentence for the admin: {m}");
    }
    let (status, v) = api(&h, "PUT", &format!("/api/webhooks/{w}/transform"), Some(json!({"component": "%%%"})));
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("invalid_component")));
    let (status, _) = put_transform(&h, 999_999, &example_component("transform-slack"));
    assert_eq!(status, 404);
    assert_eq!(h.count("SELECT COUNT(*) FROM webhook_transforms"), 0, "nothing was stored");

    // The same refusal in the admin form: the page says why, nothing changes.
    let a = h.admin();
    let url = r.url("/ok/refused");
    let form = edit_form("Refusals", &url);
    let (status, _, page) = a.post_multipart(&format!("{MOUNT}/{w}/edit"), &form, Some(&clock));
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("may import nothing") && page.contains("Nothing was saved"), "{page}");
    assert_eq!(h.count("SELECT COUNT(*) FROM webhook_transforms"), 0);
}

#[test]
fn the_admin_form_uploads_tries_and_removes_a_transformation() {
    let h = host();
    let r = Receiver::start();
    let a = h.admin();
    let slack = example_component("transform-slack");
    // Created with the component in the same form.
    let url = r.url("/ok/form");
    let fields = [("name", "Form"), ("url", url.as_str()), ("events", "user.created"), ("enabled", "on")];
    let (status, _, page) = a.post_multipart(MOUNT, &fields, Some(&slack));
    assert!(status == 303 || status == 302, "{status} {page}");
    let w = h.int("SELECT id FROM webhooks WHERE name = 'Form'", &[]);
    assert_eq!(h.text("SELECT digest FROM webhook_transforms WHERE webhook_id = ?1", &[w.into()]), sha256_hex(&slack));
    let (_, edit) = a.get(&format!("{MOUNT}/{w}/edit"));
    assert!(edit.contains("Attached:") && edit.contains(&sha256_hex(&slack)[..12]), "{edit}");
    assert!(edit.contains("Try the transformation") && edit.contains("wh-try-data"), "{edit}");

    // "Try it" with the example event, then with typed data.
    let (status, _, tried) =
        a.post(&format!("{MOUNT}/{w}/transform/try"), &[("event_type", "user.created"), ("data", "")]);
    assert_eq!(status, 200);
    assert!(tried.contains("data-try-result=\"send\"") && tried.contains("New user:"), "{tried}");
    let (_, _, tried) = a.post(
        &format!("{MOUNT}/{w}/transform/try"),
        &[("event_type", "user.created"), ("data", r#"{"id": 9, "email": "lin@example.com"}"#)],
    );
    assert!(tried.contains("New user: lin@example.com (id 9)"), "{tried}");
    let (status, _, bad) =
        a.post(&format!("{MOUNT}/{w}/transform/try"), &[("event_type", "user.created"), ("data", "[1, 2")]);
    assert_eq!(status, 422);
    assert!(bad.contains("not valid JSON"), "{bad}");
    assert_eq!(r.seen().len(), 0, "trying sends nothing");

    // Saving the form without a file keeps it; ticking "Remove" removes it.
    let keep = edit_form("Form", &url);
    let (status, _, _) = a.post_multipart(&format!("{MOUNT}/{w}/edit"), &keep, None);
    assert!(status < 400);
    assert_eq!(h.count("SELECT COUNT(*) FROM webhook_transforms"), 1, "an empty file box keeps it");
    let mut remove = keep.to_vec();
    remove.push(("transform_remove", "on"));
    let (status, _, _) = a.post_multipart(&format!("{MOUNT}/{w}/edit"), &remove, None);
    assert!(status < 400);
    assert_eq!(h.count("SELECT COUNT(*) FROM webhook_transforms"), 0, "removed");
    let (_, edit) = a.get(&format!("{MOUNT}/{w}/edit"));
    assert!(edit.contains("Upload a transformation above"), "{edit}");
}
