//! A worker keeps its code locked in memory (`lock_code`, on by default) from its start, before
//! it first reaches its coordinator; `--lock-code false` leaves it to the kernel.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_baton-worker");

/// The file `sh` names on PATH (a symbolic link followed), as `/proc/PID/maps` shows it.
fn shell_file() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join("sh"))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .expect("sh on PATH")
}

/// Starts a worker whose coordinator is not there, waits for its first failed attempt to
/// reach it (after its start-up, locking included) and returns its locked KiB and whether it
/// maps its shell's program.
fn locked_at_first_connect(extra: &[&str]) -> (u64, bool) {
    let work = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut child = Command::new(BIN)
        .args(["--coordinator", &format!("http://127.0.0.1:{port}")])
        .arg("--work-dir")
        .arg(work.path())
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        // The worker logs to its standard output.
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn baton-worker");
    let stdout = child.stdout.take().expect("stdout");
    let mut log = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a log line");
        log.push_str(&line);
        log.push('\n');
        if line.contains("cannot reach the coordinator") {
            break;
        }
    }
    let locked = baton_resident::locked_kib(child.id()).expect("VmLck");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).expect("maps");
    let shell_mapped = maps
        .lines()
        .any(|l| l.ends_with(&*shell_file().to_string_lossy()));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log.contains("cannot reach the coordinator"),
        "the worker ended before trying its coordinator:\n{log}"
    );
    (locked, shell_mapped)
}

#[test]
fn a_workers_code_and_its_shell_are_locked_in_memory_unless_told_not_to() {
    let (locked, shell_mapped) = locked_at_first_connect(&[]);
    assert!(locked > 0, "nothing locked");
    assert!(
        shell_mapped,
        "the shell's program {:?} is not mapped",
        shell_file()
    );
    assert_eq!(
        locked_at_first_connect(&["--lock-code", "false"]),
        (0, false)
    );
}
