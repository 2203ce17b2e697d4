//! Large blocks: requests above the largest size class (or with an alignment
//! no class offers) each get a mapping of their own, laid out as
//! `[guard][data pages][guard]` with 1 MiB `PROT_NONE` guards, so a stray
//! access up to 1 MiB before or after a block faults instead of landing in
//! another block (address space only: guards cost no memory and no lock
//! budget).
//!
//! Their bookkeeping lives in a registry outside the blocks (an
//! open-addressing table in its own mapping), which is also how a free of a
//! pointer this crate never issued is recognised. Freed blocks are wiped and
//! either unmapped or kept, still locked and guarded, in a small cache, since
//! mapping and locking a fresh 1 MiB block costs tens of microseconds.

#![allow(unsafe_code)]

use super::budget;
use super::checked;
use super::heap::{round_up, Heap};
use super::wipe::{wipe, wipe_resident};
use super::{CheckLevel, LockPolicy};
use crate::fatal::{fatal_at, FatalKind};
use crate::sync::{Mutex, Rank};
use crate::sys;
use core::alloc::Layout;

/// Blocks kept for reuse after free (at most; the byte cap usually binds
/// first, see `budget::large_cache_cap`).
const CACHE_SLOTS: usize = 32;
/// Blocks copied out of the registry per visit batch (see `for_each_block`).
const VISIT_BATCH: usize = 64;
/// Initial registry capacity (entries; a power of two).
const REGISTRY_INITIAL: usize = 256;

const EMPTY: usize = 0;
const TOMBSTONE: usize = 1;

/// One large block.
#[derive(Clone, Copy)]
pub(crate) struct LargeBlock {
    pub(crate) data: usize,     // first data byte; EMPTY / TOMBSTONE in the table
    pub(crate) data_len: usize, // mapped, locked and counted bytes (a page multiple)
    /// Bytes from `data` that are readable and writable (a page multiple, at
    /// most `data_len`); the pages after them are `PROT_NONE` and zero. A
    /// cached block reused for a smaller request closes the pages it does
    /// not need, so the guard after the block starts where the request's
    /// last page ends (a reused block left up to half of itself open past
    /// the end: found by the issue-14 attack review).
    pub(crate) open_len: usize,
    /// Served from the cache (wiped at its last free) rather than freshly
    /// mapped (zero from the kernel, pages not yet faulted in): a zeroed
    /// allocation checks only the former (reading a fresh one faulted in
    /// every page: a `calloc` of 1 GiB took 0.3 s and 1 GiB of memory).
    pub(crate) reused: bool,
    map_base: usize,         // start of the mapping (leading guard page)
    map_len: usize,          // whole mapping including both guards
    pub(crate) size: usize,  // requested size (allocation or last in-place resize)
    align: usize,            // requested alignment
    pub(crate) locked: bool, // data pages are mlocked
    pub(crate) array: bool,  // allocated by C++ `operator new[]`
    /// Cached under `CheckLevel::Full`: its data pages are `PROT_NONE`
    /// until it is handed out again, so a write after free faults.
    pub(crate) protected: bool,
}

const VACANT: LargeBlock = LargeBlock {
    data: EMPTY,
    data_len: 0,
    open_len: 0,
    reused: false,
    size: 0,
    align: 0,
    map_base: 0,
    map_len: 0,
    locked: false,
    array: false,
    protected: false,
};

/// An empty registry (no table yet, empty cache).
const EMPTY_REGISTRY: Registry = Registry {
    table: 0,
    capacity: 0,
    len: 0,
    used: 0,
    live_bytes: 0,
    cache: [VACANT; CACHE_SLOTS],
    cache_len: 0,
    cache_bytes: 0,
    cache_locked_bytes: 0,
};

struct Registry {
    table: usize,    // address of [LargeBlock; capacity] (0 before first use)
    capacity: usize, // power of two
    len: usize,      // live entries
    used: usize,     // live entries + tombstones
    live_bytes: usize,
    cache: [LargeBlock; CACHE_SLOTS],
    cache_len: usize,
    cache_bytes: usize,
    cache_locked_bytes: usize, // of `cache_bytes`, locked
}

impl LargeBlock {
    /// Whether a Rust caller's `layout` is this block's (size and alignment).
    pub(crate) fn matches(&self, layout: Layout) -> bool {
        layout.size() == self.size && layout.align() == self.align
    }
}

/// The large-block side of a heap.
pub(crate) struct LargeHeap {
    registry: Mutex<Registry>,
}

/// Snapshot of the large side for statistics.
pub(crate) struct LargeStats {
    pub(crate) live: usize,
    pub(crate) live_bytes: usize,
    pub(crate) cached_bytes: usize,
    pub(crate) cached_locked_bytes: usize,
}

impl LargeHeap {
    crate::sync::const_fn_unless_loom! {
        pub(crate) fn new() -> LargeHeap {
            LargeHeap {
                registry: Mutex::new(Rank::LargeRegistry, EMPTY_REGISTRY),
            }
        }
    }

    /// Allocates a zeroed block of at least `size` bytes aligned to `align`.
    /// Returns 0 on failure, including for a request that could never be
    /// backed and locked (see `budget::admissible`).
    ///
    /// Under `CheckLevel::Full` the block freed last is not taken from the
    /// cache, so `free(p); malloc(n)` does not return `p`. At `Default` and
    /// `Full` a cached block must still begin with 16 zero bytes when it is
    /// handed out again (it was wiped at its free), or it was written after
    /// its free: `write after free` (at `Full` it was `PROT_NONE`, so the
    /// write faulted already).
    pub(crate) fn alloc(
        &self,
        heap: &Heap,
        size: usize,
        align: usize,
        checks: CheckLevel,
    ) -> usize {
        let not_newest = checks == CheckLevel::Full;
        let page = sys::page_size();
        let Some(data_len) = size.max(1).checked_add(page - 1).map(|v| v & !(page - 1)) else {
            return 0;
        };
        // Idle cached blocks count as memory the arena holds; when they are
        // what stands between a request and physical memory, give them
        // (and every other idle piece) back and ask again.
        let admitted = budget::admissible(heap, data_len)
            || (budget::reclaim_idle() && budget::admissible(heap, data_len));
        if !admitted {
            return 0;
        }
        let map_align = align.max(page);
        {
            let mut reg = self.registry.lock();
            let cached = reg.take_cached(
                data_len,
                map_align,
                heap.policy() == LockPolicy::FailClosed,
                not_newest,
            );
            drop(reg);
            if let Some(mut block) = cached {
                if !open_exactly(&mut block, data_len, checks) {
                    unmap_block(heap, &block);
                    return 0;
                }
                // SAFETY: the block is ours alone and its first page is
                // mapped readable (opened above if it was protected).
                if checks != CheckLevel::Off && !unsafe { super::wipe::all_zero(block.data, 16) } {
                    crate::fatal::fatal_at(FatalKind::WriteAfterFree, block.data);
                }
                trim_tail(heap, &mut block, data_len);
                block.reused = true;
                block.size = size;
                block.align = align;
                if self.registry.lock().insert(block) {
                    return block.data;
                }
                unmap_block(heap, &block);
                return 0;
            }
        }
        let Some(mut block) = map_block(heap, data_len, map_align) else {
            return 0;
        };
        block.size = size;
        block.align = align;
        let mut reg = self.registry.lock();
        if reg.insert(block) {
            block.data
        } else {
            drop(reg);
            unmap_block(heap, &block);
            0
        }
    }

    /// Looks up the live block starting at `data`.
    pub(crate) fn find(&self, data: usize) -> Option<LargeBlock> {
        let reg = self.registry.lock();
        reg.find(data).map(|i| reg.entry(i))
    }

    /// Whether a block freed earlier and kept for reuse starts at `data`: a
    /// free of it is a double free (the attack review saw one reported as
    /// an invalid free).
    pub(crate) fn is_cached(&self, data: usize) -> bool {
        let reg = self.registry.lock();
        reg.cached().iter().any(|b| b.data == data)
    }

    /// Records whether the live block at `data` came from C++ `new[]`, and
    /// with `size` the size the program asked for (not above the block's);
    /// `false` if no live block starts there.
    pub(crate) fn record_cxx(&self, data: usize, array: bool, size: Option<usize>) -> bool {
        let mut reg = self.registry.lock();
        let Some(i) = reg.find(data) else {
            return false;
        };
        let mut block = reg.entry(i);
        block.array = array;
        if let Some(size) = size.filter(|&size| size <= block.size) {
            block.size = size;
        }
        reg.set_entry(i, block);
        true
    }

    /// Frees the block at `data`. Returns `false` (and does nothing) if no
    /// live block starts there; the caller decides whether that is misuse.
    /// A Rust caller's `layout` must be the block's (size and alignment).
    ///
    /// Under `CheckLevel::Full` a block kept for reuse is made
    /// `PROT_NONE` while cached, so a write after free faults at once
    /// instead of landing in memory the next owner receives.
    pub(crate) fn try_free(
        &self,
        heap: &Heap,
        data: usize,
        layout: Option<Layout>,
        checks: CheckLevel,
    ) -> bool {
        let protect = checks == CheckLevel::Full;
        let Some(mut block) = self.registry.lock().remove(data) else {
            return false;
        };
        if layout.is_some_and(|l| !block.matches(l)) {
            fatal_at(FatalKind::LayoutMismatch, data);
        }
        if checks != CheckLevel::Off {
            check_large_slack(&block, protect);
        }
        // SAFETY: the block was live and is now ours alone: the registry no
        // longer lists it and the caller gave up its pointer.
        // Skipping non-resident pages is right only for locked memory: an
        // unlocked page that was swapped out is not resident but still holds
        // data, which would come back on the next touch.
        unsafe {
            // Pages past `open_len` are `PROT_NONE` and were wiped at an
            // earlier free before they were closed (a write after free that
            // landed there meanwhile is not an owner's data, and `default`
            // does not look for it: see SECURITY.md).
            if block.locked {
                wipe_resident(block.data, block.open_len)
            } else {
                wipe(block.data, block.open_len)
            }
        };
        if protect {
            // SAFETY: as above: the block is ours alone. Its pages stay
            // mapped (and locked), only inaccessible, until `alloc` takes it
            // out of the cache and opens it again.
            let closed =
                unsafe { sys::mprotect(block.data, block.open_len, sys::Protection::None) };
            if closed.is_ok() {
                block.protected = true;
                block.open_len = 0;
            }
        }
        let mut evicted = [VACANT; CACHE_SLOTS];
        let kept = self.registry.lock().put_cached(block, &mut evicted);
        for old in evicted.iter().take(kept.unwrap_or(0)) {
            unmap_block(heap, old);
        }
        if kept.is_none() {
            unmap_block(heap, &block);
        }
        true
    }

    /// Shrinks or grows the block at `data` in place when its mapping has
    /// room and would not waste more than half of it; wipes a shrunk tail.
    /// `None` if no live block starts at `data` in this heap. The caller
    /// validated its layout first.
    pub(crate) fn resize_in_place(&self, data: usize, new_size: usize) -> Option<bool> {
        let page = sys::page_size();
        let mut reg = self.registry.lock();
        let i = reg.find(data)?;
        let mut block = reg.entry(i);
        if new_size > block.data_len || round_up(new_size.max(1), page) < block.data_len / 2 {
            return Some(false);
        }
        let need = round_up(new_size.max(1), page);
        if need > block.open_len {
            // SAFETY: `[data + open_len, data + need)` lies in this live
            // block's own pages (need <= data_len), `PROT_NONE` and zero;
            // the registry lock keeps its entry ours while we change it.
            let opened = unsafe {
                sys::mprotect(
                    block.data + block.open_len,
                    need - block.open_len,
                    sys::Protection::ReadWrite,
                )
            };
            if opened.is_err() {
                return Some(false);
            }
            block.open_len = need;
        }
        let old_size = block.size;
        block.size = new_size;
        reg.set_entry(i, block);
        drop(reg);
        if new_size < old_size {
            // SAFETY: the caller owns the block; the tail is inside it.
            unsafe { wipe(data + new_size, old_size - new_size) };
        }
        if need < block.open_len {
            // A block shrunk in place closes the pages past its new last
            // one, as a reused block does (they stayed open: found by the
            // second review of the large-block fix). They are wiped above
            // (or were never written: past the old size).
            // SAFETY: `[data + need, data + open_len)` lies in this live
            // block's pages, past its new size: the caller no longer owns it.
            let closed =
                unsafe { sys::mprotect(data + need, block.open_len - need, sys::Protection::None) };
            if closed.is_ok() {
                let mut reg = self.registry.lock();
                if let Some(i) = reg.find(data) {
                    let mut entry = reg.entry(i);
                    entry.open_len = need;
                    reg.set_entry(i, entry);
                }
            }
        }
        Some(true)
    }

    /// Unmaps every cached block, giving its budget back. Returns whether
    /// there was any. The registry lock is held only to take them out.
    pub(crate) fn evict_cache(&self, heap: &Heap) -> bool {
        let mut evicted = [VACANT; CACHE_SLOTS];
        let n = {
            let mut reg = self.registry.lock();
            let n = reg.cached().len();
            for (to, from) in evicted.iter_mut().zip(reg.cached()) {
                *to = *from;
            }
            reg.cache_len = 0;
            reg.cache_bytes = 0;
            reg.cache_locked_bytes = 0;
            n
        };
        for block in evicted.iter().take(n) {
            unmap_block(heap, block);
        }
        n > 0
    }

    /// [`super::inspect::corrupt_large_registries`] for this heap.
    #[cfg(all(not(loom), secalloc_test_hooks))]
    pub(crate) fn fill_with_tombstones_for_test(&self) {
        let mut reg = self.registry.lock();
        for i in 0..reg.capacity {
            let entry = reg.entry(i);
            if entry.data == EMPTY {
                let tombstone = LargeBlock {
                    data: TOMBSTONE,
                    ..entry
                };
                reg.set_entry(i, tombstone);
            }
        }
    }

    /// Statistics snapshot.
    pub(crate) fn stats(&self) -> LargeStats {
        let reg = self.registry.lock();
        LargeStats {
            live: reg.len,
            live_bytes: reg.live_bytes,
            cached_bytes: reg.cache_bytes,
            cached_locked_bytes: reg.cache_locked_bytes,
        }
    }

    /// Visits every live and cached block. `f` runs with no lock held (it
    /// may allocate, even a large block): blocks are copied out of the
    /// registry a batch at a time. Under concurrent allocation the visit is
    /// a best-effort snapshot, like every statistic here.
    pub(crate) fn for_each_block(&self, mut f: impl FnMut(&LargeBlock, bool)) {
        let mut batch = [VACANT; VISIT_BATCH];
        let mut next = 0; // table index to resume from
        loop {
            let (n, done) = {
                let reg = self.registry.lock();
                let mut n = 0;
                while next < reg.capacity && n < VISIT_BATCH {
                    let block = reg.entry(next);
                    if block.data > TOMBSTONE {
                        batch[n] = block;
                        n += 1;
                    }
                    next += 1;
                }
                (n, next >= reg.capacity)
            };
            for block in batch.iter().take(n) {
                f(block, true);
            }
            if done {
                break;
            }
        }
        let mut cached = [VACANT; CACHE_SLOTS];
        let n = {
            let reg = self.registry.lock();
            for (to, from) in cached.iter_mut().zip(reg.cached()) {
                *to = *from;
            }
            reg.cached().len()
        };
        for block in cached.iter().take(n) {
            f(block, false);
        }
    }

    #[cfg(not(loom))]
    pub(crate) fn lock_and_forget(&self) {
        self.registry.lock_and_forget();
    }

    /// # Safety
    /// The registry lock is held through `lock_and_forget`.
    #[cfg(not(loom))]
    pub(crate) unsafe fn force_unlock(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { self.registry.force_unlock() }
    }

    /// Re-locks every locked block in a fork child.
    #[cfg(not(loom))]
    pub(crate) fn relock_after_fork(&self, heap: &Heap) {
        let mut reg = self.registry.lock();
        for i in 0..reg.capacity {
            let mut block = reg.entry(i);
            if block.data > TOMBSTONE && block.locked {
                if let Err(err) = sys::mlock_on_fault(block.data, block.data_len) {
                    heap.note_refusal(err);
                    block.locked = false;
                    heap.move_to_unlocked(block.data_len);
                    reg.set_entry(i, block);
                }
            }
        }
        // Cached blocks are not worth the child's budget: unmap them.
        let cached = reg.cache_len;
        let blocks = reg.cache;
        reg.cache_len = 0;
        reg.cache_bytes = 0;
        reg.cache_locked_bytes = 0;
        drop(reg);
        for block in blocks.iter().take(cached) {
            unmap_block(heap, block);
        }
    }
}

/// The slack past a large block's requested size, up to the end of its
/// pages, is never the caller's and is zero unless something wrote past the
/// end (the guard after it only catches a write that crosses the page).
/// Checked at free: 16 bytes by default, all of it under `CheckLevel::Full`
/// (`full`). Sizes just under 16 KiB become large blocks under `Full` (the
/// slot request with its slack is over the largest class): their overflows
/// went unseen until this (found by the issue-14 attack review).
fn check_large_slack(block: &LargeBlock, full: bool) {
    let end = if full {
        block.open_len
    } else {
        block.open_len.min(block.size + 16)
    };
    let mut acc = 0u8;
    for at in block.size..end {
        // SAFETY: `[data, data + data_len)` is the block's own mapping,
        // readable (it was live until now) and no longer the caller's.
        acc |= unsafe { core::ptr::read_volatile((block.data + at) as *const u8) };
    }
    if acc != 0 {
        crate::fatal::fatal_at(FatalKind::HeapOverflow, block.data);
    }
}

/// Bytes of `PROT_NONE` guard on each side of a large block (issue 14: a
/// stray access 1 MiB away must fault).
const GUARD_LEN: usize = 1 << 20;

/// The guard on each side: [`GUARD_LEN`], at least a page.
fn guard_len() -> usize {
    GUARD_LEN.max(sys::page_size())
}

/// Makes exactly the first `need` bytes of a cached `block` (a page multiple,
/// at most its `data_len`) readable and writable, and, unless checks are
/// off, the rest of its pages `PROT_NONE`: a stray access past the
/// request's last page then faults as it would past a fresh block. `false`
/// if the pages it needs could not be opened (the block is then unusable).
fn open_exactly(block: &mut LargeBlock, need: usize, checks: CheckLevel) -> bool {
    let open = if block.protected { 0 } else { block.open_len };
    block.open_len = if open < need {
        // SAFETY: `[data + open, data + need)` lies in the block's data
        // pages; the block was just taken out of the cache, so nothing else
        // references it.
        let opened =
            unsafe { sys::mprotect(block.data + open, need - open, sys::Protection::ReadWrite) };
        if opened.is_err() {
            return false;
        }
        need
    } else if open > need && checks != CheckLevel::Off {
        // SAFETY: as above, for the pages past the request (wiped at the
        // block's free). If the kernel refuses (its map-count limit), they
        // stay open and counted as open.
        let closed =
            unsafe { sys::mprotect(block.data + need, open - need, sys::Protection::None) };
        if closed.is_ok() {
            need
        } else {
            open
        }
    } else {
        open
    };
    block.protected = false;
    true
}

/// Maps, guards, dump-excludes and locks a fresh block.
fn map_block(heap: &Heap, data_len: usize, align: usize) -> Option<LargeBlock> {
    let page = sys::page_size();
    let guard = guard_len();
    let map_len = data_len.checked_add(2 * guard)?;
    let padded = map_len.checked_add(align - page)?;
    let raw = sys::mmap_reserve(padded).ok()?;
    let data = round_up(raw + guard, align);
    let map_base = data - guard;
    // SAFETY: head and tail are unused pieces of the reservation just made.
    unsafe {
        if map_base > raw {
            let _ = sys::munmap(raw, map_base - raw);
        }
        let tail = raw + padded - (map_base + map_len);
        if tail > 0 {
            let _ = sys::munmap(map_base + map_len, tail);
        }
    }
    let mut block = LargeBlock {
        data,
        data_len,
        open_len: data_len,
        reused: false,
        map_base,
        map_len,
        size: data_len,
        align,
        locked: false,
        array: false,
        protected: false,
    };
    // SAFETY: the data range is inside our fresh mapping.
    let usable = unsafe { sys::mprotect(data, data_len, sys::Protection::ReadWrite) }.is_ok()
        && sys::madvise_dontdump(map_base, map_len).is_ok();
    if !usable {
        // Not yet counted in either byte counter: unmap it directly.
        // SAFETY: the fresh mapping was never handed out.
        let _ = unsafe { sys::munmap(map_base, map_len) };
        return None;
    }
    // A best-effort heap would fall back to unlocked memory at once: give
    // idle locked memory back first (no lock is held here), so it runs
    // unlocked only when the budget is truly spent. A fail-closed refusal
    // is retried after reclaiming by the caller.
    let outcome = if heap.policy() == LockPolicy::BestEffort {
        if budget::lock_quietly(heap, data, data_len) {
            Some(true)
        } else {
            budget::reclaim_idle();
            budget::lock(heap, data, data_len)
        }
    } else {
        budget::lock(heap, data, data_len)
    };
    match outcome {
        Some(locked) => block.locked = locked,
        None => {
            // Not counted.
            // SAFETY: the fresh mapping was never handed out.
            let _ = unsafe { sys::munmap(map_base, map_len) };
            return None;
        }
    }
    Some(block)
}

/// Shrinks a cached `block` (wiped, not yet handed out) that is more than
/// twice the `data_len` bytes asked for: the page after the kept data
/// becomes the new trailing guard and the rest of the mapping is unmapped,
/// giving its lock budget back. A block at most twice the request keeps its
/// tail: trimming it would make the next bigger request map and fault a
/// fresh block (measured on the big-buffer workload: 1.60× glibc trimming
/// every tail, 1.35× keeping tails up to half the block).
fn trim_tail(heap: &Heap, block: &mut LargeBlock, data_len: usize) {
    if block.data_len / 2 <= data_len {
        return;
    }
    let guard_len = guard_len();
    let guard = block.data + data_len;
    let old_end = block.data + block.data_len;
    let map_end = block.map_base + block.map_len;
    // The new guard covers data pages up to `guard_len` (the rest of it is
    // the old guard, already `PROT_NONE`).
    let in_guard = guard_len.min(old_end - guard);
    let guard_end = guard + guard_len; // <= map_end: the old guard ends there
                                       // The new guard first: making it splits the mapping, which the kernel
                                       // refuses at its map-count limit — and a block must never go out
                                       // without its trailing guard, so then it goes out untrimmed.
                                       // SAFETY: `[guard, guard + in_guard)` lies in this block's data past
                                       // the bytes kept, and the block is not handed out: nothing references it.
    if unsafe { sys::mprotect(guard, in_guard, sys::Protection::None) }.is_err() {
        return;
    }
    let tail_unmapped = guard_end >= map_end || {
        // SAFETY: `[guard_end, map_end)` (data pages past the new guard and
        // the old guard's end) lies in this mapping and is referenced by
        // nothing.
        unsafe { sys::munmap(guard_end, map_end - guard_end) }.is_ok()
    };
    if !tail_unmapped {
        // Undo: the pages stay part of the data, still locked.
        // SAFETY: as above.
        let _ = unsafe { sys::mprotect(guard, in_guard, sys::Protection::ReadWrite) };
        return;
    }
    let released = old_end - guard;
    budget::release(heap, guard, in_guard, block.locked, true);
    if released > in_guard {
        budget::release(heap, guard_end, released - in_guard, block.locked, false);
    }
    block.data_len = data_len;
    block.open_len = block.open_len.min(data_len);
    block.map_len = data_len + 2 * guard_len;
}

fn unmap_block(heap: &Heap, block: &LargeBlock) {
    // SAFETY: the block is wiped (or was never handed out) and nothing
    // references it any more.
    let _ = unsafe { sys::munmap(block.map_base, block.map_len) };
    // Unmapping returned the charge; `locked` says which counter held it.
    budget::release(heap, block.data, block.data_len, block.locked, false);
}

impl Registry {
    fn slot_ptr(&self, i: usize) -> *mut LargeBlock {
        (self.table as *mut LargeBlock).wrapping_add(i)
    }

    fn entry(&self, i: usize) -> LargeBlock {
        // SAFETY: `i < capacity` and the table holds `capacity` entries,
        // all valid (zeroed memory is a valid EMPTY entry).
        unsafe { *self.slot_ptr(i) }
    }

    fn set_entry(&mut self, i: usize, block: LargeBlock) {
        // SAFETY: as in `entry`; we hold the registry lock (`&mut self`).
        unsafe { *self.slot_ptr(i) = block }
    }

    fn hash(&self, data: usize) -> usize {
        ((data >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) & (self.capacity - 1)
    }

    fn find(&self, data: usize) -> Option<usize> {
        if self.capacity == 0 || data <= TOMBSTONE {
            return None;
        }
        let mut i = self.hash(data);
        // At most one lap: a table with no empty entry left (only a stray
        // write can make one, the load factor is kept at half) must not
        // spin forever under the registry lock (found by the attack review
        // of the no-panic change: `free` of a foreign pointer hung).
        for _ in 0..self.capacity {
            let entry = self.entry(i);
            if entry.data == data {
                return Some(i);
            }
            if entry.data == EMPTY {
                return None;
            }
            i = (i + 1) & (self.capacity - 1);
        }
        None
    }

    fn insert(&mut self, block: LargeBlock) -> bool {
        if (self.used + 1) * 2 > self.capacity && !self.grow() {
            return false;
        }
        let mut i = self.hash(block.data);
        // At most one lap, as in `find`: a full table is corrupt.
        for _ in 0..self.capacity {
            let entry = self.entry(i);
            if entry.data == EMPTY || entry.data == TOMBSTONE {
                if entry.data == EMPTY {
                    self.used += 1;
                }
                self.set_entry(i, block);
                self.len += 1;
                self.live_bytes += block.data_len;
                return true;
            }
            i = (i + 1) & (self.capacity - 1);
        }
        fatal_at(FatalKind::Corruption, block.data)
    }

    fn remove(&mut self, data: usize) -> Option<LargeBlock> {
        let i = self.find(data)?;
        let block = self.entry(i);
        self.set_entry(
            i,
            LargeBlock {
                data: TOMBSTONE,
                ..VACANT
            },
        );
        self.len -= 1;
        self.live_bytes -= block.data_len;
        Some(block)
    }

    /// Rebuilds the table at twice the live size (at least the initial size),
    /// dropping tombstones. Only `mmap`/`munmap`, which never allocate.
    fn grow(&mut self) -> bool {
        let new_capacity = (self.len * 4).max(REGISTRY_INITIAL).next_power_of_two();
        let bytes = round_up(
            new_capacity * core::mem::size_of::<LargeBlock>(),
            sys::page_size(),
        );
        let Ok(table) = sys::mmap_read_write(bytes) else {
            return false;
        };
        let _ = sys::madvise_dontdump(table, bytes);
        let old = Registry {
            table: self.table,
            capacity: self.capacity,
            ..EMPTY_REGISTRY
        };
        self.table = table;
        self.capacity = new_capacity;
        self.len = 0;
        self.used = 0;
        self.live_bytes = 0;
        for i in 0..old.capacity {
            let block = old.entry(i);
            if block.data > TOMBSTONE {
                let inserted = self.insert(block);
                debug_assert!(inserted);
            }
        }
        if old.table != 0 {
            let old_bytes = round_up(
                old.capacity * core::mem::size_of::<LargeBlock>(),
                sys::page_size(),
            );
            // SAFETY: the old table is no longer referenced.
            let _ = unsafe { sys::munmap(old.table, old_bytes) };
        }
        true
    }

    /// The cached blocks, oldest first.
    fn cached(&self) -> &[LargeBlock] {
        checked::part(&self.cache, 0..self.cache_len)
    }

    /// Takes cached block `i` out, keeping the others in the order they
    /// were freed (oldest first), so that eviction takes the coldest.
    fn remove_cached(&mut self, i: usize) -> LargeBlock {
        let len = checked::below(self.cache_len, CACHE_SLOTS + 1);
        let block = *checked::at(&self.cache, i);
        for k in i + 1..len {
            self.cache[k - 1] = self.cache[k];
        }
        self.cache_len = len.saturating_sub(1);
        block
    }

    /// Takes the smallest cached block that holds `data_len` bytes at
    /// `align`: a wiped block at hand is always reused rather than a fresh
    /// one mapped and faulted in. The caller gives back the tail it does not
    /// need (`trim_tail`).
    fn take_cached(
        &mut self,
        data_len: usize,
        align: usize,
        need_locked: bool,
        not_newest: bool,
    ) -> Option<LargeBlock> {
        let mut best: Option<usize> = None;
        // Oldest first: the newest is the last entry.
        let cached = self.cached();
        let eligible = cached.len() - (not_newest && !cached.is_empty()) as usize;
        let mut best_len = usize::MAX;
        for (i, b) in cached.iter().take(eligible).enumerate() {
            let fits = b.data_len >= data_len && b.data % align == 0 && (b.locked || !need_locked);
            if fits && b.data_len < best_len {
                best = Some(i);
                best_len = b.data_len;
            }
        }
        let block = self.remove_cached(best?);
        self.cache_bytes -= block.data_len;
        if block.locked {
            self.cache_locked_bytes -= block.data_len;
        }
        Some(block)
    }

    /// Keeps a wiped block for reuse, evicting the oldest cached blocks into
    /// `evicted` (for the caller to unmap once the lock is released) to make
    /// room. The room is sized by the live large heap and capped by a share
    /// of the lock budget (`budget::large_cache_cap`), so cached blocks never
    /// crowd out a live request for long: a refusal evicts them all anyway.
    /// Returns how many blocks went to `evicted`, or `None` if `block`
    /// itself is not kept.
    fn put_cached(
        &mut self,
        block: LargeBlock,
        evicted: &mut [LargeBlock; CACHE_SLOTS],
    ) -> Option<usize> {
        let cap = budget::large_cache_cap(self.live_bytes);
        if block.data_len > cap {
            return None;
        }
        let mut n = 0;
        while self.cache_len == CACHE_SLOTS || self.cache_bytes + block.data_len > cap {
            let oldest = self.remove_cached(0);
            self.cache_bytes -= oldest.data_len;
            if oldest.locked {
                self.cache_locked_bytes -= oldest.data_len;
            }
            *checked::at_mut(evicted, n) = oldest;
            n += 1;
        }
        *checked::at_mut(&mut self.cache, self.cache_len) = block;
        self.cache_len += 1;
        self.cache_bytes += block.data_len;
        if block.locked {
            self.cache_locked_bytes += block.data_len;
        }
        Some(n)
    }
}
