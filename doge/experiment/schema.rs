//! The JSON Schema of an experiment (generated from the types) and a small reader of it.
//!
//! The KDL mapping, `--set` and sweeps all ask the schema what a key is (object, list, scalar
//! of which types, one of which values), so the Rust types stay the single source of truth: add a
//! field to `types.rs` and it is accepted in KDL, documented in the schema and checked.

use serde_json::Value;

use super::types::Experiment;

/// The schema that `doge schema` prints and `schemas/experiment.schema.json` holds.
pub fn schema_json() -> Value {
    serde_json::to_value(schemars::schema_for!(Experiment)).expect("a schema is JSON")
}

/// `doge schema` output: pretty JSON with a final newline.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&schema_json()).expect("a schema is JSON");
    s.push('\n');
    s
}

/// What a key holds, as far as the KDL mapping cares.
pub struct Shape {
    root: Value,
}

/// The result of looking a key up in an object schema.
pub enum Lookup<'a> {
    Found(&'a Value),
    /// The known keys, for "did you mean".
    Unknown(Vec<&'a str>),
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            root: schema_json(),
        }
    }
}

impl Shape {
    /// The shape of another root type's schema (a KDL task file).
    pub fn of(root: Value) -> Shape {
        Shape { root }
    }

    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Follows `$ref`s (all are `#/$defs/...`).
    pub fn deref<'a>(&'a self, mut s: &'a Value) -> &'a Value {
        while let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix('#').and_then(|p| self.root.pointer(p)) {
                Some(t) => s = t,
                None => break,
            }
        }
        s
    }

    /// The alternatives of a schema (refs followed, `null` alternatives dropped).
    pub fn branches<'a>(&'a self, s: &'a Value) -> Vec<&'a Value> {
        let s = self.deref(s);
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = s.get(key).and_then(Value::as_array) {
                return alts.iter().flat_map(|b| self.branches(b)).collect();
            }
        }
        if types_of(s) == ["null"] {
            return Vec::new();
        }
        vec![s]
    }

    /// A schema extension (`x-kdl-arg`, `x-path`) on the schema or what it refers to.
    pub fn extension<'a>(&'a self, s: &'a Value, name: &str) -> Option<&'a str> {
        s.get(name)
            .or_else(|| self.deref(s).get(name))
            .and_then(Value::as_str)
    }

    pub fn allows_null(&self, s: &Value) -> bool {
        let s = self.deref(s);
        if types_of(s).contains(&"null") {
            return true;
        }
        ["anyOf", "oneOf"].iter().any(|k| {
            s.get(*k)
                .and_then(Value::as_array)
                .is_some_and(|alts| alts.iter().any(|b| self.allows_null(b)))
        })
    }

    /// The item schema when the key holds a list (`true` = anything).
    pub fn items<'a>(&'a self, s: &'a Value) -> Option<&'a Value> {
        const ANY: &Value = &Value::Bool(true);
        self.branches(s)
            .into_iter()
            .find(|b| types_of(b).contains(&"array"))
            .map(|b| b.get("items").unwrap_or(ANY))
    }

    /// The list's length bounds (`betas` holds exactly two).
    pub fn item_count(&self, s: &Value) -> (Option<u64>, Option<u64>) {
        let b = self
            .branches(s)
            .into_iter()
            .find(|b| types_of(b).contains(&"array"));
        let get = |k: &str| b.and_then(|b| b.get(k)).and_then(Value::as_u64);
        (get("minItems"), get("maxItems"))
    }

    /// The object alternatives, narrowed to the one whose `kind` is `tag` when given.
    pub fn objects<'a>(&'a self, s: &'a Value, tag: Option<&str>) -> Vec<&'a Value> {
        let all: Vec<&Value> = self
            .branches(s)
            .into_iter()
            .filter(|b| is_object(b))
            .collect();
        match tag {
            Some(t) if all.iter().any(|b| tag_of(b).is_some()) => {
                all.into_iter().filter(|b| tag_of(b) == Some(t)).collect()
            }
            _ => all,
        }
    }

    /// The `kind` values of a tagged union (`wsd`, `cosine`, `constant`).
    pub fn tags<'a>(&'a self, s: &'a Value) -> Vec<&'a str> {
        self.branches(s).into_iter().filter_map(tag_of).collect()
    }

    /// The schema of `key` in one of `objects`, or the keys it could have been.
    pub fn property<'a>(&'a self, objects: &[&'a Value], key: &str) -> Lookup<'a> {
        for o in objects {
            if let Some(p) = o.get("properties").and_then(|p| p.get(key)) {
                return Lookup::Found(p);
            }
            if let Some(extra) = o.get("additionalProperties").filter(|v| v.is_object()) {
                return Lookup::Found(extra);
            }
        }
        let mut known: Vec<&str> = objects
            .iter()
            .filter_map(|o| o.get("properties").and_then(Value::as_object))
            .flat_map(|p| p.keys().map(String::as_str))
            .collect();
        known.sort_unstable();
        known.dedup();
        Lookup::Unknown(known)
    }

    /// Scalar types a key accepts (`string`, `number`, `integer`, `boolean`, `null`).
    pub fn scalar_types<'a>(&'a self, s: &'a Value) -> Vec<&'a str> {
        let mut out: Vec<&str> = self
            .branches(s)
            .into_iter()
            .flat_map(|b| {
                let t = types_of(b);
                if t.is_empty() && (b.get("const").is_some() || b.get("enum").is_some()) {
                    vec!["string"]
                } else {
                    t
                }
            })
            .filter(|t| !matches!(*t, "array" | "object"))
            .collect();
        if self.allows_null(s) {
            out.push("null");
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The allowed values when the key is an enumeration.
    pub fn allowed_values<'a>(&'a self, s: &'a Value) -> Option<Vec<&'a str>> {
        let mut out = Vec::new();
        for b in self.branches(s) {
            if let Some(c) = b.get("const").and_then(Value::as_str) {
                out.push(c);
            } else if let Some(e) = b.get("enum").and_then(Value::as_array) {
                out.extend(e.iter().filter_map(Value::as_str));
            } else {
                return None;
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// The lower bound of a number (`0` for unsigned integers).
    pub fn minimum(&self, s: &Value) -> Option<f64> {
        self.branches(s)
            .into_iter()
            .find_map(|b| b.get("minimum").and_then(Value::as_f64))
    }
}

fn types_of(s: &Value) -> Vec<&str> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn is_object(s: &Value) -> bool {
    types_of(s).contains(&"object") || s.get("properties").is_some()
}

fn tag_of(s: &Value) -> Option<&str> {
    s.pointer("/properties/kind/const").and_then(Value::as_str)
}
