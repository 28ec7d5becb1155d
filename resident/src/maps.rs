//! The file mappings of a `/proc/PID/maps`, and which of them hold code: the pure part of
//! [`crate::lock_code`].

use std::path::Path;

/// One mapping to lock: `start..end` in the process's address space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// The file mapped.
    pub path: String,
    /// True for an executable mapping.
    pub exec: bool,
    /// True for a mapping that can be read and not written: code and read-only data.
    pub read_only: bool,
}

impl Mapping {
    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True for an empty range (never in a real maps file).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// The read-only mappings of files in `maps` (the text of `/proc/self/maps`), in the order
/// they should be locked: the executable's (`exe`) code first, then the rest of its
/// read-only data, then the shared libraries' code, then their read-only data. Writable
/// mappings, anonymous ones, `[vdso]` and the like, and lines that do not parse are left out.
pub fn code_mappings(maps: &str, exe: &Path) -> Vec<Mapping> {
    let exe = exe.to_str().unwrap_or("");
    let mut found: Vec<Mapping> = file_mappings(maps).filter(|m| m.read_only).collect();
    found.sort_by_key(|m| (m.path != exe, !m.exec));
    found
}

/// Every mapping of a file (not deleted) in `maps`, the text of a `/proc/PID/maps`; lines that
/// do not parse, anonymous mappings, `[vdso]` and the like are left out.
pub fn file_mappings(maps: &str) -> impl Iterator<Item = Mapping> + '_ {
    maps.lines().filter_map(parse_line)
}

/// `start-end perms offset dev inode path`, kept when it maps a file.
fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?.as_bytes();
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let inode = fields.next()?;
    let path: Vec<&str> = fields.collect();
    let path = path.join(" ");
    if !path.starts_with('/') || inode == "0" || path.ends_with(" (deleted)") {
        return None;
    }
    if perms.len() < 4 {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    (end > start).then(|| Mapping {
        start,
        end,
        path,
        exec: perms[2] == b'x',
        read_only: perms[0] == b'r' && perms[1] == b'-',
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 fe:00 123 /usr/bin/baton-worker
55d0c0100000-55d0c0500000 r-xp 00100000 fe:00 123 /usr/bin/baton-worker
55d0c0500000-55d0c0600000 r--p 00500000 fe:00 123 /usr/bin/baton-worker
55d0c0600000-55d0c0610000 rw-p 00600000 fe:00 123 /usr/bin/baton-worker
55d0c1000000-55d0c2000000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000028000 r--p 00000000 fe:00 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000028000-7f00001bd000 r-xp 00028000 fe:00 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f00001bd000-7f0000215000 r--p 001bd000 fe:00 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000215000-7f0000219000 rw-p 00214000 fe:00 456 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000301000 r--p 00000000 fe:00 789 /tmp/my dir/notes (deleted)
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
not a maps line
";

    #[test]
    fn the_executables_code_comes_first_and_nothing_writable_is_kept() {
        let found = code_mappings(MAPS, Path::new("/usr/bin/baton-worker"));
        let order: Vec<(&str, bool, u64)> = found
            .iter()
            .map(|m| (m.path.as_str(), m.exec, m.start))
            .collect();
        assert_eq!(
            order,
            vec![
                ("/usr/bin/baton-worker", true, 0x55d0c0100000),
                ("/usr/bin/baton-worker", false, 0x55d0c0000000),
                ("/usr/bin/baton-worker", false, 0x55d0c0500000),
                ("/usr/lib/x86_64-linux-gnu/libc.so.6", true, 0x7f0000028000),
                ("/usr/lib/x86_64-linux-gnu/libc.so.6", false, 0x7f0000000000),
                ("/usr/lib/x86_64-linux-gnu/libc.so.6", false, 0x7f00001bd000),
            ]
        );
        assert_eq!(found[0].len(), 0x400000);
    }

    #[test]
    fn every_file_mapping_is_listed_writable_ones_too() {
        let found: Vec<(u64, bool)> = file_mappings(MAPS)
            .map(|m| (m.start, m.read_only))
            .collect();
        assert_eq!(found.len(), 8);
        assert!(found.contains(&(0x55d0c0600000, false)));
        assert!(found.contains(&(0x7f0000215000, false)));
    }

    #[test]
    fn a_path_with_spaces_is_kept_whole() {
        let maps = "7f0000300000-7f0000301000 r-xp 00000000 fe:00 789 /opt/my tools/libx.so\n";
        let found = code_mappings(maps, Path::new("/usr/bin/baton-worker"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "/opt/my tools/libx.so");
    }
}
