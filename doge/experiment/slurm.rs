//! `doge exp plan FILE --slurm`: an sbatch script whose array tasks are the sweep's runs, task
//! I running `doge exp run FILE --array-index I`, with the resources of the `slurm` block.
//!
//! The runs still claim themselves in the registry, so a task resubmitted, a plain
//! `doge exp run` started beside the array, or a task landing on a run another worker holds, do
//! not train a run twice.

use std::fmt::Write as _;
use std::path::Path;

use super::types::{Experiment, Slurm};

/// A word as the shell reads it back: bare when it is safe, else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Where the tasks' logs go unless `slurm.output` says otherwise.
/// Relative to the current directory (where sbatch is run) when it lies below it.
pub fn default_output(exp: &Experiment) -> String {
    let dir = exp.registry_dir();
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| dir.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or(dir);
    format!("{}/slurm/%x-%A_%a.out", shown.display())
}

/// The script for the `n_runs` runs of `exp` (as `doge exp plan FILE --set ...` expanded it).
pub fn sbatch_script(file: &Path, sets: &[String], exp: &Experiment, n_runs: usize) -> String {
    let none = Slurm::default();
    let s = exp.slurm.as_ref().unwrap_or(&none);
    let mut o = String::new();
    let _ = writeln!(o, "#!/bin/bash");
    let _ = writeln!(
        o,
        "# {}: {n_runs} run{} of {}, one per array task (written by `doge exp plan --slurm`).",
        exp.name,
        if n_runs == 1 { "" } else { "s" },
        file.display()
    );
    let _ = writeln!(
        o,
        "# Submit from this directory with `sbatch FILE`; `doge exp status {}` shows progress.",
        file.display()
    );
    let mut opt = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            let _ = writeln!(o, "#SBATCH --{k}={v}");
        }
    };
    opt("job-name", Some(exp.name.clone()));
    let last = n_runs.saturating_sub(1);
    let array = match s.max_parallel {
        Some(k) => format!("0-{last}%{k}"),
        None => format!("0-{last}"),
    };
    opt("array", Some(array));
    opt("partition", s.partition.clone());
    opt("account", s.account.clone());
    opt("qos", s.qos.clone());
    opt("time", s.time.clone());
    // SIGINT two minutes before the time limit: doge saves a checkpoint and stops, and the
    // resubmitted task continues from it.
    opt("signal", s.time.as_ref().map(|_| "INT@120".to_string()));
    opt("gpus", s.gpus.map(|g| g.to_string()));
    opt("cpus-per-task", s.cpus.map(|c| c.to_string()));
    opt("mem", s.mem.clone());
    opt("constraint", s.constraint.clone());
    opt(
        "output",
        Some(s.output.clone().unwrap_or_else(|| default_output(exp))),
    );
    for extra in &s.sbatch {
        let _ = writeln!(o, "#SBATCH {extra}");
    }
    let _ = writeln!(o, "set -euo pipefail");
    for line in &s.setup {
        let _ = writeln!(o, "{line}");
    }
    if let Some(threads) = s.cpus {
        let _ = writeln!(o, "export RAYON_NUM_THREADS={threads}");
    }
    let mut cmd = format!(
        "srun \"${{DOGE:-doge}}\" exp run {}",
        shell_quote(&file.display().to_string())
    );
    for set in sets {
        let _ = write!(cmd, " --set {}", shell_quote(set));
    }
    cmd.push_str(" --array-index \"$SLURM_ARRAY_TASK_ID\"");
    let _ = writeln!(o, "{cmd}");
    o
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn words_are_quoted_only_when_the_shell_would_split_them() {
        assert_eq!(
            shell_quote("stage.pretrain.lr=3e-3"),
            "stage.pretrain.lr=3e-3"
        );
        assert_eq!(shell_quote("name=a b"), "'name=a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
