//! `doge chat`: a conversation with a model through its tokenizer's chat template. Each user line
//! is added to the conversation, the whole conversation is rendered with the generation prompt,
//! and the reply streams to stdout as it is sampled; the reply (as text) joins the conversation.
//!
//! Reads stdin line by line, so it works from a terminal or a pipe. `/reset` forgets the
//! conversation (the system message stays), `/exit` or end of input quits.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use super::generate::SamplingArgs;
use super::io::ModelArgs;
use crate::data::DogeTokenizer;
use crate::generate::generate;

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A system message placed before the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Print each rendered prompt to stderr (what the model is given).
    #[arg(long)]
    pub show_prompt: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// A conversation: the system message (if any) and the turns so far.
struct Conversation {
    system: Option<String>,
    turns: Vec<Value>,
}

impl Conversation {
    fn messages(&self) -> Vec<Value> {
        let mut m: Vec<Value> = self
            .system
            .iter()
            .map(|s| json!({"role": "system", "content": s}))
            .collect();
        m.extend(self.turns.iter().cloned());
        m
    }
}

pub fn run(args: &ChatArgs) -> Result<()> {
    let dir = &args.model.model;
    let tok = DogeTokenizer::load(dir).with_context(|| {
        format!(
            "{}: `doge chat` needs the model's tokenizer (tokenizer.json + tokenizer_config.json with a chat_template)",
            dir.display()
        )
    })?;
    if !tok.has_chat_template() {
        anyhow::bail!(
            "{}: tokenizer_config.json has no chat_template; `doge generate --prompt` works without one",
            dir.display()
        );
    }
    let model = args.model.load()?;
    let eos = model.config().eos_token_id.or(Some(tok.eos_id));
    let mut settings = args.sampling.settings(eos)?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "chatting with {} (/reset to start over, /exit or Ctrl-D to quit)",
            dir.display()
        );
    }
    let mut conv = Conversation {
        system: args.system.clone(),
        turns: Vec::new(),
    };
    let mut stdout = std::io::stdout();
    let mut lines = std::io::stdin().lock().lines();
    let mut turn = 0u64;
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush().ok();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                conv.turns.clear();
                eprintln!("(conversation reset)");
                continue;
            }
            _ => {}
        }
        conv.turns.push(json!({"role": "user", "content": text}));
        let prompt_text = tok.apply_chat_template(&conv.messages(), true)?;
        if args.show_prompt {
            eprintln!("--- prompt ---\n{prompt_text}\n--- end prompt ---");
        }
        let ids = tok.encode(&prompt_text, false)?;
        // Each reply samples with its own seed, so that a reset conversation is not replayed.
        if let Some(s) = settings.sampling.as_mut() {
            s.seed = args.sampling.seed.wrapping_add(turn);
        }
        turn += 1;
        let reply = stream_reply(&model, &tok, &ids, &settings, &mut stdout)?;
        conv.turns
            .push(json!({"role": "assistant", "content": reply.trim()}));
    }
    Ok(())
}

/// Generates and prints the reply as it comes (decoding the whole reply each step and printing
/// what is new: a token may end mid-character). Returns the reply without special tokens.
fn stream_reply(
    model: &crate::model::DogeForCausalLM,
    tok: &DogeTokenizer,
    prompt: &[u32],
    settings: &crate::generate::GenerationSettings,
    out: &mut impl Write,
) -> Result<String> {
    let mut reply: Vec<u32> = Vec::new();
    let mut printed = 0;
    generate(model, prompt, settings, |t| {
        reply.push(t);
        let text = tok.decode(&reply, true).map_err(candle_core::Error::msg)?;
        if text.len() > printed && text.is_char_boundary(printed) && !text.ends_with('\u{FFFD}') {
            write!(out, "{}", &text[printed..]).map_err(candle_core::Error::msg)?;
            out.flush().map_err(candle_core::Error::msg)?;
            printed = text.len();
        }
        Ok(())
    })
    .map_err(|e| anyhow!("generating: {e}"))?;
    writeln!(out)?;
    out.flush()?;
    tok.decode(&reply, true)
}
