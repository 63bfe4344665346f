//! What a training stage reads: fixed-length token rows (`seq_len + 1` tokens: the inputs and,
//! shifted by one, the labels), already shuffled, addressed by index so that a resumed run
//! continues from the exact row it stopped at.

use anyhow::Result;

pub trait TokenRows {
    /// Tokens per row (inputs and labels overlap: a row predicts `len - 1` tokens).
    fn row_len(&self) -> usize;
    fn num_train_rows(&self) -> usize;
    fn train_row(&self, i: usize) -> Result<Vec<u32>>;
    fn num_test_rows(&self) -> usize;
    fn test_row(&self, i: usize) -> Result<Vec<u32>>;
    /// Real tokens of a row; the rest is padding that carries no loss (unpacked data).
    fn train_len(&self, i: usize) -> usize {
        let _ = i;
        self.row_len()
    }
    fn test_len(&self, i: usize) -> usize {
        let _ = i;
        self.row_len()
    }
    /// SFT: 1 for each token of the row that carries loss (the assistant's), else 0; `None` when
    /// every real token does (pre-training).
    fn train_mask(&self, i: usize) -> Option<Vec<u8>> {
        let _ = i;
        None
    }
    fn test_mask(&self, i: usize) -> Option<Vec<u8>> {
        let _ = i;
        None
    }
    /// Rows that pack several documents each starting with this token (SFT's packed
    /// conversations, each `<bos> ...`): attention is then kept inside each document. `None` when
    /// rows hold one document, or (pre-training) when attention may cross documents.
    fn document_separator(&self) -> Option<u32> {
        None
    }
}

/// Rows held in memory (tests, and small pre-tokenized inputs).
#[derive(Debug, Clone)]
pub struct MemoryRows {
    pub train: Vec<Vec<u32>>,
    pub test: Vec<Vec<u32>>,
}

impl TokenRows for MemoryRows {
    fn row_len(&self) -> usize {
        self.train.first().map(Vec::len).unwrap_or(0)
    }
    fn num_train_rows(&self) -> usize {
        self.train.len()
    }
    fn train_row(&self, i: usize) -> Result<Vec<u32>> {
        Ok(self.train[i].clone())
    }
    fn num_test_rows(&self) -> usize {
        self.test.len()
    }
    fn test_row(&self, i: usize) -> Result<Vec<u32>> {
        Ok(self.test[i].clone())
    }
}
