//! The allocator workloads under compatmalloc with its hardened defaults.
//! Note that the crate also exports C `malloc`/`free`, so in this binary it
//! serves libc's callers too, not only Rust's.

#[global_allocator]
static GLOBAL: compatmalloc::CompatMalloc = compatmalloc::CompatMalloc;

fn main() {
    peers_common::alloc_main(String::new);
}
