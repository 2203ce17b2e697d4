//! Stand-in for operating systems other than Linux: every call fails with
//! `ENOSYS`, so the allocator returns null and `Secret` reports
//! `KeyUnavailable` instead of silently running without protection.

use super::{Errno, OsError, OsResult, Protection};
use core::ffi::{c_int, c_void};

fn unsupported<T>(op: &'static str) -> OsResult<T> {
    Err(OsError {
        op,
        errno: Errno::ENOSYS,
    })
}

/// The OS page size (assumed 4 KiB).
pub fn page_size() -> usize {
    4096
}
/// Unsupported on this OS.
pub fn mmap_reserve(_len: usize) -> OsResult<usize> {
    unsupported("mmap (secalloc supports Linux only)")
}
/// Unsupported on this OS.
pub fn mmap_read_write(_len: usize) -> OsResult<usize> {
    unsupported("mmap (secalloc supports Linux only)")
}
/// Unsupported on this OS.
///
/// # Safety
/// None: always fails.
pub unsafe fn munmap(_addr: usize, _len: usize) -> OsResult<()> {
    unsupported("munmap")
}
/// Unsupported on this OS.
///
/// # Safety
/// None: always fails.
pub unsafe fn mprotect(_addr: usize, _len: usize, _prot: Protection) -> OsResult<()> {
    unsupported("mprotect")
}
/// Unsupported on this OS.
pub fn mlock_on_fault(_addr: usize, _len: usize) -> OsResult<()> {
    unsupported("mlock2")
}
/// Unsupported on this OS.
pub fn munlock(_addr: usize, _len: usize) -> OsResult<()> {
    unsupported("munlock")
}
/// Unsupported on this OS.
pub fn madvise_dontdump(_addr: usize, _len: usize) -> OsResult<()> {
    unsupported("madvise(MADV_DONTDUMP)")
}
/// Unsupported on this OS.
pub fn populate_write(_addr: usize, _len: usize) -> OsResult<()> {
    unsupported("madvise(MADV_POPULATE_WRITE)")
}
/// Unsupported on this OS.
pub fn madvise_wipeonfork(_addr: usize, _len: usize) -> OsResult<()> {
    unsupported("madvise(MADV_WIPEONFORK)")
}
/// Unsupported on this OS.
pub fn madvise_dontfork(_addr: usize, _len: usize) -> OsResult<()> {
    unsupported("madvise(MADV_DONTFORK)")
}
/// Unsupported on this OS.
pub fn memlock_limit() -> OsResult<(usize, usize)> {
    unsupported("getrlimit")
}
/// Unsupported on this OS.
pub fn raise_memlock_to_hard_limit() -> OsResult<usize> {
    unsupported("setrlimit")
}
/// Unsupported on this OS.
pub fn memfd_secret() -> OsResult<c_int> {
    unsupported("memfd_secret")
}
/// Unsupported on this OS.
pub fn ftruncate(_fd: c_int, _len: usize) -> OsResult<()> {
    unsupported("ftruncate")
}
/// Unsupported on this OS.
pub fn mmap_shared_fd(_fd: c_int, _len: usize) -> OsResult<usize> {
    unsupported("mmap")
}
/// No-op.
pub fn close(_fd: c_int) {}
/// A thread-exit callback.
pub type KeyDestructor = unsafe extern "C" fn(*mut c_void);
/// Unsupported on this OS.
pub fn pthread_key_create(_dtor: KeyDestructor) -> OsResult<usize> {
    unsupported("pthread_key_create")
}
/// Unsupported on this OS.
pub fn pthread_setspecific(_key: usize, _value: usize) -> OsResult<()> {
    unsupported("pthread_setspecific")
}
/// Unsupported on this OS.
pub fn register_atfork(
    _prepare: unsafe extern "C" fn(),
    _parent: unsafe extern "C" fn(),
    _child: unsafe extern "C" fn(),
) -> OsResult<()> {
    unsupported("pthread_atfork")
}
/// Not supported here.
///
/// # Safety
/// None needed: nothing happens.
pub unsafe fn madvise_dontneed(_addr: usize, _len: usize) -> OsResult<()> {
    unsupported("madvise")
}
/// Not supported here.
///
/// # Safety
/// None needed: nothing happens.
pub unsafe fn madvise_dontneed_locked(_addr: usize, _len: usize) -> OsResult<()> {
    unsupported("madvise")
}
/// Yields the CPU.
pub fn sched_yield() {
    std::thread::yield_now();
}
/// Unknown here.
pub fn physical_memory() -> usize {
    usize::MAX
}
/// Writes to stderr.
pub fn write_stderr(bytes: &[u8]) {
    // SAFETY: `bytes` is a valid readable buffer.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}
/// Reports a fatal error and aborts.
pub fn fatal(message: &str) -> ! {
    fatal_parts(&[message.as_bytes()])
}
/// Environment lookups are not supported off Linux.
pub fn with_env<R>(_name: &core::ffi::CStr, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    f(None)
}
/// Not supported here.
///
/// # Safety
/// None needed (it does nothing).
pub unsafe fn wipe_and_unsetenv(_name: &core::ffi::CStr) -> bool {
    false
}
/// Not supported here.
pub fn open_tty() -> OsResult<i32> {
    unsupported("open(/dev/tty) (secalloc supports Linux only)")
}
/// Saved terminal settings (never produced here).
#[derive(Clone, Copy)]
pub struct TerminalMode(());
/// Not supported here.
pub fn echo_off(_fd: i32) -> OsResult<TerminalMode> {
    unsupported("tcsetattr (secalloc supports Linux only)")
}
/// Not supported here.
pub fn restore_terminal(_fd: i32, _mode: &TerminalMode) -> OsResult<()> {
    Ok(())
}
/// Not supported here.
pub fn read_fd(_fd: i32, _buf: &mut [u8]) -> OsResult<usize> {
    unsupported("read (secalloc supports Linux only)")
}
/// Not supported here.
pub fn write_fd(_fd: i32, _bytes: &[u8]) {}
/// Not supported here.
pub fn close_fd(_fd: i32) {}
/// Unsupported on this OS.
pub fn mmap_reserve_aligned(_len: usize, _align: usize) -> OsResult<usize> {
    unsupported("mmap (secalloc supports Linux only)")
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

/// One warning line on stderr: `secalloc: ` and the pieces.
pub fn warn(parts: &[&[u8]]) {
    write_stderr(b"secalloc: ");
    for part in parts {
        write_stderr(part);
    }
    write_stderr(b"\n");
}

/// [`fatal`] with a message in pieces (so callers need not format, which
/// could allocate): `secalloc: fatal: ` then each piece, then a newline.
pub fn fatal_parts(parts: &[&[u8]]) -> ! {
    write_stderr(b"secalloc: fatal: ");
    for part in parts {
        write_stderr(part);
    }
    write_stderr(b"\n");
    // SAFETY: abort has no preconditions and does not return.
    unsafe { libc::abort() }
}

/// Sleeps briefly.
pub fn sleep_briefly() {
    std::thread::sleep(std::time::Duration::from_micros(50));
}

/// No dynamic linker lookup here: 0.
pub fn next_symbol(_name: &core::ffi::CStr) -> usize {
    0
}

/// No dynamic linker lookup here: 0.
pub fn global_symbol(_name: &core::ffi::CStr) -> usize {
    0
}

/// No loader tables here.
pub fn same_object(_a: usize, _b: usize) -> bool {
    false
}
