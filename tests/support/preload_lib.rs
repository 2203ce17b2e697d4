//! Building the `LD_PRELOAD` library for the tests and benchmarks that run
//! programs under it. Shared by `tests/preload.rs` and
//! `benches/preload_compare.rs`.

use std::path::PathBuf;
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds `libsecalloc_preload.so` in its own target directory (so it never
/// waits on the build lock of the `cargo test` or `cargo bench` that runs
/// us) and returns its path.
pub fn build_preload_lib() -> PathBuf {
    let target = root().join("target/preload");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "secalloc-preload",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(root())
        .status()
        .expect("run cargo");
    assert!(status.success(), "building secalloc-preload failed");
    target.join("release/libsecalloc_preload.so")
}
