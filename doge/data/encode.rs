//! One document's tokens: what a pretraining text, an SFT chat or a DPO pair becomes.

use anyhow::{anyhow, Result};

use super::config::Kind;
use super::docs::Doc;
use super::tokenizer::DogeTokenizer;

/// One document's tokens: for SFT with its assistant mask, for DPO with the ends of the prompt
/// and of the chosen answer (`ids` = prompt + chosen + rejected).
pub struct Encoded {
    pub ids: Vec<u32>,
    pub mask: Vec<u8>,
    pub cuts: [usize; 2],
}

/// Tokens of one document for `kind`.
pub fn encode_doc(doc: &Doc, tok: &DogeTokenizer, kind: Kind) -> Result<Encoded> {
    let eos = tok.eos_id;
    let close = |ids: &mut Vec<u32>, mask: &mut Vec<u8>, with_mask: bool| {
        if ids.last() != Some(&eos) {
            ids.push(eos);
            if with_mask {
                mask.push(0);
            }
        }
    };
    match (kind, doc) {
        (Kind::Pretrain, Doc::Text(t)) => {
            let mut ids = tok.encode(t, true)?;
            close(&mut ids, &mut Vec::new(), false);
            Ok(Encoded {
                ids,
                mask: Vec::new(),
                cuts: [0; 2],
            })
        }
        (Kind::Pretrain, Doc::Chat(m)) => {
            let mut ids = tok.encode_chat(m, false)?;
            close(&mut ids, &mut Vec::new(), false);
            Ok(Encoded {
                ids,
                mask: Vec::new(),
                cuts: [0; 2],
            })
        }
        (Kind::Sft, Doc::Chat(m)) => {
            let (mut ids, mut mask) = tok.encode_chat_with_mask(m)?;
            close(&mut ids, &mut mask, true);
            Ok(Encoded {
                ids,
                mask,
                cuts: [0; 2],
            })
        }
        (
            Kind::Dpo,
            Doc::Pair {
                prompt,
                chosen,
                rejected,
            },
        ) => {
            // TRL: the prompt through the chat template with the generation prompt; answers
            // tokenized plain, each followed by eos.
            let mut ids = tok.encode_chat(prompt, true)?;
            let p = ids.len();
            ids.extend(tok.encode(chosen, false)?);
            ids.push(eos);
            let c = ids.len();
            ids.extend(tok.encode(rejected, false)?);
            ids.push(eos);
            Ok(Encoded {
                ids,
                mask: Vec::new(),
                cuts: [p, c],
            })
        }
        (k, _) => Err(anyhow!("this row does not fit {} data", k.as_str())),
    }
}
