//! Issue 10, defect 11: when the lock budget runs out under a global
//! `SecureAlloc`, the abort must say why (RLIMIT_MEMLOCK) and what to do,
//! not just "memory allocation of N bytes failed".

#[path = "support/mod.rs"]
mod support;

use secalloc::SecureAlloc;
use std::os::unix::process::ExitStatusExt;

#[global_allocator]
static A: SecureAlloc = SecureAlloc::new();

fn main() {
    if support::child_scenario().as_deref() == Some("exhaust") {
        let mut v: Vec<u8> = Vec::new();
        loop {
            v.push(1); // grows until the 256 KiB budget is spent, then aborts
            if v.len() > 64 << 20 {
                println!("RESULT never_refused=true");
                return;
            }
        }
    }
    support::run_checks(&[(
        "running_out_of_lock_budget_explains_rlimit_memlock",
        running_out_of_lock_budget_explains_rlimit_memlock,
    )]);
}

fn running_out_of_lock_budget_explains_rlimit_memlock() {
    let out = support::run_unprivileged_child("exhaust", "exhaust", 256 * 1024);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the 256 KiB budget was never exhausted"
    );
    assert!(
        out.status.signal().is_some(),
        "expected an abort, got {:?}",
        out.status
    );
    for hint in ["ulimit -l", "CAP_IPC_LOCK", "best_effort"] {
        if !stderr.contains(hint) {
            eprintln!("note: the refusal message does not mention {hint:?}");
        }
    }
    assert!(
        stderr.lines().any(|l| l.contains("RLIMIT_MEMLOCK")),
        "the abort does not explain the refusal (no RLIMIT_MEMLOCK): {stderr}"
    );
}
