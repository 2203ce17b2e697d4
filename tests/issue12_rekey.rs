//! Issue 12: re-keying. `secalloc::rekey()` puts a new key in service;
//! live secrets move to it lazily on access and by `rekey_step`; the old
//! key page is wiped when the last secret sealed under it moves on; a
//! ciphertext copied aside before a re-key never opens after it.
//!
//! The key generation is process-wide, so the checks take one lock and run
//! one after another; each settles the generation it starts from.

mod support;

use secalloc::secret::{self, key_page_bytes_of};
use secalloc::{rekey, rekey_step, Error, Secret};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One lock for every check: they share the process's key generation.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Aborts the process if a check hangs (a deadlock in a sweep would
/// otherwise hold CI until its time limit).
fn watchdog(limit: Duration) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        if !flag.load(Ordering::SeqCst) {
            eprintln!("watchdog: check still running after {limit:?}");
            std::process::abort();
        }
    });
    done
}

fn key_page_is_zero(epoch: u64) -> bool {
    let mut zero = false;
    key_page_bytes_of(epoch, |page| zero = page.iter().all(|&b| b == 0));
    zero
}

#[test]
fn a_ciphertext_kept_from_before_a_rekey_never_opens_after_it() {
    let _g = serial();
    let mut s: Secret<Vec<u8>> = Secret::new(b"session-key-0123456789".to_vec()).unwrap();
    let before: Vec<u8> = s.sealed_bytes_mut().to_vec();
    // Replaying the same bytes without a re-key opens (the test can tell).
    s.sealed_bytes_mut().copy_from_slice(&before);
    assert_eq!(s.expose(|v| v.len()), Ok(22));
    let epoch = rekey().unwrap();
    assert_eq!(rekey_step(usize::MAX).unwrap(), 0, "every secret moved");
    assert_eq!(secret::stats().key_epoch, epoch);
    assert_ne!(
        s.sealed_bytes_mut(),
        &before[..],
        "re-sealed under the new key"
    );
    // The old page is wiped once nothing is sealed under it.
    assert!(key_page_is_zero(epoch - 1), "old key page wiped");
    s.sealed_bytes_mut().copy_from_slice(&before);
    assert_eq!(s.expose(|v| v.len()), Err(Error::Tampered));
    // Two generations later the old page is reused for a new key: still
    // nothing opens the old bytes.
    let mut t: Secret<[u8; 32]> = Secret::new([7; 32]).unwrap();
    let t_before = t.sealed_bytes_mut().to_vec();
    rekey().unwrap();
    rekey().unwrap();
    // The second re-key first swept `t` off the generation it needed.
    assert_eq!(t.expose(|k| k[0]), Ok(7));
    t.sealed_bytes_mut().copy_from_slice(&t_before);
    assert_eq!(t.expose(|k| k[0]), Err(Error::Tampered));
}

#[test]
fn the_old_key_page_is_wiped_when_the_last_secret_moves_on() {
    let _g = serial();
    // Start from a settled generation.
    rekey().unwrap();
    rekey_step(usize::MAX).unwrap();
    let secrets: Vec<Secret<[u8; 32]>> = (0..40u8).map(|i| Secret::new([i; 32]).unwrap()).collect();
    let old = secret::stats().key_epoch;
    let new = rekey().unwrap();
    assert_eq!(new, old + 1);
    let pending = secret::stats().sealed_under_previous_key;
    assert!(pending >= 40, "{pending} secrets under the old key");
    assert!(!key_page_is_zero(old), "old key still needed");
    // Lazily: every read moves its secret.
    for (i, s) in secrets.iter().enumerate().take(20) {
        assert_eq!(s.expose(|k| k[0]), Ok(i as u8));
    }
    assert_eq!(secret::stats().sealed_under_previous_key, pending - 20);
    // A bounded step moves at most its budget.
    let left = rekey_step(5).unwrap();
    assert_eq!(left, pending - 25);
    assert!(!key_page_is_zero(old), "old key still needed");
    // Dropping counts as moving on: the last one wipes the old page.
    let rest_moved = rekey_step(usize::MAX).unwrap();
    assert_eq!(rest_moved, 0);
    assert!(
        key_page_is_zero(old),
        "old key page wiped after the last move"
    );
    for (i, s) in secrets.iter().enumerate() {
        assert_eq!(
            s.expose(|k| k[0]),
            Ok(i as u8),
            "secret {i} after the sweep"
        );
    }
    // Drops retire too: a fresh generation, every secret dropped.
    let more: Vec<Secret<[u8; 32]>> = (0..10u8).map(|i| Secret::new([i; 32]).unwrap()).collect();
    let old = rekey().unwrap() - 1;
    drop(secrets);
    assert!(!key_page_is_zero(old));
    drop(more);
    assert!(
        key_page_is_zero(old),
        "the last drop wiped the old key page"
    );
    assert_eq!(secret::stats().sealed_under_previous_key, 0);
}

#[test]
fn a_tampered_or_destroyed_secret_does_not_keep_the_old_key_alive() {
    let _g = serial();
    rekey().unwrap();
    rekey_step(usize::MAX).unwrap();
    let mut tampered: Secret<[u8; 32]> = Secret::new([1; 32]).unwrap();
    tampered.sealed_bytes_mut()[9] ^= 1;
    let mut expired: Secret<[u8; 32]> = Secret::new([2; 32]).unwrap();
    expired.expire_after(Duration::ZERO);
    let fine: Secret<[u8; 32]> = Secret::new([3; 32]).unwrap();
    let old = rekey().unwrap() - 1;
    assert_eq!(rekey_step(usize::MAX).unwrap(), 0);
    assert!(key_page_is_zero(old));
    assert_eq!(tampered.expose(|k| k[0]), Err(Error::Tampered));
    assert_eq!(expired.expose(|k| k[0]), Err(Error::Expired));
    assert_eq!(fine.expose(|k| k[0]), Ok(3));
}

#[test]
fn reads_writes_and_creations_stay_correct_during_sweeps() {
    let _g = serial();
    let done = watchdog(Duration::from_secs(120));
    let shared: Arc<Vec<Secret<Vec<u8>>>> = Arc::new(
        (0..64u8)
            .map(|i| Secret::new(vec![i; 48]).unwrap())
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..3u8 {
        let (shared, stop, errors) = (shared.clone(), stop.clone(), errors.clone());
        threads.push(std::thread::spawn(move || {
            // Own secrets for expose_mut (it needs `&mut`), shared ones for
            // concurrent expose from every thread.
            let mut own: Vec<Secret<Vec<u8>>> = (0..16u8)
                .map(|i| Secret::new(vec![i ^ t; 40]).unwrap())
                .collect();
            let mut round = 0u32;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                for (i, s) in shared.iter().enumerate() {
                    let r = s.expose(|v| v.len() == 48 && v.iter().all(|&b| b == i as u8));
                    if r != Ok(true) {
                        eprintln!("shared read {i}: {r:?}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                for (i, s) in own.iter_mut().enumerate() {
                    let grow = round % 3 == 0;
                    let r = s.expose_mut(|v| {
                        let mut ok = v[0] == i as u8 ^ t;
                        if grow {
                            ok &= v.push(0).is_ok();
                        }
                        ok
                    });
                    if r != Ok(true) {
                        eprintln!("own write {i}: {r:?}");
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Creation and drop during the sweep.
                let fresh = Secret::new([t; 32]).unwrap();
                let r = fresh.expose(|k| k[31]);
                if r != Ok(t) {
                    eprintln!("fresh read: {r:?}");
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            own.len()
        }));
    }
    let mut switches = 0;
    let mut swept = 0;
    for _ in 0..300 {
        rekey().unwrap();
        switches += 1;
        while rekey_step(3).unwrap() > 0 {
            swept += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert_eq!(
        errors.load(Ordering::Relaxed),
        0,
        "a read or write failed during a sweep"
    );
    assert_eq!(switches, 300);
    assert!(swept > 0, "the sweep never had work: nothing was tested");
    assert_eq!(rekey_step(usize::MAX).unwrap(), 0);
    for (i, s) in shared.iter().enumerate() {
        assert_eq!(s.expose(|v| v[0]), Ok(i as u8));
    }
}

#[test]
fn purge_during_a_sweep_wipes_both_keys_and_stops_the_sweep() {
    let _g = serial();
    let done = watchdog(Duration::from_secs(60));
    let out = support::run_child("purge_child", "purge_sweep");
    done.store(true, Ordering::SeqCst);
    assert!(out.status.success(), "child failed");
    let r = support::child_result(&out);
    assert_eq!(r["reads"], "KeyUnavailable");
    assert_eq!(r["both_wiped"], "true");
    assert_eq!(r["sweep_ended"], "true");
    assert_eq!(
        r["step_after"], "true",
        "rekey_step after purge is KeyUnavailable"
    );
}

/// The child side of the purge check: a sweep thread races `purge`.
#[test]
fn purge_child() {
    if support::child_scenario().as_deref() != Some("purge_sweep") {
        return;
    }
    let secrets: Vec<Secret<Vec<u8>>> = (0..2000u32)
        .map(|i| Secret::new(i.to_le_bytes().repeat(8)).unwrap())
        .collect();
    let new = rekey().unwrap();
    let sweeper = std::thread::spawn(|| loop {
        match rekey_step(1) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(Error::KeyUnavailable) => return true,
            Err(_) => return false,
        }
    });
    std::thread::sleep(Duration::from_millis(2));
    secalloc::purge();
    let sweep_ended = sweeper.join().unwrap();
    // Found by the attack review: after a purge this returned Ok(0).
    let step_after = rekey_step(1) == Err(Error::KeyUnavailable);
    let reads = match secrets[1999].expose(|v| v.len()) {
        Err(Error::KeyUnavailable) => "KeyUnavailable".to_string(),
        other => format!("{other:?}").replace(' ', "_"),
    };
    let both_wiped = key_page_is_zero(new) && key_page_is_zero(new - 1);
    println!(
        "RESULT reads={reads} both_wiped={both_wiped} sweep_ended={sweep_ended} step_after={step_after}"
    );
}

/// Found by the issue-12 attack review: in a fork child the key pages are
/// gone (`MADV_DONTFORK`) and `rekey_step`/`rekey` read them: SIGSEGV. They
/// must return `KeyUnavailable` like every other use of the key there.
#[test]
fn rekey_in_a_fork_child_is_key_unavailable_not_a_crash() {
    let _g = serial();
    let kept: Vec<Secret<[u8; 32]>> = (0..8u8).map(|i| Secret::new([i; 32]).unwrap()).collect();
    rekey().unwrap(); // leaves 8 secrets under the previous key
                      // SAFETY: the child calls only the functions under test and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let step = matches!(rekey_step(1), Err(Error::KeyUnavailable));
        let full = matches!(rekey(), Err(Error::KeyUnavailable));
        // SAFETY: `_exit` in the child.
        unsafe { libc::_exit(if step && full { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status),
        "the child died of signal {}",
        libc::WTERMSIG(status)
    );
    assert_eq!(libc::WEXITSTATUS(status), 0, "not KeyUnavailable");
    assert_eq!(rekey_step(usize::MAX), Ok(0));
    drop(kept);
}

/// Found by the issue-12 attack review: two threads calling `rekey()` at
/// once got `RekeyIncomplete(0)` when each found the other's new key in the
/// way. A key put in service by another thread after the call began counts.
#[test]
fn concurrent_rekeys_all_succeed() {
    let _g = serial();
    let done = watchdog(Duration::from_secs(60));
    let secrets: Arc<Vec<Secret<[u8; 32]>>> =
        Arc::new((0..200u8).map(|i| Secret::new([i; 32]).unwrap()).collect());
    let failures = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (secrets, failures) = (secrets.clone(), failures.clone());
            std::thread::spawn(move || {
                for round in 0..100usize {
                    if let Err(e) = rekey() {
                        eprintln!("rekey: {e:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    let i = round % secrets.len();
                    if secrets[i].expose(|k| k[0]) != Ok(i as u8) {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert_eq!(failures.load(Ordering::Relaxed), 0);
}
