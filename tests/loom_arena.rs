//! loom models of the arena's concurrent protocols: central slab lists under
//! contention, cross-thread frees, and thread-cache hand-back at thread exit.
//!
//! Run: `LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg loom" cargo test --release --test loom_arena`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use secalloc::arena::model::{ModelCache, ModelHeap};
use std::collections::HashSet;

/// Runs a model body on a loom thread with a large stack: a heap has one
/// mutex per class and shard, more than loom's default coroutine stack holds
/// while it is being built.
fn model(body: impl Fn() + Sync + Send + 'static) {
    let body = std::sync::Arc::new(body);
    loom::model(move || {
        let body = body.clone();
        thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(move || body())
            .unwrap()
            .join()
            .unwrap();
    });
}

/// The largest class: four slots per slab, so a two-slab heap runs out fast.
fn big_class() -> usize {
    ModelHeap::class_for(16 * 1024)
}

#[test]
fn concurrent_allocation_never_hands_out_a_slot_twice() {
    model(|| {
        let heap = Arc::new(ModelHeap::new(2));
        let class = big_class();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let heap = heap.clone();
                thread::spawn(move || {
                    let mut cache = ModelCache::default();
                    let got: Vec<usize> =
                        (0..3).filter_map(|_| cache.alloc(&heap, class)).collect();
                    cache.exit(&heap);
                    got
                })
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for addr in h.join().unwrap() {
                assert!(all.insert(addr), "slot {addr:#x} handed out twice");
            }
        }
        assert_eq!(heap.live(), all.len());
    });
}

#[test]
fn cross_thread_free_and_exit_hand_back_loses_nothing() {
    model(|| {
        let heap = Arc::new(ModelHeap::new(2));
        let class = big_class();
        let mut main_cache = ModelCache::default();
        let a = main_cache.alloc(&heap, class).unwrap();
        let b = main_cache.alloc(&heap, class).unwrap();

        let h2 = heap.clone();
        let t = thread::spawn(move || {
            // Free a block allocated by the other thread (whose slab belongs
            // to another shard), allocate one of our own, then exit (flush).
            let mut cache = ModelCache::with_shard(1);
            cache.free(&h2, a);
            let c = cache.alloc(&h2, class).unwrap();
            cache.free(&h2, c);
            cache.exit(&h2);
        });
        main_cache.free(&heap, b);
        main_cache.exit(&heap);
        t.join().unwrap();

        assert_eq!(heap.live(), 0);
        // Every slot of both slabs is available again and distinct.
        let mut cache = ModelCache::default();
        let mut seen = HashSet::new();
        while let Some(addr) = cache.alloc(&heap, class) {
            assert!(seen.insert(addr));
        }
        let slots_per_slab = 64 * 1024 / ModelHeap::slot_size(class);
        assert_eq!(seen.len(), 2 * slots_per_slab);
    });
}

#[test]
fn empty_slabs_move_between_classes_through_the_pool() {
    model(|| {
        // One slab only: class A must give it back before class B can run.
        let heap = Arc::new(ModelHeap::new(1));
        let big = big_class();
        let other = ModelHeap::class_for(8 * 1024);
        let h = heap.clone();
        let t = thread::spawn(move || {
            let mut cache = ModelCache::default();
            let got: Vec<usize> = (0..2).filter_map(|_| cache.alloc(&h, big)).collect();
            for addr in &got {
                cache.free(&h, *addr);
            }
            cache.exit(&h);
            got.len()
        });
        let mut cache = ModelCache::default();
        let mine = cache.alloc(&heap, other);
        if let Some(addr) = mine {
            cache.free(&heap, addr);
        }
        cache.exit(&heap);
        let theirs = t.join().unwrap();
        // Whoever got the slab first, both could not hold it at once, and
        // everything is free at the end.
        assert!(theirs > 0 || mine.is_some());
        assert_eq!(heap.live(), 0);
        // Under the model's 64 KiB budget no empty slab stays locked: the
        // emptied slab gave its budget back, and is committed again below.
        assert_eq!(
            heap.decommitted_slabs(),
            1,
            "the empty slab kept its budget"
        );
        let mut cache = ModelCache::default();
        assert!(
            cache.alloc(&heap, other).is_some(),
            "the slab is reusable by any class afterwards"
        );
    });
}
