//! Out-of-line metadata for one slab: which slots are live, which are
//! available to the central lists, and the slab's place in its class's
//! partial list.
//!
//! Metadata never lives inside a slab, so a buffer overflow from a slot can
//! overwrite only its neighbouring slots, never the allocator's bookkeeping.

#![allow(unsafe_code)]

use super::size_class::{slots_per_slab, BITMAP_WORDS, CLASS_COUNT, MAX_SLOTS_PER_SLAB};
use crate::sync::{AtomicU16, AtomicU64, AtomicU8, Ordering, UnsafeCell};

/// "No slab" in the intrusive lists, which store slab index + 1.
pub(crate) const NO_SLAB: u32 = 0;

/// `SlabMeta::flags`: the slab's memory is `mlock`ed.
pub(crate) const FLAG_LOCKED: u8 = 1;
/// `SlabMeta::flags`: the slab was given back (no pages, no budget,
/// `PROT_NONE`) and must be committed again before use.
pub(crate) const FLAG_DECOMMITTED: u8 = 2;

/// A live mark: this bit, plus the requested size in the low 15 bits.
const LIVE_BIT: u16 = 0x8000;
const SIZE_MASK: u16 = 0x7FFF;
static_assertions::const_assert!(super::size_class::SMALL_SIZE_MAX <= SIZE_MASK as usize);

/// Metadata of one slab.
///
/// The class a slab serves is not here but in the heap's dense class table
/// (`Heap::class_of`): a free reads it, and one line of that table covers
/// 64 slabs.
///
/// Invariants:
/// - `live` is non-zero exactly for the slots currently handed to a caller:
///   `LIVE_BIT | requested size`, so a free with another size than the one
///   allocated (or last resized to) is caught even within one size class.
///   A word per slot (not a bit) lets allocation mark its slot with a plain
///   store — the slot belongs to the allocating thread alone, and no
///   neighbour shares the word — while free uses an atomic swap, so a double
///   free is caught even when the first free went to a thread cache and even
///   when two threads race to free the same pointer. (A locked bit-set on
///   every allocation measured as the largest cost of the allocation path.)
/// - `lists` is touched only under the lock of the class owning the slab (or
///   the pool lock while the slab is in the pool). A slot is in exactly one
///   of three states: live (`live` byte), available (`lists.avail` bit), or
///   held in some thread cache (neither bit).
pub(crate) struct SlabMeta {
    flags: AtomicU8,                       // FLAG_LOCKED | FLAG_DECOMMITTED
    shard: AtomicU8,                       // central-list shard owning the slab while assigned
    pages: AtomicU8, // small-slab heaps: pages committed (and locked) from the start
    live: [AtomicU16; MAX_SLOTS_PER_SLAB], // per slot: LIVE_BIT | size while handed out, else 0
    /// Per slot, set while the block came from C++ `operator new[]`: which
    /// `delete` may free it. Written only by the C++ operators (scalar `new`
    /// clears it, `new[]` sets it), so `malloc`/`free` never touch the line.
    arrays: [AtomicU64; BITMAP_WORDS],
    lists: UnsafeCell<SlabLists>, // guarded by the class or pool lock
}

/// The lock-guarded part of [`SlabMeta`].
pub(crate) struct SlabLists {
    avail: [u64; BITMAP_WORDS], // bit per slot: free and owned by the central list
    avail_count: u32,           // popcount of `avail`
    scan_from: u32,             // first bitmap word that may have a set bit
    /// Previous slab (index + 1) in the class's partial list, or the pool list.
    pub(crate) prev: u32,
    /// Next slab (index + 1) in the class's partial list, or the pool list.
    pub(crate) next: u32,
}

impl SlabMeta {
    crate::sync::const_fn_unless_loom! {
        #[cfg_attr(not(any(test, loom)), allow(dead_code))]
        /// Metadata of an unused slab. In normal builds this is the all-zero
        /// bit pattern, which is what lets the table live in fresh zeroed pages.
        pub(crate) fn new() -> Self {
            SlabMeta {
                flags: AtomicU8::new(0),
                shard: AtomicU8::new(0),
                pages: AtomicU8::new(0),
                live: crate::sync::array_of![AtomicU16::new(0); MAX_SLOTS_PER_SLAB],
                arrays: crate::sync::array_of![AtomicU64::new(0); BITMAP_WORDS],
                lists: UnsafeCell::new(SlabLists {
                    avail: [0; BITMAP_WORDS],
                    avail_count: 0,
                    scan_from: 0,
                    prev: NO_SLAB,
                    next: NO_SLAB,
                }),
            }
        }
    }

    /// The central-list shard that owns the slab (meaningful while assigned).
    #[inline]
    pub(crate) fn shard(&self) -> usize {
        self.shard.load(Ordering::Relaxed) as usize
    }

    /// In a small-slab heap, the pages committed and locked from the start
    /// of the slab (the rest is `PROT_NONE` and uncharged). Written under
    /// the lock guarding the slab; read racily only by statistics and
    /// inspection, and under every lock by the fork protocol.
    pub(crate) fn committed_pages(&self) -> usize {
        self.pages.load(Ordering::Relaxed) as usize
    }

    /// Records the pages committed from the start of the slab.
    pub(crate) fn set_committed_pages(&self, pages: usize) {
        debug_assert!(pages <= u8::MAX as usize);
        self.pages.store(pages as u8, Ordering::Relaxed);
    }

    /// Whether the slab's memory is locked.
    pub(crate) fn is_locked(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & FLAG_LOCKED != 0
    }

    /// Records whether the slab's memory is locked.
    pub(crate) fn set_locked(&self, locked: bool) {
        self.set_flag(FLAG_LOCKED, locked);
    }

    /// Whether the slab was decommitted.
    pub(crate) fn is_decommitted(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & FLAG_DECOMMITTED != 0
    }

    /// Records whether the slab is decommitted.
    pub(crate) fn set_decommitted(&self, decommitted: bool) {
        self.set_flag(FLAG_DECOMMITTED, decommitted);
    }

    fn set_flag(&self, flag: u8, on: bool) {
        if on {
            self.flags.fetch_or(flag, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!flag, Ordering::Relaxed);
        }
    }

    /// `slot`'s live word (an index from the caller's address arithmetic,
    /// below `MAX_SLOTS_PER_SLAB` unless the metadata is corrupt).
    #[inline(always)]
    fn live_word(&self, slot: usize) -> &AtomicU16 {
        super::checked::at(&self.live, slot)
    }

    /// Overwrites one field, as a stray write would (test hook).
    #[cfg(all(not(loom), secalloc_test_hooks))]
    pub(crate) fn corrupt_for_test(&self, field: super::inspect::MetaField, value: u32) {
        use super::inspect::MetaField;
        match field {
            MetaField::Shard => self.shard.store(value as u8, Ordering::Relaxed),
            // SAFETY: the hook's caller promises no other thread allocates,
            // so nothing else touches the lists meanwhile.
            MetaField::Next => unsafe { self.lists(|l| l.next = value) },
            // SAFETY: as above.
            MetaField::ScanFrom => unsafe { self.lists(|l| l.scan_from = value) },
        }
    }

    /// Marks `slot` as handed to a caller for a request of `size` bytes.
    /// Returns `false` if it already was, which means the allocator's own
    /// state is corrupt.
    #[inline]
    pub(crate) fn mark_live(&self, slot: usize, size: usize) -> bool {
        // Relaxed: the slot reached this thread through a lock or its own
        // thread cache, which already ordered it; and only this thread can be
        // handing it out now, so a load and a store suffice.
        let word = self.live_word(slot);
        if word.load(Ordering::Relaxed) != 0 {
            return false;
        }
        word.store(LIVE_BIT | (size as u16 & SIZE_MASK), Ordering::Relaxed);
        true
    }

    /// Clears `slot`'s live mark. Returns the requested size it was live
    /// with, or `None` if it was not live: a double free, or a free of a
    /// slot never handed out.
    #[inline]
    pub(crate) fn mark_free(&self, slot: usize) -> Option<usize> {
        // An atomic swap: of two racing frees of one pointer, exactly one
        // sees it live.
        let previous = self.live_word(slot).swap(0, Ordering::Relaxed);
        (previous & LIVE_BIT != 0).then_some((previous & SIZE_MASK) as usize)
    }

    /// Records whether live `slot` came from C++ `operator new[]` (only its
    /// owner calls this, right after allocating it).
    pub(crate) fn set_array(&self, slot: usize, array: bool) {
        let bit = 1u64 << (slot % 64);
        let word = super::checked::at(&self.arrays, slot / 64);
        if array {
            word.fetch_or(bit, Ordering::Relaxed);
        } else {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// Whether `slot` was last allocated by C++ `operator new[]`.
    pub(crate) fn is_array(&self, slot: usize) -> bool {
        super::checked::at(&self.arrays, slot / 64).load(Ordering::Relaxed) & (1u64 << (slot % 64))
            != 0
    }

    /// The requested size of live `slot` (`None` if it is free).
    pub(crate) fn live_size(&self, slot: usize) -> Option<usize> {
        let word = self.live_word(slot).load(Ordering::Relaxed);
        (word & LIVE_BIT != 0).then_some((word & SIZE_MASK) as usize)
    }

    /// Records a new requested size for live `slot` (its owner resized it
    /// in place; only the owner touches a live slot's word).
    pub(crate) fn set_live_size(&self, slot: usize, size: usize) {
        self.live_word(slot)
            .store(LIVE_BIT | (size as u16 & SIZE_MASK), Ordering::Relaxed);
    }

    /// Number of live slots among the first `slots` (racy snapshot, for
    /// statistics).
    pub(crate) fn live_count(&self, slots: usize) -> usize {
        self.live[..slots]
            .iter()
            .filter(|b| b.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Whether `slot` is live (racy snapshot, for inspection).
    pub(crate) fn is_live(&self, slot: usize) -> bool {
        self.live_word(slot).load(Ordering::Relaxed) != 0
    }

    /// Runs `f` on the lock-guarded lists.
    ///
    /// # Safety
    /// The caller holds the lock that guards this slab: the lock of the class
    /// it is assigned to, or the pool lock while it is unassigned.
    #[inline]
    pub(crate) unsafe fn lists<R>(&self, f: impl FnOnce(&mut SlabLists) -> R) -> R {
        // SAFETY: the caller holds the guarding lock, so no other thread
        // accesses `lists` concurrently.
        self.lists.with_mut(|lists| f(unsafe { &mut *lists }))
    }

    /// Hands the slab to `class` in central-list `shard`, making its first
    /// `slots` slots available (all of them, unless the slab is only partly
    /// committed).
    ///
    /// # Safety
    /// The caller holds both the class lock and the pool lock, and the slab
    /// has no live slots.
    pub(crate) unsafe fn assign(&self, class: usize, shard: usize, slots: usize) {
        debug_assert!(class < CLASS_COUNT);
        debug_assert!(slots <= slots_per_slab(class));
        debug_assert_eq!(self.live_count(MAX_SLOTS_PER_SLAB), 0);
        // SAFETY: forwarded from the caller.
        unsafe {
            self.lists(|lists| {
                lists.avail = [0; BITMAP_WORDS];
                lists.avail_count = 0;
                lists.extend(0, slots);
                lists.scan_from = 0;
                lists.prev = NO_SLAB;
                lists.next = NO_SLAB;
            })
        };
        self.shard.store(shard as u8, Ordering::Relaxed);
    }

    /// Returns the slab to the unassigned state.
    ///
    /// # Safety
    /// The caller holds both the class lock and the pool lock, and every slot
    /// is available (none live, none in a thread cache).
    pub(crate) unsafe fn unassign(&self) {
        // SAFETY: forwarded from the caller.
        unsafe {
            self.lists(|lists| {
                lists.avail = [0; BITMAP_WORDS];
                lists.avail_count = 0;
                lists.scan_from = 0;
            })
        };
    }
}

impl SlabLists {
    /// Slots available to the central list.
    pub(crate) fn avail_count(&self) -> usize {
        self.avail_count as usize
    }

    /// Takes up to `out.len()` available slots, writing their indices to `out`.
    pub(crate) fn take(&mut self, out: &mut [u16]) -> usize {
        let mut taken = 0;
        let mut word = self.scan_from as usize;
        while taken < out.len() && word < BITMAP_WORDS {
            let bits = self.avail[word];
            if bits == 0 {
                word += 1;
                continue;
            }
            let bit = bits.trailing_zeros() as usize;
            self.avail[word] = bits & (bits - 1);
            out[taken] = (word * 64 + bit) as u16;
            taken += 1;
        }
        self.scan_from = word as u32;
        self.avail_count -= taken as u32;
        taken
    }

    /// The highest slot below `slots` that is not available (live, or
    /// handed to an allocating thread), if any.
    pub(crate) fn last_unavailable(&self, slots: usize) -> Option<usize> {
        let mut word = slots.div_ceil(64);
        while word > 0 {
            word -= 1;
            let valid = if (word + 1) * 64 <= slots {
                u64::MAX
            } else {
                (1u64 << (slots - word * 64)) - 1
            };
            let taken = !*super::checked::at(&self.avail, word) & valid;
            if taken != 0 {
                return Some(word * 64 + 63 - taken.leading_zeros() as usize);
            }
        }
        None
    }

    /// Makes the available slots `from..to` unavailable (their pages are
    /// being given back). Every one of them must be available.
    pub(crate) fn retract(&mut self, from: usize, to: usize) {
        for slot in from..to {
            debug_assert!(self.avail[slot / 64] & (1u64 << (slot % 64)) != 0);
            *super::checked::at_mut(&mut self.avail, slot / 64) &= !(1u64 << (slot % 64));
        }
        self.avail_count -= (to - from) as u32;
    }

    /// Makes the never-used slots `from..to` available (a slab's committed
    /// part grew, or it was just assigned).
    pub(crate) fn extend(&mut self, from: usize, to: usize) {
        let mut slot = from;
        while slot < to {
            let (word, bit) = (slot / 64, slot % 64);
            let n = (64 - bit).min(to - slot);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            *super::checked::at_mut(&mut self.avail, word) |= mask;
            slot += n;
        }
        self.avail_count += (to - from) as u32;
        let first_word = (from / 64) as u32;
        if first_word < self.scan_from {
            self.scan_from = first_word;
        }
    }

    /// Makes `slot` available again. Returns `false` if it already was (the
    /// slot was in two places at once: allocator state is corrupt).
    pub(crate) fn give(&mut self, slot: usize) -> bool {
        let word = super::checked::below(slot / 64, BITMAP_WORDS);
        let bit = 1u64 << (slot % 64);
        if self.avail[word] & bit != 0 {
            return false;
        }
        self.avail[word] |= bit;
        self.avail_count += 1;
        if (word as u32) < self.scan_from {
            self.scan_from = word as u32;
        }
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The metadata table lives in fresh zeroed pages, which is sound only
    /// because all-zero bytes are a valid `SlabMeta` equal to `SlabMeta::new()`.
    #[test]
    fn zeroed_slab_metadata_equals_an_unused_slab() {
        // SAFETY: every field of `SlabMeta` is an integer, an atomic integer,
        // or an array/`UnsafeCell` of them, for which all-zero is valid.
        #[allow(unsafe_code)]
        let zeroed: SlabMeta = unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
        let fresh = SlabMeta::new();
        for meta in [&zeroed, &fresh] {
            assert!(!meta.is_locked());
            assert_eq!(meta.live_count(MAX_SLOTS_PER_SLAB), 0);
            // SAFETY: single-threaded test; no lock needed.
            #[allow(unsafe_code)]
            let (count, prev, next, any) = unsafe {
                meta.lists(|l| {
                    (
                        l.avail_count(),
                        l.prev,
                        l.next,
                        l.avail.iter().any(|&w| w != 0),
                    )
                })
            };
            assert_eq!((count, prev, next, any), (0, NO_SLAB, NO_SLAB, false));
        }
    }
}
