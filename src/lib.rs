//! # secalloc
//!
//! Keeps secrets where swap, core dumps and careless code cannot reach them.
//!
//! - [`SecureAlloc`] is an allocator over a process-wide slab arena whose
//!   memory is `mlock`ed, excluded from core dumps (`MADV_DONTDUMP`) and
//!   wiped on free. Install it as the `#[global_allocator]`, or hand it to
//!   `allocator_api2` / `hashbrown` collections that should hold secrets only.
//!
//! - [`Secret`] keeps a value encrypted at rest (AES-256-GCM from `ring`) in
//!   that arena, under a key that lives in a dedicated locked page
//!   (`memfd_secret` where available). Plaintext exists only inside
//!   `expose`/`expose_mut`, in locked memory, and is wiped afterwards.
//!
//! Linux only: on other systems every allocation fails with a clear error
//! rather than running silently without protection.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(loom, allow(dead_code, unused_imports))]

pub mod arena;
pub mod error;
#[doc(hidden)]
pub mod fatal;
#[doc(hidden)]
pub mod gate;
pub mod pin;
#[cfg(not(loom))]
pub mod secret;
#[cfg(not(loom))]
pub mod smaps;
mod sync;
pub mod sys;

#[cfg(not(loom))]
pub use arena::SecureAlloc;
pub use arena::{LockPolicy, Stats, SIZE_CLASSES};
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
