//! The webhooks plugin: the product logic of the panel's Webhooks integration.
//!
//! Everything here is plain Rust written against [`host::Host`], so it builds
//! and unit-tests on the native target. The WebAssembly component is this
//! crate built for `wasm32-wasip2`; its binding glue lives in `glue.rs`, the
//! only module that knows about wit-bindgen.

pub mod admin;
pub mod api;
pub mod catalog;
pub mod controls;
pub mod health;
pub mod host;
pub mod outbox;
pub mod playground;
pub mod schema;
pub mod sessions;
pub mod signing;
pub mod store;
pub mod transform;
pub mod webhook;

#[cfg(target_arch = "wasm32")]
mod glue;

#[cfg(test)]
pub(crate) mod testhost;
#[cfg(test)]
mod tests;

/// The plugin's name in the manifest and log lines.
pub const NAME: &str = "webhooks";
/// The plugin's version (the crate's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
