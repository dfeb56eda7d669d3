//! Deleting a collected batch's files (OpenAI input/output/error files, Gemini uploads) under
//! a write-ahead delete intent: recorded before the batch is closed, closed once the provider
//! confirmed the delete. A process killed in between leaves the intent open, and the next
//! `drive` or `cancel` of the run deletes the files then.
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{BatchError, Engine, EngineError};
use crate::events::Event;
use crate::provider::{BatchProvider, RemoteBatch, RemotePhase};
use crate::store::{BatchRecord, IntentAction, IntentStart};

/// What a delete intent keeps of the remote batch: enough to call `release` again after a
/// restart, without asking the provider (which may have forgotten the batch by then).
#[derive(Debug, Serialize, Deserialize)]
struct Files {
    id: String,
    files: Vec<String>,
    locator: Option<String>,
}

impl Files {
    fn of(remote: &RemoteBatch) -> Self {
        Self {
            id: remote.id.clone(),
            files: remote.owned_files.clone(),
            locator: remote.results_locator.clone(),
        }
    }

    fn remote(self) -> RemoteBatch {
        RemoteBatch {
            id: self.id,
            phase: RemotePhase::Ended,
            provider_status: "ended".into(),
            request_count: None,
            results_locator: self.locator,
            owned_files: self.files,
        }
    }
}

impl Engine {
    /// Records the delete intent of an ended batch whose results are stored, before the
    /// batch is closed. `false`: another process is cancelling this very batch and will
    /// delete its files once it has collected it.
    pub(super) async fn intend_delete(
        &self,
        batch: &BatchRecord,
        remote: &RemoteBatch,
    ) -> Result<bool, BatchError> {
        let store = &self.inner.store;
        let detail = serde_json::to_string(&Files::of(remote)).expect("file lists serialize");
        let start = store
            .begin_intent(
                &batch.id,
                IntentAction::Delete,
                Timestamp::now(),
                Some(&detail),
            )
            .await?;
        Ok(matches!(start, IntentStart::Open { .. }))
    }

    /// Deletes a batch's files and closes its delete intent; a failure leaves the intent open
    /// for the next `drive` or `cancel` of the run.
    pub(super) async fn release(
        &self,
        provider: &dyn BatchProvider,
        batch_id: &str,
        remote: &RemoteBatch,
    ) {
        match provider.release(remote).await {
            Ok(()) => {
                if let Err(e) = self
                    .inner
                    .store
                    .finish_intent(batch_id, IntentAction::Delete)
                    .await
                {
                    self.emit(Event::Warning(format!(
                        "batch {batch_id}: files deleted, but the store could not record it: {e}"
                    )));
                }
            }
            Err(e) => self.emit(Event::Warning(format!(
                "could not delete the files of batch {batch_id} ({}): {e}; the next resume or cancel of the run tries again",
                remote.id
            ))),
        }
    }

    /// Carries out the delete intents a killed process left open on closed batches.
    pub(super) async fn finish_deletes(&self, run_id: &str) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let pending: Vec<_> = store
            .open_intents(run_id)
            .await?
            .into_iter()
            .filter(|i| i.action == IntentAction::Delete && !i.batch_state.is_open())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let batches = store.batches(run_id).await?;
        for intent in pending {
            let Some(batch) = batches.iter().find(|b| b.id == intent.batch_id) else {
                continue;
            };
            let Some(provider) = self.inner.providers.get(batch.group.provider) else {
                self.emit(Event::Warning(format!(
                    "batch {}: its files wait for deletion at {}, which is not configured",
                    batch.id, batch.group.provider
                )));
                continue;
            };
            let files = intent
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<Files>(d).ok());
            match files {
                Some(files) => {
                    self.release(provider.as_ref(), &batch.id, &files.remote())
                        .await;
                }
                // Nothing recorded to delete: close it.
                None => store.finish_intent(&batch.id, IntentAction::Delete).await?,
            }
        }
        Ok(())
    }
}
