use serde::{Deserialize, Serialize};

use crate::{ProviderKind, ResultStatus};

/// Lifecycle of a run (DESIGN.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Input accepted, batches being planned.
    Planning,
    /// Batches submitted or being collected.
    Running,
    /// Every request has a result line.
    Completed,
    /// Stopped by a signal or a crash; `volley resume` continues it.
    Interrupted,
    /// Cancelled by the user.
    Canceled,
    /// Stopped by an error that needs the user (for example, a rejected key).
    Failed,
}

impl RunState {
    /// The lowercase name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planning => "planning",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
            Self::Canceled => "canceled",
            Self::Failed => "failed",
        }
    }

    /// Parses [`RunState::as_str`] back.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Planning,
            Self::Running,
            Self::Completed,
            Self::Interrupted,
            Self::Canceled,
            Self::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// Per-status request counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests in the run.
    pub total: u64,
    /// Answered.
    pub succeeded: u64,
    /// Failed for good.
    pub failed: u64,
    /// Cancelled.
    pub canceled: u64,
    /// Expired on every attempt.
    pub expired: u64,
    /// Never submitted.
    pub skipped: u64,
    /// Not finished yet.
    pub pending: u64,
}

impl Counts {
    /// Adds `n` requests with final status `status`.
    pub fn add(&mut self, status: ResultStatus, n: u64) {
        match status {
            ResultStatus::Succeeded => self.succeeded += n,
            ResultStatus::Failed => self.failed += n,
            ResultStatus::Canceled => self.canceled += n,
            ResultStatus::Expired => self.expired += n,
            ResultStatus::Skipped => self.skipped += n,
        }
    }

    /// Requests with a final status.
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed + self.canceled + self.expired + self.skipped
    }
}

/// Lifecycle of one provider batch as volley tracks it. Every transition is stored before the
/// side effect it announces (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    /// Packed; not yet sent.
    Planned,
    /// Intent recorded: the create call may or may not have reached the provider.
    Submitting,
    /// The provider confirmed it with an id.
    Submitted,
    /// Results stored for every item.
    Collected,
    /// The provider rejected it for good; its items were re-planned or failed.
    Rejected,
}

impl BatchState {
    /// The lowercase name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Submitting => "submitting",
            Self::Submitted => "submitted",
            Self::Collected => "collected",
            Self::Rejected => "rejected",
        }
    }

    /// Parses [`BatchState::as_str`] back.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Planned,
            Self::Submitting,
            Self::Submitted,
            Self::Collected,
            Self::Rejected,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    /// Whether the batch still needs work from volley.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Planned | Self::Submitting | Self::Submitted)
    }
}

/// One batch in the run status object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// volley's id for the batch.
    pub id: String,
    /// Provider.
    pub provider: ProviderKind,
    /// Model id.
    pub model: String,
    /// volley's state.
    pub state: BatchState,
    /// Requests in it.
    pub requests: u64,
    /// The provider's id, once confirmed.
    pub provider_batch_id: Option<String>,
    /// The provider's last reported status text.
    pub provider_status: Option<String>,
    /// Cost of its collected results, USD.
    pub cost_usd: f64,
}

/// The run status object (DESIGN.md §3.3): `volley status RUN --json`, `GET /v1/runs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// Run id.
    pub id: String,
    /// Lifecycle state.
    pub status: RunState,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// The input file, as given.
    pub input: Option<String>,
    /// The output folder.
    pub out: Option<String>,
    /// Request counts.
    pub counts: Counts,
    /// Cost of collected results, USD.
    pub cost_usd: f64,
    /// Worst-case cost reserved for batches still running, USD.
    pub reserved_usd: f64,
    /// The cost cap, when one was set.
    pub max_cost_usd: Option<f64>,
    /// The run's batches.
    pub batches: Vec<BatchSummary>,
}
