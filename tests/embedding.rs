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

/// What PHP's `rawurlencode` makes of a string: every byte but letters,
/// digits and `-_.~` percent-encoded.
fn rawurlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// #15: a panel whose framework hands cookies over decoded (PHP's `$_COOKIE`,
/// Laravel's `$request->cookie()`) and encodes the value again before
/// forwarding it, as docs/guides/laravel.md does, keeps the flash message.
#[test]
fn the_flash_survives_a_decoded_then_re_encoded_round_trip() {
    let h = host();
    let rx = Receiver::start();
    let c = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let bearer = format!("Bearer {TOKEN}");
    let trusted = |rb: reqwest::blocking::RequestBuilder| {
        rb.header("authorization", &bearer)
            .header("x-webhooks-actor", "alice")
            .header("x-webhooks-csrf-token", "panel-token-123")
            .header("x-webhooks-csrf-field", "_token")
            .header("x-webhooks-fragment", "1")
    };
    let name = "Ops & Billing; 100% +1 “quoted” ü";
    let created = trusted(c.post(format!("{}{MOUNT}", h.base)))
        .form(&[("_token", "panel-token-123"), ("name", name), ("url", &rx.url("/ok")), ("events", "user.created")])
        .send()
        .unwrap();
    assert_eq!(created.status(), 303);
    let set = created.headers()["set-cookie"].to_str().unwrap().to_owned();
    let value = set.strip_prefix("wh_flash=").unwrap().split(';').next().unwrap();
    // What the framework hands the panel: the value decoded.
    let decoded = form_urlencoded::parse(format!("f={value}").as_bytes()).next().unwrap().1.into_owned();
    assert!(decoded.contains(name), "{decoded}");
    // Encoded again, as the guide does, the message shows on the next page.
    let page = trusted(c.get(format!("{}{MOUNT}", h.base)))
        .header("cookie", format!("wh_flash={}", rawurlencode(&decoded)))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("was created") && page.contains("Billing; 100% +1 “quoted” ü"), "{page}");
}

/// The Node panel passes on the `wh_flash` cookie alone, never its own
/// session, and `/` leads to the webhooks pages.
#[test]
fn the_node_panel_forwards_only_the_flash_cookie() {
    use std::io::{Read, Write};
    let Some(node) = node() else { return };
    // A stand-in for `serve` that records what the panel forwards.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = upstream.local_addr().unwrap();
    let seen = std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the panel closed early");
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    let panel = start_node_panel(node, &format!("http://{addr}"));
    let c = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let home = c.get(format!("{}/", panel.base)).send().unwrap();
    assert_eq!(home.status(), 302);
    assert_eq!(home.headers()["location"], MOUNT);
    let r = c
        .get(format!("{}{MOUNT}", panel.base))
        .header("cookie", "panel_session=0123456789abcdef0123456789abcdef; theme=dark; wh_flash=success%3AHi%20there")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let head = seen.join().unwrap().to_ascii_lowercase();
    let cookies: Vec<&str> = head.lines().filter(|l| l.starts_with("cookie:")).collect();
    assert_eq!(cookies, vec!["cookie: wh_flash=success%3ahi%20there"], "{head}");
}
