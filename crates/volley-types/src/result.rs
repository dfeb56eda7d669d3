use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ProviderKind;

/// Final status of one request (DESIGN.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// The provider answered.
    Succeeded,
    /// The provider rejected it or it kept failing up to the attempt limit.
    Failed,
    /// Cancelled by the user before it ran.
    Canceled,
    /// The provider's batch window passed before it ran, on every attempt.
    Expired,
    /// Never submitted (for example, the cost cap left no room).
    Skipped,
}

impl ResultStatus {
    /// Every status, in the order of the `counts` object.
    pub const ALL: [ResultStatus; 5] = [
        Self::Succeeded,
        Self::Failed,
        Self::Canceled,
        Self::Expired,
        Self::Skipped,
    ];

    /// The lowercase name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
            Self::Skipped => "skipped",
        }
    }

    /// Parses [`ResultStatus::as_str`] back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

impl fmt::Display for ResultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Through the provider's batch API (half price).
    Batch,
    /// Through the provider's real-time API.
    Realtime,
}

/// Token usage as billed. `input_tokens` excludes cached tokens on every provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens (including reasoning tokens).
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Adds another usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
    }
}

/// What went wrong with a request, as shown in its result line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// A stable machine-readable kind.
    pub kind: ErrorKind,
    /// The provider's message, or ours.
    pub message: String,
    /// The HTTP status the provider gave, when there was one.
    pub provider_status: Option<u16>,
}

/// Stable kinds of per-request errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The provider said the request itself is invalid; retrying will not help.
    InvalidRequest,
    /// The key was missing or wrong.
    Authentication,
    /// The key may not do this.
    Permission,
    /// The model or resource does not exist.
    NotFound,
    /// The request was too large.
    TooLarge,
    /// Rate limited.
    RateLimited,
    /// The provider was overloaded.
    Overloaded,
    /// The provider failed (5xx); retrying may help.
    Server,
    /// The call timed out.
    Timeout,
    /// The connection failed.
    Network,
    /// The batch window passed before the request ran.
    Expired,
    /// Cancelled.
    Canceled,
    /// Not submitted because the cost cap left no room.
    CostCap,
    /// The answer did not parse as the requested JSON schema.
    InvalidOutput,
    /// The provider's answer could not be understood.
    Protocol,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Whether the same request may succeed if sent again unchanged.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::Overloaded
                | Self::Server
                | Self::Timeout
                | Self::Network
                | Self::Expired
        )
    }
}

/// One line of `results.jsonl` (DESIGN.md §3.2). Field order is the contract's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    /// The user's request id.
    pub id: String,
    /// Final status.
    pub status: ResultStatus,
    /// The provider that ran it (or would have).
    pub provider: ProviderKind,
    /// The provider's model id.
    pub model: String,
    /// Batch or real-time.
    pub mode: Mode,
    /// The answer's text.
    pub text: Option<String>,
    /// The answer parsed as JSON, when a schema was requested.
    pub parsed: Option<Value>,
    /// Citations the provider returned.
    pub citations: Vec<Value>,
    /// Billed usage.
    pub usage: Usage,
    /// Cost in USD at the price actually paid.
    pub cost_usd: f64,
    /// How many times it was submitted.
    pub attempts: u32,
    /// The provider's id of the batch that produced this line.
    pub provider_batch_id: Option<String>,
    /// What went wrong, for every status but `succeeded`.
    pub error: Option<ErrorInfo>,
    /// The request's metadata, untouched.
    pub metadata: Option<Value>,
}
