//! Token estimates made without a network call, used for packing and cost reservations.
use volley_types::{Part, Request};

/// Characters per token for English-like text; providers publish ~4 (Gemini's docs say so).
const CHARS_PER_TOKEN: usize = 4;
/// Tokens a provider adds per message for role markers and framing.
const TOKENS_PER_MESSAGE: u64 = 4;
/// Fixed framing per request.
const TOKENS_PER_REQUEST: u64 = 8;
/// A page of a PDF costs roughly this many tokens (Anthropic: 1,500–3,000 per page of text).
pub const TOKENS_PER_PDF_PAGE_GUESS: u64 = 2_000;
/// An image of typical size (Anthropic: width × height / 750, capped near 1,600).
pub const TOKENS_PER_IMAGE_GUESS: u64 = 1_600;

/// Estimated input tokens of `request`.
pub fn input_tokens(request: &Request) -> u64 {
    let mut chars = request.system.as_deref().map_or(0, str::len);
    let mut tokens = TOKENS_PER_REQUEST;
    for message in &request.messages {
        tokens += TOKENS_PER_MESSAGE;
        for part in &message.content {
            match part {
                Part::Text { text } => chars += text.len(),
                Part::Document {
                    data, media_type, ..
                } if media_type == "application/pdf" => {
                    // base64 → bytes; a text-heavy PDF page is ~3 KB.
                    let pages = (data.len() as u64 * 3 / 4).div_ceil(3_000).max(1);
                    tokens += pages * TOKENS_PER_PDF_PAGE_GUESS;
                }
                Part::Document { data, .. } => chars += data.len() * 3 / 4,
                Part::Image { .. } => tokens += TOKENS_PER_IMAGE_GUESS,
            }
        }
    }
    tokens + chars.div_ceil(CHARS_PER_TOKEN) as u64
}

/// Tokens a provider may add per message, at most (role markers, separators).
const BOUND_PER_MESSAGE: u64 = 16;
/// Tokens a provider may add per request, at most.
const BOUND_PER_REQUEST: u64 = 64;
/// Most tokens one image can cost on any provider (they resize large images down).
pub const BOUND_PER_IMAGE: u64 = 2_000;

/// An upper bound on the input tokens `request` can be billed for, used to reserve cost
/// against a cap. Every provider's tokenizer spends at least one byte of text per token, so
/// text, the system prompt and the output schema count one token per byte; PDFs count two per
/// byte (their pages are also billed as images). Typically 3–4× the estimate: a cap that holds
/// must be pessimistic, and reservations are replaced by actual usage as batches return.
pub fn input_tokens_bound(request: &Request) -> u64 {
    let mut tokens = BOUND_PER_REQUEST + request.system.as_deref().map_or(0, |s| s.len() as u64);
    if let Some(schema) = &request.schema {
        tokens += schema.to_string().len() as u64;
    }
    for message in &request.messages {
        tokens += BOUND_PER_MESSAGE;
        for part in &message.content {
            tokens += match part {
                Part::Text { text } => text.len() as u64,
                Part::Document {
                    data, media_type, ..
                } => {
                    let bytes = data.len() as u64 * 3 / 4;
                    if media_type == "application/pdf" {
                        bytes * 2
                    } else {
                        bytes
                    }
                }
                Part::Image { .. } => BOUND_PER_IMAGE,
            };
        }
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_types::Message;

    #[test]
    fn grows_with_text() {
        let mut r = Request {
            id: "a".into(),
            model: "m".into(),
            messages: vec![Message::user("x".repeat(400))],
            system: None,
            max_tokens: 10,
            temperature: None,
            schema: None,
            citations: false,
            metadata: None,
        };
        assert_eq!(input_tokens(&r), 8 + 4 + 100);
        r.system = Some("y".repeat(40));
        assert_eq!(input_tokens(&r), 8 + 4 + 110);
        // The bound: one token per byte plus framing, always above the estimate.
        assert_eq!(input_tokens_bound(&r), 64 + 40 + 16 + 400);
        r.schema = Some(serde_json::json!({"type": "object"}));
        assert_eq!(input_tokens_bound(&r), 64 + 40 + 16 + 400 + 17);
        assert!(input_tokens_bound(&r) > input_tokens(&r));
    }
}
