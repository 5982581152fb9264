//! The guides' snippets, run as a reader would run them: each script is cut
//! out of its Markdown file, raises a real event through a real
//! `webhooks-host`, and the receiver script verifies the real delivery with
//! the Standard Webhooks library of its language. A language that is not on
//! the machine is skipped — except under CI, which installs them all.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::scripts::{Script, free_port, node_dir_with_standardwebhooks, python_with_standardwebhooks, run, workdir};
use support::{TOKEN, host};

/// The generated secret is what an admin copies into the receiver.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The fenced block titled `title` in `docs/guides/<guide>`.
fn snippet(guide: &str, title: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/guides").join(guide);
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!(" title=\"{title}\"\n");
    let start = text.find(&marker).unwrap_or_else(|| panic!("{guide} has no block titled {title}")) + marker.len();
    let end = text[start..].find("\n```").unwrap() + start;
    text[start..end].to_owned() + "\n"
}

/// Creates a webhook to `url`, raises through `raise` (the guide's script),
/// and checks the receiver verified exactly that delivery; then a forged one
/// is refused.
fn round_trip(h: &support::Host, receiver: &Script, url: &str, raise: &mut Command) {
    let api = h.api();
    let created = api
        .post(format!("{}/api/webhooks", h.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Guide", "url": url, "events": ["user.created"], "secret": SECRET}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let out = run(raise.env("WEBHOOKS_URL", &h.base).env("WEBHOOKS_API_TOKEN", TOKEN));
    let raised: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(raised, json!({"id": "user-42-created", "queued": 1}));
    let verified = receiver.wait_line("verified ");
    let msg_id = h.text("SELECT msg_id FROM deliveries WHERE event_id = 'user-42-created'", &[]);
    assert_eq!(verified, format!("user.created {msg_id}"));
    support::eventually(Duration::from_secs(10), "the receiver's answer recorded", || {
        h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'succeeded'") == 1
    });

    // A forged delivery is refused, and not reported as verified.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let forged = reqwest::blocking::Client::new()
        .post(url)
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", "v1,Zm9yZ2VkIHNpZ25hdHVyZSBmb3JnZWQgc2lnbmF0dXJlIQ==")
        .body(r#"{"type":"user.deleted","timestamp":"2026-11-28T00:00:00Z","data":{}}"#)
        .send()
        .unwrap();
    assert_eq!(forged.status(), 400);
    receiver.never_says("verified", Duration::from_millis(500));
}

#[test]
fn python_guide() {
    let Some(py) = python_with_standardwebhooks() else { return };
    let dir = workdir("guide-python");
    std::fs::write(dir.join("raise_event.py"), snippet("python.md", "raise_event.py")).unwrap();
    std::fs::write(dir.join("receiver.py"), snippet("python.md", "receiver.py")).unwrap();

    let h = host();
    let mut cmd = Command::new(&py);
    cmd.arg(dir.join("receiver.py")).env("PORT", "0").env("WEBHOOK_SECRET", SECRET);
    let receiver = Script::start(cmd, false);
    let port = receiver.wait_line("listening on ");
    round_trip(&h, &receiver, &format!("http://127.0.0.1:{port}/"), Command::new(&py).arg(dir.join("raise_event.py")));
}

#[test]
fn node_guide() {
    let Some(dir) = node_dir_with_standardwebhooks() else { return };
    // Next to node_modules, where `import "standardwebhooks"` resolves.
    std::fs::write(dir.join("raise_event.mjs"), snippet("node.md", "raise_event.mjs")).unwrap();
    std::fs::write(dir.join("receiver.mjs"), snippet("node.md", "receiver.mjs")).unwrap();

    let h = host();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("receiver.mjs")).env("PORT", "0").env("WEBHOOK_SECRET", SECRET);
    let receiver = Script::start(cmd, false);
    let port = receiver.wait_line("listening on ");
    round_trip(
        &h,
        &receiver,
        &format!("http://127.0.0.1:{port}/"),
        Command::new("node").arg(dir.join("raise_event.mjs")),
    );
}

#[test]
fn php_guide() {
    if !support::scripts::available("php", "--version") {
        return;
    }
    let dir = workdir("guide-php");
    std::fs::write(dir.join("raise_event.php"), snippet("laravel.md", "raise_event.php")).unwrap();
    std::fs::write(dir.join("verify.php"), snippet("laravel.md", "verify.php")).unwrap();

    let h = host();
    let port = free_port();
    let mut cmd = Command::new("php");
    cmd.args(["-S", &format!("127.0.0.1:{port}")]).arg(dir.join("verify.php")).env("WEBHOOK_SECRET", SECRET);
    let receiver = Script::start(cmd, true);
    receiver.wait_line("Development Server");
    round_trip(
        &h,
        &receiver,
        &format!("http://127.0.0.1:{port}/"),
        Command::new("php").arg(dir.join("raise_event.php")),
    );
}
