//! `multipart/form-data` (RFC 7578) for the admin form that uploads a
//! webhook's transformation (#24). The plugin's pages take text fields
//! (`admin.request.form`), so a file part becomes a text field here: the
//! file box `transform_file` arrives as `transform_wasm`, its bytes in
//! base64 (empty box, no field). Any other file part is dropped. Small on
//! purpose: the body is already read whole and capped ([`super::MAX_UPLOAD`]).

use base64::Engine as _;

/// The file box whose bytes the plugin gets, and the field they arrive in.
const FILE_FIELD: &str = "transform_file";
const FILE_AS: &str = "transform_wasm";

/// The boundary of a `multipart/form-data` content type; `None` for any
/// other type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts.next()?.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    parts
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("boundary").then(|| v.trim().trim_matches('"').to_owned())
        })
        .filter(|b| !b.is_empty() && b.len() <= 70)
}

/// The form's fields in order; `Err` says what is malformed.
pub fn parse(boundary: &str, body: &[u8]) -> Result<Vec<(String, String)>, &'static str> {
    let delim = format!("--{boundary}").into_bytes();
    let next = format!("\r\n--{boundary}").into_bytes();
    let mut rest = body.strip_prefix(delim.as_slice()).ok_or("the body does not start with its boundary")?;
    let mut fields = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(fields);
        }
        rest = rest.strip_prefix(b"\r\n").ok_or("a boundary is not followed by a line break")?;
        let head_end = find(rest, b"\r\n\r\n").ok_or("a part has no end of headers")?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| "a part's headers are not text")?;
        let after = &rest[head_end + 4..];
        let end = find(after, &next).ok_or("a part is not closed by the boundary")?;
        let data = &after[..end];
        rest = &after[end + next.len()..];
        let Some(disposition) = head
            .split("\r\n")
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition")))
            .map(|(_, v)| v)
        else {
            return Err("a part has no Content-Disposition");
        };
        let name = param(disposition, "name").ok_or("a part has no name")?;
        match param(disposition, "filename") {
            Some(_) if name == FILE_FIELD => {
                if !data.is_empty() {
                    fields.push((FILE_AS.to_owned(), base64::engine::general_purpose::STANDARD.encode(data)));
                }
            }
            // Another file box: nothing in the plugin's pages takes it.
            Some(_) => {}
            None => fields.push((name, String::from_utf8_lossy(data).into_owned())),
        }
    }
}

/// A `name="value"` parameter of a Content-Disposition header (browsers
/// escape a `"` in it as `%22`).
fn param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim().trim_matches('"').replace("%22", "\""))
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (name, file, data) in parts {
            b.extend_from_slice(b"--XyZ\r\n");
            match file {
                Some(f) => b.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/wasm\r\n\r\n")
                        .as_bytes(),
                ),
                None => b.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--XyZ--\r\n");
        b
    }

    #[test]
    fn text_fields_and_the_component_file_arrive_as_fields() {
        assert_eq!(boundary("multipart/form-data; boundary=XyZ").as_deref(), Some("XyZ"));
        assert_eq!(boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(), Some("XyZ"));
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
        let wasm: &[u8] = b"\0asm\r\n--Xy\r\n\x0d\0\x01\0";
        let b = body(&[
            ("name", None, "Caf\u{e9}".as_bytes()),
            ("events", None, b"user.created"),
            ("events", None, b"user.deleted"),
            ("transform_file", Some("t.wasm"), wasm),
            ("other_file", Some("x.png"), b"png"),
        ]);
        let f = parse("XyZ", &b).unwrap();
        assert_eq!(
            f,
            vec![
                ("name".to_owned(), "Caf\u{e9}".to_owned()),
                ("events".to_owned(), "user.created".to_owned()),
                ("events".to_owned(), "user.deleted".to_owned()),
                ("transform_wasm".to_owned(), base64::engine::general_purpose::STANDARD.encode(wasm)),
            ]
        );
        // An empty file box uploads nothing.
        let f = parse("XyZ", &body(&[("transform_file", Some(""), b"")])).unwrap();
        assert!(f.is_empty());
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(parse("XyZ", b"garbage").is_err());
        assert!(parse("XyZ", b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end").is_err());
        assert!(parse("XyZ", b"--XyZ\r\nX: y\r\n\r\nv\r\n--XyZ--").is_err());
    }
}
