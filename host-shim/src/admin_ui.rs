//! Admin-UI capability: the panel's side of the plugin's pages — the layout
//! and menu around the returned fragment, CSRF tokens, flash messages and the
//! security headers every admin page carries.

use askama::Template;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::bindings::ex::plugin::Manifest;
use crate::bindings::types::{Flash, FlashKind};

/// Sent with every admin page: nothing loads from elsewhere, nothing inline.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The panel's stylesheet (layout, menu) and the plugin's (scoped `wh-`).
pub const PANEL_CSS: &str = include_str!("../templates/panel.css");
/// The plugin's stylesheet, served by the host from `ui-fragments/`.
pub const WEBHOOKS_CSS: &str = include_str!("../../ui-fragments/webhooks.css");
/// Progressive enhancement for the plugin's pages (pages work without it).
pub const WEBHOOKS_JS: &str = include_str!("../../ui-fragments/webhooks.js");

struct Entry {
    label: String,
    href: String,
    current: bool,
}

struct Section {
    name: String,
    entries: Vec<Entry>,
}

struct FlashView {
    kind: &'static str,
    message: String,
}

#[derive(Template)]
#[template(path = "layout.html")]
struct Layout<'a> {
    title: &'a str,
    sections: Vec<Section>,
    flash: Option<FlashView>,
    fragment: &'a str,
    actor: &'a str,
    csrf: &'a str,
}

/// What every admin page of one request shares: the menu, where the plugin
/// is mounted, who is acting, and the session's CSRF token.
pub struct Frame<'a> {
    /// The plugin's manifest (menu entries).
    pub manifest: &'a Manifest,
    /// The plugin's mount path.
    pub mount: &'a str,
    /// The acting admin.
    pub actor: &'a str,
    /// The session's CSRF token (for forms the layout itself renders and for scripts).
    pub csrf: &'a str,
}

impl Frame<'_> {
    /// Wraps a fragment in the panel layout with the plugin's menu entries.
    pub fn render(&self, current_path: &str, title: &str, fragment: &str, flash: Option<&Flash>) -> String {
        let mut sections: Vec<Section> = Vec::new();
        for m in &self.manifest.menu {
            let href = if m.path == "/" { self.mount.to_owned() } else { format!("{}{}", self.mount, m.path) };
            let current = current_path == href || current_path.starts_with(&format!("{href}/"));
            let entry = Entry { label: m.label.clone(), href, current };
            match sections.iter_mut().find(|s| s.name == m.section) {
                Some(s) => s.entries.push(entry),
                None => sections.push(Section { name: m.section.clone(), entries: vec![entry] }),
            }
        }
        let flash = flash.map(|f| FlashView { kind: flash_kind(f.kind), message: f.message.clone() });
        Layout { title, sections, flash, fragment, actor: self.actor, csrf: self.csrf }
            .render()
            .unwrap_or_else(|e| format!("layout error: {e}"))
    }
}

#[derive(Template)]
#[template(source = r#"<div class="wh-flash wh-flash-{{ kind }}" role="status">{{ message }}</div>"#, ext = "html")]
struct FlashFragment<'a> {
    kind: &'static str,
    message: &'a str,
}

/// A flash message as HTML (escaped), for fragments a panel wraps itself.
pub fn flash_html(f: &Flash) -> String {
    FlashFragment { kind: flash_kind(f.kind), message: &f.message }.render().unwrap_or_default()
}

fn flash_kind(k: FlashKind) -> &'static str {
    match k {
        FlashKind::Success => "success",
        FlashKind::Info => "info",
        FlashKind::Error => "error",
    }
}

/// The CSRF token of a session: HMAC(key, session id). Stateless, unguessable
/// without the key (`serve` derives it from the sealing key), and different
/// per session.
pub fn csrf_token(key: &[u8], session: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(b"csrf\0");
    mac.update(session.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of a submitted token.
pub fn csrf_ok(key: &[u8], session: &str, submitted: &str) -> bool {
    same_secret(&csrf_token(key, session), submitted)
}

/// Compares a secret with what was submitted in constant time (for equal lengths).
pub fn same_secret(want: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    // An empty secret is none: it never matches (not even an empty answer).
    !want.is_empty() && want.len() == given.len() && bool::from(want.as_bytes().ct_eq(given.as_bytes()))
}

/// Flash messages survive one redirect in a cookie: `kind:message`,
/// percent-encoded. The message is rendered escaped, so a forged cookie can
/// only show text to the one who forged it.
pub fn flash_cookie_value(f: &Flash) -> String {
    let raw = format!("{}:{}", flash_kind(f.kind), f.message);
    form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

/// Reads a flash cookie value.
pub fn parse_flash_cookie(v: &str) -> Option<Flash> {
    let decoded: String = form_urlencoded::parse(format!("f={v}").as_bytes()).next()?.1.into_owned();
    let (kind, message) = decoded.split_once(':')?;
    let kind = match kind {
        "success" => FlashKind::Success,
        "info" => FlashKind::Info,
        "error" => FlashKind::Error,
        _ => return None,
    };
    Some(Flash { kind, message: message.chars().take(500).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_per_session_and_checked() {
        let k = b"0123456789abcdef0123456789abcdef";
        let t = csrf_token(k, "s1");
        assert!(csrf_ok(k, "s1", &t));
        assert!(!csrf_ok(k, "s2", &t));
        assert!(!csrf_ok(k, "s1", ""));
        assert!(!csrf_ok(b"another key", "s1", &t));
    }

    #[test]
    fn flash_round_trip() {
        let f = Flash { kind: FlashKind::Error, message: "Test failed: HTTP 500; <b>".into() };
        let back = parse_flash_cookie(&flash_cookie_value(&f)).unwrap();
        assert_eq!(back.message, f.message);
        assert!(parse_flash_cookie("bogus").is_none());
    }
}
