//! KDL task files and an experiment's `task` blocks -> the same [`Node`] tree a task YAML
//! becomes, with lm-eval's key names, so one reader ([`super::config::read`]) types both.
//!
//! The KDL is checked against the schema of `doge::experiment::EvalTask` first (unknown keys,
//! wrong types, with file:line:column), as every experiment is; what it means is then checked
//! where YAML is.

use std::path::Path;

use super::tree::{error, FileError, Node, Pos, Value};
use crate::experiment::{EvalFilter, EvalMetric, EvalOutputType, EvalTask, FewshotSampler};

/// A `.kdl` task file: one task, or a group (named after the file) when it holds several.
pub fn read(text: &str, path: &Path) -> Result<Node, FileError> {
    let tasks = crate::experiment::load_task_file(path, text).map_err(|e| {
        error(
            &Pos::new(path, 1, 1),
            None,
            format!("{e}").trim_end().to_string(),
        )
    })?;
    let mut nodes: Vec<Node> = tasks
        .iter()
        .map(|(t, (line, col))| to_node(t, &Pos::new(path, *line, *col)))
        .collect();
    if nodes.len() == 1 {
        return Ok(nodes.remove(0));
    }
    let at = Pos::new(path, 1, 1);
    let group = path
        .file_stem()
        .map_or("tasks".into(), |s| s.to_string_lossy().into_owned());
    Ok(map(
        &at,
        vec![("group", str_node(&at, &group)), ("task", list(&at, nodes))],
    ))
}

fn str_node(at: &Pos, s: &str) -> Node {
    Node {
        value: Value::Str(s.to_string()),
        pos: at.clone(),
    }
}

fn list(at: &Pos, items: Vec<Node>) -> Node {
    Node {
        value: Value::List(items),
        pos: at.clone(),
    }
}

fn map(at: &Pos, entries: Vec<(&str, Node)>) -> Node {
    Node {
        value: Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), at.clone(), v))
                .collect(),
        ),
        pos: at.clone(),
    }
}

/// One KDL task as lm-eval's keys.
pub fn to_node(t: &EvalTask, at: &Pos) -> Node {
    let s = |v: &str| str_node(at, v);
    let b = |v: bool| Node {
        value: Value::Bool(v),
        pos: at.clone(),
    };
    let i = |v: i64| Node {
        value: Value::Int(v),
        pos: at.clone(),
    };
    let strs = |v: &[String]| list(at, v.iter().map(|x| s(x)).collect());
    let mut e: Vec<(&str, Node)> = vec![("task", s(&t.task))];
    let opt = |k: &'static str, v: &Option<String>, e: &mut Vec<(&str, Node)>| {
        if let Some(v) = v {
            e.push((k, s(v)));
        }
    };
    if !t.tag.is_empty() {
        e.push(("tag", strs(&t.tag)));
    }
    opt("dataset_path", &t.dataset_path, &mut e);
    opt("dataset_name", &t.dataset_name, &mut e);
    if !t.data_files.is_empty() {
        let files = map(
            at,
            t.data_files
                .iter()
                .map(|(k, v)| (k.as_str(), s(v)))
                .collect(),
        );
        e.push(("dataset_kwargs", map(at, vec![("data_files", files)])));
    }
    opt("training_split", &t.training_split, &mut e);
    opt("validation_split", &t.validation_split, &mut e);
    opt("test_split", &t.test_split, &mut e);
    opt("fewshot_split", &t.fewshot_split, &mut e);
    let output = match t.output_type {
        EvalOutputType::MultipleChoice => "multiple_choice",
        EvalOutputType::Loglikelihood => "loglikelihood",
        EvalOutputType::LoglikelihoodRolling => "loglikelihood_rolling",
        EvalOutputType::GenerateUntil => "generate_until",
    };
    e.push(("output_type", s(output)));
    opt("doc_to_text", &t.doc_to_text, &mut e);
    match (t.target_index, &t.doc_to_target) {
        (Some(idx), _) => e.push(("doc_to_target", i(idx as i64))),
        (None, Some(v)) => e.push(("doc_to_target", s(v))),
        _ => {}
    }
    if !t.choices.is_empty() {
        e.push(("doc_to_choice", strs(&t.choices)));
    } else {
        opt("doc_to_choice", &t.doc_to_choice, &mut e);
    }
    opt("description", &t.description, &mut e);
    opt("target_delimiter", &t.target_delimiter, &mut e);
    opt("fewshot_delimiter", &t.fewshot_delimiter, &mut e);
    if let Some(n) = t.num_fewshot {
        e.push(("num_fewshot", i(n as i64)));
    }
    if let Some(sampler) = t.fewshot_sampler {
        let name = match sampler {
            FewshotSampler::Default => "default",
            FewshotSampler::FirstN => "first_n",
        };
        e.push(("fewshot_config", map(at, vec![("sampler", s(name))])));
    }
    if !t.metric.is_empty() {
        let metrics = t.metric.iter().map(|m| metric_node(m, at)).collect();
        e.push(("metric_list", list(at, metrics)));
    }
    if !t.until.is_empty() || t.max_gen_toks.is_some() {
        let mut g: Vec<(&str, Node)> = Vec::new();
        if !t.until.is_empty() {
            g.push(("until", strs(&t.until)));
        }
        if let Some(n) = t.max_gen_toks {
            g.push(("max_gen_toks", i(n as i64)));
        }
        e.push(("generation_kwargs", map(at, g)));
    }
    if !t.filter.is_empty() {
        let filters = t.filter.iter().map(|f| filter_node(f, at)).collect();
        e.push(("filter_list", list(at, filters)));
    }
    if let Some(v) = t.add_bos {
        e.push(("add_bos", b(v)));
    }
    map(at, e)
}

fn metric_node(m: &EvalMetric, at: &Pos) -> Node {
    let s = |v: &str| str_node(at, v);
    let b = |v: bool| Node {
        value: Value::Bool(v),
        pos: at.clone(),
    };
    let mut e: Vec<(&str, Node)> = vec![("metric", s(&m.metric))];
    if let Some(a) = &m.aggregation {
        e.push(("aggregation", s(a)));
    }
    for (k, v) in [
        ("higher_is_better", m.higher_is_better),
        ("ignore_case", m.ignore_case),
        ("ignore_punctuation", m.ignore_punctuation),
        ("ignore_numbers", m.ignore_numbers),
    ] {
        if let Some(v) = v {
            e.push((k, b(v)));
        }
    }
    if !m.regexes_to_ignore.is_empty() {
        e.push((
            "regexes_to_ignore",
            list(at, m.regexes_to_ignore.iter().map(|r| s(r)).collect()),
        ));
    }
    map(at, e)
}

fn filter_node(f: &EvalFilter, at: &Pos) -> Node {
    let s = |v: &str| str_node(at, v);
    let steps = f
        .step
        .iter()
        .map(|st| {
            let mut e: Vec<(&str, Node)> = vec![("function", s(&st.function))];
            if let Some(p) = &st.regex_pattern {
                e.push(("regex_pattern", s(p)));
            }
            if let Some(g) = st.group_select {
                e.push((
                    "group_select",
                    Node {
                        value: Value::Int(g),
                        pos: at.clone(),
                    },
                ));
            }
            if let Some(fb) = &st.fallback {
                e.push(("fallback", s(fb)));
            }
            if !st.mapping_dict.is_empty() {
                e.push((
                    "mapping_dict",
                    map(
                        at,
                        st.mapping_dict
                            .iter()
                            .map(|(k, v)| (k.as_str(), s(v)))
                            .collect(),
                    ),
                ));
            }
            if let Some(d) = &st.default_value {
                e.push(("default_value", s(d)));
            }
            map(at, e)
        })
        .collect();
    map(at, vec![("name", s(&f.name)), ("filter", list(at, steps))])
}
