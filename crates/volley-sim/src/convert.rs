//! OpenAI (Chat Completions, Responses) and Gemini (`GenerateContentRequest`) requests:
//! validation, and normalization into the Messages-shaped params that the answer generator
//! and the tokenizer read, so every API answers and counts the same way.
//!
//! The normalized params hold `model`, `system` (a string), `messages` (`user` / `assistant`
//! turns with a string or Anthropic-style blocks) and, for structured output,
//! `output_config.format` (`json_schema`).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::answer::{Answer, Block, Style, content_hash, generate};
use crate::hash::StableHasher;
use crate::state::{Fate, Invalid, Rec};
use crate::tokenizer::request_tokens;

/// A validated request, normalized.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) params: Value,
    /// The output bound (`max_completion_tokens`, `max_output_tokens`, `maxOutputTokens`).
    pub(crate) max_tokens: Option<u64>,
    /// Chat Completions `n`.
    pub(crate) choices: u32,
}

impl Prepared {
    pub(crate) fn input_tokens(&self) -> u64 {
        request_tokens(&self.params)
    }

    pub(crate) fn model(&self) -> &str {
        self.params
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The answer (deterministic in the content and the seed).
    pub(crate) fn answer(&self, seed: u64) -> Answer {
        let style = Style::of(&self.params, &mut |v| Arc::new(v.clone()));
        generate(
            &style,
            content_hash(seed, &self.params),
            self.max_tokens.unwrap_or(u64::MAX),
        )
    }

    /// The compact batch record of this request.
    pub(crate) fn record(
        &self,
        custom_id: Box<str>,
        model: Arc<str>,
        seed: u64,
        schemas: &mut Interner,
    ) -> Rec {
        Rec {
            custom_id,
            model,
            style: Style::of(&self.params, &mut |v| schemas.intern(v)),
            invalid: None,
            meta: None,
            citation: None,
            content_hash: content_hash(seed, &self.params),
            fate_hash: 0,
            input_tokens: u32::try_from(self.input_tokens()).unwrap_or(u32::MAX),
            max_tokens: self
                .max_tokens
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(u32::MAX),
            fate: Fate::Succeed,
        }
    }
}

/// The record of a request that failed validation (reported as a per-request error).
pub(crate) fn invalid_record(custom_id: Box<str>, model: Arc<str>, invalid: Invalid) -> Rec {
    Rec {
        custom_id,
        model,
        style: Style::Sentence,
        invalid: Some(Box::new(invalid)),
        meta: None,
        citation: None,
        content_hash: 0,
        fate_hash: 0,
        input_tokens: 0,
        max_tokens: 0,
        fate: Fate::Invalid,
    }
}

/// The text of an answer (the simulator's answers for these APIs are one text block).
pub(crate) fn answer_text(answer: &Answer) -> &str {
    match answer.content.first() {
        Some(Block::Text { text, .. }) => text,
        _ => "",
    }
}

/// Whether the answer was cut by the output bound.
pub(crate) fn truncated(answer: &Answer) -> bool {
    answer.stop_reason == "max_tokens"
}

/// Shares equal schemas between the records of one batch.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    schemas: HashMap<u64, Vec<Arc<Value>>>,
    models: HashMap<String, Arc<str>>,
}

impl Interner {
    pub(crate) fn intern(&mut self, v: &Value) -> Arc<Value> {
        let mut h = StableHasher::new(0);
        h.value(v);
        let bucket = self.schemas.entry(h.finish()).or_default();
        if let Some(found) = bucket.iter().find(|s| ***s == *v) {
            return found.clone();
        }
        let arc = Arc::new(v.clone());
        bucket.push(arc.clone());
        arc
    }

    pub(crate) fn model(&mut self, name: &str) -> Arc<str> {
        if let Some(m) = self.models.get(name) {
            return m.clone();
        }
        let m: Arc<str> = Arc::from(name);
        self.models.insert(name.to_owned(), m.clone());
        m
    }
}

/// The schema of a JSON answer when only "JSON" was asked for (OpenAI `json_object`, Gemini
/// `application/json` without a schema).
fn json_object_schema() -> Value {
    json!({"type": "object", "properties": {"answer": {"type": "string"}},
           "required": ["answer"], "additionalProperties": false})
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI

fn oa_missing(param: &str) -> Invalid {
    Invalid::new(format!("Missing required parameter: '{param}'."))
        .param(param)
        .code("missing_required_parameter")
}

fn oa_type(param: &str, expected: &str, got: &Value) -> Invalid {
    Invalid::new(format!(
        "Invalid type for '{param}': expected {expected}, but got {} instead.",
        type_name(got)
    ))
    .param(param)
    .code("invalid_type")
}

fn oa_value(param: &str, got: &str, supported: &[&str]) -> Invalid {
    let list = match supported {
        [] => String::new(),
        [one] => format!("'{one}'"),
        [init @ .., last] => format!(
            "{}, and '{last}'",
            init.iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Invalid::new(format!(
        "Invalid value: '{got}'. Supported values are: {list}."
    ))
    .param(param)
    .code("invalid_value")
}

/// A positive integer bound, at least `min`.
fn oa_int(body: &Map<String, Value>, key: &str, min: i64) -> Result<Option<u64>, Invalid> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= min => Ok(Some(n as u64)),
            Some(n) => Err(Invalid::new(format!(
                "Invalid '{key}': integer below minimum value. Expected a value >= {min}, but got {n} instead."
            ))
            .param(key)
            .code("integer_below_min_value")),
            None if v.is_u64() => Ok(v.as_u64()),
            None => Err(oa_type(key, "an integer", v)),
        },
    }
}

fn oa_range(body: &Map<String, Value>, key: &str, max: f64) -> Result<(), Invalid> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if x < 0.0 => Err(Invalid::new(format!(
                "Invalid '{key}': decimal below minimum value. Expected a value >= 0, but got {x} instead."
            ))
            .param(key)
            .code("decimal_below_min_value")),
            Some(x) if x > max => Err(Invalid::new(format!(
                "Invalid '{key}': decimal above maximum value. Expected a value <= {max}, but got {x} instead."
            ))
            .param(key)
            .code("decimal_above_max_value")),
            Some(_) => Ok(()),
            None => Err(oa_type(key, "a decimal", v)),
        },
    }
}

fn oa_model(body: &Map<String, Value>) -> Result<String, Invalid> {
    match body.get("model") {
        None | Some(Value::Null) => Err(Invalid::new("you must provide a model parameter")),
        Some(Value::String(m)) if !m.trim().is_empty() => Ok(m.clone()),
        Some(Value::String(_)) => Err(Invalid::new("you must provide a model parameter")),
        Some(other) => Err(oa_type("model", "a string", other)),
    }
}

fn oa_unknown(body: &Map<String, Value>, known: &[&str]) -> Result<(), Invalid> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Invalid::new(format!(
            "Unrecognized request argument supplied: {k}"
        ))),
        None => Ok(()),
    }
}

fn oa_stream(body: &Map<String, Value>, batch: bool) -> Result<(), Invalid> {
    match body.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => Err(Invalid::new(if batch {
            "Streaming is not supported for requests in a batch."
        } else {
            "stream: the simulator does not support streaming; send stream=false"
        })
        .param("stream")
        .code("unsupported_value")),
        Some(other) => Err(oa_type("stream", "a boolean", other)),
    }
}

fn oa_metadata(body: &Map<String, Value>) -> Result<(), Invalid> {
    match body.get("metadata") {
        None | Some(Value::Null) => Ok(()),
        Some(v) => check_metadata(v).map_err(|m| Invalid::new(m).param("metadata")),
    }
}

/// OpenAI `metadata`: at most 16 string pairs, keys ≤ 64 and values ≤ 512 characters.
pub(crate) fn check_metadata(v: &Value) -> Result<(), String> {
    let Some(map) = v.as_object() else {
        return Err(format!(
            "Invalid type for 'metadata': expected an object, but got {} instead.",
            type_name(v)
        ));
    };
    if map.len() > 16 {
        return Err(format!(
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an object with {} properties instead.",
            map.len()
        ));
    }
    for (k, val) in map {
        if k.chars().count() > 64 {
            return Err(format!(
                "Invalid 'metadata': key '{k}' is too long. Expected a key with at most 64 characters."
            ));
        }
        match val.as_str() {
            Some(s) if s.chars().count() <= 512 => {}
            Some(_) => {
                return Err(format!(
                    "Invalid 'metadata.{k}': string too long. Expected a string with maximum length 512."
                ));
            }
            None => {
                return Err(format!(
                    "Invalid type for 'metadata.{k}': expected a string, but got {} instead.",
                    type_name(val)
                ));
            }
        }
    }
    Ok(())
}

/// `data:<mime>;base64,<data>` → (mime, data).
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (head, data) = rest.split_once(',')?;
    Some((head.split(';').next().unwrap_or(""), data))
}

fn image_block(url: &str) -> Value {
    match data_url(url) {
        Some((mime, data)) => {
            json!({"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}})
        }
        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
    }
}

fn document_block(data: Option<&str>, file_id: Option<&str>, url: Option<&str>) -> Value {
    match (data, file_id, url) {
        (Some(d), _, _) => {
            let (mime, data) = data_url(d).unwrap_or(("application/pdf", d));
            json!({"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}})
        }
        (None, Some(f), _) => json!({"type": "document", "source": {"type": "file", "file_id": f}}),
        (None, None, u) => {
            json!({"type": "document", "source": {"type": "url", "url": u.unwrap_or("")}})
        }
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

const CHAT_KEYS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stream_options",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "service_tier",
    "store",
    "metadata",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "functions",
    "function_call",
];

const CHAT_ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];
const CHAT_PARTS: &[&str] = &["text", "image_url", "input_audio", "refusal", "file"];

/// A Chat Completions body (`POST /v1/chat/completions`, or a batch line's `body`).
pub(crate) fn chat(body: &Value, batch: bool) -> Result<Prepared, Invalid> {
    let Some(body) = body.as_object() else {
        return Err(Invalid::new(
            "Invalid body: expected a JSON object with the request parameters.",
        ));
    };
    oa_unknown(body, CHAT_KEYS)?;
    let model = oa_model(body)?;
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Err(oa_missing("messages")),
        Some(Value::Array(m)) if m.is_empty() => {
            return Err(Invalid::new(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            )
            .param("messages")
            .code("empty_array"));
        }
        Some(Value::Array(m)) => m,
        Some(other) => return Err(oa_type("messages", "an array", other)),
    };
    let mut system = Vec::new();
    let mut turns = Vec::with_capacity(messages.len());
    let mut all_text = String::new();
    for (i, m) in messages.iter().enumerate() {
        let path = format!("messages.[{i}]");
        let Some(m) = m.as_object() else {
            return Err(oa_type(&path, "an object", m));
        };
        let role = match m.get("role") {
            None => return Err(oa_missing(&format!("{path}.role"))),
            Some(Value::String(r)) if CHAT_ROLES.contains(&r.as_str()) => r.as_str(),
            Some(Value::String(r)) => return Err(oa_value(&format!("{path}.role"), r, CHAT_ROLES)),
            Some(other) => return Err(oa_type(&format!("{path}.role"), "a string", other)),
        };
        let content = match m.get("content") {
            None | Some(Value::Null) if role == "assistant" => Value::String(String::new()),
            None | Some(Value::Null) => return Err(oa_missing(&format!("{path}.content"))),
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Array(parts)) => {
                let mut blocks = Vec::with_capacity(parts.len());
                for (j, p) in parts.iter().enumerate() {
                    let ppath = format!("{path}.content.[{j}]");
                    let ty = match p.get("type") {
                        Some(Value::String(t)) => t.as_str(),
                        Some(other) => {
                            return Err(oa_type(&format!("{ppath}.type"), "a string", other));
                        }
                        None => return Err(oa_missing(&format!("{ppath}.type"))),
                    };
                    let block = match ty {
                        "text" => match p.get("text") {
                            Some(Value::String(t)) => json!({"type": "text", "text": t}),
                            Some(other) => {
                                return Err(oa_type(&format!("{ppath}.text"), "a string", other));
                            }
                            None => return Err(oa_missing(&format!("{ppath}.text"))),
                        },
                        "refusal" => json!({"type": "text",
                            "text": p.get("refusal").and_then(Value::as_str).unwrap_or("")}),
                        "image_url" => match p
                            .get("image_url")
                            .and_then(|u| u.get("url"))
                            .and_then(Value::as_str)
                        {
                            Some(url) => image_block(url),
                            None => return Err(oa_missing(&format!("{ppath}.image_url.url"))),
                        },
                        "file" => {
                            let f = p.get("file");
                            let data = f.and_then(|f| f.get("file_data")).and_then(Value::as_str);
                            let id = f.and_then(|f| f.get("file_id")).and_then(Value::as_str);
                            if data.is_none() && id.is_none() {
                                return Err(Invalid::new(format!(
                                    "Invalid '{ppath}.file': expected 'file_id' or 'file_data'."
                                ))
                                .param(format!("{ppath}.file"))
                                .code("invalid_value"));
                            }
                            document_block(data, id, None)
                        }
                        "input_audio" => {
                            let data = p
                                .get("input_audio")
                                .and_then(|a| a.get("data"))
                                .and_then(Value::as_str)
                                .unwrap_or("");
                            json!({"type": "document", "source": {"type": "base64",
                                   "media_type": "audio/wav", "data": data}})
                        }
                        other => return Err(oa_value(&format!("{ppath}.type"), other, CHAT_PARTS)),
                    };
                    blocks.push(block);
                }
                Value::Array(blocks)
            }
            Some(other) => {
                return Err(oa_type(
                    &format!("{path}.content"),
                    "a string or an array",
                    other,
                ));
            }
        };
        let text = text_of(&content);
        all_text.push_str(&text);
        all_text.push(' ');
        match role {
            "system" | "developer" => system.push(text),
            "assistant" => turns.push(json!({"role": "assistant", "content": content})),
            _ => turns.push(json!({"role": "user", "content": content})),
        }
    }
    let max_tokens = match oa_int(body, "max_completion_tokens", 1)? {
        Some(n) => Some(n),
        None => oa_int(body, "max_tokens", 1)?,
    };
    oa_range(body, "temperature", 2.0)?;
    oa_range(body, "top_p", 1.0)?;
    let choices = oa_int(body, "n", 1)?.unwrap_or(1);
    if choices > 128 {
        return Err(Invalid::new(format!(
            "Invalid 'n': integer above maximum value. Expected a value <= 128, but got {choices} instead."
        ))
        .param("n")
        .code("integer_above_max_value"));
    }
    oa_stream(body, batch)?;
    oa_metadata(body)?;
    let schema = match body.get("response_format") {
        None | Some(Value::Null) => None,
        Some(rf) => {
            let ty = match rf.get("type") {
                Some(Value::String(t)) => t.as_str(),
                _ => return Err(oa_missing("response_format.type")),
            };
            match ty {
                "text" => None,
                "json_object" => {
                    if !all_text.to_lowercase().contains("json") {
                        return Err(Invalid::new(
                            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                        )
                        .param("messages"));
                    }
                    Some(json_object_schema())
                }
                "json_schema" => {
                    let Some(js) = rf.get("json_schema").filter(|j| j.is_object()) else {
                        return Err(oa_missing("response_format.json_schema"));
                    };
                    oa_schema_name(js.get("name"), "response_format.json_schema.name")?;
                    match js.get("schema") {
                        None | Some(Value::Null) => Some(json!({"type": "object"})),
                        Some(s) if s.is_object() => Some(s.clone()),
                        Some(other) => {
                            return Err(oa_type(
                                "response_format.json_schema.schema",
                                "an object",
                                other,
                            ));
                        }
                    }
                }
                other => {
                    return Err(oa_value(
                        "response_format.type",
                        other,
                        &["text", "json_object", "json_schema"],
                    ));
                }
            }
        }
    };
    Ok(Prepared {
        params: normalized(&model, system, turns, schema),
        max_tokens,
        choices: u32::try_from(choices).unwrap_or(1),
    })
}

fn oa_schema_name(name: Option<&Value>, param: &str) -> Result<(), Invalid> {
    match name {
        None | Some(Value::Null) => Err(oa_missing(param)),
        Some(Value::String(n))
            if (1..=64).contains(&n.len())
                && n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(())
        }
        Some(Value::String(n)) => Err(Invalid::new(format!(
            "Invalid '{param}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' (at most 64 characters), got '{n}'."
        ))
        .param(param)
        .code("invalid_value")),
        Some(other) => Err(oa_type(param, "a string", other)),
    }
}

fn normalized(model: &str, system: Vec<String>, turns: Vec<Value>, schema: Option<Value>) -> Value {
    let mut p = Map::new();
    p.insert("model".into(), Value::String(model.to_owned()));
    if !system.is_empty() {
        p.insert("system".into(), Value::String(system.join("\n")));
    }
    p.insert("messages".into(), Value::Array(turns));
    if let Some(schema) = schema {
        p.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
    }
    Value::Object(p)
}

const RESPONSES_KEYS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "text",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "store",
    "metadata",
    "stream",
    "stream_options",
    "background",
    "previous_response_id",
    "reasoning",
    "truncation",
    "user",
    "include",
    "service_tier",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "max_tool_calls",
    "top_logprobs",
    "conversation",
];

const RESPONSE_PARTS: &[&str] = &[
    "input_text",
    "input_image",
    "input_file",
    "input_audio",
    "output_text",
    "refusal",
];

/// A Responses body (`POST /v1/responses`, or a batch line's `body`).
pub(crate) fn responses(body: &Value, batch: bool) -> Result<Prepared, Invalid> {
    let Some(body) = body.as_object() else {
        return Err(Invalid::new(
            "Invalid body: expected a JSON object with the request parameters.",
        ));
    };
    oa_unknown(body, RESPONSES_KEYS)?;
    let model = oa_model(body)?;
    let mut system = Vec::new();
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => system.push(s.clone()),
        Some(other) => return Err(oa_type("instructions", "a string", other)),
    }
    let mut turns = Vec::new();
    match body.get("input") {
        None | Some(Value::Null) => return Err(oa_missing("input")),
        Some(Value::String(s)) => turns.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(Invalid::new(
                    "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                )
                .param("input")
                .code("empty_array"));
            }
            for (i, item) in items.iter().enumerate() {
                let path = format!("input[{i}]");
                let Some(item) = item.as_object() else {
                    return Err(oa_type(&path, "an object", item));
                };
                let ty = item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("message");
                if ty != "message" {
                    // Tool calls and their outputs, reasoning items...: costed as their JSON.
                    turns.push(
                        json!({"role": "user", "content": Value::Object(item.clone()).to_string()}),
                    );
                    continue;
                }
                let role = match item.get("role").and_then(Value::as_str) {
                    Some(r @ ("user" | "assistant" | "system" | "developer")) => r,
                    Some(r) => {
                        return Err(oa_value(
                            &format!("{path}.role"),
                            r,
                            &["user", "assistant", "system", "developer"],
                        ));
                    }
                    None => return Err(oa_missing(&format!("{path}.role"))),
                };
                let content = match item.get("content") {
                    Some(Value::String(s)) => Value::String(s.clone()),
                    Some(Value::Array(parts)) => {
                        let mut blocks = Vec::with_capacity(parts.len());
                        for (j, p) in parts.iter().enumerate() {
                            let ppath = format!("{path}.content[{j}]");
                            let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
                            let s = |k: &str| p.get(k).and_then(Value::as_str);
                            let block = match ty {
                                "input_text" | "output_text" => match s("text") {
                                    Some(t) => json!({"type": "text", "text": t}),
                                    None => return Err(oa_missing(&format!("{ppath}.text"))),
                                },
                                "refusal" => {
                                    json!({"type": "text", "text": s("refusal").unwrap_or("")})
                                }
                                "input_image" => match (s("image_url"), s("file_id")) {
                                    (Some(url), _) => image_block(url),
                                    (None, Some(f)) => json!({"type": "image",
                                        "source": {"type": "file", "file_id": f}}),
                                    (None, None) => {
                                        return Err(Invalid::new(format!(
                                            "Invalid '{ppath}': expected 'image_url' or 'file_id'."
                                        ))
                                        .param(ppath)
                                        .code("invalid_value"));
                                    }
                                },
                                "input_file" => {
                                    let (d, f, u) = (s("file_data"), s("file_id"), s("file_url"));
                                    if d.is_none() && f.is_none() && u.is_none() {
                                        return Err(Invalid::new(format!(
                                            "Invalid '{ppath}': expected 'file_id', 'file_data' or 'file_url'."
                                        ))
                                        .param(ppath)
                                        .code("invalid_value"));
                                    }
                                    document_block(d, f, u)
                                }
                                "input_audio" => json!({"type": "document", "source": {
                                    "type": "base64", "media_type": "audio/wav",
                                    "data": p.get("input_audio").and_then(|a| a.get("data"))
                                        .and_then(Value::as_str).unwrap_or("")}}),
                                other => {
                                    return Err(oa_value(
                                        &format!("{ppath}.type"),
                                        other,
                                        RESPONSE_PARTS,
                                    ));
                                }
                            };
                            blocks.push(block);
                        }
                        Value::Array(blocks)
                    }
                    None => return Err(oa_missing(&format!("{path}.content"))),
                    Some(other) => {
                        return Err(oa_type(
                            &format!("{path}.content"),
                            "a string or an array",
                            other,
                        ));
                    }
                };
                match role {
                    "system" | "developer" => system.push(text_of(&content)),
                    r => turns.push(json!({"role": r, "content": content})),
                }
            }
        }
        Some(other) => return Err(oa_type("input", "a string or an array", other)),
    }
    if turns.is_empty() {
        return Err(oa_missing("input"));
    }
    let max_tokens = oa_int(body, "max_output_tokens", 16)?;
    oa_range(body, "temperature", 2.0)?;
    oa_range(body, "top_p", 1.0)?;
    oa_stream(body, batch)?;
    oa_metadata(body)?;
    if body.get("background") == Some(&Value::Bool(true)) {
        return Err(Invalid::new("background: the simulator does not run responses in the background; send background=false")
            .param("background")
            .code("unsupported_value"));
    }
    if let Some(prev) = body.get("previous_response_id").and_then(Value::as_str) {
        return Err(
            Invalid::new(format!("Previous response with id '{prev}' not found."))
                .param("previous_response_id")
                .code("previous_response_not_found"),
        );
    }
    let schema = match body.get("text").and_then(|t| t.get("format")) {
        None | Some(Value::Null) => None,
        Some(f) => match f.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(json_object_schema()),
            Some("json_schema") => {
                oa_schema_name(f.get("name"), "text.format.name")?;
                match f.get("schema") {
                    Some(s) if s.is_object() => Some(s.clone()),
                    None | Some(Value::Null) => return Err(oa_missing("text.format.schema")),
                    Some(other) => return Err(oa_type("text.format.schema", "an object", other)),
                }
            }
            Some(other) => {
                return Err(oa_value(
                    "text.format.type",
                    other,
                    &["text", "json_object", "json_schema"],
                ));
            }
            None => return Err(oa_missing("text.format.type")),
        },
    };
    Ok(Prepared {
        params: normalized(&model, system, turns, schema),
        max_tokens,
        choices: 1,
    })
}

/// Parameters of `POST /v1/responses/input_tokens` (openai-python `InputTokenCountParams`).
const INPUT_TOKENS_KEYS: &[&str] = &[
    "conversation",
    "input",
    "instructions",
    "model",
    "parallel_tool_calls",
    "previous_response_id",
    "reasoning",
    "text",
    "tool_choice",
    "tools",
    "truncation",
];

/// A `POST /v1/responses/input_tokens` body: the parameters of a Responses request that reach
/// the model, validated as `POST /v1/responses` validates them.
pub(crate) fn responses_input_tokens(body: &Value) -> Result<Prepared, Invalid> {
    if let Some(body) = body.as_object() {
        oa_unknown(body, INPUT_TOKENS_KEYS)?;
    }
    responses(body, false)
}

// ---------------------------------------------------------------------------------------------
// Gemini

/// `snake_case` → `lowerCamelCase` (proto3 JSON accepts both).
pub(crate) fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `camel_key` (or its snake_case spelling) in a JSON object.
pub(crate) fn field<'a>(obj: &'a Value, camel_key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    if let Some(v) = map.get(camel_key) {
        return Some(v);
    }
    map.iter()
        .find(|(k, _)| camel(k) == camel_key)
        .map(|(_, v)| v)
}

fn gm(path: &str, problem: impl std::fmt::Display) -> Invalid {
    Invalid::new(format!("* GenerateContentRequest.{path}: {problem}\n"))
}

fn gm_unknown(obj: &Map<String, Value>, known: &[&str], at: Option<&str>) -> Result<(), Invalid> {
    for k in obj.keys() {
        if !known.contains(&camel(k).as_str()) {
            return Err(Invalid::new(match at {
                Some(at) => format!(
                    "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
                ),
                None => format!(
                    "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
                ),
            }));
        }
    }
    Ok(())
}

const GM_REQUEST_KEYS: &[&str] = &[
    "model",
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "safetySettings",
    "generationConfig",
    "cachedContent",
    "labels",
    "serviceTier",
    "store",
];

const GM_CONFIG_KEYS: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
    "audioTimestamp",
];

const GM_MIME: &[&str] = &[
    "text/plain",
    "application/json",
    "application/xml",
    "application/yaml",
    "text/x.enum",
];

/// Converts a Gemini content's parts to blocks.
fn gm_parts(parts: Option<&Value>, path: &str) -> Result<Vec<Value>, Invalid> {
    let parts = match parts {
        Some(Value::Array(p)) if !p.is_empty() => p,
        Some(Value::Array(_)) | None => {
            return Err(gm(
                &format!("{path}.parts"),
                "contents.parts must not be empty.",
            ));
        }
        Some(_) => return Err(gm(&format!("{path}.parts"), "must be a list of Part")),
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let ppath = format!("{path}.parts[{j}]");
        if !p.is_object() {
            return Err(gm(&ppath, "must be a Part object"));
        }
        let block = if let Some(t) = field(p, "text") {
            match t.as_str() {
                Some(t) => json!({"type": "text", "text": t}),
                None => return Err(gm(&format!("{ppath}.text"), "must be a string")),
            }
        } else if let Some(blob) = field(p, "inlineData") {
            let mime = field(blob, "mimeType")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some(data) = field(blob, "data").and_then(Value::as_str) else {
                return Err(gm(&format!("{ppath}.inline_data.data"), "data is required"));
            };
            if mime.starts_with("image/") {
                json!({"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}})
            } else {
                json!({"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}})
            }
        } else if let Some(file) = field(p, "fileData") {
            let mime = field(file, "mimeType")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some(uri) = field(file, "fileUri").and_then(Value::as_str) else {
                return Err(gm(
                    &format!("{ppath}.file_data.file_uri"),
                    "file_uri is required",
                ));
            };
            if mime.starts_with("image/") {
                json!({"type": "image", "source": {"type": "url", "url": uri}})
            } else {
                json!({"type": "document", "source": {"type": "url", "url": uri}})
            }
        } else if let Some(other) = [
            "functionCall",
            "functionResponse",
            "executableCode",
            "codeExecutionResult",
        ]
        .iter()
        .find_map(|k| field(p, k))
        {
            json!({"type": "text", "text": other.to_string()})
        } else {
            return Err(gm(
                &format!("{ppath}.data"),
                "required oneof field 'data' must have one initialized field",
            ));
        };
        blocks.push(block);
    }
    Ok(blocks)
}

/// Gemini's OpenAPI-subset `Schema` (uppercase types) as a JSON Schema.
pub(crate) fn openapi_schema(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, val) in map {
                let key = camel(k);
                let converted = match key.as_str() {
                    "type" => match val.as_str() {
                        Some(t) => Value::String(t.to_lowercase()),
                        None => val.clone(),
                    },
                    "properties" => match val.as_object() {
                        Some(props) => Value::Object(
                            props
                                .iter()
                                .map(|(name, s)| (name.clone(), openapi_schema(s)))
                                .collect(),
                        ),
                        None => val.clone(),
                    },
                    "items" => openapi_schema(val),
                    "anyOf" => match val.as_array() {
                        Some(alts) => Value::Array(alts.iter().map(openapi_schema).collect()),
                        None => val.clone(),
                    },
                    _ => val.clone(),
                };
                out.insert(key, converted);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// A `GenerateContentRequest` (`:generateContent`, an inline batch request, or a file line's
/// `request`) for `model` (without `models/`).
pub(crate) fn gemini(request: &Value, model: &str) -> Result<Prepared, Invalid> {
    let Some(obj) = request.as_object() else {
        return Err(Invalid::new(
            "Invalid JSON payload received. Expected an object (GenerateContentRequest).",
        ));
    };
    gm_unknown(obj, GM_REQUEST_KEYS, None)?;
    let contents = match field(request, "contents") {
        Some(Value::Array(c)) if !c.is_empty() => c,
        Some(Value::Array(_)) | None => {
            return Err(gm("contents", "contents is not specified"));
        }
        Some(_) => return Err(gm("contents", "must be a list of Content")),
    };
    let mut turns = Vec::with_capacity(contents.len());
    for (i, c) in contents.iter().enumerate() {
        let path = format!("contents[{i}]");
        let role = match field(c, "role") {
            None | Some(Value::Null) => "user",
            Some(Value::String(r)) if r == "user" || r.is_empty() => "user",
            Some(Value::String(r)) if r == "model" => "assistant",
            Some(_) => {
                return Err(gm(
                    &format!("{path}.role"),
                    "Please use a valid role: user, model.",
                ));
            }
        };
        let blocks = gm_parts(field(c, "parts"), &path)?;
        turns.push(json!({"role": role, "content": blocks}));
    }
    let mut system = Vec::new();
    if let Some(si) = field(request, "systemInstruction").filter(|v| !v.is_null()) {
        let blocks = gm_parts(field(si, "parts"), "system_instruction")?;
        system.push(text_of(&Value::Array(blocks)));
    }
    let mut max_tokens = None;
    let mut schema = None;
    if let Some(cfg) = field(request, "generationConfig").filter(|v| !v.is_null()) {
        let Some(map) = cfg.as_object() else {
            return Err(gm("generation_config", "must be a GenerationConfig object"));
        };
        gm_unknown(map, GM_CONFIG_KEYS, Some("generation_config"))?;
        if let Some(v) = field(cfg, "maxOutputTokens") {
            match v.as_i64() {
                Some(n) if n >= 1 => max_tokens = Some(n as u64),
                Some(_) => {
                    return Err(gm(
                        "generation_config.max_output_tokens",
                        "max_output_tokens must be positive.",
                    ));
                }
                None => {
                    return Err(gm(
                        "generation_config.max_output_tokens",
                        "must be an integer",
                    ));
                }
            }
        }
        if let Some(v) = field(cfg, "temperature")
            && !v.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t))
        {
            return Err(gm(
                "generation_config.temperature",
                "temperature must be between 0 and 2",
            ));
        }
        if let Some(v) = field(cfg, "candidateCount")
            && v.as_i64() != Some(1)
        {
            return Err(gm(
                "generation_config.candidate_count",
                "the simulator answers one candidate; set candidate_count to 1",
            ));
        }
        let mime = match field(cfg, "responseMimeType") {
            None | Some(Value::Null) => "text/plain",
            Some(Value::String(m)) if GM_MIME.contains(&m.as_str()) => m.as_str(),
            Some(_) => {
                return Err(gm(
                    "generation_config.response_mime_type",
                    "allowed mimetypes are `text/plain`, `application/json`, `application/xml`, `application/yaml` and `text/x.enum`.",
                ));
            }
        };
        let openapi = field(cfg, "responseSchema").filter(|v| !v.is_null());
        let plain = field(cfg, "responseJsonSchema").filter(|v| !v.is_null());
        if openapi.is_some() && plain.is_some() {
            return Err(gm(
                "generation_config",
                "response_schema and response_json_schema cannot both be set.",
            ));
        }
        let given = plain.cloned().or_else(|| openapi.map(openapi_schema));
        if given.is_some() && mime != "application/json" && mime != "text/x.enum" {
            return Err(gm(
                "generation_config.response_mime_type",
                "a response schema requires response_mime_type 'application/json' or 'text/x.enum'.",
            ));
        }
        if let Some(s) = &given
            && !s.is_object()
        {
            return Err(gm(
                "generation_config.response_schema",
                "must be a Schema object",
            ));
        }
        schema = match (mime, given) {
            (_, Some(s)) => Some(s),
            ("application/json", None) => Some(json_object_schema()),
            _ => None,
        };
    }
    Ok(Prepared {
        params: normalized(model, system, turns, schema),
        max_tokens,
        choices: 1,
    })
}

/// Whether `model` (without `models/`) names a Gemini model the simulator serves: a
/// `gemini-<version>-...` or `gemma-<version>-...` id, or a `-latest` alias.
pub(crate) fn gemini_model_known(model: &str) -> bool {
    let versioned = |prefix: &str| {
        model
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    };
    let ok_chars = model
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    ok_chars
        && (versioned("gemini-")
            || versioned("gemma-")
            || (model.starts_with("gemini-") && model.ends_with("-latest")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_ok() -> Value {
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"}], "max_completion_tokens": 50})
    }

    #[test]
    fn chat_normalizes_system_and_turns() {
        let p = chat(&chat_ok(), false).unwrap();
        assert_eq!(
            p.params,
            json!({"model": "gpt-4o-mini", "system": "Be brief.",
                   "messages": [{"role": "user", "content": "Hello there"}]})
        );
        assert_eq!(p.max_tokens, Some(50));
        assert_eq!(p.choices, 1);
        let mut b = chat_ok();
        b["response_format"] = json!({"type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}});
        let p = chat(&b, true).unwrap();
        assert_eq!(
            p.params["output_config"]["format"]["schema"],
            json!({"type": "object"})
        );
        let mut parts = chat_ok();
        parts["messages"][1]["content"] = json!([
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,BBBB"}}]);
        let p = chat(&parts, false).unwrap();
        let blocks = &p.params["messages"][0]["content"];
        assert_eq!(blocks[1]["source"]["data"], "AAAA");
        assert_eq!(blocks[2]["source"]["media_type"], "application/pdf");
    }

    #[test]
    fn chat_errors_name_param_and_code() {
        let err = |edit: &dyn Fn(&mut Value)| {
            let mut b = chat_ok();
            edit(&mut b);
            chat(&b, true).unwrap_err()
        };
        let e = err(&|b| drop(b.as_object_mut().unwrap().remove("messages")));
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert_eq!(e.code, Some("missing_required_parameter"));
        let e = err(&|b| b["max_completion_tokens"] = json!(0));
        assert_eq!(e.code, Some("integer_below_min_value"));
        let e = err(&|b| b["messages"][1]["role"] = json!("robot"));
        assert_eq!(e.param.as_deref(), Some("messages.[1].role"));
        assert_eq!(e.code, Some("invalid_value"));
        let e = err(&|b| b["bogus"] = json!(1));
        assert_eq!(e.message, "Unrecognized request argument supplied: bogus");
        let e = err(&|b| b["stream"] = json!(true));
        assert_eq!(e.param.as_deref(), Some("stream"));
        let e = err(&|b| b["response_format"] = json!({"type": "json_object"}));
        assert!(e.message.contains("json"), "{e:?}");
        let e = err(&|b| {
            b["response_format"] = json!({"type": "json_schema", "json_schema": {"schema": {}}})
        });
        assert_eq!(e.param.as_deref(), Some("response_format.json_schema.name"));
        let e = err(&|b| drop(b.as_object_mut().unwrap().remove("model")));
        assert_eq!(e.message, "you must provide a model parameter");
        let e = err(&|b| b["temperature"] = json!(3));
        assert_eq!(e.code, Some("decimal_above_max_value"));
    }

    #[test]
    fn responses_normalize_and_check_bounds() {
        let b = json!({"model": "gpt-5", "instructions": "Be brief.", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
            "max_output_tokens": 16,
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}});
        let p = responses(&b, false).unwrap();
        assert_eq!(p.params["system"], "Be brief.");
        assert_eq!(p.params["messages"][0]["content"][0]["text"], "Hi");
        assert!(p.params["output_config"].is_object());
        let mut small = b.clone();
        small["max_output_tokens"] = json!(15);
        assert_eq!(
            responses(&small, false).unwrap_err().code,
            Some("integer_below_min_value")
        );
        let s = responses(&json!({"model": "m", "input": "Hello"}), true).unwrap();
        assert_eq!(s.params["messages"][0]["content"], "Hello");
        assert!(responses(&json!({"model": "m"}), true).is_err());
    }

    #[test]
    fn gemini_accepts_both_casings_and_converts_schemas() {
        let camel_req = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"maxOutputTokens": 20, "responseMimeType": "application/json",
                "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}}});
        let snake_req = json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "system_instruction": {"parts": [{"text": "Be brief."}]},
            "generation_config": {"max_output_tokens": 20, "response_mime_type": "application/json",
                "response_schema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}}});
        let a = gemini(&camel_req, "gemini-2.5-flash").unwrap();
        let b = gemini(&snake_req, "gemini-2.5-flash").unwrap();
        assert_eq!(a.params, b.params);
        assert_eq!(a.max_tokens, Some(20));
        assert_eq!(
            a.params["output_config"]["format"]["schema"],
            json!({"type": "object", "properties": {"a": {"type": "string"}}})
        );
        assert_eq!(a.params["system"], "Be brief.");
    }

    #[test]
    fn gemini_errors() {
        let m = "gemini-2.5-flash";
        assert!(
            gemini(&json!({"contents": []}), m)
                .unwrap_err()
                .message
                .contains("contents is not specified")
        );
        assert!(
            gemini(&json!({"contents": [{"parts": []}]}), m)
                .unwrap_err()
                .message
                .contains("parts must not be empty")
        );
        assert!(
            gemini(
                &json!({"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}),
                m
            )
            .unwrap_err()
            .message
            .contains("valid role")
        );
        assert!(
            gemini(
                &json!({"contents": [{"parts": [{"text": "x"}]}], "nope": 1}),
                m
            )
            .unwrap_err()
            .message
            .contains("Unknown name \"nope\"")
        );
        let both = json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {
            "responseMimeType": "application/json", "responseSchema": {"type": "STRING"},
            "responseJsonSchema": {"type": "string"}}});
        assert!(gemini(&both, m).is_err());
        let no_mime = json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {
            "responseJsonSchema": {"type": "string"}}});
        assert!(gemini(&no_mime, m).is_err());
    }

    #[test]
    fn gemini_models() {
        for ok in [
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-3.1-pro-preview",
            "gemini-flash-latest",
            "gemma-3-27b-it",
        ] {
            assert!(gemini_model_known(ok), "{ok}");
        }
        for bad in ["gemini-no-such-model", "gpt-4o", "", "Gemini-2.5-flash"] {
            assert!(!gemini_model_known(bad), "{bad}");
        }
    }
}
