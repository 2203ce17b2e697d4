//! Issue 10 regressions about the lock budget (RLIMIT_MEMLOCK, no
//! CAP_IPC_LOCK): freed memory must return to the budget, impossible
//! requests are refused, and a fork child whose re-lock was refused can
//! still use the memory it inherited. (The preload under a small budget is
//! checked in tests/preload.rs.)

#[path = "support/mod.rs"]
mod support;

use allocator_api2::alloc::Allocator;
use allocator_api2::boxed::Box as ABox;
use secalloc::SecureAlloc;
use std::alloc::{GlobalAlloc, Layout};
use support::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn check_child_memlock(limit: usize) {
    assert!(!has_cap_ipc_lock(), "child still has CAP_IPC_LOCK");
    assert_eq!(
        memlock_soft_limit(),
        Some(limit as u64),
        "child RLIMIT_MEMLOCK"
    );
}

/// Allocates 64-byte blocks until the first failure (or `cap`), frees them
/// all, and returns how many fit.
fn count_small_blocks(cap: usize) -> usize {
    let a = SecureAlloc::new();
    let mut held = Vec::with_capacity(cap);
    while held.len() < cap {
        match ABox::try_new_in([0x77u8; 64], a) {
            Ok(b) => held.push(b),
            Err(_) => break,
        }
    }
    held.len()
}

/// Whether one block of `size` bytes can be allocated now (freed at once).
fn one_block_fits(size: usize) -> bool {
    let a = SecureAlloc::new();
    let layout = Layout::from_size_align(size, 8).unwrap();
    match a.allocate(layout) {
        Ok(p) => {
            // SAFETY: just allocated with this layout.
            unsafe {
                std::ptr::write_bytes(p.cast::<u8>().as_ptr(), 1, size);
                a.deallocate(p.cast(), layout);
            }
            true
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// Defect 3: freed locked memory never returns to RLIMIT_MEMLOCK
// ---------------------------------------------------------------------------

#[test]
fn freed_small_blocks_return_to_the_8_mib_budget() {
    if child_scenario().as_deref() == Some("small_then_large") {
        check_child_memlock(8 * MIB);
        let n1 = count_small_blocks(131_072);
        let one_mib = one_block_fits(MIB);
        let seven_mib = one_block_fits(7 * MIB);
        let n2 = count_small_blocks(131_072);
        println!("RESULT n1={n1} one_mib={one_mib} seven_mib={seven_mib} n2={n2}");
        return;
    }
    let out = run_unprivileged_child(
        "freed_small_blocks_return_to_the_8_mib_budget",
        "small_then_large",
        8 * MIB as u64,
    );
    assert!(out.status.success(), "{:?}", out.status);
    let r = child_result(&out);
    let n1: usize = r["n1"].parse().unwrap();
    let n2: usize = r["n2"].parse().unwrap();
    assert!(n1 * 64 >= 6 * MIB, "only {n1} 64-byte blocks fit in 8 MiB");
    assert_eq!(
        r["one_mib"], "true",
        "after freeing every small block, 1 MiB no longer fits in 8 MiB"
    );
    assert_eq!(
        r["seven_mib"], "true",
        "after freeing everything, a 7 MiB block does not fit in 8 MiB"
    );
    assert!(
        n2 * 10 >= n1 * 9,
        "second round of small blocks: {n2} vs {n1}"
    );
}

#[test]
fn freed_large_blocks_return_to_the_8_mib_budget() {
    if child_scenario().as_deref() == Some("large_then_large") {
        check_child_memlock(8 * MIB);
        let a = SecureAlloc::new();
        let layout = Layout::from_size_align(2 * MIB, 8).unwrap();
        let blocks: Vec<_> = (0..3).map(|_| a.allocate(layout)).collect();
        let three_ok = blocks.iter().all(|b| b.is_ok());
        for b in blocks.into_iter().flatten() {
            // SAFETY: allocated above with this layout.
            unsafe { a.deallocate(b.cast(), layout) };
        }
        let five_mib = one_block_fits(5 * MIB);
        let seven_mib = one_block_fits(7 * MIB);
        let n = count_small_blocks(131_072);
        println!("RESULT three_ok={three_ok} five_mib={five_mib} seven_mib={seven_mib} n={n}");
        return;
    }
    let out = run_unprivileged_child(
        "freed_large_blocks_return_to_the_8_mib_budget",
        "large_then_large",
        8 * MIB as u64,
    );
    assert!(out.status.success(), "{:?}", out.status);
    let r = child_result(&out);
    assert_eq!(
        r["three_ok"], "true",
        "three 2 MiB blocks do not fit in 8 MiB"
    );
    assert_eq!(
        r["five_mib"], "true",
        "after freeing three 2 MiB blocks, 5 MiB no longer fits in 8 MiB"
    );
    assert_eq!(
        r["seven_mib"], "true",
        "after freeing everything, 7 MiB does not fit in 8 MiB"
    );
    let n: usize = r["n"].parse().unwrap();
    assert!(
        n * 64 >= 6 * MIB,
        "after freeing every large block only {n} 64-byte blocks fit in 8 MiB"
    );
}

#[test]
fn freed_memory_returns_to_a_256_kib_budget() {
    if child_scenario().as_deref() == Some("small_256k") {
        check_child_memlock(256 * KIB);
        let n1 = count_small_blocks(1 << 20);
        let whole = one_block_fits(256 * KIB - 2 * 4096);
        let n2 = count_small_blocks(1 << 20);
        println!("RESULT n1={n1} whole={whole} n2={n2}");
        return;
    }
    let out = run_unprivileged_child(
        "freed_memory_returns_to_a_256_kib_budget",
        "small_256k",
        256 * KIB as u64,
    );
    assert!(out.status.success(), "{:?}", out.status);
    let r = child_result(&out);
    let n1: usize = r["n1"].parse().unwrap();
    let n2: usize = r["n2"].parse().unwrap();
    assert!(
        n1 * 64 >= 128 * KIB,
        "only {n1} 64-byte blocks fit in 256 KiB"
    );
    assert_eq!(
        r["whole"], "true",
        "after freeing every small block, a 248 KiB block does not fit in 256 KiB"
    );
    assert!(
        n2 * 10 >= n1 * 9,
        "second round of small blocks: {n2} vs {n1}"
    );
}

// ---------------------------------------------------------------------------
// Defect 10 (unprivileged part): a request over the whole budget is refused
// ---------------------------------------------------------------------------

#[test]
fn a_request_over_the_budget_is_refused_fail_closed() {
    if child_scenario().as_deref() == Some("over_budget") {
        check_child_memlock(8 * MIB);
        let granted = one_block_fits(16 * MIB);
        let stats = SecureAlloc::new().stats();
        println!("RESULT granted={granted} unlocked={}", stats.unlocked_bytes);
        return;
    }
    let out = run_unprivileged_child(
        "a_request_over_the_budget_is_refused_fail_closed",
        "over_budget",
        8 * MIB as u64,
    );
    assert!(out.status.success(), "{:?}", out.status);
    let r = child_result(&out);
    assert_eq!(
        r["granted"], "false",
        "16 MiB granted under an 8 MiB fail-closed budget"
    );
    assert_eq!(r["unlocked"], "0");
}

// ---------------------------------------------------------------------------
// Defect 7: a fork child whose re-lock was refused cannot use its heap
// ---------------------------------------------------------------------------

#[test]
fn a_fork_child_whose_relock_was_refused_can_use_inherited_blocks() {
    if child_scenario().as_deref() == Some("relock_refused") {
        check_child_memlock(MIB);
        let a = SecureAlloc::new();
        // Commit ~512 KiB of locked slabs.
        let held: Vec<_> = (0..8000)
            .map(|i| ABox::try_new_in([i as u8; 64], a).expect("within 1 MiB"))
            .collect();
        let p0 = &*held[0] as *const [u8; 64] as *mut u8;
        // Lower the soft limit below what the arena holds: a fork child
        // (which inherits no memory locks) cannot lock it all again.
        let lim = libc::rlimit {
            rlim_cur: 64 * 1024,
            rlim_max: MIB as libc::rlim_t,
        };
        // SAFETY: valid rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) }, 0);
        let refusals_before = a.stats().lock_refusals;
        // SAFETY: the child only queries/reallocates arena blocks and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut code = 0;
            if a.stats().lock_refusals == refusals_before {
                code |= 16; // the re-lock was not refused: scenario invalid
            }
            match SecureAlloc::usable_size(p0) {
                Some(n) if n >= 64 => {}
                _ => code |= 1,
            }
            if SecureAlloc::is_locked(p0).is_none() {
                code |= 2;
            }
            let layout = Layout::from_size_align(64, 1).unwrap();
            // SAFETY: p0 is a live 64-byte SecureAlloc block; same-class
            // shrink then grow back.
            let r = unsafe { GlobalAlloc::realloc(&a, p0, layout, 60) };
            if r.is_null() {
                code |= 4;
            } else {
                let layout60 = Layout::from_size_align(60, 1).unwrap();
                // SAFETY: r is live with 60 bytes.
                let r2 = unsafe { GlobalAlloc::realloc(&a, r, layout60, 64) };
                // SAFETY: r2 (if non-null) is live with 64 bytes.
                if r2.is_null() || unsafe { *r2 } != 0 || unsafe { *r2.add(59) } != 0 {
                    code |= 8;
                }
            }
            // SAFETY: `_exit` in the child.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -libc::WTERMSIG(status)
        };
        println!("RESULT code={code}");
        std::mem::forget(held); // p0 may have moved in the child only
        return;
    }
    let out = run_unprivileged_child(
        "a_fork_child_whose_relock_was_refused_can_use_inherited_blocks",
        "relock_refused",
        MIB as u64,
    );
    assert!(out.status.success(), "{:?}", out.status);
    let r = child_result(&out);
    let code: i32 = r["code"].parse().unwrap();
    assert!(code >= 0, "fork child killed by signal {}", -code);
    if code & 16 != 0 {
        eprintln!("note: the child's re-lock was not refused");
    }
    let mut problems = Vec::new();
    if code & 1 != 0 {
        problems.push("usable_size of an inherited block is None");
    }
    if code & 2 != 0 {
        problems.push("is_locked of an inherited block is None");
    }
    if code & 4 != 0 {
        problems.push("in-place realloc of an inherited block failed");
    }
    if code & 8 != 0 {
        problems.push("realloc back to 64 bytes failed or lost data");
    }
    assert!(
        problems.is_empty(),
        "after a refused re-lock in a fork child: {problems:?}"
    );
}

// ---------------------------------------------------------------------------
// Found by the attack review: threads, the key page and a small budget
// ---------------------------------------------------------------------------

#[test]
fn threads_on_a_small_budget_share_slabs() {
    if child_scenario().as_deref() == Some("shards") {
        check_child_memlock(256 * KIB);
        // Four threads each keep one 16-byte block alive. Spread over four
        // central-list shards they committed four slabs (the whole 256 KiB)
        // and the key page no longer fit (seen before the fix: LockRefused).
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(5));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let b = ABox::new_in([7u8; 16], SecureAlloc::new());
                    barrier.wait(); // all hold a block
                    barrier.wait(); // main has tried
                    drop(b);
                })
            })
            .collect();
        barrier.wait();
        let secret = secalloc::Secret::new(vec![1u8; 32])
            .map(|_| ())
            .map_err(|e| e.to_string());
        barrier.wait();
        threads.into_iter().for_each(|t| t.join().unwrap());
        println!("RESULT secret_ok={}", secret.is_ok());
        return;
    }
    let out = run_unprivileged_child(
        "threads_on_a_small_budget_share_slabs",
        "shards",
        256 * KIB as u64,
    );
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(
        child_result(&out)["secret_ok"],
        "true",
        "four 16-byte blocks on four threads spent a 256 KiB budget"
    );
}

#[test]
fn the_key_page_takes_idle_budget_back_and_explains_a_refusal() {
    match child_scenario().as_deref() {
        Some("key_after_free") => {
            check_child_memlock(512 * KIB);
            // Blocks of several classes, freed: their slabs hold the
            // budget until something gives it back. The key page must
            // (seen before the fix: LockRefused with nothing live).
            let a = SecureAlloc::new();
            for size in [16usize, 32, 48, 64, 80, 96, 112, 128] {
                drop(ABox::new_in(vec![0u8; size].into_boxed_slice(), a));
                let layout = Layout::from_size_align(size, 8).unwrap();
                let p = a.allocate(layout).unwrap();
                // SAFETY: allocated just above with this layout.
                unsafe { a.deallocate(p.cast(), layout) };
            }
            let ok = secalloc::Secret::new(vec![1u8; 32]).is_ok();
            println!("RESULT secret_ok={ok}");
        }
        Some("key_refused") => {
            check_child_memlock(512 * KIB);
            // Spend the whole budget outside the arena, so no allocation of
            // the arena is refused first: the key page's refusal must say
            // why (seen before the fix: nothing on stderr).
            let len = 512 * KIB;
            // SAFETY: a fresh private anonymous mapping, used only here.
            let ok = unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                p != libc::MAP_FAILED && libc::mlock(p, len) == 0
            };
            let refused = matches!(
                secalloc::Secret::new(vec![1u8; 32]),
                Err(secalloc::Error::LockRefused(_))
            );
            println!("RESULT spent={ok} refused={refused}");
        }
        _ => {
            let out = run_unprivileged_child(
                "the_key_page_takes_idle_budget_back_and_explains_a_refusal",
                "key_after_free",
                512 * KIB as u64,
            );
            assert!(out.status.success(), "{:?}", out.status);
            assert_eq!(
                child_result(&out)["secret_ok"],
                "true",
                "key page refused with nothing live"
            );
            let out = run_unprivileged_child(
                "the_key_page_takes_idle_budget_back_and_explains_a_refusal",
                "key_refused",
                512 * KIB as u64,
            );
            assert!(out.status.success(), "{:?}", out.status);
            let r = child_result(&out);
            assert_eq!(
                (r["spent"].as_str(), r["refused"].as_str()),
                ("true", "true")
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("RLIMIT_MEMLOCK") && stderr.contains("asked=4096"),
                "the key page's refusal was not explained: {stderr}"
            );
        }
    }
}

/// Found by the second attack review: a commit step locks up to 16 slabs,
/// and those past the last one a class used were neither idle nor given
/// back. 3,072 blocks of 64 B use 3 of the 4 slabs committed under 256 KiB;
/// afterwards a 248 KiB block was refused with nothing live.
#[test]
fn committed_but_never_used_slabs_give_their_budget_back() {
    if child_scenario().as_deref() == Some("tail") {
        check_child_memlock(256 * KIB);
        let n = count_small_blocks(3072);
        let whole = one_block_fits(256 * KIB - 2 * 4096);
        println!("RESULT n={n} whole={whole}");
        return;
    }
    let out = run_unprivileged_child(
        "committed_but_never_used_slabs_give_their_budget_back",
        "tail",
        256 * KIB as u64,
    );
    assert!(out.status.success(), "{:?}", out.status);
    let r = child_result(&out);
    assert_eq!(r["n"], "3072");
    assert_eq!(
        r["whole"], "true",
        "an unused committed slab kept its budget"
    );
}

/// Found by the second attack review: a best-effort large block ran
/// unlocked (swappable) while the fail-closed heap's freed blocks sat in
/// its cache holding the budget.
#[test]
fn best_effort_takes_idle_budget_back_before_running_unlocked() {
    if child_scenario().as_deref() == Some("best_effort_idle") {
        check_child_memlock(8 * MIB);
        let strict = SecureAlloc::new();
        let two = Layout::from_size_align(2 * MIB, 8).unwrap();
        let blocks: Vec<_> = (0..3).map(|_| strict.allocate(two).unwrap()).collect();
        for p in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { strict.deallocate(p.cast(), two) };
        }
        let relaxed = SecureAlloc::best_effort();
        let seven = Layout::from_size_align(7 * MIB, 8).unwrap();
        let p = relaxed.allocate(seven).unwrap();
        let locked = SecureAlloc::is_locked(p.cast::<u8>().as_ptr());
        // SAFETY: allocated above with this layout.
        unsafe { relaxed.deallocate(p.cast(), seven) };
        println!("RESULT locked={locked:?}");
        return;
    }
    let out = run_unprivileged_child(
        "best_effort_takes_idle_budget_back_before_running_unlocked",
        "best_effort_idle",
        8 * MIB as u64,
    );
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(
        child_result(&out)["locked"],
        "Some(true)",
        "ran unlocked while idle memory held the budget"
    );
}
