//! The access protocol of each secret's storage (the key page has a reader
//! gate of its own, `gate.rs`, built for many threads at once): readers
//! *pin* the object while they touch it; `purge`, expiry or destroy
//! *kill* it; and exactly one party — the killer if nobody is pinned, else the
//! last reader to unpin — wipes it, never while anyone is still inside.
//!
//! A *rewrite in place* by someone who does not own the secret (the
//! re-keying sweep, or a reader moving its secret to the new key) is
//! exclusive: it raises [`WRITER`], which holds off new pins, waits until
//! the pinned readers have left, rewrites, and lowers it. While it is raised
//! nobody can claim the wipe; if the object was killed meanwhile, the
//! writer claims it as it finishes.
//!
//! One `AtomicU32` holds the reader count and the flags, so every transition
//! is a single atomic step. The protocol is model-checked with loom
//! (`tests/loom_pin.rs`).

use crate::sync::{AtomicU32, Ordering};

const COUNT_MASK: u32 = 0x00FF_FFFF; // readers currently pinned
const DEAD: u32 = 1 << 24; // no new pins; wipe when the count reaches zero
const WIPED: u32 = 1 << 25; // the wipe has been claimed (exactly once)
const DONE: u32 = 1 << 29; // the claimed wipe has been carried out
/// An exclusive rewrite is in progress (or waiting for readers to leave).
const WRITER: u32 = 1 << 30;
/// Kill reason: `purge()` was called.
pub const PURGED: u32 = 1 << 26;
/// Kill reason: the expiry time passed.
pub const EXPIRED: u32 = 1 << 27;
/// Kill reason: destroyed by its owner.
pub const DESTROYED: u32 = 1 << 28;

/// Pin count and life-cycle flags of one protected object.
///
/// All-zero is the initial (alive, unpinned) state, so it is valid in fresh
/// zeroed memory.
pub struct PinState {
    word: AtomicU32,
}

impl Default for PinState {
    fn default() -> Self {
        Self::new()
    }
}

impl PinState {
    crate::sync::const_fn_unless_loom! {
        /// Alive, nobody pinned.
        pub fn new() -> PinState {
            PinState { word: AtomicU32::new(0) }
        }
    }

    /// Back to alive and unpinned, for an entry being reused (its previous
    /// owner is gone: nobody can be pinned).
    pub(crate) fn reset(&self) {
        self.word.store(0, Ordering::Relaxed);
    }

    /// Pins the object. `Err(reasons)` if it was killed (the kill reason bits).
    pub fn pin(&self) -> Result<(), u32> {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            if current & DEAD != 0 {
                return Err(current & (PURGED | EXPIRED | DESTROYED));
            }
            if current & COUNT_MASK == COUNT_MASK || current & WRITER != 0 {
                // 16 million concurrent readers, or a rewrite of one secret
                // (one seal) in progress: wait.
                crate::sync::spin_hint();
                current = self.word.load(Ordering::Relaxed);
                continue;
            }
            // Acquire: whatever the last writer published before unpinning
            // or killing is visible to this reader.
            match self.word.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// Unpins. Returns `true` if the caller must now wipe the object: it was
    /// killed while pinned and this was the last reader out.
    #[must_use]
    pub fn unpin(&self) -> bool {
        // Release: this reader's accesses happen before the wipe.
        let previous = self.word.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(previous & COUNT_MASK != 0, "unpin without pin");
        previous & COUNT_MASK == 1 && previous & DEAD != 0 && self.claim_wipe()
    }

    /// Kills the object for `reason`. Returns `true` if the caller must wipe
    /// it now (nobody was pinned and nobody else claimed the wipe).
    #[must_use]
    pub fn kill(&self, reason: u32) -> bool {
        let previous = self.word.fetch_or(DEAD | reason, Ordering::AcqRel);
        previous & COUNT_MASK == 0 && self.claim_wipe()
    }

    /// Starts an exclusive rewrite: holds off new readers and waits for
    /// the pinned ones to leave. The caller must be the only possible
    /// writer (the registry lock makes it so).
    ///
    /// `Ok(())`: exclusive until [`Self::end_exclusive`]. `Err(must_wipe)`:
    /// the object was killed; nothing is held, and if `must_wipe` the caller
    /// must wipe it (the killer could not, while the flag was up).
    pub fn begin_exclusive(&self) -> Result<(), bool> {
        let previous = self.word.fetch_or(WRITER, Ordering::Acquire);
        debug_assert!(previous & WRITER == 0, "two exclusive writers");
        if previous & DEAD != 0 {
            return Err(self.end_exclusive());
        }
        let mut backoff = crate::sync::Backoff::new();
        // Acquire: every pinned reader's accesses happen before the rewrite.
        while self.word.load(Ordering::Acquire) & COUNT_MASK != 0 {
            backoff.snooze();
        }
        Ok(())
    }

    /// Ends an exclusive rewrite. Returns `true` if the caller must now
    /// wipe the object: it was killed during the rewrite (nobody else could
    /// claim the wipe meanwhile).
    #[must_use]
    pub fn end_exclusive(&self) -> bool {
        // Release: the rewrite happens before any later pin or wipe.
        let previous = self.word.fetch_and(!WRITER, Ordering::AcqRel);
        previous & DEAD != 0 && previous & COUNT_MASK == 0 && self.claim_wipe()
    }

    fn claim_wipe(&self) -> bool {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if current & WIPED != 0 || current & COUNT_MASK != 0 || current & WRITER != 0 {
                return false;
            }
            match self.word.compare_exchange_weak(
                current,
                current | WIPED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Whether the wipe has been claimed (by anyone).
    pub fn is_wiped(&self) -> bool {
        self.word.load(Ordering::Acquire) & WIPED != 0
    }

    /// Records that the wipe claimed through `kill` or `unpin` is complete.
    pub fn finish_wipe(&self) {
        self.word.fetch_or(DONE, Ordering::Release);
    }

    /// Whether a claimed wipe has been carried out ([`PinState::finish_wipe`]).
    pub fn is_wipe_done(&self) -> bool {
        self.word.load(Ordering::Acquire) & DONE != 0
    }

    /// Whether the object was killed, and why.
    pub fn killed(&self) -> Option<u32> {
        let w = self.word.load(Ordering::Acquire);
        (w & DEAD != 0).then_some(w & (PURGED | EXPIRED | DESTROYED))
    }
}
