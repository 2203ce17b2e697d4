//! serde support (feature `serde`): secrets deserialize straight into
//! locked memory, and serialize only where the caller asks for it.
//!
//! The visitors copy what the deserializer lends (`visit_str`,
//! `visit_borrowed_str`, `visit_bytes`, a sequence of bytes one element at a
//! time) into a locked buffer, and take over and wipe what it gives away
//! (`visit_string`, `visit_byte_buf`). `secrecy` always builds an ordinary
//! `String` first. What a deserializer does before it calls the visitor is
//! its own: `serde_json` lends a string without escapes straight from the
//! input, but unescapes one with escapes in a scratch buffer of its own,
//! which it does not wipe — and the input itself is the caller's to wipe.

use super::{key_ready, new_plain_buf, protect, Plain, Protect, Secret};
use crate::error::Error;
use crate::SecureAlloc;
use ::serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use ::serde::ser::{Serialize, Serializer};
use core::fmt;
use core::marker::PhantomData;

fn de_error<E: de::Error>(e: Error) -> E {
    E::custom(e)
}

/// Builds the secret from bytes copied into a locked buffer.
fn sealed_copy<T: Protect, E: de::Error>(bytes: &[u8]) -> Result<Secret<T>, E> {
    let plain = super::ways_in::buffer_of(bytes).map_err(de_error)?;
    T::check(&plain).map_err(|_| E::invalid_length(bytes.len(), &"the secret's size"))?;
    Secret::seal_new(plain, SecureAlloc::new(), 0).map_err(de_error)
}

struct StringVisitor;

impl<'de> Visitor<'de> for StringVisitor {
    type Value = Secret<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        sealed_copy(v.as_bytes())
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        sealed_copy(v.as_bytes())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        // Takes it over and wipes its buffer.
        Secret::new(v).map_err(de_error)
    }
}

impl<'de> Deserialize<'de> for Secret<String> {
    /// Deserializes a string straight into locked memory.
    ///
    /// ```
    /// # #[cfg(feature = "serde")] {
    /// #[derive(serde::Deserialize)]
    /// struct Config {
    ///     user: String,
    ///     token: secalloc::SecretString,
    /// }
    /// let c: Config = serde_json::from_str(r#"{"user":"ci","token":"t0k3n"}"#).unwrap();
    /// assert_eq!(c.token.expose(|t| &**t == "t0k3n").unwrap(), true);
    /// # }
    /// ```
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `deserialize_str`, not `_string`: a deserializer that can lend the
        // input (no escapes) does, instead of building a `String`.
        d.deserialize_str(StringVisitor)
    }
}

struct BytesVisitor<T>(PhantomData<T>);

impl<'de, T: Protect> Visitor<'de> for BytesVisitor<T> {
    type Value = Secret<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("secret bytes (a byte string or a sequence of bytes)")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        sealed_copy(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        sealed_copy(v)
    }

    fn visit_byte_buf<E: de::Error>(self, mut v: Vec<u8>) -> Result<Self::Value, E> {
        let secret = sealed_copy(&v);
        zeroize::Zeroize::zeroize(&mut v);
        secret
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        sealed_copy(v.as_bytes())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // One element at a time into the locked buffer (JSON arrays of
        // numbers); no ordinary `Vec` is built.
        key_ready().map_err(de_error)?;
        let mut plain = new_plain_buf(seq.size_hint().unwrap_or(0)).map_err(de_error)?;
        while let Some(byte) = seq.next_element::<u8>()? {
            plain
                .try_reserve(1)
                .map_err(|_| de_error(super::arena_error()))?;
            protect::append(&mut plain, &[byte]);
        }
        let len = plain.len();
        T::check(&plain).map_err(|_| de::Error::invalid_length(len, &"the secret's size"))?;
        Secret::seal_new(plain, SecureAlloc::new(), 0).map_err(de_error)
    }
}

impl<'de> Deserialize<'de> for Secret<Vec<u8>> {
    /// Deserializes bytes (a byte string, a sequence of numbers, or a
    /// string's UTF-8 bytes) straight into locked memory.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(BytesVisitor(PhantomData))
    }
}

impl<'de, const N: usize> Deserialize<'de> for Secret<[u8; N]>
where
    [u8; N]: Plain,
{
    /// Deserializes exactly `N` bytes straight into locked memory (any other
    /// length is an error).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_bytes(BytesVisitor(PhantomData))
    }
}

/// The opt-in way to serialize a secret: a `serialize_with` helper that
/// writes the plaintext. `Secret` itself has no `Serialize`, so a struct
/// that derives `Serialize` cannot leak one by accident.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// #[derive(serde::Serialize)]
/// struct Export {
///     #[serde(serialize_with = "secalloc::serde::expose")]
///     token: secalloc::SecretString,
/// }
/// let e = Export { token: "t0k3n".parse().unwrap() };
/// assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"token":"t0k3n"}"#);
/// # }
/// ```
///
/// # Errors
/// A serializer error if the secret cannot be read (tampered, expired,
/// purged).
pub fn expose<T, S>(secret: &Secret<T>, serializer: S) -> Result<S::Ok, S::Error>
where
    T: Protect,
    T::View: Serialize,
    S: Serializer,
{
    secret
        .expose(|view| view.serialize(serializer))
        .map_err(<S::Error as ::serde::ser::Error>::custom)?
}

impl Serialize for super::SecureString {
    /// Serializes the string (only reachable inside `expose`, e.g. through
    /// [`expose`]).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

impl Serialize for super::SecureBytes {
    /// Serializes the bytes (only reachable inside `expose`).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self)
    }
}
