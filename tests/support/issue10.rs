//! Helpers shared by the issue 10 regression tests: a watchdog around a
//! re-executed child, and the fork-from-busy-threads workload.
#![allow(dead_code)]

use allocator_api2::vec::Vec as AVec;
use secalloc::{Secret, SecureAlloc};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::CHILD_ENV;

/// Waits for `child` up to `limit`, killing it if it is still running.
/// Returns its output and whether it finished in time.
pub fn wait_with_watchdog(
    mut child: std::process::Child,
    limit: Duration,
    what: &str,
) -> (Output, bool) {
    let start = Instant::now();
    let mut in_time = true;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            in_time = false;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "child {what}: status {:?}, in_time={in_time}, {:.1?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        start.elapsed(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, in_time)
}

/// Re-executes this test binary (any harness) with `extra_args` and
/// `CHILD_ENV=scenario`, killing it after `limit`.
pub fn run_with_watchdog(extra_args: &[&str], scenario: &str, limit: Duration) -> (Output, bool) {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(extra_args)
        .env(CHILD_ENV, scenario)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_watchdog(child, limit, scenario)
}

/// Busy threads use secrets, stats, best-effort secrets, large arena blocks
/// and `arena_report` — and, half-way through, `purge` — while this thread
/// forks `forks` times; each child
/// allocates a little and `_exit(0)`s. With `region_walker`, one more thread
/// keeps 64 large blocks live and walks `arena::for_each_region` with a
/// closure that allocates a small box per region. Returns the failures seen.
pub fn fork_storm(forks: usize, region_walker: bool) -> Vec<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let spawn = |workers: &mut Vec<thread::JoinHandle<()>>, f: fn(u64)| {
        let stop = stop.clone();
        let ops = ops.clone();
        workers.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                f(i);
                i += 1;
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    };
    // Secrets whose length changes (the cell is reallocated under the registry lock).
    // After the purge half-way through, every secret call fails cleanly
    // (`KeyUnavailable`): the workers keep calling, and must not hang.
    spawn(&mut workers, |i| {
        let Ok(mut s) = Secret::new(vec![i as u8; 20_000]) else {
            return;
        };
        let extra = vec![1u8; 100 + (i as usize % 300)];
        let _ = s.expose_mut(|v| v.extend_from_slice(&extra));
        let _ = s.expose_mut(|v| v.truncate(10_000));
    });
    spawn(&mut workers, |_| {
        let _ = secalloc::secret::stats();
    });
    spawn(&mut workers, |i| {
        if let Ok(s) = Secret::new_in(vec![i as u8; 64], SecureAlloc::best_effort()) {
            let _ = s.expose(|v| v.len());
        }
    });
    spawn(&mut workers, |i| {
        let mut v: AVec<u8, SecureAlloc> = AVec::with_capacity_in(1 << 20, SecureAlloc::new());
        v.resize(1 << 20, i as u8);
        let b = allocator_api2::boxed::Box::new_in([i as u8; 4096], SecureAlloc::new());
        std::hint::black_box((&v, &b));
    });
    spawn(&mut workers, |_| {
        let _ = secalloc::diagnostics::arena_report();
    });
    if region_walker {
        spawn(&mut workers, |i| {
            let held: Vec<Vec<u8>> = (0..64).map(|j| vec![(i + j) as u8; 20_000]).collect();
            let mut boxes = Vec::new();
            secalloc::arena::for_each_region(|start, len| boxes.push(Box::new(start ^ len)));
            std::hint::black_box((&held, &boxes));
        });
    }
    // Let every worker get going (and create the key, the heaps, ...).
    while ops.load(Ordering::Relaxed) < 50 {
        thread::sleep(Duration::from_millis(1));
    }
    let mut failures = Vec::new();
    let mut purger = None;
    for i in 0..forks {
        if i == forks / 2 {
            purger = Some(thread::spawn(secalloc::purge));
        }
        // SAFETY: the child only allocates and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let v = std::hint::black_box(vec![3u8; 100]);
            let b = allocator_api2::boxed::Box::try_new_in([4u8; 64], SecureAlloc::new());
            let code = if v[99] == 3 && b.map(|b| b[63] == 4).unwrap_or(true) {
                0
            } else {
                2
            };
            // SAFETY: `_exit` in the child.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r != pid || !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failures.push(format!("fork {i}: status {status:#x}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = purger {
        if p.join().is_err() {
            failures.push("purge panicked".into());
        }
    }
    for w in workers {
        if w.join().is_err() {
            failures.push("a worker panicked".into());
        }
    }
    println!(
        "{forks} forks done, workers did {} operations",
        ops.load(Ordering::Relaxed)
    );
    failures
}
