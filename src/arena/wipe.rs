//! The wipe: zeroing that the compiler may not remove.
//!
//! A `memset` right before memory is freed is a dead store to an optimiser
//! that knows `free`. `zeroize::zeroize_bytes` is a plain `memset` followed by
//! an assembly optimisation barrier that claims to read the bytes, so it runs
//! at `memset` bandwidth and cannot be elided (benchmarked against a bare
//! `write_bytes` in `benches/`).

#![allow(unsafe_code)]

/// Zeroes `[addr, addr + len)` in a way that is never optimised out.
///
/// # Safety
/// The caller has exclusive access to the `len` writable bytes at `addr`.
#[inline]
pub(crate) unsafe fn wipe(addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: the caller grants exclusive access to these bytes, and zero is
    // a valid `u8`.
    let bytes = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
    zeroize::zeroize_bytes(bytes);
}

/// Zeroes the `len` bytes at `ptr`, initialised or not, in a way that is
/// never optimised out: a `memset` (`write_bytes` through a raw pointer, so
/// no reference to uninitialised bytes is made), then an empty `asm!` block
/// that takes the pointer and may read memory, so the stores are not dead
/// even right before the buffer is freed.
///
/// # Safety
/// The caller has exclusive access to the `len` writable bytes at `ptr`.
#[inline]
pub(crate) unsafe fn wipe_raw(ptr: *mut u8, len: usize) {
    // SAFETY: forwarded from the caller; zero is a valid `u8`.
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
        let pages = chunk_len.div_ceil(page);
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
