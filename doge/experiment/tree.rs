//! A JSON-like tree whose every value remembers where it was written.
//!
//! `extends`, `--set` and sweeps all edit this tree; origins travel with the values, so an error
//! found after merging still points at the file and line that wrote the bad value.

use serde_json::{Map, Value};

use super::error::Origin;

#[derive(Debug, Clone)]
pub enum Val {
    Scalar(Value),
    Obj(Vec<(String, Node)>),
    Arr(Vec<Node>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub val: Val,
    /// For objects and arrays the node (name) that opened them, for scalars the value itself.
    pub origin: Origin,
}

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Node {
    pub fn new(val: Val, origin: Origin) -> Node {
        Node { val, origin }
    }

    pub fn obj(origin: Origin) -> Node {
        Node::new(Val::Obj(Vec::new()), origin)
    }

    pub fn to_json(&self) -> Value {
        match &self.val {
            Val::Scalar(v) => v.clone(),
            Val::Arr(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Val::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, n)| (k.clone(), n.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// Rebuilds a tree from JSON, every value with the same origin (a `--set` or sweep value).
    pub fn from_json(v: &Value, origin: &Origin) -> Node {
        let val = match v {
            Value::Array(items) => {
                Val::Arr(items.iter().map(|x| Node::from_json(x, origin)).collect())
            }
            Value::Object(m) => Val::Obj(
                m.iter()
                    .map(|(k, x)| (k.clone(), Node::from_json(x, origin)))
                    .collect(),
            ),
            other => Val::Scalar(other.clone()),
        };
        Node::new(val, origin.clone())
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.val {
            Val::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.val {
            Val::Obj(fields) => fields.iter_mut().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }

    /// Sets `key`, replacing an old value in place (keeps the written order).
    pub fn set(&mut self, key: &str, node: Node) {
        if let Val::Obj(fields) = &mut self.val {
            match fields.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = node,
                None => fields.push((key.to_string(), node)),
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Node> {
        if let Val::Obj(fields) = &mut self.val {
            let i = fields.iter().position(|(k, _)| k == key)?;
            return Some(fields.remove(i).1);
        }
        None
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.val {
            Val::Scalar(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// How an element of a list is named in paths: its `name`, else its `kind`.
    pub fn label(&self) -> Option<&str> {
        self.get("name")
            .and_then(Node::as_str)
            .or_else(|| self.get("kind").and_then(Node::as_str))
    }

    /// The node at `path`, or the deepest one on the way there (`false`: the rest is a default).
    pub fn find(&self, path: &[Seg]) -> (&Node, bool) {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.val) {
                (Seg::Key(k), Val::Obj(_)) => node.get(k),
                (Seg::Index(i), Val::Arr(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return (node, false),
            }
        }
        (node, true)
    }

    /// The dotted key of `path`, naming list elements by label (`stage.pretrain.lr`).
    pub fn dotted(&self, path: &[Seg]) -> String {
        let mut node = Some(self);
        let mut parts = Vec::new();
        for seg in path {
            match seg {
                Seg::Key(k) => {
                    parts.push(k.clone());
                    node = node.and_then(|n| n.get(k));
                }
                Seg::Index(i) => {
                    let item = match node.map(|n| &n.val) {
                        Some(Val::Arr(items)) => items.get(*i),
                        _ => None,
                    };
                    parts.push(
                        item.and_then(Node::label)
                            .map_or(i.to_string(), str::to_string),
                    );
                    node = item;
                }
            }
        }
        parts.join(".")
    }
}

/// `over` on top of `base`: objects merge key by key, everything else is replaced.
///
/// Two exceptions keep `extends` useful: the `stage` list merges element by element matched by
/// stage name (so a child file can change one value of an inherited stage), and an object whose
/// `kind` changes (a `schedule`) is replaced whole rather than mixing fields of two kinds.
pub fn merge(base: Node, over: Node) -> Node {
    match (base.val, over.val) {
        (Val::Obj(mut fields), Val::Obj(over_fields)) => {
            let kind = |f: &[(String, Node)]| {
                f.iter()
                    .find(|(k, _)| k == "kind")
                    .and_then(|(_, n)| n.as_str().map(String::from))
            };
            if kind(&fields).is_some()
                && kind(&over_fields).is_some()
                && kind(&fields) != kind(&over_fields)
            {
                return Node::new(Val::Obj(over_fields), over.origin);
            }
            for (key, value) in over_fields {
                match fields.iter().position(|(k, _)| *k == key) {
                    Some(i) => {
                        let old = std::mem::replace(&mut fields[i].1, Node::obj(Origin::Default));
                        fields[i].1 = if key == "stage" {
                            merge_stages(old, value)
                        } else {
                            merge(old, value)
                        };
                    }
                    None => fields.push((key, value)),
                }
            }
            Node::new(Val::Obj(fields), base.origin)
        }
        (_, val) => Node::new(val, over.origin),
    }
}

fn merge_stages(base: Node, over: Node) -> Node {
    let (mut items, over_items) = match (base.val, over.val) {
        (Val::Arr(items), Val::Arr(over_items)) => (items, over_items),
        (_, val) => return Node::new(val, over.origin),
    };
    for stage in over_items {
        let label = stage.label().map(String::from);
        match items
            .iter()
            .position(|s| label.is_some() && s.label().map(String::from) == label)
        {
            Some(i) => {
                let old = std::mem::replace(&mut items[i], Node::obj(Origin::Default));
                items[i] = merge(old, stage);
            }
            None => items.push(stage),
        }
    }
    Node::new(Val::Arr(items), over.origin)
}
