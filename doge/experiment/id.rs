//! Run ids: a short hash of the canonical JSON of the resolved config.
//!
//! Canonical = every default filled in (the typed value serialized), keys sorted, eval stages
//! without training keys. Left out, because they do not change what is computed: `description`,
//! `registry`, `runs-dir`, `slurm` and `sweep` (a sweep's runs carry their values already),
//! and `data.memory`.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::types::{Experiment, StageKind};

/// The resolved experiment as JSON, as `doge exp check --json` prints it.
pub fn canonical_json(exp: &Experiment) -> Value {
    let mut v = serde_json::to_value(exp).expect("an experiment serializes");
    if let Some(Value::Array(stages)) = v.get_mut("stage") {
        for (stage, typed) in stages.iter_mut().zip(&exp.stages) {
            if typed.kind == StageKind::Eval {
                if let Value::Object(m) = stage {
                    m.retain(|k, _| EVAL_KEYS.contains(&k.as_str()));
                }
            }
        }
    }
    sorted(v)
}

/// What an eval stage uses; the training keys it also has as defaults are noise.
pub(crate) const EVAL_KEYS: [&str; 8] = [
    "kind",
    "name",
    "init",
    "data",
    "batch-size",
    "log-every",
    "tasks",
    "task",
];

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// 12 hex digits of SHA-256 over the canonical JSON, minus the keys that do not affect results.
pub fn run_id(exp: &Experiment) -> String {
    hash12(&result_json(exp))
}

/// The key of what stage `index` computes: the run id's JSON without the experiment's name and
/// without the stages after it. Two experiments whose first stages are the same (the instruct
/// quick start extends the pre-training one) share the key of those stages, so the one done
/// first is reused by the other. A local `init` counts by its absolute path, not its spelling.
pub fn stage_key(exp: &Experiment, index: usize) -> String {
    let mut v = result_json(exp);
    if let Value::Object(m) = &mut v {
        m.remove("name");
        if let Some(Value::Array(stages)) = m.get_mut("stage") {
            stages.truncate(index + 1);
            for (s, typed) in stages.iter_mut().zip(&exp.stages) {
                if let (Some(init), Value::Object(s)) = (&typed.init, s) {
                    s.insert("init".into(), absolute_init(exp, init));
                }
            }
        }
        if let (Some(init), Some(Value::Object(model))) = (&exp.model.init, m.get_mut("model")) {
            model.insert("init".into(), absolute_init(exp, init));
        }
        // Corpus and tokenizer paths are spelled relative to the experiment file: key them by
        // where that is.
        let base = std::fs::canonicalize(&exp.base_dir).unwrap_or_else(|_| exp.base_dir.clone());
        m.insert("base-dir".into(), Value::String(base.display().to_string()));
    }
    hash12(&v)
}

/// An `init` as a stage key holds it: a local checkpoint by its absolute path, a hub id as is.
fn absolute_init(exp: &Experiment, init: &str) -> Value {
    if !super::spec::is_local(init) {
        return Value::String(init.into());
    }
    let p = exp.local_path(init);
    let p = std::fs::canonicalize(&p).unwrap_or(p);
    Value::String(p.display().to_string())
}

fn hash12(v: &Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The canonical JSON without what does not change results.
fn result_json(exp: &Experiment) -> Value {
    let mut v = canonical_json(exp);
    if let Value::Object(m) = &mut v {
        for k in ["description", "registry", "runs-dir", "slurm", "sweep"] {
            m.remove(k);
        }
        // How much memory preparing the data may use does not change the rows.
        if let Some(Value::Object(d)) = m.get_mut("data") {
            d.remove("memory");
        }
        if let Some(Value::Array(stages)) = m.get_mut("stage") {
            for s in stages {
                if let Some(Value::Object(d)) = s.get_mut("data") {
                    d.remove("memory");
                }
            }
        }
    }
    v
}
