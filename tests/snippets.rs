//! The receiver code on a webhook's history page (#13), run as an admin
//! would run it. Each snippet is cut out of the page the real host renders —
//! and must be its file under `ui-fragments/snippets/`, with the webhook's
//! own URL in its opening comment — then started as a receiver on 127.0.0.1 with
//! the Standard Webhooks library of its language. It must print that it
//! verified a real delivery from the real host, and refuse a forged one.
//!
//! The Rust snippet is that very file compiled into this test as a module
//! (no crate built at test time) and run in a child process of this test
//! binary. PHP runs against a stand-in for the Composer package
//! (`tests/fixtures/php/standard-webhooks/README.md` says why). A language
//! that is not on the machine is skipped — except under CI.

mod support;

/// The Rust receiver exactly as the page shows it.
#[path = "../ui-fragments/snippets/receiver.rs"]
mod rust_snippet;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::scripts::{
    Script, available, free_port, node_dir_with_standardwebhooks, python_with_standardwebhooks, workdir,
};
use support::{Host, MOUNT, example_data, host};

/// The secret the admin saves and copies into the receiver's environment.
const SECRET: &str = "whsec_c25pcHBldHMgc2VjcmV0IGZvciB0aGUgdGVzdHMh";
/// Another webhook's secret: what a forger might have.
const OTHER: &str = "whsec_YW5vdGhlciB3ZWJob29rJ3Mgc2VjcmV0";
/// The URL the snippet files name; the page puts the webhook's URL there
/// (`admin::SNIPPET_URL` in the plugin).
const FILE_URL: &str = "https://example.com/webhooks";
/// Set in the child process that runs the Rust snippet.
const RUN_RUST_SNIPPET: &str = "WEBHOOKS_TEST_RUN_RUST_SNIPPET";

fn snippet_file(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui-fragments/snippets").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Text of an escaped HTML fragment: askama writes `&#60;`-style numeric
/// references (and HTML has a few named ones).
fn unescape(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').expect("a terminated reference");
        let name = &rest[1..end];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => name.strip_prefix('#').expect("a character reference").parse(),
                };
                char::from_u32(code.unwrap()).unwrap()
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Creates a webhook to `url` with [`SECRET`] through the admin pages and
/// answers the `lang` snippet its history page shows, after checking it is
/// the file `file` naming `url`.
fn shown_snippet(h: &Host, url: &str, lang: &str, file: &str) -> String {
    let admin = h.admin();
    let (status, _, _) = admin.create("Receiver", url, SECRET, &["user.created"], true);
    assert_eq!(status, 303, "created");
    let id = h.int("SELECT id FROM webhooks WHERE name = 'Receiver'", &[]);
    let (status, html) = admin.get(&format!("{MOUNT}/{id}/history"));
    assert_eq!(status, 200);
    let open = format!("id=\"wh-snippet-{lang}\"><code>");
    let start = html.find(&open).unwrap_or_else(|| panic!("no {lang} snippet on the page")) + open.len();
    let end = html[start..].find("</code>").unwrap() + start;
    let shown = unescape(&html[start..end]);
    assert_eq!(shown, snippet_file(file).replacen(FILE_URL, url, 1), "the page shows {file}");
    assert!(shown.lines().take(2).any(|l| l.contains(url)), "the opening comment names this endpoint: {shown}");
    assert!(shown.contains("WEBHOOK_SECRET"), "the secret comes from the environment");
    assert!(!html.contains(SECRET) && !html.contains(&SECRET["whsec_".len()..]), "the secret is never on the page");
    shown
}

/// Raises an event; the receiver must verify its delivery, then refuse a
/// request signed with another secret and one whose body was changed.
fn verifies_and_refuses(h: &Host, receiver: &Script, url: &str) {
    let (status, _) = h.raise(json!({"type": "user.created", "id": "snippet-1", "data": example_data("user.created")}));
    assert_eq!(status, 202);
    let verified = receiver.wait_line("verified ");
    let msg_id = h.text("SELECT msg_id FROM deliveries WHERE event_id = 'snippet-1'", &[]);
    assert_eq!(verified, format!("user.created {msg_id}"));
    support::eventually(Duration::from_secs(10), "the receiver's 204 recorded", || {
        h.count("SELECT COUNT(*) FROM attempts WHERE response_status = 204 AND success = 1") == 1
    });

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let body = r#"{"type":"user.deleted","timestamp":"2026-11-28T00:00:00.000Z","data":{"id":1}}"#;
    let send = |secret: &str, body_sent: &str| {
        let sig = standardwebhooks::Webhook::new(secret).unwrap().sign("msg_forged", now, body.as_bytes()).unwrap();
        reqwest::blocking::Client::new()
            .post(url)
            .header("webhook-id", "msg_forged")
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", sig)
            .body(body_sent.to_owned())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(send(OTHER, body), 400, "signed with another secret");
    assert_eq!(send(SECRET, &body.replace("user.deleted", "user.created")), 400, "the body changed");
    receiver.never_says("verified", Duration::from_millis(500));
}

#[test]
fn python_receiver_snippet() {
    let Some(py) = python_with_standardwebhooks() else { return };
    let h = host();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/panel");
    let file = workdir("snippet-python").join("receiver.py");
    std::fs::write(&file, shown_snippet(&h, &url, "python", "receiver.py")).unwrap();
    let mut cmd = Command::new(&py);
    cmd.arg(&file).env("PORT", port.to_string()).env("WEBHOOK_SECRET", SECRET);
    let receiver = Script::start(cmd, false);
    receiver.wait_line("listening on ");
    verifies_and_refuses(&h, &receiver, &url);
}

#[test]
fn node_receiver_snippet() {
    let Some(dir) = node_dir_with_standardwebhooks() else { return };
    let h = host();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/panel");
    // Next to node_modules, where `import "standardwebhooks"` resolves.
    let file = dir.join("snippet-receiver.mjs");
    std::fs::write(&file, shown_snippet(&h, &url, "node", "receiver.mjs")).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(&file).env("PORT", port.to_string()).env("WEBHOOK_SECRET", SECRET);
    let receiver = Script::start(cmd, false);
    receiver.wait_line("listening on ");
    verifies_and_refuses(&h, &receiver, &url);
}

/// Where Composer's `vendor/autoload.php` would be: the stand-in's loader.
fn php_vendor(dir: &Path) {
    let fixture: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/php/standard-webhooks/autoload.php");
    std::fs::create_dir_all(dir.join("vendor")).unwrap();
    std::fs::write(dir.join("vendor/autoload.php"), format!("<?php\nrequire {:?};\n", fixture.canonicalize().unwrap()))
        .unwrap();
}

#[test]
fn php_receiver_snippet() {
    if !available("php", "--version") {
        return;
    }
    let h = host();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/panel");
    let dir = workdir("snippet-php");
    php_vendor(&dir);
    std::fs::write(dir.join("receiver.php"), shown_snippet(&h, &url, "php", "receiver.php")).unwrap();
    let mut cmd = Command::new("php");
    cmd.args(["-S", &format!("127.0.0.1:{port}")]).arg(dir.join("receiver.php")).env("WEBHOOK_SECRET", SECRET);
    let receiver = Script::start(cmd, true);
    receiver.wait_line("Development Server");
    verifies_and_refuses(&h, &receiver, &url);
}

#[test]
fn rust_receiver_snippet() {
    if std::env::var_os(RUN_RUST_SNIPPET).is_some() {
        // The child: the snippet's own main, reading its own environment.
        rust_snippet::main();
        return;
    }
    let h = host();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/panel");
    // The module compiled above is the file; the page must show that file.
    shown_snippet(&h, &url, "rust", "receiver.rs");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["rust_receiver_snippet", "--exact", "--nocapture", "--test-threads=1"])
        .env(RUN_RUST_SNIPPET, "1")
        .env("PORT", port.to_string())
        .env("WEBHOOK_SECRET", SECRET);
    let receiver = Script::start(cmd, false);
    receiver.wait_line("listening on ");
    verifies_and_refuses(&h, &receiver, &url);
}
