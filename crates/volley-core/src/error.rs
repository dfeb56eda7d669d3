//! Errors that cross the core's traits: a provider call that failed, a store that failed.
use std::fmt;
use std::time::Duration;

use volley_types::{ErrorInfo, ErrorKind, ProviderKind};

/// A provider call that failed. Keeps everything needed to explain and classify it: provider,
/// operation, HTTP status, the provider's request id and the raw body (async-openai style).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderError {
    /// Which provider.
    pub provider: ProviderKind,
    /// What volley was doing, e.g. `create batch`.
    pub operation: &'static str,
    /// Classification.
    pub kind: ErrorKind,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The provider's request id (`request-id`, `x-request-id`), for support tickets.
    pub request_id: Option<String>,
    /// The provider's message, or a description of the transport failure.
    pub message: String,
    /// The response body as received (never contains our key: providers do not echo it).
    pub raw_body: Option<String>,
    /// The delay the provider asked for (`retry-after`), if any.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    /// A failure with no HTTP response (connection, timeout, decoding).
    pub fn transport(
        provider: ProviderKind,
        operation: &'static str,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            operation,
            kind,
            status: None,
            request_id: None,
            message: message.into(),
            raw_body: None,
            retry_after: None,
        }
    }

    /// Whether sending the same call again may succeed (timeouts, resets, 408/409/429/5xx/529).
    pub fn is_retryable(&self) -> bool {
        self.kind.is_transient() || matches!(self.status, Some(408 | 409))
    }

    /// Whether the provider rejected our credentials: no other call will work either.
    pub fn is_auth(&self) -> bool {
        matches!(self.kind, ErrorKind::Authentication | ErrorKind::Permission)
    }

    /// Whether the call certainly had no effect at the provider (it answered with an error).
    /// Timeouts and dropped connections are uncertain: the provider may have acted.
    pub fn had_no_effect(&self) -> bool {
        self.status.is_some()
    }

    /// The error as shown in a result line.
    pub fn to_info(&self) -> ErrorInfo {
        ErrorInfo {
            kind: self.kind,
            message: self.to_string(),
            provider_status: self.status,
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} failed", self.provider, self.operation)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("store {location}: {message}")]
    Database {
        /// The store's location (path or URL without credentials).
        location: String,
        /// What failed.
        message: String,
    },
    /// The store was written by a newer volley.
    #[error(
        "store {location} has schema version {found}, newer than this volley supports ({supported}); upgrade volley"
    )]
    NewerSchema {
        /// The store's location.
        location: String,
        /// Version found.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// A row volley expected is missing.
    #[error("{0} not found in the store")]
    NotFound(String),
    /// A row could not be decoded.
    #[error("corrupt row in the store: {0}")]
    Corrupt(String),
}
