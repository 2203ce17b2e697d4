//! The one fork protocol.
//!
//! `pthread_atfork` runs prepare handlers in reverse order of registration,
//! so handlers registered by several modules take their locks in an order
//! that depends on which module started first — the deadlock this protocol
//! exists to rule out. Instead, exactly one set of handlers is registered
//! (once, by whichever part of the crate starts first), and each module
//! *joins* the protocol under the [`Rank`] of its locks. The handlers walk
//! the ranks in the hierarchy's order:
//!
//! - prepare: every participant's `lock`, lowest rank first (the order every
//!   other path takes locks in, see [`super::rank`]);
//! - parent: every `unlock`, highest rank first;
//! - child: every `unlock`, highest rank first, then every `after_child`,
//!   lowest rank first (re-locking memory, disabling the key), once no lock
//!   of the crate is held.
//!
//! Joining is allocation-free (a pointer store per rank) and idempotent.

use super::rank::{Rank, RANK_COUNT};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU8, Ordering};

/// What one module does at each step of a `fork`.
pub(crate) struct Participant {
    /// Takes every lock this module has at its rank, and keeps them.
    pub(crate) lock: fn(),
    /// Releases them (parent and child).
    ///
    /// # Safety
    /// Called only after `lock`, on the thread that ran it (or the child's
    /// only thread).
    pub(crate) unlock: unsafe fn(),
    /// Repairs the child's state once every lock is free.
    pub(crate) after_child: fn(),
}

/// One participant per rank (null: none yet).
static PARTICIPANTS: [AtomicPtr<Participant>; RANK_COUNT] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; RANK_COUNT];

const UNREGISTERED: u8 = 0;
const REGISTERING: u8 = 1;
const REGISTERED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNREGISTERED);

/// Adds `participant` to the protocol for the locks of `rank`, registering
/// the process's fork handlers if this is the first participant.
pub(crate) fn join(rank: Rank, participant: &'static Participant) {
    PARTICIPANTS[rank as usize].store(
        participant as *const Participant as *mut Participant,
        Ordering::Release,
    );
    if STATE
        .compare_exchange(
            UNREGISTERED,
            REGISTERING,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    {
        // `pthread_atfork` may allocate (glibc keeps the handlers in a
        // growable array); under the preload that allocation re-enters the
        // start-up path, which serves it from the boot buffer. A thread that
        // sees REGISTERING does not wait for it, so re-entry cannot hang.
        if crate::sys::register_atfork(prepare, parent, child).is_err() {
            // Without handlers a fork taken while another thread holds a
            // lock leaves the child's copy of it held; say so once.
            crate::sys::write_stderr(
                b"secalloc: warning: pthread_atfork failed; fork() from a multithreaded process may hang the child\n",
            );
        }
        STATE.store(REGISTERED, Ordering::Release);
    }
}

/// The participants whose locks `prepare` took (bit per rank), so that a
/// module joining while a fork is under way is not unlocked without having
/// been locked.
static TAKEN: AtomicU32 = AtomicU32::new(0);

fn participant(rank: usize) -> Option<&'static Participant> {
    let p = PARTICIPANTS[rank].load(Ordering::Acquire);
    // SAFETY: only `&'static Participant`s are ever stored.
    (!p.is_null()).then(|| unsafe { &*p })
}

fn taken(rank: usize) -> Option<&'static Participant> {
    if TAKEN.load(Ordering::Relaxed) & (1 << rank) != 0 {
        participant(rank)
    } else {
        None
    }
}

unsafe extern "C" fn prepare() {
    let mut taken = 0;
    for rank in 0..RANK_COUNT {
        if let Some(p) = participant(rank) {
            (p.lock)();
            taken |= 1 << rank;
        }
    }
    TAKEN.store(taken, Ordering::Relaxed);
}

unsafe extern "C" fn parent() {
    for rank in (0..RANK_COUNT).rev() {
        if let Some(p) = taken(rank) {
            // SAFETY: `prepare` ran this participant's `lock` on this thread.
            unsafe { (p.unlock)() };
        }
    }
}

unsafe extern "C" fn child() {
    for rank in (0..RANK_COUNT).rev() {
        if let Some(p) = taken(rank) {
            // SAFETY: `prepare` ran this participant's `lock` in the thread
            // that forked, which is the child's only thread.
            unsafe { (p.unlock)() };
        }
    }
    for rank in 0..RANK_COUNT {
        if let Some(p) = participant(rank) {
            (p.after_child)();
        }
    }
}
