//! The allocator workloads under `secalloc::SecureAlloc` as the global
//! allocator.
//!
//! It uses the best-effort policy: the fail-closed policy would abort the
//! whole process (every `String` included) once `RLIMIT_MEMLOCK` runs out
//! on a machine without `CAP_IPC_LOCK`. So that best-effort cannot flatter
//! it, the result line reports VmLck (measured by the driver's probe) and,
//! here, how many bytes ran unlocked and how often the kernel refused.

use secalloc::SecureAlloc;

#[global_allocator]
static GLOBAL: SecureAlloc = SecureAlloc::best_effort();

fn note() -> String {
    let s = GLOBAL.stats();
    format!(
        "mapped={}KiB locked={}KiB unlocked={}KiB refusals={}",
        s.mapped_bytes / 1024,
        s.locked_bytes / 1024,
        s.unlocked_bytes / 1024,
        s.lock_refusals
    )
}

fn main() {
    peers_common::alloc_main(note);
}
