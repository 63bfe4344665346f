//! Task rows in the Hugging Face `datasets` row format, from local files or the hub.
//!
//! A task's data is a folder (or one file) of `.jsonl`, `.json` (a list of rows) or `.parquet`
//! files, laid out as the hub lays out a dataset: a split is the files whose name starts with the
//! split (`validation.jsonl`, `test-00000-of-00001.parquet`) or that sit under a folder named after
//! it (`mmlu/dev/anatomy.jsonl`). Without a local path the same files are fetched from the hub
//! (dataset id, config, split; `HF_HUB_OFFLINE=1` reads only the hub cache).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::data::hub::{self, HubOptions};

/// One row and where it came from (`file:line`, or `file: row N`), for error messages.
#[derive(Debug, Clone)]
pub struct Row {
    pub at: String,
    pub value: Value,
}

impl Row {
    /// A string field, or an error naming the row and the key.
    pub fn str(&self, key: &str) -> Result<&str> {
        self.value
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.missing(key, "a string"))
    }

    /// A list-of-strings field.
    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        let list = self
            .value
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| self.missing(key, "a list of strings"))?;
        list.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.missing(key, "a list of strings"))
            })
            .collect()
    }

    /// A nested value at a dotted path (`choices.text`).
    pub fn path(&self, dotted: &str) -> Result<&Value> {
        let mut v = &self.value;
        for part in dotted.split('.') {
            v = v.get(part).ok_or_else(|| self.missing(dotted, "present"))?;
        }
        Ok(v)
    }

    /// An integer label stored as a number or a numeric string (`"3"`, as HellaSwag stores it).
    pub fn index(&self, key: &str) -> Result<usize> {
        match self.value.get(key) {
            Some(Value::Number(n)) => n.as_u64().map(|x| x as usize),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| self.missing(key, "a non-negative integer (or a numeric string)"))
    }

    pub fn missing(&self, key: &str, what: &str) -> anyhow::Error {
        anyhow!(
            "{}: key `{key}` must be {what}; is this the right dataset for the task?",
            self.at
        )
    }
}

/// Where a task's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A folder laid out by split, or a single file (used for every split).
    Local(PathBuf),
    /// A hub dataset: id and optional configuration.
    Hub { id: String, config: Option<String> },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local(p) => write!(f, "{}", p.display()),
            Source::Hub { id, config: None } => write!(f, "hub:{id}"),
            Source::Hub {
                id,
                config: Some(c),
            } => write!(f, "hub:{id}/{c}"),
        }
    }
}

/// The rows of one split.
#[derive(Debug, Clone)]
pub struct Split {
    pub name: String,
    pub rows: Vec<Row>,
}

/// The first of `splits` that the source has, with its rows; None when it has none of them.
pub fn first_split(source: &Source, splits: &[&str], hub: &HubOptions) -> Result<Option<Split>> {
    for split in splits {
        let files = match source {
            Source::Local(path) => local_split_files(path, split)?,
            Source::Hub { id, config } => {
                match hub::dataset_files(id, None, config.as_deref(), split, hub) {
                    Ok(f) => f,
                    // A missing split is the next one's turn; other errors (network) are final
                    // once no split was found.
                    Err(_) => continue,
                }
            }
        };
        if files.is_empty() {
            continue;
        }
        let mut rows = Vec::new();
        for f in &files {
            rows.extend(read_rows(f)?);
        }
        return Ok(Some(Split {
            name: split.to_string(),
            rows,
        }));
    }
    Ok(None)
}

/// Like [`first_split`], but a source without any of the splits is an error saying what exists.
pub fn require_split(source: &Source, splits: &[&str], hub: &HubOptions) -> Result<Split> {
    first_split(source, splits, hub)?.ok_or_else(|| {
        let found = match source {
            Source::Local(p) => crate::data::sources::local_files(p)
                .map(|f| {
                    f.iter()
                        .map(|x| x.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|e| format!("{e:#}")),
            // The hub's own words for the first split (offline, network, no such files).
            Source::Hub { id, config } => {
                match hub::dataset_files(id, None, config.as_deref(), splits[0], hub) {
                    Err(e) => format!("nothing: {e:#}"),
                    Ok(_) => "nothing".into(),
                }
            }
        };
        anyhow!(
            "{source}: no `{}` split (found: {found}); give the task a folder with one of these splits, \
             e.g. `validation.jsonl`",
            splits.join("` or `")
        )
    })
}

/// The data files of `split` under a local path (a file stands for every split).
fn local_split_files(path: &Path, split: &str) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let files = crate::data::sources::local_files(path)
        .with_context(|| format!("{}: the task's data folder", path.display()))?;
    Ok(files
        .into_iter()
        .filter(|f| {
            let rel = f.strip_prefix(path).unwrap_or(f);
            let in_dir = rel
                .parent()
                .is_some_and(|p| p.components().any(|c| c.as_os_str() == split));
            let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let named = stem == split
                || stem
                    .strip_prefix(split)
                    .is_some_and(|rest| rest.starts_with(['-', '_', '.']));
            in_dir || named
        })
        .filter(|f| {
            f.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jsonl", "json", "parquet"].contains(&e))
        })
        .collect())
}

/// Every row of a `.jsonl`, `.json` or `.parquet` file.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "parquet" => read_parquet(path),
        "jsonl" | "json" => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            if ext == "json" {
                let v: Value = serde_json::from_str(&text).map_err(|e| {
                    anyhow!(
                        "{}:{}:{}: not valid JSON: {e}",
                        path.display(),
                        e.line(),
                        e.column()
                    )
                })?;
                let Value::Array(rows) = v else {
                    bail!(
                        "{}: expected a JSON list of rows (use .jsonl for one row per line)",
                        path.display()
                    );
                };
                return Ok(rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, value)| Row {
                        at: format!("{}: row {i}", path.display()),
                        value,
                    })
                    .collect());
            }
            Ok(crate::data::sources::jsonl_values(path, &text)?
                .into_iter()
                .map(|(line, value)| Row {
                    at: format!("{}:{line}", path.display()),
                    value,
                })
                .collect())
        }
        _ => bail!(
            "{}: task rows must be .jsonl, .json or .parquet",
            path.display()
        ),
    }
}

fn read_parquet(path: &Path) -> Result<Vec<Row>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
    let rows = reader
        .get_row_iter(None)
        .with_context(|| format!("{}: cannot read its rows", path.display()))?;
    let mut out = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.with_context(|| format!("{}: row {i}: cannot decode", path.display()))?;
        out.push(Row {
            at: format!("{}: row {i}", path.display()),
            value: row.to_json_value(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_found_by_file_name_or_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("dev")).unwrap();
        std::fs::write(d.join("validation.jsonl"), "{\"a\": 1}\n").unwrap();
        std::fs::write(d.join("test-00000-of-00001.jsonl"), "{\"a\": 2}\n").unwrap();
        std::fs::write(d.join("contest.jsonl"), "{\"a\": 3}\n").unwrap();
        std::fs::write(d.join("dev/anatomy.jsonl"), "{\"a\": 4}\n{\"a\": 5}\n").unwrap();
        let hub = HubOptions::from_env();
        let src = Source::Local(d.to_path_buf());
        let test = first_split(&src, &["test"], &hub).unwrap().unwrap();
        assert_eq!(test.rows.len(), 1);
        assert_eq!(test.rows[0].value["a"], 2);
        let dev = first_split(&src, &["train", "dev"], &hub).unwrap().unwrap();
        assert_eq!((dev.name.as_str(), dev.rows.len()), ("dev", 2));
        assert!(
            dev.rows[1].at.ends_with("anatomy.jsonl:2"),
            "{}",
            dev.rows[1].at
        );
        assert!(first_split(&src, &["train"], &hub).unwrap().is_none());
        let err = require_split(&src, &["train"], &hub)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no `train` split") && err.contains("validation.jsonl"),
            "{err}"
        );
    }
}
