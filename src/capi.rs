//! The C allocation surface over the arena — `malloc`, `free`, `calloc`,
//! `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`,
//! `memalign`, `valloc`, `pvalloc`, `malloc_usable_size` with glibc's
//! semantics — written once and used twice: by the `LD_PRELOAD` library
//! (`preload/`) and by the `override` feature, which exports these symbols
//! from a Rust binary so that the C libraries linked into it allocate from
//! the same locked arena.
//!
//! - The lock policy comes from `SECALLOC_LOCK` (`require`, the default, or
//!   `best-effort`; see [`LockPolicy::from_env`]).
//! - Start-up: the first call reserves the arena; calls that arrive while
//!   that is in progress on the same thread (the C library may allocate
//!   while the arena registers its fork handlers) are served from a small
//!   static bump buffer, whose blocks are never reused. Its used prefix is
//!   locked and dump-excluded once start-up is done.
//!
//! No function here unwinds and none allocates through anything but the
//! arena.

#![allow(unsafe_code)]

use crate::sys;
use crate::{CheckLevel, LockPolicy, SecureAlloc};
use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// `max_align_t` on x86_64 and aarch64 Linux.
const MALLOC_ALIGN: usize = 16;
const ENOMEM: c_int = 12;
const EINVAL: c_int = 22;

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

const POLICY_UNSET: u8 = 0;
const POLICY_REQUIRE: u8 = 1;
const POLICY_BEST_EFFORT: u8 = 2;
/// Bits in [`POLICY`]: `SECALLOC_CHECKS=full` / `off`.
const CHECKS_FULL: u8 = 4;
const CHECKS_OFF: u8 = 8;
static POLICY: AtomicU8 = AtomicU8::new(POLICY_UNSET);

/// Every allocator [`POLICY`] can name, by its value: one load and one
/// table read per call (decoding the bits on every `malloc` and `free`
/// measured 11-16 instructions a call in callgrind).
static ALLOCATORS: [SecureAlloc; 16] = {
    let mut table = [SecureAlloc::new(); 16];
    let mut i = 0;
    while i < 16 {
        let alloc = SecureAlloc::with_policy(if i & 3 == POLICY_BEST_EFFORT as usize {
            LockPolicy::BestEffort
        } else {
            LockPolicy::FailClosed
        });
        table[i] = alloc.with_checks(if i & CHECKS_FULL as usize != 0 {
            CheckLevel::Full
        } else if i & CHECKS_OFF as usize != 0 {
            CheckLevel::Off
        } else {
            CheckLevel::Default
        });
        i += 1;
    }
    table
};

/// The allocator for the policy in `SECALLOC_LOCK` and the check level in
/// `SECALLOC_CHECKS`.
#[inline(always)]
pub fn allocator() -> &'static SecureAlloc {
    let chosen = match POLICY.load(Ordering::Relaxed) {
        POLICY_UNSET => choose_policy(),
        p => p,
    };
    &ALLOCATORS[chosen as usize & 15]
}

/// Reads `SECALLOC_LOCK` and `SECALLOC_CHECKS` once (kept out of line:
/// `malloc` and `free` run `allocator()` on every call). An invalid policy
/// fails closed.
#[cold]
#[inline(never)]
fn choose_policy() -> u8 {
    let mut chosen = match LockPolicy::from_env_or_default() {
        LockPolicy::BestEffort => POLICY_BEST_EFFORT,
        LockPolicy::FailClosed => POLICY_REQUIRE,
    };
    match CheckLevel::from_env_or_default() {
        CheckLevel::Full => chosen |= CHECKS_FULL,
        CheckLevel::Off => chosen |= CHECKS_OFF,
        CheckLevel::Default => {}
    }
    POLICY.store(chosen, Ordering::Relaxed);
    chosen
}

// ---------------------------------------------------------------------------
// Zero-size blocks
// ---------------------------------------------------------------------------

/// Addresses for `malloc(0)`: the last part of the static buffer below,
/// made `PROT_NONE` on first use, so that one range check on `free` covers
/// boot blocks and zero-size blocks (a separate check of a separate region
/// measured 8 more instructions a `free`). Each call gets its own address,
/// 16 bytes apart; any read or write through one faults.
const ZERO_REGION: usize = 1 << 20;
static ZERO_READY: AtomicU8 = AtomicU8::new(0); // 0 not yet, 1 protected, 2 failed
static ZERO_NEXT: AtomicUsize = AtomicUsize::new(0);

/// The zero-size region: the tail of the boot buffer.
fn zero_region_start() -> usize {
    boot_range().0 + BOOT_LEN
}

/// Zero-size blocks the region holds: one per 16 bytes.
const ZERO_BLOCKS: usize = ZERO_REGION / MALLOC_ALIGN;

/// A bit per zero-size block, set while it is live: so two live blocks
/// never share an address, and a second `free` of one is seen (it was not:
/// found by the issue-14 attack review).
static ZERO_LIVE: [AtomicU64; ZERO_BLOCKS / 64] = [const { AtomicU64::new(0) }; ZERO_BLOCKS / 64];

/// Addresses [`zero_size_block`] tries before giving up.
const ZERO_TRIES: usize = 64;

/// A fresh zero-size block, or null if the region cannot be protected or
/// the next [`ZERO_TRIES`] zero-size blocks are all live (the caller then
/// takes an ordinary block).
fn zero_size_block() -> *mut c_void {
    let start = zero_region_start();
    if ZERO_READY.load(Ordering::Acquire) != 1 {
        // SAFETY: the zero region is ours (a static never used otherwise)
        // and page-aligned (the buffer is 4096-aligned, BOOT_LEN a multiple);
        // nothing has been handed out in it yet, or it is already
        // `PROT_NONE` (a racing first call: mprotect is idempotent).
        let ok = unsafe { sys::mprotect(start, ZERO_REGION, sys::Protection::None) }.is_ok();
        ZERO_READY.store(if ok { 1 } else { 2 }, Ordering::Release);
        if !ok {
            return core::ptr::null_mut();
        }
    }
    // A few tries, not a search of the whole region: when it is (nearly)
    // full, the caller's ordinary block is cheaper than 65,536 atomic steps
    // (which is what a full search cost each call once 65,536 were live).
    for _ in 0..ZERO_TRIES {
        let n = ZERO_NEXT.fetch_add(1, Ordering::Relaxed) % ZERO_BLOCKS;
        let bit = 1u64 << (n % 64);
        if ZERO_LIVE[n / 64].fetch_or(bit, Ordering::AcqRel) & bit == 0 {
            return (start + n * MALLOC_ALIGN) as *mut c_void;
        }
    }
    core::ptr::null_mut()
}

/// Frees a zero-size block: aborts on a pointer that is not one's start,
/// or on one that is not live (a double free).
fn free_zero_block(ptr: *mut c_void) {
    let offset = ptr as usize - zero_region_start();
    if offset % MALLOC_ALIGN != 0 {
        crate::fatal::fatal_at(crate::fatal::FatalKind::InvalidFree, ptr as usize);
    }
    let n = offset / MALLOC_ALIGN;
    let bit = 1u64 << (n % 64);
    // Past the bitmap is past the region: not a block this library made.
    let Some(word) = ZERO_LIVE.get(n / 64) else {
        crate::fatal::fatal_at(crate::fatal::FatalKind::InvalidFree, ptr as usize);
    };
    if word.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
        crate::fatal::fatal_at(crate::fatal::FatalKind::DoubleFree, ptr as usize);
    }
}

fn is_zero_block(ptr: *mut c_void) -> bool {
    let start = zero_region_start();
    (ptr as usize).wrapping_sub(start) < ZERO_REGION
}

// ---------------------------------------------------------------------------
// Start-up and the boot buffer
// ---------------------------------------------------------------------------

/// Bytes served before the arena is up (on the starting thread only).
const BOOT_LEN: usize = 256 * 1024;
#[repr(C, align(4096))]
struct BootBuffer([u8; BOOT_LEN + ZERO_REGION]);
static mut BOOT: BootBuffer = BootBuffer([0; BOOT_LEN + ZERO_REGION]);
static BOOT_USED: AtomicUsize = AtomicUsize::new(0);
/// 16-byte granules of the boot buffer: a block's data starts on one.
const BOOT_GRANULES: usize = BOOT_LEN / MALLOC_ALIGN;
/// Out-of-band records of the boot blocks, a bit per granule: where a block
/// was handed out, and whether it still is live. The size word in front of
/// each block is in band — a stray pointer, or an overflow of the block
/// before, makes it anything — so it is believed only within these bounds
/// (the outside review found `free(boot + 1000)` accepted and a `realloc`
/// through a forged size word copying 1 MiB past the buffer).
static BOOT_STARTS: [AtomicU64; BOOT_GRANULES / 64] =
    [const { AtomicU64::new(0) }; BOOT_GRANULES / 64];
static BOOT_LIVE: [AtomicU64; BOOT_GRANULES / 64] =
    [const { AtomicU64::new(0) }; BOOT_GRANULES / 64];
/// Bytes of the boot buffer's used prefix the kernel refused to lock.
static BOOT_UNLOCKED: AtomicUsize = AtomicUsize::new(0);

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

/// Whether `ptr` is in the static buffer: a boot block or a zero-size one
/// (one compare on the hot path; [`is_zero_block`] tells them apart).
#[inline(always)]
fn is_static(ptr: *mut c_void) -> bool {
    let start = core::ptr::addr_of!(BOOT) as usize;
    (ptr as usize).wrapping_sub(start) < BOOT_LEN + ZERO_REGION
}

fn is_boot(ptr: *mut c_void) -> bool {
    is_static(ptr) && !is_zero_block(ptr)
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
                let granule = (data - start) / MALLOC_ALIGN;
                let bit = 1u64 << (granule % 64);
                if let (Some(starts), Some(live)) =
                    (BOOT_STARTS.get(granule / 64), BOOT_LIVE.get(granule / 64))
                {
                    starts.fetch_or(bit, Ordering::Release);
                    live.fetch_or(bit, Ordering::Release);
                }
                return data as *mut c_void;
            }
            Err(seen) => used = seen,
        }
    }
}

/// Whether granule `granule` of the boot buffer has its bit set in `map`.
fn boot_bit(map: &[AtomicU64; BOOT_GRANULES / 64], granule: usize) -> bool {
    map.get(granule / 64)
        .is_some_and(|word| word.load(Ordering::Acquire) & (1u64 << (granule % 64)) != 0)
}

/// The granule of `ptr` if a boot block was handed out there, live or not.
fn boot_granule(ptr: *mut c_void) -> Option<usize> {
    let offset = (ptr as usize).wrapping_sub(boot_range().0);
    if offset >= BOOT_LEN || offset % MALLOC_ALIGN != 0 {
        return None;
    }
    let granule = offset / MALLOC_ALIGN;
    boot_bit(&BOOT_STARTS, granule).then_some(granule)
}

/// The usable size of live boot block `ptr`, or a `kind` report if `ptr`
/// is not one: its size word, believed only up to where the next block's
/// size word (or the used part of the buffer) begins.
fn boot_size(ptr: *mut c_void, kind: crate::fatal::FatalKind) -> usize {
    let Some(granule) = boot_granule(ptr).filter(|&g| boot_bit(&BOOT_LIVE, g)) else {
        crate::fatal::fatal_at(kind, ptr as usize);
    };
    let used_end = BOOT_USED.load(Ordering::Acquire).min(BOOT_LEN);
    let mut next = granule + 1;
    while next * MALLOC_ALIGN < used_end && !boot_bit(&BOOT_STARTS, next) {
        next += 1;
    }
    let region_end = if next * MALLOC_ALIGN < used_end {
        (next - 1) * MALLOC_ALIGN // the next block's size word
    } else {
        used_end
    };
    let room = region_end.saturating_sub(granule * MALLOC_ALIGN);
    // SAFETY: a live boot block has its size word in the 16 bytes before
    // it, inside the buffer (its granule's bit says a block starts there).
    let recorded = unsafe { ((ptr as usize - MALLOC_ALIGN) as *const usize).read() };
    recorded.min(room)
}

/// Ends the life of boot block `ptr` (a `free`, or a `realloc` that moved
/// it): `invalid free` if no boot block starts there, `double free` if it
/// already ended. Boot blocks are never handed out again.
fn retire_boot_block(ptr: *mut c_void) {
    use crate::fatal::{fatal_at, FatalKind};
    let Some(granule) = boot_granule(ptr) else {
        fatal_at(FatalKind::InvalidFree, ptr as usize);
    };
    let bit = 1u64 << (granule % 64);
    let live = BOOT_LIVE
        .get(granule / 64)
        .is_some_and(|word| word.fetch_and(!bit, Ordering::AcqRel) & bit != 0);
    if !live {
        fatal_at(FatalKind::DoubleFree, ptr as usize);
    }
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

/// The C surface, with what the embedding needs done before the arena's
/// first use (the preload moves the per-thread caches into initial-exec
/// TLS there).
pub struct CSurface {
    /// Runs once, on the thread that starts the arena, before anything
    /// else touches it.
    pub before_start: fn(),
}

impl CSurface {
    /// Makes sure the arena is up. Returns `false` if this call is nested
    /// inside start-up on this thread (the caller then uses the boot buffer).
    #[inline]
    fn ready(&self) -> bool {
        if STATE.load(Ordering::Acquire) == STARTED {
            return true;
        }
        self.start_slow()
    }

    #[cold]
    fn start_slow(&self) -> bool {
        if IN_START.try_with(|f| f.get()).unwrap_or(true) {
            return false;
        }
        let _ = STATE.compare_exchange(NOT_STARTED, STARTING, Ordering::AcqRel, Ordering::Acquire);
        let _ = IN_START.try_with(|f| f.set(true));
        (self.before_start)();
        allocator().warm_up();
        protect_boot_buffer();
        let _ = IN_START.try_with(|f| f.set(false));
        STATE.store(STARTED, Ordering::Release);
        true
    }

    /// Whether the arena has started (for an exit report).
    pub fn started(&self) -> bool {
        STATE.load(Ordering::Acquire) == STARTED
    }

    /// `(bytes of the boot buffer used, bytes of them left unlocked)`.
    pub fn boot_usage(&self) -> (usize, usize) {
        (
            BOOT_USED.load(Ordering::Relaxed),
            BOOT_UNLOCKED.load(Ordering::Relaxed),
        )
    }

    #[inline(always)]
    fn alloc(&self, size: usize, align: usize) -> *mut c_void {
        if size == 0 && align <= MALLOC_ALIGN {
            return self.alloc_zero_size();
        }
        let p = if self.ready() {
            if align == MALLOC_ALIGN {
                allocator().c_malloc(size) as *mut c_void
            } else {
                allocator().c_alloc(size, align) as *mut c_void
            }
        } else {
            boot_alloc(size, align)
        };
        if p.is_null() {
            sys::set_errno(ENOMEM);
        }
        p
    }

    #[cold]
    fn alloc_zero_size(&self) -> *mut c_void {
        let p = zero_size_block();
        if !p.is_null() {
            return p;
        }
        // The next addresses all live (or no `PROT_NONE` region): an
        // ordinary one-byte block, still distinct and valid — a program may
        // take null from `malloc(0)` for out of memory.
        self.alloc(1, MALLOC_ALIGN)
    }

    /// C `malloc`.
    #[inline(always)]
    pub fn malloc(&self, size: usize) -> *mut c_void {
        self.alloc(size, MALLOC_ALIGN)
    }

    /// C++ `operator new` (`array`: `new[]`) of `size` bytes aligned to
    /// `align`: a block as `malloc` makes it (a distinct inaccessible one
    /// for 0 bytes), with the operator recorded for [`Self::cxx_delete`].
    /// Null on failure, with no new-handler run: the caller decides.
    pub fn cxx_new(&self, size: usize, align: usize, array: bool) -> *mut c_void {
        let p = self.alloc(size, align.max(MALLOC_ALIGN));
        if !p.is_null() {
            self.cxx_record(p, array, None);
        }
        p
    }

    /// Records that the block at `p` (from any allocation function here)
    /// now belongs to C++ `new` (`array`: `new[]`), with `size` the size
    /// the program asked for when the block was made for another (the C++
    /// runtime's aligned `new` rounds it up). Boot and zero-size blocks
    /// carry no record: their deletes are not checked.
    pub fn cxx_record(&self, p: *mut c_void, array: bool, size: Option<usize>) {
        if !p.is_null() && !is_static(p) {
            allocator().record_cxx(p as usize, array, size);
        }
    }

    /// C++ `operator delete` (`array`: `delete[]`; `size`: the sized
    /// forms): aborts with `mismatched new/delete` or `sized delete with
    /// the wrong size` when the block says otherwise, then frees it.
    ///
    /// # Safety
    /// As [`Self::free`].
    pub unsafe fn cxx_delete(&self, ptr: *mut c_void, size: Option<usize>, array: bool) {
        if ptr.is_null() {
            return;
        }
        if is_static(ptr) {
            // Unchecked (no record), but a zero-size block's live bit goes.
            // SAFETY: forwarded from the caller.
            return unsafe { self.free(ptr) };
        }
        allocator().cxx_check_delete(ptr as usize, size, array);
        // SAFETY: forwarded from the caller.
        unsafe { self.free(ptr) }
    }

    /// C `calloc`: arena memory is always zero, so no clearing pass (only
    /// the check that it still is, see `SecureAlloc::check_zeroed`).
    #[inline]
    pub fn calloc(&self, count: usize, size: usize) -> *mut c_void {
        match count.checked_mul(size) {
            Some(total) => {
                let p = self.alloc(total, MALLOC_ALIGN);
                if !p.is_null() && !is_static(p) {
                    allocator().check_zeroed(p as usize, total);
                }
                p
            }
            None => {
                sys::set_errno(ENOMEM);
                core::ptr::null_mut()
            }
        }
    }

    /// C `free`.
    ///
    /// # Safety
    /// `ptr` is null or a live block from these functions (the arena aborts
    /// with a message on any other pointer).
    #[inline(always)]
    pub unsafe fn free(&self, ptr: *mut c_void) {
        if ptr.is_null() || is_static(ptr) {
            // Boot blocks are never reused (only checked and retired);
            // zero-size ones hold nothing but their live bit.
            if is_zero_block(ptr) {
                free_zero_block(ptr);
            } else if !ptr.is_null() {
                retire_boot_block(ptr);
            }
            return;
        }
        // SAFETY: forwarded from the caller.
        unsafe { allocator().c_free(ptr as *mut u8) }
    }

    /// C `realloc` (glibc semantics: `realloc(p, 0)` frees `p` and returns
    /// null).
    ///
    /// # Safety
    /// As [`Self::free`].
    pub unsafe fn realloc(&self, ptr: *mut c_void, size: usize) -> *mut c_void {
        if ptr.is_null() {
            return self.alloc(size, MALLOC_ALIGN);
        }
        if size == 0 {
            // SAFETY: forwarded from the caller.
            unsafe { self.free(ptr) };
            return core::ptr::null_mut();
        }
        if is_zero_block(ptr) {
            let new = self.alloc(size, MALLOC_ALIGN);
            if !new.is_null() {
                free_zero_block(ptr);
            }
            return new;
        }
        if is_boot(ptr) {
            let old_size = boot_size(ptr, crate::fatal::FatalKind::InvalidRealloc);
            let new = self.alloc(size, MALLOC_ALIGN);
            if !new.is_null() {
                // SAFETY: both blocks are live; the copy stays inside both
                // (`old_size` is bounded by the boot block's region).
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        ptr as *const u8,
                        new as *mut u8,
                        old_size.min(size),
                    )
                };
                retire_boot_block(ptr);
            }
            return new;
        }
        // SAFETY: forwarded from the caller.
        let p = unsafe { allocator().c_realloc(ptr as *mut u8, size) } as *mut c_void;
        if p.is_null() {
            sys::set_errno(ENOMEM);
        }
        p
    }

    /// C `reallocarray`.
    ///
    /// # Safety
    /// As [`Self::free`].
    pub unsafe fn reallocarray(&self, ptr: *mut c_void, count: usize, size: usize) -> *mut c_void {
        match count.checked_mul(size) {
            // SAFETY: forwarded from the caller.
            Some(total) => unsafe { self.realloc(ptr, total) },
            None => {
                sys::set_errno(ENOMEM);
                core::ptr::null_mut()
            }
        }
    }

    /// C `posix_memalign`: `align` must be a power of two multiple of
    /// `sizeof(void *)`, else `EINVAL`; `*out` is untouched on failure.
    ///
    /// # Safety
    /// `out` is valid for a pointer write.
    pub unsafe fn posix_memalign(&self, out: *mut *mut c_void, align: usize, size: usize) -> c_int {
        if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
            return EINVAL;
        }
        let p = self.alloc(size, align.max(MALLOC_ALIGN));
        if p.is_null() {
            return ENOMEM;
        }
        // SAFETY: forwarded from the caller.
        unsafe { out.write(p) };
        0
    }

    /// C11 `aligned_alloc` (glibc accepts any power-of-two alignment).
    pub fn aligned_alloc(&self, align: usize, size: usize) -> *mut c_void {
        if !align.is_power_of_two() {
            sys::set_errno(EINVAL);
            return core::ptr::null_mut();
        }
        self.alloc(size, align.max(MALLOC_ALIGN))
    }

    /// Obsolete `memalign` (glibc rounds a non-power-of-two alignment up).
    pub fn memalign(&self, align: usize, size: usize) -> *mut c_void {
        let Some(align) = align.max(MALLOC_ALIGN).checked_next_power_of_two() else {
            sys::set_errno(EINVAL);
            return core::ptr::null_mut();
        };
        self.alloc(size, align)
    }

    /// Obsolete `valloc`: page-aligned.
    pub fn valloc(&self, size: usize) -> *mut c_void {
        self.alloc(size, sys::page_size())
    }

    /// Obsolete `pvalloc`: page-aligned, size rounded up to whole pages.
    pub fn pvalloc(&self, size: usize) -> *mut c_void {
        let page = sys::page_size();
        match size.max(1).checked_next_multiple_of(page) {
            Some(rounded) => self.alloc(rounded, page),
            None => {
                sys::set_errno(ENOMEM);
                core::ptr::null_mut()
            }
        }
    }

    /// The bounds check of the preload's `memcpy` and `memmove`: aborts
    /// with `copy out of bounds` if either range starts in a slab and does
    /// not lie inside the requested bytes of a live block (an overflow, an
    /// underflow, or a copy to or from freed memory: a Heartbleed-style
    /// over-read stops here). Only under `SECALLOC_CHECKS=full`: at
    /// `default` it cost espresso 8–10% CPU time (interleaved runs against
    /// the preload without it), over the 5% `default` may cost. Nothing is
    /// checked before the first allocation (the heaps are empty). Large
    /// blocks are left to their guard pages.
    #[inline]
    pub fn check_copy(&self, dst: *const c_void, src: *const c_void, len: usize) {
        let chosen = POLICY.load(Ordering::Relaxed);
        if chosen == POLICY_UNSET || ALLOCATORS[chosen as usize & 15].checks() != CheckLevel::Full {
            return;
        }
        crate::arena::check_copy_range(dst as usize, len);
        crate::arena::check_copy_range(src as usize, len);
    }

    /// `malloc_usable_size`: 0 for null; aborts with a message on a pointer
    /// the arena never issued.
    pub fn malloc_usable_size(&self, ptr: *mut c_void) -> usize {
        if ptr.is_null() {
            return 0;
        }
        if is_boot(ptr) {
            return boot_size(ptr, crate::fatal::FatalKind::InvalidUsableSize);
        }
        if is_zero_block(ptr) {
            return 0;
        }
        // The requested size, not the slot's: the slack past it is checked
        // for overflow at free, so it must not be offered for use.
        match crate::arena::requested_size(ptr as usize) {
            Some(size) => size,
            None => {
                crate::fatal::fatal_at(crate::fatal::FatalKind::InvalidUsableSize, ptr as usize)
            }
        }
    }
}

/// Defines the exported C allocation symbols (`malloc`, `free`, ...) of a
/// binary or shared library, each forwarding to the [`CSurface`] static
/// `$surface`. Used by the `override` feature below and by the preload, so
/// the list of symbols and their C signatures is written once.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_c_allocation_surface {
    ($surface:path) => {
        /// # Safety
        /// C `malloc`.
        #[no_mangle]
        pub unsafe extern "C" fn malloc(size: usize) -> *mut ::core::ffi::c_void {
            $surface.malloc(size)
        }

        /// # Safety
        /// C `calloc`.
        #[no_mangle]
        pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut ::core::ffi::c_void {
            $surface.calloc(count, size)
        }

        /// # Safety
        /// C `free`: `ptr` is null or a live block from these functions.
        #[no_mangle]
        pub unsafe extern "C" fn free(ptr: *mut ::core::ffi::c_void) {
            // SAFETY: the C contract of `free`, forwarded from the caller.
            unsafe { $surface.free(ptr) }
        }

        /// # Safety
        /// C `realloc`.
        #[no_mangle]
        pub unsafe extern "C" fn realloc(
            ptr: *mut ::core::ffi::c_void,
            size: usize,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: the C contract of `realloc`, forwarded from the caller.
            unsafe { $surface.realloc(ptr, size) }
        }

        /// # Safety
        /// C `reallocarray`.
        #[no_mangle]
        pub unsafe extern "C" fn reallocarray(
            ptr: *mut ::core::ffi::c_void,
            count: usize,
            size: usize,
        ) -> *mut ::core::ffi::c_void {
            // SAFETY: the C contract of `reallocarray`, forwarded.
            unsafe { $surface.reallocarray(ptr, count, size) }
        }

        /// # Safety
        /// C `posix_memalign`: `out` is valid for a pointer write.
        #[no_mangle]
        pub unsafe extern "C" fn posix_memalign(
            out: *mut *mut ::core::ffi::c_void,
            align: usize,
            size: usize,
        ) -> ::core::ffi::c_int {
            // SAFETY: the C contract of `posix_memalign`, forwarded.
            unsafe { $surface.posix_memalign(out, align, size) }
        }

        /// # Safety
        /// C11 `aligned_alloc`.
        #[no_mangle]
        pub unsafe extern "C" fn aligned_alloc(
            align: usize,
            size: usize,
        ) -> *mut ::core::ffi::c_void {
            $surface.aligned_alloc(align, size)
        }

        /// # Safety
        /// Obsolete `memalign`.
        #[no_mangle]
        pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut ::core::ffi::c_void {
            $surface.memalign(align, size)
        }

        /// # Safety
        /// Obsolete `valloc`.
        #[no_mangle]
        pub unsafe extern "C" fn valloc(size: usize) -> *mut ::core::ffi::c_void {
            $surface.valloc(size)
        }

        /// # Safety
        /// Obsolete `pvalloc`.
        #[no_mangle]
        pub unsafe extern "C" fn pvalloc(size: usize) -> *mut ::core::ffi::c_void {
            $surface.pvalloc(size)
        }

        /// # Safety
        /// `malloc_usable_size`: 0 for null.
        #[no_mangle]
        pub unsafe extern "C" fn malloc_usable_size(ptr: *mut ::core::ffi::c_void) -> usize {
            $surface.malloc_usable_size(ptr)
        }
    };
}

/// The `override` feature: this crate exports the C allocation symbols
/// itself, so the C code linked into a Rust binary (OpenSSL, SQLite, libpq,
/// glibc's own `strdup`) allocates from the locked arena.
#[cfg(feature = "override")]
mod exports {
    use super::CSurface;

    static SURFACE: CSurface = CSurface {
        before_start: || {},
    };

    crate::__export_c_allocation_surface!(SURFACE);
}
