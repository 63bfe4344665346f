//! KDL v2 text -> origin-tracking tree, guided by the schema.
//!
//! The mapping (README.md has the full table): a node is a key; one argument is a scalar, several
//! are a list; properties and children of a node are the fields of an object and mean the same
//! (`optimizer eps=1e-8` = `optimizer { eps 1e-8 }`); a node's first argument sets the field the
//! schema names in `x-kdl-arg` (`stage "sft"` sets `kind`); a list of objects is written as
//! repeated nodes (`stage`, `source`). Unknown keys, wrong types and values outside an enumeration
//! are reported here, at the KDL text, with every problem in the file at once.

use std::sync::Arc;

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use serde_json::Value;

use super::error::{quoted_list, suggest, Error, Errors, Origin, SourceText};
use super::schema::{Lookup, Shape};
use super::tree::{Node, Val};

/// One parsed file: its tree and the `extends` it names (in order).
pub struct Parsed {
    pub tree: Node,
    pub extends: Vec<(String, Origin)>,
}

/// Parses a whole experiment file (the root object of the schema).
pub fn parse_document(src: &Arc<SourceText>, shape: &Shape) -> Result<Parsed, Errors> {
    let doc = KdlDocument::parse(&src.text).map_err(|e| {
        let errors = e.diagnostics.iter().map(|d| {
            let msg = d.message.clone().unwrap_or_else(|| "invalid KDL".into());
            let (start, len) = (d.span.offset(), d.span.len());
            let err = Error::new(
                Origin::at(src, start, len),
                "",
                format!("KDL syntax: {msg}"),
            );
            let word = src.text.get(start..start + len).unwrap_or("");
            let help = if matches!(word, "true" | "false" | "null") {
                format!("KDL v2 writes `#{word}`")
            } else {
                d.help
                    .clone()
                    .unwrap_or_else(|| "see https://kdl.dev for the KDL v2 syntax".into())
            };
            err.help(help)
        });
        Errors(errors.collect())
    })?;
    let mut conv = Conv {
        shape,
        src: src.clone(),
        errors: Vec::new(),
    };
    let mut extends = Vec::new();
    let mut nodes = Vec::new();
    for node in doc.nodes() {
        if node.name().value() == "extends" {
            for e in node.entries() {
                match (e.name(), e.value()) {
                    (None, KdlValue::String(s)) => extends.push((s.clone(), conv.entry_origin(e))),
                    _ => conv.err(
                        conv.entry_origin(e),
                        "extends",
                        "`extends` takes file paths: `extends \"base.kdl\"`",
                    ),
                }
            }
            if node.entries().is_empty() {
                conv.err(
                    conv.name_origin(node),
                    "extends",
                    "`extends` needs a file path: `extends \"base.kdl\"`",
                );
            }
        } else {
            nodes.push(node);
        }
    }
    let root = shape.root();
    let objects = shape.objects(root, None);
    let mut tree = Node::obj(Origin::at(src, 0, 0));
    conv.fields(&mut tree, &objects, &[], &nodes, "");
    if conv.errors.is_empty() {
        Ok(Parsed { tree, extends })
    } else {
        Err(Errors(conv.errors))
    }
}

/// Parses the value part of `--set KEY=VALUE` (and sweep values) as KDL arguments: `6e-3`,
/// `0.9 0.95`, `#true`, `"text"`; anything that is not KDL is taken as one string (paths).
pub fn parse_args(text: &str) -> Vec<Value> {
    match KdlDocument::parse(&format!("_ {text}")) {
        Ok(doc) if doc.nodes().len() == 1 => {
            let n = &doc.nodes()[0];
            if n.children().is_none() && n.entries().iter().all(|e| e.name().is_none()) {
                return n.entries().iter().map(|e| json_of(e.value())).collect();
            }
            vec![Value::String(text.to_string())]
        }
        _ => vec![Value::String(text.to_string())],
    }
}

fn json_of(v: &KdlValue) -> Value {
    match v {
        KdlValue::String(s) => Value::String(s.clone()),
        KdlValue::Integer(i) => i64::try_from(*i)
            .map(Value::from)
            .or_else(|_| u64::try_from(*i).map(Value::from))
            .unwrap_or(Value::Null),
        KdlValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        KdlValue::Bool(b) => Value::Bool(*b),
        KdlValue::Null => Value::Null,
    }
}

/// Checks a scalar against the key's schema; whole floats become integers where integers are
/// wanted (`max-tokens 4e9`). Errors are (message, help).
pub fn check_scalar(
    shape: &Shape,
    s: &Value,
    v: Value,
    key: &str,
) -> Result<Value, (String, Option<String>)> {
    let types = shape.scalar_types(s);
    if types.is_empty() {
        return Ok(v); // any JSON value (sweep lists)
    }
    let has = |t: &str| types.contains(&t);
    let expected = || {
        let names: Vec<&str> = types
            .iter()
            .map(|t| match *t {
                "number" => "a number",
                "integer" => "a whole number",
                "boolean" => "#true or #false",
                "string" => "a string",
                _ => "#null",
            })
            .collect();
        names.join(" or ")
    };
    let found = match &v {
        Value::Null if has("null") => return Ok(v),
        Value::Bool(_) if has("boolean") => return Ok(v),
        Value::Number(n) if n.is_f64() && has("integer") && !has("number") => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                return check_min(shape, s, Value::from(f as i64), key);
            }
            format!("{f}")
        }
        Value::Number(_) if has("number") || has("integer") => return check_min(shape, s, v, key),
        Value::String(text) if has("string") => {
            if let Some(allowed) = shape.allowed_values(s) {
                if !allowed.contains(&text.as_str()) {
                    let what = match key.rsplit_once('.') {
                        Some((_, "kind")) => {
                            format!("{} kind", key.split('.').next().unwrap_or(key))
                        }
                        _ => key.rsplit('.').next().unwrap_or(key).to_string(),
                    };
                    let msg = format!(
                        "unknown {what} `{text}`; expected one of {}",
                        quoted_list(allowed.iter().copied())
                    );
                    let help = suggest(text, allowed.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"));
                    return Err((msg, help));
                }
            }
            return Ok(v);
        }
        Value::String(s) => format!("the string \"{s}\""),
        other => other.to_string(),
    };
    let help = has("boolean").then(|| "KDL v2 writes booleans as #true and #false".to_string());
    Err((format!("expected {}, found {found}", expected()), help))
}

fn check_min(
    shape: &Shape,
    s: &Value,
    v: Value,
    key: &str,
) -> Result<Value, (String, Option<String>)> {
    match (shape.minimum(s), v.as_f64()) {
        (Some(min), Some(x)) if x < min => {
            Err((format!("`{key}` must be at least {min}, found {x}"), None))
        }
        _ => Ok(v),
    }
}

struct Conv<'a> {
    shape: &'a Shape,
    src: Arc<SourceText>,
    errors: Vec<Error>,
}

impl<'a> Conv<'a> {
    fn err(&mut self, origin: Origin, key: &str, msg: impl Into<String>) {
        self.errors.push(Error::new(origin, key, msg));
    }

    fn name_origin(&self, node: &KdlNode) -> Origin {
        let s = node.name().span();
        Origin::at(&self.src, s.offset(), s.len())
    }

    /// The value of an argument, or of a property (after its `=`).
    fn entry_origin(&self, e: &KdlEntry) -> Origin {
        let (start, len) = (e.span().offset(), e.span().len());
        if e.name().is_some() {
            let text = self.src.text.get(start..start + len).unwrap_or("");
            if let Some(eq) = text.find('=') {
                let skip = text[eq + 1..].len() - text[eq + 1..].trim_start().len();
                return Origin::at(&self.src, start + eq + 1 + skip, len - eq - 1 - skip);
            }
        }
        Origin::at(&self.src, start, len)
    }

    fn key_origin(&self, e: &KdlEntry) -> Origin {
        match e.name() {
            Some(n) => Origin::at(&self.src, n.span().offset(), n.span().len()),
            None => self.entry_origin(e),
        }
    }

    /// Fills `obj` from properties and child nodes, with `objects` the object schemas it may be.
    fn fields(
        &mut self,
        obj: &mut Node,
        objects: &[&'a Value],
        props: &[&KdlEntry],
        children: &[&KdlNode],
        path: &str,
    ) {
        let join = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}.{k}")
            }
        };
        for e in props {
            let name = e.name().map(|n| n.value()).unwrap_or_default();
            let key = join(name);
            let Some(s) = self.lookup(objects, name, self.key_origin(e), &key) else {
                continue;
            };
            if self
                .shape
                .items(s)
                .is_some_and(|i| !self.shape.objects(i, None).is_empty())
                || !self.shape.objects(s, None).is_empty() && self.shape.items(s).is_none()
            {
                self.err(
                    self.key_origin(e),
                    &key,
                    format!("`{name}` is a block, not a value; write it as a child node"),
                );
                continue;
            }
            let value = if self.shape.items(s).is_some() {
                self.list(&[*e], s, &key)
            } else {
                self.scalar(e, s, &key)
            };
            if let Some(v) = value {
                self.put(obj, name, v, &key);
            }
        }
        for child in children {
            let name = child.name().value();
            let key = join(name);
            let Some(s) = self.lookup(objects, name, self.name_origin(child), &key) else {
                continue;
            };
            let item_objects = self
                .shape
                .items(s)
                .filter(|i| !self.shape.objects(i, None).is_empty());
            if let Some(item) = item_objects {
                // A list of objects: every node is one more element, named in errors by its
                // `name` or `kind` like `--set` names it (`stage.pretrain.lr`), else by index.
                let count = match obj.get(name) {
                    Some(Node {
                        val: Val::Arr(items),
                        ..
                    }) => items.len(),
                    _ => 0,
                };
                let key = format!(
                    "{key}.{}",
                    self.item_label(child, item).unwrap_or(count.to_string())
                );
                if let Some(v) = self.node(child, item, &key) {
                    match obj.get_mut(name) {
                        Some(Node {
                            val: Val::Arr(items),
                            ..
                        }) => items.push(v),
                        _ => obj.set(name, Node::new(Val::Arr(vec![v]), self.name_origin(child))),
                    }
                }
            } else if let Some(v) = self.node(child, s, &key) {
                self.put(obj, name, v, &key);
            }
        }
    }

    fn item_label(&self, node: &KdlNode, item: &Value) -> Option<String> {
        let prop = |k: &str| {
            node.entries()
                .iter()
                .find(|e| e.name().is_some_and(|n| n.value() == k))
        };
        if let Some(KdlValue::String(s)) = prop("name").map(|e| e.value()) {
            return Some(s.clone());
        }
        let first_arg = node.entries().iter().find(|e| e.name().is_none());
        match (
            self.shape.extension(item, "x-kdl-arg"),
            first_arg.map(|e| e.value()),
        ) {
            (Some("kind"), Some(KdlValue::String(s))) => Some(s.clone()),
            _ => None,
        }
    }

    fn put(&mut self, obj: &mut Node, name: &str, v: Node, key: &str) {
        if let Some(old) = obj.get(name) {
            let at = old.origin.line_col().map_or(String::new(), |(l, c)| {
                format!(" (first at line {l}, column {c})")
            });
            let e = Error::new(
                v.origin.clone(),
                key,
                format!("`{name}` is set twice in this block{at}"),
            )
            .help(
                "keep one of them; to change an inherited value, set it in the file that extends",
            );
            self.errors.push(e);
            return;
        }
        obj.set(name, v);
    }

    fn lookup(
        &mut self,
        objects: &[&'a Value],
        name: &str,
        origin: Origin,
        key: &str,
    ) -> Option<&'a Value> {
        match self.shape.property(objects, name) {
            Lookup::Found(s) => Some(s),
            Lookup::Unknown(known) => {
                let parent = key.rsplit_once('.').map_or("the experiment", |(p, _)| p);
                let mut e = Error::new(
                    origin,
                    key,
                    format!("unknown key `{name}` in {}", pretty_parent(parent)),
                );
                e = match suggest(name, known.iter().copied()) {
                    Some(s) => e.help(format!("did you mean `{s}`?")),
                    None => e.help(format!(
                        "known keys here: {}",
                        quoted_list(known.iter().copied())
                    )),
                };
                self.errors.push(e);
                None
            }
        }
    }

    /// A node whose schema is `s` (not a list of objects).
    fn node(&mut self, node: &KdlNode, s: &'a Value, key: &str) -> Option<Node> {
        if let Some(ty) = node.ty() {
            let o = Origin::at(&self.src, ty.span().offset(), ty.span().len());
            self.err(
                o,
                key,
                "type annotations like `(u8)` have no meaning in an experiment; remove it",
            );
            return None;
        }
        let args: Vec<&KdlEntry> = node
            .entries()
            .iter()
            .filter(|e| e.name().is_none())
            .collect();
        let props: Vec<&KdlEntry> = node
            .entries()
            .iter()
            .filter(|e| e.name().is_some())
            .collect();
        let children: Vec<&KdlNode> = node
            .children()
            .map(|d| d.nodes().iter().collect())
            .unwrap_or_default();
        let objects = self.shape.objects(s, None);
        let name = node.name().value();
        if self.shape.items(s).is_some()
            && (objects.is_empty() || props.is_empty() && children.is_empty())
        {
            if !props.is_empty() || !children.is_empty() {
                self.err(self.name_origin(node), key, format!("`{name}` holds a list: write its values after the key, like `{name} 1 2 3`"));
                return None;
            }
            return self.list(&args, s, key).map(|mut n| {
                n.origin = self.name_origin(node);
                n
            });
        }
        if !objects.is_empty() {
            return self.object(node, s, &args, &props, &children, key);
        }
        match (args.as_slice(), props.is_empty() && children.is_empty()) {
            ([one], true) => self.scalar(one, s, key),
            ([], true) => {
                self.err(
                    self.name_origin(node),
                    key,
                    format!("`{name}` needs a value, like `{name} 1`"),
                );
                None
            }
            _ => {
                let o = args
                    .get(1)
                    .or(props.first())
                    .map_or(self.name_origin(node), |e| self.entry_origin(e));
                self.err(
                    o,
                    key,
                    format!("`{name}` takes exactly one value, like `{name} 1`"),
                );
                None
            }
        }
    }

    fn object(
        &mut self,
        node: &KdlNode,
        s: &'a Value,
        args: &[&KdlEntry],
        props: &[&KdlEntry],
        children: &[&KdlNode],
        key: &str,
    ) -> Option<Node> {
        let name = node.name().value();
        let arg_key = self.shape.extension(s, "x-kdl-arg");
        let mut obj = Node::obj(self.name_origin(node));
        match (args, arg_key) {
            ([], _) => {}
            ([one], Some(k)) => {
                let tags = self.shape.tags(s);
                let ks = match self.shape.property(&self.shape.objects(s, None), k) {
                    Lookup::Found(ks) => ks,
                    Lookup::Unknown(_) => return None,
                };
                let v = if tags.is_empty() {
                    self.scalar(one, ks, &format!("{key}.{k}"))?
                } else {
                    self.tag(one, &tags, key)?
                };
                obj.set(k, v);
            }
            (_, Some(k)) => {
                self.err(self.entry_origin(args[1]), key, format!("`{name}` takes one value (its `{k}`); put the rest in properties or a block"));
                return None;
            }
            (_, None) => {
                self.err(
                    self.entry_origin(args[0]),
                    key,
                    format!(
                        "`{name}` takes no value; write its fields as a block: `{name} {{ ... }}`"
                    ),
                );
                return None;
            }
        }
        // A tagged union (`schedule`): the kind chooses which keys exist.
        let tags = self.shape.tags(s);
        let mut tag = obj.get("kind").and_then(Node::as_str).map(String::from);
        if !tags.is_empty() && tag.is_none() {
            let written = props
                .iter()
                .find(|e| e.name().is_some_and(|n| n.value() == "kind"))
                .copied();
            match written {
                Some(e) => {
                    tag = self
                        .tag(e, &tags, key)
                        .and_then(|n| n.as_str().map(String::from))
                }
                None => {
                    let msg = format!(
                        "`{name}` needs a kind first: one of {}",
                        quoted_list(tags.iter().copied())
                    );
                    self.err(self.name_origin(node), key, msg);
                }
            }
            tag.as_ref()?;
        }
        let objects = self.shape.objects(s, tag.as_deref());
        self.fields(&mut obj, &objects, props, children, key);
        Some(obj)
    }

    fn tag(&mut self, e: &KdlEntry, tags: &[&str], key: &str) -> Option<Node> {
        match e.value() {
            KdlValue::String(t) if tags.contains(&t.as_str()) => Some(Node::new(
                Val::Scalar(Value::String(t.clone())),
                self.entry_origin(e),
            )),
            v => {
                let what = key.rsplit('.').next().unwrap_or(key);
                let text = v.as_string().unwrap_or_default();
                let mut err = Error::new(
                    self.entry_origin(e),
                    key,
                    format!(
                        "unknown {what} kind `{v}`; expected one of {}",
                        quoted_list(tags.iter().copied())
                    ),
                );
                if let Some(s) = suggest(text, tags.iter().copied()) {
                    err = err.help(format!("did you mean `{s}`?"));
                }
                self.errors.push(err);
                None
            }
        }
    }

    fn list(&mut self, args: &[&KdlEntry], s: &'a Value, key: &str) -> Option<Node> {
        let item = self.shape.items(s)?;
        let mut out = Vec::new();
        for e in args {
            out.push(self.scalar(e, item, key)?);
        }
        let origin = args
            .first()
            .map_or(Origin::Default, |e| self.entry_origin(e));
        let (min, max) = self.shape.item_count(s);
        let n = out.len() as u64;
        if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
            let want = if min == max {
                format!("exactly {}", min.unwrap_or(0))
            } else {
                format!("{min:?}..{max:?}")
            };
            self.err(
                origin,
                key,
                format!("`{key}` takes {want} values, found {n}"),
            );
            return None;
        }
        Some(Node::new(Val::Arr(out), origin))
    }

    fn scalar(&mut self, e: &KdlEntry, s: &Value, key: &str) -> Option<Node> {
        let origin = self.entry_origin(e);
        if let Some(ty) = e.ty() {
            let o = Origin::at(&self.src, ty.span().offset(), ty.span().len());
            self.err(
                o,
                key,
                "type annotations like `(u8)` have no meaning in an experiment; remove it",
            );
            return None;
        }
        match check_scalar(self.shape, s, json_of(e.value()), key) {
            Ok(v) => Some(Node::new(Val::Scalar(v), origin)),
            Err((msg, help)) => {
                let mut err = Error::new(origin, key, msg);
                err.help = help;
                self.errors.push(err);
                None
            }
        }
    }
}

fn pretty_parent(parent: &str) -> String {
    if parent == "the experiment" {
        parent.to_string()
    } else {
        format!("`{parent}`")
    }
}
