//! Host-side bindings of `wit/webhooks.wit` ([`CONTRACT`]).
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

/// The contract this host speaks: `wit/webhooks.wit`'s package, named in
/// the error a plugin built against another version gets.
pub const CONTRACT: &str = "panel:webhooks@0.3.0";

pub use exports::panel::webhooks as ex;
pub use panel::webhooks::{host_info, log, secrets, storage, telemetry, transform, types};

#[cfg(test)]
mod tests {
    #[test]
    fn the_contract_named_in_errors_is_the_one_in_wit() {
        let wit = include_str!("../../wit/webhooks.wit");
        assert!(wit.lines().any(|l| l == format!("package {};", super::CONTRACT)), "wit/webhooks.wit's package");
    }
}
