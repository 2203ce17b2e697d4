//! `libsecalloc_preload.so`: the C allocation surface (`malloc`, `free`,
//! `calloc`, `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`,
//! `memalign`, `valloc`, `pvalloc`, `malloc_usable_size`) over secalloc's
//! arena, so `LD_PRELOAD=libsecalloc_preload.so program` runs any
//! dynamically linked program on a locked, dump-excluded, zero-on-free heap.
//!
//! The surface itself — glibc semantics, the lock policy from
//! `SECALLOC_LOCK`, the start-up boot buffer — is `secalloc`'s `src/capi.rs`,
//! shared with its `override` feature; this crate adds the exports, the
//! initial-exec TLS block for the thread caches (`src/tls.c`), and:
//! - `SECALLOC_REPORT=1` prints the arena's statistics on stderr at exit.
//!
//! No function here unwinds (a Rust panic across `extern "C"` aborts) and none
//! allocates through anything but the arena.

#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_int, c_void};
use secalloc::__unstable::capi::{allocator, CSurface};
use secalloc::__unstable::sys;
use secalloc::LockPolicy;

/// The C surface shared with the `override` feature (`secalloc`'s
/// `src/capi.rs`), with the per-thread caches moved into `tls.c`'s
/// initial-exec block before the arena's first use.
static SURFACE: CSurface = CSurface {
    before_start: use_initial_exec_caches,
};

extern "C" {
    /// This thread's block of initial-exec TLS for the arena's caches
    /// (`src/tls.c`).
    fn secalloc_preload_thread_block() -> *mut u8;
    /// Its size in bytes.
    fn secalloc_preload_thread_block_bytes() -> usize;
}

/// Moves the per-thread caches into `tls.c`'s initial-exec block, before
/// anything has used the arena's own (general-dynamic) thread-locals.
fn use_initial_exec_caches() {
    use secalloc::__unstable::{use_external_thread_block, EXTERNAL_THREAD_BLOCK_BYTES};
    // SAFETY: a C function with no preconditions.
    let bytes = unsafe { secalloc_preload_thread_block_bytes() };
    if bytes < EXTERNAL_THREAD_BLOCK_BYTES {
        sys::fatal("preload: tls.c's thread block is smaller than the arena's caches");
    }
    // SAFETY: `tls.c` returns each thread's own zero-initialised, 64-byte
    // aligned block of `bytes` (checked above) bytes, in static TLS that
    // lives as long as the thread, and never allocates or unwinds.
    let _ = unsafe { use_external_thread_block(secalloc_preload_thread_block) };
}

// ---------------------------------------------------------------------------
// The exported C allocation surface
// ---------------------------------------------------------------------------

/// # Safety
/// C `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    SURFACE.malloc(size)
}

/// # Safety
/// C `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    SURFACE.calloc(count, size)
}

/// # Safety
/// C `free`: `ptr` is null or a live block from these functions.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: forwarded from the caller.
    unsafe { SURFACE.free(ptr) }
}

/// # Safety
/// C `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded from the caller.
    unsafe { SURFACE.realloc(ptr, size) }
}

/// # Safety
/// C `reallocarray`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, count: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded from the caller.
    unsafe { SURFACE.reallocarray(ptr, count, size) }
}

/// # Safety
/// C `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { SURFACE.posix_memalign(out, align, size) }
}

/// # Safety
/// C11 `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    SURFACE.aligned_alloc(align, size)
}

/// # Safety
/// Obsolete `memalign`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    SURFACE.memalign(align, size)
}

/// # Safety
/// Obsolete `valloc`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    SURFACE.valloc(size)
}

/// # Safety
/// Obsolete `pvalloc`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    SURFACE.pvalloc(size)
}

/// # Safety
/// `malloc_usable_size`: 0 for null.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    SURFACE.malloc_usable_size(ptr)
}

// ---------------------------------------------------------------------------
// Exit report
// ---------------------------------------------------------------------------

extern "C" fn report_at_exit() {
    if !sys::with_env(c"SECALLOC_REPORT", |v| v.is_some()) || !SURFACE.started() {
        return;
    }
    let stats = allocator().stats();
    let mut digits = [0u8; 20];
    sys::write_stderr(b"secalloc-preload: policy=");
    sys::write_stderr(if stats.policy == LockPolicy::FailClosed {
        b"require"
    } else {
        b"best-effort"
    });
    for (name, value) in [
        (&b" mapped_bytes="[..], stats.mapped_bytes),
        (b" locked_bytes=", stats.locked_bytes),
        (b" unlocked_bytes=", stats.unlocked_bytes),
        (b" live_allocations=", stats.live_allocations),
        (b" lock_refusals=", stats.lock_refusals),
        (b" boot_used=", SURFACE.boot_usage().0),
        (b" boot_unlocked=", SURFACE.boot_usage().1),
    ] {
        sys::write_stderr(name);
        sys::write_stderr(sys::decimal(value, &mut digits));
    }
    sys::write_stderr(b"\n");
}

/// Registers the exit report when the library is loaded.
#[used]
#[link_section = ".init_array"]
static REGISTER_REPORT: extern "C" fn() = {
    extern "C" fn register() {
        let _ = sys::register_atexit(report_at_exit);
    }
    register
};
