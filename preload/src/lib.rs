//! `libsecalloc_preload.so`: the C allocation surface (`malloc`, `free`,
//! `calloc`, `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`,
//! `memalign`, `valloc`, `pvalloc`, `malloc_usable_size`) over secalloc's
//! arena, so `LD_PRELOAD=libsecalloc_preload.so program` runs any
//! dynamically linked program on a locked, dump-excluded, zero-on-free heap.
//!
//! - The lock policy comes from `SECALLOC_LOCK` (`require`, the default, or
//!   `best-effort`), read with `getenv` (no allocation).
//! - Start-up: the first call reserves the arena; calls that arrive while
//!   that is in progress on the same thread (the C library may allocate while
//!   we register fork handlers) are served from a small static bump buffer,
//!   whose blocks are never reused.
//! - `SECALLOC_REPORT=1` prints the arena's statistics on stderr at exit.
//!
//! No function here unwinds (a Rust panic across `extern "C"` aborts) and none
//! allocates through anything but the arena.

#![deny(unsafe_op_in_unsafe_fn)]

use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use secalloc::{sys, LockPolicy, SecureAlloc};

/// `max_align_t` on x86_64 and aarch64 Linux.
const MALLOC_ALIGN: usize = 16;

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

const POLICY_UNSET: u8 = 0;
const POLICY_REQUIRE: u8 = 1;
const POLICY_BEST_EFFORT: u8 = 2;
static POLICY: AtomicU8 = AtomicU8::new(POLICY_UNSET);

#[inline(always)]
fn allocator() -> SecureAlloc {
    let policy = match POLICY.load(Ordering::Relaxed) {
        POLICY_UNSET => choose_policy(),
        p => p,
    };
    SecureAlloc::with_policy(if policy == POLICY_BEST_EFFORT {
        LockPolicy::BestEffort
    } else {
        LockPolicy::FailClosed
    })
}

/// Reads `SECALLOC_LOCK` once (kept out of line: `malloc` and `free` run
/// `allocator()` on every call).
#[cold]
#[inline(never)]
fn choose_policy() -> u8 {
    let chosen = match LockPolicy::from_env_or_default() {
        LockPolicy::BestEffort => POLICY_BEST_EFFORT,
        _ => POLICY_REQUIRE,
    };
    POLICY.store(chosen, Ordering::Relaxed);
    chosen
}

// ---------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------

/// Bytes served before the arena is up (on the starting thread only).
const BOOT_LEN: usize = 256 * 1024;
#[repr(C, align(4096))]
struct BootBuffer([u8; BOOT_LEN]);
static mut BOOT: BootBuffer = BootBuffer([0; BOOT_LEN]);
static BOOT_USED: AtomicUsize = AtomicUsize::new(0);

const NOT_STARTED: u8 = 0;
const STARTING: u8 = 1;
const STARTED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(NOT_STARTED);

std::thread_local! {
    /// This thread is starting the arena: nested calls use the boot buffer.
    static IN_START: Cell<bool> = const { Cell::new(false) };
}

fn boot_range() -> (usize, usize) {
    let start = core::ptr::addr_of!(BOOT) as usize;
    (start, start + BOOT_LEN)
}

fn is_boot(ptr: *mut c_void) -> bool {
    let (start, end) = boot_range();
    (start..end).contains(&(ptr as usize))
}

/// Bump-allocates from the boot buffer; each block carries its size in the
/// 16 bytes before it (for `realloc` and `malloc_usable_size`).
fn boot_alloc(size: usize, align: usize) -> *mut c_void {
    let align = align.max(MALLOC_ALIGN);
    let (start, _) = boot_range();
    let mut used = BOOT_USED.load(Ordering::Relaxed);
    loop {
        let data = (start + used + MALLOC_ALIGN).next_multiple_of(align);
        let end = match data.checked_add(size.max(1)) {
            Some(end) if end <= start + BOOT_LEN => end,
            _ => return core::ptr::null_mut(),
        };
        match BOOT_USED.compare_exchange(used, end - start, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                // SAFETY: `[data - 16, end)` is inside the boot buffer and was
                // just claimed by this call alone.
                unsafe { ((data - MALLOC_ALIGN) as *mut usize).write(size) };
                return data as *mut c_void;
            }
            Err(seen) => used = seen,
        }
    }
}

fn boot_size(ptr: *mut c_void) -> usize {
    // SAFETY: boot blocks carry their size in the 16 bytes before them.
    unsafe { ((ptr as usize - MALLOC_ALIGN) as *const usize).read() }
}

/// Keeps the part of the boot buffer the C library used out of swap and
/// core dumps, like the arena. Only the pages actually used are locked (a
/// few KiB at most): locking the whole static buffer would spend the lock
/// budget of a small container before the first real `malloc`. Boot blocks
/// are never handed out again after start-up, so the used prefix is final.
fn protect_boot_buffer() {
    let (boot_start, boot_end) = boot_range();
    let _ = sys::madvise_dontdump(boot_start, boot_end - boot_start);
    let used = BOOT_USED.load(Ordering::Acquire);
    if used != 0 {
        let len = used.next_multiple_of(sys::page_size());
        if sys::mlock_on_fault(boot_start, len).is_err() {
            BOOT_UNLOCKED.store(len, Ordering::Relaxed);
        }
    }
}

/// Bytes of the boot buffer's used prefix the kernel refused to lock
/// (reported by `SECALLOC_REPORT`).
static BOOT_UNLOCKED: AtomicUsize = AtomicUsize::new(0);

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
    // SAFETY: a C function with no preconditions.
    let bytes = unsafe { secalloc_preload_thread_block_bytes() };
    if bytes < secalloc::arena::EXTERNAL_THREAD_BLOCK_BYTES {
        secalloc::sys::fatal("preload: tls.c's thread block is smaller than the arena's caches");
    }
    // SAFETY: `tls.c` returns each thread's own zero-initialised, 64-byte
    // aligned block of `bytes` (checked above) bytes, in static TLS that
    // lives as long as the thread, and never allocates or unwinds.
    let _ = unsafe { secalloc::arena::use_external_thread_block(secalloc_preload_thread_block) };
}

/// Makes sure the arena is up. Returns `false` if this call is nested
/// inside start-up on this thread (the caller then uses the boot buffer).
#[inline]
fn ready() -> bool {
    if STATE.load(Ordering::Acquire) == STARTED {
        return true;
    }
    start_slow()
}

#[cold]
fn start_slow() -> bool {
    if IN_START.try_with(|f| f.get()).unwrap_or(true) {
        return false;
    }
    let _ = STATE.compare_exchange(NOT_STARTED, STARTING, Ordering::AcqRel, Ordering::Acquire);
    let _ = IN_START.try_with(|f| f.set(true));
    use_initial_exec_caches();
    let a = allocator();
    a.warm_up();
    protect_boot_buffer();
    let _ = IN_START.try_with(|f| f.set(false));
    STATE.store(STARTED, Ordering::Release);
    true
}

// ---------------------------------------------------------------------------
// The C allocation surface
// ---------------------------------------------------------------------------

#[inline(always)]
fn alloc(size: usize, align: usize) -> *mut c_void {
    let p = if ready() {
        if align == MALLOC_ALIGN {
            allocator().c_malloc(size) as *mut c_void
        } else {
            allocator().c_alloc(size, align) as *mut c_void
        }
    } else {
        boot_alloc(size, align)
    };
    if p.is_null() {
        sys::set_errno(libc_enomem());
    }
    p
}

const fn libc_enomem() -> i32 {
    12 // ENOMEM on Linux
}
const EINVAL: c_int = 22;

/// # Safety
/// C `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc(size, MALLOC_ALIGN)
}

/// # Safety
/// C `calloc`: arena memory is always zero, so no clearing pass.
#[no_mangle]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        Some(total) => alloc(total, MALLOC_ALIGN),
        None => {
            sys::set_errno(libc_enomem());
            core::ptr::null_mut()
        }
    }
}

/// # Safety
/// C `free`: `ptr` is null or a live block from these functions.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() || is_boot(ptr) {
        return;
    }
    // SAFETY: forwarded from the caller; the arena aborts on foreign pointers.
    unsafe { allocator().c_free(ptr as *mut u8) }
}

/// # Safety
/// C `realloc` (glibc semantics: `realloc(p, 0)` frees `p` and returns null).
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return alloc(size, MALLOC_ALIGN);
    }
    if size == 0 {
        // SAFETY: forwarded from the caller.
        unsafe { free(ptr) };
        return core::ptr::null_mut();
    }
    if is_boot(ptr) {
        let new = alloc(size, MALLOC_ALIGN);
        if !new.is_null() {
            // SAFETY: both blocks are live; the copy stays inside both.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    ptr as *const u8,
                    new as *mut u8,
                    boot_size(ptr).min(size),
                )
            };
        }
        return new;
    }
    // SAFETY: forwarded from the caller.
    let p = unsafe { allocator().c_realloc(ptr as *mut u8, size) } as *mut c_void;
    if p.is_null() {
        sys::set_errno(libc_enomem());
    }
    p
}

/// # Safety
/// C `reallocarray`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: forwarded from the caller.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            sys::set_errno(libc_enomem());
            core::ptr::null_mut()
        }
    }
}

/// # Safety
/// C `posix_memalign`: `align` must be a power of two multiple of
/// `sizeof(void *)`, else `EINVAL`; `*out` is untouched on failure.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return EINVAL;
    }
    let p = alloc(size, align.max(MALLOC_ALIGN));
    if p.is_null() {
        return libc_enomem();
    }
    // SAFETY: the caller passes a valid out-pointer.
    unsafe { out.write(p) };
    0
}

/// # Safety
/// C11 `aligned_alloc` (glibc accepts any power-of-two alignment).
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        sys::set_errno(EINVAL);
        return core::ptr::null_mut();
    }
    alloc(size, align.max(MALLOC_ALIGN))
}

/// # Safety
/// Obsolete `memalign` (glibc rounds a non-power-of-two alignment up).
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    let Some(align) = align.max(MALLOC_ALIGN).checked_next_power_of_two() else {
        sys::set_errno(EINVAL);
        return core::ptr::null_mut();
    };
    alloc(size, align)
}

/// # Safety
/// Obsolete `valloc`: page-aligned.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc(size, sys::page_size())
}

/// # Safety
/// Obsolete `pvalloc`: page-aligned, size rounded up to whole pages.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = sys::page_size();
    match size.max(1).checked_next_multiple_of(page) {
        Some(rounded) => alloc(rounded, page),
        None => {
            sys::set_errno(libc_enomem());
            core::ptr::null_mut()
        }
    }
}

/// # Safety
/// `malloc_usable_size`: 0 for null.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    if ptr.is_null() {
        return 0;
    }
    if is_boot(ptr) {
        return boot_size(ptr);
    }
    match SecureAlloc::usable_size(ptr as *const u8) {
        Some(size) => size,
        None => secalloc::fatal::fatal_invalid_usable_size(),
    }
}

// ---------------------------------------------------------------------------
// Exit report
// ---------------------------------------------------------------------------

extern "C" fn report_at_exit() {
    if !sys::with_env(c"SECALLOC_REPORT", |v| v.is_some())
        || STATE.load(Ordering::Acquire) != STARTED
    {
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
        (b" boot_used=", BOOT_USED.load(Ordering::Relaxed)),
        (b" boot_unlocked=", BOOT_UNLOCKED.load(Ordering::Relaxed)),
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
