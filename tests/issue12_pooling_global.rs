//! A global allocator layered on `SecureAlloc` that keeps freed blocks for
//! reuse: the buffer a `Secret` was made from must still come back wiped,
//! although the arena owns it (the arena's own wipe runs only when a free
//! reaches it, and this one never does).

use secalloc::{Secret, SecureAlloc};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `SecureAlloc`, keeping one freed 8 KiB block aside and handing it out
/// again for the next 8 KiB request.
struct Pooling;

const POOLED: usize = 8192;
static KEPT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `SecureAlloc`; a kept block is live in the arena (never
// freed there) and is handed to exactly one caller at a time.
unsafe impl GlobalAlloc for Pooling {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() == POOLED && layout.align() == 1 {
            let kept = KEPT.swap(0, Ordering::AcqRel);
            if kept != 0 {
                return kept as *mut u8;
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe { SecureAlloc::new().alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() == POOLED
            && layout.align() == 1
            && KEPT
                .compare_exchange(0, ptr as usize, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return;
        }
        // SAFETY: forwarded from the caller.
        unsafe { SecureAlloc::new().dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Pooling = Pooling;

#[test]
fn a_pooled_buffer_comes_back_wiped() {
    let value = vec![0x42u8; POOLED];
    let first = value.as_ptr() as usize;
    let secret = Secret::new(value).unwrap();
    let next: Vec<u8> = Vec::with_capacity(POOLED);
    assert_eq!(
        next.as_ptr() as usize,
        first,
        "setup: the pool did not hand the block back"
    );
    // SAFETY: `next` owns `POOLED` bytes at its pointer; reading them as
    // bytes is what an uninitialised-buffer bug in a program would do.
    let plaintext_left = unsafe { std::slice::from_raw_parts(next.as_ptr(), POOLED) }
        .iter()
        .filter(|&&b| b == 0x42)
        .count();
    assert_eq!(
        plaintext_left, 0,
        "the secret's plaintext came back in the next buffer"
    );
    assert_eq!(secret.expose(|v| v.len()).unwrap(), POOLED);
}
