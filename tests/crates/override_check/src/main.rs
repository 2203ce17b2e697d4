//! With secalloc's `override` feature this binary exports `malloc`, `free`,
//! ... itself, so glibc's own internal allocations (`strdup`, `getline`'s
//! buffer) and any C library linked in allocate from the locked arena.
//! Prints one `RESULT` line for tests/issue13_override.rs.

use secalloc::SecureAlloc;

/// The smaps flags (`lo`, `dd`) of the mapping holding `addr`.
fn flags_of(addr: usize) -> String {
    let maps = secalloc::__unstable::smaps_read("self").expect("read /proc/self/smaps");
    maps.iter()
        .find(|m| m.overlaps(addr, addr + 1))
        .map(|m| format!("lo={} dd={}", m.has_flag("lo"), m.has_flag("dd")))
        .unwrap_or_else(|| "none".into())
}

fn main() {
    // SAFETY: plain C calls with valid arguments; every block is freed once.
    unsafe {
        let dup = libc::strdup(c"a C library's copy of a secret".as_ptr());
        let block = libc::malloc(100) as *mut u8;
        let big = libc::calloc(1, 1 << 20) as *mut u8;
        let mut aligned = std::ptr::null_mut();
        let rc = libc::posix_memalign(&mut aligned, 4096, 5000);
        let in_arena = [dup as *const u8, block, big, aligned as *const u8]
            .iter()
            .all(|&p| {
                SecureAlloc::usable_size(p).is_some() && SecureAlloc::is_locked(p) == Some(true)
            });
        let flags = flags_of(dup as usize);
        let usable = libc::malloc_usable_size(block.cast());
        libc::free(dup.cast());
        libc::free(block.cast());
        libc::free(big.cast());
        libc::free(aligned);
        println!(
            "RESULT in_arena={in_arena} aligned={} rc={rc} usable={usable} {flags}",
            (aligned as usize).is_multiple_of(4096)
        );
    }
}
