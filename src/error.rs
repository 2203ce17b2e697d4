//! The crate's error type: categories a caller can act on.

use crate::sys::OsError;
use core::fmt;

/// Everything that can go wrong in this crate's fallible API.
///
/// ```
/// use secalloc::{Error, Secret};
/// let mut s = Secret::new([1u8; 16])?;
/// s.expire_after(std::time::Duration::ZERO);
/// assert_eq!(s.expose(|k| k[0]), Err(Error::Expired));
/// println!("{}", Error::Expired); // every variant says what happened and what to do
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused to lock memory (`RLIMIT_MEMLOCK` reached, or no
    /// `CAP_IPC_LOCK`) and the chosen policy does not allow running unlocked.
    LockRefused(OsError),
    /// The arena could not supply memory (address space or memory exhausted).
    AllocFailed,
    /// Stored ciphertext failed authentication: it was modified, or moved from
    /// another secret.
    Tampered,
    /// The secret key is gone: the process forked (the child's key page is
    /// wiped by the kernel), [`purge`](crate) was called, or the key page
    /// could not be created.
    KeyUnavailable,
    /// The secret passed its expiry time and has been wiped.
    Expired,
    /// The secret was destroyed.
    Destroyed,
    /// [`rekey`](crate::rekey) could not move every secret off the key
    /// before the current one (other threads kept re-keying meanwhile);
    /// the count is how many remain. Call it again, or
    /// [`rekey_step`](crate::rekey_step).
    RekeyIncomplete(usize),
    /// `SECALLOC_LOCK` holds a value other than `require`, `fail-closed`
    /// or `best-effort`.
    InvalidPolicy,
    /// The input was longer than the limit the caller gave (the limit).
    TooLong(usize),
    /// Reading the input failed, or it was missing or malformed: an
    /// environment variable not set is `NotFound`, a value that is not
    /// UTF-8 `InvalidData`.
    Io(std::io::ErrorKind),
    /// An operating-system call failed.
    Os(OsError),
    /// This operating system is not supported (Linux only).
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LockRefused(e) => write!(
                f,
                "the kernel refused to lock memory ({e}); raise RLIMIT_MEMLOCK \
                 (ulimit -l), grant CAP_IPC_LOCK, or choose the best-effort policy"
            ),
            Error::AllocFailed => f.write_str("secure memory allocation failed (out of memory or address space)"),
            Error::Tampered => f.write_str("stored ciphertext failed authentication (modified or swapped between secrets)"),
            Error::KeyUnavailable => f.write_str(
                "the secret key is unavailable (process forked, secrets purged, or key page could not be created)",
            ),
            Error::Expired => f.write_str("the secret has expired and was wiped"),
            Error::Destroyed => f.write_str("the secret was destroyed"),
            Error::RekeyIncomplete(n) => write!(
                f,
                "re-key incomplete: {n} secrets are still sealed under the previous key \
                 (another re-key ran meanwhile); call rekey() or rekey_step() again"
            ),
            Error::InvalidPolicy => f.write_str(
                "SECALLOC_LOCK must be `require` (or `fail-closed`) or `best-effort`",
            ),
            Error::TooLong(max) => write!(f, "the input is longer than the limit of {max} bytes"),
            Error::Io(kind) => write!(f, "reading the secret failed: {kind}"),
            Error::Os(e) => write!(f, "operating system call failed: {e}"),
            Error::Unsupported => f.write_str("secalloc supports Linux only"),
        }
    }
}

impl std::error::Error for Error {}
