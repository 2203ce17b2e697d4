//! `Secret<T>`: round trips, tamper and swap detection, nonce uniqueness,
//! plaintext hygiene (observed in the arena), the key page as the kernel
//! reports it, fork, concurrency, expiry and purge.

#[path = "support/mod.rs"]
mod support;

use secalloc::arena::inspect;
use secalloc::secret::{self, SecureString};
use secalloc::{Error, Secret, SecureAlloc};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use support::*;

fn random<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut out).unwrap();
    out
}

#[test]
fn round_trips_for_each_type() {
    let v: Secret<Vec<u8>> = Secret::new(vec![1, 2, 3]).unwrap();
    assert_eq!(
        v.expose(|b| b.iter().map(|&x| x as u32).sum::<u32>())
            .unwrap(),
        6
    );
    let mut v = v;
    v.expose_mut(|b| b.extend_from_slice(b"more"))
        .unwrap()
        .unwrap();
    assert_eq!(v.expose(|b| b.to_vec()).unwrap(), b"\x01\x02\x03more");

    let mut s: Secret<String> = Secret::new(String::from("hunter2")).unwrap();
    assert_eq!(s.expose(|t| t.len()).unwrap(), 7);
    s.expose_mut(|t: &mut SecureString| t.push_str(" and more"))
        .unwrap()
        .unwrap();
    assert_eq!(s.expose(|t| t.to_string()).unwrap(), "hunter2 and more");

    let a: Secret<[u8; 32]> = Secret::new([7u8; 32]).unwrap();
    assert_eq!(a.expose(|k| *k).unwrap(), [7u8; 32]);

    let b: Secret<Box<[u8]>> = Secret::new(vec![9u8; 100].into_boxed_slice()).unwrap();
    assert_eq!(b.expose(|x| x.len()).unwrap(), 100);

    let n: Secret<u64> = Secret::new(0xDEAD_BEEF_u64).unwrap();
    assert_eq!(n.expose(|x| *x).unwrap(), 0xDEAD_BEEF);

    let w: Secret<[u64; 4]> = Secret::new_with(|k: &mut [u64; 4]| k[3] = 42).unwrap();
    assert_eq!(w.expose(|k| *k).unwrap(), [0, 0, 0, 42]);

    let big: Secret<Vec<u8>> = Secret::new(vec![0x33u8; 64 * 1024]).unwrap();
    assert!(big.expose(|x| x.iter().all(|&b| b == 0x33)).unwrap());
}

#[test]
fn growth_inside_expose_mut_stays_in_locked_arena_memory() {
    let mut v: Secret<Vec<u8>> = Secret::new(vec![1u8; 10]).unwrap();
    v.expose_mut(|buf| {
        for _ in 0..1000 {
            buf.extend_from_slice(&[5u8; 100]).unwrap();
        }
        assert_eq!(
            SecureAlloc::is_locked(buf.as_ptr()),
            Some(true),
            "plaintext view is locked"
        );
    })
    .unwrap();
    assert_eq!(v.expose(|b| b.len()).unwrap(), 100_010);
    assert_eq!(v.storage_locked(), Some(true));
}

#[test]
fn every_flipped_bit_of_nonce_ciphertext_and_tag_is_detected() {
    let mut s: Secret<[u8; 32]> = Secret::new(random::<32>()).unwrap();
    let total = s.sealed_bytes_mut().len();
    assert_eq!(total, 8 + 32 + 16);
    let mut flips = 0;
    for byte in 0..total {
        for bit in 0..8 {
            s.sealed_bytes_mut()[byte] ^= 1 << bit;
            assert_eq!(
                s.expose(|_| ()),
                Err(Error::Tampered),
                "byte {byte} bit {bit}"
            );
            s.sealed_bytes_mut()[byte] ^= 1 << bit;
            flips += 1;
        }
    }
    assert!(s.expose(|_| ()).is_ok(), "restored ciphertext opens again");
    println!("{flips} single-bit flips, all detected");
}

/// Secrets from 1 KiB up are sealed in their plaintext buffer, which then
/// becomes the cell; below, the ciphertext is copied into a cell of its
/// own. Both sides of the boundary, and the large-block boundary (16 KiB):
/// round trip, growth, a flipped bit in each part of the cell, storage
/// locked and the cell exactly `8 + padded + 16` bytes.
#[test]
fn secrets_sealed_in_their_buffer_round_trip_and_detect_tampering() {
    for len in [
        1023usize,
        1024,
        1025,
        4095,
        16 * 1024,
        16 * 1024 + 1,
        64 * 1024 + 7,
    ] {
        let value: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        let mut s: Secret<Vec<u8>> = Secret::new(value.clone()).unwrap();
        assert_eq!(s.expose(|b| b.to_vec()).unwrap(), value, "len {len}");
        assert_eq!(s.storage_locked(), Some(true), "len {len}");
        let total = s.sealed_bytes_mut().len();
        assert_eq!(total, 8 + len.next_multiple_of(16) + 16, "len {len}");
        for byte in [0, 7, 8, total / 2, total - 17, total - 1] {
            s.sealed_bytes_mut()[byte] ^= 0x10;
            assert_eq!(
                s.expose(|_| ()),
                Err(Error::Tampered),
                "len {len} byte {byte}"
            );
            s.sealed_bytes_mut()[byte] ^= 0x10;
        }
        s.expose_mut(|b| b.extend_from_slice(b"tail"))
            .unwrap()
            .unwrap();
        let mut grown = value.clone();
        grown.extend_from_slice(b"tail");
        assert_eq!(
            s.expose(|b| b.to_vec()).unwrap(),
            grown,
            "len {len} after growth"
        );
        let text: Secret<String> = Secret::new("x".repeat(len)).unwrap();
        assert_eq!(text.expose(|t| t.len()).unwrap(), len);
    }
}

#[test]
fn ciphertext_moved_between_secrets_fails_to_open() {
    let a: Secret<[u8; 32]> = Secret::new([1u8; 32]).unwrap();
    let mut a = a;
    let mut b: Secret<[u8; 32]> = Secret::new([2u8; 32]).unwrap();
    let stolen = a.sealed_bytes_mut().to_vec();
    b.sealed_bytes_mut().copy_from_slice(&stolen);
    assert_eq!(b.expose(|_| ()), Err(Error::Tampered));
    assert_eq!(a.expose(|k| *k).unwrap(), [1u8; 32]);
}

/// Threads take nonces from the shared counter in blocks: seals on
/// several threads at once, including threads that exit with part of a
/// block unused and new threads after them, never repeat one.
#[test]
fn seals_on_many_threads_never_repeat_a_nonce() {
    let mut seen = HashSet::new();
    for wave in 0..3u8 {
        let handles: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut s: Secret<[u8; 16]> = Secret::new([t; 16]).unwrap();
                    let mut nonces = Vec::new();
                    // Not a multiple of the block: each thread leaves some unused.
                    for i in 0..1_000u32 + u32::from(t) * 37 + u32::from(wave) {
                        s.expose_mut(|k| k[..4].copy_from_slice(&i.to_le_bytes()))
                            .unwrap();
                        let nonce: [u8; 8] = s.sealed_bytes_mut()[..8].try_into().unwrap();
                        nonces.push(nonce);
                    }
                    nonces
                })
            })
            .collect();
        for h in handles {
            for nonce in h.join().unwrap() {
                assert!(
                    seen.insert(nonce),
                    "nonce {nonce:?} repeated across threads"
                );
            }
        }
    }
}

#[test]
fn a_million_seals_never_repeat_a_nonce() {
    let mut s: Secret<[u8; 16]> = Secret::new([0u8; 16]).unwrap();
    let mut seen = HashSet::with_capacity(1_000_000);
    for i in 0..1_000_000u32 {
        s.expose_mut(|k| k[..4].copy_from_slice(&i.to_le_bytes()))
            .unwrap();
        let nonce: [u8; 8] = s.sealed_bytes_mut()[..8].try_into().unwrap();
        assert!(seen.insert(nonce), "nonce repeated at seal {i}");
    }
    assert_eq!(
        s.expose(|k| u32::from_le_bytes(k[..4].try_into().unwrap()))
            .unwrap(),
        999_999
    );
}

#[test]
fn plaintext_is_nowhere_in_the_arena_after_an_access() {
    let canary = random::<32>();
    let s: Secret<Vec<u8>> = Secret::new(canary.to_vec()).unwrap();
    assert!(
        !inspect::arena_contains(&canary),
        "at rest the arena holds only ciphertext"
    );
    s.expose(|v| {
        assert_eq!(&v[..], &canary[..]);
        assert!(
            inspect::arena_contains(&canary),
            "control: the scan finds the live view"
        );
    })
    .unwrap();
    assert!(
        !inspect::arena_contains(&canary),
        "the view was wiped when the access ended"
    );
    let mut s = s;
    s.expose_mut(|v| v.extend_from_slice(&[0u8; 5000]))
        .unwrap()
        .unwrap();
    assert!(
        !inspect::arena_contains(&canary),
        "no plaintext left behind by growth"
    );
}

#[test]
fn the_key_page_is_locked_dump_excluded_and_secretmem_where_available() {
    let info = secret::ensure_key().unwrap();
    let maps = secalloc::__unstable::smaps_read("self").unwrap();
    let m = maps
        .iter()
        .find(|m| m.start <= info.addr && info.addr < m.end)
        .expect("key page mapped");
    assert!(m.has_flag("dd"), "key page lacks dd: {m:?}");
    assert!(m.has_flag("lo"), "key page lacks lo: {m:?}");
    assert_eq!(m.end - m.start, info.len, "the key has a page of its own");
    let secretmem_available = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .contains("secretmem")
        || info.secretmem;
    if info.secretmem {
        assert!(
            m.path.contains("secretmem"),
            "memfd_secret page shows as secretmem: {m:?}"
        );
        println!("key page: memfd_secret ({})", m.path);
    } else {
        assert!(
            m.has_flag("wf"),
            "anonymous key page lacks wipe-on-fork: {m:?}"
        );
        println!("key page: anonymous (memfd_secret unavailable: secretmem={secretmem_available})");
    }
}

#[test]
fn a_forked_child_cannot_open_secrets_and_the_parent_is_unaffected() {
    let s: Secret<[u8; 32]> = Secret::new([5u8; 32]).unwrap();
    // SAFETY: the child only calls `expose` (which allocates through the
    // arena, whose fork handlers released its locks) and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match s.expose(|k| *k) {
            Err(Error::KeyUnavailable) => 0,
            Ok(_) => 1,
            Err(_) => 2,
        };
        let code = if code == 0 && Secret::new([1u8; 32]).err() == Some(Error::KeyUnavailable) {
            0
        } else {
            code.max(3)
        };
        // SAFETY: _exit ends the forked child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer and `pid` is our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child crashed: {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child could read the secret or failed oddly"
    );
    assert_eq!(s.expose(|k| *k).unwrap(), [5u8; 32]);
}

#[test]
fn concurrent_readers_all_see_the_plaintext() {
    let s = Arc::new(Secret::<Vec<u8>>::new((0..=255u8).collect()).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    let sum = s
                        .expose(|v| v.iter().map(|&b| b as u32).sum::<u32>())
                        .unwrap();
                    assert_eq!(sum, 255 * 256 / 2);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn hygiene_debug_redacts_equality_is_constant_time_clone_is_explicit() {
    static_assertions::assert_not_impl_any!(Secret<Vec<u8>>: Clone, std::fmt::Display, Copy);
    static_assertions::assert_impl_all!(Secret<Vec<u8>>: Send, Sync, zeroize::ZeroizeOnDrop);
    let a: Secret<String> = Secret::new("correct horse".to_string()).unwrap();
    let dbg = format!("{a:?}");
    assert!(!dbg.contains("horse") && dbg.contains("REDACTED"), "{dbg}");
    let b = a.try_clone().unwrap();
    assert!(a.ct_eq(&b).unwrap());
    assert!(a == b);
    let c: Secret<String> = Secret::new("correct horsf".to_string()).unwrap();
    assert!(a != c);
    b.destroy();
    assert_eq!(a.expose(|s| s.len()).unwrap(), 13);
}

#[test]
fn expiry_wipes_without_a_background_thread() {
    let mut s: Secret<[u8; 32]> = Secret::new([3u8; 32])
        .unwrap()
        .with_expiry(Duration::from_millis(50));
    assert_eq!(s.expose(|k| k[0]).unwrap(), 3);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(s.expose(|k| k[0]), Err(Error::Expired));
    assert!(
        s.sealed_bytes_mut().iter().all(|&b| b == 0),
        "expired storage is wiped"
    );
    assert_eq!(s.expose(|k| k[0]), Err(Error::Expired));
}

/// A minimal bump allocator over a heap buffer, handed out by reference: a
/// foreign allocator whose memory goes away when it is dropped.
struct BumpArena {
    buf: std::cell::UnsafeCell<Box<[u8]>>,
    used: std::cell::Cell<usize>,
}

impl BumpArena {
    fn new(len: usize) -> BumpArena {
        BumpArena {
            buf: std::cell::UnsafeCell::new(vec![0u8; len].into_boxed_slice()),
            used: std::cell::Cell::new(0),
        }
    }
}

// SAFETY: blocks are disjoint ranges of the buffer, valid while the arena
// lives; deallocation is a no-op.
unsafe impl allocator_api2::alloc::Allocator for &BumpArena {
    fn allocate(
        &self,
        layout: std::alloc::Layout,
    ) -> Result<std::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        // SAFETY: the buffer is only ever handed out in disjoint pieces.
        let buf = unsafe { &mut *self.buf.get() };
        let start = self.used.get().next_multiple_of(layout.align());
        let end = start + layout.size();
        if end > buf.len() {
            return Err(allocator_api2::alloc::AllocError);
        }
        self.used.set(end);
        let ptr = std::ptr::NonNull::new(buf[start..end].as_mut_ptr()).unwrap();
        Ok(std::ptr::NonNull::slice_from_raw_parts(ptr, layout.size()))
    }
    unsafe fn deallocate(&self, _ptr: std::ptr::NonNull<u8>, _layout: std::alloc::Layout) {}
}

#[test]
fn short_values_are_padded_to_whole_blocks_before_sealing() {
    // ring copies a final partial AES block to an unwiped stack temporary;
    // padding in locked memory means it never sees one.
    for (len, sealed) in [
        (1usize, 16usize),
        (7, 16),
        (16, 16),
        (17, 32),
        (32, 32),
        (100, 112),
    ] {
        let mut s: Secret<Vec<u8>> = Secret::new(vec![0x61; len]).unwrap();
        assert_eq!(s.sealed_bytes_mut().len(), 8 + sealed + 16, "len {len}");
        assert_eq!(
            s.expose(|v| v.len()).unwrap(),
            len,
            "the true length comes back"
        );
    }
    let mut p: Secret<String> = Secret::new("hunter2".to_string()).unwrap();
    assert_eq!(p.sealed_bytes_mut().len(), 8 + 16 + 16);
    p.expose_mut(|t| t.push_str("!")).unwrap().unwrap();
    assert_eq!(p.expose(|t| t.to_string()).unwrap(), "hunter2!");
}

#[test]
fn forks_while_other_threads_create_and_drop_secrets_never_hang() {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut s: Secret<Vec<u8>> =
                        Secret::new(vec![t as u8; 1 + (n % 200) as usize]).unwrap();
                    s.expose_mut(|v| v.push(1)).unwrap().unwrap();
                    n = n.wrapping_add(1);
                }
            })
        })
        .collect();
    let held: Secret<[u8; 32]> = Secret::new([4u8; 32]).unwrap();
    for i in 0..50 {
        // SAFETY: the child only drops a secret (registry lock, arena) and
        // leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = held.expose(|_| ()) == Err(Error::KeyUnavailable);
            drop(held);
            // SAFETY: ends the child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let start = std::time::Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out-pointer; `pid` is our child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("fork {i}: child hung");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "fork {i}: status {status:#x}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn purge_wipes_the_key_and_every_secret() {
    if child_scenario().as_deref() == Some("purge") {
        let canary = random::<32>();
        let mut secrets: Vec<Secret<[u8; 32]>> =
            (0..1000).map(|_| Secret::new(canary).unwrap()).collect();
        // Secrets registered by other threads sit in other registry shards
        // (one per thread, round robin): purge must reach every shard.
        for _ in 0..6 {
            let made = std::thread::spawn(move || {
                (0..100)
                    .map(|_| Secret::new(canary).unwrap())
                    .collect::<Vec<_>>()
            })
            .join()
            .unwrap();
            secrets.extend(made);
        }
        assert!(secrets.iter().all(|s| s.expose(|k| *k == canary).unwrap()));
        // A secret in a borrowed foreign allocator, leaked, whose allocator
        // is then gone: purge must not touch that memory (only arena cells
        // are registered), so the process survives.
        {
            let arena = BumpArena::new(4096);
            let leaked = Secret::new_in([9u8; 32], &arena).unwrap();
            std::mem::forget(leaked);
        }
        secalloc::purge();
        let all_err = secrets
            .iter()
            .all(|s| s.expose(|_| ()) == Err(Error::KeyUnavailable));
        let new_err = Secret::new([0u8; 32]).err() == Some(Error::KeyUnavailable);
        let mut key_zero = false;
        secret::key_page_bytes(|page| key_zero = page.iter().all(|&b| b == 0));
        let cells_zero = secrets
            .iter_mut()
            .all(|s| s.sealed_bytes_mut().iter().all(|&b| b == 0));
        let stats = secret::stats();
        println!(
            "RESULT all_err={all_err} new_err={new_err} key_zero={key_zero} cells_zero={cells_zero} purged={}",
            stats.purged
        );
        return;
    }
    let out = run_child("purge_wipes_the_key_and_every_secret", "purge");
    assert!(out.status.success());
    let r = child_result(&out);
    for key in ["all_err", "new_err", "key_zero", "cells_zero", "purged"] {
        assert_eq!(r[key], "true", "{key}");
    }
}

#[test]
fn random_flips_in_live_secrets_of_every_type_never_yield_wrong_plaintext() {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut secrets: Vec<(Secret<Vec<u8>>, Vec<u8>)> = (0..50)
        .map(|i| {
            let mut v = vec![0u8; 1 + i * 97];
            rng.fill(&mut v).unwrap();
            (Secret::new(v.clone()).unwrap(), v)
        })
        .collect();
    let mut text: Secret<String> =
        Secret::new("a pass phrase with some length".to_string()).unwrap();
    let mut flips = 0;
    for round in 0..2000usize {
        let mut r = [0u8; 8];
        rng.fill(&mut r).unwrap();
        let r = u64::from_le_bytes(r) as usize;
        let (s, expected) = &mut secrets[round % 50];
        let len = s.sealed_bytes_mut().len();
        let (byte, bit) = (r % len, (r >> 32) % 8);
        s.sealed_bytes_mut()[byte] ^= 1 << bit;
        assert_eq!(
            s.expose(|v| v.to_vec()),
            Err(Error::Tampered),
            "flip at {byte}/{len} opened"
        );
        s.sealed_bytes_mut()[byte] ^= 1 << bit;
        assert_eq!(&s.expose(|v| v.to_vec()).unwrap(), expected);
        let tlen = text.sealed_bytes_mut().len();
        text.sealed_bytes_mut()[r % tlen] ^= 1 << ((r >> 40) % 8);
        assert_eq!(text.expose(|t| t.len()), Err(Error::Tampered));
        text.sealed_bytes_mut()[r % tlen] ^= 1 << ((r >> 40) % 8);
        flips += 2;
    }
    println!("{flips} random flips across nonce, ciphertext and tag: all Tampered");
}
