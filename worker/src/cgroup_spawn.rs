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
use std::time::Duration;

use nix::fcntl::OFlag;
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

const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;
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
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // A pidfd becomes readable when its process exits, and stays so. The readiness is
        // never cleared and the status asked for until it is there: should the wake-up ever
        // come before the status, no second wake-up would.
        let _ready = self.pidfd.readable().await?;
        let mut pause = Duration::from_micros(100);
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(10));
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

    let plan = ChildPlan {
        program: program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd_c.as_ptr(),
        fds,
    };
    tracing::trace!(target: "baton::hop", "worker-clone");
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    let ret = clone_and_exec(&mut args, &plan);
    if ret < 0 {
        let err = std::io::Error::from_raw_os_error(-ret as i32);
        let errno = -ret as i32;
        if ![libc::EAGAIN, libc::ENOMEM, libc::EINTR].contains(&errno) {
            // Not for lack of resources: this kernel or sandbox will refuse it every time.
            REFUSED.store(true, Ordering::Relaxed);
            tracing::info!(%err, "clone3 into a cgroup refused: steps enter their cgroup through a wrapper shell");
            return Ok(Spawned::Unsupported);
        }
        return Err(err);
    }
    let pid = ret as i32;
    tracing::trace!(target: "baton::hop", "worker-cloned");
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

/// Everything the child needs, prepared before the clone, behind one pointer.
#[repr(C)]
struct ChildPlan {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    fds: ChildFds,
}

/// Size of the stack the child runs on until its exec (x86-64: it shares our memory).
#[cfg(target_arch = "x86_64")]
const CHILD_STACK: usize = 64 * 1024;

/// `clone3` whose child runs [`exec_child`]; the child's pid, or `-errno`.
///
/// On x86-64 the child shares this process's memory and runs on a stack of its own while this
/// thread waits for its exec (`CLONE_VM | CLONE_VFORK`, as `posix_spawn` does): no page table
/// is copied, which for a worker with a runtime's worth of threads and heap costs about
/// 0.4 ms. Every signal is blocked around the clone so that no handler of ours runs in the
/// child; the child puts every signal back to its default before it unblocks them.
#[cfg(target_arch = "x86_64")]
fn clone_and_exec(args: &mut CloneArgs, plan: &ChildPlan) -> i64 {
    let mut stack = vec![0u8; CHILD_STACK];
    let base = stack.as_mut_ptr() as usize;
    let top = (base + CHILD_STACK) & !15;
    args.flags |= CLONE_VM | CLONE_VFORK;
    args.stack = base as u64;
    args.stack_size = (top - base) as u64;
    let blocked = block_all_signals();
    let ret: i64;
    // SAFETY: `args` is a valid `clone_args` of the size passed, naming a stack that lives
    // until the child has exec'd or exited (CLONE_VFORK holds this thread until then). The
    // child starts on that stack at the instruction after `syscall` and calls `vfork_child`,
    // which never returns; the parent goes on with only rax, rcx and r11 changed.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::addr_of_mut!(*args),
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") std::ptr::from_ref(plan),
            in("r13") vfork_child as extern "C" fn(*const ChildPlan) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    restore_signals(blocked);
    drop(stack);
    ret
}

/// The x86-64 child's entry on its own stack.
#[cfg(target_arch = "x86_64")]
extern "C" fn vfork_child(plan: *const ChildPlan) -> ! {
    // SAFETY: `plan` points into the parent's memory, which this child shares and which the
    // parent keeps alive while it waits for this child's exec.
    unsafe { exec_child(&*plan) }
}

/// `clone3` as a fork (the child gets a copy of this process's memory); the child's pid, or
/// `-errno`.
#[cfg(not(target_arch = "x86_64"))]
fn clone_and_exec(args: &mut CloneArgs, plan: &ChildPlan) -> i64 {
    // SAFETY: `args` is a valid `clone_args` of the size passed. Without CLONE_VM the child
    // gets its own copy of memory; it runs only `exec_child`, which never returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(*args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        // SAFETY: every pointer refers to memory prepared before the fork, alive in the
        // child's copy.
        unsafe { exec_child(plan) }
    }
    if ret < 0 {
        return -i64::from(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINVAL),
        );
    }
    ret
}

/// Blocks every signal in this thread; returns the mask to put back.
#[cfg(target_arch = "x86_64")]
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; both calls only read and write the sets given.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

#[cfg(target_arch = "x86_64")]
fn restore_signals(old: libc::sigset_t) {
    // SAFETY: puts back a mask read by `block_all_signals`.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

/// In the child: every signal back to its default disposition, caught or ignored. A handler
/// of ours must not run in a child that shares our memory once its mask is cleared; and a
/// signal the worker inherited as ignored (SIGINT and SIGQUIT for anything started with `&`
/// from a script, SIGHUP under `nohup`, SIGPIPE in every Rust program) must not reach the step
/// ignored: a shell cannot even trap a signal that was ignored when it started, so a job's
/// `cancel_signal: INT` would go unheard.
///
/// # Safety
/// Call only in a freshly cloned child, with every signal blocked.
unsafe fn default_all_signals() {
    // The kernel's `struct sigaction` all zeros: SIG_DFL, no flags, empty mask, whatever its
    // layout on this architecture. Through the raw call, because the C library's wrapper
    // refuses the two real-time signals it keeps for itself (which can be inherited ignored).
    let default = [0u64; 4];
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a valid, zeroed `struct sigaction` in, no old one out, the kernel's set size.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
}

/// The child's way from `clone3` to `execve`: async-signal-safe system calls only.
///
/// # Safety
/// Call only in a freshly cloned child; every pointer of `plan` must be valid.
unsafe fn exec_child(plan: &ChildPlan) -> ! {
    let fds = plan.fds;
    // SAFETY: plain system calls on prepared values; see the function's contract.
    unsafe {
        default_all_signals();
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::setpgid(0, 0);
        // Our descriptors are all above 2, so dup2 never meets itself and clears close-on-exec.
        if libc::dup2(fds.null, 0) < 0 || libc::dup2(fds.out, 1) < 0 || libc::dup2(fds.err, 2) < 0 {
            fail(fds.report, b'x');
        }
        if libc::chdir(plan.cwd) != 0 {
            fail(fds.report, b'd');
        }
        libc::execve(plan.program, plan.argv, plan.envp);
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

/// Looks `program` up on PATH now, so that a step started with it later in this process
/// finds it without searching (a standby does this before its job comes).
pub(crate) fn find_program_ahead(program: &str) {
    let _ = program_path(program);
}

/// [`program_path`] as a path.
pub(crate) fn program_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    program_path(program).map(|p| PathBuf::from(OsString::from_vec(p.into_bytes())))
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
    // The standard library's copy is close-on-exec and numbered 3 or more.
    fd.try_clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::StepCgroup;
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};

    /// Starts `line` in a fresh step cgroup (kept alive with the result: dropping it kills
    /// what is inside); `None` where this machine has none to give.
    fn start(line: &[&str], cwd: &Path) -> Option<(std::io::Result<Spawned>, StepCgroup)> {
        let cgroup = StepCgroup::create("cgroup-spawn-test", 0)?;
        Some((spawn(line, cwd, &[], cgroup.dir()), cgroup))
    }

    /// The shell [`start`] cloned (with its cgroup, kept alive), or `None` with a note on
    /// stderr where this machine has no cgroup to give or refuses clone3 into one.
    fn started(
        start: Option<(std::io::Result<Spawned>, StepCgroup)>,
    ) -> Option<(ShellChild, StepCgroup)> {
        let Some((started, cgroup)) = start else {
            eprintln!("no writable cgroup v2 here: clone3 into a cgroup is not checked");
            return None;
        };
        let Spawned::Started(child) = started.expect("spawn") else {
            eprintln!("clone3 into a cgroup is refused here: not checked");
            return None;
        };
        Some((child, cgroup))
    }

    /// The started shell's whole stdout and its exit status.
    async fn finish(child: ShellChild) -> (String, ExitStatus) {
        let (mut exit, mut stdout, _) = child.into_parts();
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out)
            .await
            .expect("read");
        (out, exit.wait().await.expect("wait"))
    }

    #[tokio::test]
    async fn errors_before_the_exec_come_back_as_errors_naming_what_failed() {
        let tmp = std::env::temp_dir();
        let missing = tmp.join("baton-no-such-dir-for-a-step");
        let Some(no_dir) = start(&["sh", "-c", "true"], &missing) else {
            eprintln!("no writable cgroup v2 here: clone3 into a cgroup is not checked");
            return;
        };
        let err = no_dir.0.err().expect("a missing working dir is an error");
        assert!(err.to_string().contains("working directory"), "{err}");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);

        let no_shell = start(&["/no/such/shell", "-c", "true"], &tmp).expect("cgroup");
        let err = no_shell.0.err().expect("a missing shell is an error");
        assert!(
            err.to_string().contains("cannot start the step's shell"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_started_shell_reports_its_exit_status_and_output() {
        let tmp = std::env::temp_dir();
        let Some((child, _cgroup)) = started(start(&["sh", "-c", "echo hi; exit 7"], &tmp)) else {
            return;
        };
        let (out, status) = finish(child).await;
        assert_eq!((out.as_str(), status.code()), ("hi\n", Some(7)));
    }

    /// Many shells that end at once, one after another: every exit is seen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_quick_exit_is_seen() {
        let tmp = std::env::temp_dir();
        for i in 0..300 {
            let Some((child, _cgroup)) = started(start(&["sh", "-c", "exit 3"], &tmp)) else {
                return;
            };
            let (_, status) = tokio::time::timeout(Duration::from_secs(10), finish(child))
                .await
                .unwrap_or_else(|_| panic!("exit {i} never seen"));
            assert_eq!(status.code(), Some(3));
        }
    }

    /// A worker that inherited SIGQUIT ignored (started with `&` from a script) still gives
    /// its steps every signal at its default.
    #[tokio::test]
    async fn a_step_gets_no_ignored_signal_from_the_worker() {
        let tmp = std::env::temp_dir();
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: SIG_IGN installs no handler; nothing else in this test binary uses SIGQUIT.
        let before = unsafe { sigaction(Signal::SIGQUIT, &ignore) }.expect("ignore SIGQUIT");
        let start = start(&["sh", "-c", "grep SigIgn /proc/$$/status"], &tmp);
        // SAFETY: puts back what was there.
        unsafe { sigaction(Signal::SIGQUIT, &before) }.expect("restore SIGQUIT");
        let Some((child, _cgroup)) = started(start) else {
            return;
        };
        let (out, _) = finish(child).await;
        assert_eq!(out.trim(), "SigIgn:\t0000000000000000");
    }
}
