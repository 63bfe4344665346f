//! Where runs live and whether they are done, so a sweep run twice reruns nothing finished.
//!
//! Contract with the training runner: a run's directory is `<registry>/<name>-<id>`; the runner
//! writes `experiment.json` (the canonical JSON) there when it starts and `done.json` when the
//! last stage has finished. The SQLite registry (`<registry>/doge.sqlite`) records the same runs
//! for querying. Because the id hashes the resolved config, a changed config is a new directory.

use std::path::PathBuf;

use super::id::run_id;
use super::types::Experiment;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    New,
    Started,
    Done,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::New => "new",
            RunStatus::Started => "started",
            RunStatus::Done => "done",
        }
    }
}

/// `<registry>/<name>-<id>`.
pub fn run_dir(exp: &Experiment) -> PathBuf {
    exp.registry_dir()
        .join(format!("{}-{}", exp.name, run_id(exp)))
}

pub fn status(exp: &Experiment) -> RunStatus {
    let dir = run_dir(exp);
    if dir.join("done.json").is_file() {
        RunStatus::Done
    } else if dir.join("experiment.json").is_file() {
        RunStatus::Started
    } else {
        RunStatus::New
    }
}
