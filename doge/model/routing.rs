//! CDMoE product-key routing (spec 2.8 steps 2-3), per token.
//!
//! With the first-key scores X and second-key scores Y of a token, each sorted descending, the
//! candidate (p, q) scores X[p] + Y[q] and names expert ix[p] * K + iy[q]. The top-k candidates can
//! only come from pairs with (p + 1)(q + 1) <= k: every other pair is beaten by at least k pairs that
//! dominate it in both coordinates (and precede it in candidate order, so ties resolve the same way).
//! The selection is not differentiable; the chosen scores are gathered again from the logits tensor.

use candle_core::{DType, Result, Tensor};

/// Column indices into the [N, 2K] router logits and the chosen expert ids, in descending score order.
pub struct Route {
    /// [N, k] u32, columns 0..K.
    pub first_key: Tensor,
    /// [N, k] u32, columns K..2K.
    pub second_key: Tensor,
    /// [N * k] u32 expert ids.
    pub experts: Tensor,
}

fn sorted_desc(values: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    // Stable: equal scores keep the lower index first.
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    idx
}

/// The k best (first-key, second-key) index pairs of one token.
pub fn route_one(x: &[f64], y: &[f64], k: usize) -> Vec<(usize, usize)> {
    let num_keys = x.len();
    let (ix, iy) = (sorted_desc(x), sorted_desc(y));
    let mut candidates = Vec::new();
    for p in 0..num_keys.min(k) {
        for q in 0..num_keys.min(k / (p + 1)) {
            candidates.push((x[ix[p]] + y[iy[q]], p * num_keys + q, ix[p], iy[q]));
        }
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    candidates
        .into_iter()
        .take(k)
        .map(|(_, _, a, b)| (a, b))
        .collect()
}

/// Routes every row of `logits` [N, 2K].
pub fn route_tokens(logits: &Tensor, num_keys: usize, k: usize) -> Result<Route> {
    let (n, width) = logits.dims2()?;
    if width != 2 * num_keys {
        candle_core::bail!("router logits have {width} columns, expected 2 * {num_keys}");
    }
    let values = logits
        .detach()
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let (mut first, mut second, mut experts) = (
        Vec::with_capacity(n * k),
        Vec::with_capacity(n * k),
        Vec::with_capacity(n * k),
    );
    for row in values.chunks_exact(width) {
        let (x, y) = row.split_at(num_keys);
        for (a, b) in route_one(x, y, k) {
            first.push(a as u32);
            second.push((num_keys + b) as u32);
            experts.push((a * num_keys + b) as u32);
        }
    }
    let dev = logits.device();
    Ok(Route {
        first_key: Tensor::from_vec(first, (n, k), dev)?,
        second_key: Tensor::from_vec(second, (n, k), dev)?,
        experts: Tensor::from_vec(experts, n * k, dev)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over all K² pairs, as the spec states the rule.
    fn brute(x: &[f64], y: &[f64], k: usize) -> Vec<(usize, usize)> {
        let (ix, iy) = (sorted_desc(x), sorted_desc(y));
        let kk = x.len();
        let mut all: Vec<(f64, usize, usize, usize)> = (0..kk * kk)
            .map(|c| {
                let (p, q) = (c / kk, c % kk);
                (x[ix[p]] + y[iy[q]], c, ix[p], iy[q])
            })
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, _, a, b)| (a, b)).collect()
    }

    #[test]
    fn pruned_search_equals_brute_force() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        for k in [1, 2, 3, 7, 16, 25] {
            for _ in 0..20 {
                let x: Vec<f64> = (0..5).map(|_| next()).collect();
                let y: Vec<f64> = (0..5).map(|_| next()).collect();
                assert_eq!(route_one(&x, &y, k), brute(&x, &y, k), "k = {k}");
            }
        }
    }
}
