//! The kernel's view: mappings holding `SecureAlloc` allocations are locked
//! and carry the `dd` (do-not-dump) VmFlag; the system allocator's do not.

use allocator_api2::vec::Vec as AVec;
use secalloc::__unstable::{smaps_read, Mapping};
use secalloc::SecureAlloc;

fn mapping_of(maps: &[Mapping], addr: usize) -> &Mapping {
    maps.iter()
        .find(|m| m.start <= addr && addr < m.end)
        .unwrap_or_else(|| panic!("no mapping holds {addr:#x}"))
}

#[test]
fn arena_mappings_are_locked_and_dump_excluded_and_a_control_is_not() {
    let alloc = SecureAlloc::new();
    let mut small: std::vec::Vec<AVec<u8, SecureAlloc>> = std::vec::Vec::new();
    for i in 0..2000usize {
        let mut v = AVec::with_capacity_in(1 + i % 900, alloc);
        v.resize(1 + i % 900, i as u8); // touch the memory so it is resident
        small.push(v);
    }
    let mut large: AVec<u8, SecureAlloc> = AVec::with_capacity_in(3 << 20, alloc);
    large.resize(3 << 20, 0x5A);
    let control = vec![0x11u8; 4 << 20]; // system allocator: its own mmap

    let maps = smaps_read("self").unwrap();
    for v in small.iter().chain(std::iter::once(&large)) {
        let m = mapping_of(&maps, v.as_ptr() as usize);
        assert!(m.has_flag("dd"), "arena mapping {m:?} lacks dd");
        assert!(m.has_flag("lo"), "arena mapping {m:?} lacks lo");
        assert!(
            m.locked_bytes > 0,
            "arena mapping {m:?} has nothing Locked:"
        );
        assert_eq!(
            m.locked_bytes, m.rss_bytes,
            "every resident arena page is locked"
        );
    }
    let c = mapping_of(&maps, control.as_ptr() as usize);
    assert!(!c.has_flag("dd"), "control mapping {c:?} is dump-excluded");
    assert!(!c.has_flag("lo"), "control mapping {c:?} is locked");
    assert_eq!(c.locked_bytes, 0);

    let report = secalloc::diagnostics::arena_report().unwrap();
    assert!(report.mappings > 0);
    assert_eq!(report.dd_flag_bytes, report.mapped_bytes);
    assert_eq!(report.lo_flag_bytes, report.mapped_bytes);
    let stats = alloc.stats();
    assert_eq!(stats.unlocked_bytes, 0);
    assert!(stats.locked_bytes >= (3 << 20));
}

#[test]
fn guard_pages_surround_large_blocks() {
    let alloc = SecureAlloc::new();
    let mut big: AVec<u8, SecureAlloc> = AVec::with_capacity_in(100_000, alloc);
    big.push(1);
    let addr = big.as_ptr() as usize;
    let maps = smaps_read("self").unwrap();
    let m = mapping_of(&maps, addr);
    let before = mapping_of(&maps, m.start - 1);
    let after = mapping_of(&maps, m.end);
    assert_eq!(before.perms, "---p", "leading guard");
    assert_eq!(after.perms, "---p", "trailing guard");
    // Issue 14: wide enough that an access 1 MiB away faults.
    assert!(
        before.end - before.start >= 1 << 20,
        "leading guard under 1 MiB"
    );
    assert!(
        after.end - after.start >= 1 << 20,
        "trailing guard under 1 MiB"
    );
}
