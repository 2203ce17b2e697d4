//! Programs under glibc and under the `LD_PRELOAD` library, in one run:
//! four malloc benchmarks written for this crate in the image of the usual
//! suite (`simple` ≈ glibc-simple, `threads` ≈ glibc-thread, `larson`,
//! `xmalloc` ≈ xmalloc-test), plus two real programs (sqlite3 building and
//! querying a database, CPython building dicts). Interleaved rounds, medians,
//! ratios and their geometric mean.
//!
//! Run: `cargo bench --bench preload_compare` (needs cc, sqlite3, python3).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let start = Instant::now();
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
    let took = start.elapsed();
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

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let scale = if bench { 1 } else { 20 }; // `cargo test` smoke: 20x smaller
    let rounds = if bench { 7 } else { 1 };
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
    println!("\n{rounds} interleaved rounds; SECALLOC_LOCK=require (locking and zero-on-free on)");
    let _ = std::fs::remove_dir_all(&dir);
}
