//! Issue 12: `Secret` at the AEAD floor without giving anything up. Here:
//! secrets of every size stay readable once they have filled the lock
//! budget, without `CAP_IPC_LOCK` (the faster create path that seals a
//! secret in its plaintext buffer must not take the spare buffer a read
//! needs).

#[path = "support/mod.rs"]
mod support;

use secalloc::{Error, Secret};
use support::*;

const EIGHT_MIB: u64 = 8 * 1024 * 1024;

/// Child: creates secrets of `len` bytes until the budget refuses, then
/// reads every one back.
fn fill_then_read(len: usize) {
    let mut secrets = Vec::new();
    let refusal = loop {
        match Secret::new(vec![(secrets.len() % 251) as u8; len]) {
            Ok(s) => secrets.push(s),
            Err(e) => break e,
        }
        assert!(secrets.len() < 1_000_000, "the budget was never enforced");
    };
    let readable = secrets
        .iter()
        .enumerate()
        .filter(|(i, s)| s.expose(|v| v.len() == len && v[len - 1] == (i % 251) as u8) == Ok(true))
        .count();
    println!(
        "RESULT created={} readable={readable} refused={}",
        secrets.len(),
        matches!(refusal, Error::LockRefused(_))
    );
}

/// Child: as [`fill_then_read`], but every secret is read by another
/// thread while the creating one is still alive.
fn fill_then_read_elsewhere(len: usize) {
    let mut secrets = Vec::new();
    while let Ok(s) = Secret::new(vec![(secrets.len() % 251) as u8; len]) {
        secrets.push(s);
        assert!(secrets.len() < 1_000_000, "the budget was never enforced");
    }
    let readable = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                secrets
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| {
                        s.expose(|v| v.len() == len && v[len - 1] == (i % 251) as u8) == Ok(true)
                    })
                    .count()
            })
            .join()
            .unwrap()
    });
    println!(
        "RESULT created={} readable={readable} refused=true",
        secrets.len()
    );
}

#[test]
fn secrets_of_every_size_stay_readable_once_they_fill_the_budget() {
    if let Some(scenario) = child_scenario() {
        if let Some(len) = scenario.strip_prefix("fill_elsewhere_") {
            fill_then_read_elsewhere(len.parse().unwrap());
        } else if let Some(len) = scenario.strip_prefix("fill_") {
            fill_then_read(len.parse().unwrap());
        }
        return;
    }
    // Read from another thread than the creator's (found by the issue-12
    // attack review: every read was refused, the room a create leaves for a
    // read sat in the creating thread's cache).
    for len in [32usize, 1000, 5000] {
        let out = run_unprivileged_child(
            "secrets_of_every_size_stay_readable_once_they_fill_the_budget",
            &format!("fill_elsewhere_{len}"),
            EIGHT_MIB,
        );
        assert!(out.status.success(), "len {len}: {out:?}");
        let r = child_result(&out);
        assert_eq!(
            r["readable"], r["created"],
            "{len}-byte secrets that filled 8 MiB could not all be read from another thread"
        );
    }
    for len in [1000usize, 1024, 4096, 16 * 1024, 64 * 1024] {
        let out = run_unprivileged_child(
            "secrets_of_every_size_stay_readable_once_they_fill_the_budget",
            &format!("fill_{len}"),
            EIGHT_MIB,
        );
        assert!(out.status.success(), "len {len}: {out:?}");
        let r = child_result(&out);
        assert_eq!(r["refused"], "true", "len {len}");
        let created: usize = r["created"].parse().unwrap();
        assert!(created > 0, "len {len}: nothing created");
        assert_eq!(
            r["readable"], r["created"],
            "{len}-byte secrets that filled 8 MiB could not all be read back"
        );
    }
}
