//! The arena's concurrent core, exposed for loom models (`cfg(loom)` only).
//!
//! loom atomics have no `const` constructors, so no `static` heap exists
//! under loom; a model builds its own [`ModelHeap`] over the fake OS layer
//! and drives it through explicit per-thread [`ModelCache`]s, calling
//! [`ModelCache::exit`] where a real thread's exit hook would flush.

use super::heap::Heap;
use super::size_class::{class_for, SIZE_CLASSES};
use super::thread_cache::HeapCache;
use super::wipe::wipe;
use super::LockPolicy;

/// A heap of `slabs` slabs over the fake OS layer.
pub struct ModelHeap {
    heap: Heap,
}

impl ModelHeap {
    /// A ready heap with room for `slabs` slabs.
    pub fn new(slabs: usize) -> ModelHeap {
        let heap = Heap::new(LockPolicy::FailClosed);
        assert!(heap.init_with_slabs(slabs));
        ModelHeap { heap }
    }

    /// Live allocations (count of live marks).
    pub fn live(&self) -> usize {
        let mut per_class = [0; super::CLASS_COUNT];
        self.heap.small_stats(&mut per_class);
        per_class.iter().sum()
    }

    /// Empty slabs that were given back (unlocked and decommitted).
    pub fn decommitted_slabs(&self) -> usize {
        self.heap.decommitted_slab_count()
    }

    /// The class serving `size`-byte, 1-aligned requests.
    pub fn class_for(size: usize) -> usize {
        class_for(size, 1).expect("small size")
    }

    /// Slot size of `class`.
    pub fn slot_size(class: usize) -> usize {
        SIZE_CLASSES[class]
    }
}

/// One model thread's cache.
pub struct ModelCache {
    cache: Box<HeapCache>,
}

impl Default for ModelCache {
    fn default() -> Self {
        ModelCache {
            cache: Box::new(HeapCache::EMPTY),
        }
    }
}

impl ModelCache {
    /// A cache refilling from central-list `shard`.
    pub fn with_shard(shard: usize) -> ModelCache {
        let mut cache = ModelCache::default();
        cache.cache.set_shard(shard);
        cache
    }

    /// Allocates a slot of `class`; `None` when the heap is full.
    pub fn alloc(&mut self, heap: &ModelHeap, class: usize) -> Option<usize> {
        let addr = self.cache.pop(&heap.heap, class);
        if addr == 0 {
            return None;
        }
        heap.heap.mark_live(addr, class, SIZE_CLASSES[class]);
        Some(addr)
    }

    /// Frees `addr` as the real allocator does: clear the live mark (a double
    /// free panics in the model), wipe the slot, cache it.
    pub fn free(&mut self, heap: &ModelHeap, addr: usize) {
        let (_, meta, class, slot) = heap.heap.locate(addr);
        if meta.mark_free(slot).is_none() {
            crate::fatal::fatal_at(crate::fatal::FatalKind::DoubleFree, addr);
        }
        // SAFETY: the slot was live and the caller gave it up.
        #[allow(unsafe_code)]
        unsafe {
            wipe(addr, SIZE_CLASSES[class])
        };
        self.cache.push(&heap.heap, class, addr);
    }

    /// Thread exit: hand every cached slot back to the heap.
    pub fn exit(mut self, heap: &ModelHeap) {
        self.cache.flush(&heap.heap);
    }
}
