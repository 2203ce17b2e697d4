//! Inspection hooks for tests (`--cfg secalloc_test_hooks`, set by this repository's `.cargo/config.toml`): read the arena the way
//! an attacker with a memory snapshot would, to prove what it holds.
//!
//! Reads are volatile byte reads of memory the arena owns. Call these only
//! while no other thread is allocating, and keep the needle off the arena
//! (on the stack), or the scan finds the needle itself.

use super::{for_each_region, HEAPS};

/// Where an address falls in the small-object arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// Start of the slot containing the address.
    pub start: usize,
    /// Slot size in bytes (the size class).
    pub size: usize,
    /// Whether the slot is currently handed out.
    pub live: bool,
}

/// The slot containing `addr`, if it is in a committed slab.
pub fn slot_of(addr: usize) -> Option<SlotInfo> {
    HEAPS.iter().find_map(|h| {
        h.slot_of(addr)
            .map(|(start, size, live, _)| SlotInfo { start, size, live })
    })
}

fn read(addr: usize) -> u8 {
    // SAFETY: callers pass addresses inside committed arena memory, which
    // stays mapped readable for the life of the process.
    #[allow(unsafe_code)]
    unsafe {
        core::ptr::read_volatile(addr as *const u8)
    }
}

/// Whether every byte of the slot containing `addr` is zero. `None` if
/// `addr` is not in a committed slab.
pub fn slot_is_zeroed(addr: usize) -> Option<bool> {
    let info = slot_of(addr)?;
    Some((info.start..info.start + info.size).all(|a| read(a) == 0))
}

/// Whether `needle` occurs anywhere in the arena's memory.
pub fn arena_contains(needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let mut found = false;
    for_each_region(|start, len| {
        if found || len < needle.len() {
            return;
        }
        let first = needle[0];
        for a in start..=start + len - needle.len() {
            if read(a) == first && (1..needle.len()).all(|i| read(a + i) == needle[i]) {
                found = true;
                return;
            }
        }
    });
    found
}

/// Whether `[addr, addr + len)` lies inside arena memory and is all zero.
/// `None` if any of it is outside the arena.
pub fn range_is_zeroed(addr: usize, len: usize) -> Option<bool> {
    let mut inside = false;
    for_each_region(|start, region_len| {
        if addr >= start && addr + len <= start + region_len {
            inside = true;
        }
    });
    inside.then(|| (addr..addr + len).all(|a| read(a) == 0))
}

/// A field of a slab's metadata, for [`corrupt_slab_meta`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaField {
    /// The central-list shard that owns the slab.
    Shard,
    /// The link to the next slab in its list (slab number + 1).
    Next,
    /// The first bitmap word the slot search starts from.
    ScanFrom,
}

/// Writes `value` into `field` of the metadata of the slab holding `addr`:
/// a stray write into the allocator's own tables, for tests that the arena
/// then stops with a corruption report instead of misbehaving. `false` if
/// `addr` is in no slab. Only while no other thread allocates.
pub fn corrupt_slab_meta(addr: usize, field: MetaField, value: u32) -> bool {
    HEAPS
        .iter()
        .any(|h| h.corrupt_meta_for_test(addr, field, value))
}

/// Marks every empty entry of every large-block registry as a deleted one,
/// so that no probe meets an empty entry (a stray write into the registry's
/// table, for the same kind of test). Only while no other thread allocates.
pub fn corrupt_large_registries() {
    for heap in &HEAPS {
        heap.large.fill_with_tombstones_for_test();
    }
}
