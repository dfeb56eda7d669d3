//! Pure mapping between volley's types and Anthropic's wire. No IO: every function here is
//! covered by snapshot tests.
use std::borrow::Cow;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use volley_core::ProviderError;
use volley_core::provider::{ItemOutcome, ItemResult, RemoteBatch, RemotePhase, SubmissionItem};
use volley_types::{ErrorInfo, ErrorKind, Part, ProviderKind, Request, Role, Usage};

use super::wire::{
    Base64Source, BatchPage, BatchRequest, BatchResult, CitationsConfig, ContentBlock,
    CountTokensParams, CreateBatch, DocumentSource, ErrorResponse, JsonSchemaFormat, MessageBatch,
    MessageParam, MessageParams, OutputConfig, ResponseBlock, ResultLine, TokensCount,
};
use crate::http;

/// The batch entry for one request. `schema` is the provider-ready schema from
/// [`strict_schema`], computed by the caller so it can borrow from it.
pub fn batch_request<'a>(item: &'a SubmissionItem, schema: Option<&'a Value>) -> BatchRequest<'a> {
    BatchRequest {
        custom_id: &item.custom_id,
        params: message_params(&item.request, schema),
    }
}

/// Messages API parameters for `request`.
pub fn message_params<'a>(request: &'a Request, schema: Option<&'a Value>) -> MessageParams<'a> {
    MessageParams {
        model: &request.model,
        max_tokens: request.max_tokens,
        messages: request
            .messages
            .iter()
            .map(|m| MessageParam {
                role: match m.role {
                    Role::User => "user",
                    Role::Assistant => "assistant",
                },
                content: m
                    .content
                    .iter()
                    .map(|p| content_block(p, request.citations))
                    .collect(),
            })
            .collect(),
        system: request.system.as_deref(),
        temperature: request.temperature,
        output_config: schema.map(|schema| OutputConfig {
            format: JsonSchemaFormat {
                kind: "json_schema",
                schema,
            },
        }),
    }
}

fn content_block(part: &Part, citations: bool) -> ContentBlock<'_> {
    match part {
        Part::Text { text } => ContentBlock::Text { text },
        Part::Document {
            media_type,
            data,
            name,
        } => ContentBlock::Document {
            source: if media_type == "application/pdf" {
                DocumentSource::Base64 { media_type, data }
            } else {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .unwrap_or_default();
                DocumentSource::Text {
                    media_type: "text/plain",
                    data: String::from_utf8_lossy(&bytes).into_owned(),
                }
            },
            title: name.as_deref(),
            citations: citations.then_some(CitationsConfig { enabled: true }),
        },
        Part::Image { media_type, data } => ContentBlock::Image {
            source: Base64Source {
                kind: "base64",
                media_type,
                data,
            },
        },
    }
}

/// Anthropic's structured outputs require `additionalProperties: false` on every object; a
/// schema that says nothing about extra properties gets it, one that says otherwise is kept.
pub fn strict_schema(schema: &Value) -> Cow<'_, Value> {
    fn visit(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("object")
                    && !map.contains_key("additionalProperties")
                {
                    map.insert("additionalProperties".into(), Value::Bool(false));
                }
                map.values_mut().for_each(visit);
            }
            Value::Array(items) => items.iter_mut().for_each(visit),
            _ => {}
        }
    }
    let mut owned = schema.clone();
    visit(&mut owned);
    if &owned == schema {
        Cow::Borrowed(schema)
    } else {
        Cow::Owned(owned)
    }
}

/// The provider-ready schemas of `items`, index-aligned (None where a request has no schema).
pub fn schemas(items: &[SubmissionItem]) -> Vec<Option<Cow<'_, Value>>> {
    items
        .iter()
        .map(|i| i.request.schema.as_ref().map(strict_schema))
        .collect()
}

/// The `POST /v1/messages/count_tokens` body for `request`: the same messages, system prompt
/// and output schema as its batch entry, so the count is what the batch will be billed.
pub fn count_tokens_body(request: &Request) -> Vec<u8> {
    let schema = request.schema.as_ref().map(strict_schema);
    let params = message_params(request, schema.as_deref());
    let body = CountTokensParams {
        model: params.model,
        messages: params.messages,
        system: params.system,
        output_config: params.output_config,
    };
    serde_json::to_vec(&body).expect("count bodies serialize")
}

/// Input tokens from a `count_tokens` answer.
pub fn parse_count_tokens(body: &[u8]) -> Result<u64, String> {
    http::parse_json::<TokensCount>(body, "token count").map(|c| c.input_tokens)
}

/// The create-batch body.
pub fn create_batch_body(items: &[SubmissionItem]) -> Vec<u8> {
    let schemas = schemas(items);
    let body = CreateBatch {
        requests: items
            .iter()
            .zip(&schemas)
            .map(|(item, schema)| batch_request(item, schema.as_deref()))
            .collect(),
    };
    serde_json::to_vec(&body).expect("batch bodies serialize")
}

/// Bytes one request adds to the create-batch body.
pub fn wire_size(item: &SubmissionItem) -> u64 {
    let schema = item.request.schema.as_ref().map(strict_schema);
    let request = batch_request(item, schema.as_deref());
    serde_json::to_vec(&request).map_or(0, |v| v.len() as u64 + 1)
}

/// A batch in neutral terms.
pub fn remote_batch(batch: MessageBatch) -> RemoteBatch {
    let phase = match batch.processing_status.as_str() {
        "ended" => RemotePhase::Ended,
        "canceling" => RemotePhase::Canceling,
        _ => RemotePhase::Running,
    };
    RemoteBatch {
        request_count: Some(batch.request_counts.total()),
        id: batch.id,
        phase,
        provider_status: batch.processing_status,
        results_locator: batch.results_url,
        owned_files: Vec::new(),
    }
}

/// Parses a `MessageBatch` body.
pub fn parse_batch(body: &[u8]) -> Result<MessageBatch, String> {
    http::parse_json(body, "batch object")
}

/// Parses a page of the batch list.
pub fn parse_batch_page(body: &[u8]) -> Result<BatchPage, String> {
    http::parse_json(body, "batch list")
}

/// Parses one results line.
pub fn item_outcome(line: &[u8]) -> Result<ItemOutcome, String> {
    let line: ResultLine = serde_json::from_slice(line).map_err(|e| {
        let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        format!("unexpected result line ({e}): {shown}")
    })?;
    let result = match line.result {
        BatchResult::Succeeded { message } => {
            let mut text = String::new();
            let mut citations = Vec::new();
            let mut tool_input = None;
            for block in message.content {
                match block {
                    ResponseBlock::Text {
                        text: t,
                        citations: c,
                    } => {
                        text.push_str(&t);
                        citations.extend(c.unwrap_or_default());
                    }
                    ResponseBlock::ToolUse { input } => tool_input = Some(input),
                    ResponseBlock::Other => {}
                }
            }
            if text.is_empty()
                && let Some(input) = tool_input
            {
                text = input.to_string();
            }
            let u = message.usage;
            ItemResult::Succeeded {
                text,
                citations,
                usage: Usage {
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                    cache_read_tokens: u.cache_read_input_tokens.unwrap_or(0),
                    cache_write_tokens: u.cache_creation_input_tokens.unwrap_or(0),
                },
                stop_reason: message.stop_reason,
            }
        }
        BatchResult::Errored { error } => ItemResult::Errored(error_info(&error, None)),
        BatchResult::Canceled => ItemResult::Canceled,
        BatchResult::Expired => ItemResult::Expired,
    };
    Ok(ItemOutcome {
        custom_id: line.custom_id,
        result,
    })
}

fn error_info(error: &ErrorResponse, status: Option<u16>) -> ErrorInfo {
    ErrorInfo {
        kind: error_kind(&error.error.kind, status),
        message: format!("{}: {}", error.error.kind, error.error.message),
        provider_status: status.or_else(|| status_of(&error.error.kind)),
    }
}

/// The HTTP status Anthropic uses for an error type (A.8).
fn status_of(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}

/// volley's error kind for an Anthropic error type.
pub fn error_kind(kind: &str, status: Option<u16>) -> ErrorKind {
    match kind {
        "invalid_request_error" | "billing_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::Permission,
        "not_found_error" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::TooLarge,
        "rate_limit_error" => ErrorKind::RateLimited,
        "overloaded_error" => ErrorKind::Overloaded,
        "timeout_error" => ErrorKind::Timeout,
        "api_error" => ErrorKind::Server,
        _ => status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .map_or(ErrorKind::Other, http::kind_from_status),
    }
}

/// An error response as a [`ProviderError`], keeping the raw body.
pub fn parse_error(
    provider: ProviderKind,
    operation: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ProviderError {
    let raw = String::from_utf8_lossy(body).into_owned();
    let parsed: Option<ErrorResponse> = serde_json::from_slice(body).ok();
    let (kind, message, body_request_id) = match &parsed {
        Some(e) => (
            error_kind(&e.error.kind, Some(status.as_u16())),
            format!("{}: {}", e.error.kind, e.error.message),
            e.request_id.clone(),
        ),
        None => (
            http::kind_from_status(status),
            format!(
                "{}: {}",
                status.canonical_reason().unwrap_or("error"),
                raw.chars().take(300).collect::<String>()
            ),
            None,
        ),
    };
    ProviderError {
        provider,
        operation,
        kind,
        status: Some(status.as_u16()),
        request_id: http::request_id(headers).or(body_request_id),
        message,
        raw_body: Some(raw),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests;
