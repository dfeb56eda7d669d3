//! Canceling a run (`volley cancel`, `--cancel-on-exit`): every open batch is stopped and
//! brought to an end, so every request ends with exactly one result line.
//!
//! - A planned batch is closed without being submitted: its requests get `canceled` lines. The
//!   cancel intent recorded first also claims the batch, so a process still driving the run
//!   cannot open a submit intent on it meanwhile.
//! - A `submitting` batch (a create that may have happened) is settled first, exactly as a
//!   resume settles it: found at the provider (then cancelled) or known never made (then closed).
//! - A submitted batch gets a cancel intent, then the provider's cancel call, then the intent is
//!   closed. An intent left open by a killed process is reconciled by polling: a batch already
//!   canceling or ended needs no second call. The batch is then polled to its end and collected:
//!   answers that came back are kept, requests that never ran get `canceled` lines, and nothing
//!   is tried again.
//!
//! Every step is idempotent, so cancelling twice, or again after a crash mid-cancel, is safe.
use jiff::Timestamp;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use volley_types::{BatchState, ErrorInfo, ErrorKind, ResultStatus, RunState};

use super::{BatchError, Collect, Engine, EngineError, RunEnd, classify, polled};
use crate::events::Event;
use crate::provider::{BatchProvider, RemoteBatch, RemotePhase};
use crate::store::{BatchItem, BatchRecord, IntentAction, IntentStart, Outcome};

impl Engine {
    /// Cancels `run_id`: no request is submitted any more, batches at the provider are
    /// cancelled there and collected once they end (their partial results are kept), and every
    /// request without a result gets a `canceled` line. Waits for the cancelled batches to end;
    /// if `stop` fires first, returns [`RunEnd::Interrupted`] and a later `cancel` (or `drive`)
    /// finishes the job. Safe to call again at any time.
    pub async fn cancel(
        &self,
        run_id: &str,
        stop: CancellationToken,
    ) -> Result<RunEnd, EngineError> {
        let store = &self.inner.store;
        let run = store
            .run(run_id)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(run_id.to_owned()))?;
        let run_id = run.id.as_str();
        // First, so a process driving this run stops submitting (it checks the run's state).
        store.set_run_state(run_id, RunState::Canceled).await?;
        if run.total == 0 {
            // Stopped while importing: nothing was ever submitted.
            let counts = store.counts(run_id).await?;
            return Ok(RunEnd::Canceled {
                counts,
                cost_usd: 0.0,
            });
        }
        self.finish_deletes(run_id).await?;
        // Requests waiting for a batch are packed like any others, then closed unsubmitted.
        self.plan_pending(run_id).await?;
        let mut tasks: JoinSet<(String, Result<(), BatchError>)> = JoinSet::new();
        for batch in store.batches(run_id).await? {
            if !batch.state.is_open() {
                continue;
            }
            let provider = self.provider(batch.group.provider)?;
            let engine = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let id = batch.id.clone();
                let outcome = engine.cancel_batch(provider.as_ref(), batch, &stop).await;
                (id, outcome)
            });
        }
        let mut left: Vec<String> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (batch, outcome) = joined.expect("cancel tasks do not panic");
            match outcome {
                Ok(()) | Err(BatchError::Wait) => {}
                Err(BatchError::Transient(message) | BatchError::Uncertain(message)) => {
                    left.push(format!("batch {batch}: {message}"));
                }
                Err(BatchError::Fatal(e)) => left.push(format!("batch {batch}: {e}")),
            }
        }
        let counts = store.counts(run_id).await?;
        let cost_usd = store.run_cost(run_id).await?;
        self.emit(Event::Progress(counts));
        if let Some(first) = left.first() {
            return Err(EngineError::CancelIncomplete {
                run: run_id.to_owned(),
                count: left.len(),
                first: first.clone(),
            });
        }
        Ok(if counts.pending > 0 {
            RunEnd::Interrupted { counts, cost_usd }
        } else {
            RunEnd::Canceled { counts, cost_usd }
        })
    }

    /// Whether another process has canceled the run this one is driving.
    pub(super) async fn canceled_elsewhere(&self, run_id: &str) -> Result<bool, EngineError> {
        let run = self.inner.store.run(run_id).await?;
        Ok(run.is_some_and(|r| r.state == RunState::Canceled))
    }

    /// Brings one open batch to its end. Its state may change under it (another process
    /// driving the run), so each step starts from the state the store reports.
    async fn cancel_batch(
        &self,
        provider: &dyn BatchProvider,
        mut batch: BatchRecord,
        stop: &CancellationToken,
    ) -> Result<(), BatchError> {
        let store = &self.inner.store;
        for _ in 0..4 {
            match batch.state {
                BatchState::Collected | BatchState::Rejected => {
                    store.finish_intent(&batch.id, IntentAction::Cancel).await?;
                    return Ok(());
                }
                // A create that may have happened: settled as a resume would, under the
                // provider's submit lock (decision 0005).
                BatchState::Submitting => {
                    let _one_at_a_time = self.inner.submitting[&batch.group.provider].lock().await;
                    let now = self.batch_record(&batch.run_id, &batch.id).await?;
                    if now.state == BatchState::Submitting {
                        let items = store.batch_items(&batch.id).await?;
                        self.reconcile(provider, &now, &items).await?;
                    }
                }
                BatchState::Planned | BatchState::Submitted => {
                    let start = store
                        .begin_intent(&batch.id, IntentAction::Cancel, Timestamp::now(), None)
                        .await?;
                    match start {
                        IntentStart::Open {
                            state: BatchState::Planned,
                            ..
                        } => return self.cancel_planned(&batch).await,
                        IntentStart::Open {
                            state: BatchState::Submitted,
                            resumed,
                        } => {
                            let batch = self.batch_record(&batch.run_id, &batch.id).await?;
                            return self.cancel_submitted(provider, &batch, resumed, stop).await;
                        }
                        IntentStart::Busy {
                            state: BatchState::Submitted,
                        } => {
                            // A delete intent: the batch has ended and is being collected.
                            let batch = self.batch_record(&batch.run_id, &batch.id).await?;
                            return self.collect_canceled(provider, &batch, None, stop).await;
                        }
                        // The state moved on meanwhile: look again.
                        IntentStart::Open { .. } | IntentStart::Busy { .. } => {}
                    }
                }
            }
            batch = self.batch_record(&batch.run_id, &batch.id).await?;
        }
        Err(BatchError::Transient(format!(
            "batch {} keeps changing state (another process is driving it)",
            batch.id
        )))
    }

    /// A batch never submitted: its requests get `canceled` lines and it is closed.
    async fn cancel_planned(&self, batch: &BatchRecord) -> Result<(), BatchError> {
        let store = &self.inner.store;
        let items = store.batch_items(&batch.id).await?;
        let outcomes: Vec<Outcome> = items
            .iter()
            .map(|item| {
                self.canceled_line(
                    batch,
                    item,
                    None,
                    "the run was canceled before it was submitted",
                )
            })
            .collect();
        store.record_outcomes(&batch.id, &outcomes).await?;
        store.close_batch(&batch.id, BatchState::Rejected).await?;
        store.finish_intent(&batch.id, IntentAction::Cancel).await?;
        self.emit(Event::BatchCanceled {
            batch_id: batch.id.clone(),
            provider_batch_id: None,
            requests: items.len() as u64,
        });
        Ok(())
    }

    /// A batch at the provider: cancel it there (unless a cancel left open by a killed
    /// process already reached it), then collect it once it ends.
    async fn cancel_submitted(
        &self,
        provider: &dyn BatchProvider,
        batch: &BatchRecord,
        resumed: bool,
        stop: &CancellationToken,
    ) -> Result<(), BatchError> {
        let id = batch.provider_batch_id.as_deref().ok_or_else(|| {
            BatchError::Fatal(EngineError::Store(crate::StoreError::Corrupt(format!(
                "batch {} has no remote id",
                batch.id
            ))))
        })?;
        // Look first: a batch that has ended needs no cancel, and a cancel left open by a
        // killed process (`resumed`) may have reached the provider already.
        let now = polled(id, provider.poll(id).await).map_err(classify)?;
        let remote = match now.phase {
            RemotePhase::Running => match provider.cancel(id).await {
                Ok(remote) => remote,
                // Usually refused because the batch has just ended: look.
                Err(e) => {
                    let now = polled(id, provider.poll(id).await).map_err(classify)?;
                    if now.phase == RemotePhase::Running {
                        return Err(classify(e));
                    }
                    now
                }
            },
            _ => {
                if resumed {
                    self.emit(Event::Warning(format!(
                        "batch {}: the cancel asked for before the interruption reached the provider ({})",
                        batch.id, now.provider_status
                    )));
                }
                now
            }
        };
        self.inner
            .store
            .finish_intent(&batch.id, IntentAction::Cancel)
            .await?;
        self.emit(Event::BatchCanceled {
            batch_id: batch.id.clone(),
            provider_batch_id: Some(remote.id.clone()),
            requests: batch.request_count,
        });
        self.collect_canceled(provider, batch, Some(remote), stop)
            .await
    }

    /// Polls a cancelled batch to its end and collects it: nothing is tried again.
    async fn collect_canceled(
        &self,
        provider: &dyn BatchProvider,
        batch: &BatchRecord,
        remote: Option<RemoteBatch>,
        stop: &CancellationToken,
    ) -> Result<(), BatchError> {
        let id = batch.provider_batch_id.as_deref().unwrap_or_default();
        let remote = match remote {
            Some(remote) => remote,
            None => polled(id, provider.poll(id).await).map_err(classify)?,
        };
        let Some(remote) = self.wait_until_ended(provider, batch, remote, stop).await? else {
            return Ok(());
        };
        let items = self.inner.store.batch_items(&batch.id).await?;
        self.finish_batch(provider, batch, &items, &remote, Collect::Cancel)
            .await
    }

    /// The `canceled` line of a request that never ran.
    pub(super) fn canceled_line(
        &self,
        batch: &BatchRecord,
        item: &BatchItem,
        remote: Option<&RemoteBatch>,
        why: &str,
    ) -> Outcome {
        let info = ErrorInfo {
            kind: ErrorKind::Canceled,
            message: why.to_owned(),
            provider_status: None,
        };
        self.final_line(batch, item, ResultStatus::Canceled, remote, Some(info))
    }
}
