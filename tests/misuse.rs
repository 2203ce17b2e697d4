//! Allocator misuse aborts with a clear message instead of corrupting the
//! heap: each case runs in a re-executed child, and the parent checks that it
//! died by SIGABRT and what it printed on stderr.

#[path = "support/mod.rs"]
mod support;

use secalloc::SecureAlloc;
use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;
use support::*;

fn misuse(scenario: &str) {
    let a = SecureAlloc::new();
    let l = Layout::from_size_align(48, 8).unwrap();
    // SAFETY (all cases): deliberately wrong, to observe the abort.
    // SAFETY: deliberately wrong in each arm, to observe the allocator abort in a child process.
    unsafe {
        match scenario {
            "double_free" => {
                let p = a.alloc(l);
                a.dealloc(p, l);
                a.dealloc(p, l);
            }
            "double_free_large" => {
                let big = Layout::from_size_align(1 << 20, 8).unwrap();
                let p = a.alloc(big);
                a.dealloc(p, big);
                a.dealloc(p, big);
            }
            "foreign_free" => {
                let p = std::alloc::System.alloc(l);
                a.dealloc(p, l);
            }
            "interior_free" => {
                let p = a.alloc(l);
                a.dealloc(p.add(16), l);
            }
            "mismatched_layout" => {
                let p = a.alloc(l);
                a.dealloc(p, Layout::from_size_align(4000, 8).unwrap());
            }
            "large_freed_with_other_layout" => {
                let big = Layout::from_size_align(4 << 20, 8).unwrap();
                let p = a.alloc(big);
                a.dealloc(p, Layout::from_size_align(20_000, 4096).unwrap());
            }
            "same_class_other_size" => {
                let hundred = Layout::from_size_align(100, 16).unwrap();
                let p = a.alloc(hundred);
                a.dealloc(p, Layout::from_size_align(112, 16).unwrap());
            }
            "large_realloc_with_other_layout" => {
                let big = Layout::from_size_align(1 << 20, 8).unwrap();
                let p = a.alloc(big);
                let _ = a.realloc(p, Layout::from_size_align(900_000, 8).unwrap(), 2 << 20);
            }
            "realloc_after_free" => {
                let p = a.alloc(l);
                a.dealloc(p, l);
                let _ = a.realloc(p, l, 64);
            }
            // Found by the attack review: with an alignment change the
            // checks were skipped and `old.size()` bytes were copied out of
            // a 16-byte slot before anything was validated (SIGSEGV).
            "grow_wrong_old_with_align_change" => {
                use allocator_api2::alloc::Allocator;
                let small = Layout::from_size_align(16, 8).unwrap();
                let p = Allocator::allocate(&a, small).unwrap().cast::<u8>();
                let _ = Allocator::grow(
                    &a,
                    p,
                    Layout::from_size_align(1 << 20, 8).unwrap(),
                    Layout::from_size_align(2 << 20, 16).unwrap(),
                );
            }
            "grow_freed_with_align_change" => {
                use allocator_api2::alloc::Allocator;
                let p = Allocator::allocate(&a, l).unwrap().cast::<u8>();
                Allocator::deallocate(&a, p, l);
                let _ = Allocator::grow(&a, p, l, Layout::from_size_align(64, 16).unwrap());
            }
            // Found by the second attack review: a live block freed with a
            // zero-size layout was silently ignored (a leak, exit 0).
            "dealloc_with_zero_size" => {
                use allocator_api2::alloc::Allocator;
                let p = Allocator::allocate(&a, l).unwrap().cast::<u8>();
                Allocator::deallocate(&a, p, Layout::from_size_align(0, 8).unwrap());
            }
            // Eight threads double-free their own blocks at the same
            // moment: exactly one report may reach stderr.
            "racing_double_frees" => {
                let start = std::sync::Barrier::new(8);
                std::thread::scope(|scope| {
                    for _ in 0..8 {
                        scope.spawn(|| {
                            let p = a.alloc(l);
                            a.dealloc(p, l);
                            start.wait();
                            a.dealloc(p, l);
                        });
                    }
                });
            }
            // stderr is a pipe nobody reads, already full: the detecting
            // thread must still end the process, and soon.
            "detect_with_stderr_full" => {
                let fd = libc::open(
                    c"/proc/self/fd/2".as_ptr(),
                    libc::O_WRONLY | libc::O_NONBLOCK,
                );
                assert!(fd >= 0);
                let chunk = [b'x'; 4096];
                while libc::write(fd, chunk.as_ptr().cast(), chunk.len()) > 0 {}
                libc::close(fd);
                let p = a.alloc(l) as usize;
                std::thread::spawn(move || {
                    a.dealloc(p as *mut u8, l);
                    a.dealloc(p as *mut u8, l);
                });
                std::thread::sleep(std::time::Duration::from_secs(4));
                println!("RESULT survived=true");
                std::process::exit(0);
            }
            other => panic!("unknown scenario {other}"),
        }
    }
}

const INVALID_FREE: &str = "invalid free: a pointer secalloc did not allocate (or already freed)";
const USE_AFTER_FREE: &str = "use after free: realloc of a freed pointer";
const MISMATCH: &str =
    "mismatched layout: the free or realloc layout does not match the allocation";

/// Each misuse and the exact last line it must print.
const CASES: [(&str, &str); 12] = [
    ("double_free", "double free detected"),
    // A block in the large-block cache is known to have been freed (the
    // issue-14 attack review saw this reported as an invalid free).
    ("double_free_large", "double free detected"),
    ("foreign_free", INVALID_FREE),
    ("interior_free", INVALID_FREE),
    ("mismatched_layout", MISMATCH),
    // Issue 10, defect 8: these three passed silently before sizes and
    // alignments were recorded out of band (seen on 9ee3d64: exit 0).
    ("large_freed_with_other_layout", MISMATCH),
    ("same_class_other_size", MISMATCH),
    ("large_realloc_with_other_layout", MISMATCH),
    ("realloc_after_free", USE_AFTER_FREE),
    ("grow_wrong_old_with_align_change", MISMATCH),
    ("grow_freed_with_align_change", USE_AFTER_FREE),
    ("dealloc_with_zero_size", MISMATCH),
];

#[test]
fn misuse_aborts_with_a_clear_message() {
    if let Some(scenario) = child_scenario() {
        misuse(&scenario);
        println!("RESULT survived=true");
        return;
    }
    for (scenario, message) in CASES {
        let out = run_child("misuse_aborts_with_a_clear_message", scenario);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{scenario}: not aborted; stderr: {stderr}"
        );
        // Every report names the pointer it was given (the issue-14 attack
        // review found these without one): `<message>: 0x` and 16 digits.
        let last = stderr.lines().last().unwrap_or_default();
        let address = last
            .strip_prefix(&format!("secalloc: fatal: {message}: 0x"))
            .unwrap_or_else(|| panic!("{scenario}: stderr {stderr}"));
        assert!(
            address.len() == 16 && address.bytes().all(|b| b.is_ascii_hexdigit()),
            "{scenario}: stderr {stderr}"
        );
    }
}

/// Two threads that detect misuse at once print one line between them, not
/// a splice of both (the issue-14 attack review saw 6 garbled reports in
/// 500 runs of two threads: the message went out in five `write`s).
#[test]
fn racing_detections_print_one_line() {
    if let Some(scenario) = child_scenario() {
        misuse(&scenario);
        return;
    }
    for run in 0..60 {
        let out = run_child("racing_detections_print_one_line", "racing_double_frees");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "run {run}: {stderr}"
        );
        let reports: Vec<&str> = stderr.lines().filter(|l| l.contains("secalloc")).collect();
        assert_eq!(reports.len(), 1, "run {run}: stderr {stderr:?}");
        let address = reports[0]
            .strip_prefix("secalloc: fatal: double free detected: 0x")
            .unwrap_or_else(|| panic!("run {run}: stderr {stderr:?}"));
        assert!(
            address.len() == 16 && address.bytes().all(|b| b.is_ascii_hexdigit()),
            "run {run}: stderr {stderr:?}"
        );
    }
}

/// A detection aborts even when stderr cannot take the report: with a
/// full pipe the detecting thread blocked in `write` while the others ran
/// on, and the program exited 0 (found by the second review of the fatal
/// path). The report is then dropped, the abort is not.
#[test]
fn a_detection_aborts_when_stderr_is_full() {
    if let Some(scenario) = child_scenario() {
        misuse(&scenario);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "a_detection_aborts_when_stderr_is_full",
            "--nocapture",
        ])
        .env(CHILD_ENV, "detect_with_stderr_full")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Not reading stderr until the child is gone keeps its pipe full.
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
}
