//! Which keys each query row of Dynamic Mask Attention keeps (spec 2.4 step 5).
//!
//! A row keeps the causally visible keys (within the sliding window if one is set); when it sees more
//! than `keep_window_size` of them it keeps only the `keep_window_size` with the largest dynamic bias.
//! Among equal biases the more recent key wins, so a cached decode step and a full re-forward keep the
//! same keys (transformers leaves that to its top-k kernel). The selection is not differentiable and
//! is computed on the host from the detached bias.
//!
//! Rows that pack several documents (SFT's packed conversations) can keep each query inside its own
//! document: [`Documents`] gives every position the first position of its document, and a query
//! sees only keys from there on. With rotary positions, whose scores depend only on the distance
//! between query and key, a document then scores exactly as it would alone in a row.

use candle_core::{DType, Result, Tensor};

pub struct KeepMaskInput<'a> {
    /// [B, heads, Lk] dynamic bias of every key.
    pub bias: &'a Tensor,
    pub query_len: usize,
    /// Cached positions before the first query.
    pub past: usize,
    pub keep_window_size: usize,
    pub sliding_window: Option<usize>,
    /// Packed rows: where each query's document starts, [B, L] (no cache: `past` is 0).
    pub documents: Option<&'a Documents>,
}

/// The documents of packed rows: for every position of a [B, L] batch, the first position of the
/// document it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documents {
    len: usize,
    starts: Vec<usize>,
}

impl Documents {
    /// Documents of the rows of `ids` ([B × L] row-major, rows of `len`) that begin at every
    /// `separator` token (the `<bos>` each packed conversation starts with) and at each row's start.
    pub fn starting_at(ids: &[u32], len: usize, separator: u32) -> Self {
        let mut starts = Vec::with_capacity(ids.len());
        for row in ids.chunks(len.max(1)) {
            let mut start = 0;
            for (i, &t) in row.iter().enumerate() {
                if t == separator {
                    start = i;
                }
                starts.push(start);
            }
        }
        Documents { len, starts }
    }

    /// First position of the document of position `i` in row `b`.
    pub fn start(&self, b: usize, i: usize) -> usize {
        self.starts[b * self.len + i]
    }

    /// Positions per row.
    pub fn row_len(&self) -> usize {
        self.len
    }
}

/// First visible key of the query at absolute position `pos`.
fn first_visible(pos: usize, sliding_window: Option<usize>) -> usize {
    match sliding_window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    }
}

/// A u8 mask (1 = keep): [1, 1, L, Lk] when no row needs the top-k (or [B, 1, L, Lk] with
/// documents), else [B, heads, L, Lk].
pub fn attention_keep_mask(input: &KeepMaskInput) -> Result<Tensor> {
    let (b, heads, lk) = input.bias.dims3()?;
    let (l, past, window) = (input.query_len, input.past, input.keep_window_size);
    let dev = input.bias.device();
    if let Some(docs) = input.documents {
        if past != 0 || docs.row_len() != l || docs.starts.len() != b * l {
            candle_core::bail!(
                "document starts cover [{}, {}] positions, the batch is [{b}, {l}] after {past} cached",
                docs.starts.len() / docs.row_len().max(1),
                docs.row_len()
            );
        }
    }
    // Keys the query at row position i of batch row bi sees before the top-k.
    let visible = |bi: usize, i: usize| {
        let pos = past + i;
        let doc_start = input.documents.map_or(0, |d| d.start(bi, i));
        first_visible(pos, input.sliding_window).max(doc_start)..=pos
    };
    let mask_rows = if input.documents.is_some() { b } else { 1 };
    let needs_top_k = (0..mask_rows).any(|bi| (0..l).any(|i| visible(bi, i).count() > window));
    if !needs_top_k {
        let mut keep = vec![0u8; mask_rows * l * lk];
        for bi in 0..mask_rows {
            for i in 0..l {
                for j in visible(bi, i) {
                    keep[(bi * l + i) * lk + j] = 1;
                }
            }
        }
        return Tensor::from_vec(keep, (mask_rows, 1, l, lk), dev);
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
            let range = visible(bh / heads, i);
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
            documents: None,
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
    fn documents_keep_queries_inside_their_own_document() {
        // Row of 5: a document at 0..2, the next from position 2 (its separator); window 2.
        let docs = Documents::starting_at(&[9, 4, 9, 5, 6], 5, 9);
        let t = Tensor::from_vec(vec![1f32, 2.0, 3.0, 0.5, 4.0], (1, 1, 5), &Device::Cpu).unwrap();
        let input = KeepMaskInput {
            bias: &t,
            query_len: 5,
            past: 0,
            keep_window_size: 2,
            sliding_window: None,
            documents: Some(&docs),
        };
        let m = attention_keep_mask(&input).unwrap();
        let m = m.reshape((5, 5)).unwrap().to_vec2::<u8>().unwrap();
        assert_eq!(m[1], vec![1, 1, 0, 0, 0]);
        assert_eq!(m[2], vec![0, 0, 1, 0, 0], "a new document sees only itself");
        assert_eq!(m[3], vec![0, 0, 1, 1, 0]);
        // Three keys visible, window 2: the larger biases 3.0 (key 2) and 4.0 (key 4).
        assert_eq!(m[4], vec![0, 0, 1, 0, 1]);
    }

    #[test]
    fn a_decode_step_keeps_what_the_full_pass_keeps() {
        let bias = [0.3, 0.9, 0.9, 0.1, 0.9, 0.5];
        let full = mask(&bias, 6, 0, 3);
        let step = mask(&bias, 1, 5, 3);
        assert_eq!(full[5], step[0]);
    }
}
