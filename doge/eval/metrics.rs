//! Corpus-level aggregates of per-item scores: the mean and its standard error as lm-eval reports
//! them (sample standard deviation with n - 1, divided by sqrt(n)).

/// One aggregated metric of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub metric: String,
    pub value: f64,
    /// None where the metric has no per-item variance (perplexities are ratios of sums).
    pub stderr: Option<f64>,
    pub n: usize,
}

/// Mean of per-item values with lm-eval's `mean_stderr`.
pub fn mean_with_stderr(metric: &str, values: &[f64]) -> Score {
    let n = values.len();
    let mean = if n == 0 {
        0.0
    } else {
        values.iter().sum::<f64>() / n as f64
    };
    let stderr = (n > 1).then(|| {
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (var / n as f64).sqrt()
    });
    Score {
        metric: metric.to_string(),
        value: mean,
        stderr,
        n,
    }
}

/// Index of the largest value; the first on ties (numpy's argmax, which lm-eval and lighteval use).
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_of_a_bernoulli_sample() {
        // 3 of 4 correct: mean 0.75, sample variance 0.25, stderr sqrt(0.25 / 4) = 0.25.
        let s = mean_with_stderr("acc", &[1.0, 1.0, 0.0, 1.0]);
        assert_eq!(s.value, 0.75);
        assert!((s.stderr.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(s.n, 4);
        assert_eq!(mean_with_stderr("acc", &[1.0]).stderr, None);
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[-1.0, -0.5, -0.5]), 1);
        assert_eq!(argmax(&[-3.0]), 0);
    }
}
