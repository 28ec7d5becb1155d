//! `--page-out`: what a host that reclaims idle memory does to an idle coordinator and worker
//! (DAMON's `pageout` scheme pages out what has not been touched for a while, a balloon takes
//! it back), done on purpose right before a measurement: every file-backed page of the
//! cluster's processes (their code, read-only data and libraries) is paged out with
//! `process_madvise(MADV_PAGEOUT)`, as the kernel's reclaim would. Pages a process has locked
//! (`lock_code`) stay; the rest has to be read back from disk on the way. So does the page
//! cache of the jobs' shells (`sh`, `bash`) unless a process maps them.

use std::path::Path;

/// The processes of the cluster in `dir` started from `bin_dir` (coordinator, workers and job
/// supervisors: each names a path under `dir` on its command line).
pub fn cluster_pids(bin_dir: &Path, dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let dir = dir.to_string_lossy().into_owned();
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            exe.parent() == Some(bin_dir) && String::from_utf8_lossy(&cmdline).contains(&dir)
        })
        .collect()
}

/// Pages out the file-backed mappings of `pids`; returns the bytes of mappings advised (not
/// all of them were in memory). Needs the right to ptrace them (the bench started them) and,
/// on most kernels, CAP_SYS_NICE.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn page_out(pids: &[i32]) -> std::io::Result<u64> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut advised = 0;
    for &pid in pids {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue; // gone since it was listed
        };
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let Ok(raw) = i32::try_from(raw) else {
            continue;
        };
        if raw < 0 {
            continue; // gone since it was listed
        }
        // SAFETY: a descriptor just opened and owned by nothing else; closed when dropped.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
        for mapping in baton_resident::file_mappings(&maps) {
            let range = libc::iovec {
                iov_base: mapping.start as *mut libc::c_void,
                iov_len: mapping.len() as usize,
            };
            // SAFETY: process_madvise reads the one iovec passed (an address range of the
            // other process, which it does not dereference in ours).
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_process_madvise,
                    pidfd.as_raw_fd(),
                    &range as *const libc::iovec,
                    1usize,
                    libc::MADV_PAGEOUT,
                    0u32,
                )
            };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINVAL) {
                    // A locked mapping (`lock_code`): reclaim leaves it, and so does this.
                    continue;
                }
                return Err(err);
            }
            advised += rc as u64;
        }
    }
    Ok(advised)
}

/// Drops the page cache of the programs the jobs start (`sh` and `bash` on PATH), as the same
/// reclaim would between two jobs: pages some process maps (a worker's `lock_code` maps and
/// locks its shell) stay.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn drop_job_shells() {
    use std::os::fd::AsRawFd;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    for program in ["sh", "bash"] {
        let Some(file) = std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find_map(|p| std::fs::File::open(p).ok())
        else {
            continue;
        };
        // SAFETY: advice on an open file's page cache; no memory of ours is involved.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

/// Elsewhere: not done.
#[cfg(not(target_os = "linux"))]
pub fn drop_job_shells() {}

/// Elsewhere: not done.
#[cfg(not(target_os = "linux"))]
pub fn page_out(_pids: &[i32]) -> std::io::Result<u64> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "--page-out needs Linux",
    ))
}
