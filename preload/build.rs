//! Compiles the preload's two C files into a static library linked into
//! it: `src/tls.c` (the initial-exec TLS block of the per-thread caches)
//! and `src/copy.c` (the C runtime's copies, for `src/copy.rs` to forward
//! to). Uses `$CC` or `cc`; no build-dependency needed for two files.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let mut objects = Vec::new();
    for (source, flags) in [
        ("src/tls.c", &["-ftls-model=initial-exec"][..]),
        // No builtins: nothing in it may become a call to `memcpy`, which
        // would be the preload's own.
        ("src/copy.c", &["-fno-builtin"][..]),
    ] {
        println!("cargo:rerun-if-changed={source}");
        let object = out.join(source.trim_start_matches("src/").replace(".c", ".o"));
        let status = Command::new(&cc)
            .args(["-c", "-O2", "-fPIC"])
            .args(flags)
            .arg("-o")
            .arg(&object)
            .arg(source)
            .status()
            .unwrap_or_else(|e| panic!("running {cc} for {source}: {e} (install gcc or set CC)"));
        assert!(status.success(), "{cc} failed on {source}");
        objects.push(object);
    }
    let archive = out.join("libsecalloc_preload_c.a");
    let _ = std::fs::remove_file(&archive);
    let status = Command::new("ar")
        .arg("crs")
        .arg(&archive)
        .args(&objects)
        .status()
        .expect("running ar (binutils)");
    assert!(status.success(), "ar failed");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=secalloc_preload_c");
}
