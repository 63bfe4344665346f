//! The parsed form of a task file before it is typed: values with the line and column they were
//! written at, so every later error can point into the file. YAML and KDL task files both become
//! this tree (`yaml.rs`, `kdl.rs`), and one reader turns it into a [`super::config::TaskConfig`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<PathBuf>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

impl Pos {
    pub fn new(file: &Path, line: usize, col: usize) -> Pos {
        Pos {
            file: Arc::new(file.to_path_buf()),
            line,
            col,
        }
    }
}

/// A value of a task file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    /// Keys in file order, each with the position of the key itself.
    Map(Vec<(String, Pos, Node)>),
    /// lm-eval's `!function module.name`: Python code, which doge cannot run.
    Function(String),
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Function(_) => "a `!function`",
        }
    }

    /// The value as plain JSON (positions dropped), for `dataset_kwargs` and `metadata`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => J::from(*f),
            Value::Str(s) => J::String(s.clone()),
            Value::List(l) => J::Array(l.iter().map(Node::to_json).collect()),
            Value::Map(m) => {
                J::Object(m.iter().map(|(k, _, v)| (k.clone(), v.to_json())).collect())
            }
            Value::Function(f) => J::String(format!("!function {f}")),
        }
    }
}

/// A task file error: where, what, and what to do.
#[derive(Debug, Clone)]
pub struct FileError {
    pub pos: Pos,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: `{k}`: {}", self.pos, self.message),
            None => write!(f, "{}: {}", self.pos, self.message),
        }
    }
}

impl std::error::Error for FileError {}

pub fn error(pos: &Pos, key: Option<&str>, message: impl Into<String>) -> FileError {
    FileError {
        pos: pos.clone(),
        key: key.map(str::to_string),
        message: message.into(),
    }
}
