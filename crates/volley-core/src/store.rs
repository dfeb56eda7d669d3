//! The store boundary: durable state of runs, requests, batches, attempts, results and costs.
//!
//! Every method is one transaction. The engine calls them in intent-first order, so a process
//! killed between any two calls leaves a state [`crate::engine`] knows how to continue from.
use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use volley_types::{BatchState, Counts, ProviderKind, Request, ResultStatus, RunState};

use crate::StoreError;

/// Options fixed when a run is created; a resume uses the same ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// Submissions per request before a transient failure is final.
    pub max_attempts: u32,
    /// Cost cap in USD.
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Created against the embedded simulator (resumes use it again).
    #[serde(default)]
    pub simulate: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            max_cost_usd: None,
            simulate: false,
        }
    }
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Run id.
    pub id: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// The input file as the user named it.
    pub input: Option<String>,
    /// Identifies the input content and options, to resume on `volley run` of the same input.
    pub fingerprint: Option<String>,
    /// The output folder.
    pub out: Option<String>,
    /// Options.
    pub options: RunOptions,
}

/// A stored run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// Lifecycle state.
    pub state: RunState,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// The input file.
    pub input: Option<String>,
    /// Input fingerprint.
    pub fingerprint: Option<String>,
    /// Output folder.
    pub out: Option<String>,
    /// Options.
    pub options: RunOptions,
    /// Requests imported.
    pub total: u64,
}

/// A request to store.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Position in the input (0-based); results come out in this order.
    pub seq: u64,
    /// The provider-side id.
    pub custom_id: String,
    /// Provider.
    pub provider: ProviderKind,
    /// The request (its `id` and `model` included).
    pub request: Request,
    /// Estimated input tokens.
    pub est_input_tokens: u64,
    /// Bytes in the provider's batch body.
    pub wire_bytes: u64,
    /// The most this request can cost at batch prices (reserved against a cost cap).
    pub worst_cost_usd: f64,
}

/// A provider and model: requests of one group may share a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    /// Provider.
    pub provider: ProviderKind,
    /// Model id.
    pub model: String,
}

/// What the planner needs of a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRequest {
    /// Position in the input.
    pub seq: u64,
    /// Bytes in the provider's batch body.
    pub wire_bytes: u64,
    /// Estimated input tokens.
    pub est_input_tokens: u64,
    /// Requested output bound.
    pub max_tokens: u64,
}

/// A batch to create: every pending request of `group` with `first_seq <= seq <= last_seq`.
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// volley's batch id.
    pub id: String,
    /// The run.
    pub run_id: String,
    /// Provider and model.
    pub group: Group,
    /// First request's seq.
    pub first_seq: u64,
    /// Last request's seq.
    pub last_seq: u64,
}

/// A stored batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// volley's batch id.
    pub id: String,
    /// The run.
    pub run_id: String,
    /// Provider and model.
    pub group: Group,
    /// volley's state.
    pub state: BatchState,
    /// Requests in it.
    pub request_count: u64,
    /// Estimated input tokens of its requests (what it holds of the enqueued-token budget).
    pub est_input_tokens: u64,
    /// The provider's id once confirmed.
    pub provider_batch_id: Option<String>,
    /// The provider's last status word.
    pub provider_status: Option<String>,
    /// When the submit intent was recorded.
    pub submit_started_at: Option<Timestamp>,
    /// Cost of its collected results.
    pub cost_usd: f64,
}

/// A request of a batch, as needed to submit it and to build its result.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// Position in the input.
    pub seq: u64,
    /// The provider-side id.
    pub custom_id: String,
    /// Submissions so far, this one included once confirmed.
    pub attempts: u32,
    /// The request.
    pub request: Request,
}

/// What collecting a request's result reads of it: its id and metadata for the result line,
/// its output bound and citations flag, and whether it asked for structured output (an empty
/// object stands in for its schema). Messages and system prompt are left out, so the requests
/// of a batch being collected take little memory.
pub fn collection_view(request: &Request) -> Request {
    Request {
        id: request.id.clone(),
        model: String::new(),
        messages: Vec::new(),
        system: None,
        max_tokens: request.max_tokens,
        temperature: None,
        schema: request
            .schema
            .as_ref()
            .map(|_| serde_json::Value::Object(serde_json::Map::new())),
        citations: request.citations,
        metadata: request.metadata.clone(),
    }
}

/// What collection decided for one request of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The request is done: store its result line.
    Final {
        /// Position in the input.
        seq: u64,
        /// The attempt that produced it.
        attempt: u32,
        /// Final status.
        status: ResultStatus,
        /// Cost of this line.
        cost_usd: f64,
        /// The result line, JSON (DESIGN.md §3.2).
        line: String,
    },
    /// The request failed transiently: back to pending for another batch.
    Retry {
        /// Position in the input.
        seq: u64,
        /// The attempt that failed.
        attempt: u32,
        /// Why, as a short JSON error object.
        error: String,
    },
}

/// Whether a batch fits under the run's cost cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// The intent is stored and the batch's worst case is reserved.
    Admitted,
    /// Not enough room: nothing was stored.
    NoRoom {
        /// Cap minus actual costs and open reservations.
        available_usd: f64,
        /// The batch's worst case.
        needed_usd: f64,
    },
}

/// A side effect at a provider, other than a create, recorded before it happens (write-ahead)
/// and closed once it is known to be done. Creates have their own intent
/// ([`Store::begin_submit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntentAction {
    /// Cancelling a batch: the provider's cancel call, or closing a planned batch as canceled.
    Cancel,
    /// Deleting the files of a collected batch ([`crate::provider::BatchProvider::release`]).
    Delete,
}

impl IntentAction {
    /// The word stored in the `intents` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Delete => "delete",
        }
    }

    /// Parses the stored word.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cancel" => Some(Self::Cancel),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// What [`Store::begin_intent`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentStart {
    /// The intent is open: recorded now, or (`resumed`) left open by an earlier process whose
    /// call may or may not have reached the provider.
    Open {
        /// The batch's state when the intent was opened.
        state: BatchState,
        /// An intent of this action was already open.
        resumed: bool,
    },
    /// Another intent of this batch is open (a create in flight, say): nothing was written.
    Busy {
        /// The batch's state.
        state: BatchState,
    },
}

/// An intent without an outcome, as found on resume or cancel.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenIntent {
    /// The batch.
    pub batch_id: String,
    /// What was about to happen.
    pub action: IntentAction,
    /// The batch's state now.
    pub batch_state: BatchState,
    /// When the intent was recorded.
    pub started_at: Timestamp,
    /// What the action needs to be carried out again (for deletes: the files, JSON).
    pub detail: Option<String>,
}

/// volley's durable state.
#[async_trait]
pub trait Store: Send + Sync {
    /// Creates a run (state `planning`).
    async fn create_run(&self, run: &NewRun) -> Result<(), StoreError>;
    /// Imports requests (call repeatedly with chunks; ends with [`Store::finish_import`]).
    async fn insert_requests(
        &self,
        run_id: &str,
        requests: &[NewRequest],
    ) -> Result<(), StoreError>;
    /// Records the request total; the run is now resumable.
    async fn finish_import(&self, run_id: &str) -> Result<(), StoreError>;
    /// A run by id or unique id prefix.
    async fn run(&self, id_or_prefix: &str) -> Result<Option<RunRecord>, StoreError>;
    /// Every run, newest first.
    async fn runs(&self) -> Result<Vec<RunRecord>, StoreError>;
    /// The newest unfinished run with this input fingerprint.
    async fn resumable_run(&self, fingerprint: &str) -> Result<Option<RunRecord>, StoreError>;
    /// Sets a run's state.
    async fn set_run_state(&self, run_id: &str, state: RunState) -> Result<(), StoreError>;
    /// Per-status request counts.
    async fn counts(&self, run_id: &str) -> Result<Counts, StoreError>;
    /// Total cost of stored results, USD.
    async fn run_cost(&self, run_id: &str) -> Result<f64, StoreError>;

    /// Groups that have pending requests.
    async fn pending_groups(&self, run_id: &str) -> Result<Vec<Group>, StoreError>;
    /// Pending requests of a group with `seq > after_seq`, in seq order.
    async fn pending_requests(
        &self,
        run_id: &str,
        group: &Group,
        after_seq: Option<u64>,
        limit: u64,
    ) -> Result<Vec<PendingRequest>, StoreError>;
    /// Creates a planned batch and assigns its requests; returns how many it took.
    async fn create_batch(&self, batch: &NewBatch) -> Result<u64, StoreError>;
    /// How many batches a run has made (to number the next).
    async fn batch_count(&self, run_id: &str) -> Result<u64, StoreError>;
    /// A run's batches, oldest first.
    async fn batches(&self, run_id: &str) -> Result<Vec<BatchRecord>, StoreError>;
    /// Every remote id volley owns at `provider`, across runs.
    async fn remote_ids(&self, provider: ProviderKind) -> Result<Vec<String>, StoreError>;
    /// The requests of a batch, in seq order.
    async fn batch_items(&self, batch_id: &str) -> Result<Vec<BatchItem>, StoreError>;
    /// [`Store::batch_items`] as collection needs them: each request is its
    /// [`collection_view`], which a store may read without parsing the stored bodies in full.
    async fn batch_items_to_collect(&self, batch_id: &str) -> Result<Vec<BatchItem>, StoreError> {
        let mut items = self.batch_items(batch_id).await?;
        for item in &mut items {
            item.request = collection_view(&item.request);
        }
        Ok(items)
    }

    /// Intent: the create call is about to be made. With a cap, the batch's worst case is
    /// reserved in the same transaction, or nothing is written and `NoRoom` says why. The cap
    /// counts the run's actual costs and every open reservation, so it holds across restarts
    /// and across processes sharing the store.
    async fn begin_submit(
        &self,
        batch_id: &str,
        at: Timestamp,
        cap_usd: Option<f64>,
    ) -> Result<Admission, StoreError>;
    /// Keeps the longest prefix (in input order) of a planned batch whose worst case fits in
    /// `budget_usd`; the rest goes back to pending. Returns how many requests it kept. If not
    /// even the first request fits, nothing changes and 0 is returned.
    async fn shrink_batch(&self, batch_id: &str, budget_usd: f64) -> Result<u64, StoreError>;
    /// Worst case reserved by batches not yet collected.
    async fn reserved_usd(&self, run_id: &str) -> Result<f64, StoreError>;
    /// The provider created it: record its id; count the attempt on every item.
    async fn confirm_submit(
        &self,
        batch_id: &str,
        provider_batch_id: &str,
        provider_status: &str,
    ) -> Result<(), StoreError>;
    /// The create call certainly did not create anything: back to planned, reservation
    /// released.
    async fn abort_submit(&self, batch_id: &str) -> Result<(), StoreError>;
    /// Records the provider's latest status word.
    async fn set_provider_status(&self, batch_id: &str, status: &str) -> Result<(), StoreError>;
    /// Applies collection outcomes; idempotent (only items still in this batch change).
    async fn record_outcomes(&self, batch_id: &str, outcomes: &[Outcome])
    -> Result<(), StoreError>;
    /// Closes a batch (`collected` or `rejected`): books its actual cost in the ledger and
    /// releases its reservation.
    async fn close_batch(&self, batch_id: &str, state: BatchState) -> Result<(), StoreError>;

    /// Intent: a cancel or delete of `batch_id` is about to happen. In one transaction with
    /// reading the batch's state, so a cancel intent on a `planned` batch also claims it: no
    /// submit intent can open while it is open. Recording it again while it is open keeps it
    /// (`resumed`) and replaces its `detail` when one is given.
    async fn begin_intent(
        &self,
        batch_id: &str,
        action: IntentAction,
        at: Timestamp,
        detail: Option<&str>,
    ) -> Result<IntentStart, StoreError>;
    /// The action is done (or known to be unnecessary): closes its open intent; a no-op when
    /// none is open.
    async fn finish_intent(&self, batch_id: &str, action: IntentAction) -> Result<(), StoreError>;
    /// A run's open cancel and delete intents, oldest first.
    async fn open_intents(&self, run_id: &str) -> Result<Vec<OpenIntent>, StoreError>;

    /// Result lines with `seq > after_seq`, in input order.
    async fn results(
        &self,
        run_id: &str,
        after_seq: Option<u64>,
        limit: u64,
    ) -> Result<Vec<(u64, String)>, StoreError>;

    /// Lets go of connections and background work once every call has returned (a file
    /// store folds its write-ahead log back into the file). Nothing may be called after it.
    async fn close(&self) {}
}
