//! The checks that types cannot express (ranges, relations between keys, which keys belong to
//! which stage kind), run on the typed experiment with the tree at hand for locations. Also fills
//! in what resolution derives: the model's dims and DPO's default beta.
//! Numbers are finite here: KDL `#nan`/`#inf` do not map to JSON and are rejected as types.

use super::error::{quoted_list, suggest, Error, Errors};
use super::spec::{check_dims, is_local};
use super::sweep::check_sweep;
use super::tree::{Node, Seg};
use super::types::{Data, Experiment, Schedule, Stage, StageKind};

/// Keys that only training stages have.
const TRAIN_KEYS: [&str; 12] = [
    "lr",
    "optimizer",
    "schedule",
    "grad-accum",
    "max-steps",
    "max-tokens",
    "epochs",
    "grad-clip",
    "eval-every",
    "save-every",
    "keep-last",
    "beta",
];

/// Collects errors, each located through the tree.
pub struct Checker<'a> {
    pub tree: &'a Node,
    pub errors: Vec<Error>,
}

impl Checker<'_> {
    /// An error about the value at `path` (or, when it was not written, the block holding it).
    pub fn at(&mut self, path: &[Seg], msg: impl Into<String>) -> &mut Error {
        let (node, _) = self.tree.find(path);
        self.errors
            .push(Error::new(node.origin.clone(), self.tree.dotted(path), msg));
        self.errors.last_mut().expect("just pushed")
    }

    fn written(&self, path: &[Seg]) -> bool {
        self.tree.find(path).1
    }
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn path(base: &[Seg], rest: &[&str]) -> Vec<Seg> {
    base.iter()
        .cloned()
        .chain(rest.iter().map(|k| key(k)))
        .collect()
}

pub fn validate(exp: &mut Experiment, tree: &Node) -> Result<(), Errors> {
    let mut c = Checker {
        tree,
        errors: Vec::new(),
    };
    check_top(&mut c, exp);
    check_model(&mut c, exp);
    check_data(&mut c, &exp.data, &[key("data")]);
    if exp.stages.is_empty() {
        c.at(&[], "an experiment needs at least one `stage`").help =
            Some("add `stage \"pretrain\" { ... }`".into());
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, stage) in exp.stages.iter().enumerate() {
        let base = [key("stage"), Seg::Index(i)];
        if seen.contains(&stage.id()) {
            let e = c.at(&base, format!("two stages are named `{}`", stage.id()));
            e.help =
                Some("give one of them a `name`, e.g. `stage \"eval\" name=\"eval-final\"`".into());
        }
        seen.push(stage.id());
        check_stage(&mut c, exp, stage, &base);
    }
    if let Some(sweep) = &exp.sweep {
        check_sweep(&mut c, sweep);
    }
    check_registry(&mut c, exp);
    if let Some(slurm) = &exp.slurm {
        check_slurm(&mut c, slurm);
    }
    for stage in &mut exp.stages {
        if stage.kind == StageKind::Dpo && stage.beta.is_none() {
            stage.beta = Some(0.1);
        }
    }
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(Errors(c.errors))
    }
}

fn check_registry(c: &mut Checker, exp: &Experiment) {
    let Some(r) = &exp.registry else { return };
    if crate::registry::db::Location::is_url(r)
        && !(r.starts_with("postgres://") || r.starts_with("postgresql://"))
    {
        let scheme = r.split("://").next().unwrap_or_default();
        c.at(
            &[key("registry")],
            format!("`registry` {scheme}:// is not a database doge knows"),
        )
        .help = Some(
            "give a directory (`registry \"runs\"`) or a PostgreSQL URL (`registry \"postgres://user@host/db\"`)"
                .into(),
        );
    }
}

/// SLURM's time forms: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
fn slurm_time_ok(t: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.chars().all(|c| c.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(digits)
        && parts.iter().all(|p| digits(p))
        && match days {
            Some(_) => (1..=3).contains(&parts.len()),
            None => (1..=3).contains(&parts.len()),
        }
}

fn check_slurm(c: &mut Checker, slurm: &crate::experiment::Slurm) {
    if let Some(t) = &slurm.time {
        if !slurm_time_ok(t) {
            c.at(
                &[key("slurm"), key("time")],
                format!("`time` {t:?} is not a SLURM time"),
            )
            .help = Some("write e.g. \"12:00:00\" (12 hours) or \"2-00:00:00\" (2 days)".into());
        }
    }
    if slurm.gpus == Some(0) {
        c.at(
            &[key("slurm"), key("gpus")],
            "`gpus` must be at least 1 (leave it out for none)",
        );
    }
    if slurm.max_parallel == Some(0) {
        c.at(
            &[key("slurm"), key("max-parallel")],
            "`max-parallel` must be at least 1",
        );
    }
    for (i, o) in slurm.sbatch.iter().enumerate() {
        if !o.starts_with('-') {
            c.at(
                &[key("slurm"), key("sbatch"), Seg::Index(i)],
                format!("sbatch option {o:?} must start with `-` (e.g. \"--exclusive\")"),
            );
        }
    }
}

/// Local files the run will read (tokenizer, sources, inits) must exist: found now, at the
/// line that names them, rather than after a run directory and a failed run were made.
pub fn check_local_paths(exp: &Experiment, tree: &Node) -> Result<(), Errors> {
    let mut c = Checker {
        tree,
        errors: Vec::new(),
    };
    local_paths(&mut c, exp);
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(Errors(c.errors))
    }
}

fn local_paths(c: &mut Checker, exp: &Experiment) {
    let missing = |p: &str| is_local(p) && !exp.local_path(p).exists();
    let mut reported: Vec<String> = Vec::new();
    let report = |c: &mut Checker, at: Vec<Seg>, what: &str, p: &str, help: &str| {
        let e = c.at(
            &at,
            format!(
                "{what} `{p}` does not exist (looked for {})",
                exp.local_path(p).display()
            ),
        );
        e.help = Some(help.into());
    };
    if exp.tokenizer != "train" && missing(&exp.tokenizer) {
        report(
            c,
            vec![key("tokenizer")],
            "tokenizer",
            &exp.tokenizer,
            "give a folder holding tokenizer.json, a tokenizer.json file, a hub id, or \"train\" \
             (paths are relative to the experiment file)",
        );
    }
    // Without a preset the model's dims come from `init`: check_model reports it missing.
    let init = exp
        .model
        .init
        .as_deref()
        .filter(|_| exp.model.preset.is_some());
    if let Some(init) = init.filter(|p| missing(p)) {
        report(
            c,
            vec![key("model"), key("init")],
            "model init",
            init,
            "give a checkpoint folder (config.json + model.safetensors) or a hub id",
        );
    }
    // A stage's data is merged over the experiment's: each missing source is said once.
    let mut sources = |c: &mut Checker, data: &Data, base: Vec<Seg>| {
        for (i, s) in data.sources.iter().enumerate() {
            if missing(&s.from) && !reported.contains(&s.from) {
                reported.push(s.from.clone());
                let mut at = base.clone();
                at.extend([key("source"), Seg::Index(i)]);
                report(
                    c,
                    at,
                    "source",
                    &s.from,
                    "give a file or folder of .txt/.jsonl/.parquet, or a hub dataset id \
                     (paths are relative to the experiment file)",
                );
            }
        }
    };
    sources(c, &exp.data, vec![key("data")]);
    for (i, stage) in exp.stages.iter().enumerate() {
        let base = vec![key("stage"), Seg::Index(i)];
        if let Some(d) = &stage.data {
            let mut at = base.clone();
            at.push(key("data"));
            sources(c, d, at);
        }
        if let Some(init) = stage.init.as_deref().filter(|p| missing(p)) {
            let mut at = base.clone();
            at.push(key("init"));
            report(
                c,
                at,
                "stage init",
                init,
                "give a checkpoint folder or a hub id",
            );
        }
    }
}

fn check_top(c: &mut Checker, exp: &Experiment) {
    let ok = |ch: char| ch.is_ascii_alphanumeric() || "-_.".contains(ch);
    if exp.name.is_empty() || !exp.name.chars().all(ok) {
        c.at(
            &[key("name")],
            format!(
                "name `{}` must be non-empty letters, digits, `-`, `_` or `.`",
                exp.name
            ),
        )
        .help = Some("it names the run directories".into());
    }
    let d = exp.device.as_str();
    let cuda_n = d
        .strip_prefix("cuda:")
        .is_some_and(|n| n.parse::<usize>().is_ok());
    if !matches!(d, "auto" | "cpu" | "cuda") && !cuda_n {
        let e = c.at(
            &[key("device")],
            format!("unknown device `{d}`; expected `auto`, `cpu`, `cuda` or `cuda:N`"),
        );
        e.help = suggest(d, ["auto", "cpu", "cuda"]).map(|s| format!("did you mean `{s}`?"));
    }
}

fn check_model(c: &mut Checker, exp: &mut Experiment) {
    let m = &exp.model;
    let base = [key("model")];
    if let Some(name) = &m.preset {
        if crate::model::preset(name).is_none() {
            let names = crate::model::presets::preset_names();
            let e = c.at(
                &path(&base, &["preset"]),
                format!(
                    "unknown preset `{name}`; known presets: {}",
                    quoted_list(names.iter().copied())
                ),
            );
            e.help = suggest(name, names.iter().copied()).map(|s| format!("did you mean `{s}`?"));
            return;
        }
    }
    match m.to_config(&exp.base_dir) {
        Err(e) => {
            c.at(&path(&base, &[e.key]), e.message);
        }
        Ok(None) => {}
        Ok(Some(cfg)) => {
            let errors = check_dims(&cfg);
            for e in &errors {
                // Point at the key the user wrote, or at the preset/model when it is inherited.
                let p = path(&base, &[e.key]);
                let p = if c.written(&p) {
                    p
                } else {
                    path(&base, &["preset"])
                };
                c.at(&p, e.message.clone());
            }
            if errors.is_empty() {
                exp.model = exp.model.filled(&cfg);
            }
        }
    }
}

fn check_data(c: &mut Checker, data: &Data, base: &[Seg]) {
    if data.seq_len == 0 {
        c.at(&path(base, &["seq-len"]), "`seq-len` must be at least 1");
    }
    if let Some(m) = &data.memory {
        match crate::data::cli::parse_size(m) {
            Err(e) => {
                c.at(&path(base, &["memory"]), e);
            }
            Ok(b) if b < 1 << 20 => {
                c.at(
                    &path(base, &["memory"]),
                    format!("`memory` {m} is below 1MiB; give e.g. \"256MiB\""),
                );
            }
            Ok(_) => {}
        }
    }
    for (i, s) in data.sources.iter().enumerate() {
        let p: Vec<Seg> = base
            .iter()
            .cloned()
            .chain([key("source"), Seg::Index(i)])
            .collect();
        if s.weight <= 0.0 {
            c.at(
                &path(&p, &["weight"]),
                format!("a source weight must be positive, found {}", s.weight),
            );
        }
        if s.from.is_empty() {
            c.at(&path(&p, &["from"]), "a source needs a path or hub id");
        }
    }
}

fn check_stage(c: &mut Checker, exp: &Experiment, s: &Stage, base: &[Seg]) {
    let only = |c: &mut Checker, k: &str, allowed: bool, what: &str| {
        let p = path(base, &[k]);
        if !allowed && c.written(&p) {
            c.at(
                &p,
                format!("`{k}` has no meaning in `{}` stages", s.kind.as_str()),
            )
            .help = Some(format!("{what}; remove it"));
        }
    };
    if let Some(d) = &s.data {
        check_data(c, d, &path(base, &["data"]));
    }
    if !s.kind.trains() {
        for k in TRAIN_KEYS {
            only(c, k, false, "an eval stage trains nothing");
        }
        return;
    }
    only(
        c,
        "beta",
        s.kind == StageKind::Dpo,
        "`beta` is the DPO temperature",
    );
    only(c, "tasks", false, "`tasks` belongs to `eval` stages");
    only(c, "task", false, "`task` belongs to `eval` stages");
    let data = s.data.as_ref().unwrap_or(&exp.data);
    if data.sources.is_empty() {
        let e = c.at(base, format!("stage `{}` has no data", s.id()));
        e.help =
            Some("add `data { source \"path-or-hub-id\" }` to the experiment or the stage".into());
    }
    if !c.written(&path(base, &["lr"])) {
        c.at(base, format!("stage `{}` needs `lr`", s.id())).help = Some("e.g. `lr 3e-3`".into());
    } else if s.lr <= 0.0 {
        let e = c.at(
            &path(base, &["lr"]),
            format!("`lr` must be positive, found {}", s.lr),
        );
        e.help = Some(
            "the learning rate is the schedule's peak; typical values are 1e-4 to 1e-2".into(),
        );
    }
    let o = &s.optimizer;
    for (j, b) in o.betas.iter().enumerate() {
        if !(0.0..1.0).contains(b) {
            c.at(
                &path(base, &["optimizer", "betas"]),
                format!("beta{} must be in [0, 1), found {b}", j + 1),
            );
        }
    }
    if o.eps <= 0.0 {
        c.at(
            &path(base, &["optimizer", "eps"]),
            format!("`eps` must be positive, found {}", o.eps),
        );
    }
    if o.weight_decay < 0.0 {
        c.at(
            &path(base, &["optimizer", "weight-decay"]),
            format!("`weight-decay` must be >= 0, found {}", o.weight_decay),
        );
    }
    check_schedule(c, &s.schedule, &path(base, &["schedule"]));
    for (k, v) in [("batch-size", s.batch_size), ("grad-accum", s.grad_accum)] {
        if v == 0 {
            c.at(&path(base, &[k]), format!("`{k}` must be at least 1"));
        }
    }
    let lengths = [
        ("max-steps", s.max_steps.is_some()),
        ("max-tokens", s.max_tokens.is_some()),
        ("epochs", s.epochs.is_some()),
    ];
    let set: Vec<&str> = lengths
        .iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| *k)
        .collect();
    if set.len() != 1 {
        let at = set.get(1).map_or(base.to_vec(), |k| path(base, &[k]));
        let e = c.at(
            &at,
            format!(
                "stage `{}` needs exactly one of `max-steps`, `max-tokens`, `epochs`; found {}",
                s.id(),
                set.len()
            ),
        );
        e.help = Some("to replace an inherited one, set it to #null (`max-steps #null`)".into());
    }
    if s.max_steps == Some(0) || s.max_tokens == Some(0) || s.epochs.is_some_and(|e| e <= 0.0) {
        c.at(
            &path(base, &[set.first().copied().unwrap_or("max-steps")]),
            "the stage length must be positive",
        );
    }
    if s.grad_clip.is_some_and(|g| g <= 0.0) {
        c.at(
            &path(base, &["grad-clip"]),
            "`grad-clip` must be positive; write `grad-clip #null` to turn clipping off",
        );
    }
    if s.beta.is_some_and(|b| b <= 0.0) {
        c.at(&path(base, &["beta"]), "`beta` must be positive");
    }
    if let Some(init) = &s.init {
        if init.is_empty() || is_local(init) && init.ends_with(".kdl") {
            c.at(
                &path(base, &["init"]),
                "`init` is a checkpoint directory or hub id",
            );
        }
    }
}

fn check_schedule(c: &mut Checker, s: &Schedule, base: &[Seg]) {
    let (warmup, decay, min) = match *s {
        Schedule::Wsd {
            warmup,
            decay,
            min_lr_rate,
        } => (warmup, decay, Some(min_lr_rate)),
        Schedule::Cosine {
            warmup,
            min_lr_rate,
        } => (warmup, 0.0, Some(min_lr_rate)),
        Schedule::Constant { warmup } => (warmup, 0.0, None),
    };
    let fractions = [
        ("warmup", Some(warmup)),
        ("decay", Some(decay)),
        ("min-lr-rate", min),
    ];
    let mut bad = false;
    for (k, v) in fractions {
        if let Some(v) = v.filter(|v| !(0.0..=1.0).contains(v)) {
            c.at(
                &path(base, &[k]),
                format!("`{k}` is a fraction and must be in [0, 1], found {v}"),
            );
            bad = true;
        }
    }
    if !bad && warmup + decay > 1.0 + 1e-12 {
        let at = if c.written(&path(base, &["decay"])) {
            path(base, &["decay"])
        } else {
            base.to_vec()
        };
        let e = c.at(
            &at,
            format!(
                "warmup {warmup} + decay {decay} = {} is more than the whole stage",
                warmup + decay
            ),
        );
        e.help = Some(
            "warmup and decay are fractions of the stage's steps; make them add up to at most 1"
                .into(),
        );
    }
}
