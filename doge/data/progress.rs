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
        let bar = if show {
            ProgressBar::new(len)
        } else {
            ProgressBar::hidden()
        };
        let style = ProgressStyle::with_template(&format!(
            "{{prefix:>10}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}) {{msg}} {{elapsed}}"
        ))
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
            self.bar
                .set_message(format!("{:.2}M tok/s", t as f64 / secs / 1e6));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
