//! The unprivileged path: the test binary re-executes itself without
//! `CAP_IPC_LOCK` and with `RLIMIT_MEMLOCK` = 256 KiB, and each lock policy
//! is observed doing what the README says.

#[path = "support/mod.rs"]
mod support;

use allocator_api2::boxed::Box as ABox;
use secalloc::{LockPolicy, SecureAlloc};
use support::*;

const LIMIT: u64 = 256 * 1024;

fn check_child_is_unprivileged() {
    assert!(!has_cap_ipc_lock(), "child still has CAP_IPC_LOCK");
    assert_eq!(memlock_soft_limit(), Some(LIMIT), "child RLIMIT_MEMLOCK");
}

#[test]
fn fail_closed_refuses_instead_of_running_unlocked() {
    if child_scenario().as_deref() == Some("fail_closed") {
        check_child_is_unprivileged();
        let a = SecureAlloc::new();
        let mut held = Vec::new();
        while held.len() < 1_000_000 {
            match ABox::try_new_in([0x5Au8; 32], a) {
                Ok(b) => held.push(b),
                Err(_) => break,
            }
        }
        let stats = a.stats();
        let all_locked = held
            .iter()
            .all(|b| SecureAlloc::is_locked(&b[0]) == Some(true));
        let large_refused = ABox::try_new_in([0u8; 1 << 20], a).is_err();
        // The process keeps working once memory is freed.
        held.truncate(held.len() / 2);
        let recovered = ABox::try_new_in([1u8; 32], a).is_ok();
        println!(
            "RESULT count={} refusals={} unlocked={} locked={} all_locked={} large_refused={} recovered={} policy={:?}",
            held.len() * 2, stats.lock_refusals, stats.unlocked_bytes, stats.locked_bytes,
            all_locked, large_refused, recovered, stats.policy
        );
        return;
    }
    let out = run_unprivileged_child(
        "fail_closed_refuses_instead_of_running_unlocked",
        "fail_closed",
        LIMIT,
    );
    assert!(out.status.success());
    let r = child_result(&out);
    let count: usize = r["count"].parse().unwrap();
    // Dense packing: 32-byte secrets use at least half of the 256 KiB budget.
    assert!(
        count * 32 >= LIMIT as usize / 2,
        "only {count} secrets fit in 256 KiB"
    );
    assert!(
        count < 1_000_000,
        "locking was never refused: limit not applied"
    );
    assert!(r["refusals"].parse::<usize>().unwrap() >= 1);
    assert_eq!(r["unlocked"], "0", "fail-closed ran unlocked");
    assert!(r["locked"].parse::<u64>().unwrap() <= LIMIT);
    assert_eq!(r["all_locked"], "true");
    assert_eq!(r["large_refused"], "true");
    assert_eq!(r["recovered"], "true");
    assert_eq!(r["policy"], format!("{:?}", LockPolicy::FailClosed));
}

#[test]
fn best_effort_keeps_running_and_counts_what_is_unlocked() {
    if child_scenario().as_deref() == Some("best_effort") {
        check_child_is_unprivileged();
        let a = SecureAlloc::best_effort();
        let held: Vec<_> = (0..50_000u32)
            .map(|i| ABox::new_in([i as u8; 32], a))
            .collect();
        let ok = held.iter().enumerate().all(|(i, b)| b[31] == i as u8);
        let stats = a.stats();
        let first = SecureAlloc::is_locked(&held[0][0]);
        let last = SecureAlloc::is_locked(&held[held.len() - 1][0]);
        println!(
            "RESULT ok={ok} refusals={} unlocked={} locked={} first_locked={:?} last_locked={:?} errno={:?}",
            stats.lock_refusals, stats.unlocked_bytes, stats.locked_bytes, first, last, stats.last_refusal_errno
        );
        return;
    }
    let out = run_unprivileged_child(
        "best_effort_keeps_running_and_counts_what_is_unlocked",
        "best_effort",
        LIMIT,
    );
    assert!(out.status.success());
    let r = child_result(&out);
    assert_eq!(r["ok"], "true");
    assert!(r["refusals"].parse::<usize>().unwrap() >= 1);
    assert!(r["unlocked"].parse::<usize>().unwrap() > 0);
    assert!(r["locked"].parse::<u64>().unwrap() <= LIMIT);
    assert_eq!(r["first_locked"], "Some(true)");
    assert_eq!(
        r["last_locked"], "Some(false)",
        "unlocked memory must be reported as such"
    );
    assert!(
        r["errno"].starts_with("Some("),
        "the refusal's errno is recorded"
    );
}
