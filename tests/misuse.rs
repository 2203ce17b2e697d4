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
            other => panic!("unknown scenario {other}"),
        }
    }
}

const CASES: [(&str, &str); 5] = [
    ("double_free", "double free detected"),
    ("double_free_large", "did not allocate"),
    ("foreign_free", "did not allocate"),
    ("interior_free", "not the start of a secalloc allocation"),
    ("mismatched_layout", "does not match the allocation"),
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
        assert!(
            stderr.contains("secalloc: fatal:"),
            "{scenario}: stderr {stderr}"
        );
        assert!(
            stderr.contains(message),
            "{scenario}: expected {message:?} in {stderr}"
        );
    }
}
