//! `Secret<T, A>`: a value kept encrypted at rest (AES-256-GCM, `ring`) in
//! arena memory, readable only inside a scoped access.
//!
//! Storage is one allocation from `A` per secret, a *cell*:
//!
//! ```text
//! [ header: pin state | len | id | expiry ][ nonce (8) ][ ciphertext (len) ][ tag (16) ]
//! ```
//!
//! The associated data is the secret's `id`, unique in the process, so a
//! ciphertext moved into another secret fails to open. Plaintext exists only
//! in a buffer from the fail-closed arena during `expose`/`expose_mut`, and
//! that buffer is wiped by the arena when the access ends.

#![allow(unsafe_code)]

mod key_page;
mod protect;

pub use key_page::{ensure_key, key_page_info, KeyPageInfo};
pub use protect::{Plain, PlainBuf, Protect, SecureString};

#[cfg(feature = "test-hooks")]
pub use key_page::key_page_bytes;

use crate::arena::wipe::wipe;
use crate::error::Error;
use crate::pin::{PinState, DESTROYED, EXPIRED, PURGED};
use crate::sys;
use crate::SecureAlloc;
use allocator_api2::alloc::Allocator;
use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;
use key_page::{nonce, with_key};
use ring::aead::Aad;

/// Cell header, at the start of every secret's allocation.
#[repr(C)]
struct CellHeader {
    pin: PinState,      // readers vs purge/expiry
    len: u32,           // plaintext length in bytes
    id: u64,            // associated data: unique per secret in this process
    expires_at_ns: u64, // CLOCK_MONOTONIC deadline; 0 = never
}

const HEADER_LEN: usize = core::mem::size_of::<CellHeader>();
const NONCE_LEN: usize = 8;
const TAG_LEN: usize = 16;
static_assertions::const_assert_eq!(HEADER_LEN, 24);

/// Bytes of ciphertext stored for `len` bytes of plaintext: rounded up to
/// whole AES blocks. The plaintext is zero-padded in its locked buffer before
/// sealing because `ring` copies a final partial block to an ordinary stack
/// temporary (and does not wipe it); whole blocks are processed in place.
fn sealed_len(len: usize) -> usize {
    len.next_multiple_of(16)
}

/// Associated data: the secret's identity and its true length.
fn aad(id: u64, len: usize) -> Aad<[u8; 12]> {
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&id.to_le_bytes());
    bytes[8..].copy_from_slice(&(len as u32).to_le_bytes());
    Aad::from(bytes)
}

fn cell_layout(len: usize) -> Result<Layout, Error> {
    let size = HEADER_LEN
        .checked_add(NONCE_LEN + TAG_LEN)
        .and_then(|s| s.checked_add(sealed_len(len)))
        .ok_or(Error::AllocFailed)?;
    Layout::from_size_align(size, 8).map_err(|_| Error::AllocFailed)
}

/// Next secret identity. Never reused within the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Live secrets.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Hash for cell addresses in the registry (const-constructible, no allocation).
#[derive(Clone, Copy, Default)]
struct AddrHash;
struct AddrHasher(u64);
impl core::hash::BuildHasher for AddrHash {
    type Hasher = AddrHasher;
    fn build_hasher(&self) -> AddrHasher {
        AddrHasher(0)
    }
}
impl core::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Whether a cell lives in the arena. Only those are registered for
/// [`purge`]: arena memory is never returned to the system while a cell in
/// it is live, even if its `Secret` is leaked with `mem::forget`, whereas a
/// foreign allocator (say, a borrowed bump arena) may free a leaked cell's
/// memory behind our back.
fn in_arena(cell: NonNull<CellHeader>) -> bool {
    SecureAlloc::usable_size(cell.as_ptr() as *const u8).is_some()
}

/// Every live cell in the arena, so that [`purge`] can reach them all. Also held while a
/// cell's body is rewritten, which keeps `purge` and `expose_mut` apart.
static REGISTRY: spin::Mutex<hashbrown::HashSet<usize, AddrHash>> =
    spin::Mutex::new(hashbrown::HashSet::with_hasher(AddrHash));

/// `fork` prepare handler: holds the registry lock across `fork`.
pub(crate) fn lock_registry_for_fork() {
    core::mem::forget(REGISTRY.lock());
}

/// `fork` parent/child handler: releases the lock taken by
/// [`lock_registry_for_fork`].
///
/// # Safety
/// The lock was taken by `lock_registry_for_fork` (in this thread, or in the
/// thread that forked this child) and no guard for it exists.
pub(crate) unsafe fn unlock_registry_after_fork() {
    // SAFETY: forwarded from the caller.
    unsafe { REGISTRY.force_unlock() };
}

/// The error for an arena allocation that failed: `LockRefused` if the
/// kernel has refused to lock memory for the fail-closed heap, else
/// `AllocFailed`.
pub(crate) fn arena_error() -> Error {
    match SecureAlloc::new().stats().last_refusal_errno {
        Some(errno) => Error::LockRefused(sys::OsError {
            op: "mlock2",
            errno: sys::Errno(errno),
        }),
        None => Error::AllocFailed,
    }
}

fn dead_error(reasons: u32) -> Error {
    if reasons & PURGED != 0 {
        Error::KeyUnavailable
    } else if reasons & EXPIRED != 0 {
        Error::Expired
    } else if reasons & DESTROYED != 0 {
        Error::Destroyed
    } else {
        Error::KeyUnavailable
    }
}

/// Plaintext of one access, in a locked arena buffer. Dropping it frees the
/// buffer, and the arena wipes every freed byte.
struct Plaintext {
    buf: PlainBuf,
}

fn new_plain_buf(capacity: usize) -> Result<PlainBuf, Error> {
    let mut buf = PlainBuf::new_in(SecureAlloc::new());
    buf.try_reserve_exact(capacity).map_err(|_| arena_error())?;
    Ok(buf)
}

/// Seals `plain` in place under `id`: it is zero-padded to whole blocks and
/// becomes that many bytes of ciphertext.
fn seal_in_place(plain: &mut PlainBuf, id: u64) -> Result<([u8; NONCE_LEN], [u8; TAG_LEN]), Error> {
    let len = plain.len();
    plain
        .try_reserve_exact(sealed_len(len) - len)
        .map_err(|_| arena_error())?;
    plain.resize(sealed_len(len), 0);
    with_key(|material| {
        let stored = material.next_nonce()?;
        let tag = material
            .key()
            .seal_in_place_separate_tag(nonce(stored), aad(id, len), plain)
            .map_err(|_| Error::KeyUnavailable)?;
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag.as_ref());
        Ok((stored, tag_bytes))
    })
}

/// A secret of type `T`, encrypted at rest in memory from `A`.
///
/// ```
/// use secalloc::Secret;
///
/// let s: Secret<Vec<u8>> = Secret::new(vec![1, 2, 3])?;
/// let n = s.expose(|v| v.iter().map(|&b| b as u32).sum::<u32>())?;
/// assert_eq!(n, 6);
/// let mut s = s;
/// s.expose_mut(|v| v.extend_from_slice(b"more"))?;
/// assert_eq!(s.expose(|v| v.len())?, 7);
/// # Ok::<(), secalloc::Error>(())
/// ```
pub struct Secret<T: Protect, A: Allocator = SecureAlloc> {
    cell: NonNull<CellHeader>, // header + sealed body, allocated from `alloc`
    alloc: A,
    holds: PhantomData<T>,
}

// SAFETY: a `Secret` owns its cell exclusively; moving it to another thread
// moves that ownership. `T` itself is only ever materialised as plaintext
// inside an access on the calling thread.
unsafe impl<T: Protect + Send, A: Allocator + Send> Send for Secret<T, A> {}
// SAFETY: shared access (`expose`) only reads the cell under the pin
// protocol and decrypts into a buffer private to the call; every write needs
// `&mut self` (or is `purge`, which synchronises through the pin state and
// the registry lock).
unsafe impl<T: Protect + Sync, A: Allocator + Sync> Sync for Secret<T, A> {}

impl<T: Protect> Secret<T> {
    /// Seals `value` in the fail-closed arena, wiping the value's own buffer.
    ///
    /// # Errors
    /// `LockRefused` if the arena or the key page cannot be locked,
    /// `KeyUnavailable` after `purge` or in a forked child.
    pub fn new(value: T) -> Result<Self, Error> {
        Self::new_in(value, SecureAlloc::new())
    }
}

impl<T: Plain> Secret<T> {
    /// Creates a secret whose value is written by `init` straight into
    /// locked memory (it starts zeroed), so no copy of it ever sits on the
    /// caller's stack.
    pub fn new_with(init: impl FnOnce(&mut T)) -> Result<Self, Error> {
        with_key(|_| Ok(()))?;
        let mut plain = new_plain_buf(core::mem::size_of::<T>() + TAG_LEN)?;
        plain.resize(core::mem::size_of::<T>(), 0);
        init(T::view_mut(&mut plain));
        Self::seal_new(plain, SecureAlloc::new(), 0)
    }
}

impl<T: Protect, A: Allocator> Secret<T, A> {
    /// Seals `value` with its cell allocated from `alloc`. With
    /// `SecureAlloc::best_effort()` a secret keeps working in unlocked (still
    /// dump-excluded) memory when the lock budget is spent — only ciphertext
    /// is ever stored there; the key and every plaintext view stay locked.
    /// [`Secret::storage_locked`] reports which case applies.
    pub fn new_in(value: T, alloc: A) -> Result<Self, Error> {
        // The key page first: it is the one piece of locked memory every
        // secret needs, so it must not lose the budget to arena slabs.
        with_key(|_| Ok(()))?;
        let mut plain = new_plain_buf(TAG_LEN)?;
        value.into_plaintext(&mut plain)?;
        Self::seal_new(plain, alloc, 0)
    }

    fn seal_new(mut plain: PlainBuf, alloc: A, expires_at_ns: u64) -> Result<Self, Error> {
        let len = plain.len();
        let len32 = u32::try_from(len).map_err(|_| Error::AllocFailed)?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (stored_nonce, tag) = seal_in_place(&mut plain, id)?;
        let header = CellHeader {
            pin: PinState::new(),
            len: len32,
            id,
            expires_at_ns,
        };
        let cell = new_cell(&alloc, header, &stored_nonce, &plain, &tag)?;
        let secret = Secret {
            cell,
            alloc,
            holds: PhantomData,
        };
        LIVE.fetch_add(1, Ordering::Relaxed); // balanced by `Drop`, on every path
        if in_arena(cell) {
            let mut registry = REGISTRY.lock();
            if registry.try_reserve(1).is_err() {
                drop(registry);
                return Err(Error::AllocFailed); // `secret` drops: wipes and frees
            }
            registry.insert(cell.as_ptr() as usize);
        }
        Ok(secret)
    }

    fn header(&self) -> &CellHeader {
        // SAFETY: the cell is live for as long as `self`.
        unsafe { self.cell.as_ref() }
    }

    /// Decrypts into a fresh locked buffer.
    fn open(&self) -> Result<Plaintext, Error> {
        let header = self.header();
        header.pin.pin().map_err(dead_error)?;
        if header.expires_at_ns != 0 && sys::monotonic_ns() >= header.expires_at_ns {
            let wipe_now = header.pin.unpin();
            let wipe_now = header.pin.kill(EXPIRED) || wipe_now;
            if wipe_now {
                // SAFETY: the pin protocol gave us the (only) wipe.
                unsafe { wipe_body(self.cell) };
            }
            return Err(Error::Expired);
        }
        let len = header.len as usize;
        let copied = new_plain_buf(sealed_len(len) + TAG_LEN).map(|mut buf| {
            // SAFETY: pinned: the body is intact and not being rewritten
            // (rewrites need `&mut self`; purge waits for us to unpin).
            let body = unsafe { body_slice(self.cell, len) };
            protect::append(&mut buf, &body[NONCE_LEN..]);
            let mut stored = [0u8; NONCE_LEN];
            stored.copy_from_slice(&body[..NONCE_LEN]);
            (buf, stored)
        });
        if header.pin.unpin() {
            // SAFETY: killed while we were pinned and we were the last out.
            unsafe { wipe_body(self.cell) };
        }
        let (mut buf, stored) = copied?;
        let id = header.id;
        with_key(|material| {
            material
                .key()
                .open_in_place(nonce(stored), aad(id, len), &mut buf)
                .map(|_| ())
                .map_err(|_| Error::Tampered)
        })?;
        buf.truncate(len);
        T::check(&buf)?;
        Ok(Plaintext { buf })
    }

    /// Runs `f` on the plaintext. The plaintext exists only in locked arena
    /// memory and only for the duration of the call; concurrent `expose`
    /// calls from several threads are fine.
    ///
    /// # Errors
    /// `Tampered` if the stored ciphertext was modified or swapped,
    /// `Expired`, `KeyUnavailable` (after `purge`, or in a forked child),
    /// `LockRefused` if no locked memory is left for the plaintext.
    pub fn expose<R>(&self, f: impl FnOnce(&T::View) -> R) -> Result<R, Error> {
        let plain = self.open()?;
        Ok(f(T::view(&plain.buf)))
    }

    /// Runs `f` on the plaintext mutably, then re-seals the result with a
    /// fresh nonce. Growth (for `Vec<u8>` and `String`) stays in the arena.
    ///
    /// # Errors
    /// As [`Secret::expose`]; if the secret is purged during the call, the
    /// change is discarded and `KeyUnavailable` returned.
    pub fn expose_mut<R>(&mut self, f: impl FnOnce(&mut T::View) -> R) -> Result<R, Error> {
        let mut plain = self.open()?;
        let result = f(T::view_mut(&mut plain.buf));
        self.reseal(&mut plain.buf)?;
        Ok(result)
    }

    fn reseal(&mut self, plain: &mut PlainBuf) -> Result<(), Error> {
        let new_len = plain.len();
        let new_len32 = u32::try_from(new_len).map_err(|_| Error::AllocFailed)?;
        let (id, old_len, expires_at_ns) = {
            let h = self.header();
            (h.id, h.len as usize, h.expires_at_ns)
        };
        let (stored_nonce, tag) = seal_in_place(plain, id)?;
        if new_len == old_len {
            let _registry = REGISTRY.lock(); // excludes purge
            if let Some(reasons) = self.header().pin.killed() {
                return Err(dead_error(reasons));
            }
            // SAFETY: `&mut self` excludes readers; the lock excludes purge.
            unsafe { write_body(self.cell, &stored_nonce, plain, &tag) };
            return Ok(());
        }
        let old_layout = cell_layout(old_len)?;
        let layout = cell_layout(new_len)?;
        let header = CellHeader {
            pin: PinState::new(),
            len: new_len32,
            id,
            expires_at_ns,
        };
        let cell = new_cell(&self.alloc, header, &stored_nonce, plain, &tag)?;
        let mut registry = REGISTRY.lock();
        if let Some(reasons) = self.header().pin.killed() {
            drop(registry);
            // SAFETY: the new cell was never published.
            unsafe {
                wipe(cell.as_ptr() as usize, layout.size());
                self.alloc.deallocate(cell.cast(), layout);
            }
            return Err(dead_error(reasons));
        }
        if registry.try_reserve(1).is_err() {
            drop(registry);
            // SAFETY: as above.
            unsafe {
                wipe(cell.as_ptr() as usize, layout.size());
                self.alloc.deallocate(cell.cast(), layout);
            }
            return Err(Error::AllocFailed);
        }
        registry.remove(&(self.cell.as_ptr() as usize));
        if in_arena(cell) {
            registry.insert(cell.as_ptr() as usize);
        }
        drop(registry);
        let old = core::mem::replace(&mut self.cell, cell);
        // SAFETY: the old cell is unpublished and ours alone.
        unsafe {
            wipe(old.as_ptr() as usize, old_layout.size());
            self.alloc.deallocate(old.cast(), old_layout);
        }
        Ok(())
    }

    /// Makes the secret expire `ttl` from now: after that, accesses return
    /// `Expired` and the stored ciphertext is wiped (by the first access that
    /// notices; there is no background thread).
    pub fn expire_after(&mut self, ttl: Duration) {
        let deadline =
            sys::monotonic_ns().saturating_add(ttl.as_nanos().min(u64::MAX as u128) as u64);
        // SAFETY: `&mut self`: no reader is looking at the header.
        unsafe { (*self.cell.as_ptr()).expires_at_ns = deadline.max(1) };
    }

    /// Builder form of [`Secret::expire_after`].
    pub fn with_expiry(mut self, ttl: Duration) -> Self {
        self.expire_after(ttl);
        self
    }

    /// Whether the sealed storage sits in locked memory: `Some(true)` in the
    /// locked arena, `Some(false)` in arena memory the kernel refused to lock
    /// (best-effort policy: ciphertext only), `None` outside the arena (a
    /// foreign allocator).
    pub fn storage_locked(&self) -> Option<bool> {
        SecureAlloc::is_locked(self.cell.as_ptr() as *const u8)
    }

    /// Compares two secrets' plaintexts in constant time (for equal lengths).
    pub fn ct_eq(&self, other: &Self) -> Result<bool, Error> {
        let a = self.open()?;
        let b = other.open()?;
        if a.buf.len() != b.buf.len() {
            return Ok(false);
        }
        let diff = a
            .buf
            .iter()
            .zip(b.buf.iter())
            .fold(0u8, |acc, (x, y)| acc | core::hint::black_box(x ^ y));
        Ok(core::hint::black_box(diff) == 0)
    }

    /// An independent copy, freshly sealed under a new identity and nonce.
    pub fn try_clone(&self) -> Result<Self, Error>
    where
        A: Clone,
    {
        let plain = self.open()?;
        let mut copy = new_plain_buf(plain.buf.len() + TAG_LEN)?;
        protect::append(&mut copy, &plain.buf);
        drop(plain);
        Self::seal_new(copy, self.alloc.clone(), self.header().expires_at_ns)
    }

    /// Wipes and frees the secret now (dropping it does the same).
    pub fn destroy(self) {
        drop(self)
    }

    /// Test hook: the stored `nonce | ciphertext | tag` bytes, writable.
    #[cfg(feature = "test-hooks")]
    pub fn sealed_bytes_mut(&mut self) -> &mut [u8] {
        let len = self.header().len as usize;
        // SAFETY: `&mut self` gives exclusive access to the body.
        unsafe { body_slice_mut(self.cell, len) }
    }

    /// Test hook: the cell's address and length.
    #[cfg(feature = "test-hooks")]
    pub fn cell_range(&self) -> (usize, usize) {
        (
            self.cell.as_ptr() as usize,
            HEADER_LEN + NONCE_LEN + sealed_len(self.header().len as usize) + TAG_LEN,
        )
    }
}

impl<T: Protect, A: Allocator> Drop for Secret<T, A> {
    fn drop(&mut self) {
        REGISTRY.lock().remove(&(self.cell.as_ptr() as usize));
        let len = self.header().len as usize;
        if let Ok(layout) = cell_layout(len) {
            // SAFETY: unregistered, so purge cannot reach it; `&mut self`
            // excludes readers. The header needs no drop.
            unsafe {
                wipe(self.cell.as_ptr() as usize, layout.size());
                self.alloc.deallocate(self.cell.cast(), layout);
            }
        }
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<T: Protect, A: Allocator> zeroize::ZeroizeOnDrop for Secret<T, A> {}

impl<T: Protect, A: Allocator> fmt::Debug for Secret<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl<T: Protect, A: Allocator> PartialEq for Secret<T, A> {
    /// Constant-time comparison of the plaintexts; unreadable secrets
    /// (tampered, expired, purged) compare unequal.
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).unwrap_or(false)
    }
}

/// Allocates a cell from `alloc` and fills it: header, then the sealed body.
fn new_cell<A: Allocator>(
    alloc: &A,
    header: CellHeader,
    stored_nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
    tag: &[u8; TAG_LEN],
) -> Result<NonNull<CellHeader>, Error> {
    debug_assert_eq!(sealed_len(header.len as usize), ciphertext.len());
    let layout = cell_layout(ciphertext.len())?;
    let cell = alloc
        .allocate(layout)
        .map_err(|_| arena_error())?
        .cast::<CellHeader>();
    // SAFETY: the cell is a fresh allocation of `layout`, 8-aligned and long
    // enough for the header and a body of `ciphertext.len()` bytes.
    unsafe {
        cell.as_ptr().write(header);
        write_body(cell, stored_nonce, ciphertext, tag);
    }
    Ok(cell)
}

/// Writes nonce, ciphertext and tag into a cell's body.
///
/// # Safety
/// `cell` is a live cell whose header says `ciphertext.len()` and nobody
/// else reads or writes its body meanwhile.
unsafe fn write_body(
    cell: NonNull<CellHeader>,
    stored_nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
    tag: &[u8; TAG_LEN],
) {
    // SAFETY: forwarded from the caller.
    let body = unsafe { body_slice_mut(cell, ciphertext.len()) };
    body[..NONCE_LEN].copy_from_slice(stored_nonce);
    body[NONCE_LEN..NONCE_LEN + ciphertext.len()].copy_from_slice(ciphertext);
    body[NONCE_LEN + ciphertext.len()..].copy_from_slice(tag);
}

/// # Safety
/// `cell` is live with plaintext length `len`, and its body is not being
/// written.
unsafe fn body_slice<'a>(cell: NonNull<CellHeader>, len: usize) -> &'a [u8] {
    // SAFETY: the body follows the header inside the cell's allocation.
    unsafe {
        core::slice::from_raw_parts(
            (cell.as_ptr() as *const u8).add(HEADER_LEN),
            NONCE_LEN + sealed_len(len) + TAG_LEN,
        )
    }
}

/// # Safety
/// `cell` is live with plaintext length `len`, and the caller has exclusive
/// access to its body.
unsafe fn body_slice_mut<'a>(cell: NonNull<CellHeader>, len: usize) -> &'a mut [u8] {
    // SAFETY: as in `body_slice`, exclusively.
    unsafe {
        core::slice::from_raw_parts_mut(
            (cell.as_ptr() as *mut u8).add(HEADER_LEN),
            NONCE_LEN + sealed_len(len) + TAG_LEN,
        )
    }
}

/// Wipes a cell's body (nonce, ciphertext, tag), keeping the header.
///
/// # Safety
/// The caller won the wipe through the cell's pin state (nobody is reading).
unsafe fn wipe_body(cell: NonNull<CellHeader>) {
    // SAFETY: the header stays valid; forwarded exclusivity for the body.
    let len = unsafe { cell.as_ref() }.len as usize;
    // SAFETY: as above.
    unsafe {
        wipe(
            cell.as_ptr() as usize + HEADER_LEN,
            NONCE_LEN + sealed_len(len) + TAG_LEN,
        )
    };
}

/// Wipes the key page and every live secret's stored ciphertext in the
/// arena. Afterwards every access returns `KeyUnavailable`, and new secrets
/// cannot be created. Meant for shutdown paths and panic hooks.
///
/// It returns once the key is wiped (waiting for any access that is using it
/// to finish) and every stored ciphertext not being read at that moment is
/// wiped; a ciphertext that an `expose` is copying is wiped by that `expose`
/// as it finishes. Secrets stored by a foreign allocator keep their
/// ciphertext, which is useless without the key.
///
/// Not async-signal-safe: it takes a lock and may wait for a reader, so a
/// signal handler that interrupted such a reader would wait forever.
pub fn purge() {
    key_page::purge_key();
    let registry = REGISTRY.lock();
    for &addr in registry.iter() {
        // SAFETY: registered cells are live (drop unregisters before freeing,
        // under this lock).
        let cell = unsafe { NonNull::new_unchecked(addr as *mut CellHeader) };
        // SAFETY: as above.
        if unsafe { cell.as_ref() }.pin.kill(PURGED) {
            // SAFETY: we won the wipe: nobody is pinned.
            unsafe { wipe_body(cell) };
        }
    }
}

/// How the live secrets are stored, from [`stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretStats {
    /// Live secrets.
    pub live: usize,
    /// Secrets whose sealed storage is in locked arena memory.
    pub storage_locked: usize,
    /// Secrets whose sealed storage is in arena memory the kernel refused to
    /// lock (ciphertext only; key and views stay locked).
    pub storage_unlocked: usize,
    /// Secrets stored by an allocator outside the arena.
    pub storage_foreign: usize,
    /// The key page, once created.
    pub key_page: Option<KeyPageInfo>,
    /// Whether [`purge`] has run.
    pub purged: bool,
}

/// A snapshot of every live secret's storage mode.
pub fn stats() -> SecretStats {
    let registry = REGISTRY.lock();
    let (mut locked, mut unlocked) = (0, 0);
    for &addr in registry.iter() {
        match SecureAlloc::is_locked(addr as *const u8) {
            Some(true) => locked += 1,
            _ => unlocked += 1,
        }
    }
    drop(registry);
    let live = LIVE.load(Ordering::Relaxed);
    SecretStats {
        live,
        storage_locked: locked,
        storage_unlocked: unlocked,
        storage_foreign: live.saturating_sub(locked + unlocked),
        key_page: key_page_info(),
        purged: key_page::is_purged(),
    }
}
