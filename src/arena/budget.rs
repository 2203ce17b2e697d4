//! The lock budget (`RLIMIT_MEMLOCK`) as a resource with one owner.
//!
//! Every range the arena locks or unlocks goes through here, so the heap's
//! counters always say how much of the budget it holds; refusals are
//! recorded here; and here is decided how much locked memory may sit idle
//! (empty slabs, cached large blocks) and what to give back before a request
//! is refused:
//!
//! - idle memory is capped relative to the limit (a 256 KiB container keeps
//!   no empty slab locked; an 8 MiB user keeps a few);
//! - when the kernel refuses a lock, [`reclaim_idle`] unlocks every idle
//!   slab and cached block of both heaps and the request is retried once;
//! - a request that can never be backed and locked — over the lock limit
//!   when it applies, over physical memory when it does not — is refused up
//!   front instead of being "locked on fault" and ending in the OOM killer;
//! - the first refusal that fails a fail-closed allocation prints one line
//!   on stderr (without allocating) naming the limit and the fixes.
//!
//! Remember (see the module docs of `sys`): `mlock2(MLOCK_ONFAULT)` charges
//! the whole range at once, and only `munlock`/`munmap` give the charge back.

use super::heap::Heap;
use super::size_class::SLAB_SIZE;
use super::LockPolicy;
use crate::sys;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Empty slabs a heap keeps committed and locked at most, so a free/alloc
/// cycle across a slab boundary does not pay an `munlock`/`mlock` pair.
const IDLE_SLABS_MAX: usize = 4;
/// Idle memory (slabs and cached large blocks) is kept only within this
/// fraction of the lock limit (1/16: 512 KiB of an 8 MiB budget, nothing of
/// a 256 KiB one beyond a single page-rounded share).
const IDLE_SHARE_SHIFT: u32 = 4;
/// Bytes of large blocks a heap may keep cached whatever its live heap:
/// enough for a program cycling a few buffers of several MiB.
const LARGE_CACHE_BYTES_MIN: usize = 32 << 20;
/// Share of physical memory the large-block cache may hold at most (1/8).
const LARGE_CACHE_RAM_SHIFT: u32 = 3;
/// Share of the lock limit the large-block cache may hold (1/4).
const LARGE_CACHE_SHARE_SHIFT: u32 = 2;

/// `CAP_IPC_LOCK` in this process: 0 = not read yet, 1 = absent, 2 = present.
static CAP_IPC_LOCK: AtomicU8 = AtomicU8::new(0);
/// Whether the refusal explanation was printed.
static EXPLAINED: AtomicU8 = AtomicU8::new(0);
/// Physical memory in bytes (0 = not read yet).
static PHYSICAL: AtomicUsize = AtomicUsize::new(0);

/// Reads the process's facts once (at arena start-up; allocation-free).
pub(crate) fn init() {
    let _ = has_cap_ipc_lock();
    let _ = physical_memory();
}

fn physical_memory() -> usize {
    match PHYSICAL.load(Ordering::Relaxed) {
        0 => {
            let bytes = sys::physical_memory();
            PHYSICAL.store(bytes, Ordering::Relaxed);
            bytes
        }
        bytes => bytes,
    }
}

/// Whether the kernel ignores `RLIMIT_MEMLOCK` for us (`CAP_IPC_LOCK` in
/// `CapEff`, bit 14).
fn has_cap_ipc_lock() -> bool {
    match CAP_IPC_LOCK.load(Ordering::Relaxed) {
        0 => {
            let present = read_cap_ipc_lock();
            CAP_IPC_LOCK.store(if present { 2 } else { 1 }, Ordering::Relaxed);
            present
        }
        v => v == 2,
    }
}

fn read_cap_ipc_lock() -> bool {
    let mut buf = [0u8; 4096];
    let Some(n) = sys::read_file(c"/proc/self/status", &mut buf) else {
        return false;
    };
    let text = buf.get(..n).unwrap_or_default();
    let key = b"CapEff:";
    let Some(at) = text.windows(key.len()).position(|w| w == key) else {
        return false;
    };
    let mut caps: u64 = 0;
    for &b in text
        .get(at + key.len()..)
        .unwrap_or_default()
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
    {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => break,
        };
        caps = caps << 4 | digit as u64;
    }
    caps & (1 << 14) != 0
}

/// Whether this process may lock without limit (`CAP_IPC_LOCK`, or an
/// unlimited `RLIMIT_MEMLOCK`), as found on the first call. Cached, for
/// paths that only choose a strategy by it: a later `setrlimit` is not seen.
pub(crate) fn lock_unlimited_at_start() -> bool {
    static SEEN: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 limited, 2 unlimited
    match SEEN.load(Ordering::Relaxed) {
        0 => {
            let unlimited = lock_limit().is_none();
            SEEN.store(if unlimited { 2 } else { 1 }, Ordering::Relaxed);
            unlimited
        }
        v => v == 2,
    }
}

/// The lock limit that applies to this process: the soft `RLIMIT_MEMLOCK`,
/// or `None` with `CAP_IPC_LOCK` or an unlimited limit.
pub(crate) fn lock_limit() -> Option<usize> {
    if has_cap_ipc_lock() {
        return None;
    }
    match sys::memlock_limit() {
        Ok((soft, _)) if soft != usize::MAX => Some(soft),
        _ => None,
    }
}

/// Below this lock limit threads do not spread over central-list shards
/// (each shard holds slabs of its own): 64 MiB, where 4 shards x 36 classes
/// x 64 KiB slabs would be 14% of the budget.
const SHARDING_LIMIT_MIN: usize = 64 << 20;

/// Whether threads may use separate central-list shards (the budget is
/// large enough, or does not apply).
pub(crate) fn shards_allowed() -> bool {
    lock_limit().is_none_or(|limit| limit >= SHARDING_LIMIT_MIN)
}

/// Below this lock limit the fail-closed heap commits its slabs page by
/// page (see `heap`'s module docs): 4 MiB. Under the 64 KiB still common
/// in containers a whole slab would not fit beside the key page; and a
/// program touching many size classes needs one 64 KiB slab for each (36
/// classes: 2.3 MiB) — with a 1 MiB cut-off, the issue-12 attack review
/// found an ordinary program that ran under 1020 KiB abort under 1 MiB
/// and 1.25 MiB.
const SMALL_SLABS_LIMIT: usize = 4 << 20;

/// Whether the fail-closed heap should commit slabs page by page, decided
/// once at its start-up from the lock limit then in force.
pub(crate) fn small_slabs() -> bool {
    #[cfg(loom)]
    return false;
    #[cfg(not(loom))]
    lock_limit().is_some_and(|limit| limit < SMALL_SLABS_LIMIT)
}

/// Empty slabs a heap may keep locked while idle.
pub(crate) fn idle_slab_cap() -> usize {
    match lock_limit() {
        Some(limit) => ((limit >> IDLE_SHARE_SHIFT) / SLAB_SIZE).min(IDLE_SLABS_MAX),
        None => IDLE_SLABS_MAX,
    }
}

/// Bytes of wiped large blocks a heap with `live_bytes` of live large
/// blocks may keep cached: as much as is live (a program replacing its big
/// buffers finds a wiped one of a fitting size, as glibc's heap would), at
/// least 32 MiB, at most 1/8 of physical memory, and never more than 1/4
/// of the lock limit.
pub(crate) fn large_cache_cap(live_bytes: usize) -> usize {
    let by_heap = live_bytes
        .max(LARGE_CACHE_BYTES_MIN)
        .min(physical_memory() >> LARGE_CACHE_RAM_SHIFT);
    match lock_limit() {
        Some(limit) => (limit >> LARGE_CACHE_SHARE_SHIFT).min(by_heap),
        None => by_heap,
    }
}

/// Whether a request of `len` bytes could ever be backed (and, for a
/// fail-closed heap, locked). Counts a refusal when the lock limit is what
/// rules it out.
pub(crate) fn admissible(heap: &Heap, len: usize) -> bool {
    // Memory the arena already holds (locked or not) counts: four 11 GiB
    // requests on a 23 GiB machine can never all be backed.
    #[cfg(not(loom))]
    let held: usize = super::HEAPS
        .iter()
        .map(|h| h.locked_bytes.load(Ordering::Relaxed) + h.unlocked_bytes.load(Ordering::Relaxed))
        .sum();
    #[cfg(loom)]
    let held = 0;
    if len.saturating_add(held) > physical_memory() {
        return false;
    }
    if heap.policy() == LockPolicy::FailClosed {
        if let Some(limit) = lock_limit() {
            if len > limit {
                heap.note_refusal(sys::OsError {
                    op: "mlock2",
                    errno: sys::Errno::ENOMEM,
                });
                return false;
            }
        }
    }
    true
}

/// Locks `[addr, addr + len)` for `heap` and counts it. `Some(true)`:
/// locked; `Some(false)`: refused, but the best-effort heap runs it unlocked
/// (counted as such); `None`: refused and the heap is fail-closed (nothing
/// counted; the caller must not hand the range out).
pub(crate) fn lock(heap: &Heap, addr: usize, len: usize) -> Option<bool> {
    match sys::mlock_on_fault(addr, len) {
        Ok(()) => {
            heap.locked_bytes.fetch_add(len, Ordering::Relaxed);
            Some(true)
        }
        Err(err) => {
            heap.note_refusal(err);
            if heap.policy() == LockPolicy::FailClosed {
                return None;
            }
            heap.unlocked_bytes.fetch_add(len, Ordering::Relaxed);
            Some(false)
        }
    }
}

/// Locks and counts `[addr, addr + len)` if the kernel allows, recording
/// nothing on refusal (the caller retries with less).
pub(crate) fn lock_quietly(heap: &Heap, addr: usize, len: usize) -> bool {
    let ok = sys::mlock_on_fault(addr, len).is_ok();
    if ok {
        heap.locked_bytes.fetch_add(len, Ordering::Relaxed);
    }
    ok
}

/// Gives back the budget of a range counted by [`lock`] (`locked` as it
/// returned) that is about to be unmapped or decommitted. Unmapping alone
/// returns the charge; `unlock_now` also calls `munlock` for a range that
/// stays mapped.
pub(crate) fn release(heap: &Heap, addr: usize, len: usize, locked: bool, unlock_now: bool) {
    if locked && unlock_now {
        let _ = sys::munlock(addr, len);
    }
    let counter = if locked {
        &heap.locked_bytes
    } else {
        &heap.unlocked_bytes
    };
    super::heap::sub_saturating(counter, len);
}

/// Gives back every piece of idle locked memory in the process that this
/// thread can reach: its own cached slots (so their slabs can empty), then
/// the empty slabs and cached large blocks of both heaps. Called with no
/// lock held, after a refusal, before the request is retried. Returns
/// whether an idle slab or cached block was given back. (Other threads' caches hold at most
/// 16 KiB per class each and return on their next refill or exit.)
pub(crate) fn reclaim_idle() -> bool {
    #[cfg(not(loom))]
    {
        let mut any = false;
        for idx in 0..super::HEAP_COUNT {
            let _ = super::thread_cache::with_cache(idx, |cache, heap| cache.flush(heap));
        }
        for heap in &super::HEAPS {
            any |= heap.reclaim_idle_slabs();
            any |= heap.large.evict_cache(heap);
        }
        any
    }
    #[cfg(loom)]
    false
}

/// [`explain_refusal`] for a refusal outside the heaps (the key page),
/// reporting what the fail-closed heap has locked.
#[cfg(not(loom))]
pub(crate) fn explain_key_refusal(asked: usize) {
    explain_refusal(&super::HEAPS[0], asked);
}

/// A limit for the refusal message: its digits, or "unlimited".
fn limit_text(limit: usize, digits: &mut [u8; 20]) -> &[u8] {
    if limit == usize::MAX {
        b"unlimited"
    } else {
        sys::decimal(limit, digits)
    }
}

/// Prints, once per process, why a fail-closed allocation of `asked` bytes
/// was refused and how to fix it. Allocation-free.
pub(crate) fn explain_refusal(heap: &Heap, asked: usize) {
    if EXPLAINED.swap(1, Ordering::Relaxed) != 0 {
        return;
    }
    let (soft, hard) = sys::memlock_limit().unwrap_or((usize::MAX, usize::MAX));
    let mut bufs = [[0u8; 20]; 4];
    let [a, b, c, d] = &mut bufs;
    let soft = limit_text(soft, a);
    let hard = limit_text(hard, b);
    let asked = sys::decimal(asked, c);
    let locked = sys::decimal(heap.locked_bytes.load(Ordering::Relaxed), d);
    for part in [
        &b"secalloc: refused to hand out unlocked memory: RLIMIT_MEMLOCK soft="[..],
        soft,
        b" hard=",
        hard,
        b" bytes, already locked=",
        locked,
        b", asked=",
        asked,
        b"; fix: raise the limit (ulimit -l, systemd LimitMEMLOCK=, docker --ulimit memlock=N:N), grant CAP_IPC_LOCK, or let it run unlocked: SecureAlloc::best_effort() in Rust, SECALLOC_LOCK=best-effort for the LD_PRELOAD library\n",
    ] {
        sys::write_stderr(part);
    }
}
