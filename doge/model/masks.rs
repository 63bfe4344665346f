//! Which keys each query row of Dynamic Mask Attention keeps (spec 2.4 step 5).
//!
//! A row keeps the causally visible keys (within the sliding window if one is set); when it sees more
//! than `keep_window_size` of them it keeps only the `keep_window_size` with the largest dynamic bias.
//! Among equal biases the more recent key wins, so a cached decode step and a full re-forward keep the
//! same keys (transformers leaves that to its top-k kernel). The selection is not differentiable and
//! is computed on the host from the detached bias.

use candle_core::{DType, Result, Tensor};

pub struct KeepMaskInput<'a> {
    /// [B, heads, Lk] dynamic bias of every key.
    pub bias: &'a Tensor,
    pub query_len: usize,
    /// Cached positions before the first query.
    pub past: usize,
    pub keep_window_size: usize,
    pub sliding_window: Option<usize>,
}

/// First visible key of the query at absolute position `pos`.
fn first_visible(pos: usize, sliding_window: Option<usize>) -> usize {
    match sliding_window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    }
}

/// A u8 mask (1 = keep): [1, 1, L, Lk] when no row needs the top-k, else [B, heads, L, Lk].
pub fn attention_keep_mask(input: &KeepMaskInput) -> Result<Tensor> {
    let (b, heads, lk) = input.bias.dims3()?;
    let (l, past, window) = (input.query_len, input.past, input.keep_window_size);
    let dev = input.bias.device();
    let visible = |i: usize| {
        let pos = past + i;
        first_visible(pos, input.sliding_window)..=pos
    };
    let needs_top_k = (0..l).any(|i| visible(i).count() > window);
    if !needs_top_k {
        let mut keep = vec![0u8; l * lk];
        for i in 0..l {
            for j in visible(i) {
                keep[i * lk + j] = 1;
            }
        }
        return Tensor::from_vec(keep, (1, 1, l, lk), dev);
    }

    let bias = input
        .bias
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let mut keep = vec![0u8; b * heads * l * lk];
    let mut order: Vec<usize> = Vec::with_capacity(lk);
    for bh in 0..b * heads {
        let row_bias = &bias[bh * lk..(bh + 1) * lk];
        // Keys from most to least preferred: larger bias first, then the more recent key.
        order.clear();
        order.extend(0..lk);
        order.sort_unstable_by(|&x, &y| row_bias[y].total_cmp(&row_bias[x]).then(y.cmp(&x)));
        for i in 0..l {
            let out = &mut keep[(bh * l + i) * lk..(bh * l + i + 1) * lk];
            let range = visible(i);
            if range.clone().count() <= window {
                range.for_each(|j| out[j] = 1);
                continue;
            }
            let mut kept = 0;
            for &j in order.iter() {
                if range.contains(&j) {
                    out[j] = 1;
                    kept += 1;
                    if kept == window {
                        break;
                    }
                }
            }
        }
    }
    Tensor::from_vec(keep, (b, heads, l, lk), dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn mask(bias: &[f32], l: usize, past: usize, window: usize) -> Vec<Vec<u8>> {
        let lk = bias.len();
        let t = Tensor::from_vec(bias.to_vec(), (1, 1, lk), &Device::Cpu).unwrap();
        let input = KeepMaskInput {
            bias: &t,
            query_len: l,
            past,
            keep_window_size: window,
            sliding_window: None,
        };
        let m = attention_keep_mask(&input).unwrap();
        m.reshape((l, lk)).unwrap().to_vec2::<u8>().unwrap()
    }

    #[test]
    fn causal_when_the_window_is_not_exceeded() {
        let m = mask(&[1.0, 2.0, 3.0], 3, 0, 3);
        assert_eq!(m, vec![vec![1, 0, 0], vec![1, 1, 0], vec![1, 1, 1]]);
    }

    #[test]
    fn keeps_the_largest_biases_and_prefers_recent_keys_on_ties() {
        // Row 3 sees 4 keys, window 2: biases 5, 1, 5, 5 -> keep the two most recent of the 5s.
        let m = mask(&[5.0, 1.0, 5.0, 5.0], 4, 0, 2);
        assert_eq!(m[3], vec![0, 0, 1, 1]);
        // Row 2 sees keys 0..=2 (5, 1, 5): the two 5s.
        assert_eq!(m[2], vec![1, 0, 1, 0]);
        assert_eq!(m[1], vec![1, 1, 0, 0]);
    }

    #[test]
    fn a_decode_step_keeps_what_the_full_pass_keeps() {
        let bias = [0.3, 0.9, 0.9, 0.1, 0.9, 0.5];
        let full = mask(&bias, 6, 0, 3);
        let step = mask(&bias, 1, 5, 3);
        assert_eq!(full[5], step[0]);
    }
}
