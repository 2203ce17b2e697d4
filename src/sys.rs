//! The OS layer: every call into libc lives here and nowhere else.
//!
//! Each function is named after the system call it wraps, takes raw
//! addresses as `usize` where that keeps callers free of pointer casts, and
//! turns the C return convention into `Result<_, OsError>` at the boundary so
//! that callers never look at `errno` themselves. Nothing in this module
//! allocates: it is called from inside the allocator.
//!
//! Under `cfg(loom)` the same API is served by [`fake`], a heap-backed stand-in,
//! because loom cannot model system calls.

#![allow(unsafe_code)]

use core::fmt;

/// An `errno` value, kept as the raw number so that it is `Copy` and needs no
/// allocation to carry or print.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// `EPERM`: the caller lacks the privilege (no `CAP_IPC_LOCK`, for example).
    pub const EPERM: Errno = Errno(libc::EPERM);
    /// `ENOMEM`: out of memory, or over `RLIMIT_MEMLOCK` for `mlock`.
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    /// `ENOSYS`: the kernel lacks the system call.
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    /// `EAGAIN`: some of the range could not be locked.
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);

    /// The symbolic name of the common values, for messages.
    pub fn name(self) -> &'static str {
        match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOMEM => "ENOMEM",
            libc::ENOSYS => "ENOSYS",
            libc::EAGAIN => "EAGAIN",
            libc::EINVAL => "EINVAL",
            libc::EBADF => "EBADF",
            libc::EACCES => "EACCES",
            libc::ENOTSUP => "ENOTSUP",
            _ => "errno",
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.name(), self.0)
    }
}

/// A failed system call: which operation, and the `errno` it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OsError {
    /// The operation, named after the system call (`"mlock2"`, `"mmap"`, ...).
    pub op: &'static str,
    /// What the kernel said.
    pub errno: Errno,
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.op, self.errno)
    }
}

/// Result of an OS call.
pub type OsResult<T> = Result<T, OsError>;

/// Formats `value` in decimal into `buf` and returns the digits, without
/// allocating (for messages written from inside the allocator).
pub fn decimal(mut value: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[i..];
        }
    }
}

/// Memory protections used by the crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// No access: reserved address space and guard pages.
    None,
    /// Read only.
    Read,
    /// Read and write.
    ReadWrite,
}

#[cfg(all(not(loom), target_os = "linux"))]
mod linux;
#[cfg(all(not(loom), target_os = "linux"))]
pub use linux::*;

#[cfg(all(not(loom), not(target_os = "linux")))]
mod unsupported;
#[cfg(all(not(loom), not(target_os = "linux")))]
pub use unsupported::*;

#[cfg(loom)]
mod fake;
#[cfg(loom)]
pub use fake::*;

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn decimal_formats_without_allocating() {
        let mut buf = [0u8; 20];
        for v in [0usize, 7, 10, 65536, usize::MAX] {
            assert_eq!(super::decimal(v, &mut buf), v.to_string().as_bytes());
        }
    }
}
