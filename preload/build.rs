//! Compiles `src/tls.c` (the initial-exec TLS block of the per-thread
//! caches) into a static library linked into the preload. Uses `$CC` or
//! `cc`; no build-dependency needed for one file.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/tls.c");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let object = out.join("tls.o");
    let status = Command::new(&cc)
        .args(["-c", "-O2", "-fPIC", "-ftls-model=initial-exec", "-o"])
        .arg(&object)
        .arg("src/tls.c")
        .status()
        .unwrap_or_else(|e| panic!("running {cc} for src/tls.c: {e} (install gcc or set CC)"));
    assert!(status.success(), "{cc} failed on src/tls.c");
    let archive = out.join("libsecalloc_preload_tls.a");
    let _ = std::fs::remove_file(&archive);
    let status = Command::new("ar")
        .arg("crs")
        .arg(&archive)
        .arg(&object)
        .status()
        .expect("running ar (binutils)");
    assert!(status.success(), "ar failed");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=secalloc_preload_tls");
}
