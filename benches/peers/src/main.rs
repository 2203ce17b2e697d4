//! Side-by-side peer benchmark for secalloc: builds every contender, runs
//! them interleaved (A B C A B C ...) over several rounds, and prints one
//! Markdown report of medians, spreads and ratios.
//!
//! ```text
//! cargo run --release --manifest-path benches/peers/Cargo.toml -- --quick | --full
//!     [--rounds N] [--skip-build] [--out FILE] [--svg FILE]
//! ```
//!
//! Every measurement is a fresh child process: allocators because a binary
//! has one global allocator (and a fresh process gives each run its own
//! peak RSS), secret containers so that one library's mappings, locked
//! pages or crash cannot touch another's numbers.

mod builder;
mod chart;
mod child;
mod contenders;
mod report;

use child::fields;
use contenders::{ALLOCS, ALLOC_WORKLOADS, SECRETS, SECRET_WORKLOADS};
use report::*;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How much work a run does.
struct Mode {
    name: &'static str,
    rounds: usize,
    full: bool,
    /// Time budget of one secret-container measurement.
    secret_budget_ms: u64,
    /// Most live secrets the density run tries to hold.
    density_cap: usize,
}

/// The memlock limit of the density runs (8 MiB, a common default).
const DENSITY_MEMLOCK: u64 = 8 * 1024 * 1024;

struct Paths {
    workspace: PathBuf,
    target: PathBuf,
}

impl Paths {
    /// The workspace is this crate's own (`benches/peers`); the target directory
    /// is wherever this binary was built (`<target>/release/peers`), so
    /// `--target-dir` and `CARGO_TARGET_DIR` both carry over to the
    /// contender builds.
    fn find() -> Paths {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .canonicalize()
            .expect("workspace root");
        let exe = std::env::current_exe().expect("current exe");
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) => PathBuf::from(t),
            None => exe
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_else(|| workspace.join("target")),
        };
        Paths { workspace, target }
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.target.join("release").join(name)
    }
}

/// One allocator run.
struct AllocSample {
    ns: f64,
    rss_kib: u64,
    lck_kib: u64,
    note: String,
}

struct Cell<T> {
    samples: Vec<T>,
    errors: Vec<String>,
}

// By hand: the derive would demand `T: Default`.
impl<T> Default for Cell<T> {
    fn default() -> Self {
        Cell {
            samples: Vec::new(),
            errors: Vec::new(),
        }
    }
}

struct Density {
    held: u64,
    lck_kib: u64,
    plateau_n: u64,
    plateau_kib: u64,
    maps: u64,
    locks: bool,
    cap_ipc_lock: i64,
    memlock_kib: i64,
    end: String,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if flag("--help") || flag("-h") {
        println!(
            "usage: peers [--quick|--full] [--rounds N] [--skip-build] [--out FILE] [--svg FILE]"
        );
        return;
    }
    let mut mode = if flag("--full") {
        Mode {
            name: "--full",
            rounds: 7,
            full: true,
            secret_budget_ms: 200,
            density_cap: 1_000_000,
        }
    } else {
        Mode {
            name: "--quick",
            rounds: 5,
            full: false,
            secret_budget_ms: 30,
            density_cap: 1_000_000,
        }
    };
    if let Some(r) = value("--rounds") {
        mode.rounds = r.parse().expect("--rounds N");
    }
    let paths = Paths::find();
    let started = Instant::now();

    // ---- build ----
    let cargo = builder::Cargo {
        workspace: &paths.workspace,
        target_dir: &paths.target,
    };
    let skip = flag("--skip-build");
    let c23 = builder::c23_compiler();
    let mut alloc_built: Vec<Result<(), String>> = Vec::new();
    for peer in ALLOCS {
        let mut env = Vec::new();
        if let (true, Some(cc)) = (peer.needs_c23, c23.as_deref()) {
            env.push(("CC", cc));
        }
        let r = if skip {
            exists(&paths.bin(peer.pkg))
        } else {
            cargo.build(peer.pkg, &[], &env)
        };
        alloc_built.push(r);
    }
    let secret_built = if skip {
        skip_build_secrets(&paths)
    } else {
        build_secrets(&cargo)
    };
    let build_secs = started.elapsed().as_secs_f64();
    let run_started = Instant::now();

    // ---- allocators, interleaved ----
    let mut alloc_cells: BTreeMap<(usize, usize), Cell<AllocSample>> = BTreeMap::new();
    let ready: Vec<usize> = (0..ALLOCS.len())
        .filter(|&i| alloc_built[i].is_ok())
        .collect();
    for round in 0..mode.rounds {
        for (w, &(workload, _, full_n, quick_n)) in ALLOC_WORKLOADS.iter().enumerate() {
            eprintln!(
                "peers: round {}/{} allocators: {workload}",
                round + 1,
                mode.rounds
            );
            let n = if mode.full { full_n } else { quick_n };
            // Rotate the starting contender each round so that no one
            // always runs first (or right after the same neighbour).
            for k in 0..ready.len() {
                let c = ready[(k + round) % ready.len()];
                let mut cmd = Command::new(paths.bin(ALLOCS[c].pkg));
                cmd.arg(workload).arg(n.to_string());
                let out = child::run(cmd, Duration::from_secs(300));
                let cell = alloc_cells.entry((w, c)).or_default();
                match (out.failure, fields(&out.stdout, "PEERS_RESULT", "note")) {
                    (None, Some(f)) => cell.samples.push(AllocSample {
                        ns: num(&f, "ns"),
                        rss_kib: num(&f, "rss_kib") as u64,
                        lck_kib: num(&f, "lck_kib") as u64,
                        note: f.get("note").cloned().unwrap_or_default(),
                    }),
                    (Some(e), _) => cell.errors.push(e),
                    (None, None) => cell.errors.push("no result line".into()),
                }
            }
        }
    }

    // ---- secret containers, interleaved ----
    let secrets_bin = paths.bin("peers-secrets");
    let libs: Vec<usize> = (0..SECRETS.len())
        .filter(|&i| secret_built[i].is_ok())
        .collect();
    let mut secret_cells: BTreeMap<(usize, usize), Cell<f64>> = BTreeMap::new();
    for round in 0..mode.rounds {
        for (w, &(workload, _)) in SECRET_WORKLOADS.iter().enumerate() {
            eprintln!(
                "peers: round {}/{} secrets: {workload}",
                round + 1,
                mode.rounds
            );
            for k in 0..libs.len() {
                let l = libs[(k + round) % libs.len()];
                let mut cmd = Command::new(&secrets_bin);
                cmd.args(["time", SECRETS[l].name, workload])
                    .arg(mode.secret_budget_ms.to_string());
                let out = child::run(cmd, Duration::from_secs(120));
                let cell = secret_cells.entry((w, l)).or_default();
                match (out.failure, fields(&out.stdout, "PEERS_RESULT", "error")) {
                    (None, Some(f)) if f.contains_key("error") => {
                        cell.errors.push(f["error"].clone())
                    }
                    (None, Some(f)) => cell.samples.push(num(&f, "ns_per_op")),
                    (Some(e), _) => cell.errors.push(e),
                    (None, None) => cell.errors.push("no result line".into()),
                }
            }
        }
    }

    // ---- density under a memlock limit, without CAP_IPC_LOCK ----
    let (density_how, density_ok) = density_wrapper();
    let mut density: BTreeMap<usize, Result<Density, String>> = BTreeMap::new();
    for &l in &libs {
        eprintln!("peers: density: {}", SECRETS[l].name);
        let r = match &density_ok {
            Err(e) => Err(e.clone()),
            Ok(prefix) => run_density(prefix, &secrets_bin, SECRETS[l].name, mode.density_cap),
        };
        density.insert(l, r);
    }
    let run_secs = run_started.elapsed().as_secs_f64();

    // ---- report ----
    let versions = lock_versions(&paths.workspace.join("Cargo.lock"));
    let mut md = String::new();
    header(&mut md, &mode, &paths);
    contenders_table(&mut md, &versions, &alloc_built, &secret_built);
    alloc_table(&mut md, &mode, &alloc_built, &alloc_cells);
    secret_table(&mut md, &mode, &secret_built, &secret_cells);
    density_table(&mut md, &mode, &density_how, &secret_built, &density);
    let _ = writeln!(
        md,
        "\nBuild took {build_secs:.0} s; the measurements took {run_secs:.0} s."
    );
    print!("{md}");
    if let Some(out) = value("--out") {
        std::fs::write(&out, &md).expect("write --out file");
        eprintln!("peers: report written to {out}");
    }
    if let Some(out) = value("--svg") {
        let svg = alloc_chart(&mode, &alloc_built, &alloc_cells);
        std::fs::write(&out, svg).expect("write --svg file");
        eprintln!("peers: chart written to {out}");
    }
}

/// The allocator table's ratios as an SVG chart (see `chart.rs`).
fn alloc_chart(
    mode: &Mode,
    built: &[Result<(), String>],
    cells: &BTreeMap<(usize, usize), Cell<AllocSample>>,
) -> String {
    let median_of = |w: usize, c: usize| {
        cells
            .get(&(w, c))
            .filter(|cell| !cell.samples.is_empty() && built[c].is_ok())
            .map(|cell| median(&cell.samples.iter().map(|s| s.ns).collect::<Vec<_>>()))
    };
    let groups: Vec<(String, Vec<chart::Bar>)> = ALLOC_WORKLOADS
        .iter()
        .enumerate()
        .map(|(w, &(_, label, _, _))| {
            let base = median_of(w, 0);
            let bars = ALLOCS
                .iter()
                .enumerate()
                .map(|(c, peer)| chart::Bar {
                    name: peer.name,
                    ratio: median_of(w, c).zip(base).map(|(m, b)| m / b),
                })
                .collect();
            (label.to_string(), bars)
        })
        .collect();
    let title = format!(
        "Allocators: median time / system allocator ({}, {} runs; lower is better)",
        if mode.full { "--full" } else { "--quick" },
        mode.rounds
    );
    chart::svg(&title, &groups)
}

fn num(f: &HashMap<String, String>, k: &str) -> f64 {
    f.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn exists(p: &Path) -> Result<(), String> {
    if p.exists() {
        Ok(())
    } else {
        Err(format!("--skip-build: {} is missing", p.display()))
    }
}

/// Builds `peers-secrets` with every contender's feature; if that fails,
/// builds each feature alone to find the ones that do not build, and then
/// the rest together. Returns each contender's build outcome.
fn build_secrets(cargo: &builder::Cargo) -> Vec<Result<(), String>> {
    let mut status: Vec<Result<(), String>> = vec![Ok(()); SECRETS.len()];
    let wanted: Vec<usize> = (0..SECRETS.len()).collect();
    let features = |set: &[usize]| {
        let mut f: Vec<&str> = set.iter().map(|&i| SECRETS[i].feature).collect();
        f.dedup();
        f.join(",")
    };
    let build = |set: &[usize]| {
        let f = features(set);
        cargo.build(
            "peers-secrets",
            &["--no-default-features", "--features", &f],
            &[],
        )
    };
    if build(&wanted).is_err() {
        for &i in &wanted {
            if let Err(e) = build(&[i]) {
                status[i] = Err(e);
            }
        }
        let ok: Vec<usize> = wanted
            .iter()
            .copied()
            .filter(|&i| status[i].is_ok())
            .collect();
        if let Err(e) = build(&ok) {
            // Each built alone but not together: report it on all of them.
            for &i in &ok {
                status[i] = Err(format!("builds alone but not with the others: {e}"));
            }
        }
    }
    status
}

/// With `--skip-build`, ask the existing binary which contenders it has.
fn skip_build_secrets(paths: &Paths) -> Vec<Result<(), String>> {
    let out = Command::new(paths.bin("peers-secrets"))
        .arg("list")
        .output();
    let listed = out
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let names: Vec<&str> = listed
        .strip_prefix("PEERS_LIBS")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    SECRETS
        .iter()
        .map(|s| {
            if names.contains(&s.name) {
                Ok(())
            } else {
                Err("--skip-build: not in the existing peers-secrets binary".into())
            }
        })
        .collect()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// The command prefix that runs a density child without CAP_IPC_LOCK and
/// with RLIMIT_MEMLOCK = 8 MiB: as root, `setpriv` drops the capability
/// from the bounding and inheritable sets before `prlimit` sets the limit
/// and execs the child; other users have no CAP_IPC_LOCK to drop.
fn density_wrapper() -> (String, Result<Vec<String>, String>) {
    let limit = format!("--memlock={DENSITY_MEMLOCK}:{DENSITY_MEMLOCK}");
    if which("prlimit").is_none() {
        let e = "density skipped: `prlimit` not found (apt-get install util-linux)".to_string();
        return (e.clone(), Err(e));
    }
    let mut prefix = Vec::new();
    if effective_uid() == Some(0) {
        if which("setpriv").is_none() {
            let e = "density skipped: running as root but `setpriv` not found (apt-get install util-linux)".to_string();
            return (e.clone(), Err(e));
        }
        prefix.extend(
            [
                "setpriv",
                "--inh-caps=-ipc_lock",
                "--bounding-set=-ipc_lock",
            ]
            .map(String::from),
        );
    }
    prefix.push("prlimit".into());
    prefix.push(limit);
    (prefix.join(" "), Ok(prefix))
}

fn run_density(prefix: &[String], bin: &Path, lib: &str, cap: usize) -> Result<Density, String> {
    let mut cmd = Command::new(&prefix[0]);
    cmd.args(&prefix[1..])
        .arg(bin)
        .args(["density", lib])
        .arg(cap.to_string());
    let out = child::run(cmd, Duration::from_secs(600));
    if let Some(f) = fields(&out.stdout, "PEERS_DENSITY", "end") {
        return Ok(Density {
            held: num(&f, "held") as u64,
            lck_kib: num(&f, "lck_kib") as u64,
            plateau_n: num(&f, "plateau_n") as u64,
            plateau_kib: num(&f, "plateau_kib") as u64,
            maps: num(&f, "maps") as u64,
            locks: f.get("locks").is_some_and(|v| v == "1"),
            cap_ipc_lock: num(&f, "cap_ipc_lock") as i64,
            memlock_kib: num(&f, "memlock_kib") as i64,
            end: f.get("end").cloned().unwrap_or_default(),
        });
    }
    // The child died: report how far its progress lines say it got.
    let why = out.failure.unwrap_or_else(|| "no result line".into());
    match fields(&out.stdout, "PEERS_PROGRESS", "none") {
        Some(p) => {
            let held = num(&p, "held") as u64;
            let lck = num(&p, "lck_kib") as u64;
            Ok(Density {
                held,
                lck_kib: lck,
                plateau_n: held,
                plateau_kib: lck,
                maps: 0,
                locks: SECRETS
                    .iter()
                    .any(|s| s.name == lib && s.name != "secrecy" && s.name != "ring"),
                cap_ipc_lock: -1,
                memlock_kib: -1,
                end: format!("process died with at least {held} stored: {why}"),
            })
        }
        None => Ok(Density {
            held: 0,
            lck_kib: 0,
            plateau_n: 0,
            plateau_kib: 0,
            maps: 0,
            locks: true,
            cap_ipc_lock: -1,
            memlock_kib: -1,
            end: format!("process died before storing its first secret: {why}"),
        }),
    }
}

/// `name -> version` for every registry package in Cargo.lock.
fn lock_versions(lock: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut map = HashMap::new();
    for block in text.split("[[package]]") {
        let get = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.trim().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        };
        if let (Some(n), Some(v)) = (get("name "), get("version ")) {
            map.entry(n).or_insert(v);
        }
    }
    map
}

fn first_line_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn header(md: &mut String, mode: &Mode, paths: &Paths) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = first_line_of(
        &std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()),
        &["--version"],
    );
    let glibc = first_line_of("getconf", &["GNU_LIBC_VERSION"]);
    let commit = first_line_of(
        "git",
        &[
            "-C",
            &paths.workspace.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let cap = peers_cap_line();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(md, "# secalloc peer benchmark ({})\n", mode.name);
    let _ = writeln!(
        md,
        "Produced by `bash benches/peers/run.sh {}` (the driver: `cargo run --release --manifest-path benches/peers/Cargo.toml -p secalloc-peers -- {}`).\n",
        args.join(" "),
        args.join(" ")
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| date | {} |", utc_now());
    let _ = writeln!(md, "| CPU | {} |", cell(&cpu));
    let _ = writeln!(md, "| nproc | {nproc} |");
    let _ = writeln!(md, "| kernel | {} |", kernel.trim());
    let _ = writeln!(md, "| toolchain | {} · {} |", cell(&rustc), cell(&glibc));
    let _ = writeln!(
        md,
        "| secalloc | commit {commit} (plus any uncommitted changes in the tree) |"
    );
    let _ = writeln!(
        md,
        "| rounds | {} (contenders interleaved A B C … within each round; starting contender rotates per round) |",
        mode.rounds
    );
    let _ = writeln!(md, "| timing runs | {cap} |\n");
}

/// The driver's own privileges, which the timing children inherit.
fn peers_cap_line() -> String {
    let uid = effective_uid().map_or("?".into(), |u| u.to_string());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .map(|c| c & (1 << 14) != 0);
    let lim = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max locked memory"))
                .map(|l| l.split_whitespace().skip(3).take(1).collect::<String>())
        })
        .unwrap_or_else(|| "?".into());
    format!(
        "uid {uid}, CAP_IPC_LOCK {}, RLIMIT_MEMLOCK soft {lim} bytes",
        match cap {
            Some(true) => "held (mlock is not limited)",
            Some(false) => "not held",
            None => "unknown",
        }
    )
}

fn version_of(versions: &HashMap<String, String>, k: &str) -> String {
    if k == "secalloc" {
        return "path (this tree)".into();
    }
    versions.get(k).cloned().unwrap_or_else(|| "?".into())
}

fn contenders_table(
    md: &mut String,
    versions: &HashMap<String, String>,
    alloc_built: &[Result<(), String>],
    secret_built: &[Result<(), String>],
) {
    let status = |r: &Result<(), String>| match r {
        Ok(()) => "built".to_string(),
        Err(e) => format!("**did not build**: {}", cell(e)),
    };
    let _ = writeln!(md, "## Contenders\n");
    let _ = writeln!(
        md,
        "| kind | contender | crate | what is measured | build |\n|---|---|---|---|---|"
    );
    for (p, b) in ALLOCS.iter().zip(alloc_built) {
        let krate = match p.krate {
            Some(k) => format!("{k} {}", version_of(versions, k)),
            None => "(libc)".into(),
        };
        let _ = writeln!(
            md,
            "| allocator | {} | {krate} | {} | {} |",
            p.name,
            p.what,
            status(b)
        );
    }
    for (p, b) in SECRETS.iter().zip(secret_built) {
        let _ = writeln!(
            md,
            "| secret | {} | {} {} | {} | {} |",
            p.name,
            p.krate,
            version_of(versions, p.krate),
            p.what,
            status(b)
        );
    }
    md.push('\n');
}

fn errors_note<T>(c: &Cell<T>, rounds: usize) -> String {
    if c.errors.is_empty() {
        return String::new();
    }
    format!(
        "{}/{rounds} runs failed: {}",
        c.errors.len(),
        cell(&c.errors[0])
    )
}

fn alloc_table(
    md: &mut String,
    mode: &Mode,
    built: &[Result<(), String>],
    cells: &BTreeMap<(usize, usize), Cell<AllocSample>>,
) {
    let _ = writeln!(md, "## Allocators\n");
    let _ = writeln!(
        md,
        "Each run is a fresh process running one workload once; median and min – max over {} runs; \
         ratio = median / system median (lower is better). Peak RSS is VmHWM (median); VmLck is the largest \
         seen at the workload's checkpoints over all runs.\n",
        mode.rounds
    );
    let _ = writeln!(
        md,
        "| workload | allocator | median | min – max | × system | peak RSS | VmLck | note |\n|---|---|---:|---:|---:|---:|---:|---|"
    );
    for (w, &(_, label, full_n, quick_n)) in ALLOC_WORKLOADS.iter().enumerate() {
        let n = if mode.full { full_n } else { quick_n };
        let wl = format!("{label} (n = {})", fmt_count(n as u64));
        let base = cells
            .get(&(w, 0))
            .filter(|c| !c.samples.is_empty())
            .map(|c| median(&c.samples.iter().map(|s| s.ns).collect::<Vec<_>>()));
        for (c, peer) in ALLOCS.iter().enumerate() {
            let label = if c == 0 { wl.as_str() } else { "" };
            if built[c].is_err() {
                let _ = writeln!(
                    md,
                    "| {label} | {} | did not build (see Contenders) | | | | | |",
                    peer.name
                );
                continue;
            }
            let Some(cellv) = cells.get(&(w, c)) else {
                continue;
            };
            if cellv.samples.is_empty() {
                let _ = writeln!(
                    md,
                    "| {label} | {} | failed | | | | | {} |",
                    peer.name,
                    errors_note(cellv, mode.rounds)
                );
                continue;
            }
            let ns: Vec<f64> = cellv.samples.iter().map(|s| s.ns).collect();
            let rss: Vec<f64> = cellv.samples.iter().map(|s| s.rss_kib as f64).collect();
            let lck = cellv.samples.iter().map(|s| s.lck_kib).max().unwrap_or(0);
            let m = median(&ns);
            let (lo, hi) = min_max(&ns);
            let ratio = base.map_or(f64::NAN, |b| m / b);
            let mut note = cellv
                .samples
                .last()
                .map(|s| s.note.clone())
                .unwrap_or_default();
            let errs = errors_note(cellv, mode.rounds);
            if !errs.is_empty() {
                note = format!("{note} {errs}");
            }
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} | {} | {} | {} | {} |",
                peer.name,
                fmt_ns(m),
                fmt_spread(lo, hi),
                fmt_ratio(ratio),
                fmt_kib(median(&rss) as u64),
                fmt_kib(lck),
                cell(note.trim())
            );
        }
    }
    md.push('\n');
}

fn secret_table(
    md: &mut String,
    mode: &Mode,
    built: &[Result<(), String>],
    cells: &BTreeMap<(usize, usize), Cell<f64>>,
) {
    let _ = writeln!(md, "## Secret containers\n");
    let _ = writeln!(
        md,
        "Time per operation: each run warms up, then repeats the operation for {} ms in a fresh process; \
         median and min – max over {} runs; ratio = median / secrecy median. \"read\" touches every byte \
         (sums them) through the library's access path.\n",
        mode.secret_budget_ms, mode.rounds
    );
    let _ = writeln!(md, "| workload | library | median | min – max | × secrecy | note |\n|---|---|---:|---:|---:|---|");
    for (w, &(_, label)) in SECRET_WORKLOADS.iter().enumerate() {
        let base = cells
            .get(&(w, 0))
            .filter(|c| !c.samples.is_empty())
            .map(|c| median(&c.samples));
        for (l, peer) in SECRETS.iter().enumerate() {
            let label = if l == 0 { label } else { "" };
            if built[l].is_err() {
                let _ = writeln!(
                    md,
                    "| {label} | {} | did not build (see Contenders) | | | |",
                    peer.name
                );
                continue;
            }
            let Some(c) = cells.get(&(w, l)) else {
                continue;
            };
            if c.samples.is_empty() {
                let _ = writeln!(
                    md,
                    "| {label} | {} | cannot | | | {} |",
                    peer.name,
                    errors_note(c, mode.rounds)
                );
                continue;
            }
            let m = median(&c.samples);
            let (lo, hi) = min_max(&c.samples);
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} | {} | {} |",
                peer.name,
                fmt_ns(m),
                fmt_spread(lo, hi),
                fmt_ratio(base.map_or(f64::NAN, |b| m / b)),
                errors_note(c, mode.rounds)
            );
        }
    }
    md.push('\n');
}

fn density_table(
    md: &mut String,
    mode: &Mode,
    how: &str,
    built: &[Result<(), String>],
    results: &BTreeMap<usize, Result<Density, String>>,
) {
    let _ = writeln!(
        md,
        "## Density: live 32-byte secrets under an 8 MiB memlock limit\n"
    );
    let _ = writeln!(
        md,
        "One child per library, run as `{how} peers-secrets density <lib> {}`: it creates 32-byte secrets \
         and keeps them alive until the library fails or {} are held, reading VmLck every 256 secrets. \
         \"Silently unlocked\" means the library promises locking but went on creating secrets after VmLck \
         stopped growing (or held more payload than VmLck could contain).\n",
        mode.density_cap,
        fmt_count(mode.density_cap as u64)
    );
    let _ = writeln!(
        md,
        "| library | live secrets held | VmLck at the end | how it ended |\n|---|---:|---:|---|"
    );
    for (l, peer) in SECRETS.iter().enumerate() {
        if built[l].is_err() {
            let _ = writeln!(md, "| {} | – | – | did not build |", peer.name);
            continue;
        }
        match results.get(&l) {
            None => {}
            Some(Err(e)) => {
                let _ = writeln!(md, "| {} | – | – | {} |", peer.name, cell(e));
            }
            Some(Ok(d)) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    peer.name,
                    fmt_count(d.held),
                    fmt_kib(d.lck_kib),
                    cell(&density_verdict(d, mode.density_cap as u64))
                );
            }
        }
    }
    md.push('\n');
}

/// Words for how a density run ended.
fn density_verdict(d: &Density, cap: u64) -> String {
    let mut parts = Vec::new();
    if d.cap_ipc_lock == 1 {
        parts.push("CAVEAT: the child still held CAP_IPC_LOCK".to_string());
    }
    if d.memlock_kib >= 0 && d.memlock_kib as u64 * 1024 != DENSITY_MEMLOCK {
        parts.push(format!("CAVEAT: memlock limit was {} KiB", d.memlock_kib));
    }
    // Unlocked for sure if the payloads alone exceed the locked memory, or if
    // far more secrets were made after VmLck stopped growing than one more
    // slab of an arena could explain.
    let beyond = d.held.saturating_sub(d.plateau_n);
    let unlocked = d.held * 32 > d.lck_kib * 1024 || beyond > 1024.max(d.plateau_n / 10);
    if !d.locks {
        parts.push("does not lock (not a goal of this library)".into());
    } else if unlocked {
        parts.push(format!(
            "**silently unlocked**: VmLck stopped growing at {} after ~{} secrets; {} more were created unlocked",
            fmt_kib(d.plateau_kib),
            fmt_count(d.plateau_n),
            fmt_count(beyond)
        ));
    }
    if d.end == "cap" {
        parts.push(format!("reached the cap of {}", fmt_count(cap)));
    } else {
        let mut end = if parts.is_empty() {
            d.end.clone()
        } else {
            format!("then {}", d.end)
        };
        if d.maps > 0 && d.maps + 100 >= max_map_count() {
            end.push_str(&format!(
                " ({} mappings: vm.max_map_count reached)",
                fmt_count(d.maps)
            ));
        }
        parts.push(end);
    }
    parts.join("; ")
}

fn max_map_count() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530)
}
