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
//! - bounds-checked `memcpy` and `memmove` (`src/copy.rs`);
//! - `SECALLOC_REPORT=1` prints the arena's statistics on stderr at exit.
//!
//! No function here unwinds (a Rust panic across `extern "C"` aborts) and none
//! allocates through anything but the arena.

#![deny(unsafe_op_in_unsafe_fn)]

mod copy;
mod cxx;

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
// The exported C allocation surface (the one list of symbols, shared with
// secalloc's `override` feature)
// ---------------------------------------------------------------------------

secalloc::__export_c_allocation_surface!(SURFACE);

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
