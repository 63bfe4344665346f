//! Tokenizers: load a Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json),
//! train a byte-level BPE with the Doge special tokens, and pick one for an experiment.

mod ensure;
mod fast;
mod special;
mod train;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::chat::{ChatTemplate, TemplateTokens};

pub use ensure::{ensure_tokenizer, TokenizerSpec};
pub use special::{doge_special_tokens, BOS, DOGE_CHAT_TEMPLATE, EOS, PAD};
pub use train::{min_vocab_size, train_bpe, TrainOptions};

/// Token ids with each token's byte range in the text.
pub type IdsWithOffsets = (Vec<u32>, Vec<(usize, usize)>);

/// A loaded tokenizer with its special tokens and chat template.
pub struct DogeTokenizer {
    pub inner: tokenizers::Tokenizer,
    /// The direct byte-level BPE path, when the tokenizer has its shape (see fast.rs).
    fast: Option<fast::FastEncoder>,
    pub bos_token: String,
    pub eos_token: String,
    pub pad_token: Option<String>,
    pub bos_id: u32,
    pub eos_id: u32,
    pub pad_id: Option<u32>,
    /// Folder it was loaded from.
    pub dir: PathBuf,
    /// sha256 of tokenizer.json and tokenizer_config.json: names data prepared with it.
    pub fingerprint: String,
    template: Option<ChatTemplate>,
}

impl std::fmt::Debug for DogeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DogeTokenizer")
            .field("dir", &self.dir)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos_id)
            .field("eos", &self.eos_id)
            .field("pad", &self.pad_id)
            .finish()
    }
}

impl DogeTokenizer {
    /// Loads a folder holding `tokenizer.json` (and usually `tokenizer_config.json`), or a
    /// `tokenizer.json` path whose folder holds the config.
    pub fn load(path: &Path) -> Result<Self> {
        let (dir, json_path) = if path.is_dir() {
            (path.to_path_buf(), path.join("tokenizer.json"))
        } else {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                path.to_path_buf(),
            )
        };
        let json_bytes = std::fs::read(&json_path).with_context(|| {
            format!("{}: cannot read the tokenizer; give a folder with tokenizer.json, a tokenizer.json path, or a hub id", json_path.display())
        })?;
        let inner = tokenizers::Tokenizer::from_bytes(&json_bytes)
            .map_err(|e| anyhow!("{}: not a valid tokenizer.json: {e}", json_path.display()))?;
        let config_path = dir.join("tokenizer_config.json");
        let config_bytes = match std::fs::read(&config_path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| format!("{}: cannot read", config_path.display()))
            }
        };
        let config: Value = match &config_bytes {
            Some(b) => serde_json::from_slice(b)
                .with_context(|| format!("{}: not valid JSON", config_path.display()))?,
            None => Value::Null,
        };
        let mut h = Sha256::new();
        h.update(&json_bytes);
        h.update(config_bytes.as_deref().unwrap_or_default());
        Self::from_parts(inner, &config, dir, format!("{:x}", h.finalize()))
            .with_context(|| format!("tokenizer {}", json_path.display()))
    }

    /// Assembles a tokenizer from its model and the (possibly empty) tokenizer_config.json.
    /// Special tokens absent from the config default to the Doge names.
    fn from_parts(
        inner: tokenizers::Tokenizer,
        config: &Value,
        dir: PathBuf,
        fingerprint: String,
    ) -> Result<Self> {
        let token = |key: &str| -> Option<String> {
            match config.get(key) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => {
                    o.get("content").and_then(Value::as_str).map(str::to_string)
                }
                _ => None,
            }
        };
        let id_of = |t: &str, key: &str| {
            inner.token_to_id(t).ok_or_else(|| {
                anyhow!("{key} `{t}` from tokenizer_config.json is not in the vocabulary")
            })
        };
        let bos_token = token("bos_token").unwrap_or_else(|| BOS.to_string());
        let eos_token = token("eos_token").unwrap_or_else(|| EOS.to_string());
        let pad_token =
            token("pad_token").or_else(|| inner.token_to_id(PAD).map(|_| PAD.to_string()));
        let bos_id = id_of(&bos_token, "bos_token")?;
        let eos_id = id_of(&eos_token, "eos_token")?;
        let pad_id = pad_token
            .as_deref()
            .map(|t| id_of(t, "pad_token"))
            .transpose()?;
        let template = match config.get("chat_template") {
            Some(Value::String(s)) => Some(ChatTemplate::new(s)?),
            // A list of named templates: the `default` one.
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(ChatTemplate::new)
                .transpose()?,
            _ => None,
        };
        let fast = fast::FastEncoder::new(&inner);
        Ok(DogeTokenizer {
            fast,
            inner,
            bos_token,
            eos_token,
            pad_token,
            bos_id,
            eos_id,
            pad_id,
            dir,
            fingerprint,
            template,
        })
    }

    /// Ids including added tokens; the largest id is `vocab_size() - 1`.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`; with `add_special_tokens` the post-processor's tokens too (Doge: a
    /// leading `<|begin_of_text|>`), like transformers' `encode`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        if let Some(ids) = self
            .fast
            .as_ref()
            .and_then(|f| f.encode(&self.inner, text, add_special_tokens))
        {
            return Ok(ids);
        }
        self.encode_full(text, add_special_tokens)
    }

    /// Whether [`DogeTokenizer::encode`] can take the direct byte-level BPE path (fast.rs).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// [`DogeTokenizer::encode`] always through `tokenizers`' own pipeline.
    pub fn encode_full(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids and each token's byte range in `text` (for assistant masks).
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<IdsWithOffsets> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| anyhow!("decoding: {e}"))
    }

    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    fn template(&self) -> Result<&ChatTemplate> {
        match &self.template {
            Some(t) => Ok(t),
            None => bail!(
                "tokenizer {} has no chat_template in tokenizer_config.json; chats need one (a trained tokenizer gets Doge's)",
                self.dir.display()
            ),
        }
    }

    fn template_tokens(&self) -> TemplateTokens {
        TemplateTokens {
            bos: self.bos_token.clone(),
            eos: self.eos_token.clone(),
            pad: self.pad_token.clone(),
        }
    }

    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn apply_chat_template(
        &self,
        messages: &[Value],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.template()?
            .render(messages, add_generation_prompt, &self.template_tokens())
    }

    /// `apply_chat_template(messages, tokenize=True, ...)`: the rendered text already holds its
    /// special tokens, so none are added.
    pub fn encode_chat(&self, messages: &[Value], add_generation_prompt: bool) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        self.encode(&text, false)
    }

    /// A chat's ids and, per token, 1 where it belongs to an assistant turn (its content and the
    /// end-of-turn tokens the template writes after it), else 0.
    pub fn encode_chat_with_mask(&self, messages: &[Value]) -> Result<(Vec<u32>, Vec<u8>)> {
        let (text, spans) = self
            .template()?
            .render_with_spans(messages, &self.template_tokens())?;
        let (ids, offsets) = self.encode_with_offsets(&text, false)?;
        let mask = offsets
            .iter()
            .map(|&(start, end)| {
                u8::from(
                    spans
                        .iter()
                        .any(|s| start >= s.start && start < s.end && end > start),
                )
            })
            .collect();
        Ok((ids, mask))
    }
}
