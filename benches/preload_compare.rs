//! Programs under glibc and under the `LD_PRELOAD` library, in one run:
//! malloc benchmarks written for this crate in the image of the usual suite
//! (mimalloc-bench): `simple` ≈ glibc-simple, `threads` ≈ glibc-thread,
//! `larson`, `xmalloc` ≈ xmalloc-test, `cfrac`, `espresso`, `barnes`,
//! `mstress`, `cache-scratch`, `alloc-test`, `malloc-large` and `mleak`
//! (sources in `benches/preload/`, each described at its top), plus two
//! real programs (sqlite3 building and querying a database, CPython building
//! dicts). Each run is measured as the child's CPU time (user + system, from
//! `getrusage(RUSAGE_CHILDREN)`), which a shared, noisy machine disturbs far
//! less than wall time. Interleaved rounds, medians, ratios and their
//! geometric mean.
//!
//! Run: `cargo bench --bench preload_compare [-- --rounds N]` (default 7
//! rounds; needs cc, sqlite3, python3). `cargo test --release --bench
//! preload_compare` runs every case once at 1/20 scale as a smoke test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "../tests/support/preload_lib.rs"]
mod preload_lib;

use preload_lib::{build_preload_lib as build_preload, root};

fn compile(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let src = root().join("benches/preload").join(format!("{name}.c"));
    let ok = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map(|s| s.success());
    assert_eq!(ok.ok(), Some(true), "compiling {name}.c");
    out
}

struct Case {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    stdin: Option<&'static str>,
}

/// User + system CPU time of all waited-for children so far.
fn children_cpu() -> Duration {
    // SAFETY: `rusage` is plain integers, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `getrusage` only writes the `rusage` we hand it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_CHILDREN)");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs the case once and returns the child's CPU time (user + system).
fn run(case: &Case, preload: Option<&Path>) -> Duration {
    let mut cmd = Command::new(&case.program);
    cmd.args(&case.args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    if let Some(lib) = preload {
        cmd.env("LD_PRELOAD", lib);
    }
    cmd.stdin(if case.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let before = children_cpu();
    let mut child = cmd.spawn().expect("spawn");
    if let Some(input) = case.stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let status = child.wait().unwrap();
    let took = children_cpu() - before;
    assert!(status.success(), "{} failed under {:?}", case.name, preload);
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

const SQL: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v INTEGER);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200000)
INSERT INTO t SELECT i, 'name-' || i, i * 7 FROM n;
CREATE INDEX t_v ON t(v);
SELECT count(*), sum(v) FROM t WHERE v % 3 = 0;
";

/// `--rounds N` or `--rounds=N` on the command line.
fn rounds_arg() -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let value = args.iter().enumerate().find_map(|(i, a)| {
        if a == "--rounds" {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix("--rounds=").map(str::to_owned)
        }
    })?;
    match value.parse() {
        Ok(n) if n > 0 => Some(n),
        _ => panic!("--rounds wants a positive number, got {value:?}"),
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let scale = if bench { 1 } else { 20 }; // `cargo test` smoke: 20x smaller
    let rounds = rounds_arg().unwrap_or(if bench { 7 } else { 1 });
    let lib = build_preload();
    let dir = std::env::temp_dir().join(format!("secalloc-preload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = |v: u64| (v / scale).to_string();
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let cases = vec![
        Case {
            name: "simple (glibc-simple)",
            program: compile(&dir, "simple"),
            args: vec![n(20_000_000)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "threads (glibc-thread)",
            program: compile(&dir, "threads"),
            args: vec![n(5_000_000)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "larson",
            program: compile(&dir, "larson"),
            args: vec![n(4_000)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "xmalloc (xmalloc-test)",
            program: compile(&dir, "xmalloc"),
            args: vec![n(2_000_000)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "cfrac",
            program: compile(&dir, "cfrac"),
            args: vec![n(800)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "espresso",
            program: compile(&dir, "espresso"),
            args: vec![n(2_500)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "barnes",
            program: compile(&dir, "barnes"),
            args: vec![n(20)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "mstress",
            program: compile(&dir, "mstress"),
            args: vec![n(100)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "cache-scratch",
            program: compile(&dir, "cache_scratch"),
            args: vec![n(1_500)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "alloc-test",
            program: compile(&dir, "alloc_test"),
            args: vec![n(2_000_000)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "malloc-large",
            program: compile(&dir, "malloc_large"),
            args: vec![n(200)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "mleak",
            program: compile(&dir, "mleak"),
            args: vec![n(10_000_000)],
            env: vec![],
            stdin: None,
        },
        Case {
            name: "sqlite3 200k rows",
            program: PathBuf::from("sqlite3"),
            args: vec![":memory:".into()],
            env: vec![],
            stdin: Some(SQL),
        },
        Case {
            name: "python3 dict build",
            program: PathBuf::from(python),
            args: vec![
                "-c".into(),
                format!(
                    "d={{str(i): [i]*5 for i in range({})}}; print(len(d))",
                    n(1_000_000)
                ),
            ],
            env: vec![("PYTHONMALLOC", "malloc")],
            stdin: None,
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        let (mut glibc, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            glibc.push(run(case, None));
            ours.push(run(case, Some(&lib)));
        }
        let (g, o) = (median(glibc), median(ours));
        rows.push((case.name, g, o, o.as_secs_f64() / g.as_secs_f64()));
    }
    println!("| program | glibc | secalloc preload | ratio |");
    println!("|---|---:|---:|---:|");
    for (name, g, o, r) in &rows {
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {r:.2}× |",
            g.as_secs_f64() * 1e3,
            o.as_secs_f64() * 1e3
        );
    }
    let geomean = (rows.iter().map(|r| r.3.ln()).sum::<f64>() / rows.len() as f64).exp();
    println!("| **geometric mean** | | | **{geomean:.2}×** |");
    println!(
        "\n{rounds} interleaved rounds; medians of the child's CPU time (user+sys); \
         SECALLOC_LOCK=require (locking and zero-on-free on)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
