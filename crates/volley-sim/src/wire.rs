//! Anthropic wire shapes the simulator sends (written from the provider docs, independently of
//! `volley-providers`).

use jiff::Timestamp;
use serde::Serialize;

use crate::answer::{Answer, Block};
use crate::state::{BatchView, Counts, Outcome, Rec};

/// RFC 3339 with microseconds and `Z`, like `2024-08-20T18:37:24.100435Z`.
pub(crate) fn rfc3339(ts: Timestamp) -> String {
    format!("{ts:.6}")
}

#[derive(Serialize)]
pub(crate) struct MessageBatchJson {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    processing_status: &'static str,
    request_counts: Counts,
    ended_at: Option<String>,
    created_at: String,
    expires_at: String,
    archived_at: Option<String>,
    cancel_initiated_at: Option<String>,
    results_url: Option<String>,
}

impl MessageBatchJson {
    /// `origin` is `scheme://host:port` of the simulator as the client sees it.
    pub(crate) fn new(v: &BatchView, origin: &str) -> Self {
        let ended = v.ended_at.is_some();
        Self {
            results_url: ended.then(|| format!("{origin}/v1/messages/batches/{}/results", v.id)),
            id: v.id.clone(),
            kind: "message_batch",
            processing_status: v.status.as_str(),
            request_counts: v.counts,
            ended_at: v.ended_at.map(rfc3339),
            created_at: rfc3339(v.created_at),
            expires_at: rfc3339(v.expires_at),
            archived_at: None,
            cancel_initiated_at: v.cancel_initiated_at.map(rfc3339),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct BatchPage {
    pub(crate) data: Vec<MessageBatchJson>,
    pub(crate) has_more: bool,
    pub(crate) first_id: Option<String>,
    pub(crate) last_id: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct Deleted {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
}

#[derive(Serialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

#[derive(Serialize)]
pub(crate) struct Usage {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    service_tier: &'static str,
}

#[derive(Serialize)]
pub(crate) struct MessageJson<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: &'a [Block],
    stop_reason: &'static str,
    stop_sequence: Option<&'a str>,
    usage: Usage,
}

impl<'a> MessageJson<'a> {
    pub(crate) fn new(
        id: String,
        model: &'a str,
        answer: &'a Answer,
        input_tokens: u64,
        service_tier: &'static str,
    ) -> Self {
        Self {
            id,
            kind: "message",
            role: "assistant",
            model,
            content: &answer.content,
            stop_reason: answer.stop_reason,
            stop_sequence: None,
            usage: Usage {
                input_tokens,
                output_tokens: answer.output_tokens,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 0,
                cache_creation: CacheCreation {
                    ephemeral_5m_input_tokens: 0,
                    ephemeral_1h_input_tokens: 0,
                },
                service_tier,
            },
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'a str,
    pub(crate) message: &'a str,
}

/// `{"type":"error","error":{"type","message"},"request_id"}`.
#[derive(Serialize)]
pub(crate) struct ErrorResponse<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) error: ErrorDetail<'a>,
    pub(crate) request_id: Option<&'a str>,
}

impl<'a> ErrorResponse<'a> {
    pub(crate) fn new(kind: &'a str, message: &'a str, request_id: Option<&'a str>) -> Self {
        Self {
            kind: "error",
            error: ErrorDetail { kind, message },
            request_id,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResultJson<'a> {
    Succeeded { message: MessageJson<'a> },
    Errored { error: ErrorResponse<'a> },
    Canceled,
    Expired,
}

#[derive(Serialize)]
struct Line<'a> {
    custom_id: &'a str,
    result: ResultJson<'a>,
}

const API_ERROR_MESSAGE: &str =
    "Internal server error while processing this request (simulated); retrying may succeed";

/// Appends the JSONL line of one batch request.
pub(crate) fn write_result_line(
    out: &mut Vec<u8>,
    rec: &Rec,
    outcome: Outcome,
    message_id: impl FnOnce() -> String,
) {
    let answer;
    let result = match outcome {
        Outcome::Canceled => ResultJson::Canceled,
        Outcome::Expired => ResultJson::Expired,
        Outcome::Errored => match &rec.invalid {
            Some(invalid) => ResultJson::Errored {
                error: ErrorResponse::new("invalid_request_error", &invalid.message, None),
            },
            None => ResultJson::Errored {
                error: ErrorResponse::new("api_error", API_ERROR_MESSAGE, None),
            },
        },
        Outcome::Succeeded => {
            let mut generated =
                crate::answer::generate(&rec.style, rec.content_hash, u64::from(rec.max_tokens));
            if let Some(citation) = &rec.citation {
                generated.cite(citation);
            }
            answer = generated;
            ResultJson::Succeeded {
                message: MessageJson::new(
                    message_id(),
                    &rec.model,
                    &answer,
                    u64::from(rec.input_tokens),
                    "batch",
                ),
            }
        }
    };
    let line = Line {
        custom_id: &rec.custom_id,
        result,
    };
    // Serializing plain structs of strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_microseconds_and_z() {
        let ts: Timestamp = "2024-08-20T18:37:24.100435789Z".parse().unwrap();
        assert_eq!(rfc3339(ts), "2024-08-20T18:37:24.100435Z");
        let whole: Timestamp = "2024-08-20T18:37:24Z".parse().unwrap();
        assert_eq!(rfc3339(whole), "2024-08-20T18:37:24.000000Z");
    }
}
