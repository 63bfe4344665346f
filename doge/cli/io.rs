//! Shared pieces of the model commands: device and dtype flags, loading, tokenizers, JSONL.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use clap::Args;
use serde_json::Value;

use crate::checkpoint::{parse_dtype, Checkpoint};
use crate::model::DogeForCausalLM;

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model directory (config.json + model.safetensors), as written by doge or transformers, or a
    /// hub id (`SmallDoge/Doge-20M`, `owner/name@revision`), downloaded into the hub cache.
    #[arg(long)]
    pub model: PathBuf,
    /// `cpu` or `cuda[:N]` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype: f32 (default) or bf16/f16 (weights are converted on load).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        _ if s.starts_with("cuda") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .with_context(|| format!("--device {s}: expected cuda:N"))?,
                None => 0,
            };
            if !candle_core::utils::cuda_is_available() {
                bail!("--device {s}: this doge was built without CUDA; rebuild with `cargo build --release --features cuda`");
            }
            Ok(Device::new_cuda(ordinal)?)
        }
        _ => bail!("--device {s}: expected `cpu` or `cuda:N`"),
    }
}

impl ModelArgs {
    /// Turns a hub id in `--model` into the cached snapshot directory (downloading it, unless
    /// `HF_HUB_OFFLINE`); a local directory stays as it is.
    pub fn resolve(&mut self) -> Result<()> {
        self.model =
            crate::data::hub::model_dir(&self.model, &crate::data::hub::HubOptions::from_env())?;
        Ok(())
    }

    pub fn dtype(&self) -> Result<DType> {
        parse_dtype(&self.dtype)
            .ok_or_else(|| anyhow!("--dtype {}: expected f32, bf16 or f16", self.dtype))
    }

    pub fn load(&self) -> Result<DogeForCausalLM> {
        let dev = parse_device(&self.device)?;
        let ckpt = Checkpoint::load(&self.model, self.dtype()?, &dev)?;
        Ok(ckpt.model()?)
    }

    /// The model directory's tokenizer, if it has one.
    pub fn tokenizer(&self) -> Result<Option<tokenizers::Tokenizer>> {
        load_tokenizer(&self.model)
    }
}

pub fn load_tokenizer(dir: &Path) -> Result<Option<tokenizers::Tokenizer>> {
    let path = dir.join("tokenizer.json");
    if !path.exists() {
        return Ok(None);
    }
    tokenizers::Tokenizer::from_file(&path)
        .map(Some)
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// One JSONL record's tokens: `input_ids`, or `text` encoded with the model's tokenizer (special tokens
/// added, as transformers' tokenizer call does by default).
pub fn record_ids(
    record: &Value,
    tokenizer: Option<&tokenizers::Tokenizer>,
    vocab: usize,
    where_: &str,
) -> Result<Vec<u32>> {
    let ids: Vec<u32> = if let Some(arr) = record.get("input_ids") {
        let arr = arr
            .as_array()
            .ok_or_else(|| anyhow!("{where_}: `input_ids` must be a list of integers"))?;
        arr.iter()
            .map(|x| {
                x.as_u64()
                    .map(|v| v as u32)
                    .ok_or_else(|| anyhow!("{where_}: `input_ids` holds {x}, not a token id"))
            })
            .collect::<Result<_>>()?
    } else if let Some(text) = record.get("text").and_then(Value::as_str) {
        let tok = tokenizer.ok_or_else(|| {
            anyhow!("{where_}: a `text` record needs tokenizer.json in the model directory; pass `input_ids` instead")
        })?;
        tok.encode(text, true)
            .map_err(|e| anyhow!("{where_}: {e}"))?
            .get_ids()
            .to_vec()
    } else {
        bail!("{where_}: each line needs `input_ids` (a list of token ids) or `text`");
    };
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        bail!("{where_}: token id {bad} is outside the model's vocabulary of {vocab}");
    }
    Ok(ids)
}

/// Reads a JSONL file (or `-` for stdin) into (line number, object) pairs, skipping blank lines.
pub fn read_jsonl(path: &Path) -> Result<Vec<(usize, Value)>> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
        if !v.is_object() {
            bail!(
                "{}:{}: expected a JSON object per line",
                path.display(),
                i + 1
            );
        }
        out.push((i + 1, v));
    }
    Ok(out)
}

/// Where JSONL results go: a file (written whole, then renamed into place) or stdout.
pub fn write_jsonl(path: Option<&Path>, records: &[Value]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    match path {
        Some(p) => crate::checkpoint::write_atomically(p, |tmp| std::fs::write(tmp, &text))?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(())
}
