//! A hardened binary: installs `SecureAlloc` as the global allocator, does
//! the kind of work a service does with secrets in its heap, and then shows —
//! from the kernel's own `/proc/self/smaps`, not from the allocator's word —
//! how much of that heap is locked in RAM and excluded from core dumps.
//!
//! Run: `cargo run --release --example hardened_binary`

use secalloc::{diagnostics, SecureAlloc};
use std::collections::HashMap;

#[global_allocator]
static ALLOC: SecureAlloc = SecureAlloc::best_effort();

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn main() {
    // Work a service might do: session tokens in a map, a few key buffers, a
    // large TLS-record-sized buffer.
    let mut sessions: HashMap<String, Vec<u8>> = HashMap::new();
    for i in 0..20_000u32 {
        let token: Vec<u8> = (0..32).map(|b| (i as u8).wrapping_mul(31) ^ b).collect();
        sessions.insert(format!("session-{i:05}"), token);
    }
    let keys: Vec<[u8; 32]> = (0..256).map(|i| [i as u8; 32]).collect();
    let record = vec![0x17u8; 1 << 20];
    // Churn: replace half the sessions.
    for i in (0..20_000u32).step_by(2) {
        sessions.insert(format!("session-{i:05}"), vec![0xA5; 48]);
    }

    let stats = ALLOC.stats();
    let report = diagnostics::arena_report().expect("read /proc/self/smaps");
    let (soft, hard) = diagnostics::memlock_limit().unwrap_or((0, 0));
    let limit = |v: usize| {
        if v == usize::MAX {
            "unlimited".to_string()
        } else {
            kib(v)
        }
    };

    println!(
        "secalloc hardened binary: {} sessions, {} keys, {} record buffer",
        sessions.len(),
        keys.len(),
        kib(record.len())
    );
    println!();
    println!("allocator's view (SecureAlloc::stats)");
    println!("  policy                 {:?}", stats.policy);
    println!("  live allocations       {}", stats.live_allocations);
    println!("  in use                 {}", kib(stats.in_use_bytes));
    println!("  arena mapped           {}", kib(stats.mapped_bytes));
    println!("  locked                 {}", kib(stats.locked_bytes));
    println!("  running unlocked       {}", kib(stats.unlocked_bytes));
    println!("  lock refusals          {}", stats.lock_refusals);
    println!("  idle, budget held      {}", kib(stats.idle_locked_bytes));
    println!(
        "  RLIMIT_MEMLOCK         soft {}, hard {}",
        limit(soft),
        limit(hard)
    );
    println!();
    println!("kernel's view (/proc/self/smaps, mappings holding the arena)");
    println!("  mappings               {}", report.mappings);
    println!("  mapped                 {}", kib(report.mapped_bytes));
    println!("  resident               {}", kib(report.rss_bytes));
    println!("  Locked:                {}", kib(report.locked_bytes));
    println!("  VmFlags lo (locked)    {}", kib(report.lo_flag_bytes));
    println!("  VmFlags dd (no dump)   {}", kib(report.dd_flag_bytes));
    println!();
    let all_dd = report.dd_flag_bytes == report.mapped_bytes;
    let all_lo = report.lo_flag_bytes == report.mapped_bytes;
    println!(
        "verdict: {} of the heap is excluded from core dumps; {} of it is locked in RAM{}",
        if all_dd { "all" } else { "NOT all" },
        if all_lo { "all" } else { "NOT all" },
        if stats.unlocked_bytes > 0 {
            " (locking was refused: raise `ulimit -l` or grant CAP_IPC_LOCK)"
        } else {
            ""
        }
    );
    std::process::exit(if all_dd { 0 } else { 1 });
}
