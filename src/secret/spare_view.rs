//! One spare plaintext buffer per thread, for the views of small secrets.
//!
//! Every `expose` decrypts into a fresh locked buffer that is wiped when the
//! access ends. For a 32-byte secret the arena round trip of that buffer (an
//! allocation, and a free with its double-free check and wipe) was one of
//! the three a create + read + drop made. A thread keeps its last small view
//! buffer instead — wiped, whole capacity, before it is kept — and the next
//! access on that thread takes it. Nested accesses find the spare taken and
//! allocate as before.
//!
//! Never under a lock limit: there a kept buffer is budget parked where
//! only its thread can use it (and in a small-slab heap it would pin a
//! locked page that the arena gives back when the last secret is dropped).

use super::{cell_layout, new_plain_buf, Error, PlainBuf};
use crate::arena::wipe::wipe_raw;
use core::cell::Cell;

/// The largest buffer a thread keeps: one slot of a small size class.
const SPARE_MAX: usize = 256;

std::thread_local! {
    static SPARE: Cell<Option<PlainBuf>> = const { Cell::new(None) };
}

/// A locked buffer for the view of a `len`-byte secret, as
/// [`new_plain_buf`] makes one: the thread's spare when it is big enough.
pub(super) fn take(len: usize) -> Result<PlainBuf, Error> {
    // `new_plain_buf`'s capacity: the cell's size.
    let needed = cell_layout(len).map_or(usize::MAX, |l| l.size());
    if needed <= SPARE_MAX {
        // `try_with` fails only while the thread is being torn down.
        if let Ok(Some(buf)) = SPARE.try_with(Cell::take) {
            if buf.capacity() >= needed {
                return Ok(buf);
            }
            // Too small for this secret: freed (it is empty and wiped).
            drop(buf);
        }
    }
    new_plain_buf(len)
}

/// Ends an access: wipes `buf` and keeps it as the thread's spare if it is
/// small, or frees it (the arena wipes it) otherwise.
pub(super) fn give_back(mut buf: PlainBuf) {
    if buf.capacity() > SPARE_MAX || !crate::arena::budget::lock_unlimited_at_start() {
        return; // dropped: the arena wipes every freed byte
    }
    // SAFETY: `buf` owns `capacity()` bytes; they are wiped before the
    // length is cleared, and nothing reads them afterwards.
    unsafe { wipe_raw(buf.as_mut_ptr(), buf.capacity()) };
    buf.clear();
    // During thread teardown the closure is not run and `buf` is dropped
    // with it; a spare already there (a nested access) is freed.
    let _ = SPARE.try_with(move |spare| drop(spare.replace(Some(buf))));
}
