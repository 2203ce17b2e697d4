//! Issue 12: `Secret` in a container whose `RLIMIT_MEMLOCK` is 64 KiB (the
//! default of many container runtimes and older kernels), without
//! `CAP_IPC_LOCK`. Before small slabs, the key page plus one 64 KiB slab
//! needed ~68 KiB and `Secret::new` refused everything.

mod support;

use secalloc::{Secret, SecureAlloc};
use support::{
    child_result, child_scenario, has_cap_ipc_lock, memlock_soft_limit, run_unprivileged_child,
    vm_lck_kib,
};

const LIMIT: u64 = 64 * 1024;
const COUNT: usize = 100;
const TEST: &str = "a_hundred_secrets_live_and_read_back_under_a_64_kib_lock_limit";

fn child() {
    let before = vm_lck_kib();
    let mut arrays: Vec<Secret<[u8; 32]>> = Vec::new();
    let mut vecs: Vec<Secret<Vec<u8>>> = Vec::new();
    let mut first = None;
    let mut failure = String::from("none");
    for i in 0..COUNT {
        match Secret::new([i as u8; 32]) {
            Ok(s) => arrays.push(s),
            Err(e) => {
                failure = format!("array{i}:{e:?}").replace(' ', "_");
                break;
            }
        }
        if i == 0 {
            first = Some(vm_lck_kib());
        }
        match Secret::new(vec![i as u8 ^ 0x5a; 32]) {
            Ok(s) => vecs.push(s),
            Err(e) => {
                failure = format!("vec{i}:{e:?}").replace(' ', "_");
                break;
            }
        }
    }
    let all = vm_lck_kib();
    let storage_locked = arrays
        .iter()
        .map(|s| s.storage_locked())
        .chain(vecs.iter().map(|s| s.storage_locked()))
        .all(|l| l == Some(true));
    // Every plaintext view is in locked arena memory, and every value is
    // the one stored.
    let mut views_locked = true;
    let mut readable = true;
    for (i, s) in arrays.iter().enumerate() {
        let ok = s.expose(|k| {
            views_locked &= SecureAlloc::is_locked(k.as_ptr()) == Some(true);
            *k == [i as u8; 32]
        });
        readable &= ok == Ok(true);
    }
    for (i, s) in vecs.iter_mut().enumerate() {
        let ok = s.expose(|v| {
            views_locked &= SecureAlloc::is_locked(v.as_ptr()) == Some(true);
            v[..] == [i as u8 ^ 0x5a; 32]
        });
        readable &= ok == Ok(true);
        // A write goes through a locked view too, and is sealed again.
        readable &= s.expose_mut(|v| v.push(1)) == Ok(Ok(()));
        readable &= s.expose(|v| v.len()) == Ok(33);
    }
    let key = secalloc::secret::key_page_info().map(|k| k.secretmem);
    let made = arrays.len() + vecs.len();
    drop(arrays);
    drop(vecs);
    let after_drop = vm_lck_kib();
    println!(
        "RESULT made={made} failure={failure} before={before} first={} all={all} after_drop={after_drop} storage_locked={storage_locked} views_locked={views_locked} readable={readable} key={}",
        first.unwrap_or(0),
        key.map_or("none".into(), |s| s.to_string()),
    );
}

#[test]
fn a_hundred_secrets_live_and_read_back_under_a_64_kib_lock_limit() {
    if child_scenario().as_deref() == Some("small") {
        assert!(!has_cap_ipc_lock(), "child still has CAP_IPC_LOCK");
        assert_eq!(memlock_soft_limit(), Some(LIMIT));
        child();
        return;
    }
    let out = run_unprivileged_child(TEST, "small", LIMIT);
    assert!(out.status.success(), "child failed");
    let r = child_result(&out);
    assert_eq!(r["failure"], "none", "a secret was refused under 64 KiB");
    assert_eq!(r["made"], (2 * COUNT).to_string());
    assert_eq!(r["readable"], "true", "every secret reads back");
    assert_eq!(r["storage_locked"], "true", "every cell is locked");
    assert_eq!(r["views_locked"], "true", "every plaintext view is locked");
    let kib = |k: &str| r[k].parse::<u64>().unwrap();
    // Nothing of the budget is spent before the first secret; the first
    // costs the key page and one page of cells, both locked (the kernel
    // counts a `memfd_secret` page in VmLck), not a 64 KiB slab.
    assert_ne!(r["key"], "none", "the key page exists");
    assert_eq!(kib("before"), 0);
    assert_eq!(
        kib("first"),
        8,
        "first secret: key page + one page of cells"
    );
    // 200 cells of 64 bytes are ~12.5 KiB: a few pages beside the key page.
    assert!(kib("all") <= 24, "200 secrets locked {} KiB", kib("all"));
    // Dropped secrets give their pages back: only the key page stays.
    assert!(
        kib("after_drop") <= 4,
        "{} KiB still locked after every secret was dropped",
        kib("after_drop")
    );
}

const STRESS: &str = "small_slabs_serve_every_class_and_give_every_page_back";
const STRESS_LIMIT: u64 = 256 * 1024;

/// Random allocations of every small class from the fail-closed arena on
/// two threads, page-by-page slabs under a 256 KiB limit: contents intact,
/// fresh memory zero, every block locked, and every page unlocked again
/// once everything is freed.
fn stress_child() -> String {
    use std::alloc::{GlobalAlloc, Layout};
    let a = SecureAlloc::new();
    let work = |seed: u64| -> (u64, u64, bool) {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut live: Vec<(usize, Layout, u8)> = Vec::new();
        let (mut ops, mut refused, mut ok) = (0u64, 0u64, true);
        let mut live_bytes = 0usize;
        for _ in 0..200_000 {
            ops += 1;
            let r = next();
            if r % 100 < 55 && live_bytes < 32 * 1024 {
                let size = (1 + (next() % 16384) as usize) >> (next() % 8);
                let layout = Layout::from_size_align(size.max(1), 1 << (next() % 5)).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { a.alloc(layout) };
                if p.is_null() {
                    refused += 1;
                    continue;
                }
                // SAFETY: a fresh block of `layout.size()` bytes.
                let block = unsafe { std::slice::from_raw_parts_mut(p, layout.size()) };
                ok &= block.iter().all(|&b| b == 0);
                ok &= SecureAlloc::is_locked(p) == Some(true);
                let fill = (r >> 8) as u8 | 1;
                block.fill(fill);
                live_bytes += layout.size();
                live.push((p as usize, layout, fill));
            } else if !live.is_empty() {
                let (p, layout, fill) = live.swap_remove((next() % live.len() as u64) as usize);
                // SAFETY: a live block we filled.
                let block = unsafe { std::slice::from_raw_parts(p as *const u8, layout.size()) };
                ok &= block.iter().all(|&b| b == fill);
                // SAFETY: allocated above with this layout.
                unsafe { a.dealloc(p as *mut u8, layout) };
                live_bytes -= layout.size();
            }
        }
        for (p, layout, _) in live {
            // SAFETY: as above.
            unsafe { a.dealloc(p as *mut u8, layout) };
        }
        (ops, refused, ok)
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = [11u64, 23]
            .into_iter()
            .map(|seed| s.spawn(move || work(seed)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let intact = results.iter().all(|r| r.2);
    let refused: u64 = results.iter().map(|r| r.1).sum();
    format!(
        "RESULT intact={intact} refused={refused} locked_after={} arena_locked_after={}",
        vm_lck_kib(),
        a.stats().locked_bytes
    )
}

#[test]
fn small_slabs_serve_every_class_and_give_every_page_back() {
    if child_scenario().as_deref() == Some("stress") {
        assert!(!has_cap_ipc_lock(), "child still has CAP_IPC_LOCK");
        println!("{}", stress_child());
        return;
    }
    let out = run_unprivileged_child(STRESS, "stress", STRESS_LIMIT);
    assert!(out.status.success(), "child failed");
    let r = child_result(&out);
    assert_eq!(
        r["intact"], "true",
        "a block was not zero, locked or intact"
    );
    // 2 x 32 KiB of live requests fit in 256 KiB of page-by-page slabs (a
    // slab gives its pages back only once all its slots are free, so a
    // random mix of 36 classes needs room for fragmentation).
    assert_eq!(
        r["refused"], "0",
        "an allocation within the budget was refused"
    );
    assert_eq!(
        r["locked_after"], "0",
        "pages stayed locked after every free"
    );
    assert_eq!(r["arena_locked_after"], "0");
}

const TRIM: &str = "a_slab_gives_back_its_free_tail_pages";

/// Found by the issue-12 attack review: filling the 64 KiB budget with
/// secrets and dropping all but the first kept every page locked (a slab
/// gave its pages back only once all its slots were free), so no other
/// secret, and no re-key, fitted again. Now a slab gives back the free
/// pages at its end.
#[test]
fn a_slab_gives_back_its_free_tail_pages() {
    if child_scenario().as_deref() == Some("trim") {
        let mut all: Vec<Secret<[u8; 32]>> = Vec::new();
        while let Ok(s) = Secret::new([7; 32]) {
            all.push(s);
        }
        let filled = vm_lck_kib();
        let made = all.len();
        all.truncate(1);
        let after = vm_lck_kib();
        let big = Secret::new(vec![1u8; 2048]).is_ok();
        let rekeyed = secalloc::rekey().is_ok();
        println!(
            "RESULT made={made} filled={filled} after={after} big={big} rekeyed={rekeyed} first={:?}",
            all[0].expose(|k| k[0])
        );
        return;
    }
    let out = run_unprivileged_child(TRIM, "trim", LIMIT);
    assert!(out.status.success(), "child failed");
    let r = child_result(&out);
    assert!(r["made"].parse::<usize>().unwrap() > 900);
    assert!(
        r["after"].parse::<u64>().unwrap() <= 12,
        "{} KiB still locked",
        r["after"]
    );
    assert_eq!(r["big"], "true", "a 2 KiB secret fits again");
    assert_eq!(
        r["rekeyed"], "true",
        "a re-key (a second key page) fits again"
    );
    assert_eq!(r["first"], "Ok(7)");
}
