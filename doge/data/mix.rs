//! Mixing: which documents are held out for the test split, and which (possibly repeated)
//! documents of each source make up the training mix, in a seeded shuffled order.

use std::collections::HashSet;

use anyhow::{bail, Result};

use super::config::Budget;
use super::docs::Doc;
use super::rng::{permutation, SplitMix64};

/// One source's documents split into training and test, as indices into its documents; the
/// training indices are in the source's shuffled order.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits `n_test` documents off the sources, shared out by weight (largest remainder), each
/// source keeping at least one training document. A training document whose text equals a
/// test document's is dropped, so no held-out text is ever trained on.
pub fn holdout(
    docs: &[Vec<Doc>],
    weights: &[f64],
    n_test: usize,
    seed: u64,
) -> Result<Vec<Holdout>> {
    let available: Vec<usize> = docs.iter().map(|d| d.len().saturating_sub(1)).collect();
    let total_available: usize = available.iter().sum();
    if n_test > total_available {
        bail!(
            "data.test-examples {n_test} is more than the sources can spare ({total_available} documents, keeping one per source for training); lower it"
        );
    }
    let counts = share_out(n_test, weights, &available);
    let mut out = Vec::with_capacity(docs.len());
    let mut split: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let order = permutation(
            d.len(),
            &mut SplitMix64::derive(seed, &format!("source{i}")),
        );
        let (test, train) = order.split_at(counts[i]);
        split.push((train.to_vec(), test.to_vec()));
    }
    let held: HashSet<u64> = split
        .iter()
        .enumerate()
        .flat_map(|(i, (_, test))| test.iter().map(move |&j| docs[i][j].content_key()))
        .collect();
    for (i, (train, test)) in split.into_iter().enumerate() {
        let train: Vec<usize> = if held.is_empty() {
            train
        } else {
            train
                .into_iter()
                .filter(|&j| !held.contains(&docs[i][j].content_key()))
                .collect()
        };
        if train.is_empty() {
            bail!("data.source[{i}]: every document is also in the test split; add data or lower data.test-examples");
        }
        out.push(Holdout { train, test });
    }
    Ok(out)
}

/// Splits `total` into integer parts proportional to `weights` (largest remainder, ties to the
/// earlier source), each part at most its cap; what a capped part cannot take goes to the others.
pub fn share_out(total: usize, weights: &[f64], caps: &[usize]) -> Vec<usize> {
    let mut counts = vec![0usize; weights.len()];
    let mut left = total;
    let mut open: Vec<usize> = (0..weights.len()).filter(|&i| caps[i] > 0).collect();
    while left > 0 && !open.is_empty() {
        let wsum: f64 = open.iter().map(|&i| weights[i]).sum();
        let ideal: Vec<f64> = open
            .iter()
            .map(|&i| left as f64 * weights[i] / wsum)
            .collect();
        let mut add: Vec<usize> = ideal.iter().map(|x| x.floor() as usize).collect();
        let mut rest = left - add.iter().sum::<usize>();
        let mut order: Vec<usize> = (0..open.len()).collect();
        order.sort_by(|&a, &b| {
            (ideal[b] - ideal[b].floor())
                .total_cmp(&(ideal[a] - ideal[a].floor()))
                .then(a.cmp(&b))
        });
        for &k in &order {
            if rest == 0 {
                break;
            }
            add[k] += 1;
            rest -= 1;
        }
        for (k, &i) in open.iter().enumerate() {
            let take = add[k].min(caps[i] - counts[i]);
            counts[i] += take;
            left -= take;
        }
        open.retain(|&i| counts[i] < caps[i]);
    }
    counts
}

/// A training document of the mix: source and document index.
pub type Pick = (usize, usize);

/// Chooses each source's training documents for the budget, cycling through a source's
/// shuffled documents when the budget asks for more than it has, then shuffles the whole mix.
/// `lens[s][j]` is the token count of document `j` of source `s`.
pub fn select(
    holdouts: &[Holdout],
    lens: &[Vec<usize>],
    weights: &[f64],
    budget: Budget,
    seed: u64,
) -> Result<Vec<Pick>> {
    let wsum: f64 = weights.iter().sum();
    let share: Vec<f64> = weights.iter().map(|w| w / wsum).collect();
    let tokens: Vec<u64> = holdouts
        .iter()
        .enumerate()
        .map(|(s, h)| h.train.iter().map(|&j| lens[s][j] as u64).sum())
        .collect();
    let mut picks: Vec<Pick> = Vec::new();
    match budget {
        Budget::Examples(n) => {
            let caps = vec![usize::MAX; weights.len()];
            let counts = share_out(n as usize, weights, &caps);
            for (s, h) in holdouts.iter().enumerate() {
                picks.extend((0..counts[s]).map(|k| (s, h.train[k % h.train.len()])));
            }
        }
        Budget::Tokens(_) | Budget::NoRepeat => {
            let total = match budget {
                Budget::Tokens(t) => t as f64,
                // The scarcest source (relative to its weight) is used exactly once.
                _ => (0..weights.len())
                    .map(|s| tokens[s] as f64 / share[s])
                    .fold(f64::INFINITY, f64::min),
            };
            for (s, h) in holdouts.iter().enumerate() {
                let target = if matches!(budget, Budget::NoRepeat)
                    && tokens[s] as f64 <= total * share[s] + 0.5
                {
                    tokens[s] as f64
                } else {
                    total * share[s]
                };
                let mut acc = 0f64;
                let mut k = 0usize;
                while acc < target {
                    let j = h.train[k % h.train.len()];
                    let len = lens[s][j] as f64;
                    // Stop before a document that would overshoot more than stopping undershoots.
                    if acc + len - target > target - acc {
                        break;
                    }
                    acc += len;
                    picks.push((s, j));
                    k += 1;
                }
            }
        }
    }
    if picks.is_empty() {
        bail!("the mix is empty: the budget is smaller than one document");
    }
    SplitMix64::derive(seed, "mix").shuffle(&mut picks);
    Ok(picks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_out_is_exact_and_capped() {
        assert_eq!(
            share_out(10, &[7.0, 2.0, 1.0], &[100, 100, 100]),
            vec![7, 2, 1]
        );
        assert_eq!(
            share_out(10, &[1.0, 1.0, 1.0], &[100, 100, 100]),
            vec![4, 3, 3]
        );
        assert_eq!(
            share_out(10, &[7.0, 2.0, 1.0], &[2, 100, 100]),
            vec![2, 5, 3]
        );
        assert_eq!(share_out(5, &[1.0], &[3]), vec![3]);
    }
}
