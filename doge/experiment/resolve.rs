//! File -> resolved experiment: `extends` chains, local paths, `--set` overrides, then the typed
//! value and its checks.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::error::{quoted_list, suggest, Error, Errors, Origin, SourceText};
use super::kdl::{check_scalar, parse_args, parse_document};
use super::schema::{Lookup, Shape};
use super::spec::is_local;
use super::tree::{merge, Node, Seg, Val};
use super::types::Experiment;
use super::validate::validate;

/// An experiment file after `extends` and `--set`, before typing: what sweeps expand.
pub struct Loaded {
    pub tree: Node,
    /// Absolute directory of the top file.
    pub base_dir: PathBuf,
    pub shape: Shape,
}

/// Reads `path` and everything it extends, then applies `sets` (`KEY=VALUE`, in order).
pub fn load(path: &Path, sets: &[String]) -> Result<Loaded, Errors> {
    let shape = Shape::default();
    let top = absolute(path);
    let base_dir = top.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut stack = Vec::new();
    let mut tree = load_file(
        &top,
        &path.display().to_string(),
        &base_dir,
        &shape,
        &mut stack,
        None,
    )?;
    let cwd = std::env::current_dir().unwrap_or_default();
    for (i, set) in sets.iter().enumerate() {
        let src = Arc::new(SourceText {
            name: format!("<--set {}>", i + 1),
            text: set.clone(),
            path: None,
        });
        apply_set(&mut tree, &shape, &src, &cwd, &base_dir)?;
    }
    Ok(Loaded {
        tree,
        base_dir,
        shape,
    })
}

fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    normalize(&joined)
}

/// Lexical `.`/`..` removal (the files may not exist yet, so no canonicalize).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `target` relative to `base` (both absolute), written `./x` or `../x` so it reads as local.
fn relative(target: &Path, base: &Path) -> String {
    let t: Vec<_> = target.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    let s = rel.to_string_lossy().into_owned();
    if s.starts_with("..") {
        s
    } else if s.is_empty() {
        ".".into()
    } else {
        format!("./{s}")
    }
}

fn load_file(
    path: &Path,
    display: &str,
    base_dir: &Path,
    shape: &Shape,
    stack: &mut Vec<PathBuf>,
    from: Option<&Origin>,
) -> Result<Node, Errors> {
    let origin = from.cloned().unwrap_or(Origin::Default);
    if let Some(i) = stack.iter().position(|p| p == path) {
        let chain: Vec<String> = stack[i..]
            .iter()
            .chain([&path.to_path_buf()])
            .map(|p| file_name(p))
            .collect();
        let e = Error::new(origin, "extends", format!("`extends` cycle: {}", chain.join(" -> ")))
            .help("a file cannot extend itself, directly or through others; move the shared part to a third file");
        return Err(e.into());
    }
    let text = std::fs::read_to_string(path).map_err(|err| {
        let msg = match from {
            Some(_) => format!("cannot read extended file {display}: {err}"),
            None => format!("cannot read {display}: {err}"),
        };
        Error::new(
            origin.clone(),
            if from.is_some() { "extends" } else { "" },
            msg,
        )
        .help("`extends` paths are relative to the file that writes them")
    })?;
    let src = Arc::new(SourceText {
        name: display.to_string(),
        text,
        path: Some(path.to_path_buf()),
    });
    let parsed = parse_document(&src, shape)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut tree = parsed.tree;
    rebase(&mut tree, shape, shape.root(), dir, base_dir);
    stack.push(path.to_path_buf());
    let mut base: Option<Node> = None;
    for (rel, origin) in &parsed.extends {
        let parent_path = normalize(&dir.join(rel));
        let parent_display = normalize(
            &Path::new(display)
                .parent()
                .unwrap_or(Path::new(""))
                .join(rel),
        );
        let parent = load_file(
            &parent_path,
            &parent_display.display().to_string(),
            base_dir,
            shape,
            stack,
            Some(origin),
        )?;
        base = Some(match base {
            Some(b) => merge(b, parent),
            None => parent,
        });
    }
    stack.pop();
    Ok(match base {
        Some(b) => merge(b, tree),
        None => tree,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or(p.display().to_string(), |f| {
        f.to_string_lossy().into_owned()
    })
}

/// Whether a string of schema kind `x-path` names a local path (rebased onto the top file):
/// `local` always, `local-or-hub` when it starts like a path, `local-or-url` unless it is a URL.
fn is_local_path(kind: Option<&str>, p: &str) -> bool {
    match kind {
        Some("local") => true,
        Some("local-or-hub") => is_local(p),
        Some("local-or-url") => !crate::registry::db::Location::is_url(p),
        _ => false,
    }
}

/// Rewrites the local paths of a file (schema `x-path`) relative to the top file's directory.
fn rebase(node: &mut Node, shape: &Shape, s: &Value, dir: &Path, base_dir: &Path) {
    match &mut node.val {
        Val::Scalar(Value::String(p)) => {
            if is_local_path(shape.extension(s, "x-path"), p)
                && !Path::new(p.as_str()).is_absolute()
            {
                *p = relative(&normalize(&dir.join(p.as_str())), base_dir);
            }
        }
        Val::Scalar(_) => {}
        Val::Arr(items) => {
            if let Some(item) = shape.items(s) {
                for n in items {
                    rebase(n, shape, item, dir, base_dir);
                }
            }
        }
        Val::Obj(fields) => {
            let tag = fields
                .iter()
                .find(|(k, _)| k == "kind")
                .and_then(|(_, n)| n.as_str().map(String::from));
            let objects = shape.objects(s, tag.as_deref());
            for (k, n) in fields {
                if let Lookup::Found(ks) = shape.property(&objects, k) {
                    rebase(n, shape, ks, dir, base_dir);
                }
            }
        }
    }
}

/// One `--set KEY=VALUE`: KEY is a dotted path (`stage.pretrain.lr`), VALUE KDL arguments.
fn apply_set(
    tree: &mut Node,
    shape: &Shape,
    src: &Arc<SourceText>,
    cwd: &Path,
    base_dir: &Path,
) -> Result<(), Error> {
    let text = &src.text;
    let Some(eq) = text.find('=') else {
        return Err(Error::new(
            Origin::at(src, 0, text.len()),
            text.as_str(),
            "`--set` needs KEY=VALUE",
        )
        .help("for example --set stage.pretrain.lr=6e-3"));
    };
    let mut segs = Vec::new();
    let mut offset = 0;
    for part in text[..eq].split('.') {
        segs.push((part.to_string(), Origin::at(src, offset, part.len())));
        offset += part.len() + 1;
    }
    let value_origin = Origin::at(src, eq + 1, text.len() - eq - 1);
    let raw = &text[eq + 1..];
    let paths = Some((cwd, base_dir));
    set_path(
        tree,
        shape,
        &segs,
        parse_args(raw),
        &value_origin,
        paths,
        Some(raw),
    )
}

/// Sets the value at a dotted path, checking every segment and the value against the schema.
/// `paths`: (directory the value is relative to, top file directory) for local paths; `raw`: the
/// value as typed, taken whole for a string key (`--set description=two words`).
pub fn set_path(
    tree: &mut Node,
    shape: &Shape,
    segs: &[(String, Origin)],
    values: Vec<Value>,
    value_origin: &Origin,
    paths: Option<(&Path, &Path)>,
    raw: Option<&str>,
) -> Result<(), Error> {
    let full: String = segs
        .iter()
        .map(|(s, _)| s.as_str())
        .collect::<Vec<_>>()
        .join(".");
    let mut node = tree;
    let mut schema = shape.root();
    for (i, (seg, origin)) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        if let Some(item) = shape
            .items(schema)
            .filter(|it| !shape.objects(it, None).is_empty())
        {
            // A list of objects: pick the element by name/kind or index.
            let Val::Arr(items) = &mut node.val else {
                unreachable!("lists of objects are arrays")
            };
            let labels: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(j, n)| n.label().map_or(j.to_string(), String::from))
                .collect();
            let Some(j) = labels
                .iter()
                .position(|l| l == seg)
                .or_else(|| seg.parse().ok().filter(|j| *j < items.len()))
            else {
                let parent = segs[..i]
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                let mut e = Error::new(
                    origin.clone(),
                    full.clone(),
                    format!("no `{parent}` named `{seg}`"),
                )
                .help(format!(
                    "these exist: {}",
                    quoted_list(labels.iter().map(String::as_str))
                ));
                if let Some(s) = suggest(seg, labels.iter().map(String::as_str)) {
                    e = e.help(format!("did you mean `{s}`?"));
                }
                return Err(e);
            };
            if last {
                return Err(Error::new(
                    origin.clone(),
                    full,
                    "a whole list element cannot be set; set one of its keys",
                ));
            }
            node = &mut items[j];
            schema = item;
            continue;
        }
        let tag = node.get("kind").and_then(Node::as_str).map(String::from);
        let objects = shape.objects(schema, tag.as_deref());
        if objects.is_empty() {
            let parent = segs[..i]
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(".");
            return Err(Error::new(
                origin.clone(),
                full,
                format!("`{parent}` is a value, it has no key `{seg}`"),
            ));
        }
        let ks = match shape.property(&objects, seg) {
            Lookup::Found(ks) => ks,
            Lookup::Unknown(known) => {
                let parent = segs[..i]
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                let place = if parent.is_empty() {
                    "the experiment".to_string()
                } else {
                    format!("`{parent}`")
                };
                let e = Error::new(
                    origin.clone(),
                    full,
                    format!("unknown key `{seg}` in {place}"),
                );
                return Err(match suggest(seg, known.iter().copied()) {
                    Some(s) => e.help(format!("did you mean `{s}`?")),
                    None => e.help(format!(
                        "known keys here: {}",
                        quoted_list(known.iter().copied())
                    )),
                });
            }
        };
        if last {
            let whole = raw.filter(|_| values.len() != 1 && shape.items(ks).is_none());
            let whole = whole.filter(|_| shape.scalar_types(ks).contains(&"string"));
            let values = whole.map_or(values, |r| vec![Value::String(r.to_string())]);
            let v = value_node(shape, ks, values, value_origin, &full, paths)?;
            node.set(seg, v);
            return Ok(());
        }
        if node.get(seg).is_none() {
            if shape.objects(ks, None).is_empty() {
                return Err(Error::new(
                    origin.clone(),
                    full,
                    format!("`{seg}` is a value, it has no keys"),
                ));
            }
            let empty = if shape.items(ks).is_some() {
                Val::Arr(Vec::new())
            } else {
                Val::Obj(Vec::new())
            };
            node.set(seg, Node::new(empty, origin.clone()));
        }
        node = node.get_mut(seg).expect("just set");
        schema = ks;
    }
    Err(Error::new(value_origin.clone(), full, "empty key")
        .help("for example --set stage.pretrain.lr=6e-3"))
}

fn value_node(
    shape: &Shape,
    s: &Value,
    values: Vec<Value>,
    origin: &Origin,
    key: &str,
    paths: Option<(&Path, &Path)>,
) -> Result<Node, Error> {
    let fail = |(msg, help): (String, Option<String>)| {
        let mut e = Error::new(origin.clone(), key, msg);
        e.help = help;
        e
    };
    if let Some(item) = shape.items(s) {
        if !shape.objects(item, None).is_empty() {
            return Err(Error::new(
                origin.clone(),
                key,
                format!("`{key}` is a list of blocks; set its elements' keys"),
            ));
        }
        let mut out = Vec::new();
        for v in values {
            out.push(Node::new(
                Val::Scalar(check_scalar(shape, item, v, key).map_err(fail)?),
                origin.clone(),
            ));
        }
        return Ok(Node::new(Val::Arr(out), origin.clone()));
    }
    if !shape.objects(s, None).is_empty() && !shape.allows_null(s) {
        return Err(Error::new(
            origin.clone(),
            key,
            format!("`{key}` is a block; set its keys one by one ({key}.KEY=VALUE)"),
        ));
    }
    let [v] = <[Value; 1]>::try_from(values).map_err(|v| {
        Error::new(
            origin.clone(),
            key,
            format!("`{key}` takes one value, found {}", v.len()),
        )
    })?;
    let mut v = check_scalar(shape, s, v, key).map_err(fail)?;
    if let (Some((dir, base_dir)), Value::String(p)) = (paths, &mut v) {
        if is_local_path(shape.extension(s, "x-path"), p) && !Path::new(p.as_str()).is_absolute() {
            *p = relative(&normalize(&dir.join(p.as_str())), base_dir);
        }
    }
    Ok(Node::new(Val::Scalar(v), origin.clone()))
}

/// Tree -> typed, checked experiment with every default filled in.
pub fn finish(loaded: &Loaded, tree: &Node) -> Result<Experiment, Errors> {
    let mut tree = tree.clone();
    merge_stage_data(&mut tree);
    let mut exp: Experiment = deserialize_tree(&tree)?;
    exp.base_dir = loaded.base_dir.clone();
    validate(&mut exp, &tree)?;
    Ok(exp)
}

/// The typed value of a tree; a type error points at the value that caused it.
pub fn deserialize_tree<T: serde::de::DeserializeOwned>(tree: &Node) -> Result<T, Errors> {
    let json = tree.to_json();
    serde_path_to_error::deserialize(&json).map_err(|e| {
        let path: Vec<Seg> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                _ => None,
            })
            .collect();
        let (node, _) = tree.find(&path);
        let inner = e.into_inner().to_string();
        let msg = inner
            .replace("missing field", "missing key")
            .replace("unknown field", "unknown key");
        Errors::from(Error::new(node.origin.clone(), tree.dotted(&path), msg))
    })
}

/// A stage's `data` block is merged over the experiment's, so it only writes what differs.
fn merge_stage_data(tree: &mut Node) {
    let Some(top) = tree.get("data").cloned() else {
        return;
    };
    if let Some(Node {
        val: Val::Arr(stages),
        ..
    }) = tree.get_mut("stage")
    {
        for stage in stages {
            if let Some(own) = stage.remove("data") {
                stage.set("data", merge(top.clone(), own));
            }
        }
    }
}
