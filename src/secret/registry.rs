//! The registry: one entry per live secret, in memory the registry owns.
//!
//! A secret's bookkeeping — its pin state, plaintext length, identity,
//! expiry and where its cell is — lives here, not in the cell: the cell
//! holds only `nonce | ciphertext | tag`, so an overflow from a neighbouring
//! allocation can corrupt ciphertext (which then fails to open) but never a
//! length that a read or a wipe trusts, nor an expiry.
//!
//! [`purge`](super::purge) walks the entries, not the cells, and writes into
//! a cell only when the registry knows the cell is still owned by its
//! secret: when it came from [`SecureAlloc`](crate::SecureAlloc) itself,
//! whose memory is released only by the secret's own `Drop` (which first
//! unregisters, under this lock). A cell from any other allocator — even one
//! that takes its blocks from the arena — may be freed behind the secret's
//! back once the secret is leaked, so purge leaves its bytes alone (its
//! ciphertext is useless once the key is wiped).
//!
//! **Generations.** Each entry records the key epoch its cell is sealed
//! under, and each shard counts its live entries per generation (`epoch %
//! 2`: at most two are live, see `key_page`). Every *commit* of a sealed
//! cell — registering it, or rewriting or replacing an entry's cell — checks
//! under the shard lock that it was sealed under the current epoch, and is
//! refused as [`Commit::Stale`] otherwise (the caller opens its buffer again
//! and re-seals under the new key). So once a re-key has switched epochs
//! and locked every shard once ([`barrier`]), nothing is added under the
//! old epoch, its count only falls, and when [`sealed_under`] finds it zero
//! its key can be wiped. Moving an entry to the new key without owning the
//! secret ([`move_to`]) writes its cell in place, exclusively (see `pin`),
//! under the shard lock.
//!
//! Entries live in chunks mapped straight from the OS (never through the
//! arena, and never unmapped, so an entry's address is stable). The table
//! is split into [`SHARDS`] shards, each with its own lock, free list and
//! chunks; a thread registers its secrets in the shard it was assigned on
//! first use, and an entry goes back to the shard it came from, so creating
//! and dropping secrets on different threads does not serialise on one
//! lock. Every shard lock is a leaf of the hierarchy
//! (`Rank::SecretRegistry`): nothing is taken and nothing allocates while it
//! is held, and no path holds two of them (purge and the statistics visit
//! the shards one after another; only the fork protocol holds them all).

#![allow(unsafe_code)]

use crate::error::Error;
use crate::pin::{PinState, PURGED};
use crate::sync::fork::{join, Participant};
use crate::sync::{Mutex, Rank};
use crate::sys;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Entries per chunk (one mapping of ~160 KiB).
const CHUNK_ENTRIES: usize = 4096;
/// Independent shards of the table.
pub(crate) const SHARDS: usize = 4;
/// Chunks per shard at most: 4 Mi live secrets a shard, 16 Mi in all.
const MAX_CHUNKS: usize = 1024;

/// `Entry::flags`: the entry belongs to a live secret.
const IN_USE: u8 = 1;
/// `Entry::flags`: the cell came from `SecureAlloc` (purge may wipe it).
pub(crate) const ARENA_OWNED: u8 = 2;
/// `Entry::flags`: the cell sits in locked arena memory.
pub(crate) const STORAGE_LOCKED: u8 = 4;
/// `Entry::flags`: the cell sits in arena memory the kernel refused to lock.
pub(crate) const STORAGE_UNLOCKED: u8 = 8;

/// One live secret's bookkeeping. Fields are atomics so that readers (who
/// hold `&Secret`), purge (under the lock) and the owner (`&mut Secret`,
/// which excludes readers) can all look without a data race; each field's
/// comment says who writes it.
pub(crate) struct Entry {
    pub(crate) pin: PinState, // readers vs purge/expiry/destroy
    cell: AtomicUsize,        // the cell's address; owner, under the lock
    len: AtomicU32,           // plaintext bytes; owner, under the lock
    flags: AtomicU8,          // IN_USE | ARENA_OWNED | STORAGE_*; under the lock
    id: AtomicU64,            // associated data; set at registration
    expires_at_ns: AtomicU64, // CLOCK_MONOTONIC deadline, 0 = never; owner
    next_free: AtomicU32,     // shard's free list (local index + 1); under its lock
    index: AtomicU32,         // local index * SHARDS + shard; set when first handed out
    epoch: AtomicU64,         // key generation the cell is sealed under; under the lock
}

/// The outcome of a commit: done, or refused because the cell was sealed
/// under a key that is no longer current (re-seal under the current one).
pub(crate) enum Commit<T> {
    Done(T),
    Stale,
}

/// What the re-keying sweep saw of an entry, to act on only if it is
/// unchanged when it comes back (the entry may be dropped and reused
/// meanwhile: identities are never reused, so `id` tells).
#[derive(Clone, Copy)]
pub(crate) struct Snapshot {
    pub(crate) id: u64,
    pub(crate) cell: usize,
    pub(crate) len: usize,
    pub(crate) epoch: u64,
}

fn slot(epoch: u64) -> usize {
    (epoch % 2) as usize
}

impl Entry {
    /// The cell's address and plaintext length. Stable while the caller
    /// holds the secret (`&Secret` or `&mut Secret`).
    pub(crate) fn cell(&self) -> (usize, usize) {
        (
            self.cell.load(Ordering::Relaxed),
            self.len.load(Ordering::Relaxed) as usize,
        )
    }

    /// The secret's identity (associated data).
    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    /// The key generation the cell is sealed under. Stable while the
    /// caller holds `&mut Secret`, or `&Secret` and a pin.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The expiry deadline (0 = never).
    pub(crate) fn expires_at_ns(&self) -> u64 {
        self.expires_at_ns.load(Ordering::Relaxed)
    }

    /// Sets the expiry deadline (owner only).
    pub(crate) fn set_expires_at_ns(&self, deadline: u64) {
        self.expires_at_ns.store(deadline, Ordering::Relaxed);
    }
}

/// The lock-guarded part: the free list and the fresh-entry frontier.
struct Table {
    free_head: u32,     // index + 1 of a free entry, or 0
    fresh: usize,       // entries ever handed out; past it, never used
    chunks: usize,      // chunks mapped
    sealed: [usize; 2], // live entries by key generation (epoch % 2)
}

static TABLES: [Mutex<Table>; SHARDS] = [const {
    Mutex::new(
        Rank::SecretRegistry,
        Table {
            free_head: 0,
            fresh: 0,
            chunks: 0,
            sealed: [0; 2],
        },
    )
}; SHARDS];
/// Chunk addresses per shard (0 = not mapped), published before
/// `Table::chunks` grows.
static CHUNKS: [[AtomicUsize; MAX_CHUNKS]; SHARDS] =
    [const { [const { AtomicUsize::new(0) }; MAX_CHUNKS] }; SHARDS];
/// Set by `purge`, checked at registration under the shard's lock: a secret
/// that passed the key check before a purge cannot slip in after it.
static PURGED_ALL: AtomicBool = AtomicBool::new(false);
static JOINED_FORK: AtomicBool = AtomicBool::new(false);
/// The shard the calling thread registers in.
fn my_shard() -> usize {
    super::thread_slot() % SHARDS
}

fn entry(shard: usize, local: usize) -> &'static Entry {
    let chunk = CHUNKS[shard][local / CHUNK_ENTRIES].load(Ordering::Acquire);
    debug_assert!(chunk != 0);
    // SAFETY: `local` is below the shard's `Table::fresh`, so its chunk was
    // mapped and published; chunks are never unmapped, and all-zero bytes
    // (fresh pages) are a valid `Entry` (atomics and a zero pin state).
    unsafe { &*(chunk as *const Entry).add(local % CHUNK_ENTRIES) }
}

/// The shard an entry belongs to.
fn shard_of(e: &Entry) -> usize {
    e.index.load(Ordering::Relaxed) as usize % SHARDS
}

fn lock_table(shard: usize) -> crate::sync::MutexGuard<'static, Table> {
    if !JOINED_FORK.load(Ordering::Relaxed) {
        join(Rank::SecretRegistry, &FORK);
        JOINED_FORK.store(true, Ordering::Relaxed);
    }
    TABLES[shard].lock()
}

static FORK: Participant = Participant {
    lock: || {
        for table in &TABLES {
            table.lock_and_forget();
        }
    },
    // SAFETY: the protocol calls this only after `lock` on the same thread
    // (or the child's only thread), which took every shard.
    unlock: || {
        for table in TABLES.iter().rev() {
            // SAFETY: as above.
            unsafe { table.force_unlock() };
        }
    },
    after_child: || {},
};

/// Registers a new secret's cell, sealed under key generation `epoch`.
/// `Err(KeyUnavailable)` after a purge (the caller wipes and frees the
/// cell), `AllocFailed` when the registry is full or cannot map a chunk,
/// `Stale` if `epoch` is no longer current.
pub(crate) fn register(
    cell: usize,
    len: u32,
    id: u64,
    expires_at_ns: u64,
    storage: u8,
    epoch: u64,
) -> Result<Commit<&'static Entry>, Error> {
    let shard = my_shard();
    let mut table = lock_table(shard);
    if PURGED_ALL.load(Ordering::Acquire) {
        return Err(Error::KeyUnavailable);
    }
    if epoch != super::key_page::current_epoch() {
        return Ok(Commit::Stale);
    }
    let local = if table.free_head != 0 {
        let local = table.free_head as usize - 1;
        table.free_head = entry(shard, local).next_free.load(Ordering::Relaxed);
        local
    } else {
        if table.fresh == table.chunks * CHUNK_ENTRIES {
            if table.chunks == MAX_CHUNKS {
                return Err(Error::AllocFailed);
            }
            let bytes = CHUNK_ENTRIES * core::mem::size_of::<Entry>();
            let chunk = sys::mmap_read_write(bytes).map_err(|_| Error::AllocFailed)?;
            // Addresses and lengths only, but keep them out of dumps too.
            let _ = sys::madvise_dontdump(chunk, bytes);
            CHUNKS[shard][table.chunks].store(chunk, Ordering::Release);
            table.chunks += 1;
        }
        table.fresh += 1;
        let local = table.fresh - 1;
        entry(shard, local)
            .index
            .store((local * SHARDS + shard) as u32, Ordering::Relaxed);
        local
    };
    let e = entry(shard, local);
    e.pin.reset();
    e.cell.store(cell, Ordering::Relaxed);
    e.len.store(len, Ordering::Relaxed);
    e.id.store(id, Ordering::Relaxed);
    e.expires_at_ns.store(expires_at_ns, Ordering::Relaxed);
    e.epoch.store(epoch, Ordering::Relaxed);
    e.flags.store(IN_USE | storage, Ordering::Relaxed);
    table.sealed[slot(epoch)] += 1;
    Ok(Commit::Done(e))
}

/// Moves `e`'s count from its generation to `epoch` (shard lock held).
/// Returns the old epoch if that left none of it in this shard and it is
/// not current: a key that may now be retired.
fn recount(table: &mut Table, e: &Entry, epoch: u64) -> Option<u64> {
    let old = e.epoch.swap(epoch, Ordering::Relaxed);
    if old == epoch {
        return None;
    }
    table.sealed[slot(old)] -= 1;
    table.sealed[slot(epoch)] += 1;
    (table.sealed[slot(old)] == 0).then_some(old)
}

/// Removes a secret's entry (from its `Drop`) and returns the cell it
/// described, `(address, plaintext length)`, and the epoch it was sealed
/// under if that was the last of a past generation in this shard (see
/// [`retire_if_unused`]). Afterwards purge cannot reach the cell, so the
/// caller may wipe and free it — and the entry may be reused at once by
/// another thread, so the caller must not read it again.
pub(crate) fn unregister(e: &'static Entry) -> ((usize, usize), Option<u64>) {
    let mut table = lock_table(shard_of(e));
    let cell = e.cell();
    let epoch = e.epoch();
    table.sealed[slot(epoch)] -= 1;
    let emptied = (table.sealed[slot(epoch)] == 0).then_some(epoch);
    e.flags.store(0, Ordering::Relaxed);
    let local = e.index.load(Ordering::Relaxed) as usize / SHARDS;
    e.next_free.store(table.free_head, Ordering::Relaxed);
    table.free_head = local as u32 + 1;
    (cell, emptied)
}

/// The owner's commit of a re-seal: points `e` at a new `cell` sealed
/// under `epoch` (the length changed), or with `cell == None` runs
/// `rewrite` to write the old cell in place. Purge and the re-keying sweep
/// are excluded meanwhile (the owner's `&mut` excludes readers).
/// `Err(reasons)` if the secret was killed meanwhile, `Stale` if `epoch` is
/// no longer current; the entry is then unchanged. `Done` carries the epoch
/// that may now be retired, as for [`unregister`].
pub(crate) fn commit_reseal(
    e: &'static Entry,
    epoch: u64,
    cell: Option<(usize, u32, u8)>,
    rewrite: impl FnOnce(),
) -> Result<Commit<Option<u64>>, u32> {
    let mut table = lock_table(shard_of(e));
    if let Some(reasons) = e.pin.killed() {
        return Err(reasons);
    }
    if epoch != super::key_page::current_epoch() {
        return Ok(Commit::Stale);
    }
    match cell {
        Some((cell, len, storage)) => {
            e.cell.store(cell, Ordering::Relaxed);
            e.len.store(len, Ordering::Relaxed);
            e.flags.store(IN_USE | storage, Ordering::Relaxed);
        }
        None => rewrite(),
    }
    Ok(Commit::Done(recount(&mut table, e, epoch)))
}

/// Locks every shard once, in turn: after a re-key's switch, every later
/// registration sees the new epoch.
pub(crate) fn barrier() {
    for shard in 0..SHARDS {
        drop(lock_table(shard));
    }
}

/// Live secrets sealed under generation `epoch`, counted shard by shard
/// under each lock (for a past epoch, a consistent count: none is added).
pub(crate) fn sealed_under(epoch: u64) -> usize {
    (0..SHARDS)
        .map(|shard| lock_table(shard).sealed[slot(epoch)])
        .sum()
}

/// Retires past generation `epoch`'s key if no live secret is sealed under
/// it any more (a shard's count of it just reached zero).
pub(crate) fn retire_if_unused(epoch: u64) {
    if epoch < super::key_page::current_epoch() && sealed_under(epoch) == 0 {
        super::key_page::retire(epoch);
    }
}

/// The re-keying sweep's first look at entry number `index` (in the order
/// of [`entry_count`]): a snapshot if it is live and sealed under `epoch`.
pub(crate) fn peek(index: usize, epoch: u64) -> Option<(&'static Entry, Snapshot)> {
    let (shard, local) = (index % SHARDS, index / SHARDS);
    let table = lock_table(shard);
    if local >= table.fresh {
        return None;
    }
    let e = entry(shard, local);
    let live = e.flags.load(Ordering::Relaxed) & IN_USE != 0;
    (live && e.epoch() == epoch).then(|| {
        let (cell, len) = e.cell();
        (
            e,
            Snapshot {
                id: e.id(),
                cell,
                len,
                epoch,
            },
        )
    })
}

/// Upper bound of entry indices for [`peek`] (entries ever handed out,
/// times the shard count).
pub(crate) fn entry_count() -> usize {
    (0..SHARDS)
        .map(|shard| lock_table(shard).fresh)
        .max()
        .unwrap_or(0)
        * SHARDS
}

/// Whether `e` still is what `snap` saw (shard lock held).
fn unchanged(e: &Entry, snap: &Snapshot) -> bool {
    e.flags.load(Ordering::Relaxed) & IN_USE != 0
        && e.id() == snap.id
        && e.cell() == (snap.cell, snap.len)
        && e.epoch() == snap.epoch
}

/// What [`copy_body`] found.
pub(crate) enum BodyCopy {
    /// The body was copied.
    Made,
    /// The entry changed (dropped, re-sealed): nothing to do.
    Changed,
    /// The secret is dead (its body is, or is being, wiped): it was moved
    /// to `to_epoch` as it is, since it can never be read again. Carries
    /// the epoch that may now be retired.
    Dead(Option<u64>),
}

/// Under the shard lock, if `e` is unchanged since `snap`: pins it and
/// runs `copy(cell)` (which must not allocate or lock), then unpins (and
/// wipes, if it was killed meanwhile and this was the last reader). A dead
/// secret is moved to `to_epoch` without a copy.
pub(crate) fn copy_body(
    e: &'static Entry,
    snap: &Snapshot,
    to_epoch: u64,
    copy: impl FnOnce(usize),
    wipe_cell: impl Fn(usize, usize),
) -> BodyCopy {
    let mut table = lock_table(shard_of(e));
    if !unchanged(e, snap) {
        return BodyCopy::Changed;
    }
    if e.pin.pin().is_err() {
        return BodyCopy::Dead(recount(&mut table, e, to_epoch));
    }
    // The lock keeps the cell alive (its owner frees it only after
    // `unregister`) and unchanged (owner rewrites are committed under it).
    copy(snap.cell);
    if e.pin.unpin() {
        wipe_cell(snap.cell, snap.len);
    }
    BodyCopy::Made
}

/// Moves `e`, unchanged since `snap`, to generation `epoch` (current),
/// running `write(cell)` to put the body re-sealed under it in place, with
/// readers held off (see `pin`). `None` if it changed; `Stale` if `epoch`
/// is no longer current. With `write == None` the entry is only relabelled:
/// for a body that can never be opened (tampered), which keeps its bytes.
/// `Done` carries the epoch that may now be retired.
pub(crate) fn move_to(
    e: &'static Entry,
    snap: &Snapshot,
    epoch: u64,
    write: Option<&dyn Fn(usize)>,
    wipe_cell: impl Fn(usize, usize),
) -> Option<Commit<Option<u64>>> {
    let mut table = lock_table(shard_of(e));
    if !unchanged(e, snap) {
        return None;
    }
    if epoch != super::key_page::current_epoch() {
        return Some(Commit::Stale);
    }
    let Some(write) = write else {
        return Some(Commit::Done(recount(&mut table, e, epoch)));
    };
    match e.pin.begin_exclusive() {
        Ok(()) => {
            write(snap.cell);
            // The new epoch is published with the new body, before readers
            // may pin again: a reader reads both under one pin, and a body
            // with the other's epoch would fail to open.
            let retire = recount(&mut table, e, epoch);
            if e.pin.end_exclusive() {
                wipe_cell(snap.cell, snap.len);
            }
            Some(Commit::Done(retire))
        }
        Err(must_wipe) => {
            if must_wipe {
                wipe_cell(snap.cell, snap.len);
            }
            // Dead: it never opens again; only the count moves.
            Some(Commit::Done(recount(&mut table, e, epoch)))
        }
    }
}

/// Marks every current and future registration purged, kills every live
/// entry, and wipes the cells the registry owns (`ARENA_OWNED`) that
/// nobody is reading; a reader wipes as it leaves. `wipe_cell(cell, len)`
/// wipes a cell's body. The lock is released between chunks so that other
/// threads are not held up for the whole sweep.
pub(crate) fn purge_all(wipe_cell: impl Fn(usize, usize)) {
    PURGED_ALL.store(true, Ordering::Release);
    for shard in 0..SHARDS {
        let mut chunk = 0;
        loop {
            let table = lock_table(shard);
            if chunk >= table.chunks {
                break;
            }
            let end = table.fresh.min((chunk + 1) * CHUNK_ENTRIES);
            for local in chunk * CHUNK_ENTRIES..end {
                let e = entry(shard, local);
                let flags = e.flags.load(Ordering::Relaxed);
                if flags & IN_USE != 0 && e.pin.kill(PURGED) && flags & ARENA_OWNED != 0 {
                    let (cell, len) = e.cell();
                    wipe_cell(cell, len);
                }
            }
            drop(table);
            chunk += 1;
        }
    }
}

/// Counts of live secrets: `(all, in locked arena cells, in unlocked arena
/// cells)`.
pub(crate) fn storage_counts() -> (usize, usize, usize) {
    let (mut live, mut locked, mut unlocked) = (0, 0, 0);
    for shard in 0..SHARDS {
        let table = lock_table(shard);
        for local in 0..table.fresh {
            let flags = entry(shard, local).flags.load(Ordering::Relaxed);
            if flags & IN_USE != 0 {
                live += 1;
                if flags & STORAGE_LOCKED != 0 {
                    locked += 1;
                } else if flags & STORAGE_UNLOCKED != 0 {
                    unlocked += 1;
                }
            }
        }
    }
    (live, locked, unlocked)
}
