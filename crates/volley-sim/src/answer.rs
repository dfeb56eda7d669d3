//! Deterministic answers.
//!
//! What to answer is decided once per request ([`Style`], computed from the params at submit
//! time and cheap to keep); the text itself is regenerated from a content hash whenever it is
//! needed, so a 100,000-request batch does not hold 100,000 answers in memory.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::hash::{StableHasher, mix2};
use crate::schema;
use crate::tokenizer::{json_tokens, text_tokens, truncate_to_tokens};

/// Short common words (every one costs 1 or 2 tokens) for sentences and free-form strings.
pub(crate) static WORDS: &[&str] = &[
    "the", "data", "text", "item", "user", "case", "note", "main", "point", "shows", "clear",
    "risk", "value", "trend", "good", "weak", "strong", "focus", "topic", "report", "review",
    "order", "price", "cost", "time", "plan", "team", "goal", "fact", "idea", "issue", "level",
    "model", "sample", "result", "change", "growth", "market", "policy", "signal", "detail", "is",
    "are", "has", "with", "from", "about", "and", "but", "also", "more", "less", "most", "some",
    "each", "this", "that", "new", "key", "high", "low", "early", "late", "overall", "likely",
    "mostly", "simple", "useful", "stable", "recent", "short", "long", "open", "final", "basic",
    "local", "global", "common", "rare", "fast", "slow", "safe", "direct", "mixed", "broad",
    "narrow", "public", "private", "summary", "answer", "context", "source", "claim", "reason",
    "effect", "impact", "example", "pattern", "factor", "region", "sector",
];

static OPENERS: &[&str] = &[
    "The text",
    "This request",
    "In short",
    "Overall",
    "The main point",
    "Briefly",
];

static SENTIMENT: &[&str] = &["positive", "negative", "neutral"];

static TOPICS: &[&str] = &[
    "business",
    "technology",
    "sports",
    "politics",
    "science",
    "health",
    "entertainment",
    "world",
];

/// What kind of answer a request gets.
#[derive(Debug, Clone)]
pub(crate) enum Style {
    /// A short sentence.
    Sentence,
    /// One label from a fixed list (prompts that ask to classify, label, tag...).
    Label(&'static [&'static str]),
    /// JSON text valid against the schema (`output_config.format` / `output_format`).
    Json(Arc<Value>),
    /// A `tool_use` block whose input is valid against the tool's `input_schema`.
    Tool { name: Arc<str>, schema: Arc<Value> },
}

impl Style {
    /// Decides the style from (validated) params. `intern` lets a batch share equal schemas.
    pub(crate) fn of(params: &Value, intern: &mut dyn FnMut(&Value) -> Arc<Value>) -> Style {
        let format = params
            .get("output_config")
            .and_then(|c| c.get("format"))
            .or_else(|| params.get("output_format"));
        if let Some(schema) = format
            .filter(|f| f.get("type").and_then(Value::as_str) == Some("json_schema"))
            .and_then(|f| f.get("schema"))
        {
            return Style::Json(intern(schema));
        }
        let tools = params.get("tools").and_then(Value::as_array);
        let choice = params.get("tool_choice");
        let forced = match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
            Some("tool") => {
                let name = choice.and_then(|c| c.get("name")).and_then(Value::as_str);
                tools.and_then(|ts| {
                    ts.iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == name)
                })
            }
            Some("any") => tools.and_then(|ts| ts.first()),
            _ => None,
        };
        if let Some(tool) = forced {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or("tool");
            let schema = tool.get("input_schema").unwrap_or(&Value::Null);
            return Style::Tool {
                name: Arc::from(name),
                schema: intern(schema),
            };
        }
        let mut probe = String::new();
        if let Some(system) = params.get("system") {
            push_text(&mut probe, system);
        }
        if let Some(last_user) = params
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|ms| {
                ms.iter()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            })
            .and_then(|m| m.get("content"))
        {
            push_text(&mut probe, last_user);
        }
        let probe = probe.to_lowercase();
        if probe.contains("sentiment") {
            Style::Label(SENTIMENT)
        } else if ["classif", "label", "categor", "topic", " tag"]
            .iter()
            .any(|k| probe.contains(k))
        {
            Style::Label(TOPICS)
        } else {
            Style::Sentence
        }
    }
}

/// Appends (a bounded amount of) the text of a content value.
fn push_text(out: &mut String, content: &Value) {
    const LIMIT: usize = 4096;
    match content {
        Value::String(s) => {
            let end = s.char_indices().nth(LIMIT).map_or(s.len(), |(i, _)| i);
            out.push_str(&s[..end]);
            out.push(' ');
        }
        Value::Array(blocks) => {
            for b in blocks {
                if let Some(t) = b.get("text") {
                    push_text(out, t);
                }
            }
        }
        _ => {}
    }
}

/// Hash of everything that determines the answer: seed, model, system, messages, tools and
/// output format (not `max_tokens`, which only truncates).
pub(crate) fn content_hash(seed: u64, params: &Value) -> u64 {
    let mut h = StableHasher::new(seed);
    for key in [
        "model",
        "system",
        "messages",
        "tools",
        "tool_choice",
        "output_config",
        "output_format",
    ] {
        h.str(key);
        h.value(params.get(key).unwrap_or(&Value::Null));
    }
    h.finish()
}

/// A content block of an answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block {
    Text {
        text: String,
        /// Only when the request enabled citations on its documents.
        #[serde(skip_serializing_if = "Option::is_none")]
        citations: Option<Vec<Value>>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// A generated answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) content: Vec<Block>,
    pub(crate) stop_reason: &'static str,
    pub(crate) output_tokens: u64,
}

impl Answer {
    /// Attaches a citation to the text blocks (requests with citations enabled).
    pub(crate) fn cite(&mut self, citation: &Value) {
        for block in &mut self.content {
            if let Block::Text { citations, .. } = block {
                *citations = Some(vec![citation.clone()]);
            }
        }
    }
}

/// The citation an answer carries when the request enabled citations on a document: the
/// first such document is cited (its first sentence for plain text, its first block for custom
/// content, its first page for PDFs and documents given by URL or file id).
pub(crate) fn citation_of(params: &Value) -> Option<Value> {
    let documents = params
        .get("messages")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("document"));
    for (index, doc) in documents.enumerate() {
        let enabled = doc
            .get("citations")
            .and_then(|c| c.get("enabled"))
            .and_then(Value::as_bool)
            == Some(true);
        if !enabled {
            continue;
        }
        let title = doc.get("title").cloned().unwrap_or(Value::Null);
        let source = doc.get("source").unwrap_or(&Value::Null);
        let file_id = source.get("file_id").cloned();
        let mut c = match source.get("type").and_then(Value::as_str) {
            Some("text") => {
                let data = source.get("data").and_then(Value::as_str).unwrap_or("");
                let cited = first_sentence(data);
                serde_json::json!({"type": "char_location", "cited_text": cited,
                    "document_index": index, "document_title": title,
                    "start_char_index": 0, "end_char_index": cited.chars().count()})
            }
            Some("content") => {
                let cited = match source.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(blocks)) => blocks
                        .first()
                        .and_then(|b| b.get("text"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    _ => String::new(),
                };
                serde_json::json!({"type": "content_block_location", "cited_text": cited,
                    "document_index": index, "document_title": title,
                    "start_block_index": 0, "end_block_index": 1})
            }
            _ => serde_json::json!({"type": "page_location", "cited_text": "",
                "document_index": index, "document_title": title,
                "start_page_number": 1, "end_page_number": 2}),
        };
        if let (Some(f), Some(obj)) = (file_id, c.as_object_mut()) {
            obj.insert("file_id".into(), f);
        }
        return Some(c);
    }
    None
}

/// Up to and including the first period, at most 200 characters.
fn first_sentence(s: &str) -> &str {
    let limit = s.char_indices().nth(200).map_or(s.len(), |(i, _)| i);
    let head = &s[..limit];
    match head.find('.') {
        Some(i) => &head[..=i],
        None => head,
    }
}

/// Generates the answer for a request with this style and content hash.
pub(crate) fn generate(style: &Style, hash: u64, max_tokens: u64) -> Answer {
    match style {
        Style::Sentence => text_answer(sentence(hash), max_tokens),
        Style::Label(labels) => {
            let label = labels[(hash % labels.len() as u64) as usize];
            text_answer(label.to_owned(), max_tokens)
        }
        Style::Json(schema) => text_answer(schema::instance(schema, hash).to_string(), max_tokens),
        Style::Tool { name, schema } => {
            let input = schema::instance(schema, hash);
            let natural = 4 + text_tokens(name) + json_tokens(&input);
            let (stop_reason, output_tokens) = if natural > max_tokens {
                ("max_tokens", max_tokens)
            } else {
                ("tool_use", natural)
            };
            Answer {
                content: vec![Block::ToolUse {
                    id: crate::hash::opaque_id("toolu_", mix2(hash, 0x7001)),
                    name: name.to_string(),
                    input,
                }],
                stop_reason,
                output_tokens,
            }
        }
    }
}

fn text_answer(mut text: String, max_tokens: u64) -> Answer {
    let natural = text_tokens(&text);
    if natural > max_tokens {
        let keep = truncate_to_tokens(&text, max_tokens).len();
        text.truncate(keep);
        Answer {
            content: vec![Block::Text {
                text,
                citations: None,
            }],
            stop_reason: "max_tokens",
            output_tokens: max_tokens,
        }
    } else {
        Answer {
            content: vec![Block::Text {
                text,
                citations: None,
            }],
            stop_reason: "end_turn",
            output_tokens: natural,
        }
    }
}

/// A sentence of 12 to 51 tokens, fully determined by `hash`.
fn sentence(hash: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(hash);
    let target = 12 + rng.u64(..40);
    let mut text = String::from(OPENERS[rng.usize(..OPENERS.len())]);
    // Words are separated by spaces, so their costs add up; one token is left for the period.
    let mut n = text_tokens(&text);
    while n + 1 < target {
        let remaining = target - 1 - n;
        let mut word = WORDS[rng.usize(..WORDS.len())];
        if text_tokens(word) > remaining {
            word = "the";
        }
        text.push(' ');
        text.push_str(word);
        n += text_tokens(word);
        if rng.u8(..8) == 0 && n + 2 < target {
            text.push(',');
            n += 1;
        }
    }
    text.push('.');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn style(params: Value) -> Style {
        Style::of(&params, &mut |v| Arc::new(v.clone()))
    }

    #[test]
    fn sentences_are_deterministic_and_sized() {
        for h in 0..200 {
            let s = sentence(h);
            assert_eq!(s, sentence(h));
            let n = text_tokens(&s);
            assert!((12..=51).contains(&n), "{n}: {s}");
            assert!(s.ends_with('.'));
        }
        assert_ne!(sentence(1), sentence(2));
    }

    #[test]
    fn truncation_reports_max_tokens() {
        let full = generate(&Style::Sentence, 9, 10_000);
        assert_eq!(full.stop_reason, "end_turn");
        let Block::Text {
            text: full_text, ..
        } = &full.content[0]
        else {
            panic!()
        };
        assert_eq!(full.output_tokens, text_tokens(full_text));
        let cut = generate(&Style::Sentence, 9, 5);
        assert_eq!(cut.stop_reason, "max_tokens");
        assert_eq!(cut.output_tokens, 5);
        let Block::Text { text, .. } = &cut.content[0] else {
            panic!()
        };
        assert_eq!(text_tokens(text), 5);
        assert!(full_text.starts_with(text.as_str()));
    }

    #[test]
    fn styles_follow_the_prompt() {
        let msg = |t: &str| json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": t}]});
        assert!(matches!(style(msg("Hello there")), Style::Sentence));
        assert!(
            matches!(style(msg("What is the sentiment of: great!")), Style::Label(l) if l == SENTIMENT)
        );
        assert!(
            matches!(style(msg("Classify this headline: ...")), Style::Label(l) if l == TOPICS)
        );
        let mut p = msg("hi");
        p["output_config"] =
            json!({"format": {"type": "json_schema", "schema": {"type": "object"}}});
        assert!(matches!(style(p), Style::Json(_)));
        let mut p = msg("hi");
        p["tools"] = json!([{"name": "a", "input_schema": {"type": "object"}},
                            {"name": "b", "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}]);
        p["tool_choice"] = json!({"type": "tool", "name": "b"});
        let s = style(p);
        let Style::Tool { name, .. } = &s else {
            panic!("{s:?}")
        };
        assert_eq!(&**name, "b");
        let a = generate(&s, 3, 100);
        assert_eq!(a.stop_reason, "tool_use");
        let Block::ToolUse { input, .. } = &a.content[0] else {
            panic!()
        };
        assert_eq!(input, &json!({"x": 1}));
    }

    #[test]
    fn citations_point_at_the_first_enabled_document() {
        let p = json!({"messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Not cited."}},
            {"type": "document", "title": "Grass", "citations": {"enabled": true},
             "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green. The sky is blue."}},
            {"type": "text", "text": "What colour is the grass?"}]}]});
        let c = citation_of(&p).unwrap();
        assert_eq!(
            c,
            json!({"type": "char_location", "cited_text": "The grass is green.", "document_index": 1,
                   "document_title": "Grass", "start_char_index": 0, "end_char_index": 19})
        );
        let pdf = json!({"messages": [{"role": "user", "content": [
            {"type": "document", "citations": {"enabled": true},
             "source": {"type": "file", "file_id": "file_1"}}]}]});
        let c = citation_of(&pdf).unwrap();
        assert_eq!(c["type"], "page_location");
        assert_eq!(c["file_id"], "file_1");
        assert_eq!(c["start_page_number"], 1);
        assert!(citation_of(&json!({"messages": [{"role": "user", "content": "x"}]})).is_none());
        let mut a = generate(&Style::Sentence, 1, 100);
        a.cite(&c);
        let Block::Text { citations, .. } = &a.content[0] else {
            panic!()
        };
        assert_eq!(citations.as_deref(), Some(&[c][..]));
    }

    #[test]
    fn labels_are_single_words() {
        let a = generate(&Style::Label(SENTIMENT), 4, 100);
        let Block::Text { text, .. } = &a.content[0] else {
            panic!()
        };
        assert!(SENTIMENT.contains(&text.as_str()));
        assert_eq!(a.stop_reason, "end_turn");
    }

    #[test]
    fn content_hash_ignores_max_tokens_but_not_content() {
        let a =
            json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]});
        let mut b = a.clone();
        b["max_tokens"] = json!(99);
        assert_eq!(content_hash(0, &a), content_hash(0, &b));
        b["messages"][0]["content"] = json!("y");
        assert_ne!(content_hash(0, &a), content_hash(0, &b));
        assert_ne!(content_hash(0, &a), content_hash(1, &a));
    }
}
