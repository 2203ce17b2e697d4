//! A heap-backed stand-in for the OS layer, used under `cfg(loom)`.
//!
//! loom cannot model system calls, so "mappings" are zeroed heap blocks and
//! protection, locking and advice calls succeed without effect. Only the
//! calls the arena's concurrent core makes are meaningful here.

use super::{Errno, OsError, OsResult, Protection};
use core::ffi::{c_int, c_void};
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::sync::Mutex;

static BLOCKS: Mutex<Vec<(usize, Layout)>> = Mutex::new(Vec::new());

/// The fake page size.
pub fn page_size() -> usize {
    4096
}

/// Allocates a zeroed, `align`-aligned heap block standing in for a mapping.
pub fn mmap_reserve_aligned(len: usize, align: usize) -> OsResult<usize> {
    let layout = Layout::from_size_align(len, align).map_err(|_| OsError {
        op: "mmap",
        errno: Errno::ENOMEM,
    })?;
    // SAFETY: `layout` has a non-zero size (the arena never reserves 0 bytes).
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(OsError {
            op: "mmap",
            errno: Errno::ENOMEM,
        });
    }
    BLOCKS.lock().unwrap().push((ptr as usize, layout));
    Ok(ptr as usize)
}
/// See [`mmap_reserve_aligned`].
pub fn mmap_reserve(len: usize) -> OsResult<usize> {
    mmap_reserve_aligned(len, page_size())
}
/// See [`mmap_reserve_aligned`].
pub fn mmap_read_write(len: usize) -> OsResult<usize> {
    mmap_reserve_aligned(len, page_size())
}
/// Frees a block previously returned whole; partial unmaps are ignored.
///
/// # Safety
/// Nothing may reference the block afterwards.
pub unsafe fn munmap(addr: usize, len: usize) -> OsResult<()> {
    let mut blocks = BLOCKS.lock().unwrap();
    if let Some(i) = blocks
        .iter()
        .position(|&(a, l)| a == addr && l.size() == len)
    {
        let (a, l) = blocks.swap_remove(i);
        // SAFETY: the block came from `alloc_zeroed` with this layout.
        unsafe { dealloc(a as *mut u8, l) };
    }
    Ok(())
}
/// Zeroes the range, as the kernel would on the next touch.
///
/// # Safety
/// Nothing may rely on the contents of the range.
pub unsafe fn madvise_dontneed_locked(addr: usize, len: usize) -> OsResult<()> {
    // SAFETY: forwarded from the caller.
    unsafe { madvise_dontneed(addr, len) }
}
/// Zeroes the range, as the kernel would on the next touch.
///
/// # Safety
/// Nothing may rely on the contents of the range.
pub unsafe fn madvise_dontneed(addr: usize, len: usize) -> OsResult<()> {
    // SAFETY: the caller gives up the contents of this fake mapping.
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len) };
    Ok(())
}
/// A yield the model checker sees.
pub fn sched_yield() {
    loom::thread::yield_now();
}
/// Plenty.
pub fn physical_memory() -> usize {
    usize::MAX
}
/// No effect.
///
/// # Safety
/// None.
pub unsafe fn mprotect(_addr: usize, _len: usize, _prot: Protection) -> OsResult<()> {
    Ok(())
}
/// No effect.
pub fn mlock_on_fault(_addr: usize, _len: usize) -> OsResult<()> {
    Ok(())
}
/// No effect.
pub fn munlock(_addr: usize, _len: usize) -> OsResult<()> {
    Ok(())
}
/// No effect.
pub fn madvise_dontdump(_addr: usize, _len: usize) -> OsResult<()> {
    Ok(())
}
/// No effect.
pub fn populate_write(_addr: usize, _len: usize) -> OsResult<()> {
    Ok(())
}
/// No effect.
pub fn madvise_wipeonfork(_addr: usize, _len: usize) -> OsResult<()> {
    Ok(())
}
/// No effect.
pub fn madvise_dontfork(_addr: usize, _len: usize) -> OsResult<()> {
    Ok(())
}
/// A container-sized budget (64 KiB): small enough that the budget module
/// keeps no empty slab idle, so the models exercise decommit and recommit.
pub fn memlock_limit() -> OsResult<(usize, usize)> {
    Ok((64 << 10, 64 << 10))
}
/// Unlimited.
pub fn raise_memlock_to_hard_limit() -> OsResult<usize> {
    Ok(usize::MAX)
}
/// Unavailable in the model.
pub fn memfd_secret() -> OsResult<c_int> {
    Err(OsError {
        op: "memfd_secret",
        errno: Errno::ENOSYS,
    })
}
/// Unavailable in the model.
pub fn ftruncate(_fd: c_int, _len: usize) -> OsResult<()> {
    Err(OsError {
        op: "ftruncate",
        errno: Errno::ENOSYS,
    })
}
/// Unavailable in the model.
pub fn mmap_shared_fd(_fd: c_int, _len: usize) -> OsResult<usize> {
    Err(OsError {
        op: "mmap",
        errno: Errno::ENOSYS,
    })
}
/// No effect.
pub fn close(_fd: c_int) {}
/// A thread-exit callback.
pub type KeyDestructor = unsafe extern "C" fn(*mut c_void);
/// Thread exit is modelled explicitly in loom tests.
pub fn pthread_key_create(_dtor: KeyDestructor) -> OsResult<u32> {
    Ok(0)
}
/// No effect.
pub fn pthread_setspecific(_key: u32, _value: usize) -> OsResult<()> {
    Ok(())
}
/// Fork is not modelled.
pub fn register_atfork(
    _prepare: unsafe extern "C" fn(),
    _parent: unsafe extern "C" fn(),
    _child: unsafe extern "C" fn(),
) -> OsResult<()> {
    Ok(())
}
/// Writes to the test's stderr.
pub fn write_stderr(bytes: &[u8]) {
    eprint!("{}", String::from_utf8_lossy(bytes));
}
/// Misuse in a model is a test failure.
pub fn fatal(message: &str) -> ! {
    panic!("secalloc: fatal: {message}")
}
/// No environment in the model.
pub fn with_env<R>(_name: &core::ffi::CStr, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    f(None)
}
/// Reports every page resident (the safe answer: everything gets wiped).
pub fn mincore(_addr: usize, _len: usize, residency: &mut [u8]) -> OsResult<()> {
    residency.fill(1);
    Ok(())
}
/// A monotonic clock in nanoseconds.
pub fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}
/// No errno to set here.
pub fn set_errno(_value: i32) {}
/// Not supported here.
pub fn read_file(_path: &core::ffi::CStr, _buf: &mut [u8]) -> Option<usize> {
    None
}
/// Not supported here.
pub fn register_atexit(_f: extern "C" fn()) -> OsResult<()> {
    Err(OsError {
        op: "atexit",
        errno: Errno::ENOSYS,
    })
}

/// Panics with the pieces (loom reports it).
/// One warning line on stderr: `secalloc: ` and the pieces.
pub fn warn(parts: &[&[u8]]) {
    let text: Vec<String> = parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    eprintln!("secalloc: {}", text.concat());
}

pub fn fatal_parts(parts: &[&[u8]]) -> ! {
    let text: Vec<String> = parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    panic!("secalloc: fatal: {}", text.concat())
}

/// A yield the model checker sees.
pub fn sleep_briefly() {
    loom::thread::yield_now();
}

/// No dynamic linker under loom: 0.
pub fn next_symbol(_name: &core::ffi::CStr) -> usize {
    0
}

/// No dynamic linker under loom: 0.
pub fn global_symbol(_name: &core::ffi::CStr) -> usize {
    0
}

/// No loader under loom.
pub fn same_object(_a: usize, _b: usize) -> bool {
    false
}
