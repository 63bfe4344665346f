//! Evaluation tasks as files: lm-eval's task YAML (run unchanged where it uses no Python) and the
//! same keys in KDL, so a new benchmark is a file, not a patch.
//!
//! - `tree.rs`: values with their file, line and column; `yaml.rs` / `kdl.rs`: files -> tree;
//! - `files.rs`: `include`, group files, the index of `--include-path` folders;
//! - `config.rs`: the tree -> a typed [`config::TaskConfig`], every key checked;
//! - `template.rs`: Jinja as lm-eval renders it; `run.rs`: rows -> requests -> metrics.
//!
//! See `doge/eval/README.md` ("Task files") for the format and how doge differs from lm-eval.

pub mod config;
pub mod files;
pub mod kdl;
pub mod run;
pub mod template;
pub mod tree;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};

pub use config::TaskConfig;
use files::{Index, Loaded, Member};

/// A group asked for by name: its tasks' scores are averaged into one line per metric.
#[derive(Debug)]
pub struct GroupRun {
    pub name: String,
    /// (metric, weighted by each task's number of items).
    pub aggregate: Vec<(String, bool)>,
    pub tasks: Vec<String>,
}

/// One task to run, and the group that asked for it.
pub type Resolved = (Arc<TaskConfig>, Option<Arc<GroupRun>>);

/// Whether `spec` names a task file rather than a task.
pub fn looks_like_file(spec: &str, base: &Path) -> bool {
    let p = Path::new(spec);
    files::is_task_file(p) || base.join(p).is_file()
}

/// The tasks a `--tasks` entry stands for: a task or group file, or a task, group or tag name
/// defined under the include paths. `None` when the name is not in the index (a built-in task).
pub fn resolve(spec: &str, base: &Path, index: &Index) -> Result<Option<Vec<Resolved>>> {
    if looks_like_file(spec, base) {
        let path = base.join(spec);
        if !path.is_file() {
            bail!("{}: no such task file", path.display());
        }
        return Ok(Some(load_path(&path, index, &mut Vec::new())?));
    }
    resolve_name(spec, index, &mut Vec::new())
}

fn load_path(path: &Path, index: &Index, seen: &mut Vec<String>) -> Result<Vec<Resolved>> {
    match files::load(path)? {
        Loaded::Task(t) => Ok(vec![(Arc::from(t), None)]),
        Loaded::Group(g) => expand_group(g, index, seen),
    }
}

fn resolve_name(
    name: &str,
    index: &Index,
    seen: &mut Vec<String>,
) -> Result<Option<Vec<Resolved>>> {
    if seen.iter().any(|s| s == name) {
        bail!("group cycle: {} -> {name}", seen.join(" -> "));
    }
    if let Some(p) = index.tasks.get(name) {
        return Ok(Some(load_path(p, index, seen)?));
    }
    if let Some(p) = index.groups.get(name) {
        seen.push(name.to_string());
        let out = load_path(p, index, seen)?;
        seen.pop();
        return Ok(Some(out));
    }
    if let Some(paths) = index.tags.get(name) {
        let mut out = Vec::new();
        for p in paths {
            out.extend(load_path(p, index, seen)?);
        }
        return Ok(Some(out));
    }
    Ok(None)
}

fn expand_group(
    g: files::GroupConfig,
    index: &Index,
    seen: &mut Vec<String>,
) -> Result<Vec<Resolved>> {
    let mut tasks: Vec<Arc<TaskConfig>> = Vec::new();
    for m in &g.members {
        match m {
            Member::Inline(node) => match files::from_tree((**node).clone())? {
                Loaded::Task(t) => tasks.push(Arc::from(t)),
                Loaded::Group(inner) => tasks.extend(expand_group(inner, index, seen)?.into_iter().map(|(t, _)| t)),
            },
            Member::Name(n, pos) => match resolve_name(n, index, seen)? {
                Some(found) => tasks.extend(found.into_iter().map(|(t, _)| t)),
                None => bail!(
                    "{pos}: group `{}` lists `{n}`, which no task file under the include paths defines (add its folder with --include-path)",
                    g.name
                ),
            },
        }
    }
    let run = Arc::new(GroupRun {
        name: g.name.clone(),
        aggregate: g.aggregate.clone(),
        tasks: tasks.iter().map(|t| t.name.clone()).collect(),
    });
    Ok(tasks.into_iter().map(|t| (t, Some(run.clone()))).collect())
}

/// The index of the include paths (empty when there are none).
pub fn index(include_paths: &[PathBuf]) -> Index {
    if include_paths.is_empty() {
        Index::default()
    } else {
        Index::scan(include_paths)
    }
}
