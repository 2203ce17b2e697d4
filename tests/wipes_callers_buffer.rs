//! Constructing a `Secret` from a `Vec`, `String` or `Box<[u8]>` wipes the
//! caller's buffer — its whole capacity — before it is freed. Observed by a
//! global allocator (the system one, watched) that inspects the watched
//! block at the moment it is freed.

#[path = "support/mod.rs"]
mod support;

use secalloc::Secret;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The system allocator, reporting whether one watched block was all zero
/// (over its whole allocated size) when it was freed.
struct Watch;

static WATCHED: AtomicUsize = AtomicUsize::new(0);
const NOT_FREED: u8 = 0;
const FREED_ZERO: u8 = 1;
const FREED_DIRTY: u8 = 2;
static OUTCOME: AtomicU8 = AtomicU8::new(NOT_FREED);

// SAFETY: forwards every call to `System`; the inspection only reads a block
// that is still allocated (just before it is handed back).
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr as usize == WATCHED.load(Ordering::SeqCst) {
            // SAFETY: the block is live for `layout.size()` bytes until the
            // `System.dealloc` below.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            let outcome = if bytes.iter().all(|&b| b == 0) {
                FREED_ZERO
            } else {
                FREED_DIRTY
            };
            OUTCOME.store(outcome, Ordering::SeqCst);
        }
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Watch = Watch;

fn watch(ptr: *const u8) {
    OUTCOME.store(NOT_FREED, Ordering::SeqCst);
    WATCHED.store(ptr as usize, Ordering::SeqCst);
}

fn outcome() -> u8 {
    WATCHED.store(0, Ordering::SeqCst);
    OUTCOME.load(Ordering::SeqCst)
}

fn vec_buffer_is_wiped_with_its_spare_capacity() {
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(&[0xA5u8; 40]);
    // Bytes past the length, inside the capacity, that once held a secret.
    v.spare_capacity_mut()[..100].fill(std::mem::MaybeUninit::new(0x5A));
    watch(v.as_ptr());
    let s = Secret::new(v).unwrap();
    assert_eq!(
        outcome(),
        FREED_ZERO,
        "the Vec's buffer was freed with data in it"
    );
    assert_eq!(s.expose(|b| b.to_vec()).unwrap(), vec![0xA5u8; 40]);
}

fn big_vec_buffer_is_wiped_with_its_spare_capacity() {
    // Past a page (where the arena is asked whether it owns the buffer) and
    // past the size from which the locked plaintext buffer becomes the cell.
    let mut v = Vec::with_capacity(8192);
    v.extend_from_slice(&[0xA5u8; 5000]);
    v.spare_capacity_mut()[..3000].fill(std::mem::MaybeUninit::new(0x5A));
    watch(v.as_ptr());
    let s = Secret::new(v).unwrap();
    assert_eq!(
        outcome(),
        FREED_ZERO,
        "the 8 KiB Vec's buffer was freed with data in it"
    );
    assert_eq!(s.expose(|b| b.to_vec()).unwrap(), vec![0xA5u8; 5000]);
}

fn string_buffer_is_wiped() {
    let text = String::from("correct horse battery staple");
    watch(text.as_ptr());
    let s = Secret::new(text).unwrap();
    assert_eq!(outcome(), FREED_ZERO);
    assert_eq!(s.expose(|t| t.len()).unwrap(), 28);
}

fn boxed_slice_is_wiped() {
    let boxed: Box<[u8]> = vec![0x77u8; 64].into_boxed_slice();
    watch(boxed.as_ptr());
    let s = Secret::new(boxed).unwrap();
    assert_eq!(outcome(), FREED_ZERO);
    assert_eq!(s.expose(|b| b.len()).unwrap(), 64);
}

/// A create that fails (here: after `purge`, so the key is gone) still
/// wipes the value's buffer: found by the issue-12 attack review, which saw
/// the plaintext go back to the allocator. Runs last: `purge` is final.
fn a_failed_create_wipes_the_buffer_too() {
    secalloc::purge();
    let mut v = Vec::with_capacity(100);
    v.extend_from_slice(&[0xA5u8; 64]);
    watch(v.as_ptr());
    assert!(Secret::new(v).is_err(), "a create after purge must fail");
    assert_eq!(
        outcome(),
        FREED_ZERO,
        "the Vec's buffer was freed with data in it"
    );
    let text = String::from("correct horse battery staple");
    watch(text.as_ptr());
    assert!(Secret::new(text).is_err());
    assert_eq!(
        outcome(),
        FREED_ZERO,
        "the String's buffer was freed with data in it"
    );
    let boxed: Box<[u8]> = vec![0x77u8; 48].into_boxed_slice();
    watch(boxed.as_ptr());
    assert!(Secret::new(boxed).is_err());
    assert_eq!(
        outcome(),
        FREED_ZERO,
        "the Box's buffer was freed with data in it"
    );
}

fn control_an_ordinary_drop_is_seen_dirty() {
    let v = vec![0xEEu8; 64];
    watch(v.as_ptr());
    drop(v);
    assert_eq!(
        outcome(),
        FREED_DIRTY,
        "control: the watch sees unwiped frees"
    );
}

fn main() {
    support::run_checks(&[
        (
            "vec_buffer_is_wiped_with_its_spare_capacity",
            vec_buffer_is_wiped_with_its_spare_capacity,
        ),
        (
            "big_vec_buffer_is_wiped_with_its_spare_capacity",
            big_vec_buffer_is_wiped_with_its_spare_capacity,
        ),
        ("string_buffer_is_wiped", string_buffer_is_wiped),
        ("boxed_slice_is_wiped", boxed_slice_is_wiped),
        (
            "control_an_ordinary_drop_is_seen_dirty",
            control_an_ordinary_drop_is_seen_dirty,
        ),
        (
            "a_failed_create_wipes_the_buffer_too",
            a_failed_create_wipes_the_buffer_too,
        ),
    ]);
}
