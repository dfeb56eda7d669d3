//! Progress events the engine emits, for progress bars, logs, SSE and the library's users.
use volley_types::{Counts, ProviderKind};

/// Something that happened in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A batch was packed.
    BatchPlanned {
        /// volley's batch id.
        batch_id: String,
        /// Provider.
        provider: ProviderKind,
        /// Model.
        model: String,
        /// Requests in it.
        requests: u64,
    },
    /// The provider accepted a batch.
    BatchSubmitted {
        /// volley's batch id.
        batch_id: String,
        /// The provider's id.
        provider_batch_id: String,
    },
    /// A batch found again after a restart.
    BatchReattached {
        /// volley's batch id.
        batch_id: String,
        /// The provider's id.
        provider_batch_id: String,
    },
    /// The provider reported a new status for a batch.
    BatchStatus {
        /// volley's batch id.
        batch_id: String,
        /// The provider's status word.
        status: String,
    },
    /// A batch's results are stored.
    BatchCollected {
        /// volley's batch id.
        batch_id: String,
        /// Requests that ended for good.
        finished: u64,
        /// Requests sent back for another attempt.
        retried: u64,
        /// Cost of the stored results.
        cost_usd: f64,
    },
    /// A batch was canceled: at the provider (`provider_batch_id` set; its results are
    /// collected when it ends), or before it was ever submitted.
    BatchCanceled {
        /// volley's batch id.
        batch_id: String,
        /// The provider's id, when the batch had reached the provider.
        provider_batch_id: Option<String>,
        /// Requests in it.
        requests: u64,
    },
    /// Current totals of the run.
    Progress(Counts),
    /// Something the user should know that does not stop the run.
    Warning(String),
}

/// Receives events. Must not block: the engine calls it inline.
pub type EventSink = std::sync::Arc<dyn Fn(Event) + Send + Sync>;
