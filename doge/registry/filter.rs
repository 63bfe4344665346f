//! The `--where` filter language of `doge runs list`.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | primary
//! primary := "(" expr ")" | KEY OP VALUE | KEY ["not"] "in" "(" VALUE ("," VALUE)* ")"
//! OP      := = | != | < | <= | > | >=
//! VALUE   := number | 'string' | "string" | bare-word
//! ```
//!
//! Keys are resolved by the caller (see [`super::query::RunView::get`]); a key with no value
//! (a missing config key, a metric never logged) makes every comparison false, as NULL does in SQL.

use std::cmp::Ordering;
use std::fmt;

/// A key's value for one run.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(f64),
    Str(String),
    /// Several values (a run's tags): `=` and `in` match when any member does, `!=` when none.
    Set(Vec<String>),
    Null,
}

impl Value {
    /// Orders two values: numbers numerically (a string that parses as a number counts as one),
    /// otherwise as text. `None` when either side is missing.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self.as_num(), other.as_num()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => match (self, other) {
                (Value::Null, _) | (_, Value::Null) | (Value::Set(_), _) | (_, Value::Set(_)) => {
                    None
                }
                _ => Some(self.to_string().cmp(&other.to_string())),
            },
        }
    }

    fn as_num(&self) -> Option<f64> {
        match self {
            Value::Num(x) => Some(*x),
            Value::Str(s) => s.parse().ok(),
            Value::Set(_) | Value::Null => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
            Value::Set(items) => f.write_str(&items.join(",")),
            Value::Null => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Cmp(String, Op, Value),
    In(String, Vec<Value>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Evaluates against one run; `get` resolves a key to its value.
    pub fn eval(&self, get: &dyn Fn(&str) -> Value) -> bool {
        match self {
            Expr::Cmp(key, op, v) => match get(key) {
                Value::Set(items) => {
                    let any = items
                        .iter()
                        .any(|i| Value::Str(i.clone()).compare(v) == Some(Ordering::Equal));
                    match op {
                        Op::Eq => any,
                        Op::Ne => !any,
                        _ => false,
                    }
                }
                x => Self::cmp(&x, *op, v),
            },
            Expr::In(key, vs) => match get(key) {
                Value::Set(items) => items.iter().any(|i| {
                    let i = Value::Str(i.clone());
                    vs.iter().any(|v| i.compare(v) == Some(Ordering::Equal))
                }),
                x => vs.iter().any(|v| x.compare(v) == Some(Ordering::Equal)),
            },
            Expr::Not(e) => !e.eval(get),
            Expr::And(a, b) => a.eval(get) && b.eval(get),
            Expr::Or(a, b) => a.eval(get) || b.eval(get),
        }
    }

    fn cmp(x: &Value, op: Op, v: &Value) -> bool {
        match x.compare(v) {
            None => false,
            Some(o) => match op {
                Op::Eq => o == Ordering::Equal,
                Op::Ne => o != Ordering::Equal,
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Gt => o == Ordering::Greater,
                Op::Ge => o != Ordering::Less,
            },
        }
    }

    /// Every key the expression reads (the list shows them as columns).
    pub fn keys(&self, out: &mut Vec<String>) {
        match self {
            Expr::Cmp(k, ..) | Expr::In(k, _) => {
                if !out.contains(k) {
                    out.push(k.clone())
                }
            }
            Expr::Not(e) => e.keys(out),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.keys(out);
                b.keys(out);
            }
        }
    }
}

/// A malformed expression: where (1-based column) and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--where: column {column}: expected {expected}, found {found}\n  {source_text}\n  {caret}")]
pub struct ParseError {
    pub column: usize,
    pub expected: String,
    pub found: String,
    source_text: String,
    caret: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Num(f64),
    Str(String),
    Op(Op),
    LParen,
    RParen,
    Comma,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "`{w}`"),
            Tok::Num(x) => write!(f, "number {x}"),
            Tok::Str(s) => write!(f, "string '{s}'"),
            Tok::Op(o) => write!(f, "operator {o:?}"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::End => f.write_str("end of expression"),
        }
    }
}

/// Parses a `--where` expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser { src, toks, pos: 0 };
    let e = p.or()?;
    match p.peek() {
        Tok::End => Ok(e),
        _ => Err(p.err("`and`, `or` or end of expression")),
    }
}

fn error(src: &str, byte: usize, expected: &str, found: String) -> ParseError {
    let column = src[..byte.min(src.len())].chars().count() + 1;
    ParseError {
        column,
        expected: expected.into(),
        found,
        source_text: src.into(),
        caret: format!("{}^", " ".repeat(column - 1)),
    }
}

/// `/` is part of a key: metric names follow TRL's (`rewards/accuracy`), and the language has no
/// division.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

/// Splits into tokens, each with its byte offset.
fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = src[i..].chars().next().unwrap_or(' ');
        let start = i;
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '=' => Tok::Op(Op::Eq),
            '!' | '<' | '>' => {
                let eq = b.get(i + 1) == Some(&b'=');
                let op = match (c, eq) {
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('>', true) => Op::Ge,
                    ('<', false) => Op::Lt,
                    ('>', false) => Op::Gt,
                    _ => return Err(error(src, i, "`!=`", "`!`".into())),
                };
                i += if eq { 2 } else { 1 };
                out.push((start, Tok::Op(op)));
                continue;
            }
            '\'' | '"' => {
                let Some(len) = src[i + 1..].find(c) else {
                    return Err(error(src, i, "a closing quote", "end of expression".into()));
                };
                out.push((start, Tok::Str(src[i + 1..i + 1 + len].into())));
                i += len + 2;
                continue;
            }
            c if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => {
                let len = src[i..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '+')))
                    .unwrap_or(src.len() - i);
                let text = &src[i..i + len];
                let x: f64 = text
                    .parse()
                    .map_err(|_| error(src, i, "a number", format!("`{text}`")))?;
                out.push((start, Tok::Num(x)));
                i += len;
                continue;
            }
            c if is_word_char(c) => {
                let len = src[i..]
                    .find(|ch: char| !is_word_char(ch))
                    .unwrap_or(src.len() - i);
                out.push((start, Tok::Word(src[i..i + len].into())));
                i += len;
                continue;
            }
            other => {
                return Err(error(
                    src,
                    i,
                    "a key, value or operator",
                    format!("`{other}`"),
                ))
            }
        };
        out.push((start, tok));
        i += 1;
    }
    out.push((src.len(), Tok::End));
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(usize, Tok)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].1
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].1.clone();
        if t != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn err(&self, expected: &str) -> ParseError {
        let (at, tok) = &self.toks[self.pos];
        error(self.src, *at, expected, tok.to_string())
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.and()?;
        while self.keyword("or") {
            self.next();
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.not()?;
        while self.keyword("and") {
            self.next();
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.keyword("not") {
            self.next();
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek().clone() {
            Tok::LParen => {
                self.next();
                let e = self.or()?;
                if *self.peek() != Tok::RParen {
                    return Err(self.err("`)`, `and` or `or`"));
                }
                self.next();
                Ok(e)
            }
            Tok::Word(key)
                if !["and", "or", "in"]
                    .iter()
                    .any(|k| key.eq_ignore_ascii_case(k)) =>
            {
                self.next();
                self.comparison(key)
            }
            _ => Err(self.err("a key (e.g. `status`, `stage.pretrain.lr`, `metric.loss`) or `(`")),
        }
    }

    fn comparison(&mut self, key: String) -> Result<Expr, ParseError> {
        let negated = self.keyword("not");
        if negated {
            self.next();
            if !self.keyword("in") {
                return Err(self.err("`in` after `not`"));
            }
        }
        if self.keyword("in") {
            self.next();
            let list = self.list()?;
            let e = Expr::In(key, list);
            return Ok(if negated { Expr::Not(Box::new(e)) } else { e });
        }
        let Tok::Op(op) = self.peek().clone() else {
            return Err(self.err("an operator (= != < <= > >= in)"));
        };
        self.next();
        Ok(Expr::Cmp(key, op, self.value()?))
    }

    fn list(&mut self) -> Result<Vec<Value>, ParseError> {
        if *self.peek() != Tok::LParen {
            return Err(self.err("`(` to open the `in` list"));
        }
        self.next();
        let mut out = vec![self.value()?];
        loop {
            match self.peek() {
                Tok::Comma => {
                    self.next();
                    out.push(self.value()?);
                }
                Tok::RParen => {
                    self.next();
                    return Ok(out);
                }
                _ => return Err(self.err("`,` or `)`")),
            }
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek().clone() {
            Tok::Num(x) => {
                self.next();
                Ok(Value::Num(x))
            }
            Tok::Str(s) => {
                self.next();
                Ok(Value::Str(s))
            }
            Tok::Word(w)
                if !["and", "or", "not", "in"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                self.next();
                Ok(Value::Str(w))
            }
            _ => Err(self.err("a value (number, 'string' or word)")),
        }
    }
}
