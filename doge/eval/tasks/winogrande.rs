//! Winogrande (allenai/winogrande, config `winogrande_xl`), by partial scoring as lm-eval does it:
//! each option is substituted for the blank in the context, and the part of the sentence after
//! the blank, the same for both options, is what gets scored.
//!
//! ```text
//! sentence  = "{prefix}_{suffix}"
//! context i: "{prefix}{option_i}"
//! choices:   " {suffix.strip()}"      (the same continuation for both)
//! gold:      answer - 1               ("1" or "2")
//! ```
//!
//! lighteval's `winogrande` prompt (the seed's `leaderboard|winogrande`) instead scores
//! "{option} {suffix}" after the prefix, which also charges the option's own tokens; partial
//! scoring is the formulation of the Winogrande paper and lm-eval. With one shared continuation
//! `acc`, `acc_norm` and `acc_norm_nospace` agree.

use anyhow::{anyhow, Result};

use crate::eval::loader::Row;
use crate::eval::multiple_choice::McDoc;

pub fn doc(row: &Row) -> Result<McDoc> {
    let sentence = row.str("sentence")?;
    let blank = sentence
        .find('_')
        .ok_or_else(|| anyhow!("{}: `sentence` has no `_` blank", row.at))?;
    let (prefix, suffix) = (&sentence[..blank], sentence[blank + 1..].trim());
    let options = [row.str("option1")?, row.str("option2")?];
    let gold = match row.index("answer")? {
        a @ 1..=2 => a - 1,
        a => anyhow::bail!("{}: answer must be 1 or 2, found {a}", row.at),
    };
    Ok(McDoc {
        at: row.at.clone(),
        instruction: String::new(),
        contexts: options.iter().map(|o| format!("{prefix}{o}")).collect(),
        choices: vec![format!(" {suffix}"); 2],
        answers: vec![suffix.to_string(); 2],
        gold,
        group: None,
    })
}
