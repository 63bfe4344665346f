//! Cutting token streams into training rows.
//!
//! Packed: documents (each ending in eos) are concatenated and cut into rows of `row_len`
//! tokens (`seq_len + 1`: inputs plus the next-token labels), TRL's "wrapped" packing; the
//! tail that does not fill a row is dropped. Unpacked: one document per row, truncated to
//! `row_len` and right-padded with the pad id (the true length is kept beside).

/// Packs documents into fixed rows; a mask (SFT) travels with the tokens when given.
pub struct Packer {
    row_len: usize,
    tokens: Vec<u32>,
    mask: Vec<u8>,
    with_mask: bool,
}

/// One finished row.
pub struct Row {
    pub tokens: Vec<u32>,
    pub mask: Option<Vec<u8>>,
}

impl Packer {
    pub fn new(row_len: usize, with_mask: bool) -> Self {
        Packer {
            row_len,
            tokens: Vec::with_capacity(2 * row_len),
            mask: Vec::new(),
            with_mask,
        }
    }

    /// Adds a document; returns the rows it completed.
    pub fn push(&mut self, tokens: &[u32], mask: Option<&[u8]>) -> Vec<Row> {
        self.tokens.extend_from_slice(tokens);
        if self.with_mask {
            match mask {
                Some(m) => self.mask.extend_from_slice(m),
                None => self.mask.extend(std::iter::repeat_n(0, tokens.len())),
            }
        }
        let mut rows = Vec::new();
        let full = self.tokens.len() / self.row_len * self.row_len;
        if full == 0 {
            return rows;
        }
        let rest = self.tokens.split_off(full);
        let done = std::mem::replace(&mut self.tokens, rest);
        let done_mask = if self.with_mask {
            let rest = self.mask.split_off(full);
            Some(std::mem::replace(&mut self.mask, rest))
        } else {
            None
        };
        for (k, chunk) in done.chunks_exact(self.row_len).enumerate() {
            let mask = done_mask
                .as_ref()
                .map(|m| m[k * self.row_len..(k + 1) * self.row_len].to_vec());
            rows.push(Row {
                tokens: chunk.to_vec(),
                mask,
            });
        }
        rows
    }

    /// Tokens left over that do not fill a row (dropped).
    pub fn leftover(&self) -> usize {
        self.tokens.len()
    }
}

/// One document as a padded row: (tokens, mask, true length).
pub fn pad_row(
    tokens: &[u32],
    mask: Option<&[u8]>,
    row_len: usize,
    pad_id: u32,
) -> (Vec<u32>, Option<Vec<u8>>, usize) {
    let len = tokens.len().min(row_len);
    let mut row = tokens[..len].to_vec();
    row.resize(row_len, pad_id);
    let mask = mask.map(|m| {
        let mut m = m[..len].to_vec();
        m.resize(row_len, 0);
        m
    });
    (row, mask, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_across_documents_and_drops_the_tail() {
        let mut p = Packer::new(4, true);
        assert!(p.push(&[1, 2, 3], Some(&[0, 1, 1])).is_empty());
        let rows = p.push(&[4, 5, 6, 7, 8, 9], None);
        assert_eq!(
            rows.iter().map(|r| r.tokens.clone()).collect::<Vec<_>>(),
            vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]
        );
        assert_eq!(rows[0].mask.as_deref(), Some(&[0, 1, 1, 0][..]));
        assert_eq!(p.leftover(), 1);
    }

    #[test]
    fn pads_and_truncates() {
        assert_eq!(pad_row(&[5, 6], None, 4, 2), (vec![5, 6, 2, 2], None, 2));
        assert_eq!(
            pad_row(&[5, 6, 7, 8, 9], Some(&[1, 1, 1, 1, 1]), 4, 2),
            (vec![5, 6, 7, 8], Some(vec![1, 1, 1, 1]), 4)
        );
    }
}
