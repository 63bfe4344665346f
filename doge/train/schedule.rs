//! Learning-rate schedules as multipliers of the base lr, per optimizer step (0-based: the first
//! update uses step 0), with the formulas of transformers' schedulers (spec 7.1 and 7.3).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Warmup-stable-decay, linear warmup and linear decay (`warmup_stable_decay`).
    Wsd {
        warmup_steps: u64,
        decay_steps: u64,
        min_lr_rate: f64,
    },
    /// Linear warmup then cosine down to `min_lr_rate` (`cosine_with_min_lr`).
    Cosine { warmup_steps: u64, min_lr_rate: f64 },
    /// Linear warmup then constant.
    Constant { warmup_steps: u64 },
}

impl Schedule {
    /// The multiplier at optimizer step `step` of `total_steps`.
    pub fn multiplier(&self, step: u64, total_steps: u64) -> f64 {
        let warmup = |w: u64| step as f64 / w.max(1) as f64;
        match *self {
            Schedule::Wsd {
                warmup_steps,
                decay_steps,
                min_lr_rate,
            } => {
                let stable = total_steps.saturating_sub(warmup_steps + decay_steps);
                if step < warmup_steps {
                    warmup(warmup_steps)
                } else if step < warmup_steps + stable {
                    1.0
                } else if step < warmup_steps + stable + decay_steps {
                    let progress =
                        (step - warmup_steps - stable) as f64 / decay_steps.max(1) as f64;
                    min_lr_rate + (1.0 - min_lr_rate) * (1.0 - progress)
                } else {
                    min_lr_rate
                }
            }
            Schedule::Cosine {
                warmup_steps,
                min_lr_rate,
            } => {
                if step < warmup_steps {
                    return warmup(warmup_steps);
                }
                let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                let progress = ((step - warmup_steps) as f64 / span).min(1.0);
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                min_lr_rate + (1.0 - min_lr_rate) * cosine
            }
            Schedule::Constant { warmup_steps } => {
                if step < warmup_steps {
                    warmup(warmup_steps)
                } else {
                    1.0
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doge-20M: 8000 steps, warmup 800, decay 800, min 0 (spec 7.1), against the formula by hand.
    #[test]
    fn wsd_matches_the_doge_20m_formula() {
        let s = Schedule::Wsd {
            warmup_steps: 800,
            decay_steps: 800,
            min_lr_rate: 0.0,
        };
        let m = |step| s.multiplier(step, 8000);
        assert_eq!(m(0), 0.0);
        assert_eq!(m(799), 799.0 / 800.0);
        assert_eq!(m(800), 1.0);
        assert_eq!(m(7199), 1.0);
        assert_eq!(m(7200), 1.0);
        assert_eq!(m(7999), 1.0 - 799.0 / 800.0);
        assert_eq!(m(8000), 0.0);
    }

    #[test]
    fn cosine_ends_at_the_min_rate() {
        let s = Schedule::Cosine {
            warmup_steps: 10,
            min_lr_rate: 0.1,
        };
        assert_eq!(s.multiplier(5, 110), 0.5);
        assert!((s.multiplier(10, 110) - 1.0).abs() < 1e-12);
        assert!((s.multiplier(60, 110) - 0.55).abs() < 1e-12);
        assert!((s.multiplier(110, 110) - 0.1).abs() < 1e-12);
    }
}
