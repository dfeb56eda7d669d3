//! Pure mapping between volley's types and OpenAI's wire. No IO: every function here is
//! covered by snapshot tests.
use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use serde_json::value::RawValue;
use volley_core::ProviderError;
use volley_core::provider::{ItemOutcome, ItemResult, RemoteBatch, RemotePhase, SubmissionItem};
use volley_types::{ErrorInfo, ErrorKind, Part, ProviderKind, Request, Role, Usage};

use super::wire::{
    Batch, BatchLine, BatchPage, ChatCompletion, ChatMessage, ChatRequest, ContentPart,
    CreateBatch, ErrorResponse, FileData, FileObject, FilePage, ImageUrl, InputContent,
    InputMessage, InputPart, InputTokensCount, InputTokensRequest, JsonSchema, MessageContent,
    OutputLine, ResponseFormat, TextConfig, TextFormat,
};
use super::{CHAT_COMPLETIONS, COMPLETION_WINDOW, METADATA_BATCH_ID, METADATA_RUN_ID};
use crate::http;

/// The `json_schema.name` volley sends (OpenAI requires one; it is only a label).
pub const SCHEMA_NAME: &str = "output";

/// The multipart boundary, unless the file happens to contain it (see [`upload_body`]).
pub const BOUNDARY: &str = "volley-boundary-5f1c7d2a9e3b4806";

/// The input-file line for one request. `schema` is the provider-ready schema from
/// [`strict_schema`], computed by the caller so it can borrow from it.
pub fn batch_line<'a>(item: &'a SubmissionItem, schema: Option<&'a Value>) -> BatchLine<'a> {
    BatchLine {
        custom_id: &item.custom_id,
        method: "POST",
        url: CHAT_COMPLETIONS,
        body: chat_request(&item.request, schema),
    }
}

/// Chat Completions parameters for `request`. `request.citations` has no Chat Completions
/// equivalent and is ignored.
pub fn chat_request<'a>(request: &'a Request, schema: Option<&'a Value>) -> ChatRequest<'a> {
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system {
        messages.push(ChatMessage {
            role: "system",
            content: MessageContent::Text(system),
        });
    }
    messages.extend(request.messages.iter().map(|m| ChatMessage {
        role: match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        },
        content: match m.content.as_slice() {
            // One text part goes as a plain string: every OpenAI-compatible server takes that.
            [Part::Text { text }] => MessageContent::Text(text),
            parts => MessageContent::Parts(parts.iter().map(content_part).collect()),
        },
    }));
    ChatRequest {
        model: &request.model,
        messages,
        max_completion_tokens: request.max_tokens,
        temperature: request.temperature,
        response_format: schema.map(|schema| ResponseFormat {
            kind: "json_schema",
            json_schema: JsonSchema {
                name: SCHEMA_NAME,
                schema,
                strict: true,
            },
        }),
    }
}

fn content_part(part: &Part) -> ContentPart<'_> {
    match part {
        Part::Text { text } => ContentPart::Text {
            text: Cow::Borrowed(text),
        },
        Part::Document {
            media_type,
            data,
            name,
        } if media_type == "application/pdf" => ContentPart::File {
            file: FileData {
                filename: name
                    .as_deref()
                    .map_or(Cow::Borrowed("document.pdf"), Cow::Borrowed),
                file_data: format!("data:{media_type};base64,{data}"),
            },
        },
        // Chat Completions takes only PDFs as files; other documents are text, inlined and
        // delimited so the model can tell them (and their names) from the prompt.
        Part::Document { data, name, .. } => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let text = match name {
                Some(name) => format!("<document name=\"{name}\">\n{text}\n</document>"),
                None => format!("<document>\n{text}\n</document>"),
            };
            ContentPart::Text {
                text: Cow::Owned(text),
            }
        }
        Part::Image { media_type, data } => ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: format!("data:{media_type};base64,{data}"),
            },
        },
    }
}

/// The `POST /v1/responses/input_tokens` body for `request`. OpenAI counts tokens only for the
/// Responses API, so this is the Responses form of exactly the Chat Completions request the
/// batch sends: the system message becomes `instructions`, parts become `input_*` parts, the
/// response format becomes `text.format`.
pub fn input_tokens_body(request: &Request) -> Vec<u8> {
    let schema = request.schema.as_ref().map(strict_schema);
    let chat = chat_request(request, schema.as_deref());
    let mut instructions = None;
    let mut input = Vec::with_capacity(chat.messages.len());
    for message in chat.messages {
        let content = match message.content {
            MessageContent::Text(text) if message.role == "system" => {
                instructions = Some(text);
                continue;
            }
            MessageContent::Text(text) => InputContent::Text(text),
            MessageContent::Parts(parts) => InputContent::Parts(
                parts
                    .into_iter()
                    .map(|part| match part {
                        ContentPart::Text { text } if message.role == "assistant" => {
                            InputPart::OutputText { text }
                        }
                        ContentPart::Text { text } => InputPart::InputText { text },
                        ContentPart::ImageUrl { image_url } => InputPart::InputImage {
                            image_url: image_url.url,
                            detail: "auto",
                        },
                        ContentPart::File { file } => InputPart::InputFile {
                            filename: file.filename,
                            file_data: file.file_data,
                        },
                    })
                    .collect(),
            ),
        };
        input.push(InputMessage {
            role: message.role,
            content,
        });
    }
    let body = InputTokensRequest {
        model: chat.model,
        instructions,
        input,
        text: chat.response_format.map(|format| TextConfig {
            format: TextFormat {
                kind: format.kind,
                name: format.json_schema.name,
                schema: format.json_schema.schema,
                strict: format.json_schema.strict,
            },
        }),
    };
    serde_json::to_vec(&body).expect("count bodies serialize")
}

/// Input tokens from a `responses/input_tokens` answer.
pub fn parse_input_tokens(body: &[u8]) -> Result<u64, String> {
    http::parse_json::<InputTokensCount>(body, "input token count").map(|c| c.input_tokens)
}

/// OpenAI's strict structured outputs require, on every object schema,
/// `additionalProperties: false` and every property listed in `required`. A schema that says
/// nothing about extra properties gets `false`; one that says otherwise is kept (OpenAI will
/// then name the problem in its error). Optional properties become required: the model then
/// always fills them, which still satisfies the user's schema.
///
/// The walk follows schema keywords (`properties`, `items`, `anyOf`, `$defs`, …), so a
/// property that happens to be called `type` or `properties` is never mistaken for a keyword.
pub fn strict_schema(schema: &Value) -> Cow<'_, Value> {
    fn visit(schema: &mut Value) {
        let Value::Object(map) = schema else { return };
        let is_object = match map.get("type") {
            Some(Value::String(t)) => t == "object",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
            _ => map.get("properties").is_some_and(Value::is_object),
        };
        if is_object {
            if !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            if let Some(Value::Object(properties)) = map.get("properties") {
                let mut required: Vec<Value> = match map.get("required") {
                    Some(Value::Array(r)) => r.clone(),
                    _ => Vec::new(),
                };
                for name in properties.keys() {
                    if !required.iter().any(|r| r == name) {
                        required.push(Value::String(name.clone()));
                    }
                }
                map.insert("required".into(), Value::Array(required));
            }
        }
        for keyword in ["properties", "$defs", "definitions", "patternProperties"] {
            if let Some(Value::Object(schemas)) = map.get_mut(keyword) {
                schemas.values_mut().for_each(visit);
            }
        }
        for keyword in ["anyOf", "oneOf", "allOf", "prefixItems"] {
            if let Some(Value::Array(schemas)) = map.get_mut(keyword) {
                schemas.iter_mut().for_each(visit);
            }
        }
        for keyword in ["items", "not", "additionalProperties", "if", "then", "else"] {
            match map.get_mut(keyword) {
                Some(Value::Array(schemas)) => schemas.iter_mut().for_each(visit),
                Some(schema) => visit(schema),
                None => {}
            }
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

/// One input-file line, without its newline.
pub fn line(item: &SubmissionItem) -> Vec<u8> {
    let schema = item.request.schema.as_ref().map(strict_schema);
    serde_json::to_vec(&batch_line(item, schema.as_deref())).expect("batch lines serialize")
}

/// Bytes one request adds to the uploaded file: its line and the newline.
pub fn wire_size(item: &SubmissionItem) -> u64 {
    line(item).len() as u64 + 1
}

/// The JSONL input file: one line per item, each ending in `\n`.
pub fn input_file(items: &[SubmissionItem]) -> Vec<u8> {
    let mut file = Vec::new();
    write_lines(&mut file, items);
    file
}

fn write_lines(out: &mut Vec<u8>, items: &[SubmissionItem]) {
    for item in items {
        out.extend_from_slice(&line(item));
        out.push(b'\n');
    }
}

/// The name the input file is uploaded with: `volley-<batch id>.jsonl`, so `volley cleanup`
/// and a human in the dashboard can tell volley's files apart.
pub fn file_name(batch_id: &str) -> String {
    let safe: String = batch_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("volley-{safe}.jsonl")
}

/// A `multipart/form-data` upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The `Content-Type` header value, boundary included.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The `POST /files` body: `purpose=batch` and the JSONL file, as the SDKs send them (fields
/// first, the file as `application/octet-stream`). The lines are written straight into the
/// body, so a 200 MB file is held once; the fixed [`BOUNDARY`] is changed only in the
/// unlikely case that a request contains it.
pub fn upload_body(batch_id: &str, items: &[SubmissionItem]) -> Upload {
    let mut attempt = 0u32;
    loop {
        let boundary = if attempt == 0 {
            BOUNDARY.to_owned()
        } else {
            format!("{BOUNDARY}-{attempt}")
        };
        let mut body = Vec::with_capacity(items.len() * 512 + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n",
                file_name(batch_id)
            )
            .as_bytes(),
        );
        let start = body.len();
        write_lines(&mut body, items);
        let delimiter = format!("--{boundary}");
        if contains(&body[start..], delimiter.as_bytes()) {
            attempt += 1;
            continue;
        }
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        return Upload {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            body,
        };
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The `POST /batches` body: the uploaded file, tagged with volley's batch and run ids.
pub fn create_batch_body(input_file_id: &str, batch_id: &str, run_id: &str) -> Vec<u8> {
    let body = CreateBatch {
        input_file_id,
        endpoint: CHAT_COMPLETIONS,
        completion_window: COMPLETION_WINDOW,
        metadata: BTreeMap::from([(METADATA_BATCH_ID, batch_id), (METADATA_RUN_ID, run_id)]),
    };
    serde_json::to_vec(&body).expect("batch bodies serialize")
}

/// Whether `batch` carries volley's tags for this batch and run.
pub fn is_tagged(batch: &Batch, batch_id: &str, run_id: &str) -> bool {
    let Some(metadata) = &batch.metadata else {
        return false;
    };
    let tag = |key: &str| metadata.get(key).and_then(Value::as_str);
    tag(METADATA_BATCH_ID) == Some(batch_id) && tag(METADATA_RUN_ID).is_none_or(|r| r == run_id)
}

/// The output and error files of a batch, as carried in [`RemoteBatch::results_locator`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultFiles {
    /// `output_file_id`.
    pub output: Option<String>,
    /// `error_file_id`.
    pub error: Option<String>,
}

impl ResultFiles {
    /// `output=<id>;error=<id>` (either part left out when absent); `None` when both are.
    pub fn locator(&self) -> Option<String> {
        let parts: Vec<String> = [("output", &self.output), ("error", &self.error)]
            .into_iter()
            .filter_map(|(name, id)| id.as_ref().map(|id| format!("{name}={id}")))
            .collect();
        (!parts.is_empty()).then(|| parts.join(";"))
    }

    /// Parses [`ResultFiles::locator`]; unknown parts are ignored.
    pub fn parse(locator: &str) -> Self {
        let mut files = Self::default();
        for part in locator.split(';') {
            match part.split_once('=') {
                Some(("output", id)) if !id.is_empty() => files.output = Some(id.to_owned()),
                Some(("error", id)) if !id.is_empty() => files.error = Some(id.to_owned()),
                _ => {}
            }
        }
        files
    }
}

/// A batch in neutral terms. `owned_files` holds every file of the batch known so far (input,
/// output, error): volley deletes them all once the results are stored.
pub fn remote_batch(batch: Batch) -> RemoteBatch {
    // Some compatible servers (Together) spell statuses in capitals.
    let status = batch.status.to_ascii_lowercase();
    let phase = match status.as_str() {
        "completed" | "expired" | "cancelled" | "canceled" => RemotePhase::Ended,
        "cancelling" | "canceling" => RemotePhase::Canceling,
        "failed" => RemotePhase::Failed(failure_message(&batch)),
        // validating, in_progress, finalizing, and anything new: keep polling.
        _ => RemotePhase::Running,
    };
    // 0/0/0 (while validating, or after failing validation) means "not counted".
    let request_count = batch
        .request_counts
        .map(|c| c.total)
        .filter(|total| *total > 0);
    let files = ResultFiles {
        output: batch.output_file_id.clone(),
        error: batch.error_file_id.clone(),
    };
    let owned_files = [
        batch.input_file_id.as_ref(),
        files.output.as_ref(),
        files.error.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter(|id| !id.is_empty())
    .cloned()
    .collect();
    RemoteBatch {
        id: batch.id,
        phase,
        provider_status: batch.status,
        request_count,
        results_locator: files.locator(),
        owned_files,
    }
}

fn failure_message(batch: &Batch) -> String {
    let errors = batch
        .errors
        .as_ref()
        .map(|e| e.data.as_slice())
        .unwrap_or(&[]);
    if errors.is_empty() {
        return "failed (the provider gave no reason)".into();
    }
    errors
        .iter()
        .map(|e| {
            let mut text = match (&e.code, &e.message) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(text), None) | (None, Some(text)) => text.clone(),
                (None, None) => "unknown error".into(),
            };
            if let Some(line) = e.line {
                text.push_str(&format!(" (input line {line})"));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses a `FileObject` body.
pub fn parse_file(body: &[u8]) -> Result<FileObject, String> {
    http::parse_json(body, "file object")
}

/// Parses a page of the file list.
pub fn parse_file_page(body: &[u8]) -> Result<FilePage, String> {
    http::parse_json(body, "file list")
}

/// Parses a `Batch` body.
pub fn parse_batch(body: &[u8]) -> Result<Batch, String> {
    http::parse_json(body, "batch object")
}

/// Parses a page of the batch list.
pub fn parse_batch_page(body: &[u8]) -> Result<BatchPage, String> {
    http::parse_json(body, "batch list")
}

/// Parses one line of the output or the error file (both have the same shape).
///
/// - an HTTP 2xx response: `Succeeded`, with the first choice's text. A refusal (the
///   `refusal` field) is an answer too: it is returned as the text with stop reason
///   `refusal`, so its billed usage is counted; a schema request then fails volley's JSON
///   check and its result line shows the refusal;
/// - an HTTP error response: `Errored`, classified by status and the body's `code`;
/// - no response: `batch_expired` is `Expired`, `batch_cancelled` is `Canceled`, any other
///   code is `Errored`.
pub fn item_outcome(line: &[u8]) -> Result<ItemOutcome, String> {
    let line: OutputLine = serde_json::from_slice(line).map_err(|e| {
        let shown = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        format!("unexpected result line ({e}): {shown}")
    })?;
    let result = match (line.response, line.error) {
        (Some(response), _) if (200..300).contains(&response.status_code) => {
            succeeded(response.body.as_deref())
        }
        (Some(response), _) => {
            let status = response.status_code;
            let body = response.body.as_deref();
            let error = body.and_then(|b| serde_json::from_str::<ErrorResponse>(b.get()).ok());
            ItemResult::Errored(match error {
                Some(e) => {
                    let code = e.error.code();
                    ErrorInfo {
                        kind: error_kind(Some(status), e.error.kind.as_deref(), code.as_deref()),
                        message: error_message(
                            e.error.kind.as_deref(),
                            code.as_deref(),
                            e.error.message.as_deref(),
                        ),
                        provider_status: Some(status),
                    }
                }
                None => ErrorInfo {
                    kind: error_kind(Some(status), None, None),
                    message: format!("HTTP {status}: {}", shorten(&body_text(body))),
                    provider_status: Some(status),
                },
            })
        }
        (None, Some(error)) => match error.code.as_deref() {
            Some("batch_expired") => ItemResult::Expired,
            Some("batch_cancelled" | "batch_canceled") => ItemResult::Canceled,
            code => ItemResult::Errored(ErrorInfo {
                kind: error_kind(None, None, code),
                message: error_message(None, code, error.message.as_deref()),
                provider_status: None,
            }),
        },
        (None, None) => {
            return Err(format!(
                "result line for `{}` has neither a response nor an error",
                line.custom_id
            ));
        }
    };
    Ok(ItemOutcome {
        custom_id: line.custom_id,
        result,
    })
}

fn succeeded(body: Option<&RawValue>) -> ItemResult {
    let shown = || shorten(&body_text(body));
    let completion =
        match serde_json::from_str::<ChatCompletion>(body.map_or("null", RawValue::get)) {
            Ok(c) if !c.choices.is_empty() => c,
            Ok(_) => return protocol_error(format!("the answer has no choices: {}", shown())),
            Err(e) => {
                return protocol_error(format!("unexpected chat completion ({e}): {}", shown()));
            }
        };
    let u = completion.usage.unwrap_or_default();
    let details = u.prompt_tokens_details.unwrap_or_default();
    let cache_read = details.cached_tokens.unwrap_or(0);
    let cache_write = details.cache_write_tokens.unwrap_or(0);
    let usage = Usage {
        // prompt_tokens counts cached tokens; volley's input_tokens never does.
        input_tokens: u
            .prompt_tokens
            .saturating_sub(cache_read)
            .saturating_sub(cache_write),
        output_tokens: u.completion_tokens,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
    };
    let choice = completion
        .choices
        .into_iter()
        .next()
        .expect("checked non-empty");
    let message = choice.message;
    let (text, stop_reason) = match message.refusal.filter(|r| !r.is_empty()) {
        Some(refusal) => (refusal, Some("refusal".to_owned())),
        None => (message.content.unwrap_or_default(), choice.finish_reason),
    };
    ItemResult::Succeeded {
        text,
        citations: message.annotations.unwrap_or_default(),
        usage,
        stop_reason,
    }
}

fn protocol_error(message: String) -> ItemResult {
    ItemResult::Errored(ErrorInfo {
        kind: ErrorKind::Protocol,
        message,
        provider_status: None,
    })
}

/// A body for a message: a JSON string as its text, anything else as JSON.
fn body_text(body: Option<&RawValue>) -> Cow<'_, str> {
    let Some(raw) = body else {
        return Cow::Borrowed("null");
    };
    match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
        Ok(text) => text,
        Err(_) => Cow::Borrowed(raw.get()),
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(300).collect()
}

fn error_message(kind: Option<&str>, code: Option<&str>, message: Option<&str>) -> String {
    let label = code.or(kind).unwrap_or("error");
    match message.filter(|m| !m.is_empty()) {
        Some(message) => format!("{label}: {message}"),
        None => label.to_owned(),
    }
}

/// volley's error kind for an OpenAI error. The status decides (OpenAI's `type` is
/// `invalid_request_error` even for a wrong key, answered 401), refined by a few codes:
/// `insufficient_quota` (a 429 that no retry can fix: the account is out of credit) is
/// `Permission`, so the run stops instead of failing batch after batch.
pub fn error_kind(status: Option<u16>, kind: Option<&str>, code: Option<&str>) -> ErrorKind {
    match code {
        Some("insufficient_quota" | "billing_hard_limit_reached") => {
            return ErrorKind::Permission;
        }
        Some("invalid_api_key") => return ErrorKind::Authentication,
        Some("rate_limit_exceeded") => return ErrorKind::RateLimited,
        Some("context_length_exceeded" | "invalid_prompt") => return ErrorKind::InvalidRequest,
        Some("model_not_found") => return ErrorKind::NotFound,
        _ => {}
    }
    if let Some(status) = status.and_then(|s| StatusCode::from_u16(s).ok()) {
        return http::kind_from_status(status);
    }
    match kind.or(code) {
        Some("invalid_request_error") => ErrorKind::InvalidRequest,
        Some("authentication_error") => ErrorKind::Authentication,
        Some("permission_error") => ErrorKind::Permission,
        Some("not_found_error") => ErrorKind::NotFound,
        Some("rate_limit_error") => ErrorKind::RateLimited,
        Some("server_error" | "api_error") => ErrorKind::Server,
        Some("timeout") => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    }
}

/// An error response as a [`ProviderError`], keeping status, `x-request-id` and the raw body.
pub fn parse_error(
    provider: ProviderKind,
    operation: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ProviderError {
    let raw = String::from_utf8_lossy(body).into_owned();
    let parsed: Option<ErrorResponse> = serde_json::from_slice(body).ok();
    let (kind, message) = match &parsed {
        Some(e) => {
            let code = e.error.code();
            (
                error_kind(
                    Some(status.as_u16()),
                    e.error.kind.as_deref(),
                    code.as_deref(),
                ),
                error_message(
                    e.error.kind.as_deref(),
                    code.as_deref(),
                    e.error.message.as_deref(),
                ),
            )
        }
        None => (
            http::kind_from_status(status),
            format!(
                "{}: {}",
                status.canonical_reason().unwrap_or("error"),
                shorten(&raw)
            ),
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
        retry_after: None,
    }
}

#[cfg(test)]
mod tests;
