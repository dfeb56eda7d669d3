//! OpenAI's JSON, as serde structs. Requests borrow from volley's types; responses ignore
//! unknown fields and default missing ones, so additions on OpenAI's side (and the small
//! differences of OpenAI-compatible servers) never break parsing.
use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// One line of the batch input file.
#[derive(Debug, Serialize)]
pub struct BatchLine<'a> {
    /// Our id for it, echoed in its output or error line.
    pub custom_id: &'a str,
    /// Always `POST`.
    pub method: &'static str,
    /// Always [`super::CHAT_COMPLETIONS`]; must equal the batch's `endpoint`.
    pub url: &'static str,
    /// The Chat Completions body.
    pub body: ChatRequest<'a>,
}

/// Chat Completions parameters (the subset volley uses).
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    /// Model id.
    pub model: &'a str,
    /// Conversation, system prompt first.
    pub messages: Vec<ChatMessage<'a>>,
    /// Output bound. `max_tokens` is deprecated and refused by reasoning models (o-series,
    /// gpt-5); `max_completion_tokens` is accepted by every current model.
    pub max_completion_tokens: u32,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Structured output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat<'a>>,
}

/// One message.
#[derive(Debug, Serialize)]
pub struct ChatMessage<'a> {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// Its content.
    pub content: MessageContent<'a>,
}

/// Message content: a plain string (one text part) or a list of parts.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum MessageContent<'a> {
    /// Plain text.
    Text(&'a str),
    /// Parts.
    Parts(Vec<ContentPart<'a>>),
}

/// A content part.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart<'a> {
    /// Text (also inlined text documents).
    Text {
        /// The text.
        text: Cow<'a, str>,
    },
    /// An image.
    ImageUrl {
        /// Its data URL.
        image_url: ImageUrl,
    },
    /// A file (PDF), inlined.
    File {
        /// Name and data.
        file: FileData<'a>,
    },
}

/// `{"url": "data:image/png;base64,…"}`.
#[derive(Debug, Serialize)]
pub struct ImageUrl {
    /// A `data:` URL.
    pub url: String,
}

/// `{"filename", "file_data": "data:application/pdf;base64,…"}`.
#[derive(Debug, Serialize)]
pub struct FileData<'a> {
    /// Shown to the model.
    pub filename: Cow<'a, str>,
    /// A `data:` URL.
    pub file_data: String,
}

/// `{"type": "json_schema", "json_schema": {…}}`.
#[derive(Debug, Serialize)]
pub struct ResponseFormat<'a> {
    /// Always `json_schema`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The schema.
    pub json_schema: JsonSchema<'a>,
}

/// `json_schema`.
#[derive(Debug, Serialize)]
pub struct JsonSchema<'a> {
    /// `^[a-zA-Z0-9_-]{1,64}$`.
    pub name: &'static str,
    /// The schema, made strict-compatible.
    pub schema: &'a Value,
    /// Always true: the answer is constrained to the schema.
    pub strict: bool,
}

/// `POST /v1/responses/input_tokens` body: the Responses form of a Chat Completions request
/// (OpenAI counts input tokens only for Responses; the content is the same).
#[derive(Debug, Serialize)]
pub struct InputTokensRequest<'a> {
    /// Model id.
    pub model: &'a str,
    /// The system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<&'a str>,
    /// The conversation.
    pub input: Vec<InputMessage<'a>>,
    /// Structured output (its schema is billed as input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig<'a>>,
}

/// A Responses input message (`EasyInputMessage`).
#[derive(Debug, Serialize)]
pub struct InputMessage<'a> {
    /// `user` or `assistant`.
    pub role: &'static str,
    /// A string or parts.
    pub content: InputContent<'a>,
}

/// Responses message content.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InputContent<'a> {
    /// Plain text.
    Text(&'a str),
    /// Parts.
    Parts(Vec<InputPart<'a>>),
}

/// A Responses content part.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputPart<'a> {
    /// Text of a user message.
    InputText {
        /// The text.
        text: Cow<'a, str>,
    },
    /// Text of an assistant message.
    OutputText {
        /// The text.
        text: Cow<'a, str>,
    },
    /// An image.
    InputImage {
        /// Its data URL.
        image_url: String,
        /// `auto`, as Chat Completions defaults to.
        detail: &'static str,
    },
    /// A file (PDF), inlined.
    InputFile {
        /// Shown to the model.
        filename: Cow<'a, str>,
        /// A `data:` URL.
        file_data: String,
    },
}

/// Responses `text`.
#[derive(Debug, Serialize)]
pub struct TextConfig<'a> {
    /// The output format.
    pub format: TextFormat<'a>,
}

/// `{"type": "json_schema", "name", "schema", "strict"}`.
#[derive(Debug, Serialize)]
pub struct TextFormat<'a> {
    /// Always `json_schema`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A label.
    pub name: &'static str,
    /// The schema, made strict-compatible.
    pub schema: &'a Value,
    /// As in the batch request.
    pub strict: bool,
}

/// `POST /v1/responses/input_tokens` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct InputTokensCount {
    /// Input tokens of the request.
    pub input_tokens: u64,
}

/// `POST /batches` body.
#[derive(Debug, Serialize)]
pub struct CreateBatch<'a> {
    /// The uploaded input file.
    pub input_file_id: &'a str,
    /// [`super::CHAT_COMPLETIONS`].
    pub endpoint: &'static str,
    /// [`super::COMPLETION_WINDOW`].
    pub completion_window: &'static str,
    /// Our tags, to find the batch again after a lost answer.
    pub metadata: BTreeMap<&'static str, &'a str>,
}

/// A file (`FileObject`).
#[derive(Debug, Clone, Deserialize)]
pub struct FileObject {
    /// `file-…`.
    pub id: String,
    /// The name it was uploaded with.
    #[serde(default)]
    pub filename: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// `batch`, `batch_output`, …
    #[serde(default)]
    pub purpose: Option<String>,
}

/// A page of `GET /files`.
#[derive(Debug, Deserialize)]
pub struct FilePage {
    /// Files, newest first (`order=desc`).
    #[serde(default)]
    pub data: Vec<FileObject>,
    /// More after the last one.
    #[serde(default)]
    pub has_more: bool,
}

/// A batch.
#[derive(Debug, Clone, Deserialize)]
pub struct Batch {
    /// `batch_…`.
    pub id: String,
    /// `validating`, `failed`, `in_progress`, `finalizing`, `completed`, `expired`,
    /// `cancelling` or `cancelled`.
    pub status: String,
    /// The uploaded input file.
    #[serde(default)]
    pub input_file_id: Option<String>,
    /// Answers (HTTP responses of any status); null until finalized, and null when no
    /// request got a response.
    #[serde(default)]
    pub output_file_id: Option<String>,
    /// Failed requests; null until finalized, and null when none failed.
    #[serde(default)]
    pub error_file_id: Option<String>,
    /// Why the batch failed (validation, enqueued-token limit).
    #[serde(default)]
    pub errors: Option<BatchErrors>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Per-outcome counts (0/0/0 while validating).
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
    /// Up to 16 string pairs (values kept as JSON to accept sloppy servers).
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Value>>,
}

/// `errors`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BatchErrors {
    /// The errors.
    #[serde(default)]
    pub data: Vec<BatchError>,
}

/// One entry of `errors.data`.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchError {
    /// E.g. `token_limit_exceeded`, `invalid_json_line`.
    #[serde(default)]
    pub code: Option<String>,
    /// Human message.
    #[serde(default)]
    pub message: Option<String>,
    /// The parameter at fault.
    #[serde(default)]
    pub param: Option<String>,
    /// The input line at fault (1-based).
    #[serde(default)]
    pub line: Option<u64>,
}

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct RequestCounts {
    /// Requests in the batch (0 while validating).
    #[serde(default)]
    pub total: u64,
    /// Finished with an answer.
    #[serde(default)]
    pub completed: u64,
    /// Finished with an error.
    #[serde(default)]
    pub failed: u64,
}

/// A page of `GET /batches`.
#[derive(Debug, Deserialize)]
pub struct BatchPage {
    /// Batches, newest first.
    #[serde(default)]
    pub data: Vec<Batch>,
    /// More after the last one (the next cursor is its id).
    #[serde(default)]
    pub has_more: bool,
}

/// One line of the output or error file.
#[derive(Debug, Deserialize)]
pub struct OutputLine {
    /// `batch_req_…`.
    #[serde(default)]
    pub id: Option<String>,
    /// The id we sent.
    pub custom_id: String,
    /// The HTTP response the request got, if it ran.
    #[serde(default)]
    pub response: Option<LineResponse>,
    /// Why it never ran (`batch_expired`, `batch_cancelled`, …).
    #[serde(default)]
    pub error: Option<LineError>,
}

/// `response` of an output line.
#[derive(Debug, Deserialize)]
pub struct LineResponse {
    /// HTTP status.
    pub status_code: u16,
    /// OpenAI's request id.
    #[serde(default)]
    pub request_id: Option<String>,
    /// A chat completion, or an error response: kept as its text and parsed once, as what
    /// the status says it is (a tree of `Value`s per line cost a collection ~15% of its time).
    #[serde(default)]
    pub body: Option<Box<RawValue>>,
}

/// `error` of an error line.
#[derive(Debug, Deserialize)]
pub struct LineError {
    /// E.g. `batch_expired`.
    #[serde(default)]
    pub code: Option<String>,
    /// Human message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A chat completion (the subset volley reads).
#[derive(Debug, Deserialize)]
pub struct ChatCompletion {
    /// Answers; volley asks for one.
    pub choices: Vec<Choice>,
    /// Billed usage.
    #[serde(default)]
    pub usage: Option<CompletionUsage>,
}

/// One choice.
#[derive(Debug, Deserialize)]
pub struct Choice {
    /// The answer.
    pub message: ChoiceMessage,
    /// `stop`, `length`, `content_filter`, `tool_calls`.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The assistant message of a choice.
#[derive(Debug, Deserialize)]
pub struct ChoiceMessage {
    /// The text (JSON text for schema requests); null on a refusal.
    #[serde(default)]
    pub content: Option<String>,
    /// The model's refusal, when it declined (structured outputs).
    #[serde(default)]
    pub refusal: Option<String>,
    /// URL citations and the like.
    #[serde(default)]
    pub annotations: Option<Vec<Value>>,
}

/// `usage` (`completion_usage.py`). `prompt_tokens` includes cached tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct CompletionUsage {
    /// All input tokens, cached ones included.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens, reasoning included.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Breakdown of the input.
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PromptTokensDetails {
    /// Read from the prompt cache.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    /// Written to the prompt cache (newer models only).
    #[serde(default)]
    pub cache_write_tokens: Option<u64>,
}

/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// The inner error.
#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    /// Human message.
    #[serde(default)]
    pub message: Option<String>,
    /// `invalid_request_error`, `server_error`, …
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The parameter at fault.
    #[serde(default)]
    pub param: Option<Value>,
    /// `invalid_api_key`, `rate_limit_exceeded`, `insufficient_quota`, … (some compatible
    /// servers send the HTTP status as a number here, so it is kept as JSON).
    #[serde(default)]
    pub code: Option<Value>,
}

impl ErrorDetail {
    /// `code`, if it is a non-empty string (a numeric code only repeats the status).
    pub fn code(&self) -> Option<String> {
        match &self.code {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }
}
