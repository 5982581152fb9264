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
    let status = cmd.status().expect("run cargo for the plugin");
    assert!(status.success(), "building the webhooks plugin for wasm32-wasip2 failed");
    let built = target_dir.join("wasm32-wasip2").join("release").join("webhooks_plugin.wasm");
    std::fs::copy(&built, &out).expect("copy the built component");
}
