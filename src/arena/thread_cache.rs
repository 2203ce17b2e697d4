//! Per-thread caches of free, already-wiped slots, one stack per size class,
//! so the common allocation and free touch no lock.
//!
//! A cached slot is neither live nor available in its slab's bitmaps, so a
//! double free is still caught (its live mark is already clear), and the slot
//! cannot be handed out twice. When a thread exits, a pthread key destructor
//! returns its cached slots to the central lists.
//!
//! The thread-local is `const`-initialised and has no `Drop`, so touching it
//! never registers a TLS destructor and never allocates.

#![allow(unsafe_code)]

use super::checked;
use super::heap::Heap;
use super::size_class::{cache_capacity, CACHE_CAPACITY_MAX, CLASS_COUNT};

/// Slots a thread holds back from reuse under `CheckLevel::Full`.
pub(crate) const QUARANTINE_SLOTS: usize = 32;

/// One thread's cache for one heap.
pub(crate) struct HeapCache {
    shard: u8,                                         // central-list shard this thread uses
    len: [u8; CLASS_COUNT],                            // cached slots per class
    slots: [[usize; CACHE_CAPACITY_MAX]; CLASS_COUNT], // slot addresses, a stack per class
    /// `CheckLevel::Full`: freed slots wait here, first in first out, before
    /// they can be handed out again; each is (address, class + 1), 0 empty.
    quarantine: [(usize, u8); QUARANTINE_SLOTS],
    quarantine_next: u8, // the oldest entry, replaced next
}

impl HeapCache {
    /// An empty cache.
    pub(crate) const EMPTY: HeapCache = HeapCache {
        shard: 0,
        len: [0; CLASS_COUNT],
        slots: [[0; CACHE_CAPACITY_MAX]; CLASS_COUNT],
        quarantine: [(0, 0); QUARANTINE_SLOTS],
        quarantine_next: 0,
    };

    /// Puts a freed, wiped slot of `class` in quarantine and caches the
    /// oldest one it displaces, once [`check_quarantined`] finds it still
    /// all zero. So a freed slot is not handed out again for the next
    /// `QUARANTINE_SLOTS` frees on this thread: `free(p); malloc(n)` does
    /// not return `p`, and a dangling write has that long to be seen.
    #[inline]
    pub(crate) fn quarantine(&mut self, heap: &Heap, class: usize, addr: usize) {
        // Kept below `QUARANTINE_SLOTS` (a power of two): the `%` is a mask,
        // and the index provably in range.
        let at = self.quarantine_next as usize % QUARANTINE_SLOTS;
        let (old, old_class) = self.quarantine[at];
        self.quarantine[at] = (addr, class as u8 + 1);
        self.quarantine_next = ((at + 1) % QUARANTINE_SLOTS) as u8;
        if old_class != 0 {
            let old_class = old_class as usize - 1;
            check_quarantined(old, old_class);
            self.push(heap, old_class, old);
        }
    }

    /// Takes a free slot of `class`, refilling from `heap` when empty.
    /// Returns 0 when the heap is out of memory or lock budget.
    #[inline]
    pub(crate) fn pop(&mut self, heap: &Heap, class: usize) -> usize {
        let class = checked::below(class, CLASS_COUNT);
        let len = self.len[class] as usize;
        if len > 0 {
            self.len[class] -= 1;
            return *checked::at(&self.slots[class], len - 1);
        }
        self.refill(heap, class)
    }

    #[cold]
    fn refill(&mut self, heap: &Heap, class: usize) -> usize {
        // A heap of small slabs caches nothing: under a budget that small,
        // a cached slot's page is budget a live request may need.
        let want = if heap.small_slabs() {
            1
        } else {
            (cache_capacity(class) / 2).max(1)
        };
        let mut batch = [0usize; CACHE_CAPACITY_MAX];
        let shard = self.shard as usize;
        let mut n = heap.take_slots(class, shard, checked::part_mut(&mut batch, 0..want));
        if n == 0 {
            // Out of memory or lock budget: slots this thread is caching for
            // other classes may be all that keeps a slab from going back to
            // the pool. Hand them back and try once more.
            self.flush(heap);
            n = heap.take_slots(class, shard, checked::part_mut(&mut batch, 0..want));
            if n == 0 {
                return 0;
            }
        }
        let class = checked::below(class, CLASS_COUNT);
        checked::part_mut(&mut self.slots[class], 0..n - 1)
            .copy_from_slice(checked::part(&batch, 1..n));
        self.len[class] = (n - 1) as u8;
        batch[0]
    }

    /// Caches a wiped, non-live slot of `class`, handing half the stack back
    /// to `heap` when it is full.
    #[inline]
    pub(crate) fn push(&mut self, heap: &Heap, class: usize, addr: usize) {
        let class = checked::below(class, CLASS_COUNT);
        let len = self.len[class] as usize;
        if len == cache_capacity(class) {
            let keep = len / 2;
            heap.give_slots(class, checked::part(&self.slots[class], keep..len));
            self.len[class] = keep as u8;
        }
        let len = self.len[class] as usize;
        *checked::at_mut(&mut self.slots[class], len) = addr;
        self.len[class] += 1;
    }

    /// Sets the central-list shard this cache refills from.
    pub(crate) fn set_shard(&mut self, shard: usize) {
        self.shard = (shard % super::heap::SHARD_COUNT) as u8;
    }

    /// Returns every cached and quarantined slot to `heap` (thread exit,
    /// or a lock refusal looking for budget).
    pub(crate) fn flush(&mut self, heap: &Heap) {
        for entry in &mut self.quarantine {
            let (addr, class) = core::mem::take(entry);
            if class != 0 {
                let class = class as usize - 1;
                // Checked as on leaving quarantine the usual way: a write
                // after free must not reach the central lists unseen (it was,
                // at thread exit: found by the issue-14 attack review).
                check_quarantined(addr, class);
                heap.give_slots(class, &[addr]);
            }
        }
        for class in 0..CLASS_COUNT {
            let len = self.len[class] as usize;
            if len > 0 {
                heap.give_slots(class, checked::part(&self.slots[class], 0..len));
                self.len[class] = 0;
            }
        }
    }
}

/// A slot leaving quarantine must still be all zero, or it was written
/// after its free: `secalloc: fatal: write after free: <slot>`.
fn check_quarantined(addr: usize, class: usize) {
    // SAFETY: a quarantined slot is wiped, not live, and reached by no one
    // but the cache that holds it.
    if !unsafe { super::wipe::all_zero(addr, super::size_class::class_size(class)) } {
        crate::fatal::fatal_at(crate::fatal::FatalKind::WriteAfterFree, addr);
    }
}

#[cfg(not(loom))]
pub(crate) use tls::with_cache;

#[cfg(not(loom))]
mod tls {
    use super::HeapCache;
    use crate::arena::checked;
    use crate::arena::{heap::Heap, HEAPS, HEAP_COUNT};
    use crate::sync::{AtomicUsize, Ordering};
    use crate::sys;
    use core::cell::{Cell, UnsafeCell};
    use core::sync::atomic::compiler_fence;
    use core::sync::atomic::AtomicBool;

    const UNREGISTERED: u8 = 0;
    const BUSY: u8 = 1; // inside `with_cache`, or registering
    const ACTIVE: u8 = 2;
    const EXITED: u8 = 3;

    /// One thread's caches, one per heap. All-zero bytes are a valid,
    /// unregistered, empty value (`UNREGISTERED` is 0 and `HeapCache::EMPTY`
    /// is all zero), which is what lets the preload's C shim provide the
    /// storage as zero-initialised thread-local bytes.
    #[repr(C, align(64))]
    pub(crate) struct ThreadCaches {
        state: Cell<u8>,
        heaps: [UnsafeCell<HeapCache>; HEAP_COUNT],
    }

    std::thread_local! {
        static CACHES: ThreadCaches = const {
            ThreadCaches {
                state: Cell::new(UNREGISTERED),
                heaps: [const { UnsafeCell::new(HeapCache::EMPTY) }; HEAP_COUNT],
            }
        };
    }

    /// Bytes an external thread block (see [`use_external_thread_block`])
    /// must have at least; it must also be 64-byte aligned.
    pub const EXTERNAL_THREAD_BLOCK_BYTES: usize = core::mem::size_of::<ThreadCaches>();

    /// A function returning the calling thread's external block, or 0.
    static EXTERNAL_BLOCK_FN: AtomicUsize = AtomicUsize::new(0);
    /// Set once any thread has used the `std` thread-local caches: switching
    /// to an external block after that would strand their slots.
    static STD_CACHES_USED: AtomicBool = AtomicBool::new(false);

    /// Makes every thread keep its caches in the block `block()` returns
    /// instead of a `std::thread_local!`. For the preload: a Rust `cdylib`
    /// reaches its thread-locals through `__tls_get_addr` (general-dynamic
    /// TLS, a call and a lookup on every `malloc`), while a C shim built
    /// with `-ftls-model=initial-exec` reaches its own with one
    /// `%fs`-relative address. Meant to be called before any thread has
    /// allocated (the preload calls it at start-up). Returns `false`, and
    /// installs nothing, when the `std` caches were already in use; a first
    /// `std` use racing with the call also gives `false`, the block then
    /// being installed all the same (that thread's cached slots stay in its
    /// `std` cache: a bounded leak, never a reuse).
    ///
    /// # Safety
    /// `block()` returns, for each calling thread, the address of that
    /// thread's own block of at least [`EXTERNAL_THREAD_BLOCK_BYTES`] bytes,
    /// 64-byte aligned, all zero before its first use, touched by nothing
    /// else, and valid for the thread's whole life (pthread key destructors
    /// included). `block` never allocates and never unwinds.
    pub unsafe fn use_external_thread_block(block: unsafe extern "C" fn() -> *mut u8) -> bool {
        if STD_CACHES_USED.load(Ordering::Acquire) {
            return false;
        }
        EXTERNAL_BLOCK_FN.store(block as usize, Ordering::Release);
        !STD_CACHES_USED.load(Ordering::Acquire)
    }

    /// This thread's caches: the external block when one was installed,
    /// else the `std` thread-local (`const`-initialised, no `Drop`, so never
    /// torn down: the pointer is valid for the thread's whole life).
    #[inline]
    fn this_thread() -> Option<*const ThreadCaches> {
        let external = EXTERNAL_BLOCK_FN.load(Ordering::Acquire);
        if external != 0 {
            // SAFETY: only `use_external_thread_block` stores here, and it
            // stores a valid function pointer of this type.
            let block: unsafe extern "C" fn() -> *mut u8 =
                unsafe { core::mem::transmute::<usize, _>(external) };
            // SAFETY: the installer promised a per-thread block that is
            // large and aligned enough and starts all zero — a valid
            // `ThreadCaches` (see the type).
            return Some(unsafe { block() } as *const ThreadCaches);
        }
        if !STD_CACHES_USED.load(Ordering::Relaxed) {
            STD_CACHES_USED.store(true, Ordering::Release);
        }
        CACHES.try_with(|caches| caches as *const ThreadCaches).ok()
    }

    /// Round-robin counter assigning threads to central-list shards.
    static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

    /// The pthread key whose destructor flushes a thread's caches (+1; 0 = none).
    static EXIT_KEY: AtomicUsize = AtomicUsize::new(0);

    /// Creates the thread-exit key (once per process, at heap start-up).
    pub(crate) fn create_exit_key() {
        if EXIT_KEY.load(Ordering::Acquire) == 0 {
            if let Ok(key) = sys::pthread_key_create(thread_exit) {
                EXIT_KEY.store(key as usize + 1, Ordering::Release);
            }
        }
    }

    /// Runs `f` on this thread's cache for heap `heap_idx`. Returns `None`
    /// when there is no usable cache: the thread is exiting, the call
    /// re-entered (a signal handler), or the exit key could not be created.
    #[inline]
    pub(crate) fn with_cache<R>(
        heap_idx: usize,
        f: impl FnOnce(&mut HeapCache, &Heap) -> R,
    ) -> Option<R> {
        // SAFETY: `this_thread` returns this thread's own caches, valid for
        // the thread's life (see there).
        let caches = unsafe { &*this_thread()? };
        match caches.state.get() {
            ACTIVE => {}
            UNREGISTERED => {
                if !register(caches) {
                    return None;
                }
            }
            _ => return None,
        }
        caches.state.set(BUSY);
        // Keep the BUSY store before the cache is touched: a signal handler
        // that allocates must see it (or fall back) rather than alias the cache.
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the state machine above guarantees that no other reference
        // to this thread's cache exists: BUSY excludes re-entry, and the
        // cache is never shared across threads.
        let cache = unsafe { &mut *checked::at(&caches.heaps, heap_idx).get() };
        let result = f(cache, checked::at(&HEAPS, heap_idx));
        compiler_fence(Ordering::SeqCst);
        caches.state.set(ACTIVE);
        Some(result)
    }

    /// A thread's first use: arms the exit destructor and picks a shard.
    /// Returns `false` if the thread cannot have a cache. Out of line, so
    /// the hot path of [`with_cache`] stays short.
    #[cold]
    #[inline(never)]
    fn register(caches: &ThreadCaches) -> bool {
        let key = EXIT_KEY.load(Ordering::Acquire);
        if key == 0 {
            return false;
        }
        caches.state.set(BUSY);
        // The value only needs to be non-null for the destructor to run.
        if sys::pthread_setspecific((key - 1) as _, 1).is_err() {
            caches.state.set(UNREGISTERED);
            return false;
        }
        // Spread threads over the central-list shards. Under a tight lock
        // budget every thread shares shard 0: each shard commits slabs of
        // its own, and 4 shards x the classes in use would spend a small
        // container's whole budget on a few live blocks.
        let shard = if crate::arena::budget::shards_allowed() {
            NEXT_SHARD.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        for cache in &caches.heaps {
            // SAFETY: BUSY excludes any other reference.
            unsafe { (*cache.get()).set_shard(shard) };
        }
        true
    }

    /// pthread key destructor: the thread is exiting; hand its cached slots
    /// back so that nothing is stranded.
    unsafe extern "C" fn thread_exit(_value: *mut core::ffi::c_void) {
        let Some(caches) = this_thread() else {
            return;
        };
        // SAFETY: as in `with_cache`.
        let caches = unsafe { &*caches };
        if caches.state.get() == BUSY {
            return;
        }
        caches.state.set(EXITED);
        for (idx, heap) in HEAPS.iter().enumerate() {
            // SAFETY: state EXITED keeps `with_cache` out, so this is the
            // only reference.
            let cache = unsafe { &mut *caches.heaps[idx].get() };
            cache.flush(heap);
        }
    }
}

#[cfg(not(loom))]
pub(crate) use tls::create_exit_key;
#[cfg(not(loom))]
pub use tls::{use_external_thread_block, EXTERNAL_THREAD_BLOCK_BYTES};
