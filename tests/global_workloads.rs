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
    let checks: [(&str, fn()); 7] = [
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
        (
            "sixteen_threads_million_ops_each_with_cross_thread_frees",
            sixteen_threads_million_ops_each_with_cross_thread_frees,
        ),
        (
            "thousand_threads_exit_while_others_allocate",
            thousand_threads_exit_while_others_allocate,
        ),
    ];
    secalloc_test_support::run_checks(&checks);
}

fn live() -> usize {
    GLOBAL.stats().live_allocations
}

/// Waits (up to 5 s) for the live count to return to `baseline`: a thread
/// whose closure has finished may still be tearing down (freeing its thread
/// handle and TLS) when `thread::scope` returns.
fn settles_to(baseline: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = live();
        if now == baseline || std::time::Instant::now() > deadline {
            return now;
        }
        thread::sleep(std::time::Duration::from_millis(10));
    }
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

fn sixteen_threads_million_ops_each_with_cross_thread_frees() {
    let before = live();
    let mailbox = std::sync::Mutex::new(Vec::<Vec<u8>>::new());
    thread::scope(|s| {
        for t in 0..16u64 {
            let mailbox = &mailbox;
            s.spawn(move || {
                let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut live: Vec<Vec<u8>> = Vec::new();
                for _ in 0..1_000_000u32 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    match rng % 10 {
                        0..=4 => live.push(vec![t as u8; 1 + (rng >> 20) as usize % 2048]),
                        5 if !live.is_empty() => {
                            let v = live.swap_remove((rng >> 8) as usize % live.len());
                            mailbox.lock().unwrap().push(v);
                        }
                        6 | 7 => {
                            // Free a block another thread allocated.
                            let v = mailbox.lock().unwrap().pop();
                            if let Some(v) = v {
                                assert!(v.iter().all(|&b| b == v[0]));
                            }
                        }
                        _ if !live.is_empty() => {
                            let v = live.swap_remove((rng >> 8) as usize % live.len());
                            assert!(v.iter().all(|&b| b == t as u8));
                        }
                        _ => {}
                    }
                    if live.len() > 4096 {
                        live.truncate(2048);
                    }
                }
            });
        }
    });
    drop(mailbox);
    assert_eq!(
        settles_to(before),
        before,
        "16M operations leave nothing behind"
    );
}

fn thousand_threads_exit_while_others_allocate() {
    let before = live();
    let stop = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut keep = Vec::new();
                let mut i = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    keep.push(vec![1u8; 16 + i % 1000]);
                    if keep.len() > 300 {
                        keep.drain(..150);
                    }
                    i += 1;
                }
            });
        }
        for _ in 0..1000 {
            thread::spawn(|| {
                let v: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; 8 + i * 13]).collect();
                v.len()
            })
            .join()
            .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(
        settles_to(before),
        before,
        "exited threads' caches went back to the arena"
    );
}
