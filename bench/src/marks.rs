//! Moments recorded by the jobs themselves: a small bash script writes `$EPOCHREALTIME` (the
//! shell's own clock read, no extra process) to a file when it starts and when it gets SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// The job script: marks its start, marks SIGTERM and exits at once, else waits.
/// `$1` is the marks directory; `$BATON_COMMIT` names the marks.
const JOB_SCRIPT: &str = r#"#!/usr/bin/env bash
trap 'echo "$EPOCHREALTIME" > "$1/term-$BATON_COMMIT"; exit 143' TERM
echo "$EPOCHREALTIME" > "$1/start-$BATON_COMMIT"
if [ "${2:-}" = "wait" ]; then sleep 600 & wait; fi
"#;

/// Where a scenario's jobs leave their marks.
pub struct Marks {
    dir: PathBuf,
    script: PathBuf,
}

/// Seconds since the Unix epoch, as the jobs' marks are.
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Marks {
    /// Writes the job script under `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Marks> {
        let marks = dir.join("marks");
        std::fs::create_dir_all(&marks).context("cannot create the marks dir")?;
        let script = dir.join("mark-job.sh");
        std::fs::write(&script, JOB_SCRIPT).context("cannot write the job script")?;
        Ok(Marks { dir: marks, script })
    }

    /// The step that marks its start and ends.
    pub fn quick_step(&self) -> String {
        format!("bash {} {}", self.script.display(), self.dir.display())
    }

    /// The step that marks its start, then waits until it is signalled.
    pub fn waiting_step(&self) -> String {
        format!("bash {} {} wait", self.script.display(), self.dir.display())
    }

    /// Waits (polling every 200 µs) for the `kind` mark of `commit` and returns its time.
    pub async fn wait(&self, kind: &str, commit: &str, deadline: Duration) -> anyhow::Result<f64> {
        let path = self.dir.join(format!("{kind}-{commit}"));
        let until = Instant::now() + deadline;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && text.ends_with('\n')
            {
                return text
                    .trim()
                    .parse::<f64>()
                    .with_context(|| format!("bad mark in {}", path.display()));
            }
            if Instant::now() > until {
                bail!("no {kind} mark for {commit} within {deadline:?}");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// How long `sh -c STEP` takes to reach the script's first instruction on this machine,
    /// measured `runs` times without Baton: the floor under every dispatch figure.
    pub async fn local_startup_ms(&self, runs: usize) -> anyhow::Result<Vec<f64>> {
        let mut out = Vec::with_capacity(runs);
        for i in 0..runs {
            let commit = format!("local-{i}");
            let t0 = now_epoch();
            let mut child = tokio::process::Command::new("sh")
                .args(["-c", &self.quick_step()])
                .env("BATON_COMMIT", &commit)
                .spawn()
                .context("cannot run sh")?;
            let mark = self.wait("start", &commit, Duration::from_secs(10)).await?;
            let _ = child.wait().await;
            out.push((mark - t0) * 1000.0);
        }
        Ok(out)
    }
}
