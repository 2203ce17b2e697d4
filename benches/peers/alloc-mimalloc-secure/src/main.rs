//! The allocator workloads under mimalloc built with its `secure` feature
//! (guard pages, encrypted free lists, randomised allocation). A crate of
//! its own: Cargo unifies features within one build, so the driver builds
//! this package alone to keep `secure` out of the plain mimalloc binary.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    peers_common::alloc_main(String::new);
}
