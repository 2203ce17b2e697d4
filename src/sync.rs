//! Synchronisation: the loom ↔ core shim (atomics, `UnsafeCell`, the spin
//! hint), the crate's one lock type with its rank in the lock hierarchy
//! ([`rank`]), back-off for waiting, and the one fork protocol ([`fork`]).
//!
//! Everything compiles unchanged under `cfg(loom)`, where the lock is loom's
//! own mutex so the model checker can see it.

#![allow(unsafe_code)]

#[cfg(not(loom))]
pub(crate) mod fork;
pub(crate) mod rank;

pub(crate) use rank::Rank;

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{
    AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

/// Defines a function that is `const` in normal builds and a plain function
/// under loom (whose primitives have no `const` constructors).
macro_rules! const_fn_unless_loom {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($args:tt)*) -> $ret:ty $body:block) => {
        #[cfg(not(loom))]
        $(#[$meta])* $vis const fn $name($($args)*) -> $ret $body
        #[cfg(loom)]
        $(#[$meta])* $vis fn $name($($args)*) -> $ret $body
    };
}
pub(crate) use const_fn_unless_loom;

/// `[value; N]` for a non-`Copy` value: an inline `const` block normally, a
/// per-element constructor call under loom.
macro_rules! array_of {
    ($value:expr; $n:expr) => {{
        #[cfg(not(loom))]
        let array = [const { $value }; $n];
        #[cfg(loom)]
        let array = core::array::from_fn(|_| $value);
        array
    }};
}
pub(crate) use array_of;

/// A hint that we are spinning; a real yield under loom so that the model
/// makes progress.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Waiting that gets politer the longer it lasts: a few rounds of doubling
/// spin hints (a lock holder on another core is usually out within
/// nanoseconds), then `sched_yield`, then short sleeps, so a waiter never
/// burns a core that the holder — perhaps preempted, perhaps in a long
/// `purge` — needs.
pub(crate) struct Backoff {
    round: u32, // rounds waited so far
}

impl Backoff {
    /// Spin rounds before the first yield (2^6 = 64 hints in the last one).
    const SPIN_ROUNDS: u32 = 6;

    /// A fresh wait.
    pub(crate) const fn new() -> Backoff {
        Backoff { round: 0 }
    }

    /// Yield rounds before the waiter starts sleeping: `sched_yield` on an
    /// otherwise idle core returns at once, so a long wait (a purge wiping
    /// gigabytes under the registry lock) would still be a busy loop.
    const YIELD_ROUNDS: u32 = Self::SPIN_ROUNDS + 16;

    /// Waits a little longer than last time.
    #[inline]
    pub(crate) fn snooze(&mut self) {
        if self.round < Self::SPIN_ROUNDS {
            for _ in 0..1u32 << self.round {
                spin_hint();
            }
            self.round += 1;
        } else if self.round < Self::YIELD_ROUNDS {
            crate::sys::sched_yield();
            self.round += 1;
        } else {
            crate::sys::sleep_briefly();
        }
    }
}

/// A spin lock with a place in the crate's lock hierarchy ([`Rank`]); loom's
/// mutex under the model checker.
///
/// In normal builds it is a `spin::Mutex`: `const`-constructible (the
/// allocator is a `static`), never allocates, and can be force-unlocked,
/// which the fork protocol needs. Waiting backs off ([`Backoff`]). With
/// debug assertions (or `--cfg secalloc_lockdep`) every acquisition is
/// checked against the locks the thread already holds ([`rank`]).
pub(crate) struct Mutex<T> {
    rank: Rank,
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// Proof that a [`Mutex`] is held; releases it (and its rank) when dropped.
pub(crate) struct MutexGuard<'a, T> {
    rank: Rank,
    #[cfg(not(loom))]
    inner: spin::MutexGuard<'a, T>,
    #[cfg(loom)]
    inner: loom::sync::MutexGuard<'a, T>,
}

impl<T> Mutex<T> {
    const_fn_unless_loom! {
        /// A new, unlocked mutex at `rank` in the lock hierarchy.
        pub(crate) fn new(rank: Rank, value: T) -> Self {
            Mutex {
                rank,
                #[cfg(not(loom))]
                inner: spin::Mutex::new(value),
                #[cfg(loom)]
                inner: loom::sync::Mutex::new(value),
            }
        }
    }

    /// Acquires the lock, checking the hierarchy first (so a wrong order is
    /// reported rather than left to deadlock).
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        rank::acquire(self.rank);
        #[cfg(not(loom))]
        let inner = match self.inner.try_lock() {
            Some(guard) => guard,
            None => self.lock_contended(),
        };
        #[cfg(loom)]
        let inner = self.inner.lock().unwrap();
        MutexGuard {
            rank: self.rank,
            inner,
        }
    }

    #[cfg(not(loom))]
    #[cold]
    fn lock_contended(&self) -> spin::MutexGuard<'_, T> {
        let mut backoff = Backoff::new();
        loop {
            backoff.snooze();
            if let Some(guard) = self.inner.try_lock() {
                return guard;
            }
        }
    }

    /// Acquires the lock and keeps it held past the end of the call, for the
    /// `fork` prepare handler (which takes every lock, in rank order, outside
    /// the per-thread bookkeeping). Pair with [`Mutex::force_unlock`].
    #[cfg(not(loom))]
    pub(crate) fn lock_and_forget(&self) {
        let mut backoff = Backoff::new();
        loop {
            if let Some(guard) = self.inner.try_lock() {
                core::mem::forget(guard);
                return;
            }
            backoff.snooze();
        }
    }

    /// Releases a lock taken by [`Mutex::lock_and_forget`].
    ///
    /// # Safety
    /// The lock must be held through `lock_and_forget` by this thread (or, in
    /// a `fork` child, by the thread that forked) and no guard may exist.
    #[cfg(not(loom))]
    pub(crate) unsafe fn force_unlock(&self) {
        // SAFETY: the caller guarantees the lock is held with no live guard.
        unsafe { self.inner.force_unlock() }
    }
}

impl<T> core::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // The inner guard is released right after this, as the field drops;
        // clearing the rank first only makes the check more permissive for
        // that instant, never stricter.
        rank::release(self.rank);
    }
}

/// An `UnsafeCell` with loom's closure-based access API.
pub(crate) struct UnsafeCell<T> {
    #[cfg(not(loom))]
    inner: core::cell::UnsafeCell<T>,
    #[cfg(loom)]
    inner: loom::cell::UnsafeCell<T>,
}

#[allow(dead_code)]
impl<T> UnsafeCell<T> {
    const_fn_unless_loom! {
        /// Wraps `value`.
        pub(crate) fn new(value: T) -> Self {
            UnsafeCell {
                #[cfg(not(loom))]
                inner: core::cell::UnsafeCell::new(value),
                #[cfg(loom)]
                inner: loom::cell::UnsafeCell::new(value),
            }
        }
    }

    /// Runs `f` with a shared raw pointer to the contents.
    #[allow(dead_code)]
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.inner.get());
        #[cfg(loom)]
        return self.inner.with(f);
    }

    /// Runs `f` with a mutable raw pointer to the contents.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.inner.get());
        #[cfg(loom)]
        return self.inner.with_mut(f);
    }
}
