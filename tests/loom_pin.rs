//! loom model of the pin/kill/wipe protocol that guards each secret's
//! storage (the key page's reader gate has its own, `loom_gate.rs`): the
//! wipe happens exactly once, never while a reader is pinned, and no reader
//! pins after a kill.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use secalloc::pin::{PinState, PURGED};

struct Object {
    pin: PinState,
    inside: AtomicUsize, // readers currently between pin and unpin
    wipes: AtomicUsize,  // how many times it was wiped
}

fn wipe(o: &Object) {
    assert_eq!(
        o.inside.load(Ordering::SeqCst),
        0,
        "wiped while a reader is inside"
    );
    o.wipes.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn two_readers_and_a_purge() {
    loom::model(|| {
        let o = Arc::new(Object {
            pin: PinState::new(),
            inside: AtomicUsize::new(0),
            wipes: AtomicUsize::new(0),
        });
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let o = o.clone();
                thread::spawn(move || {
                    if o.pin.pin().is_ok() {
                        o.inside.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(o.wipes.load(Ordering::SeqCst), 0, "read after wipe");
                        o.inside.fetch_sub(1, Ordering::SeqCst);
                        if o.pin.unpin() {
                            wipe(&o);
                        }
                    }
                })
            })
            .collect();
        if o.pin.kill(PURGED) {
            wipe(&o);
        }
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(o.wipes.load(Ordering::SeqCst), 1, "wiped exactly once");
        assert_eq!(o.pin.pin(), Err(PURGED));
    });
}
