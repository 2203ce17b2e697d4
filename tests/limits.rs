//! Address-space exhaustion: under `RLIMIT_AS` close to the process's
//! current size, allocation returns null / `AllocError` cleanly (never UB,
//! never an abort), and the process keeps working once memory is freed.

#[path = "support/mod.rs"]
mod support;

use allocator_api2::alloc::Allocator;
use secalloc::SecureAlloc;
use std::alloc::{GlobalAlloc, Layout};
use support::*;

fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn address_space_exhaustion_fails_cleanly_and_recovers() {
    if child_scenario().as_deref() == Some("rlimit_as") {
        let a = SecureAlloc::best_effort();
        let layout = Layout::from_size_align(1 << 20, 16).unwrap();
        // Start the arena (its region reservation) before the limit applies.
        // SAFETY: non-zero size; freed at once.
        unsafe { a.dealloc(a.alloc(layout), layout) };
        let limit = vm_size() + (64 << 20);
        let lim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: a valid rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
        let mut held = Vec::with_capacity(1000);
        let mut null_seen = false;
        for _ in 0..1000 {
            // SAFETY: non-zero size.
            let p = unsafe { a.alloc(layout) };
            if p.is_null() {
                null_seen = true;
                break;
            }
            held.push(p);
        }
        let api_error = a.allocate(layout).is_err();
        let count = held.len();
        for p in held {
            // SAFETY: allocated above with `layout`.
            unsafe { a.dealloc(p, layout) };
        }
        // SAFETY: non-zero size.
        let again = unsafe { a.alloc(layout) };
        let recovered = !again.is_null();
        if recovered {
            // SAFETY: allocated just above.
            unsafe { a.dealloc(again, layout) };
        }
        #[allow(clippy::useless_vec)] // a heap allocation is the point
        let small = vec![1u8; 100];
        println!("RESULT count={count} null_seen={null_seen} api_error={api_error} recovered={recovered} small_ok={}", small[99] == 1);
        return;
    }
    let out = run_child(
        "address_space_exhaustion_fails_cleanly_and_recovers",
        "rlimit_as",
    );
    assert!(out.status.success(), "child died: {out:?}");
    let r = child_result(&out);
    assert_eq!(r["null_seen"], "true", "the limit never bit: {r:?}");
    assert_eq!(r["api_error"], "true");
    assert_eq!(r["recovered"], "true");
    assert_eq!(r["small_ok"], "true");
    assert!(r["count"].parse::<usize>().unwrap() >= 10);
}
