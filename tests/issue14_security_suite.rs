//! Issue 14: the preload against a misuse suite with the shape of
//! mimalloc-bench's security tests — 37 C programs, each built at 8 B,
//! 4 KiB and 256 KiB, and 5 C++ programs: 116 cases. The programs are our
//! own (`tests/preload/security/`), written from the published case names;
//! a case is missed when it prints `NOT_CAUGHT`, the verdict that suite
//! greps for.
//!
//! Asserts exactly which cases each check level misses (the list below,
//! explained in SECURITY.md), which also keeps the targets: at
//! least 90 caught at `default` and 100 at `full`. glibc's count is printed
//! for reference, not asserted (its checks vary by version).

#[path = "support/preload_lib.rs"]
mod preload_lib;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const C_CASES: &[&str] = &[
    "32_byte_memcpy_overflow",
    "32_byte_memcpy_underflow",
    "32_byte_overflow",
    "32_byte_underflow",
    "double_free",
    "double_free_delayed",
    "double_free_interleaved",
    "double_free_reuse",
    "double_free_single_reuse",
    "executable_heap",
    "impossibly_large_malloc",
    "invalid_free",
    "invalid_free_alloca",
    "invalid_free_close",
    "invalid_free_far",
    "invalid_free_stack",
    "invalid_free_unaligned",
    "invalid_free_unaligned_multiple",
    "malloc_reuse",
    "malloc_reuse_downsize",
    "one_byte_memcpy_overflow",
    "one_byte_memcpy_underflow",
    "one_byte_overflow",
    "one_byte_underflow",
    "one_mbyte_memcpy_overflow",
    "one_mbyte_memcpy_underflow",
    "one_mbyte_overflow",
    "one_mbyte_underflow",
    "read_zero_size",
    "read_zero_size_free",
    "realloc_reuse",
    "write_after_free",
    "write_after_free_reuse",
    "write_zero_size",
    "write_zero_size_free",
    "zero_after_free",
    "zero_on_malloc",
];
const SIZES: &[usize] = &[8, 4096, 262144];
const CXX_CASES: &[&str] = &[
    "delete_type_size_mismatch",
    "invalid_array_delete_char",
    "invalid_array_delete_string",
    "invalid_delete_array_char",
    "invalid_delete_array_string",
];

/// What `default` misses (`case@size`); SECURITY.md says why.
const MISSED_DEFAULT: &[&str] = &[
    // Copies of zeros over zero slack, never freed: only `full`'s `memcpy`
    // check sees them.
    "32_byte_memcpy_overflow@8",
    "32_byte_memcpy_overflow@4096",
    // Lands past the 16 bytes of slack `default` checks (or, at 4 KiB, in a
    // block whose size is exactly a class: no slack at all).
    "32_byte_overflow@8",
    "32_byte_overflow@4096",
    // Last in, first out: the slot just freed is the next one handed out.
    "malloc_reuse@8",
    "malloc_reuse@4096",
    "malloc_reuse@262144",
    "malloc_reuse_downsize@8",
    "malloc_reuse_downsize@262144",
    // As 32_byte_memcpy_overflow.
    "one_byte_memcpy_overflow@8",
    "one_byte_memcpy_overflow@4096",
    // As 32_byte_overflow@4096.
    "one_byte_overflow@4096",
    // Never caught by anyone: the program compares the old pointer with
    // itself (it drops realloc's result).
    "realloc_reuse@8",
    "realloc_reuse@4096",
    "realloc_reuse@262144",
    // A write after free with no later allocation of the slot (a freed
    // large block stays writable in the cache at `default`; its first 16
    // bytes are checked only when it is handed out again).
    "write_after_free@8",
    "write_after_free@262144",
];
/// What `full` misses.
const MISSED_FULL: &[&str] = &[
    // 8 B + 16 B slack = a 32 B slot: 39 bytes in is the next slot's.
    "32_byte_overflow@8",
    "realloc_reuse@8",
    "realloc_reuse@4096",
    "realloc_reuse@262144",
    "write_after_free@8",
    "write_after_free@4096",
];

fn build(dir: &Path, compiler: &str, source: &str, name: &str, flags: &[&str]) -> PathBuf {
    let program = dir.join(name);
    let status = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&program)
        .arg(
            preload_lib::root()
                .join("tests/preload/security")
                .join(source),
        )
        .status()
        .expect("C/C++ compiler");
    assert!(status.success(), "{compiler} {source}");
    program
}

/// Whether the case was caught: it did not print `NOT_CAUGHT`. A case
/// that aborted must have done so with secalloc's message (under the
/// preload), so a crash for another reason is not counted as a catch.
fn caught(program: &Path, case: &str, level: Option<&str>) -> bool {
    let mut cmd = Command::new(program);
    cmd.arg(case).stdin(Stdio::null());
    if let Some(level) = level {
        cmd.env("LD_PRELOAD", preload_lib::build_preload_lib())
            .env("SECALLOC_CHECKS", level);
    }
    let out = cmd.output().unwrap();
    assert_ne!(out.status.code(), Some(4), "{case}: unknown case");
    let missed = String::from_utf8_lossy(&out.stdout).contains("NOT_CAUGHT");
    if !missed && level.is_some() {
        use std::os::unix::process::ExitStatusExt;
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.signal() {
            Some(libc::SIGABRT) => assert!(
                stderr.contains("secalloc: fatal: "),
                "{case} {level:?}: aborted without secalloc's message: {stderr}"
            ),
            // A guard page, the zero-size region, or a non-executable heap.
            Some(libc::SIGSEGV) | None => {}
            other => panic!("{case} {level:?}: unexpected end {other:?}: {out:?}"),
        }
    }
    !missed
}

#[test]
fn preload_catches_the_security_suite_at_each_level() {
    let dir = std::env::temp_dir().join(format!("secalloc-security-suite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // As that suite builds them: no optimisation, nothing inlined.
    let c_programs: Vec<(usize, PathBuf)> = SIZES
        .iter()
        .map(|&size| {
            let define = format!("-DALLOCATION_SIZE={size}");
            let flags = ["-O0", "-fno-inline", "-w", define.as_str()];
            (
                size,
                build(&dir, "cc", "suite.c", &format!("suite_{size}"), &flags),
            )
        })
        .collect();
    let cxx = build(
        &dir,
        "g++",
        "suite.cpp",
        "suite_cxx",
        &["-O0", "-w", "-std=c++17", "-fsized-deallocation"],
    );
    let total = C_CASES.len() * SIZES.len() + CXX_CASES.len();
    assert_eq!(total, 116);
    let missed_at = |level: Option<&str>| -> Vec<String> {
        let mut missed = Vec::new();
        for case in C_CASES {
            for (size, program) in &c_programs {
                if !caught(program, case, level) {
                    missed.push(format!("{case}@{size}"));
                }
            }
        }
        for case in CXX_CASES {
            if !caught(&cxx, case, level) {
                missed.push((*case).to_string());
            }
        }
        missed
    };
    for (level, documented, target) in [("default", MISSED_DEFAULT, 90), ("full", MISSED_FULL, 100)]
    {
        let missed = missed_at(Some(level));
        let caught = total - missed.len();
        println!("security suite, SECALLOC_CHECKS={level}: caught {caught} of {total}");
        assert_eq!(
            missed, documented,
            "level {level}: the misses differ from the documented ones"
        );
        assert!(caught >= target, "level {level}: {caught} < {target}");
    }
    let glibc = total - missed_at(None).len();
    println!("security suite, glibc (no preload): caught {glibc} of {total}");
    let _ = std::fs::remove_dir_all(&dir);
}
