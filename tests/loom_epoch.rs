//! loom model of the re-key epoch switch (`secret/key_page.rs`,
//! `secret/registry.rs`): a secret sealed under key generation `e` is
//! committed (registered) only while `e` is current, checked under the
//! registry lock; the re-key stores the new epoch, then takes that lock
//! once (the barrier); a key is retired only when, after the switch, the
//! count of secrets under it is zero — and retiring closes its reader
//! gate and waits for the sealers inside it.
//!
//! The property: no secret is ever committed under a key that is wiped,
//! and a stale seal (its commit refused) still finds its key usable to
//! undo the seal. The model uses the real `ReaderGate`; the epoch, lock
//! and count stand for `CURRENT`, a registry shard and its `sealed` table.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use secalloc::__unstable::gate::ReaderGate;

const RETIRED: u32 = 1;

struct World {
    current: AtomicU64,
    gates: [ReaderGate; 2],     // key pages by epoch % 2
    wiped: [AtomicUsize; 2],    // key page wiped
    shard: Mutex<[usize; 2]>,   // live secrets by epoch % 2
    committed: Mutex<Vec<u64>>, // epochs secrets were committed under
}

/// A creator: enters the current key's gate, "seals", commits if its
/// epoch is still current, else undoes the seal with the same key and
/// tries again.
fn create(w: &World) {
    for _ in 0..3 {
        let e = w.current.load(Ordering::SeqCst);
        let gate = &w.gates[(e % 2) as usize];
        if gate.enter(0).is_err() {
            continue; // retired under us: start over with the new epoch
        }
        assert_eq!(
            w.wiped[(e % 2) as usize].load(Ordering::SeqCst),
            0,
            "sealed with a wiped key"
        );
        let committed = {
            let mut shard = w.shard.lock().unwrap();
            if w.current.load(Ordering::SeqCst) == e {
                shard[(e % 2) as usize] += 1;
                w.committed.lock().unwrap().push(e);
                true
            } else {
                false
            }
        };
        // Undoing a stale seal needs the key: still not wiped.
        assert_eq!(
            w.wiped[(e % 2) as usize].load(Ordering::SeqCst),
            0,
            "undo with a wiped key"
        );
        gate.leave(0);
        if committed {
            return;
        }
    }
}

/// A re-key from epoch 0 to 1, then the retirement of 0 if nothing is
/// sealed under it.
fn rekey(w: &World) {
    w.current.store(1, Ordering::SeqCst);
    drop(w.shard.lock().unwrap()); // the barrier
    let under_old = w.shard.lock().unwrap()[0];
    if under_old == 0 && w.gates[0].close(RETIRED) {
        w.gates[0].wait_empty();
        w.wiped[0].store(1, Ordering::SeqCst);
        w.gates[0].finish();
    }
}

#[test]
fn a_secret_is_never_committed_under_a_retired_key() {
    loom::model(|| {
        let w = Arc::new(World {
            current: AtomicU64::new(0),
            gates: [ReaderGate::new(), ReaderGate::new()],
            wiped: [AtomicUsize::new(0), AtomicUsize::new(0)],
            shard: Mutex::new([0, 0]),
            committed: Mutex::new(Vec::new()),
        });
        let creator = {
            let w = w.clone();
            thread::spawn(move || create(&w))
        };
        rekey(&w);
        creator.join().unwrap();
        let committed = w.committed.lock().unwrap().clone();
        for e in committed {
            assert_eq!(
                w.wiped[(e % 2) as usize].load(Ordering::SeqCst),
                0,
                "a secret committed under epoch {e}, whose key was wiped"
            );
        }
    });
}
