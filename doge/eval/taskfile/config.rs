//! A task file's keys, typed: lm-eval's `TaskConfig` (the keys its YAML files use), read from the
//! [`Node`] tree of a YAML or KDL file after `include` is merged. Every key lm-eval defines is
//! either honoured or refused with the reason; an unknown key is an error at its line, with the
//! closest known key suggested.

use super::template::Templates;
use super::tree::{error, FileError, Node, Pos, Value};

/// How a task is scored (lm-eval's `output_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    MultipleChoice,
    Loglikelihood,
    LoglikelihoodRolling,
    GenerateUntil,
}

impl OutputType {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputType::MultipleChoice => "multiple_choice",
            OutputType::Loglikelihood => "loglikelihood",
            OutputType::LoglikelihoodRolling => "loglikelihood_rolling",
            OutputType::GenerateUntil => "generate_until",
        }
    }

    /// lm-eval's default `metric_list` for the output type.
    fn default_metrics(self) -> &'static [&'static str] {
        match self {
            OutputType::MultipleChoice => &["acc", "acc_norm"],
            OutputType::Loglikelihood => &["perplexity", "acc"],
            OutputType::LoglikelihoodRolling => {
                &["word_perplexity", "byte_perplexity", "bits_per_byte"]
            }
            OutputType::GenerateUntil => &["exact_match"],
        }
    }

    /// The metrics doge computes for the output type.
    fn metrics(self) -> &'static [&'static str] {
        match self {
            OutputType::MultipleChoice => &[
                "acc",
                "acc_norm",
                "acc_bytes",
                "acc_mutual_info",
                "exact_match",
            ],
            OutputType::Loglikelihood => &["perplexity", "acc"],
            OutputType::LoglikelihoodRolling => {
                &["word_perplexity", "byte_perplexity", "bits_per_byte"]
            }
            OutputType::GenerateUntil => &["exact_match"],
        }
    }
}

/// A `doc_to_text` / `doc_to_target` / `doc_to_choice` value as written: a row field's name or a
/// Jinja template (decided per row, as lm-eval decides by the dataset's columns), an index, or a
/// fixed list.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSpec {
    Str(String),
    Int(i64),
    List(Vec<String>),
}

/// One entry of `metric_list`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub metric: String,
    pub higher_is_better: Option<bool>,
    /// `exact_match`'s options (HF evaluate's).
    pub ignore_case: bool,
    pub ignore_punctuation: bool,
    pub ignore_numbers: bool,
    pub regexes_to_ignore: Vec<String>,
}

/// One step of a `filter_list` pipeline (pure text functions only).
#[derive(Debug, Clone, PartialEq)]
pub enum FilterStep {
    Regex {
        pattern: String,
        group_select: i64,
        fallback: String,
    },
    TakeFirst,
    Lowercase,
    Uppercase,
    /// lm-eval's `remove_whitespace`: `str.strip()`.
    RemoveWhitespace,
    Map {
        mapping: Vec<(String, String)>,
        default: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterSpec {
    pub name: String,
    pub steps: Vec<FilterStep>,
}

/// `generation_kwargs` of a `generate_until` task (greedy only).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSpec {
    pub until: Vec<String>,
    pub max_gen_toks: usize,
}

/// A task, ready to run.
#[derive(Debug)]
pub struct TaskConfig {
    pub name: String,
    /// Where `task:` was written.
    pub pos: Pos,
    pub tags: Vec<String>,
    pub dataset_path: Option<String>,
    pub dataset_name: Option<String>,
    /// `dataset_kwargs.data_files` when `dataset_path` is `json`/`parquet`/`csv`: split -> files.
    pub data_files: Vec<(String, Vec<String>)>,
    pub training_split: Option<String>,
    pub validation_split: Option<String>,
    pub test_split: Option<String>,
    pub fewshot_split: Option<String>,
    pub doc_to_text: FieldSpec,
    pub doc_to_target: FieldSpec,
    pub doc_to_choice: Option<FieldSpec>,
    pub description: String,
    pub target_delimiter: String,
    pub fewshot_delimiter: String,
    pub num_fewshot: Option<usize>,
    /// `fewshot_config: {sampler: first_n}`: the first k rows of the pool, not a random draw.
    pub fewshot_first_n: bool,
    /// `fewshot_config: {samples: [...]}`: the few-shot pool written in the file.
    pub fewshot_samples: Option<Vec<serde_json::Value>>,
    pub output_type: OutputType,
    pub metrics: Vec<MetricSpec>,
    pub generation: GenerationSpec,
    pub filters: Vec<FilterSpec>,
    /// doge's `add_bos` (not lm-eval's): force the beginning-of-sequence token on or off.
    pub add_bos: Option<bool>,
    pub templates: Templates,
}

impl TaskConfig {
    /// The split scored: lm-eval's order, test first.
    pub fn eval_split(&self) -> Option<&str> {
        self.test_split
            .as_deref()
            .or(self.validation_split.as_deref())
    }

    /// Where few-shot examples come from: `fewshot_split`, else training, validation, test.
    pub fn fewshot_pool_split(&self) -> Option<&str> {
        self.fewshot_split
            .as_deref()
            .or(self.training_split.as_deref())
            .or(self.validation_split.as_deref())
            .or(self.test_split.as_deref())
    }
}

/// The keys of lm-eval's `TaskConfig`, each with what doge does with it.
const KEYS: &[&str] = &[
    "task",
    "task_alias",
    "tag",
    "group",
    "include",
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "custom_dataset",
    "training_split",
    "validation_split",
    "test_split",
    "fewshot_split",
    "process_docs",
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "doc_to_image",
    "doc_to_audio",
    "unsafe_code",
    "process_results",
    "use_prompt",
    "description",
    "target_delimiter",
    "fewshot_delimiter",
    "fewshot_config",
    "num_fewshot",
    "metric_list",
    "output_type",
    "generation_kwargs",
    "repeats",
    "filter_list",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "gen_prefix",
    "metadata",
    "add_bos",
];

/// Keys that hold Python in lm-eval and what to write in their place.
fn function_advice(key: &str) -> &'static str {
    match key {
        "process_docs" => "doge runs no Python: compute the field in the template instead (e.g. `doc_to_text: \"{{ question.strip() }}\"`, `doc_to_choice: \"{{ [a, b] }}\"`), or preprocess the rows into a .jsonl file and point `dataset_path: json` + `dataset_kwargs: {data_files: ...}` at it",
        "doc_to_text" | "doc_to_target" | "doc_to_choice" => "doge runs no Python: write the field as a Jinja template over the row (`\"{{ field }}\"`, filters such as `regex_replace`, Python string methods such as `.strip()`)",
        "process_results" => "doge runs no Python: pick metrics from metric_list (acc, acc_norm, acc_mutual_info, exact_match...) and filters from filter_list (regex, take_first, lowercase...)",
        _ => "doge runs no Python; write the value itself",
    }
}

/// Reads a merged task mapping. `name_hint` names the task when the file has no `task` key.
pub fn read(node: &Node) -> Result<TaskConfig, FileError> {
    let Value::Map(entries) = &node.value else {
        return Err(error(
            &node.pos,
            None,
            format!("a task is a mapping of keys, not {}", node.kind()),
        ));
    };
    for (key, kpos, value) in entries {
        if !KEYS.contains(&key.as_str()) {
            let close = KEYS
                .iter()
                .map(|k| (strsim::jaro_winkler(k, key), *k))
                .filter(|(s, _)| *s > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let hint = close
                .map(|(_, k)| format!("did you mean `{k}`? "))
                .unwrap_or_default();
            return Err(error(
                kpos,
                Some(key),
                format!(
                    "unknown key; {hint}task files take lm-eval's keys: {}",
                    KEYS.join(", ")
                ),
            ));
        }
        if let Value::Function(f) = &value.value {
            return Err(error(
                &value.pos,
                Some(key),
                format!("`!function {f}` is Python code; {}", function_advice(key)),
            ));
        }
        check_no_functions(value, key)?;
    }
    let get = |k: &str| node.get(k);
    let string = |k: &str| -> Result<Option<String>, FileError> {
        match get(k) {
            None => Ok(None),
            Some(n) => match &n.value {
                Value::Null => Ok(None),
                Value::Str(s) => Ok(Some(s.clone())),
                Value::Int(i) => Ok(Some(i.to_string())),
                _ => Err(error(
                    &n.pos,
                    Some(k),
                    format!("expected a string, found {}", n.kind()),
                )),
            },
        }
    };
    let name = string("task")?
        .ok_or_else(|| error(&node.pos, Some("task"), "a task file needs `task: NAME`"))?;
    let pos = get("task").map_or(node.pos.clone(), |n| n.pos.clone());
    for refused in [
        "custom_dataset",
        "doc_to_image",
        "doc_to_audio",
        "use_prompt",
        "gen_prefix",
    ] {
        if let Some(n) = get(refused).filter(|n| n.value != Value::Null) {
            return Err(error(&n.pos, Some(refused), "not supported by doge (text-only, no promptsource, no assistant prefix); remove it"));
        }
    }
    if let Some(n) = get("unsafe_code").filter(|n| n.value == Value::Bool(true)) {
        return Err(error(
            &n.pos,
            Some("unsafe_code"),
            "doge does not execute task code; remove it",
        ));
    }
    if let Some(n) = get("repeats") {
        if !matches!(n.value, Value::Int(1) | Value::Null) {
            return Err(error(
                &n.pos,
                Some("repeats"),
                "doge decodes greedily, so repeats must be 1",
            ));
        }
    }
    let output_type = match string("output_type")?.as_deref() {
        None | Some("generate_until") => OutputType::GenerateUntil,
        Some("multiple_choice") => OutputType::MultipleChoice,
        Some("loglikelihood") => OutputType::Loglikelihood,
        Some("loglikelihood_rolling") => OutputType::LoglikelihoodRolling,
        Some(other) => {
            let n = get("output_type").expect("present");
            return Err(error(&n.pos, Some("output_type"), format!("`{other}` is not an output type; use multiple_choice, loglikelihood, loglikelihood_rolling or generate_until")));
        }
    };
    let mut templates = Templates::new();
    let mut field = |k: &str, required: bool| -> Result<Option<FieldSpec>, FileError> {
        let Some(n) = get(k).filter(|n| n.value != Value::Null) else {
            if required {
                return Err(error(
                    &node.pos,
                    Some(k),
                    format!("a {} task needs `{k}`", output_type.as_str()),
                ));
            }
            return Ok(None);
        };
        let spec = match &n.value {
            Value::Str(s) => {
                templates
                    .add(k, s)
                    .map_err(|e| error(&n.pos, Some(k), format!("not a valid template: {e}")))?;
                FieldSpec::Str(s.clone())
            }
            Value::Int(i) => FieldSpec::Int(*i),
            Value::List(items) => FieldSpec::List(
                items
                    .iter()
                    .map(|i| match &i.value {
                        Value::Str(s) => Ok(s.clone()),
                        Value::Int(x) => Ok(x.to_string()),
                        _ => Err(error(
                            &i.pos,
                            Some(k),
                            format!("list items must be strings, found {}", i.kind()),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(m) => FieldSpec::List(
                m.iter()
                    .map(|(_, _, v)| match &v.value {
                        Value::Str(s) => Ok(s.clone()),
                        _ => Err(error(&v.pos, Some(k), "mapping values must be strings")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(error(
                    &n.pos,
                    Some(k),
                    format!(
                        "expected a field name, a template, an index or a list, found {}",
                        n.kind()
                    ),
                ))
            }
        };
        Ok(Some(spec))
    };
    let needs_target = output_type != OutputType::GenerateUntil || get("doc_to_target").is_some();
    let doc_to_text = match output_type {
        OutputType::LoglikelihoodRolling => {
            field("doc_to_text", false)?.unwrap_or(FieldSpec::Str(String::new()))
        }
        _ => field("doc_to_text", true)?.expect("required"),
    };
    let doc_to_target = if needs_target {
        field("doc_to_target", true)?.expect("required")
    } else {
        FieldSpec::Str(String::new())
    };
    let doc_to_choice = field("doc_to_choice", output_type == OutputType::MultipleChoice)?;
    let description = string("description")?.unwrap_or_default();
    if !description.is_empty() {
        let n = get("description").expect("present");
        templates.add("description", &description).map_err(|e| {
            error(
                &n.pos,
                Some("description"),
                format!("not a valid template: {e}"),
            )
        })?;
    }
    let num_fewshot = match get("num_fewshot") {
        None => None,
        Some(n) => match n.value {
            Value::Null => None,
            Value::Int(i) if i >= 0 => Some(i as usize),
            _ => {
                return Err(error(
                    &n.pos,
                    Some("num_fewshot"),
                    "expected a whole number of examples",
                ))
            }
        },
    };
    let mut fewshot_first_n = false;
    let mut fewshot_samples = None;
    if let Some(n) = get("fewshot_config") {
        if let Value::Map(m) = &n.value {
            for (k, kp, v) in m {
                match (k.as_str(), &v.value) {
                    ("sampler", Value::Str(s)) if s == "first_n" => fewshot_first_n = true,
                    ("sampler", Value::Str(s)) if s == "default" => {}
                    // Examples written in the file: the rows of the few-shot pool.
                    ("samples", Value::List(rows)) => {
                        fewshot_samples = Some(rows.iter().map(Node::to_json).collect())
                    }
                    _ => {
                        return Err(error(
                            kp,
                            Some(&format!("fewshot_config.{k}")),
                            "doge supports only `sampler: default` or `sampler: first_n`, and `samples: [rows]` here",
                        ))
                    }
                }
            }
        }
    }
    let metrics = read_metrics(get("metric_list"), output_type, &node.pos)?;
    let generation = read_generation(
        get("generation_kwargs"),
        string("fewshot_delimiter")?.as_deref().unwrap_or("\n\n"),
    )?;
    let filters = read_filters(get("filter_list"))?;
    let data_files = read_data_files(get("dataset_kwargs"))?;
    let tags = match get("tag") {
        None => Vec::new(),
        Some(n) => strings(n, "tag")?,
    };
    let add_bos = match get("add_bos") {
        None => None,
        Some(n) => match n.value {
            Value::Bool(b) => Some(b),
            Value::Null => None,
            _ => return Err(error(&n.pos, Some("add_bos"), "expected true or false")),
        },
    };
    Ok(TaskConfig {
        name,
        pos,
        tags,
        dataset_path: string("dataset_path")?,
        dataset_name: string("dataset_name")?,
        data_files,
        training_split: string("training_split")?,
        validation_split: string("validation_split")?,
        test_split: string("test_split")?,
        fewshot_split: string("fewshot_split")?,
        doc_to_text,
        doc_to_target,
        doc_to_choice,
        description,
        target_delimiter: string("target_delimiter")?.unwrap_or_else(|| " ".into()),
        fewshot_delimiter: string("fewshot_delimiter")?.unwrap_or_else(|| "\n\n".into()),
        num_fewshot,
        fewshot_first_n,
        fewshot_samples,
        output_type,
        metrics,
        generation,
        filters,
        add_bos,
        templates,
    })
}

/// `!function` anywhere inside a value (a filter's function, a metric's kwargs) is refused too.
fn check_no_functions(node: &Node, key: &str) -> Result<(), FileError> {
    match &node.value {
        Value::Function(f) => Err(error(
            &node.pos,
            Some(key),
            format!("`!function {f}` is Python code; {}", function_advice(key)),
        )),
        Value::List(items) => items.iter().try_for_each(|i| check_no_functions(i, key)),
        Value::Map(m) => m
            .iter()
            .try_for_each(|(_, _, v)| check_no_functions(v, key)),
        _ => Ok(()),
    }
}

/// A string or a list of strings.
pub fn strings(n: &Node, key: &str) -> Result<Vec<String>, FileError> {
    match &n.value {
        Value::Null => Ok(Vec::new()),
        Value::Str(s) => Ok(vec![s.clone()]),
        Value::List(items) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    error(
                        &i.pos,
                        Some(key),
                        format!("expected a string, found {}", i.kind()),
                    )
                })
            })
            .collect(),
        _ => Err(error(
            &n.pos,
            Some(key),
            format!("expected a string or a list of strings, found {}", n.kind()),
        )),
    }
}

fn read_metrics(
    list: Option<&Node>,
    output: OutputType,
    at: &Pos,
) -> Result<Vec<MetricSpec>, FileError> {
    let plain = |m: &str| MetricSpec {
        metric: m.to_string(),
        higher_is_better: None,
        ignore_case: false,
        ignore_punctuation: false,
        ignore_numbers: false,
        regexes_to_ignore: Vec::new(),
    };
    let Some(list) = list.filter(|n| n.value != Value::Null) else {
        return Ok(output.default_metrics().iter().map(|m| plain(m)).collect());
    };
    let Value::List(items) = &list.value else {
        return Err(error(
            &list.pos,
            Some("metric_list"),
            "expected a list of `- metric: NAME` entries",
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Map(m) = &item.value else {
            return Err(error(
                &item.pos,
                Some("metric_list"),
                "each entry is a mapping with `metric: NAME`",
            ));
        };
        let name = item.get("metric").and_then(Node::as_str).ok_or_else(|| {
            error(
                &item.pos,
                Some("metric_list"),
                "an entry without `metric: NAME`",
            )
        })?;
        if !output.metrics().contains(&name) {
            return Err(error(
                &item.get("metric").expect("present").pos,
                Some("metric"),
                format!(
                    "`{name}` is not a metric doge computes for {} tasks; use one of {}",
                    output.as_str(),
                    output.metrics().join(", ")
                ),
            ));
        }
        let mut spec = plain(name);
        for (k, kp, v) in m {
            let flag = || match v.value {
                Value::Bool(b) => Ok(b),
                _ => Err(error(&v.pos, Some(k), "expected true or false")),
            };
            match k.as_str() {
                "metric" => {}
                "aggregation" => {
                    let agg = v.as_str().unwrap_or("");
                    let natural = match name {
                        "perplexity" => "perplexity",
                        "word_perplexity" | "byte_perplexity" => "weighted_perplexity",
                        "bits_per_byte" => "bits_per_byte",
                        _ => "mean",
                    };
                    if agg != natural {
                        return Err(error(&v.pos, Some("aggregation"), format!("doge aggregates `{name}` by `{natural}` only")));
                    }
                }
                "higher_is_better" => spec.higher_is_better = Some(flag()?),
                // How a group weighs its tasks; meaningless for one task's items.
                "weight_by_size" => {
                    flag()?;
                }
                "ignore_case" => spec.ignore_case = flag()?,
                "ignore_punctuation" => spec.ignore_punctuation = flag()?,
                "ignore_numbers" => spec.ignore_numbers = flag()?,
                "regexes_to_ignore" => spec.regexes_to_ignore = strings(v, k)?,
                _ => return Err(error(kp, Some(k), "unknown metric option; doge knows aggregation, higher_is_better, ignore_case, ignore_punctuation, ignore_numbers, regexes_to_ignore")),
            }
        }
        out.push(spec);
    }
    if out.is_empty() {
        return Err(error(at, Some("metric_list"), "the list is empty"));
    }
    Ok(out)
}

fn read_generation(
    node: Option<&Node>,
    fewshot_delimiter: &str,
) -> Result<GenerationSpec, FileError> {
    let mut spec = GenerationSpec {
        until: vec![fewshot_delimiter.to_string()],
        max_gen_toks: 256,
    };
    let Some(node) = node.filter(|n| n.value != Value::Null) else {
        return Ok(spec);
    };
    let Value::Map(m) = &node.value else {
        return Err(error(
            &node.pos,
            Some("generation_kwargs"),
            "expected a mapping",
        ));
    };
    for (k, kp, v) in m {
        match (k.as_str(), &v.value) {
            ("until", _) => spec.until = strings(v, k)?,
            ("max_gen_toks", Value::Int(i)) if *i > 0 => spec.max_gen_toks = *i as usize,
            ("do_sample", Value::Bool(false)) => {}
            ("temperature", Value::Int(0)) => {}
            ("temperature", Value::Float(t)) if *t == 0.0 => {}
            ("do_sample" | "temperature", _) => {
                return Err(error(
                    &v.pos,
                    Some(k),
                    "doge generates greedily: use do_sample: false, temperature: 0",
                ))
            }
            ("top_p" | "top_k" | "num_beams", _) => {
                return Err(error(kp, Some(k), "doge generates greedily; remove it"))
            }
            _ => return Err(error(
                kp,
                Some(k),
                "unknown generation option; doge knows until, max_gen_toks, do_sample, temperature",
            )),
        }
    }
    Ok(spec)
}

fn read_filters(node: Option<&Node>) -> Result<Vec<FilterSpec>, FileError> {
    let Some(node) = node.filter(|n| n.value != Value::Null) else {
        return Ok(Vec::new());
    };
    let Value::List(items) = &node.value else {
        return Err(error(
            &node.pos,
            Some("filter_list"),
            "expected a list of `- name: NAME, filter: [...]`",
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let name = item
            .get("name")
            .and_then(Node::as_str)
            .ok_or_else(|| error(&item.pos, Some("filter_list"), "an entry without `name`"))?;
        let Some(Node {
            value: Value::List(steps),
            ..
        }) = item.get("filter")
        else {
            return Err(error(
                &item.pos,
                Some("filter_list"),
                "an entry without a `filter:` list",
            ));
        };
        let mut parsed = Vec::new();
        for s in steps {
            let f = s
                .get("function")
                .and_then(Node::as_str)
                .ok_or_else(|| error(&s.pos, Some("filter"), "a step without `function`"))?;
            let text = |k: &str, default: &str| -> Result<String, FileError> {
                match s.get(k) {
                    None => Ok(default.to_string()),
                    Some(n) => n
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| error(&n.pos, Some(k), "expected a string")),
                }
            };
            let step = match f {
                "regex" => {
                    let pattern = text("regex_pattern", r"#### (\-?[0-9\.\,]+)")?;
                    if let Err(e) = fancy_regex::Regex::new(&pattern) {
                        return Err(error(&s.pos, Some("regex_pattern"), format!("not a valid regex: {e}")));
                    }
                    let group_select = match s.get("group_select").map(|n| &n.value) {
                        None => 0,
                        Some(Value::Int(i)) => *i,
                        Some(_) => return Err(error(&s.pos, Some("group_select"), "expected an integer")),
                    };
                    FilterStep::Regex { pattern, group_select, fallback: text("fallback", "[invalid]")? }
                }
                "take_first" => FilterStep::TakeFirst,
                "lowercase" => FilterStep::Lowercase,
                "uppercase" => FilterStep::Uppercase,
                "remove_whitespace" => FilterStep::RemoveWhitespace,
                "map" => {
                    let mut mapping = Vec::new();
                    if let Some(Node { value: Value::Map(m), .. }) = s.get("mapping_dict") {
                        for (k, _, v) in m {
                            mapping.push((k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_json().to_string())));
                        }
                    }
                    let default = s.get("default_value").and_then(Node::as_str).map(str::to_string);
                    FilterStep::Map { mapping, default }
                }
                other => {
                    return Err(error(&s.pos, Some("function"), format!("filter `{other}` is not one doge runs; it has regex, take_first, lowercase, uppercase, remove_whitespace, map")))
                }
            };
            parsed.push(step);
        }
        out.push(FilterSpec {
            name: name.to_string(),
            steps: parsed,
        });
    }
    Ok(out)
}

/// `dataset_kwargs: {data_files: ...}` as lm-eval passes it to `datasets.load_dataset`: a path, a
/// list of paths (split `train`), or a mapping split -> path(s).
fn read_data_files(node: Option<&Node>) -> Result<Vec<(String, Vec<String>)>, FileError> {
    let Some(kwargs) = node.filter(|n| n.value != Value::Null) else {
        return Ok(Vec::new());
    };
    let Value::Map(m) = &kwargs.value else {
        return Err(error(
            &kwargs.pos,
            Some("dataset_kwargs"),
            "expected a mapping",
        ));
    };
    let mut out = Vec::new();
    for (k, kp, v) in m {
        match k.as_str() {
            "data_files" => match &v.value {
                Value::Map(splits) => {
                    for (split, _, files) in splits {
                        out.push((split.clone(), strings(files, "data_files")?));
                    }
                }
                _ => out.push(("train".into(), strings(v, "data_files")?)),
            },
            // Options of the hub download that do not change the rows.
            "trust_remote_code" | "revision" | "verification_mode" => {}
            _ => {
                return Err(error(
                    kp,
                    Some(&format!("dataset_kwargs.{k}")),
                    "doge reads `data_files` here and nothing else",
                ))
            }
        }
    }
    Ok(out)
}
