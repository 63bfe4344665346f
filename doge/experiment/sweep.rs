//! Sweeps: one experiment -> many runs, each a normal experiment with some keys set.
//!
//! Runs are the product of the `grid` axes, the rows of `zip`, and `count` draws of `random`
//! (drawn once, from their own seed, so the same file always gives the same runs). A run's id is
//! the hash of its resolved config (`id.rs`), so expanding twice gives the same ids and the
//! registry can tell which runs are already done.

use serde_json::Value;

use super::error::{Errors, Origin};
use super::id::run_id;
use super::resolve::{finish, set_path, Loaded};
use super::tree::Seg;
use super::types::{Axis, Experiment, RandomAxis, Range, Sweep};
use super::validate::Checker;

/// One expanded run.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    /// The sweep keys and the values this run gives them, in key order.
    pub values: Vec<(String, Value)>,
    pub experiment: Experiment,
}

fn at(section: &str, k: &str) -> Vec<Seg> {
    vec![
        Seg::Key("sweep".into()),
        Seg::Key(section.into()),
        Seg::Key(k.into()),
    ]
}

pub fn check_sweep(c: &mut Checker, sweep: &Sweep) {
    if sweep.grid.is_empty() && sweep.zip.is_empty() && sweep.random.is_none() {
        c.at(
            &[Seg::Key("sweep".into())],
            "empty sweep: give it a `grid`, `zip` or `random` block",
        );
    }
    let mut zip_len: Option<(usize, &str)> = None;
    for (section, axes) in [("grid", &sweep.grid), ("zip", &sweep.zip)] {
        for (k, axis) in axes {
            match axis {
                Axis::Values(v) if v.is_empty() => {
                    let e = c.at(
                        &at(section, k),
                        format!("empty sweep axis `{k}`: give it at least one value"),
                    );
                    e.help = Some(format!("write the values after the key (`{k} 1 2 3`) or a range (`{k} from=1 to=3 count=3`)"));
                }
                Axis::Values(_) => {}
                Axis::Range(r) => check_range(c, r, &at(section, k)),
            }
            if section == "zip" {
                let n = axis_values(axis).len();
                match zip_len {
                    Some((m, first)) if m != n => {
                        c.at(&at(section, k), format!("zip axes need the same length: `{first}` has {m} values, `{k}` has {n}"));
                    }
                    None => zip_len = Some((n, k)),
                    _ => {}
                }
            }
        }
    }
    if let Some(r) = &sweep.random {
        let base = vec![Seg::Key("sweep".into()), Seg::Key("random".into())];
        if r.count == 0 {
            c.at(
                &[base.clone(), vec![Seg::Key("count".into())]].concat(),
                "`count` must be at least 1",
            );
        }
        if r.axes.is_empty() {
            c.at(&base, "empty `random` block: give it at least one axis (`lr min=1e-4 max=1e-2 log=#true`)");
        }
        for (k, axis) in &r.axes {
            let p = at("random", k);
            match axis {
                RandomAxis::Choice(v) if v.is_empty() => {
                    c.at(&p, format!("empty sweep axis `{k}`: give it values to choose from or `min=` and `max=`"));
                }
                RandomAxis::Choice(_) => {}
                RandomAxis::Uniform(u) => {
                    let (lo, hi) = (
                        u.min.as_f64().unwrap_or(f64::NAN),
                        u.max.as_f64().unwrap_or(f64::NAN),
                    );
                    if lo > hi {
                        c.at(&p, format!("`min` {lo} is above `max` {hi}"));
                    } else if u.log && lo <= 0.0 {
                        c.at(&p, "a log-uniform axis needs `min` > 0");
                    }
                }
            }
        }
    }
}

fn check_range(c: &mut Checker, r: &Range, p: &[Seg]) {
    let msg = match (r.step, r.count) {
        (Some(_), Some(_)) | (None, None) => {
            Some("a range takes either `step` or `count`".to_string())
        }
        (Some(s), None) if s <= 0.0 => Some(format!("`step` must be positive, found {s}")),
        (None, Some(0)) => Some("`count` must be at least 1".to_string()),
        _ if r.from > r.to => Some(format!("`from` {} is above `to` {}", r.from, r.to)),
        _ if r.log && r.from <= 0.0 => Some("a log range needs `from` > 0".to_string()),
        _ if r.step.is_some_and(|s| (r.to - r.from) / s > 100_000.0) => {
            Some("the range has over 100000 values".to_string())
        }
        _ => None,
    };
    if let Some(m) = msg {
        c.at(p, m);
    }
}

/// Rounds away float noise (`0.30000000000000004`) so values and ids stay readable.
fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn number(x: f64, integer: bool) -> Value {
    if integer {
        Value::from(x.round() as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

/// The values of a grid or zip axis.
pub fn axis_values(axis: &Axis) -> Vec<Value> {
    match axis {
        Axis::Values(v) => v.clone(),
        Axis::Range(r) => {
            let integer =
                !r.log && r.from.fract() == 0.0 && r.step.is_some_and(|s| s.fract() == 0.0);
            let xs: Vec<f64> = match (r.step, r.count) {
                (Some(step), _) if step > 0.0 => {
                    let n = ((r.to - r.from) / step + 1e-9).floor().max(0.0) as usize + 1;
                    (0..n.min(100_001))
                        .map(|i| r.from + step * i as f64)
                        .collect()
                }
                (_, Some(n)) if n > 0 => (0..n)
                    .map(|i| {
                        let t = if n == 1 {
                            0.0
                        } else {
                            i as f64 / (n - 1) as f64
                        };
                        if r.log {
                            (r.from.ln() + t * (r.to.ln() - r.from.ln())).exp()
                        } else {
                            r.from + t * (r.to - r.from)
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            };
            xs.into_iter()
                .map(|x| number(round_sig(x, 12), integer))
                .collect()
        }
    }
}

/// splitmix64: tiny, and stable forever (a library generator could change its stream).
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn draw(axis: &RandomAxis, rng: &mut SplitMix) -> Value {
    let u = rng.next_f64();
    match axis {
        RandomAxis::Choice(v) => {
            v[((u * v.len() as f64) as usize).min(v.len().saturating_sub(1))].clone()
        }
        RandomAxis::Uniform(r) => {
            let (lo, hi) = (r.min.as_f64().unwrap_or(0.0), r.max.as_f64().unwrap_or(0.0));
            if r.log {
                number(
                    round_sig((lo.ln() + u * (hi.ln() - lo.ln())).exp(), 4),
                    false,
                )
            } else if r.min.is_i64() && r.max.is_i64() {
                number((lo + (u * (hi - lo + 1.0)).floor()).min(hi), true)
            } else {
                number(round_sig(lo + u * (hi - lo), 4), false)
            }
        }
    }
}

/// Every run's key/value assignments, in run order.
pub fn assignments(sweep: &Sweep) -> Vec<Vec<(String, Value)>> {
    let mut runs: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (k, axis) in &sweep.grid {
        let values = axis_values(axis);
        runs = runs
            .into_iter()
            .flat_map(|run| {
                values.iter().map(move |v| {
                    let mut r = run.clone();
                    r.push((k.clone(), v.clone()));
                    r
                })
            })
            .collect();
    }
    let zip: Vec<(String, Vec<Value>)> = sweep
        .zip
        .iter()
        .map(|(k, a)| (k.clone(), axis_values(a)))
        .collect();
    if let Some(rows) = zip.first().map(|(_, v)| v.len()) {
        let rows: Vec<Vec<(String, Value)>> = (0..rows)
            .map(|i| {
                zip.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.get(i)?.clone())))
                    .collect()
            })
            .collect();
        runs = runs
            .into_iter()
            .flat_map(|run| {
                rows.iter()
                    .map(move |row| [run.clone(), row.clone()].concat())
            })
            .collect();
    }
    if let Some(r) = &sweep.random {
        let mut rng = SplitMix(r.seed);
        let samples: Vec<Vec<(String, Value)>> = (0..r.count)
            .map(|_| {
                r.axes
                    .iter()
                    .map(|(k, a)| (k.clone(), draw(a, &mut rng)))
                    .collect()
            })
            .collect();
        runs = runs
            .into_iter()
            .flat_map(|run| {
                samples
                    .iter()
                    .map(move |s| [run.clone(), s.clone()].concat())
            })
            .collect();
    }
    for run in &mut runs {
        run.sort_by(|a, b| a.0.cmp(&b.0));
    }
    runs
}

/// The runs of an experiment: one (with no values) when it has no sweep.
pub fn expand(loaded: &Loaded, exp: &Experiment) -> Result<Vec<Run>, Errors> {
    let Some(sweep) = &exp.sweep else {
        return Ok(vec![Run {
            id: run_id(exp),
            values: Vec::new(),
            experiment: exp.clone(),
        }]);
    };
    let mut base = loaded.tree.clone();
    base.remove("sweep");
    let mut runs = Vec::new();
    for (n, values) in assignments(sweep).into_iter().enumerate() {
        let mut tree = base.clone();
        let label = values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let in_run = |mut errs: Errors| {
            for e in &mut errs.0 {
                e.message = format!("in sweep run {} ({label}): {}", n + 1, e.message);
            }
            errs
        };
        for (k, v) in &values {
            let origin = axis_origin(loaded, k);
            let segs = key_segments(k, &origin);
            let items = match v {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            set_path(&mut tree, &loaded.shape, &segs, items, &origin, None, None)
                .map_err(|e| in_run(e.into()))?;
        }
        let experiment = finish(loaded, &tree).map_err(in_run)?;
        runs.push(Run {
            id: run_id(&experiment),
            values,
            experiment,
        });
    }
    Ok(runs)
}

/// Where the sweep wrote axis `k` (its node name).
fn axis_origin(loaded: &Loaded, k: &str) -> Origin {
    for section in ["grid", "zip", "random"] {
        let (node, exact) = loaded.tree.find(&at(section, k));
        if exact {
            return node.origin.clone();
        }
    }
    Origin::Default
}

/// The segments of a sweep key, each located inside the key's text for errors.
fn key_segments(k: &str, origin: &Origin) -> Vec<(String, Origin)> {
    let mut offset = 0;
    k.split('.')
        .map(|part| {
            let o = match origin {
                Origin::At {
                    src, offset: start, ..
                } => {
                    let quoted = src.text[*start..].starts_with('"') as usize;
                    Origin::at(src, start + quoted + offset, part.len())
                }
                Origin::Default => Origin::Default,
            };
            offset += part.len() + 1;
            (part.to_string(), o)
        })
        .collect()
}

/// `key=value ...`: what varies in this run, for `plan`.
pub fn describe(run: &Run) -> String {
    run.values
        .iter()
        .map(|(k, v)| format!("{k}={}", compact(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
