//! One heap: a reserved region carved into slabs, the per-class central lists,
//! the pool of empty slabs, and the commit frontier that grows the locked part
//! of the region in measured steps.
//!
//! Glossary:
//! - *region*: one large `PROT_NONE` reservation, `SLAB_SIZE`-aligned.
//! - *slab*: a `SLAB_SIZE` piece of the region, serving one size class at a time.
//! - *slot*: one allocation-sized piece of a slab.
//! - *committed*: made readable/writable, locked and dump-excluded; the
//!   committed slabs are a prefix of the region.
//!
//! - *small slabs*: under a small lock budget (`budget::small_slabs`) the
//!   fail-closed heap commits and locks a slab page by page, as its class
//!   needs slots, instead of 64 KiB at once: a 64 KiB `RLIMIT_MEMLOCK`
//!   would otherwise hold less than one slab beside the key page. Slot
//!   arithmetic is unchanged (a slab is still `SLAB_SIZE` of address
//!   space); only its committed prefix has slots on the lists.
//!
//! - *decommitted*: a slab once committed, now empty and given back: its
//!   pages are dropped (`MADV_DONTNEED`), unlocked and `PROT_NONE`, so it
//!   holds none of the lock budget; it is committed again before reuse.
//!
//! Lock order (ranks in `sync::rank`): a class lock, then the pool lock. No
//! path holds two class locks, and no lock is held across anything that
//! allocates (only system calls that never allocate run under the pool lock).

#![allow(unsafe_code)]

use super::budget;
use super::large::LargeHeap;
use super::size_class::{
    class_size, slot_index, slots_per_slab, CLASS_COUNT, SLAB_SHIFT, SLAB_SIZE,
};
use super::slab::{SlabMeta, NO_SLAB};
use super::LockPolicy;
use crate::fatal::{fatal_at, FatalKind};
use crate::sync::{spin_hint, AtomicU8, AtomicUsize, Mutex, Ordering, Rank};
use crate::sys;

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;
/// A fail-closed heap whose memory could not be locked again in a forked
/// child: it hands out nothing more.
const POISONED: u8 = 3;

/// Region sizes tried at start-up, largest first: address space is free, but
/// `RLIMIT_AS` may forbid a large reservation.
const REGION_SIZES: [usize; 5] = [4 << 30, 1 << 30, 256 << 20, 64 << 20, 16 << 20];

/// Independent central lists per class. Each thread is assigned a shard, and
/// a shard's slabs serve only its threads, so threads on different shards
/// allocate from different slabs and never contend for the same cache line
/// of slab metadata (the live marks are written on every allocation and free).
pub(crate) const SHARD_COUNT: usize = 4;

/// The commit step never exceeds this many slabs (1 MiB): locking happens in
/// measured increments, because even `MLOCK_ONFAULT` charges the whole range
/// to `RLIMIT_MEMLOCK` at once.
const MAX_COMMIT_SLABS: usize = 16;

/// A class's partial-slab list: slabs of this class with available slots.
struct ClassList {
    head: u32,          // slab index + 1, or NO_SLAB
    partial_count: u32, // slabs in the list
    growing: u32,       // small slabs: the slab acquired last, which may grow (index + 1)
}

/// The pool: empty slabs no class owns, and the commit frontier.
///
/// Invariant: every slab below `frontier` is assigned to a class, on the
/// `free_head` stack (committed, empty), or on the `decommitted_head` stack;
/// `idle_count` is the length of the `free_head` stack.
struct SlabPool {
    free_head: u32,        // stack of empty committed slabs (index + 1)
    idle_count: usize,     // slabs on that stack
    decommitted_head: u32, // stack of empty decommitted slabs (index + 1)
    frontier: usize,       // slabs ever assigned; those past it are fresh
    committed: usize,      // slabs made accessible (and locked, policy permitting)
}

#[repr(align(64))]
struct CachePadded<T>(T);

/// One heap. Two exist in a process, one per [`LockPolicy`], so memory that
/// could not be locked is never handed to a fail-closed allocator.
pub(crate) struct Heap {
    policy: LockPolicy,
    state: AtomicU8,              // UNINIT / INITIALIZING / READY
    small_slabs: AtomicU8,        // 1: slabs are committed page by page (set before READY)
    base: AtomicUsize,            // region start (0 until READY)
    slab_capacity: AtomicUsize,   // slabs in the region
    meta_base: AtomicUsize,       // address of [SlabMeta; slab_capacity]
    class_base: AtomicUsize,      // address of [AtomicU8; slab_capacity]: class + 1 per slab
    committed_slabs: AtomicUsize, // published copy of pool.committed
    classes: [CachePadded<Mutex<ClassList>>; CLASS_COUNT * SHARD_COUNT], // [class][shard]
    pool: Mutex<SlabPool>,
    pub(crate) large: LargeHeap,
    pub(crate) locked_bytes: AtomicUsize, // committed or mapped and locked
    pub(crate) unlocked_bytes: AtomicUsize, // committed or mapped but not locked
    pub(crate) lock_refusals: AtomicUsize, // mlock calls the kernel refused
    pub(crate) last_refusal_errno: AtomicUsize,
    idle_locked_slabs: AtomicUsize, // empty committed slabs that are locked
    decommitted_slabs: AtomicUsize, // slabs below the frontier given back
}

// SAFETY: all shared state is atomics or behind `Mutex`; the raw addresses
// stored in atomics refer to process-wide mappings that live forever.
unsafe impl Sync for Heap {}
// SAFETY: as above; a heap owns no thread-affine state.
unsafe impl Send for Heap {}

impl Heap {
    crate::sync::const_fn_unless_loom! {
        /// An uninitialised heap; it reserves its region on first use.
        pub(crate) fn new(policy: LockPolicy) -> Heap {
            Heap {
                policy,
                state: AtomicU8::new(UNINIT),
                small_slabs: AtomicU8::new(0),
                base: AtomicUsize::new(0),
                slab_capacity: AtomicUsize::new(0),
                meta_base: AtomicUsize::new(0),
                class_base: AtomicUsize::new(0),
                committed_slabs: AtomicUsize::new(0),
                classes: crate::sync::array_of![
                    CachePadded(Mutex::new(Rank::HeapClass, ClassList {
                        head: NO_SLAB,
                        partial_count: 0,
                        growing: NO_SLAB,
                    }));
                    CLASS_COUNT * SHARD_COUNT
                ],
                pool: Mutex::new(Rank::HeapPool, SlabPool {
                    free_head: NO_SLAB,
                    idle_count: 0,
                    decommitted_head: NO_SLAB,
                    frontier: 0,
                    committed: 0,
                }),
                large: LargeHeap::new(),
                locked_bytes: AtomicUsize::new(0),
                unlocked_bytes: AtomicUsize::new(0),
                lock_refusals: AtomicUsize::new(0),
                last_refusal_errno: AtomicUsize::new(0),
                idle_locked_slabs: AtomicUsize::new(0),
                decommitted_slabs: AtomicUsize::new(0),
            }
        }
    }

    /// The heap's lock policy.
    pub(crate) fn policy(&self) -> LockPolicy {
        self.policy
    }

    // ------------------------------------------------------------------
    // Start-up
    // ------------------------------------------------------------------

    /// Makes sure the region is reserved. Returns `false` if it cannot be.
    #[inline]
    pub(crate) fn ensure_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY || self.init_slow(&REGION_SIZES)
    }

    /// Reserves a region of `slabs` slabs (for loom models and tests).
    #[cfg(loom)]
    pub(crate) fn init_with_slabs(&self, slabs: usize) -> bool {
        self.init_slow(&[slabs * SLAB_SIZE])
    }

    #[cold]
    fn init_slow(&self, sizes: &[usize]) -> bool {
        loop {
            match self.state.compare_exchange(
                UNINIT,
                INITIALIZING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(READY) => return true,
                Err(POISONED) => return false,
                Err(_) => spin_hint(),
            }
        }
        super::process_setup();
        // Only the fail-closed heap: its refusals fail, so a slab is either
        // locked up to its committed prefix or not handed out at all. (A
        // best-effort slab must know whether all of it is locked.)
        let small = self.policy == LockPolicy::FailClosed && budget::small_slabs();
        self.small_slabs.store(small as u8, Ordering::Relaxed);
        let ok = self.reserve_region(sizes);
        self.state
            .store(if ok { READY } else { UNINIT }, Ordering::Release);
        ok
    }

    fn reserve_region(&self, sizes: &[usize]) -> bool {
        for &size in sizes {
            let slabs = size / SLAB_SIZE;
            let Some(base) = sys::mmap_reserve_aligned(size + 2 * REGION_GUARD, SLAB_SIZE)
                .ok()
                .map(|start| start + REGION_GUARD)
            else {
                continue;
            };
            let meta_len = round_up(slabs * core::mem::size_of::<SlabMeta>(), sys::page_size());
            let Some(meta) = alloc_meta_table(slabs, meta_len) else {
                // SAFETY: we just reserved this range and nothing uses it.
                let _ = unsafe { unreserve_region(base, size) };
                continue;
            };
            let class_len = round_up(slabs, sys::page_size());
            let Some(classes) = alloc_class_table(slabs, class_len) else {
                // SAFETY: as above.
                let _ = unsafe { unreserve_region(base, size) };
                free_meta_table(meta, slabs, meta_len);
                continue;
            };
            // The flag stays on every piece of the VMA that `mprotect` later
            // splits off, so one call covers all future slabs.
            if sys::madvise_dontdump(base, size).is_err() {
                // SAFETY: as above.
                let _ = unsafe { unreserve_region(base, size) };
                free_meta_table(meta, slabs, meta_len);
                free_class_table(classes, slabs, class_len);
                continue;
            }
            self.meta_base.store(meta, Ordering::Relaxed);
            self.class_base.store(classes, Ordering::Relaxed);
            self.slab_capacity.store(slabs, Ordering::Relaxed);
            self.base.store(base, Ordering::Relaxed);
            return true;
        }
        false
    }

    // ------------------------------------------------------------------
    // Address arithmetic
    // ------------------------------------------------------------------

    /// [`super::inspect::corrupt_slab_meta`] for this heap.
    #[cfg(all(not(loom), secalloc_test_hooks))]
    pub(crate) fn corrupt_meta_for_test(
        &self,
        addr: usize,
        field: super::inspect::MetaField,
        value: u32,
    ) -> bool {
        if !self.owns(addr) {
            return false;
        }
        let slab = (addr - self.base.load(Ordering::Relaxed)) >> SLAB_SHIFT;
        self.meta(slab).corrupt_for_test(field, value);
        true
    }

    /// Whether `addr` lies in this heap's slab region.
    #[inline]
    pub(crate) fn owns(&self, addr: usize) -> bool {
        let base = self.base.load(Ordering::Relaxed);
        base != 0
            && addr.wrapping_sub(base) < self.slab_capacity.load(Ordering::Relaxed) << SLAB_SHIFT
    }

    #[inline]
    fn meta(&self, slab: usize) -> &SlabMeta {
        // Checked, not assumed: slab numbers also come from the metadata
        // itself (list links, the free-slab list), and a forged one made the
        // unlink below write where it pointed — into a live user block
        // (found by the attack review of the no-panic change).
        let slab = super::checked::below(slab, self.slab_capacity.load(Ordering::Relaxed));
        let table = self.meta_base.load(Ordering::Relaxed) as *const SlabMeta;
        // SAFETY: `slab` is below the capacity (checked above), and the
        // table holds that many initialised entries for the life of the
        // process (or of the model).
        unsafe { &*table.add(slab) }
    }

    /// The class byte of `slab` (class + 1, or 0 while unassigned). A dense
    /// table apart from [`SlabMeta`], which is over 8 KiB a slab: reading the
    /// class there cost every free a cache line (and a TLB entry) of its own,
    /// while one line here covers 64 slabs (4 MiB of heap). The only record
    /// of a slab's class; written next to `SlabMeta::assign`/`unassign`,
    /// under the same locks (the class lock and the pool lock).
    #[inline]
    fn class_cell(&self, slab: usize) -> &AtomicU8 {
        let slab = super::checked::below(slab, self.slab_capacity.load(Ordering::Relaxed));
        let table = self.class_base.load(Ordering::Relaxed) as *const AtomicU8;
        // SAFETY: `slab` is below the capacity (checked above, as in
        // `meta`), and the table holds that many initialised bytes for the
        // life of the process (or of the model).
        unsafe { &*table.add(slab) }
    }

    /// The class `slab` serves, if any.
    #[inline]
    fn class_of(&self, slab: usize) -> Option<usize> {
        match self.class_cell(slab).load(Ordering::Relaxed) {
            0 => None,
            tag => Some(tag as usize - 1),
        }
    }

    fn slab_addr(&self, slab: usize) -> usize {
        self.base.load(Ordering::Relaxed) + (slab << SLAB_SHIFT)
    }

    /// Whether slabs are committed page by page (see the module docs).
    #[inline]
    pub(crate) fn small_slabs(&self) -> bool {
        self.small_slabs.load(Ordering::Relaxed) != 0
    }

    /// Bytes of `slab` that are committed (accessible, and locked if its
    /// flag says so): the whole slab, or in a small-slab heap its prefix.
    fn committed_bytes(&self, slab: usize) -> usize {
        if self.small_slabs() {
            self.meta(slab).committed_pages() * sys::page_size()
        } else {
            SLAB_SIZE
        }
    }

    /// Slots of `class` that lie in the committed part of `slab`.
    fn backed_slots(&self, slab: usize, class: usize) -> usize {
        if self.small_slabs() {
            self.committed_bytes(slab) / class_size(class)
        } else {
            slots_per_slab(class)
        }
    }

    /// Small slabs: commits and locks enough further pages of `slab`
    /// (assigned to `class`; its class lock held) for at least one more
    /// slot, and makes the new slots available. `false` if the slab is
    /// fully committed or the kernel refused (the refusal is counted).
    fn grow_slab(&self, slab: usize, class: usize) -> bool {
        let page = sys::page_size();
        let meta = self.meta(slab);
        let size = class_size(class);
        let old_bytes = meta.committed_pages() * page;
        let old_slots = old_bytes / size;
        let new_bytes = round_up((old_slots + 1) * size, page);
        if new_bytes > SLAB_SIZE {
            return false;
        }
        let start = self.slab_addr(slab) + old_bytes;
        let len = new_bytes - old_bytes;
        // SAFETY: past the slab's committed prefix: no slot there was ever
        // handed out, and the range is inside our reservation.
        if unsafe { sys::mprotect(start, len, sys::Protection::ReadWrite) }.is_err() {
            return false;
        }
        if budget::lock(self, start, len) != Some(true) {
            // Fail-closed (small slabs are never best-effort): nothing was
            // counted. SAFETY: as above; the range is unused.
            let _ = unsafe { sys::mprotect(start, len, sys::Protection::None) };
            return false;
        }
        meta.set_committed_pages(new_bytes / page);
        meta.set_locked(true);
        // SAFETY: the caller holds the class lock guarding the slab.
        unsafe { meta.lists(|lists| lists.extend(old_slots, new_bytes / size)) };
        true
    }

    /// Locates `addr` (which [`Heap::owns`]): its slab, slab metadata, class,
    /// and slot index. Aborts if it is not the start of a slot in a slab in use.
    #[inline]
    pub(crate) fn locate(&self, addr: usize) -> (usize, &SlabMeta, usize, usize) {
        let offset = addr - self.base.load(Ordering::Relaxed);
        let slab = offset >> SLAB_SHIFT;
        if slab >= self.committed_slabs.load(Ordering::Acquire) {
            fatal_at(FatalKind::InvalidFree, addr);
        }
        let Some(class) = self.class_of(slab) else {
            fatal_at(FatalKind::InvalidFree, addr);
        };
        let meta = self.meta(slab);
        let in_slab = offset & (SLAB_SIZE - 1);
        let size = class_size(class);
        let slot = slot_index(in_slab, class);
        if in_slab != slot * size || slot >= slots_per_slab(class) {
            fatal_at(FatalKind::InvalidFree, addr);
        }
        (slab, meta, class, slot)
    }

    /// Marks the slot at `addr` (just taken from a cache or the central list)
    /// live, holding a request of `size` bytes.
    ///
    /// The slot came from this heap's own lists or a thread cache, so the
    /// checks [`Heap::locate`] makes of a caller's pointer are skipped: the
    /// class is known, and only the live mark is read (the allocation path
    /// measured 7-11% of its samples on `locate`'s class-byte load alone).
    #[inline]
    pub(crate) fn mark_live(&self, addr: usize, class: usize, size: usize) {
        let offset = addr - self.base.load(Ordering::Relaxed);
        let meta = self.meta(offset >> SLAB_SHIFT);
        let slot = slot_index(offset & (SLAB_SIZE - 1), class);
        if !meta.mark_live(slot, size) {
            fatal_at(FatalKind::Corruption, addr);
        }
    }

    // ------------------------------------------------------------------
    // Central lists
    // ------------------------------------------------------------------

    fn class_list(&self, class: usize, shard: usize) -> &Mutex<ClassList> {
        // Each index checked on its own: a shard byte of 4 or more passed a
        // check of the sum and took another class's list, which then handed
        // out slots overlapping live blocks (found by the attack review).
        let class = super::checked::below(class, CLASS_COUNT);
        let shard = super::checked::below(shard, SHARD_COUNT);
        &super::checked::at(&self.classes, class * SHARD_COUNT + shard).0
    }

    /// Takes up to `out.len()` free slots of `class` from `shard`'s slabs,
    /// writing their addresses to `out`. Returns how many it took (0: out of
    /// memory or lock budget).
    pub(crate) fn take_slots(&self, class: usize, shard: usize, out: &mut [usize]) -> usize {
        let mut list = self.class_list(class, shard).lock();
        let mut taken = 0;
        let mut indices = [0u16; super::size_class::CACHE_CAPACITY_MAX];
        while taken < out.len() {
            if list.head == NO_SLAB {
                if self.small_slabs() {
                    // A budget this small is not spent on cache refills:
                    // commit more only for a slot the caller needs now.
                    if taken > 0 {
                        break;
                    }
                    let growing = list.growing;
                    if growing != NO_SLAB && self.grow_slab(growing as usize - 1, class) {
                        // SAFETY: we hold this class's lock; the slab is
                        // this class's and, having had no available slot,
                        // was not in the list.
                        unsafe { self.push_partial(&mut list, growing as usize - 1) };
                        continue;
                    }
                }
                let Some(slab) = self.acquire_slab(class, shard) else {
                    break;
                };
                list.growing = slab as u32 + 1;
                // SAFETY: we hold this class's lock, which now guards the slab.
                unsafe { self.push_partial(&mut list, slab) };
            }
            let slab = list.head as usize - 1;
            let meta = self.meta(slab);
            let want = (out.len() - taken).min(indices.len());
            // SAFETY: the slab is in this class's list; we hold the class lock.
            let (n, now_empty) = unsafe {
                meta.lists(|lists| {
                    let n = lists.take(&mut indices[..want]);
                    (n, lists.avail_count() == 0)
                })
            };
            if n == 0 && !now_empty {
                // The count says slots are free that the bitmap does not
                // have: the loop would take nothing forever, under the class
                // lock (found by the attack review: a forged `scan_from`).
                fatal_at(FatalKind::Corruption, self.slab_addr(slab));
            }
            let slab_addr = self.slab_addr(slab);
            let size = class_size(class);
            let taken_now = super::checked::part_mut(out, taken..taken + n);
            for (dst, &slot) in taken_now.iter_mut().zip(&indices) {
                *dst = slab_addr + slot as usize * size;
            }
            taken += n;
            if now_empty {
                // SAFETY: as above.
                unsafe { self.unlink_partial(&mut list, slab) };
            }
        }
        taken
    }

    /// Gives wiped, non-live slots of `class` back to the central lists of
    /// the shards that own their slabs.
    pub(crate) fn give_slots(&self, class: usize, addrs: &[usize]) {
        let base = self.base.load(Ordering::Relaxed);
        let mut held = None; // (shard, guard) of the list locked last
        for &addr in addrs {
            let offset = addr - base;
            let slab = offset >> SLAB_SHIFT;
            let slot = slot_index(offset & (SLAB_SIZE - 1), class);
            let meta = self.meta(slab);
            // The owning shard cannot change under us: the slab has a slot
            // that is neither live nor available, so it stays assigned.
            let shard = meta.shard();
            let list = match &mut held {
                Some((locked, guard)) if *locked == shard => guard,
                _ => {
                    held = None; // release the previous shard's lock first
                    &mut held.insert((shard, self.class_list(class, shard).lock())).1
                }
            };
            // SAFETY: the slab belongs to `class` and `shard` (its slot was
            // just freed as one of that class's), and we hold that list's lock.
            let (ok, count) = unsafe {
                meta.lists(|lists| {
                    let ok = lists.give(slot);
                    (ok, lists.avail_count())
                })
            };
            if !ok {
                fatal_at(FatalKind::Corruption, addr);
            }
            if count == 1 {
                // SAFETY: as above; the slab was full, hence not in the list.
                unsafe { self.push_partial(list, slab) };
            }
            if count != self.backed_slots(slab, class) {
                if self.small_slabs() {
                    // SAFETY: as above.
                    unsafe { self.trim_tail(list, slab, class, slot) };
                }
                continue;
            }
            // An empty slab goes back to the pool at once, so any class
            // can reuse its (already locked) memory: under a tight
            // RLIMIT_MEMLOCK, a slab parked with one class would make
            // another class's allocation fail.
            // SAFETY: as above; the slab is in the list.
            unsafe { self.unlink_partial(list, slab) };
            if list.growing == slab as u32 + 1 {
                list.growing = NO_SLAB;
            }
            self.release_slab(slab);
        }
    }

    /// Small slabs: gives back the committed pages at the end of `slab`
    /// that hold only available slots, after `freed` (a slot of `class`)
    /// became available. Only when `freed` lies in the last committed page,
    /// so most frees cost nothing more. A slab gives back only its tail:
    /// live slots low in the slab keep the pages below them (allocation
    /// takes the lowest slots first, so live slots gather there).
    ///
    /// # Safety
    /// The caller holds the class lock that `list` came from; `slab` is
    /// assigned to `class` and has at least one unavailable slot.
    unsafe fn trim_tail(&self, list: &mut ClassList, slab: usize, class: usize, freed: usize) {
        let page = sys::page_size();
        let size = class_size(class);
        let meta = self.meta(slab);
        let old_bytes = meta.committed_pages() * page;
        if (freed + 1) * size + page <= old_bytes {
            return;
        }
        let backed = old_bytes / size;
        // SAFETY: forwarded from the caller.
        let Some(last) = (unsafe { meta.lists(|l| l.last_unavailable(backed)) }) else {
            return;
        };
        let keep_bytes = round_up((last + 1) * size, page);
        if keep_bytes >= old_bytes {
            return;
        }
        let start = self.slab_addr(slab) + keep_bytes;
        let len = old_bytes - keep_bytes;
        // SAFETY: every slot reaching into `[start, start + len)` is
        // available (none is live or held by an allocating thread: `last`
        // is the highest that is not), and wiped; the range is committed.
        if unsafe { sys::mprotect(start, len, sys::Protection::None) }.is_err() {
            return;
        }
        let kept_slots = keep_bytes / size;
        // SAFETY: forwarded from the caller.
        let now_none = unsafe {
            meta.lists(|l| {
                l.retract(kept_slots, backed);
                l.avail_count() == 0
            })
        };
        budget::release(self, start, len, true, true);
        // SAFETY: unlocked just now; the pages hold only zero bytes.
        let _ = unsafe { sys::madvise_dontneed(start, len) };
        meta.set_committed_pages(keep_bytes / page);
        if now_none {
            // SAFETY: forwarded from the caller; it had an available slot
            // (the one just freed), so it was in the list.
            unsafe { self.unlink_partial(list, slab) };
        }
    }

    /// # Safety
    /// The caller holds the class lock that `list` came from, and `slab` is
    /// assigned to that class and not in the list.
    unsafe fn push_partial(&self, list: &mut ClassList, slab: usize) {
        let old_head = list.head;
        // SAFETY: forwarded from the caller.
        unsafe {
            self.meta(slab).lists(|l| {
                l.prev = NO_SLAB;
                l.next = old_head;
            })
        };
        if old_head != NO_SLAB {
            // SAFETY: the old head is in the same class list.
            unsafe {
                self.meta(old_head as usize - 1)
                    .lists(|l| l.prev = slab as u32 + 1)
            };
        }
        list.head = slab as u32 + 1;
        list.partial_count += 1;
    }

    /// # Safety
    /// The caller holds the class lock that `list` came from, and `slab` is in
    /// the list.
    unsafe fn unlink_partial(&self, list: &mut ClassList, slab: usize) {
        // SAFETY: forwarded from the caller.
        let (prev, next) = unsafe { self.meta(slab).lists(|l| (l.prev, l.next)) };
        if prev == NO_SLAB {
            list.head = next;
        } else {
            // SAFETY: neighbours in the list are guarded by the same lock.
            unsafe { self.meta(prev as usize - 1).lists(|l| l.next = next) };
        }
        if next != NO_SLAB {
            // SAFETY: as above.
            unsafe { self.meta(next as usize - 1).lists(|l| l.prev = prev) };
        }
        list.partial_count -= 1;
    }

    // ------------------------------------------------------------------
    // Pool and commit frontier
    // ------------------------------------------------------------------

    /// Gets an empty slab for `class` in `shard` (called with that list's
    /// lock held): an idle committed one, else a decommitted one committed
    /// again, else a fresh one past the frontier.
    fn acquire_slab(&self, class: usize, shard: usize) -> Option<usize> {
        let mut pool = self.pool.lock();
        let idle = pool.free_head != NO_SLAB;
        let slab = if idle {
            let slab = pool.free_head as usize - 1;
            // SAFETY: the slab is in the pool; we hold the pool lock.
            pool.free_head = unsafe { self.meta(slab).lists(|l| l.next) };
            pool.idle_count -= 1;
            if self.meta(slab).is_locked() {
                sub_saturating(&self.idle_locked_slabs, 1);
            }
            slab
        } else if pool.decommitted_head != NO_SLAB {
            let slab = pool.decommitted_head as usize - 1;
            if !self.recommit(slab) {
                return None;
            }
            // SAFETY: as above.
            pool.decommitted_head = unsafe { self.meta(slab).lists(|l| l.next) };
            slab
        } else {
            if pool.frontier == pool.committed && !self.commit_more(&mut pool) {
                return None;
            }
            pool.frontier += 1;
            pool.frontier - 1
        };
        let slots = self.backed_slots(slab, class);
        // SAFETY: we hold the pool lock and the caller holds the class lock;
        // the slab is empty (fresh or fully returned).
        unsafe { self.meta(slab).assign(class, shard, slots) };
        if slots == 0 && !self.grow_slab(slab, class) {
            // Small slabs: not one slot of this class is committed and the
            // budget refused more. Back to the pool, unused.
            // SAFETY: both locks held; the slab has no slots at all.
            unsafe { self.meta(slab).unassign() };
            // SAFETY: we hold the pool lock.
            unsafe { self.park_empty(&mut pool, slab) };
            return None;
        }
        self.class_cell(slab)
            .store(class as u8 + 1, Ordering::Relaxed);
        drop(pool);
        if !idle && !self.small_slabs() {
            // A slab fresh from the kernel: fault its pages in writable at
            // once (an idle one was used before and is resident). Without
            // this, the zero check's load at each first allocation mapped
            // the shared zero page and the caller's store faulted again:
            // 18% more page faults and 8-11% more CPU time building a map
            // at `default` than with checks off.
            let _ = sys::populate_write(self.slab_addr(slab), SLAB_SIZE);
        }
        Some(slab)
    }

    /// Puts an unassigned, empty `slab` on the pool's stack that fits its
    /// state: decommitted if it holds no pages (small slabs), else idle.
    ///
    /// # Safety
    /// The pool lock is held (`pool` is its contents) and `slab` is on no list.
    unsafe fn park_empty(&self, pool: &mut SlabPool, slab: usize) {
        let meta = self.meta(slab);
        if self.small_slabs() && meta.committed_pages() == 0 {
            meta.set_locked(false);
            meta.set_decommitted(true);
            self.decommitted_slabs.fetch_add(1, Ordering::Relaxed);
            // SAFETY: forwarded from the caller.
            unsafe { self.push_decommitted(pool, slab) };
            return;
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            meta.lists(|l| {
                l.prev = NO_SLAB;
                l.next = pool.free_head;
            })
        };
        pool.free_head = slab as u32 + 1;
        pool.idle_count += 1;
        if meta.is_locked() {
            self.idle_locked_slabs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns an empty slab to the pool (called with its class lock held).
    /// Beyond the idle cap it is decommitted at once, so empty slabs never
    /// hold lock budget that a live request could need.
    fn release_slab(&self, slab: usize) {
        let mut pool = self.pool.lock();
        let meta = self.meta(slab);
        // SAFETY: both locks are held and every slot is available.
        unsafe { meta.unassign() };
        self.class_cell(slab).store(0, Ordering::Relaxed);
        if pool.idle_count >= budget::idle_slab_cap() && self.decommit(slab) {
            // SAFETY: we hold the pool lock, which guards unassigned slabs.
            unsafe { self.push_decommitted(&mut pool, slab) };
            return;
        }
        // SAFETY: as above; the slab is on no list.
        unsafe { self.park_empty(&mut pool, slab) };
    }

    /// # Safety
    /// The pool lock is held (`pool` is its contents) and `slab` is
    /// decommitted and on no list.
    unsafe fn push_decommitted(&self, pool: &mut SlabPool, slab: usize) {
        let head = pool.decommitted_head;
        // SAFETY: forwarded from the caller.
        unsafe {
            self.meta(slab).lists(|l| {
                l.prev = NO_SLAB;
                l.next = head;
            })
        };
        pool.decommitted_head = slab as u32 + 1;
    }

    /// Gives every idle committed slab's budget back (after a refusal).
    /// Returns whether there was any.
    pub(crate) fn reclaim_idle_slabs(&self) -> bool {
        if self.base.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut pool = self.pool.lock();
        let mut any = self.release_fresh_tail(&mut pool);
        while pool.free_head != NO_SLAB {
            let slab = pool.free_head as usize - 1;
            let locked = self.meta(slab).is_locked();
            if !self.decommit(slab) {
                break;
            }
            // SAFETY: the slab is in the pool; we hold the pool lock.
            pool.free_head = unsafe { self.meta(slab).lists(|l| l.next) };
            pool.idle_count -= 1;
            if locked {
                sub_saturating(&self.idle_locked_slabs, 1);
            }
            // SAFETY: as above; it is now off the idle stack.
            unsafe { self.push_decommitted(&mut pool, slab) };
            any = true;
        }
        any
    }

    /// Gives back the committed slabs past the frontier, which a commit
    /// step locked but no class has used yet (pool lock held): the commit
    /// frontier moves back to the assignment frontier. Nothing can point
    /// into them (no slot there was ever handed out).
    fn release_fresh_tail(&self, pool: &mut SlabPool) -> bool {
        if pool.committed == pool.frontier {
            return false;
        }
        let start = self.slab_addr(pool.frontier);
        let len = (pool.committed - pool.frontier) * SLAB_SIZE;
        // SAFETY: past the assignment frontier: never handed out, untouched.
        if unsafe { sys::mprotect(start, len, sys::Protection::None) }.is_err() {
            return false;
        }
        for slab in pool.frontier..pool.committed {
            let meta = self.meta(slab);
            budget::release(
                self,
                self.slab_addr(slab),
                SLAB_SIZE,
                meta.is_locked(),
                true,
            );
            meta.set_locked(false);
        }
        pool.committed = pool.frontier;
        self.committed_slabs
            .store(pool.committed, Ordering::Release);
        true
    }

    /// Drops an empty slab's pages and budget (pool lock held). Its memory
    /// is already zero (every slot was wiped on free), so dropping the pages
    /// keeps the zero invariant. Returns `false` if the kernel refused the
    /// protection change (the slab then stays committed).
    fn decommit(&self, slab: usize) -> bool {
        let addr = self.slab_addr(slab);
        let meta = self.meta(slab);
        let len = self.committed_bytes(slab);
        if len > 0 {
            // SAFETY: the slab is empty and unassigned: no slot is live or
            // cached, so nothing refers to its memory.
            if unsafe { sys::mprotect(addr, len, sys::Protection::None) }.is_err() {
                return false;
            }
            budget::release(self, addr, len, meta.is_locked(), true);
            // SAFETY: as above; after munlock the kernel accepts DONTNEED.
            let _ = unsafe { sys::madvise_dontneed(addr, len) };
        }
        meta.set_committed_pages(0);
        meta.set_locked(false);
        meta.set_decommitted(true);
        self.decommitted_slabs.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Commits a decommitted slab again (pool lock held).
    fn recommit(&self, slab: usize) -> bool {
        let meta = self.meta(slab);
        if self.small_slabs() {
            // Its pages are committed as its next class needs them.
            meta.set_decommitted(false);
            self.decommitted_slabs.fetch_sub(1, Ordering::Relaxed);
            return true;
        }
        let addr = self.slab_addr(slab);
        // SAFETY: the slab is decommitted and unassigned: nobody uses it.
        if unsafe { sys::mprotect(addr, SLAB_SIZE, sys::Protection::ReadWrite) }.is_err() {
            return false;
        }
        let Some(locked) = budget::lock(self, addr, SLAB_SIZE) else {
            // SAFETY: as above.
            let _ = unsafe { sys::mprotect(addr, SLAB_SIZE, sys::Protection::None) };
            return false;
        };
        meta.set_locked(locked);
        meta.set_decommitted(false);
        self.decommitted_slabs.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Commits the next step of the region. Called with the pool lock held;
    /// makes only system calls that never allocate.
    fn commit_more(&self, pool: &mut SlabPool) -> bool {
        let capacity = self.slab_capacity.load(Ordering::Relaxed);
        if self.small_slabs() {
            // One slab of address space at a time; its pages are committed
            // and locked as its class needs them (`grow_slab`).
            if pool.committed == capacity {
                return false;
            }
            pool.committed += 1;
            self.committed_slabs
                .store(pool.committed, Ordering::Release);
            return true;
        }
        let mut step = pool.committed.clamp(1, MAX_COMMIT_SLABS);
        step = step.min(capacity - pool.committed);
        if step == 0 {
            return false;
        }
        let start = self.slab_addr(pool.committed);
        // SAFETY: the range is inside our reservation and past the committed
        // prefix, so no slot in it has ever been handed out.
        if unsafe { sys::mprotect(start, step * SLAB_SIZE, sys::Protection::ReadWrite) }.is_err() {
            return false;
        }
        let locked = if step > 1 && budget::lock_quietly(self, start, step * SLAB_SIZE) {
            Some(true)
        } else {
            if step > 1 {
                // The budget may still hold a single slab: commit just that.
                // SAFETY: as above; the tail was made accessible a moment
                // ago and is unused.
                let _ = unsafe {
                    sys::mprotect(
                        start + SLAB_SIZE,
                        (step - 1) * SLAB_SIZE,
                        sys::Protection::None,
                    )
                };
                step = 1;
            }
            budget::lock(self, start, SLAB_SIZE)
        };
        let Some(locked) = locked else {
            // SAFETY: as above.
            let _ = unsafe { sys::mprotect(start, SLAB_SIZE, sys::Protection::None) };
            return false;
        };
        for slab in pool.committed..pool.committed + step {
            self.meta(slab).set_locked(locked);
        }
        pool.committed += step;
        self.committed_slabs
            .store(pool.committed, Ordering::Release);
        true
    }

    /// Moves `bytes` from the locked to the unlocked counter (memory whose
    /// lock was lost, in a fork child).
    pub(crate) fn move_to_unlocked(&self, bytes: usize) {
        sub_saturating(&self.locked_bytes, bytes);
        self.unlocked_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a refused `mlock`.
    pub(crate) fn note_refusal(&self, err: sys::OsError) {
        self.lock_refusals.fetch_add(1, Ordering::Relaxed);
        self.last_refusal_errno
            .store(err.errno.0 as usize, Ordering::Relaxed);
    }

    // ------------------------------------------------------------------
    // Statistics, inspection, fork
    // ------------------------------------------------------------------

    /// Slabs below the frontier, once the region exists (0 before). Works
    /// in every state after start-up, including a poisoned fork child, so
    /// lookups of memory already handed out never fail.
    fn committed_count(&self) -> usize {
        if self.base.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.committed_slabs.load(Ordering::Acquire)
    }

    /// Adds live slots per class to `live_per_class`; returns the bytes of
    /// slab memory committed now (decommitted slabs excluded).
    pub(crate) fn small_stats(&self, live_per_class: &mut [usize; CLASS_COUNT]) -> usize {
        let committed = self.committed_count();
        let mut small_bytes = 0;
        for slab in 0..committed {
            if let Some(class) = self.class_of(slab) {
                live_per_class[class] += self.meta(slab).live_count(slots_per_slab(class));
            }
            if self.small_slabs() {
                small_bytes += self.committed_bytes(slab);
            }
        }
        if self.small_slabs() {
            return small_bytes;
        }
        committed.saturating_sub(self.decommitted_slabs.load(Ordering::Relaxed)) * SLAB_SIZE
    }

    /// Slabs below the frontier that were given back.
    #[cfg(loom)]
    pub(crate) fn decommitted_slab_count(&self) -> usize {
        self.decommitted_slabs.load(Ordering::Relaxed)
    }

    /// Bytes of empty slabs kept committed and locked for reuse.
    pub(crate) fn idle_locked_bytes(&self) -> usize {
        self.idle_locked_slabs.load(Ordering::Relaxed) * SLAB_SIZE
    }

    /// Passes each run of committed (accessible) slabs as `(start, len)`,
    /// skipping decommitted ones. No lock is held while `f` runs.
    pub(crate) fn for_each_committed_run(&self, mut f: impl FnMut(usize, usize)) {
        self.for_each_run(|meta| !meta.is_decommitted(), &mut f);
    }

    /// Passes each maximal run of committed memory, in slabs below the
    /// frontier whose metadata satisfies `keep`, as `(start, len)`.
    fn for_each_run(&self, keep: impl Fn(&SlabMeta) -> bool, f: &mut impl FnMut(usize, usize)) {
        let committed = self.committed_count();
        let mut run: Option<(usize, usize)> = None; // (start, end)
        for slab in 0..committed {
            let len = if keep(self.meta(slab)) {
                self.committed_bytes(slab)
            } else {
                0
            };
            let addr = self.slab_addr(slab);
            match run {
                Some((start, end)) if end == addr && len > 0 => run = Some((start, addr + len)),
                _ => {
                    if let Some((start, end)) = run.take() {
                        f(start, end - start);
                    }
                    if len > 0 {
                        run = Some((addr, addr + len));
                    }
                }
            }
        }
        if let Some((start, end)) = run {
            f(start, end - start);
        }
    }

    /// `(slab, class, slot index)` of the slot containing `addr`, if it lies
    /// in a committed slab in use and inside one of its slots (not the
    /// slab's tail). Never aborts, takes no lock, and divides by nothing
    /// (the reciprocal table): the preload's `memcpy` check runs it on
    /// every copy into or out of the heap.
    #[inline]
    fn slot_at(&self, addr: usize) -> Option<(usize, usize, usize)> {
        let base = self.base.load(Ordering::Acquire);
        let offset = addr.wrapping_sub(base);
        if base == 0 || offset >= self.committed_slabs.load(Ordering::Acquire) << SLAB_SHIFT {
            return None;
        }
        let slab = offset >> SLAB_SHIFT;
        let class = self.class_of(slab)?;
        let slot = slot_index(offset & (SLAB_SIZE - 1), class);
        (slot < slots_per_slab(class)).then_some((slab, class, slot))
    }

    /// Describes the slot containing `addr`: `(slot start, slot size, live,
    /// locked)`. Never aborts (for queries about arbitrary addresses).
    pub(crate) fn slot_of(&self, addr: usize) -> Option<(usize, usize, bool, bool)> {
        let (slab, class, slot) = self.slot_at(addr)?;
        let meta = self.meta(slab);
        let size = class_size(class);
        Some((
            self.slab_addr(slab) + slot * size,
            size,
            meta.is_live(slot),
            meta.is_locked(),
        ))
    }

    /// `(block start, requested size)` of the live slot holding `addr`, or
    /// `None` if that slot is free or `addr` is in no slot (a slab's tail, a
    /// slab not in use). For the preload's `memcpy` check: one read of the
    /// slot's live word, where [`Heap::slot_of`] and [`Heap::live_size`]
    /// would look the slot up twice (espresso spent 10% of its samples in
    /// those two, with `slot_of` then dividing by the class size).
    #[inline]
    pub(crate) fn live_extent(&self, addr: usize) -> Option<(usize, usize)> {
        let (slab, class, slot) = self.slot_at(addr)?;
        let size = self.meta(slab).live_size(slot)?;
        Some((self.slab_addr(slab) + slot * class_size(class), size))
    }

    /// The requested size of the live slot starting at `addr` (which
    /// [`Heap::owns`] and [`Heap::slot_of`] found live).
    pub(crate) fn live_size(&self, addr: usize) -> Option<usize> {
        let offset = addr - self.base.load(Ordering::Relaxed);
        let class = self.class_of(offset >> SLAB_SHIFT)?;
        let slot = slot_index(offset & (SLAB_SIZE - 1), class);
        self.meta(offset >> SLAB_SHIFT).live_size(slot)
    }

    /// Records a new requested size for the live slot at `addr` (an
    /// in-place resize by its owner).
    pub(crate) fn set_live_size(&self, addr: usize, size: usize) {
        let (_, meta, _, slot) = self.locate(addr);
        meta.set_live_size(slot, size);
    }

    // Fork: the protocol in `sync::fork` calls these, one rank at a time
    // across both heaps.

    /// Takes every class lock (fork prepare, rank `HeapClass`).
    #[cfg(not(loom))]
    pub(crate) fn lock_classes_for_fork(&self) {
        // A heap half-way through start-up would stay that way forever in
        // the child: let it finish. (glibc releases its fork-handler lock
        // while a handler runs, so the starting thread can complete its own
        // `pthread_atfork` registration.)
        let mut backoff = crate::sync::Backoff::new();
        while self.state.load(Ordering::Acquire) == INITIALIZING {
            backoff.snooze();
        }
        for class in &self.classes {
            class.0.lock_and_forget();
        }
    }

    /// # Safety
    /// [`Heap::lock_classes_for_fork`] ran and its locks are still held.
    #[cfg(not(loom))]
    pub(crate) unsafe fn unlock_classes_after_fork(&self) {
        for class in self.classes.iter().rev() {
            // SAFETY: forwarded from the caller: held, with no guard.
            unsafe { class.0.force_unlock() };
        }
    }

    /// Takes the pool lock (fork prepare, rank `HeapPool`).
    #[cfg(not(loom))]
    pub(crate) fn lock_pool_for_fork(&self) {
        self.pool.lock_and_forget();
    }

    /// # Safety
    /// [`Heap::lock_pool_for_fork`] ran and the lock is still held.
    #[cfg(not(loom))]
    pub(crate) unsafe fn unlock_pool_after_fork(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { self.pool.force_unlock() };
    }

    /// In a fork child: the kernel dropped every memory lock, so lock the
    /// committed slabs and large blocks again and correct the books if it
    /// refuses. Memory already handed out stays usable either way: lookups,
    /// frees and in-place resizes keep working; only a fail-closed heap
    /// that lost a lock stops handing out new memory.
    #[cfg(not(loom))]
    pub(crate) fn relock_after_fork(&self) {
        let before = self.lock_refusals.load(Ordering::Relaxed);
        let base = self.base.load(Ordering::Acquire);
        // Runs are reported after their last slab, so clearing the flags of
        // a refused run does not disturb the walk.
        self.for_each_run(|meta| meta.is_locked(), &mut |start, len| {
            if let Err(err) = sys::mlock_on_fault(start, len) {
                self.note_refusal(err);
                let first = (start - base) >> SLAB_SHIFT;
                for slab in first..first + len.div_ceil(SLAB_SIZE) {
                    self.meta(slab).set_locked(false);
                }
                self.move_to_unlocked(len);
            }
        });
        self.large.relock_after_fork(self);
        let refused = self.lock_refusals.load(Ordering::Relaxed) != before;
        if refused && self.policy == LockPolicy::FailClosed {
            self.state.store(POISONED, Ordering::Release);
        }
    }
}

#[cfg(loom)]
impl Drop for Heap {
    fn drop(&mut self) {
        let slabs = self.slab_capacity.load(Ordering::Relaxed);
        let meta = self.meta_base.load(Ordering::Relaxed);
        if meta != 0 {
            free_meta_table(meta, slabs, 0);
            free_class_table(self.class_base.load(Ordering::Relaxed), slabs, 0);
            // SAFETY: the model is over; nothing references the region.
            let _ =
                unsafe { unreserve_region(self.base.load(Ordering::Relaxed), slabs * SLAB_SIZE) };
        }
    }
}

/// A side table of the heap: the slab metadata (`[SlabMeta; slabs]`) or
/// the class bytes (`[AtomicU8; slabs]`). In normal builds, fresh anonymous
/// pages: all-zero is the initial value of both (every field an integer or
/// an atomic integer). The tables hold no secrets, but they are large and
/// mostly untouched: kept out of core dumps so dumps stay small.
#[cfg(not(loom))]
fn alloc_side_table<T>(_slabs: usize, len: usize, _init: impl Fn() -> T) -> Option<usize> {
    let table = sys::mmap_read_write(len).ok()?;
    let _ = sys::madvise_dontdump(table, len);
    Some(table)
}

#[cfg(not(loom))]
#[allow(clippy::extra_unused_type_parameters)] // the element type matters under loom
fn free_side_table<T>(addr: usize, _slabs: usize, len: usize) {
    // SAFETY: the table was never published, or the model is over;
    // nothing references it.
    let _ = unsafe { sys::munmap(addr, len) };
}

/// Under loom: a boxed slice of `init()` values.
#[cfg(loom)]
fn alloc_side_table<T>(slabs: usize, _len: usize, init: impl Fn() -> T) -> Option<usize> {
    let table: Box<[T]> = (0..slabs).map(|_| init()).collect();
    Some(Box::into_raw(table) as *mut T as usize)
}

#[cfg(loom)]
fn free_side_table<T>(addr: usize, slabs: usize, _len: usize) {
    let slice = core::ptr::slice_from_raw_parts_mut(addr as *mut T, slabs);
    // SAFETY: the table came from `Box::into_raw` of a slice of this length.
    drop(unsafe { Box::from_raw(slice) });
}

fn alloc_meta_table(slabs: usize, len: usize) -> Option<usize> {
    alloc_side_table(slabs, len, SlabMeta::new)
}

fn free_meta_table(addr: usize, slabs: usize, len: usize) {
    free_side_table::<SlabMeta>(addr, slabs, len)
}

fn alloc_class_table(slabs: usize, len: usize) -> Option<usize> {
    alloc_side_table(slabs, len, || AtomicU8::new(0))
}

fn free_class_table(addr: usize, slabs: usize, len: usize) {
    free_side_table::<AtomicU8>(addr, slabs, len)
}

/// Never-mapped address space on each side of a heap's slab region, wider
/// than the 1 MiB strays hardened allocators are tested with: an underflow
/// from the region's first slab (the first class a program uses sits
/// there) or an overflow from its last faults instead of landing in a
/// neighbouring mapping. A multiple of `SLAB_SIZE`, so `base` stays aligned.
const REGION_GUARD: usize = 2 << 20;
static_assertions::const_assert!(REGION_GUARD % SLAB_SIZE == 0);

/// Unmaps the slab region of `len` bytes at `base` with its guards.
///
/// # Safety
/// `base` and `len` are a region [`Heap::reserve_region`] reserved, and
/// nothing references its memory any more.
unsafe fn unreserve_region(base: usize, len: usize) -> sys::OsResult<()> {
    // SAFETY: forwarded from the caller: the guards were reserved with it.
    unsafe { sys::munmap(base - REGION_GUARD, len + 2 * REGION_GUARD) }
}

/// Subtracts `n` from a statistics counter, stopping at zero (a fork child
/// may have re-booked memory between the counters).
pub(crate) fn sub_saturating(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

/// Rounds `value` up to a multiple of `align` (a power of two).
pub(crate) const fn round_up(value: usize, align: usize) -> usize {
    (value + align - 1) & !(align - 1)
}
