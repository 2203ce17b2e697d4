//! Runs one measurement as a child process and reads its result line.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Output {
    pub stdout: String,
    /// None if it exited normally; else what ended it.
    pub failure: Option<String>,
}

/// Runs `cmd`, killing it after `limit`. Output is drained on threads so a
/// chatty child cannot block on a full pipe.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Output {
                stdout: String::new(),
                failure: Some(format!("could not start: {e}")),
            }
        }
    };
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break Err(format!("wait failed: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let failure = match status {
        Ok(s) if s.success() => None,
        Ok(s) => Some(describe_exit(s, &stderr)),
        Err(e) => Some(e),
    };
    Output { stdout, failure }
}

fn describe_exit(s: std::process::ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let how = match s.signal() {
        Some(sig) => format!("killed by signal {sig} ({})", signal_name(sig)),
        None => format!("exit status {}", s.code().unwrap_or(-1)),
    };
    if last.is_empty() {
        how
    } else {
        format!("{how}: {last}")
    }
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        _ => "signal",
    }
}

/// The `key=value` fields of the last line starting with `tag`. The field
/// named `last_key` takes the rest of the line (it may contain spaces).
pub fn fields(stdout: &str, tag: &str, last_key: &str) -> Option<HashMap<String, String>> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(tag))?
        .trim_start();
    let mut map = HashMap::new();
    let (head, tail) = match line.find(&format!("{last_key}=")) {
        Some(i) => (&line[..i], Some(&line[i + last_key.len() + 1..])),
        None => (line, None),
    };
    for tok in head.split_whitespace() {
        if let Some((k, v)) = tok.split_once('=') {
            map.insert(k.to_string(), v.to_string());
        }
    }
    if let Some(t) = tail {
        map.insert(last_key.to_string(), t.trim().to_string());
    }
    Some(map)
}
