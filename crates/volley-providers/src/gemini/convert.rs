//! Pure mapping between volley's types and Gemini's wire. No IO: every function here is
//! covered by snapshot tests.
use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use volley_core::ProviderError;
use volley_core::provider::{ItemOutcome, ItemResult, RemoteBatch, RemotePhase, SubmissionItem};
use volley_types::{ErrorInfo, ErrorKind, Part as VPart, ProviderKind, Request, Role, Usage};

use super::JSONL_MIME;
use super::wire::{
    BatchOutput, BatchPage, Blob, Content, CountTokensRequest, CreateBatch, ErrorBody, ErrorDetail,
    FileLine, GenerateContentRequest, GenerateContentResponse, GenerationConfig, InlinedRequest,
    InlinedRequests, InlinedResponse, InputConfig, ModelRequest, NewBatch, NewFile, Operation,
    Part, RequestKey, ResultLine, Status, TokensCount, UploadStart, UploadedFile,
};
use crate::http;

/// `GenerateContentRequest` for `request`.
pub fn generate_content_request(request: &Request) -> GenerateContentRequest<'_> {
    GenerateContentRequest {
        contents: request
            .messages
            .iter()
            .map(|m| Content {
                role: Some(match m.role {
                    Role::User => "user",
                    Role::Assistant => "model",
                }),
                parts: m.content.iter().map(part).collect(),
            })
            .collect(),
        system_instruction: request.system.as_deref().map(|system| Content {
            role: None,
            parts: vec![Part::Text(Cow::Borrowed(system))],
        }),
        generation_config: GenerationConfig {
            max_output_tokens: request.max_tokens,
            temperature: request.temperature,
            response_mime_type: request.schema.as_ref().map(|_| "application/json"),
            response_json_schema: request.schema.as_ref(),
        },
    }
}

/// The model id without a `models/` prefix (the path segment of `models/{model}:verb`).
pub fn model_id(model: &str) -> &str {
    model.strip_prefix("models/").unwrap_or(model)
}

/// The `models/{model}:countTokens` body for `request`: the same request a batch sends, with
/// its model, wrapped in `generateContentRequest`.
pub fn count_tokens_body(request: &Request) -> Vec<u8> {
    let body = CountTokensRequest {
        generate_content_request: ModelRequest {
            model: format!("models/{}", model_id(&request.model)),
            request: generate_content_request(request),
        },
    };
    serde_json::to_vec(&body).expect("count bodies serialize")
}

/// Input tokens from a `countTokens` answer.
pub fn parse_count_tokens(body: &[u8]) -> Result<u64, String> {
    http::parse_json::<TokensCount>(body, "token count").map(|c| c.total_tokens)
}

/// PDFs and images go as base64 `inlineData`; text documents as text, so the model reads
/// them as such (Gemini has no plain-text document part).
fn part(part: &VPart) -> Part<'_> {
    match part {
        VPart::Text { text } => Part::Text(Cow::Borrowed(text)),
        VPart::Document {
            media_type, data, ..
        } if media_type.starts_with("text/") => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap_or_default();
            Part::Text(Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()))
        }
        VPart::Document {
            media_type, data, ..
        }
        | VPart::Image { media_type, data } => Part::InlineData(Blob {
            mime_type: media_type,
            data,
        }),
    }
}

/// The inline entry for one request: our id rides in `metadata.key`.
pub fn inlined_request(item: &SubmissionItem) -> InlinedRequest<'_> {
    InlinedRequest {
        request: generate_content_request(&item.request),
        metadata: RequestKey {
            key: &item.custom_id,
        },
    }
}

/// The request-file line for one request.
pub fn file_line(item: &SubmissionItem) -> FileLine<'_> {
    FileLine {
        key: &item.custom_id,
        request: generate_content_request(&item.request),
    }
}

/// Counts bytes written, to size JSON without building it.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_len(value: &impl serde::Serialize) -> u64 {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_or(0, |()| counter.0)
}

/// Bytes one request adds to a batch: its request-file line plus the newline. (Its inline
/// entry differs only by the `metadata` wrapper around the key, plus a comma.)
pub fn wire_size(item: &SubmissionItem) -> u64 {
    json_len(&file_line(item)) + 1
}

/// The inline create body, if it stays within `limit` bytes; `None` means "upload a file".
pub fn inline_body(batch_id: &str, items: &[SubmissionItem], limit: u64) -> Option<Vec<u8>> {
    // Size first, without building anything, so a 2 GB batch never builds a 2 GB inline body.
    let mut size = 0;
    for item in items {
        size += json_len(&inlined_request(item)) + 1;
        if size > limit {
            return None;
        }
    }
    let body = CreateBatch {
        batch: NewBatch {
            display_name: batch_id,
            input_config: InputConfig::Requests(InlinedRequests {
                requests: items.iter().map(inlined_request).collect(),
            }),
        },
    };
    let body = serde_json::to_vec(&body).expect("batch bodies serialize");
    (body.len() as u64 <= limit).then_some(body)
}

/// How a batch's requests travel: inline in the create body, or in a file uploaded first.
#[derive(Debug)]
pub enum Payload {
    /// The whole create body.
    Inline(Vec<u8>),
    /// The request file ([`jsonl`]); the create body names it once uploaded ([`file_body`]).
    File(Vec<u8>),
}

/// Inline when the body stays within `limit` bytes, else a request file.
pub fn payload(batch_id: &str, items: &[SubmissionItem], limit: u64) -> Payload {
    inline_body(batch_id, items, limit).map_or_else(|| Payload::File(jsonl(items)), Payload::Inline)
}

/// The create body for a batch whose requests were uploaded as `file_name`.
pub fn file_body(batch_id: &str, file_name: &str) -> Vec<u8> {
    let body = CreateBatch {
        batch: NewBatch {
            display_name: batch_id,
            input_config: InputConfig::FileName(file_name),
        },
    };
    serde_json::to_vec(&body).expect("batch bodies serialize")
}

/// The request file: one `{key, request}` line per request.
pub fn jsonl(items: &[SubmissionItem]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(wire_size).sum::<u64>() as usize);
    for item in items {
        serde_json::to_writer(&mut out, &file_line(item)).expect("request lines serialize");
        out.push(b'\n');
    }
    out
}

/// The display name of the request file of `batch_id`.
pub fn upload_display_name(batch_id: &str) -> String {
    format!("volley-{batch_id}")
}

/// Headers of the resumable upload's start call (the key is added by the caller).
pub fn upload_start_headers(content_length: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-goog-upload-protocol", "resumable".into()),
        ("x-goog-upload-command", "start".into()),
        (
            "x-goog-upload-header-content-length",
            content_length.to_string(),
        ),
        ("x-goog-upload-header-content-type", JSONL_MIME.into()),
        ("content-type", "application/json".into()),
    ]
}

/// Body of the resumable upload's start call.
pub fn upload_start_body(display_name: &str) -> Vec<u8> {
    serde_json::to_vec(&UploadStart {
        file: NewFile {
            display_name,
            mime_type: JSONL_MIME,
        },
    })
    .expect("upload bodies serialize")
}

/// Headers of the single call that sends every byte and finalizes the upload.
pub fn upload_finalize_headers() -> Vec<(&'static str, String)> {
    vec![
        ("x-goog-upload-command", "upload, finalize".into()),
        ("x-goog-upload-offset", "0".into()),
    ]
}

/// Whether `name` is a Files API resource name (`files/{id}`), safe to put in a path.
pub fn is_file_name(name: &str) -> bool {
    name.strip_prefix("files/").is_some_and(|id| {
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    })
}

/// Whether `name` is a batch resource name (`batches/{id}`), safe to put in a path.
pub fn is_batch_name(name: &str) -> bool {
    name.strip_prefix("batches/").is_some_and(|id| {
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    })
}

/// Parses the final upload answer.
pub fn parse_uploaded_file(body: &[u8]) -> Result<UploadedFile, String> {
    let file: UploadedFile = http::parse_json(body, "upload answer")?;
    if !is_file_name(&file.file.name) {
        return Err(format!(
            "unexpected file name in upload answer: {:?}",
            file.file.name
        ));
    }
    Ok(file)
}

/// Parses a batch `Operation`, reading only where its output is.
pub fn parse_operation(body: &[u8]) -> Result<Operation, String> {
    http::parse_json(body, "batch object")
}

/// Parses a batch `Operation` with its inline responses.
pub fn parse_operation_output(body: &[u8]) -> Result<Operation<BatchOutput>, String> {
    http::parse_json(body, "batch object")
}

/// Parses a page of the batch list.
pub fn parse_batch_page(body: &[u8]) -> Result<BatchPage, String> {
    http::parse_json(body, "batch list")
}

/// The batch's name, from the operation or its metadata.
fn batch_name<O>(op: &Operation<O>) -> &str {
    match &op.metadata {
        Some(m) if op.name.is_empty() => &m.name,
        _ => &op.name,
    }
}

/// The batch's `BATCH_STATE_*`, empty if not reported.
pub fn batch_state<O>(op: &Operation<O>) -> &str {
    op.metadata.as_ref().map_or("", |m| m.state.as_str())
}

/// A batch in neutral terms. `done` decides batches whose state is missing or unknown.
pub fn remote_batch(op: Operation) -> Result<RemoteBatch, String> {
    let name = batch_name(&op).to_owned();
    if !is_batch_name(&name) {
        return Err(format!("unexpected batch name {name:?}"));
    }
    let state = batch_state(&op).to_owned();
    let failure = |op: &Operation| {
        op.error.as_ref().map_or_else(
            || "the batch failed".to_owned(),
            |e| match canonical_status(e) {
                Some(status) => format!("{status}: {}", e.message),
                None => e.message.clone(),
            },
        )
    };
    let phase = match state.as_str() {
        "BATCH_STATE_SUCCEEDED" | "BATCH_STATE_CANCELLED" | "BATCH_STATE_EXPIRED" => {
            RemotePhase::Ended
        }
        "BATCH_STATE_FAILED" => RemotePhase::Failed(failure(&op)),
        _ if op.done && op.error.is_some() => RemotePhase::Failed(failure(&op)),
        _ if op.done => RemotePhase::Ended,
        _ => RemotePhase::Running,
    };
    let provider_status = match (state.is_empty(), op.done) {
        (false, _) => state,
        (true, true) => "done".to_owned(),
        (true, false) => "running".to_owned(),
    };
    let metadata = op.metadata.as_ref();
    let output = metadata
        .and_then(|m| m.output.as_ref())
        .or(op.response.as_ref());
    Ok(RemoteBatch {
        request_count: metadata
            .and_then(|m| m.batch_stats)
            .map(|s| s.request_count),
        results_locator: output
            .and_then(|o| o.responses_file.clone())
            .filter(|f| is_file_name(f)),
        owned_files: metadata
            .and_then(|m| m.input_config.as_ref())
            .and_then(|c| c.file_name.clone())
            .filter(|f| is_file_name(f))
            .into_iter()
            .collect(),
        id: name,
        phase,
        provider_status,
    })
}

/// What an item that the results do not mention became, by the batch's final state:
/// everything in an expired batch expired; what a cancelled batch never ran was cancelled.
/// `None`: the batch ended normally, and a missing item is the engine's to retry.
pub fn unreported_result(state: &str) -> Option<ItemResult> {
    match state {
        "BATCH_STATE_EXPIRED" => Some(ItemResult::Expired),
        "BATCH_STATE_CANCELLED" => Some(ItemResult::Canceled),
        _ => None,
    }
}

/// The keys of the inline requests, when the API echoes them in `inputConfig`.
pub fn echoed_keys<O>(op: &Operation<O>) -> Vec<String> {
    op.metadata
        .as_ref()
        .and_then(|m| m.input_config.as_ref())
        .and_then(|c| c.requests.as_ref())
        .map(|r| {
            r.requests
                .iter()
                .filter_map(|r| r.metadata.as_ref()?.key.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The inline output of a batch (from `metadata.output`, else `response`), or `None`.
pub fn inline_output(op: Operation<BatchOutput>) -> Option<Vec<Result<ItemOutcome, String>>> {
    let Operation {
        metadata, response, ..
    } = op;
    let output = metadata.and_then(|m| m.output).or(response)?;
    let responses = output.inlined_responses?;
    Some(
        responses
            .inlined_responses
            .iter()
            .map(|raw| inline_outcome(raw.get().as_bytes()))
            .collect(),
    )
}

/// The responses file named in a batch's output, if any.
pub fn responses_file(op: &Operation<BatchOutput>) -> Option<&str> {
    op.metadata
        .as_ref()
        .and_then(|m| m.output.as_ref())
        .or(op.response.as_ref())
        .and_then(|o| o.responses_file.as_deref())
}

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
}

/// Parses one inline response (`{metadata: {key}, response | error}`).
pub fn inline_outcome(raw: &[u8]) -> Result<ItemOutcome, String> {
    let parsed: InlinedResponse = serde_json::from_slice(raw)
        .map_err(|e| format!("unexpected inline response ({e}): {}", shown(raw)))?;
    let key = parsed.metadata.and_then(|m| m.key).ok_or_else(|| {
        format!(
            "inline response without metadata.key, cannot be matched: {}",
            shown(raw)
        )
    })?;
    outcome(key, parsed.response, parsed.error)
}

/// Parses one line of a responses file (`{key, response | error}`).
pub fn file_line_outcome(line: &[u8]) -> Result<ItemOutcome, String> {
    let parsed: ResultLine = serde_json::from_slice(line)
        .map_err(|e| format!("unexpected result line ({e}): {}", shown(line)))?;
    let key = parsed
        .key
        .ok_or_else(|| format!("result line without key: {}", shown(line)))?;
    outcome(key, parsed.response, parsed.error)
}

fn outcome(
    key: String,
    response: Option<GenerateContentResponse>,
    error: Option<Status>,
) -> Result<ItemOutcome, String> {
    let result = match (response, error) {
        (_, Some(error)) => {
            if canonical_status(&error) == Some("CANCELLED") {
                ItemResult::Canceled
            } else {
                ItemResult::Errored(item_error(&error))
            }
        }
        (Some(response), None) => answer(response),
        (None, None) => {
            return Err(format!("result for {key:?} has neither response nor error"));
        }
    };
    Ok(ItemOutcome {
        custom_id: key,
        result,
    })
}

/// A `GenerateContentResponse` as an item result: the first candidate's text without thought
/// parts, or an invalid-request error when the prompt was blocked and nothing came back.
fn answer(response: GenerateContentResponse) -> ItemResult {
    let Some(candidate) = response.candidates.into_iter().next() else {
        let reason = response
            .prompt_feedback
            .and_then(|f| f.block_reason)
            .unwrap_or_else(|| "no reason given".to_owned());
        return ItemResult::Errored(ErrorInfo {
            kind: ErrorKind::InvalidRequest,
            message: format!("the prompt was blocked ({reason}); no candidates"),
            provider_status: None,
        });
    };
    let text = candidate
        .content
        .map(|c| {
            c.parts
                .into_iter()
                .filter(|p| !p.thought)
                .filter_map(|p| p.text)
                .collect::<String>()
        })
        .unwrap_or_default();
    let u = response.usage_metadata.unwrap_or_default();
    ItemResult::Succeeded {
        text,
        citations: candidate
            .citation_metadata
            .map(|c| c.citation_sources)
            .unwrap_or_default(),
        usage: Usage {
            input_tokens: u
                .prompt_token_count
                .saturating_sub(u.cached_content_token_count),
            output_tokens: u.candidates_token_count + u.thoughts_token_count,
            cache_read_tokens: u.cached_content_token_count,
            cache_write_tokens: 0,
        },
        stop_reason: candidate.finish_reason,
    }
}

/// gRPC code → canonical status name.
fn grpc_name(code: u64) -> Option<&'static str> {
    Some(match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => return None,
    })
}

/// Canonical status name → the HTTP status Google maps it to.
fn http_of(name: &str) -> Option<u16> {
    Some(match name {
        "CANCELLED" => 499,
        "UNKNOWN" | "INTERNAL" | "DATA_LOSS" => 500,
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "DEADLINE_EXCEEDED" => 504,
        "NOT_FOUND" => 404,
        "ALREADY_EXISTS" | "ABORTED" => 409,
        "PERMISSION_DENIED" => 403,
        "RESOURCE_EXHAUSTED" => 429,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "UNAUTHENTICATED" => 401,
        _ => return None,
    })
}

/// The status's canonical name: its `status` field, else the name of a gRPC `code`.
fn canonical_status(status: &Status) -> Option<&str> {
    status
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .or_else(|| grpc_name(status.code))
}

/// The HTTP status a `Status` stands for: `code` when it is one, else from its name.
fn http_status(status: &Status) -> Option<u16> {
    match status.code {
        100..=599 => Some(status.code as u16),
        _ => canonical_status(status).and_then(http_of),
    }
}

/// How an error reads to volley: kind, message, and the delay Google asked for.
#[derive(Debug)]
pub struct Classified {
    /// volley's kind.
    pub kind: ErrorKind,
    /// `STATUS: message`, with a note when the kind needs explaining.
    pub message: String,
    /// `RetryInfo.retryDelay`.
    pub retry_after: Option<Duration>,
}

/// Classifies a `google.rpc.Status`.
///
/// - A bad key answers 400 `INVALID_ARGUMENT` with reason `API_KEY_INVALID`: that is an
///   authentication error, not an invalid request.
/// - `RESOURCE_EXHAUSTED` is rate limiting (transient), except when a daily quota ran out
///   (`QuotaFailure` quota id containing `PerDay`): no retry within minutes can succeed, so it
///   is [`ErrorKind::Other`], which is not transient. (Not `InvalidRequest`: the request is
///   fine and will pass once the quota resets.)
pub fn classify(status: &Status, http: Option<u16>) -> Classified {
    let details: Vec<ErrorDetail> = status
        .details
        .iter()
        .filter_map(|d| serde_json::from_value(d.clone()).ok())
        .collect();
    let retry_after = details.iter().find_map(|d| match d {
        ErrorDetail::RetryInfo {
            retry_delay: Some(delay),
        } => parse_duration(delay),
        _ => None,
    });
    let key_invalid = details.iter().any(|d| {
        matches!(d, ErrorDetail::ErrorInfo { reason } if matches!(reason.as_str(), "API_KEY_INVALID" | "API_KEY_EXPIRED"))
    }) || status.message.contains("API key not valid");
    let daily_quota = details.iter().find_map(|d| match d {
        ErrorDetail::QuotaFailure { violations } => violations
            .iter()
            .find(|v| v.quota_id.contains("PerDay"))
            .map(|v| v.quota_id.clone()),
        _ => None,
    });
    let name = canonical_status(status);
    let http = http.or_else(|| http_status(status));
    let kind = if key_invalid {
        ErrorKind::Authentication
    } else if daily_quota.is_some() {
        ErrorKind::Other
    } else {
        match name {
            Some("INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" | "UNIMPLEMENTED") => {
                ErrorKind::InvalidRequest
            }
            Some("UNAUTHENTICATED") => ErrorKind::Authentication,
            Some("PERMISSION_DENIED") => ErrorKind::Permission,
            Some("NOT_FOUND") => ErrorKind::NotFound,
            Some("RESOURCE_EXHAUSTED") => ErrorKind::RateLimited,
            Some("UNAVAILABLE") => ErrorKind::Overloaded,
            Some("INTERNAL" | "UNKNOWN" | "DATA_LOSS" | "ABORTED") => ErrorKind::Server,
            Some("DEADLINE_EXCEEDED") => ErrorKind::Timeout,
            Some("CANCELLED") => ErrorKind::Canceled,
            _ => http
                .and_then(|s| StatusCode::from_u16(s).ok())
                .map_or(ErrorKind::Other, http::kind_from_status),
        }
    };
    let mut message = match name {
        Some(name) => format!("{name}: {}", status.message),
        None => status.message.clone(),
    };
    if let Some(quota) = daily_quota {
        message.push_str(&format!(
            " (daily quota {quota} exhausted: not retried before it resets)"
        ));
    }
    Classified {
        kind,
        message,
        retry_after,
    }
}

/// A per-item error.
fn item_error(status: &Status) -> ErrorInfo {
    let classified = classify(status, None);
    ErrorInfo {
        kind: classified.kind,
        message: classified.message,
        provider_status: http_status(status),
    }
}

/// A protobuf `Duration` in JSON: `"37s"`, `"1.5s"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let seconds: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds > 0.0 && seconds < 1e9)
        .then(|| Duration::from_secs_f64(seconds))
}

/// An error response as a [`ProviderError`], keeping the raw body. Reads
/// `{"error": {code, message, status, details}}`, or the same fields at the top level.
pub fn parse_error(
    provider: ProviderKind,
    operation: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ProviderError {
    let raw = String::from_utf8_lossy(body).into_owned();
    let parsed = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .ok()
        .or_else(|| {
            serde_json::from_slice::<Status>(body)
                .ok()
                .filter(|s| !s.message.is_empty() || s.status.is_some())
        });
    let (kind, message, retry_after) = match &parsed {
        Some(s) => {
            let c = classify(s, Some(status.as_u16()));
            (c.kind, c.message, c.retry_after)
        }
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
        request_id: http::request_id(headers),
        message,
        raw_body: Some(raw),
        retry_after,
    }
}

#[cfg(test)]
mod tests;
