//! Step-time statistics and the process's peak resident memory.

use serde::Serialize;

/// Wall times of repeated runs of one thing, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    pub seconds: Vec<f64>,
}

impl Timings {
    pub fn min(&self) -> f64 {
        self.seconds.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The middle value (the mean of the two middle ones for an even count).
    pub fn median(&self) -> f64 {
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => s[n / 2],
            _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }
}

/// CPU time (user + system, all threads) this process has used so far, in seconds; None where
/// /proc is unavailable. On a shared machine this is steadier than wall time: it counts only the
/// time this process ran.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux ABI Rust targets.
    Some(ticks as f64 / 100.0)
}

/// Peak resident set size of this process (`VmHWM`), in bytes; None where /proc is unavailable.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_min() {
        let t = Timings {
            seconds: vec![3.0, 1.0, 2.0, 10.0],
        };
        assert_eq!(t.min(), 1.0);
        assert_eq!(t.median(), 2.5);
        let t = Timings {
            seconds: vec![3.0, 1.0, 2.0],
        };
        assert_eq!(t.median(), 2.0);
    }
}
