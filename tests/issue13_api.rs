//! Issue 13: the crate as a user of `secrecy`, `zeroize`, `serde` and
//! `clap` would reach for it — aliases and conversions, serde straight into
//! locked memory, the ways in without a plaintext copy, the traits people
//! derive and compare with, and `LockPolicy::from_env`.
//!
//! The whole binary runs on `SecureAlloc` as its global allocator, so the
//! arena's inspection hooks see every heap byte: a plaintext copy left
//! anywhere (serde_json's scratch, an intermediate `String`) would be found.
//! No harness: the scans need the process quiet (`support::run_checks`).

mod support;

use secalloc::arena::inspect::{arena_contains, range_is_zeroed};
use secalloc::{Error, LockPolicy, Secret, SecretBytes, SecretString, SecureAlloc};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

#[global_allocator]
static GLOBAL: SecureAlloc = SecureAlloc::new();

/// A canary built on the stack at run time, so that the only copies in the
/// arena are the ones the code under test made.
fn canary(tag: u8) -> [u8; 24] {
    let mut c = *b"CANARY-xx-0123456789abcd";
    c[7] = b'a' + tag % 26;
    c[8] = b'a' + tag / 26;
    c
}

fn wipe(v: &mut Vec<u8>) {
    v.zeroize();
}

fn aliases_and_conversions() {
    let a: SecretString = "hunter2".parse().unwrap();
    assert_eq!(a.expose(|s| *s == "hunter2"), Ok(true));
    let b = SecretString::try_from(String::from("from-string")).unwrap();
    assert_eq!(b.expose(|s| s.len()), Ok(11));
    let c = SecretBytes::try_from(vec![1u8, 2, 3]).unwrap();
    assert_eq!(c.expose(|v| v.to_vec()), Ok(vec![1, 2, 3]));
    let d = SecretBytes::try_from(&[9u8; 4][..]).unwrap();
    assert_eq!(d.expose(|v| v[3]), Ok(9));
    // What a `clap` value parser needs: `FromStr` whose error is an `Error`.
    fn parse<T: std::str::FromStr<Err = Error>>(s: &str) -> Result<T, Error> {
        s.parse()
    }
    let e: SecretString = parse("x").unwrap();
    assert_eq!(e.expose(|s| s.len()), Ok(1));
}

#[derive(Deserialize)]
struct Config {
    user: String,
    token: SecretString,
    key: Secret<[u8; 4]>,
    blob: SecretBytes,
}

#[derive(Deserialize)]
struct PlainConfig {
    #[allow(dead_code)]
    user: String,
    #[allow(dead_code)]
    token: String,
}

fn serde_deserializes_into_locked_memory_and_leaves_no_copy() {
    for (i, escaped) in [(0u8, false), (1, true)] {
        let needle = canary(i);
        let mut token = String::from_utf8(needle.to_vec()).unwrap();
        if escaped {
            // An escape makes serde_json unescape into its scratch buffer.
            token.insert_str(6, "\\u0041");
        }
        let mut json = format!(r#"{{"user":"ci","token":"{token}","key":[1,2,3,4],"blob":[5,6]}}"#)
            .into_bytes();
        token.zeroize();
        let config: Config = serde_json::from_slice(&json).unwrap();
        wipe(&mut json);
        assert_eq!(config.user, "ci");
        assert_eq!(config.key.expose(|k| *k), Ok([1, 2, 3, 4]));
        assert_eq!(config.blob.expose(|b| b.to_vec()), Ok(vec![5, 6]));
        let mut expected = needle.to_vec();
        if escaped {
            expected.insert(6, b'A');
        }
        assert_eq!(
            config.token.expose(|t| t.as_bytes() == &expected[..]),
            Ok(true)
        );
        expected.zeroize();
        // The stored form is ciphertext; serde_json's scratch and the
        // input were freed or wiped: no copy of the plaintext anywhere.
        let tail = &needle[10..]; // part of the canary no escape touches
        assert!(
            !arena_contains(tail),
            "plaintext left in the arena (escaped={escaped})"
        );
        drop(config);
    }
    // Control: the same document into a plain `String` field is found.
    let needle = canary(2);
    let token = String::from_utf8(needle.to_vec()).unwrap();
    let mut json = format!(r#"{{"user":"ci","token":"{token}"}}"#).into_bytes();
    drop(token);
    let plain: PlainConfig = serde_json::from_slice(&json).unwrap();
    wipe(&mut json);
    assert!(
        arena_contains(&needle[10..]),
        "the scan finds a plain String"
    );
    drop(plain);
    // Wrong sizes are errors, not truncations.
    assert!(serde_json::from_str::<Secret<[u8; 4]>>("[1,2,3]").is_err());
    assert!(serde_json::from_str::<Secret<[u8; 4]>>("[1,2,3,4,5]").is_err());
}

#[derive(Serialize)]
struct Export {
    #[serde(serialize_with = "secalloc::serde::expose")]
    token: SecretString,
    #[serde(serialize_with = "secalloc::serde::expose")]
    key: Secret<[u8; 2]>,
}

fn serialize_only_by_opt_in() {
    // `Secret` has no `Serialize` of its own (a derive cannot leak it).
    static_assertions::assert_not_impl_any!(SecretString: Serialize);
    static_assertions::assert_not_impl_any!(SecretBytes: Serialize);
    let e = Export {
        token: "t0k".parse().unwrap(),
        key: Secret::new([7, 8]).unwrap(),
    };
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"token":"t0k","key":[7,8]}"#
    );
}

/// A pipe's two ends as files (`std::io::pipe` is newer than the MSRV).
fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: a valid two-int array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: two fresh descriptors we own.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

fn ways_in_without_a_plaintext_copy() {
    // copy_from_slice
    let s = SecretBytes::copy_from_slice(b"abc").unwrap();
    assert_eq!(s.expose(|v| v.to_vec()), Ok(b"abc".to_vec()));
    // random
    let r1 = Secret::<[u8; 32]>::random().unwrap();
    let r2 = Secret::<[u8; 32]>::random().unwrap();
    let (k1, k2) = (r1.expose(|k| *k).unwrap(), r2.expose(|k| *k).unwrap());
    assert_ne!(k1, k2);
    assert!(k1.iter().any(|&b| b != 0));
    // read_from a pipe: no copy outside locked memory.
    let needle = canary(3);
    let (mut rx, mut tx) = pipe();
    std::io::Write::write_all(&mut tx, &needle).unwrap();
    drop(tx);
    let read = SecretBytes::read_from(&mut rx, 1024).unwrap();
    assert_eq!(read.expose(|v| v[..] == needle[..]), Ok(true));
    assert!(!arena_contains(&needle), "read_from left a copy");
    // ... and a limit is a limit.
    let (mut rx, mut tx) = pipe();
    std::io::Write::write_all(&mut tx, &[1u8; 100]).unwrap();
    drop(tx);
    assert_eq!(
        SecretBytes::read_from(&mut rx, 99).err(),
        Some(Error::TooLong(99))
    );
    let exact = SecretBytes::read_from(&[2u8; 100][..], 100).unwrap();
    assert_eq!(exact.expose(|v| v.len()), Ok(100));
    // try_new_with_len: the closure's own error comes back.
    #[derive(Debug, PartialEq)]
    enum MyError {
        Short,
        Secalloc(Error),
    }
    impl From<Error> for MyError {
        fn from(e: Error) -> Self {
            MyError::Secalloc(e)
        }
    }
    let ok = SecretBytes::try_new_with_len(16, |b| {
        b.fill(5);
        Ok::<(), MyError>(())
    })
    .unwrap();
    assert_eq!(ok.expose(|v| v.iter().all(|&b| b == 5)), Ok(true));
    let err = SecretBytes::try_new_with_len(16, |_| Err(MyError::Short));
    assert_eq!(err.err(), Some(MyError::Short));
}

fn from_env_copies_and_optionally_wipes_the_variable() {
    let needle = canary(4);
    let value = String::from_utf8(needle.to_vec()).unwrap();
    // SAFETY: this binary is single-threaded here (no harness).
    unsafe { std::env::set_var("SECALLOC_TEST_TOKEN", &value) };
    drop(value);
    let t = SecretString::from_env("SECALLOC_TEST_TOKEN").unwrap();
    assert_eq!(t.expose(|s| s.as_bytes() == needle), Ok(true));
    assert!(std::env::var_os("SECALLOC_TEST_TOKEN").is_some(), "kept");
    // The variable's bytes, where the environment block holds them.
    let name = c"SECALLOC_TEST_TOKEN";
    // SAFETY: single-threaded; getenv's result is read before any change.
    let at = unsafe { libc::getenv(name.as_ptr()) } as usize;
    assert_ne!(at, 0);
    // SAFETY: single-threaded (no other thread touches the environment),
    // and the string came from `set_var`, so it is writable.
    let t2 = unsafe { SecretString::from_env_removing("SECALLOC_TEST_TOKEN") }.unwrap();
    assert_eq!(t2.expose(|s| s.len()), Ok(24));
    assert!(std::env::var_os("SECALLOC_TEST_TOKEN").is_none(), "removed");
    // glibc's `setenv` made that string (with its own malloc) and never
    // frees it: the value's 24 bytes are still mapped, now zero.
    // SAFETY: the string stays allocated (setenv leaks replaced strings).
    let bytes = unsafe { std::slice::from_raw_parts(at as *const u8, 24) };
    assert!(bytes.iter().all(|&b| b == 0), "value wiped where it was");
    assert_eq!(
        SecretString::from_env("SECALLOC_NOT_SET").err(),
        Some(Error::Io(std::io::ErrorKind::NotFound))
    );
    // Found by the issue-13 attack review: a name with `=` read the tail of
    // another variable's value (glibc's getenv matches the prefix).
    // SAFETY: single-threaded.
    unsafe { std::env::set_var("SECALLOC_TEST_Q", "a=tail-of-another-value") };
    assert_eq!(
        SecretString::from_env("SECALLOC_TEST_Q=a").err(),
        Some(Error::Io(std::io::ErrorKind::NotFound))
    );
}

/// `read_password` on a pseudo-terminal: the child makes the pty its
/// controlling terminal; the parent types a password and checks that it was
/// not echoed and that echo is back on afterwards.
fn read_password_turns_echo_off_and_restores_it() {
    let (status, rest, echo) = password_session(b"pa55-w0rd\n", "ok");
    assert!(libc::WIFEXITED(status), "child crashed");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "2 wrong value, 3 error, 4 echo not restored, 5 exec failed"
    );
    assert!(echo, "echo off after the prompt");
    assert!(
        !rest.windows(4).any(|w| w == b"pa55"),
        "the password was echoed: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Found by the issue-13 attack review: Ctrl-C (or SIGTERM, a hang-up) at
/// the prompt killed the process with the terminal's echo still off.
fn read_password_restores_echo_when_interrupted() {
    let (status, _, echo) = password_session(b"hun\x03", "ok");
    assert!(libc::WIFSIGNALED(status), "the child was not interrupted");
    assert_eq!(libc::WTERMSIG(status), libc::SIGINT);
    assert!(echo, "echo left off after Ctrl-C at the prompt");
}

/// A program that ignores SIGINT keeps reading after a Ctrl-C: the
/// prompt's handler must not replace that (it would turn echo back on and
/// let the rest of the password show).
fn read_password_leaves_an_ignored_sigint_alone() {
    let (status, rest, echo) = password_session(b"\x03\0pa55-w0rd\n", "ok_ignoring_sigint");
    assert!(libc::WIFEXITED(status), "the child died");
    assert_eq!(libc::WEXITSTATUS(status), 0, "wrong value");
    assert!(echo, "echo off afterwards");
    assert!(
        !rest.windows(4).any(|w| w == b"pa55"),
        "echoed after an ignored Ctrl-C: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Found by the review: a line that fills the terminal's 4,095-character
/// buffer was returned cut short; it is refused now.
fn read_password_refuses_a_line_the_terminal_may_have_cut() {
    let mut line = vec![b'x'; 4100];
    line.push(b'\n');
    let (status, _, _) = password_session(&line, "too_long");
    assert!(libc::WIFEXITED(status));
    assert_eq!(libc::WEXITSTATUS(status), 0, "6: not TooLong");
}

/// Runs the password child on a fresh pty, types `input` after the prompt;
/// returns its wait status, what the terminal showed after the prompt, and
/// whether echo is on once the child is gone.
fn password_session(input: &[u8], expect: &str) -> (i32, Vec<u8>, bool) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: out-pointers to two ints; null name, termios and winsize.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: the harness-less binary is single-threaded; the child only
    // runs the call under test and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // A forked child has no key (by design): set up the controlling
        // terminal, then start this binary afresh as the child scenario.
        let exe = std::ffi::CString::new(
            std::env::current_exe()
                .unwrap()
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        let env_child =
            std::ffi::CString::new(format!("{}=password:{expect}", support::CHILD_ENV)).unwrap();
        let env_fd = std::ffi::CString::new(format!("SECALLOC_TEST_PTY={slave}")).unwrap();
        let argv = [exe.as_ptr(), std::ptr::null()];
        let envp = [env_child.as_ptr(), env_fd.as_ptr(), std::ptr::null()];
        // SAFETY: standard controlling-terminal set-up, then exec with
        // NUL-terminated argument and environment arrays.
        unsafe {
            libc::close(master);
            libc::setsid();
            libc::ioctl(slave, libc::TIOCSCTTY, 0);
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(5);
        }
    }
    // SAFETY: close our copy of the slave.
    unsafe { libc::close(slave) };
    let read_some = |fd: i32| {
        let mut buf = [0u8; 256];
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        buf[..n.max(0) as usize].to_vec()
    };
    let mut seen = Vec::new();
    while !seen.ends_with(b"Password: ") {
        let got = read_some(master);
        if got.is_empty() {
            let mut status = 0;
            // SAFETY: our child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            panic!("no prompt; child exit {}", libc::WEXITSTATUS(status));
        }
        seen.extend(got);
    }
    // Give the child time to turn echo off before typing (it does so right
    // after the prompt; TCSAFLUSH would discard input typed before).
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A NUL byte in `input` means: pause, let the child react, go on.
    for (i, part) in input.split(|&b| b == 0).enumerate() {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        for chunk in part.chunks(512) {
            // SAFETY: valid buffer.
            unsafe { libc::write(master, chunk.as_ptr().cast(), chunk.len()) };
        }
    }
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let mut rest = Vec::new();
    let mut fds = libc::pollfd {
        fd: master,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    while unsafe { libc::poll(&mut fds, 1, 100) } > 0 && fds.revents & libc::POLLIN != 0 {
        let got = read_some(master);
        if got.is_empty() {
            break;
        }
        rest.extend(got);
    }
    // SAFETY: termios is plain data; the pty's settings read through the master.
    let mut mode: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and termios.
    unsafe { libc::tcgetattr(master, &mut mode) };
    // SAFETY: ours.
    unsafe { libc::close(master) };
    (status, rest, mode.c_lflag & libc::ECHO != 0)
}

#[derive(Zeroize, ZeroizeOnDrop)]
struct Credentials {
    #[zeroize(skip)]
    user: String,
    password: SecretString,
}

fn zeroize_derive_and_comparisons() {
    let mut c = Credentials {
        user: "ci".into(),
        password: "hunter2".parse().unwrap(),
    };
    let (cell, len) = c.password.cell_range();
    c.zeroize();
    assert_eq!(c.password.expose(|s| s.len()), Err(Error::Destroyed));
    assert_eq!(range_is_zeroed(cell, len), Some(true), "cell wiped");
    assert_eq!(c.user, "ci");
    // ct_eq_bytes for a presented token; subtle's trait.
    let t: SecretString = "t0k3n".parse().unwrap();
    assert_eq!(t.ct_eq_bytes(b"t0k3n"), Ok(true));
    assert_eq!(t.ct_eq_bytes(b"t0k3m"), Ok(false));
    assert_eq!(t.ct_eq_bytes(b"t0k3n!"), Ok(false));
    let u: SecretString = "t0k3n".parse().unwrap();
    assert!(bool::from(subtle::ConstantTimeEq::ct_eq(&t, &u)));
    // The string view compares with &str and derefs to str.
    assert_eq!(t.expose(|s| *s == "t0k3n" && s.starts_with("t0")), Ok(true));
    // Every Debug is redacted.
    assert_eq!(format!("{t:?}"), "Secret([REDACTED])");
    assert_eq!(
        t.expose(|s| format!("{s:?}")).unwrap(),
        "SecureString([REDACTED])"
    );
    let b = SecretBytes::copy_from_slice(b"xyz").unwrap();
    assert_eq!(
        b.expose(|v| format!("{v:?}")).unwrap(),
        "SecureBytes([REDACTED])"
    );
}

fn lock_policy_from_env() {
    // SAFETY: single-threaded.
    unsafe { std::env::remove_var("SECALLOC_LOCK") };
    assert_eq!(LockPolicy::from_env(), Ok(None));
    for (value, policy) in [
        ("require", LockPolicy::FailClosed),
        ("fail-closed", LockPolicy::FailClosed),
        ("best-effort", LockPolicy::BestEffort),
    ] {
        // SAFETY: single-threaded.
        unsafe { std::env::set_var("SECALLOC_LOCK", value) };
        assert_eq!(LockPolicy::from_env(), Ok(Some(policy)), "{value}");
    }
    // SAFETY: single-threaded.
    unsafe { std::env::set_var("SECALLOC_LOCK", "best_efort") };
    assert_eq!(LockPolicy::from_env(), Err(Error::InvalidPolicy));
    // SAFETY: single-threaded.
    unsafe { std::env::remove_var("SECALLOC_LOCK") };
}

/// The exec'd child of [`read_password_turns_echo_off_and_restores_it`]:
/// its controlling terminal is the pty.
fn password_child(expect: &str) -> ! {
    let slave: i32 = std::env::var("SECALLOC_TEST_PTY").unwrap().parse().unwrap();
    if expect == "ok_ignoring_sigint" {
        // SAFETY: setting a signal's action to "ignore" before any thread.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    }
    let code = match (SecretString::read_password("Password: "), expect) {
        (Err(Error::TooLong(_)), "too_long") => 0,
        (_, "too_long") => 6,
        (Ok(p), _) if p.expose(|s| *s == "pa55-w0rd").unwrap_or(false) => 0,
        (Ok(_), _) => 2,
        (Err(_), _) => 3,
    };
    // SAFETY: termios is plain data.
    let mut mode: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and termios.
    unsafe { libc::tcgetattr(slave, &mut mode) };
    let echo_back = mode.c_lflag & libc::ECHO != 0;
    std::process::exit(if code == 0 && !echo_back { 4 } else { code });
}

fn main() {
    if let Some(expect) = support::child_scenario()
        .as_deref()
        .and_then(|s| s.strip_prefix("password:"))
    {
        password_child(expect);
    }
    support::run_checks(&[
        ("aliases_and_conversions", aliases_and_conversions),
        (
            "serde_deserializes_into_locked_memory_and_leaves_no_copy",
            serde_deserializes_into_locked_memory_and_leaves_no_copy,
        ),
        ("serialize_only_by_opt_in", serialize_only_by_opt_in),
        (
            "ways_in_without_a_plaintext_copy",
            ways_in_without_a_plaintext_copy,
        ),
        (
            "from_env_copies_and_optionally_wipes_the_variable",
            from_env_copies_and_optionally_wipes_the_variable,
        ),
        (
            "read_password_turns_echo_off_and_restores_it",
            read_password_turns_echo_off_and_restores_it,
        ),
        (
            "read_password_restores_echo_when_interrupted",
            read_password_restores_echo_when_interrupted,
        ),
        (
            "read_password_leaves_an_ignored_sigint_alone",
            read_password_leaves_an_ignored_sigint_alone,
        ),
        (
            "read_password_refuses_a_line_the_terminal_may_have_cut",
            read_password_refuses_a_line_the_terminal_may_have_cut,
        ),
        (
            "zeroize_derive_and_comparisons",
            zeroize_derive_and_comparisons,
        ),
        ("lock_policy_from_env", lock_policy_from_env),
    ]);
}
