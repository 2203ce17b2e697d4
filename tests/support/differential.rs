//! A deterministic, seeded random-operation driver for the allocator, checked
//! against a simple model: every live block keeps the bytes written to it
//! (sampled), zeroed allocations read zero, alignment is honoured, and no two
//! live blocks of a thread overlap (blocks of different threads carry
//! different fill bytes, so an overlap across threads corrupts a check).
//!
//! Shared by `tests/differential.rs` (CI) and `fuzz/` (longer runs).
#![allow(dead_code)]

use secalloc::SecureAlloc;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// xorshift64*: small, fast, deterministic.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy)]
pub struct Block {
    pub ptr: usize,
    pub layout: Layout,
    pub fill: u8,
}

// SAFETY: a block is an address plus its layout; ownership moves with it.
unsafe impl Send for Block {}

/// Sizes 0–4 MiB, weighted toward small ones as real programs are.
fn size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=699 => rng.below(1025) as usize,
        700..=949 => 1024 + rng.below(15 * 1024) as usize,
        950..=997 => 16 * 1024 + rng.below(240 * 1024) as usize,
        _ => 256 * 1024 + rng.below(4 * 1024 * 1024 - 256 * 1024) as usize,
    }
}

/// Alignments 1–1 MiB.
fn align(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=79 => 1 << rng.below(5),
        80..=96 => 1 << (5 + rng.below(8)),
        _ => 1 << (13 + rng.below(8)),
    }
}

/// Offsets checked in a block: both ends and one in the middle (touching
/// every byte of a 4 MiB block would dominate the run).
fn sample_offsets(len: usize) -> impl Iterator<Item = usize> {
    let picks = [0, 1, len / 2, len.saturating_sub(2), len.saturating_sub(1)];
    picks.into_iter().filter(move |&o| o < len)
}

fn write_fill(b: &Block) {
    for o in sample_offsets(b.layout.size()) {
        // SAFETY: `o` is inside the live block.
        unsafe { *((b.ptr + o) as *mut u8) = b.fill };
    }
}

fn check_fill(b: &Block, upto: usize, what: &str) {
    for o in sample_offsets(upto.min(b.layout.size())) {
        // SAFETY: `o` is inside the live block.
        let got = unsafe { *((b.ptr + o) as *const u8) };
        assert_eq!(
            got,
            b.fill,
            "{what}: byte {o} of a {}-byte block changed",
            b.layout.size()
        );
    }
}

fn check_zero(b: &Block) {
    for o in sample_offsets(b.layout.size()) {
        // SAFETY: `o` is inside the live block.
        let byte = unsafe { *((b.ptr + o) as *const u8) };
        assert_eq!(byte, 0, "alloc_zeroed byte {o} not zero");
    }
}

/// One thread's run: `ops` operations with this `seed`, exchanging some
/// blocks through `mailbox` so that frees cross threads.
pub fn run_thread(
    a: SecureAlloc,
    seed: u64,
    thread: u8,
    ops: u64,
    mailbox: &Mutex<Vec<Block>>,
) -> u64 {
    let mut rng = Rng(seed ^ (thread as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut live: Vec<Block> = Vec::new();
    let mut ranges: BTreeMap<usize, usize> = BTreeMap::new(); // start -> end of live blocks
    let mut live_bytes = 0usize;
    let mut fill_seq = thread.wrapping_mul(37);
    let mut next_fill = || {
        fill_seq = fill_seq.wrapping_add(1) | 1; // never 0, so "zeroed" is distinguishable
        fill_seq
    };
    let overlap = |ranges: &BTreeMap<usize, usize>, start: usize, end: usize| {
        ranges
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start)
    };
    for _ in 0..ops {
        let op = rng.below(100);
        let must_free = live.len() > 2000 || live_bytes > 64 << 20;
        if !must_free && op < 45 {
            // alloc or alloc_zeroed
            let layout = Layout::from_size_align(size(&mut rng).max(1), align(&mut rng)).unwrap();
            let zeroed = op < 15;
            // SAFETY: non-zero size.
            let p = unsafe {
                if zeroed {
                    a.alloc_zeroed(layout)
                } else {
                    a.alloc(layout)
                }
            };
            if p.is_null() {
                let maps = std::fs::read_to_string("/proc/self/maps")
                    .map(|m| m.lines().count())
                    .unwrap_or(0);
                panic!(
                    "allocation of {layout:?} failed; {maps} mappings; stats {:?}",
                    a.stats()
                );
            }
            assert_eq!(p as usize % layout.align(), 0, "misaligned {layout:?}");
            let b = Block {
                ptr: p as usize,
                layout,
                fill: next_fill(),
            };
            if zeroed {
                check_zero(&b);
            }
            assert!(
                !overlap(&ranges, b.ptr, b.ptr + layout.size()),
                "new block overlaps a live one"
            );
            ranges.insert(b.ptr, b.ptr + layout.size());
            write_fill(&b);
            live_bytes += layout.size();
            live.push(b);
        } else if !live.is_empty() && op < 65 && !must_free {
            // realloc, growing or shrinking
            let i = rng.below(live.len() as u64) as usize;
            let old = live[i];
            check_fill(&old, old.layout.size(), "before realloc");
            let new_size = size(&mut rng).max(1);
            // SAFETY: live block with this layout; non-zero new size.
            let p = unsafe { a.realloc(old.ptr as *mut u8, old.layout, new_size) };
            assert!(!p.is_null(), "realloc to {new_size} failed");
            assert_eq!(
                p as usize % old.layout.align(),
                0,
                "realloc lost the alignment"
            );
            ranges.remove(&old.ptr);
            let moved = Block {
                ptr: p as usize,
                layout: Layout::from_size_align(new_size, old.layout.align()).unwrap(),
                fill: old.fill,
            };
            // Contents preserved up to the smaller size (sampled on the old extent).
            for o in sample_offsets(old.layout.size()).filter(|&o| o < new_size) {
                // SAFETY: inside the new block.
                let byte = unsafe { *((moved.ptr + o) as *const u8) };
                assert_eq!(byte, old.fill, "realloc lost byte {o}");
            }
            assert!(
                !overlap(&ranges, moved.ptr, moved.ptr + new_size),
                "realloc result overlaps a live block"
            );
            ranges.insert(moved.ptr, moved.ptr + new_size);
            write_fill(&moved);
            live_bytes = live_bytes - old.layout.size() + new_size;
            live[i] = moved;
        } else if !live.is_empty() && op < 70 && !must_free {
            // hand a block to another thread
            let i = rng.below(live.len() as u64) as usize;
            let b = live.swap_remove(i);
            ranges.remove(&b.ptr);
            live_bytes -= b.layout.size();
            mailbox.lock().unwrap().push(b);
        } else if op < 80 {
            // free a block some other thread handed over
            let b = mailbox.lock().unwrap().pop();
            if let Some(b) = b {
                check_fill(&b, b.layout.size(), "cross-thread block");
                // SAFETY: the block is live and now ours.
                unsafe { a.dealloc(b.ptr as *mut u8, b.layout) };
            }
        } else if !live.is_empty() {
            let i = rng.below(live.len() as u64) as usize;
            let b = live.swap_remove(i);
            ranges.remove(&b.ptr);
            live_bytes -= b.layout.size();
            check_fill(&b, b.layout.size(), "before free");
            // SAFETY: the block is live and ours.
            unsafe { a.dealloc(b.ptr as *mut u8, b.layout) };
        }
    }
    for b in live {
        check_fill(&b, b.layout.size(), "at the end");
        // SAFETY: live and ours.
        unsafe { a.dealloc(b.ptr as *mut u8, b.layout) };
    }
    ops
}

/// Runs `threads` threads of `ops_per_thread` operations; frees whatever is
/// left in the mailbox. Returns the total operations.
pub fn run(seed: u64, threads: u8, ops_per_thread: u64) -> u64 {
    let a = SecureAlloc::best_effort();
    let mailbox = Mutex::new(Vec::new());
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mailbox = &mailbox;
                s.spawn(move || run_thread(a, seed, t, ops_per_thread, mailbox))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    for b in mailbox.into_inner().unwrap() {
        check_fill(&b, b.layout.size(), "left in the mailbox");
        // SAFETY: live and ours.
        unsafe { a.dealloc(b.ptr as *mut u8, b.layout) };
    }
    total
}
