//! `fork()` support: every arena lock is taken before `fork` and released on
//! both sides, so a child forked while another thread held a lock can still
//! allocate; and the child, which inherits no memory locks from the kernel,
//! locks its heap again.

use super::HEAPS;

/// Registers the `pthread_atfork` handlers (once, at arena start-up).
pub(crate) fn register_handlers() {
    // A failure leaves fork without the handlers; there is nothing better to
    // do inside an allocator than carry on, and it is vanishingly rare.
    let _ = crate::sys::register_atfork(prepare, parent, child);
}

unsafe extern "C" fn prepare() {
    for heap in &HEAPS {
        heap.lock_all();
    }
}

unsafe extern "C" fn parent() {
    for heap in HEAPS.iter().rev() {
        // SAFETY: `prepare` took every lock of every heap in this thread.
        unsafe { heap.unlock_all() };
    }
}

unsafe extern "C" fn child() {
    for heap in HEAPS.iter().rev() {
        // SAFETY: `prepare` took every lock in the thread that forked, which
        // is the only thread of the child.
        unsafe { heap.unlock_all() };
    }
    for heap in &HEAPS {
        heap.relock_after_fork();
    }
}
