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

/// How a job is written and which shell the worker runs it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobShell {
    /// The worker's default shell (`sh -c`) runs `bash mark-job.sh`: the mark is taken by a
    /// second interpreter the step starts.
    ShThenBashScript,
    /// The worker's default shell runs `echo "$BATON_COMMIT" > FIFO`, a shell builtin: the
    /// step's very first instruction. A thread of the bench reads the FIFO and marks the moment
    /// each line arrives (a few tens of microseconds after the write, so the figure is if
    /// anything high).
    ShBuiltin,
    /// The worker's `shell` is `bash -c` and the step itself writes the mark: its first
    /// instruction is the job's first instruction.
    Bash,
}

impl JobShell {
    /// Both, the default first.
    pub const ALL: [JobShell; 3] = [
        JobShell::ShThenBashScript,
        JobShell::ShBuiltin,
        JobShell::Bash,
    ];

    /// How the tables name it.
    pub fn label(self) -> &'static str {
        match self {
            JobShell::ShThenBashScript => "sh -c 'bash script'",
            JobShell::ShBuiltin => "sh -c, builtin echo to a FIFO",
            JobShell::Bash => "--shell 'bash -c', inline",
        }
    }

    /// The worker flags it needs.
    pub fn worker_args(self) -> &'static [&'static str] {
        match self {
            JobShell::ShThenBashScript | JobShell::ShBuiltin => &[],
            JobShell::Bash => &["--shell", "bash -c"],
        }
    }

    /// The JSON key suffix.
    pub fn key(self) -> &'static str {
        match self {
            JobShell::ShThenBashScript => "",
            JobShell::ShBuiltin => "_sh_builtin",
            JobShell::Bash => "_bash_shell",
        }
    }
}

/// The hidden `baton-bench` subcommand that runs the signal-recording job.
pub const RECORDER_COMMAND: &str = "record-signal-job";

/// The signal-recording job: `baton-bench record-signal-job MARKS_DIR` marks its start, then
/// waits for SIGTERM in `sigwait` and marks the moment it returns. Unlike a bash trap (which
/// runs once the shell's `wait` returns and its children are reaped), nothing stands between
/// the signal's arrival and the clock read. `$BATON_COMMIT` names the marks.
pub fn recorder_main(args: &[String]) -> std::process::ExitCode {
    use nix::sys::signal::{SigSet, Signal};
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: baton-bench {RECORDER_COMMAND} MARKS_DIR");
        return std::process::ExitCode::FAILURE;
    };
    let commit = std::env::var("BATON_COMMIT").unwrap_or_default();
    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    // Blocked before the start mark: a SIGTERM that comes early waits for `sigwait`.
    if let Err(e) = term.thread_block() {
        eprintln!("cannot block SIGTERM: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let mark = |kind: &str| {
        let _ = std::fs::write(
            dir.join(format!("{kind}-{commit}")),
            format!("{}\n", now_epoch()),
        );
    };
    mark("start");
    match term.wait() {
        Ok(_) => {
            mark("term");
            std::process::ExitCode::from(143)
        }
        Err(e) => {
            eprintln!("sigwait: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where a scenario's jobs leave their marks.
pub struct Marks {
    dir: PathBuf,
    script: PathBuf,
    /// Jobs of [`JobShell::ShBuiltin`] write their commit here.
    fifo: PathBuf,
}

/// Reads commits from `fifo` on a thread of its own and writes a `start-<commit>` mark for
/// each, with the moment its line arrived.
fn observe_fifo(fifo: &Path, marks: &Path) -> anyhow::Result<()> {
    use std::io::BufRead;
    // Read and write: the FIFO never reads as ended while no job has it open.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fifo)
        .context("cannot open the marks FIFO")?;
    let marks = marks.to_path_buf();
    std::thread::Builder::new()
        .name("fifo-marks".into())
        .spawn(move || {
            for line in std::io::BufReader::new(file).lines() {
                let at = now_epoch();
                let Ok(commit) = line else { return };
                let _ = std::fs::write(marks.join(format!("start-{commit}")), format!("{at}\n"));
            }
        })
        .context("cannot start the FIFO reader")?;
    Ok(())
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
        let fifo = dir.join("first-instruction.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .context("cannot make the marks FIFO")?;
        observe_fifo(&fifo, &marks)?;
        Ok(Marks {
            dir: marks,
            script,
            fifo,
        })
    }

    /// The step that marks its start and ends.
    pub fn quick_step(&self, shell: JobShell) -> String {
        match shell {
            JobShell::ShThenBashScript => {
                format!("bash {} {}", self.script.display(), self.dir.display())
            }
            JobShell::ShBuiltin => format!("echo \"$BATON_COMMIT\" > '{}'", self.fifo.display()),
            JobShell::Bash => format!(
                "echo \"$EPOCHREALTIME\" > '{}/start-'\"$BATON_COMMIT\"",
                self.dir.display()
            ),
        }
    }

    /// The step that runs the signal-recording job ([`recorder_main`]).
    pub fn recorder_step(&self) -> anyhow::Result<String> {
        let exe = std::env::current_exe().context("cannot find baton-bench's own path")?;
        Ok(format!(
            "exec '{}' {RECORDER_COMMAND} '{}'",
            exe.display(),
            self.dir.display()
        ))
    }

    /// The step that marks its start, then waits until it is signalled.
    pub fn waiting_step(&self, shell: JobShell) -> String {
        match shell {
            JobShell::ShThenBashScript | JobShell::ShBuiltin => {
                format!("bash {} {} wait", self.script.display(), self.dir.display())
            }
            JobShell::Bash => format!(
                "trap 'echo \"$EPOCHREALTIME\" > \"{dir}/term-$BATON_COMMIT\"; exit 143' TERM; {start}; sleep 600 & wait",
                dir = self.dir.display(),
                start = self.quick_step(JobShell::Bash),
            ),
        }
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

    /// How long the worker's shell takes from its start to the mark on this machine,
    /// measured `runs` times without Baton: the floor under every dispatch figure.
    pub async fn local_startup_ms(&self, runs: usize, shell: JobShell) -> anyhow::Result<Vec<f64>> {
        let program = match shell {
            JobShell::ShThenBashScript | JobShell::ShBuiltin => "sh",
            JobShell::Bash => "bash",
        };
        let mut out = Vec::with_capacity(runs);
        for i in 0..runs {
            let commit = format!("local-{}-{i}", shell.key());
            let t0 = now_epoch();
            let mut child = tokio::process::Command::new(program)
                .args(["-c", &self.quick_step(shell)])
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
