//! Keeps a process's code in memory.
//!
//! A host that reclaims memory proactively (DAMON's `pageout` scheme, a balloon driver, a
//! cgroup's `memory.reclaim`) drops the pages of a program's code that have not run for a while,
//! even with gigabytes free. A coordinator or worker that sat idle between two pushes then reads
//! its request path back from disk, page by page, before it can answer: on the development VM,
//! where pages idle for 60 s are paged out, a stop took 25 ms instead of 1.1–1.3 ms to reach its
//! job once the processes' code had been paged out (`baton-bench cancel-latency --page-out`,
//! bench/PERFORMANCE.md).
//!
//! [`lock_code`] locks every read-only file mapping of the process (its executable's code and
//! read-only data, and the shared libraries it loaded) with `mlock2(MLOCK_ONFAULT)`: a page is
//! locked once it is first used and never paged out after, and code that never runs takes no
//! memory. Locked pages count against `RLIMIT_MEMLOCK` by the size of the whole mapping;
//! [`lock_code`] raises the soft limit to the hard one and locks the executable's code first, so
//! a low limit still covers the hottest part.

mod maps;

pub use maps::{Mapping, code_mappings, file_mappings};

use std::io;

/// What [`lock_code`] locked.
#[derive(Debug)]
pub struct Locked {
    /// Bytes of mappings locked.
    pub locked: u64,
    /// Bytes of all the read-only file mappings that were to be locked.
    pub wanted: u64,
    /// The memlock limit (soft, after raising it to the hard one), in bytes; `None` when
    /// unlimited.
    pub limit: Option<u64>,
    /// Why locking stopped short of `wanted`, if it did.
    pub error: Option<io::Error>,
}

impl Locked {
    /// One line for the log: how much is locked and, when not all, what to do.
    pub fn describe(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        match &self.error {
            None => format!(
                "code locked in memory: {:.1} MiB of mappings (pages lock as they are first used)",
                mib(self.locked)
            ),
            Some(err) => {
                let limit = self
                    .limit
                    .map_or("unlimited".to_string(), |l| format!("{} KiB", l / 1024));
                format!(
                    "code locked in memory: {:.1} of {:.1} MiB of mappings, then: {err} (memlock \
                     limit {limit}); raise the limit (`ulimit -l unlimited`, systemd \
                     `LimitMEMLOCK=infinity`, Docker `--cap-add IPC_LOCK`) so that none of it is \
                     read back from disk after a quiet spell, or set lock_code to false",
                    mib(self.locked),
                    mib(self.wanted)
                )
            }
        }
    }
}

/// What process `pid` has locked, in KiB, as the kernel counts it (`VmLck` of
/// `/proc/PID/status`: each locked mapping whole).
pub fn locked_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmLck in /proc/{pid}/status")))
}

/// [`lock_code`], then one log line: at `info` when everything is locked, at `warn` with what
/// to do when the memlock limit stopped it short.
pub fn lock_code_and_log() -> Locked {
    let locked = lock_code();
    if locked.error.is_some() {
        tracing::warn!("{}", locked.describe());
    } else {
        tracing::info!("{}", locked.describe());
    }
    locked
}

/// Locks the process's read-only file mappings (see the crate's documentation). Call it once,
/// after start-up has loaded everything the process maps.
#[cfg(target_os = "linux")]
pub fn lock_code() -> Locked {
    let limit = raise_memlock_limit();
    let maps = match std::fs::read_to_string("/proc/self/maps") {
        Ok(maps) => maps,
        Err(err) => {
            return Locked {
                locked: 0,
                wanted: 0,
                limit,
                error: Some(err),
            };
        }
    };
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let mappings = code_mappings(&maps, &exe);
    let wanted = mappings.iter().map(|m| m.len()).sum();
    let mut locked = 0;
    for mapping in &mappings {
        let (done, refused) = lock_prefix(mapping.start, mapping.len());
        locked += done;
        if refused.is_some() {
            return Locked {
                locked,
                wanted,
                limit,
                error: refused,
            };
        }
    }
    Locked {
        locked,
        wanted,
        limit,
        error: None,
    }
}

/// Elsewhere there is nothing to lock this way.
#[cfg(not(target_os = "linux"))]
pub fn lock_code() -> Locked {
    Locked {
        locked: 0,
        wanted: 0,
        limit: None,
        error: Some(io::Error::new(
            io::ErrorKind::Unsupported,
            "locking code in memory is only done on Linux",
        )),
    }
}

/// Maps the whole of the file at `path` read-only and locks it in memory for the rest of the
/// process's life (the mapping is never unmapped): for a program this process does not run
/// itself but starts often, such as a worker's shell, whose pages would otherwise be paged out
/// between jobs. Returns the bytes locked (the file's size, which counts against the memlock
/// limit).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn lock_file(path: &std::path::Path) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: a new read-only shared mapping of an open file; the kernel picks the address and
    // nothing of ours is read or written. The mapping outlives `file` (mappings hold their own
    // reference) and is deliberately never unmapped.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: locks (and reads in) the pages of the mapping just made.
    if unsafe { libc::mlock(addr, len as usize) } != 0 {
        let err = io::Error::last_os_error();
        // SAFETY: unmaps the mapping just made, used nowhere else.
        unsafe { libc::munmap(addr, len as usize) };
        return Err(err);
    }
    Ok(len)
}

/// Elsewhere: not done.
#[cfg(not(target_os = "linux"))]
pub fn lock_file(_path: &std::path::Path) -> io::Result<u64> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "locking files in memory is only done on Linux",
    ))
}

/// Locks `len` bytes at `start`, or when that is refused, the longest prefix of it (halving
/// down to one page) that is allowed: returns the bytes locked and, when not all, the refusal.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lock_prefix(start: u64, len: u64) -> (u64, Option<io::Error>) {
    // Linux's MLOCK_ONFAULT (include/uapi/asm-generic/mman-common.h); the libc crate does not
    // export it for glibc.
    const MLOCK_ONFAULT: libc::c_uint = 0x01;
    const PAGE: u64 = 4096;
    let mut try_len = len;
    let mut refused = None;
    while try_len >= PAGE {
        // SAFETY: mlock2 only changes how the kernel treats pages of an existing mapping of
        // this process; it reads and writes no memory of ours.
        let rc = unsafe {
            libc::mlock2(
                start as *const libc::c_void,
                try_len as usize,
                MLOCK_ONFAULT,
            )
        };
        if rc == 0 {
            return (try_len, refused);
        }
        let err = io::Error::last_os_error();
        let over_limit = matches!(err.raw_os_error(), Some(libc::ENOMEM | libc::EPERM));
        refused = Some(err);
        if !over_limit {
            break;
        }
        try_len = (try_len / 2) / PAGE * PAGE;
    }
    (0, refused)
}

/// Raises the soft memlock limit to the hard one; returns the soft limit in effect (`None`:
/// unlimited).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn raise_memlock_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return Some(0);
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                limit = raised;
            }
        }
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}
