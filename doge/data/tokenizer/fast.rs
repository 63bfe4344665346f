//! A direct encoder for the byte-level BPE tokenizers doge reads and trains (Doge's own, and
//! GPT-2/Llama-3-style ones): split with the pre-tokenizer's regex, map each piece's bytes to the
//! byte-level alphabet, and hand it to the tokenizer's own BPE model (its merges, vocabulary and
//! per-thread cache). The ids are the ones `tokenizers` computes; what is skipped is its
//! per-byte alignment bookkeeping (`NormalizedString`), which `doge data prepare` never reads and
//! which, with the allocations it makes, was most of the time of tokenizing.
//!
//! Used only when the tokenizer has exactly this shape (no normalizer; `Split(regex, Isolated)`
//! then `ByteLevel` without prefix space or its own regex; a plain BPE) and the text holds no
//! added token (their common prefix, `<|` for Doge, does not occur); otherwise the caller takes
//! the full `tokenizers` path.

use serde_json::Value;
use tokenizers::Model;

/// GPT-2's `bytes_to_unicode`: printable bytes stand for themselves, the others for 256 + n.
fn byte_alphabet() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        map[b as usize] = if printable {
            char::from_u32(b).expect("a Latin-1 char")
        } else {
            n += 1;
            char::from_u32(255 + n).expect("a BMP char")
        };
    }
    map
}

pub struct FastEncoder {
    split: onig::Regex,
    alphabet: [char; 256],
    /// The common prefix of every added token's text: a text without it holds none.
    added_prefix: String,
    /// What the post-processor puts around a single sequence.
    prefix: Vec<u32>,
    suffix: Vec<u32>,
}

impl FastEncoder {
    /// The encoder for `tok`, when it has the supported shape.
    pub fn new(tok: &tokenizers::Tokenizer) -> Option<FastEncoder> {
        let json: Value = serde_json::from_str(&tok.to_string(false).ok()?).ok()?;
        if !json["normalizer"].is_null() {
            return None;
        }
        let pre = &json["pre_tokenizer"];
        let steps = pre["pretokenizers"].as_array()?;
        let (split, bytes) = match (pre["type"].as_str()?, steps.as_slice()) {
            ("Sequence", [split, bytes]) => (split, bytes),
            _ => return None,
        };
        let pattern = split["pattern"]["Regex"].as_str()?;
        let split_ok =
            split["type"] == "Split" && split["behavior"] == "Isolated" && split["invert"] == false;
        let bytes_ok = bytes["type"] == "ByteLevel"
            && bytes["add_prefix_space"] == false
            && bytes["use_regex"] == false;
        let m = &json["model"];
        let model_ok = m["type"] == "BPE"
            && m["dropout"].is_null()
            && m["byte_fallback"] != true
            && m["continuing_subword_prefix"].is_null()
            && m["end_of_word_suffix"].is_null();
        if !(split_ok && bytes_ok && model_ok) {
            return None;
        }
        let added: Vec<&str> = json["added_tokens"]
            .as_array()?
            .iter()
            .filter_map(|t| t["content"].as_str())
            .collect();
        let added_prefix = match added.split_first() {
            None => String::new(),
            Some((first, rest)) => {
                let mut p = first.to_string();
                for t in rest {
                    while !t.starts_with(p.as_str()) {
                        p.pop();
                    }
                }
                if p.is_empty() {
                    return None;
                }
                p
            }
        };
        let split = onig::Regex::new(pattern).ok()?;
        // The post-processor's additions, from a probe encoded both ways.
        let plain = tok.encode_fast("x", false).ok()?.get_ids().to_vec();
        let with = tok.encode_fast("x", true).ok()?.get_ids().to_vec();
        let at = (0..=with.len().checked_sub(plain.len())?)
            .find(|&i| with[i..i + plain.len()] == plain[..])?;
        let enc = FastEncoder {
            split,
            alphabet: byte_alphabet(),
            prefix: with[..at].to_vec(),
            suffix: with[at + plain.len()..].to_vec(),
            added_prefix,
        };
        // The probe must come out the same both ways, or this tokenizer is not what it seems.
        let probe = "It's 2024: naïve café\n\n  x=3.14159;\t— 東京 ok.  ";
        for special in [false, true] {
            let full = tok.encode_fast(probe, special).ok()?.get_ids().to_vec();
            if enc.encode(tok, probe, special)? != full {
                return None;
            }
        }
        Some(enc)
    }

    /// The ids of `text`, or `None` when it must take the full path (it holds an added token,
    /// or the model failed).
    pub fn encode(
        &self,
        tok: &tokenizers::Tokenizer,
        text: &str,
        add_special_tokens: bool,
    ) -> Option<Vec<u32>> {
        if !self.added_prefix.is_empty() && text.contains(self.added_prefix.as_str()) {
            return None;
        }
        let model = tok.get_model();
        let mut ids = Vec::with_capacity(text.len() / 3 + 4);
        if add_special_tokens {
            ids.extend_from_slice(&self.prefix);
        }
        let mut word = String::new();
        let mut piece = |s: &str, ids: &mut Vec<u32>| -> Option<()> {
            word.clear();
            word.extend(s.bytes().map(|b| self.alphabet[b as usize]));
            ids.extend(model.tokenize(&word).ok()?.iter().map(|t| t.id));
            Some(())
        };
        let mut last = 0;
        for (start, end) in self.split.find_iter(text) {
            if start > last {
                piece(&text[last..start], &mut ids)?;
            }
            if end > start {
                piece(&text[start..end], &mut ids)?;
            }
            last = end;
        }
        if last < text.len() {
            piece(&text[last..], &mut ids)?;
        }
        if add_special_tokens {
            ids.extend_from_slice(&self.suffix);
        }
        Some(ids)
    }
}
