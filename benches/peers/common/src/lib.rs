//! What every child program of the peer benchmark shares: the allocator
//! workloads (run under whichever `#[global_allocator]` the binary installs),
//! readers for `/proc/self/status`, and the one-line result protocol that the
//! driver (`benches/peers/src/main.rs`) parses.
//!
//! Nothing here chooses an allocator: each `alloc-*` crate is a three-line
//! `main` that installs its allocator and calls [`alloc_main`].

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

/// Prefix of the line a child prints with its measurements.
pub const RESULT_TAG: &str = "PEERS_RESULT";

/// A field of `/proc/self/status` given in kB (`VmLck`, `VmHWM`, `VmRSS`),
/// in KiB. `None` if the field is missing (non-Linux, restricted /proc).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Whether this process holds `CAP_IPC_LOCK` in its effective set (bit 14
/// of `CapEff`), i.e. whether `RLIMIT_MEMLOCK` binds it at all.
pub fn has_cap_ipc_lock() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(caps & (1 << 14) != 0)
}

/// Tracks the largest `VmLck` seen at the workload's checkpoints. Sampling
/// only at chosen points (not from a thread) keeps the probe out of the
/// timings on a small machine.
#[derive(Default)]
pub struct LockProbe {
    pub max_kib: u64,
}

impl LockProbe {
    pub fn sample(&mut self) {
        if let Some(k) = status_kib("VmLck") {
            self.max_kib = self.max_kib.max(k);
        }
    }
}

/// Small deterministic generator (xorshift64): every allocator sees the same
/// sequence of sizes and slots.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `count` random alloc/free pairs, sizes 8..=1024 B, over 10,000 slots, so
/// that about 10k blocks are live at any time.
pub fn churn(count: usize, probe: &mut LockProbe) {
    const LIVE: usize = 10_000;
    let mut slots: Vec<Option<(*mut u8, Layout)>> = vec![None; LIVE];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..count {
        let r = rng.next_u64();
        let slot = &mut slots[(r as usize) % LIVE];
        if let Some((p, l)) = slot.take() {
            // SAFETY: allocated below with layout `l` and not freed since.
            unsafe { dealloc(p, l) };
        }
        let size = 8 + ((r >> 32) as usize % 1017);
        let l = Layout::from_size_align(size, 8).expect("valid layout");
        // SAFETY: `l` has a non-zero size.
        let p = unsafe { alloc(l) };
        if p.is_null() {
            handle_alloc_error(l);
        }
        // Touch both ends so the allocator cannot hand out untouched pages
        // for free.
        // SAFETY: `p` points to `size` writable bytes.
        unsafe {
            p.write(r as u8);
            p.add(size - 1).write(r as u8);
        }
        *slot = Some((p, l));
        if i == count / 2 {
            probe.sample();
        }
    }
    for (p, l) in slots.into_iter().flatten() {
        // SAFETY: live block allocated with layout `l`.
        unsafe { dealloc(p, l) };
    }
}

/// A `HashMap<String, Vec<u8>>` of `entries` entries (values 16..=128 B),
/// built, probed once per key, and dropped.
pub fn map(entries: usize, probe: &mut LockProbe) {
    let mut m: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..entries {
        m.insert(format!("user-{i:08}"), vec![i as u8; 16 + i % 113]);
    }
    let mut hits = 0usize;
    for i in (0..entries).step_by(7) {
        hits += m.contains_key(&format!("user-{i:08}")) as usize;
    }
    black_box(hits);
    probe.sample();
    drop(black_box(m));
}

/// One producer allocates `boxes` 64-byte boxes and hands them over in
/// batches; a consumer thread frees them (remote frees).
pub fn cross_thread(boxes: usize, probe: &mut LockProbe) {
    const BATCH: usize = 1024;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Box<[u8; 64]>>>(16);
    let consumer = std::thread::spawn(move || {
        let mut seen = 0u64;
        for batch in rx {
            for b in batch {
                seen = seen.wrapping_add(b[0] as u64);
            }
        }
        seen
    });
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..boxes {
        batch.push(Box::new([i as u8; 64]));
        if batch.len() == BATCH {
            tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .expect("consumer alive");
        }
        if i == boxes / 2 {
            probe.sample();
        }
    }
    tx.send(batch).expect("consumer alive");
    drop(tx);
    black_box(consumer.join().expect("consumer thread"));
}

/// `blocks` blocks of 1 MiB, each touched on every page and freed, with a
/// window of 4 live at once (large-buffer churn: mapping, faulting,
/// wiping and returning or caching big blocks).
pub fn big_blocks(blocks: usize, probe: &mut LockProbe) {
    const MIB: usize = 1 << 20;
    const WINDOW: usize = 4;
    let l = Layout::from_size_align(MIB, 16).expect("valid layout");
    let mut live = std::collections::VecDeque::with_capacity(WINDOW + 1);
    for i in 0..blocks {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(l) };
        if p.is_null() {
            handle_alloc_error(l);
        }
        for off in (0..MIB).step_by(4096) {
            // SAFETY: within the 1 MiB block.
            unsafe { p.add(off).write(i as u8) };
        }
        live.push_back(p);
        if live.len() > WINDOW {
            let old = live.pop_front().expect("non-empty");
            // SAFETY: allocated above with `l`.
            unsafe { dealloc(old, l) };
        }
        if i == WINDOW {
            probe.sample();
        }
    }
    for p in live {
        // SAFETY: allocated above with `l`.
        unsafe { dealloc(p, l) };
    }
}

/// The workloads by the name the driver passes.
pub const WORKLOADS: [&str; 4] = ["churn", "map", "xthread", "big"];

/// Entry point of every `alloc-*` binary: `<bin> <workload> <count>`.
/// Runs the workload once (a fresh process per run, so peak RSS is the
/// run's own) and prints one result line. `note` reports allocator-specific
/// facts after the run (e.g. secalloc's unlocked bytes).
pub fn alloc_main(note: impl Fn() -> String) {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: {} <churn|map|xthread|big> <count>", args[0]);
        std::process::exit(2);
    }
    let count: usize = args[2].parse().expect("count must be a number");
    let mut probe = LockProbe::default();
    let start = Instant::now();
    match args[1].as_str() {
        "churn" => churn(count, &mut probe),
        "map" => map(count, &mut probe),
        "xthread" => cross_thread(count, &mut probe),
        "big" => big_blocks(count, &mut probe),
        other => {
            eprintln!("unknown workload {other}");
            std::process::exit(2);
        }
    }
    let ns = start.elapsed().as_nanos();
    probe.sample();
    let rss = status_kib("VmHWM").unwrap_or(0);
    let note = note().replace(['\n', '|'], " ");
    println!(
        "{RESULT_TAG} ns={ns} rss_kib={rss} lck_kib={} note={note}",
        probe.max_kib
    );
}
