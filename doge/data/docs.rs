//! Documents: what one source row becomes before tokenization, and how a row's fields map to it.

use serde_json::{json, Map, Value};

use super::config::Kind;

/// One training example, not yet tokenized.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    /// Plain text.
    Text(String),
    /// A conversation: objects with at least `role` and `content`.
    Chat(Vec<Value>),
    /// A preference pair: the prompt turns and the two candidate assistant answers.
    Pair {
        prompt: Vec<Value>,
        chosen: String,
        rejected: String,
    },
}

impl Doc {
    /// Characters of text, for progress and size estimates.
    pub fn text_len(&self) -> usize {
        let chat = |m: &[Value]| {
            m.iter()
                .map(|v| v.get("content").and_then(Value::as_str).map_or(0, str::len))
                .sum::<usize>()
        };
        match self {
            Doc::Text(t) => t.len(),
            Doc::Chat(m) => chat(m),
            Doc::Pair {
                prompt,
                chosen,
                rejected,
            } => chat(prompt) + chosen.len() + rejected.len(),
        }
    }

    /// A stable identity of the content, to keep held-out documents out of training even when a
    /// corpus repeats them.
    pub fn content_key(&self) -> u64 {
        let s = match self {
            Doc::Text(t) => t.clone(),
            Doc::Chat(m) => Value::Array(m.clone()).to_string(),
            Doc::Pair {
                prompt,
                chosen,
                rejected,
            } => json!([prompt, chosen, rejected]).to_string(),
        };
        fnv1a(s.as_bytes())
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The field of a row that a source reads, for the error messages.
pub fn default_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Pretrain => "text",
        Kind::Sft => "messages",
        Kind::Dpo => "chosen",
    }
}

/// Turns one JSON row into a document. The error says what is wrong with the row, without its
/// location (the caller adds file and line).
pub fn from_row(row: &Value, field: Option<&str>, kind: Kind) -> Result<Doc, String> {
    let obj = row
        .as_object()
        .ok_or_else(|| format!("expected a JSON object, found {}", type_name(row)))?;
    if kind == Kind::Dpo {
        return pair(obj);
    }
    if kind == Kind::Sft && field.is_none() && !obj.contains_key("messages") {
        return sft_layout(obj);
    }
    let field = field.unwrap_or(default_field(kind));
    if let Some((q, a)) = field.split_once('+') {
        let q = get_str(obj, q.trim())?;
        let a = get_str(obj, a.trim())?;
        return Ok(Doc::Chat(vec![msg("user", q), msg("assistant", a)]));
    }
    let v = get(obj, field)?;
    match v {
        Value::String(s) if kind == Kind::Pretrain => Ok(Doc::Text(s.clone())),
        Value::String(_) => Err(format!(
            "field `{field}` is text, but SFT needs a chat: name a `messages` list, or two fields as `PROMPT+ANSWER`"
        )),
        Value::Array(items) => Ok(Doc::Chat(messages(items, field)?)),
        other => Err(format!("field `{field}` is {}, expected text or a list of messages", type_name(other))),
    }
}

/// SFT rows without `messages`: ShareGPT (`conversations` of `from`/`value` turns) or Alpaca
/// (`instruction`, optional `input`, `output`), each with an optional `system` text; Alpaca's
/// optional `history` (`[[query, answer], ...]`) becomes the earlier turns. Alpaca's user turn is
/// the instruction and the input joined by a newline, as LLaMA-Factory renders it.
fn sft_layout(obj: &Map<String, Value>) -> Result<Doc, String> {
    let mut chat = Vec::new();
    if let Some(system) = obj.get("system") {
        match system {
            Value::String(s) if !s.is_empty() => chat.push(msg("system", s)),
            Value::String(_) | Value::Null => {}
            other => {
                return Err(format!(
                    "field `system` is {}, expected text",
                    type_name(other)
                ))
            }
        }
    }
    if let Some(conv) = obj.get("conversations") {
        let Value::Array(items) = conv else {
            return Err(format!(
                "field `conversations` is {}, expected a list of turns",
                type_name(conv)
            ));
        };
        chat.extend(messages(items, "conversations")?);
        return Ok(Doc::Chat(chat));
    }
    if obj.contains_key("instruction") && obj.contains_key("output") {
        if let Some(history) = obj.get("history").filter(|h| !h.is_null()) {
            let turns = history.as_array().ok_or_else(|| {
                "field `history` must be a list of [query, answer] pairs".to_string()
            })?;
            for (k, t) in turns.iter().enumerate() {
                match t.as_array().map(Vec::as_slice) {
                    Some([Value::String(q), Value::String(a)]) => {
                        chat.push(msg("user", q));
                        chat.push(msg("assistant", a));
                    }
                    _ => {
                        return Err(format!(
                            "`history[{k}]` is not a [query, answer] pair of texts"
                        ))
                    }
                }
            }
        }
        let instruction = get_str(obj, "instruction")?;
        let user = match obj.get("input") {
            Some(Value::String(i)) if !i.is_empty() => format!("{instruction}\n{i}"),
            Some(Value::String(_)) | Some(Value::Null) | None => instruction.to_string(),
            Some(other) => {
                return Err(format!(
                    "field `input` is {}, expected text",
                    type_name(other)
                ))
            }
        };
        chat.push(msg("user", &user));
        chat.push(msg("assistant", get_str(obj, "output")?));
        return Ok(Doc::Chat(chat));
    }
    Err(format!(
        "no chat in this row: SFT reads `messages` ({{role, content}} turns), `conversations` (ShareGPT {{from, value}} turns) or `instruction` + `output` (Alpaca); fields present: {}; or name a field with `text \"FIELD\"` on the source",
        keys(obj)
    ))
}

fn pair(obj: &Map<String, Value>) -> Result<Doc, String> {
    let chosen = get(obj, "chosen")?;
    let rejected = get(obj, "rejected")?;
    match (chosen, rejected) {
        // ultrafeedback_binarized: whole conversations; the prompt is all but the last turn.
        (Value::Array(c), Value::Array(r)) => {
            let c = messages(c, "chosen")?;
            let r = messages(r, "rejected")?;
            let (Some(last_c), Some(last_r)) = (c.last(), r.last()) else {
                return Err("`chosen` or `rejected` is an empty conversation".into());
            };
            let prompt = match obj.get("prompt") {
                Some(Value::String(p)) if c.len() == 1 => vec![msg("user", p)],
                _ => c[..c.len() - 1].to_vec(),
            };
            Ok(Doc::Pair {
                prompt,
                chosen: content(last_c)?,
                rejected: content(last_r)?,
            })
        }
        // Plain answers (strings) or single messages, with the prompt in `prompt` or `conversations`.
        (c, r) => {
            let answer = |v: &Value, name: &str| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Object(_) => content(&normalize_message(v, name)?),
                other => Err(format!(
                    "field `{name}` is {}, expected text, a message or a conversation",
                    type_name(other)
                )),
            };
            let prompt = match (obj.get("prompt"), obj.get("conversations")) {
                (Some(Value::String(p)), _) => vec![msg("user", p)],
                (Some(Value::Array(m)), _) => messages(m, "prompt")?,
                (None, Some(Value::Array(m))) => messages(m, "conversations")?,
                _ => {
                    return Err(format!(
                    "no `prompt` (text or messages) or `conversations` field; fields present: {}",
                    keys(obj)
                ))
                }
            };
            Ok(Doc::Pair {
                prompt,
                chosen: answer(c, "chosen")?,
                rejected: answer(r, "rejected")?,
            })
        }
    }
}

fn msg(role: &str, content: &str) -> Value {
    json!({ "role": role, "content": content })
}

fn content(m: &Value) -> Result<String, String> {
    m.get("content")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "a message has no text `content`".into())
}

/// Messages as `{role, content}` objects; ShareGPT's `{from, value}` (human/gpt) is accepted too.
fn messages(items: &[Value], field: &str) -> Result<Vec<Value>, String> {
    items.iter().map(|m| normalize_message(m, field)).collect()
}

fn normalize_message(m: &Value, field: &str) -> Result<Value, String> {
    let obj = m
        .as_object()
        .ok_or_else(|| format!("`{field}` holds {}, expected message objects", type_name(m)))?;
    if obj.contains_key("role") {
        if !obj.contains_key("content") {
            return Err(format!(
                "a message of `{field}` has a `role` but no `content`"
            ));
        }
        return Ok(m.clone());
    }
    match (obj.get("from").and_then(Value::as_str), obj.get("value")) {
        (Some(from), Some(value)) => {
            let role = match from {
                "human" | "user" => "user",
                "gpt" | "assistant" => "assistant",
                "system" => "system",
                "function_call" | "observation" | "tool" => "tool",
                other => other,
            };
            Ok(json!({ "role": role, "content": value }))
        }
        _ => Err(format!(
            "a message of `{field}` has neither `role`/`content` nor `from`/`value` (keys: {})",
            keys(obj)
        )),
    }
}

fn get<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Value, String> {
    match obj.get(field) {
        Some(Value::Null) | None => Err(format!(
            "field `{field}` is absent (fields present: {}); name the right one with `text \"FIELD\"` on the source",
            keys(obj)
        )),
        Some(v) => Ok(v),
    }
}

fn get_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    match get(obj, field)? {
        Value::String(s) => Ok(s),
        other => Err(format!(
            "field `{field}` is {}, expected text",
            type_name(other)
        )),
    }
}

fn keys(obj: &Map<String, Value>) -> String {
    if obj.is_empty() {
        return "none".into();
    }
    obj.keys()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sft(row: Value) -> Result<Doc, String> {
        from_row(&row, None, Kind::Sft)
    }

    #[test]
    fn sharegpt_rows_with_a_system_text() {
        let doc = sft(json!({"system": "Be brief.", "conversations": [
            {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}]}))
        .unwrap();
        assert_eq!(
            doc,
            Doc::Chat(vec![
                msg("system", "Be brief."),
                msg("user", "Hi"),
                msg("assistant", "Hello.")
            ])
        );
    }

    #[test]
    fn alpaca_rows_join_instruction_and_input_and_keep_history() {
        let doc = sft(
            json!({"instruction": "Translate.", "input": "chat", "output": "cat",
            "history": [["Say one.", "One."]]}),
        )
        .unwrap();
        assert_eq!(
            doc,
            Doc::Chat(vec![
                msg("user", "Say one."),
                msg("assistant", "One."),
                msg("user", "Translate.\nchat"),
                msg("assistant", "cat")
            ])
        );
        let doc =
            sft(json!({"instruction": "Name a colour.", "input": "", "output": "Blue."})).unwrap();
        assert_eq!(
            doc,
            Doc::Chat(vec![
                msg("user", "Name a colour."),
                msg("assistant", "Blue.")
            ])
        );
    }

    #[test]
    fn an_unknown_sft_layout_names_the_layouts_and_the_fields() {
        let e = sft(json!({"question": "?", "answer": "!"})).unwrap_err();
        assert!(
            e.contains("`messages`") && e.contains("`conversations`") && e.contains("Alpaca"),
            "{e}"
        );
        assert!(e.contains("`answer`, `question`"), "{e}");
        let e =
            sft(json!({"instruction": "x", "output": "y", "history": [["only one"]]})).unwrap_err();
        assert!(e.contains("history[0]"), "{e}");
    }
}
