//! Schemathesis (property-based API testing, from PyPI in a virtualenv)
//! against the OpenAPI document a real `serve` serves: every operation,
//! every check. A 5xx, or an answer the document does not describe (status,
//! content type, headers, body schema), fails the test.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

/// The pinned major: its checks and flags are what this test relies on.
const SCHEMATHESIS: &str = "schemathesis>=4.32,<5";

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let found = Command::new("python3").args(["-m", "venv", "--help"]).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "CI must have python3 with venv (see .ci/run)");
        eprintln!("skipped: python3 -m venv is not available");
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    let st = dir.join("venv/bin/schemathesis");
    if !st.exists() {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(dir.join("venv")).status().unwrap().success();
        assert!(ok, "creating the virtualenv");
        let ok = Command::new(dir.join("venv/bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", SCHEMATHESIS])
            .status()
            .unwrap()
            .success();
        assert!(ok, "installing {SCHEMATHESIS}");
    }
    let h = host();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/schemathesis.toml");
    let out = Command::new(&st)
        .current_dir(&dir)
        .arg("--config-file")
        .arg(&config)
        // One worker: with several, CPython 3.11's parser (Debian 12's
        // python3) fails inside Hypothesis now and then ("AST constructor
        // recursion depth mismatch"), an error in the tool, not the API.
        .args(["run", &format!("{}/api/openapi.json", h.base), "--checks", "all", "--workers", "1"])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{stdout}\n{}\n--- host log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.log()
    );
    assert!(!h.log().contains("panicked"), "{}", h.log());
}
