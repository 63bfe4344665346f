//! Chat templates: the tokenizer's own Jinja template rendered with minijinja, configured like
//! transformers' `apply_chat_template` (trim_blocks, lstrip_blocks, Python string methods,
//! `raise_exception`, `strftime_now`, Python-style `tojson`).

use std::ops::Range;

use anyhow::{anyhow, bail, Result};
use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde_json::Value as Json;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

/// The special tokens a template can refer to (`bos_token`, `eos_token`, `pad_token`).
#[derive(Debug, Clone, Default)]
pub struct TemplateTokens {
    pub bos: String,
    pub eos: String,
    pub pad: Option<String>,
}

impl ChatTemplate {
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| anyhow!("chat template syntax config: {e}"))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        // transformers strips `{% generation %}` markers' role (assistant masks) the same way: we
        // compute masks from rendered prefixes instead, so the tags only need to disappear.
        let source = strip_generation_tags(source);
        env.add_template_owned("chat", source)
            .map_err(|e| anyhow!("the tokenizer's chat template does not parse: {e:#}"))?;
        Ok(ChatTemplate { env })
    }

    /// Renders `messages` (objects with `role` and `content`), as
    /// `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn render(
        &self,
        messages: &[Json],
        add_generation_prompt: bool,
        tokens: &TemplateTokens,
    ) -> Result<String> {
        let tmpl = self.env.get_template("chat").expect("added in new()");
        let ctx = minijinja::context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => tokens.bos.clone(),
            eos_token => tokens.eos.clone(),
            pad_token => tokens.pad.clone(),
        };
        tmpl.render(ctx)
            .map_err(|e| anyhow!("rendering the chat template: {e:#}"))
    }

    /// The rendered chat and the byte ranges of the assistant's turns (each turn's content and
    /// the end-of-turn text the template emits after it, up to the whitespace that separates
    /// turns), found by rendering the prefixes before and after each assistant message.
    pub fn render_with_spans(
        &self,
        messages: &[Json],
        tokens: &TemplateTokens,
    ) -> Result<(String, Vec<Range<usize>>)> {
        let full = self.render(messages, false, tokens)?;
        let mut spans = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if m.get("role").and_then(Json::as_str) != Some("assistant") {
                continue;
            }
            let before = self.render(&messages[..i], true, tokens)?;
            let after = self.render(&messages[..=i], false, tokens)?;
            if !full.starts_with(&before) || !full.starts_with(&after) || after.len() < before.len()
            {
                bail!("the chat template does not render turns as prefixes of the whole chat, so assistant tokens cannot be located");
            }
            // The newlines after the end-of-turn token are layout between turns, not the
            // answer: the model should learn to stop at the token, not what follows it.
            let end = before.len() + after[before.len()..].trim_end().len();
            spans.push(before.len()..end);
        }
        Ok((full, spans))
    }
}

fn strip_generation_tags(src: &str) -> String {
    let mut out = src.to_string();
    for tag in ["generation", "endgeneration"] {
        for (open, close) in [("{%", "%}"), ("{%-", "%}"), ("{%", "-%}"), ("{%-", "-%}")] {
            out = out.replace(&format!("{open} {tag} {close}"), "");
        }
    }
    out
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// Python's `json.dumps(x, ensure_ascii=False, indent=...)`: `", "`/`": "` separators without
/// indent, and no HTML escaping (minijinja's own `tojson` escapes `<`, `>`, `&`, `'`).
fn tojson(value: Value, indent: Option<usize>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(i) => Some(i),
        None => kwargs.get::<Option<usize>>("indent")?,
    };
    let _ = kwargs.get::<Option<Value>>("ensure_ascii");
    let _ = kwargs.get::<Option<Value>>("sort_keys");
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = Vec::new();
    let res = match indent {
        Some(n) => {
            let ind = vec![b' '; n];
            let mut ser = serde_json::Serializer::with_formatter(
                &mut out,
                serde_json::ser::PrettyFormatter::with_indent(&ind),
            );
            serde::Serialize::serialize(&json, &mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, PySpaced);
            serde::Serialize::serialize(&json, &mut ser)
        }
    };
    res.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from_safe_string(
        String::from_utf8(out).expect("serde_json writes UTF-8"),
    ))
}

/// serde_json formatter with Python's default separators.
struct PySpaced;

impl serde_json::ser::Formatter for PySpaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// `strftime_now(format)`: the current UTC date and time with the common strftime codes
/// (%Y %m %d %e %H %M %S %b %B %a %A %y %j %%).
fn strftime_now(fmt: String) -> Result<Value, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(strftime(secs, &fmt)))
}

/// Formats Unix time `secs` (UTC) with a strftime pattern.
pub fn strftime(secs: i64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out += &y.to_string(),
            Some('y') => out += &format!("{:02}", y.rem_euclid(100)),
            Some('m') => out += &format!("{m:02}"),
            Some('d') => out += &format!("{d:02}"),
            Some('e') => out += &format!("{d:>2}"),
            Some('H') => out += &format!("{:02}", tod / 3600),
            Some('M') => out += &format!("{:02}", tod / 60 % 60),
            Some('S') => out += &format!("{:02}", tod % 60),
            Some('j') => out += &format!("{yday:03}"),
            Some('B') => out += month,
            Some('b') => out += &month[..3],
            Some('A') => out += weekday,
            Some('a') => out += &weekday[..3],
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        // 2024-12-26 00:00:00 UTC (a Thursday) and 2000-02-29 13:05:09 UTC.
        assert_eq!(strftime(1_735_171_200, "%d %b %Y"), "26 Dec 2024");
        assert_eq!(strftime(1_735_171_200, "%A %B %j"), "Thursday December 361");
        assert_eq!(
            strftime(951_829_509, "%Y-%m-%d %H:%M:%S %a"),
            "2000-02-29 13:05:09 Tue"
        );
    }

    #[test]
    fn python_json_separators_and_no_html_escape() {
        let t =
            ChatTemplate::new("{{ messages[0] | tojson }}|{{ messages[0] | tojson(indent=2) }}")
                .unwrap();
        let m = vec![serde_json::json!({"a": [1, 2], "b": "<x>"})];
        let out = t.render(&m, false, &TemplateTokens::default()).unwrap();
        assert_eq!(out, "{\"a\": [1, 2], \"b\": \"<x>\"}|{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"<x>\"\n}");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}").unwrap();
        let e = t
            .render(&[], false, &TemplateTokens::default())
            .unwrap_err();
        assert!(format!("{e:#}").contains("no system role"), "{e:#}");
    }
}
