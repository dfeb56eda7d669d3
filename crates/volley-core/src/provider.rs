//! The provider boundary: what the engine asks of a batch API, whatever its wire.
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use jiff::Timestamp;
use serde_json::Value;
use volley_types::{ErrorInfo, ProviderKind, Request, Usage};

use crate::ProviderError;

/// Per-batch limits of a provider, used by the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most requests in one batch.
    pub max_requests: u64,
    /// Largest batch body in bytes.
    pub max_bytes: u64,
}

/// One request as sent in a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionItem {
    /// The provider-side id (see [`crate::custom_id`]).
    pub custom_id: String,
    /// The request.
    pub request: Request,
}

/// A batch to create.
///
/// It owns its requests so that a provider can drop them as soon as it has built the body,
/// before the upload and create calls: parsed requests take several times the memory of the
/// body they become, and a create may take as long as an upload of the whole batch.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// volley's batch id; providers that allow it tag the remote batch with it.
    pub batch_id: &'a str,
    /// The run it belongs to.
    pub run_id: &'a str,
    /// The model every item uses.
    pub model: &'a str,
    /// The requests.
    pub items: Vec<SubmissionItem>,
}

/// What volley knows of a batch it may have created before a crash, to find it again.
#[derive(Debug, Clone, Copy)]
pub struct SubmissionHint<'a> {
    /// volley's batch id.
    pub batch_id: &'a str,
    /// The run.
    pub run_id: &'a str,
    /// Requests in it.
    pub request_count: u64,
    /// When the create call was about to be made (the intent's time).
    pub started_at: Timestamp,
    /// Remote ids volley already owns; never attach to one of these.
    pub known_remote_ids: &'a [String],
}

/// Where a remote batch is in its life, in provider-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemotePhase {
    /// Queued, validating or running.
    Running,
    /// A cancel was asked for and is in progress.
    Canceling,
    /// Finished (all done, cancelled or expired): results can be fetched.
    Ended,
    /// The provider failed the whole batch before running it; no results exist.
    Failed(String),
}

/// A remote batch as last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteBatch {
    /// The provider's id.
    pub id: String,
    /// Neutral phase.
    pub phase: RemotePhase,
    /// The provider's own status word, for display.
    pub provider_status: String,
    /// Requests the provider counts in it.
    pub request_count: Option<u64>,
    /// Where the results are (URL, file id), once ended.
    pub results_locator: Option<String>,
    /// Files uploaded for it that volley should delete once results are stored.
    pub owned_files: Vec<String>,
}

/// How one request of a batch ended at the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemResult {
    /// Answered.
    Succeeded {
        /// The answer's text (JSON text for schema requests).
        text: String,
        /// Citations, as the provider gave them.
        citations: Vec<Value>,
        /// Billed usage.
        usage: Usage,
        /// Why generation stopped (provider's word), e.g. `end_turn`, `max_tokens`.
        stop_reason: Option<String>,
    },
    /// The provider returned an error for this request.
    Errored(ErrorInfo),
    /// Cancelled before it ran.
    Canceled,
    /// The batch window passed before it ran.
    Expired,
}

/// One line of a batch's results.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutcome {
    /// The provider-side id it was sent with.
    pub custom_id: String,
    /// How it ended.
    pub result: ItemResult,
}

/// A stream of results; a malformed line is an `Err` item, and the stream goes on.
pub type ResultStream = BoxStream<'static, Result<ItemOutcome, ProviderError>>;

/// A batch API. Implementations live in `volley-providers`; tests use them against `volley-sim`.
#[async_trait]
pub trait BatchProvider: Send + Sync {
    /// Which provider this is.
    fn kind(&self) -> ProviderKind;

    /// Bytes one request takes in the provider's batch body, for packing.
    fn wire_size(&self, item: &SubmissionItem) -> u64;

    /// Creates a remote batch. Called only after the intent is stored.
    async fn submit(&self, submission: Submission<'_>) -> Result<RemoteBatch, ProviderError>;

    /// Looks for a batch that a create call may have made before volley could record it.
    async fn find_submitted(
        &self,
        hint: SubmissionHint<'_>,
    ) -> Result<Option<RemoteBatch>, ProviderError>;

    /// Current state of a remote batch.
    async fn poll(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError>;

    /// Streams the results of an ended batch.
    async fn results(&self, remote: &RemoteBatch) -> Result<ResultStream, ProviderError>;

    /// Asks the provider to cancel a remote batch.
    async fn cancel(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError>;

    /// Deletes what volley uploaded for a batch (input files) once its results are stored.
    async fn release(&self, remote: &RemoteBatch) -> Result<(), ProviderError>;

    /// The input tokens the provider counts for `request`, through its count-tokens endpoint
    /// (`volley estimate --exact-tokens`); `None` when the provider has no such endpoint.
    /// Never used to size a cost-cap reservation (that needs a bound, docs/cost.md).
    async fn count_input_tokens(&self, request: &Request) -> Result<Option<u64>, ProviderError> {
        let _ = request;
        Ok(None)
    }
}

/// The providers a run may use.
#[derive(Clone, Default)]
pub struct Providers {
    entries: Vec<Arc<dyn BatchProvider>>,
}

impl Providers {
    /// Adds (or replaces) a provider.
    pub fn insert(&mut self, provider: Arc<dyn BatchProvider>) {
        self.entries.retain(|p| p.kind() != provider.kind());
        self.entries.push(provider);
    }

    /// The provider of `kind`, if configured.
    pub fn get(&self, kind: ProviderKind) -> Option<&Arc<dyn BatchProvider>> {
        self.entries.iter().find(|p| p.kind() == kind)
    }

    /// The configured providers.
    pub fn kinds(&self) -> impl Iterator<Item = ProviderKind> + '_ {
        self.entries.iter().map(|p| p.kind())
    }
}
