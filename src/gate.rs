//! The key page's reader gate: many threads use the key at once (every seal
//! and open), `purge` closes the gate once and waits for them to leave.
//!
//! A single pin word (`pin::PinState`) would be one cache line that every
//! seal and open on every core writes twice; on two cores creating secrets
//! ran at 0.93× the throughput of one while a CPU-only loop reached 2.49×.
//! Here each reader increments a counter on a line of its own (one per
//! [`GATE_SLOTS`], picked by thread), then checks the gate; the closer
//! shuts the gate, then waits until every counter is zero. Each side puts a
//! sequentially consistent fence between its store and its load, so either
//! the reader sees the gate shut (and backs out) or the closer sees the
//! reader's count (and waits):
//! no reader is ever inside after [`ReaderGate::wait_empty`] returns. The
//! closer waits for readers rather than the last reader doing the wipe,
//! because readers hold the key only for one seal or open and never block.
//!
//! Model-checked with loom (`tests/loom_gate.rs`).

use crate::sync::{AtomicU32, Ordering};

/// Each side's store-then-load (a reader's count then the gate; the
/// closer's gate then the counts) is the store-buffering pattern. With every
/// access `SeqCst`, as here, the memory model forbids both loads missing the
/// other side's store (one total order of `SeqCst` operations). loom models
/// `SeqCst` accesses as acquire/release only, and found exactly that
/// interleaving without a fence; it does model `SeqCst` fences, so the
/// model runs with one on each side, and the real build (where the fence
/// would be a redundant `mfence` after a locked instruction) without.
#[inline]
fn sc_fence() {
    #[cfg(loom)]
    crate::sync::fence(Ordering::SeqCst);
}

/// Reader counters (each on its own cache line).
pub const GATE_SLOTS: usize = 8;

#[repr(C, align(64))]
struct Slot(AtomicU32);

/// A gate readers pass while it is open; closed once per use of the page
/// (see [`ReaderGate::reopen`]).
///
/// All-zero is the initial (open, empty) state, so it is valid in fresh
/// zeroed memory (the key page).
#[repr(C)]
pub struct ReaderGate {
    closed: Slot,                // 0 while open, else the reasons it was closed
    done: Slot,                  // set once the closer finished its work (the wipe)
    readers: [Slot; GATE_SLOTS], // readers inside, per slot
}

impl Default for ReaderGate {
    fn default() -> Self {
        Self::new()
    }
}

impl ReaderGate {
    crate::sync::const_fn_unless_loom! {
        /// Open, nobody inside.
        pub fn new() -> ReaderGate {
            ReaderGate {
                closed: Slot(AtomicU32::new(0)),
                done: Slot(AtomicU32::new(0)),
                readers: crate::sync::array_of![Slot(AtomicU32::new(0)); GATE_SLOTS],
            }
        }
    }

    /// Enters through counter `slot` (any number; threads spread over the
    /// counters). `Err(reasons)` if the gate is closed.
    #[inline]
    pub fn enter(&self, slot: usize) -> Result<(), u32> {
        let counter = &self.readers[slot % GATE_SLOTS].0;
        counter.fetch_add(1, Ordering::SeqCst);
        sc_fence();
        match self.closed.0.load(Ordering::SeqCst) {
            0 => Ok(()),
            reasons => {
                counter.fetch_sub(1, Ordering::SeqCst);
                Err(reasons)
            }
        }
    }

    /// Leaves through the counter `enter` used.
    #[inline]
    pub fn leave(&self, slot: usize) {
        self.readers[slot % GATE_SLOTS]
            .0
            .fetch_sub(1, Ordering::SeqCst);
    }

    /// Closes the gate for `reasons` (non-zero). Returns `true` for the one
    /// caller that closed it.
    pub fn close(&self, reasons: u32) -> bool {
        debug_assert!(reasons != 0);
        self.closed
            .0
            .compare_exchange(0, reasons, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Why the gate was closed, if it was.
    pub fn closed(&self) -> Option<u32> {
        match self.closed.0.load(Ordering::SeqCst) {
            0 => None,
            reasons => Some(reasons),
        }
    }

    /// Waits until no reader is inside. After [`Self::close`], no reader can
    /// enter again, so when this returns the gate stays empty.
    pub fn wait_empty(&self) {
        sc_fence();
        for slot in &self.readers {
            let mut backoff = crate::sync::Backoff::new();
            while slot.0.load(Ordering::SeqCst) != 0 {
                backoff.snooze();
            }
        }
    }

    /// Opens a closed and finished gate again, for a key page refilled with
    /// a new key (a re-key reuses the page of a retired generation). The
    /// caller has written the new contents before this call, and no reader
    /// is inside: once closed, readers only pass through and back out.
    pub fn reopen(&self) {
        self.done.0.store(0, Ordering::SeqCst);
        self.closed.0.store(0, Ordering::SeqCst);
    }

    /// Records that the closer's work (the wipe) is done.
    pub fn finish(&self) {
        self.done.0.store(1, Ordering::Release);
    }

    /// Whether [`Self::finish`] ran.
    pub fn is_finished(&self) -> bool {
        self.done.0.load(Ordering::Acquire) != 0
    }
}
