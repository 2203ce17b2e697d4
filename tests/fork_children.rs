//! fork from a busy multithreaded process: with `SecureAlloc` as the global
//! allocator and three threads allocating flat out, the main thread forks 200
//! times; every child must allocate, free, find its new memory locked again,
//! and exit 0 within a deadline (a lock inherited held would hang it).

#[path = "support/mod.rs"]
mod support;

use secalloc::SecureAlloc;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: SecureAlloc = SecureAlloc::new();

const FORKS: usize = 200;
const CHILD_DEADLINE: Duration = Duration::from_secs(10);

fn main() {
    support::run_checks(&[(
        "two_hundred_forks_from_busy_threads",
        two_hundred_forks_from_busy_threads,
    )]);
}

/// What a child does: real allocation work, then report through its exit code.
fn child_work() -> i32 {
    let mut map: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..2000 {
        map.insert(format!("k{i}"), vec![i as u8; 1 + i % 500]);
    }
    if map.len() != 2000 || map["k7"] != vec![7u8; 8] {
        return 2;
    }
    drop(map);
    #[allow(clippy::useless_vec)] // a heap allocation is the point
    let probe = vec![1u8; 64];
    // The child inherits no memory locks; the arena must have re-locked.
    if SecureAlloc::is_locked(probe.as_ptr()) != Some(true) {
        return 3;
    }
    let big = vec![2u8; 2 << 20];
    if big.iter().map(|&b| b as usize).sum::<usize>() != 2 * (2 << 20) {
        return 4;
    }
    0
}

fn two_hundred_forks_from_busy_threads() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut ops = 0u64;
                let mut keep: Vec<Vec<u8>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    keep.push(vec![t as u8; 8 + (ops as usize * 97) % 3000]);
                    if keep.len() > 500 {
                        keep.drain(..250);
                    }
                    if ops % 1000 == 0 {
                        keep.push(vec![0u8; 40_000]); // large path too
                    }
                    ops += 1;
                }
                ops
            })
        })
        .collect();

    let mut failures = Vec::new();
    for i in 0..FORKS {
        // SAFETY: the child only allocates through the arena (whose fork
        // handlers released its locks) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child_work();
            // SAFETY: `_exit` skips atexit handlers and flushing in the child.
            unsafe { libc::_exit(code) };
        }
        let started = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out-pointer; `pid` is our child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if started.elapsed() > CHILD_DEADLINE {
                // SAFETY: killing our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                // SAFETY: as above.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                failures.push(format!("fork {i}: child hung (deadlock?)"));
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failures.push(format!("fork {i}: child status {status:#x}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    println!("{FORKS} forks, workers did {ops} allocations meanwhile");
    assert!(ops > 0);
    assert!(failures.is_empty(), "{failures:?}");
}
