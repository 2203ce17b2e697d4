//! What a `Secret` can hold, and the view its accesses see.
//!
//! During an access the plaintext lives in a buffer from the fail-closed
//! arena (locked, dump-excluded, wiped on free): a `PlainBuf`. Each type says
//! how to turn a value into plaintext bytes (wiping the caller's buffer) and
//! how to present that buffer to the caller's closure.

#![allow(unsafe_code)]

use crate::error::Error;
use crate::SecureAlloc;
use allocator_api2::vec::Vec as AVec;
use core::fmt;
use core::ops::{Deref, DerefMut};

/// The plaintext buffer of an access: arena memory, locked.
///
/// ```
/// let buf: secalloc::secret::PlainBuf = secalloc::allocator_api2::vec::Vec::new_in(secalloc::SecureAlloc::new());
/// assert!(buf.is_empty());
/// ```
pub type PlainBuf = AVec<u8, SecureAlloc>;

/// A type a [`Secret`](crate::Secret) can hold.
///
/// Implemented for `Vec<u8>`, `String`, `Box<[u8]>`, and every [`Plain`]
/// type (byte arrays, integers, and your own plain-old-data types).
///
/// ```
/// // Vec<u8>, String, Box<[u8]> and every `Plain` type implement it.
/// fn seal<T: secalloc::secret::Protect>(v: T) -> Result<secalloc::Secret<T>, secalloc::Error> {
///     secalloc::Secret::new(v)
/// }
/// let s = seal(vec![1u8, 2])?;
/// # let _ = s;
/// # Ok::<(), secalloc::Error>(())
/// ```
pub trait Protect: Sized {
    /// What `expose` and `expose_mut` hand to the closure.
    type View: ?Sized;

    /// Appends the value's bytes to `out` and wipes the value's own memory.
    fn into_plaintext(self, out: &mut PlainBuf) -> Result<(), Error>;

    /// How many plaintext bytes [`Protect::into_plaintext`] will append (a
    /// hint for sizing the locked buffer once; 0 if unknown).
    fn plaintext_len(&self) -> usize {
        0
    }

    /// The value as its own heap buffer, when the value is exactly its
    /// plaintext bytes in one buffer it owns (`Vec<u8>`, `String`,
    /// `Box<[u8]>`); otherwise the value itself, unchanged. A secret is then
    /// sealed where those bytes already lie, and the buffer — ciphertext by
    /// then — is wiped whole before it is freed, as `into_plaintext` would:
    /// no locked copy of the plaintext is made at all.
    #[doc(hidden)]
    fn into_owned_bytes(self) -> Result<Vec<u8>, Self> {
        Err(self)
    }

    /// Disposes of a value that could not be sealed, wiping its own memory
    /// as [`Protect::into_plaintext`] would: the whole capacity of a value
    /// that is its own heap buffer ([`Protect::into_owned_bytes`]); any
    /// other value is dropped.
    #[doc(hidden)]
    fn discard(self) {
        if let Ok(bytes) = self.into_owned_bytes() {
            wipe_vec_whole(bytes);
        }
    }

    /// Checks that `plain` holds a valid value (after decryption).
    fn check(plain: &PlainBuf) -> Result<(), Error>;

    /// The read-only view of a checked plaintext buffer.
    fn view(plain: &PlainBuf) -> &Self::View;

    /// The mutable view; what it leaves in the buffer is sealed afterwards.
    fn view_mut(plain: &mut PlainBuf) -> &mut Self::View;
}

/// Plain-old-data: any bit pattern of `size_of::<Self>()` bytes is a valid
/// value, there is no padding, and no pointers.
///
/// # Safety
/// Implement only for types that satisfy all three conditions and whose
/// alignment is at most 16 bytes.
///
/// ```
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct Pair {
///     a: u64,
///     b: u64,
/// }
/// // SAFETY: two u64s: no padding, no pointers, every bit pattern valid.
/// unsafe impl secalloc::secret::Plain for Pair {}
/// let s = secalloc::Secret::new(Pair { a: 1, b: 2 })?;
/// assert_eq!(s.expose(|p| p.a + p.b)?, 3);
/// # Ok::<(), secalloc::Error>(())
/// ```
pub unsafe trait Plain: Copy + 'static {}

macro_rules! plain {
    ($($t:ty),*) => { $(
        // SAFETY: integers have no padding and every bit pattern is valid.
        unsafe impl Plain for $t {}
    )* };
}
plain!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
// SAFETY: an array of plain values is plain (arrays have no padding
// between elements of a padding-free type).
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

impl<T: Plain> Protect for T {
    type View = T;

    fn plaintext_len(&self) -> usize {
        core::mem::size_of::<T>()
    }

    fn into_plaintext(mut self, out: &mut PlainBuf) -> Result<(), Error> {
        // SAFETY: `T: Plain` has no padding, so all its bytes are initialised.
        let bytes = unsafe {
            core::slice::from_raw_parts(&self as *const T as *const u8, core::mem::size_of::<T>())
        };
        let copied = try_extend(out, bytes);
        // SAFETY: zero bytes are a valid `T` (Plain), and `self` is ours.
        unsafe { zeroize::zeroize_flat_type(&mut self) };
        copied
    }

    fn discard(mut self) {
        // SAFETY: zero bytes are a valid `T` (Plain), and `self` is ours.
        unsafe { zeroize::zeroize_flat_type(&mut self) };
    }

    fn check(plain: &PlainBuf) -> Result<(), Error> {
        const {
            assert!(
                core::mem::align_of::<T>() <= 16,
                "Plain types must be at most 16-aligned"
            )
        };
        if plain.len() == core::mem::size_of::<T>() {
            Ok(())
        } else {
            Err(Error::Tampered)
        }
    }

    fn view(plain: &PlainBuf) -> &T {
        // SAFETY: `check` verified the length; arena slots are 16-aligned
        // (every size class is a multiple of 16 in a 64 KiB-aligned slab);
        // every bit pattern is a valid `T`.
        unsafe { &*(plain.as_ptr() as *const T) }
    }

    fn view_mut(plain: &mut PlainBuf) -> &mut T {
        // SAFETY: as in `view`, and we hold the buffer mutably.
        unsafe { &mut *(plain.as_mut_ptr() as *mut T) }
    }
}

impl Protect for Vec<u8> {
    type View = SecureBytes;

    fn plaintext_len(&self) -> usize {
        self.len()
    }

    fn into_owned_bytes(self) -> Result<Vec<u8>, Self> {
        Ok(self)
    }

    fn into_plaintext(self, out: &mut PlainBuf) -> Result<(), Error> {
        let copied = try_extend(out, &self);
        // The whole capacity, not just the length.
        wipe_vec_whole(self);
        copied
    }

    fn check(_: &PlainBuf) -> Result<(), Error> {
        Ok(())
    }

    fn view(plain: &PlainBuf) -> &SecureBytes {
        // SAFETY: `SecureBytes` is a transparent wrapper of `PlainBuf`.
        unsafe { &*(plain as *const PlainBuf as *const SecureBytes) }
    }

    fn view_mut(plain: &mut PlainBuf) -> &mut SecureBytes {
        // SAFETY: as above.
        unsafe { &mut *(plain as *mut PlainBuf as *mut SecureBytes) }
    }
}

impl Protect for Box<[u8]> {
    type View = SecureBytes;

    fn plaintext_len(&self) -> usize {
        self.len()
    }

    fn into_owned_bytes(self) -> Result<Vec<u8>, Self> {
        // The same allocation, capacity == length.
        Ok(self.into_vec())
    }

    fn into_plaintext(mut self, out: &mut PlainBuf) -> Result<(), Error> {
        let copied = try_extend(out, &self);
        // SAFETY: `self` owns its `len()` bytes and is dropped next.
        unsafe { wipe_owned_buffer(self.as_mut_ptr(), self.len()) };
        copied
    }

    fn check(_: &PlainBuf) -> Result<(), Error> {
        Ok(())
    }

    fn view(plain: &PlainBuf) -> &SecureBytes {
        Vec::<u8>::view(plain)
    }

    fn view_mut(plain: &mut PlainBuf) -> &mut SecureBytes {
        Vec::<u8>::view_mut(plain)
    }
}

impl Protect for String {
    type View = SecureString;

    fn plaintext_len(&self) -> usize {
        self.len()
    }

    fn into_owned_bytes(self) -> Result<Vec<u8>, Self> {
        Ok(self.into_bytes())
    }

    fn into_plaintext(self, out: &mut PlainBuf) -> Result<(), Error> {
        let copied = try_extend(out, self.as_bytes());
        wipe_vec_whole(self.into_bytes());
        copied
    }

    fn check(plain: &PlainBuf) -> Result<(), Error> {
        core::str::from_utf8(plain)
            .map(|_| ())
            .map_err(|_| Error::Tampered)
    }

    fn view(plain: &PlainBuf) -> &SecureString {
        // SAFETY: `SecureString` is a transparent wrapper of `PlainBuf`, and
        // `check` verified UTF-8.
        unsafe { &*(plain as *const PlainBuf as *const SecureString) }
    }

    fn view_mut(plain: &mut PlainBuf) -> &mut SecureString {
        // SAFETY: as above; `SecureString` keeps the contents UTF-8.
        unsafe { &mut *(plain as *mut PlainBuf as *mut SecureString) }
    }
}

fn try_extend(out: &mut PlainBuf, bytes: &[u8]) -> Result<(), Error> {
    out.try_reserve_exact(bytes.len())
        .map_err(|_| crate::secret::arena_error())?;
    append(out, bytes);
    Ok(())
}

/// [`try_extend`] with amortised growth, for views that grow piece by piece.
fn try_grow(out: &mut PlainBuf, bytes: &[u8]) -> Result<(), Error> {
    out.try_reserve(bytes.len())
        .map_err(|_| crate::secret::arena_error())?;
    append(out, bytes);
    Ok(())
}

/// Appends `bytes` with one `memcpy` (`allocator_api2`'s `extend_from_slice`
/// copies element by element, which profiled at several times ring's cost
/// for a 64 KiB secret). Capacity must already be reserved by the caller
/// (`try_extend`); if it is not, the growth is fallible here too and an
/// out-of-budget growth aborts through the allocator's error path, which
/// every public caller avoids by reserving first.
/// Wipes the `capacity` bytes of a value's own buffer, which the caller is
/// about to free. `zeroize`'s `Vec` impl writes one volatile byte at a time
/// (29% of a 64 KiB `Secret::new` in the profile, more than the AES-GCM
/// seal); this is one `memset` and a barrier. It is done even when the
/// buffer is the arena's (`SecureAlloc` as the global allocator): that the
/// arena owns a block does not mean this free reaches it now — a global
/// allocator layered on the arena may keep the block for reuse (found by
/// the issue-12 attack review: an 8 KiB plaintext came back whole in the
/// next `Vec` of that size when the wipe was skipped).
///
/// # Safety
/// The caller owns the `capacity` bytes at `ptr` and frees them next.
unsafe fn wipe_owned_buffer(ptr: *mut u8, capacity: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { crate::arena::wipe::wipe_raw(ptr, capacity) };
}

/// Wipes a heap buffer's whole capacity and frees it.
pub(crate) fn wipe_vec_whole(mut bytes: Vec<u8>) {
    // SAFETY: `bytes` owns its `capacity()` bytes and is dropped next.
    unsafe { wipe_owned_buffer(bytes.as_mut_ptr(), bytes.capacity()) };
    // SAFETY: the bytes are zero, a valid `u8` each; nothing reads them.
    unsafe { bytes.set_len(0) };
}

pub(crate) fn append(out: &mut PlainBuf, bytes: &[u8]) {
    out.reserve(bytes.len());
    let len = out.len();
    // SAFETY: capacity for `bytes.len()` more bytes was reserved above; the
    // source is a distinct live slice; the new length covers only bytes
    // just written.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), out.as_mut_ptr().add(len), bytes.len());
        out.set_len(len + bytes.len());
    }
}

/// The view of a `Secret<String>`: a string in locked arena memory.
/// Dereferences to `str`; growth stays in the arena.
///
/// ```
/// let s = secalloc::SecretString::copy_from_str("abc")?;
/// assert!(s.expose(|v| *v == "abc" && v.starts_with('a'))?);
/// # Ok::<(), secalloc::Error>(())
/// ```
#[repr(transparent)]
pub struct SecureString {
    bytes: PlainBuf, // always valid UTF-8
}

impl SecureString {
    /// Appends `s`, growing in locked memory.
    ///
    /// # Errors
    /// `LockRefused` (or `AllocFailed`) when the locked arena cannot grow:
    /// the string is then unchanged.
    ///
    /// ```
    /// let mut s = secalloc::SecretString::copy_from_str("ab")?;
    /// s.expose_mut(|v| v.push_str("cd"))??;
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn push_str(&mut self, s: &str) -> Result<(), Error> {
        try_grow(&mut self.bytes, s.as_bytes())
    }

    /// Appends `c`; errors as [`SecureString::push_str`].
    pub fn push(&mut self, c: char) -> Result<(), Error> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    /// Bytes the string can hold without growing.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Removes everything (the bytes are wiped when the access ends).
    pub fn clear(&mut self) {
        self.bytes.as_mut_slice().fill(0);
        self.bytes.clear();
    }

    /// Shortens to `len` bytes; `len` must be on a character boundary.
    pub fn truncate(&mut self, len: usize) {
        if len < self.bytes.len() {
            assert!(self.is_char_boundary(len), "truncate inside a character");
            self.bytes[len..].fill(0);
            self.bytes.truncate(len);
        }
    }
}

impl Deref for SecureString {
    type Target = str;
    fn deref(&self) -> &str {
        // SAFETY: the contents are always valid UTF-8 (checked on open,
        // maintained by every mutating method).
        unsafe { core::str::from_utf8_unchecked(&self.bytes) }
    }
}

impl DerefMut for SecureString {
    fn deref_mut(&mut self) -> &mut str {
        // SAFETY: as above; `&mut str` cannot break UTF-8 in safe code.
        unsafe { core::str::from_utf8_unchecked_mut(&mut self.bytes) }
    }
}

impl fmt::Debug for SecureString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecureString([REDACTED])")
    }
}

impl PartialEq<str> for SecureString {
    /// Not constant-time: use `Secret::ct_eq` (or compare inside `expose`
    /// with a constant-time routine) for checking a presented secret.
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for SecureString {
    /// As `PartialEq<str>`: not constant-time.
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

/// The view of a `Secret<Vec<u8>>`: bytes in locked arena memory.
/// Dereferences to `[u8]`; growth stays in the arena and is fallible
/// (a spent lock budget is an `Err`, never an abort). Its `Debug` is
/// redacted.
///
/// ```
/// let s = secalloc::SecretBytes::copy_from_slice(&[1, 2, 3])?;
/// assert_eq!(s.expose(|v| v[1])?, 2);
/// assert_eq!(s.expose(|v| format!("{v:?}"))?, "SecureBytes([REDACTED])");
/// # Ok::<(), secalloc::Error>(())
/// ```
#[repr(transparent)]
pub struct SecureBytes {
    bytes: PlainBuf,
}

impl SecureBytes {
    /// Appends `bytes`, growing in locked memory.
    ///
    /// # Errors
    /// `LockRefused` (or `AllocFailed`) when the locked arena cannot grow:
    /// the contents are then unchanged.
    ///
    /// ```
    /// let mut s = secalloc::SecretBytes::copy_from_slice(&[1])?;
    /// s.expose_mut(|v| v.extend_from_slice(&[2, 3]))??;
    /// assert_eq!(s.expose(|v| v.len())?, 3);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), Error> {
        try_grow(&mut self.bytes, bytes)
    }

    /// Appends one byte; errors as [`SecureBytes::extend_from_slice`].
    pub fn push(&mut self, byte: u8) -> Result<(), Error> {
        self.extend_from_slice(&[byte])
    }

    /// Resizes to `len` bytes, filling new ones with `value`; errors as
    /// [`SecureBytes::extend_from_slice`].
    ///
    /// ```
    /// let mut s = secalloc::SecretBytes::copy_from_slice(&[1])?;
    /// s.expose_mut(|v| v.resize(4, 0))??;
    /// assert_eq!(s.expose(|v| v.len())?, 4);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn resize(&mut self, len: usize, value: u8) -> Result<(), Error> {
        if len <= self.bytes.len() {
            self.truncate(len);
            return Ok(());
        }
        let extra = len - self.bytes.len();
        self.bytes
            .try_reserve(extra)
            .map_err(|_| crate::secret::arena_error())?;
        self.bytes.resize(len, value);
        Ok(())
    }

    /// Shortens to `len` bytes, wiping the cut-off tail.
    pub fn truncate(&mut self, len: usize) {
        if len < self.bytes.len() {
            self.bytes[len..].fill(0);
            self.bytes.truncate(len);
        }
    }

    /// Removes everything (wiped).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Bytes the view can hold without growing.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }
}

impl Deref for SecureBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl DerefMut for SecureBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl fmt::Debug for SecureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecureBytes([REDACTED])")
    }
}

impl PartialEq<[u8]> for SecureBytes {
    /// Not constant-time: use `Secret::ct_eq` for checking a presented secret.
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}
