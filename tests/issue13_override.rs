//! Issue 13: the `override` feature. A Rust binary built with it
//! (`tests/crates/override_check`) exports the C allocation surface, so the
//! C code in it — here glibc's own `strdup` and direct `malloc`/`calloc`/
//! `posix_memalign` calls — allocates from the locked, dump-excluded arena.

#[path = "support/preload_lib.rs"]
#[allow(dead_code)]
mod preload_lib;
mod support;

use std::process::Command;

#[test]
fn c_allocations_of_an_override_binary_land_in_locked_dump_excluded_memory() {
    let target = preload_lib::root().join("target/override-check");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--manifest-path"])
        .arg(preload_lib::root().join("tests/crates/override_check/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .current_dir(preload_lib::root())
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the override check failed");
    let out = Command::new(target.join("release/secalloc-override-check"))
        .output()
        .expect("run the override check");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the override binary failed");
    let r = support::child_result(&out);
    assert_eq!(r["in_arena"], "true", "a C allocation missed the arena");
    assert_eq!(r["aligned"], "true");
    assert_eq!(r["rc"], "0");
    assert!(r["usable"].parse::<usize>().unwrap() >= 100);
    assert_eq!(r["lo"], "true", "not locked per smaps");
    assert_eq!(r["dd"], "true", "not dump-excluded per smaps");
}
