//! One step: `sh -c <command>` (or the worker's `shell`) as the leader of its own process group, with its stdout and stderr
//! pumped into log events as they arrive (chunks of at most [`LOG_CHUNK`] bytes).
//!
//! A [`Step`] owns a [`GroupGuard`]: dropping a step that was not seen to the end kills its group.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use baton_proto::v1::LogStream;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use nix::sys::signal::Signal;

use crate::cgroup::StepCgroup;
use crate::cgroup_spawn::{self, ExitWatch, Spawned};
use crate::proc_group::{self, GroupGuard};
use crate::runner::{JobEvent, Report};

/// Largest log chunk sent in one `WorkerLog` message.
pub const LOG_CHUNK: usize = 64 * 1024;

/// How long output may still trickle in after the group is gone (a process that left the group
/// with `setsid` can hold the pipes open; we stop reading rather than wait for it).
const OUTPUT_LINGER: Duration = Duration::from_secs(2);

/// A running step.
pub(crate) struct Step {
    /// The `sh` process; its pid is the group id.
    pub child: StepProcess,
    /// The step's process group id.
    pub pgid: i32,
    guard: GroupGuard,
    /// The step's own cgroup, where one can be made (see [`crate::cgroup`]).
    cgroup: Option<StepCgroup>,
    pumps: Vec<JoinHandle<()>>,
}

/// The step's shell, started by the standard library or straight into its cgroup.
pub(crate) enum StepProcess {
    /// Started with `tokio::process` (no cgroup, or the kernel cannot start into one).
    Spawned(Child),
    /// Started inside its cgroup by `clone3`.
    InCgroup(ExitWatch),
}

impl StepProcess {
    /// The shell's exit status once it has exited. Cancel-safe.
    pub(crate) async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            StepProcess::Spawned(child) => child.wait().await,
            StepProcess::InCgroup(exit) => exit.wait().await,
        }
    }
}

/// Where a step runs and who hears about it.
pub(crate) struct StepSpec<'a> {
    /// The program and arguments that run the command (`sh -c` when empty).
    pub shell: &'a [String],
    pub job_id: &'a str,
    pub index: u32,
    pub command: &'a str,
    pub cwd: &'a Path,
    pub env: Vec<(String, String)>,
}

/// The shell prologue that moves the step into its cgroup before the command runs, where the
/// kernel cannot start it inside: `$0` is the cgroup's `cgroup.procs`, the rest the shell
/// command line that runs the step.
const ENTER_CGROUP: &str = r#"{ echo 0 > "$0"; } 2>/dev/null; exec "$@""#;

/// The step's whole command line: the shell's words (`sh -c` when none), then the step.
fn command_line<'a>(spec: &'a StepSpec<'_>) -> Vec<&'a str> {
    let shell: Vec<&str> = match spec.shell.is_empty() {
        true => vec!["sh", "-c"],
        false => spec.shell.iter().map(String::as_str).collect(),
    };
    shell.into_iter().chain([spec.command]).collect()
}

/// A pipe the step writes its output to.
type Output = Box<dyn AsyncRead + Send + Unpin>;

/// Starts `sh -c <command>` in a new process group (and its own cgroup where possible) and
/// starts pumping its output.
pub(crate) fn spawn(spec: StepSpec<'_>, events: &mpsc::Sender<Report>) -> std::io::Result<Step> {
    tracing::trace!(target: "baton::hop", "worker-spawn");
    let cgroup = StepCgroup::create(spec.job_id, spec.index);
    let started = match &cgroup {
        Some(cg) => match cgroup_spawn::spawn(&command_line(&spec), spec.cwd, &spec.env, cg.dir())?
        {
            Spawned::Started(child) => {
                let pid = child.pid;
                let (exit, stdout, stderr) = child.into_parts();
                let (stdout, stderr): (Output, Output) = (Box::new(stdout), Box::new(stderr));
                (StepProcess::InCgroup(exit), pid, Some(stdout), Some(stderr))
            }
            Spawned::Unsupported => spawn_portable(&spec, Some(cg))?,
        },
        None => spawn_portable(&spec, None)?,
    };
    let (child, pgid, stdout, stderr) = started;
    tracing::trace!(target: "baton::hop", "worker-spawned");
    let guard = GroupGuard::new(pgid);
    let mut pumps = Vec::with_capacity(2);
    for (pipe, stream) in [(stdout, LogStream::Stdout), (stderr, LogStream::Stderr)] {
        if let Some(pipe) = pipe {
            let job_id = spec.job_id.to_string();
            pumps.push(tokio::spawn(pump(
                pipe,
                job_id,
                spec.index,
                stream,
                events.clone(),
            )));
        }
    }
    Ok(Step {
        child,
        pgid,
        guard,
        cgroup,
        pumps,
    })
}

/// `tokio::process` spawn: `sh -c <command>`, behind a wrapper that enters `cgroup` if any.
fn spawn_portable(
    spec: &StepSpec<'_>,
    cgroup: Option<&StepCgroup>,
) -> std::io::Result<(StepProcess, i32, Option<Output>, Option<Output>)> {
    let line = command_line(spec);
    let mut command = match cgroup {
        Some(cg) => {
            let mut wrapper = Command::new("sh");
            wrapper.arg("-c").arg(ENTER_CGROUP).arg(cg.procs_file());
            wrapper.args(&line);
            wrapper
        }
        None => {
            let mut direct = Command::new(line[0]);
            direct.args(&line[1..]);
            direct
        }
    };
    let mut child = command
        .current_dir(spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(|| std::io::Error::other("spawned step has no pid"))?;
    let stdout = child.stdout.take().map(|p| Box::new(p) as Output);
    let stderr = child.stderr.take().map(|p| Box::new(p) as Output);
    Ok((StepProcess::Spawned(child), pgid, stdout, stderr))
}

impl Step {
    /// True while any process of the step lives: in its process group, or (where it has one)
    /// in its cgroup, which also holds processes that left the group with `setsid`.
    ///
    /// The cgroup is asked first: one read of `cgroup.events` answers "alive" for a step that
    /// still runs, where the group's answer may take a read of every `/proc/<pid>/stat` (its
    /// members are signalled, not yet gone, right when a cancelled job needs the CPU).
    pub(crate) fn alive(&self) -> bool {
        self.cgroup.as_ref().is_some_and(|c| c.populated()) || proc_group::is_alive(self.pgid)
    }

    /// SIGKILL to everything the step started; returns once none of it lives.
    pub(crate) async fn kill_all(&self) {
        if let Some(cg) = &self.cgroup {
            cg.kill();
        }
        proc_group::kill(self.pgid).await;
        let mut pause = Duration::from_millis(2);
        while self.alive() {
            if let Some(cg) = &self.cgroup {
                cg.kill();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// `signal` to the group (and to every process in the step's cgroup), up to `grace` for
    /// them to leave, then SIGKILL to all; returns once none lives. True when SIGKILL was needed.
    pub(crate) async fn terminate(&self, signal: Signal, grace: Duration) -> bool {
        tracing::trace!(target: "baton::hop", "worker-signal");
        proc_group::signal(self.pgid, signal);
        // A signalled process is woken on the signaller's CPU when it can be, and waits there
        // until this thread stops: give it the CPU now, so the job hears the signal before the
        // bookkeeping below (measured: 0.1 ms of work after a `kill` delays the wakee 0.1 ms).
        std::thread::yield_now();
        if let Some(cg) = &self.cgroup {
            for pid in cg.pids() {
                // Members of the group have the signal already, and may have handled it by
                // now (the yield above): a second one would run a job's trap twice.
                let pid = nix::unistd::Pid::from_raw(pid);
                if nix::unistd::getpgid(Some(pid)).is_ok_and(|g| g.as_raw() == self.pgid) {
                    continue;
                }
                let _ = nix::sys::signal::kill(pid, signal);
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut pause = Duration::from_millis(2);
        while self.alive() {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                self.kill_all().await;
                return true;
            }
            tokio::time::sleep((deadline - now).min(pause)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        false
    }

    /// Call once the group is gone: waits for the output still in the pipes, then forgets the
    /// group (nothing left to kill on drop).
    pub(crate) async fn finish(mut self) {
        self.guard.disarm();
        let pumps = std::mem::take(&mut self.pumps);
        let aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
        let all = futures::future::join_all(pumps);
        if tokio::time::timeout(OUTPUT_LINGER, all).await.is_err() {
            tracing::warn!(
                pgid = self.pgid,
                "step output still open after its group ended"
            );
            aborts.iter().for_each(|a| a.abort());
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.pumps.iter().for_each(|p| p.abort());
    }
}

/// Reads one pipe until it closes, sending what is available at once (not waiting for a full
/// chunk). If nobody listens any more, keeps reading so the step never blocks on a full pipe.
async fn pump(
    mut pipe: impl AsyncRead + Unpin,
    job_id: String,
    step: u32,
    stream: LogStream,
    events: mpsc::Sender<Report>,
) {
    let mut buf = vec![0u8; LOG_CHUNK];
    let mut listening = true;
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if listening {
            let report = Report {
                job_id: job_id.clone(),
                event: JobEvent::Log {
                    step,
                    stream,
                    data: buf[..n].to_vec(),
                },
            };
            listening = events.send(report).await.is_ok();
        }
    }
}

/// The exit code a shell would show: the status code, or 128 + the signal number.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one pipe to its end.
    async fn read_all(mut pipe: Output) -> String {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The way steps start where `clone3` into a cgroup is refused (Docker's default seccomp
    /// profile): a wrapper shell enters the cgroup, then runs the worker's shell.
    #[tokio::test]
    async fn the_portable_way_enters_the_cgroup_then_runs_the_workers_shell() {
        let dir = std::env::temp_dir();
        let shell = ["bash".to_string(), "-c".to_string()];
        let spec = StepSpec {
            shell: &shell,
            job_id: "portable",
            index: 0,
            command: "echo \"${BASH_VERSION:+bash} $0\"; cat /proc/$$/cgroup",
            cwd: &dir,
            env: vec![("BATON_STEP".into(), "0".into())],
        };
        let cgroup = StepCgroup::create(spec.job_id, spec.index);
        let (mut child, pgid, stdout, _) = spawn_portable(&spec, cgroup.as_ref()).expect("spawn");
        let out = read_all(stdout.expect("stdout")).await;
        let status = child.wait().await.expect("wait");
        assert!(status.success(), "{status:?}: {out}");
        assert!(pgid > 0);
        assert!(out.starts_with("bash bash\n"), "{out}");
        match &cgroup {
            Some(cg) => {
                let name = cg.dir().file_name().and_then(|n| n.to_str()).unwrap_or("?");
                assert!(out.contains(name), "not in {name}: {out}");
            }
            None => eprintln!("no writable cgroup v2 here: the cgroup is not checked"),
        }
    }
}
