//! `SecureAlloc`: the thin public face of the arena. It picks a heap by lock
//! policy, routes small requests through the thread cache to the slab heap and
//! large ones to dedicated mappings, and implements `GlobalAlloc` and
//! `allocator_api2::alloc::Allocator` on top.
//!
//! Every byte handed out is in memory that is `mlock`ed (or, under
//! [`LockPolicy::BestEffort`], counted in [`Stats::unlocked_bytes`] when the
//! kernel refused) and `MADV_DONTDUMP`; every byte freed is wiped before reuse,
//! so free memory is always zero and `alloc_zeroed` costs nothing extra.

#![allow(unsafe_code)]

pub(crate) mod budget;
pub(crate) mod checked;
pub(crate) mod heap;
pub(crate) mod large;
pub(crate) mod size_class;
pub(crate) mod slab;
pub(crate) mod thread_cache;
pub(crate) mod wipe;

/// For the `LD_PRELOAD` library: per-thread caches in a C shim's
/// initial-exec TLS block (see [`use_external_thread_block`]).
#[cfg(not(loom))]
#[doc(hidden)]
pub use thread_cache::{use_external_thread_block, EXTERNAL_THREAD_BLOCK_BYTES};

#[cfg(not(loom))]
mod fork;
#[cfg(not(loom))]
mod global;
#[cfg(all(not(loom), secalloc_test_hooks))]
pub mod inspect;
#[cfg(loom)]
pub mod model;

#[cfg(not(loom))]
pub(crate) use global::{check_copy_range, requested_size};
pub use size_class::{CLASS_COUNT, SIZE_CLASSES, SMALL_SIZE_MAX};

#[cfg(not(loom))]
pub use global::SecureAlloc;
#[cfg(not(loom))]
pub(crate) use global::HEAPS;

/// What the arena does when the kernel refuses to lock more memory
/// (`RLIMIT_MEMLOCK` reached, no `CAP_IPC_LOCK`).
///
/// ```
/// use secalloc::{LockPolicy, SecureAlloc};
/// assert_eq!(SecureAlloc::new().policy(), LockPolicy::FailClosed);
/// assert_eq!(SecureAlloc::best_effort().policy(), LockPolicy::BestEffort);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockPolicy {
    /// The allocation fails (null / `AllocError`). Every byte this allocator
    /// ever hands out is locked. The default.
    FailClosed,
    /// The arena keeps growing in unlocked (still dump-excluded, still wiped)
    /// memory, and counts it in [`Stats::unlocked_bytes`] and
    /// [`Stats::lock_refusals`].
    BestEffort,
}

/// How much heap-misuse checking an allocator does (see SECURITY.md for
/// what each level catches). Both rely on the arena's zero invariant —
/// every freed byte is wiped, so free memory is always zero.
///
/// ```
/// use secalloc::{CheckLevel, SecureAlloc};
/// let strict = SecureAlloc::new().with_checks(CheckLevel::Full);
/// assert_eq!(strict.checks(), CheckLevel::Full);
/// assert_eq!(SecureAlloc::new().checks(), CheckLevel::Default);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CheckLevel {
    /// Only the checks that are always on (double, invalid and mismatched
    /// frees): for measuring what the others cost.
    Off,
    /// At allocation, the slot's first 16 bytes must still be zero (else a
    /// write after free is reported); at free, up to 16 bytes of slack past
    /// the block's end must be zero (else a heap overflow). A few loads on
    /// lines the caller touches anyway.
    #[default]
    Default,
    /// As `Default`, over the whole slot and all of the slack.
    Full,
}

impl CheckLevel {
    /// The level an operator chose in `SECALLOC_CHECKS` (`off`, `default`
    /// or `full`), for the `LD_PRELOAD` library; `Default` when it is not
    /// set. Any other value fails closed to `Full`, with one line on stderr
    /// naming the value (a typo such as `FULL` used to mean `Default`
    /// silently: found by the issue-14 attack review).
    pub fn from_env_or_default() -> CheckLevel {
        crate::sys::with_env(c"SECALLOC_CHECKS", |v| match v {
            None | Some(b"default") => CheckLevel::Default,
            Some(b"full") => CheckLevel::Full,
            Some(b"off") => CheckLevel::Off,
            Some(other) => {
                crate::sys::warn(&[
                    b"SECALLOC_CHECKS=\"",
                    other,
                    b"\" is not off, default or full: using full",
                ]);
                CheckLevel::Full
            }
        })
    }
}

/// Number of heaps: one per [`LockPolicy`].
pub(crate) const HEAP_COUNT: usize = 2;

impl LockPolicy {
    /// The policy an operator chose in `SECALLOC_LOCK` (the same variable
    /// and names as the `LD_PRELOAD` library): `require` (or `fail-closed`)
    /// for [`LockPolicy::FailClosed`], `best-effort` for
    /// [`LockPolicy::BestEffort`]. `None` if the variable is not set.
    ///
    /// ```
    /// use secalloc::{LockPolicy, SecureAlloc};
    ///
    /// // Fail closed unless the operator asked otherwise.
    /// let policy = LockPolicy::from_env()?.unwrap_or(LockPolicy::FailClosed);
    /// let alloc = SecureAlloc::with_policy(policy);
    /// # let _ = alloc;
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidPolicy` for any other value: a typo must not silently pick
    /// a policy.
    pub fn from_env() -> Result<Option<LockPolicy>, crate::Error> {
        crate::sys::with_env(c"SECALLOC_LOCK", |value| match value {
            None => Ok(None),
            Some(v) => Self::parse(v).map(Some).ok_or(crate::Error::InvalidPolicy),
        })
    }

    /// [`Self::from_env`], with an unset variable meaning the default,
    /// fail-closed (for the preload, which cannot report an error). Any
    /// other value fails closed too, with one line on stderr naming it.
    #[doc(hidden)]
    pub fn from_env_or_default() -> LockPolicy {
        crate::sys::with_env(c"SECALLOC_LOCK", |value| match value {
            None => LockPolicy::FailClosed,
            Some(v) => Self::parse(v).unwrap_or_else(|| {
                crate::sys::warn(&[
                    b"SECALLOC_LOCK=\"",
                    v,
                    b"\" is not require, fail-closed or best-effort: using require",
                ]);
                LockPolicy::FailClosed
            }),
        })
    }

    fn parse(value: &[u8]) -> Option<LockPolicy> {
        match value {
            b"require" | b"fail-closed" | b"fail_closed" => Some(LockPolicy::FailClosed),
            b"best-effort" | b"best_effort" => Some(LockPolicy::BestEffort),
            _ => None,
        }
    }

    /// Index of this policy's heap.
    pub(crate) const fn heap_index(self) -> usize {
        match self {
            LockPolicy::FailClosed => 0,
            LockPolicy::BestEffort => 1,
        }
    }
}

/// A snapshot of one heap's memory, from [`SecureAlloc::stats`].
///
/// Figures are gathered without stopping other threads, so under concurrent
/// use they are approximate; with the process quiescent they are exact.
///
/// ```
/// let a = secalloc::SecureAlloc::new();
/// let v = secalloc::allocator_api2::vec![in a; 7u8; 100];
/// let stats = a.stats();
/// assert!(stats.live_allocations >= 1 && stats.unlocked_bytes == 0);
/// # drop(v);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The heap's lock policy.
    pub policy: LockPolicy,
    /// Bytes of slab memory committed plus data bytes of large blocks (live
    /// and cached).
    pub mapped_bytes: usize,
    /// Bytes of that memory the kernel has locked.
    pub locked_bytes: usize,
    /// Bytes of that memory running unlocked because locking was refused
    /// (always 0 under [`LockPolicy::FailClosed`]).
    pub unlocked_bytes: usize,
    /// Bytes in live allocations, counted by slot size for small ones and by
    /// page-rounded size for large ones.
    pub in_use_bytes: usize,
    /// Live allocations of all sizes.
    pub live_allocations: usize,
    /// Live allocations per size class ([`SIZE_CLASSES`]).
    pub live_per_class: [usize; CLASS_COUNT],
    /// Live large allocations (own mapping each).
    pub large_live: usize,
    /// Wiped large blocks kept mapped (and locked, policy permitting) for reuse.
    pub large_cached_bytes: usize,
    /// Lock budget held by memory nothing uses: empty slabs kept locked
    /// for reuse plus locked cached large blocks. Capped relative to
    /// `RLIMIT_MEMLOCK`, and given back before any lock is refused.
    pub idle_locked_bytes: usize,
    /// How many times the kernel refused to lock memory for this heap.
    pub lock_refusals: usize,
    /// The `errno` of the last refusal, if any (`EPERM`, `ENOMEM`, `EAGAIN`).
    pub last_refusal_errno: Option<i32>,
}

impl Stats {
    pub(crate) fn collect(heap: &heap::Heap) -> Stats {
        use crate::sync::Ordering::Relaxed;
        let mut live_per_class = [0usize; CLASS_COUNT];
        let committed = heap.small_stats(&mut live_per_class);
        let large = heap.large.stats();
        let small_live: usize = live_per_class.iter().sum();
        let small_bytes: usize = live_per_class
            .iter()
            .zip(SIZE_CLASSES.iter())
            .map(|(n, size)| n * size)
            .sum();
        let errno = heap.last_refusal_errno.load(Relaxed);
        Stats {
            policy: heap.policy(),
            mapped_bytes: committed + large.live_bytes + large.cached_bytes,
            locked_bytes: heap.locked_bytes.load(Relaxed),
            unlocked_bytes: heap.unlocked_bytes.load(Relaxed),
            in_use_bytes: small_bytes + large.live_bytes,
            live_allocations: small_live + large.live,
            live_per_class,
            large_live: large.live,
            large_cached_bytes: large.cached_bytes,
            idle_locked_bytes: heap.idle_locked_bytes() + large.cached_locked_bytes,
            lock_refusals: heap.lock_refusals.load(Relaxed),
            last_refusal_errno: (errno != 0).then_some(errno as i32),
        }
    }
}

/// One-time process set-up, run by the first heap to start: raise the soft
/// `RLIMIT_MEMLOCK` to the hard limit, read the budget's facts, create the
/// thread-exit key, and join the fork protocol. Idempotent and
/// allocation-free (but for what `pthread_atfork` itself may allocate).
pub(crate) fn process_setup() {
    #[cfg(not(loom))]
    {
        use crate::sync::{AtomicU8, Ordering};
        static STATE: AtomicU8 = AtomicU8::new(0);
        match STATE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                let _ = crate::sys::raise_memlock_to_hard_limit();
                budget::init();
                thread_cache::create_exit_key();
                fork::join_fork_protocol();
                STATE.store(2, Ordering::Release);
            }
            Err(_) => {
                let mut backoff = crate::sync::Backoff::new();
                while STATE.load(Ordering::Acquire) != 2 {
                    backoff.snooze();
                }
            }
        }
    }
}

/// Passes every piece of arena memory in this process (committed slabs of
/// both heaps, live and cached large blocks) to `f` as `(start, len)`.
/// Addresses only: for matching against `/proc/self/smaps`.
///
/// `f` runs with no lock of the arena held, so it may allocate (with
/// `SecureAlloc` as the global allocator, it allocates from this arena).
/// Under concurrent allocation the regions are a best-effort snapshot.
///
/// ```
/// let mut bytes = 0;
/// secalloc::arena::for_each_region(|_start, len| bytes += len);
/// # let _ = bytes;
/// ```
#[cfg(not(loom))]
pub fn for_each_region(mut f: impl FnMut(usize, usize)) {
    for heap in &HEAPS {
        heap.for_each_committed_run(&mut f);
        // A block cached under `CheckLevel::Full` is `PROT_NONE`: nothing
        // to read there.
        heap.large.for_each_block(|block, _live| {
            if !block.protected {
                f(block.data, block.open_len)
            }
        });
    }
}
