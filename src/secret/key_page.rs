//! The process key, in a page of its own.
//!
//! The page comes from `memfd_secret` where the kernel offers it (it then
//! leaves the kernel's direct map and shows as `secretmem` in
//! `/proc/self/maps`), else from an anonymous mapping. Either way it is
//! locked, `MADV_DONTDUMP`, and gone in a forked child (`MADV_DONTFORK` for
//! the shared `secretmem` mapping, `MADV_WIPEONFORK` for the anonymous one);
//! the fork protocol (`sync::fork`) also marks the key unusable in the
//! child, so `expose` there fails cleanly instead of touching missing memory.
//!
//! [`purge_key`] is final: it is recorded (under the creation lock) before
//! anything else, so a key that does not exist yet is never created
//! afterwards, and a purge racing the first creation cannot be lost.
//!
//! `ring`'s `LessSafeKey` is built in place in the page and never leaves it
//! (it is `Clone` and not wiped on drop); the raw key bytes are generated
//! straight into the page and wiped once the key schedule exists. The page
//! stays readable and writable between uses: an `mprotect` pair per access
//! would cost two system calls, more than the whole seal of a 32-byte secret.

#![allow(unsafe_code)]

use crate::arena::wipe::wipe;
use crate::error::Error;
use crate::gate::ReaderGate;
use crate::pin::PURGED;
use crate::sync::fork::{join, Participant};
use crate::sync::{Backoff, Mutex, Rank};
use crate::sys;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use ring::aead::{LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use static_assertions::const_assert;

/// Bytes of key material (AES-256).
const KEY_LEN: usize = 32;
/// The key page's size (one 4 KiB page on every Linux target we support).
const KEY_PAGE_LEN: usize = 4096;

/// Nonce values a thread reserves at a time.
const NONCE_BLOCK: u64 = 256;

std::thread_local! {
    /// This thread's nonce block: (key page address, next, end).
    static NONCE_CACHE: core::cell::Cell<(usize, u64, u64)> =
        const { core::cell::Cell::new((0, 0, 0)) };
}

/// A value alone on its cache line.
#[repr(C, align(64))]
pub(crate) struct OwnLine<T>(pub(crate) T);

/// Everything that lives in the key page.
///
/// The key fields are `UnsafeCell<MaybeUninit<_>>`: the page is written in
/// place (created, later wiped to zero) while shared references to the
/// `KeyMaterial` exist, and an all-zero `LessSafeKey` is not a valid value.
#[repr(C)]
pub(crate) struct KeyMaterial {
    // What every thread writes — the gate's counters, the nonce counter —
    // sits on lines of its own, so that its traffic never evicts the key
    // schedule other threads are reading (one shared pin word and counter
    // had two threads creating secrets at half the throughput of one).
    gate: ReaderGate,                          // readers of `key` vs purge
    nonce_counter: OwnLine<AtomicU64>,         // next nonce block: never repeats under this key
    raw: UnsafeCell<[u8; KEY_LEN]>,            // raw key bytes, only during creation
    key: UnsafeCell<MaybeUninit<LessSafeKey>>, // ring's key schedule, built in place
}

const_assert!(core::mem::size_of::<KeyMaterial>() <= KEY_PAGE_LEN);
// What threads write (the gate, the nonce counter) ends on a line boundary
// before what they only read (the raw key, the key schedule) begins.
const_assert!(core::mem::offset_of!(KeyMaterial, raw) % 64 == 0);
const_assert!(
    core::mem::offset_of!(KeyMaterial, nonce_counter) + 64
        <= core::mem::offset_of!(KeyMaterial, raw)
);

/// Facts about the key page, for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPageInfo {
    /// Address of the page.
    pub addr: usize,
    /// Page length in bytes.
    pub len: usize,
    /// Whether it came from `memfd_secret`.
    pub secretmem: bool,
}

static KEY_ADDR: AtomicUsize = AtomicUsize::new(0); // 0 until created
static KEY_SECRETMEM: AtomicBool = AtomicBool::new(false);
static FORKED: AtomicBool = AtomicBool::new(false); // set in a fork child
/// Set by `purge`: no key is ever created (again) in this process.
static PURGE_REQUESTED: AtomicBool = AtomicBool::new(false);
static CREATION: Mutex<()> = Mutex::new(Rank::KeyCreation, ());

static FORK: Participant = Participant {
    lock: || CREATION.lock_and_forget(),
    // SAFETY: the protocol calls this only after `lock` on the same thread
    // (or the child's only thread).
    unlock: || unsafe { CREATION.force_unlock() },
    // The child's copy of the page is gone (DONTFORK) or zero (WIPEONFORK).
    after_child: || FORKED.store(true, Ordering::Release),
};

/// Runs `f` with the key, creating it on first use.
pub(crate) fn with_key<R>(f: impl FnOnce(&KeyMaterial) -> Result<R, Error>) -> Result<R, Error> {
    if FORKED.load(Ordering::Acquire) || PURGE_REQUESTED.load(Ordering::Acquire) {
        return Err(Error::KeyUnavailable);
    }
    let material = material()?;
    let slot = crate::secret::thread_slot();
    material
        .gate
        .enter(slot)
        .map_err(|_| Error::KeyUnavailable)?;
    let result = f(material);
    // A purge that arrived meanwhile waits for us to leave, then wipes.
    material.gate.leave(slot);
    result
}

/// Makes sure the key exists (creating it on first use) and is usable now,
/// without entering the gate: what a new secret checks before it takes any
/// arena memory, so that the key page, which every secret needs, is locked
/// first. (The seal that follows enters the gate anyway; entering twice
/// would cost two more atomic read-modify-writes per secret.)
pub(crate) fn key_ready() -> Result<(), Error> {
    if FORKED.load(Ordering::Acquire) || PURGE_REQUESTED.load(Ordering::Acquire) {
        return Err(Error::KeyUnavailable);
    }
    let material = material()?;
    if material.gate.closed().is_some() {
        return Err(Error::KeyUnavailable);
    }
    Ok(())
}

impl KeyMaterial {
    /// The next nonce: a 64-bit counter in the low bytes, so it never
    /// repeats under this key. Returns the 8 stored bytes.
    ///
    /// Each thread takes the counter [`NONCE_BLOCK`] values at a time and
    /// hands them out from a thread-local block, so sealing on several
    /// threads does not bounce one cache line between them. Blocks never
    /// overlap (one atomic step each), a thread's block is tied to this key
    /// page's address (a block taken under another key page is never used
    /// under this one), and values left in a block when its thread exits are
    /// simply never used.
    pub(crate) fn next_nonce(&self) -> Result<[u8; 8], Error> {
        let owner = self as *const KeyMaterial as usize;
        let from_block = NONCE_CACHE
            .try_with(|cache| {
                let (key, next, end) = cache.get();
                if key == owner && next < end {
                    cache.set((key, next + 1, end));
                    return Some(Ok(next));
                }
                Some(self.take_nonces(NONCE_BLOCK).inspect(|&start| {
                    cache.set((owner, start + 1, start + NONCE_BLOCK));
                }))
            })
            .ok()
            .flatten();
        // A thread whose locals are gone (exiting) takes a single value.
        from_block
            .unwrap_or_else(|| self.take_nonces(1))
            .map(u64::to_be_bytes)
    }

    /// Reserves `count` consecutive nonce values; the first one. 2^64 seals
    /// are unreachable in practice, but the counter must never wrap back to
    /// a used value: it stops at the end instead.
    fn take_nonces(&self, count: u64) -> Result<u64, Error> {
        self.nonce_counter
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                n.checked_add(count)
            })
            .map_err(|_| Error::KeyUnavailable)
    }

    /// The key (only inside [`with_key`], which is inside the gate, so the
    /// key is initialised and not being wiped).
    pub(crate) fn key(&self) -> &LessSafeKey {
        // SAFETY: the caller is inside the gate (see `with_key`): the key
        // was written before the page was published, and purge wipes it only
        // after closing the gate and waiting until no reader is inside.
        unsafe { (*self.key.get()).assume_init_ref() }
    }
}

/// Expands stored nonce bytes to ring's 96-bit nonce.
pub(crate) fn nonce(stored: [u8; 8]) -> Nonce {
    let mut full = [0u8; 12];
    full[4..].copy_from_slice(&stored);
    Nonce::assume_unique_for_key(full)
}

fn material() -> Result<&'static KeyMaterial, Error> {
    let addr = KEY_ADDR.load(Ordering::Acquire);
    if addr != 0 {
        // SAFETY: a non-zero address was published only after the page was
        // fully initialised, and the page is never unmapped.
        return Ok(unsafe { &*(addr as *const KeyMaterial) });
    }
    // Joined before the lock is first taken, so a fork can never find it
    // held by a thread the protocol does not know about.
    join(Rank::KeyCreation, &FORK);
    let _creating = CREATION.lock();
    if PURGE_REQUESTED.load(Ordering::Acquire) || FORKED.load(Ordering::Acquire) {
        return Err(Error::KeyUnavailable);
    }
    let addr = KEY_ADDR.load(Ordering::Acquire);
    if addr != 0 {
        // SAFETY: as above.
        return Ok(unsafe { &*(addr as *const KeyMaterial) });
    }
    let (addr, secretmem) = match map_page() {
        // Idle arena memory may hold the budget the key page needs: give it
        // back and try once more, as the arena does for its own requests.
        Err(Error::LockRefused(_)) => {
            crate::arena::budget::reclaim_idle();
            map_page().inspect_err(|e| {
                if matches!(e, Error::LockRefused(_)) {
                    crate::arena::budget::explain_key_refusal(KEY_PAGE_LEN);
                }
            })?
        }
        other => other?,
    };
    if let Err(e) = fill_key(addr) {
        // SAFETY: the page is ours and nothing references it.
        unsafe {
            wipe(addr, KEY_PAGE_LEN);
            let _ = sys::munmap(addr, KEY_PAGE_LEN);
        }
        return Err(e);
    }
    // Overwrite the stack below us, where ring's key expansion ran.
    zeroize::zeroize_stack::<16384>();
    KEY_SECRETMEM.store(secretmem, Ordering::Relaxed);
    KEY_ADDR.store(addr, Ordering::Release);
    // SAFETY: just initialised, published, never unmapped.
    Ok(unsafe { &*(addr as *const KeyMaterial) })
}

/// Maps, locks and protects the key page. Returns `(address, secretmem)`.
fn map_page() -> Result<(usize, bool), Error> {
    if let Ok(fd) = sys::memfd_secret() {
        let mapped =
            sys::ftruncate(fd, KEY_PAGE_LEN).and_then(|_| sys::mmap_shared_fd(fd, KEY_PAGE_LEN));
        sys::close(fd);
        if let Ok(addr) = mapped {
            // The kernel makes every secretmem mapping locked (VM_LOCKED,
            // charged to RLIMIT_MEMLOCK when mapped; `mlock` on it fails
            // with ENOMEM) and dump-excluded; the advice makes the latter
            // explicit, and keeps the mapping out of forked children.
            let protected = sys::madvise_dontdump(addr, KEY_PAGE_LEN)
                .and_then(|_| sys::madvise_dontfork(addr, KEY_PAGE_LEN));
            match protected {
                Ok(()) => return Ok((addr, true)),
                Err(e) => {
                    // SAFETY: freshly mapped, unused.
                    let _ = unsafe { sys::munmap(addr, KEY_PAGE_LEN) };
                    return Err(lock_error(e));
                }
            }
        }
    }
    let addr = sys::mmap_read_write(KEY_PAGE_LEN).map_err(Error::Os)?;
    let protected = sys::mlock_on_fault(addr, KEY_PAGE_LEN)
        .and_then(|_| sys::madvise_dontdump(addr, KEY_PAGE_LEN))
        .and_then(|_| sys::madvise_wipeonfork(addr, KEY_PAGE_LEN));
    if let Err(e) = protected {
        // SAFETY: freshly mapped, unused.
        let _ = unsafe { sys::munmap(addr, KEY_PAGE_LEN) };
        return Err(lock_error(e));
    }
    Ok((addr, false))
}

fn lock_error(e: sys::OsError) -> Error {
    if e.op.starts_with("mlock") {
        Error::LockRefused(e)
    } else {
        Error::Os(e)
    }
}

/// Generates the key into the page and builds ring's key schedule in place.
/// Not inlined, so that its stack frame lies below the caller's and
/// `zeroize_stack` there overwrites the temporaries.
#[inline(never)]
fn fill_key(addr: usize) -> Result<(), Error> {
    let material = addr as *mut KeyMaterial;
    // SAFETY: the page is ours, zeroed, and large enough (const-asserted);
    // zero is a valid `ReaderGate`, `AtomicU64` and byte array. `key` is
    // written before anything reads it.
    unsafe {
        let raw = &mut *(*material).raw.get();
        SystemRandom::new()
            .fill(raw)
            .map_err(|_| Error::KeyUnavailable)?;
        let unbound = UnboundKey::new(&AES_256_GCM, raw).map_err(|_| Error::KeyUnavailable)?;
        (*material)
            .key
            .get()
            .write(MaybeUninit::new(LessSafeKey::new(unbound)));
        wipe(raw.as_mut_ptr() as usize, KEY_LEN);
    }

    Ok(())
}

fn wipe_page(material: &KeyMaterial) {
    // Everything after the gate: the gate must survive, as it records that
    // the page is closed and (once `finish` runs) wiped.
    let start = core::mem::offset_of!(KeyMaterial, nonce_counter);
    let base = KEY_ADDR.load(Ordering::Acquire);
    debug_assert_eq!(base, material as *const KeyMaterial as usize);
    // SAFETY: the only caller, `purge_key`, closed the gate (it alone, so
    // this runs once) and waited until no reader was inside; no reader can
    // enter after the close, so nobody is using the key.
    // Every byte written is either outside the `KeyMaterial` or inside an
    // `UnsafeCell` (the atomic counter, `raw`, `key`), and `key` is
    // `MaybeUninit`, so zero bytes there are allowed and never read as a key.
    unsafe { wipe(base + start, KEY_PAGE_LEN - start) };
    material.gate.finish();
}

/// Wipes the key page now (or as soon as the last current user leaves) and
/// makes every later use fail. Returns once the page is wiped.
pub(crate) fn purge_key() {
    {
        // Under the creation lock: a creation either finished before (its
        // page is published and killed below) or sees the request and
        // refuses.
        join(Rank::KeyCreation, &FORK);
        let _creating = CREATION.lock();
        PURGE_REQUESTED.store(true, Ordering::Release);
    }
    let addr = KEY_ADDR.load(Ordering::Acquire);
    if addr == 0 || FORKED.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: published key page, never unmapped.
    let material = unsafe { &*(addr as *const KeyMaterial) };
    if material.gate.close(PURGED) {
        // No reader enters from now on; those inside finish one seal or
        // open and leave.
        material.gate.wait_empty();
        wipe_page(material);
    }
    // A purge on another thread may be the one wiping: wait until it has.
    let mut backoff = Backoff::new();
    while !material.gate.is_finished() {
        backoff.snooze();
    }
}

/// Whether the key was purged.
pub(crate) fn is_purged() -> bool {
    if PURGE_REQUESTED.load(Ordering::Acquire) && !FORKED.load(Ordering::Acquire) {
        return true;
    }
    let addr = KEY_ADDR.load(Ordering::Acquire);
    // SAFETY: as above.
    addr != 0
        && !FORKED.load(Ordering::Acquire)
        && unsafe { &*(addr as *const KeyMaterial) }
            .gate
            .closed()
            .is_some()
}

/// The key page, if it exists yet.
pub fn key_page_info() -> Option<KeyPageInfo> {
    let addr = KEY_ADDR.load(Ordering::Acquire);
    (addr != 0).then(|| KeyPageInfo {
        addr,
        len: KEY_PAGE_LEN,
        secretmem: KEY_SECRETMEM.load(Ordering::Relaxed),
    })
}

/// Creates the key now if it does not exist (so a program can fail early).
pub fn ensure_key() -> Result<KeyPageInfo, Error> {
    with_key(|_| Ok(()))?;
    key_page_info().ok_or(Error::KeyUnavailable)
}

#[cfg(feature = "test-hooks")]
/// Test hook: passes the key page's secret part (everything after the
/// reader gate: nonce counter, key schedule) to `f`, for tests that check it was
/// wiped or search a core dump for it.
pub fn key_page_bytes(f: impl FnOnce(&[u8])) {
    let addr = KEY_ADDR.load(Ordering::Acquire);
    if addr != 0 && !FORKED.load(Ordering::Acquire) {
        let start = core::mem::offset_of!(KeyMaterial, nonce_counter);
        // SAFETY: the page is mapped readable for the life of the process.
        f(
            unsafe {
                core::slice::from_raw_parts((addr + start) as *const u8, KEY_PAGE_LEN - start)
            },
        )
    }
}
