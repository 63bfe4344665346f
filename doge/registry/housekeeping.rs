//! `doge runs tag|note|archive|delete`: what a person does to keep a registry readable.
//!
//! Tags and notes are rows beside the run; archiving hides a run from lists and reports (its
//! rows stay, `--all` shows it); deleting removes the run's rows in one transaction and, after
//! that commits, its files.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Result};

use super::db::{Tx, Value};
use super::Registry;
use crate::sql_params;

/// What deleting runs removed.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    pub runs: Vec<String>,
    /// Directories and files of the runs, removed after the rows were.
    pub files: Vec<PathBuf>,
}

impl Registry {
    /// Adds and removes tags of a run.
    pub fn tag(&self, id: &str, add: &[String], remove: &[String]) -> Result<()> {
        self.db.transaction(Tx::Write, |db| {
            for t in add {
                db.execute(
                    "INSERT INTO tags (run_id, tag) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    &sql_params![id, t.as_str()],
                )?;
            }
            for t in remove {
                db.execute(
                    "DELETE FROM tags WHERE run_id = ?1 AND tag = ?2",
                    &sql_params![id, t.as_str()],
                )?;
            }
            Ok(())
        })
    }

    /// The tags of a run, sorted.
    pub fn tags(&self, id: &str) -> Result<Vec<String>> {
        self.db
            .query(
                "SELECT tag FROM tags WHERE run_id = ?1 ORDER BY tag",
                &sql_params![id],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
    }

    /// Sets (or with None clears) a run's note.
    pub fn set_note(&self, id: &str, note: Option<&str>) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET note = ?2 WHERE id = ?1",
            &sql_params![id, note],
        )?;
        Ok(())
    }

    /// Archives (hides from lists and reports) or restores a run.
    pub fn set_archived(&self, id: &str, archived: bool) -> Result<()> {
        self.db.execute(
            "UPDATE runs SET archived = ?2 WHERE id = ?1",
            &sql_params![id, archived as i64],
        )?;
        Ok(())
    }

    /// Runs whose parent is one of `ids` but which are not themselves in `ids`.
    pub fn children_outside(&self, ids: &[String]) -> Result<Vec<String>> {
        let set: BTreeSet<&String> = ids.iter().collect();
        let mut out = Vec::new();
        for id in ids {
            for r in self.db.query(
                "SELECT id FROM runs WHERE parent_id = ?1 ORDER BY created_at",
                &sql_params![id.as_str()],
            )? {
                let child = r.text(0)?;
                if !set.contains(&child) {
                    out.push(child);
                }
            }
        }
        Ok(out)
    }

    /// The files a run owns: the stage directories holding its checkpoints
    /// (`<run dir>/<stage>/checkpoint-N`).
    pub fn run_files(&self, id: &str) -> Result<Vec<PathBuf>> {
        let mut dirs = BTreeSet::new();
        for r in self.db.query(
            "SELECT path FROM artifacts WHERE run_id = ?1 AND kind IN ('checkpoint', 'final')",
            &sql_params![id],
        )? {
            if let Some(stage_dir) = PathBuf::from(r.text(0)?).parent() {
                dirs.insert(stage_dir.to_path_buf());
            }
        }
        Ok(dirs.into_iter().collect())
    }

    /// Deletes runs with their metrics, evals, artifacts, tags and claims (one transaction),
    /// then their files when `files` is set. Refuses runs that do not exist.
    pub fn delete_runs(&self, ids: &[String], files: bool) -> Result<Deleted> {
        let mut out = Deleted::default();
        for id in ids {
            let n = self.db.query_i64(
                "SELECT count(*) FROM runs WHERE id = ?1",
                &[Value::from(id)],
            )?;
            if n == 0 {
                bail!("no run `{id}` in the registry (see `doge runs list`)");
            }
            if files {
                out.files.extend(self.run_files(id)?);
            }
        }
        self.db.transaction(Tx::Write, |db| {
            for id in ids {
                for table in ["metrics", "evals", "artifacts", "tags"] {
                    db.execute(
                        &format!("DELETE FROM {table} WHERE run_id = ?1"),
                        &sql_params![id.as_str()],
                    )?;
                }
                // A child of a deleted run keeps its rows; its lineage ends here.
                db.execute(
                    "UPDATE runs SET parent_id = NULL WHERE parent_id = ?1",
                    &sql_params![id.as_str()],
                )?;
                db.execute("DELETE FROM runs WHERE id = ?1", &sql_params![id.as_str()])?;
            }
            Ok(())
        })?;
        out.runs = ids.to_vec();
        out.files.sort();
        out.files.dedup();
        for f in &out.files {
            let removed = if f.is_dir() {
                std::fs::remove_dir_all(f)
            } else {
                std::fs::remove_file(f)
            };
            if let Err(e) = removed {
                if e.kind() != std::io::ErrorKind::NotFound {
                    eprintln!("warning: removing {}: {e}", f.display());
                }
            }
            // The experiment run is no longer whole: a rerun must train the stage again, and a
            // run directory left with no stage is removed with it.
            if let Some(run_dir) = f.parent() {
                let _ = std::fs::remove_file(run_dir.join("done.json"));
                let has_stage = std::fs::read_dir(run_dir)
                    .map(|rd| rd.flatten().any(|e| e.path().is_dir()))
                    .unwrap_or(true);
                if !has_stage {
                    let _ = std::fs::remove_dir_all(run_dir);
                }
            }
        }
        Ok(out)
    }
}
