//! The wipe: zeroing that the compiler may not remove.
//!
//! A `memset` right before memory is freed is a dead store to an optimiser
//! that knows `free`. [`wipe`] is a plain `memset` (`write_bytes` through a
//! raw pointer) followed by an empty `asm!` block that takes the pointer and
//! may read memory, so it runs at `memset` bandwidth and cannot be elided —
//! the same construction as `zeroize::zeroize_bytes`, but through a raw
//! pointer, so it also serves bytes that were never initialised (a `Vec`'s
//! spare capacity) without making a reference to them.

#![allow(unsafe_code)]

/// Zeroes `[addr, addr + len)` in a way that is never optimised out.
///
/// # Safety
/// The caller has exclusive access to the `len` writable bytes at `addr`.
#[inline]
pub(crate) unsafe fn wipe(addr: usize, len: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { wipe_raw(addr as *mut u8, len) }
}

/// [`wipe`] of the `len` bytes at `ptr`, initialised or not.
///
/// # Safety
/// The caller has exclusive access to the `len` writable bytes at `ptr`.
#[inline]
pub(crate) unsafe fn wipe_raw(ptr: *mut u8, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: forwarded from the caller; zero is a valid `u8`. The `asm!`
    // block does nothing, but the compiler must assume it reads memory
    // through `ptr`, so the stores before it stay.
    unsafe {
        core::ptr::write_bytes(ptr, 0, len);
        core::arch::asm!("/* {0} */", in(reg) ptr, options(nostack, preserves_flags));
    }
}

/// Pages examined per `mincore` call in [`wipe_resident`].
const RESIDENCY_CHUNK_PAGES: usize = 4096;

/// Zeroes every resident page of the page-aligned range `[addr, addr + len)`
/// and leaves pages that were never touched alone: those are still the
/// kernel's zero pages, and touching them would fault in (and lock) memory
/// the caller never used — a 1 TiB reservation freed unused must not become
/// 1 TiB of writes.
///
/// # Safety
/// As for [`wipe`]; additionally `addr` is page aligned.
pub(crate) unsafe fn wipe_resident(addr: usize, len: usize) {
    let page = crate::sys::page_size();
    // Below 64 KiB a plain wipe is cheaper than asking the kernel which
    // pages are resident (one `mincore` call costs about as much as zeroing
    // 64 KiB). Above, a plain wipe would fault in every page the program
    // never touched only to zero it: a 1 MiB block with two pages written
    // cost 256 page faults at free (mstress under the preload: 3.1x glibc,
    // 42% of its samples in that memset).
    if len <= 16 * page {
        // SAFETY: forwarded from the caller.
        return unsafe { wipe(addr, len) };
    }
    let mut residency = [0u8; RESIDENCY_CHUNK_PAGES];
    let mut chunk_start = addr;
    let end = addr + len;
    while chunk_start < end {
        let chunk_len = (end - chunk_start).min(RESIDENCY_CHUNK_PAGES * page);
        // At most a chunk (the `min` above): checked so that the slicing
        // below cannot panic on the free path.
        let pages = super::checked::below(chunk_len.div_ceil(page), RESIDENCY_CHUNK_PAGES + 1);
        if crate::sys::mincore(chunk_start, chunk_len, &mut residency[..pages]).is_err() {
            residency[..pages].fill(1); // cannot tell: wipe everything
        }
        let mut i = 0;
        while i < pages {
            if residency[i] & 1 == 0 {
                let run_start = i;
                while i < pages && residency[i] & 1 == 0 {
                    i += 1;
                }
                // Not resident: never touched (the kernel's zero page) —
                // or swapped out, if the program unlocked its own block
                // (`munlock`), in which case the old bytes would come back
                // on the next touch. Dropping the run's pages and swap
                // entries makes both read zero, without faulting anything in.
                let from = chunk_start + run_start * page;
                let to = (chunk_start + i * page).min(end);
                // Kernels before 5.18 refuse it; the run is then left as it
                // is (untouched pages are zero; the swapped-out case needs
                // the program to have unlocked the arena's memory itself).
                // SAFETY: a sub-range of the caller's exclusive range, whose
                // contents are being discarded anyway.
                let _ = unsafe { crate::sys::madvise_dontneed_locked(from, to - from) };
                continue;
            }
            let run_start = i;
            while i < pages && residency[i] & 1 != 0 {
                i += 1;
            }
            let from = chunk_start + run_start * page;
            let to = (chunk_start + i * page).min(end);
            // SAFETY: a sub-range of the caller's exclusive range.
            unsafe { wipe(from, to - from) };
        }
        chunk_start += chunk_len;
    }
}

/// Whether `len` bytes at `addr` are all zero (word at a time: `addr` is
/// 16-aligned and `len` a multiple of 8, or the tail is read bytewise).
///
/// # Safety
/// `[addr, addr + len)` is arena memory the caller alone may read.
#[inline]
pub(crate) unsafe fn all_zero(addr: usize, len: usize) -> bool {
    let words = len / 8;
    let mut acc = 0u64;
    for i in 0..words {
        // SAFETY: inside the range (forwarded), 8-aligned (slot starts are
        // 16-aligned; callers pass offsets that keep it for the words).
        acc |= unsafe { core::ptr::read_volatile((addr + i * 8) as *const u64) };
    }
    for i in words * 8..len {
        // SAFETY: inside the range.
        acc |= unsafe { core::ptr::read_volatile((addr + i) as *const u8) } as u64;
    }
    acc == 0
}
