//! Zero-on-free, observed through the arena's inspection hooks (feature
//! `--cfg secalloc_test_hooks`): freed slots and blocks hold only zeros, shrinking wipes the
//! tail, and a moving realloc wipes the old block.

use secalloc::arena::inspect;
use secalloc::SecureAlloc;
use std::alloc::{GlobalAlloc, Layout};

const PATTERN: u8 = 0xC3;

fn alloc_filled(a: &SecureAlloc, size: usize, align: usize) -> (*mut u8, Layout) {
    let layout = Layout::from_size_align(size, align).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { a.alloc(layout) };
    assert!(!p.is_null());
    // SAFETY: `p` is a live block of `size` bytes.
    unsafe { p.write_bytes(PATTERN, size) };
    (p, layout)
}

#[test]
fn every_size_class_slot_is_zero_after_free() {
    let a = SecureAlloc::new();
    for &size in secalloc::SIZE_CLASSES.iter() {
        for req in [size, size - 15] {
            let (p, layout) = alloc_filled(&a, req, 1);
            let info = inspect::slot_of(p as usize).unwrap();
            assert!(info.live);
            assert_eq!(inspect::slot_is_zeroed(p as usize), Some(false));
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, layout) };
            let info = inspect::slot_of(p as usize).unwrap();
            assert!(!info.live, "slot still live after free");
            assert_eq!(
                inspect::slot_is_zeroed(p as usize),
                Some(true),
                "class {size} not wiped"
            );
        }
    }
}

#[test]
fn the_whole_slot_is_wiped_not_only_the_requested_size() {
    // Writing past the requested size is an overflow the allocator now
    // reports (tests/issue14_misuse.rs); bytes beyond a block's current
    // size come from an earlier, larger size of it: fill the whole slot,
    // shrink in place, free.
    let a = SecureAlloc::new();
    let (p, layout) = alloc_filled(&a, 112, 1); // class 112, every byte set
    let info = inspect::slot_of(p as usize).unwrap();
    assert_eq!(info.size, 112);
    // SAFETY: a live block of `layout`; same class, so in place.
    let q = unsafe { a.realloc(p, layout, 100) };
    assert_eq!(q, p);
    // SAFETY: now a live block of 100 bytes.
    unsafe { a.dealloc(q, Layout::from_size_align(100, 1).unwrap()) };
    assert_eq!(inspect::slot_is_zeroed(p as usize), Some(true));
}

#[test]
fn shrinking_in_place_wipes_the_tail_and_moving_wipes_the_old_block() {
    let a = SecureAlloc::new();
    let (p, layout) = alloc_filled(&a, 120, 8);
    // SAFETY: live block from `a` with `layout`.
    let q = unsafe { a.realloc(p, layout, 113) }; // same class (128): in place
    assert_eq!(q, p);
    assert_eq!(inspect::range_is_zeroed(p as usize + 113, 7), Some(true));
    // SAFETY: `q` is live with 113 bytes.
    assert!(unsafe { std::slice::from_raw_parts(q, 113) }
        .iter()
        .all(|&b| b == PATTERN));

    let layout = Layout::from_size_align(113, 8).unwrap();
    // SAFETY: live block from `a` with `layout`.
    let r = unsafe { a.realloc(q, layout, 5000) }; // new class: moves
    assert_ne!(r, q);
    assert_eq!(
        inspect::slot_is_zeroed(q as usize),
        Some(true),
        "old block wiped"
    );
    // SAFETY: `r` is live with 5000 bytes.
    let moved = unsafe { std::slice::from_raw_parts(r, 5000) };
    assert!(moved[..113].iter().all(|&b| b == PATTERN));
    assert!(moved[113..].iter().all(|&b| b == 0), "growth reads zero");
    // SAFETY: as above.
    unsafe { a.dealloc(r, Layout::from_size_align(5000, 8).unwrap()) };
}

#[test]
fn large_blocks_are_wiped_before_reuse_or_unmap() {
    let a = SecureAlloc::new();
    let size = 1 << 20;
    let (p, layout) = alloc_filled(&a, size, 1);
    // SAFETY: allocated above with this layout.
    unsafe { a.dealloc(p, layout) };
    // A 1 MiB block goes to the bounded cache; it must be zero there.
    assert_eq!(inspect::range_is_zeroed(p as usize, size), Some(true));
    // SAFETY: the layout has a non-zero size.
    let q = unsafe { a.alloc_zeroed(layout) };
    // SAFETY: live block of `size` bytes.
    assert!(unsafe { std::slice::from_raw_parts(q, size) }
        .iter()
        .all(|&b| b == 0));
    // SAFETY: the pointer came from this allocator with this layout and is freed once.
    unsafe { a.dealloc(q, layout) };
}

#[test]
fn alloc_zeroed_is_zero_after_heavy_reuse() {
    let a = SecureAlloc::new();
    for round in 0..200 {
        let size = 16 + (round * 53) % 4000;
        let (p, layout) = alloc_filled(&a, size, 1);
        // SAFETY: the pointer came from this allocator with this layout and is freed once.
        unsafe { a.dealloc(p, layout) };
        // SAFETY: the layout has a non-zero size.
        let z = unsafe { a.alloc_zeroed(layout) };
        // SAFETY: the pointer is a live block of at least this many bytes.
        assert!(unsafe { std::slice::from_raw_parts(z, size) }
            .iter()
            .all(|&b| b == 0));
        // SAFETY: the pointer came from this allocator with this layout and is freed once.
        unsafe { a.dealloc(z, layout) };
    }
}
