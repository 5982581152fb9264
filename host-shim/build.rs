//! Builds the plugin component (`plugin/`, wasm32-wasip2) so that
//! `cargo build`, `cargo run` and `cargo test` need no manual step, and puts
//! it in OUT_DIR where `include_bytes!` picks it up.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir.parent().expect("host-shim sits in the workspace").to_path_buf();
    for p in ["plugin/src", "plugin/Cargo.toml", "plugin/askama.toml", "wit", "ui-fragments", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=WEBHOOKS_PLUGIN_WASM");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("webhooks_plugin.wasm");

    // An operator may ship a prebuilt component instead.
    if let Ok(prebuilt) = std::env::var("WEBHOOKS_PLUGIN_WASM") {
        std::fs::copy(&prebuilt, &out).expect("copy WEBHOOKS_PLUGIN_WASM");
        return;
    }

    ensure_wasm_target();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Its own target dir: the outer cargo holds the lock on ours.
    let target_dir = root.join("target").join("plugin");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", "webhooks-plugin", "--target", "wasm32-wasip2", "--release"])
        .args(["--config", "profile.release.debug=false", "--config", "profile.release.strip=true"])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the host build (clippy's wrapper, coverage or sanitizer
    // RUSTFLAGS) would miscompile or deadlock the nested wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = match cmd.status() {
        Ok(status) => status,
        Err(e) => fail(&format!("could not run cargo to build the webhooks plugin: {e}")),
    };
    if !status.success() {
        fail("building the webhooks plugin for wasm32-wasip2 failed (its compiler errors are above)");
    }
    let built = target_dir.join("wasm32-wasip2").join("release").join("webhooks_plugin.wasm");
    std::fs::copy(&built, &out).expect("copy the built component");
}

const TARGET: &str = "wasm32-wasip2";

/// `rust-toolchain.toml` lists the target, but rustup installs a toolchain
/// file's targets only when it installs the toolchain itself; on a machine that
/// already has the toolchain the target never arrives. Install it here (once)
/// when rustup is present; otherwise name the one command to run.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = |sysroot: &PathBuf| sysroot.join("lib").join("rustlib").join(TARGET).join("lib").is_dir();
    let Some(sysroot) = sysroot else {
        fail(&format!("could not ask {rustc} for its sysroot; install the target with: rustup target add {TARGET}"));
    };
    if installed(&sysroot) {
        return;
    }
    let rustup_present = Command::new("rustup").arg("--version").output().is_ok_and(|o| o.status.success());
    if !rustup_present {
        fail(&format!(
            "the {TARGET} target is not installed and rustup is not available; install the Rust standard library for {TARGET} (with rustup: rustup target add {TARGET})"
        ));
    }
    // RUSTUP_TOOLCHAIN is set by rustup's proxies, so the target lands in the
    // toolchain this build runs on.
    println!("cargo:warning=installing the {TARGET} target with `rustup target add {TARGET}` (first build only)");
    let added = Command::new("rustup").args(["target", "add", TARGET]).output();
    match added {
        Ok(o) if o.status.success() && installed(&sysroot) => {}
        Ok(o) => fail(&format!(
            "`rustup target add {TARGET}` failed ({}); run it yourself and build again",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("no message").trim()
        )),
        Err(e) => fail(&format!("could not run `rustup target add {TARGET}` ({e}); run it yourself and build again")),
    }
}

/// One line on stderr and a non-zero exit: no panic, no backtrace.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
