// The README is the crate documentation, so every Rust snippet in it is a
// doc test (`cargo test --doc`).
#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(loom, allow(dead_code, unused_imports))]

pub mod arena;
#[cfg(not(loom))]
mod capi;
pub mod error;
mod fatal;
mod gate;
mod pin;
#[cfg(not(loom))]
pub mod secret;
#[cfg(not(loom))]
mod smaps;
mod sync;
mod sys;

/// Unstable internals for this repository's own crates: the `LD_PRELOAD`
/// library (`preload/`), the loom models and the test suite. **Not part of
/// the API**: anything here may change or vanish in any release.
#[doc(hidden)]
pub mod __unstable {
    #[cfg(not(loom))]
    pub use crate::arena::{use_external_thread_block, EXTERNAL_THREAD_BLOCK_BYTES};
    #[cfg(not(loom))]
    pub use crate::smaps::{parse as smaps_parse, read as smaps_read, Mapping};

    /// The C allocation surface (`src/capi.rs`).
    #[cfg(not(loom))]
    pub mod capi {
        pub use crate::capi::*;
    }
    /// The OS layer (`src/sys.rs`).
    pub mod sys {
        pub use crate::sys::*;
    }
    /// The per-secret pin protocol (`src/pin.rs`), for the loom models.
    pub mod pin {
        pub use crate::pin::*;
    }
    /// The key page's reader gate (`src/gate.rs`), for the loom models.
    pub mod gate {
        pub use crate::gate::*;
    }
}

/// What a running program can ask about its protected memory.
///
/// The internals are not part of the API (issue 13): the OS layer, the pin
/// protocol and the smaps parser are private.
///
/// ```compile_fail
/// use secalloc::sys::mlock_on_fault; // private
/// ```
/// ```compile_fail
/// use secalloc::smaps::read; // private (diagnostics::arena_report is the API)
/// ```
/// ```compile_fail
/// let _ = secalloc::SecureAlloc::new().c_malloc(16); // crate-private
/// ```
/// ```
/// let report = secalloc::diagnostics::arena_report()?;
/// # let _ = report;
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(not(loom))]
pub mod diagnostics {
    pub use crate::arena::Stats;
    pub use crate::secret::{stats as secret_stats, KeyPageInfo, SecretStats};
    pub use crate::smaps::{arena_report, ArenaReport};

    /// The process's soft and hard `RLIMIT_MEMLOCK` in bytes (`usize::MAX`
    /// for unlimited): the lock budget the arena works within.
    ///
    /// ```
    /// let (soft, hard) = secalloc::diagnostics::memlock_limit()?;
    /// assert!(soft <= hard);
    /// # Ok::<(), secalloc::OsError>(())
    /// ```
    pub fn memlock_limit() -> Result<(usize, usize), crate::OsError> {
        crate::sys::memlock_limit()
    }
}

/// The allocator API this crate implements, re-exported at the exact
/// version it implements (`allocator-api2` 0.2), so collections built on
/// it need no version matching.
pub use allocator_api2;

/// A vector in locked, dump-excluded, wiped-on-free memory.
///
/// ```
/// let mut key: secalloc::SecureVec<u8> = secalloc::SecureVec::new_in(secalloc::SecureAlloc::new());
/// key.extend_from_slice(&[0x42; 32]);
/// assert_eq!(key.len(), 32);
/// ```
#[cfg(not(loom))]
pub type SecureVec<T> = allocator_api2::vec::Vec<T, SecureAlloc>;
/// A box in locked, dump-excluded, wiped-on-free memory.
///
/// ```
/// let key: secalloc::SecureBox<[u8; 32]> =
///     secalloc::SecureBox::new_in([7; 32], secalloc::SecureAlloc::new());
/// assert_eq!(key[0], 7);
/// ```
#[cfg(not(loom))]
pub type SecureBox<T> = allocator_api2::boxed::Box<T, SecureAlloc>;

pub use sys::{Errno, OsError};

#[cfg(not(loom))]
pub use arena::SecureAlloc;
pub use arena::{CheckLevel, LockPolicy, Stats, SIZE_CLASSES};
pub use error::Error;
#[cfg(not(loom))]
pub use secret::{purge, rekey, rekey_step, Secret, SecretBytes, SecretString};

/// serde support (feature `serde`): `Deserialize` for `Secret<String>`,
/// `Secret<Vec<u8>>` and `Secret<[u8; N]>` straight into locked memory, and
/// [`serde::expose`], the explicit way to serialize one.
#[cfg(all(feature = "serde", not(loom)))]
pub mod serde {
    pub use crate::secret::serde_impl::expose;
}
