//! What the benchmark reads from the system: memory counters and machine
//! facts (Linux `/proc`; elsewhere the numbers read as 0 / "unknown").

use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The page size in KiB (`getconf PAGESIZE`, asked once; 4 if unknown).
fn page_kb() -> u64 {
    static PAGE_KB: OnceLock<u64> = OnceLock::new();
    *PAGE_KB.get_or_init(|| {
        Command::new("getconf")
            .arg("PAGESIZE")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(4, |bytes| (bytes / 1024).max(1))
    })
}

/// Resident set size now, in KiB (`/proc/self/statm`, second field, times
/// the page size).
pub fn rss_kb() -> u64 {
    let page_kb = page_kb();
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_kb)
}

/// Peak resident set size (`VmHWM` in `/proc/self/status`), in KiB.
pub fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The CPU model (`model name` in `/proc/cpuinfo`).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// Online CPUs (as `nproc`).
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The kernel release (`uname -r`).
pub fn kernel() -> String {
    Command::new("uname")
        .arg("-r")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The rustc that built this program (`rustc -V` now; the same toolchain
/// when run through cargo).
pub fn rustc() -> String {
    Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string()))
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "rustc (unknown)".to_string())
}

/// The aioloop revision being measured: the workspace's git commit, noting
/// uncommitted changes under `src/` (read when the run starts).
pub fn aioloop_revision() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        None => "unknown revision".to_string(),
        Some(rev) => match git(&["status", "--porcelain", "--", "src"]) {
            Some(s) if !s.is_empty() => format!("{rev} + uncommitted changes in src/"),
            _ => rev,
        },
    }
}

/// The current UTC date and time, `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Locked versions of the peers (from the workspace's Cargo.lock, embedded at
/// build time), e.g. `[("tokio", "1.54.1"), ...]`.
pub fn versions() -> Vec<(&'static str, String)> {
    const LOCK: &str = include_str!("../../Cargo.lock");
    let wanted = [
        "tokio",
        "async-executor",
        "async-io",
        "futures-lite",
        "futures",
    ];
    let mut out = Vec::new();
    let mut lines = LOCK.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line
            .strip_prefix("name = \"")
            .and_then(|r| r.strip_suffix('"'))
        {
            if let Some(&w) = wanted.iter().find(|&&w| w == name) {
                if let Some(v) = lines
                    .next()
                    .and_then(|l| l.strip_prefix("version = \""))
                    .and_then(|r| r.strip_suffix('"'))
                {
                    out.push((w, v.to_string()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn versions_found() {
        let v = versions();
        assert!(v.iter().any(|(n, _)| *n == "tokio"), "{v:?}");
    }
}
