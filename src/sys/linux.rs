//! Linux implementation of the OS layer.

use super::{Errno, OsError, OsResult, Protection};
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

fn last_errno() -> Errno {
    // SAFETY: `__errno_location` returns the calling thread's errno slot,
    // which is always valid to read.
    Errno(unsafe { *libc::__errno_location() })
}

fn check(op: &'static str, ret: c_int) -> OsResult<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(OsError {
            op,
            errno: last_errno(),
        })
    }
}

fn prot_bits(prot: Protection) -> c_int {
    match prot {
        Protection::None => libc::PROT_NONE,
        Protection::Read => libc::PROT_READ,
        Protection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
    }
}

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The OS page size in bytes (cached after the first call).
pub fn page_size() -> usize {
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = if size > 0 { size as usize } else { 4096 };
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

fn mmap_anonymous(len: usize, prot: Protection, extra_flags: c_int) -> OsResult<usize> {
    // SAFETY: an anonymous private mapping at a kernel-chosen address cannot
    // alias any existing Rust object.
    let addr = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            prot_bits(prot),
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        Err(OsError {
            op: "mmap",
            errno: last_errno(),
        })
    } else {
        Ok(addr as usize)
    }
}

/// Reserves `len` bytes of address space with no access and no swap
/// reservation; pages become usable only after [`mprotect`].
pub fn mmap_reserve(len: usize) -> OsResult<usize> {
    mmap_anonymous(len, Protection::None, libc::MAP_NORESERVE)
}

/// Reserves `len` bytes of inaccessible address space starting at a multiple
/// of `align` (a power of two no smaller than the page size), by reserving
/// `len + align` and returning the unused head and tail to the kernel.
pub fn mmap_reserve_aligned(len: usize, align: usize) -> OsResult<usize> {
    let padded = len.checked_add(align).ok_or(OsError {
        op: "mmap",
        errno: Errno::ENOMEM,
    })?;
    let raw = mmap_reserve(padded)?;
    let start = (raw + align - 1) & !(align - 1);
    let head = start - raw;
    let tail = padded - head - len;
    // SAFETY: head and tail are page-aligned pieces of the reservation we just
    // made; nothing references them.
    unsafe {
        if head != 0 {
            munmap(raw, head)?;
        }
        if tail != 0 {
            munmap(start + len, tail)?;
        }
    }
    Ok(start)
}

/// Maps `len` bytes of zeroed, readable and writable anonymous memory,
/// populated lazily by the kernel.
pub fn mmap_read_write(len: usize) -> OsResult<usize> {
    mmap_anonymous(len, Protection::ReadWrite, libc::MAP_NORESERVE)
}

/// Unmaps `[addr, addr + len)`.
///
/// # Safety
/// The range must be page aligned, owned by the caller, and no live Rust
/// reference may point into it.
pub unsafe fn munmap(addr: usize, len: usize) -> OsResult<()> {
    // SAFETY: the caller owns the range and nothing references it.
    check("munmap", unsafe { libc::munmap(addr as *mut c_void, len) })
}

/// Changes the protection of `[addr, addr + len)`.
///
/// # Safety
/// The range must be page aligned and owned by the caller; removing access
/// from memory that live references point to is the caller's responsibility.
pub unsafe fn mprotect(addr: usize, len: usize, prot: Protection) -> OsResult<()> {
    // SAFETY: the caller owns the range.
    check("mprotect", unsafe {
        libc::mprotect(addr as *mut c_void, len, prot_bits(prot))
    })
}

/// Locks `[addr, addr + len)` into RAM, faulting pages in lazily when the
/// kernel supports `mlock2(MLOCK_ONFAULT)` and eagerly (`mlock`) otherwise.
///
/// The whole range is charged to `RLIMIT_MEMLOCK` either way.
pub fn mlock_on_fault(addr: usize, len: usize) -> OsResult<()> {
    // SAFETY: mlock2 only changes residency attributes of the range; an
    // unmapped range is reported as ENOMEM, not undefined behaviour.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mlock2,
            addr as *const c_void,
            len,
            libc::MLOCK_ONFAULT,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let errno = last_errno();
    if errno != Errno::ENOSYS && errno.0 != libc::EINVAL {
        return Err(OsError {
            op: "mlock2",
            errno,
        });
    }
    // SAFETY: as above; mlock only changes residency.
    check("mlock", unsafe { libc::mlock(addr as *const c_void, len) })
}

/// Fills `residency[i]` with 1 if page `i` of `[addr, addr + len)` is
/// resident, 0 if not. `residency` must have one byte per page.
pub fn mincore(addr: usize, len: usize, residency: &mut [u8]) -> OsResult<()> {
    debug_assert!(residency.len() >= len.div_ceil(page_size()));
    // SAFETY: `residency` has room for one byte per page of the range;
    // mincore only reads page-table state.
    check("mincore", unsafe {
        libc::mincore(addr as *mut c_void, len, residency.as_mut_ptr())
    })
}

/// Unlocks `[addr, addr + len)`.
pub fn munlock(addr: usize, len: usize) -> OsResult<()> {
    // SAFETY: munlock only changes residency attributes of the range.
    check("munlock", unsafe {
        libc::munlock(addr as *const c_void, len)
    })
}

fn madvise(op: &'static str, addr: usize, len: usize, advice: c_int) -> OsResult<()> {
    // SAFETY: the advice values used here (DONTDUMP, WIPEONFORK, DONTFORK)
    // change only dump and fork behaviour, and POPULATE_WRITE only faults
    // in pages (a fresh anonymous page is zero, a present one is left as
    // it is): never the contents seen by this process.
    check(op, unsafe {
        libc::madvise(addr as *mut c_void, len, advice)
    })
}

/// Gives the pages of the range back to the kernel (`MADV_DONTNEED`): the
/// next touch of an anonymous private page sees a fresh zero page. Refused
/// by the kernel for locked ranges, so unlock first.
///
/// # Safety
/// Nothing may rely on the contents of the range (they become zero).
pub unsafe fn madvise_dontneed(addr: usize, len: usize) -> OsResult<()> {
    // SAFETY: the caller gives up the contents; the mapping itself stays.
    check("madvise(MADV_DONTNEED)", unsafe {
        libc::madvise(addr as *mut c_void, len, libc::MADV_DONTNEED)
    })
}

/// Drops the pages of a locked range (`MADV_DONTNEED_LOCKED`, Linux 5.18):
/// resident pages and swap entries alike, so the next touch sees a zero
/// page; the range stays locked and charged. Refused (`EINVAL`) by older
/// kernels.
///
/// # Safety
/// Nothing may rely on the contents of the range (they become zero).
pub unsafe fn madvise_dontneed_locked(addr: usize, len: usize) -> OsResult<()> {
    /// `MADV_DONTNEED_LOCKED` from `<linux/mman.h>` (not in every `libc`).
    const MADV_DONTNEED_LOCKED: c_int = 24;
    // SAFETY: the caller gives up the contents; the mapping itself stays.
    check("madvise(MADV_DONTNEED_LOCKED)", unsafe {
        libc::madvise(addr as *mut c_void, len, MADV_DONTNEED_LOCKED)
    })
}

/// Excludes the range from core dumps (`MADV_DONTDUMP`).
pub fn madvise_dontdump(addr: usize, len: usize) -> OsResult<()> {
    madvise("madvise(MADV_DONTDUMP)", addr, len, libc::MADV_DONTDUMP)
}

/// Faults the pages of the range in, writable, in one call
/// (`MADV_POPULATE_WRITE`, Linux 5.14; an error on older kernels, which the
/// caller ignores: the pages then fault in on first touch as before).
///
/// For slabs about to be handed out: their first access is the
/// allocator's own zero check, a load, which maps the kernel's shared zero
/// page, and the caller's first store then faults again to replace it.
pub fn populate_write(addr: usize, len: usize) -> OsResult<()> {
    /// `MADV_POPULATE_WRITE` from `<linux/mman.h>`.
    const MADV_POPULATE_WRITE: c_int = 23;
    madvise(
        "madvise(MADV_POPULATE_WRITE)",
        addr,
        len,
        MADV_POPULATE_WRITE,
    )
}

/// Makes a forked child see the range zeroed (`MADV_WIPEONFORK`).
pub fn madvise_wipeonfork(addr: usize, len: usize) -> OsResult<()> {
    madvise("madvise(MADV_WIPEONFORK)", addr, len, libc::MADV_WIPEONFORK)
}

/// Leaves the range out of a forked child entirely (`MADV_DONTFORK`).
pub fn madvise_dontfork(addr: usize, len: usize) -> OsResult<()> {
    madvise("madvise(MADV_DONTFORK)", addr, len, libc::MADV_DONTFORK)
}

/// `RLIMIT_MEMLOCK` as `(soft, hard)`; `usize::MAX` means unlimited.
pub fn memlock_limit() -> OsResult<(usize, usize)> {
    let lim = getrlimit_memlock()?;
    Ok((rlim_to_usize(lim.rlim_cur), rlim_to_usize(lim.rlim_max)))
}

/// Raises the soft `RLIMIT_MEMLOCK` to the hard limit. Returns the new soft limit.
pub fn raise_memlock_to_hard_limit() -> OsResult<usize> {
    let mut lim = getrlimit_memlock()?;
    if lim.rlim_cur != lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit whose soft value equals its hard value.
        check("setrlimit(RLIMIT_MEMLOCK)", unsafe {
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim)
        })?;
    }
    Ok(rlim_to_usize(lim.rlim_cur))
}

fn getrlimit_memlock() -> OsResult<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    check("getrlimit(RLIMIT_MEMLOCK)", unsafe {
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim)
    })?;
    Ok(lim)
}

fn rlim_to_usize(v: libc::rlim_t) -> usize {
    if v == libc::RLIM_INFINITY {
        usize::MAX
    } else {
        v as usize
    }
}

/// Creates a `memfd_secret` file descriptor (Linux 5.14+, when enabled).
/// `ENOSYS` means the kernel does not offer it.
pub fn memfd_secret() -> OsResult<c_int> {
    // SAFETY: memfd_secret takes a flags word and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC as libc::c_uint) };
    if fd < 0 {
        Err(OsError {
            op: "memfd_secret",
            errno: last_errno(),
        })
    } else {
        Ok(fd as c_int)
    }
}

/// Sets the size of the file behind `fd`.
pub fn ftruncate(fd: c_int, len: usize) -> OsResult<()> {
    // SAFETY: ftruncate on a descriptor we own has no memory effects.
    check("ftruncate", unsafe {
        libc::ftruncate(fd, len as libc::off_t)
    })
}

/// Maps `len` bytes of the file `fd` shared and read-write.
pub fn mmap_shared_fd(fd: c_int, len: usize) -> OsResult<usize> {
    // SAFETY: a new shared mapping at a kernel-chosen address aliases no Rust object.
    let addr = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        Err(OsError {
            op: "mmap(memfd_secret)",
            errno: last_errno(),
        })
    } else {
        Ok(addr as usize)
    }
}

/// Closes a descriptor this crate opened.
pub fn close(fd: c_int) {
    // SAFETY: the caller passes a descriptor it owns and does not use again.
    unsafe { libc::close(fd) };
}

/// A thread-exit callback for [`pthread_key_create`].
pub type KeyDestructor = unsafe extern "C" fn(*mut c_void);

/// Creates a pthread key whose destructor runs at thread exit for every
/// thread that stored a non-null value under it.
pub fn pthread_key_create(dtor: KeyDestructor) -> OsResult<libc::pthread_key_t> {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is writable; `dtor` is a valid function for the process lifetime.
    let ret = unsafe { libc::pthread_key_create(&mut key, Some(dtor)) };
    if ret == 0 {
        Ok(key)
    } else {
        Err(OsError {
            op: "pthread_key_create",
            errno: Errno(ret),
        })
    }
}

/// Stores `value` for the calling thread under `key`.
pub fn pthread_setspecific(key: libc::pthread_key_t, value: usize) -> OsResult<()> {
    // SAFETY: the value is an opaque token; glibc never dereferences it.
    let ret = unsafe { libc::pthread_setspecific(key, value as *const c_void) };
    if ret == 0 {
        Ok(())
    } else {
        Err(OsError {
            op: "pthread_setspecific",
            errno: Errno(ret),
        })
    }
}

extern "C" {
    // Not exported by the `libc` crate for Linux targets; glibc has it in
    // libc.so.6 since 2.28 (and libpthread before that).
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> c_int;
}

/// Registers fork handlers.
pub fn register_atfork(
    prepare: unsafe extern "C" fn(),
    parent: unsafe extern "C" fn(),
    child: unsafe extern "C" fn(),
) -> OsResult<()> {
    // SAFETY: the handlers are plain functions valid for the process lifetime.
    let ret = unsafe { pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if ret == 0 {
        Ok(())
    } else {
        Err(OsError {
            op: "pthread_atfork",
            errno: Errno(ret),
        })
    }
}

/// Writes `bytes` to standard error without allocating, ignoring failures.
pub fn write_stderr(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is a valid readable buffer of `rest.len()` bytes.
        let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return;
        }
        // `write` never reports more than it was given; `get` keeps a
        // kernel that did from panicking here, on the fatal path.
        rest = rest.get(n as usize..).unwrap_or_default();
    }
}

/// Gives up the CPU for a moment (a spin lock's back-off once spinning has
/// not helped).
pub fn sched_yield() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

/// Bytes of physical memory (`_SC_PHYS_PAGES` × page size); `usize::MAX`
/// if the system does not say.
pub fn physical_memory() -> usize {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    if pages <= 0 {
        usize::MAX
    } else {
        (pages as usize).saturating_mul(page_size())
    }
}

/// Reports an unrecoverable misuse on stderr and aborts the process.
///
/// This path never allocates and never unwinds, so it is safe inside the
/// allocator.
pub fn fatal(message: &str) -> ! {
    fatal_parts(&[message.as_bytes()])
}

/// Reads an environment variable without allocating (for the preload
/// library's early start); returns the raw bytes.
fn last_error(op: &'static str) -> OsError {
    OsError {
        op,
        errno: last_errno(),
    }
}

/// Runs `f` on the value of environment variable `name` (its bytes in
/// the process's environment block), or on `None` if it is not set.
///
/// The bytes are only lent for the call: `setenv`/`unsetenv` may free or
/// reuse them afterwards. (Rust's `std::env::set_var` requires, as a safety
/// precondition, that no other thread reads the environment meanwhile.)
pub fn with_env<R>(name: &core::ffi::CStr, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    // SAFETY: `name` is NUL-terminated; getenv returns null or a pointer into
    // the environment block, valid until the environment is next modified,
    // which the contract above excludes during `f`.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        f(None)
    } else {
        // SAFETY: a non-null getenv result is a NUL-terminated string.
        f(Some(unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes()))
    }
}

/// Overwrites the value of environment variable `name` with zero bytes in
/// place, then removes the variable. Returns whether it was set.
///
/// # Safety
/// No other thread reads or modifies the environment during the call, and
/// the variable's string is writable (true of the initial environment and of
/// `setenv`; not of a string literal passed to `putenv`).
pub unsafe fn wipe_and_unsetenv(name: &core::ffi::CStr) -> bool {
    // SAFETY: as in `with_env`; the caller excludes concurrent access.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return false;
    }
    // SAFETY: the value is a NUL-terminated string the caller guarantees is
    // writable; we overwrite its bytes, not the terminator.
    unsafe {
        let len = libc::strlen(value);
        crate::arena::wipe::wipe_raw(value.cast(), len);
        libc::unsetenv(name.as_ptr());
    }
    true
}

/// Opens the controlling terminal (`/dev/tty`) for reading and writing.
pub fn open_tty() -> OsResult<i32> {
    // SAFETY: a NUL-terminated path; flags are valid.
    let fd = unsafe {
        libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(last_error("open(/dev/tty)"));
    }
    Ok(fd)
}

/// A terminal's settings, saved to be restored (and whether this prompt
/// holds the signal guard).
#[derive(Clone, Copy)]
pub struct TerminalMode(libc::termios, bool);

/// Signals that end a process at a password prompt (Ctrl-C, Ctrl-\, a
/// hang-up, `kill`): while echo is off, where their action is the default
/// (the process dies), a handler puts the terminal back first.
const RESTORING_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP];

/// The terminal a signal handler must restore, and how: written before
/// the handlers are installed and only read by them, one prompt at a time
/// (`ECHO_GUARD`).
static ECHO_GUARD: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
static GUARD_FD: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(-1);
struct SavedState {
    mode: core::cell::UnsafeCell<core::mem::MaybeUninit<libc::termios>>,
    old: core::cell::UnsafeCell<[core::mem::MaybeUninit<libc::sigaction>; 4]>,
}
// SAFETY: written only by the thread holding `ECHO_GUARD`, before it
// installs the handlers (which only read it) and after it removes them.
unsafe impl Sync for SavedState {}
static SAVED: SavedState = SavedState {
    mode: core::cell::UnsafeCell::new(core::mem::MaybeUninit::uninit()),
    old: core::cell::UnsafeCell::new([const { core::mem::MaybeUninit::uninit() }; 4]),
};

/// Restores the terminal, puts the previous action back, and lets the
/// signal take its course (it is re-raised, and delivered once this
/// handler returns). Only async-signal-safe calls.
extern "C" fn restore_on_signal(signal: i32) {
    let fd = GUARD_FD.load(core::sync::atomic::Ordering::Acquire);
    if let Some(i) = RESTORING_SIGNALS.iter().position(|&s| s == signal) {
        // SAFETY: installed only after `SAVED` was written (Release on
        // `GUARD_FD`, Acquire above); tcsetattr, sigaction and raise are
        // async-signal-safe.
        unsafe {
            libc::tcsetattr(fd, libc::TCSANOW, (*SAVED.mode.get()).as_ptr());
            libc::sigaction(
                signal,
                (*SAVED.old.get())[i].as_ptr(),
                core::ptr::null_mut(),
            );
            libc::raise(signal);
        }
    }
}

/// Turns echo off on terminal `fd` (keeping the newline echoed, so the
/// cursor moves on after a password). Returns the previous settings. Until
/// [`restore_terminal`], a SIGINT, SIGQUIT, SIGTERM or SIGHUP restores the
/// terminal before it ends the process (found by the issue-13 attack
/// review: Ctrl-C at the prompt left the terminal without echo).
pub fn echo_off(fd: i32) -> OsResult<TerminalMode> {
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut mode: libc::termios = unsafe { core::mem::zeroed() };
    // SAFETY: `mode` is a valid termios to write.
    if unsafe { libc::tcgetattr(fd, &mut mode) } != 0 {
        return Err(last_error("tcgetattr"));
    }
    let mut quiet = mode;
    quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
    quiet.c_lflag |= libc::ECHONL;
    let guarded = !ECHO_GUARD.swap(true, core::sync::atomic::Ordering::AcqRel);
    if guarded {
        // SAFETY: we hold `ECHO_GUARD`, and no handler is installed yet.
        unsafe {
            (*SAVED.mode.get()).write(mode);
            GUARD_FD.store(fd, core::sync::atomic::Ordering::Release);
            let mut action: libc::sigaction = core::mem::zeroed();
            action.sa_sigaction = restore_on_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            for (i, &signal) in RESTORING_SIGNALS.iter().enumerate() {
                let old = (*SAVED.old.get())[i].as_mut_ptr();
                libc::sigaction(signal, core::ptr::null(), old);
                // Only where the signal would end the process as it stands
                // (the default action): an ignored signal must stay
                // ignored, and a program's own handler may keep it running,
                // which must not happen with echo turned back on mid-prompt.
                if (*old).sa_sigaction == libc::SIG_DFL {
                    libc::sigaction(signal, &action, core::ptr::null_mut());
                }
            }
        }
    }
    // SAFETY: a valid termios derived from the current one.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
        let err = last_error("tcsetattr");
        if guarded {
            remove_signal_guard();
        }
        return Err(err);
    }
    Ok(TerminalMode(mode, guarded))
}

/// Puts back the signal actions [`echo_off`] replaced.
fn remove_signal_guard() {
    for (i, &signal) in RESTORING_SIGNALS.iter().enumerate() {
        // SAFETY: `echo_off` saved these actions while holding the guard,
        // which we still hold; only the ones it replaced are put back.
        unsafe {
            let old = (*SAVED.old.get())[i].as_ptr();
            if (*old).sa_sigaction == libc::SIG_DFL {
                libc::sigaction(signal, old, core::ptr::null_mut());
            }
        }
    }
    ECHO_GUARD.store(false, core::sync::atomic::Ordering::Release);
}

/// Restores settings saved by [`echo_off`] (and its signal guard).
pub fn restore_terminal(fd: i32, mode: &TerminalMode) -> OsResult<()> {
    // SAFETY: a termios read from this terminal.
    let rc = unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &mode.0) };
    if mode.1 {
        remove_signal_guard();
    }
    if rc != 0 {
        return Err(last_error("tcsetattr"));
    }
    Ok(())
}

/// `read(2)` into `buf`, retrying on `EINTR`. Returns the bytes read (0 at
/// end of file).
pub fn read_fd(fd: i32, buf: &mut [u8]) -> OsResult<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = last_error("read");
        if err.errno.0 != libc::EINTR {
            return Err(err);
        }
    }
}

/// Writes all of `bytes` to `fd` (best effort: stops at the first error).
pub fn write_fd(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for reads of its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Closes a descriptor this crate opened.
pub fn close_fd(fd: i32) {
    // SAFETY: closing a descriptor we own.
    unsafe { libc::close(fd) };
}

/// Nanoseconds on `CLOCK_MONOTONIC` (never goes backwards, unaffected by
/// wall-clock changes): the clock for secret expiry.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sets the calling thread's `errno` (for the C allocation functions).
pub fn set_errno(value: i32) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// Reads up to `buf.len()` bytes of the file at `path` (NUL-terminated)
/// without allocating. Returns the bytes read, or `None`.
pub fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut total = 0;
    while total < buf.len() {
        // SAFETY: the destination is the unfilled tail of `buf`.
        let n = unsafe { libc::read(fd, buf[total..].as_mut_ptr().cast(), buf.len() - total) };
        if n <= 0 {
            break;
        }
        total += n as usize;
    }
    close(fd);
    Some(total)
}

/// Registers `f` to run at normal process exit (`atexit`).
pub fn register_atexit(f: extern "C" fn()) -> OsResult<()> {
    extern "C" {
        fn atexit(f: extern "C" fn()) -> c_int;
    }
    // SAFETY: `f` is a plain function valid for the process lifetime.
    if unsafe { atexit(f) } == 0 {
        Ok(())
    } else {
        Err(OsError {
            op: "atexit",
            errno: Errno::ENOMEM,
        })
    }
}

/// Set by the first thread to reach [`fatal_parts`].
static FATAL_STARTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Writes `prefix` and the pieces to stderr as one line assembled on the
/// stack (cut at 255 bytes), with one `write`, so that lines from two
/// threads never mix. With `wait_ms`, writes only if stderr takes the line
/// within that long (`poll`): a full pipe nobody reads must not keep the
/// caller from what it does next.
fn write_stderr_line(prefix: &[u8], parts: &[&[u8]], wait_ms: Option<c_int>) {
    // Built with iterators, not slice indexing: this runs on the fatal
    // path, which must not panic (`tests/no_panic_paths.rs`).
    let mut line = [0u8; 256];
    let mut len = 0;
    let bytes = core::iter::once(prefix)
        .chain(parts.iter().copied())
        .flat_map(|piece| piece.iter().copied());
    // Leave room for the newline; a line too long is cut short.
    for (slot, byte) in line.iter_mut().take(255).zip(bytes) {
        *slot = byte;
        len += 1;
    }
    line[255.min(len)] = b'\n';
    if let Some(ms) = wait_ms {
        let mut fd = libc::pollfd {
            fd: 2,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: `fd` is one valid pollfd for the duration of the call.
        // A pipe is reported writable when it has room for PIPE_BUF bytes,
        // more than the line, so the write below then does not block.
        if unsafe { libc::poll(&mut fd, 1, ms) } != 1 || fd.revents & libc::POLLOUT == 0 {
            return;
        }
    }
    write_stderr(line.get(..=len).unwrap_or(&line));
}

/// One warning line on stderr (`secalloc: ` and the pieces), in one
/// `write`, without allocating.
pub fn warn(parts: &[&[u8]]) {
    write_stderr_line(b"secalloc: ", parts, None);
}

/// [`fatal`] with a message in pieces (so callers need not format, which
/// could allocate): `secalloc: fatal: ` then each piece, then a newline.
///
/// Only the first thread to get here writes, one line in one `write`: two
/// threads detecting misuse at once interleaved their pieces into one
/// garbled line (found by the issue-14 attack review, 6 runs in 500). The
/// write waits at most 100 ms for stderr, and a later arrival waits at
/// most about a second for the first one's `abort` before aborting itself:
/// with stderr a full pipe the first thread blocked in `write` while the
/// others ran on and the program exited 0, and a child forked meanwhile
/// inherited the flag and hung at its own detection (both found by the
/// second review of these fixes).
pub fn fatal_parts(parts: &[&[u8]]) -> ! {
    if FATAL_STARTED.swap(true, Ordering::SeqCst) {
        for _ in 0..20_000 {
            sleep_briefly();
        }
    } else {
        write_stderr_line(b"secalloc: fatal: ", parts, Some(100));
    }
    // SAFETY: abort has no preconditions and does not return.
    unsafe { libc::abort() }
}

/// Sleeps about 50 µs (a lock waiter that has yielded long enough).
pub fn sleep_briefly() {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 50_000,
    };
    // SAFETY: `ts` is a valid timespec; a null remainder is allowed.
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}

/// The next definition of the symbol `name` after the calling object in
/// the dynamic linker's search order (`dlsym(RTLD_NEXT, name)`), or 0: for
/// the preload's C++ `operator new`, to hand a refusal to the C++ runtime's
/// own operator, which runs the new-handler and throws `std::bad_alloc`.
/// May allocate (through the C library's `malloc`): never call it with a
/// lock held.
pub fn next_symbol(name: &core::ffi::CStr) -> usize {
    // SAFETY: `name` is NUL-terminated; `RTLD_NEXT` is a valid handle.
    let next = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize };
    if next != 0 {
        return next;
    }
    // A C++ runtime loaded `RTLD_LOCAL` (a C host's C++ extension: Python
    // loads its extensions that way) is not in the global scope: ask it by
    // name, without loading it if it is not there (found by the second
    // issue-14 review: a refused `new` aborted instead of throwing).
    for runtime in [c"libstdc++.so.6", c"libc++.so.1"] {
        // SAFETY: a NUL-terminated name; `RTLD_NOLOAD` never loads.
        let handle = unsafe { libc::dlopen(runtime.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        if handle.is_null() {
            continue;
        }
        // SAFETY: a handle `dlopen` returned; `name` is NUL-terminated.
        let found = unsafe { libc::dlsym(handle, name.as_ptr()) as usize };
        // SAFETY: drops the reference `dlopen` took; the library stays.
        unsafe { libc::dlclose(handle) };
        if found != 0 {
            return found;
        }
    }
    0
}

/// The first definition of the symbol `name` in the process's global
/// search order (`dlsym(RTLD_DEFAULT, name)`), or 0: whether a program
/// replaced a function the preload also defines. May allocate (through
/// the C library's `malloc`): never call it with a lock held.
pub fn global_symbol(name: &core::ffi::CStr) -> usize {
    // SAFETY: `name` is NUL-terminated; `RTLD_DEFAULT` is a valid handle.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
}

/// Whether the code addresses `a` and `b` lie in the same loaded object
/// (executable or shared library), by `dladdr`'s base addresses.
pub fn same_object(a: usize, b: usize) -> bool {
    let base = |addr: usize| {
        // SAFETY: `dladdr` only reads the loader's tables and fills `info`.
        let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
        // SAFETY: as above; `info` is a valid out-parameter.
        let found = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
        (found != 0).then_some(info.dli_fbase as usize)
    };
    matches!((base(a), base(b)), (Some(x), Some(y)) if x == y)
}
