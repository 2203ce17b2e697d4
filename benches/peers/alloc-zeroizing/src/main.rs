//! The allocator workloads under zeroizing-alloc over the system allocator:
//! glibc plus a wipe of every block on free, nothing else.

#[global_allocator]
static GLOBAL: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

fn main() {
    peers_common::alloc_main(String::new);
}
