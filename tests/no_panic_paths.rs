//! The allocator never panics on its paths: a panic inside `malloc` or
//! `free` formats its message and allocates (re-entering the allocator,
//! possibly under one of its own locks) before the abort that an
//! `extern "C"` function turns it into. Misuse and corrupt metadata end in
//! `fatal`, which writes one line from the stack and aborts.
//!
//! Checked on the machine code of the `LD_PRELOAD` library: a call graph
//! from its disassembly (`objdump -d`, with indirect calls through the GOT
//! resolved from `objdump -R`, and functions whose address is taken — fork
//! handlers, the thread-exit destructor — counted as called), walked from
//! every symbol the library exports — and likewise on the hardened binary
//! example, from the global-allocator shims. No panic function may be
//! reachable, and no allocation function: the allocator never allocates
//! through itself (in the preload, a call to `malloc` from inside the
//! library is a call to its own `malloc`).
//! Functions whose address one of the crate's own statics holds (the fork
//! protocol's participants, the exit report, start-up hooks) are roots too:
//! they are called through those pointers (the attack review of this test
//! put a panicking index into the fork child's repair, which the first
//! version of the walk did not reach). Pointers in other data (trait
//! objects of other crates) are not followed.
//!
//! The unwind guards of `extern "C"` functions (`panic_cannot_unwind`,
//! `panic_in_cleanup`) are not counted: they run only if something below
//! them panicked first, which is what this test rules out.

#[path = "support/preload_lib.rs"]
mod preload_lib;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::process::Command;

fn run(tool: &str, args: &[&str], lib: &Path) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(lib)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (binutils) is needed: {e}"));
    assert!(out.status.success(), "{tool} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `# 64440 <...>` comment's address, if the line has one.
fn commented_address(line: &str) -> Option<u64> {
    let comment = line.split_once('#')?.1.trim();
    u64::from_str_radix(comment.split_whitespace().next()?, 16).ok()
}

/// The code of one shared library as a graph of functions.
struct CallGraph {
    /// Function start address -> demangled name (the first of its aliases).
    names: BTreeMap<u64, String>,
    /// Every name (aliases too) -> its address.
    by_name: HashMap<String, u64>,
    /// Function start address -> the functions it calls, jumps to or takes
    /// the address of.
    edges: HashMap<u64, HashSet<u64>>,
    /// Functions whose address is stored in one of the crate's own statics
    /// (the fork protocol's participants, the exit report, start-up hooks):
    /// called through those pointers, so roots of their own.
    held_in_statics: Vec<u64>,
}

impl CallGraph {
    fn of(lib: &Path) -> CallGraph {
        let mut names = BTreeMap::new();
        let mut by_name = HashMap::new();
        for line in run("nm", &["--defined-only", "-C"], lib).lines() {
            let mut parts = line.splitn(3, ' ');
            let (Some(addr), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if matches!(kind, "t" | "T" | "w" | "W") {
                if let Ok(addr) = u64::from_str_radix(addr, 16) {
                    names.entry(addr).or_insert_with(|| name.to_string());
                    by_name.insert(name.to_string(), addr);
                }
            }
        }
        // The crate's own statics: `[start, end)` of every data symbol of
        // `secalloc` or `secalloc_preload`.
        let mut statics = Vec::new();
        for line in run("nm", &["-S", "--defined-only", "-C"], lib).lines() {
            let fields: Vec<&str> = line.splitn(4, ' ').collect();
            if let [addr, size, kind, name] = fields[..] {
                if "dDrRbB".contains(kind) && name.starts_with("secalloc") {
                    if let (Ok(addr), Ok(size)) =
                        (u64::from_str_radix(addr, 16), u64::from_str_radix(size, 16))
                    {
                        statics.push(addr..addr + size);
                    }
                }
            }
        }
        // GOT slot -> the function it holds (`R_X86_64_RELATIVE` entries:
        // calls from the library to its own non-inlined functions, and
        // pointers stored in statics).
        let mut got = HashMap::new();
        for line in run("objdump", &["-R"], lib).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [slot, "R_X86_64_RELATIVE", target] = fields[..] {
                let target = target.trim_start_matches("*ABS*+0x");
                if let (Ok(slot), Ok(target)) = (
                    u64::from_str_radix(slot, 16),
                    u64::from_str_radix(target, 16),
                ) {
                    got.insert(slot, target);
                }
            }
        }
        let mut held_in_statics: Vec<u64> = got
            .iter()
            .filter(|(slot, target)| {
                names.contains_key(target) && statics.iter().any(|s| s.contains(slot))
            })
            .map(|(_, &target)| target)
            .collect();
        held_in_statics.sort();
        held_in_statics.dedup();
        let mut edges: HashMap<u64, HashSet<u64>> = HashMap::new();
        let mut current = None;
        let disassembly = run("objdump", &["-d", "--no-show-raw-insn"], lib);
        for line in disassembly.lines() {
            if let Some(head) = line.strip_suffix(">:") {
                current = head
                    .split_once(" <")
                    .and_then(|(addr, _)| u64::from_str_radix(addr, 16).ok());
                continue;
            }
            let Some(from) = current else { continue };
            let Some((_, instruction)) = line.split_once(":\t") else {
                continue;
            };
            let mnemonic = instruction.split_whitespace().next().unwrap_or("");
            let target = if mnemonic.starts_with("call") || mnemonic.starts_with('j') {
                let operand = instruction.split_whitespace().nth(1).unwrap_or("");
                if operand.starts_with('*') {
                    // `call *0x49f17(%rip)  # 64440`: through a GOT slot.
                    commented_address(instruction).and_then(|slot| got.get(&slot).copied())
                } else {
                    u64::from_str_radix(operand, 16).ok()
                }
            } else if mnemonic.starts_with("lea") {
                // A function's address taken: a handler or destructor.
                commented_address(instruction)
            } else {
                None
            };
            if let Some(target) = target {
                // Only edges to other functions' starts (not jumps inside).
                if target != from && names.contains_key(&target) {
                    edges.entry(from).or_default().insert(target);
                }
            }
        }
        CallGraph {
            names,
            by_name,
            edges,
            held_in_statics,
        }
    }

    fn address_of(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// Every function reachable from `roots` or from a pointer in the
    /// crate's statics, each with the one that first reached it.
    fn reachable(&self, roots: &[u64]) -> HashMap<u64, Option<u64>> {
        let roots: Vec<u64> = roots.iter().chain(&self.held_in_statics).copied().collect();
        let mut via: HashMap<u64, Option<u64>> = roots.iter().map(|&r| (r, None)).collect();
        let mut queue: VecDeque<u64> = roots.iter().copied().collect();
        while let Some(f) = queue.pop_front() {
            if is_panic(&self.names[&f]) {
                continue; // reported, not walked into
            }
            for &g in self.edges.get(&f).into_iter().flatten() {
                if is_unwind_guard(&self.names[&g]) || via.contains_key(&g) {
                    continue;
                }
                via.insert(g, Some(f));
                queue.push_back(g);
            }
        }
        via
    }

    fn path(&self, via: &HashMap<u64, Option<u64>>, mut f: u64) -> String {
        let mut chain = vec![self.names[&f].clone()];
        while let Some(Some(caller)) = via.get(&f) {
            chain.push(self.names[caller].clone());
            f = *caller;
        }
        chain.join("\n      <- ")
    }
}

/// Panic functions: by prefix, by part of the name, or exactly.
fn is_panic(name: &str) -> bool {
    const PREFIXES: [&str; 3] = [
        "core::panicking::",
        "std::panicking::",
        "core::slice::index::",
    ];
    const PARTS: [&str; 4] = [
        "unwrap_failed",
        "expect_failed",
        "panic_already_borrowed",
        "panic_already_mutably_borrowed",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
        || PARTS.iter().any(|p| name.contains(p))
        || ["rust_begin_unwind", "__rust_start_panic"].contains(&name)
}

/// An allocation function: the Rust allocator shims and `alloc`'s
/// internals (by prefix), or one of the C allocation functions (which, in
/// the preload, are the library's own: a call to one from inside it is the
/// allocator allocating through itself).
fn is_allocation(name: &str) -> bool {
    const PREFIXES: [&str; 5] = [
        "__rustc::__rust_alloc",
        "__rustc::__rust_realloc",
        "alloc::alloc::",
        "alloc::raw_vec::",
        "operator new",
    ];
    const C_ALLOCATORS: [&str; 10] = [
        "malloc",
        "calloc",
        "realloc",
        "reallocarray",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "valloc",
        "pvalloc",
        "strdup",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || C_ALLOCATORS.contains(&name)
}

fn is_unwind_guard(name: &str) -> bool {
    name == "core::panicking::panic_cannot_unwind" || name == "core::panicking::panic_in_cleanup"
}

/// Every function in `via` (not itself a panic) that calls a function
/// `matches` accepts: the callees, and how the allocator reaches the caller.
fn callers_of(
    graph: &CallGraph,
    via: &HashMap<u64, Option<u64>>,
    matches: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut found: Vec<String> = via
        .keys()
        .filter(|&&f| !is_panic(&graph.names[&f]))
        .filter_map(|&f| {
            let mut callees: Vec<&str> = graph
                .edges
                .get(&f)?
                .iter()
                .map(|g| graph.names[g].as_str())
                .filter(|name| matches(name))
                .collect();
            callees.sort();
            (!callees.is_empty()).then(|| format!("{callees:?} from {}", graph.path(via, f)))
        })
        .collect();
    found.sort();
    found
}

/// Fails with every function reachable from `roots` that calls a panic,
/// and with every one that calls an allocation function (the allocator
/// never allocates through itself).
fn assert_no_panic_reachable(file: &Path, graph: &CallGraph, roots: &[u64]) {
    let via = graph.reachable(roots);
    for (what, found) in [
        ("allocate", callers_of(graph, &via, is_allocation)),
        (
            "call a panic",
            callers_of(graph, &via, |name| is_panic(name) && !is_unwind_guard(name)),
        ),
    ] {
        assert!(
            found.is_empty(),
            "{}: {} function(s) reachable from the allocator {what} ({} functions reachable):\n  {}",
            file.display(),
            found.len(),
            via.len(),
            found.join("\n  ")
        );
    }
    // The walk must have seen the arena, or it proves nothing.
    assert!(
        via.len() > 20,
        "only {} functions reachable: is the disassembly parsed?",
        via.len()
    );
}

#[test]
fn no_panic_is_reachable_from_the_preloads_entry_points() {
    let lib = preload_lib::build_preload_lib();
    let graph = CallGraph::of(&lib);
    let exported = run("nm", &["-D", "--defined-only"], &lib);
    let roots: Vec<u64> = exported
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [addr, "T" | "W", _] => u64::from_str_radix(addr, 16).ok(),
                _ => None,
            }
        })
        .collect();
    for entry in [
        "malloc",
        "free",
        "realloc",
        "calloc",
        "operator new(unsigned long)",
        "operator delete(void*)",
    ] {
        assert!(
            graph
                .address_of(entry)
                .is_some_and(|addr| roots.contains(&addr)),
            "{entry} is not an exported function of {}",
            lib.display()
        );
    }
    assert_no_panic_reachable(&lib, &graph, &roots);
}

/// The Rust side: `SecureAlloc` as the global allocator of the hardened
/// binary example, walked from the four allocator shims every `Box` and
/// `Vec` calls (the layout checks of a Rust free are code the C entry
/// points never reach).
#[test]
fn no_panic_is_reachable_from_the_global_allocator() {
    let target = preload_lib::root().join("target/no_panic");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--example",
            "hardened_binary",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(preload_lib::root())
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "building the hardened_binary example failed"
    );
    let binary = target.join("release/examples/hardened_binary");
    let graph = CallGraph::of(&binary);
    let roots: Vec<u64> = [
        "__rustc::__rust_alloc",
        "__rustc::__rust_dealloc",
        "__rustc::__rust_realloc",
        "__rustc::__rust_alloc_zeroed",
    ]
    .iter()
    .map(|shim| {
        graph
            .address_of(shim)
            .unwrap_or_else(|| panic!("{shim} not found in {}", binary.display()))
    })
    .collect();
    assert_no_panic_reachable(&binary, &graph, &roots);
}
