//! lm-eval task YAML -> [`Node`] tree with positions (yaml-rust2's event parser, which reports a
//! line and column for every event and keeps tags, so `!function` can be refused where it is
//! written).
//!
//! Plain scalars are typed as PyYAML (what lm-eval loads its files with) types the values task
//! files use: `null`/`~`/empty, `true`/`false` (any case), integers, and numbers with a `.` or an
//! exponent after one (`1.0`, `.5`, `1.0e-3`); anything quoted is a string.

use std::collections::HashMap;
use std::path::Path;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::tree::{error, FileError, Node, Pos, Value};

/// Parses one YAML document.
pub fn parse(text: &str, file: &Path) -> Result<Node, FileError> {
    let mut builder = Builder {
        file,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let m = e.marker();
        return Err(error(
            &Pos::new(file, m.line(), m.col() + 1),
            None,
            format!("not valid YAML: {}", e.info()),
        ));
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    builder.root.ok_or_else(|| {
        error(
            &Pos::new(file, 1, 1),
            None,
            "the file is empty; a task file is a mapping (`task: NAME`, `dataset_path: ...`)",
        )
    })
}

enum Open {
    List(Pos, usize, Vec<Node>),
    /// Entries so far, and a key waiting for its value.
    Map(Pos, usize, Vec<(String, Pos, Node)>, Option<(String, Pos)>),
}

struct Builder<'a> {
    file: &'a Path,
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<FileError>,
}

impl Builder<'_> {
    fn pos(&self, m: Marker) -> Pos {
        // yaml-rust2's columns count from 0.
        Pos::new(self.file, m.line(), m.col() + 1)
    }

    fn fail(&mut self, e: FileError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Puts a finished value into its parent (or makes it the document).
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(top) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        let problem = match top {
            Open::List(_, _, items) => {
                items.push(node);
                None
            }
            Open::Map(_, _, entries, pending) => match pending.take() {
                Some((key, kpos)) => {
                    entries.push((key, kpos, node));
                    None
                }
                None => match key_of(&node) {
                    None => Some(error(
                        &node.pos,
                        None,
                        "a mapping key must be a plain value",
                    )),
                    Some(key) => {
                        // PyYAML keeps the last of a key written twice; lm-eval's files rely on it.
                        entries.retain(|(k, _, _)| *k != key);
                        *pending = Some((key, node.pos));
                        None
                    }
                },
            },
        };
        if let Some(e) = problem {
            self.fail(e);
        }
    }
}

fn key_of(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        _ => None,
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = self.pos(mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let value = match tag {
                    Some(t) if t.handle == "!" && t.suffix == "function" => {
                        Value::Function(text.trim().to_string())
                    }
                    Some(t) if t.handle == "tag:yaml.org,2002:" && t.suffix == "str" => {
                        Value::Str(text)
                    }
                    // `!!null`, `!!int`... : the plain value's own type, as PyYAML reads them.
                    Some(t)
                        if t.handle == "tag:yaml.org,2002:"
                            && matches!(t.suffix.as_str(), "null" | "int" | "float" | "bool") =>
                    {
                        plain_scalar(text)
                    }
                    Some(t) => {
                        let e = error(
                            &pos,
                            None,
                            format!(
                                "the YAML tag `{}{}` is not supported; write the plain value",
                                t.handle, t.suffix
                            ),
                        );
                        self.fail(e);
                        return;
                    }
                    None if style == TScalarStyle::Plain => plain_scalar(text),
                    None => Value::Str(text),
                };
                self.push(Node { value, pos }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::List(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(pos, anchor, Vec::new(), None))
            }
            Event::SequenceEnd => {
                if let Some(Open::List(p, anchor, items)) = self.stack.pop() {
                    self.push(
                        Node {
                            value: Value::List(items),
                            pos: p,
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map(p, anchor, entries, _)) = self.stack.pop() {
                    self.push(
                        Node {
                            value: Value::Map(entries),
                            pos: p,
                        },
                        anchor,
                    );
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push(node, 0),
                None => self.fail(error(&pos, None, "an alias to an unknown anchor")),
            },
            _ => {}
        }
    }
}

fn plain_scalar(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | "+.inf" | ".Inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(&text);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '_') {
        if let Ok(i) = text.replace('_', "").parse::<i64>() {
            return Value::Int(i);
        }
    }
    // PyYAML's float needs a dot (`1e3` stays a string there).
    if digits.contains('.')
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+' | '_'))
    {
        if let Ok(f) = text.replace('_', "").parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Node {
        parse(s, Path::new("t.yaml")).unwrap()
    }

    #[test]
    fn scalars_are_typed_as_pyyaml_types_them() {
        let n = parse_str("a: 3\nb: 1.0\nc: null\nd: true\ne: '3'\nf: 1e3\ng: x y\n");
        assert_eq!(n.get("a").unwrap().value, Value::Int(3));
        assert_eq!(n.get("b").unwrap().value, Value::Float(1.0));
        assert_eq!(n.get("c").unwrap().value, Value::Null);
        assert_eq!(n.get("d").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("e").unwrap().value, Value::Str("3".into()));
        assert_eq!(n.get("f").unwrap().value, Value::Str("1e3".into()));
        assert_eq!(n.get("g").unwrap().value, Value::Str("x y".into()));
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let n = parse_str("task: x\nmetric_list:\n  - metric: acc\n");
        let m = n.get("metric_list").unwrap();
        let Value::List(items) = &m.value else {
            panic!()
        };
        let Value::Map(entries) = &items[0].value else {
            panic!()
        };
        assert_eq!((entries[0].1.line, entries[0].1.col), (3, 5));
    }

    #[test]
    fn function_tags_are_kept_with_their_line() {
        let n = parse_str("task: x\nprocess_docs: !function utils.process_docs\n");
        let p = n.get("process_docs").unwrap();
        assert_eq!(p.value, Value::Function("utils.process_docs".into()));
        assert_eq!(p.pos.line, 2);
    }

    #[test]
    fn a_key_written_twice_keeps_the_last_as_pyyaml_does() {
        let n = parse_str("a: 1\nb: 2\na: 3\n");
        assert_eq!(n.get("a").unwrap().value, Value::Int(3));
        assert_eq!(n.get("a").unwrap().pos.line, 3);
    }
}
