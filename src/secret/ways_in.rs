//! Ways a secret gets in without a plaintext copy outside locked memory:
//! from a slice, from the system's random source, from a reader, from the
//! environment, from the terminal, from a closure that fills a buffer of a
//! given length; and the conversions (`FromStr`, `TryFrom`) that let config
//! loaders and argument parsers produce one.
//!
//! Each fills a buffer from the fail-closed arena (locked, dump-excluded,
//! wiped on free) and seals it there; nothing is staged on the ordinary
//! heap or kept on the stack beyond what the source itself hands over.

use super::{arena_error, key_ready, new_plain_buf, protect, PlainBuf, Secret};
use crate::error::Error;
use crate::sys;
use crate::SecureAlloc;
use core::str::FromStr;

/// A secret string: `Secret<String>`, whose view derefs to `str`.
///
/// ```
/// let s: secalloc::SecretString = "t0k3n".parse()?;
/// # let _ = s;
/// # Ok::<(), secalloc::Error>(())
/// ```
pub type SecretString = Secret<String>;
/// Secret bytes: `Secret<Vec<u8>>`, whose view derefs to `[u8]`.
///
/// ```
/// let s = secalloc::SecretBytes::try_from(vec![1u8, 2, 3])?; // the Vec's buffer is wiped
/// # let _ = s;
/// # Ok::<(), secalloc::Error>(())
/// ```
pub type SecretBytes = Secret<Vec<u8>>;

/// Bytes `read_from` asks `read(2)` for at a time.
const READ_CHUNK: usize = 4096;

/// A locked buffer holding `bytes` (the key checked first, so the key page
/// gets the budget before the buffer does).
pub(super) fn buffer_of(bytes: &[u8]) -> Result<PlainBuf, Error> {
    key_ready()?;
    let mut plain = new_plain_buf(bytes.len())?;
    protect::append(&mut plain, bytes);
    Ok(plain)
}

impl Secret<Vec<u8>> {
    /// Copies `bytes` straight into locked memory and seals them (the
    /// caller's slice is left as it is: wipe it if you own it).
    ///
    /// ```
    /// let token = secalloc::SecretBytes::copy_from_slice(b"hunter2")?;
    /// assert_eq!(token.expose(|t| t.len())?, 7);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Secret::new`].
    pub fn copy_from_slice(bytes: &[u8]) -> Result<Self, Error> {
        Self::seal_new(buffer_of(bytes)?, SecureAlloc::new(), 0)
    }

    /// Reads everything `reader` yields, `read(2)`-sized chunks at a time,
    /// straight into locked memory, up to `max_len` bytes.
    ///
    /// No intermediate buffer is used: each chunk lands in the locked
    /// buffer that is sealed at the end. (A `BufReader` around `reader`
    /// would keep a copy in its own, ordinary buffer: pass the raw source.)
    ///
    /// ```
    /// let key = secalloc::SecretBytes::read_from(&b"0123456789abcdef"[..], 64)?;
    /// assert_eq!(key.expose(|k| k.len())?, 16);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `TooLong(max_len)` if there is more; `Io(kind)` if a read fails; as
    /// [`Secret::new`] otherwise. What was read is wiped on every error.
    pub fn read_from(mut reader: impl std::io::Read, max_len: usize) -> Result<Self, Error> {
        key_ready()?;
        let mut plain = new_plain_buf(0)?;
        loop {
            // Room for one more chunk (one byte past the limit tells "more").
            let room = READ_CHUNK.min(max_len.saturating_add(1) - plain.len());
            plain.try_reserve(room).map_err(|_| arena_error())?;
            let filled = plain.len();
            plain.resize(filled + room, 0);
            let n = loop {
                match reader.read(&mut plain[filled..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::Io(e.kind())),
                }
            };
            plain.truncate(filled + n);
            if plain.len() > max_len {
                return Err(Error::TooLong(max_len));
            }
            if n == 0 {
                return Self::seal_new(plain, SecureAlloc::new(), 0);
            }
        }
    }

    /// A secret of `len` bytes written by `init` straight into locked memory
    /// (the buffer starts zeroed). If `init` fails, the buffer is wiped and
    /// its error returned — for formats whose length is known before the
    /// bytes are (a length-prefixed field, a key derivation).
    ///
    /// ```
    /// let derived = secalloc::SecretBytes::try_new_with_len(32, |buf| {
    ///     buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    ///     Ok::<(), secalloc::Error>(())
    /// })?;
    /// assert_eq!(derived.expose(|k| k[31])?, 31);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `init`'s error, or (converted) any error of [`Secret::new`].
    pub fn try_new_with_len<E: From<Error>>(
        len: usize,
        init: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Self, E> {
        key_ready()?;
        let mut plain = new_plain_buf(len)?;
        plain.resize(len, 0);
        init(&mut plain)?;
        Ok(Self::seal_new(plain, SecureAlloc::new(), 0)?)
    }
}

impl<const N: usize> Secret<[u8; N]> {
    /// `N` random bytes from the operating system (`ring`'s `SystemRandom`,
    /// `getrandom(2)`), generated straight into locked memory.
    ///
    /// ```
    /// let key = secalloc::Secret::<[u8; 32]>::random()?;
    /// assert!(key.expose(|k| k.iter().any(|&b| b != 0))?);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `KeyUnavailable` if the system's random source fails; as
    /// [`Secret::new`] otherwise.
    pub fn random() -> Result<Self, Error> {
        use ring::rand::SecureRandom;
        key_ready()?;
        let mut plain = new_plain_buf(N)?;
        plain.resize(N, 0);
        ring::rand::SystemRandom::new()
            .fill(&mut plain)
            .map_err(|_| Error::KeyUnavailable)?;
        Self::seal_new(plain, SecureAlloc::new(), 0)
    }
}

impl Secret<String> {
    /// Copies `s` straight into locked memory (see
    /// [`SecretBytes::copy_from_slice`]).
    ///
    /// # Errors
    /// As [`Secret::new`].
    ///
    /// ```
    /// let s = secalloc::SecretString::copy_from_str("hunter2")?;
    /// assert!(s.ct_eq_bytes(b"hunter2")?);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn copy_from_str(s: &str) -> Result<Self, Error> {
        Self::seal_new(buffer_of(s.as_bytes())?, SecureAlloc::new(), 0)
    }

    /// Copies environment variable `name` from the environment block
    /// straight into locked memory (`std::env::var` would make an ordinary
    /// `String` of it first). The variable stays set; see
    /// [`Self::from_env_removing`] to wipe it too.
    ///
    /// ```
    /// # unsafe { std::env::set_var("DOC_API_TOKEN", "t0ken") };
    /// let token = secalloc::SecretString::from_env("DOC_API_TOKEN")?;
    /// assert_eq!(token.expose(|t| t.len())?, 5);
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    ///
    /// # Errors
    /// `Io(NotFound)` if it is not set (or `name` holds a NUL byte),
    /// `Io(InvalidData)` if it is not UTF-8; as [`Secret::new`] otherwise.
    pub fn from_env(name: &str) -> Result<Self, Error> {
        let name = env_name(name)?;
        key_ready()?;
        let plain = sys::with_env(&name, |value| match value {
            None => Err(Error::Io(std::io::ErrorKind::NotFound)),
            Some(v) if core::str::from_utf8(v).is_err() => {
                Err(Error::Io(std::io::ErrorKind::InvalidData))
            }
            Some(v) => buffer_of(v),
        })?;
        Self::seal_new(plain, SecureAlloc::new(), 0)
    }

    /// [`Self::from_env`], then overwrites the variable's value with zeros
    /// where it lies in the environment block and removes the variable, so
    /// neither child processes nor a later scan of the process's memory
    /// find it. Done even when sealing fails.
    ///
    /// # Safety
    /// As for `std::env::remove_var`: no other thread may read or modify
    /// the environment during the call. The variable's string must also be
    /// writable — true of the environment the process started with and of
    /// `setenv`/`std::env::set_var`, not of a string literal given to C's
    /// `putenv`.
    ///
    /// # Errors
    /// As [`Self::from_env`].
    ///
    /// ```
    /// # unsafe { std::env::set_var("DOC_DB_PASSWORD", "pw") };
    /// // SAFETY: no other thread touches the environment at start-up.
    /// let pw = unsafe { secalloc::SecretString::from_env_removing("DOC_DB_PASSWORD") }?;
    /// assert!(std::env::var_os("DOC_DB_PASSWORD").is_none());
    /// # let _ = pw;
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub unsafe fn from_env_removing(name: &str) -> Result<Self, Error> {
        let secret = Self::from_env(name);
        let name = env_name(name)?;
        // SAFETY: forwarded from the caller.
        unsafe { sys::wipe_and_unsetenv(&name) };
        secret
    }

    /// Prints `prompt` on the terminal, reads a line with echo off straight
    /// into locked memory (one `read(2)` of the terminal at a time, no
    /// buffered reader), and restores the terminal's settings on every
    /// path. The line ends at a newline or end of input; the newline is not
    /// kept.
    ///
    /// # Errors
    /// `Os` if there is no controlling terminal (`/dev/tty`) or its
    /// settings cannot be changed; `TooLong(4094)` for a longer line (the
    /// terminal cuts lines at 4,095 characters, so such a line cannot be
    /// trusted to be whole); as
    /// [`Secret::new`] otherwise.
    ///
    /// ```no_run
    /// let pw = secalloc::SecretString::read_password("Password: ")?;
    /// # let _ = pw;
    /// # Ok::<(), secalloc::Error>(())
    /// ```
    pub fn read_password(prompt: &str) -> Result<Self, Error> {
        let fd = sys::open_tty().map_err(Error::Os)?;
        let result = read_password_on(fd, prompt);
        sys::close_fd(fd);
        result
    }
}

/// The longest password [`Secret::read_password`] accepts: the terminal
/// (canonical mode) holds 4,095 characters a line and drops the rest
/// without telling us, so a line that fills it may have been cut: it is
/// refused, never truncated (found by the issue-13 attack review).
const PASSWORD_MAX: usize = 4094;

/// Restores a terminal's settings when dropped (also on an error path or a
/// panic in between).
struct EchoGuard {
    fd: i32,
    mode: sys::TerminalMode,
}

impl Drop for EchoGuard {
    fn drop(&mut self) {
        let _ = sys::restore_terminal(self.fd, &self.mode);
    }
}

/// [`Secret::read_password`] on terminal `fd`.
fn read_password_on(fd: i32, prompt: &str) -> Result<Secret<String>, Error> {
    key_ready()?;
    let mut plain = new_plain_buf(0)?;
    plain
        .try_reserve_exact(PASSWORD_MAX)
        .map_err(|_| arena_error())?;
    sys::write_fd(fd, prompt.as_bytes());
    let guard = EchoGuard {
        fd,
        mode: sys::echo_off(fd).map_err(Error::Os)?,
    };
    let mut byte = [0u8; 1];
    let outcome = loop {
        match sys::read_fd(fd, &mut byte) {
            Ok(0) => break Ok(()),
            Ok(_) if byte[0] == b'\n' => break Ok(()),
            Ok(_) if plain.len() == PASSWORD_MAX => break Err(Error::TooLong(PASSWORD_MAX)),
            Ok(_) => protect::append(&mut plain, &byte),
            Err(e) => break Err(Error::Os(e)),
        }
    };
    zeroize::Zeroize::zeroize(&mut byte);
    drop(guard);
    outcome?;
    if plain.last() == Some(&b'\r') {
        plain.pop();
    }
    if core::str::from_utf8(&plain).is_err() {
        return Err(Error::Io(std::io::ErrorKind::InvalidData));
    }
    Secret::seal_new(plain, SecureAlloc::new(), 0)
}

/// A variable name as a C string. A name with `=` or NUL, or an empty
/// one, names no variable: `getenv("A=b")` would match the tail of `A`'s
/// value (found by the issue-13 attack review).
fn env_name(name: &str) -> Result<std::ffi::CString, Error> {
    if name.is_empty() || name.contains('=') {
        return Err(Error::Io(std::io::ErrorKind::NotFound));
    }
    // A name is not secret; an ordinary allocation is fine.
    std::ffi::CString::new(name).map_err(|_| Error::Io(std::io::ErrorKind::NotFound))
}

impl FromStr for Secret<String> {
    type Err = Error;

    /// Copies `s` into locked memory, so config loaders and parsers that
    /// go through `FromStr` can produce a secret directly. The string they
    /// parsed from is theirs to wipe. `clap` needs its values to be
    /// `Clone`, which a secret is not: use `Arc<SecretString>` with
    /// `value_parser = |s: &str| s.parse().map(std::sync::Arc::new)` (clap
    /// keeps its own copy of the argument, as the process's `argv` does).
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::copy_from_str(s)
    }
}

impl TryFrom<String> for Secret<String> {
    type Error = Error;

    /// Takes the string and wipes its buffer (as [`Secret::new`]).
    fn try_from(s: String) -> Result<Self, Error> {
        Secret::new(s)
    }
}

impl TryFrom<Vec<u8>> for Secret<Vec<u8>> {
    type Error = Error;

    /// Takes the vector and wipes its buffer (as [`Secret::new`]).
    fn try_from(v: Vec<u8>) -> Result<Self, Error> {
        Secret::new(v)
    }
}

impl TryFrom<&str> for Secret<String> {
    type Error = Error;

    /// Copies the string (see [`Secret::copy_from_str`]).
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::copy_from_str(s)
    }
}

impl TryFrom<&[u8]> for Secret<Vec<u8>> {
    type Error = Error;

    /// Copies the bytes (see [`Secret::copy_from_slice`]).
    fn try_from(b: &[u8]) -> Result<Self, Error> {
        Self::copy_from_slice(b)
    }
}
