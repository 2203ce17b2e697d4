//! The size-class table and the mapping from a `Layout` to a class.
//!
//! Classes step by 16 bytes up to 128, then four classes per doubling, so a
//! request wastes at most 15 bytes below 128 B and at most 20% of its slot
//! above. Every class is a multiple of 16, and a slot's alignment is the
//! largest power of two dividing its size (slabs are `SLAB_SIZE`-aligned), so
//! a request with a larger alignment moves up to the first class that has it.

use static_assertions::const_assert;

/// Bytes in one slab: the unit in which the arena hands memory to a class.
pub(crate) const SLAB_SIZE: usize = 64 * 1024;
/// `log2(SLAB_SIZE)`.
pub(crate) const SLAB_SHIFT: u32 = 16;
/// The slot size of class `idx` (a corruption report, not a panic, for an
/// index past the table: see `checked`).
#[inline(always)]
pub(crate) fn class_size(idx: usize) -> usize {
    *super::checked::at(&SIZE_CLASSES, idx)
}

/// The smallest slot.
pub(crate) const MIN_SLOT: usize = 16;
/// Most slots a slab can hold (all of the smallest class).
pub(crate) const MAX_SLOTS_PER_SLAB: usize = SLAB_SIZE / MIN_SLOT;
/// 64-bit words in a per-slab slot bitmap.
pub(crate) const BITMAP_WORDS: usize = MAX_SLOTS_PER_SLAB / 64;

/// Slot sizes in bytes, one row per doubling.
pub const SIZE_CLASSES: [usize; CLASS_COUNT] = [
    /* ≤128 */ 16, 32, 48, 64, 80, 96, 112, 128, //
    /* 256  */ 160, 192, 224, 256, //
    /* 512  */ 320, 384, 448, 512, //
    /* 1 Ki */ 640, 768, 896, 1024, //
    /* 2 Ki */ 1280, 1536, 1792, 2048, //
    /* 4 Ki */ 2560, 3072, 3584, 4096, //
    /* 8 Ki */ 5120, 6144, 7168, 8192, //
    /* 16Ki */ 10240, 12288, 14336, 16384,
];
/// Number of size classes.
pub const CLASS_COUNT: usize = 36;
/// The largest request served from a slab; larger ones get their own mapping.
pub const SMALL_SIZE_MAX: usize = SIZE_CLASSES[CLASS_COUNT - 1];

const_assert!(SLAB_SIZE == 1 << SLAB_SHIFT);
const_assert!(SIZE_CLASSES[0] == MIN_SLOT);
const_assert!(MAX_SLOTS_PER_SLAB % 64 == 0);
// The table is strictly increasing and every class is a multiple of 16 (so
// every slot is at least 16-byte aligned).
const_assert!(classes_strictly_increasing());
const_assert!(classes_multiple_of_min_slot());
// Worst internal waste: a request one byte above the previous class wastes
// at most 15 bytes (classes ≤ 128) or at most 20% of the slot (above).
const_assert!(waste_bounded());
// Every class fits at least four slots in a slab, so slab-level waste stays small.
const_assert!(SLAB_SIZE / SMALL_SIZE_MAX >= 4);
// Slot indices fit the u16 used by thread caches and the bitmap.
const_assert!(MAX_SLOTS_PER_SLAB <= u16::MAX as usize);

const fn classes_strictly_increasing() -> bool {
    let mut i = 1;
    while i < CLASS_COUNT {
        if SIZE_CLASSES[i] <= SIZE_CLASSES[i - 1] {
            return false;
        }
        i += 1;
    }
    true
}

const fn classes_multiple_of_min_slot() -> bool {
    let mut i = 0;
    while i < CLASS_COUNT {
        if SIZE_CLASSES[i] % MIN_SLOT != 0 || SIZE_CLASSES[i] % class_align(i) != 0 {
            return false;
        }
        i += 1;
    }
    true
}

const fn waste_bounded() -> bool {
    let mut i = 1;
    while i < CLASS_COUNT {
        let slot = SIZE_CLASSES[i];
        let smallest_request = SIZE_CLASSES[i - 1] + 1;
        let waste = slot - smallest_request;
        if slot <= 128 {
            if waste > 15 {
                return false;
            }
        } else if waste * 5 > slot {
            return false;
        }
        i += 1;
    }
    true
}

/// The alignment every slot of class `idx` has: the largest power of two
/// dividing the slot size, capped at the slab size.
pub(crate) const fn class_align(idx: usize) -> usize {
    let size = SIZE_CLASSES[idx];
    let low_bit = size & size.wrapping_neg();
    if low_bit > SLAB_SIZE {
        SLAB_SIZE
    } else {
        low_bit
    }
}

/// `ceil(2^32 / size)` per class: `offset / size` becomes a multiply and a
/// shift (integer division costs tens of cycles on the free path).
static SLOT_RECIPROCALS: [u64; CLASS_COUNT] = build_reciprocals();

const fn build_reciprocals() -> [u64; CLASS_COUNT] {
    let mut r = [0u64; CLASS_COUNT];
    let mut i = 0;
    while i < CLASS_COUNT {
        r[i] = (1u64 << 32).div_ceil(SIZE_CLASSES[i] as u64);
        i += 1;
    }
    r
}

// The reciprocal trick is exact when log2(max offset) + log2(max size) <= 32.
const_assert!(SLAB_SHIFT + 14 <= 32 && SMALL_SIZE_MAX <= 1 << 14);

/// `offset_in_slab / SIZE_CLASSES[idx]`, exactly, for offsets below `SLAB_SIZE`.
#[inline]
pub(crate) fn slot_index(offset_in_slab: usize, idx: usize) -> usize {
    debug_assert!(offset_in_slab < SLAB_SIZE);
    ((offset_in_slab as u64 * *super::checked::at(&SLOT_RECIPROCALS, idx)) >> 32) as usize
}

/// Slots of class `idx` in one slab. A table, not `SLAB_SIZE / size`: the
/// free path checks every pointer against it, and a runtime division costs
/// tens of cycles there.
#[inline]
pub(crate) fn slots_per_slab(idx: usize) -> usize {
    *super::checked::at(&SLOTS_PER_SLAB, idx) as usize
}

static SLOTS_PER_SLAB: [u16; CLASS_COUNT] = {
    let mut table = [0u16; CLASS_COUNT];
    let mut i = 0;
    while i < CLASS_COUNT {
        table[i] = (SLAB_SIZE / SIZE_CLASSES[i]) as u16;
        i += 1;
    }
    table
};

/// `(size + 15) / 16` → smallest class holding `size`, for every small size.
static CLASS_BY_GRANULE: [u8; SMALL_SIZE_MAX / MIN_SLOT + 1] = build_granule_table();

const fn build_granule_table() -> [u8; SMALL_SIZE_MAX / MIN_SLOT + 1] {
    let mut table = [0u8; SMALL_SIZE_MAX / MIN_SLOT + 1];
    let mut granule = 0;
    let mut class = 0;
    while granule < table.len() {
        while SIZE_CLASSES[class] < granule * MIN_SLOT {
            class += 1;
        }
        table[granule] = class as u8;
        granule += 1;
    }
    table
}

/// The class for a request of `size` bytes aligned to `align`, or `None` when
/// it must be served by a dedicated mapping.
#[inline]
pub(crate) fn class_for(size: usize, align: usize) -> Option<usize> {
    if size > SMALL_SIZE_MAX {
        return None;
    }
    let mut idx = super::checked::below(
        CLASS_BY_GRANULE[size.div_ceil(MIN_SLOT)] as usize,
        CLASS_COUNT,
    );
    if align > MIN_SLOT {
        while class_align(idx) < align {
            idx += 1;
            if idx == CLASS_COUNT {
                return None;
            }
        }
    }
    Some(idx)
}

/// Per-class thread-cache capacity: enough to amortise the class lock, small
/// enough that an idle thread strands at most ~16 KiB per class (and the
/// whole thread-local cache stays under 5 KiB of addresses per heap).
///
/// A table lookup (see [`slots_per_slab`]): every free to a thread cache
/// compares against it.
#[inline]
pub(crate) fn cache_capacity(idx: usize) -> usize {
    *super::checked::at(&CACHE_CAPACITIES, idx) as usize
}

static CACHE_CAPACITIES: [u8; CLASS_COUNT] = {
    let mut table = [0u8; CLASS_COUNT];
    let mut i = 0;
    while i < CLASS_COUNT {
        table[i] = cache_capacity_of(i) as u8;
        i += 1;
    }
    table
};

const fn cache_capacity_of(idx: usize) -> usize {
    let by_bytes = 16 * 1024 / SIZE_CLASSES[idx];
    if by_bytes > CACHE_CAPACITY_MAX {
        CACHE_CAPACITY_MAX
    } else if by_bytes < 2 {
        2
    } else {
        by_bytes
    }
}
/// The largest per-class thread-cache capacity.
pub(crate) const CACHE_CAPACITY_MAX: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_maps_to_the_smallest_fitting_class() {
        for size in 0..=SMALL_SIZE_MAX {
            let idx = class_for(size, 1).unwrap();
            assert!(SIZE_CLASSES[idx] >= size);
            if idx > 0 {
                assert!(SIZE_CLASSES[idx - 1] < size.max(1), "size {size}");
            }
        }
        assert_eq!(class_for(SMALL_SIZE_MAX + 1, 1), None);
    }

    #[test]
    fn alignment_moves_to_an_aligned_class() {
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384] {
            for size in [1, 17, 100, 1000, 4000] {
                let idx = class_for(size, align).unwrap();
                assert!(class_align(idx) >= align);
                assert!(SIZE_CLASSES[idx] >= size);
            }
        }
        assert_eq!(class_for(8, 32768), None);
    }

    #[test]
    fn slot_index_matches_division_everywhere() {
        for (idx, &size) in SIZE_CLASSES.iter().enumerate() {
            for offset in 0..SLAB_SIZE {
                assert_eq!(slot_index(offset, idx), offset / size);
            }
        }
    }

    #[test]
    fn cache_capacity_is_bounded() {
        for idx in 0..CLASS_COUNT {
            assert!(cache_capacity(idx) <= CACHE_CAPACITY_MAX);
            assert!(cache_capacity(idx) >= 2);
        }
    }
}
