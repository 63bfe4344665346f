//! `results.json` in the shape lm-evaluation-harness writes it, so scripts and leaderboards that
//! read lm-eval's files read doge's: `results.<task>."<metric>,none"` and
//! `"<metric>_stderr,none"`, `n-shot`, `n-samples`, `higher_is_better`, `versions`, `config`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::TaskResult;

/// What the evaluation ran with (lm-eval's top-level `config`).
pub struct RunInfo<'a> {
    pub model: &'a Path,
    pub batch_size: usize,
    pub device: &'a str,
    pub limit: Option<usize>,
    pub seed: u64,
    /// The registry run the scores were recorded for.
    pub run_id: Option<&'a str>,
    pub seconds: f64,
}

/// Metrics where a lower value is better; every other metric doge reports is an accuracy.
fn higher_is_better(metric: &str) -> bool {
    !(metric.contains("perplexity") || metric.contains("bits_per_byte"))
}

/// The document lm-eval would write for these results.
pub fn results_json(results: &[TaskResult], info: &RunInfo) -> Value {
    let mut res = Map::new();
    let mut shots = Map::new();
    let mut samples = Map::new();
    let mut better = Map::new();
    let mut versions = Map::new();
    for r in results {
        let mut m = Map::new();
        m.insert("alias".into(), json!(r.task));
        let mut hib = Map::new();
        for s in &r.scores {
            m.insert(format!("{},none", s.metric), json!(s.value));
            // lm-eval writes "N/A" where a metric has no standard error.
            m.insert(
                format!("{}_stderr,none", s.metric),
                s.stderr.map_or(json!("N/A"), |e| json!(e)),
            );
            hib.insert(s.metric.clone(), json!(higher_is_better(&s.metric)));
        }
        let n = r.scores.first().map_or(0, |s| s.n);
        res.insert(r.task.clone(), Value::Object(m));
        shots.insert(r.task.clone(), json!(r.shots));
        samples.insert(
            r.task.clone(),
            json!({"original": n, "effective": n, "split": r.split, "source": r.source}),
        );
        better.insert(r.task.clone(), Value::Object(hib));
        versions.insert(r.task.clone(), json!(1.0));
    }
    json!({
        "results": res,
        "n-shot": shots,
        "n-samples": samples,
        "higher_is_better": better,
        "versions": versions,
        "config": {
            "model": "doge",
            "model_args": format!("pretrained={}", info.model.display()),
            "batch_size": info.batch_size,
            "device": info.device,
            "limit": info.limit,
            "random_seed": info.seed,
        },
        "doge_run": info.run_id,
        "doge_version": env!("CARGO_PKG_VERSION"),
        "date": crate::registry::now(),
        "total_evaluation_time_seconds": format!("{:.2}", info.seconds),
    })
}

/// Where `--output` (or the default) puts the file: a `.json` path is the file itself; a folder
/// gets `results_<local time>.json`, as lm-eval names them.
pub fn output_path(out: &Path) -> PathBuf {
    if out.extension().is_some_and(|e| e == "json") {
        out.to_path_buf()
    } else {
        let stamp = chrono::Local::now().format("%Y-%m-%dT%H-%M-%S%.6f");
        out.join(format!("results_{stamp}.json"))
    }
}

/// Writes the document (whole, then renamed into place); returns the file written.
pub fn write(out: &Path, results: &[TaskResult], info: &RunInfo) -> Result<PathBuf> {
    let path = output_path(out);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&results_json(results, info))? + "\n";
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
