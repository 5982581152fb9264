//! Transformations (#24, part 4) in the plugin: when one runs, what its
//! answer does to the request and its signature, how a skip and a failure
//! are recorded (and what they count toward), reloading after a restart,
//! and the API's upload, preview and removal. The host's sandbox is
//! scripted here (`TestHost::script_transform`); tests/transform.rs runs
//! real components in the real host.

use serde_json::{Value as Json, json};

use super::*;
use crate::api;
use crate::host::{TransformError, TransformOutcome, TransformOutput};
use crate::testhost::fake_component;

fn slack(h: &TestHost) {
    h.script_transform("slack", |i| {
        if i.event_type != "user.created" {
            return Ok(TransformOutcome::Skip(format!("not {}", i.event_type)));
        }
        Ok(TransformOutcome::Send(TransformOutput {
            body: Some(r#"{"text":"hello"}"#.into()),
            headers: vec![("x-slack".into(), "1".into())],
            path: Some("/T0/B0".into()),
        }))
    });
}

fn attach(h: &TestHost, w: i64, name: &str) -> String {
    let wasm = fake_component(name);
    let digest = crate::transform::check(h, &wasm).expect("accepted");
    assert!(crate::transform::attach(h, w, &wasm, &digest).unwrap());
    digest
}

fn call(h: &TestHost, method: &str, path: &str, body: Json) -> (u16, Json) {
    let r = api::handle(
        h,
        &api::Request {
            method: method.into(),
            path: path.into(),
            body: if body.is_null() { String::new() } else { body.to_string() },
            actor: "t".into(),
            ..Default::default()
        },
    );
    (r.status, serde_json::from_str(&r.body).unwrap_or(Json::Null))
}

#[test]
fn the_answer_changes_body_headers_and_path_and_the_signature_covers_the_body_sent() {
    let h = TestHost::new();
    slack(&h);
    let w = hook_with(&h, "https://hooks.example.com/services?x=1", &["user.created"], Some(SECRET));
    attach(&h, w, "slack");
    raise(&h, "e1", "user.created");
    let d = claim(&h, 10).claimed;
    let o = outbox::build(&h, &d).unwrap().remove(0).unwrap();
    assert_eq!(o.request.url, "https://hooks.example.com/services/T0/B0?x=1");
    assert_eq!(o.request.body, br#"{"text":"hello"}"#);
    let header = |n: &str| o.request.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(header("x-slack").as_deref(), Some("1"));
    // The signature is over the body sent.
    let ts: u64 = header("webhook-timestamp").unwrap().parse().unwrap();
    let content = crate::signing::signed_content(&header("webhook-id").unwrap(), ts, &o.request.body);
    let key = h.query("SELECT secret_sealed FROM webhooks", &[]).unwrap().first().unwrap().opt_blob(0).unwrap();
    let mac = h.sign(&key, &content).unwrap();
    assert_eq!(header("webhook-signature").unwrap(), crate::signing::signature(&mac));
    // The transformation saw the delivery as it would have gone out.
    let input = h.transform_inputs.borrow()[0].clone();
    assert_eq!(input.event_type, "user.created");
    assert!(input.body.starts_with(r#"{"type":"user.created","timestamp":""#), "{}", input.body);
    assert_eq!(input.msg_id, header("webhook-id").unwrap());
    // Recorded with the attempt: what it sent.
    let note = o.transformed.clone().unwrap();
    record(&h, vec![Finished { transformed: Some(note), ..status(&h, d[0], 200) }]);
    let stored = h.texts("SELECT transform FROM attempts", &[]).remove(0);
    let v: Json = serde_json::from_str(&stored).unwrap();
    assert_eq!((v["result"].as_str(), v["body"].as_str()), (Some("sent"), Some(r#"{"text":"hello"}"#)));
}

#[test]
fn a_skip_ends_the_delivery_as_skipped_counting_neither_as_success_nor_failure() {
    let h = TestHost::new();
    slack(&h);
    let w = hook(&h, "https://hooks.example.com/x", &["user.created", "ticket.created"]);
    attach(&h, w, "slack");
    raise(&h, "t1", "ticket.created");
    let d = claim(&h, 10).claimed;
    let f = outbox::build(&h, &d).unwrap().remove(0).unwrap_err();
    assert!(matches!(&f.result, Err(outbox::AttemptError::Skipped(why)) if why == "not ticket.created"));
    assert!(h.sent.borrow().is_empty());
    record(&h, vec![f]);
    assert_eq!(delivery(&h, d[0]).0, "skipped");
    assert_eq!(h.skipped_recorded.get(), 1);
    assert_eq!(h.recorded.get(), (0, 0, 0), "neither a success nor a failure");
    assert_eq!(h.int("SELECT COUNT(*) FROM attempt_rollups", &[]), 0, "not in the health view");
    let r = h.query("SELECT failing_since, last_event_type FROM webhooks", &[]).unwrap();
    let r = r.first().unwrap();
    assert_eq!((r.opt_i64(0), r.opt_str(1)), (None, None), "no streak, no last hit");
    let err = h.texts("SELECT error FROM attempts", &[]).remove(0);
    assert_eq!(err, "Skipped by the webhook's transformation: not ticket.created");
    // The history lists it as skipped, not as a failure.
    let rows = store::history(&h, w, &store::HistoryFilter::default(), store::HistoryCursor::Newest, 10).unwrap();
    assert!(rows.rows[0].skipped && !rows.rows[0].success);
    let failures = store::HistoryFilter { success: Some(false), ..Default::default() };
    assert!(store::history(&h, w, &failures, store::HistoryCursor::Newest, 10).unwrap().rows.is_empty());
    // Not due again, and the API filters on it.
    assert!(claim(&h, 10).claimed.is_empty());
    let (_, v) = call(&h, "GET", &format!("/webhooks/{w}/deliveries"), Json::Null);
    assert_eq!(v["data"][0]["state"], "skipped");
}

#[test]
fn a_failure_or_a_refused_answer_fails_that_attempt_alone() {
    let h = TestHost::new();
    h.script_transform("broken", |i| {
        if i.body.contains("\"n\":2") {
            return Err(TransformError::Failed(
                "The transformation ran past its 10 ms limit and was stopped (after 12 ms).".into(),
            ));
        }
        if i.body.contains("\"n\":3") {
            return Ok(TransformOutcome::Send(TransformOutput {
                headers: vec![("webhook-signature".into(), "v1,forged".into())],
                ..Default::default()
            }));
        }
        Ok(TransformOutcome::Send(TransformOutput { path: Some("/../admin".into()), ..Default::default() }))
    });
    let w = hook(&h, "https://a.example/in", &["user.created"]);
    let other = hook(&h, "https://b.example/in", &["user.created"]);
    attach(&h, w, "broken");
    for n in 1..=3 {
        outbox::raise_batch(
            &h,
            &[NewEvent { data_json: data("user.created", n), ..ev(&format!("e{n}"), "user.created") }],
        )
        .unwrap();
    }
    let d = claim(&h, 10).claimed;
    let built = outbox::build(&h, &d).unwrap();
    let (ok, failed): (Vec<_>, Vec<_>) = built.into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 3, "the other webhook's deliveries are built");
    assert!(ok.iter().all(|o| o.as_ref().unwrap().webhook_id == other));
    let mut reasons: Vec<String> = failed.into_iter().map(|f| f.unwrap_err().result.unwrap_err().to_string()).collect();
    reasons.sort();
    assert!(reasons[0].contains("ran past its 10 ms limit"), "{reasons:?}");
    assert!(reasons[1].contains("webhook-signature is set by the product"), "{reasons:?}");
    assert!(reasons[2].contains(". or .. segments"), "{reasons:?}");
}

#[test]
fn a_host_that_lost_the_compiled_component_loads_it_from_the_database() {
    let h = TestHost::new();
    slack(&h);
    let w = hook(&h, "https://hooks.example.com/x", &["user.created"]);
    attach(&h, w, "slack");
    h.forget_transforms();
    let loads = h.transform_loads.get();
    raise(&h, "e1", "user.created");
    let d = claim(&h, 10).claimed;
    assert!(outbox::build(&h, &d).unwrap()[0].is_ok());
    assert_eq!(h.transform_loads.get(), loads + 1, "loaded once more, from the stored bytes");
}

#[test]
fn the_api_uploads_previews_and_removes_and_refuses_bad_components_without_change() {
    let h = TestHost::new();
    slack(&h);
    let w = hook(&h, "https://hooks.example.com/x", &["user.created"]);
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // No transformation yet: the preview says so with 409 (the webhook exists).
    let (s, v) = call(&h, "POST", &format!("/webhooks/{w}/transform/preview"), Json::Null);
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("no_transform")));
    let (s, _) = call(&h, "POST", "/webhooks/999/transform/preview", Json::Null);
    assert_eq!(s, 404);
    // Refused: not a component, too large, not base64, unknown fields.
    for body in [
        json!({"component": b64(b"nope")}),
        json!({"component": b64(&vec![0u8; (1 << 20) + 1])}),
        json!({"component": "***"}),
        json!({"component": b64(b"x"), "extra": 1}),
        json!({}),
    ] {
        let (s, v) = call(&h, "PUT", &format!("/webhooks/{w}/transform"), body);
        assert_eq!(s, 422, "{v}");
    }
    assert_eq!(h.int("SELECT COUNT(*) FROM webhook_transforms", &[]), 0);
    let (s, v) =
        call(&h, "PUT", &format!("/webhooks/{w}/transform"), json!({"component": b64(&fake_component("slack"))}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["transform"]["size"], fake_component("slack").len());
    let (s, v) = call(&h, "POST", &format!("/webhooks/{w}/transform/preview"), json!({"event_type": "user.created"}));
    assert_eq!(
        (s, v["result"].as_str(), v["url"].as_str()),
        (200, Some("send"), Some("https://hooks.example.com/x/T0/B0"))
    );
    assert_eq!(v["body"], r#"{"text":"hello"}"#);
    let (s, v) = call(&h, "POST", &format!("/webhooks/{w}/transform/preview"), json!({"event_type": "ticket.created"}));
    assert_eq!((s, v["result"].as_str()), (200, Some("skip")));
    let (s, _) = call(&h, "POST", &format!("/webhooks/{w}/transform/preview"), json!({"event_type": "nope"}));
    assert_eq!(s, 422);
    let (s, _) = call(&h, "POST", &format!("/webhooks/{w}/transform/preview"), json!({"data": [1]}));
    assert_eq!(s, 422);
    assert!(h.sent.borrow().is_empty(), "a preview sends nothing");
    let (s, _) = call(&h, "DELETE", &format!("/webhooks/{w}/transform"), Json::Null);
    assert_eq!(s, 204);
    let (_, v) = call(&h, "GET", &format!("/webhooks/{w}"), Json::Null);
    assert_eq!(v["transform"], Json::Null);
    // Deleting the webhook deletes its transformation.
    attach(&h, w, "slack");
    assert!(store::delete(&h, w).unwrap());
    assert_eq!(h.int("SELECT COUNT(*) FROM webhook_transforms", &[]), 0);
}
