//! The loom ↔ core shim: atomics, `UnsafeCell`, the spin lock and the spin
//! hint, so that the arena's concurrent core compiles unchanged under
//! `cfg(loom)` and is model-checked there.
//!
//! In normal builds the lock is `spin::Mutex`: it is `const`-constructible (the
//! allocator is a `static`), never allocates, and offers `force_unlock`, which
//! the `fork` handlers need. Under loom it is loom's own mutex, which the model
//! checker can see.

#![allow(unsafe_code)]

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};

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

/// A spin lock (loom's mutex under the model checker).
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

impl<T> Mutex<T> {
    const_fn_unless_loom! {
        /// A new, unlocked mutex.
        pub(crate) fn new(value: T) -> Self {
            Mutex {
                #[cfg(not(loom))]
                inner: spin::Mutex::new(value),
                #[cfg(loom)]
                inner: loom::sync::Mutex::new(value),
            }
        }
    }

    /// Acquires the lock.
    #[inline]
    pub(crate) fn lock(&self) -> impl core::ops::DerefMut<Target = T> + '_ {
        #[cfg(not(loom))]
        return self.inner.lock();
        #[cfg(loom)]
        return self.inner.lock().unwrap();
    }

    /// Acquires the lock and keeps it held past the end of the call, for the
    /// `fork` prepare handler. Pair with [`Mutex::force_unlock`].
    #[cfg(not(loom))]
    pub(crate) fn lock_and_forget(&self) {
        core::mem::forget(self.inner.lock());
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
