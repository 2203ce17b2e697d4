//! The process-wide heaps and the `SecureAlloc` handle with its
//! `GlobalAlloc` and `Allocator` implementations.

use super::budget;
use super::heap::Heap;
use super::size_class::{class_for, class_size};
use super::thread_cache::with_cache;
use super::wipe::wipe;
use super::{CheckLevel, LockPolicy, Stats, HEAP_COUNT};
use crate::fatal::{fatal_at, FatalKind};
use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

/// The process-wide heaps, indexed by [`LockPolicy::heap_index`].
pub(crate) static HEAPS: [Heap; HEAP_COUNT] = [
    Heap::new(LockPolicy::FailClosed),
    Heap::new(LockPolicy::BestEffort),
];

/// An allocator whose memory is locked (never swapped), excluded from core
/// dumps, and wiped on free.
///
/// All `SecureAlloc` values with the same [`LockPolicy`] share one
/// process-wide arena, so it is a zero-cost handle: copy it freely, use it as
/// the `#[global_allocator]`, or pass it to `allocator_api2` collections.
///
/// ```
/// use secalloc::SecureAlloc;
/// use secalloc::allocator_api2::vec::Vec;
///
/// let mut key = Vec::new_in(SecureAlloc::new());
/// key.extend_from_slice(&[0x42; 32]);
/// assert_eq!(key.len(), 32);
/// ```
///
/// As the global allocator:
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: secalloc::SecureAlloc = secalloc::SecureAlloc::new();
/// # fn main() {}
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SecureAlloc {
    policy: LockPolicy,
    checks: CheckLevel,
    /// Frees go straight to the central lists, never to the freeing
    /// thread's cache (see [`SecureAlloc::freeing_to_central`]).
    central_frees: bool,
}

impl Default for SecureAlloc {
    fn default() -> Self {
        SecureAlloc::new()
    }
}

impl SecureAlloc {
    /// The fail-closed allocator: when the kernel will not lock more memory,
    /// allocation fails rather than hand out unlocked memory.
    ///
    /// ```
    /// #[global_allocator]
    /// static ALLOC: secalloc::SecureAlloc = secalloc::SecureAlloc::new();
    /// # fn main() {}
    /// ```
    pub const fn new() -> SecureAlloc {
        SecureAlloc {
            policy: LockPolicy::FailClosed,
            checks: CheckLevel::Default,
            central_frees: false,
        }
    }

    /// The best-effort allocator: when locking is refused it keeps running on
    /// unlocked (still dump-excluded, still wiped) memory and counts it in
    /// [`Stats`].
    ///
    /// ```
    /// let a = secalloc::SecureAlloc::best_effort();
    /// let v = secalloc::allocator_api2::vec![in a; 0u8; 64];
    /// assert_eq!(a.stats().lock_refusals, 0);
    /// # drop(v);
    /// ```
    pub const fn best_effort() -> SecureAlloc {
        SecureAlloc {
            policy: LockPolicy::BestEffort,
            checks: CheckLevel::Default,
            central_frees: false,
        }
    }

    /// An allocator with the given policy.
    ///
    /// ```
    /// use secalloc::{LockPolicy, SecureAlloc};
    /// let a = SecureAlloc::with_policy(LockPolicy::from_env()?.unwrap_or(LockPolicy::FailClosed));
    /// # let _ = a;
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub const fn with_policy(policy: LockPolicy) -> SecureAlloc {
        SecureAlloc {
            policy,
            checks: CheckLevel::Default,
            central_frees: false,
        }
    }

    /// This allocator with heap-misuse checks at `level` (see
    /// [`CheckLevel`]); the blocks it hands out are the same arena's.
    ///
    /// ```
    /// use secalloc::{CheckLevel, SecureAlloc};
    ///
    /// #[global_allocator]
    /// static ALLOC: SecureAlloc = SecureAlloc::new().with_checks(CheckLevel::Full);
    /// # fn main() {}
    /// ```
    pub const fn with_checks(self, level: CheckLevel) -> SecureAlloc {
        SecureAlloc {
            checks: level,
            ..self
        }
    }

    /// This allocator with its frees handed straight to the central lists:
    /// a slot it frees is at once available to every thread, not kept in
    /// the freeing thread's cache. For the plaintext views of `Secret`
    /// under a lock limit, where the room a create leaves for a read must
    /// be usable by a read on any thread (a slot in the creator's cache was
    /// not: every read from another thread was refused once the budget was
    /// full — found by the issue-12 attack review).
    pub(crate) const fn freeing_to_central(self) -> SecureAlloc {
        SecureAlloc {
            central_frees: true,
            ..self
        }
    }

    /// This allocator's check level.
    ///
    /// ```
    /// assert_eq!(secalloc::SecureAlloc::new().checks(), secalloc::CheckLevel::Default);
    /// ```
    pub const fn checks(&self) -> CheckLevel {
        self.checks
    }

    /// This allocator's lock policy.
    ///
    /// ```
    /// assert_eq!(secalloc::SecureAlloc::new().policy(), secalloc::LockPolicy::FailClosed);
    /// ```
    pub const fn policy(&self) -> LockPolicy {
        self.policy
    }

    /// A snapshot of this policy's heap.
    ///
    /// ```
    /// let a = secalloc::SecureAlloc::new();
    /// println!("locked: {} bytes", a.stats().locked_bytes);
    /// ```
    pub fn stats(&self) -> Stats {
        Stats::collect(self.heap())
    }

    /// Whether the allocation at `ptr` (from any `SecureAlloc`) sits in locked
    /// memory. `None` if `ptr` is not a live allocation start of this crate.
    ///
    /// ```
    /// let v = secalloc::allocator_api2::vec![in secalloc::SecureAlloc::new(); 1u8; 32];
    /// assert_eq!(secalloc::SecureAlloc::is_locked(v.as_ptr()), Some(true));
    /// ```
    pub fn is_locked(ptr: *const u8) -> Option<bool> {
        live_block(ptr as usize).map(|(_, locked)| locked)
    }

    /// `(usable size, locked)` of the live allocation starting at `ptr`, in
    /// one lookup: [`Self::usable_size`] and [`Self::is_locked`] together.
    #[doc(hidden)]
    pub fn usable_size_and_locked(ptr: *const u8) -> Option<(usize, bool)> {
        live_block(ptr as usize)
    }

    /// Reserves this policy's arena now (normally done by the first
    /// allocation). Returns `false` if it cannot be reserved.
    ///
    /// ```
    /// assert!(secalloc::SecureAlloc::new().warm_up());
    /// ```
    pub fn warm_up(&self) -> bool {
        self.heap().ensure_ready()
    }

    /// Bytes the live allocation starting at `ptr` occupies (its slot size,
    /// or a large block's page-rounded size); `None` if `ptr` is not one.
    /// Only the size that was asked for is the caller's: the rest is slack,
    /// which the heap checks expect to find zero at free (a write there is
    /// reported as a `heap overflow`), so do not grow into it — reallocate.
    ///
    /// ```
    /// let v = secalloc::allocator_api2::vec![in secalloc::SecureAlloc::new(); 1u8; 100];
    /// assert!(secalloc::SecureAlloc::usable_size(v.as_ptr()).unwrap() >= 100);
    /// ```
    pub fn usable_size(ptr: *const u8) -> Option<usize> {
        live_block(ptr as usize).map(|(size, _)| size)
    }

    /// C `malloc`-style allocation of `size` bytes aligned to `align` (a
    /// power of two); null on failure. For the `LD_PRELOAD` library.
    pub(crate) fn c_alloc(&self, size: usize, align: usize) -> *mut u8 {
        match Layout::from_size_align(size, align) {
            Ok(layout) => self.allocate_raw(layout),
            Err(_) => ptr::null_mut(),
        }
    }

    /// C `malloc`: `size` bytes at malloc alignment (16); null on failure.
    /// [`Self::c_alloc`] without the alignment check (the constant 16 needs
    /// none) on the hottest path of the `LD_PRELOAD` library.
    #[inline(always)]
    pub(crate) fn c_malloc(&self, size: usize) -> *mut u8 {
        const MALLOC_ALIGN: usize = 16;
        if size > isize::MAX as usize - (MALLOC_ALIGN - 1) {
            return ptr::null_mut();
        }
        // SAFETY: 16 is a non-zero power of two, and `size` rounded up to it
        // does not overflow `isize` (checked above).
        let layout = unsafe { Layout::from_size_align_unchecked(size, MALLOC_ALIGN) };
        self.allocate_raw(layout)
    }

    /// Makes sure a block about to be handed out as zeroed (`calloc`,
    /// `alloc_zeroed`) is zero in all of its `len` bytes. Free memory is
    /// zero, so no clearing pass is needed — unless a write after free put
    /// something there. `Full` already checked the whole slot at allocation
    /// (and keeps freed large blocks `PROT_NONE`); `Default` checks only the
    /// first 16 bytes there, so here it checks the rest, or `calloc`
    /// returned the dangling write's bytes (found by the issue-14 attack
    /// review). `Off` trusts the invariant.
    #[inline]
    pub(crate) fn check_zeroed(&self, addr: usize, len: usize) {
        if self.checks != CheckLevel::Default || len <= CHECKED_BYTES_DEFAULT {
            return;
        }
        if class_for(len, 16).is_none() {
            // A large block: only one from the cache can hold anything.
            let fresh = HEAPS
                .iter()
                .find_map(|heap| heap.large.find(addr))
                .is_none_or(|block| !block.reused);
            if fresh {
                return;
            }
        }
        // SAFETY: `[addr, addr + len)` is a block just allocated for the
        // caller, who has not been handed it yet.
        if !unsafe { super::wipe::all_zero(addr, len) } {
            fatal_at(FatalKind::WriteAfterFree, addr);
        }
    }

    fn allocate_zeroed_raw(&self, layout: Layout) -> *mut u8 {
        let p = self.allocate_raw(layout);
        if !p.is_null() {
            self.check_zeroed(p as usize, layout.size());
        }
        p
    }

    /// C `free`: frees `ptr` without knowing its layout (the arena's own
    /// metadata supplies it). Aborts on a pointer the arena does not own or
    /// on a double free.
    ///
    /// # Safety
    /// No live reference into the block may remain.
    #[inline(always)]
    pub(crate) unsafe fn c_free(&self, ptr: *mut u8) {
        self.free_raw(ptr as usize, None)
    }

    /// Records that the live block at `addr` came from `new[]` (`array`) or
    /// from scalar `new`, and, with `size`, the size the C++ program asked
    /// for (the runtime's aligned `new` asks `aligned_alloc` for a rounded
    /// size: its sized `delete` names the original one).
    pub(crate) fn record_cxx(&self, addr: usize, array: bool, size: Option<usize>) {
        for heap in &HEAPS {
            if heap.owns(addr) {
                let (_, meta, _, slot) = heap.locate(addr);
                meta.set_array(slot, array);
                if let Some(size) = size {
                    if meta.live_size(slot).is_some_and(|live| size <= live) {
                        meta.set_live_size(slot, size);
                    }
                }
                return;
            }
        }
        for heap in &HEAPS {
            if heap.large.record_cxx(addr, array, size) {
                return;
            }
        }
    }

    /// Whether `addr` is where a small slot starts, live or not. Never
    /// aborts.
    fn is_block_start(&self, addr: usize) -> bool {
        for heap in &HEAPS {
            if heap.owns(addr) {
                return heap.slot_of(addr).is_some_and(|(start, ..)| start == addr);
            }
        }
        false
    }

    /// The live block starting exactly at `addr`: its requested size and
    /// whether C++ `new[]` made it. Never aborts.
    fn cxx_block(&self, addr: usize) -> Option<(usize, bool)> {
        for heap in &HEAPS {
            if heap.owns(addr) {
                let (start, _, live, _) = heap.slot_of(addr)?;
                if start != addr || !live {
                    return None;
                }
                let (_, meta, _, slot) = heap.locate(addr);
                return meta.live_size(slot).map(|size| (size, meta.is_array(slot)));
            }
        }
        HEAPS
            .iter()
            .find_map(|heap| heap.large.find(addr))
            .map(|block| (block.size, block.array))
    }

    /// Before C++ `delete` (`array`: `delete[]`, `size`: the sized forms)
    /// frees `addr`: aborts if the block came from the other form of `new`
    /// (`mismatched new/delete`) or a sized delete names another size than
    /// the block's (`sized delete with the wrong size`). A `new T[n]` whose
    /// `T` has a destructor keeps `n` in a cookie before the elements, so a
    /// scalar `delete` of it arrives 8 or 16 bytes past the block, and a
    /// `delete[]` of a scalar `new` block as many bytes before: those are
    /// reported as the mismatch they are, at the block's address (they came
    /// out as invalid frees: found by the issue-14 attack review). Any
    /// other pointer that is no live block is left to the free that
    /// follows, which reports it.
    pub(crate) fn cxx_check_delete(&self, addr: usize, size: Option<usize>, array: bool) {
        if let Some((live, was_array)) = self.cxx_block(addr) {
            if was_array != array {
                crate::fatal::fatal_at(FatalKind::MismatchedDelete, addr);
            }
            if size.is_some_and(|size| size != live) {
                crate::fatal::fatal_at(FatalKind::SizedDeleteMismatch, addr);
            }
            return;
        }
        if self.is_block_start(addr) {
            // A block's start that is not live: the free that follows
            // reports the double free (a live neighbour a cookie's distance
            // away was named instead: found by the second issue-14 review).
            return;
        }
        // The cookie is 8 bytes, or the element type's alignment when that
        // is larger (found by the same review at 32..128-byte alignment).
        for shift in 3..=12 {
            let cookie = 1usize << shift;
            let block = if array {
                addr.wrapping_add(cookie)
            } else {
                addr.wrapping_sub(cookie)
            };
            if self
                .cxx_block(block)
                .is_some_and(|(_, was_array)| was_array != array)
            {
                crate::fatal::fatal_at(FatalKind::MismatchedDelete, block);
            }
        }
    }

    /// C `realloc` of a live block to `new_size` bytes (malloc alignment,
    /// 16). Null (old block intact) on failure.
    ///
    /// # Safety
    /// `ptr` is a live allocation of this crate.
    pub(crate) unsafe fn c_realloc(&self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        // The requested size, not the slot's: a move copies only the bytes
        // the program owns (the slack is zero anyway, and copying it is an
        // over-read the preload's `memcpy` check rejects).
        let Some(old_size) = requested_size(ptr as usize) else {
            fatal_at(FatalKind::InvalidRealloc, ptr as usize);
        };
        // C knows neither the old size nor the alignment: treat the block as
        // its requested size at malloc alignment, and let the Rust path
        // decide in place or move (it judges by the slot it finds).
        match (
            Layout::from_size_align(old_size, 16),
            Layout::from_size_align(new_size, 16),
        ) {
            (Ok(old), Ok(new)) => self.reallocate_raw(ptr as usize, old, new, Caller::C),
            _ => ptr::null_mut(),
        }
    }

    fn heap(&self) -> &'static Heap {
        &HEAPS[self.policy.heap_index()]
    }

    /// Allocates `layout`; null on failure. `layout.size()` may be 0 (served
    /// as one byte).
    ///
    /// When the kernel refuses to lock memory, every idle piece of locked
    /// memory in the process is given back and the request is tried once
    /// more; a fail-closed refusal that stands is explained on stderr (once).
    #[inline(always)]
    fn allocate_raw(&self, layout: Layout) -> *mut u8 {
        let heap = self.heap();
        if !heap.ensure_ready() {
            return ptr::null_mut();
        }
        let addr = self.try_allocate(heap, layout);
        if addr != 0 {
            return addr as *mut u8;
        }
        self.allocate_after_refusal(heap, layout)
    }

    #[cold]
    fn allocate_after_refusal(&self, heap: &Heap, layout: Layout) -> *mut u8 {
        use crate::sync::Ordering::Relaxed;
        let refusals = heap.lock_refusals.load(Relaxed);
        if refusals == 0 {
            return ptr::null_mut(); // not a lock refusal: out of memory
        }
        // Retry even when nothing idle was found: flushing this thread's
        // cache may have emptied (and so decommitted) a slab.
        budget::reclaim_idle();
        let addr = self.try_allocate(heap, layout);
        if addr == 0 && self.policy == LockPolicy::FailClosed {
            budget::explain_refusal(heap, layout.size());
        }
        addr as *mut u8
    }

    /// The bytes a slot must hold for `layout`: under `CheckLevel::Full`,
    /// `FULL_SLACK` more than asked, so that every small block has slack
    /// past its end for the overflow check (a block whose size is exactly
    /// a class has none otherwise: a 1-byte overflow of a 4096-byte block
    /// went unseen).
    #[inline]
    fn slot_request(&self, layout: Layout) -> usize {
        if self.checks == CheckLevel::Full {
            layout.size() + FULL_SLACK
        } else {
            layout.size()
        }
    }

    /// One attempt at `layout` from `heap`; 0 on failure.
    #[inline(always)]
    fn try_allocate(&self, heap: &Heap, layout: Layout) -> usize {
        let Some(class) = class_for(self.slot_request(layout), layout.align()) else {
            return heap
                .large
                .alloc(heap, layout.size(), layout.align(), self.checks);
        };
        let idx = self.policy.heap_index();
        let addr = with_cache(idx, |cache, heap| cache.pop(heap, class))
            .unwrap_or_else(|| take_one_uncached(heap, class));
        if addr != 0 {
            check_still_zero(addr, class_size(class), self.checks);
            heap.mark_live(addr, class, layout.size());
        }
        addr
    }

    /// Frees `addr`, whichever heap it came from; aborts on misuse. A Rust
    /// caller's `layout` must be exactly the one the block was allocated
    /// (or last resized) with; a C caller's free needs none (the arena's
    /// own metadata supplies it).
    #[inline(always)]
    fn free_raw(&self, addr: usize, layout: Option<Layout>) {
        for (idx, heap) in HEAPS.iter().enumerate() {
            if heap.owns(addr) {
                return free_small(idx, heap, addr, layout, self.checks, self.central_frees);
            }
        }
        self.free_large(addr, layout);
    }

    /// The part of [`Self::free_raw`] for blocks outside both slab
    /// regions, out of line so that the small-block path keeps its
    /// registers (a large free is dominated by its wipe anyway).
    #[inline(never)]
    fn free_large(&self, addr: usize, layout: Option<Layout>) {
        let own = self.policy.heap_index();
        for idx in [own, 1 - own] {
            if HEAPS[idx]
                .large
                .try_free(&HEAPS[idx], addr, layout, self.checks)
            {
                return;
            }
        }
        if HEAPS.iter().any(|heap| heap.large.is_cached(addr)) {
            fatal_at(FatalKind::DoubleFree, addr);
        }
        fatal_at(FatalKind::InvalidFree, addr);
    }

    /// Resizes in place when the size class (or large mapping) allows. The
    /// block was validated against `layout` by [`Self::validate_live`].
    fn resize_in_place(&self, addr: usize, layout: Layout, new_size: usize) -> bool {
        for heap in &HEAPS {
            if heap.owns(addr) {
                let (_, meta, class, slot) = heap.locate(addr);
                let Some(size) = meta.live_size(slot) else {
                    fatal_at(FatalKind::UseAfterFree, addr);
                };
                // Under `Full` the slot must keep its slack past the new
                // size too (a block grown into its slack in place lost its
                // overflow check: found by the issue-14 attack review).
                let request = self.slot_request(
                    Layout::from_size_align(new_size, layout.align()).unwrap_or(layout),
                );
                if class_for(request, layout.align()) != Some(class) {
                    return false;
                }
                if new_size < size {
                    // SAFETY: the caller owns the slot; the tail lies inside it.
                    unsafe { wipe(addr + new_size, size - new_size) };
                }
                heap.set_live_size(addr, new_size);
                return true;
            }
        }
        if class_for(new_size, layout.align()).is_some() {
            // A large block shrinking into the small range moves to a slab.
            return false;
        }
        for heap in &HEAPS {
            if let Some(resized) = heap.large.resize_in_place(addr, new_size) {
                return resized;
            }
        }
        fatal_at(FatalKind::InvalidRealloc, addr);
    }

    /// Checks that `addr` is a live block that `old` describes (exactly, for
    /// a Rust caller), aborting otherwise — before anything reads from it.
    fn validate_live(&self, addr: usize, old: Layout, caller: Caller) {
        for heap in &HEAPS {
            if heap.owns(addr) {
                let (_, meta, class, slot) = heap.locate(addr);
                let Some(size) = meta.live_size(slot) else {
                    fatal_at(FatalKind::UseAfterFree, addr);
                };
                if caller == Caller::Rust && (size != old.size() || !layout_fits_class(old, class))
                {
                    fatal_at(FatalKind::LayoutMismatch, addr);
                }
                return;
            }
        }
        for heap in &HEAPS {
            if let Some(block) = heap.large.find(addr) {
                if caller == Caller::Rust && !block.matches(old) {
                    fatal_at(FatalKind::LayoutMismatch, addr);
                }
                return;
            }
        }
        fatal_at(FatalKind::InvalidRealloc, addr);
    }

    /// Moves or resizes `addr` to `new_layout`; null (old block intact) on
    /// failure. The old block is validated first, so a wrong layout or a
    /// freed pointer aborts before a byte of it is copied.
    fn reallocate_raw(
        &self,
        addr: usize,
        old: Layout,
        new_layout: Layout,
        caller: Caller,
    ) -> *mut u8 {
        self.validate_live(addr, old, caller);
        if new_layout.align() == old.align() && self.resize_in_place(addr, old, new_layout.size()) {
            return addr as *mut u8;
        }
        let new = self.allocate_raw(new_layout);
        if new.is_null() {
            return new;
        }
        // SAFETY: both blocks are live, distinct, and at least this long.
        unsafe {
            ptr::copy_nonoverlapping(addr as *const u8, new, old.size().min(new_layout.size()))
        };
        self.free_raw(addr, (caller == Caller::Rust).then_some(old));
        new
    }
}

/// Frees the slot at `addr` in `heap` (number `idx`), which owns it.
#[inline]
fn free_small(
    idx: usize,
    heap: &Heap,
    addr: usize,
    layout: Option<Layout>,
    checks: CheckLevel,
    central: bool,
) {
    let (_, meta, class, slot) = heap.locate(addr);
    if layout.is_some_and(|l| !layout_fits_class(l, class)) {
        fatal_at(FatalKind::LayoutMismatch, addr);
    }
    let Some(size) = meta.mark_free(slot) else {
        fatal_at(FatalKind::DoubleFree, addr);
    };
    if layout.is_some_and(|l| l.size() != size) {
        fatal_at(FatalKind::LayoutMismatch, addr);
    }
    check_slack(addr, size, class_size(class), checks);
    // SAFETY: the slot was live and its owner just gave it up; its live
    // mark is now clear, so no one else can reach it.
    unsafe { wipe(addr, class_size(class)) };
    // Small slabs: no thread caches, so a freed slot can empty its slab and
    // give its pages back at once (the flag shares a line with `base`,
    // which `locate` just read).
    let cached = if heap.small_slabs() || central {
        None
    } else if checks == CheckLevel::Full {
        with_cache(idx, |cache, heap| cache.quarantine(heap, class, addr))
    } else {
        with_cache(idx, |cache, heap| cache.push(heap, class, addr))
    };
    if cached.is_none() {
        heap.give_slots(class, &[addr]);
    }
}

/// Extra bytes every small slot holds past the request under
/// `CheckLevel::Full` (see [`SecureAlloc::slot_request`]): a 16-byte
/// overflow, or a `memcpy` 32 bytes past the end, always lands in slack.
const FULL_SLACK: usize = 16;

/// Whether a block of layout `l` can live in a slot of `class`: the class
/// its size asks for, or the one with `FULL_SLACK` more (allocated under
/// `CheckLevel::Full`; any handle may free it). The exact size is checked
/// against the block's live mark as well.
#[inline]
fn layout_fits_class(l: Layout, class: usize) -> bool {
    class_for(l.size(), l.align()) == Some(class)
        || class_for(l.size() + FULL_SLACK, l.align()) == Some(class)
}

/// One slot of `class` straight from the central list, for a thread with
/// no usable cache (exiting, or inside a signal handler that interrupted
/// the allocator); 0 if none.
#[inline(never)]
fn take_one_uncached(heap: &Heap, class: usize) -> usize {
    let mut one = [0usize; 1];
    heap.take_slots(class, 0, &mut one);
    one[0]
}

/// Who is resizing: Rust callers pass the exact layout (checked); C callers
/// know neither size nor alignment (the arena's metadata supplies them).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Rust,
    C,
}

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes
// aligned to `layout.align()`, not overlapping any live block (slots are
// handed out once, guarded by their live mark; large blocks are fresh or
// cached mappings); it never unwinds or allocates through itself.
unsafe impl GlobalAlloc for SecureAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate_raw(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Free memory is always zero: slots are wiped on free and fresh
        // pages come zeroed from the kernel (checked, see `check_zeroed`).
        self.allocate_zeroed_raw(layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.free_raw(ptr as usize, Some(layout))
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        self.reallocate_raw(ptr as usize, layout, new_layout, Caller::Rust)
    }
}

/// Bytes of a slot [`CheckLevel::Default`] checks: its first 16 (every
/// slot has them), one load pair on a line the caller is about to write.
const CHECKED_BYTES_DEFAULT: usize = 16;
/// `Default` checks slack only inside a slot's first 64 bytes (its first
/// cache line: slots are 16-aligned, lines 64).
const DEFAULT_SLACK_LINE: usize = 64;

/// A slot about to be handed out must still be zero — every freed byte is
/// wiped and fresh pages are zero — so any other byte was written after its
/// free (through a dangling pointer). `Default` checks the first 16 bytes,
/// `Full` the whole slot.
#[inline]
fn check_still_zero(addr: usize, slot: usize, checks: CheckLevel) {
    let clean = match checks {
        // SAFETY: the slot was just taken from this heap's free lists: no
        // one else reaches it; slots are 16-aligned and at least 16 bytes.
        CheckLevel::Default => unsafe {
            let words = addr as *const u64;
            (core::ptr::read_volatile(words) | core::ptr::read_volatile(words.add(1))) == 0
        },
        // SAFETY: as above, for the whole slot.
        CheckLevel::Full => unsafe { super::wipe::all_zero(addr, slot) },
        CheckLevel::Off => true,
    };
    if !clean {
        crate::fatal::fatal_at(FatalKind::WriteAfterFree, addr);
    }
}

/// The slack between a small block's requested size and its slot is never
/// the caller's (allocation records the size; `allocate` returns exactly
/// that many bytes, and `malloc_usable_size` reports it): it is still zero
/// at free unless something wrote past the end. `Default` checks up to 16
/// bytes after the end where they lie in the slot's first 64 bytes (blocks
/// under 64 bytes), `Full` all of the slack of every block.
#[inline]
fn check_slack(addr: usize, size: usize, slot: usize, checks: CheckLevel) {
    let end = match checks {
        // Only slack in the slot's first cache line: a load that misses at
        // free stalls where the wipe's stores would not (on the churn
        // workload, checking 16 bytes past every block's end cost 17% CPU
        // time, the first line alone nothing measurable).
        CheckLevel::Default if size < DEFAULT_SLACK_LINE => slot
            .min(size + CHECKED_BYTES_DEFAULT)
            .min(DEFAULT_SLACK_LINE),
        CheckLevel::Default | CheckLevel::Off => size,
        CheckLevel::Full => slot,
    };
    let len = end - size;
    if len == 0 {
        return;
    }
    let read = |at: usize| {
        // SAFETY: every read below lies inside `[size, end)` of the slot
        // (or, for a slack under 8 bytes, in the slot's last aligned word),
        // which the caller is freeing.
        unsafe { core::ptr::read_unaligned(at as *const u64) }
    };
    let acc = if len < 8 {
        // Then `end` is the slot's end: the slack is the top `len` bytes of
        // its last word (little-endian: the high bytes).
        read(addr + slot - 8) >> ((8 - len) * 8)
    } else {
        // 8-byte reads from `size`, the last one ending exactly at `end`.
        let mut acc = read(addr + end - 8);
        let mut at = size;
        while at + 8 < end {
            acc |= read(addr + at);
            at += 8;
        }
        acc
    };
    if core::hint::black_box(acc) != 0 {
        crate::fatal::fatal_at(FatalKind::HeapOverflow, addr);
    }
}

/// The requested size of the live allocation starting at `addr` (what was
/// asked, or set by an in-place resize, small or large). For C's
/// `malloc_usable_size`: reporting the slot size would invite writes into
/// the slack that the overflow check reads.
pub(crate) fn requested_size(addr: usize) -> Option<usize> {
    for heap in &HEAPS {
        if heap.owns(addr) {
            let (start, _, live, _) = heap.slot_of(addr)?;
            return (start == addr && live)
                .then(|| heap.live_size(addr))
                .flatten();
        }
        if let Some(block) = heap.large.find(addr) {
            // The size asked for, as for a slot: the page-rounded length
            // has slack past it that the free checks (it was reported here,
            // so a program that wrote up to `malloc_usable_size` aborted —
            // Node.js at start-up: found by the second issue-14 review).
            return Some(block.size);
        }
    }
    None
}

/// Aborts unless the `len` bytes at `addr` — the source or destination of
/// a C `memcpy` or `memmove` — are allowed to be copied, as far as the slab
/// heaps can tell: a range that starts in a slab must lie inside the
/// requested bytes of the live block it starts in. A range starting in a
/// free slot, in a slab's tail, or in arena space no slab holds is a stray
/// copy too (a use after free or an underflow). Ranges outside the slabs
/// are not judged: large blocks have guard pages instead.
///
/// Reads only metadata, without locks: a block freed by another thread
/// during the copy is the program's race (it could abort here, as the copy
/// is a use after free).
#[inline]
pub(crate) fn check_copy_range(addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    for heap in &HEAPS {
        if heap.owns(addr) {
            let within = heap.live_extent(addr).is_some_and(|(start, size)| {
                // `addr - start < size` and `len <= size - (addr - start)`.
                let offset = addr - start;
                offset < size && len <= size - offset
            });
            if !within {
                crate::fatal::fatal_at(FatalKind::CopyOutOfBounds, addr);
            }
            return;
        }
    }
}

/// `(usable size, locked)` of the live allocation starting at `addr`, in any
/// heap; `None` if there is none. Never aborts, whatever `addr` is.
fn live_block(addr: usize) -> Option<(usize, bool)> {
    for heap in &HEAPS {
        if heap.owns(addr) {
            let (start, size, live, locked) = heap.slot_of(addr)?;
            return (start == addr && live).then_some((size, locked));
        }
        if let Some(block) = heap.large.find(addr) {
            return Some((block.open_len, block.locked));
        }
    }
    None
}

fn dangling(layout: Layout) -> NonNull<[u8]> {
    // An address equal to the alignment is non-null and aligned, and a
    // zero-length slice there is never dereferenced.
    let ptr = ptr::without_provenance_mut::<u8>(layout.align());
    // SAFETY: `layout.align()` is non-zero.
    NonNull::slice_from_raw_parts(unsafe { NonNull::new_unchecked(ptr) }, 0)
}

fn block(ptr: *mut u8, len: usize) -> Result<NonNull<[u8]>, AllocError> {
    NonNull::new(ptr)
        .map(|p| NonNull::slice_from_raw_parts(p, len))
        .ok_or(AllocError)
}

// SAFETY: blocks stay valid until deallocated through any `SecureAlloc`
// (all handles share the process-wide heaps, so copies and clones are
// interchangeable); `allocate` returns exactly `layout.size()` bytes with
// the requested alignment; zero-size requests get a dangling, aligned pointer
// that `deallocate` ignores.
unsafe impl Allocator for SecureAlloc {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        block(self.allocate_raw(layout), layout.size())
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(dangling(layout));
        }
        block(self.allocate_zeroed_raw(layout), layout.size())
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // A zero-size block is the dangling pointer `allocate` returned for
        // it; anything else freed with a zero-size layout is a real block
        // freed with the wrong layout, which `free_raw` reports.
        if layout.size() != 0 || ptr.as_ptr() as usize != layout.align() {
            self.free_raw(ptr.as_ptr() as usize, Some(layout));
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() == 0 {
            return self.allocate(new);
        }
        block(
            self.reallocate_raw(ptr.as_ptr() as usize, old, new, Caller::Rust),
            new.size(),
        )
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded from the caller.
        let grown = unsafe { self.grow(ptr, old, new) }?;
        // The tail is already zero (bytes past a block's size are never
        // written, and free memory is zero); clear it anyway, it is cheap
        // next to the copy a grow may do, and it does not rely on callers
        // having stayed inside their layout.
        // SAFETY: the grown block is `new.size()` bytes long.
        unsafe {
            ptr::write_bytes(
                grown.cast::<u8>().as_ptr().add(old.size()),
                0,
                new.size() - old.size(),
            )
        };
        Ok(grown)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if new.size() == 0 {
            // SAFETY: forwarded from the caller.
            unsafe { self.deallocate(ptr, old) };
            return Ok(dangling(new));
        }
        block(
            self.reallocate_raw(ptr.as_ptr() as usize, old, new, Caller::Rust),
            new.size(),
        )
    }
}
