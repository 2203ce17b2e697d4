//! The wipe: zeroing that the compiler may not remove.
//!
//! A `memset` right before memory is freed is a dead store to an optimiser
//! that knows `free`. `zeroize::zeroize_bytes` is a plain `memset` followed by
//! an assembly optimisation barrier that claims to read the bytes, so it runs
//! at `memset` bandwidth and cannot be elided (benchmarked against a bare
//! `write_bytes` in `benches/`).

#![allow(unsafe_code)]

/// Zeroes `[addr, addr + len)` in a way that is never optimised out.
///
/// # Safety
/// The caller has exclusive access to the `len` writable bytes at `addr`.
#[inline]
pub(crate) unsafe fn wipe(addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: the caller grants exclusive access to these bytes, and zero is
    // a valid `u8`.
    let bytes = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
    zeroize::zeroize_bytes(bytes);
}
