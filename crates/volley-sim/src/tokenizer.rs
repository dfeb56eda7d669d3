//! The simulator's own pseudo-tokenizer.
//!
//! Deliberately simple and written independently of any estimator elsewhere in volley, so that a
//! client's estimate and the "provider's" count are two different numbers, as in real life:
//!
//! - text: every run of ASCII letters/digits costs one token per started 4 characters; every
//!   other non-space character (punctuation, symbols, non-ASCII letters) costs one token;
//! - each message costs [`PER_MESSAGE`] tokens on top of its content, the request [`BASE`], a
//!   system prompt [`PER_SYSTEM`] on top of its text;
//! - images cost [`IMAGE_BASE`] + [`IMAGE_PER_KB`] per started KB of decoded data (at most
//!   [`IMAGE_MAX`]), or [`IMAGE_REMOTE`] when given by URL or file id;
//! - base64 documents (PDFs) cost [`DOC_BASE`] + [`DOC_PER_KB`] per started KB; plain-text
//!   documents cost their text; documents given by URL or file id cost [`DOC_REMOTE`];
//! - tools cost [`PER_TOOL`] each plus their JSON; an output schema [`PER_SCHEMA`] plus its JSON.

use serde_json::Value;

/// Fixed cost of every request (the reply primer).
pub const BASE: u64 = 3;
/// Per message, on top of its content.
pub const PER_MESSAGE: u64 = 4;
/// For a system prompt, on top of its text.
pub const PER_SYSTEM: u64 = 3;
/// Per tool definition, on top of its JSON.
pub const PER_TOOL: u64 = 8;
/// Once per request that declares tools.
pub const TOOLS_BASE: u64 = 30;
/// For a structured-output schema, on top of its JSON.
pub const PER_SCHEMA: u64 = 20;
/// Image: fixed part.
pub const IMAGE_BASE: u64 = 64;
/// Image: per started KB of decoded data.
pub const IMAGE_PER_KB: u64 = 16;
/// Image: upper bound.
pub const IMAGE_MAX: u64 = 1600;
/// Image given by URL or file id.
pub const IMAGE_REMOTE: u64 = 1000;
/// Base64 document: fixed part.
pub const DOC_BASE: u64 = 64;
/// Base64 document: per started KB of decoded data.
pub const DOC_PER_KB: u64 = 32;
/// Document given by URL or file id.
pub const DOC_REMOTE: u64 = 2000;

/// Tokens of a piece of text.
pub fn text_tokens(s: &str) -> u64 {
    let mut n = 0;
    let mut run = 0u64;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            run += 1;
            continue;
        }
        n += run.div_ceil(4);
        run = 0;
        if !c.is_whitespace() {
            n += 1;
        }
    }
    n + run.div_ceil(4)
}

/// The longest prefix of `s` that costs at most `max` tokens.
pub fn truncate_to_tokens(s: &str, max: u64) -> &str {
    let mut n = 0;
    let mut run = 0u64;
    for (i, c) in s.char_indices() {
        let cost = if c.is_ascii_alphanumeric() {
            run += 1;
            u64::from(run % 4 == 1)
        } else {
            run = 0;
            u64::from(!c.is_whitespace())
        };
        if n + cost > max {
            return &s[..i];
        }
        n += cost;
    }
    s
}

/// Tokens of a JSON value written compactly.
pub fn json_tokens(v: &Value) -> u64 {
    text_tokens(&v.to_string())
}

/// Input tokens of a Messages request (`/v1/messages`, batch `params` or `count_tokens`).
///
/// The caller is expected to have validated the shape; unknown shapes are costed by their JSON.
pub fn request_tokens(params: &Value) -> u64 {
    let mut n = BASE;
    if let Some(system) = params.get("system") {
        n += PER_SYSTEM + content_tokens(system);
    }
    if let Some(messages) = params.get("messages").and_then(Value::as_array) {
        for m in messages {
            n += PER_MESSAGE;
            if let Some(content) = m.get("content") {
                n += content_tokens(content);
            }
        }
    }
    if let Some(tools) = params.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
    {
        n += TOOLS_BASE;
        for tool in tools {
            n += PER_TOOL;
            for key in ["name", "description"] {
                if let Some(s) = tool.get(key).and_then(Value::as_str) {
                    n += text_tokens(s);
                }
            }
            if let Some(schema) = tool.get("input_schema") {
                n += json_tokens(schema);
            }
        }
    }
    for format in [
        params.get("output_config").and_then(|c| c.get("format")),
        params.get("output_format"),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(schema) = format.get("schema") {
            n += PER_SCHEMA + json_tokens(schema);
        }
    }
    n
}

/// Tokens of a `content` (or `system`) value: a string or a list of blocks.
fn content_tokens(content: &Value) -> u64 {
    match content {
        Value::String(s) => text_tokens(s),
        Value::Array(blocks) => blocks.iter().map(block_tokens).sum(),
        other => json_tokens(other),
    }
}

fn block_tokens(block: &Value) -> u64 {
    let str_field = |key: &str| {
        block
            .get(key)
            .and_then(Value::as_str)
            .map_or(0, text_tokens)
    };
    match block.get("type").and_then(Value::as_str) {
        Some("text") => str_field("text"),
        Some("thinking") => str_field("thinking"),
        Some("image") => image_tokens(block.get("source")),
        Some("document") => {
            str_field("title") + str_field("context") + document_tokens(block.get("source"))
        }
        Some("tool_use") => str_field("name") + block.get("input").map_or(0, json_tokens),
        Some("tool_result") => block.get("content").map_or(0, content_tokens),
        _ => json_tokens(block),
    }
}

/// Decoded size in started KB of a base64 payload.
fn base64_kb(data: &str) -> u64 {
    let bytes = (data.len() as u64).saturating_mul(3) / 4;
    bytes.div_ceil(1024).max(1)
}

fn image_tokens(source: Option<&Value>) -> u64 {
    match source.and_then(|s| s.get("data")).and_then(Value::as_str) {
        Some(data) => (IMAGE_BASE + IMAGE_PER_KB * base64_kb(data)).min(IMAGE_MAX),
        None => IMAGE_REMOTE,
    }
}

fn document_tokens(source: Option<&Value>) -> u64 {
    let Some(source) = source else { return 0 };
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let data = source.get("data").and_then(Value::as_str).unwrap_or("");
            DOC_BASE + DOC_PER_KB * base64_kb(data)
        }
        Some("text") => source
            .get("data")
            .and_then(Value::as_str)
            .map_or(0, text_tokens),
        Some("content") => source.get("content").map_or(0, content_tokens),
        _ => DOC_REMOTE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_cost_one_token_per_started_four_chars() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("   "), 0);
        assert_eq!(text_tokens("a"), 1);
        assert_eq!(text_tokens("abcd"), 1);
        assert_eq!(text_tokens("abcde"), 2);
        assert_eq!(text_tokens("hello world"), 4);
        assert_eq!(text_tokens("Hi, you!"), 4);
        assert_eq!(text_tokens("{\"a\":1}"), 7);
        // Non-ASCII letters cost one token each.
        assert_eq!(text_tokens("日本語"), 3);
        assert_eq!(text_tokens("café"), 2);
    }

    #[test]
    fn truncation_hits_the_budget_exactly() {
        let s = "The quick brown fox, jumps over the lazy dog. {\"k\": [1, 2]}";
        let total = text_tokens(s);
        for max in 0..=total + 2 {
            let t = truncate_to_tokens(s, max);
            assert_eq!(text_tokens(t), max.min(total), "max {max}: {t:?}");
            assert!(s.starts_with(t));
        }
        assert_eq!(truncate_to_tokens(s, total), s);
    }

    #[test]
    fn request_tokens_adds_overheads() {
        let simple = json!({"model": "m", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hello world"}]});
        assert_eq!(request_tokens(&simple), BASE + PER_MESSAGE + 4);

        let with_system = json!({"model": "m", "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]});
        assert_eq!(
            request_tokens(&with_system),
            BASE + PER_SYSTEM + 4 + PER_MESSAGE + 4
        );

        let schema = json!({"type": "object"});
        let structured = json!({"model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}}});
        assert_eq!(
            request_tokens(&structured),
            BASE + PER_MESSAGE + 1 + PER_SCHEMA + json_tokens(&schema)
        );
    }

    #[test]
    fn images_and_documents_cost_by_size() {
        let kb3 = "A".repeat(4096); // 3 KB decoded
        let req = json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": kb3}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": kb3}},
            {"type": "document", "source": {"type": "url", "url": "https://x"}},
            {"type": "image", "source": {"type": "url", "url": "https://x"}},
        ]}]});
        assert_eq!(
            request_tokens(&req),
            BASE + PER_MESSAGE
                + (IMAGE_BASE + 3 * IMAGE_PER_KB)
                + (DOC_BASE + 3 * DOC_PER_KB)
                + DOC_REMOTE
                + IMAGE_REMOTE
        );
        let huge = "A".repeat(4_000_000);
        let big_image = json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": huge}}]}]});
        assert_eq!(request_tokens(&big_image), BASE + PER_MESSAGE + IMAGE_MAX);
    }

    #[test]
    fn tools_are_counted() {
        let req = json!({"messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "label", "description": "Pick a label", "input_schema": {"type": "object"}}]});
        assert_eq!(
            request_tokens(&req),
            BASE + PER_MESSAGE
                + 1
                + TOOLS_BASE
                + PER_TOOL
                + 2
                + 4
                + json_tokens(&json!({"type": "object"}))
        );
    }
}
