//! A library that wraps tokens in `Secret<Vec<u8>>`: encrypted at rest,
//! plaintext only inside a scoped access, in locked memory, wiped after.
//!
//! Run: `cargo run --release --example token_wrapper`

use secalloc::{Error, Secret};
use std::time::Duration;

/// An API client that holds its bearer token the way a `Vec<u8>` would,
/// but sealed.
struct Client {
    token: Secret<Vec<u8>>,
}

impl Client {
    fn new(token: Vec<u8>) -> Result<Client, Error> {
        // `Secret::new` takes the Vec and wipes its buffer.
        Ok(Client {
            token: Secret::new(token)?,
        })
    }

    /// Builds an Authorization header length without ever copying the token
    /// out of the scoped access.
    fn authorization_len(&self) -> Result<usize, Error> {
        self.token.expose(|t| "Bearer ".len() + t.len())
    }

    fn rotate(&mut self, suffix: &[u8]) -> Result<(), Error> {
        self.token.expose_mut(|t| t.extend_from_slice(suffix))?
    }
}

fn main() -> Result<(), Error> {
    let mut client = Client::new(b"ghp_example_token_0123456789".to_vec())?;
    println!("token:                 {:?}", client.token); // redacted
    println!("authorization length:  {}", client.authorization_len()?);
    client.rotate(b"-v2")?;
    println!("after rotation:        {}", client.authorization_len()?);
    println!("storage locked:        {:?}", client.token.storage_locked());

    let session =
        Secret::new(*b"one-time-session-key-32-bytes!!!")?.with_expiry(Duration::from_millis(20));
    println!(
        "session readable now:  {}",
        session.expose(|k| k.len())? == 32
    );
    std::thread::sleep(Duration::from_millis(30));
    println!(
        "session after expiry:  {:?}",
        session.expose(|k| k.len()).unwrap_err()
    );

    let stats = secalloc::secret::stats();
    println!(
        "live secrets: {}, storage locked: {}, key page from memfd_secret: {:?}",
        stats.live,
        stats.storage_locked,
        stats.key_page.map(|k| k.secretmem)
    );
    Ok(())
}
