//! Reading `/proc/self/smaps`: what the kernel says about the arena's
//! mappings (locked? excluded from dumps?), so a program — or a test — can
//! verify the protection rather than trust it.

use std::fs;
use std::io;

/// One mapping from `/proc/<pid>/smaps`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// Permissions, e.g. `rw-p`.
    pub perms: String,
    /// Backing file or pseudo-name (`[heap]`, `/secretmem (deleted)`), if any.
    pub path: String,
    /// Resident bytes.
    pub rss_bytes: usize,
    /// Locked bytes.
    pub locked_bytes: usize,
    /// Two-letter `VmFlags` (`lo` locked, `dd` do-not-dump, `wf` wipe-on-fork...).
    pub vm_flags: Vec<String>,
}

impl Mapping {
    /// Whether `VmFlags` has `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }

    /// Whether `[start, end)` overlaps this mapping.
    pub fn overlaps(&self, start: usize, end: usize) -> bool {
        self.start < end && start < self.end
    }
}

/// Parses the smaps of process `pid` (`"self"` for this one).
pub fn read(pid: &str) -> io::Result<Vec<Mapping>> {
    parse(&fs::read_to_string(format!("/proc/{pid}/smaps"))?)
}

/// Parses smaps text.
pub fn parse(text: &str) -> io::Result<Vec<Mapping>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("smaps: {what}"));
    let mut maps: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                let perms = words
                    .next()
                    .ok_or_else(|| bad("no permissions"))?
                    .to_string();
                let path = words.skip(3).collect::<Vec<_>>().join(" ");
                maps.push(Mapping {
                    start,
                    end,
                    perms,
                    path,
                    ..Mapping::default()
                });
                continue;
            }
        }
        let Some(current) = maps.last_mut() else {
            continue;
        };
        let kb = |w: Option<&str>| w.and_then(|v| v.parse::<usize>().ok()).unwrap_or(0) * 1024;
        match first {
            "Rss:" => current.rss_bytes = kb(words.next()),
            "Locked:" => current.locked_bytes = kb(words.next()),
            "VmFlags:" => current.vm_flags = words.map(str::to_string).collect(),
            _ => {}
        }
    }
    Ok(maps)
}

/// What the kernel reports for the arena's memory in this process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArenaReport {
    /// Mappings overlapping the arena's committed memory.
    pub mappings: usize,
    /// Bytes of those mappings.
    pub mapped_bytes: usize,
    /// Resident bytes.
    pub rss_bytes: usize,
    /// Locked bytes.
    pub locked_bytes: usize,
    /// Bytes in mappings flagged `lo` (locked, including on-fault locking).
    pub lo_flag_bytes: usize,
    /// Bytes in mappings flagged `dd` (excluded from core dumps).
    pub dd_flag_bytes: usize,
}

/// Sums smaps over every mapping that holds arena memory.
#[cfg(not(loom))]
pub fn arena_report() -> io::Result<ArenaReport> {
    let mut regions = Vec::new();
    crate::arena::for_each_region(|start, len| regions.push((start, start + len)));
    let maps = read("self")?;
    let mut report = ArenaReport::default();
    for m in maps.iter().filter(|m| m.perms.starts_with("rw")) {
        if regions.iter().any(|&(s, e)| m.overlaps(s, e)) {
            report.mappings += 1;
            report.mapped_bytes += m.end - m.start;
            report.rss_bytes += m.rss_bytes;
            report.locked_bytes += m.locked_bytes;
            if m.has_flag("lo") {
                report.lo_flag_bytes += m.end - m.start;
            }
            if m.has_flag("dd") {
                report.dd_flag_bytes += m.end - m.start;
            }
        }
    }
    Ok(report)
}
