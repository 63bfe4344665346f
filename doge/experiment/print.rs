//! Resolved experiment -> KDL text, in the field order of the types, so `doge exp check` shows
//! the experiment the way it is written (and the output parses back to the same experiment).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::id::EVAL_KEYS;
use super::schema::{Lookup, Shape};
use super::types::Experiment;

/// A JSON value that keeps object keys in the order they were serialized.
enum Ordered {
    Scalar(Value),
    Arr(Vec<Ordered>),
    Obj(Vec<(String, Ordered)>),
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(v.into()))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Scalar(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = a.next_element()? {
                    out.push(x);
                }
                Ok(Ordered::Arr(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry()? {
                    out.push((k, v));
                }
                Ok(Ordered::Obj(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The experiment as KDL (eval stages without their unused training keys).
pub fn to_kdl(exp: &Experiment, shape: &Shape) -> String {
    let text = serde_json::to_string(exp).expect("an experiment serializes");
    let Ok(Ordered::Obj(mut fields)) = serde_json::from_str::<Ordered>(&text) else {
        return String::new();
    };
    for (k, v) in &mut fields {
        if let (true, Ordered::Arr(stages)) = (k == "stage", v) {
            for stage in stages {
                if let Ordered::Obj(f) = stage {
                    let eval = f.iter().any(|(k, v)| {
                        k == "kind" && matches!(v, Ordered::Scalar(Value::String(s)) if s == "eval")
                    });
                    if eval {
                        f.retain(|(k, _)| EVAL_KEYS.contains(&k.as_str()));
                    }
                }
            }
        }
    }
    let mut out = String::new();
    let objects = shape.objects(shape.root(), None);
    print_fields(&mut out, &fields, &objects, shape, 0);
    out
}

fn print_fields(
    out: &mut String,
    fields: &[(String, Ordered)],
    objects: &[&Value],
    shape: &Shape,
    depth: usize,
) {
    const ANY: &Value = &Value::Bool(true);
    for (k, v) in fields {
        let s = match shape.property(objects, k) {
            Lookup::Found(s) => s,
            Lookup::Unknown(_) => ANY,
        };
        match v {
            Ordered::Scalar(x) => line(out, depth, &format!("{} {}", ident(k), value(x))),
            Ordered::Arr(items) if items.iter().all(|i| matches!(i, Ordered::Scalar(_))) => {
                if !items.is_empty() {
                    let vals: Vec<String> = items
                        .iter()
                        .map(|i| {
                            if let Ordered::Scalar(x) = i {
                                value(x)
                            } else {
                                String::new()
                            }
                        })
                        .collect();
                    line(out, depth, &format!("{} {}", ident(k), vals.join(" ")));
                }
            }
            Ordered::Arr(items) => {
                let item = shape.items(s).unwrap_or(ANY);
                for i in items {
                    if let Ordered::Obj(f) = i {
                        print_object(out, k, f, item, shape, depth);
                    }
                }
            }
            Ordered::Obj(f) => print_object(out, k, f, s, shape, depth),
        }
    }
}

fn print_object(
    out: &mut String,
    k: &str,
    fields: &[(String, Ordered)],
    s: &Value,
    shape: &Shape,
    depth: usize,
) {
    let mut head = ident(k);
    let arg = shape.extension(s, "x-kdl-arg");
    let tag = fields.iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("kind", Ordered::Scalar(Value::String(t))) => Some(t.as_str()),
        _ => None,
    });
    let mut rest: Vec<&(String, Ordered)> = Vec::new();
    for f in fields {
        match (&f.1, Some(f.0.as_str()) == arg) {
            (Ordered::Scalar(x), true) => head = format!("{head} {}", value(x)),
            _ => rest.push(f),
        }
    }
    let all_scalar = rest.iter().all(|(_, v)| matches!(v, Ordered::Scalar(_)));
    if all_scalar && rest.len() <= 4 {
        for (k, v) in &rest {
            if let Ordered::Scalar(x) = v {
                head = format!("{head} {}={}", ident(k), value(x));
            }
        }
        if rest.is_empty() && arg.is_none() {
            head.push_str(" {}");
        }
        return line(out, depth, &head);
    }
    line(out, depth, &format!("{head} {{"));
    let owned: Vec<(String, Ordered)> = rest
        .into_iter()
        .map(|(k, v)| (k.clone(), clone(v)))
        .collect();
    print_fields(out, &owned, &shape.objects(s, tag), shape, depth + 1);
    line(out, depth, "}");
}

fn clone(v: &Ordered) -> Ordered {
    match v {
        Ordered::Scalar(x) => Ordered::Scalar(x.clone()),
        Ordered::Arr(items) => Ordered::Arr(items.iter().map(clone).collect()),
        Ordered::Obj(f) => Ordered::Obj(f.iter().map(|(k, v)| (k.clone(), clone(v))).collect()),
    }
}

fn line(out: &mut String, depth: usize, text: &str) {
    out.push_str(&"    ".repeat(depth));
    out.push_str(text);
    out.push('\n');
}

/// A node or property name, quoted when it is not a plain KDL identifier.
fn ident(k: &str) -> String {
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !matches!(k, "true" | "false" | "null" | "inf" | "nan");
    if plain {
        k.to_string()
    } else {
        quote(k)
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn value(v: &Value) -> String {
    match v {
        Value::Null => "#null".into(),
        Value::Bool(b) => format!("#{b}"),
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}
