//! Issue 10, defect 1 with `SecureAlloc` as the global allocator: busy
//! threads use secrets, stats, best-effort secrets, large blocks and
//! `arena_report` while the main thread forks 500 times. The workload runs
//! in a re-executed child under a 60 s watchdog.

#[path = "support/issue10.rs"]
mod issue10;
#[path = "support/mod.rs"]
mod support;

use secalloc::SecureAlloc;
use std::time::Duration;

#[global_allocator]
static A: SecureAlloc = SecureAlloc::new();

fn main() {
    if support::child_scenario().as_deref() == Some("fork_storm") {
        let failures = issue10::fork_storm(500, true);
        println!("RESULT failures={}", failures.len());
        if !failures.is_empty() {
            eprintln!("{failures:?}");
            std::process::exit(1);
        }
        return;
    }
    support::run_checks(&[(
        "global_fork_while_threads_use_secrets_stats_and_large_blocks_does_not_hang",
        global_fork_storm,
    )]);
}

fn global_fork_storm() {
    let (out, in_time) = issue10::run_with_watchdog(&[], "fork_storm", Duration::from_secs(60));
    assert!(
        in_time,
        "fork storm hung (deadlock in fork handlers?): killed after 60 s"
    );
    assert!(out.status.success(), "fork storm failed: {:?}", out.status);
}
