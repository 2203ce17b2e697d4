//! The allocator workloads under mimalloc (default build). One crate per
//! contender because a binary has exactly one global allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    peers_common::alloc_main(String::new);
}
