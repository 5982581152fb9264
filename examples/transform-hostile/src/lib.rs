//! A hostile transformation, for the tests (#24): it misbehaves as the
//! event's `data.mode` says, to prove the host contains it.
//!
//! | `mode` | what it does | what the host makes of it |
//! |---|---|---|
//! | `loop` | loops forever | stopped at its 10 ms deadline |
//! | `alloc` | allocates 1 GiB (or `data.bytes`) and writes to it | stopped at its 16 MiB memory cap |
//! | `output` | answers a body of 100 MiB (or `data.bytes`) | the memory cap; under it, the 1 MiB body cap |
//! | `trap` | panics | a trap |
//! | `path` | sends to `data.path` | refused unless it stays under the webhook's URL |
//! | `header` | adds the header `data.header` | refused for the product's own headers (`webhook-signature`, …) |
//! | `skip` | skips the delivery | recorded as skipped |
//! | `error` | answers `error` | a failed attempt with its text |
//! | anything else | sends the delivery unchanged | sent |
#![no_std]
// The generated export shim takes the event's fields one by one.
#![allow(clippy::too_many_arguments)]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

#[path = "../../common/guest.rs"]
mod guest;

wit_bindgen::generate!({
    path: "../../wit/transform",
    world: "webhooks:transform/transformer",
});

struct Hostile;

impl Guest for Hostile {
    fn transform(event: Event) -> Result<Outgoing, SkipOrError> {
        let body = &event.body;
        let mode = guest::string_field(body, "mode").unwrap_or_default();
        let bytes = guest::number_field(body, "bytes").map(|b| b as usize);
        let send = |body: Option<String>, headers: Vec<(String, String)>, path: Option<String>| {
            Ok(Outgoing { body, headers, path })
        };
        match mode.as_str() {
            "loop" => {
                let mut n = 0u64;
                loop {
                    n = core::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut v: Vec<u8> = Vec::new();
                v.resize(bytes.unwrap_or(1 << 30), 1);
                core::hint::black_box(&v);
                send(None, vec![], None)
            }
            "output" => send(Some("x".repeat(bytes.unwrap_or(100 << 20))), vec![], None),
            "trap" => panic!("hostile: trap"),
            "path" => send(None, vec![], guest::string_field(body, "path")),
            "header" => {
                let name = guest::string_field(body, "header").unwrap_or_default();
                send(None, vec![(name, String::from("forged"))], None)
            }
            "skip" => Err(SkipOrError::Skip(String::from("hostile: not for this receiver"))),
            "error" => Err(SkipOrError::Error(String::from("hostile: cannot handle this event"))),
            _ => send(None, vec![], None),
        }
    }
}

export!(Hostile);
