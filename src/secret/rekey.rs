//! Re-keying: a new key for every live secret, without a background thread.
//!
//! [`rekey`] puts a new key generation in service (`key_page::switch_key`)
//! and returns; secrets still sealed under the previous key move to the new
//! one lazily — the next `expose` re-seals the plaintext it just opened,
//! `expose_mut` re-seals anyway — or by an explicit, bounded sweep,
//! [`rekey_step`]. When the last secret of the old generation has moved on
//! (or been dropped), the old key page is wiped (`key_page::retire`).
//!
//! A move by someone who does not own the secret (the sweep, a reader)
//! works on a snapshot of the registry entry: it copies the body under the
//! registry lock, opens it under the old key and seals it under the new one
//! with no lock held, then writes it back in place under the lock — only
//! if the entry is unchanged (same identity, cell, length and epoch), and
//! with readers held off while the bytes change (`pin`'s exclusive
//! rewrite). An owner's re-seal in between changes the epoch, so the stale
//! move is dropped. The epoch is in every secret's associated data: a
//! ciphertext kept from before a re-key never opens afterwards.

#![allow(unsafe_code)]

use super::registry::{self, BodyCopy, Commit, Entry, Snapshot};
use super::{
    aad, key_page, new_plain_buf, nonce, protect, seal_tail_in_place, sealed_len, wipe_cell,
    write_body, PlainBuf, NONCE_LEN, TAG_LEN,
};
use crate::error::Error;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Where the next sweep step starts (an entry index, see `registry::peek`).
static SWEEP_CURSOR: AtomicUsize = AtomicUsize::new(0);

/// Full sweeps [`rekey`] makes before it gives up on an old generation
/// that keeps refilling (another thread re-keying at the same time).
const REKEY_ATTEMPTS: usize = 4;

/// Puts a new key in service and returns its generation (epoch).
///
/// Secrets sealed under the key it replaces keep working: each moves to the
/// new key on its next access, or by [`rekey_step`]; once none is left, the
/// old key page is wiped. A ciphertext copied aside before the re-key never
/// opens afterwards — its key generation is part of what the seal
/// authenticates. At most two generations exist: if secrets from the
/// generation before the current one remain, this first moves them (a
/// full [`rekey_step`]).
///
/// No background thread is involved, and the calling thread does the work:
/// the switch itself is one new key; only the sweep of a previous
/// generation, when one is pending, costs a re-seal per secret.
///
/// ```
/// use secalloc::Secret;
///
/// let token: Secret<Vec<u8>> = Secret::new(b"api-token".to_vec())?;
/// let epoch = secalloc::rekey()?;
/// // Moved lazily on this access (or by rekey_step), under the new key.
/// assert_eq!(token.expose(|t| t.len())?, 9);
/// assert_eq!(secalloc::rekey_step(usize::MAX)?, 0);
/// assert_eq!(secalloc::secret::stats().key_epoch, epoch);
/// # Ok::<(), secalloc::Error>(())
/// ```
///
/// # Errors
/// `KeyUnavailable` after `purge` or in a forked child; `LockRefused` if a
/// new key page cannot be locked (or, during a pending sweep, a plaintext
/// buffer); `RekeyIncomplete` if other threads kept re-keying meanwhile.
pub fn rekey() -> Result<u64, Error> {
    if key_page::unusable() {
        return Err(Error::KeyUnavailable);
    }
    let started = key_page::current_epoch();
    let mut remaining = 0;
    for _ in 0..REKEY_ATTEMPTS {
        remaining = rekey_step(usize::MAX)?;
        let now = key_page::current_epoch();
        if now > started {
            // Another thread's re-key put a key in service after this call
            // began: the secrets move to it just the same.
            return Ok(now);
        }
        if remaining != 0 {
            continue;
        }
        if let Ok(epoch) = key_page::switch_key(registry::barrier)? {
            // A key that never sealed anything (the first one, created
            // just now) retires at once.
            if epoch > 0 {
                registry::retire_if_unused(epoch - 1);
            }
            return Ok(epoch);
        }
    }
    Err(Error::RekeyIncomplete(remaining))
}

/// Moves up to `budget` secrets still sealed under the previous key to the
/// current one, and returns how many remain (0: none; the old key page has
/// been wiped). Bounded work for a service loop that wants to finish a
/// re-key without pausing: `while rekey_step(64)? > 0 { /* other work */ }`.
///
/// # Errors
/// `KeyUnavailable` after `purge` or in a forked child; `LockRefused` if no
/// locked memory is left for a secret's plaintext while it is moved.
///
/// ```
/// let _old = secalloc::Secret::new([1u8; 32])?;
/// secalloc::rekey()?;
/// while secalloc::rekey_step(64)? > 0 {
///     // other work between steps
/// }
/// assert_eq!(secalloc::secret::stats().sealed_under_previous_key, 0);
/// # Ok::<(), secalloc::Error>(())
/// ```
pub fn rekey_step(budget: usize) -> Result<usize, Error> {
    // In a fork child the key pages are gone (or zero): touching them
    // would fault. After a purge there is nothing to move to.
    if key_page::unusable() {
        return Err(Error::KeyUnavailable);
    }
    let current = key_page::current_epoch();
    if current == 0 {
        return Ok(0);
    }
    let old = current - 1;
    if key_page::is_wiped(old) {
        return Ok(0);
    }
    let count = registry::entry_count();
    let mut moved = 0;
    let mut scanned = 0;
    while moved < budget && scanned < count {
        let index = SWEEP_CURSOR.fetch_add(1, Ordering::Relaxed) % count;
        scanned += 1;
        if let Some((entry, snapshot)) = registry::peek(index, old) {
            move_entry(entry, &snapshot)?;
            moved += 1;
        }
    }
    let remaining = registry::sealed_under(old);
    if remaining == 0 && !key_page::retire(old) {
        // Another thread is retiring it (a drop or a move saw the count
        // reach zero first): it only waits for the threads inside the old
        // key's gate, each finishing one seal or open. Return once the page
        // is wiped, as promised.
        let mut backoff = crate::sync::Backoff::new();
        while !key_page::is_wiped(old) {
            backoff.snooze();
        }
    }
    Ok(remaining)
}

/// Wipes a cell's body, for the registry's moves (under its lock, for a
/// cell whose wipe the pin protocol gave us).
fn wipe_body_at(cell: usize, len: usize) {
    // SAFETY: the registry calls this under the shard lock, for the live
    // cell of an entry it just checked, whose wipe it won: nobody reads it.
    unsafe { wipe_cell(cell, len) }
}

/// The sweep's move of one secret: copy its body, open it under the old
/// key, re-seal it under the current one.
fn move_entry(entry: &'static Entry, snapshot: &Snapshot) -> Result<(), Error> {
    let len = snapshot.len;
    let mut buf = new_plain_buf(len)?; // capacity: a whole cell's bytes
    let mut stored = [0u8; NONCE_LEN];
    let current = key_page::current_epoch();
    let copied = registry::copy_body(
        entry,
        snapshot,
        current,
        |cell| {
            // SAFETY: under the registry lock and pinned: the cell is live,
            // unchanged, and `len` is the registry's length for it.
            let body = unsafe {
                core::slice::from_raw_parts(
                    cell as *const u8,
                    NONCE_LEN + sealed_len(len) + TAG_LEN,
                )
            };
            stored.copy_from_slice(&body[..NONCE_LEN]);
            // Within the capacity reserved above: no allocation under the lock.
            protect::append(&mut buf, &body[NONCE_LEN..]);
        },
        wipe_body_at,
    );
    match copied {
        BodyCopy::Changed => return Ok(()),
        BodyCopy::Dead(retire) => {
            if let Some(epoch) = retire {
                registry::retire_if_unused(epoch);
            }
            return Ok(());
        }
        BodyCopy::Made => {}
    }
    let opened = key_page::with_key_of(snapshot.epoch, |material| {
        material
            .key()
            .open_in_place(
                nonce(stored),
                aad(snapshot.id, len, snapshot.epoch),
                &mut buf,
            )
            .map(|_| ())
            .map_err(|_| Error::Tampered)
    });
    match opened {
        // The old key is gone only once nothing is sealed under it.
        None => Ok(()),
        Some(Err(Error::Tampered)) => {
            // A body that never opens (modified in memory) stays as it is,
            // now counted under the new key, whose AAD it fails just the
            // same: it must not hold the old key alive.
            let moved = registry::move_to(entry, snapshot, current, None, wipe_body_at);
            if let Some(Commit::Done(Some(epoch))) = moved {
                registry::retire_if_unused(epoch);
            }
            Ok(())
        }
        Some(Err(e)) => Err(e),
        Some(Ok(())) => {
            buf.truncate(len);
            move_opened(entry, &mut buf, snapshot)
        }
    }
}

/// Moves a secret whose plaintext (`len` bytes, as `snapshot` saw it) is
/// in `plain` to the current key: seals `plain` in place under it and
/// writes the result into the cell, if the entry is still what `snapshot`
/// saw. `plain` holds ciphertext afterwards.
pub(super) fn move_opened(
    entry: &'static Entry,
    plain: &mut PlainBuf,
    snapshot: &Snapshot,
) -> Result<(), Error> {
    let retire = key_page::with_key(|material| {
        let epoch = material.epoch();
        if epoch == snapshot.epoch {
            return Ok(None);
        }
        let (stored, tag) = seal_tail_in_place(material, plain, 0, snapshot.id)?;
        let body: &[u8] = plain;
        let write = |cell: usize| {
            // SAFETY: `registry::move_to` calls this under the shard lock,
            // with readers held off, for the entry's live cell of
            // `sealed_len(len)` ciphertext bytes (unchanged length).
            unsafe { write_body(cell, &stored, body, &tag) }
        };
        Ok(
            match registry::move_to(entry, snapshot, epoch, Some(&write), wipe_body_at) {
                Some(Commit::Done(retire)) => retire,
                // Changed meanwhile (its owner re-sealed it, or dropped it),
                // or another re-key: nothing to do, or the sweep's to do.
                _ => None,
            },
        )
    })?;
    if let Some(epoch) = retire {
        registry::retire_if_unused(epoch);
    }
    Ok(())
}
