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

use std::process::{Command, Output};

/// Environment variable that tells a re-executed test binary which child
/// scenario to run.
pub const CHILD_ENV: &str = "SECALLOC_TEST_CHILD";

/// The scenario this process should run as a child, if it is one.
pub fn child_scenario() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Whether this process holds `CAP_IPC_LOCK` (bit 14 of `CapEff`).
pub fn has_cap_ipc_lock() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map(|caps| caps & (1 << 14) != 0)
        .unwrap_or(false)
}

/// `RLIMIT_MEMLOCK` soft limit of this process, from `/proc/self/limits`.
pub fn memlock_soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Re-executes this test binary to run `test_name` as child `scenario`,
/// without `CAP_IPC_LOCK` and with `RLIMIT_MEMLOCK` set to `memlock` bytes
/// (soft and hard), the way an ordinary user or container runs it.
pub fn run_unprivileged_child(test_name: &str, scenario: &str, memlock: u64) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--memlock={memlock}:{memlock}"));
    if has_cap_ipc_lock() {
        cmd.args([
            "setpriv",
            "--inh-caps=-ipc_lock",
            "--bounding-set=-ipc_lock",
        ]);
    }
    cmd.arg(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario);
    let out = cmd.output().expect("run prlimit/setpriv (util-linux)");
    eprintln!(
        "child {scenario} stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!(
        "child {scenario} stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Re-executes this test binary to run `test_name` as child `scenario`
/// with the same privileges.
pub fn run_child(test_name: &str, scenario: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .output()
        .expect("re-execute test binary")
}

/// Parses `key=value` pairs from the line starting with `RESULT` in `stdout`.
pub fn child_result(out: &Output) -> std::collections::HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.find("RESULT ").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("child printed no RESULT line:\n{stdout}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The kernel's count of this process's locked memory (`VmLck`), in KiB.
#[allow(dead_code)]
pub fn vm_lck_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
