//! Anthropic's JSON, as serde structs. Requests borrow from volley's types; responses ignore
//! unknown fields so additions on Anthropic's side never break parsing.
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/messages/batches` body.
#[derive(Debug, Serialize)]
pub struct CreateBatch<'a> {
    /// The requests.
    pub requests: Vec<BatchRequest<'a>>,
}

/// One request of a batch.
#[derive(Debug, Serialize)]
pub struct BatchRequest<'a> {
    /// Our id for it, echoed in its result line.
    pub custom_id: &'a str,
    /// Messages API parameters.
    pub params: MessageParams<'a>,
}

/// Messages API parameters (the subset volley uses).
#[derive(Debug, Serialize)]
pub struct MessageParams<'a> {
    /// Model id.
    pub model: &'a str,
    /// Output bound.
    pub max_tokens: u32,
    /// Conversation.
    pub messages: Vec<MessageParam<'a>>,
    /// System prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<&'a str>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Structured output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig<'a>>,
}

/// `POST /v1/messages/count_tokens` body: the Messages parameters that reach the model
/// (count_tokens takes neither `max_tokens` nor sampling settings).
#[derive(Debug, Serialize)]
pub struct CountTokensParams<'a> {
    /// Model id.
    pub model: &'a str,
    /// Conversation.
    pub messages: Vec<MessageParam<'a>>,
    /// System prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<&'a str>,
    /// Structured output (its schema is billed as input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig<'a>>,
}

/// `count_tokens` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TokensCount {
    /// Input tokens of the request.
    pub input_tokens: u64,
}

/// `output_config`.
#[derive(Debug, Serialize)]
pub struct OutputConfig<'a> {
    /// The format.
    pub format: JsonSchemaFormat<'a>,
}

/// `{"type": "json_schema", "schema": …}`.
#[derive(Debug, Serialize)]
pub struct JsonSchemaFormat<'a> {
    /// Always `json_schema`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The schema.
    pub schema: &'a Value,
}

/// One message.
#[derive(Debug, Serialize)]
pub struct MessageParam<'a> {
    /// `user` or `assistant`.
    pub role: &'static str,
    /// Its blocks.
    pub content: Vec<ContentBlock<'a>>,
}

/// A content block.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock<'a> {
    /// Text.
    Text {
        /// The text.
        text: &'a str,
    },
    /// A document (PDF or plain text).
    Document {
        /// Where its bytes are.
        source: DocumentSource<'a>,
        /// Shown to the model.
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<&'a str>,
        /// `{"enabled": true}` to get citations.
        #[serde(skip_serializing_if = "Option::is_none")]
        citations: Option<CitationsConfig>,
    },
    /// An image.
    Image {
        /// Its bytes.
        source: Base64Source<'a>,
    },
}

/// A document source.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentSource<'a> {
    /// Base64 bytes (PDF).
    Base64 {
        /// MIME type.
        media_type: &'a str,
        /// Base64 data.
        data: &'a str,
    },
    /// Plain text.
    Text {
        /// Always `text/plain`.
        media_type: &'static str,
        /// The text.
        data: String,
    },
}

/// `{"type": "base64", media_type, data}` for images.
#[derive(Debug, Serialize)]
pub struct Base64Source<'a> {
    /// Always `base64`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// MIME type.
    pub media_type: &'a str,
    /// Base64 data.
    pub data: &'a str,
}

/// Citations switch.
#[derive(Debug, Serialize)]
pub struct CitationsConfig {
    /// On.
    pub enabled: bool,
}

/// A message batch.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageBatch {
    /// `msgbatch_…`.
    pub id: String,
    /// `in_progress`, `canceling` or `ended`.
    pub processing_status: String,
    /// Per-outcome counts.
    pub request_counts: RequestCounts,
    /// RFC 3339.
    pub created_at: String,
    /// Absolute URL of the results, once ended.
    #[serde(default)]
    pub results_url: Option<String>,
}

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct RequestCounts {
    /// Still running.
    #[serde(default)]
    pub processing: u64,
    /// Succeeded.
    #[serde(default)]
    pub succeeded: u64,
    /// Errored.
    #[serde(default)]
    pub errored: u64,
    /// Canceled.
    #[serde(default)]
    pub canceled: u64,
    /// Expired.
    #[serde(default)]
    pub expired: u64,
}

impl RequestCounts {
    /// Requests in the batch.
    pub fn total(&self) -> u64 {
        self.processing + self.succeeded + self.errored + self.canceled + self.expired
    }
}

/// A page of `GET /v1/messages/batches`.
#[derive(Debug, Deserialize)]
pub struct BatchPage {
    /// Batches, newest first.
    pub data: Vec<MessageBatch>,
    /// More after `last_id`.
    #[serde(default)]
    pub has_more: bool,
    /// Id of the last batch on the page.
    #[serde(default)]
    pub last_id: Option<String>,
}

/// One line of the results JSONL.
#[derive(Debug, Deserialize)]
pub struct ResultLine {
    /// The id we sent.
    pub custom_id: String,
    /// How it ended.
    pub result: BatchResult,
}

/// `result`, by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BatchResult {
    /// Answered.
    Succeeded {
        /// The answer.
        message: Message,
    },
    /// Failed; the error is a full error response.
    Errored {
        /// `{"type":"error","error":{…}}`.
        error: ErrorResponse,
    },
    /// Cancelled.
    Canceled,
    /// Expired.
    Expired,
}

/// A Messages API answer.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// Content blocks.
    #[serde(default)]
    pub content: Vec<ResponseBlock>,
    /// Why it stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Billed usage.
    pub usage: Usage,
}

/// A content block of an answer. Kinds volley does not use are kept as `Other`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    /// Text, with citations when asked for.
    Text {
        /// The text.
        text: String,
        /// Citations.
        #[serde(default)]
        citations: Option<Vec<Value>>,
    },
    /// A tool call (structured output through tools).
    ToolUse {
        /// The tool's input, i.e. the structured answer.
        input: Value,
    },
    /// Anything else (thinking and so on).
    #[serde(other)]
    Other,
}

/// `usage`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens written to the cache.
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    /// Tokens read from the cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

/// `{"type":"error","error":{"type","message"},"request_id"}`.
#[derive(Debug, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
    /// Anthropic's request id.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// The inner error.
#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `rate_limit_error`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Human message.
    #[serde(default)]
    pub message: String,
}
