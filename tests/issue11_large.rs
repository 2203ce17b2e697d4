//! Issue 11, large blocks: a freed big block is reused, wiped, by the next
//! request it fits — a smaller one included — instead of a fresh mapping
//! faulted in page by page; a much bigger cached block gives its tail (and
//! that tail's lock budget) back; the cache is sized by the live heap, so a
//! program cycling 5–25 MiB buffers keeps finding wiped ones.
//!
//! Faults are read from `/proc/thread-self/stat` (minor faults of this
//! thread alone), so other tests' threads cannot disturb the count. The
//! checks run one after another in one test: they read process-wide
//! statistics of the shared heap.

use allocator_api2::alloc::{Allocator, Layout};
use secalloc::SecureAlloc;
use std::ptr::NonNull;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// Minor page faults taken by the calling thread so far.
fn thread_minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the parenthesised command name; minflt is field 10.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(7).unwrap().parse().unwrap()
}

/// A `kB` field of a `/proc` file (`VmLck:` of status, `MemTotal:` of
/// meminfo), in bytes.
fn proc_kib_field(path: &str, field: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let kib: usize = text
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// `VmLck` of this process in bytes.
fn vm_locked() -> usize {
    proc_kib_field("/proc/self/status", "VmLck:")
}

fn alloc(len: usize) -> NonNull<u8> {
    SecureAlloc::new()
        .allocate(Layout::from_size_align(len, 16).unwrap())
        .expect("large allocation")
        .cast()
}

fn free(ptr: NonNull<u8>, len: usize) {
    // SAFETY: allocated by `alloc(len)` and freed once.
    unsafe { SecureAlloc::new().deallocate(ptr, Layout::from_size_align(len, 16).unwrap()) }
}

/// Writes one byte per page (what value-initialising does, page-wise).
fn touch(ptr: NonNull<u8>, len: usize, value: u8) {
    for off in (0..len).step_by(PAGE) {
        // SAFETY: inside the live block of `len` bytes.
        unsafe { ptr.as_ptr().add(off).write_volatile(value) };
    }
}

/// Whether one byte per page reads zero.
fn reads_zero(ptr: NonNull<u8>, len: usize) -> bool {
    // SAFETY: inside the live block of `len` bytes.
    (0..len)
        .step_by(PAGE)
        .all(|off| unsafe { ptr.as_ptr().add(off).read_volatile() } == 0)
}

/// The cache's room depends on the lock limit (a quarter of it); these
/// checks need the room an unlimited or privileged process has.
fn unlimited() -> bool {
    let ok = support::has_cap_ipc_lock() || support::memlock_soft_limit().is_none();
    if !ok {
        eprintln!("skipped: needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK");
    }
    ok
}

#[path = "support/mod.rs"]
mod support;

fn a_bigger_freed_block_serves_a_smaller_request_without_faults() {
    // 12 MiB: bigger than any block the cache kept before (8 MiB).
    let big = alloc(12 * MIB);
    touch(big, 12 * MIB, 0xA5);
    free(big, 12 * MIB);
    let before = thread_minor_faults();
    let again = alloc(10 * MIB);
    let wiped = reads_zero(again, 10 * MIB);
    touch(again, 10 * MIB, 0x5A);
    let faults = thread_minor_faults() - before;
    free(again, 10 * MIB);
    assert!(wiped, "a reused block must come back wiped");
    assert!(
        faults < 64,
        "10 MiB served from the freed 12 MiB block took {faults} page faults (fresh: 2560)"
    );
}

fn replacing_big_buffers_reuses_wiped_blocks() {
    // The shape of mimalloc-bench's malloc-large, smaller: 8 live buffers
    // of 5–13 MiB, replaced at random, each value-initialised page-wise.
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live: Vec<(NonNull<u8>, usize)> = (0..8)
        .map(|_| {
            let len = 5 * MIB + (next() as usize % (8 * MIB));
            let p = alloc(len);
            touch(p, len, 1);
            (p, len)
        })
        .collect();
    let before = thread_minor_faults();
    let mut pages_touched = 0;
    for _ in 0..40 {
        let i = next() as usize % live.len();
        let (p, len) = live[i];
        free(p, len);
        let len = 5 * MIB + (next() as usize % (8 * MIB));
        let p = alloc(len);
        touch(p, len, 2);
        pages_touched += len / PAGE;
        live[i] = (p, len);
    }
    let faults = (thread_minor_faults() - before) as usize;
    for (p, len) in live {
        free(p, len);
    }
    assert!(
        faults * 4 < pages_touched,
        "{faults} faults for {pages_touched} pages touched: freed buffers were not reused"
    );
}

fn a_much_bigger_cached_block_gives_its_tail_back() {
    let big = alloc(24 * MIB);
    touch(big, 24 * MIB, 3);
    free(big, 24 * MIB);
    let cached_locked = vm_locked();
    let small = alloc(5 * MIB);
    touch(small, 5 * MIB, 4);
    let after = vm_locked();
    let usable = SecureAlloc::usable_size(small.as_ptr()).unwrap();
    free(small, 5 * MIB);
    assert!(
        usable < 6 * MIB,
        "a 5 MiB request kept {usable} bytes of a 24 MiB block"
    );
    assert!(
        cached_locked - after >= 18 * MIB,
        "the trimmed tail kept its lock budget: VmLck {cached_locked} -> {after}"
    );
}

/// Child: fills the process's map-count limit, then makes a cached 1 MiB
/// block serve a 64 KiB request (a trim, which must split the mapping to
/// make the new guard) and writes one byte past the usable size. It must
/// die of SIGSEGV: trimmed or not, the block has a guard after it.
fn child_write_past_a_reused_block_at_the_map_count_limit() {
    let big = alloc(MIB);
    free(big, MIB);
    let mut filled = 0;
    loop {
        // Alternating protections, so that neighbouring pages never merge.
        let prot = if filled % 2 == 0 {
            libc::PROT_READ
        } else {
            libc::PROT_NONE
        };
        // SAFETY: a fresh anonymous mapping; nothing else is affected.
        let m = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if m == libc::MAP_FAILED {
            break;
        }
        filled += 1;
    }
    let small = alloc(64 << 10);
    let usable = SecureAlloc::usable_size(small.as_ptr()).unwrap();
    println!("filled {filled} mappings; usable {usable}");
    // SAFETY: deliberately one byte past the block: the guard page.
    unsafe { small.as_ptr().add(usable).write_volatile(0x41) };
    println!("RESULT wrote_past_guard=1");
}

fn a_reused_block_keeps_its_guard_at_the_map_count_limit() {
    let out = support::run_child(
        "a_reused_block_keeps_its_guard_at_the_map_count_limit",
        "write_past_guard",
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "a write past a reused block did not fault: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Physical memory in bytes, from `/proc/meminfo`.
fn physical_memory() -> usize {
    proc_kib_field("/proc/meminfo", "MemTotal:")
}

fn idle_cached_blocks_never_refuse_a_request_that_fits_physical_memory() {
    // Nothing here is touched, so none of it costs real memory: half of
    // RAM live, a block of RAM/8 freed into the cache, then a request that
    // fits beside the live half only if the idle cached block is given back.
    let ram = physical_memory() & !(MIB - 1);
    let live = alloc(ram / 2);
    let cached_len = ram / 8 - MIB;
    let cached = alloc(cached_len);
    free(cached, cached_len);
    let cached_bytes = SecureAlloc::new().stats().large_cached_bytes;
    let request = ram / 2 - 64 * MIB;
    let got = SecureAlloc::new().allocate(Layout::from_size_align(request, 16).unwrap());
    let ok = got.is_ok();
    if let Ok(block) = got {
        free(block.cast(), request);
    }
    free(live, ram / 2);
    assert!(
        cached_bytes >= cached_len,
        "setup: the {cached_len}-byte block was not cached ({cached_bytes})"
    );
    assert!(
        ok,
        "{request} bytes refused beside {} live with {cached_bytes} idle cached (RAM {ram})",
        ram / 2
    );
}

fn freeing_a_barely_touched_block_faults_in_nothing() {
    // A 1 MiB block with its first and last words written, as a C program
    // stamping a header and a trailer does: the wipe must zero those two
    // pages, not fault in the 254 the program never touched.
    let len = MIB;
    let p = alloc(len);
    // SAFETY: both ends of the live block.
    unsafe {
        p.as_ptr().write_volatile(1);
        p.as_ptr().add(len - 1).write_volatile(2);
    }
    let before = thread_minor_faults();
    free(p, len);
    let faults = thread_minor_faults() - before;
    assert!(
        faults < 16,
        "freeing a 1 MiB block with 2 pages touched took {faults} page faults"
    );
}

fn main() {
    if support::child_scenario().as_deref() == Some("write_past_guard") {
        child_write_past_a_reused_block_at_the_map_count_limit();
        return;
    }
    support::run_checks(&[(
        "freeing_a_barely_touched_block_faults_in_nothing",
        freeing_a_barely_touched_block_faults_in_nothing,
    )]);
    if !unlimited() {
        return;
    }
    support::run_checks(&[
        (
            "a_bigger_freed_block_serves_a_smaller_request_without_faults",
            a_bigger_freed_block_serves_a_smaller_request_without_faults,
        ),
        (
            "replacing_big_buffers_reuses_wiped_blocks",
            replacing_big_buffers_reuses_wiped_blocks,
        ),
        (
            "a_much_bigger_cached_block_gives_its_tail_back",
            a_much_bigger_cached_block_gives_its_tail_back,
        ),
        (
            "a_reused_block_keeps_its_guard_at_the_map_count_limit",
            a_reused_block_keeps_its_guard_at_the_map_count_limit,
        ),
        (
            "idle_cached_blocks_never_refuse_a_request_that_fits_physical_memory",
            idle_cached_blocks_never_refuse_a_request_that_fits_physical_memory,
        ),
    ]);
}
