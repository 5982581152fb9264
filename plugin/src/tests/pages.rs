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
