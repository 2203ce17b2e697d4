//! Differential run of the allocator against its model (see
//! `support/differential.rs`). CI runs 10 million operations on 4 threads;
//! longer runs: `SECALLOC_FUZZ_OPS=200000000 SECALLOC_FUZZ_SEED=7 cargo test --release --test differential -- --nocapture`.

#[path = "support/differential.rs"]
mod differential;

#[test]
fn ten_million_operations_match_the_model() {
    let total_ops: u64 = std::env::var("SECALLOC_FUZZ_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let seed: u64 = std::env::var("SECALLOC_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EC_A110C);
    let threads = 4u8;
    let before = secalloc::SecureAlloc::best_effort()
        .stats()
        .live_allocations;
    let done = differential::run(seed, threads, total_ops / threads as u64);
    assert!(done >= total_ops - threads as u64);
    let after = secalloc::SecureAlloc::best_effort()
        .stats()
        .live_allocations;
    assert_eq!(after, before, "every block was freed");
    println!("{done} operations on {threads} threads (seed {seed:#x}) matched the model");
}
