//! Training a byte-level BPE the way the seed's `train_tokenizer_from_old` does
//! (`train_new_from_iterator` on the Doge tokenizer): Doge's pre-tokenizer, post-processor and
//! decoder, its 256 special tokens at ids 0..256, the 256 byte symbols, then merges up to the
//! requested vocabulary size.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokenizers::models::bpe::BpeTrainerBuilder;
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use super::special::{doge_special_tokens, BOS, DOGE_CHAT_TEMPLATE, EOS, PAD};
use super::DogeTokenizer;

/// Llama-3's split pattern, as in the Doge tokenizer.json.
const SPLIT_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub vocab_size: usize,
    /// Pairs seen fewer times are not merged (the seed: 0).
    pub min_frequency: u64,
}

/// The smallest vocabulary that holds the special tokens and the 256 byte symbols.
pub fn min_vocab_size() -> usize {
    doge_special_tokens().len() + 256
}

/// The Doge tokenizer.json with an empty BPE model: everything but the vocabulary and merges.
fn skeleton() -> Value {
    let added: Vec<Value> = doge_special_tokens()
        .iter()
        .enumerate()
        .map(|(id, t)| {
            json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {BOS: {"id": BOS, "ids": [0], "tokens": [BOS]}}}
        ]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": true,
                  "vocab": {}, "merges": []}
    })
}

/// tokenizer_config.json as transformers writes it for the Doge tokenizer.
fn config_json() -> Value {
    let decoder: serde_json::Map<String, Value> = doge_special_tokens()
        .iter()
        .enumerate()
        .map(|(id, t)| {
            let v = json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true});
            (id.to_string(), v)
        })
        .collect();
    json!({
        "added_tokens_decoder": decoder,
        "bos_token": BOS,
        "chat_template": DOGE_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": true,
        "eos_token": EOS,
        "extra_special_tokens": {},
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "pad_token": PAD,
        "padding_side": "left",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": null
    })
}

/// Trains on `texts` and saves tokenizer.json, tokenizer_config.json and
/// special_tokens_map.json into `out_dir` (created), then loads the result back.
pub fn train_bpe<I, S>(texts: I, opts: &TrainOptions, out_dir: &Path) -> Result<DogeTokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let min = min_vocab_size();
    if opts.vocab_size < min {
        bail!(
            "vocab size {} is smaller than the {} special tokens plus 256 byte symbols; use at least {min} (the model's `vocab` sets it)",
            opts.vocab_size,
            doge_special_tokens().len()
        );
    }
    let mut tok = tokenizers::Tokenizer::from_bytes(skeleton().to_string())
        .map_err(|e| anyhow!("building the tokenizer skeleton: {e}"))?;
    let specials: Vec<AddedToken> = doge_special_tokens()
        .into_iter()
        .map(|t| AddedToken::from(t, true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(opts.vocab_size)
        .min_frequency(opts.min_frequency)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tok.train(&mut trainer, texts)
        .map_err(|e| anyhow!("training the BPE: {e}"))?;

    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // Through JSON once, so the saved file is exactly what loads (and the BPE cache is fresh).
    let json = tok
        .to_string(false)
        .map_err(|e| anyhow!("serialising the tokenizer: {e}"))?;
    write(out_dir, "tokenizer.json", &json)?;
    write(
        out_dir,
        "tokenizer_config.json",
        &serde_json::to_string_pretty(&config_json())?,
    )?;
    let map = json!({
        "bos_token": {"content": BOS, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
        "eos_token": {"content": EOS, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
        "pad_token": {"content": PAD, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false}
    });
    write(
        out_dir,
        "special_tokens_map.json",
        &serde_json::to_string_pretty(&map)?,
    )?;
    DogeTokenizer::load(out_dir)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
}
