//! `Secret<T, A>`: a value kept encrypted at rest (AES-256-GCM, `ring`) in
//! arena memory, readable only inside a scoped access.
//!
//! Storage is one allocation from `A` per secret, a *cell*, holding only
//! sealed bytes:
//!
//! ```text
//! [ nonce (8) ][ ciphertext (len rounded up to 16) ][ tag (16) ]
//! ```
//!
//! Everything a read or a wipe trusts — the length, the identity, the
//! expiry, the pin state — lives in the secret's registry entry, in
//! memory the registry owns, out of reach of an overflow from a neighbouring
//! allocation. The associated data is the secret's `id` (unique in the
//! process) and its length, so a ciphertext moved into another secret fails
//! to open. Plaintext exists only in a buffer from the fail-closed arena
//! during `expose`/`expose_mut`, and that buffer is wiped by the arena when
//! the access ends.

#![allow(unsafe_code)]

mod key_page;
mod protect;
mod registry;
mod rekey;
#[cfg(feature = "serde")]
pub(crate) mod serde_impl;
mod spare_view;
mod ways_in;

pub use key_page::{ensure_key, key_page_info, KeyPageInfo};
pub use protect::{Plain, PlainBuf, Protect, SecureBytes, SecureString};
pub use rekey::{rekey, rekey_step};
pub use ways_in::{SecretBytes, SecretString};

#[cfg(secalloc_test_hooks)]
pub use key_page::{key_page_bytes, key_page_bytes_of};

use crate::arena::wipe::wipe;
use crate::error::Error;
use crate::pin::{DESTROYED, EXPIRED, PURGED};
use crate::sys;
use crate::SecureAlloc;
use allocator_api2::alloc::Allocator;
use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use key_page::{key_ready, nonce, with_key, KeyMaterial};
use registry::{Commit, Entry};
use ring::aead::Aad;

const NONCE_LEN: usize = 8;
const TAG_LEN: usize = 16;

/// Bytes of ciphertext stored for `len` bytes of plaintext: rounded up to
/// whole AES blocks. The plaintext is zero-padded in its locked buffer before
/// sealing because `ring` copies a final partial block to an ordinary stack
/// temporary (and does not wipe it); whole blocks are processed in place.
fn sealed_len(len: usize) -> usize {
    len.next_multiple_of(16)
}

/// Associated data: the secret's identity, its true length, and the key
/// generation it is sealed under (so a ciphertext kept from before a
/// re-key never opens under a later key, even where a page is reused).
///
/// Exactly one 16-byte block, which GHASH takes in one step (20 bytes, a
/// 64-bit epoch, cost every seal and open a second block: +100
/// instructions a 32-byte secret's create + read, by callgrind). The epoch
/// is its low 32 bits: only two generations are ever live, each under a
/// fresh random key, so the epoch in the AAD is a second line of defence
/// that would need 2^32 re-keys to repeat.
fn aad(id: u64, len: usize, epoch: u64) -> Aad<[u8; 16]> {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&id.to_le_bytes());
    bytes[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    bytes[12..].copy_from_slice(&(epoch as u32).to_le_bytes());
    Aad::from(bytes)
}

/// How often a create, re-seal or read starts over because a re-key
/// switched keys between its seal and its commit (or its copy and its
/// open). Each start-over means another re-key completed meanwhile.
const STALE_RETRIES: usize = 8;

/// The cell for `len` bytes of plaintext: nonce, sealed body, tag.
fn cell_layout(len: usize) -> Result<Layout, Error> {
    let size = (NONCE_LEN + TAG_LEN)
        .checked_add(sealed_len(len))
        .ok_or(Error::AllocFailed)?;
    // Alignment 1, the alignment of a plaintext buffer: a fresh secret's
    // buffer becomes its cell without a copy (`seal_new_in_buffer`), and a
    // block is freed with the layout it was allocated with. Cells are only
    // ever read and written as bytes.
    Layout::from_size_align(size, 1).map_err(|_| Error::AllocFailed)
}

/// Whether cells from `A` are owned by their secret alone: only
/// `SecureAlloc` is known to release a cell exclusively through the
/// secret's own `Drop` (a leaked secret leaks its cell). Decided by exact
/// type identity, so no other allocator, however it is built, qualifies.
fn arena_owned<A: Allocator>() -> bool {
    typeid::of::<A>() == typeid::of::<SecureAlloc>()
}

/// Plaintext length from which a fresh secret's locked buffer becomes its
/// cell (`Secret::seal_new_in_buffer`) — when the process may lock without
/// limit. Otherwise the buffer stays a transient of its own, which is what
/// keeps every secret readable once the budget is spent: creation needs a
/// spare buffer of the secret's size, so the last secret that fits leaves
/// one free for reads. (Taking the in-buffer path under a limit, 1,524
/// secrets of 4 KiB filled 8 MiB and not one could be read back — found by
/// the issue-12 attack review; tests/issue12_secret.rs.) Below 1 KiB the
/// copy and wipe saved are worth less than the allocator round trip.
const IN_BUFFER_MIN: usize = 1024;

/// Whether `alloc` is the fail-closed arena: a cell from it is locked, so
/// the locked plaintext buffer may become the cell. (A best-effort cell
/// must be able to come from unlocked memory once the budget is spent, so
/// it is never a plaintext buffer, which is always locked.)
fn fail_closed_arena<A: Allocator>(alloc: &A) -> bool {
    if !arena_owned::<A>() {
        return false;
    }
    // SAFETY: `A` is exactly `SecureAlloc` (type identity above), so the
    // bytes of `alloc` are a valid `SecureAlloc`; it is `Copy` and holds no
    // resources, so the copy is a plain read.
    let arena: SecureAlloc = unsafe { core::mem::transmute_copy(alloc) };
    arena.policy() == crate::LockPolicy::FailClosed
}

/// The registry's storage flags for a fresh cell of `layout` from `A`.
fn storage_of<A: Allocator>(alloc: &A, cell: usize, layout: Layout) -> u8 {
    if fail_closed_arena(alloc) {
        // A block from the fail-closed arena is locked, or it would not
        // have been handed out, and it is at least `layout` (the arena's
        // own contract for an allocation that succeeded): no table walk
        // (2–3% of a 32-byte create + read + drop in the profile).
        return registry::STORAGE_LOCKED | registry::ARENA_OWNED;
    }
    // One lookup for both facts (each is a walk of the arena's tables).
    let block = SecureAlloc::usable_size_and_locked(cell as *const u8);
    let mut flags = match block {
        Some((_, true)) => registry::STORAGE_LOCKED,
        Some((_, false)) => registry::STORAGE_UNLOCKED,
        None => 0,
    };
    if arena_owned::<A>() {
        // The length the registry records is bounded by the real block:
        // purge wipes no more than the arena handed out.
        match block {
            Some((usable, _)) if usable >= layout.size() => flags |= registry::ARENA_OWNED,
            _ => crate::fatal::fatal(crate::fatal::FatalKind::Corruption),
        }
    }
    flags
}

/// Round-robin counter giving each thread its slot (see [`thread_slot`]).
static NEXT_SLOT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

std::thread_local! {
    /// This thread's slot + 1 (0 until first asked).
    static THREAD_SLOT: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// A small number for the calling thread, handed out round robin on first
/// use: the registry shard it registers in and the key-gate counter it
/// enters through, so that threads spread over both.
pub(crate) fn thread_slot() -> usize {
    THREAD_SLOT
        .try_with(|slot| match slot.get() {
            0 => {
                let chosen = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
                slot.set(chosen + 1);
                chosen
            }
            s => s - 1,
        })
        .unwrap_or(0)
}

/// Next block of secret identities. An identity is never reused within
/// the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Identities a thread takes at a time (see [`next_id`]).
const ID_BLOCK: u64 = 256;

std::thread_local! {
    /// This thread's block of identities: (next, end).
    static ID_CACHE: core::cell::Cell<(u64, u64)> = const { core::cell::Cell::new((0, 0)) };
}

/// A fresh secret identity. Threads take [`ID_BLOCK`] at a time from the
/// shared counter, so creating secrets on several threads does not bounce
/// its cache line between them; blocks never overlap.
fn next_id() -> u64 {
    ID_CACHE
        .try_with(|cache| {
            let (next, end) = cache.get();
            if next < end {
                cache.set((next + 1, end));
                return next;
            }
            let start = NEXT_ID.fetch_add(ID_BLOCK, Ordering::Relaxed);
            cache.set((start + 1, start + ID_BLOCK));
            start
        })
        .unwrap_or_else(|_| NEXT_ID.fetch_add(1, Ordering::Relaxed))
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

/// Plaintext of one access, in a locked arena buffer. Dropping it wipes
/// the buffer and keeps it as the thread's spare view, or frees it, and the
/// arena wipes every freed byte.
struct Plaintext {
    buf: PlainBuf,
    /// What was opened: the cell, and the key generation it was sealed under.
    snapshot: registry::Snapshot,
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        let buf = core::mem::replace(&mut self.buf, PlainBuf::new_in(SecureAlloc::new()));
        spare_view::give_back(buf);
    }
}

/// The allocator of plaintext buffers: the fail-closed arena, and under a
/// lock limit one whose frees go straight to the central lists, so that
/// the room a create leaves for a read (see [`room_for_a_view`]) is a slot
/// any thread's read can take, not one parked in the creator's cache.
fn view_allocator() -> SecureAlloc {
    if crate::arena::budget::lock_unlimited_at_start() {
        SecureAlloc::new()
    } else {
        SecureAlloc::new().freeing_to_central()
    }
}

/// A locked buffer for the plaintext of a `len`-byte secret: room for the
/// padded plaintext and the tag, and sized like the secret's cell, so that
/// views and cells of small secrets come from the same size class and share
/// locked slabs instead of each class committing slabs of its own (under a
/// tight `RLIMIT_MEMLOCK` that is the difference of a whole slab).
fn new_plain_buf(len: usize) -> Result<PlainBuf, Error> {
    let capacity = cell_layout(len).map(|l| l.size()).unwrap_or(len);
    let mut buf = PlainBuf::new_in(view_allocator());
    buf.try_reserve_exact(capacity).map_err(|_| arena_error())?;
    Ok(buf)
}

/// Seals `plain[from..]` (`len` bytes of plaintext) in place under `id`
/// with `material`'s key: it is zero-padded to whole blocks and becomes
/// that many bytes of ciphertext (the AAD carries the length `len`).
fn seal_tail_in_place(
    material: &KeyMaterial,
    plain: &mut PlainBuf,
    from: usize,
    id: u64,
) -> Result<([u8; NONCE_LEN], [u8; TAG_LEN]), Error> {
    let len = plain.len() - from;
    plain
        .try_reserve_exact(sealed_len(len) - len)
        .map_err(|_| arena_error())?;
    plain.resize(from + sealed_len(len), 0);
    let stored = material.next_nonce()?;
    let tag = material
        .key()
        .seal_in_place_separate_tag(
            nonce(stored),
            aad(id, len, material.epoch()),
            &mut plain[from..],
        )
        .map_err(|_| Error::KeyUnavailable)?;
    let mut tag_bytes = [0u8; TAG_LEN];
    tag_bytes.copy_from_slice(tag.as_ref());
    Ok((stored, tag_bytes))
}

/// Undoes [`seal_tail_in_place`] with the same key (a commit came back
/// stale): `plain[from..]` is `len` bytes of plaintext again.
fn unseal_tail_in_place(
    material: &KeyMaterial,
    plain: &mut PlainBuf,
    from: usize,
    len: usize,
    id: u64,
    sealed: ([u8; NONCE_LEN], [u8; TAG_LEN]),
) -> Result<(), Error> {
    plain.truncate(from + sealed_len(len));
    plain
        .try_reserve_exact(TAG_LEN)
        .map_err(|_| arena_error())?;
    protect::append(plain, &sealed.1);
    material
        .key()
        .open_in_place(
            nonce(sealed.0),
            aad(id, len, material.epoch()),
            &mut plain[from..],
        )
        .map_err(|_| Error::Tampered)?;
    plain.truncate(from + len);
    Ok(())
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
/// s.expose_mut(|v| v.extend_from_slice(b"more"))??;
/// assert_eq!(s.expose(|v| v.len())?, 7);
/// # Ok::<(), secalloc::Error>(())
/// ```
pub struct Secret<T: Protect, A: Allocator = SecureAlloc> {
    // The registry entry: length, identity, expiry, pin state and the
    // cell's address. `Send`/`Sync` follow from `T` and `A`: shared access
    // (`expose`) reads the cell under the pin protocol and decrypts into a
    // buffer private to the call; every write needs `&mut self` (or is
    // `purge`, which synchronises through the pin state and the registry).
    entry: &'static Entry,
    alloc: A,
    holds: PhantomData<T>,
}

impl<T: Protect> Secret<T> {
    /// Seals `value` in the fail-closed arena, wiping the value's own buffer.
    ///
    /// # Errors
    /// `LockRefused` if the arena or the key page cannot be locked,
    /// `KeyUnavailable` after `purge` or in a forked child.
    ///
    /// ```
    /// let key = secalloc::Secret::new([0x42u8; 32])?; // the array on the stack is wiped
    /// assert_eq!(key.expose(|k| k[0])?, 0x42);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn new(value: T) -> Result<Self, Error> {
        Self::new_in(value, SecureAlloc::new())
    }
}

impl<T: Plain> Secret<T> {
    /// Creates a secret whose value is written by `init` straight into
    /// locked memory (it starts zeroed), so no copy of it ever sits on the
    /// caller's stack.
    ///
    /// ```
    /// let key = secalloc::Secret::<[u8; 32]>::new_with(|k| k.fill(9))?;
    /// assert_eq!(key.expose(|k| k[31])?, 9);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn new_with(init: impl FnOnce(&mut T)) -> Result<Self, Error> {
        key_ready()?;
        let mut plain = new_plain_buf(core::mem::size_of::<T>())?;
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
    ///
    /// ```
    /// use secalloc::{SecureAlloc, Secret};
    /// let s = Secret::new_in(vec![1u8, 2, 3], SecureAlloc::best_effort())?;
    /// assert!(s.storage_locked().is_some());
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn new_in(value: T, alloc: A) -> Result<Self, Error> {
        // The key page first: it is the one piece of locked memory every
        // secret needs, so it must not lose the budget to arena slabs.
        if let Err(e) = key_ready() {
            // The value's own memory is wiped on every path, failures too
            // (it was dropped unwiped here: found by the issue-12 attack
            // review, after `purge`, in a forked child, with no budget).
            value.discard();
            return Err(e);
        }
        let value = match value.into_owned_bytes() {
            Ok(bytes) => return Self::seal_new_owned(bytes, alloc, 0),
            Err(value) => value,
        };
        let mut plain = match new_plain_buf(value.plaintext_len()) {
            Ok(plain) => plain,
            Err(e) => {
                value.discard();
                return Err(e);
            }
        };
        if value.plaintext_len() >= IN_BUFFER_MIN
            && fail_closed_arena(&alloc)
            && crate::arena::budget::lock_unlimited_at_start()
        {
            // The buffer becomes the cell: room for the nonce first, then
            // the plaintext, sealed where it lies.
            plain.resize(NONCE_LEN, 0);
            value.into_plaintext(&mut plain)?;
            return Self::seal_new_in_buffer(plain, alloc, 0);
        }
        value.into_plaintext(&mut plain)?;
        Self::seal_new(plain, alloc, 0)
    }

    /// Seals a value that is its own heap buffer (`Vec<u8>`, `String`,
    /// `Box<[u8]>`) where its bytes lie, copies the ciphertext into the cell
    /// and wipes the buffer — its whole capacity — before freeing it. The
    /// plaintext is never copied: no locked plaintext buffer is allocated,
    /// filled and wiped (for a 32-byte secret that was one arena round trip
    /// of the three a create + read + drop made), and under a tight lock
    /// budget the create needs room for the cell alone.
    ///
    /// The bytes are sealed in whole AES blocks only (`ring` copies a final
    /// partial block to a stack temporary that it does not wipe), so a
    /// buffer without room for the zero padding takes the copying path.
    fn seal_new_owned(mut bytes: Vec<u8>, alloc: A, expires_at_ns: u64) -> Result<Self, Error> {
        let len = bytes.len();
        let padded = sealed_len(len);
        if bytes.capacity() < padded {
            let mut plain = match new_plain_buf(len) {
                Ok(plain) => plain,
                Err(e) => {
                    protect::wipe_vec_whole(bytes);
                    return Err(e);
                }
            };
            Protect::into_plaintext(bytes, &mut plain)?;
            return Self::seal_new(plain, alloc, expires_at_ns);
        }
        let room = match room_for_a_view(len) {
            Ok(room) => room,
            Err(e) => {
                protect::wipe_vec_whole(bytes);
                return Err(e);
            }
        };
        // Within capacity: no reallocation, so no copy of the plaintext is
        // left behind in a freed buffer.
        bytes.resize(padded, 0);
        let sealed = Self::seal_owned_bytes(&mut bytes, len, alloc, expires_at_ns);
        drop(room);
        protect::wipe_vec_whole(bytes);
        sealed
    }

    /// The sealing loop of [`Self::seal_new_owned`]: `bytes` holds `len`
    /// bytes of plaintext, zero-padded to whole blocks; on success it holds
    /// their ciphertext, on failure the plaintext again or ciphertext.
    fn seal_owned_bytes(
        bytes: &mut [u8],
        len: usize,
        alloc: A,
        expires_at_ns: u64,
    ) -> Result<Self, Error> {
        let len32 = u32::try_from(len).map_err(|_| Error::AllocFailed)?;
        let id = next_id();
        Self::commit_with_retries(alloc, |material, alloc| {
            let stored = material.next_nonce()?;
            let epoch = material.epoch();
            let tag = material
                .key()
                .seal_in_place_separate_tag(nonce(stored), aad(id, len, epoch), bytes)
                .map_err(|_| Error::KeyUnavailable)?;
            let mut tag_bytes = [0u8; TAG_LEN];
            tag_bytes.copy_from_slice(tag.as_ref());
            let (cell, layout) = new_cell(alloc, &stored, bytes, &tag_bytes)?;
            match Self::register_cell(cell, layout, len32, id, alloc, expires_at_ns, epoch)? {
                Some(entry) => Ok(Some(entry)),
                None => {
                    // Stale: back to plaintext, to be sealed again under
                    // the key now current.
                    material
                        .key()
                        .open_in_place_separate_tag(
                            nonce(stored),
                            aad(id, len, epoch),
                            tag,
                            bytes,
                            0..,
                        )
                        .map_err(|_| Error::Tampered)?;
                    Ok(None)
                }
            }
        })
    }

    /// Runs `attempt` (a seal, a cell and its registration) with the current
    /// key until it commits: `Ok(None)` from it means its commit came back
    /// stale (a re-key switched keys between its seal and its commit, and
    /// it undid its seal), and it runs again under the key now current.
    fn commit_with_retries(
        alloc: A,
        mut attempt: impl FnMut(&KeyMaterial, &A) -> Result<Option<&'static Entry>, Error>,
    ) -> Result<Self, Error> {
        for _ in 0..STALE_RETRIES {
            if let Some(entry) = with_key(|material| attempt(material, &alloc))? {
                return Ok(Secret {
                    entry,
                    alloc,
                    holds: PhantomData,
                });
            }
        }
        Err(Error::KeyUnavailable)
    }

    /// [`Self::seal_new`] for a cell allocator that is the arena itself:
    /// `plain` holds `NONCE_LEN` placeholder bytes, then the plaintext; it is
    /// sealed in place and handed over as the cell — no second allocation,
    /// no copy of the ciphertext, no wipe of a plaintext buffer (a 64 KiB
    /// secret's create made three passes over its bytes besides the
    /// encryption). If the buffer's size is not exactly a cell (the value
    /// grew it past the size hint), it takes the copying path instead.
    fn seal_new_in_buffer(
        mut plain: PlainBuf,
        alloc: A,
        expires_at_ns: u64,
    ) -> Result<Self, Error> {
        let len = plain.len() - NONCE_LEN;
        let len32 = u32::try_from(len).map_err(|_| Error::AllocFailed)?;
        let layout = cell_layout(len)?;
        let id = next_id();
        for _ in 0..STALE_RETRIES {
            // Sealed, allocated and registered inside the key's gate, so
            // the key cannot be retired before a stale commit is undone.
            let done = with_key(|material| {
                let sealed = seal_tail_in_place(material, &mut plain, NONCE_LEN, id)?;
                let (stored_nonce, tag) = sealed;
                if plain.len() + TAG_LEN != layout.size() || plain.capacity() != layout.size() {
                    // Only ciphertext is copied; `plain` is wiped when freed.
                    let (cell, layout) = new_cell(
                        &alloc,
                        &stored_nonce,
                        &plain[NONCE_LEN..NONCE_LEN + sealed_len(len)],
                        &tag,
                    )?;
                    return match Self::register_cell(
                        cell,
                        layout,
                        len32,
                        id,
                        &alloc,
                        expires_at_ns,
                        material.epoch(),
                    )? {
                        Some(entry) => Ok(Some((entry, false))),
                        None => {
                            unseal_tail_in_place(material, &mut plain, NONCE_LEN, len, id, sealed)?;
                            Ok(None)
                        }
                    };
                }
                protect::append(&mut plain, &tag);
                plain[..NONCE_LEN].copy_from_slice(&stored_nonce);
                // The buffer came from `SecureAlloc::new()` with exactly
                // `layout` (capacity == size, alignment 1), and `A` is
                // `SecureAlloc`, which frees a block whatever handle and
                // policy it came from.
                let cell = plain.as_mut_ptr() as usize;
                let storage = storage_of(&alloc, cell, layout);
                match registry::register(cell, len32, id, expires_at_ns, storage, material.epoch())?
                {
                    Commit::Done(entry) => Ok(Some((entry, true))),
                    Commit::Stale => {
                        unseal_tail_in_place(material, &mut plain, NONCE_LEN, len, id, sealed)?;
                        Ok(None)
                    }
                }
            })?;
            if let Some((entry, buffer_is_cell)) = done {
                if buffer_is_cell {
                    // Registered as the cell: forgetting the vector hands
                    // its buffer's ownership to the secret.
                    core::mem::forget(plain);
                }
                return Ok(Secret {
                    entry,
                    alloc,
                    holds: PhantomData,
                });
            }
        }
        Err(Error::KeyUnavailable)
    }

    /// Records a `cell` sealed under `epoch` in the registry; frees it if
    /// that fails or is stale (`Ok(None)`: the caller re-seals).
    fn register_cell(
        cell: NonNull<u8>,
        layout: Layout,
        len32: u32,
        id: u64,
        alloc: &A,
        expires_at_ns: u64,
        epoch: u64,
    ) -> Result<Option<&'static Entry>, Error> {
        let storage = storage_of(alloc, cell.as_ptr() as usize, layout);
        let outcome = registry::register(
            cell.as_ptr() as usize,
            len32,
            id,
            expires_at_ns,
            storage,
            epoch,
        );
        match outcome {
            Ok(Commit::Done(entry)) => Ok(Some(entry)),
            other => {
                // SAFETY: the cell was never published.
                unsafe { free_cell(alloc, cell, layout) };
                other.map(|_| None)
            }
        }
    }

    fn seal_new(mut plain: PlainBuf, alloc: A, expires_at_ns: u64) -> Result<Self, Error> {
        let len = plain.len();
        let len32 = u32::try_from(len).map_err(|_| Error::AllocFailed)?;
        let id = next_id();
        Self::commit_with_retries(alloc, |material, alloc| {
            let sealed = seal_tail_in_place(material, &mut plain, 0, id)?;
            let (cell, layout) = new_cell(alloc, &sealed.0, &plain, &sealed.1)?;
            let epoch = material.epoch();
            match Self::register_cell(cell, layout, len32, id, alloc, expires_at_ns, epoch)? {
                Some(entry) => Ok(Some(entry)),
                None => {
                    unseal_tail_in_place(material, &mut plain, 0, len, id, sealed)?;
                    Ok(None)
                }
            }
        })
    }

    /// Decrypts into a fresh locked buffer.
    fn open(&self) -> Result<Plaintext, Error> {
        for _ in 0..STALE_RETRIES {
            if let Some(opened) = self.open_once() {
                return opened;
            }
        }
        Err(Error::KeyUnavailable)
    }

    /// One attempt of [`Self::open`]; `None` if the key the copied body
    /// was sealed under was retired before it could be opened (the secret
    /// has moved to a newer key since the copy: start over).
    fn open_once(&self) -> Option<Result<Plaintext, Error>> {
        let entry = self.entry;
        if let Err(reasons) = entry.pin.pin() {
            return Some(Err(dead_error(reasons)));
        }
        let deadline = entry.expires_at_ns();
        if deadline != 0 && sys::monotonic_ns() >= deadline {
            let wipe_now = entry.pin.unpin();
            let wipe_now = entry.pin.kill(EXPIRED) || wipe_now;
            if wipe_now {
                // SAFETY: the pin protocol gave us the (only) wipe, and
                // `&self` keeps the cell alive.
                unsafe { wipe_body(entry) };
            }
            return Some(Err(Error::Expired));
        }
        let (cell, len) = entry.cell();
        // Stable while pinned: a move to a new key waits for readers.
        let epoch = entry.epoch();
        let copied = spare_view::take(len).map(|mut buf| {
            // SAFETY: pinned: the body is intact and not being rewritten
            // (rewrites need `&mut self`; purge waits for us to unpin); the
            // length is the registry's, not the cell's.
            let body = unsafe { body_slice(cell, len) };
            protect::append(&mut buf, &body[NONCE_LEN..]);
            let mut stored = [0u8; NONCE_LEN];
            stored.copy_from_slice(&body[..NONCE_LEN]);
            (buf, stored)
        });
        if entry.pin.unpin() {
            // SAFETY: killed while we were pinned and we were the last out.
            unsafe { wipe_body(entry) };
        }
        let (mut buf, stored) = match copied {
            Ok(copied) => copied,
            Err(e) => return Some(Err(e)),
        };
        let id = entry.id();
        let opened = key_page::with_key_of(epoch, |material| {
            material
                .key()
                .open_in_place(nonce(stored), aad(id, len, epoch), &mut buf)
                .map(|_| ())
                .map_err(|_| Error::Tampered)
        })?;
        Some(opened.and_then(|()| {
            buf.truncate(len);
            T::check(&buf)?;
            Ok(Plaintext {
                buf,
                snapshot: registry::Snapshot {
                    id,
                    cell,
                    len,
                    epoch,
                },
            })
        }))
    }

    /// Runs `f` on the plaintext. The plaintext exists only in locked arena
    /// memory and only for the duration of the call; concurrent `expose`
    /// calls from several threads are fine.
    ///
    /// # Errors
    /// `Tampered` if the stored ciphertext was modified or swapped,
    /// `Expired`, `KeyUnavailable` (after `purge`, or in a forked child),
    /// `LockRefused` if no locked memory is left for the plaintext.
    ///
    /// ```
    /// let s = secalloc::SecretString::copy_from_str("hunter2")?;
    /// assert_eq!(s.expose(|p| p.len())?, 7);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn expose<R>(&self, f: impl FnOnce(&T::View) -> R) -> Result<R, Error> {
        let mut plain = self.open()?;
        let result = f(T::view(&plain.buf));
        if plain.snapshot.epoch != key_page::current_epoch() {
            // Sealed under a key a re-key replaced: move it to the current
            // one now that its plaintext is at hand. A failure leaves it
            // for the sweep (`rekey_step`); the read itself succeeded.
            let _ = rekey::move_opened(self.entry, &mut plain.buf, &plain.snapshot);
        }
        Ok(result)
    }

    /// Runs `f` on the plaintext mutably, then re-seals the result with a
    /// fresh nonce. Growth (for `Vec<u8>` and `String`) stays in the arena.
    ///
    /// # Errors
    /// As [`Secret::expose`]; if the secret is purged during the call, the
    /// change is discarded and `KeyUnavailable` returned.
    ///
    /// ```
    /// let mut s = secalloc::SecretString::copy_from_str("abc")?;
    /// s.expose_mut(|p| p.push_str("def"))??; // the growth is fallible too
    /// assert_eq!(s.expose(|p| p.len())?, 6);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn expose_mut<R>(&mut self, f: impl FnOnce(&mut T::View) -> R) -> Result<R, Error> {
        let mut plain = self.open()?;
        let result = f(T::view_mut(&mut plain.buf));
        self.reseal(&mut plain.buf)?;
        Ok(result)
    }

    fn reseal(&mut self, plain: &mut PlainBuf) -> Result<(), Error> {
        let entry = self.entry;
        let new_len = plain.len();
        let new_len32 = u32::try_from(new_len).map_err(|_| Error::AllocFailed)?;
        let (old_cell, old_len) = entry.cell();
        let old_layout = cell_layout(old_len)?;
        let id = entry.id();
        let alloc = &self.alloc;
        for _ in 0..STALE_RETRIES {
            // Sealed and committed inside the key's gate (see `seal_new`).
            let done = with_key(|material| {
                let sealed = seal_tail_in_place(material, plain, 0, id)?;
                let (stored_nonce, tag) = sealed;
                let epoch = material.epoch();
                let outcome = if new_len == old_len {
                    registry::commit_reseal(entry, epoch, None, || {
                        // SAFETY: `&mut self` excludes readers; the
                        // registry lock (held while this runs) excludes
                        // purge and the re-keying sweep.
                        unsafe { write_body(old_cell, &stored_nonce, plain, &tag) };
                    })
                    .map(|c| (c, None))
                } else {
                    let (cell, layout) = new_cell(alloc, &stored_nonce, plain, &tag)?;
                    let storage = storage_of(alloc, cell.as_ptr() as usize, layout);
                    let new = Some((cell.as_ptr() as usize, new_len32, storage));
                    match registry::commit_reseal(entry, epoch, new, || {}) {
                        Ok(Commit::Done(retire)) => Ok((Commit::Done(retire), None)),
                        other => {
                            // SAFETY: the new cell was never published.
                            unsafe { free_cell(alloc, cell, layout) };
                            other.map(|c| (c, Some(())))
                        }
                    }
                };
                match outcome {
                    Err(reasons) => Err(dead_error(reasons)),
                    Ok((Commit::Done(retire), _)) => Ok(Some(retire)),
                    Ok((Commit::Stale, _)) => {
                        unseal_tail_in_place(material, plain, 0, new_len, id, sealed)?;
                        Ok(None)
                    }
                }
            })?;
            let Some(retire) = done else { continue };
            if new_len != old_len {
                // SAFETY: the old cell is no longer the entry's: purge and
                // the sweep cannot reach it, `&mut self` excludes readers,
                // and it came from `self.alloc`.
                unsafe {
                    free_cell(
                        &self.alloc,
                        NonNull::new_unchecked(old_cell as *mut u8),
                        old_layout,
                    )
                };
            }
            if let Some(epoch) = retire {
                registry::retire_if_unused(epoch);
            }
            return Ok(());
        }
        Err(Error::KeyUnavailable)
    }

    /// Makes the secret expire `ttl` from now: after that, accesses return
    /// `Expired` and the stored ciphertext is wiped (by the first access that
    /// notices; there is no background thread). The deadline is kept in the
    /// registry, not in the cell, so no write into the cell can extend it.
    ///
    /// A deadline that has already passed is final: calling this on a
    /// secret that expired (even one no access has noticed yet) wipes it
    /// instead of extending it.
    ///
    /// ```
    /// let mut s = secalloc::Secret::new([1u8; 16])?;
    /// s.expire_after(std::time::Duration::from_secs(60));
    /// assert!(s.expose(|_| ()).is_ok());
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn expire_after(&mut self, ttl: Duration) {
        let now = sys::monotonic_ns();
        let current = self.entry.expires_at_ns();
        if current != 0 && now >= current {
            if self.entry.pin.kill(EXPIRED) {
                // SAFETY: `&mut self` excludes readers and keeps the cell
                // alive; the pin protocol gave us the wipe.
                unsafe { wipe_body(self.entry) };
            }
            return;
        }
        let deadline = now.saturating_add(ttl.as_nanos().min(u64::MAX as u128) as u64);
        self.entry.set_expires_at_ns(deadline.max(1));
    }

    /// Builder form of [`Secret::expire_after`].
    ///
    /// ```
    /// let s = secalloc::Secret::new([1u8; 16])?.with_expiry(std::time::Duration::from_secs(60));
    /// # let _ = s;
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn with_expiry(mut self, ttl: Duration) -> Self {
        self.expire_after(ttl);
        self
    }

    /// Whether the sealed storage sits in locked memory: `Some(true)` in the
    /// locked arena, `Some(false)` in arena memory the kernel refused to lock
    /// (best-effort policy: ciphertext only), `None` outside the arena (a
    /// foreign allocator).
    ///
    /// ```
    /// let s = secalloc::Secret::new([1u8; 16])?;
    /// assert_eq!(s.storage_locked(), Some(true));
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn storage_locked(&self) -> Option<bool> {
        SecureAlloc::is_locked(self.entry.cell().0 as *const u8)
    }

    /// Compares two secrets' plaintexts in constant time (for equal lengths).
    ///
    /// ```
    /// use secalloc::Secret;
    /// let a = Secret::new([5u8; 16])?;
    /// let b = Secret::new([5u8; 16])?;
    /// assert!(a.ct_eq(&b)?);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn ct_eq(&self, other: &Self) -> Result<bool, Error> {
        let a = self.open()?;
        let b = other.open()?;
        Ok(ct_eq_slices(&a.buf, &b.buf))
    }

    /// Compares the plaintext with `presented` (a token or password a
    /// client sent) in constant time for equal lengths; a length mismatch
    /// returns `false` at once (lengths are not hidden).
    ///
    /// ```
    /// let token = secalloc::SecretString::copy_from_str("s3cr3t")?;
    /// assert!(token.ct_eq_bytes(b"s3cr3t")?);
    /// assert!(!token.ct_eq_bytes(b"guess!")?);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Secret::expose`]: an unreadable secret is an error, never a
    /// silent `false`.
    pub fn ct_eq_bytes(&self, presented: &[u8]) -> Result<bool, Error> {
        let plain = self.open()?;
        Ok(ct_eq_slices(&plain.buf, presented))
    }

    /// An independent copy, freshly sealed under a new identity and nonce.
    ///
    /// ```
    /// let a = secalloc::Secret::new([5u8; 16])?;
    /// let b = a.try_clone()?;
    /// assert!(a.ct_eq(&b)?);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn try_clone(&self) -> Result<Self, Error>
    where
        A: Clone,
    {
        let plain = self.open()?;
        let mut copy = new_plain_buf(plain.buf.len())?;
        protect::append(&mut copy, &plain.buf);
        drop(plain);
        Self::seal_new(copy, self.alloc.clone(), self.entry.expires_at_ns())
    }

    /// Wipes and frees the secret now (dropping it does the same).
    ///
    /// ```
    /// let s = secalloc::Secret::new([5u8; 16])?;
    /// s.destroy(); // wiped and freed now
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn destroy(self) {
        drop(self)
    }

    /// Test hook: the stored `nonce | ciphertext | tag` bytes, writable.
    #[cfg(secalloc_test_hooks)]
    pub fn sealed_bytes_mut(&mut self) -> &mut [u8] {
        let (cell, len) = self.entry.cell();
        // SAFETY: `&mut self` gives exclusive access to the body.
        unsafe { body_slice_mut(cell, len) }
    }

    /// Test hook: the cell's address and length (the whole allocation:
    /// nonce, ciphertext, tag; there is no header in it).
    #[cfg(secalloc_test_hooks)]
    pub fn cell_range(&self) -> (usize, usize) {
        let (cell, len) = self.entry.cell();
        (cell, NONCE_LEN + sealed_len(len) + TAG_LEN)
    }
}

impl<T: Protect, A: Allocator> Drop for Secret<T, A> {
    fn drop(&mut self) {
        // Unregistered first, so purge can no longer reach the cell; the
        // entry may be reused by another thread from here on, so the cell
        // comes from `unregister`, not from a later read of the entry.
        let ((cell, len), emptied) = registry::unregister(self.entry);
        if let (Ok(layout), Some(cell)) = (cell_layout(len), NonNull::new(cell as *mut u8)) {
            // SAFETY: unregistered; `&mut self` excludes readers; the cell
            // came from `self.alloc` with this layout (the registry's length).
            unsafe { free_cell(&self.alloc, cell, layout) };
        }
        if let Some(epoch) = emptied {
            // The last secret of a past key generation in this shard.
            registry::retire_if_unused(epoch);
        }
    }
}

impl<T: Protect, A: Allocator> zeroize::ZeroizeOnDrop for Secret<T, A> {}

impl<T: Protect, A: Allocator> zeroize::Zeroize for Secret<T, A> {
    /// Wipes the stored ciphertext now and marks the secret destroyed: every
    /// later access returns `Destroyed`, and dropping it frees the cell. So
    /// a struct holding a secret can `#[derive(Zeroize, ZeroizeOnDrop)]`.
    fn zeroize(&mut self) {
        if self.entry.pin.kill(DESTROYED) {
            // SAFETY: `&mut self` excludes readers and keeps the cell alive;
            // the pin protocol gave us the (only) wipe.
            unsafe { wipe_body(self.entry) };
        }
    }
}

#[cfg(feature = "subtle")]
impl<T: Protect, A: Allocator> subtle::ConstantTimeEq for Secret<T, A> {
    /// [`Secret::ct_eq`] as a `Choice`; an unreadable secret (tampered,
    /// expired, purged) is unequal to everything.
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        subtle::Choice::from(Secret::ct_eq(self, other).unwrap_or(false) as u8)
    }
}

/// Equal lengths and equal bytes, in time that depends on the length only.
fn ct_eq_slices(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | core::hint::black_box(x ^ y));
    core::hint::black_box(diff) == 0
}

impl<T: Protect, A: Allocator> fmt::Debug for Secret<T, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl<T: Protect, A: Allocator> PartialEq for Secret<T, A> {
    /// Constant-time comparison of the plaintexts. **Unreadable secrets
    /// (tampered, expired, purged) compare unequal, even to themselves**;
    /// use [`Secret::ct_eq`] to tell an error from a difference.
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).unwrap_or(false)
    }
}

/// Under a lock limit, makes sure that a secret of `len` bytes created now
/// can be read afterwards: a read needs a locked view of the cell's size,
/// so a create must leave room for one more (`IN_BUFFER_MIN` explains how
/// the budget filled with secrets that could not be read). A view-sized
/// buffer is held while the cell is allocated (the returned guard), as the
/// copying path does with its plaintext buffer; freed, it goes to the
/// central lists, where a read on any thread finds it. (Counting the slots
/// in this thread's cache instead left the room where only the creating
/// thread could use it: found by the issue-12 attack review.)
fn room_for_a_view(len: usize) -> Result<Option<PlainBuf>, Error> {
    if crate::arena::budget::lock_unlimited_at_start() {
        return Ok(None);
    }
    new_plain_buf(len).map(Some)
}

/// Allocates a cell from `alloc` and writes the sealed body into it.
fn new_cell<A: Allocator>(
    alloc: &A,
    stored_nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
    tag: &[u8; TAG_LEN],
) -> Result<(NonNull<u8>, Layout), Error> {
    let layout = cell_layout(ciphertext.len())?;
    let cell = alloc
        .allocate(layout)
        .map_err(|_| arena_error())?
        .cast::<u8>();
    // SAFETY: the cell is a fresh allocation of `layout`, exactly a body of
    // `ciphertext.len()` bytes of ciphertext.
    unsafe { write_body(cell.as_ptr() as usize, stored_nonce, ciphertext, tag) };
    Ok((cell, layout))
}

/// Wipes and frees a cell.
///
/// # Safety
/// `cell` came from `alloc` with `layout`, and nothing else can reach it.
unsafe fn free_cell<A: Allocator>(alloc: &A, cell: NonNull<u8>, layout: Layout) {
    // The arena wipes every byte it is given back; any other allocator's
    // cell is wiped here first (a second pass over a 64 KiB cell otherwise).
    // SAFETY: forwarded from the caller.
    unsafe {
        if !arena_owned::<A>() {
            wipe(cell.as_ptr() as usize, layout.size());
        }
        alloc.deallocate(cell, layout);
    }
}

/// Writes nonce, ciphertext and tag into a cell.
///
/// # Safety
/// `cell` is a live cell for `ciphertext.len()` sealed bytes and nobody
/// else reads or writes it meanwhile.
unsafe fn write_body(
    cell: usize,
    stored_nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
    tag: &[u8; TAG_LEN],
) {
    // SAFETY: forwarded from the caller; `sealed_len` of a whole-block
    // length is itself.
    let body = unsafe { body_slice_mut(cell, ciphertext.len()) };
    body[..NONCE_LEN].copy_from_slice(stored_nonce);
    body[NONCE_LEN..NONCE_LEN + ciphertext.len()].copy_from_slice(ciphertext);
    body[NONCE_LEN + ciphertext.len()..].copy_from_slice(tag);
}

/// # Safety
/// `cell` is live with plaintext length `len` (the registry's), and it is
/// not being written.
unsafe fn body_slice<'a>(cell: usize, len: usize) -> &'a [u8] {
    // SAFETY: the cell is `NONCE_LEN + sealed_len(len) + TAG_LEN` bytes.
    unsafe { core::slice::from_raw_parts(cell as *const u8, NONCE_LEN + sealed_len(len) + TAG_LEN) }
}

/// # Safety
/// As [`body_slice`], and the caller has exclusive access.
unsafe fn body_slice_mut<'a>(cell: usize, len: usize) -> &'a mut [u8] {
    // SAFETY: as in `body_slice`, exclusively.
    unsafe {
        core::slice::from_raw_parts_mut(cell as *mut u8, NONCE_LEN + sealed_len(len) + TAG_LEN)
    }
}

/// Wipes a secret's cell.
///
/// # Safety
/// The caller won the wipe through the entry's pin state (nobody is
/// reading) and the cell is alive (the caller holds the secret, or the
/// registry lock and the cell is `ARENA_OWNED`).
unsafe fn wipe_body(entry: &Entry) {
    let (cell, len) = entry.cell();
    // SAFETY: forwarded from the caller.
    unsafe { wipe_cell(cell, len) };
}

/// # Safety
/// As [`wipe_body`].
unsafe fn wipe_cell(cell: usize, len: usize) {
    // SAFETY: forwarded from the caller; the length is the registry's.
    unsafe { wipe(cell, NONCE_LEN + sealed_len(len) + TAG_LEN) };
}

/// Wipes the key page and every live secret's stored ciphertext in the
/// arena. Afterwards every access returns `KeyUnavailable`, and new secrets
/// cannot be created — also when no secret (and no key) existed yet. Meant
/// for shutdown paths and panic hooks.
///
/// It returns once the key is wiped (waiting for any access that is using it
/// to finish) and every stored ciphertext not being read at that moment is
/// wiped; a ciphertext that an `expose` is copying is wiped by that `expose`
/// as it finishes. Purge touches only what the registry owns: cells of
/// secrets stored by another allocator (even one built on `SecureAlloc`)
/// keep their ciphertext, which is useless without the key, because such an
/// allocator may have reused a leaked secret's memory.
///
/// Not async-signal-safe: it takes a lock and may wait for a reader, so a
/// signal handler that interrupted such a reader would wait forever.
pub fn purge() {
    key_page::purge_key();
    registry::purge_all(|cell, len| {
        // SAFETY: `purge_all` calls this under the registry lock, for an
        // `ARENA_OWNED` cell of a registered secret whose wipe it won:
        // the cell is live (freed only after unregistering, under that
        // lock) and nobody is reading it.
        unsafe { wipe_cell(cell, len) }
    });
}

/// How the live secrets are stored, from [`stats`].
///
/// ```
/// let stats = secalloc::secret::stats();
/// assert_eq!(stats.storage_unlocked, 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The current key generation: 0 for the first key, one more for each
    /// [`rekey`].
    pub key_epoch: u64,
    /// Live secrets still sealed under the previous generation's key (0
    /// once a re-key is complete and the old key page wiped).
    pub sealed_under_previous_key: usize,
}

/// A snapshot of every live secret's storage mode.
///
/// ```
/// let _s = secalloc::Secret::new([5u8; 16])?;
/// let stats = secalloc::secret::stats();
/// assert!(stats.live >= 1 && !stats.purged);
/// # Ok::<(), secalloc::Error>(())
/// ```
pub fn stats() -> SecretStats {
    let (live, locked, unlocked) = registry::storage_counts();
    let epoch = key_page::current_epoch();
    SecretStats {
        live,
        storage_locked: locked,
        storage_unlocked: unlocked,
        storage_foreign: live.saturating_sub(locked + unlocked),
        key_page: key_page_info(),
        purged: key_page::is_purged(),
        key_epoch: epoch,
        sealed_under_previous_key: if epoch > 0 {
            registry::sealed_under(epoch - 1)
        } else {
            0
        },
    }
}
