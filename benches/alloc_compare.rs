//! SecureAlloc against the system allocator (glibc) and zeroizing-alloc over
//! the system allocator, in one process and one run, interleaved round by
//! round (A B C A B C ...), printing medians of process CPU time and ratios to the system
//! allocator. The three are used as explicit allocator values (not as the
//! global allocator), so the same code runs on each.
//!
//! Run: `cargo bench --bench alloc_compare` (add `-- --quick` for a smoke run,
//! `-- --only churn` for the workloads whose name contains `churn`).

use allocator_api2::alloc::{AllocError, Allocator};
use allocator_api2::vec::Vec as AVec;
use secalloc::{CheckLevel, SecureAlloc};
use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;
#[path = "common/cpu.rs"]
mod cpu;
use cpu::process_cpu;
use std::time::Duration;
use zeroizing_alloc::ZeroAlloc;

/// Presents any `GlobalAlloc` through the allocator API.
#[derive(Clone, Copy)]
struct Api<G: GlobalAlloc + Copy>(G);

// SAFETY: forwards to a `GlobalAlloc`, which upholds the same contract.
unsafe impl<G: GlobalAlloc + Copy> Allocator for Api<G> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Err(AllocError);
        }
        // SAFETY: non-zero size.
        let p = unsafe { self.0.alloc(layout) };
        NonNull::new(p)
            .map(|p| NonNull::slice_from_raw_parts(p, layout.size()))
            .ok_or(AllocError)
    }
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.dealloc(ptr.as_ptr(), layout) }
    }
}

#[derive(Clone, Copy)]
struct ZeroSys;
// SAFETY: forwards to zeroizing-alloc over System.
unsafe impl GlobalAlloc for ZeroSys {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the layout has a non-zero size.
        unsafe { ZeroAlloc(System).alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the pointer came from this allocator with this layout and is freed once.
        unsafe { ZeroAlloc(System).dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        // SAFETY: live block from this allocator with this layout; the new size is non-zero.
        unsafe { ZeroAlloc(System).realloc(p, l, n) }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Scale {
    churn_ops: usize,
    map_entries: usize,
    cross_boxes: usize,
    big_blocks: usize,
    big_buffer_replacements: usize,
    rounds: usize,
}

fn churn<G: GlobalAlloc + Copy>(a: G, s: &Scale) {
    const LIVE: usize = 10_000;
    let mut slots: Vec<(*mut u8, Layout)> = vec![(std::ptr::null_mut(), Layout::new::<u8>()); LIVE];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..s.churn_ops {
        let r = rng.next();
        let i = (r as usize) % LIVE;
        let (p, l) = slots[i];
        if !p.is_null() {
            // SAFETY: allocated below with `l`.
            unsafe { a.dealloc(p, l) };
        }
        let size = 8 + ((r >> 32) as usize % 1017);
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(l) };
        // SAFETY: fresh block of `size` bytes.
        unsafe { p.write(r as u8) };
        slots[i] = (p, l);
    }
    for (p, l) in slots {
        if !p.is_null() {
            // SAFETY: live block with layout `l`.
            unsafe { a.dealloc(p, l) };
        }
    }
}

/// The independent harness's churn: like [`churn`], but each block is
/// written at both ends when allocated and read at both ends before it is
/// freed, as a program's own data would be.
fn churn_both_ends<G: GlobalAlloc + Copy>(a: G, s: &Scale) {
    const LIVE: usize = 10_000;
    let mut slots: Vec<(*mut u8, Layout)> = vec![(std::ptr::null_mut(), Layout::new::<u8>()); LIVE];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sum = 0u64;
    for _ in 0..s.churn_ops {
        let r = rng.next();
        let i = (r as usize) % LIVE;
        let (p, l) = slots[i];
        if !p.is_null() {
            // SAFETY: a live block of `l.size()` bytes, written at both ends.
            unsafe {
                sum += u64::from(p.read()) + u64::from(p.add(l.size() - 1).read());
                a.dealloc(p, l);
            }
        }
        let size = 8 + ((r >> 32) as usize % 1017);
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(l) };
        // SAFETY: fresh block of `size` bytes.
        unsafe {
            p.write(r as u8);
            p.add(size - 1).write((r >> 8) as u8);
        }
        slots[i] = (p, l);
    }
    for (p, l) in slots {
        if !p.is_null() {
            // SAFETY: live block with layout `l`.
            unsafe { a.dealloc(p, l) };
        }
    }
    std::hint::black_box(sum);
}

/// The shape of mimalloc-bench's `malloc-large`: 20 live buffers of
/// 5–25 MiB, replaced at random, each value-initialised (allocated, then
/// zero-filled by the program, as `new char[n]()` does).
fn big_buffers<G: GlobalAlloc + Copy>(a: G, s: &Scale) {
    const LIVE: usize = 20;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut next_layout = || {
        let size = (5 << 20) + (rng.next() as usize % (20 << 20));
        Layout::from_size_align(size, 16).unwrap()
    };
    let fill = |l: Layout| {
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(l) };
        // SAFETY: a fresh block of `l.size()` bytes.
        unsafe { p.write_bytes(0, l.size()) };
        (std::hint::black_box(p), l)
    };
    let mut live: Vec<(*mut u8, Layout)> = (0..LIVE).map(|_| fill(next_layout())).collect();
    let mut pick = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..s.big_buffer_replacements {
        let i = pick.next() as usize % LIVE;
        let (p, l) = live[i];
        // SAFETY: allocated by `fill` with `l`.
        unsafe { a.dealloc(p, l) };
        live[i] = fill(next_layout());
    }
    for (p, l) in live {
        // SAFETY: as above.
        unsafe { a.dealloc(p, l) };
    }
}

/// The map workload's type: keys and values in the allocator under test.
type BenchMap<G> =
    hashbrown::HashMap<AVec<u8, Api<G>>, AVec<u8, Api<G>>, hashbrown::DefaultHashBuilder, Api<G>>;

fn map_build<G: GlobalAlloc + Copy>(a: G, s: &Scale) {
    let api = Api(a);
    let mut map: BenchMap<G> = hashbrown::HashMap::with_hasher_in(Default::default(), api);
    for i in 0..s.map_entries {
        let mut k = AVec::with_capacity_in(16, api);
        k.extend_from_slice(format!("key-{i}").as_bytes());
        let mut v = AVec::with_capacity_in(i % 64 + 1, api);
        v.resize(i % 64 + 1, i as u8);
        map.insert(k, v);
    }
    assert_eq!(map.len(), s.map_entries);
    drop(map);
}

#[derive(Clone, Copy)]
struct SendPtr(*mut u8);
// SAFETY: the pointer is handed over, never shared.
unsafe impl Send for SendPtr {}

fn cross_thread<G: GlobalAlloc + Copy + Send + 'static>(a: G, s: &Scale) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<SendPtr>>(64);
    let n = s.cross_boxes;
    let l = Layout::from_size_align(64, 8).unwrap();
    let consumer = std::thread::spawn(move || {
        for batch in rx {
            for p in batch {
                // SAFETY: allocated by the producer with `l`.
                unsafe { a.dealloc(p.0, l) };
            }
        }
    });
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(l) };
        // SAFETY: fresh 64-byte block.
        unsafe { p.write(i as u8) };
        batch.push(SendPtr(p));
        if batch.len() == 1000 {
            tx.send(std::mem::replace(&mut batch, Vec::with_capacity(1000)))
                .unwrap();
        }
    }
    tx.send(batch).unwrap();
    drop(tx);
    consumer.join().unwrap();
}

fn big_blocks<G: GlobalAlloc + Copy>(a: G, s: &Scale) {
    let l = Layout::from_size_align(1 << 20, 16).unwrap();
    for i in 0..s.big_blocks {
        // SAFETY: non-zero size.
        let p = unsafe { a.alloc(l) };
        // SAFETY: fresh 1 MiB block.
        unsafe { p.write_bytes(i as u8, 1 << 20) };
        // Keep the optimiser from deleting the alloc/write/free as dead code.
        let p = std::hint::black_box(p);
        // SAFETY: allocated above with `l`.
        unsafe { a.dealloc(p, l) };
    }
}

/// The bandwidth floor for the 1 MiB workload: touch + plain memset of the
/// same bytes, no allocation.
fn memset_only(s: &Scale) {
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..s.big_blocks {
        buf.fill(i as u8);
        std::hint::black_box(&mut buf);
        buf.fill(0);
        std::hint::black_box(&mut buf);
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: then it
    // is only a smoke test at a tiny scale.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let quick = smoke || std::env::args().any(|a| a == "--quick");
    let s = if smoke {
        Scale {
            churn_ops: 20_000,
            map_entries: 3_000,
            cross_boxes: 10_000,
            big_blocks: 20,
            big_buffer_replacements: 5,
            rounds: 1,
        }
    } else if quick {
        Scale {
            churn_ops: 200_000,
            map_entries: 30_000,
            cross_boxes: 100_000,
            big_blocks: 200,
            big_buffer_replacements: 60,
            rounds: 3,
        }
    } else {
        Scale {
            churn_ops: 2_000_000,
            map_entries: 300_000,
            cross_boxes: 1_000_000,
            big_blocks: 2000,
            big_buffer_replacements: 400,
            rounds: 7,
        }
    };
    let secure = SecureAlloc::new();
    // The check levels side by side on the small-object workloads (large
    // blocks are not checked): `Default` is what `new()` does.
    let unchecked = SecureAlloc::new().with_checks(CheckLevel::Off);
    let full = SecureAlloc::new().with_checks(CheckLevel::Full);
    type Run = Box<dyn Fn(&Scale)>;
    let workloads: Vec<(&str, Vec<(&str, Run)>)> = vec![
        (
            "churn 8–1024 B, 10k live",
            vec![
                ("system", Box::new(|s| churn(System, s))),
                ("zeroizing-alloc", Box::new(|s| churn(ZeroSys, s))),
                ("SecureAlloc", Box::new(move |s| churn(secure, s))),
                (
                    "SecureAlloc, checks off",
                    Box::new(move |s| churn(unchecked, s)),
                ),
                (
                    "SecureAlloc, checks full",
                    Box::new(move |s| churn(full, s)),
                ),
            ],
        ),
        (
            "churn 8–1024 B, both ends touched",
            vec![
                ("system", Box::new(|s| churn_both_ends(System, s))),
                ("zeroizing-alloc", Box::new(|s| churn_both_ends(ZeroSys, s))),
                ("SecureAlloc", Box::new(move |s| churn_both_ends(secure, s))),
                (
                    "SecureAlloc, checks off",
                    Box::new(move |s| churn_both_ends(unchecked, s)),
                ),
                (
                    "SecureAlloc, checks full",
                    Box::new(move |s| churn_both_ends(full, s)),
                ),
            ],
        ),
        (
            "HashMap 300k build+drop",
            vec![
                ("system", Box::new(|s| map_build(System, s))),
                ("zeroizing-alloc", Box::new(|s| map_build(ZeroSys, s))),
                ("SecureAlloc", Box::new(move |s| map_build(secure, s))),
                (
                    "SecureAlloc, checks off",
                    Box::new(move |s| map_build(unchecked, s)),
                ),
                (
                    "SecureAlloc, checks full",
                    Box::new(move |s| map_build(full, s)),
                ),
            ],
        ),
        (
            "cross-thread 64 B frees",
            vec![
                ("system", Box::new(|s| cross_thread(System, s))),
                ("zeroizing-alloc", Box::new(|s| cross_thread(ZeroSys, s))),
                ("SecureAlloc", Box::new(move |s| cross_thread(secure, s))),
                (
                    "SecureAlloc, checks off",
                    Box::new(move |s| cross_thread(unchecked, s)),
                ),
                (
                    "SecureAlloc, checks full",
                    Box::new(move |s| cross_thread(full, s)),
                ),
            ],
        ),
        (
            "1 MiB blocks touched+freed",
            vec![
                ("system", Box::new(|s| big_blocks(System, s))),
                ("zeroizing-alloc", Box::new(|s| big_blocks(ZeroSys, s))),
                ("SecureAlloc", Box::new(move |s| big_blocks(secure, s))),
                ("memset floor", Box::new(memset_only)),
            ],
        ),
        (
            "big buffers 5–25 MiB, 20 live",
            vec![
                ("system", Box::new(|s| big_buffers(System, s))),
                ("zeroizing-alloc", Box::new(|s| big_buffers(ZeroSys, s))),
                ("SecureAlloc", Box::new(move |s| big_buffers(secure, s))),
            ],
        ),
    ];
    println!("| workload | allocator | median | min–max | ratio to system |");
    println!("|---|---|---:|---:|---:|");
    // `-- --only TEXT` runs just the workloads whose name contains TEXT.
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let mut level_costs = Vec::new();
    for (name, contenders) in &workloads {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let position = |who: &str| contenders.iter().position(|(w, _)| *w == who);
        let levels = (
            position("SecureAlloc"),
            position("SecureAlloc, checks off"),
            position("SecureAlloc, checks full"),
        );
        // A check level's cost is a few per cent against per-round swings
        // of ±10–40% on a shared machine: the workloads that compare levels
        // (short ones) run three times the rounds, so that the median of the
        // paired ratios moves by less than the figure it reports.
        let rounds = if levels.0.is_some() {
            s.rounds * 3
        } else {
            s.rounds
        };
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
        for round in 0..rounds {
            // Each round starts one contender later, so none always runs
            // right after the same neighbour (or first, on a cold cache).
            for k in 0..contenders.len() {
                let i = (round + k) % contenders.len();
                let t = process_cpu();
                (contenders[i].1)(&s);
                times[i].push(process_cpu() - t);
            }
        }
        if let (Some(d), Some(off), Some(full)) = levels {
            // Paired per round (the two ran moments apart), before the
            // sorts below: what a level costs, with less of the machine's
            // drift than a ratio of medians.
            let paired = |level: usize| {
                let mut r: Vec<f64> = (0..rounds)
                    .map(|k| times[level][k].as_secs_f64() / times[off][k].as_secs_f64())
                    .collect();
                r.sort_by(f64::total_cmp);
                (r[r.len() / 2], r[0], r[r.len() - 1])
            };
            level_costs.push((name, paired(d), paired(full)));
        }
        let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
        for (i, (who, _)) in contenders.iter().enumerate() {
            let (lo, hi) = (times[i][0], times[i][times[i].len() - 1]);
            println!(
                "| {name} | {who} | {:.2} ms | {:.2}–{:.2} ms | {:.2}× |",
                medians[i].as_secs_f64() * 1e3,
                lo.as_secs_f64() * 1e3,
                hi.as_secs_f64() * 1e3,
                medians[i].as_secs_f64() / medians[0].as_secs_f64()
            );
        }
    }
    println!(
        "\n{} rounds interleaved ({} where check levels are compared); {}",
        s.rounds,
        s.rounds * 3,
        if quick { "--quick scale" } else { "full scale" }
    );
    if !level_costs.is_empty() {
        println!("\nWhat each check level costs: per round, its time over checks off's; median (min–max)\n");
        println!("| workload | default / off | full / off |");
        println!("|---|---:|---:|");
        for (name, d, f) in level_costs {
            println!(
                "| {name} | {:.3}× ({:.2}–{:.2}) | {:.2}× ({:.2}–{:.2}) |",
                d.0, d.1, d.2, f.0, f.1, f.2
            );
        }
    }
}
