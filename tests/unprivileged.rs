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

const EIGHT_MIB: u64 = 8 * 1024 * 1024;

#[test]
fn a_hundred_and_thirty_thousand_secrets_fit_in_the_default_8_mib_lock_budget() {
    if child_scenario().as_deref() == Some("density") {
        check_child_memlock(EIGHT_MIB);
        // As many as fit: each 32-byte secret is a 64-byte cell (nonce,
        // ciphertext, tag), and the views share the cells' size class.
        let mut secrets: Vec<secalloc::Secret<[u8; 32]>> = Vec::with_capacity(200_000);
        for i in 0..200_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            match secalloc::Secret::new(k) {
                Ok(s) => secrets.push(s),
                Err(secalloc::Error::LockRefused(_)) => break,
                Err(e) => panic!("secret {i}: {e}"),
            }
        }
        let vm_lck = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        println!("RESULT_VMLCK kib={vm_lck}");
        let readable = secrets
            .iter()
            .enumerate()
            .all(|(i, s)| s.expose(|k| k[..4] == (i as u32).to_le_bytes()).unwrap());
        let stats = secalloc::secret::stats();
        let arena = SecureAlloc::new().stats();
        drop(secrets);
        let after = secalloc::secret::stats();
        println!(
            "RESULT readable={readable} live={} locked_storage={} unlocked_storage={} arena_locked={} live_after={} key_secretmem={:?}",
            stats.live, stats.storage_locked, stats.storage_unlocked, arena.locked_bytes, after.live,
            stats.key_page.map(|k| k.secretmem)
        );
        return;
    }
    let out = run_unprivileged_child(
        "a_hundred_and_thirty_thousand_secrets_fit_in_the_default_8_mib_lock_budget",
        "density",
        EIGHT_MIB,
    );
    assert!(out.status.success());
    let r = child_result(&out);
    assert_eq!(r["readable"], "true");
    let live: u64 = r["live"].parse().unwrap();
    assert!(live >= 130_000, "only {live} secrets fit in 8 MiB");
    assert_eq!(
        r["locked_storage"], r["live"],
        "every secret's storage is locked"
    );
    // The kernel agrees: what is locked is about the cells' worth.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let vm_lck_kib: u64 = stdout
        .split("RESULT_VMLCK kib=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        vm_lck_kib * 1024 >= live * 64,
        "VmLck {vm_lck_kib} KiB for {live} cells"
    );
    assert!(vm_lck_kib * 1024 <= EIGHT_MIB);
    assert_eq!(r["unlocked_storage"], "0");
    assert!(r["arena_locked"].parse::<u64>().unwrap() <= EIGHT_MIB);
    assert_eq!(r["live_after"], "0");
}

#[test]
fn secrets_past_the_budget_fail_closed_or_stay_sealed_in_unlocked_memory() {
    const LOW: u64 = 256 * 1024;
    if child_scenario().as_deref() == Some("secret_budget") {
        check_child_memlock(LOW);
        // Fail closed (the default): creation stops with LockRefused, never
        // storing a secret unlocked.
        let mut strict = Vec::new();
        let refusal = loop {
            match secalloc::Secret::new([7u8; 32]) {
                Ok(s) => strict.push(s),
                Err(e) => break e,
            }
            if strict.len() > 100_000 {
                panic!("the 64 KiB budget was never enforced");
            }
        };
        let refused = matches!(refusal, secalloc::Error::LockRefused(_));
        let strict_all_locked = strict.iter().all(|s| s.storage_locked() == Some(true));
        drop(strict);
        // Best effort: sealed secrets carry on in unlocked memory, reported
        // per secret and in stats; reading still works (views stay locked).
        let relaxed: Vec<_> = (0..5000)
            .map(|i| secalloc::Secret::new_in([i as u8; 32], SecureAlloc::best_effort()).unwrap())
            .collect();
        let readable = relaxed
            .iter()
            .enumerate()
            .all(|(i, s)| s.expose(|k| k[0] == i as u8).unwrap());
        let stats = secalloc::secret::stats();
        println!(
            "RESULT refused={refused} message={:?} strict_all_locked={strict_all_locked} readable={readable} locked={} unlocked={}",
            refusal.to_string().replace(' ', "_"), stats.storage_locked, stats.storage_unlocked
        );
        return;
    }
    let out = run_unprivileged_child(
        "secrets_past_the_budget_fail_closed_or_stay_sealed_in_unlocked_memory",
        "secret_budget",
        LOW,
    );
    assert!(out.status.success());
    let r = child_result(&out);
    assert_eq!(r["refused"], "true", "{}", r["message"]);
    assert!(
        r["message"].contains("RLIMIT_MEMLOCK"),
        "actionable message: {}",
        r["message"]
    );
    assert_eq!(r["strict_all_locked"], "true");
    assert_eq!(r["readable"], "true");
    assert!(
        r["unlocked"].parse::<usize>().unwrap() > 0,
        "best-effort secrets beyond the budget are reported unlocked"
    );
    assert_eq!(
        r["locked"].parse::<usize>().unwrap() + r["unlocked"].parse::<usize>().unwrap(),
        5000
    );
}

fn check_child_memlock(limit: u64) {
    assert!(!has_cap_ipc_lock(), "child still has CAP_IPC_LOCK");
    assert_eq!(memlock_soft_limit(), Some(limit));
}

#[test]
fn under_64_kib_secrets_are_never_stored_unlocked() {
    // Under 64 KiB the fail-closed heap commits slabs page by page, so a
    // secret fits (tests/issue12_small_container.rs); whatever happens, a
    // default secret is locked or refused (LockRefused), never stored in
    // unlocked memory.
    const TINY: u64 = 64 * 1024;
    if child_scenario().as_deref() == Some("tiny") {
        check_child_memlock(TINY);
        let strict = secalloc::Secret::new([1u8; 32]);
        let relaxed = secalloc::Secret::new_in([1u8; 32], SecureAlloc::best_effort());
        let ok_strict = strict.as_ref().map(|s| s.storage_locked());
        let key = secalloc::secret::key_page_info().is_some();
        println!(
            "RESULT strict={:?} relaxed_refused={} key={key} strict_locked={:?}",
            strict
                .as_ref()
                .err()
                .map(|e| matches!(e, secalloc::Error::LockRefused(_))),
            matches!(relaxed, Err(secalloc::Error::LockRefused(_)))
                || relaxed
                    .as_ref()
                    .map(|s| s.expose(|_| ()).is_err())
                    .unwrap_or(false),
            ok_strict.ok()
        );
        return;
    }
    let out = run_unprivileged_child(
        "under_64_kib_secrets_are_never_stored_unlocked",
        "tiny",
        TINY,
    );
    assert!(out.status.success());
    let r = child_result(&out);
    // Either the strict secret was refused with LockRefused, or (if it fit)
    // its storage is locked: never unlocked behind the caller's back.
    assert!(
        r["strict"] == "Some(true)" || r["strict_locked"] == "Some(Some(true))",
        "{r:?}"
    );
}
