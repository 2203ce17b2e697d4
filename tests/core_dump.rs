//! Core dumps: a child fills arena allocations and `Secret`s with a random
//! canary, puts a control canary on a plain `mmap`, raises `RLIMIT_CORE` and
//! aborts in a temporary directory. The core must contain the control canary
//! (so the search can see) and neither the arena canary, the secret's
//! plaintext, nor key bytes.

#[path = "support/mod.rs"]
mod support;

use allocator_api2::vec::Vec as AVec;
use secalloc::{Secret, SecureAlloc};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use support::*;

const TEST: &str = "arena_secret_and_key_bytes_never_reach_a_core_dump";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes hex straight into `out`, with no intermediate buffer.
fn decode_into(hex: &str, out: &mut [u8]) {
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
}

fn child() -> ! {
    let arena_hex = std::env::var("CANARY_ARENA").unwrap();
    let secret_hex = std::env::var("CANARY_SECRET").unwrap();
    let control_hex = std::env::var("CANARY_CONTROL").unwrap();
    let a = SecureAlloc::new();
    // Arena allocations: small ones and a large block.
    let mut keep = Vec::new();
    for _ in 0..64 {
        let mut v: AVec<u8, SecureAlloc> = AVec::with_capacity_in(32, a);
        v.resize(32, 0);
        decode_into(&arena_hex, &mut v);
        keep.push(v);
    }
    let mut big: AVec<u8, SecureAlloc> = AVec::with_capacity_in(1 << 20, a);
    big.resize(1 << 20, 0);
    decode_into(&arena_hex, &mut big[4096..4128]);
    // Secrets, whose plaintext is written straight into locked memory.
    let secrets: Vec<Secret<[u8; 32]>> = (0..16)
        .map(|_| Secret::new_with(|k: &mut [u8; 32]| decode_into(&secret_hex, k)).unwrap())
        .collect();
    assert!(secrets[0]
        .expose(|k| k[0] == u8::from_str_radix(&secret_hex[..2], 16).unwrap())
        .unwrap());
    // Control: the same kind of bytes on an ordinary private mapping.
    // SAFETY: a fresh anonymous private mapping of one page.
    let control = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(control, libc::MAP_FAILED);
    // SAFETY: the mapping is 4096 writable bytes.
    decode_into(&control_hex, unsafe {
        std::slice::from_raw_parts_mut(control as *mut u8, 32)
    });
    // Key bytes to look for: a high-entropy stretch of the key schedule.
    let mut key_hex = String::new();
    // (Found by content, not by offset: the page's layout is the crate's.)
    secalloc::secret::key_page_bytes(|page| {
        let at = (0..page.len() - 32)
            .step_by(16)
            .find(|&i| page[i..i + 32].iter().filter(|&&b| b != 0).count() >= 28)
            .unwrap_or(0);
        key_hex = hex(&page[at..at + 32]);
    });
    println!("RESULT key={key_hex}");
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &unlimited) } != 0 {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid, writable rlimit.
        unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) };
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) };
    }
    std::hint::black_box((&keep, &big, &secrets));
    std::process::abort();
}

fn random32() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut out).unwrap();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn arena_secret_and_key_bytes_never_reach_a_core_dump() {
    if child_scenario().as_deref() == Some("core") {
        child();
    }
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    if pattern.trim_start().starts_with('|') {
        println!(
            "SKIPPED: core_pattern pipes cores to a handler ({}), so the test cannot read them",
            pattern.trim()
        );
        return;
    }
    if pattern.contains('/') {
        println!("SKIPPED: core_pattern writes cores to an absolute path ({}); this test reads them from the child's directory", pattern.trim());
        return;
    }
    let (arena, secret, control) = (random32(), random32(), random32());
    let dir: PathBuf = std::env::temp_dir().join(format!("secalloc-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "core")
        .env("CANARY_ARENA", hex(&arena))
        .env("CANARY_SECRET", hex(&secret))
        .env("CANARY_CONTROL", hex(&control))
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "child did not abort: {out:?}"
    );
    let key_hex = child_result(&out)["key"].clone();
    let mut key = [0u8; 32];
    decode_into(&key_hex, &mut key);
    assert!(
        key.iter().any(|&b| b != 0),
        "key bytes to search for are empty"
    );
    let core_path = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("core"));
    let Some(core_path) = core_path else {
        let _ = std::fs::remove_dir_all(&dir);
        println!("SKIPPED: no core file was written (RLIMIT_CORE hard limit 0, or cores disabled) with core_pattern {:?}", pattern.trim());
        return;
    };
    let core = std::fs::read(&core_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    println!("core file: {} bytes", core.len());
    assert!(
        contains(&core, &control),
        "control canary missing: the search cannot see"
    );
    assert!(
        !contains(&core, &arena),
        "arena canary found in the core dump"
    );
    assert!(
        !contains(&core, &secret),
        "secret plaintext found in the core dump"
    );
    assert!(!contains(&core, &key), "key bytes found in the core dump");
    println!("core dump checked: control found; arena, secret and key bytes: 0 occurrences");
}
