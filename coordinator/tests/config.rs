//! The real `baton-coordinator` binary refuses bad settings before it binds or creates anything,
//! naming the variable, flag or file line; `--help` shows every default.

use std::process::{Command, Output};

fn coordinator(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton-coordinator"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("BATON_")) {
        cmd.env_remove(key);
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run baton-coordinator")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_bad_variable_is_named_and_nothing_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("store");
    let out = coordinator(
        &[],
        &[
            ("BATON_LISTEN", "127.0.0.1:0"),
            ("BATON_DATA_DIR", &data.display().to_string()),
            ("BATON_LEASE", "soon"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: BATON_LEASE: `soon` is not a duration"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "the store was created before the settings were checked"
    );
}

#[test]
fn flags_beat_variables_which_beat_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("baton.toml");
    std::fs::write(&file, "lease = \"20s\"\nheartbeat_interval = \"30s\"\n").expect("write");
    let file = file.display().to_string();
    // The file alone is inconsistent (heartbeat 30s >= lease 20s): the error names its line.
    let out = coordinator(&["--config", &file], &[]);
    let err = stderr(&out);
    assert!(
        err.contains("baton.toml:2: `heartbeat_interval`: 30s is not shorter than the lease (20s)"),
        "{err}"
    );
    // A variable overrides the file's heartbeat, and a flag overrides the variable.
    let env = [("BATON_HEARTBEAT_INTERVAL", "1s")];
    let out = coordinator(&["--config", &file, "--heartbeat-interval", "25s"], &env);
    let err = stderr(&out);
    assert!(
        err.contains("--heartbeat-interval: 25s is not shorter"),
        "{err}"
    );
    // With the variable's 1s the timing is fine, so the next check speaks: the TLS pair.
    let out = coordinator(
        &["--config", &file, "--tls-cert-file", "/nonexistent.pem"],
        &env,
    );
    let err = stderr(&out);
    assert!(
        err.contains("--tls-key-file") || err.contains("tls_key_file"),
        "{err}"
    );
}

#[test]
fn help_shows_each_default_and_variable() {
    let out = coordinator(&["--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--lease <VALUE>",
        "[default: 15s]",
        "BATON_LEASE",
        "[default: 4MiB]",
        "BATON_API_TOKEN",
        "--config <FILE>",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
}
