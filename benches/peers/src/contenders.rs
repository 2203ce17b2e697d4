//! Who takes part, and what each row measures.

/// A global allocator: one binary (package) each.
pub struct AllocPeer {
    pub name: &'static str,
    /// The package that builds its binary (also the binary's name).
    pub pkg: &'static str,
    /// The crate whose version the report quotes (None: the C library).
    pub krate: Option<&'static str>,
    pub what: &'static str,
    /// Its build script needs a C23 compiler (hardened_malloc).
    pub needs_c23: bool,
}

pub const ALLOCS: &[AllocPeer] = &[
    AllocPeer {
        name: "system (glibc)",
        pkg: "peers-alloc-system",
        krate: None,
        what: "glibc malloc: the baseline of the ratios",
        needs_c23: false,
    },
    AllocPeer {
        name: "mimalloc",
        pkg: "peers-alloc-mimalloc",
        krate: Some("mimalloc"),
        what: "default build",
        needs_c23: false,
    },
    AllocPeer {
        name: "mimalloc secure",
        pkg: "peers-alloc-mimalloc-secure",
        krate: Some("mimalloc"),
        what: "feature `secure`: guard pages, encrypted free lists, randomised allocation",
        needs_c23: false,
    },
    AllocPeer {
        name: "hardened_malloc",
        pkg: "peers-alloc-hardened",
        krate: Some("hardened-malloc"),
        what: "GrapheneOS, default config: zero on free, canaries, guard slabs, quarantines",
        needs_c23: true,
    },
    AllocPeer {
        name: "compatmalloc",
        pkg: "peers-alloc-compatmalloc",
        krate: Some("compatmalloc"),
        what: "feature `global-allocator` (hardened defaults); also replaces C malloc",
        needs_c23: false,
    },
    AllocPeer {
        name: "zeroizing-alloc",
        pkg: "peers-alloc-zeroizing",
        krate: Some("zeroizing-alloc"),
        what: "`ZeroAlloc(System)`: glibc plus a wipe on free",
        needs_c23: false,
    },
    AllocPeer {
        name: "secalloc SecureAlloc",
        pkg: "peers-alloc-secalloc",
        krate: Some("secalloc"),
        what: "`SecureAlloc::best_effort()`: locked, dump-excluded, wiped on free",
        needs_c23: false,
    },
];

/// The allocator workloads: (name passed to the child, label, full count,
/// quick count).
pub const ALLOC_WORKLOADS: &[(&str, &str, usize, usize)] = &[
    (
        "churn",
        "small-object churn: random alloc/free, 8–1024 B, ~10k live",
        2_000_000,
        200_000,
    ),
    (
        "map",
        "`HashMap<String, Vec<u8>>`: build, probe, drop",
        300_000,
        30_000,
    ),
    (
        "xthread",
        "producer/consumer: 64-B boxes freed on another thread",
        1_000_000,
        100_000,
    ),
    (
        "big",
        "1 MiB blocks: allocate, touch every page, free (4 live)",
        2_000,
        200,
    ),
];

/// A secret container; `name` is what `peers-secrets` calls it.
pub struct SecretPeer {
    pub name: &'static str,
    /// The feature of `peers-secrets` that builds it in.
    pub feature: &'static str,
    pub krate: &'static str,
    pub what: &'static str,
}

pub const SECRETS: &[SecretPeer] = &[
    SecretPeer {
        name: "secrecy",
        feature: "secrecy",
        krate: "secrecy",
        what: "`SecretSlice<u8>`: heap, zeroize on drop, no locking: the baseline of the ratios",
    },
    SecretPeer {
        name: "memsec",
        feature: "memsec",
        krate: "memsec",
        what: "`malloc_sized` + `mprotect`: guard pages, canary, mlock, no access between reads",
    },
    SecretPeer {
        name: "secrets",
        feature: "secrets",
        krate: "secrets",
        what: "`SecretVec<u8>` over libsodium `sodium_malloc`: guard pages, mlock, mprotect",
    },
    SecretPeer {
        name: "memsafe",
        feature: "memsafe",
        krate: "memsafe",
        what: "`Secret<N>`: a page per secret, mlock, MADV_DONTDUMP, no access between reads",
    },
    SecretPeer {
        name: "secbits",
        feature: "secbits",
        krate: "secbits",
        what: "`SecBytes`: a page per secret, mlock, wipe on fork, no access between reads",
    },
    SecretPeer {
        name: "sec-mem",
        feature: "sec-mem",
        krate: "sec-mem",
        what: "`SecMem<[u8; N]>`: page + guards, mlock, ChaCha20 at rest, key in memfd_secret, MPK where the CPU has it (0.1.1 crashes there: see README)",
    },
    SecretPeer {
        name: "sec-mem-nompk",
        feature: "sec-mem",
        krate: "sec-mem",
        what: "the same, with the process's protection keys used up first so it falls back to `mprotect`, as on CPUs without PKU",
    },
    SecretPeer {
        name: "secmem-alloc",
        feature: "secmem-alloc",
        krate: "secmem-alloc",
        what: "allocator-api2 `Box` in a `SecStackSinglePageAlloc`: one locked page per secret",
    },
    SecretPeer {
        name: "ring",
        feature: "ring",
        krate: "ring",
        what: "raw AES-256-GCM seal on create, open on read: the floor for encrypting containers",
    },
    SecretPeer {
        name: "secalloc",
        feature: "secalloc",
        krate: "secalloc",
        what: "`secalloc::Secret<[u8; N]>`: AES-256-GCM at rest in the locked arena, key in a locked page",
    },
];

/// The secret workloads: (name passed to the child, label).
pub const SECRET_WORKLOADS: &[(&str, &str)] = &[
    ("create32", "create + read + drop, 32 B"),
    ("create64k", "create + read + drop, 64 KiB"),
    ("read32", "read an existing secret, 32 B"),
    ("read64k", "read an existing secret, 64 KiB"),
];
