//! The admin pages in a real browser: Debian's headless Chromium driven over
//! WebDriver (chromedriver), against the real `webhooks-host` binary, with a
//! real receiver. Clicks through create, toggle, send test, history, details
//! modal, edit with secret rotation, delete with confirmation, XSS and CSRF,
//! with JavaScript and without, and saves a screenshot of each page under
//! `docs/screenshots/`.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them). Without
//! them the test says so and passes only outside CI (`CI` unset).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn browsers_present() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser tests: install chromium and chromium-driver"
        );
        eprintln!("skipped: install Debian's chromium and chromium-driver to run the browser tests");
    }
    present
}

async fn browser(javascript: bool) -> (Driver, Client) {
    browser_with(javascript, &[]).await
}

/// [`browser`] with extra Chromium switches.
async fn browser_with(javascript: bool, extra: &[&str]) -> (Driver, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(driver);
    let profile = tempfile::tempdir().unwrap().keep();
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--window-size=1280,900".into(),
        "--hide-scrollbars".into(),
    ];
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let mut opts = json!({ "binary": CHROMIUM, "args": args });
    if !javascript {
        opts["prefs"] = json!({ "profile.managed_default_content_settings.javascript": 2 });
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), opts);
    caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
    let mut last = None;
    for _ in 0..50 {
        let mut b = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        b.capabilities(caps.clone());
        match b.connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(c) => return (driver, c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not start a WebDriver session: {last:?}");
}

fn shots() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("docs/screenshots");
    std::fs::create_dir_all(&p).unwrap();
    p
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.len() > 1000, "{name}: an actual picture");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn text(c: &Client) -> String {
    // The page may be navigating: retry a stale read.
    for _ in 0..50 {
        if let Ok(b) = c.find(Locator::Css("body")).await
            && let Ok(t) = b.text().await
        {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not read the page");
}

async fn sign_in(c: &Client, base: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Id("username")).await.unwrap().send_keys("admin").await.unwrap();
    c.find(Locator::Id("password")).await.unwrap().send_keys(ADMIN_PASSWORD).await.unwrap();
    c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    // The login page has an `h1` of its own: wait until the browser has left
    // it, or a `goto` right after could cancel the sign-in under way.
    for _ in 0..400 {
        if !c.current_url().await.unwrap().path().ends_with("/login") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!c.current_url().await.unwrap().path().ends_with("/login"), "still on the login page: {}", text(c).await);
    c.wait().for_element(Locator::Css("h1")).await.unwrap();
}

/// Polls for up to 20 s (Chromium shares a loaded machine's cores with the
/// host); returns as soon as the page shows it.
async fn wait_text(c: &Client, needle: &str) {
    for _ in 0..400 {
        if text(c).await.contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("page never showed {needle:?}: {}", text(c).await);
}

/// Clicks what submits a form and waits until the page it leads to is the
/// one shown. A `find` right after the click can otherwise land on the old
/// page's element of the same id, which goes stale as the new page loads.
async fn click_and_load(c: &Client, locator: Locator<'_>) {
    c.execute("window.__leaving = true", vec![]).await.unwrap();
    c.find(locator).await.unwrap().click().await.unwrap();
    for _ in 0..400 {
        // Mid-navigation a script may fail: that is "not yet".
        let loaded = c.execute("return window.__leaving !== true && document.readyState === 'complete'", vec![]).await;
        if loaded.ok().and_then(|v| v.as_bool()) == Some(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the click never led to a new page: {}", text(c).await);
}

fn count(h: &Host, sql: &str) -> i64 {
    h.count(sql)
}

/// Waits (up to 20 s) until `sql` answers `want`.
async fn until_count(h: &Host, sql: &str, want: i64) {
    for _ in 0..660 {
        if count(h, sql) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(count(h, sql), want, "{sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_click_through_with_javascript() {
    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    let (_driver, c) = browser(true).await;
    let base = h.base.clone();

    // Sign in.
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().starts_with("/login"), "anonymous → sign-in page");
    shot(&c, "login").await;
    sign_in(&c, &base).await;
    wait_text(&c, "No webhooks yet").await;
    shot(&c, "dashboard-empty").await;

    // Create: one click from the dashboard, Generate a secret, select a whole group.
    c.find(Locator::LinkText("Create webhook")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("wh-name")).await.unwrap();
    c.find(Locator::Id("wh-name")).await.unwrap().send_keys("Billing CRM").await.unwrap();
    c.find(Locator::Id("wh-url")).await.unwrap().send_keys(&r.url("/html/crm")).await.unwrap();
    c.find(Locator::Css("button[name=generate]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "A new secret was generated").await;
    let secret = c.find(Locator::Id("wh-secret")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    assert_eq!(c.find(Locator::Id("wh-name")).await.unwrap().prop("value").await.unwrap().unwrap(), "Billing CRM");
    c.find(Locator::Css("input[data-select-all=User]")).await.unwrap().click().await.unwrap();
    let checked = c
        .execute(
            "return document.querySelectorAll('fieldset[data-group=User] input[name=events]:checked').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(checked, json!(3), "select all checks the whole group");
    // Each event shows an example body beside its checkbox, folded until asked for.
    let examples = c.find_all(Locator::Css(".wh-example")).await.unwrap();
    assert_eq!(examples.len(), 14, "one example per subscribable event");
    let pre = c.find(Locator::Css("fieldset[data-group=Transaction] .wh-example pre")).await.unwrap();
    assert!(!pre.is_displayed().await.unwrap(), "folded");
    c.find(Locator::Css("fieldset[data-group=Transaction] .wh-example summary")).await.unwrap().click().await.unwrap();
    assert!(pre.is_displayed().await.unwrap(), "unfolded on click");
    let example: serde_json::Value = serde_json::from_str(&pre.text().await.unwrap()).unwrap();
    assert_eq!(example["type"], "transaction.created");
    assert_eq!(example["data"]["currency"], "EUR");
    let still = c
        .execute(
            "return document.querySelectorAll('fieldset[data-group=Transaction] input[name=events]:checked').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(still, json!(0), "opening an example does not tick the event");
    shot(&c, "create-form").await;
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was created").await;
    assert!(text(&c).await.contains("Billing CRM"));
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhook_events"), 3);

    // Toggle without a reload.
    c.execute("window.__marker = 42", vec![]).await.unwrap();
    let switch = c.find(Locator::Css(".wh-switch")).await.unwrap();
    assert_eq!(switch.attr("aria-checked").await.unwrap().as_deref(), Some("true"));
    switch.click().await.unwrap();
    until_count(&h, "SELECT enabled FROM webhooks", 0).await;
    assert_eq!(count(&h, "SELECT enabled FROM webhooks"), 0);
    assert_eq!(c.execute("return window.__marker", vec![]).await.unwrap(), json!(42), "no full reload");
    assert_eq!(switch.attr("aria-checked").await.unwrap().as_deref(), Some("false"));
    switch.click().await.unwrap();
    until_count(&h, "SELECT enabled FROM webhooks", 1).await;
    shot(&c, "dashboard").await;

    // Send test → history with the outcome.
    c.find(Locator::Css("form[action$='/test'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Test delivered").await;
    assert_eq!(r.seen_at("/html/crm").len(), 1);
    let sent = &r.seen_at("/html/crm")[0];
    standardwebhooks::Webhook::new(&secret).unwrap().verify(&sent.body, &sent.headers).unwrap();
    let page = text(&c).await;
    assert!(page.contains("test.webhook") && page.contains("200") && page.contains("Success"));
    shot(&c, "history").await;

    // Details in a modal; the receiver's HTML stays inert.
    c.find(Locator::Css("a[data-details]")).await.unwrap().click().await.unwrap();
    let dialog = c.wait().for_element(Locator::Css("dialog#wh-details[open]")).await.unwrap();
    let details = dialog.text().await.unwrap();
    assert!(details.contains("webhook-signature") && details.contains("Payload"));
    assert!(details.contains("<script>alert('body')</script>"), "shown as text");
    assert!(!details.contains(&secret[6..]), "the secret is never shown");
    assert!(c.get_alert_text().await.is_err(), "no script ran");
    shot(&c, "delivery-details").await;
    dialog.find(Locator::Css("[data-close]")).await.unwrap().click().await.unwrap();

    // Edit: rotate the secret.
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    c.find(Locator::LinkText("Edit")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("wh-secret-state")).await.unwrap();
    assert!(!c.source().await.unwrap().contains(&secret[6..]), "the stored secret is not echoed back");
    c.find(Locator::Css("button[name=generate]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "A new secret was generated").await;
    let rotate = c.find(Locator::Css("input[name=secret_action][value=rotate]")).await.unwrap();
    assert_eq!(rotate.prop("checked").await.unwrap().as_deref(), Some("true"), "generating on edit rotates");
    shot(&c, "edit-rotate").await;
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was saved").await;
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhooks WHERE prev_secret_until IS NOT NULL"), 1);

    // XSS: a hostile name is text, nothing runs.
    c.find(Locator::LinkText("Create webhook")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("wh-name")).await.unwrap();
    c.find(Locator::Id("wh-name")).await.unwrap().send_keys("<img src=x onerror=\"window.__xss=1\">").await.unwrap();
    c.find(Locator::Id("wh-url")).await.unwrap().send_keys("https://example.com/x").await.unwrap();
    c.find(Locator::Css("input[name=events][value='ticket.closed']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was created").await;
    assert!(text(&c).await.contains("<img src=x onerror=\"window.__xss=1\">"));
    assert_eq!(c.execute("return window.__xss === undefined", vec![]).await.unwrap(), json!(true));

    // CSRF: a tampered token changes nothing.
    c.find(Locator::LinkText("Create webhook")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("wh-name")).await.unwrap();
    c.find(Locator::Id("wh-name")).await.unwrap().send_keys("Forged").await.unwrap();
    c.find(Locator::Id("wh-url")).await.unwrap().send_keys("https://example.com/f").await.unwrap();
    c.find(Locator::Css("input[name=events][value='ticket.closed']")).await.unwrap().click().await.unwrap();
    c.execute("document.querySelector('form.wh-form input[name=_csrf]').value = 'forged'", vec![]).await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Form expired").await;
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhooks WHERE name = 'Forged'"), 0);

    // Delete with a confirmation dialog.
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    c.find(Locator::Css("a[data-confirm-delete='Billing CRM']")).await.unwrap().click().await.unwrap();
    let dialog = c.wait().for_element(Locator::Css("dialog[open]")).await.unwrap();
    assert!(dialog.text().await.unwrap().contains("cannot be undone"));
    shot(&c, "delete-confirm").await;
    dialog.find(Locator::Css("button.wh-btn-danger")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was deleted").await;
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhooks WHERE name = 'Billing CRM'"), 0);

    // Readable at 360 px: nothing wider than the screen but the scrolling table.
    c.set_window_size(360, 800).await.unwrap();
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    let overflow = c.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
    let wide = c
        .execute(
            "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 362)\
               .slice(0, 8).map(e => e.tagName + '.' + e.className + ':' + Math.round(e.getBoundingClientRect().width))",
            vec![],
        )
        .await
        .unwrap();
    assert!(overflow.as_u64().unwrap() <= 360, "page is {overflow} px wide at 360: {wide}");
    shot(&c, "dashboard-360px").await;

    // Every visible input has a label.
    c.set_window_size(1280, 900).await.unwrap();
    c.goto(&format!("{base}{MOUNT}/new")).await.unwrap();
    let unlabelled = c
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]),select')]\
               .filter(i => !(i.labels && i.labels.length) && !i.getAttribute('aria-label')).length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, json!(0));
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pages_work_without_javascript() {
    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    let (_driver, c) = browser(false).await;
    let base = h.base.clone();
    sign_in(&c, &base).await;
    c.goto(&format!("{base}{MOUNT}/new")).await.unwrap();
    c.find(Locator::Id("wh-name")).await.unwrap().send_keys("No JS").await.unwrap();
    c.find(Locator::Id("wh-url")).await.unwrap().send_keys(&r.url("/ok/nojs")).await.unwrap();
    // Submitted without events: the form comes back with the message and the values.
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Choose at least one event").await;
    assert_eq!(c.find(Locator::Id("wh-name")).await.unwrap().prop("value").await.unwrap().unwrap(), "No JS");
    shot(&c, "form-errors").await;
    c.find(Locator::Css("input[name=events][value='user.created']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was created").await;
    // The toggle is a plain form: a full round trip.
    c.find(Locator::Css(".wh-switch")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Webhook disabled").await;
    assert_eq!(count(&h, "SELECT enabled FROM webhooks"), 0);
    // Delete goes through a confirmation page.
    c.find(Locator::LinkText("Delete")).await.unwrap().click().await.unwrap();
    wait_text(&c, "This cannot be undone").await;
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhooks"), 1);
    c.find(Locator::Css("button.wh-btn-danger")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was deleted").await;
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhooks"), 0);
    c.close().await.unwrap();
}

/// Admin pages v2 (#13), what an admin tripped over first: a secret typed on
/// the edit form was dropped while "Keep" was selected; the delete dialog
/// focused "Delete permanently"; names over 100 characters were cut without
/// a word; "+9 more" repeated the first three events; "Select all" did not
/// follow the boxes; the switch kept saying "Disable" once off; the sign-in
/// password box was unstyled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_admins_tripped_over_is_fixed() {
    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    let (_driver, c) = browser(true).await;
    let base = h.base.clone();

    // The sign-in page's password box looks like the user name box.
    c.goto(&format!("{base}/login")).await.unwrap();
    let style = |id: &'static str| {
        let c = c.clone();
        async move {
            c.execute(
                &format!(
                    "const s = getComputedStyle(document.getElementById('{id}'));\
                     return [s.borderTopWidth, s.borderTopColor, s.paddingLeft, s.borderRadius, s.width].join(' ')"
                ),
                vec![],
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(style("password").await, style("username").await, "the password box is styled like the others");
    sign_in(&c, &base).await;

    // "Select all" follows the boxes.
    c.goto(&format!("{base}{MOUNT}/new")).await.unwrap();
    c.wait().for_element(Locator::Id("wh-name")).await.unwrap();
    let select_all = |group: &'static str| {
        let c = c.clone();
        async move {
            c.execute(
                &format!(
                    "const a = document.querySelector('input[data-select-all={group}]');\
                     return [a.checked, a.indeterminate]"
                ),
                vec![],
            )
            .await
            .unwrap()
        }
    };
    for e in ["user.created", "user.updated", "user.deleted"] {
        c.find(Locator::Css(&format!("input[name=events][value='{e}']"))).await.unwrap().click().await.unwrap();
    }
    assert_eq!(select_all("User").await, json!([true, false]), "all three ticked one by one");
    c.find(Locator::Css("input[name=events][value='user.updated']")).await.unwrap().click().await.unwrap();
    assert_eq!(select_all("User").await, json!([false, true]), "one unticked: mixed");
    c.find(Locator::Css("input[data-select-all=User]")).await.unwrap().click().await.unwrap();
    for g in ["Server", "Transaction", "Ticket"] {
        c.find(Locator::Css(&format!("input[data-select-all={g}]"))).await.unwrap().click().await.unwrap();
    }

    // A name over 100 characters is not cut: the limit is stated and the
    // whole name is kept to fix.
    let long = "N".repeat(120);
    c.find(Locator::Id("wh-name")).await.unwrap().send_keys(&long).await.unwrap();
    let typed = c.find(Locator::Id("wh-name")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert_eq!(typed.len(), 120, "nothing cut while typing");
    assert!(text(&c).await.contains("up to 100 characters"));
    c.find(Locator::Id("wh-url")).await.unwrap().send_keys(&r.url("/ok/v2")).await.unwrap();
    let first = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    c.find(Locator::Id("wh-secret")).await.unwrap().send_keys(first).await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Shorten the name to 100 characters or fewer").await;
    let kept = c.find(Locator::Id("wh-name")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert_eq!(kept, long, "the whole name comes back to be shortened");
    let name = c.find(Locator::Id("wh-name")).await.unwrap();
    name.clear().await.unwrap();
    name.send_keys("All events").await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was created").await;
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhook_events"), 12);

    // "+9 more" unfolds the other nine, not the first three again.
    let chips = c
        .execute(
            "const d = document.querySelector('.wh-more'); d.open = true;\
             return [d.querySelector('summary').textContent.trim(),\
                     [...d.querySelectorAll('.wh-chip')].map(e => e.textContent)]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(chips[0], "+9 more");
    let rest: Vec<String> = serde_json::from_value(chips[1].clone()).unwrap();
    assert_eq!(rest.len(), 9, "{rest:?}");
    for shown in ["user.created", "user.updated", "user.deleted"] {
        assert!(!rest.iter().any(|e| e == shown), "{shown} is shown twice: {rest:?}");
    }

    // The URL stays on one line (no break inside the host), whole in its title.
    let url = c
        .execute(
            "const e = document.querySelector('.wh-url code');\
             return [e.getClientRects().length, e.getBoundingClientRect().height < 24, e.title]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(url, json!([1, true, r.url("/ok/v2")]), "the URL cell");

    // The switch's name follows its state.
    let switch = c.find(Locator::Css(".wh-switch")).await.unwrap();
    assert_eq!(switch.attr("aria-label").await.unwrap().as_deref(), Some("Disable All events"));
    switch.click().await.unwrap();
    until_count(&h, "SELECT enabled FROM webhooks", 0).await;
    let mut label = None;
    for _ in 0..660 {
        label = switch.attr("aria-label").await.unwrap();
        if label.as_deref() == Some("Enable All events") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(label.as_deref(), Some("Enable All events"));
    switch.click().await.unwrap();
    until_count(&h, "SELECT enabled FROM webhooks", 1).await;

    // Typing a new secret while "Keep" is selected replaces the secret.
    let second = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    c.find(Locator::LinkText("Edit")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("wh-secret-state")).await.unwrap();
    let keep = c.find(Locator::Css("input[name=secret_action][value=keep]")).await.unwrap();
    assert_eq!(keep.prop("checked").await.unwrap().as_deref(), Some("true"), "Keep is the default");
    c.find(Locator::Id("wh-secret")).await.unwrap().send_keys(second).await.unwrap();
    let replace = c.find(Locator::Css("input[name=secret_action][value=replace]")).await.unwrap();
    assert_eq!(replace.prop("checked").await.unwrap().as_deref(), Some("true"), "typing chose Replace");
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was saved").await;
    c.find(Locator::Css("form[action$='/test'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Test delivered").await;
    let sent = r.seen_at("/ok/v2").pop().expect("the test arrived");
    standardwebhooks::Webhook::new(second)
        .unwrap()
        .verify(&sent.body, &sent.headers)
        .expect("signed with the typed secret");
    assert!(standardwebhooks::Webhook::new(first).unwrap().verify(&sent.body, &sent.headers).is_err());

    // The delete dialog focuses the safe choice: Enter cancels.
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    c.find(Locator::Css("a[data-confirm-delete]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("dialog[open]")).await.unwrap();
    let focused = c.execute("return document.activeElement.textContent.trim()", vec![]).await.unwrap();
    assert_eq!(focused, json!("Cancel"));
    c.close().await.unwrap();
}

/// Without JavaScript too, a secret typed on the edit form while "Keep" is
/// selected is the one saved (#13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_secret_is_saved_without_javascript() {
    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    let (_driver, c) = browser(false).await;
    let base = h.base.clone();
    sign_in(&c, &base).await;
    c.goto(&format!("{base}{MOUNT}/new")).await.unwrap();
    c.find(Locator::Id("wh-name")).await.unwrap().send_keys("No script").await.unwrap();
    c.find(Locator::Id("wh-url")).await.unwrap().send_keys(&r.url("/ok/nojs")).await.unwrap();
    c.find(Locator::Css("input[name=events][value='user.created']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was created").await;
    c.find(Locator::LinkText("Edit")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Id("wh-secret-state")).await.unwrap();
    let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    c.find(Locator::Id("wh-secret")).await.unwrap().send_keys(secret).await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was saved").await;
    c.find(Locator::Css("form[action$='/test'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Test delivered").await;
    let sent = r.seen_at("/ok/nojs").pop().expect("the test arrived");
    standardwebhooks::Webhook::new(secret).unwrap().verify(&sent.body, &sent.headers).expect("signed with it");
    c.close().await.unwrap();
}

/// Dark mode (#13): with the system preference dark, every page is dark —
/// background, tables, forms and inputs — and text stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_follows_a_dark_preference() {
    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    // (A blocking client: outside the async context.)
    tokio::task::block_in_place(|| {
        h.admin().create("Billing CRM", &r.url("/ok/dark"), "", &["user.created", "ticket.closed"], true)
    });
    let (_driver, c) = browser_with(true, &["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]).await;
    let base = h.base.clone();
    // The relative luminance (0 black … 1 white) of an element's colour.
    let luminance = |selector: &'static str, property: &'static str| {
        let c = c.clone();
        async move {
            let v = c
                .execute(
                    &format!(
                        "const e = document.querySelector('{selector}'); if (!e) return -1;\
                         const m = getComputedStyle(e)['{property}'].match(/[0-9.]+/g).map(Number);\
                         const l = m.slice(0, 3).map(v => {{ v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4 }});\
                         return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2]"
                    ),
                    vec![],
                )
                .await
                .unwrap();
            v.as_f64().unwrap()
        }
    };
    c.goto(&format!("{base}/login")).await.unwrap();
    assert!(
        c.execute("return matchMedia('(prefers-color-scheme: dark)').matches", vec![]).await.unwrap() == json!(true)
    );
    assert!(luminance("body", "backgroundColor").await < 0.05, "sign-in page background");
    assert!(luminance("#password", "backgroundColor").await < 0.05, "password box");
    assert!(luminance("body", "color").await > 0.7, "text");
    sign_in(&c, &base).await;
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    wait_text(&c, "Billing CRM").await;
    assert!(luminance("body", "backgroundColor").await < 0.05, "dashboard background");
    assert!(luminance(".wh-table-wrap", "backgroundColor").await < 0.05, "table");
    assert!(luminance(".wh-name a", "color").await > 0.2, "links stay readable");
    shot(&c, "dashboard-dark").await;
    c.goto(&format!("{base}{MOUNT}/new")).await.unwrap();
    c.wait().for_element(Locator::Id("wh-name")).await.unwrap();
    assert!(luminance(".wh-form", "backgroundColor").await < 0.05, "form");
    assert!(luminance("#wh-name", "backgroundColor").await < 0.05, "name box");
    assert!(luminance("#wh-name", "color").await > 0.7, "typed text");
    shot(&c, "create-form-dark").await;
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    c.find(Locator::Css("form[action$='/test'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Test delivered").await;
    assert!(luminance(".wh-table-wrap", "backgroundColor").await < 0.05, "history table");
    assert!(luminance(".wh-badge", "color").await > 0.2, "state badges stay readable");
    shot(&c, "history-dark").await;
    c.close().await.unwrap();
}

/// Admin pages v2 (#13): times are absolute (in the admin's zone, with the
/// zone) with a relative hint; a filter that matches nothing says so and
/// offers to clear it; delivery details lead with the outcome, the modal
/// does not repeat the breadcrumbs, and nothing is clipped at 360 px.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_details_read_at_a_glance() {
    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    tokio::task::block_in_place(|| {
        h.admin().create("Glance", &r.url("/ok/glance"), "", &["user.created", "ticket.closed"], true);
    });
    let (_driver, c) = browser(true).await;
    let base = h.base.clone();
    sign_in(&c, &base).await;
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    c.find(Locator::Css("form[action$='/test'] button")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Test delivered").await;

    // An absolute time with its zone, and the relative hint beside it.
    let cell = c.find(Locator::Css("#history td[data-label='Attempted time']")).await.unwrap().text().await.unwrap();
    let local = c.find(Locator::Css("#history time[data-local]")).await.unwrap().text().await.unwrap();
    let zone = c.execute("return new Intl.DateTimeFormat(undefined, {timeZoneName: 'short'}).formatToParts(new Date()).find(p => p.type === 'timeZoneName').value", vec![]).await.unwrap();
    assert!(local.contains(zone.as_str().unwrap()), "{local:?} names the zone {zone}");
    assert!(local.chars().filter(|c| *c == ':').count() >= 2, "hours, minutes and seconds: {local:?}");
    assert!(cell.contains("just now") || cell.contains(" ago"), "the relative hint: {cell:?}");

    // A filter that matches nothing says so.
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    c.find(Locator::LinkText("History")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("#history")).await.unwrap();
    let history = c.current_url().await.unwrap();
    c.goto(&format!("{history}?event=ticket.closed")).await.unwrap();
    let page = text(&c).await;
    assert!(page.contains("No deliveries match this filter"), "{page}");
    assert!(!page.contains("No deliveries yet"), "{page}");
    c.find(Locator::LinkText("Clear the filter")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("#history")).await.unwrap();

    // Details lead with the outcome; the request comes after.
    let details = c.find(Locator::Css("a[data-details]")).await.unwrap().attr("href").await.unwrap().unwrap();
    c.goto(&format!("{base}{details}")).await.unwrap();
    let page = text(&c).await;
    let outcome = page.find("HTTP 200").unwrap_or_else(|| panic!("no outcome: {page}"));
    assert!(outcome < page.find("Payload").unwrap() && outcome < page.find("Request headers").unwrap(), "{page}");
    c.set_window_size(360, 800).await.unwrap();
    c.goto(&format!("{base}{details}")).await.unwrap();
    let width = c.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
    assert!(width.as_u64().unwrap() <= 360, "the details page is {width} px wide at 360");
    c.set_window_size(1280, 900).await.unwrap();
    // In the modal, no second set of breadcrumbs.
    c.goto(history.as_str()).await.unwrap();
    c.find(Locator::Css("a[data-details]")).await.unwrap().click().await.unwrap();
    let dialog = c.wait().for_element(Locator::Css("dialog#wh-details[open]")).await.unwrap();
    assert!(dialog.find(Locator::Css(".wh-crumbs")).await.is_err(), "the modal repeats the breadcrumbs");
    assert!(dialog.text().await.unwrap().contains("HTTP 200"));
    c.close().await.unwrap();
}

/// #13 item 8: an invalid form leads the admin to each problem, with
/// JavaScript and without: the page comes back at the form's own address,
/// "Error: " leads the title, the keyboard starts on the error summary,
/// which lists every error in plain words, each linked to its field (marked
/// invalid and described by the same words); fixed, the form creates exactly
/// one webhook. At 360 px the summary fits the screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_lead_the_admin_to_each_field() {
    use fantoccini::key::Key;
    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    let base = h.base.clone();
    let new_form = format!("{MOUNT}/new");
    for javascript in [true, false] {
        let (_driver, c) = browser(javascript).await;
        sign_in(&c, &base).await;
        c.goto(&format!("{base}{new_form}")).await.unwrap();
        // No name, no scheme, no events.
        c.find(Locator::Id("wh-url")).await.unwrap().send_keys("example.com/hooks").await.unwrap();
        c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Css("[data-error-summary]")).await.unwrap();

        assert_eq!(c.current_url().await.unwrap().path(), new_form, "js={javascript}: still the form's address");
        assert!(c.title().await.unwrap().starts_with("Error: Create webhook"), "js={javascript}");
        let focused = c
            .execute(
                "return document.activeElement.matches('[data-error-summary][role=alert][tabindex=\"-1\"]')",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(focused, json!(true), "js={javascript}: the summary has the focus");
        let summary = c.find(Locator::Css("[data-error-summary]")).await.unwrap().text().await.unwrap();
        assert!(summary.starts_with("There is a problem"), "{summary}");

        // Every error, linked to its field, which is marked invalid and
        // described by the same words.
        let links = c
            .execute(
                "return [...document.querySelectorAll('[data-error-summary] a')].map(a => {\
                   const t = document.getElementById(a.getAttribute('href').slice(1));\
                   const own = t && (t.getAttribute('aria-describedby') || '').includes('-err');\
                   const holder = own ? t : t && t.closest('fieldset[aria-describedby]');\
                   const msg = (holder ? holder.getAttribute('aria-describedby').split(' ') : [])\
                     .map(i => document.getElementById(i)).filter(e => e && e.classList.contains('wh-err'))\
                     .map(e => e.textContent.replace('Error: ', '').trim()).join(' ');\
                   return [a.getAttribute('href'), a.textContent.trim(), t && t.getAttribute('aria-invalid'), msg];\
                 })",
                vec![],
            )
            .await
            .unwrap();
        let name_msg = "Enter a name, for example \u{201c}Billing CRM\u{201d}.";
        let url_msg = "Add https:// in front of the address (for example https://example.com/hooks).";
        let events_msg = "Choose at least one event.";
        assert_eq!(
            links,
            json!([
                ["#wh-name", name_msg, "true", name_msg],
                ["#wh-url", url_msg, "true", url_msg],
                ["#wh-events", events_msg, "true", events_msg],
            ]),
            "js={javascript}"
        );

        if !javascript {
            // Readable at 360 px: the summary wraps, nothing is wider than the screen.
            c.set_window_size(360, 800).await.unwrap();
            let widths = c
                .execute(
                    "return [document.documentElement.scrollWidth,\
                             Math.ceil(document.querySelector('[data-error-summary]').getBoundingClientRect().right)]",
                    vec![],
                )
                .await
                .unwrap();
            let w: Vec<u64> = serde_json::from_value(widths).unwrap();
            assert!(w[0] <= 360 && w[1] <= 360, "at 360 px: page {} px, summary ends at {} px", w[0], w[1]);
            shot(&c, "validation-360").await;
            c.set_window_size(1280, 900).await.unwrap();
        }

        // The keyboard: Tab from the summary reaches its first link; the
        // second link, followed, puts the caret in the URL box.
        c.active_element().await.unwrap().send_keys(&Key::Tab).await.unwrap();
        let first = c.execute("return document.activeElement.getAttribute('href')", vec![]).await.unwrap();
        assert_eq!(first, json!("#wh-name"), "js={javascript}: Tab from the summary");
        c.active_element().await.unwrap().send_keys(&Key::Tab).await.unwrap();
        c.active_element().await.unwrap().send_keys(&Key::Enter).await.unwrap();
        let mut at = json!(null);
        for _ in 0..50 {
            at = c.execute("return document.activeElement.id", vec![]).await.unwrap();
            if at == json!("wh-url") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(at, json!("wh-url"), "js={javascript}: the link leads to the field");

        // Fixed, one webhook, back on the list.
        let name = format!("Validated js={javascript}");
        let url = c.find(Locator::Id("wh-url")).await.unwrap();
        url.clear().await.unwrap();
        url.send_keys(&r.url("/ok/validation")).await.unwrap();
        c.find(Locator::Id("wh-name")).await.unwrap().send_keys(&name).await.unwrap();
        c.find(Locator::Css("input[name=events][value='user.created']")).await.unwrap().click().await.unwrap();
        c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
        wait_text(&c, "was created").await;
        assert_eq!(c.current_url().await.unwrap().path(), MOUNT);
        assert_eq!(count(&h, &format!("SELECT COUNT(*) FROM webhooks WHERE name = '{name}'")), 1);

        // The edit form keeps its address too.
        let id = count(&h, &format!("SELECT id FROM webhooks WHERE name = '{name}'"));
        let edit = format!("{MOUNT}/{id}/edit");
        c.goto(&format!("{base}{edit}")).await.unwrap();
        c.find(Locator::Id("wh-name")).await.unwrap().clear().await.unwrap();
        c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Css("[data-error-summary]")).await.unwrap();
        assert_eq!(c.current_url().await.unwrap().path(), edit, "js={javascript}");
        let focused = c.execute("return document.activeElement.hasAttribute('data-error-summary')", vec![]).await;
        assert_eq!(focused.unwrap(), json!(true), "js={javascript}");
        assert!(c.title().await.unwrap().starts_with("Error: Edit "));
        c.close().await.unwrap();
    }
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhooks"), 2);
}

/// Health at a glance (#13): real deliveries through the real host — two
/// failures from `/status/500`, six successes from `/ok`, two slower ones
/// from `/slow/150` and a test send (not counted) — show on the history page
/// without JavaScript: the table has each hour's exact counts, success rate
/// and p50/p95 (the upper bound of the latency bucket the attempts' own
/// durations fall in), and the SVG a bar and a latency mark per hour with
/// attempts, sized by those numbers. Light at 1280 px, dark at 360 px, where
/// only the table scrolls (within its own box).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_chart_shows_known_attempts() {
    if !browsers_present() {
        return;
    }
    // One attempt per event: a failure is final, so the count is known.
    let h = host_with(&[("WEBHOOKS_RETRY_SCHEDULE", "0s")]);
    let r = Receiver::start();
    let api = |method: reqwest::Method, path: &str, body: serde_json::Value| {
        let resp = h.api().request(method, format!("{}{path}", h.base)).bearer_auth(TOKEN).json(&body).send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<serde_json::Value>().unwrap_or_default())
    };
    let id = tokio::task::block_in_place(|| {
        let (s, w) = api(
            reqwest::Method::POST,
            "/api/webhooks",
            json!({"name": "Health", "url": r.url("/status/500/health"), "events": ["user.created"]}),
        );
        assert_eq!(s, 201, "{w}");
        w["id"].as_i64().unwrap()
    });
    let mut sent = 0;
    for (path, n) in [("/status/500/health", 2), ("/ok/health", 6), ("/slow/150/health", 2)] {
        tokio::task::block_in_place(|| {
            let (s, w) = api(reqwest::Method::PATCH, &format!("/api/webhooks/{id}"), json!({"url": r.url(path)}));
            assert_eq!(s, 200, "{w}");
            for i in 0..n {
                let (s, body) =
                    h.raise(json!({"type": "user.created", "data": {"id": sent + i + 1, "email": "ada@example.com"}}));
                assert_eq!(s, 202, "{body}");
            }
        });
        sent += n;
        for _ in 0..400 {
            if count(&h, "SELECT COUNT(*) FROM attempts") == sent {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(count(&h, "SELECT COUNT(*) FROM attempts"), sent, "every event to {path} was attempted once");
    }
    assert_eq!(r.count_at("/status/500/health") + r.count_at("/ok/health") + r.count_at("/slow/150/health"), 10);
    // A test send: in the history, not in the health view.
    tokio::task::block_in_place(|| {
        let (s, loc, _) = h.admin().post(&format!("{MOUNT}/{id}/test"), &[]);
        assert_eq!((s, loc.ends_with("/history")), (303, true));
    });
    assert_eq!(count(&h, "SELECT COUNT(*) FROM attempts"), 11);

    // What the page must say, worked out here from the attempts the host
    // stored, per UTC hour (the run may straddle one): attempts, successes,
    // and the latency buckets of the answered ones (upper bounds, in ms).
    const BOUNDS: [i64; 15] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];
    let words = |b: i64| if b >= 1000 { format!("≤ {} s", b / 1000) } else { format!("≤ {b} ms") };
    let mut hours: std::collections::BTreeMap<i64, (i64, i64, Vec<i64>)> = Default::default();
    {
        let rows = h.rows(
            "SELECT a.attempted_at / 3600000 * 3600000, a.success, a.duration_ms, a.response_status FROM attempts a \
             JOIN deliveries d ON d.id = a.delivery_id JOIN events e ON e.id = d.event_id \
             WHERE e.type <> 'test.webhook' ORDER BY a.duration_ms",
            &[],
        );
        for row in rows {
            let (hour, ok, ms, status) = (row[0].int(), row[1].int(), row[2].int(), row[3].opt_int());
            let e = hours.entry(hour).or_default();
            e.0 += 1;
            e.1 += ok;
            assert!(status.is_some(), "every attempt was answered");
            e.2.push(BOUNDS.iter().copied().find(|b| ms <= *b).unwrap_or(i64::MAX));
        }
    }
    assert_eq!(hours.values().map(|e| e.0).sum::<i64>(), 10);
    assert_eq!(hours.values().map(|e| e.1).sum::<i64>(), 8, "the six from /ok and two from /slow");
    let nearest_rank = |sorted: &[i64], pct: usize| sorted[(sorted.len() * pct).div_ceil(100).max(1) - 1];

    let (_driver, c) = browser(false).await;
    let base = h.base.clone();
    sign_in(&c, &base).await;
    c.goto(&format!("{base}{MOUNT}/{id}/history")).await.unwrap();
    c.wait().for_element(Locator::Id("wh-health-table-hours")).await.unwrap();
    assert!(text(&c).await.contains("test.webhook"), "the test send is in the history list");
    let cells = |period: &'static str, row: &'static str| {
        let c = c.clone();
        async move {
            let mut out = Vec::new();
            let sel = format!("#wh-health-table-{period} tr[data-row={row}] td");
            for td in c.find_all(Locator::Css(&sel)).await.unwrap() {
                out.push(td.prop("textContent").await.unwrap().unwrap_or_default());
            }
            out
        }
    };
    let columns = c.find_all(Locator::Css("#wh-health-table-hours thead time")).await.unwrap();
    let mut starts = Vec::new();
    for t in &columns {
        starts.push(t.attr("datetime").await.unwrap().unwrap());
    }
    assert_eq!(starts.len(), 24, "one column per hour");
    let (attempts, succeeded, rate, p50, p95) = (
        cells("hours", "attempts").await,
        cells("hours", "succeeded").await,
        cells("hours", "rate").await,
        cells("hours", "p50").await,
        cells("hours", "p95").await,
    );
    let iso = |ms: i64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
    };
    for (hour, (n, ok, lat)) in &hours {
        let i = starts.iter().position(|s| *s == iso(*hour)).unwrap_or_else(|| panic!("no column {}", iso(*hour)));
        assert_eq!(attempts[i], n.to_string(), "{}", starts[i]);
        assert_eq!(succeeded[i], ok.to_string(), "{}", starts[i]);
        let tenths = (ok * 2000 + n) / (2 * n);
        let want =
            if tenths % 10 == 0 { format!("{}%", tenths / 10) } else { format!("{}.{}%", tenths / 10, tenths % 10) };
        assert_eq!(rate[i], want, "{}", starts[i]);
        assert_eq!(p50[i], words(nearest_rank(lat, 50)), "{}", starts[i]);
        assert_eq!(p95[i], words(nearest_rank(lat, 95)), "{}", starts[i]);
    }
    let empty = attempts.iter().filter(|a| *a == "0").count();
    assert_eq!(empty, 24 - hours.len(), "every other hour is empty: {attempts:?}");
    assert!(rate.iter().filter(|r| *r == "–").count() == empty && p95.iter().filter(|p| *p == "–").count() == empty);
    let totals = c.find(Locator::Css("#wh-health-hours .wh-health-totals")).await.unwrap().text().await.unwrap();
    assert!(totals.starts_with("10 attempts · 80% succeeded · p50 "), "{totals}");
    let days = cells("days", "attempts").await;
    assert_eq!(days.len(), 30);
    assert_eq!(days.iter().map(|d| d.parse::<i64>().unwrap()).sum::<i64>(), 10);

    // The chart: per hour with attempts, a green bar for the successes'
    // share (the panel is 56 high), a red one for the failures', a p50 dot
    // and a p95 bar.
    let svg = c.find(Locator::Css("#wh-health-hours svg[role=img]")).await.unwrap();
    let label = svg.attr("aria-label").await.unwrap().unwrap();
    assert!(label.starts_with("Last 24 hours, per UTC hour: 10 attempts, 80% succeeded; latency p50 "), "{label}");
    assert_eq!(svg.find_all(Locator::Css("g.wh-chart-slot")).await.unwrap().len(), hours.len());
    assert_eq!(svg.find_all(Locator::Css("circle.wh-chart-p50")).await.unwrap().len(), hours.len());
    assert_eq!(svg.find_all(Locator::Css("line.wh-chart-p95")).await.unwrap().len(), hours.len());
    let with = |f: fn(&(i64, i64, Vec<i64>)) -> bool| hours.values().filter(|e| f(e)).count();
    assert_eq!(svg.find_all(Locator::Css("rect.wh-chart-ok")).await.unwrap().len(), with(|e| e.1 > 0));
    assert_eq!(svg.find_all(Locator::Css("rect.wh-chart-bad")).await.unwrap().len(), with(|e| e.1 < e.0));
    for (hour, (n, ok, _)) in &hours {
        let g = svg.find(Locator::Css(&format!("g[data-start='{}']", iso(*hour)))).await.unwrap();
        if *ok > 0 {
            let height = g.find(Locator::Css("rect.wh-chart-ok")).await.unwrap().attr("height").await.unwrap().unwrap();
            let want = *ok as f64 / *n as f64 * 56.0;
            assert!((height.parse::<f64>().unwrap() - want).abs() < 0.01, "{height} for {ok} of {n}");
        }
        let tip = g.find(Locator::Css("title")).await.unwrap().prop("textContent").await.unwrap().unwrap();
        assert!(tip.contains(&format!("{n} attempts, {ok} succeeded")), "{tip}");
    }
    shot(&c, "health").await;
    c.close().await.unwrap();

    // Dark, at 360 px: the colours follow the preference, the chart fits the
    // screen, and only the table scrolls, inside its own box.
    let (_driver, c) = browser_with(true, &["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]).await;
    sign_in(&c, &base).await;
    c.set_window_size(360, 800).await.unwrap();
    c.goto(&format!("{base}{MOUNT}/{id}/history")).await.unwrap();
    c.wait().for_element(Locator::Id("wh-health-hours")).await.unwrap();
    let look = c
        .execute(
            "const lum = (e, p) => { const m = getComputedStyle(e)[p].match(/[0-9.]+/g).map(Number);\
               const l = m.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4 });\
               return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2] };\
             const svg = document.querySelector('#wh-health-hours svg');\
             const wrap = document.querySelector('#wh-health-hours .wh-htable-wrap');\
             return { dark: matchMedia('(prefers-color-scheme: dark)').matches,\
               period: lum(document.querySelector('.wh-period'), 'backgroundColor'),\
               axis: lum(svg.querySelector('text'), 'fill'),\
               ok: getComputedStyle(svg.querySelector('.wh-chart-p50')).fill,\
               page: document.documentElement.scrollWidth,\
               svg: svg.getBoundingClientRect().width,\
               wrap: [wrap.clientWidth, wrap.scrollWidth] }",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(look["dark"], json!(true), "{look}");
    assert!(look["period"].as_f64().unwrap() < 0.05, "the panel is dark: {look}");
    assert!(look["axis"].as_f64().unwrap() > 0.2, "the axis text stays readable: {look}");
    assert_eq!(look["ok"], json!("rgb(68, 147, 248)"), "the dark palette's blue: {look}");
    assert!(look["page"].as_u64().unwrap() <= 360, "nothing but the table scrolls: {look}");
    assert!(look["svg"].as_f64().unwrap() <= 340.0, "the chart fits: {look}");
    assert!(
        look["wrap"][1].as_u64().unwrap() > look["wrap"][0].as_u64().unwrap(),
        "the table scrolls within its box: {look}"
    );
    c.execute("document.getElementById('wh-health-title').scrollIntoView()", vec![]).await.unwrap();
    shot(&c, "health-dark-360").await;
    c.close().await.unwrap();
}

/// The signature playground (#13) fed what a real receiver got: a genuine
/// delivery verifies and names the current secret; after a rotation the
/// delivery signed before it verifies with the rotating secret; a tampered
/// body, an old timestamp and a wrong secret each get their own explanation.
/// No secret is ever on the page; the form works without JavaScript; the
/// result fits 360 px; the receiver code has a Copy button only with
/// JavaScript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_playground_explains_each_failure() {
    const FIRST: &str = "whsec_cGxheWdyb3VuZCBmaXJzdCBzZWNyZXQgMDEyMzQ1";
    const SECOND: &str = "whsec_cGxheWdyb3VuZCBzZWNvbmQgc2VjcmV0IDY3ODk=";
    const STRANGER: &str = "whsec_c29tZWJvZHkgZWxzZSdzIHNlY3JldA==";

    /// The headers as a receiver's log prints them (`Name: value`), some replaced.
    fn headers_of(s: &Seen, replace: &[(&str, String)]) -> String {
        let mut out = String::new();
        for (k, v) in &s.headers {
            let v = replace.iter().find(|(n, _)| *n == k.as_str()).map_or(v.to_str().unwrap(), |(_, x)| x.as_str());
            out.push_str(&format!("{}: {v}\n", k.as_str()));
        }
        out
    }

    /// Pastes into the history page's form and submits; answers the result's
    /// text and its findings' codes, after checking no secret is on the page.
    async fn check(c: &Client, history: &str, headers: String, body: String) -> (String, Vec<String>) {
        c.goto(history).await.unwrap();
        c.find(Locator::Css("#verify > summary")).await.unwrap().click().await.unwrap();
        for (field, value) in [("wh-pg-headers", headers), ("wh-pg-body", body)] {
            let e = c.find(Locator::Id(field)).await.unwrap();
            e.clear().await.unwrap();
            e.send_keys(&value).await.unwrap();
        }
        c.find(Locator::Css(".wh-playground button[type=submit]")).await.unwrap().click().await.unwrap();
        let verdict = c.wait().for_element(Locator::Id("wh-verdict")).await.unwrap().text().await.unwrap();
        let mut codes = Vec::new();
        for f in c.find_all(Locator::Css("#wh-verdict [data-finding]")).await.unwrap() {
            codes.push(f.attr("data-finding").await.unwrap().unwrap());
        }
        let source = c.source().await.unwrap();
        for secret in [FIRST, SECOND, STRANGER] {
            assert!(!source.contains(secret) && !source.contains(&secret["whsec_".len()..]), "a secret on the page");
        }
        (verdict, codes)
    }

    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    let url = r.url("/ok/pg");
    let (id, got) = tokio::task::block_in_place(|| {
        h.admin().create("Playground", &url, FIRST, &["user.created"], true);
        let id = count(&h, "SELECT id FROM webhooks WHERE name = 'Playground'");
        let (s, _) = h.raise(json!({"type": "user.created", "id": "pg-1", "data": example_data("user.created")}));
        assert_eq!(s, 202);
        (id, r.wait_for("/ok/pg", 1, Duration::from_secs(10)).remove(0))
    });
    let body = String::from_utf8(got.body.to_vec()).unwrap();
    let msg_id = got.header("webhook-id");

    let (_driver, c) = browser(true).await;
    let base = h.base.clone();
    sign_in(&c, &base).await;
    let history = format!("{base}{MOUNT}/{id}/history");

    // The genuine delivery, as the receiver got it.
    let (v, codes) = check(&c, &history, headers_of(&got, &[]), body.clone()).await;
    assert!(v.contains("Verified with the current secret."), "{v}");
    assert!(codes.is_empty(), "{v}");
    // What was pasted stays in the form for another try.
    assert_eq!(c.find(Locator::Id("wh-pg-body")).await.unwrap().prop("value").await.unwrap().unwrap(), body);
    c.find(Locator::LinkText("View this delivery")).await.unwrap().click().await.unwrap();
    wait_text(&c, &msg_id).await;

    // Rotate to a new secret: the delivery signed before verifies with the old one.
    tokio::task::block_in_place(|| {
        let form = [
            ("name", "Playground"),
            ("url", url.as_str()),
            ("events", "user.created"),
            ("enabled", "on"),
            ("secret_action", "rotate"),
            ("secret", SECOND),
        ];
        assert_eq!(h.admin().post(&format!("{MOUNT}/{id}"), &form).0, 303);
    });
    let (v, codes) = check(&c, &history, headers_of(&got, &[]), body.clone()).await;
    assert!(v.contains("Verified with the rotating (previous) secret") && v.contains("until"), "{v}");
    assert!(codes.is_empty(), "{v}");

    // A tampered body: compared with the body sent; the signature itself genuine.
    let tampered = body.replacen("\"data\":{", "\"data\":{\"tampered\":true,", 1);
    let (v, codes) = check(&c, &history, headers_of(&got, &[]), tampered).await;
    assert!(v.contains("Does not verify.") && v.contains("The body differs from the one this webhook sent"), "{v}");
    assert!(v.contains("First difference at byte") && v.contains("tampered"), "{v}");
    assert!(v.contains("The signature itself is genuine") && v.contains("rotating (previous) secret"), "{v}");
    assert_eq!(codes, ["body-changed", "signature-genuine"], "{v}");
    shot(&c, "playground").await;
    // The result reads at 360 px without scrolling sideways.
    c.set_window_size(360, 800).await.unwrap();
    let width = c.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
    assert!(width.as_u64().unwrap() <= 360, "the result page is {width} px wide at 360");
    c.set_window_size(1280, 900).await.unwrap();

    // An hour-old timestamp, signed with the current secret.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let sign = |secret: &str, ts: i64| {
        standardwebhooks::Webhook::new(secret).unwrap().sign(&msg_id, ts, body.as_bytes()).unwrap()
    };
    let old = [("webhook-timestamp", (now - 3600).to_string()), ("webhook-signature", sign(SECOND, now - 3600))];
    let (v, codes) = check(&c, &history, headers_of(&got, &old), body.clone()).await;
    assert!(v.contains("The timestamp is 1 h") && v.contains(" old."), "{v}");
    assert!(v.contains("Apart from the time it verifies: the signature matches the current secret"), "{v}");
    assert_eq!(codes, ["too-old"], "{v}");

    // Signed just now, but with a secret that is not this webhook's.
    let wrong = [("webhook-timestamp", now.to_string()), ("webhook-signature", sign(STRANGER, now))];
    let (v, codes) = check(&c, &history, headers_of(&got, &wrong), body.clone()).await;
    assert!(v.contains("The signature was made with another secret"), "{v}");
    assert!(v.contains("Neither the current secret nor the rotating one"), "{v}");
    assert_eq!(codes, ["wrong-secret"], "{v}");

    // The receiver code: the endpoint's own URL, and a Copy button.
    c.goto(&history).await.unwrap();
    c.find(Locator::Css("#receiver-code > summary")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css(".wh-snippet[data-lang=python] > summary")).await.unwrap().click().await.unwrap();
    let code = c.find(Locator::Id("wh-snippet-python")).await.unwrap().text().await.unwrap();
    assert!(code.contains("from standardwebhooks import Webhook") && code.contains(&url), "{code}");
    let copy = c.find(Locator::Css("button[data-copy=wh-snippet-python]")).await.unwrap();
    assert!(copy.is_displayed().await.unwrap(), "Copy shows with JavaScript");
    copy.click().await.unwrap();
    let mut label = String::new();
    for _ in 0..100 {
        label = copy.text().await.unwrap();
        if label != "Copy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(label == "Copied" || label == "Selected: press Ctrl+C", "{label}");
    // Open code scrolls inside its box at 360 px; the page does not.
    c.set_window_size(360, 800).await.unwrap();
    let width = c.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
    assert!(width.as_u64().unwrap() <= 360, "the history page with code open is {width} px wide at 360");
    c.close().await.unwrap();

    // Without JavaScript: the form is a plain post; no Copy button.
    let (_driver, c) = browser(false).await;
    sign_in(&c, &base).await;
    c.goto(&history).await.unwrap();
    c.find(Locator::Css("#receiver-code > summary")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css(".wh-snippet[data-lang=rust] > summary")).await.unwrap().click().await.unwrap();
    assert!(c.find(Locator::Id("wh-snippet-rust")).await.unwrap().is_displayed().await.unwrap());
    let copy = c.find(Locator::Css("button[data-copy=wh-snippet-rust]")).await.unwrap();
    assert!(!copy.is_displayed().await.unwrap(), "no Copy button without JavaScript");
    let cut = [("webhook-signature", "v1,".to_owned())];
    let (v, codes) = check(&c, &history, headers_of(&got, &cut), body.clone()).await;
    assert!(v.contains("The webhook-signature header is malformed"), "{v}");
    assert_eq!(codes, ["malformed-signature"], "{v}");
    c.close().await.unwrap();

    // Dark, as the admin's system prefers: the result, the boxes, the code.
    let (_driver, c) = browser_with(true, &["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]).await;
    sign_in(&c, &base).await;
    let (v, _) = check(&c, &history, headers_of(&got, &[]), body.clone()).await;
    assert!(v.contains("Verified with the rotating"), "{v}");
    let luminance = |selector: &'static str, property: &'static str| {
        let c = c.clone();
        async move {
            let script = format!(
                "const m = getComputedStyle(document.querySelector('{selector}'))['{property}'].match(/[0-9.]+/g).map(Number);\
                 const l = m.slice(0, 3).map(v => {{ v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4 }});\
                 return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2]"
            );
            c.execute(&script, vec![]).await.unwrap().as_f64().unwrap()
        }
    };
    assert!(luminance("#wh-verdict", "backgroundColor").await < 0.05, "the verdict box");
    assert!(luminance("#wh-verdict", "color").await > 0.7, "its text");
    assert!(luminance("#wh-pg-body", "backgroundColor").await < 0.05, "the body box");
    assert!(luminance("#wh-pg-body", "color").await > 0.7, "pasted text");
    c.goto(&history).await.unwrap();
    assert!(luminance("#receiver-code", "backgroundColor").await < 0.05, "the receiver code panel");
    assert!(luminance("#wh-snippet-php", "color").await > 0.7, "code");
    c.close().await.unwrap();
}

/// #24: custom header rows (added in the form, a sealed value kept without
/// being shown), the payload filter with its "not sent" list, and the
/// dashboard's banner for a failing and an automatically disabled webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_headers_filter_and_notices_in_the_browser() {
    if !browsers_present() {
        return;
    }
    let h = host_with(&[("WEBHOOKS_AUTO_DISABLE_AFTER", "3s"), ("WEBHOOKS_RETRY_SCHEDULE", "0s,2500ms,2500ms,60s")]);
    let r = Receiver::start();
    let (_driver, c) = browser(true).await;
    let base = h.base.clone();
    sign_in(&c, &base).await;
    c.goto(&format!("{base}{MOUNT}/new")).await.unwrap();
    c.wait().for_element(Locator::Id("wh-name")).await.unwrap();
    c.find(Locator::Id("wh-name")).await.unwrap().send_keys("CRM with headers").await.unwrap();
    c.find(Locator::Id("wh-url")).await.unwrap().send_keys(&r.url("/ok/crm")).await.unwrap();
    c.find(Locator::Css("input[name=events][value='user.created']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("wh-header-name-0")).await.unwrap().send_keys("X-Tenant").await.unwrap();
    c.find(Locator::Id("wh-header-value-0")).await.unwrap().send_keys("acme").await.unwrap();
    click_and_load(&c, Locator::Css("button[name=add_header]")).await;
    let kept = c.find(Locator::Id("wh-header-name-0")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert_eq!(kept, "X-Tenant", "the rows typed so far come back");
    c.find(Locator::Id("wh-header-name-1")).await.unwrap().send_keys("Authorization").await.unwrap();
    c.find(Locator::Id("wh-header-value-1")).await.unwrap().send_keys("Bearer browser-secret-1").await.unwrap();
    c.find(Locator::Id("wh-filter")).await.unwrap().send_keys("@.id >= 10").await.unwrap();
    let header_rows = c.find(Locator::Css("[data-headers]")).await.unwrap();
    header_rows.find(Locator::Css("legend")).await.unwrap();
    c.execute("document.querySelector('[data-headers]').scrollIntoView()", vec![]).await.unwrap();
    shot(&c, "controls-form").await;
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was created").await;
    let id = count(&h, "SELECT id FROM webhooks WHERE name = 'CRM with headers'");

    // Edit: the sealed value is never sent back to the page; saving keeps
    // it. "Remove" drops a row.
    c.goto(&format!("{base}{MOUNT}/{id}/edit")).await.unwrap();
    c.wait().for_element(Locator::Id("wh-header-value-1")).await.unwrap();
    assert!(!c.source().await.unwrap().contains("browser-secret-1"), "never shown again");
    let sealed = c.find(Locator::Id("wh-header-value-1")).await.unwrap();
    assert_eq!(sealed.prop("value").await.unwrap().as_deref(), Some(""));
    assert!(sealed.attr("placeholder").await.unwrap().unwrap_or_default().contains("empty keeps it"));
    click_and_load(&c, Locator::Css("button[name=remove_header][value='0']")).await;
    let first = c.find(Locator::Id("wh-header-name-0")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert_eq!(first, "Authorization");
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was saved").await;

    // The filter at work: id 5 is not sent, id 11 is, with the kept header.
    let got = tokio::task::block_in_place(|| {
        h.raise(json!({"type": "user.created", "id": "small-5", "data": {"id": 5, "email": "a@example.com"}}));
        h.raise(json!({"type": "user.created", "id": "big-11", "data": {"id": 11, "email": "b@example.com"}}));
        r.wait_for("/ok/crm", 1, Duration::from_secs(10))
    });
    assert_eq!(got[0].json()["data"]["id"], 11);
    assert_eq!(got[0].header("authorization"), "Bearer browser-secret-1");
    assert_eq!(got[0].header("x-tenant"), "", "removed");
    c.goto(&format!("{base}{MOUNT}/{id}/history")).await.unwrap();
    wait_text(&c, "Not sent: filtered out").await;
    assert!(text(&c).await.contains("small-5"));
    c.execute("document.querySelector('#filtered').scrollIntoView()", vec![]).await.unwrap();
    shot(&c, "history-filtered").await;

    // Notices: "Broken" fails until it is disabled; "Flaky" starts failing.
    let create = |name: &str, url: String, events: &[&str]| {
        let r = h
            .api()
            .post(format!("{}/api/webhooks", h.base))
            .bearer_auth(TOKEN)
            .json(&json!({"name": name, "url": url, "events": events}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    };
    tokio::task::block_in_place(|| {
        create("Broken", r.url("/status/503/broken"), &["server.created"]);
        create("Flaky", r.url("/status/500/flaky"), &["ticket.closed"]);
        create("Ops channel", r.url("/ok/ops"), &["webhook.failing", "webhook.disabled"]);
        h.raise(json!({"type": "server.created", "data": {"id": 7, "user_id": 42, "status": "active"}}));
    });
    for _ in 0..400 {
        if count(&h, "SELECT COUNT(*) FROM webhooks WHERE name = 'Broken' AND enabled = 0") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhooks WHERE name = 'Broken' AND enabled = 0"), 1);
    tokio::task::block_in_place(|| {
        h.raise(json!({"type": "ticket.closed", "data": {"id": 1, "user_id": 42, "status": "closed"}}));
        r.wait_for("/status/500/flaky", 1, Duration::from_secs(10));
    });
    for _ in 0..660 {
        if count(&h, "SELECT COUNT(*) FROM webhooks WHERE name = 'Flaky' AND failing_noticed IS NOT NULL") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    c.goto(&format!("{base}{MOUNT}")).await.unwrap();
    wait_text(&c, "2 webhooks need attention").await;
    let banner = c.find(Locator::Css("[data-attention]")).await.unwrap().text().await.unwrap();
    assert!(banner.contains("Broken was disabled automatically") && banner.contains("Flaky is failing"), "{banner}");
    shot(&c, "dashboard-attention").await;
    let ops: Vec<String> =
        r.seen_at("/ok/ops").iter().map(|s| s.json()["type"].as_str().unwrap_or("").to_owned()).collect();
    assert!(ops.contains(&"webhook.disabled".to_owned()), "{ops:?}");
    c.close().await.unwrap();
}

/// #24 part 2: the rate limit in the form and on the dashboard. A bad value
/// comes back with its message linked from the summary, nothing created;
/// a good one is saved and shown back in the edit form; with a backlog the
/// dashboard says the webhook is held back by its rate limit, and a
/// webhook beside it without one does not say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_set_in_the_form_and_the_dashboard_shows_it_holding_back() {
    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    let (_driver, c) = browser(true).await;
    let base = h.base.clone();
    sign_in(&c, &base).await;
    c.goto(&format!("{base}{MOUNT}/new")).await.unwrap();
    c.find(Locator::Id("wh-name")).await.unwrap().send_keys("Throttled CRM").await.unwrap();
    c.find(Locator::Id("wh-url")).await.unwrap().send_keys(&r.url("/slow/50/limited")).await.unwrap();
    c.find(Locator::Css("input[name=events][value='user.created']")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("wh-rate-limit")).await.unwrap().send_keys("0").await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "There is a problem").await;
    let link = c.find(Locator::Css(".wh-error-summary a[href='#wh-rate-limit']")).await.unwrap();
    assert!(link.text().await.unwrap().contains("would never deliver"));
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhooks"), 0, "nothing created");
    link.click().await.unwrap();
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("wh-rate-limit"), "the link leads to the field");
    let field = c.find(Locator::Id("wh-rate-limit")).await.unwrap();
    assert_eq!(field.attr("aria-invalid").await.unwrap().as_deref(), Some("true"));
    field.clear().await.unwrap();
    field.send_keys("1").await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "was created").await;
    assert_eq!(count(&h, "SELECT rate_limit FROM webhooks WHERE name = 'Throttled CRM'"), 1);
    // A backlog: one a second goes to the limited webhook, the rest waits.
    tokio::task::block_in_place(|| {
        h.admin().create("Unlimited", &r.url("/ok/free"), "", &["user.created"], true);
        let events: Vec<_> = (1..=20)
            .map(|i| json!({"type": "user.created", "id": format!("evt-rl-{i}"), "data": {"id": i, "email": "ada@example.com"}}))
            .collect();
        assert_eq!(h.raise_batch(&events).0, 202);
        r.wait_for("/ok/free", 20, Duration::from_secs(20));
    });
    let mut held = false;
    for _ in 0..50 {
        c.goto(&format!("{base}{MOUNT}")).await.unwrap();
        if text(&c).await.contains("Held back by its rate limit") {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(held, "the dashboard never said the webhook is held back: {}", text(&c).await);
    let badges = c.find_all(Locator::Css("[data-held-back]")).await.unwrap();
    assert_eq!(badges.len(), 1, "only the limited webhook is held back");
    let row = c.find(Locator::Css("tr:has([data-held-back]) .wh-name")).await.unwrap();
    assert_eq!(row.text().await.unwrap(), "Throttled CRM");
    assert!(text(&c).await.contains("Limit: 1/s"));
    assert!(r.count_at("/slow/50/limited") < 20, "still waiting, at one a second");
    shot(&c, "dashboard-rate-limited").await;

    c.find(Locator::Css("tr:has([data-held-back]) a[href$='/edit']")).await.unwrap().click().await.unwrap();
    let field = c.wait().for_element(Locator::Id("wh-rate-limit")).await.unwrap();
    assert_eq!(field.prop("value").await.unwrap().as_deref(), Some("1"));
    c.execute("document.getElementById('wh-rate-limit').scrollIntoView({block: 'center'})", vec![]).await.unwrap();
    shot(&c, "form-rate-limit").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transformation_is_uploaded_tried_and_shown_in_the_delivery_details() {
    if !browsers_present() {
        return;
    }
    let h = host();
    let r = Receiver::start();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    // The example, built for wasm32-wasip2, as an admin would have it on disk.
    let (wasm, id) = tokio::task::block_in_place(|| {
        let wasm = example_component("transform-slack");
        let (s, v) = api(
            &h,
            "POST",
            "/api/webhooks",
            Some(
                json!({"name": "Team Slack", "url": r.url("/ok/slack"), "events": ["user.created", "ticket.created"], "secret": secret}),
            ),
        );
        assert_eq!(s, 201, "{v}");
        (wasm, v["id"].as_i64().unwrap())
    });
    let file = tempfile::Builder::new().suffix(".wasm").tempfile().unwrap();
    std::fs::write(file.path(), &wasm).unwrap();
    let (_driver, c) = browser(true).await;
    let base = h.base.clone();
    sign_in(&c, &base).await;
    c.goto(&format!("{base}{MOUNT}/{id}/edit")).await.unwrap();
    assert!(text(&c).await.contains("Upload a transformation above"), "nothing to try yet");
    c.find(Locator::Id("wh-transform")).await.unwrap().send_keys(&file.path().display().to_string()).await.unwrap();
    c.find(Locator::Css("form.wh-form button.wh-btn-primary")).await.unwrap().click().await.unwrap();
    wait_text(&c, "Its transformation was attached").await;
    assert_eq!(count(&h, "SELECT COUNT(*) FROM webhook_transforms"), 1);

    c.goto(&format!("{base}{MOUNT}/{id}/edit")).await.unwrap();
    wait_text(&c, "Attached:").await;
    c.execute("document.querySelector('[data-transform]').scrollIntoView({block: 'center'})", vec![]).await.unwrap();
    shot(&c, "form-transform").await;

    // Try it on the example event: the message Slack would get, nothing sent.
    c.find(Locator::Css("#try button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_text(&c, "would be sent").await;
    let body = c.find(Locator::Id("try-body")).await.unwrap().text().await.unwrap();
    assert!(body.contains("\"text\"") && body.contains("New user:"), "{body}");
    assert_eq!(r.seen().len(), 0, "trying sends nothing");
    c.execute("document.getElementById('try').scrollIntoView({block: 'start'})", vec![]).await.unwrap();
    shot(&c, "transform-try").await;

    // A real delivery: the receiver gets the Slack message, signed as sent.
    let (sent, delivery) = tokio::task::block_in_place(|| {
        h.raise(
            json!({"type": "user.created", "data": {"id": 42, "email": "ada@example.com", "name": "Ada Lovelace"}}),
        );
        let got = r.wait_for("/ok/slack", 1, Duration::from_secs(20));
        eventually(Duration::from_secs(10), "the attempt recorded", || h.count("SELECT COUNT(*) FROM attempts") == 1);
        (got[0].clone(), h.int("SELECT MIN(id) FROM deliveries", &[]))
    });
    assert_eq!(sent.json(), json!({"text": "New user: Ada Lovelace <ada@example.com> (id 42)"}));
    standardwebhooks::Webhook::new(secret).unwrap().verify(&sent.body, &sent.headers).unwrap();
    c.goto(&format!("{base}{MOUNT}/{id}/deliveries/{delivery}")).await.unwrap();
    wait_text(&c, "Body sent").await;
    let shown = c.find(Locator::Id("body-sent")).await.unwrap().text().await.unwrap();
    assert!(shown.contains("New user: Ada Lovelace"), "{shown}");
    c.execute("document.querySelector('[data-transform-result]').scrollIntoView({block: 'start'})", vec![])
        .await
        .unwrap();
    shot(&c, "delivery-transformed").await;
    c.close().await.unwrap();
}
