//! Host-side bindings of `wit/webhooks.wit` (`panel:webhooks@0.2.0`).
//!
//! The `wasi:*` interfaces are not generated again: they map to the bindings
//! of wasmtime-wasi-http / wasmtime-wasi, whose implementations are linked.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "panel:webhooks/webhooks",
    imports: { default: async },
    exports: { default: async },
    with: { "wasi": wasmtime_wasi_http::p2::bindings },
});

pub use exports::panel::webhooks as ex;
pub use panel::webhooks::{host_info, log, secrets, storage, telemetry, types};
