//! Starting a step's shell straight inside its cgroup. `clone3(CLONE_INTO_CGROUP)` makes the
//! child a member of the step's cgroup from its first instruction, so no wrapper shell has to
//! move itself there and then exec the real one: one process image fewer per step (about
//! 0.6 ms on a small VM, a third of a step's start-up).
//!
//! The child is a plain fork of the caller (no shared memory), and between `clone3` and
//! `execve` it only makes system calls on values prepared beforehand (no allocation, no lock):
//! signal mask and `SIGPIPE` reset, own process group, stdio, working dir, exec. An error on
//! that way is sent back over a close-on-exec pipe, as the standard library's spawn does.
//!
//! Where `clone3` with a cgroup is refused (Linux < 5.7, or a seccomp profile such as Docker's
//! default, which answers `ENOSYS`), [`spawn`] says [`Spawned::Unsupported`] and the caller
//! starts the step the portable way (a shell that moves itself into the cgroup). After such a
//! refusal nothing here is tried again in this process.

// The only unsafe code of the worker: `clone3` has no safe wrapper (neither in std, nor nix,
// nor tokio), and the child's way to exec must call libc directly.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// Set once `clone3` with a cgroup was refused: every later step starts the portable way.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// The kernel's `struct clone_args` (`linux/sched.h`), up to `cgroup` (Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What [`spawn`] did.
pub(crate) enum Spawned {
    /// The shell runs inside the cgroup.
    Started(ShellChild),
    /// This kernel (or sandbox) does not start processes into a cgroup: start it another way.
    Unsupported,
}

/// A step shell started by [`spawn`]: its pid (the group id), output pipes, and a way to wait.
pub(crate) struct ShellChild {
    /// The shell's pid, which is also its process group id.
    pub pid: i32,
    /// The read end of its stdout.
    pub stdout: pipe::Receiver,
    /// The read end of its stderr.
    pub stderr: pipe::Receiver,
    exit: ExitWatch,
}

impl ShellChild {
    /// Splits off the exit watch (the pipes go to their readers).
    pub fn into_parts(self) -> (ExitWatch, pipe::Receiver, pipe::Receiver) {
        (self.exit, self.stdout, self.stderr)
    }
}

/// Waits for one child through its pidfd; kills and reaps it when dropped before it was seen
/// to exit (as `kill_on_drop` does for the standard library's children).
pub(crate) struct ExitWatch {
    pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

impl ExitWatch {
    /// The exit status, once the child has exited (reaps it). Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            // A pidfd becomes readable when its process exits.
            let mut ready = self.pidfd.readable().await?;
            ready.clear_ready();
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG))? {
                WaitStatus::Exited(_, code) => Some(ExitStatus::from_raw((code & 0xff) << 8)),
                WaitStatus::Signaled(_, signal, core) => Some(ExitStatus::from_raw(
                    signal as i32 | if core { 0x80 } else { 0 },
                )),
                _ => None,
            };
        }
        Ok(self.status)
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let pid = Pid::from_raw(self.pid);
        let _ = kill(pid, Signal::SIGKILL);
        // Reaped off the caller's thread: the kill takes effect at once, the exit a moment later.
        let _ = std::thread::Builder::new()
            .name("baton-reap".into())
            .spawn(move || waitpid(pid, None));
    }
}

/// Starts `line` (a program, found on PATH unless it holds a `/`, and its arguments) inside
/// the cgroup at `cgroup_dir`, leader of a new process group, in `cwd`, with the worker's
/// environment plus `env`, stdin from `/dev/null`, stdout and stderr into pipes.
pub(crate) fn spawn(
    line: &[&str],
    cwd: &Path,
    env: &[(String, String)],
    cgroup_dir: &Path,
) -> std::io::Result<Spawned> {
    if REFUSED.load(Ordering::Relaxed) {
        return Ok(Spawned::Unsupported);
    }
    let Some(program) = line.first().and_then(|p| program_path(p)) else {
        // Not found: the portable way reports that as the standard library words it.
        return Ok(Spawned::Unsupported);
    };
    // Everything the child needs is made here, before the fork.
    let argv_owned = line
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<std::io::Result<Vec<_>>>()?;
    let argv: Vec<*const libc::c_char> = argv_owned
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_owned = environment(env)?;
    let envp: Vec<*const libc::c_char> = envp_owned
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let cwd_c = cstring(cwd.as_os_str().as_bytes())?;
    let cgroup = above_stdio(std::fs::File::open(cgroup_dir)?.into())?;
    let null = above_stdio(std::fs::File::open("/dev/null")?.into())?;
    let (out_r, out_w) = pipe_above_stdio()?;
    let (err_r, err_w) = pipe_above_stdio()?;
    let (report_r, report_w) = pipe_above_stdio()?;
    let fds = ChildFds {
        null: null.as_raw_fd(),
        out: out_w.as_raw_fd(),
        err: err_w.as_raw_fd(),
        report: report_w.as_raw_fd(),
    };

    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid `clone_args` of the size passed. Without CLONE_VM the child
    // gets its own copy of memory; it runs only `exec_child`, which never returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // SAFETY: every pointer refers to memory prepared above, alive in the child's copy.
        unsafe {
            exec_child(
                program.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                cwd_c.as_ptr(),
                fds,
            )
        }
    }
    if ret < 0 {
        let err = std::io::Error::last_os_error();
        let errno = err.raw_os_error().unwrap_or(0);
        if ![libc::EAGAIN, libc::ENOMEM, libc::EINTR].contains(&errno) {
            // Not for lack of resources: this kernel or sandbox will refuse it every time.
            REFUSED.store(true, Ordering::Relaxed);
            tracing::info!(%err, "clone3 into a cgroup refused: steps enter their cgroup through a wrapper shell");
            return Ok(Spawned::Unsupported);
        }
        return Err(err);
    }
    let pid = ret as i32;
    // SAFETY: CLONE_PIDFD stored a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    drop((out_w, err_w, report_w, null, cgroup));
    // SAFETY: an OwnedFd stays open, and names the same descriptor, for as long as it lives.
    let pidfd = match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
        Ok(pidfd) => pidfd,
        Err(err) => {
            let (_, err) = err.into_parts();
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
            return Err(err);
        }
    };
    let exit = ExitWatch {
        pid,
        pidfd,
        status: None,
    };
    // Until the exec, the child owns the write end; EOF means it exec'd.
    let mut report = [0u8; 5];
    let mut got = 0;
    let mut reader = std::fs::File::from(report_r);
    loop {
        match reader.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
        if got == report.len() {
            break;
        }
    }
    if got > 0 {
        let errno = i32::from_le_bytes([report[1], report[2], report[3], report[4]]);
        let what = match report[0] {
            b'd' => "cannot enter the step's working directory",
            _ => "cannot start the step's shell",
        };
        drop(exit); // reaps the child, which exits at once
        let err = std::io::Error::from_raw_os_error(errno);
        return Err(std::io::Error::new(err.kind(), format!("{what}: {err}")));
    }
    Ok(Spawned::Started(ShellChild {
        pid,
        stdout: pipe::Receiver::from_owned_fd(out_r)?,
        stderr: pipe::Receiver::from_owned_fd(err_r)?,
        exit,
    }))
}

/// The descriptors the child arranges before its exec.
#[derive(Clone, Copy)]
struct ChildFds {
    null: RawFd,
    out: RawFd,
    err: RawFd,
    report: RawFd,
}

/// The child's way from `clone3` to `execve`: async-signal-safe system calls only.
///
/// # Safety
/// Call only in the child of a fork; every pointer must be valid and NUL-terminated.
unsafe fn exec_child(
    shell: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    fds: ChildFds,
) -> ! {
    // SAFETY: plain system calls on prepared values; see the function's contract.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // Rust ignores SIGPIPE; the step's programs expect the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::setpgid(0, 0);
        // Our descriptors are all above 2, so dup2 never meets itself and clears close-on-exec.
        if libc::dup2(fds.null, 0) < 0 || libc::dup2(fds.out, 1) < 0 || libc::dup2(fds.err, 2) < 0 {
            fail(fds.report, b'x');
        }
        if libc::chdir(cwd) != 0 {
            fail(fds.report, b'd');
        }
        libc::execve(shell, argv, envp);
        fail(fds.report, b'x')
    }
}

/// Sends `what` and errno to the parent and exits.
///
/// # Safety
/// Call only in the child between fork and exec.
unsafe fn fail(report: RawFd, what: u8) -> ! {
    // SAFETY: errno read and two system calls.
    unsafe {
        let errno = *libc::__errno_location();
        let e = errno.to_le_bytes();
        let msg = [what, e[0], e[1], e[2], e[3]];
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// `program`'s path: as given when it holds a `/`, else the first on PATH (the standard
/// library's spawn searches the same way). The last answer is kept: a worker runs every step
/// with the same shell.
fn program_path(program: &str) -> Option<CString> {
    static LAST: Mutex<Option<(String, CString)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((name, path)) = last.as_ref()
        && name == program
    {
        return Some(path.clone());
    }
    let found: PathBuf = if program.contains('/') {
        PathBuf::from(program)
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| is_executable(p))?
    };
    let found = CString::new(found.into_os_string().into_vec()).ok()?;
    *last = Some((program.to_string(), found.clone()));
    Some(found)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The worker's environment with `extra` set on top, as `KEY=VALUE` strings.
fn environment(extra: &[(String, String)]) -> std::io::Result<Vec<CString>> {
    let mut all: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (k, v) in extra {
        all.insert(k.into(), v.into());
    }
    all.into_iter()
        .map(|(k, v)| {
            let mut line = k.into_vec();
            line.push(b'=');
            line.extend_from_slice(v.as_bytes());
            cstring(&line)
        })
        .collect()
}

fn cstring(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a NUL byte in the step's command, environment or working dir",
        )
    })
}

/// A close-on-exec pipe whose ends are both above stdio.
fn pipe_above_stdio() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// `fd`, or a close-on-exec copy numbered 3 or more when it is 0, 1 or 2 (a process started
/// with closed stdio gets those numbers for new files, and the child's dup2 onto them would
/// then keep close-on-exec set).
fn above_stdio(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let copy = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}
