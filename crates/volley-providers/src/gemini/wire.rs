//! Gemini's JSON (v1beta, proto3 JSON mapping), as serde structs.
//!
//! Requests borrow from volley's types and are written in lowerCamelCase. Responses ignore
//! unknown fields, accept int64 values as strings (the wire form) or numbers, and default every
//! missing scalar, because proto3 leaves out fields equal to zero.
use std::borrow::Cow;

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// `POST /v1beta/models/{model}:batchGenerateContent` body.
#[derive(Debug, Serialize)]
pub struct CreateBatch<'a> {
    /// The batch to create.
    pub batch: NewBatch<'a>,
}

/// The `batch` of a create call (`GenerateContentBatch`, input side).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewBatch<'a> {
    /// volley's batch id, so a lost create can be found again by name.
    pub display_name: &'a str,
    /// Inline requests or an uploaded file.
    pub input_config: InputConfig<'a>,
}

/// `inputConfig`: exactly one of `requests` or `fileName`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InputConfig<'a> {
    /// `{"requests": {"requests": [...]}}`.
    Requests(InlinedRequests<'a>),
    /// `{"fileName": "files/..."}`.
    FileName(&'a str),
}

/// `InlinedRequests`.
#[derive(Debug, Serialize)]
pub struct InlinedRequests<'a> {
    /// The requests.
    pub requests: Vec<InlinedRequest<'a>>,
}

/// One inline request.
#[derive(Debug, Serialize)]
pub struct InlinedRequest<'a> {
    /// The request.
    pub request: GenerateContentRequest<'a>,
    /// Echoed on its response; `key` carries our id.
    pub metadata: RequestKey<'a>,
}

/// `{"key": ...}` metadata of an inline request.
#[derive(Debug, Serialize)]
pub struct RequestKey<'a> {
    /// Our id for the request.
    pub key: &'a str,
}

/// One line of an uploaded request file.
#[derive(Debug, Serialize)]
pub struct FileLine<'a> {
    /// Our id for the request, echoed on its result line.
    pub key: &'a str,
    /// The request.
    pub request: GenerateContentRequest<'a>,
}

/// `GenerateContentRequest` (the subset volley uses; the model comes from the batch).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<'a> {
    /// The conversation.
    pub contents: Vec<Content<'a>>,
    /// System prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content<'a>>,
    /// Sampling and output settings.
    pub generation_config: GenerationConfig<'a>,
}

/// `POST /v1beta/models/{model}:countTokens` body: the whole request, so the system
/// instruction and the response schema are counted too.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountTokensRequest<'a> {
    /// The request as a batch would send it, with its model.
    pub generate_content_request: ModelRequest<'a>,
}

/// A `GenerateContentRequest` with its `model` (`models/…`), as `countTokens` requires.
#[derive(Debug, Serialize)]
pub struct ModelRequest<'a> {
    /// `models/{model}`.
    pub model: String,
    /// The rest of the request.
    #[serde(flatten)]
    pub request: GenerateContentRequest<'a>,
}

/// `countTokens` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokensCount {
    /// Input tokens of the request (absent on an empty one).
    #[serde(default)]
    pub total_tokens: u64,
}

/// `Content`: a turn (or the system instruction, which has no role).
#[derive(Debug, Serialize)]
pub struct Content<'a> {
    /// `user` or `model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Its parts, in order.
    pub parts: Vec<Part<'a>>,
}

/// A request `Part` (one member of the `data` oneof).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Part<'a> {
    /// `{"text": ...}`.
    Text(Cow<'a, str>),
    /// `{"inlineData": {"mimeType", "data"}}`: base64 bytes (PDFs, images).
    InlineData(Blob<'a>),
}

/// `Blob`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob<'a> {
    /// MIME type.
    pub mime_type: &'a str,
    /// Base64 data.
    pub data: &'a str,
}

/// `generationConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig<'a> {
    /// Output bound.
    pub max_output_tokens: u32,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// `application/json` for structured output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    /// A plain JSON Schema (not the OpenAPI-subset `responseSchema`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_json_schema: Option<&'a Value>,
}

/// Body of the resumable upload's start call.
#[derive(Debug, Serialize)]
pub struct UploadStart<'a> {
    /// The file to create.
    pub file: NewFile<'a>,
}

/// The `file` of an upload start.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewFile<'a> {
    /// `volley-<batch id>`, so leftovers can be told apart.
    pub display_name: &'a str,
    /// Always JSONL.
    pub mime_type: &'static str,
}

/// `{"file": File}`, the answer of the final upload call.
#[derive(Debug, Deserialize)]
pub struct UploadedFile {
    /// The file.
    pub file: File,
}

/// A `File` (the fields volley reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct File {
    /// `files/{id}`.
    pub name: String,
    /// What we named it.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Size, an int64 string on the wire.
    #[serde(default, deserialize_with = "int64")]
    pub size_bytes: u64,
    /// `PROCESSING`, `ACTIVE` or `FAILED`.
    #[serde(default)]
    pub state: Option<String>,
}

/// A batch, reported as a long-running operation. `O` is how its output is read: polling
/// only needs to know where the results are ([`OutputSummary`]); collecting reads the inline
/// responses ([`BatchOutput`]).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation<O = OutputSummary> {
    /// `batches/{id}`.
    #[serde(default)]
    pub name: String,
    /// The batch itself.
    #[serde(default = "Option::default")]
    pub metadata: Option<Batch<O>>,
    /// Whether the batch reached a final state.
    #[serde(default)]
    pub done: bool,
    /// The output again (`GenerateContentBatchOutput`), once succeeded.
    #[serde(default = "Option::default")]
    pub response: Option<O>,
    /// Why the batch failed.
    #[serde(default)]
    pub error: Option<Status>,
}

/// `GenerateContentBatch`, as read back.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch<O> {
    /// `batches/{id}`.
    #[serde(default)]
    pub name: String,
    /// volley's batch id.
    #[serde(default)]
    pub display_name: String,
    /// `models/...`.
    #[serde(default)]
    pub model: String,
    /// `BATCH_STATE_*`.
    #[serde(default)]
    pub state: String,
    /// RFC 3339.
    #[serde(default)]
    pub create_time: Option<String>,
    /// The input, as echoed by the API.
    #[serde(default)]
    pub input_config: Option<InputConfigEcho>,
    /// Per-outcome counts.
    #[serde(default)]
    pub batch_stats: Option<BatchStats>,
    /// Where the results are.
    #[serde(default = "Option::default")]
    pub output: Option<O>,
}

/// `inputConfig` as echoed in a batch.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputConfigEcho {
    /// The uploaded request file.
    #[serde(default)]
    pub file_name: Option<String>,
    /// Inline requests, read only for their keys.
    #[serde(default)]
    pub requests: Option<EchoedRequests>,
}

/// Echoed `InlinedRequests`.
#[derive(Debug, Deserialize)]
pub struct EchoedRequests {
    /// The requests.
    #[serde(default)]
    pub requests: Vec<EchoedRequest>,
}

/// An echoed inline request: only its key matters.
#[derive(Debug, Deserialize)]
pub struct EchoedRequest {
    /// `{"key": ...}`.
    #[serde(default)]
    pub metadata: Option<ResponseKey>,
}

/// `batchStats`: int64 strings, left out when zero.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchStats {
    /// Requests in the batch.
    #[serde(default, deserialize_with = "int64")]
    pub request_count: u64,
    /// Answered.
    #[serde(default, deserialize_with = "int64")]
    pub successful_request_count: u64,
    /// Failed.
    #[serde(default, deserialize_with = "int64")]
    pub failed_request_count: u64,
    /// Not done yet.
    #[serde(default, deserialize_with = "int64")]
    pub pending_request_count: u64,
}

/// `GenerateContentBatchOutput`, read only for where the results are.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputSummary {
    /// `files/...` holding the result lines.
    #[serde(default)]
    pub responses_file: Option<String>,
    /// Present when the results are inline; skipped unread while polling.
    #[serde(default)]
    pub inlined_responses: Option<IgnoredAny>,
}

/// `GenerateContentBatchOutput`, with the inline responses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchOutput {
    /// `files/...` holding the result lines.
    #[serde(default)]
    pub responses_file: Option<String>,
    /// `{"inlinedResponses": [...]}` (the name is nested twice).
    #[serde(default)]
    pub inlined_responses: Option<InlinedResponses>,
}

/// `InlinedResponses`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InlinedResponses {
    /// Each kept raw, so one malformed response spoils only itself.
    #[serde(default)]
    pub inlined_responses: Vec<Box<RawValue>>,
}

/// One inline response: `metadata` plus `response` or `error`.
#[derive(Debug, Deserialize)]
pub struct InlinedResponse {
    /// The request's metadata, with our key.
    #[serde(default)]
    pub metadata: Option<ResponseKey>,
    /// The answer.
    #[serde(default)]
    pub response: Option<GenerateContentResponse>,
    /// Or why there is none.
    #[serde(default)]
    pub error: Option<Status>,
}

/// `{"key": ...}` read back.
#[derive(Debug, Deserialize)]
pub struct ResponseKey {
    /// Our id for the request.
    #[serde(default)]
    pub key: Option<String>,
}

/// One line of a responses file: `key` plus `response` or `error`.
#[derive(Debug, Deserialize)]
pub struct ResultLine {
    /// Our id for the request.
    #[serde(default)]
    pub key: Option<String>,
    /// The answer.
    #[serde(default)]
    pub response: Option<GenerateContentResponse>,
    /// Or why there is none.
    #[serde(default)]
    pub error: Option<Status>,
}

/// `GenerateContentResponse` (the fields volley reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// Answers; empty when the prompt was blocked.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Why the prompt was blocked.
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    /// Billed usage.
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
}

/// A candidate answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// Its content.
    #[serde(default)]
    pub content: Option<CandidateContent>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`, ...
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Sources the answer recites.
    #[serde(default)]
    pub citation_metadata: Option<CitationMetadata>,
}

/// A candidate's `Content`.
#[derive(Debug, Deserialize)]
pub struct CandidateContent {
    /// Its parts.
    #[serde(default)]
    pub parts: Vec<ResponsePart>,
}

/// A response part: text, possibly a thought summary. Other kinds read as empty.
#[derive(Debug, Deserialize)]
pub struct ResponsePart {
    /// The text.
    #[serde(default)]
    pub text: Option<String>,
    /// Whether this is a thought (not part of the answer).
    #[serde(default)]
    pub thought: bool,
}

/// `citationMetadata`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CitationMetadata {
    /// `citationSources` (Vertex spells it `citations`).
    #[serde(default, alias = "citations")]
    pub citation_sources: Vec<Value>,
}

/// `promptFeedback`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    /// `SAFETY`, `OTHER`, `BLOCKLIST`, ...
    #[serde(default)]
    pub block_reason: Option<String>,
}

/// `usageMetadata`. `promptTokenCount` includes cached tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Prompt tokens, cached ones included.
    #[serde(default, deserialize_with = "int64")]
    pub prompt_token_count: u64,
    /// Prompt tokens read from the cache.
    #[serde(default, deserialize_with = "int64")]
    pub cached_content_token_count: u64,
    /// Answer tokens.
    #[serde(default, deserialize_with = "int64")]
    pub candidates_token_count: u64,
    /// Thinking tokens (billed as output).
    #[serde(default, deserialize_with = "int64")]
    pub thoughts_token_count: u64,
}

/// `{"error": Status}`, the body of an HTTP error.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: Status,
}

/// `google.rpc.Status`. `code` is the HTTP status in HTTP errors and result lines, and the
/// gRPC code (0–16) in an `Operation.error`.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    /// HTTP or gRPC code.
    #[serde(default, deserialize_with = "int64")]
    pub code: u64,
    /// Human message.
    #[serde(default)]
    pub message: String,
    /// Canonical name, e.g. `RESOURCE_EXHAUSTED`.
    #[serde(default)]
    pub status: Option<String>,
    /// `google.rpc.*` details, read one by one with [`ErrorDetail`].
    #[serde(default)]
    pub details: Vec<Value>,
}

/// The error details volley acts on, by `@type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "@type")]
pub enum ErrorDetail {
    /// Why: `API_KEY_INVALID`, ...
    #[serde(rename = "type.googleapis.com/google.rpc.ErrorInfo")]
    ErrorInfo {
        /// Machine-readable reason.
        #[serde(default)]
        reason: String,
    },
    /// When to come back.
    #[serde(
        rename = "type.googleapis.com/google.rpc.RetryInfo",
        rename_all = "camelCase"
    )]
    RetryInfo {
        /// A duration, `"37s"`.
        #[serde(default)]
        retry_delay: Option<String>,
    },
    /// Which quotas ran out.
    #[serde(rename = "type.googleapis.com/google.rpc.QuotaFailure")]
    QuotaFailure {
        /// The violations.
        #[serde(default)]
        violations: Vec<QuotaViolation>,
    },
    /// Anything else (`Help`, `BadRequest`, ...).
    #[serde(other)]
    Other,
}

/// A `QuotaFailure` violation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaViolation {
    /// E.g. `GenerateRequestsPerDayPerProjectPerModel-FreeTier`.
    #[serde(default)]
    pub quota_id: String,
    /// E.g. `generativelanguage.googleapis.com/generate_requests_per_model`.
    #[serde(default)]
    pub quota_metric: String,
}

/// A page of `GET /v1beta/batches`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchPage {
    /// The batches (named `operations` on the wire).
    #[serde(default)]
    pub operations: Vec<Operation>,
    /// The next page's token; absent or empty on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// Reads an int64: a JSON string on the wire, a number from lenient servers, `null` as 0.
fn int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Number(u64),
        String(String),
    }
    match Option::<Int64>::deserialize(deserializer)? {
        None => Ok(0),
        Some(Int64::Number(n)) => Ok(n),
        Some(Int64::String(s)) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("not an int64: {s:?}"))),
    }
}
