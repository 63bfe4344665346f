//! Task files on disk: reading one (YAML or KDL), merging `include`, group files, and the index of
//! every task, group and tag under `--include-path` folders (lm-eval's `TaskManager`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::config::{self, TaskConfig};
use super::tree::{error, FileError, Node, Pos, Value};

/// What a task file holds.
pub enum Loaded {
    Task(Box<TaskConfig>),
    Group(GroupConfig),
}

/// A group file: `group: NAME` and a `task:` list of task names or inline task mappings.
pub struct GroupConfig {
    pub name: String,
    pub pos: Pos,
    pub members: Vec<Member>,
    /// `aggregate_metric_list`: (metric, weight_by_size).
    pub aggregate: Vec<(String, bool)>,
}

pub enum Member {
    /// A task, group or tag name, resolved through the index.
    Name(String, Pos),
    /// A task written inside the group file.
    Inline(Box<Node>),
}

pub fn is_task_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "kdl")
    )
}

/// Parses a file into its tree, `include`s merged (YAML) or the KDL task translated.
pub fn read_tree(path: &Path) -> Result<Node, FileError> {
    read_tree_inner(path, &mut Vec::new())
}

fn read_tree_inner(path: &Path, stack: &mut Vec<PathBuf>) -> Result<Node, FileError> {
    let at = Pos::new(path, 1, 1);
    let text = std::fs::read_to_string(path)
        .map_err(|e| error(&at, None, format!("cannot read the task file: {e}")))?;
    if path.extension().and_then(|e| e.to_str()) == Some("kdl") {
        return super::kdl::read(&text, path);
    }
    let node = super::yaml::parse(&text, path)?;
    let Value::Map(entries) = &node.value else {
        return Err(error(
            &node.pos,
            None,
            format!("a task file is a mapping of keys, not {}", node.kind()),
        ));
    };
    let Some((_, kpos, inc)) = entries.iter().find(|(k, _, _)| k == "include") else {
        return Ok(node);
    };
    // One file, or a list merged in order (later ones over earlier ones, this file over all).
    let names = config::strings(inc, "include")?;
    if names.is_empty() {
        return Err(error(&inc.pos, Some("include"), "expected a file name"));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let kpos = kpos.clone();
    let mut base: Option<Node> = None;
    for rel in names {
        let target = dir.join(&rel);
        if stack.contains(&target) || target == path {
            return Err(error(
                &kpos,
                Some("include"),
                format!("`include` cycle through {}", target.display()),
            ));
        }
        if !target.is_file() {
            return Err(error(
                &inc.pos,
                Some("include"),
                format!(
                    "{} does not exist (include paths are relative to the file that writes them)",
                    target.display()
                ),
            ));
        }
        stack.push(path.to_path_buf());
        let included = read_tree_inner(&target, stack)?;
        stack.pop();
        base = Some(match base {
            None => included,
            Some(b) => merge(b, included),
        });
    }
    Ok(merge(base.expect("at least one include"), node))
}

/// lm-eval's include: the included file's keys, then this file's over them (one level deep).
fn merge(base: Node, over: Node) -> Node {
    let (Value::Map(mut b), Value::Map(o)) = (base.value, over.value) else {
        unreachable!("both are checked to be mappings");
    };
    b.retain(|(k, _, _)| k != "include");
    for (k, p, v) in o {
        if k == "include" {
            continue;
        }
        match b.iter_mut().find(|(bk, _, _)| *bk == k) {
            Some(slot) => *slot = (k, p, v),
            None => b.push((k, p, v)),
        }
    }
    Node {
        value: Value::Map(b),
        pos: over.pos,
    }
}

/// Reads a task or group file.
pub fn load(path: &Path) -> Result<Loaded, FileError> {
    let tree = read_tree(path)?;
    from_tree(tree)
}

pub fn from_tree(tree: Node) -> Result<Loaded, FileError> {
    let is_group = tree.get("group").is_some()
        && matches!(tree.get("task").map(|t| &t.value), Some(Value::List(_)));
    if is_group {
        return read_group(&tree).map(Loaded::Group);
    }
    config::read(&tree).map(|t| Loaded::Task(Box::new(t)))
}

fn read_group(tree: &Node) -> Result<GroupConfig, FileError> {
    let g = tree.get("group").expect("checked");
    let name = g
        .as_str()
        .ok_or_else(|| error(&g.pos, Some("group"), "expected the group's name"))?
        .to_string();
    let Value::Map(entries) = &tree.value else {
        unreachable!("a group has keys")
    };
    let mut members = Vec::new();
    let mut aggregate = Vec::new();
    for (k, kpos, v) in entries {
        match k.as_str() {
            "group" | "group_alias" | "metadata" => {}
            "task" => {
                let Value::List(items) = &v.value else {
                    unreachable!("checked")
                };
                for item in items {
                    match &item.value {
                        Value::Str(s) => members.push(Member::Name(s.clone(), item.pos.clone())),
                        Value::Map(_) => members.push(Member::Inline(Box::new(item.clone()))),
                        _ => {
                            return Err(error(
                                &item.pos,
                                Some("task"),
                                "a group's tasks are names or task mappings",
                            ))
                        }
                    }
                }
            }
            "aggregate_metric_list" => {
                let items = match &v.value {
                    Value::List(items) => items.clone(),
                    Value::Map(_) => vec![v.clone()],
                    _ => {
                        return Err(error(
                            &v.pos,
                            Some(k),
                            "expected a list of `- metric: NAME`",
                        ))
                    }
                };
                for item in &items {
                    let m = item.get("metric").and_then(Node::as_str).ok_or_else(|| {
                        error(&item.pos, Some(k), "an entry without `metric: NAME`")
                    })?;
                    let by_size = !matches!(
                        item.get("weight_by_size").map(|n| &n.value),
                        Some(Value::Bool(false))
                    );
                    if let Some(a) = item.get("aggregation").and_then(Node::as_str) {
                        if a != "mean" {
                            return Err(error(
                                &item.pos,
                                Some("aggregation"),
                                "doge aggregates groups by `mean` only",
                            ));
                        }
                    }
                    aggregate.push((m.to_string(), by_size));
                }
            }
            _ => {
                return Err(error(
                    kpos,
                    Some(k),
                    "unknown key in a group file; groups take group, task, aggregate_metric_list, metadata",
                ))
            }
        }
    }
    Ok(GroupConfig {
        name,
        pos: g.pos.clone(),
        members,
        aggregate,
    })
}

/// Every task, group and tag name under some folders, with the file that defines it.
#[derive(Default, Debug)]
pub struct Index {
    pub tasks: BTreeMap<String, PathBuf>,
    pub groups: BTreeMap<String, PathBuf>,
    pub tags: BTreeMap<String, Vec<PathBuf>>,
}

impl Index {
    /// Scans `dirs` recursively. Files that do not parse are skipped here; asking for a name they
    /// would define then fails as an unknown task, and naming the file itself shows its error.
    pub fn scan(dirs: &[PathBuf]) -> Index {
        let mut index = Index::default();
        for dir in dirs {
            let mut files = Vec::new();
            collect(dir, &mut files);
            files.sort();
            for f in files {
                index.add(&f);
            }
        }
        index
    }

    fn add(&mut self, file: &Path) {
        let Ok(tree) = read_tree(file) else { return };
        let names = |n: Option<&Node>| -> Vec<String> {
            n.map(|n| config::strings(n, "").unwrap_or_default())
                .unwrap_or_default()
        };
        match tree.get("task").map(|t| &t.value) {
            Some(Value::List(_)) => {
                if let Some(g) = tree.get("group").and_then(Node::as_str) {
                    self.groups.insert(g.to_string(), file.to_path_buf());
                }
            }
            Some(Value::Str(t)) => {
                self.tasks.entry(t.clone()).or_insert(file.to_path_buf());
                // Old-style `group: NAME` in a task file acts as a tag.
                for tag in names(tree.get("tag"))
                    .into_iter()
                    .chain(names(tree.get("group")))
                {
                    self.tags.entry(tag).or_default().push(file.to_path_buf());
                }
            }
            _ => {}
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if is_task_file(&p) {
            out.push(p);
        }
    }
}
