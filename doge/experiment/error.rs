//! Errors that point at the text that caused them: `file:line:column`, the key, a snippet and
//! what to do, in the style of rustc so that editors can jump to the location.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A loaded source text: an experiment file, or one `--set` argument.
#[derive(Debug)]
pub struct SourceText {
    /// What the location line shows: the file path, or `<--set 2>`.
    pub name: String,
    pub text: String,
    /// The file, for files (relative paths in it are relative to its directory).
    pub path: Option<PathBuf>,
}

/// Where a value was written: a byte range of a source text, or nowhere (a default).
#[derive(Debug, Clone)]
pub enum Origin {
    At {
        src: Arc<SourceText>,
        offset: usize,
        len: usize,
    },
    Default,
}

impl Origin {
    pub fn at(src: &Arc<SourceText>, offset: usize, len: usize) -> Origin {
        Origin::At {
            src: src.clone(),
            offset,
            len,
        }
    }

    /// 1-based line and column (in characters) of the start.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        let Origin::At { src, offset, .. } = self else {
            return None;
        };
        let before = &src.text[..floor_char(&src.text, *offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        Some((line, col))
    }

    pub fn source(&self) -> Option<&Arc<SourceText>> {
        match self {
            Origin::At { src, .. } => Some(src),
            Origin::Default => None,
        }
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One problem with an experiment.
#[derive(Debug, Clone)]
pub struct Error {
    pub origin: Origin,
    /// Dotted key, as `--set` writes it (`stage.pretrain.lr`); empty for the whole file.
    pub key: String,
    pub message: String,
    pub help: Option<String>,
}

impl Error {
    pub fn new(origin: Origin, key: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            origin,
            key: key.into(),
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Error {
        self.help = Some(help.into());
        self
    }

    /// `file:line:column` (or `<default>`).
    pub fn location(&self) -> String {
        match (&self.origin, self.origin.line_col()) {
            (Origin::At { src, .. }, Some((l, c))) => format!("{}:{l}:{c}", src.name),
            _ => "<default value>".into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() {
            String::new()
        } else {
            format!(" `{}`:", self.key)
        };
        writeln!(f, "error: {}:{key} {}", self.location(), self.message)?;
        if let (Origin::At { src, offset, len }, Some((line, col))) =
            (&self.origin, self.origin.line_col())
        {
            let text = src.text.lines().nth(line - 1).unwrap_or("");
            let width = line.to_string().len();
            let avail = text.chars().count().saturating_sub(col - 1).max(1);
            let span = src
                .text
                .get(*offset..offset + len)
                .map_or(1, |s| s.chars().count());
            let carets = "^".repeat(span.clamp(1, avail));
            writeln!(f, "{:width$} |", "")?;
            writeln!(f, "{line} | {text}")?;
            writeln!(f, "{:width$} | {}{carets}", "", " ".repeat(col - 1))?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

/// All the problems found in one pass; nothing is run while there is one.
#[derive(Debug, Clone)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

impl From<Error> for Errors {
    fn from(e: Error) -> Self {
        Errors(vec![e])
    }
}

/// "did you mean" over a set of candidates (Jaro-Winkler, like cargo's suggestions).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| s.replace('_', "-").to_lowercase();
    let w = norm(word);
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&w, &norm(c)), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `a`, `b`, `c` for messages.
pub fn quoted_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
