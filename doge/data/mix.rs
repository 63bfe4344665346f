//! Mixing: which documents are held out for the test split, and in which seeded order each
//! source's documents and the whole mix come.
//!
//! Every order is a sort by a 64-bit key hashed from the seed and the document's position, so
//! a key is computed from one document alone: the streaming planner ([`super::plan`]) never
//! holds a corpus-sized permutation, and the tokenizer trainer (which holds its sample in
//! memory) holds out exactly the documents preparation holds out.

use std::collections::HashSet;

use anyhow::{bail, Result};

use super::docs::Doc;
use super::rng::SplitMix64;

/// The seeded keys that order documents.
#[derive(Debug, Clone)]
pub struct MixKeys {
    sources: u64,
    test: u64,
    mix: u64,
}

/// SplitMix64's output function: a bijection on u64 that mixes every bit.
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash2(base: u64, a: u64, b: u64) -> u64 {
    finalize(base ^ finalize(a.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ finalize(b)))
}

impl MixKeys {
    pub fn new(seed: u64) -> Self {
        MixKeys {
            sources: SplitMix64::derive(seed, "sources").next_u64(),
            test: SplitMix64::derive(seed, "test").next_u64(),
            mix: SplitMix64::derive(seed, "mix").next_u64(),
        }
    }

    /// Document `j` of source `s` in the source's shuffled order: the smallest keys are held
    /// out, the rest are taken for training in key order.
    pub fn order(&self, s: usize, j: u64) -> u64 {
        hash2(self.sources, s as u64, j)
    }

    /// The test split's order.
    pub fn test(&self, s: usize, j: u64) -> u64 {
        hash2(self.test, s as u64, j)
    }

    /// Copy `r` of training document `j` of source `s` in the mix's order.
    pub fn mix(&self, s: usize, j: u64, r: u64) -> u64 {
        hash2(self.mix, ((s as u64) << 48) ^ j, r)
    }
}

/// How many documents each source gives to the test split: `n_test` shared out by weight
/// (largest remainder), each source keeping at least one training document.
pub fn test_counts(docs: &[u64], weights: &[f64], n_test: usize) -> Result<Vec<usize>> {
    let available: Vec<usize> = docs
        .iter()
        .map(|&d| (d as usize).saturating_sub(1))
        .collect();
    let total_available: usize = available.iter().sum();
    if n_test > total_available {
        bail!(
            "data.test-examples {n_test} is more than the sources can spare ({total_available} documents, keeping one per source for training); lower it"
        );
    }
    Ok(share_out(n_test, weights, &available))
}

/// One source's documents split into training and test, as indices into its documents; the
/// training indices are in the source's shuffled order.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdout {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// The held-out split of documents in memory (the tokenizer trainer's view; preparation
/// computes the same split streaming). A training document whose text equals a test
/// document's is dropped, so no held-out text is ever trained on.
pub fn holdout(
    docs: &[Vec<Doc>],
    weights: &[f64],
    n_test: usize,
    seed: u64,
) -> Result<Vec<Holdout>> {
    let keys = MixKeys::new(seed);
    let n: Vec<u64> = docs.iter().map(|d| d.len() as u64).collect();
    let counts = test_counts(&n, weights, n_test)?;
    let mut split: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    for (s, d) in docs.iter().enumerate() {
        let mut order: Vec<usize> = (0..d.len()).collect();
        order.sort_by_key(|&j| (keys.order(s, j as u64), j));
        let (test, train) = order.split_at(counts[s]);
        split.push((train.to_vec(), test.to_vec()));
    }
    let held: HashSet<u64> = split
        .iter()
        .enumerate()
        .flat_map(|(i, (_, test))| test.iter().map(move |&j| docs[i][j].content_key()))
        .collect();
    let mut out = Vec::with_capacity(docs.len());
    for (i, (train, test)) in split.into_iter().enumerate() {
        let train: Vec<usize> = train
            .into_iter()
            .filter(|&j| !held.contains(&docs[i][j].content_key()))
            .collect();
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
