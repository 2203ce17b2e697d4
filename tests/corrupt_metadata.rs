//! A stray write into the allocator's own tables ends in a fatal report,
//! never in overlapping blocks, a write where a forged link points, or a
//! hang under an allocator lock. Each case (found by the attack review of
//! the no-panic change, from a C program scribbling on the tables) writes
//! one field through an inspection hook, then allocates and frees, in a
//! child process under a watchdog.

#[path = "support/mod.rs"]
mod support;

use secalloc::arena::inspect::{corrupt_large_registries, corrupt_slab_meta, MetaField};
use secalloc::{CheckLevel, SecureAlloc};
use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use support::*;

const CORRUPTION: &str = "heap corruption: allocator metadata is inconsistent";
const INVALID_FREE: &str = "invalid free: a pointer secalloc did not allocate (or already freed)";

/// Enough 16-byte blocks to fill the first slab of their class and more.
const MANY: usize = 6000;

fn scenario(name: &str) {
    let a = SecureAlloc::new().with_checks(CheckLevel::Off);
    let small = Layout::from_size_align(16, 8).unwrap();
    // SAFETY: in every arm, blocks are used with the layout they were made
    // with; the corruption is the hook's, and the point of the test (it
    // runs in a child process that is expected to abort).
    unsafe {
        match name {
            "shard_out_of_range" => {
                // A whole slab of blocks, then its shard byte pushed past
                // the last shard, then the frees that hand slots back to the
                // central lists: before the fix they went to another
                // class's list, which later gave out overlapping slots.
                let blocks: Vec<*mut u8> = (0..MANY).map(|_| a.alloc(small)).collect();
                assert!(corrupt_slab_meta(blocks[0] as usize, MetaField::Shard, 4));
                for &p in &blocks {
                    a.dealloc(p, small);
                }
                let again: Vec<*mut u8> = (0..MANY)
                    .map(|_| a.alloc(Layout::new::<[u8; 32]>()))
                    .collect();
                println!("RESULT survived=true blocks={}", again.len());
            }
            "forged_list_link" => {
                // The slab in the class's list gets a wild `next`; filling it
                // unlinks it, which followed the link (SIGSEGV, or a write
                // into whatever the link named).
                let first = a.alloc(small);
                assert!(corrupt_slab_meta(
                    first as usize,
                    MetaField::Next,
                    0x7fff_ffff
                ));
                let more: Vec<*mut u8> = (0..MANY).map(|_| a.alloc(small)).collect();
                println!("RESULT survived=true blocks={}", more.len());
            }
            "scan_start_past_the_bitmap" => {
                // The slot search starts past the end of the bitmap while
                // the count says slots are free: the refill took nothing,
                // forever, under the class lock.
                let first = a.alloc(small);
                assert!(corrupt_slab_meta(first as usize, MetaField::ScanFrom, 200));
                let more: Vec<*mut u8> = (0..MANY).map(|_| a.alloc(small)).collect();
                println!("RESULT survived=true blocks={}", more.len());
            }
            "registry_without_an_empty_entry" => {
                // A large block makes the registry table; with no empty
                // entry left in it, the lookup of a foreign pointer probed
                // forever under the registry lock.
                let big = Layout::from_size_align(1 << 20, 8).unwrap();
                let block = a.alloc(big);
                corrupt_large_registries();
                a.dealloc(0x10000 as *mut u8, big);
                println!("RESULT survived=true block={block:p}");
            }
            other => panic!("unknown scenario {other}"),
        }
    }
}

const CASES: [(&str, &str); 4] = [
    ("shard_out_of_range", CORRUPTION),
    ("forged_list_link", CORRUPTION),
    ("scan_start_past_the_bitmap", CORRUPTION),
    ("registry_without_an_empty_entry", INVALID_FREE),
];

#[test]
fn a_stray_write_into_the_metadata_ends_in_a_fatal_report() {
    if let Some(name) = child_scenario() {
        scenario(&name);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for (name, message) in CASES {
        // The watchdog: a hang is one of the failures looked for.
        let out = Command::new("timeout")
            .arg("20")
            .arg(&exe)
            .args([
                "--exact",
                "a_stray_write_into_the_metadata_ends_in_a_fatal_report",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, name)
            .output()
            .expect("run the child under timeout(1)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_ne!(
            out.status.code(),
            Some(124),
            "{name}: hung (killed by the watchdog after 20 s)"
        );
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{name}: not aborted ({:?}); stdout: {stdout} stderr: {stderr}",
            out.status
        );
        let last = stderr.lines().last().unwrap_or_default();
        let address = last
            .strip_prefix(&format!("secalloc: fatal: {message}: 0x"))
            .unwrap_or_else(|| panic!("{name}: stderr {stderr}"));
        assert!(
            address.len() == 16 && address.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: stderr {stderr}"
        );
    }
}
