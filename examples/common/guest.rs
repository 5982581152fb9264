//! What every example transformation shares, without the standard library:
//! the standard library of wasm32-wasip2 imports WASI (the environment,
//! stdio, exit, clocks), and a transformation may import nothing. So the
//! guests are `#![no_std]` with this allocator, a panic handler and a few
//! lines of JSON.
//!
//! The allocator only ever bumps: the host makes a fresh instance for every
//! delivery and drops it afterwards, so nothing needs freeing. It grows the
//! linear memory as asked; past the host's cap (16 MiB) the growth traps.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

extern crate alloc;
use alloc::string::String;

/// Bump allocation over the memory past the instance's initial size.
pub struct Bump {
    next: AtomicUsize,
    end: AtomicUsize,
}

impl Bump {
    pub const fn new() -> Self {
        Bump { next: AtomicUsize::new(0), end: AtomicUsize::new(0) }
    }
}

const PAGE: usize = 65536;

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (mut next, mut end) = (self.next.load(Ordering::Relaxed), self.end.load(Ordering::Relaxed));
        if end == 0 {
            // First use: the heap starts where the initial memory ends.
            next = core::arch::wasm32::memory_size(0) * PAGE;
            end = next;
        }
        let start = (next + layout.align() - 1) & !(layout.align() - 1);
        let Some(stop) = start.checked_add(layout.size()) else { return core::ptr::null_mut() };
        if stop > end {
            let pages = (stop - end).div_ceil(PAGE);
            if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                return core::ptr::null_mut();
            }
            end += pages * PAGE;
        }
        self.next.store(stop, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: Bump = Bump::new();

/// The component model's allocator, through which the host hands the guest
/// its arguments. wasi-libc provides it to `std` guests (and wit-bindgen
/// leaves it to libc on wasm32-wasip2); without libc, here it is.
///
/// # Safety
/// Called by the host's canonical ABI with a pointer and size it got from here.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: the canonical ABI passes a power-of-two alignment.
    let layout = unsafe { Layout::from_size_align_unchecked(new_len, align) };
    // SAFETY: a non-zero size.
    let new = unsafe { ALLOC.alloc(layout) };
    if new.is_null() {
        core::arch::wasm32::unreachable();
    }
    if old_len != 0 {
        // SAFETY: the old block holds `old_len` bytes; the new one is fresh (never overlapping).
        unsafe { core::ptr::copy_nonoverlapping(old_ptr, new, old_len.min(new_len)) };
    }
    new
}

/// `memcmp`, which `core` calls for comparisons of strings and slices and
/// which wasi-libc would provide: a guest without the standard library
/// (hence without libc) must bring its own, or the component would import
/// it from `env`.
///
/// # Safety
/// `a` and `b` are valid for `n` bytes (the compiler's own calls).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: in bounds, as the caller promises.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// `bcmp`: `memcmp` when only equality matters.
///
/// # Safety
/// As [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same promise.
    unsafe { memcmp(a, b, n) }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // A trap: the host fails this delivery's attempt and says so.
    core::arch::wasm32::unreachable()
}

/// The string value of the first `"key": "…"` in `json` (escapes
/// decoded; `\u` escapes kept as written). Enough for these examples; a
/// real transformation would parse the body properly.
pub fn string_field(json: &str, key: &str) -> Option<String> {
    let rest = value_after(json, key)?;
    let rest = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => out.push_str("\\u"),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The number after the first `"key":` in `json`.
pub fn number_field(json: &str, key: &str) -> Option<u64> {
    let rest = value_after(json, key)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn value_after<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let mut quoted = String::with_capacity(key.len() + 2);
    quoted.push('"');
    quoted.push_str(key);
    quoted.push('"');
    // The first occurrence that is a key (followed by `:`), not a value.
    json.match_indices(quoted.as_str())
        .find_map(|(at, _)| json[at + quoted.len()..].trim_start().strip_prefix(':'))
        .map(str::trim_start)
}

/// `s` as a JSON string literal, quotes included.
#[allow(dead_code)] // not every example answers JSON of its own
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let hex = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(hex[(c as usize) >> 4] as char);
                out.push(hex[(c as usize) & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
