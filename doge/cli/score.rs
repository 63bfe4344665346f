//! `doge score`: mean next-token NLL of each JSONL record.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::io::{read_jsonl, record_ids, write_jsonl, ModelArgs};
use crate::score::score_sequences;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL with `{"input_ids": [...]}` or `{"text": "..."}` per line (`-` for stdin).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the records with `nll` and `tokens` added (default stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Sequences per forward pass; results do not depend on it.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

pub fn run(args: &ScoreArgs) -> Result<()> {
    let model = args.model.load()?;
    let tokenizer = args.model.tokenizer()?;
    let records = read_jsonl(&args.input)?;
    let vocab = model.config().vocab_size;
    let seqs = records
        .iter()
        .map(|(line, r)| {
            record_ids(
                r,
                tokenizer.as_ref(),
                vocab,
                &format!("{}:{line}", args.input.display()),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    for ((line, _), s) in records.iter().zip(&seqs) {
        if s.len() < 2 {
            anyhow::bail!(
                "{}:{line}: a sequence needs at least two tokens to be scored",
                args.input.display()
            );
        }
    }
    let scores = score_sequences(&model, &seqs, args.batch_size)?;
    let out: Vec<_> = records
        .into_iter()
        .zip(scores)
        .map(|((_, mut r), s)| {
            r["nll"] = json!(s.nll());
            r["tokens"] = json!(s.token_logprobs.len());
            r
        })
        .collect();
    write_jsonl(args.output.as_deref(), &out)
}
