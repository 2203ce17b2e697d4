//! The arena's part in the fork protocol (`sync::fork`): at each rank, the
//! locks of that rank in both heaps; in the child, once every lock is free,
//! the heaps lock their memory again (the kernel gives a child no memory
//! locks) and correct their books where it refuses.

use super::HEAPS;
use crate::sync::fork::{join, Participant};
use crate::sync::Rank;

fn nothing() {}

static CLASSES: Participant = Participant {
    lock: || HEAPS.iter().for_each(|h| h.lock_classes_for_fork()),
    unlock: || {
        for heap in HEAPS.iter().rev() {
            // SAFETY: the protocol calls `unlock` only after `lock` on the
            // same thread (or the child's only thread).
            unsafe { heap.unlock_classes_after_fork() };
        }
    },
    after_child: || HEAPS.iter().for_each(|h| h.relock_after_fork()),
};

static POOLS: Participant = Participant {
    lock: || HEAPS.iter().for_each(|h| h.lock_pool_for_fork()),
    unlock: || {
        for heap in HEAPS.iter().rev() {
            // SAFETY: as above.
            unsafe { heap.unlock_pool_after_fork() };
        }
    },
    after_child: nothing,
};

static LARGE: Participant = Participant {
    lock: || HEAPS.iter().for_each(|h| h.large.lock_and_forget()),
    unlock: || {
        for heap in HEAPS.iter().rev() {
            // SAFETY: as above.
            unsafe { heap.large.force_unlock() };
        }
    },
    after_child: nothing,
};

/// Joins the fork protocol with every arena lock (once, at start-up).
pub(crate) fn join_fork_protocol() {
    join(Rank::HeapClass, &CLASSES);
    join(Rank::HeapPool, &POOLS);
    join(Rank::LargeRegistry, &LARGE);
}
