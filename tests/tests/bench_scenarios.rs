//! `baton-bench`, the benchmark that shows what Baton is for, still runs every scenario end to
//! end (a real coordinator and real workers on loopback, sizes cut down so that a debug build
//! finishes in seconds) and its figures still show the behaviour they are about. Figures in
//! time are only checked to be there: the benchmark prints them, it never fails on a slow
//! machine, and neither does this test. With `BATON_BENCH_BIN_DIR` set, the bench starts the
//! coordinator and worker from that directory instead (CI: the PGO and BOLT build of
//! `bench/pgo.sh`).

use std::path::PathBuf;
use std::sync::OnceLock;

use baton_tests::workspace_binary;
use serde_json::Value;

/// `baton-bench` of this build profile, with the coordinator and worker it starts beside it.
fn bench() -> &'static PathBuf {
    static BENCH: OnceLock<PathBuf> = OnceLock::new();
    BENCH.get_or_init(|| {
        workspace_binary("baton-coordinator", "baton-coordinator");
        workspace_binary("baton-worker", "baton-worker");
        workspace_binary("baton-bench", "baton-bench")
    })
}

/// Runs `baton-bench ARGS` to its end.
fn output(args: &[&str]) -> std::process::Output {
    std::process::Command::new(bench())
        .args(args)
        .output()
        .expect("run baton-bench")
}

/// Runs `baton-bench ARGS` and returns the JSON line of each scenario it ran.
fn run(args: &[&str]) -> Vec<Value> {
    let out = output(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "baton-bench {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let figures: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line of figures"))
        .collect();
    assert!(!figures.is_empty(), "no JSON line in:\n{stdout}");
    figures
}

/// The number at `path` in `figures`.
fn number(figures: &Value, path: &[&str]) -> f64 {
    let mut at = figures;
    for key in path {
        at = &at[*key];
    }
    at.as_f64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {figures}"))
}

/// A figure that was measured (a time, a rate, a size): positive and finite.
fn measured(figures: &Value, path: &[&str]) {
    let v = number(figures, path);
    assert!(v.is_finite() && v > 0.0, "{path:?} = {v} in {figures}");
}

#[test]
fn rapid_push_runs_only_what_still_matters_under_each_policy() {
    // Three pushes 50 ms apart, each job 1 s: every later push comes while the first runs.
    let figures = run(&[
        "rapid-push",
        "--pushes",
        "3",
        "--interval",
        "50ms",
        "--job",
        "1s",
        "--workers",
        "2",
        "--settle",
        "1s",
    ]);
    let variants = figures[0]["variants"]
        .as_array()
        .expect("the variants' figures");
    let variant = |name: &str| {
        variants
            .iter()
            .find(|v| v["variant"] == name)
            .unwrap_or_else(|| panic!("no variant {name} in {variants:?}"))
    };
    let count = |v: &Value, key: &str| number(v, &[key]) as u64;

    let fifo = variant("queued (fifo)");
    assert_eq!(
        count(fifo, "jobs_started"),
        3,
        "FIFO runs every push: {fifo}"
    );
    assert_eq!(count(fifo, "executions_superseded"), 0, "{fifo}");

    let superseded = variant("superseded");
    assert_eq!(
        count(superseded, "jobs_started"),
        2,
        "the first push runs, the second is superseded by the third in the inbound slot: {superseded}"
    );
    assert_eq!(
        count(superseded, "executions_superseded"),
        1,
        "{superseded}"
    );

    // Every push but the last ends without a result of its own, whoever started.
    let auto_cancel = variant("superseded + auto-cancel running");
    assert_eq!(
        count(auto_cancel, "executions_cancelled") + count(auto_cancel, "executions_superseded"),
        2,
        "{auto_cancel}"
    );

    let settle = variant("superseded + auto-cancel running + settle");
    assert_eq!(
        count(settle, "jobs_started"),
        1,
        "the settle window starts only the last push: {settle}"
    );
    assert_eq!(number(settle, &["worker_seconds_wasted"]), 0.0, "{settle}");
    assert_eq!(
        count(settle, "executions_cancelled") + count(settle, "executions_superseded"),
        2,
        "{settle}"
    );

    for v in variants {
        // The last push's result needs its own whole job.
        assert!(number(v, &["last_push_to_result_s"]) >= 1.0, "{v}");
        assert!(
            number(v, &["worker_seconds_wasted"]) <= number(v, &["worker_seconds_spent"]),
            "{v}"
        );
    }
    // Against FIFO, the settle window spends the least worker time of all.
    let spent = |v: &Value| number(v, &["worker_seconds_spent"]);
    assert!(spent(settle) < spent(superseded) && spent(superseded) < spent(fifo));
}

#[test]
fn cancel_latency_measures_every_trigger_job_mode_and_job() {
    // The default pacing: each cancel after 30 ms of quiet, the floor probed amid it.
    let figures = run(&["cancel-latency", "--runs", "2"]);
    let figures = &figures[0];
    for trigger in [
        "auto_cancel",
        "stop_abandon",
        "stop_call",
        "floor_rpc",
        "floor_flush",
    ] {
        for mode in ["", "_in_worker"] {
            for job in ["", "_bash_trap"] {
                measured(figures, &[&format!("{trigger}{mode}{job}"), "p50_ms"]);
            }
        }
    }
}

#[test]
fn cancel_latency_after_a_page_out_measures_every_cancel_or_says_what_it_needs() {
    // Paging out another process's memory needs CAP_SYS_NICE: root has it (CI runs as root).
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let args = ["cancel-latency", "--runs", "1", "--page-out"];
    if !root {
        let out = output(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("CAP_SYS_NICE"),
            "{stderr}"
        );
        return;
    }
    let figures = run(&args);
    let figures = &figures[0];
    assert_eq!(figures["page_out"], Value::Bool(true));
    for trigger in ["auto_cancel", "stop_abandon"] {
        for mode in ["", "_in_worker"] {
            measured(figures, &[&format!("{trigger}{mode}"), "p50_ms"]);
        }
    }
}

#[test]
fn dispatch_latency_measures_every_job_mode_and_shell() {
    // The default pacing: each start once the worker is at rest and 30 ms have gone quiet.
    let figures = run(&["dispatch-latency", "--runs", "2"]);
    let figures = &figures[0];
    for mode in ["supervised", "in_worker"] {
        for shell in ["", "_sh_builtin", "_bash_shell"] {
            let key = format!("{mode}{shell}");
            for figure in [
                "p50_ms",
                "start_call_p50_ms",
                "shell_startup_p50_ms",
                "floor_rpc_p50_ms",
            ] {
                measured(figures, &[&key, figure]);
            }
        }
    }
}

#[test]
fn throughput_completes_every_execution_with_real_and_simulated_workers() {
    let figures = run(&[
        "throughput",
        "--executions",
        "6",
        "--workers",
        "1",
        "--slots",
        "2",
        "--clients",
        "2",
        "--simulated-executions",
        "20",
    ]);
    assert_eq!(figures.len(), 2, "a real and a simulated run: {figures:?}");
    for (figures, executions) in figures.iter().zip([6.0, 20.0]) {
        assert_eq!(number(figures, &["executions"]), executions, "{figures}");
        assert_eq!(number(figures, &["not_succeeded"]), 0.0, "{figures}");
        measured(figures, &["job_state_changes_per_s"]);
        measured(figures, &["coordinator_peak_rss_mib"]);
    }
}

#[test]
fn fleet_holds_simulated_workers_and_still_dispatches() {
    let figures = run(&[
        "fleet",
        "--workers",
        "20",
        "--pipelines",
        "30",
        "--rest",
        "1s",
        "--runs",
        "2",
    ]);
    let figures = &figures[0];
    assert_eq!(number(figures, &["workers"]), 20.0);
    assert_eq!(number(figures, &["pipelines"]), 30.0);
    measured(figures, &["rss_at_rest_mib"]);
    measured(figures, &["dispatch_p50_ms"]);
}

/// `BATON_BENCH_BIN_DIR` points the bench at another build of the coordinator and worker (CI
/// runs these scenarios again against `bench/pgo.sh`'s). A directory without them is an error
/// that names the missing file and where the bench looked, before anything starts.
#[test]
fn a_bin_dir_without_the_binaries_is_named_in_the_error() {
    let empty = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(bench())
        .env("BATON_BENCH_BIN_DIR", empty.path())
        .args(["cancel-latency", "--runs", "1"])
        .output()
        .expect("run baton-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran without binaries: {stderr}");
    let missing = empty.path().join("baton-coordinator");
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("BATON_BENCH_BIN_DIR"),
        "{stderr}"
    );
}
