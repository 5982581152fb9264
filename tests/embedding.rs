//! A panel showing the admin pages inside its own layout: the trusted-panel
//! headers on the real `serve`, and the Node panel of docs/examples run as a
//! new user would run it, in front of the real host.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::json;
use support::{MOUNT, Receiver, TOKEN, eventually, host};

fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap()
}

/// The value of `name="field" value="…"` in a page.
fn hidden(html: &str, field: &str) -> String {
    let m = format!("name=\"{field}\" value=\"");
    let i = html.find(&m).unwrap_or_else(|| panic!("no {field} in {html}")) + m.len();
    html[i..].split('"').next().unwrap().to_owned()
}

#[test]
fn a_panel_acts_for_its_admin_with_the_token() {
    let h = host();
    let c = client();
    let page = |headers: &[(&str, &str)]| {
        let mut rb = c.get(format!("{}{MOUNT}/new", h.base));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        rb.send().unwrap()
    };
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(page(&[("authorization", "Bearer wrong-token-0000000000")]).status(), 401);
    assert_eq!(page(&[("authorization", &bearer)]).status(), 400, "the actor is required");

    // Fragment mode with the panel's own CSRF token and field name.
    let r = page(&[
        ("authorization", &bearer),
        ("x-webhooks-actor", "alice"),
        ("x-webhooks-csrf-token", "panel-token-123"),
        ("x-webhooks-csrf-field", "_token"),
        ("x-webhooks-fragment", "1"),
    ]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-webhooks-title"], "Create%20webhook");
    assert!(r.headers().get("content-security-policy").is_none(), "the panel's page sets its own policy");
    let html = r.text().unwrap();
    assert!(!html.contains("<html") && !html.contains("panel-nav"), "a fragment, not a page");
    assert_eq!(hidden(&html, "_token"), "panel-token-123");
    assert!(!html.contains("name=\"_csrf\""));
    let rx = Receiver::start();
    let form = [
        ("_token", "panel-token-123"),
        ("name", "Panel made"),
        ("url", &rx.url("/ok")),
        ("secret", ""),
        ("events", "user.created"),
        ("enabled", "on"),
    ];
    let created = c
        .post(format!("{}{MOUNT}", h.base))
        .header("authorization", &bearer)
        .header("x-webhooks-actor", "alice")
        .header("x-webhooks-csrf-token", "panel-token-123")
        .header("x-webhooks-csrf-field", "_token")
        .form(&form)
        .send()
        .unwrap();
    assert_eq!(created.status(), 303);
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 1);
    eventually(Duration::from_secs(5), "the actor is in the audit line", || h.log().contains("alice created webhook"));

    // Behind a plain reverse proxy (no panel CSRF token): our own token, bound to the actor.
    let full = page(&[("authorization", &bearer), ("x-webhooks-actor", "bob")]).text().unwrap();
    assert!(full.contains("<html"), "the built-in layout without the fragment header");
    let own = hidden(&full, "_csrf");
    let post = |token: &str| {
        c.post(format!("{}{MOUNT}", h.base))
            .header("authorization", &bearer)
            .header("x-webhooks-actor", "bob")
            .form(&[("_csrf", token), ("name", "Bob's"), ("url", &rx.url("/ok")), ("events", "user.deleted")])
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(post("forged"), 403);
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 1, "a forged form changes nothing");
    assert_eq!(post(&own), 303);
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 2);
}

/// `node`, when this machine has it. CI installs it, so there it must exist.
fn node() -> Option<&'static str> {
    let found = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "CI must have node (see .ci/run)");
        eprintln!("skipped: node is not installed");
        return None;
    }
    Some("node")
}

struct Panel {
    child: Child,
    base: String,
}

impl Drop for Panel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node_panel(node: &str, hooks: &str) -> Panel {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/node-panel.mjs");
    let mut child = Command::new(node)
        .arg(script)
        .env("WEBHOOKS_URL", hooks)
        .env("WEBHOOKS_API_TOKEN", TOKEN)
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("panel listening on ").unwrap_or_else(|| panic!("{line}")).to_owned();
    Panel { child, base }
}

#[test]
fn the_node_panel_example_shows_the_pages_and_raises_events() {
    let Some(node) = node() else { return };
    let h = host();
    let rx = Receiver::start();
    let panel = start_node_panel(node, &h.base);
    let c = client();

    let dash = c.get(format!("{}{MOUNT}", panel.base)).send().unwrap();
    assert_eq!(dash.status(), 200);
    let html = dash.text().unwrap();
    assert!(html.contains("<title>Webhooks · Acme Panel</title>"), "{html}");
    assert!(html.contains("class=\"acme\"") && html.contains("wh-empty"), "the panel's layout around our page");

    let form = c.get(format!("{}{MOUNT}/new", panel.base)).send().unwrap().text().unwrap();
    assert!(form.contains("<title>Create webhook · Acme Panel</title>"));
    let token = hidden(&form, "_token");
    assert_eq!(token.len(), 40, "the panel's own token");
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let fields = |t: &str| {
        vec![
            ("_token".to_owned(), t.to_owned()),
            ("name".to_owned(), "From Node".to_owned()),
            ("url".to_owned(), rx.url("/ok")),
            ("secret".to_owned(), secret.to_owned()),
            ("events".to_owned(), "user.created".to_owned()),
            ("enabled".to_owned(), "on".to_owned()),
        ]
    };
    let forged = c.post(format!("{}{MOUNT}", panel.base)).form(&fields("nope")).send().unwrap();
    assert_eq!(forged.status(), 419, "the panel's CSRF check");
    assert_eq!(h.count("SELECT COUNT(*) FROM webhooks"), 0);
    let created = c.post(format!("{}{MOUNT}", panel.base)).form(&fields(&token)).send().unwrap();
    assert_eq!(created.status(), 303);
    assert_eq!(created.headers()["location"], MOUNT);
    // The flash travels through the panel and shows once, inside its layout.
    let after = c.get(format!("{}{MOUNT}", panel.base)).send().unwrap().text().unwrap();
    assert!(after.contains("was created") && after.contains("From Node") && after.contains("Acme Panel"), "{after}");
    let again = c.get(format!("{}{MOUNT}", panel.base)).send().unwrap().text().unwrap();
    assert!(!again.contains("was created"), "a flash shows once");
    assert!(h.log().contains("alice created webhook"));

    // The panel raises an event; the receiver gets it, signed.
    let signup =
        c.post(format!("{}/signup", panel.base)).json(&json!({"id": 42, "email": "ada@example.com"})).send().unwrap();
    assert_eq!(signup.status(), 200);
    assert_eq!(signup.json::<serde_json::Value>().unwrap(), json!({"id": "user-42-created", "queued": 1}));
    let got = rx.wait_for("/ok", 1, Duration::from_secs(10));
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    let mut hm = http::HeaderMap::new();
    for k in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        hm.insert(k, got[0].header(k).parse().unwrap());
    }
    wh.verify(&got[0].body, &hm).unwrap();
    assert_eq!(got[0].json()["data"]["email"], "ada@example.com");

    // The stylesheet and script come through the panel too.
    let css = c.get(format!("{}/static/webhooks.css", panel.base)).send().unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.text().unwrap().contains(".wh-"));
}
