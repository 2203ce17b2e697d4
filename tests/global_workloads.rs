//! `SecureAlloc` as the global allocator under real std workloads: every
//! allocation of this test binary, the test harness's included, goes through
//! the arena.

use secalloc::{SecureAlloc, SIZE_CLASSES};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: SecureAlloc = SecureAlloc::new();

/// Runs each check in turn on the main thread: live counts are compared
/// before and after, so nothing else may allocate meanwhile (hence no libtest
/// harness, which allocates from its own threads).
#[path = "support/mod.rs"]
mod secalloc_test_support;

fn main() {
    let checks: [(&str, fn()); 5] = [
        (
            "collections_grow_and_drop_correctly",
            collections_grow_and_drop_correctly,
        ),
        (
            "cross_thread_frees_are_accounted",
            cross_thread_frees_are_accounted,
        ),
        (
            "thousand_short_lived_threads_return_their_caches",
            thousand_short_lived_threads_return_their_caches,
        ),
        (
            "memory_is_locked_and_accounted",
            memory_is_locked_and_accounted,
        ),
        ("large_blocks_round_trip", large_blocks_round_trip),
    ];
    secalloc_test_support::run_checks(&checks);
}

fn live() -> usize {
    GLOBAL.stats().live_allocations
}

fn collections_grow_and_drop_correctly() {
    let before = live();
    {
        let mut v: Vec<u64> = Vec::new();
        for i in 0..200_000u64 {
            v.push(i * 3);
        }
        assert_eq!(v.iter().sum::<u64>(), 3 * (199_999 * 200_000 / 2));

        let mut s = String::new();
        for i in 0..10_000 {
            s.push_str(&i.to_string());
        }
        assert!(s.starts_with("0123456789101112"));

        let mut map: HashMap<String, Vec<u8>> = HashMap::new();
        for i in 0..50_000 {
            map.insert(format!("key-{i}"), vec![i as u8; i % 300]);
        }
        assert_eq!(map.len(), 50_000);
        assert_eq!(map["key-299"].len(), 299);
        for i in (0..50_000).step_by(2) {
            map.remove(&format!("key-{i}"));
        }
        assert_eq!(map.len(), 25_000);

        let mut tree = BTreeMap::new();
        for i in 0..100_000u32 {
            tree.insert(i.wrapping_mul(2_654_435_761), i);
        }
        assert_eq!(tree.len(), 100_000);
        assert!(tree.keys().zip(tree.keys().skip(1)).all(|(a, b)| a < b));
    }
    assert_eq!(live(), before, "live allocations return to baseline");
}

fn cross_thread_frees_are_accounted() {
    let before = live();
    let (tx, rx) = mpsc::sync_channel::<Box<[u8; 64]>>(1024);
    let producer = thread::spawn(move || {
        for i in 0..200_000u32 {
            tx.send(Box::new([i as u8; 64])).unwrap();
        }
    });
    let consumer = thread::spawn(move || {
        let mut count = 0u32;
        for (i, b) in rx.iter().enumerate() {
            assert!(b.iter().all(|&x| x == i as u8));
            count += 1;
        }
        count
    });
    producer.join().unwrap();
    assert_eq!(consumer.join().unwrap(), 200_000);
    assert_eq!(live(), before);
}

fn thousand_short_lived_threads_return_their_caches() {
    let before = live();
    for batch in 0..50 {
        let handles: Vec<_> = (0..20)
            .map(|t| {
                thread::spawn(move || {
                    let mut keep = Vec::new();
                    for i in 0..200 {
                        let v = vec![(batch + t + i) as u8; 16 + (i * 37) % 2000];
                        if i % 3 == 0 {
                            keep.push(v);
                        }
                    }
                    keep.iter().map(|v| v.len()).sum::<usize>()
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap() > 0);
        }
    }
    assert_eq!(live(), before, "thread exit leaks nothing");
}

fn memory_is_locked_and_accounted() {
    let keep: Vec<Vec<u8>> = (0..1000).map(|i| vec![1u8; 1 + i * 7]).collect();
    let stats = GLOBAL.stats();
    assert_eq!(stats.unlocked_bytes, 0, "fail-closed never runs unlocked");
    assert_eq!(
        stats.locked_bytes, stats.mapped_bytes,
        "every mapped byte is locked"
    );
    assert!(stats.in_use_bytes >= keep.iter().map(|v| v.len()).sum::<usize>());
    let per_class: usize = stats.live_per_class.iter().sum();
    assert_eq!(per_class + stats.large_live, stats.live_allocations);
    assert_eq!(stats.live_per_class.len(), SIZE_CLASSES.len());
    for v in &keep {
        assert_eq!(SecureAlloc::is_locked(v.as_ptr()), Some(true));
    }
}

fn large_blocks_round_trip() {
    let before = live();
    for round in 0..50usize {
        let mut blocks: Vec<Vec<u8>> = (0..8)
            .map(|i| vec![(round + i) as u8; (1 << 20) + i * 4097])
            .collect();
        for (i, b) in blocks.iter_mut().enumerate() {
            assert!(b.iter().all(|&x| x == (round + i) as u8));
            b.resize(b.len() * 2, 7);
            b.truncate(100);
            b.shrink_to_fit();
        }
    }
    assert_eq!(live(), before);
}
