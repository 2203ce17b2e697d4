//! A service that keeps the global allocator as it is and puts only its
//! secrets in locked, dump-excluded, zero-on-free memory: `allocator_api2`
//! and `hashbrown` collections take `SecureAlloc` as a value, on stable Rust.
//!
//! Run: `cargo run --release --example secret_collections`

use allocator_api2::vec::Vec as SecureVec;
use hashbrown::{DefaultHashBuilder, HashMap};
use secalloc::SecureAlloc;

type SecretBytes = SecureVec<u8, SecureAlloc>;

fn main() {
    let alloc = SecureAlloc::new();
    // API keys by tenant: both the keys and the table live in the arena.
    let mut keys: HashMap<u32, SecretBytes, DefaultHashBuilder, SecureAlloc> =
        HashMap::with_hasher_in(DefaultHashBuilder::default(), alloc);
    for tenant in 0..1000u32 {
        let mut key = SecureVec::with_capacity_in(32, alloc);
        key.extend((0..32).map(|i| (tenant as u8).wrapping_mul(7) ^ i));
        keys.insert(tenant, key);
    }
    #[allow(clippy::useless_vec)] // a heap allocation is the point
    let ordinary = vec![0u8; 64]; // the rest of the program: system allocator

    let sample = &keys[&42];
    println!("tenants with keys:           {}", keys.len());
    println!(
        "key for tenant 42 is locked: {:?}",
        SecureAlloc::is_locked(sample.as_ptr())
    );
    println!(
        "an ordinary Vec is in arena: {:?}",
        SecureAlloc::is_locked(ordinary.as_ptr())
    );
    let stats = alloc.stats();
    println!(
        "arena: {} live allocations, {} bytes in use, {} bytes locked, {} unlocked",
        stats.live_allocations, stats.in_use_bytes, stats.locked_bytes, stats.unlocked_bytes
    );
    // Rotating a key: the old buffer is wiped by the arena when freed.
    keys.insert(42, allocator_api2::vec![in alloc; 0u8; 32]);
    drop(keys);
    println!(
        "after drop: {} live allocations",
        alloc.stats().live_allocations
    );
}
