//! The cost of `Secret` next to the floor for any encrypting container:
//! `ring`'s own AES-256-GCM seal + open of the same bytes (and each alone, to
//! know the floor of a create and of a read). Interleaved rounds,
//! medians, ratios.
//!
//! Run: `cargo bench --bench secret_vs_ring`

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use secalloc::Secret;
use std::hint::black_box;
#[path = "common/cpu.rs"]
mod cpu;
use cpu::process_cpu;
use std::time::{Duration, Instant};

/// The associated data every ring row uses.
fn bench_aad() -> Aad<[u8; 8]> {
    Aad::from(7u64.to_le_bytes())
}

/// ring's seal under the next counter nonce; returns the nonce and tag.
fn ring_seal(key: &LessSafeKey, buf: &mut [u8], counter: &mut u64) -> ([u8; 12], Tag) {
    *counter += 1;
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), bench_aad(), buf)
        .unwrap();
    (n, tag)
}

/// ring's open in place of `buf` (ciphertext followed by its tag).
fn ring_open(key: &LessSafeKey, nonce: [u8; 12], buf: &mut [u8]) {
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), bench_aad(), buf)
        .unwrap();
    black_box(plain[0]);
}

/// The floor for any encrypting container: a seal, then an open.
fn ring_seal_open(key: &LessSafeKey, buf: &mut Vec<u8>, counter: &mut u64) {
    let (nonce, tag) = ring_seal(key, buf, counter);
    buf.extend_from_slice(tag.as_ref());
    ring_open(key, nonce, buf);
    let len = buf.len() - 16;
    buf.truncate(len);
}

/// ring's open of a sealed message, on a copy (an open destroys its input;
/// `Secret::expose` copies the cell out the same way).
fn ring_copy_open(key: &LessSafeKey, sealed: &[u8], nonce: [u8; 12], scratch: &mut Vec<u8>) {
    scratch.clear();
    scratch.extend_from_slice(sealed);
    ring_open(key, nonce, scratch);
}

/// What any container with this one's guarantees must do for a create,
/// one read and a drop, with `ring`'s in-place API and nothing else: the
/// caller's buffer filled and sealed where it lies, the ciphertext copied
/// into storage, the caller's buffer wiped; the ciphertext copied into a
/// view and opened there, the view wiped; the storage wiped. No
/// allocation, registry, key gate or locking: the floor of the row
/// "create + read + drop" given two AES-GCM passes, two copies and three
/// wipes.
fn ring_guaranteed_floor(
    key: &LessSafeKey,
    size: usize,
    cell: &mut Vec<u8>,
    view: &mut Vec<u8>,
    counter: &mut u64,
) {
    let mut value = vec![3u8; size];
    let (nonce, tag) = ring_seal(key, &mut value, counter);
    cell.clear();
    cell.extend_from_slice(&value);
    cell.extend_from_slice(tag.as_ref());
    wipe(&mut value);
    drop(value);
    view.clear();
    view.extend_from_slice(cell);
    ring_open(key, nonce, view);
    wipe(view);
    wipe(cell);
}

/// A `memset` the optimiser cannot drop.
fn wipe(buf: &mut [u8]) {
    // SAFETY: `buf` is a live, exclusively borrowed slice of `buf.len()` bytes.
    unsafe { core::ptr::write_bytes(buf.as_mut_ptr(), 0, buf.len()) };
    black_box(buf);
}

fn time_per_op(iters: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed() / iters
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds = if bench { 9 } else { 1 };
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9u8; 32]).unwrap());
    println!("| operation | size | ring seal+open | measured | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for &(size, iters) in &[(32usize, 200_000u32), (64 * 1024, 500)] {
        let iters = if bench { iters } else { iters / 100 };
        let mut s: Secret<Vec<u8>> = Secret::new(vec![1u8; size]).unwrap();
        let mut raw = vec![1u8; size];
        let mut counter = 0u64;
        let (mut ring_t, mut mut_t, mut read_t, mut create_t) = (vec![], vec![], vec![], vec![]);
        let (mut seal_t, mut open_t, mut floor_t) = (vec![], vec![], vec![]);
        let (mut floor_cell, mut floor_view) = (Vec::new(), Vec::new());
        // One sealed message to open again and again (its nonce from a
        // counter of its own, far from the rows' counter).
        let mut sealed = vec![1u8; size];
        let (nonce, tag) = ring_seal(&key, &mut sealed, &mut (u64::MAX / 2));
        sealed.extend_from_slice(tag.as_ref());
        let mut scratch = Vec::with_capacity(sealed.len());
        let mut seal_buf = vec![1u8; size];
        for _ in 0..rounds {
            seal_t.push(time_per_op(iters, || {
                let _ = black_box(ring_seal(&key, &mut seal_buf, &mut counter));
            }));
            open_t.push(time_per_op(iters, || {
                ring_copy_open(&key, &sealed, nonce, &mut scratch)
            }));
            ring_t.push(time_per_op(iters, || {
                ring_seal_open(&key, &mut raw, &mut counter)
            }));
            mut_t.push(time_per_op(iters, || {
                s.expose_mut(|v| v[0] = v[0].wrapping_add(1)).unwrap()
            }));
            read_t.push(time_per_op(iters, || {
                black_box(s.expose(|v| v[0]).unwrap());
            }));
            floor_t.push(time_per_op(iters, || {
                ring_guaranteed_floor(&key, size, &mut floor_cell, &mut floor_view, &mut counter)
            }));
            create_t.push(time_per_op(iters, || {
                let t = Secret::new(vec![3u8; size]).unwrap();
                black_box(t.expose(|v| v[0]).unwrap());
            }));
        }
        let ring_m = median(ring_t);
        for (name, t) in [
            ("ring seal alone", median(seal_t)),
            ("ring copy + open alone", median(open_t)),
            (
                "ring + the copies and wipes create+read+drop needs",
                median(floor_t),
            ),
        ] {
            println!(
                "| {name} | {size} B | {:.2} µs | {:.2} µs | {:.2}× |",
                ring_m.as_secs_f64() * 1e6,
                t.as_secs_f64() * 1e6,
                t.as_secs_f64() / ring_m.as_secs_f64()
            );
        }
        for (name, t) in [
            ("expose_mut (open + re-seal)", median(mut_t)),
            ("expose (open)", median(read_t)),
            ("create + read + drop", median(create_t)),
        ] {
            println!(
                "| {name} | {size} B | {:.2} µs | {:.2} µs | {:.2}× |",
                ring_m.as_secs_f64() * 1e6,
                t.as_secs_f64() * 1e6,
                t.as_secs_f64() / ring_m.as_secs_f64()
            );
        }
        let mb = size as f64 / 1e6;
        println!(
            "| throughput expose_mut vs ring | {size} B | {:.0} MB/s | {:.0} MB/s | {:.0}% |",
            mb / ring_m.as_secs_f64(),
            mb / median(vec![time_per_op(iters, || s
                .expose_mut(|v| v[0] ^= 1)
                .unwrap())])
            .as_secs_f64(),
            100.0 * ring_m.as_secs_f64()
                / median(vec![time_per_op(iters, || s
                    .expose_mut(|v| v[0] ^= 1)
                    .unwrap())])
                .as_secs_f64()
        );
    }
    thread_scaling(bench);
}

/// Create + read + drop of 32-byte secrets on 1, 2 and 4 threads at once:
/// total throughput (wall clock, all threads) and CPU time per operation.
/// The registry is sharded, so threads should not serialise on its lock;
/// on a 2-core machine throughput can at best double.
fn thread_scaling(bench: bool) {
    let per_thread: u32 = if bench { 100_000 } else { 1_000 };
    let rounds = if bench { 5 } else { 1 };
    println!();
    println!(
        "| threads | create+read+drop 32 B, total | CPU per op | throughput vs 1 thread | machine ceiling (a CPU-only loop, vs 1 thread) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut base = 0.0;
    let mut loop_base = 0.0;
    for threads in [1u32, 2, 4] {
        // What the machine gives `threads` threads of pure computation right
        // now (shared machines often give less than one core each).
        let t = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| black_box(spin_work(if bench { 100_000_000 } else { 1_000_000 })));
            }
        });
        let loop_rate = f64::from(threads) / t.elapsed().as_secs_f64();
        if threads == 1 {
            loop_base = loop_rate;
        }
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        for _ in 0..rounds {
            let cpu0 = process_cpu();
            let t = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for i in 0..per_thread {
                            let s = Secret::new([i as u8; 32]).unwrap();
                            black_box(s.expose(|v| v[0]).unwrap());
                        }
                    });
                }
            });
            walls.push(t.elapsed());
            cpus.push(process_cpu() - cpu0);
        }
        let ops = f64::from(threads * per_thread);
        let wall = median(walls).as_secs_f64();
        let cpu = median(cpus).as_secs_f64();
        let throughput = ops / wall;
        if threads == 1 {
            base = throughput;
        }
        println!(
            "| {threads} | {:.2} M ops/s | {:.2} µs | {:.2}× | {:.2}× |",
            throughput / 1e6,
            cpu / ops * 1e6,
            throughput / base,
            loop_rate / loop_base
        );
    }
}

/// A CPU-bound loop touching no shared memory.
fn spin_work(n: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..n {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i);
    }
    x
}
