//! The crate's lock hierarchy: every lock has a rank, and a thread may take
//! a lock only while every lock it already holds has a *lower* rank. The
//! fork protocol ([`super::fork`]) takes every lock in this same order, so a
//! `fork` can never wait on a lock whose holder waits on one that `fork`
//! already took.
//!
//! | rank | lock | guards | may take while held |
//! |---:|---|---|---|
//! | 0 | `KeyCreation` | creating the key page (once) | class, pool, large (ring may allocate) |
//! | 1 | `HeapClass` | one central list of one class and shard | pool |
//! | 2 | `HeapPool` | a heap's empty slabs and commit frontier | nothing (system calls only) |
//! | 3 | `LargeRegistry` | a heap's large-block table and cache | nothing (system calls only) |
//! | 4 | `SecretRegistry` | one of the secret registry's 4 shards (entries, free list) | nothing: never calls into the arena |
//!
//! No path holds two locks of one rank (two class lists, or one lock in
//! each heap), so equal ranks are a violation too. A new lock gets a row here
//! before it gets a caller.
//!
//! With debug assertions, or `--cfg secalloc_lockdep` (the test suite sets
//! it), each thread keeps a bit per rank it holds and an out-of-order
//! acquisition aborts with both names, before it can deadlock. The
//! bookkeeping is a `const`-initialised thread-local without a destructor, so
//! it never allocates.

/// A place in the lock hierarchy. Lower ranks are taken first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Rank {
    /// The key page's one-time creation.
    KeyCreation = 0,
    /// A central list (one size class, one shard) of a heap.
    HeapClass = 1,
    /// A heap's pool of empty slabs and its commit frontier.
    HeapPool = 2,
    /// A heap's large-block registry and cache.
    LargeRegistry = 3,
    /// The secret registry: a leaf.
    SecretRegistry = 4,
}

/// Number of ranks.
pub(crate) const RANK_COUNT: usize = 5;

#[cfg_attr(not(any(debug_assertions, secalloc_lockdep)), allow(dead_code))]
impl Rank {
    /// Every rank, in acquisition order.
    pub(crate) const ALL: [Rank; RANK_COUNT] = [
        Rank::KeyCreation,
        Rank::HeapClass,
        Rank::HeapPool,
        Rank::LargeRegistry,
        Rank::SecretRegistry,
    ];

    /// The lock's name, for the violation message.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Rank::KeyCreation => "key-creation",
            Rank::HeapClass => "heap-class-list",
            Rank::HeapPool => "heap-pool",
            Rank::LargeRegistry => "large-block-registry",
            Rank::SecretRegistry => "secret-registry",
        }
    }
}

#[cfg(all(not(loom), any(debug_assertions, secalloc_lockdep)))]
mod checked {
    use super::{Rank, RANK_COUNT};
    use core::cell::Cell;

    std::thread_local! {
        /// Bit `r` set while this thread holds a lock of rank `r`.
        static HELD: Cell<u32> = const { Cell::new(0) };
    }

    #[inline]
    pub(crate) fn acquire(rank: Rank) {
        let _ = HELD.try_with(|held| {
            let bits = held.get();
            // Any held rank at or above this one is an inversion.
            let above = bits >> rank as u32;
            if above != 0 {
                let highest = 31 - bits.leading_zeros();
                let holding = Rank::ALL[(highest as usize).min(RANK_COUNT - 1)];
                crate::sys::fatal_parts(&[
                    b"lock order violation: took ",
                    rank.name().as_bytes(),
                    b" while holding ",
                    holding.name().as_bytes(),
                ]);
            }
            held.set(bits | 1 << rank as u32);
        });
    }

    #[inline]
    pub(crate) fn release(rank: Rank) {
        let _ = HELD.try_with(|held| held.set(held.get() & !(1 << rank as u32)));
    }
}

#[cfg(all(not(loom), any(debug_assertions, secalloc_lockdep)))]
pub(crate) use checked::{acquire, release};

/// Unchecked builds: no bookkeeping.
#[cfg(any(loom, not(any(debug_assertions, secalloc_lockdep))))]
#[inline(always)]
pub(crate) fn acquire(_rank: Rank) {}

/// Unchecked builds: no bookkeeping.
#[cfg(any(loom, not(any(debug_assertions, secalloc_lockdep))))]
#[inline(always)]
pub(crate) fn release(_rank: Rank) {}

#[cfg(all(test, not(loom), any(debug_assertions, secalloc_lockdep)))]
mod tests {
    use super::Rank;
    use crate::sync::Mutex;

    /// Runs `f` in a forked child; returns its wait status.
    fn in_child(f: fn()) -> libc::c_int {
        // SAFETY: the child only takes this crate's spin locks (no lock
        // another thread of the test harness could hold) and then exits.
        #[allow(unsafe_code)]
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                f();
                libc::_exit(0);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            status
        }
    }

    static LOW: Mutex<()> = Mutex::new(Rank::HeapClass, ());
    static HIGH: Mutex<()> = Mutex::new(Rank::HeapPool, ());
    static HIGH_TOO: Mutex<()> = Mutex::new(Rank::HeapPool, ());

    #[test]
    fn taking_locks_in_rank_order_is_allowed() {
        // (Only forked children touch these locks, so no thread of the
        // harness can hold one across a fork.)
        let status = in_child(|| {
            let low = LOW.lock();
            let high = HIGH.lock();
            drop(high);
            drop(low);
            // Sequential use of one rank is fine too.
            drop(HIGH.lock());
            drop(HIGH_TOO.lock());
        });
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    #[test]
    fn an_inversion_or_two_locks_of_one_rank_abort() {
        for f in [
            (|| {
                let _high = HIGH.lock();
                let _low = LOW.lock();
            }) as fn(),
            || {
                let _one = HIGH.lock();
                let _two = HIGH_TOO.lock();
            },
        ] {
            let status = in_child(f);
            assert!(
                libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
                "status {status:#x}"
            );
        }
    }
}
