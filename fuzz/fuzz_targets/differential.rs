//! libFuzzer target: the fuzzer's input picks the seed, thread count and
//! length of a run of the differential driver shared with
//! `tests/differential.rs`, so coverage feedback steers toward inputs that
//! reach new allocator paths. Build and run on stable Rust: `bash fuzz/run.sh`.
#![no_main]

#[path = "../../tests/support/differential.rs"]
mod differential;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let seed = u64::from_le_bytes(data[..8].try_into().unwrap());
    let threads = 1 + data[8] % 3;
    let ops = 200 + 50 * data.len() as u64;
    differential::run(seed, threads, ops.min(20_000));
});
