//! The allocator workloads under GrapheneOS hardened_malloc (the crate's
//! default configuration: zero on free, canaries, guard slabs,
//! quarantines). Its C needs a C23 compiler; the driver sets CC=clang-19.

#[global_allocator]
static GLOBAL: hardened_malloc::HardenedMalloc = hardened_malloc::HardenedMalloc;

fn main() {
    peers_common::alloc_main(String::new);
}
