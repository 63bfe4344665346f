//! Jinja as lm-eval renders its task fields (`utils.apply_template`): strict undefined, trailing
//! newlines kept, the `regex_replace` filter, Python's string methods (`.strip()`,
//! `.lstrip()`, `.split()`... through minijinja-contrib's pycompat) and `list.index`, and values
//! printed as Python prints them (`None`, `True`, `['a', 'b']`), so a `doc_to_choice` template
//! renders to the text Python would `ast.literal_eval` ([`parse_python_literal`]).

use std::fmt::Write as _;

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};

/// One task's templates, compiled once.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_unknown_method_callback(methods);
        env.add_filter("regex_replace", regex_replace);
        env.set_formatter(|out, _state, value| {
            // Strict undefined stops `{{ missing }}`, but not `{{ [a, missing] }}`: Python's
            // StrictUndefined fails when such a list is printed, and so does this.
            if has_undefined(value) {
                return Err(Error::new(
                    ErrorKind::UndefinedError,
                    format!(
                        "the value {} holds an undefined variable",
                        python_repr(value)
                    ),
                ));
            }
            python_str(value, out).map_err(|_| Error::new(ErrorKind::WriteFailure, "write"))
        });
        Templates { env }
    }

    /// Compiles `source` under `name` (a key such as `doc_to_text`); a syntax error comes back
    /// as text with minijinja's line within the template.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), String> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| describe(&e))
    }

    /// Renders the template `name` with the row's fields as variables.
    pub fn render(&self, name: &str, row: &serde_json::Value) -> Result<String, String> {
        let t = self.env.get_template(name).map_err(|e| describe(&e))?;
        t.render(Value::from(minijinja::value::Serde(row)))
            .map_err(|e| describe(&e))
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

/// minijinja's error with its detail and the line in the template, on one line.
fn describe(e: &Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(d) = e.detail() {
        let _ = write!(s, ": {d}");
    }
    if let Some(line) = e.line() {
        let _ = write!(s, " (line {line} of the template)");
    }
    s
}

/// pycompat's methods, plus `list.index(x)` and `str.index(x)`, which lm-eval's task files use
/// (`choices.label.index(answerKey)`).
fn methods(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if method == "index" && args.len() == 1 {
        match value.kind() {
            ValueKind::Seq => {
                for (i, item) in value.try_iter()?.enumerate() {
                    if item == args[0] {
                        return Ok(Value::from(i));
                    }
                }
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "{} is not in the list {}",
                        python_repr(&args[0]),
                        python_repr(value)
                    ),
                ));
            }
            ValueKind::String => {
                let (s, x) = (value.as_str().unwrap_or(""), args[0].as_str().unwrap_or(""));
                return match s.find(x) {
                    Some(b) => Ok(Value::from(s[..b].chars().count())),
                    None => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("substring {x:?} not found"),
                    )),
                };
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// lm-eval's `regex_replace`: Python's `re.sub(pattern, repl, string, count)`.
fn regex_replace(
    s: String,
    pattern: String,
    repl: String,
    count: Option<usize>,
) -> Result<String, Error> {
    let re = fancy_regex::Regex::new(&pattern).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("regex_replace: bad pattern {pattern:?}: {e}"),
        )
    })?;
    Ok(python_sub(&re, &s, &repl, count.unwrap_or(0)))
}

/// `re.sub` with Python's replacement syntax (`\1`, `\g<1>`, `\g<name>`, `\n`); 0 = every match.
pub fn python_sub(re: &fancy_regex::Regex, s: &str, repl: &str, count: usize) -> String {
    let mut out = String::new();
    let mut last = 0;
    for (done, caps) in re.captures_iter(s).enumerate() {
        let Ok(caps) = caps else { break };
        if count > 0 && done == count {
            break;
        }
        let m = caps.get(0).expect("group 0 always matches");
        out.push_str(&s[last..m.start()]);
        expand(repl, &caps, &mut out);
        last = m.end();
    }
    out.push_str(&s[last..]);
    out
}

fn expand(repl: &str, caps: &fancy_regex::Captures<'_, str>, out: &mut String) {
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(d) if d.is_ascii_digit() => {
                let mut n = d.to_string();
                if let Some(e) = chars.peek().filter(|e| e.is_ascii_digit()) {
                    n.push(*e);
                    chars.next();
                }
                let i: usize = n.parse().unwrap_or(0);
                out.push_str(caps.get(i).map_or("", |m| m.as_str()));
            }
            Some('g') if chars.peek() == Some(&'<') => {
                chars.next();
                let name: String = chars.by_ref().take_while(|c| *c != '>').collect();
                let m = match name.parse::<usize>() {
                    Ok(i) => caps.get(i),
                    Err(_) => caps.name(&name),
                };
                out.push_str(m.map_or("", |m| m.as_str()));
            }
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
}

fn has_undefined(value: &Value) -> bool {
    match value.kind() {
        ValueKind::Undefined => true,
        ValueKind::Seq | ValueKind::Iterable => value
            .try_iter()
            .is_ok_and(|mut it| it.any(|v| has_undefined(&v))),
        ValueKind::Map => value
            .try_iter()
            .is_ok_and(|mut it| it.any(|k| has_undefined(&value.get_item(&k).unwrap_or_default()))),
        _ => false,
    }
}

/// `str(value)` as Python prints it: strings bare, everything else as [`python_repr`].
fn python_str(value: &Value, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    match value.kind() {
        ValueKind::String => out.write_str(value.as_str().unwrap_or("")),
        _ => out.write_str(&python_repr(value)),
    }
}

/// Python's `repr` of a JSON-like value.
pub fn python_repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => "Undefined".into(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.into(),
        ValueKind::String => repr_str(value.as_str().unwrap_or("")),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<String> = value
                .try_iter()
                .map(|it| it.map(|v| python_repr(&v)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let items: Vec<String> = value
                .try_iter()
                .map(|it| {
                    it.map(|k| {
                        let v = value.get_item(&k).unwrap_or_default();
                        format!("{}: {}", python_repr(&k), python_repr(&v))
                    })
                    .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", items.join(", "))
        }
        _ => value.to_string(),
    }
}

fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A parsed Python literal (what `ast.literal_eval` returns for the values task files render).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Literal>),
}

/// `ast.literal_eval` of strings, numbers, `True`/`False`/`None` and lists or tuples of them.
pub fn parse_python_literal(text: &str) -> Result<Literal, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = LiteralParser { s: &chars, i: 0 };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != chars.len() {
        return Err(format!(
            "unexpected text after the value at character {}",
            p.i + 1
        ));
    }
    Ok(v)
}

struct LiteralParser<'a> {
    s: &'a [char],
    i: usize,
}

impl LiteralParser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_whitespace()) {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Literal, String> {
        match self.s.get(self.i) {
            Some('[') | Some('(') => {
                let close = if self.s[self.i] == '[' { ']' } else { ')' };
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.s.get(self.i) == Some(&close) {
                        self.i += 1;
                        return Ok(Literal::List(items));
                    }
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(',') => self.i += 1,
                        Some(c) if *c == close => {}
                        _ => {
                            return Err(format!(
                                "expected `,` or `{close}` at character {}",
                                self.i + 1
                            ))
                        }
                    }
                }
            }
            Some('\'') | Some('"') => self.string(),
            Some(_) => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
                {
                    self.i += 1;
                }
                let word: String = self.s[start..self.i].iter().collect();
                match word.as_str() {
                    "None" => Ok(Literal::None),
                    "True" => Ok(Literal::Bool(true)),
                    "False" => Ok(Literal::Bool(false)),
                    w => w
                        .replace('_', "")
                        .parse::<i64>()
                        .map(Literal::Int)
                        .or_else(|_| w.parse::<f64>().map(Literal::Float))
                        .map_err(|_| format!("`{w}` is not a Python literal")),
                }
            }
            None => Err("expected a value, found the end of the text".into()),
        }
    }

    fn string(&mut self) -> Result<Literal, String> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            if c == quote {
                return Ok(Literal::Str(out));
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = *self.s.get(self.i).ok_or("a string ends in `\\`")?;
            self.i += 1;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = self
                        .s
                        .get(self.i..self.i + n)
                        .ok_or("a short escape")?
                        .iter()
                        .collect();
                    self.i += n;
                    let code = u32::from_str_radix(&hex, 16)
                        .map_err(|_| format!("bad escape \\{e}{hex}"))?;
                    out.push(char::from_u32(code).ok_or("bad code point")?);
                }
                '\n' => {}
                o => {
                    if !matches!(o, '\\' | '\'' | '"') {
                        out.push('\\');
                    }
                    out.push(o);
                }
            }
        }
        Err("a string is not closed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, row: serde_json::Value) -> Result<String, String> {
        let mut t = Templates::new();
        t.add("t", src)?;
        t.render("t", &row)
    }

    #[test]
    fn renders_as_lm_eval_renders() {
        let row = json!({"q": "  Why?\n", "c": {"text": ["a", "b'c"], "label": ["A", "B"]}, "k": "B", "n": "2"});
        assert_eq!(render("{{q.lstrip()}}A:", row.clone()).unwrap(), "Why?\nA:");
        assert_eq!(render("{{c.label.index(k)}}", row.clone()).unwrap(), "1");
        assert_eq!(render("{{ (n|int) - 1 }}", row.clone()).unwrap(), "1");
        assert_eq!(render("{{c.text}}", row.clone()).unwrap(), "['a', \"b'c\"]");
        assert_eq!(
            render("{{[k, None, True]}}", row.clone()).unwrap(),
            "['B', None, True]"
        );
        assert_eq!(render("x\n", row.clone()).unwrap(), "x\n");
        assert_eq!(render("{{ b | int }}", json!({"b": true})).unwrap(), "1");
        assert_eq!(
            render(
                "{{ q | regex_replace('(\\\\w+)', '<\\\\1>') }}",
                row.clone()
            )
            .unwrap(),
            "  <Why>?\n"
        );
        let e = render("{{missing}}", row).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
    }

    #[test]
    fn literals_parse_back_what_python_prints() {
        assert_eq!(
            parse_python_literal("['a', \"b'c\", 'd\\n', 3, None]").unwrap(),
            Literal::List(vec![
                Literal::Str("a".into()),
                Literal::Str("b'c".into()),
                Literal::Str("d\n".into()),
                Literal::Int(3),
                Literal::None
            ])
        );
        assert!(parse_python_literal("[a, b]").is_err());
    }
}
