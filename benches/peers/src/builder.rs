//! Builds each contender with cargo, one package per invocation, and turns
//! a failed build into a one-line reason for the report.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub struct Cargo<'a> {
    pub workspace: &'a Path,
    pub target_dir: &'a Path,
}

impl Cargo<'_> {
    /// `cargo build --release -p <pkg> [args]`; Err holds the reason.
    pub fn build(&self, pkg: &str, extra: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--release")
            .arg("--manifest-path")
            .arg(self.workspace.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(self.target_dir)
            .args(["-p", pkg])
            .args(extra);
        // PEERS_JOBS limits build parallelism on a shared machine.
        if let Ok(j) = std::env::var("PEERS_JOBS") {
            cmd.args(["-j", &j]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        eprint!("peers: building {pkg} {} ... ", extra.join(" "));
        let out = match cmd.output() {
            Ok(o) => o,
            Err(e) => {
                eprintln!("could not run cargo");
                return Err(format!("could not run cargo: {e}"));
            }
        };
        if out.status.success() {
            eprintln!("ok ({:.0} s)", started.elapsed().as_secs_f64());
            Ok(())
        } else {
            let reason = failure_reason(&String::from_utf8_lossy(&out.stderr));
            eprintln!("FAILED: {reason}");
            Err(reason)
        }
    }
}

/// The first specific error lines of a failed cargo build: compiler errors,
/// a build script's panic message, a C compiler's complaint. Cargo's own
/// generic wrappers ("could not compile", "failed to run custom build
/// command") are skipped because they name no cause.
pub fn failure_reason(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let mut picked: Vec<String> = Vec::new();
    fn push(picked: &mut Vec<String>, s: &str) {
        let s = s.trim_start_matches("cargo:warning=").trim();
        if !s.is_empty() && !picked.iter().any(|p| p == s) {
            picked.push(s.to_string());
        }
    }
    for (i, line) in lines.iter().enumerate() {
        let generic = line.starts_with("error: could not compile")
            || line.starts_with("error: failed to run custom build command")
            || line.starts_with("error: build failed")
            || line.starts_with("warning");
        if generic {
            continue;
        }
        if line.contains("panicked at") {
            // The message follows on the next non-empty line.
            if let Some(msg) = lines[i + 1..].iter().find(|l| !l.is_empty()) {
                push(&mut picked, msg);
            }
        } else if line.starts_with("error")
            || line.contains("error:")
            || line.contains("fatal error")
            || line.contains("not found")
        {
            push(&mut picked, line);
        }
    }
    if picked.is_empty() {
        let tail: Vec<&str> = lines.iter().rev().take(3).rev().copied().collect();
        push(&mut picked, &tail.join(" "));
    }
    let mut reason = picked
        .iter()
        .take(3)
        .map(|l| shorten_paths(l))
        .collect::<Vec<_>>()
        .join("; ");
    if reason.chars().count() > 300 {
        reason = reason.chars().take(297).collect::<String>() + "...";
    }
    reason
}

/// Drops the `~/.cargo/registry/src/<index>/` part of source paths, which
/// says nothing and is long.
fn shorten_paths(line: &str) -> String {
    const MARK: &str = "/registry/src/";
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(MARK) {
        let start = rest[..i].rfind([' ', '\'', '"', '(']).map_or(0, |j| j + 1);
        out.push_str(&rest[..start]);
        let after = &rest[i + MARK.len()..];
        rest = after.find('/').map_or(after, |j| &after[j + 1..]);
    }
    out.push_str(rest);
    out
}

/// The C compiler for hardened_malloc's C23 sources: `PEERS_C23_CC`, else
/// the first of clang-19/clang-18/clang found (Debian 12's gcc 12 fails),
/// else whatever `CC` says.
pub fn c23_compiler() -> Option<String> {
    if let Ok(cc) = std::env::var("PEERS_C23_CC") {
        return Some(cc);
    }
    ["clang-19", "clang-18", "clang"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(String::from)
        .or_else(|| std::env::var("CC").ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_cause() {
        let err = "   Compiling x v1\nerror: failed to run custom build command for `x v1`\n\
                   --- stderr\n\nthread 'main' panicked at build.rs:3:5:\nneeds C23\n\
                   error: could not compile `y`\n\
                   /root/.cargo/registry/src/index.crates.io-abc/x-1/a.c:1:2: error: bad";
        assert_eq!(failure_reason(err), "needs C23; x-1/a.c:1:2: error: bad");
    }
}
