//! The secret-container contenders of the peer benchmark, behind one
//! interface so that every library runs the very same loops.
//!
//! ```text
//! peers-secrets list                         names of the contenders built in
//! peers-secrets time <lib> <workload> <ms>   ns per op after a warm-up
//! peers-secrets density <lib> <cap>          live 32-byte secrets until failure
//! ```
//!
//! Each contender is an optional feature (all on by default) so that one
//! that will not build here can be left out and reported by the driver.

use peers_common::status_kib;
use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// One secret-container library, reduced to what the workloads need.
trait Lib {
    /// Whether the library promises to keep secrets locked in RAM (the
    /// density run only calls a library "silently unlocked" if it does).
    const LOCKS: bool;
    /// A secret of `N` bytes.
    type S<const N: usize>;
    /// Stores a copy of `src` (some libraries wipe `src` as they go).
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String>;
    /// Reads every byte of the secret (their sum, so nothing is skipped).
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String>;
}

/// Touches every byte, eight at a time: cheap enough that a 64 KiB read
/// measures the library's access path rather than this loop.
fn sum(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let words = chunks
        .by_ref()
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .fold(0u64, u64::wrapping_add);
    chunks
        .remainder()
        .iter()
        .fold(words, |acc, &b| acc.wrapping_add(b as u64))
}

#[cfg(feature = "secrecy")]
struct Secrecy;
#[cfg(feature = "secrecy")]
impl Lib for Secrecy {
    const LOCKS: bool = false;
    // A boxed slice: secrecy's array constructors need `Default`, which
    // arrays only have up to 32 elements.
    type S<const N: usize> = secrecy::SecretSlice<u8>;
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String> {
        Ok(src.to_vec().into())
    }
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String> {
        use secrecy::ExposeSecret;
        Ok(sum(s.expose_secret()))
    }
}

/// memsec's libsodium-style allocation: guard pages, a canary, `mlock`,
/// and `mprotect(PROT_NONE)` between reads. memsec's `free` does not wipe,
/// so the wrapper does before freeing.
#[cfg(feature = "memsec")]
struct Memsec;
#[cfg(feature = "memsec")]
struct MemsecBox(std::ptr::NonNull<[u8]>);
#[cfg(feature = "memsec")]
impl Drop for MemsecBox {
    fn drop(&mut self) {
        // SAFETY: the block came from `memsec::malloc_sized` and is freed
        // once, here.
        unsafe {
            memsec::mprotect(self.0, memsec::Prot::ReadWrite);
            memsec::memzero(self.0.as_ptr() as *mut u8, self.0.len());
            memsec::free(self.0);
        }
    }
}
#[cfg(feature = "memsec")]
impl Lib for Memsec {
    const LOCKS: bool = true;
    type S<const N: usize> = MemsecBox;
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String> {
        // SAFETY: `p` is a fresh block of `N` writable bytes.
        unsafe {
            let p = memsec::malloc_sized(N).ok_or("memsec::malloc_sized returned None")?;
            std::ptr::copy_nonoverlapping(src.as_ptr(), p.as_ptr() as *mut u8, N);
            let b = MemsecBox(p);
            if !memsec::mprotect(p, memsec::Prot::NoAccess) {
                return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
            }
            Ok(b)
        }
    }
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String> {
        // SAFETY: the block is live; it is made readable only for the sum.
        unsafe {
            if !memsec::mprotect(s.0, memsec::Prot::ReadOnly) {
                return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
            }
            let v = sum(s.0.as_ref());
            memsec::mprotect(s.0, memsec::Prot::NoAccess);
            Ok(v)
        }
    }
}

#[cfg(feature = "secrets")]
struct Sodium;
#[cfg(feature = "secrets")]
impl Lib for Sodium {
    const LOCKS: bool = true;
    type S<const N: usize> = secrets::SecretVec<u8>;
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String> {
        Ok(secrets::SecretVec::new(N, |s| s.copy_from_slice(&src[..])))
    }
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String> {
        Ok(sum(&s.borrow()))
    }
}

#[cfg(feature = "memsafe")]
struct Memsafe;
#[cfg(feature = "memsafe")]
impl Lib for Memsafe {
    const LOCKS: bool = true;
    type S<const N: usize> = memsafe::Secret<N>;
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String> {
        memsafe::Secret::<N>::from_bytes(&mut src[..]).map_err(|(_, e)| e.to_string())
    }
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String> {
        let view = s.read().map_err(|e| e.to_string())?;
        Ok(sum(&view[..]))
    }
}

#[cfg(feature = "secbits")]
struct Secbits;
#[cfg(feature = "secbits")]
impl Lib for Secbits {
    const LOCKS: bool = true;
    type S<const N: usize> = secbits::SecBytes;
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String> {
        secbits::SecBytes::from_bytes(&mut src[..]).map_err(|e| e.to_string())
    }
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String> {
        let view = s.view().map_err(|e| e.to_string())?;
        Ok(sum(view.as_slice()))
    }
}

#[cfg(feature = "sec-mem")]
struct SecMem;
#[cfg(feature = "sec-mem")]
impl Lib for SecMem {
    const LOCKS: bool = true;
    type S<const N: usize> = sec_mem::SecMem<[u8; N]>;
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String> {
        Ok(sec_mem::SecMem::new(*src))
    }
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String> {
        Ok(s.access(|v| sum(&v[..])))
    }
}

/// sec-mem as it runs on CPUs without memory protection keys: every pkey
/// of the process is taken first, so sec-mem's `pkey_alloc` fails and it
/// falls back to plain `mprotect`. (On CPUs with PKU, sec-mem 0.1.1
/// allocates its key with access disabled and then writes the secret
/// without enabling it: SIGSEGV in `SecMem::new`.)
#[cfg(feature = "sec-mem")]
struct SecMemNoMpk;
#[cfg(feature = "sec-mem")]
impl Lib for SecMemNoMpk {
    const LOCKS: bool = true;
    type S<const N: usize> = sec_mem::SecMem<[u8; N]>;
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String> {
        static EXHAUST: std::sync::Once = std::sync::Once::new();
        EXHAUST.call_once(|| {
            // SAFETY: pkey_alloc(flags = 0, rights = 0) only reserves keys;
            // the keys are never attached to memory.
            while unsafe { libc::syscall(libc::SYS_pkey_alloc, 0, 0) } >= 0 {}
        });
        SecMem::create(src)
    }
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String> {
        SecMem::read(s)
    }
}

/// secmem-alloc's only OS-backed allocator is a bump allocator over one
/// locked page, so each secret gets its own allocator (and page).
#[cfg(feature = "secmem-alloc")]
struct SecmemAlloc;
#[cfg(feature = "secmem-alloc")]
impl Lib for SecmemAlloc {
    const LOCKS: bool = true;
    type S<const N: usize> =
        secmem_alloc::allocator_api::Box<[u8; N], secmem_alloc::sec_alloc::SecStackSinglePageAlloc>;
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String> {
        let page = secmem_alloc::sec_alloc::SecStackSinglePageAlloc::new()
            .map_err(|e| format!("SecStackSinglePageAlloc::new: {e}"))?;
        secmem_alloc::allocator_api::Box::try_new_in(*src, page)
            .map_err(|_| format!("AllocError: {N} B does not fit its one page"))
    }
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String> {
        Ok(sum(&s[..]))
    }
}

/// Raw AES-256-GCM with one process-wide key: seal on create, open on read.
/// No locking, no guard pages: the floor under any encrypting container.
#[cfg(feature = "ring")]
mod raw_ring {
    use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    use zeroize::Zeroize;

    pub struct Ring;
    pub struct Sealed {
        nonce: [u8; 12],
        tag: Tag,
        ct: Vec<u8>,
    }

    fn key() -> &'static LessSafeKey {
        static KEY: OnceLock<LessSafeKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let mut k = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
                .expect("random key");
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k).expect("key"));
            k.zeroize();
            key
        })
    }

    /// A counter nonce: unique per seal for the life of the process.
    fn next_nonce() -> [u8; 12] {
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        n
    }

    impl super::Lib for Ring {
        const LOCKS: bool = false;
        type S<const N: usize> = Sealed;
        fn create<const N: usize>(src: &mut [u8; N]) -> Result<Sealed, String> {
            let nonce = next_nonce();
            let mut ct = src.to_vec();
            let tag = key()
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::empty(),
                    &mut ct,
                )
                .map_err(|_| "seal failed".to_string())?;
            Ok(Sealed { nonce, tag, ct })
        }
        fn read<const N: usize>(s: &mut Sealed) -> Result<u64, String> {
            // Decrypt into a stack buffer and wipe it: no allocation, the
            // least any container that decrypts on read must do.
            let mut buf = [0u8; N];
            buf.copy_from_slice(&s.ct);
            let plain = key()
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(s.nonce),
                    Aad::empty(),
                    s.tag,
                    &mut buf,
                    0..,
                )
                .map_err(|_| "open failed".to_string())?;
            let v = super::sum(plain);
            buf.zeroize();
            Ok(v)
        }
    }
}

#[cfg(feature = "secalloc")]
struct Secalloc;
#[cfg(feature = "secalloc")]
impl Lib for Secalloc {
    const LOCKS: bool = true;
    type S<const N: usize> = secalloc::Secret<[u8; N]>;
    fn create<const N: usize>(src: &mut [u8; N]) -> Result<Self::S<N>, String> {
        // `new_with` writes straight into locked memory, like secrets'
        // `SecretVec::new`; no copy of the value passes through the stack.
        secalloc::Secret::<[u8; N]>::new_with(|v| v.copy_from_slice(&src[..]))
            .map_err(|e| e.to_string())
    }
    fn read<const N: usize>(s: &mut Self::S<N>) -> Result<u64, String> {
        s.expose(|v| sum(&v[..])).map_err(|e| e.to_string())
    }
}

/// The contenders built in, by the names the driver uses.
const LIBS: &[&str] = &[
    #[cfg(feature = "secrecy")]
    "secrecy",
    #[cfg(feature = "memsec")]
    "memsec",
    #[cfg(feature = "secrets")]
    "secrets",
    #[cfg(feature = "memsafe")]
    "memsafe",
    #[cfg(feature = "secbits")]
    "secbits",
    #[cfg(feature = "sec-mem")]
    "sec-mem",
    #[cfg(feature = "sec-mem")]
    "sec-mem-nompk",
    #[cfg(feature = "secmem-alloc")]
    "secmem-alloc",
    #[cfg(feature = "ring")]
    "ring",
    #[cfg(feature = "secalloc")]
    "secalloc",
];

/// Calls `$f::<Type>($args)` for the library called `$name`.
macro_rules! dispatch {
    ($name:expr, $f:ident ( $($arg:expr),* )) => {
        match $name {
            #[cfg(feature = "secrecy")]
            "secrecy" => $f::<Secrecy>($($arg),*),
            #[cfg(feature = "memsec")]
            "memsec" => $f::<Memsec>($($arg),*),
            #[cfg(feature = "secrets")]
            "secrets" => $f::<Sodium>($($arg),*),
            #[cfg(feature = "memsafe")]
            "memsafe" => $f::<Memsafe>($($arg),*),
            #[cfg(feature = "secbits")]
            "secbits" => $f::<Secbits>($($arg),*),
            #[cfg(feature = "sec-mem")]
            "sec-mem" => $f::<SecMem>($($arg),*),
            #[cfg(feature = "sec-mem")]
            "sec-mem-nompk" => $f::<SecMemNoMpk>($($arg),*),
            #[cfg(feature = "secmem-alloc")]
            "secmem-alloc" => $f::<SecmemAlloc>($($arg),*),
            #[cfg(feature = "ring")]
            "ring" => $f::<raw_ring::Ring>($($arg),*),
            #[cfg(feature = "secalloc")]
            "secalloc" => $f::<Secalloc>($($arg),*),
            other => {
                eprintln!("not built in: {other}");
                std::process::exit(2);
            }
        }
    };
}

/// Runs `op` for a fifth of `budget` to warm up, then for `budget`, and
/// returns (ns per op, ops). The clock is read about every 100 µs rather
/// than per op: reading it costs as much as the cheapest operations.
fn measure(
    budget: Duration,
    mut op: impl FnMut() -> Result<u64, String>,
) -> Result<(f64, u64), String> {
    let warm = Instant::now();
    let mut n = 0u64;
    while n == 0 || warm.elapsed() < budget / 5 {
        black_box(op()?);
        n += 1;
    }
    let per_op = warm.elapsed().as_nanos() as f64 / n as f64;
    let batch = ((100_000.0 / per_op) as u64).max(1);
    let start = Instant::now();
    let mut ops = 0u64;
    loop {
        for _ in 0..batch {
            black_box(op()?);
        }
        ops += batch;
        if start.elapsed() >= budget {
            break;
        }
    }
    Ok((start.elapsed().as_nanos() as f64 / ops as f64, ops))
}

/// A heap buffer of `N` patterned bytes (64 KiB does not belong on the
/// stack of every frame that handles it).
fn pattern<const N: usize>() -> Box<[u8; N]> {
    let v: Vec<u8> = (0..N).map(|i| (i * 31 + 7) as u8).collect();
    v.into_boxed_slice().try_into().expect("length N")
}

/// Create + one full read + drop. The source is refilled every time (the
/// same cost for all) because several libraries wipe it.
fn create_read_drop<L: Lib, const N: usize>(budget: Duration) -> Result<(f64, u64), String> {
    let template = pattern::<N>();
    let mut src = pattern::<N>();
    measure(budget, || {
        src.copy_from_slice(&template[..]);
        let mut s = L::create(&mut src)?;
        let v = L::read(&mut s)?;
        drop(black_box(s));
        Ok(v)
    })
}

/// Full reads of one existing secret.
fn read_existing<L: Lib, const N: usize>(budget: Duration) -> Result<(f64, u64), String> {
    let mut src = pattern::<N>();
    let mut s = L::create(&mut src)?;
    // black_box on the secret too, so the compiler cannot treat its bytes
    // as unchanged between reads and hoist the sum out of the loop.
    measure(budget, || L::read(black_box(&mut s)))
}

fn time_lib<L: Lib>(workload: &str, budget: Duration) -> Result<(f64, u64), String> {
    match workload {
        "create32" => create_read_drop::<L, 32>(budget),
        "create64k" => create_read_drop::<L, 65536>(budget),
        "read32" => read_existing::<L, 32>(budget),
        "read64k" => read_existing::<L, 65536>(budget),
        other => Err(format!("unknown workload {other}")),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// One line for the driver; spaces are fine in the last field only.
fn clean(s: &str) -> String {
    s.replace(['\n', '\r', '|'], " ")
}

/// Creates 32-byte secrets and keeps them alive until the library fails or
/// `cap` are held. Reports VmLck every 256 secrets, so that the driver sees
/// where locking stopped (and how far a library that crashes got).
fn density<L: Lib>(cap: usize, out: &mut File) {
    let mut held: Vec<L::S<32>> = Vec::with_capacity(cap);
    let (mut plateau_n, mut plateau_kib) = (0usize, status_kib("VmLck").unwrap_or(0));
    let mut end = "cap".to_string();
    let mut checkpoint = |n: usize, out: &mut File| {
        let kib = status_kib("VmLck").unwrap_or(0);
        if kib > plateau_kib {
            (plateau_n, plateau_kib) = (n, kib);
        }
        let _ = writeln!(out, "PEERS_PROGRESS held={n} lck_kib={kib}");
        (plateau_n, plateau_kib)
    };
    for i in 0..cap {
        let mut src = [(i % 251) as u8; 32];
        match catch_unwind(AssertUnwindSafe(|| L::create(&mut src))) {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => {
                end = format!("Err: {e}");
                break;
            }
            Err(p) => {
                end = format!("panic: {}", panic_message(&*p));
                break;
            }
        }
        if held.len() % 256 == 0 || held.len() == 1 {
            checkpoint(held.len(), out);
        }
    }
    let (pn, pk) = checkpoint(held.len(), out);
    let lck = status_kib("VmLck").unwrap_or(0);
    // The number of mappings: libraries with guard pages run into
    // vm.max_map_count long before memory runs out.
    let maps = count_mappings();
    let cap_lock = peers_common::has_cap_ipc_lock().map_or(-1, |b| b as i32);
    // SAFETY: getrlimit only writes the struct passed to it.
    let memlock_kib = unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r);
        if r.rlim_cur == libc::RLIM_INFINITY {
            -1
        } else {
            (r.rlim_cur / 1024) as i64
        }
    };
    let _ = writeln!(
        out,
        "PEERS_DENSITY held={} lck_kib={lck} plateau_n={pn} plateau_kib={pk} maps={maps} locks={} \
         cap_ipc_lock={cap_lock} memlock_kib={memlock_kib} end={}",
        held.len(),
        L::LOCKS as u8,
        clean(&end)
    );
    let _ = out.flush();
    // Exit without dropping up to a million secrets one by one: the
    // measurement is over, and the kernel reclaims everything at once.
    std::mem::forget(held);
    std::process::exit(0);
}

/// Lines of /proc/self/maps, read through a fixed stack buffer: at the
/// mapping limit, growing a heap buffer for the whole file can itself fail
/// (a large malloc wants a new mapping).
fn count_mappings() -> usize {
    use std::io::Read;
    let Ok(mut f) = File::open("/proc/self/maps") else {
        return 0;
    };
    let mut buf = [0u8; 16384];
    let mut lines = 0;
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
    lines
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(1) {
        "list" => println!("PEERS_LIBS {}", LIBS.join(" ")),
        "time" => {
            let budget = Duration::from_millis(arg(4).parse().expect("budget in ms"));
            let (lib, workload) = (arg(2), arg(3));
            let result = catch_unwind(|| dispatch!(lib, time_lib(workload, budget)));
            match result {
                Ok(Ok((ns, ops))) => println!("PEERS_RESULT ns_per_op={ns:.1} ops={ops}"),
                Ok(Err(e)) => println!("PEERS_RESULT error={}", clean(&e)),
                Err(p) => println!("PEERS_RESULT error=panic: {}", clean(&panic_message(&*p))),
            }
        }
        "density" => {
            let cap: usize = arg(3).parse().expect("cap");
            // Some libraries print to stdout when mlock fails (once per
            // secret): keep stdout for the protocol and send fd 1 to
            // /dev/null. Panics are caught and reported, so silence the
            // default hook too.
            // SAFETY: plain fd juggling before any other output.
            let mut out = unsafe {
                let proto = libc::dup(1);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                libc::dup2(null, 1);
                libc::close(null);
                File::from_raw_fd(proto)
            };
            std::panic::set_hook(Box::new(|_| {}));
            dispatch!(arg(2), density(cap, &mut out));
        }
        _ => {
            eprintln!(
                "usage: peers-secrets list | time <lib> <workload> <ms> | density <lib> <cap>"
            );
            std::process::exit(2);
        }
    }
}
