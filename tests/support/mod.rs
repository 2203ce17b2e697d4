//! Helpers shared by the test binaries that run without libtest's harness.
#![allow(dead_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs each named check, prints a libtest-style summary line, and exits
/// non-zero if any failed.
pub fn run_checks(checks: &[(&str, fn())]) {
    let mut failed = 0;
    for (name, check) in checks {
        match catch_unwind(AssertUnwindSafe(check)) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    let passed = checks.len() - failed;
    println!("\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out\n",
        if failed == 0 { "ok" } else { "FAILED" });
    if failed != 0 {
        std::process::exit(101);
    }
}
