//! The admin pages' forms (`admin::handle`), as a browser without script
//! submits them.

use super::*;
use crate::admin::{self, Request, Response};

fn req(method: &str, path: &str, form: &[(&str, &str)]) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        form: form.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        actor: "alice".into(),
        ..Request::default()
    }
}

/// The hidden `form_id` of the create form.
fn form_id(h: &TestHost) -> String {
    let Response::Page { fragment, .. } = admin::handle(h, &req("GET", "/new", &[])) else { panic!("no form") };
    let m = "name=\"form_id\" value=\"";
    let i = fragment.find(m).expect("the create form carries a one-time id") + m.len();
    fragment[i..i + 32].to_owned()
}

fn create(h: &TestHost, name: &str, form_id: &str) -> (String, String) {
    let form = [("name", name), ("url", "https://a.example/h"), ("events", "user.created"), ("form_id", form_id)];
    match admin::handle(h, &req("POST", "/", &form)) {
        Response::Redirect { location, flash } => (location, flash.map(|f| f.message).unwrap_or_default()),
        _ => panic!("not a redirect"),
    }
}

/// #13 item 6: Back + resubmit of the create form creates nothing new.
#[test]
fn a_resubmitted_create_form_creates_one_webhook() {
    let h = TestHost::new();
    let id = form_id(&h);
    assert_ne!(id, form_id(&h), "one id per form");
    let (_, first) = create(&h, "CRM", &id);
    assert!(first.contains("was created"), "{first}");
    let (_, again) = create(&h, "CRM", &id);
    assert!(again.contains("already submitted") && again.contains("CRM"), "{again}");
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 1);
    // A new form is a new webhook.
    create(&h, "Billing", &form_id(&h));
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 2);
}

/// #13 item 6: a second webhook with a name already in use is created, with
/// a word about it.
#[test]
fn a_duplicate_name_is_pointed_out() {
    let h = TestHost::new();
    let (_, first) = create(&h, "CRM", &form_id(&h));
    assert!(!first.contains("same name"), "{first}");
    let (_, second) = create(&h, "CRM", &form_id(&h));
    assert!(second.contains("was created") && second.contains("same name"), "{second}");
}

const MOUNT: &str = "/admin/integrations/webhooks";

fn page(r: Response) -> (u16, String, String, bool) {
    match r {
        Response::Page { status, title, fragment, flash } => (status, title, fragment, flash.is_some()),
        other => panic!("not a page: {other:?}"),
    }
}

/// The hrefs of the error summary's links, in order.
fn summary_links(fragment: &str) -> Vec<String> {
    let start = fragment.find("data-error-summary").expect("an error summary");
    let end = start + fragment[start..].find("</div>").unwrap();
    fragment[start..end].split("<a href=\"#").skip(1).map(|s| s[..s.find('"').unwrap()].to_owned()).collect()
}

/// #13 item 8: an invalid create form comes back at the form's own address
/// (it posts to `/new`), led by an error summary that is focused on load and
/// links each error to its field; each field is marked invalid and
/// described by its message; the title says "Error: ". Fixed, the same form
/// creates one webhook, and its one-time id still holds.
#[test]
fn an_invalid_create_form_comes_back_at_its_address_with_a_summary() {
    let h = TestHost::new();
    let (_, _, blank, _) = page(admin::handle(&h, &req("GET", "/new", &[])));
    assert!(blank.contains(&format!("action=\"{MOUNT}/new\"")), "the create form posts to its own address");
    assert!(!blank.contains("data-error-summary") && !blank.contains("aria-invalid"), "no errors yet");
    let id = form_id(&h);

    let bad = [("name", ""), ("url", "example.com/hooks"), ("secret", "short"), ("form_id", id.as_str())];
    let (status, title, f, flash) = page(admin::handle(&h, &req("POST", "/new", &bad)));
    assert_eq!((status, title.as_str(), flash), (422, "Error: Create webhook", false));
    assert!(
        f.contains(
            "<div class=\"wh-error-summary\" role=\"alert\" aria-labelledby=\"wh-error-summary-title\" tabindex=\"-1\" autofocus data-error-summary>"
        ),
        "{f}"
    );
    assert!(f.contains("<h2 id=\"wh-error-summary-title\">There is a problem</h2>"));
    assert!(f.find("data-error-summary").unwrap() < f.find("<form").unwrap(), "the summary leads the form");
    assert_eq!(summary_links(&f), ["wh-name", "wh-url", "wh-secret", "wh-events"], "every error, in page order");
    for (link, text) in [
        ("wh-name", "Enter a name, for example"),
        ("wh-url", "Add https:// in front of the address (for example https://example.com/hooks)."),
        ("wh-secret", "Use a secret of at least 8 characters"),
        ("wh-events", "Choose at least one event."),
    ] {
        assert!(f.contains(&format!("<li><a href=\"#{link}\">{text}")), "{link}: {f}");
    }
    for (id, described) in [("wh-name", "wh-name-help wh-name-err"), ("wh-url", "wh-url-help wh-url-err")] {
        assert!(f.contains(&format!("id=\"{id}\"")));
        let tag = &f[f.find(&format!("<input id=\"{id}\"")).unwrap()..];
        let tag = &tag[..tag.find('>').unwrap()];
        assert!(
            tag.contains(&format!("aria-describedby=\"{described}\"")) && tag.contains("aria-invalid=\"true\""),
            "{tag}"
        );
    }
    let secret = &f[f.find("<input id=\"wh-secret\"").unwrap()..];
    let secret = &secret[..secret.find('>').unwrap()];
    assert!(
        secret.contains("aria-describedby=\"wh-secret-help wh-secret-err\"")
            && secret.contains("aria-invalid=\"true\"")
    );
    assert!(f.contains("id=\"wh-secret-err\"") && f.contains("id=\"wh-events-err\""));
    assert!(f.contains("aria-describedby=\"wh-events-err\""), "the events fieldset is described by its message");
    let first_box = &f[f.find("id=\"wh-events\"").expect("the events link has a target")..];
    assert!(first_box[..first_box.find('>').unwrap()].contains("aria-invalid=\"true\""));
    assert_eq!(f.matches("id=\"wh-events\"").count(), 1);
    assert!(f.contains(&format!("action=\"{MOUNT}/new\"")), "still the form's address");
    assert!(f.contains(&format!("name=\"form_id\" value=\"{id}\"")), "the one-time id is kept");

    // Fixed, the same form creates once; sent again, nothing more.
    let good = [("name", "CRM"), ("url", "https://a.example/h"), ("events", "user.created"), ("form_id", id.as_str())];
    let Response::Redirect { location, flash } = admin::handle(&h, &req("POST", "/new", &good)) else {
        panic!("not created")
    };
    assert_eq!(location, MOUNT);
    assert!(flash.unwrap().message.contains("was created"));
    let Response::Redirect { flash, .. } = admin::handle(&h, &req("POST", "/new", &good)) else { panic!() };
    assert!(flash.unwrap().message.contains("already submitted"));
    assert_eq!(h.int("SELECT COUNT(*) FROM webhooks", &[]), 1);
}

/// #13 item 8: the edit form posts to its own address too, and comes back
/// there when invalid; a save still redirects.
#[test]
fn an_invalid_edit_form_comes_back_at_its_address() {
    let h = TestHost::new();
    let w = hook(&h, "https://a.example/h", &["user.created"]);
    let (_, _, form, _) = page(admin::handle(&h, &req("GET", &format!("/{w}/edit"), &[])));
    assert!(form.contains(&format!("action=\"{MOUNT}/{w}/edit\"")), "{form}");
    let bad = [("name", "CRM"), ("url", "https://a.example/h"), ("secret_action", "keep")];
    let (status, title, f, _) = page(admin::handle(&h, &req("POST", &format!("/{w}/edit"), &bad)));
    assert_eq!((status, title.as_str()), (422, "Error: Edit hook https://a.example/h"));
    assert_eq!(summary_links(&f), ["wh-events"]);
    assert!(f.contains(&format!("action=\"{MOUNT}/{w}/edit\"")));
    let good = [("name", "CRM"), ("url", "https://a.example/h"), ("secret_action", "keep"), ("events", "user.deleted")];
    let Response::Redirect { location, .. } = admin::handle(&h, &req("POST", &format!("/{w}/edit"), &good)) else {
        panic!("not saved")
    };
    assert_eq!(location, MOUNT);
    assert_eq!(h.int("SELECT COUNT(*) FROM webhook_events WHERE event_type = 'user.deleted'", &[]), 1);
    assert_eq!(admin::handle(&h, &req("POST", "/999/edit", &good)), Response::NotFound);
}

/// #13 item 13: a failed test send is one attempt the admin asked for; its
/// details say "test failed", never "exhausted" (nothing gave up).
#[test]
fn a_failed_test_send_reads_as_a_test_not_as_exhausted() {
    let h = TestHost::new();
    let id = hook(&h, "https://a.example/h", &["user.created"]);
    h.respond(|_| crate::testhost::Reply::status(500));
    let Response::Redirect { .. } = admin::handle(&h, &req("POST", &format!("/{id}/test"), &[])) else {
        panic!("a test send redirects to the history")
    };
    let d = h
        .query("SELECT id, state FROM deliveries WHERE webhook_id = ?1", &[id.into()])
        .unwrap()
        .first()
        .map(|r| (r.i64(0), r.str(1)))
        .expect("the test delivery");
    assert_eq!(d.1, "exhausted", "stored as ended, like any one-off");
    let Response::Page { fragment, .. } = admin::handle(&h, &req("GET", &format!("/{id}/deliveries/{}", d.0), &[]))
    else {
        panic!("no details page")
    };
    assert!(fragment.contains(">test failed</span>"), "{fragment}");
    assert!(!fragment.contains(">exhausted<"), "{fragment}");
}
