//! loom model of the key page's reader gate: once `close` and `wait_empty`
//! have returned, no reader is inside and none can enter, whatever the
//! interleaving — readers on their own counters or sharing one.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use secalloc::__unstable::gate::ReaderGate;
use secalloc::__unstable::pin::PURGED;

struct Key {
    gate: ReaderGate,
    inside: AtomicUsize, // readers between enter and leave
    wiped: AtomicUsize,  // set by the closer once the gate is empty
}

fn model(slots: [usize; 2]) {
    loom::model(move || {
        let key = Arc::new(Key {
            gate: ReaderGate::new(),
            inside: AtomicUsize::new(0),
            wiped: AtomicUsize::new(0),
        });
        let readers: Vec<_> = slots
            .iter()
            .map(|&slot| {
                let key = key.clone();
                thread::spawn(move || {
                    if key.gate.enter(slot).is_ok() {
                        key.inside.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(
                            key.wiped.load(Ordering::SeqCst),
                            0,
                            "used the key after the wipe"
                        );
                        key.inside.fetch_sub(1, Ordering::SeqCst);
                        key.gate.leave(slot);
                    }
                })
            })
            .collect();
        assert!(key.gate.close(PURGED));
        key.gate.wait_empty();
        assert_eq!(
            key.inside.load(Ordering::SeqCst),
            0,
            "wiped with a reader inside"
        );
        key.wiped.store(1, Ordering::SeqCst);
        key.gate.finish();
        for r in readers {
            r.join().unwrap();
        }
        assert!(key.gate.is_finished());
        assert_eq!(key.gate.enter(slots[0]), Err(PURGED), "entered after close");
    });
}

#[test]
fn two_readers_on_their_own_counters_and_a_purge() {
    model([0, 1]);
}

#[test]
fn two_readers_sharing_a_counter_and_a_purge() {
    model([3, 3 + secalloc::__unstable::gate::GATE_SLOTS]);
}
