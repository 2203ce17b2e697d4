//! Table-driven edge cases: every alignment up to 1 MiB, zero-size requests
//! through the allocator API, realloc in place and moving, too-large
//! requests, and the stable-Rust collections that take an allocator.

use allocator_api2::alloc::{AllocError, Allocator};
use secalloc::{SecureAlloc, SIZE_CLASSES};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashSet;

/// Tests that compare live counts must not overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const ALIGNS: [usize; 21] = [
    1,
    2,
    4,
    8,
    16,
    32,
    64,
    128,
    256,
    512,
    1024,
    2048,
    4096,
    8192,
    16384,
    32768,
    65536,
    1 << 17,
    1 << 18,
    1 << 19,
    1 << 20,
];
const SIZES: [usize; 12] = [
    1,
    7,
    16,
    17,
    100,
    1000,
    4096,
    4097,
    16384,
    16385,
    100_000,
    1 << 20,
];

#[test]
fn every_alignment_and_size_is_honoured_and_distinct() {
    let _serial = serial();
    let a = SecureAlloc::new();
    let mut live = Vec::new();
    let mut seen = HashSet::new();
    for &align in &ALIGNS {
        for &size in &SIZES {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null(), "size {size} align {align}");
            assert_eq!(
                p as usize % align,
                0,
                "size {size} align {align} misaligned"
            );
            assert!(seen.insert(p as usize));
            // SAFETY: fresh block of `size` bytes.
            let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
            assert!(bytes.iter().all(|&b| b == 0), "fresh memory is zero");
            bytes.fill(align as u8);
            live.push((p, layout));
        }
    }
    // No two live blocks overlap.
    let mut ranges: Vec<(usize, usize)> = live
        .iter()
        .map(|(p, l)| (*p as usize, *p as usize + l.size()))
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "blocks overlap: {w:?}");
    }
    for (p, layout) in live {
        // SAFETY: live block of `layout.size()` bytes.
        assert!(unsafe { std::slice::from_raw_parts(p, layout.size()) }
            .iter()
            .all(|&b| b == layout.align() as u8));
        // SAFETY: allocated above with this layout.
        unsafe { a.dealloc(p, layout) };
    }
}

#[test]
fn zero_size_requests_through_the_allocator_api() {
    let _serial = serial();
    let a = SecureAlloc::new();
    let before = a.stats().live_allocations;
    for &align in &ALIGNS {
        let layout = Layout::from_size_align(0, align).unwrap();
        let block = a.allocate(layout).unwrap();
        assert_eq!(block.len(), 0);
        assert_eq!(block.cast::<u8>().as_ptr() as usize % align, 0);
        // Growing from zero allocates for real.
        // SAFETY: forwards to the wrapped allocator, which upholds the same contract.
        let grown = unsafe {
            a.grow(
                block.cast(),
                layout,
                Layout::from_size_align(24, align).unwrap(),
            )
        }
        .unwrap();
        assert_eq!(grown.len(), 24);
        // SAFETY: forwards to the wrapped allocator, which upholds the same contract.
        let shrunk = unsafe {
            a.shrink(
                grown.cast(),
                Layout::from_size_align(24, align).unwrap(),
                layout,
            )
        }
        .unwrap();
        assert_eq!(shrunk.len(), 0);
        // SAFETY: the block came from this allocator with this layout and is freed once.
        unsafe { a.deallocate(shrunk.cast(), layout) };
    }
    assert_eq!(a.stats().live_allocations, before);
}

#[test]
fn realloc_table() {
    let _serial = serial();
    // (from size, to size, align, expect in place)
    let cases: &[(usize, usize, usize, bool)] = &[
        (10, 16, 1, true),          // same class
        (16, 17, 1, false),         // next class
        (100, 97, 8, true),         // shrink within class
        (1000, 10, 8, false),       // shrink to a smaller class moves
        (200, 20_000, 16, false),   // small to large
        (20_000, 20_400, 16, true), // inside the large block's pages
        (100_000, 300_000, 64, false),
        (300_000, 200_000, 64, true), // shrink large in place (wastes < half)
        (300_000, 1000, 64, false),   // large to small
        (64, 4096, 4096, true),       // align 4096 puts 64 B in the 4 KiB class
        (5000, 100, 65536, true),     // large (over-aligned) block shrinks within its pages
    ];
    let a = SecureAlloc::new();
    for &(from, to, align, in_place) in cases {
        let layout = Layout::from_size_align(from, align).unwrap();
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { a.alloc(layout) };
        for i in 0..from {
            // SAFETY: the offset is below the live block's size.
            unsafe { *p.add(i) = (i % 251) as u8 };
        }
        // SAFETY: live block from this allocator with this layout; the new size is non-zero.
        let q = unsafe { a.realloc(p, layout, to) };
        assert!(!q.is_null());
        assert_eq!(q == p, in_place, "{from} -> {to} (align {align})");
        assert_eq!(q as usize % align, 0, "realloc keeps the alignment");
        let kept = from.min(to);
        for i in 0..kept {
            assert_eq!(
                // SAFETY: the offset is below the live block's size.
                unsafe { *q.add(i) },
                (i % 251) as u8,
                "{from} -> {to}: byte {i}"
            );
        }
        // SAFETY: the pointer came from this allocator with this layout and is freed once.
        unsafe { a.dealloc(q, Layout::from_size_align(to, align).unwrap()) };
    }
}

#[test]
fn too_large_requests_fail_cleanly() {
    let _serial = serial();
    let a = SecureAlloc::new();
    for size in [isize::MAX as usize - 4095, 1usize << 48, (1usize << 47) + 1] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: the layout has a non-zero size.
        assert!(unsafe { a.alloc(layout) }.is_null(), "size {size}");
        assert_eq!(a.allocate(layout), Err(AllocError));
    }
    let big_align = Layout::from_size_align(64, 1 << 30).unwrap();
    let p = a.allocate(big_align);
    if let Ok(block) = p {
        assert_eq!(block.cast::<u8>().as_ptr() as usize % (1 << 30), 0);
        // SAFETY: the block came from this allocator with this layout and is freed once.
        unsafe { a.deallocate(block.cast(), big_align) };
    }
    // The allocator still works afterwards.
    let v = allocator_api2::vec![in a; 1u8; 100];
    assert_eq!(v.len(), 100);
}

#[test]
fn allocator_api2_vec_and_hashbrown_map_hold_secrets() {
    let _serial = serial();
    let a = SecureAlloc::new();
    let before = a.stats().live_allocations;
    {
        let mut v: allocator_api2::vec::Vec<u8, SecureAlloc> = allocator_api2::vec::Vec::new_in(a);
        for i in 0..100_000u32 {
            v.push(i as u8);
        }
        assert_eq!(SecureAlloc::is_locked(v.as_ptr()), Some(true));
        let mut map: hashbrown::HashMap<u64, [u8; 32], hashbrown::DefaultHashBuilder, SecureAlloc> =
            hashbrown::HashMap::with_hasher_in(hashbrown::DefaultHashBuilder::default(), a);
        for i in 0..10_000u64 {
            map.insert(i, [i as u8; 32]);
        }
        assert_eq!(map[&77], [77u8; 32]);
        map.retain(|k, _| k % 2 == 0);
        assert_eq!(map.len(), 5000);
        assert!(a.stats().live_allocations > before);
    }
    assert_eq!(a.stats().live_allocations, before);
}

#[test]
fn size_class_table_is_exposed_and_sane() {
    assert_eq!(SIZE_CLASSES[0], 16);
    assert_eq!(*SIZE_CLASSES.last().unwrap(), 16 * 1024);
    assert!(SIZE_CLASSES.windows(2).all(|w| w[0] < w[1]));
}
