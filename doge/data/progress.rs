//! Progress bars for the long steps (documents/s and tokens/s), hidden when not wanted or
//! when stderr is not a terminal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over documents that also shows tokens per second.
pub struct Progress {
    bar: ProgressBar,
    start: Instant,
    tokens: AtomicU64,
}

impl Progress {
    pub fn new(show: bool, len: u64, step: &str, unit: &str) -> Self {
        Self::styled(
            show,
            len,
            step,
            &format!("{{prefix:>10}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}) {{msg}} {{elapsed}}"),
        )
    }

    /// A bar over input bytes: MB/s, ETA, and tokens per second.
    pub fn bytes(show: bool, total: u64, step: &str) -> Self {
        Self::styled(
            show,
            total,
            step,
            "{prefix:>10} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} ({decimal_bytes_per_sec}, ETA {eta}) {msg} {elapsed}",
        )
    }

    fn styled(show: bool, len: u64, step: &str, template: &str) -> Self {
        let bar = if show {
            ProgressBar::new(len)
        } else {
            ProgressBar::hidden()
        };
        let style = ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(step.to_string());
        Progress {
            bar,
            start: Instant::now(),
            tokens: AtomicU64::new(0),
        }
    }

    /// Counts `items` done and `tokens` produced.
    pub fn inc(&self, items: u64, tokens: u64) {
        let t = self.tokens.fetch_add(tokens, Ordering::Relaxed) + tokens;
        self.bar.inc(items);
        if tokens > 0 {
            let secs = self.start.elapsed().as_secs_f64().max(1e-9);
            self.bar.set_message(tokens_per_second(t as f64 / secs));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A rate with a unit prefix that keeps three significant digits: tokenizing runs at millions
/// per second, scoring on a CPU at thousands, and "0.00M tok/s" told the eval user nothing.
fn tokens_per_second(rate: f64) -> String {
    let (value, prefix) = if rate >= 1e6 {
        (rate / 1e6, "M")
    } else if rate >= 1e3 {
        (rate / 1e3, "k")
    } else {
        (rate, "")
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}{prefix} tok/s")
}

#[cfg(test)]
mod tests {
    use super::tokens_per_second;

    #[test]
    fn rates_keep_three_significant_digits() {
        assert_eq!(tokens_per_second(2_345_678.0), "2.35M tok/s");
        assert_eq!(tokens_per_second(12_345.0), "12.3k tok/s");
        assert_eq!(tokens_per_second(987.4), "987 tok/s");
        assert_eq!(tokens_per_second(4.2), "4.20 tok/s");
    }
}
