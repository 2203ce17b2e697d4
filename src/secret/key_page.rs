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
//! **Generations.** [`rekey`](super::rekey) puts a new key in service
//! under the next *epoch*. Epoch `e`'s key lives in page `e % 2`, so at most
//! two keys exist: the current one, and the one before it while secrets
//! sealed under it are still being moved (`super::rekey_step`, or lazily on
//! access). When the last of them has moved on, the old page's gate is
//! closed for good ([`RETIRED`]), drained and wiped ([`retire`]); the next
//! re-key fills that page afresh. Pages are never unmapped, so a thread
//! that read an old page's address can still enter its gate — and then
//! finds it closed, or holding another epoch, and starts over. The epoch is
//! in every secret's associated data, so no ciphertext opens under another
//! generation's key.
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

/// Gate reason: this generation's key was retired by a re-key.
pub(crate) const RETIRED: u32 = 1;

std::thread_local! {
    /// This thread's nonce block: (epoch + 1 of the key it was taken
    /// under, next, end). Tied to the epoch, not the page: a page is
    /// reused by every other generation, each with a fresh counter.
    static NONCE_CACHE: core::cell::Cell<(u64, u64, u64)> =
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
    gate: ReaderGate,                  // readers of `key` vs purge and retirement
    nonce_counter: OwnLine<AtomicU64>, // next nonce block: never repeats under this key
    epoch: OwnLine<AtomicU64>,         // the generation this page holds; set before its gate opens
    raw: UnsafeCell<[u8; KEY_LEN]>,    // raw key bytes, only during creation
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
///
/// ```
/// let info = secalloc::secret::ensure_key()?;
/// assert_eq!(info.len, 4096);
/// # Ok::<(), secalloc::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyPageInfo {
    /// Address of the page.
    pub addr: usize,
    /// Page length in bytes.
    pub len: usize,
    /// Whether it came from `memfd_secret`.
    pub secretmem: bool,
}

/// Key pages by `epoch % 2` (0 until mapped; never unmapped).
static PAGES: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];
static PAGE_SECRETMEM: [AtomicBool; 2] = [const { AtomicBool::new(false) }; 2];
/// The current generation; its page is `PAGES[CURRENT % 2]` once it exists.
/// Changed only under [`CREATION`], after the new page is ready.
static CURRENT: AtomicU64 = AtomicU64::new(0);
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

/// How many times a use of the key starts over because a re-key moved the
/// current generation under it before giving up (each start-over means
/// another re-key completed meanwhile: two in a row is already rare).
const STALE_RETRIES: usize = 16;

#[inline]
fn page_at(slot: usize) -> Option<&'static KeyMaterial> {
    let addr = PAGES[slot].load(Ordering::Acquire);
    // SAFETY: a non-zero address was published only after the page was
    // mapped and initialised, and pages are never unmapped.
    (addr != 0).then(|| unsafe { &*(addr as *const KeyMaterial) })
}

/// Whether no key can be used in this process any more: it forked (the
/// pages are gone or zero in the child) or `purge` ran.
pub(crate) fn unusable() -> bool {
    FORKED.load(Ordering::Acquire) || PURGE_REQUESTED.load(Ordering::Acquire)
}

/// Runs `f` inside the gate of `material` if it holds generation `epoch`.
/// `None`: it does not (retired, or refilled for a later epoch).
#[inline]
fn enter_epoch<R>(
    material: &KeyMaterial,
    epoch: u64,
    f: impl FnOnce(&KeyMaterial) -> Result<R, Error>,
) -> Option<Result<R, Error>> {
    let slot = crate::secret::thread_slot();
    match material.gate.enter(slot) {
        Ok(()) => {}
        Err(RETIRED) => return None,
        Err(_) => return Some(Err(Error::KeyUnavailable)),
    }
    let result = if material.epoch() == epoch {
        Some(f(material))
    } else {
        None
    };
    // A purge or retirement that arrived meanwhile waits for us to leave.
    material.gate.leave(slot);
    result
}

/// Runs `f` with the current key, creating it on first use. `f` learns
/// the key's generation from [`KeyMaterial::epoch`]; the key stays usable
/// (its page is not wiped) until `f` returns.
pub(crate) fn with_key<R>(mut f: impl FnMut(&KeyMaterial) -> Result<R, Error>) -> Result<R, Error> {
    for _ in 0..STALE_RETRIES {
        if unusable() {
            return Err(Error::KeyUnavailable);
        }
        let (epoch, material) = current()?;
        if let Some(result) = enter_epoch(material, epoch, &mut f) {
            return result;
        }
    }
    Err(Error::KeyUnavailable)
}

/// Runs `f` with generation `epoch`'s key. `None` if that key is gone (a
/// re-key retired it: whatever was sealed under it has moved on, and the
/// caller's copy is stale).
#[inline]
pub(crate) fn with_key_of<R>(
    epoch: u64,
    f: impl FnOnce(&KeyMaterial) -> Result<R, Error>,
) -> Option<Result<R, Error>> {
    if unusable() {
        return Some(Err(Error::KeyUnavailable));
    }
    enter_epoch(page_at((epoch % 2) as usize)?, epoch, f)
}

/// The current generation (0 before the first key exists).
pub(crate) fn current_epoch() -> u64 {
    CURRENT.load(Ordering::Acquire)
}

/// Makes sure the key exists (creating it on first use) and is usable now,
/// without entering the gate: what a new secret checks before it takes any
/// arena memory, so that the key page, which every secret needs, is locked
/// first. (The seal that follows enters the gate anyway; entering twice
/// would cost two more atomic read-modify-writes per secret.)
pub(crate) fn key_ready() -> Result<(), Error> {
    if unusable() {
        return Err(Error::KeyUnavailable);
    }
    let (_, material) = current()?;
    match material.gate.closed() {
        None | Some(RETIRED) => Ok(()), // retired: a re-key just moved on
        Some(_) => Err(Error::KeyUnavailable),
    }
}

impl KeyMaterial {
    /// The next nonce: a 64-bit counter in the low bytes, so it never
    /// repeats under this key. Returns the 8 stored bytes.
    ///
    /// Each thread takes the counter [`NONCE_BLOCK`] values at a time and
    /// hands them out from a thread-local block, so sealing on several
    /// threads does not bounce one cache line between them. Blocks never
    /// overlap (one atomic step each), a thread's block is tied to this
    /// key's epoch (a block taken under another generation's key, even in
    /// this same page, is never used under this one), and values left in a block when its thread exits are
    /// simply never used.
    pub(crate) fn next_nonce(&self) -> Result<[u8; 8], Error> {
        let owner = self.epoch() + 1;
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

    /// The generation of this page's key (stable inside the gate).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.0.load(Ordering::Relaxed)
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

/// The current generation and its page, creating the first key on first
/// use.
#[inline]
fn current() -> Result<(u64, &'static KeyMaterial), Error> {
    let epoch = CURRENT.load(Ordering::Acquire);
    match page_at((epoch % 2) as usize) {
        Some(material) => Ok((epoch, material)),
        None => create_first(),
    }
}

/// The slow path of [`current`]: creates the first key.
#[cold]
#[inline(never)]
fn create_first() -> Result<(u64, &'static KeyMaterial), Error> {
    // Joined before the lock is first taken, so a fork can never find it
    // held by a thread the protocol does not know about.
    join(Rank::KeyCreation, &FORK);
    let _creating = CREATION.lock();
    if unusable() {
        return Err(Error::KeyUnavailable);
    }
    let epoch = CURRENT.load(Ordering::Acquire);
    let slot = (epoch % 2) as usize;
    if let Some(material) = page_at(slot) {
        return Ok((epoch, material));
    }
    let (addr, secretmem) = new_page()?;
    install(addr, epoch)?;
    PAGE_SECRETMEM[slot].store(secretmem, Ordering::Relaxed);
    PAGES[slot].store(addr, Ordering::Release);
    // SAFETY: just initialised, published, never unmapped.
    Ok((epoch, unsafe { &*(addr as *const KeyMaterial) }))
}

/// Maps a key page, giving idle arena memory back first if the lock budget
/// refuses it.
fn new_page() -> Result<(usize, bool), Error> {
    match map_page() {
        // Idle arena memory may hold the budget the key page needs: give it
        // back and try once more, as the arena does for its own requests.
        Err(Error::LockRefused(_)) => {
            crate::arena::budget::reclaim_idle();
            map_page().inspect_err(|e| {
                if matches!(e, Error::LockRefused(_)) {
                    crate::arena::budget::explain_key_refusal(KEY_PAGE_LEN);
                }
            })
        }
        other => other,
    }
}

/// Fills the page at `addr` (fresh, or retired and wiped — either way no
/// reader can be past its gate) with a new key for `epoch` and opens the
/// gate. Under the creation lock. On failure the page is left wiped (and a
/// fresh, unpublished one unmapped).
fn install(addr: usize, epoch: u64) -> Result<(), Error> {
    if let Err(e) = fill_key(addr) {
        // SAFETY: nobody uses the page: a fresh one is unpublished; a
        // reused one is retired (its gate closed and drained).
        unsafe { wipe(addr + GATE_END, KEY_PAGE_LEN - GATE_END) };
        if PAGES.iter().all(|p| p.load(Ordering::Relaxed) != addr) {
            // SAFETY: never published, so nothing refers to it.
            let _ = unsafe { sys::munmap(addr, KEY_PAGE_LEN) };
        }
        return Err(e);
    }
    // Overwrite the stack below us, where ring's key expansion ran.
    zeroize::zeroize_stack::<16384>();
    // SAFETY: as above; the page is mapped, and `KeyMaterial` is atomics
    // and cells, valid at any bytes it holds here.
    let material = unsafe { &*(addr as *const KeyMaterial) };
    material.nonce_counter.0.store(0, Ordering::Relaxed);
    material.epoch.0.store(epoch, Ordering::Relaxed);
    // The key and epoch are written before a reader can pass the gate
    // (`reopen` is SeqCst, after these stores in program order).
    material.gate.reopen();
    Ok(())
}

/// Puts a new key in service as the next generation and returns its
/// epoch (`Ok(Ok(epoch))`); creates the first key if there is none. The
/// page it takes is the one of the generation before the current one,
/// which must be retired: `Ok(Err(()))` if it is not (secrets are still
/// sealed under it).
///
/// After the switch, `registry_barrier` runs (it locks every registry
/// shard once): from then on no secret can be registered under an older
/// epoch.
pub(crate) fn switch_key(registry_barrier: impl Fn()) -> Result<Result<u64, ()>, Error> {
    let (current, _) = current()?;
    let switched = {
        join(Rank::KeyCreation, &FORK);
        let _creating = CREATION.lock();
        if unusable() {
            return Err(Error::KeyUnavailable);
        }
        let now = CURRENT.load(Ordering::Acquire);
        if now != current {
            // Another re-key switched meanwhile: that one serves us too.
            return Ok(Ok(now));
        }
        let next = current + 1;
        let slot = (next % 2) as usize;
        if let Some(old) = page_at(slot) {
            if old.gate.closed() == Some(RETIRED) {
                // A retirement under way only waits for the threads inside
                // the old key's gate (one seal or open each; none of them
                // needs this lock): let it finish.
                let mut backoff = Backoff::new();
                while !old.gate.is_finished() {
                    backoff.snooze();
                }
            }
        }
        match page_at(slot) {
            Some(old) if old.gate.closed() != Some(RETIRED) => return Ok(Err(())),
            Some(_) => install(PAGES[slot].load(Ordering::Relaxed), next)?,
            None => {
                let (addr, secretmem) = new_page()?;
                install(addr, next)?;
                PAGE_SECRETMEM[slot].store(secretmem, Ordering::Relaxed);
                PAGES[slot].store(addr, Ordering::Release);
            }
        }
        CURRENT.store(next, Ordering::SeqCst);
        next
    };
    registry_barrier();
    Ok(Ok(switched))
}

/// Retires generation `epoch`'s key: closes its gate for good, waits for
/// the threads inside to leave, and wipes it. The caller saw, after the
/// switch to a later epoch, that no secret is sealed under it any more.
/// Returns whether this call wiped it.
pub(crate) fn retire(epoch: u64) -> bool {
    if epoch >= CURRENT.load(Ordering::Acquire) || FORKED.load(Ordering::Acquire) {
        return false;
    }
    let Some(material) = page_at((epoch % 2) as usize) else {
        return false;
    };
    // The page still holds `epoch`: a refill for a later epoch needs this
    // very retirement first, so it cannot be under way.
    if material.epoch() != epoch || !material.gate.close(RETIRED) {
        return false;
    }
    material.gate.wait_empty();
    wipe_key(material);
    material.gate.finish();
    true
}

/// Whether generation `epoch`'s key is gone (retired or purged, or its
/// page refilled since).
pub(crate) fn is_wiped(epoch: u64) -> bool {
    match page_at((epoch % 2) as usize) {
        None => true,
        // Finished: retired (or purged). Open with another epoch: refilled
        // since. (Closed but not finished: a retirement under way, which
        // zeroes the epoch before it finishes.)
        Some(m) => m.gate.is_finished() || (m.gate.closed().is_none() && m.epoch() != epoch),
    }
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

/// Where the page's secret part begins: everything after the gate.
const GATE_END: usize = core::mem::offset_of!(KeyMaterial, nonce_counter);

/// Wipes everything in the page after its gate (nonce counter, epoch, raw
/// key, key schedule). The gate must survive: it records that the page is
/// closed and, once `finish` runs, wiped.
fn wipe_key(material: &KeyMaterial) {
    let base = material as *const KeyMaterial as usize;
    // SAFETY: the callers (`purge_key`, `retire`) closed the gate (a fill's
    // gate closes once, so this runs once per fill) and waited until no
    // reader was inside; no reader can enter after the close, so nobody is
    // using the key. Every byte written is either outside the `KeyMaterial`
    // or inside an `UnsafeCell` (the atomics, `raw`, `key`), and `key` is
    // `MaybeUninit`, so zero bytes there are allowed and never read as a key.
    unsafe { wipe(base + GATE_END, KEY_PAGE_LEN - GATE_END) };
}

/// Wipes every key page now (or as soon as the last current user leaves)
/// and makes every later use fail. Returns once the pages are wiped.
pub(crate) fn purge_key() {
    {
        // Under the creation lock: a creation or re-key either finished
        // before (its page is published and closed below) or sees the
        // request and refuses.
        join(Rank::KeyCreation, &FORK);
        let _creating = CREATION.lock();
        PURGE_REQUESTED.store(true, Ordering::Release);
    }
    if FORKED.load(Ordering::Acquire) {
        return;
    }
    for slot in 0..PAGES.len() {
        let Some(material) = page_at(slot) else {
            continue;
        };
        if material.gate.close(PURGED) {
            // No reader enters from now on; those inside finish one seal or
            // open and leave.
            material.gate.wait_empty();
            wipe_key(material);
            material.gate.finish();
        }
        // A purge or retirement on another thread may be the one wiping:
        // wait until it has.
        let mut backoff = Backoff::new();
        while !material.gate.is_finished() {
            backoff.snooze();
        }
    }
}

/// Whether the key was purged.
pub(crate) fn is_purged() -> bool {
    PURGE_REQUESTED.load(Ordering::Acquire) && !FORKED.load(Ordering::Acquire)
}

/// The current key page, if it exists yet.
///
/// ```
/// secalloc::secret::ensure_key()?;
/// assert!(secalloc::secret::key_page_info().is_some());
/// # Ok::<(), secalloc::Error>(())
/// ```
pub fn key_page_info() -> Option<KeyPageInfo> {
    let slot = (CURRENT.load(Ordering::Acquire) % 2) as usize;
    let addr = PAGES[slot].load(Ordering::Acquire);
    (addr != 0).then(|| KeyPageInfo {
        addr,
        len: KEY_PAGE_LEN,
        secretmem: PAGE_SECRETMEM[slot].load(Ordering::Relaxed),
    })
}

/// Creates the key now if it does not exist (so a program can fail early).
///
/// ```
/// // Fail at start-up, not at the first secret, if no key page can be locked.
/// let info = secalloc::secret::ensure_key()?;
/// println!("key page at {:#x}, memfd_secret: {}", info.addr, info.secretmem);
/// # Ok::<(), secalloc::Error>(())
/// ```
pub fn ensure_key() -> Result<KeyPageInfo, Error> {
    with_key(|_| Ok(()))?;
    key_page_info().ok_or(Error::KeyUnavailable)
}

#[cfg(secalloc_test_hooks)]
/// Test hook: passes the current key page's secret part (everything after
/// the reader gate: nonce counter, epoch, key schedule) to `f`, for tests
/// that check it was wiped or search a core dump for it.
pub fn key_page_bytes(f: impl FnOnce(&[u8])) {
    key_page_bytes_of(CURRENT.load(Ordering::Acquire), f);
}

#[cfg(secalloc_test_hooks)]
/// Test hook: as [`key_page_bytes`], for the page of generation `epoch`
/// (whatever that page holds now: zero bytes once it is retired).
pub fn key_page_bytes_of(epoch: u64, f: impl FnOnce(&[u8])) {
    let addr = PAGES[(epoch % 2) as usize].load(Ordering::Acquire);
    if addr != 0 && !FORKED.load(Ordering::Acquire) {
        // SAFETY: the page is mapped readable for the life of the process.
        f(unsafe {
            core::slice::from_raw_parts((addr + GATE_END) as *const u8, KEY_PAGE_LEN - GATE_END)
        })
    }
}
