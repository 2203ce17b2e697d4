//! Issue 10, defect 5: with `SecureAlloc` as the global allocator and
//! thousands of large (> 16 KiB) blocks live, `smaps::arena_report()` and
//! `arena::for_each_region` with an allocating closure must not deadlock.
//! Each runs in a re-executed child under a watchdog.

#[path = "support/issue10.rs"]
mod issue10;
#[path = "support/mod.rs"]
mod support;

use secalloc::SecureAlloc;
use std::time::Duration;

#[global_allocator]
static A: SecureAlloc = SecureAlloc::new();

const LIVE_LARGE: usize = 2000;
const LARGE_SIZE: usize = 20 * 1024;

fn many_large_blocks() -> Vec<Vec<u8>> {
    (0..LIVE_LARGE)
        .map(|i| vec![i as u8; LARGE_SIZE + (i % 7) * 1000])
        .collect()
}

fn main() {
    match support::child_scenario().as_deref() {
        Some("report") => {
            let held = many_large_blocks();
            let report = secalloc::diagnostics::arena_report().expect("arena_report");
            println!(
                "RESULT mappings={} mapped={} held={}",
                report.mappings,
                report.mapped_bytes,
                held.len()
            );
            return;
        }
        Some("regions") => {
            let held = many_large_blocks();
            let mut regions = Vec::new();
            secalloc::arena::for_each_region(|start, len| regions.push((start, len)));
            println!("RESULT regions={} held={}", regions.len(), held.len());
            return;
        }
        _ => {}
    }
    support::run_checks(&[
        (
            "arena_report_with_2000_large_blocks_does_not_deadlock",
            arena_report_with_2000_large_blocks_does_not_deadlock,
        ),
        (
            "for_each_region_with_an_allocating_closure_does_not_deadlock",
            for_each_region_with_an_allocating_closure_does_not_deadlock,
        ),
    ]);
}

fn arena_report_with_2000_large_blocks_does_not_deadlock() {
    let (out, in_time) = issue10::run_with_watchdog(&[], "report", Duration::from_secs(15));
    assert!(in_time, "arena_report() deadlocked: killed after 15 s");
    assert!(out.status.success(), "{:?}", out.status);
    let r = support::child_result(&out);
    assert!(r["mappings"].parse::<usize>().unwrap() >= 1);
}

fn for_each_region_with_an_allocating_closure_does_not_deadlock() {
    let (out, in_time) = issue10::run_with_watchdog(&[], "regions", Duration::from_secs(15));
    assert!(in_time, "for_each_region deadlocked: killed after 15 s");
    assert!(out.status.success(), "{:?}", out.status);
    let r = support::child_result(&out);
    assert!(r["regions"].parse::<usize>().unwrap() >= LIVE_LARGE);
}
