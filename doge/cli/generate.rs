//! `doge generate`: KV-cache decoding from a text prompt (streamed) or a JSONL file of prompts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde_json::{json, Value};

use super::io::{read_jsonl, record_ids, write_jsonl, ModelArgs};
use crate::generate::{generate, GenerationSettings, Sampling};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A text prompt (needs tokenizer.json in the model directory); the reply streams to stdout.
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    pub prompt: Option<String>,
    /// JSONL with `input_ids` or `text` per line; writes `output_ids` (and `text` with a tokenizer).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output file for `--input` (default stdout).
    #[arg(long, requires = "input")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Generation settings shared by `generate` and `chat` (defaults: the Instruct model card's).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    #[arg(long, default_value_t = 100)]
    pub max_new_tokens: usize,
    /// Argmax decoding; ignores the sampling flags.
    #[arg(long)]
    pub greedy: bool,
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    #[arg(long, default_value_t = 233)]
    pub seed: u64,
    /// Keep going past the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    pub fn settings(&self, eos: Option<u32>) -> Result<GenerationSettings> {
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            bail!(
                "--temperature {}: must be > 0 (use --greedy for argmax)",
                self.temperature
            );
        }
        if !(0.0..=1.0).contains(&self.top_p) || self.top_p == 0.0 {
            bail!("--top-p {}: must be in (0, 1]", self.top_p);
        }
        if self.repetition_penalty.is_nan() || self.repetition_penalty <= 0.0 {
            bail!(
                "--repetition-penalty {}: must be > 0",
                self.repetition_penalty
            );
        }
        Ok(GenerationSettings {
            max_new_tokens: self.max_new_tokens,
            sampling: (!self.greedy).then(|| Sampling {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: (self.top_p < 1.0).then_some(self.top_p),
                seed: self.seed,
            }),
            repetition_penalty: self.repetition_penalty,
            eos_token_id: if self.ignore_eos { None } else { eos },
        })
    }
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let model = args.model.load()?;
    let tokenizer = args.model.tokenizer()?;
    let settings = args.sampling.settings(model.config().eos_token_id)?;

    if let Some(prompt) = &args.prompt {
        let tok = tokenizer.as_ref().ok_or_else(|| {
            anyhow!(
                "--prompt needs tokenizer.json in {}; use --input with input_ids instead",
                args.model.model.display()
            )
        })?;
        let ids = tok
            .encode(prompt.as_str(), true)
            .map_err(|e| anyhow!("{e}"))?
            .get_ids()
            .to_vec();
        // Decode the whole reply each step and print what is new: a token may end mid-character.
        let mut reply: Vec<u32> = Vec::new();
        let mut printed = 0;
        let mut stdout = std::io::stdout();
        generate(&model, &ids, &settings, |t| {
            reply.push(t);
            let text = tok.decode(&reply, true).map_err(candle_core::Error::msg)?;
            if text.len() > printed && text.is_char_boundary(printed) && !text.ends_with('\u{FFFD}')
            {
                print!("{}", &text[printed..]);
                stdout.flush().ok();
                printed = text.len();
            }
            Ok(())
        })?;
        println!();
        return Ok(());
    }

    let input = args
        .input
        .as_ref()
        .expect("clap requires --prompt or --input");
    let vocab = model.config().vocab_size;
    let mut out: Vec<Value> = Vec::new();
    for (line, mut record) in read_jsonl(input)? {
        let where_ = format!("{}:{line}", input.display());
        let ids = record_ids(&record, tokenizer.as_ref(), vocab, &where_)?;
        let mut s = settings.clone();
        // A record may carry its own budget (as the reference generate.jsonl does).
        if let Some(n) = record.get("max_new_tokens").and_then(Value::as_u64) {
            s.max_new_tokens = n as usize;
        }
        let new = generate(&model, &ids, &s, |_| Ok(()))?;
        if let Some(tok) = &tokenizer {
            record["text"] = json!(tok
                .decode(&new, true)
                .map_err(|e| anyhow!("{where_}: {e}"))?);
        }
        record["output_ids"] = json!(new);
        out.push(record);
    }
    write_jsonl(args.output.as_deref(), &out)
}
