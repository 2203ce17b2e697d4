//! The allocator workloads under the system allocator (glibc malloc): the
//! baseline every other allocator's ratio is taken against.

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    peers_common::alloc_main(String::new);
}
