//! Standby supervisors: each [`crate::SupervisedLauncher`] keeps one `baton-worker supervise
//! --standby` started ahead of the job it will run, already past exec, `setsid`, runtime start
//! and signal handler install, waiting on its standard input for a job directory. Handing a
//! job to it is one write to a pipe instead of a process start (2-3 ms here), which is on the
//! path from an accepted offer to the job's first instruction. This module holds both sides of
//! that hand-over: [`StandbySlot`] in the worker, [`receive_job`] in the standby.
//!
//! A standby never outlives its worker without a job: its standard input is a pipe only the
//! launcher writes to, and when that closes first (the launcher dropped, the worker process
//! gone however it ended) the standby exits without touching any file.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};

use crate::supervisor::STANDBY_ARG;

/// Longest wait for a standby to finish making its job directory (it takes a few
/// milliseconds after its start; the standby reads no job before it is done).
pub const PREPARED_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// A supervisor process waiting for its job.
#[derive(Debug)]
pub(crate) struct Standby {
    child: Child,
    /// Its standard input: the hand-over goes there (see [`handed_message`]), then the job's
    /// control lines.
    stdin: ChildStdin,
    /// Where it makes its job directory ahead (see `prepared.rs`), when told the work dir.
    prepared: Option<PathBuf>,
}

impl Standby {
    /// The job directory this standby makes ahead, once it is whole. A standby still making
    /// it rings its doorbell when done (or when it gave up): this waits for that ring, at most
    /// [`PREPARED_WAIT`], since the standby reads no job before it anyway. `None` for a
    /// standby not told the work dir, one that could not make it, or one that died.
    pub async fn prepared(&mut self) -> Option<&Path> {
        let dir = self.prepared.as_deref()?;
        if !dir.is_dir()
            && let Some(bell) = self.child.stdout.as_mut()
        {
            let mut ring = [0u8; 1];
            let _ = tokio::time::timeout(PREPARED_WAIT, bell.read(&mut ring)).await;
        }
        Some(dir).filter(|dir| dir.is_dir())
    }

    /// Hands it the job in `dir` (its prepared directory renamed, or one the worker made) and
    /// returns it, now that job's supervisor; its `stdin` is the pipe the job's signals go to
    /// (see [`receive_job`]). With `inline` (see [`JobFiles`]) the job's files come on the
    /// pipe too and the supervisor writes them once the job's first step has started; without,
    /// they are in `dir` already. `None` when it died: start one cold then.
    pub async fn hand_over(self, dir: &Path, inline: Option<&JobFiles>) -> Option<Child> {
        let Standby {
            mut child,
            mut stdin,
            ..
        } = self;
        if !matches!(child.try_wait(), Ok(None)) {
            tracing::warn!("the standby supervisor died; starting the job's supervisor cold");
            return None;
        }
        let message = handed_message(dir, inline);
        match stdin.write_all(&message).await {
            Ok(()) => {
                child.stdin = Some(stdin);
                Some(child)
            }
            Err(err) => {
                tracing::warn!(%err, "cannot hand the job to the standby supervisor; starting one cold");
                None
            }
        }
    }
}

/// The one standby of a launcher and its clones, when one is ready.
#[derive(Debug, Clone)]
pub(crate) struct StandbySlot {
    exe: PathBuf,
    /// Told to each standby, which then makes its job directory ahead.
    work_dir: Option<PathBuf>,
    ready: Arc<Mutex<Option<Standby>>>,
}

impl StandbySlot {
    /// An empty slot for standbys started from `exe` (the `baton-worker` binary); with
    /// `work_dir`, each makes its job directory ahead.
    pub fn new(exe: PathBuf, work_dir: Option<PathBuf>) -> Self {
        Self {
            exe,
            work_dir,
            ready: Arc::new(Mutex::new(None)),
        }
    }

    fn ready(&self) -> MutexGuard<'_, Option<Standby>> {
        // Nothing panics while holding it; a poisoned slot still holds a usable value.
        self.ready
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a standby unless one is ready. Needs a tokio runtime.
    pub fn refill(&self) {
        if self.ready().is_some() {
            return;
        }
        match spawn(&self.exe, self.work_dir.as_deref()) {
            Ok(standby) => {
                let mut ready = self.ready();
                // Filled by another launch meanwhile: the new one is dropped, sees its
                // standard input close and exits.
                if ready.is_none() {
                    *ready = Some(standby);
                }
            }
            Err(err) => {
                tracing::warn!(%err, "cannot start a standby supervisor; the next job starts cold");
            }
        }
    }

    /// The ready standby, now out of the slot (the next refill starts another).
    pub fn take(&self) -> Option<Standby> {
        self.ready().take()
    }

    /// The pid of the standby ready for the next job, if one is.
    pub fn pid(&self) -> Option<u32> {
        self.ready().as_ref().and_then(|s| s.child.id())
    }

    /// A handle that refills this slot only while a launcher still holds it.
    pub fn downgrade(&self) -> WeakStandbySlot {
        WeakStandbySlot {
            exe: self.exe.clone(),
            work_dir: self.work_dir.clone(),
            ready: Arc::downgrade(&self.ready),
        }
    }
}

/// A [`StandbySlot`] that a running job's task holds: it must not keep a standby alive for a
/// launcher that is gone.
#[derive(Debug)]
pub(crate) struct WeakStandbySlot {
    exe: PathBuf,
    work_dir: Option<PathBuf>,
    ready: Weak<Mutex<Option<Standby>>>,
}

impl WeakStandbySlot {
    /// [`StandbySlot::refill`], if the launcher still exists.
    pub fn refill(&self) {
        if let Some(ready) = self.ready.upgrade() {
            StandbySlot {
                exe: self.exe.clone(),
                work_dir: self.work_dir.clone(),
                ready,
            }
            .refill();
        }
    }
}

/// Starts `exe supervise --standby [WORK_DIR]`, told the worker's step cgroup base as a cold
/// supervisor is; its standard output is the doorbell of the job it will get (see
/// `supervisor.rs`).
fn spawn(exe: &Path, work_dir: Option<&Path>) -> std::io::Result<Standby> {
    let mut command = tokio::process::Command::new(exe);
    command.arg("supervise").arg(STANDBY_ARG);
    if let Some(work_dir) = work_dir {
        command.arg(work_dir);
    }
    let mut child = command
        .env(
            crate::cgroup::BASE_ENV,
            crate::cgroup::base_for_supervisor(),
        )
        .env(crate::resident::LOCK_ENV, crate::resident::for_supervisor())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Until it has a job directory (and so a `supervisor.log`) it has nothing to say.
        .stderr(Stdio::null())
        .spawn()?;
    let Some(stdin) = child.stdin.take() else {
        return Err(std::io::Error::other(
            "the standby has no standard input pipe",
        ));
    };
    let prepared = match (work_dir, child.id()) {
        (Some(work_dir), Some(pid)) => Some(crate::prepared::path(work_dir, pid)),
        _ => None,
    };
    Ok(Standby {
        child,
        stdin,
        prepared,
    })
}

/// The contents of a job's `job`, `context` and `attached` files, as a standby can be handed
/// them on its pipe (each a `u32` little-endian length and the bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobFiles {
    /// The `JobSpec`, encoded.
    pub job: Vec<u8>,
    /// Worker name, coordinator, shell, one a line.
    pub context: Vec<u8>,
    /// `PID LEASE_MS` of the worker process.
    pub attached: Vec<u8>,
}

impl JobFiles {
    fn encode_into(&self, out: &mut Vec<u8>) {
        for part in [&self.job, &self.context, &self.attached] {
            put_part(out, part);
        }
    }

    /// The three parts, each as [`JobFiles::encode_into`] wrote it, making up all of `bytes`;
    /// `None` unless they do.
    fn decode(mut bytes: &[u8]) -> Option<JobFiles> {
        let files = JobFiles {
            job: take_part(&mut bytes)?.to_vec(),
            context: take_part(&mut bytes)?.to_vec(),
            attached: take_part(&mut bytes)?.to_vec(),
        };
        bytes.is_empty().then_some(files)
    }

    /// Writes the three files into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join("job"), &self.job)?;
        std::fs::write(dir.join("context"), &self.context)?;
        std::fs::write(dir.join("attached"), &self.attached)
    }
}

/// Largest hand-over a standby takes from its pipe: far above any job the coordinator sends
/// (its messages are capped well below).
const MAX_HANDED: usize = 192 * 1024 * 1024;

/// The hand-over of the job in `dir`: a `u32` little-endian length of the rest, then the
/// directory's path as a part (a `u32` length and the bytes), then with `inline` the job's
/// files as [`JobFiles::encode_into`] writes them. The length first lets the standby read it
/// all in two reads without reading past it into the control lines that may follow.
fn handed_message(dir: &Path, inline: Option<&JobFiles>) -> Vec<u8> {
    let path = dir.as_os_str().as_bytes();
    let mut message = vec![0u8; 4];
    put_part(&mut message, path);
    if let Some(files) = inline {
        files.encode_into(&mut message);
    }
    let rest = (message.len() - 4) as u32;
    message[..4].copy_from_slice(&rest.to_le_bytes());
    message
}

/// Appends `bytes` to `out` as a part: a `u32` little-endian length, then the bytes (what
/// [`take_part`] reads back).
fn put_part(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The first part (a `u32` little-endian length and that many bytes) of `bytes`, which then
/// starts after it; `None` if `bytes` is too short.
fn take_part<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    let (part, rest) = rest.split_at_checked(len)?;
    *bytes = rest;
    Some(part)
}

/// Reads one hand-over (see [`handed_message`]) from `fd`, and nothing after it: the job's
/// directory and, when they came, its files. `None` if `fd` ends first or the hand-over is
/// malformed.
fn read_handed(fd: &impl AsFd) -> Option<(PathBuf, Option<JobFiles>)> {
    let mut len = [0u8; 4];
    read_exact(fd, &mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_HANDED {
        return None;
    }
    let mut body = vec![0u8; len];
    read_exact(fd, &mut body)?;
    let mut rest = body.as_slice();
    let path = take_part(&mut rest)?;
    if path.is_empty() {
        return None;
    }
    let inline = match rest.is_empty() {
        true => None,
        false => Some(JobFiles::decode(rest)?),
    };
    Some((PathBuf::from(OsString::from_vec(path.to_vec())), inline))
}

/// Fills `buf` from `fd` (blocking); `None` if it ends first.
fn read_exact(fd: &impl AsFd, buf: &mut [u8]) -> Option<()> {
    let mut done = 0;
    while done < buf.len() {
        match nix::unistd::read(fd, &mut buf[done..]) {
            Ok(0) => return None,
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
    Some(())
}

/// What a standby is handed: the job's directory, the pipe it came on, and the job's files
/// when they came on the pipe too (see [`Standby::hand_over`]).
pub(crate) struct Handed {
    pub dir: PathBuf,
    pub control: Option<OwnedFd>,
    pub inline: Option<JobFiles>,
}

/// The standby's side: waits for its job directory on standard input (and the job's files,
/// when they come inline), then gives itself the standard input and error a supervisor
/// started cold for that directory has (`/dev/null` and the job's `supervisor.log`). The
/// pipe it came on stays as `control`, from which the worker's signals for the job follow as
/// control lines (`abandon`, `drain`, ...), read at once instead of on SIGUSR1 from the control
/// file. `None` when standard input closes before a whole hand-over came: nothing was handed
/// over, so nothing is to be done.
pub(crate) fn receive_job() -> Option<Handed> {
    let stdin = std::io::stdin();
    let (dir, inline) = read_handed(&stdin)?;
    // A close-on-exec copy (numbered 3 or more): the steps never inherit it.
    let control = stdin.as_fd().try_clone_to_owned().ok();
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
    // The worker created the log; a failure here only costs the supervisor's diagnostics.
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("supervisor.log"));
    if let Ok(log) = log {
        let _ = nix::unistd::dup2_stderr(&log);
    }
    Some(Handed {
        dir,
        control,
        inline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> JobFiles {
        JobFiles {
            job: vec![1, 2, 0, 3],
            context: b"w1\nhttp://127.0.0.1:1\nsh -c\n".to_vec(),
            attached: b"42 15000\n".to_vec(),
        }
    }

    /// Writes `bytes` into a new pipe and closes its write end.
    fn pipe_with(bytes: &[u8]) -> OwnedFd {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let mut write = std::fs::File::from(write);
        std::io::Write::write_all(&mut write, bytes).expect("write");
        read
    }

    #[test]
    fn a_hand_over_is_read_whole_and_what_follows_it_stays_in_the_pipe() {
        let dir = Path::new("/work/.baton-jobs/job-1");
        for inline in [None, Some(files())] {
            let mut bytes = handed_message(dir, inline.as_ref());
            bytes.extend_from_slice(b"abandon 5000\n");
            let pipe = pipe_with(&bytes);
            let (got_dir, got_files) = read_handed(&pipe).expect("a whole hand-over");
            assert_eq!(got_dir, dir);
            assert_eq!(got_files, inline);
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(pipe), &mut rest)
                .expect("read the rest");
            assert_eq!(
                rest, "abandon 5000\n",
                "the control line after the hand-over"
            );
        }
    }

    #[test]
    fn a_path_with_a_newline_is_handed_over_as_it_is() {
        let dir = Path::new("/work/odd\nname/job-1");
        let pipe = pipe_with(&handed_message(dir, Some(&files())));
        assert_eq!(read_handed(&pipe).map(|(d, _)| d).as_deref(), Some(dir));
    }

    #[test]
    fn a_cut_or_malformed_hand_over_is_none() {
        let whole = handed_message(Path::new("/work/.baton-jobs/job-1"), Some(&files()));
        for len in [0, 3, 4, 10, whole.len() - 1] {
            assert_eq!(read_handed(&pipe_with(&whole[..len])), None, "cut at {len}");
        }
        // A length beyond any hand-over, an empty path, and parts that do not fill the rest.
        let huge = ((MAX_HANDED + 1) as u32).to_le_bytes();
        assert_eq!(read_handed(&pipe_with(&huge)), None);
        assert_eq!(
            read_handed(&pipe_with(&handed_message(Path::new(""), None))),
            None
        );
        let mut short = whole.clone();
        short.truncate(whole.len() - 2);
        let rest = (short.len() - 4) as u32;
        short[..4].copy_from_slice(&rest.to_le_bytes());
        assert_eq!(read_handed(&pipe_with(&short)), None);
    }
}
