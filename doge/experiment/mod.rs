//! Typed KDL experiments: one file says what to train, on what, how, and what to sweep.
//!
//! Pipeline (one module per step, README.md beside this file documents the format):
//! `kdl` (KDL text -> origin-tracking tree, checked against the schema) -> `resolve` (`extends`,
//! local paths, `--set`) -> `types` via serde -> `validate` (ranges, relations, model dims) ->
//! `sweep` (runs) -> `id` (run ids). Every error carries file:line:column and the key.

pub mod cli;
pub mod error;
pub mod id;
mod kdl;
pub mod print;
pub mod registry;
pub mod resolve;
pub mod schema;
pub mod slurm;
pub mod spec;
pub mod status;
pub mod sweep;
mod tree;
pub mod types;
mod validate;

use crate::registry::db::Location;
use std::path::{Path, PathBuf};

pub use error::{Error, Errors};
pub use id::{canonical_json, run_id, stage_key};
pub use sweep::Run;
pub use types::*;

/// The registry directory when an experiment names none (relative to the current directory).
pub const DEFAULT_REGISTRY: &str = "registry";

/// A 1-based line and column.
pub type LineCol = (usize, usize);

/// Reads a KDL task file (`task "name" { ... }` nodes, doge/eval/taskfile), checked against the
/// schema of [`TaskFile`] as experiments are; each task with the line and column it starts at.
pub fn load_task_file(path: &Path, text: &str) -> Result<Vec<(EvalTask, LineCol)>, Errors> {
    let src = std::sync::Arc::new(error::SourceText {
        name: path.display().to_string(),
        text: text.to_string(),
        path: Some(path.to_path_buf()),
    });
    let root = serde_json::to_value(schemars::schema_for!(TaskFile)).expect("a schema is JSON");
    let parsed = kdl::parse_document(&src, &schema::Shape::of(root))?;
    let file: TaskFile = resolve::deserialize_tree(&parsed.tree)?;
    let starts = (0..file.task.len()).map(|i| {
        let (node, _) = parsed
            .tree
            .find(&[tree::Seg::Key("task".into()), tree::Seg::Index(i)]);
        node.origin.line_col().unwrap_or((1, 1))
    });
    Ok(file.task.iter().cloned().zip(starts).collect())
}

/// Reads, resolves and checks an experiment file with `--set` overrides applied in order.
/// A sweep stays unexpanded in `Experiment::sweep`; see [`plan`].
pub fn load(path: &Path, sets: &[String]) -> Result<Experiment, Errors> {
    let loaded = resolve::load(path, sets)?;
    resolve::finish(&loaded, &loaded.tree)
}

/// The experiment and its runs (one run when it has no sweep), every run checked.
pub fn plan(path: &Path, sets: &[String]) -> Result<(Experiment, Vec<Run>), Errors> {
    let loaded = resolve::load(path, sets)?;
    let exp = resolve::finish(&loaded, &loaded.tree)?;
    let runs = sweep::expand(&loaded, &exp)?;
    Ok((exp, runs))
}

/// [`plan`], and the local files the runs read (tokenizer, sources, inits) must exist: what
/// `doge exp check` and `doge exp run` use, so a missing folder is an error at its line before
/// any run directory or registry row is made.
pub fn plan_to_run(path: &Path, sets: &[String]) -> Result<(Experiment, Vec<Run>), Errors> {
    let loaded = resolve::load(path, sets)?;
    let exp = resolve::finish(&loaded, &loaded.tree)?;
    validate::check_local_paths(&exp, &loaded.tree)?;
    let runs = sweep::expand(&loaded, &exp)?;
    Ok((exp, runs))
}

/// The KDL -> JSON mapping of a file after `extends` and `--set`, before defaults and checks
/// (what an editor's schema validation sees, modulo `extends`).
pub fn to_json(path: &Path, sets: &[String]) -> Result<serde_json::Value, Errors> {
    Ok(resolve::load(path, sets)?.tree.to_json())
}

impl Experiment {
    /// The data a stage reads: its own block (already merged over the experiment's) or the
    /// experiment's.
    pub fn stage_data<'a>(&'a self, stage: &'a Stage) -> &'a Data {
        stage.data.as_ref().unwrap_or(&self.data)
    }

    /// A local path of the experiment (relative to the experiment file) as a usable path.
    pub fn local_path(&self, p: &str) -> PathBuf {
        normalize(&self.base_dir.join(p))
    }

    /// The directory this experiment's run directories (checkpoints) and prepared data go in.
    pub fn registry_dir(&self) -> PathBuf {
        match (&self.registry, &self.runs_dir) {
            (_, Some(p)) => self.local_path(p),
            (Some(r), None) if !Location::is_url(r) => self.local_path(r),
            _ => PathBuf::from(DEFAULT_REGISTRY),
        }
    }

    /// The database the runs are recorded in: `registry` when it is a server URL, else
    /// `$DOGE_REGISTRY` when set, else `doge.sqlite` in [`Self::registry_dir`].
    pub fn database(&self) -> Location {
        match &self.registry {
            Some(r) if Location::is_url(r) => Location::parse(r),
            _ => Location::from_env_or(&self.registry_dir().join("doge.sqlite")),
        }
    }
}

impl Stage {
    /// Tokens one optimizer step sees (sequences per step x sequence length).
    pub fn tokens_per_step(&self, data: &Data) -> u64 {
        (self.batch_size * self.grad_accum * data.seq_len) as u64
    }

    /// Tokens the stage will train on, when its length says so (not for `epochs`).
    pub fn planned_tokens(&self, data: &Data) -> Option<u64> {
        match (self.max_steps, self.max_tokens) {
            (Some(steps), _) => Some(steps * self.tokens_per_step(data)),
            (None, Some(tokens)) => Some(tokens),
            _ => None,
        }
    }
}

/// Removes `.` and `name/..` pairs without touching the file system, so printed paths read
/// `registry/x`, not `experiments/../registry/x`.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
