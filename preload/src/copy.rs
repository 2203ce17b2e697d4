//! Bounds-checked `memcpy` and `memmove` (and their `_FORTIFY_SOURCE`
//! forms, which fortified programs call instead): a copy whose source or
//! destination starts in a slab must stay inside the requested bytes of the
//! live block it starts in, or the process aborts with `secalloc: fatal:
//! copy out of bounds: <addr>` ([`CSurface::check_copy`]). An overflow by
//! `memcpy` of zeros over zeros is invisible to the slack check at `free`
//! (and a copy that is never followed by a `free` is not seen there at
//! all); an over-read like Heartbleed's is seen by nothing else.
//!
//! The copies themselves are the C runtime's, found by `src/copy.c`.
//!
//! [`CSurface::check_copy`]: secalloc::__unstable::capi::CSurface::check_copy

use core::ffi::c_void;

use crate::SURFACE;

extern "C" {
    fn secalloc_preload_next_memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
    fn secalloc_preload_next_memmove(dst: *mut c_void, src: *const c_void, n: usize)
        -> *mut c_void;
    fn secalloc_preload_next_memcpy_chk(
        dst: *mut c_void,
        src: *const c_void,
        n: usize,
        dst_len: usize,
    ) -> *mut c_void;
    fn secalloc_preload_next_memmove_chk(
        dst: *mut c_void,
        src: *const c_void,
        n: usize,
        dst_len: usize,
    ) -> *mut c_void;
}

/// # Safety
/// C `memcpy`: `dst` and `src` are valid for `n` bytes and do not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    SURFACE.check_copy(dst, src, n);
    // SAFETY: forwarded from the caller, to the C runtime's `memcpy`.
    unsafe { secalloc_preload_next_memcpy(dst, src, n) }
}

/// # Safety
/// C `memmove`: `dst` and `src` are valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    SURFACE.check_copy(dst, src, n);
    // SAFETY: forwarded from the caller, to the C runtime's `memmove`.
    unsafe { secalloc_preload_next_memmove(dst, src, n) }
}

/// # Safety
/// glibc's `__memcpy_chk`: as `memcpy`, with `dst_len` the destination
/// object's size as the compiler knew it.
#[no_mangle]
pub unsafe extern "C" fn __memcpy_chk(
    dst: *mut c_void,
    src: *const c_void,
    n: usize,
    dst_len: usize,
) -> *mut c_void {
    SURFACE.check_copy(dst, src, n);
    // SAFETY: forwarded from the caller, to the C runtime's own.
    unsafe { secalloc_preload_next_memcpy_chk(dst, src, n, dst_len) }
}

/// # Safety
/// glibc's `__memmove_chk`: as `memmove`, with `dst_len` as for
/// [`__memcpy_chk`].
#[no_mangle]
pub unsafe extern "C" fn __memmove_chk(
    dst: *mut c_void,
    src: *const c_void,
    n: usize,
    dst_len: usize,
) -> *mut c_void {
    SURFACE.check_copy(dst, src, n);
    // SAFETY: forwarded from the caller, to the C runtime's own.
    unsafe { secalloc_preload_next_memmove_chk(dst, src, n, dst_len) }
}
