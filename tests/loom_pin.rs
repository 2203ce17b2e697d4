//! loom model of the pin/kill/wipe protocol that guards each secret's
//! storage (the key page's reader gate has its own, `loom_gate.rs`): the
//! wipe happens exactly once, never while a reader is pinned, and no reader
//! pins after a kill.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use secalloc::__unstable::pin::{PinState, PURGED};

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

/// The re-keying move's exclusive rewrite: a reader, a rewriter and a kill
/// (expiry or destroy, which take no lock). The rewrite never overlaps a
/// reader, no reader sees a half-written body, and the body is wiped
/// exactly once — never during the rewrite, whoever ends up claiming it.
#[test]
fn a_reader_a_rewrite_and_a_kill() {
    struct Body {
        pin: PinState,
        inside: AtomicUsize,  // readers between pin and unpin
        writing: AtomicUsize, // 1 while the rewrite runs
        wipes: AtomicUsize,   // wipes done
    }
    fn wipe(b: &Body) {
        assert_eq!(b.inside.load(Ordering::SeqCst), 0, "wiped under a reader");
        assert_eq!(
            b.writing.load(Ordering::SeqCst),
            0,
            "wiped during the rewrite"
        );
        b.wipes.fetch_add(1, Ordering::SeqCst);
    }
    loom::model(|| {
        let b = Arc::new(Body {
            pin: PinState::new(),
            inside: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            wipes: AtomicUsize::new(0),
        });
        let reader = {
            let b = b.clone();
            thread::spawn(move || {
                if b.pin.pin().is_ok() {
                    b.inside.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(
                        b.writing.load(Ordering::SeqCst),
                        0,
                        "read during the rewrite"
                    );
                    b.inside.fetch_sub(1, Ordering::SeqCst);
                    if b.pin.unpin() {
                        wipe(&b);
                    }
                }
            })
        };
        let writer = {
            let b = b.clone();
            thread::spawn(move || match b.pin.begin_exclusive() {
                Ok(()) => {
                    b.writing.store(1, Ordering::SeqCst);
                    assert_eq!(b.inside.load(Ordering::SeqCst), 0, "rewrite under a reader");
                    b.writing.store(0, Ordering::SeqCst);
                    if b.pin.end_exclusive() {
                        wipe(&b);
                    }
                }
                Err(must_wipe) => {
                    if must_wipe {
                        wipe(&b);
                    }
                }
            })
        };
        if b.pin.kill(secalloc::__unstable::pin::EXPIRED) {
            wipe(&b);
        }
        reader.join().unwrap();
        writer.join().unwrap();
        assert_eq!(b.wipes.load(Ordering::SeqCst), 1, "wiped exactly once");
    });
}
