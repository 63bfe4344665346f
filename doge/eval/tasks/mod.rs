//! The benchmarks doge knows: each task's row format, prompt (in its own file), default data
//! location on the hub and in a local data folder, splits and default number of shots.
//!
//! Defaults follow the seed (LoserCheems/Doge `eval_downstream_tasks.sh`: every task 5-shot; spec
//! section 8.1). Evaluation splits are tried in order: the seed's first (ARC and MMLU on `test`),
//! then the splits the official data offers locally.

pub mod arc;
pub mod boolq;
pub mod hellaswag;
pub mod mmlu;
pub mod openbookqa;
pub mod piqa;
pub mod triviaqa;
pub mod winogrande;

use anyhow::Result;

use super::loader::Row;
use super::multiple_choice::McDoc;

/// How a task is scored.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Log-likelihood of each choice; rows become [`McDoc`]s.
    MultipleChoice(fn(&Row) -> Result<McDoc>),
    /// Greedy generation scored by quasi-exact match (TriviaQA).
    Generation(fn(&Row) -> Result<triviaqa::QaDoc>),
    /// Perplexity of a text set; the task needs a source.
    Perplexity,
}

/// One benchmark.
pub struct TaskDef {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    /// Hub dataset id and configuration.
    pub hub: Option<(&'static str, Option<&'static str>)>,
    /// Folder name under `--data-dir`.
    pub folder: &'static str,
    pub eval_splits: &'static [&'static str],
    pub fewshot_splits: &'static [&'static str],
    pub default_shots: usize,
}

const FEWSHOT: &[&str] = &["train", "validation"];

pub const TASKS: &[TaskDef] = &[
    TaskDef {
        name: "hellaswag",
        aliases: &[],
        kind: Kind::MultipleChoice(hellaswag::doc),
        hub: Some(("Rowan/hellaswag", None)),
        folder: "hellaswag",
        eval_splits: &["validation"],
        fewshot_splits: FEWSHOT,
        default_shots: 5,
    },
    TaskDef {
        name: "arc_easy",
        aliases: &["arc:easy", "arc-easy"],
        kind: Kind::MultipleChoice(arc::doc),
        hub: Some(("allenai/ai2_arc", Some("ARC-Easy"))),
        folder: "arc_easy",
        eval_splits: &["test", "validation"],
        fewshot_splits: FEWSHOT,
        default_shots: 5,
    },
    TaskDef {
        name: "arc_challenge",
        aliases: &["arc:challenge", "arc-challenge"],
        kind: Kind::MultipleChoice(arc::doc),
        hub: Some(("allenai/ai2_arc", Some("ARC-Challenge"))),
        folder: "arc_challenge",
        eval_splits: &["test", "validation"],
        fewshot_splits: FEWSHOT,
        default_shots: 5,
    },
    TaskDef {
        name: "piqa",
        aliases: &[],
        kind: Kind::MultipleChoice(piqa::doc),
        hub: Some(("ybisk/piqa", None)),
        folder: "piqa",
        eval_splits: &["validation"],
        fewshot_splits: FEWSHOT,
        default_shots: 5,
    },
    TaskDef {
        name: "boolq",
        aliases: &[],
        kind: Kind::MultipleChoice(boolq::doc),
        hub: Some(("google/boolq", None)),
        folder: "boolq",
        eval_splits: &["validation"],
        fewshot_splits: FEWSHOT,
        default_shots: 0,
    },
    TaskDef {
        name: "openbookqa",
        aliases: &["obqa", "openbook_qa"],
        kind: Kind::MultipleChoice(openbookqa::doc),
        hub: Some(("allenai/openbookqa", Some("main"))),
        folder: "openbookqa",
        eval_splits: &["validation", "test"],
        fewshot_splits: FEWSHOT,
        default_shots: 5,
    },
    TaskDef {
        name: "mmlu",
        aliases: &[],
        kind: Kind::MultipleChoice(mmlu::doc),
        hub: Some(("cais/mmlu", Some("all"))),
        folder: "mmlu",
        eval_splits: &["test"],
        fewshot_splits: &["dev", "validation"],
        default_shots: 5,
    },
    TaskDef {
        name: "winogrande",
        aliases: &[],
        kind: Kind::MultipleChoice(winogrande::doc),
        hub: Some(("allenai/winogrande", Some("winogrande_xl"))),
        folder: "winogrande",
        eval_splits: &["validation"],
        fewshot_splits: FEWSHOT,
        default_shots: 5,
    },
    TaskDef {
        name: "triviaqa",
        aliases: &["trivia_qa"],
        kind: Kind::Generation(triviaqa::doc),
        hub: Some(("mandarjoshi/trivia_qa", Some("rc.nocontext"))),
        folder: "triviaqa",
        eval_splits: &["validation"],
        fewshot_splits: FEWSHOT,
        default_shots: 5,
    },
    TaskDef {
        name: "perplexity",
        aliases: &["ppl", "bpb"],
        kind: Kind::Perplexity,
        hub: None,
        folder: "perplexity",
        eval_splits: &["test", "validation"],
        fewshot_splits: &[],
        default_shots: 0,
    },
];

/// The task called `name` (or an alias), or an error listing the known ones with a suggestion.
pub fn find(name: &str) -> Result<&'static TaskDef> {
    let key = name.trim().to_ascii_lowercase();
    if let Some(t) = TASKS
        .iter()
        .find(|t| t.name == key || t.aliases.contains(&key.as_str()))
    {
        return Ok(t);
    }
    let names: Vec<&str> = TASKS.iter().map(|t| t.name).collect();
    let close = names
        .iter()
        .map(|n| (strsim::jaro_winkler(n, &key), *n))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let hint = close
        .map(|(_, n)| format!("did you mean `{n}`? "))
        .unwrap_or_default();
    anyhow::bail!(
        "unknown task `{name}`; {hint}known tasks: {} (and `arc` for both ARC sets)",
        names.join(", ")
    )
}
