//! One process's resident memory, open files, threads and CPU time, from Linux's `/proc`.
//!
//! Must not: panic or error on a process that is gone or a system without `/proc` — a figure
//! that cannot be read is `None`.

use serde::{Deserialize, Serialize};

/// What a process uses now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessResources {
    /// Resident set size, bytes (`VmRSS`).
    pub rss_bytes: Option<u64>,
    /// The most resident memory the process ever held, bytes (`VmHWM`).
    pub peak_rss_bytes: Option<u64>,
    /// Open file descriptors (sockets included).
    pub open_files: Option<u64>,
    /// OS threads.
    pub threads: Option<u64>,
    /// User + system CPU time so far, in clock ticks (`/proc/PID/stat`; 100 per second on
    /// Linux).
    pub cpu_ticks: Option<u64>,
}

/// Which process: this one, or another by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    This,
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::This => "/proc/self".to_string(),
            Pid::Other(pid) => format!("/proc/{pid}"),
        }
    }
}

/// Reads what `pid` uses now; figures that cannot be read are `None`.
pub fn resources(pid: Pid) -> ProcessResources {
    let dir = pid.dir();
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
    let open_files = std::fs::read_dir(format!("{dir}/fd"))
        .ok()
        .map(|entries| entries.count() as u64);
    let cpu_ticks = std::fs::read_to_string(format!("{dir}/stat"))
        .ok()
        .and_then(|stat| cpu_ticks(&stat));
    ProcessResources {
        rss_bytes: status_field(&status, "VmRSS:").map(|kib| kib * 1024),
        peak_rss_bytes: status_field(&status, "VmHWM:").map(|kib| kib * 1024),
        open_files,
        threads: status_field(&status, "Threads:"),
        cpu_ticks,
    }
}

/// The first number after `name` in `/proc/PID/status` (`VmRSS:   1234 kB` → 1234).
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// utime + stime from `/proc/PID/stat` (fields 14 and 15, counted after the `)` that ends the
/// command name, which may itself hold spaces and parentheses).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read() {
        let status = "Name:\toutdial\nVmRSS:\t   51234 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(51234));
        assert_eq!(status_field(status, "Threads:"), Some(7));
        assert_eq!(status_field(status, "VmSwap:"), None);
        assert_eq!(status_field("VmRSS:\tlots kB\n", "VmRSS:"), None);
    }

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(287));
        assert_eq!(cpu_ticks("42 (x) S 1"), None);
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read() {
        let r = resources(Pid::This);
        assert!(r.rss_bytes.is_some_and(|b| b > 0), "{r:?}");
        assert!(r.peak_rss_bytes >= r.rss_bytes, "{r:?}");
        assert!(r.open_files.is_some_and(|n| n >= 3), "{r:?}");
        assert!(r.threads.is_some_and(|n| n >= 1), "{r:?}");
        assert!(r.cpu_ticks.is_some(), "{r:?}");
    }

    #[test]
    fn a_process_that_is_gone_reads_as_nothing() {
        assert_eq!(resources(Pid::Other(u32::MAX)), ProcessResources::default());
    }
}
