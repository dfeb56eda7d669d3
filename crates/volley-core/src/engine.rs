//! The run engine: plan → submit → poll → collect → re-plan, until every request has a result.
//!
//! Each open batch is driven by its own task, so provider batches run concurrently and a batch
//! that finishes frees room for the next at once (no waves). Every step is stored before its
//! side effect: `begin_submit` before the create call, `confirm_submit` after it. A process
//! killed anywhere resumes by calling [`Engine::drive`] again: planned batches are submitted,
//! `submitting` ones are first looked for at the provider, `submitted` ones are polled.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use jiff::Timestamp;
use tokio::sync::SemaphorePermit;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volley_types::{
    BatchState, Counts, ErrorInfo, ErrorKind, Mode, ProviderKind, ResultLine, ResultStatus,
    RunState,
};

use crate::catalog::Catalog;
use crate::events::{Event, EventSink};
use crate::plan::{Packed, Packer};
use crate::poll::{PollPolicy, Poller};
use crate::provider::{
    BatchLimits, BatchProvider, ItemResult, Providers, RemoteBatch, RemotePhase, Submission,
    SubmissionHint, SubmissionItem,
};
use crate::retry::RetryPolicy;
use crate::run_id::batch_id;
use crate::store::{
    Admission, BatchItem, BatchRecord, Group, NewBatch, Outcome, Store, collection_view,
};
use crate::{ProviderError, StoreError};

mod cancel;
mod release;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Poll interval bounds.
    pub poll: PollPolicy,
    /// Requests per batch, within the provider's own limit (`None`: the provider's limit;
    /// default [`crate::plan::DEFAULT_MAX_BATCH_REQUESTS`]).
    pub max_batch_requests: Option<u64>,
    /// Most batches in flight per provider.
    pub max_open_batches_per_provider: usize,
    /// Input tokens that may be enqueued at once per provider and model, overriding the
    /// catalog's per-model `enqueued_tokens` for every model (docs/scheduling.md). The planner
    /// makes no batch above it, and a planned batch is submitted only when it fits next to
    /// that model's batches already at the provider.
    pub enqueued_token_budget: Option<u64>,
    /// Back-off for a batch whose step failed transiently.
    pub retry: RetryPolicy,
    /// Outcomes per store transaction while collecting.
    pub collect_chunk: usize,
    /// How long after its intent a create that cannot be found is still taken to be on its
    /// way: a process killed while sending one leaves a request the provider may act on after
    /// the next process has looked (docs/decisions/0016). Until then the batch stays
    /// `submitting` and its provider gets no new create; after it, the batch is planned again.
    pub create_grace: std::time::Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            poll: PollPolicy::default(),
            max_batch_requests: Some(crate::plan::DEFAULT_MAX_BATCH_REQUESTS),
            max_open_batches_per_provider: 16,
            enqueued_token_budget: None,
            retry: RetryPolicy {
                max_retries: u32::MAX,
                ..RetryPolicy::default()
            },
            collect_chunk: 5_000,
            create_grace: std::time::Duration::from_secs(60),
        }
    }
}

/// How a call to [`Engine::drive`] ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunEnd {
    /// Every request has a result line.
    Completed {
        /// Final counts.
        counts: Counts,
        /// Total cost, USD.
        cost_usd: f64,
    },
    /// Shut down on request; `drive` again to continue (or, if a cancel was under way,
    /// `cancel` again to finish it).
    Interrupted {
        /// Counts so far.
        counts: Counts,
        /// Cost so far, USD.
        cost_usd: f64,
    },
    /// The run was canceled ([`Engine::cancel`]): every request has a result line, those that
    /// never ran a `canceled` one.
    Canceled {
        /// Final counts.
        counts: Counts,
        /// Total cost, USD (what ran before the cancel).
        cost_usd: f64,
    },
}

/// Why a run stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A provider refused in a way no retry fixes (a rejected key, say).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Requests need a provider that is not configured.
    #[error("requests need {0}, which is not configured (set its API key, or use --simulate)")]
    MissingProvider(ProviderKind),
    /// No such run.
    #[error("no run `{0}` in the store")]
    UnknownRun(String),
    /// A cancel could not reach every batch's provider; running it again finishes it.
    #[error(
        "run `{run}` is canceled, but {count} batch(es) could not be canceled or collected yet ({first}); run `volley cancel {run}` again"
    )]
    CancelIncomplete {
        /// The run.
        run: String,
        /// Batches left open.
        count: usize,
        /// The first problem.
        first: String,
    },
    /// The process stopped while importing the input; the run holds only part of it.
    #[error(
        "run `{0}` was interrupted while importing its input and holds only part of it; nothing was submitted — start again with `volley run INPUT`"
    )]
    IncompleteImport(String),
}

/// The outcome of one batch task, when it did not finish its job.
#[derive(Debug)]
enum BatchError {
    /// Try this batch again after a pause.
    Transient(String),
    /// The create call got no answer: the provider may have made the batch.
    Uncertain(String),
    /// Not an error: the batch waits for room under the cost cap.
    Wait,
    /// Stop the run.
    Fatal(EngineError),
}

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        Self::Fatal(e.into())
    }
}

/// How an ended batch's results are decided.
#[derive(Debug, Clone, Copy)]
enum Collect {
    /// Driving the run: transient failures go back to pending while attempts remain.
    Drive {
        /// Submissions per request.
        max_attempts: u32,
    },
    /// Canceling the run: nothing is tried again; what never ran is canceled.
    Cancel,
}

/// Batches that must not start now.
#[derive(Clone, Copy)]
struct Held<'a> {
    /// Batches backing off after a transient failure, until the given instant.
    not_before: &'a HashMap<String, (Instant, u32)>,
    /// Providers with an unsettled create: no new create goes to them.
    unsettled: &'a HashSet<ProviderKind>,
}

/// The per-run limits a batch task needs.
#[derive(Debug, Clone, Copy)]
struct RunLimits {
    max_attempts: u32,
    max_cost_usd: Option<f64>,
}

struct Inner {
    store: Arc<dyn Store>,
    providers: Providers,
    catalog: Arc<Catalog>,
    config: EngineConfig,
    events: Option<EventSink>,
    /// One create (or reconciliation) at a time per provider. A crash then leaves at most one
    /// unconfirmed create per provider, so finding it again is never ambiguous — Anthropic
    /// batches carry no tag of ours and are recognised by time and size
    /// (docs/decisions/0005-anthropic-reconciliation.md).
    submitting: HashMap<ProviderKind, tokio::sync::Mutex<()>>,
    /// Collections at once, across providers. Each holds its batch's requests and a chunk of
    /// results; the store takes one writer anyway, so more would add memory, not speed.
    collecting: tokio::sync::Semaphore,
    /// One create at a time across providers, taken after the provider's own lock. A batch's
    /// parsed requests take several times the memory of its body, so two creates at once
    /// would double the peak of a large run; a create is minutes at most, a batch hours.
    creating: tokio::sync::Semaphore,
}

/// A permit of one of the engine's semaphores; they close only when the engine goes away.
async fn permit(semaphore: &tokio::sync::Semaphore) -> Result<SemaphorePermit<'_>, BatchError> {
    semaphore
        .acquire()
        .await
        .map_err(|_| BatchError::Transient("the engine is shutting down".into()))
}

/// Batches collected at once (see `Inner::collecting`).
const COLLECTIONS_AT_ONCE: usize = 2;

/// Drives runs to completion.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// An engine over a store and providers.
    pub fn new(
        store: Arc<dyn Store>,
        providers: Providers,
        catalog: Arc<Catalog>,
        config: EngineConfig,
        events: Option<EventSink>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                providers,
                catalog,
                config,
                events,
                submitting: ProviderKind::ALL
                    .into_iter()
                    .map(|kind| (kind, tokio::sync::Mutex::new(())))
                    .collect(),
                collecting: tokio::sync::Semaphore::new(COLLECTIONS_AT_ONCE),
                creating: tokio::sync::Semaphore::new(1),
            }),
        }
    }

    /// Runs `run_id` until every request has a result, or until `shutdown` fires (then the
    /// remote batches keep running and a later `drive` picks them up).
    pub async fn drive(
        &self,
        run_id: &str,
        shutdown: CancellationToken,
    ) -> Result<RunEnd, EngineError> {
        let inner = &self.inner;
        let store = &inner.store;
        let run = store
            .run(run_id)
            .await?
            .ok_or_else(|| EngineError::UnknownRun(run_id.to_owned()))?;
        let run_id = run.id.as_str();
        // A finished import always holds at least one request (empty inputs are refused).
        if run.total == 0 {
            return Err(EngineError::IncompleteImport(run.id.clone()));
        }
        // A canceled run is never driven again: resuming it finishes the cancel.
        if run.state == RunState::Canceled {
            return self.cancel(run_id, shutdown).await;
        }
        store.set_run_state(run_id, RunState::Running).await?;
        self.finish_deletes(run_id).await?;
        // Stops this drive: on `shutdown`, or when another process cancels the run.
        let stop = shutdown.child_token();

        let mut tasks: JoinSet<(String, Result<(), BatchError>)> = JoinSet::new();
        let mut active: HashMap<String, ProviderKind> = HashMap::new();
        let mut not_before: HashMap<String, (Instant, u32)> = HashMap::new();
        let mut next_batch = store.batch_count(run_id).await? + 1;
        // Batches planned ahead per model: one at first, so the first create starts after
        // one batch's planning rather than all of them (a million requests: ~3 s), then
        // doubling without waiting until the provider's cap on open batches.
        let most_ahead = inner.config.max_open_batches_per_provider.max(1);
        let mut ahead = 1;

        let result = loop {
            if !stop.is_cancelled() && self.canceled_elsewhere(run_id).await? {
                self.emit(Event::Warning(
                    "the run was canceled (volley cancel): stopping, then canceling its batches"
                        .into(),
                ));
                stop.cancel();
            }
            let mut plan_more = false;
            if !stop.is_cancelled() {
                next_batch = self.plan(run_id, next_batch, Some(ahead)).await?;
                plan_more = ahead < most_ahead;
                ahead = (ahead * 2).min(most_ahead);
                let limits = RunLimits {
                    max_attempts: run.options.max_attempts.max(1),
                    max_cost_usd: run.options.max_cost_usd,
                };
                let unsettled = self.settle(run_id, &active).await?;
                self.spawn_ready(
                    run_id,
                    &mut tasks,
                    &mut active,
                    Held {
                        not_before: &not_before,
                        unsettled: &unsettled,
                    },
                    limits,
                    &stop,
                )
                .await?;
            }
            if tasks.is_empty() {
                if stop.is_cancelled() {
                    break if shutdown.is_cancelled() {
                        RunState::Interrupted
                    } else {
                        RunState::Canceled
                    };
                }
                if store.counts(run_id).await?.pending == 0 {
                    break RunState::Completed;
                }
            }
            let wake = not_before
                .values()
                .map(|(at, _)| *at)
                .min()
                .unwrap_or_else(|| Instant::now() + inner.config.poll.max);
            tokio::select! {
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    let (batch, outcome) = joined.expect("batch tasks do not panic");
                    active.remove(&batch);
                    match outcome {
                        Ok(()) => { not_before.remove(&batch); }
                        Err(BatchError::Wait) => {
                            let at = Instant::now() + inner.config.poll.initial;
                            not_before.insert(batch, (at, 0));
                        }
                        Err(BatchError::Transient(message) | BatchError::Uncertain(message)) => {
                            let tries = not_before.get(&batch).map_or(0, |(_, n)| *n);
                            let delay = inner.config.retry.delay(tries, None)
                                .max(inner.config.poll.initial);
                            self.emit(Event::Warning(format!(
                                "batch {batch}: {message}; trying again in {:.1}s",
                                delay.as_secs_f64()
                            )));
                            not_before.insert(batch, (Instant::now() + delay, tries + 1));
                        }
                        Err(BatchError::Fatal(e)) => {
                            tasks.shutdown().await;
                            // The first error is the one to report: marking the run failed
                            // fails too when the store is the problem (a full disk).
                            let _ = store.set_run_state(run_id, RunState::Failed).await;
                            return Err(e);
                        }
                    }
                }
                () = stop.cancelled(), if !stop.is_cancelled() => {}
                () = std::future::ready(()), if plan_more => {}
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    not_before.retain(|_, (at, _)| *at > now);
                }
            }
        };

        if result == RunState::Canceled {
            return self.cancel(run_id, shutdown).await;
        }
        store.set_run_state(run_id, result).await?;
        let counts = store.counts(run_id).await?;
        let cost_usd = store.run_cost(run_id).await?;
        self.emit(Event::Progress(counts));
        Ok(match result {
            RunState::Completed => RunEnd::Completed { counts, cost_usd },
            _ => RunEnd::Interrupted { counts, cost_usd },
        })
    }

    /// The configured provider of `kind`.
    fn provider(&self, kind: ProviderKind) -> Result<Arc<dyn BatchProvider>, EngineError> {
        self.inner
            .providers
            .get(kind)
            .cloned()
            .ok_or(EngineError::MissingProvider(kind))
    }

    /// A batch as stored now.
    async fn batch_record(&self, run_id: &str, batch_id: &str) -> Result<BatchRecord, StoreError> {
        self.inner
            .store
            .batches(run_id)
            .await?
            .into_iter()
            .find(|b| b.id == batch_id)
            .ok_or_else(|| StoreError::NotFound(format!("batch `{batch_id}`")))
    }

    fn emit(&self, event: Event) {
        if let Some(sink) = &self.inner.events {
            sink(event);
        }
    }

    /// Packs every pending request of `run_id` into planned batches and submits nothing
    /// ([`Engine::drive`] plans as it goes); returns how many batches the run has now.
    pub async fn plan_pending(&self, run_id: &str) -> Result<u64, EngineError> {
        let next = self.inner.store.batch_count(run_id).await? + 1;
        Ok(self.plan(run_id, next, None).await? - 1)
    }

    /// Packs pending requests into planned batches; returns the next batch number. With
    /// `ahead`, a group stops once it has that many batches planned and not yet submitted:
    /// the drive calls this again whenever a batch ends, and a large run's first create need
    /// not wait for all of its planning (a million requests: ~6 s).
    async fn plan(
        &self,
        run_id: &str,
        mut next_batch: u64,
        ahead: Option<usize>,
    ) -> Result<u64, EngineError> {
        const PAGE: u64 = 10_000;
        let store = &self.inner.store;
        let mut planned: HashMap<Group, usize> = HashMap::new();
        if ahead.is_some() {
            for batch in store.batches(run_id).await? {
                if batch.state == BatchState::Planned {
                    *planned.entry(batch.group).or_default() += 1;
                }
            }
        }
        let room = |planned: &HashMap<Group, usize>, group: &Group| {
            ahead.is_none_or(|ahead| planned.get(group).copied().unwrap_or(0) < ahead)
        };
        'groups: for group in store.pending_groups(run_id).await? {
            if self.inner.providers.get(group.provider).is_none() {
                return Err(EngineError::MissingProvider(group.provider));
            }
            let settings = self.inner.catalog.provider(group.provider);
            let limits = BatchLimits {
                max_requests: settings.max_requests_per_batch,
                max_bytes: settings.max_bytes_per_batch,
            };
            let mut packer = Packer::new(limits, self.inner.config.max_batch_requests)
                .with_token_budget(self.token_budget(&group));
            let mut closed: Vec<Packed> = Vec::new();
            let mut after = None;
            loop {
                if !room(&planned, &group) {
                    // What the packer holds stays pending, for a later call.
                    continue 'groups;
                }
                let page = store.pending_requests(run_id, &group, after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.seq);
                closed.extend(page.into_iter().filter_map(|p| packer.push(p)));
                for packed in closed.drain(..) {
                    if !room(&planned, &group) {
                        continue 'groups;
                    }
                    next_batch = self
                        .create_batch(run_id, &group, packed, next_batch)
                        .await?;
                    *planned.entry(group.clone()).or_default() += 1;
                }
            }
            if let Some(packed) = packer.finish() {
                next_batch = self
                    .create_batch(run_id, &group, packed, next_batch)
                    .await?;
            }
        }
        Ok(next_batch)
    }

    async fn create_batch(
        &self,
        run_id: &str,
        group: &Group,
        packed: Packed,
        n: u64,
    ) -> Result<u64, EngineError> {
        let id = batch_id(run_id, n);
        let requests = self
            .inner
            .store
            .create_batch(&NewBatch {
                id: id.clone(),
                run_id: run_id.to_owned(),
                group: group.clone(),
                first_seq: packed.first_seq,
                last_seq: packed.last_seq,
            })
            .await?;
        self.emit(Event::BatchPlanned {
            batch_id: id,
            provider: group.provider,
            model: group.model.clone(),
            requests,
        });
        Ok(n + 1)
    }

    /// The enqueued-token budget of a provider and model: the user's, else the catalog's.
    fn token_budget(&self, group: &Group) -> Option<u64> {
        self.inner.catalog.enqueued_token_budget(
            group.provider,
            &group.model,
            self.inner.config.enqueued_token_budget,
        )
    }

    /// Starts a task for every open batch that has none. A planned batch is admitted only
    /// within its provider's cap on concurrent batches and its model's enqueued-token budget.
    /// What is in flight comes from the store (batches `submitting` or `submitted`) plus the
    /// planned batches this process has already admitted (their tasks may not have recorded
    /// the intent yet). Per model, planned batches are admitted in order: one that does not
    /// fit holds back the ones after it, so a large batch is never starved by smaller ones. A
    /// batch above the budget on its own (one huge request) goes when nothing else of its
    /// model is in flight. Called again whenever a batch task ends, so tokens freed by a
    /// collected batch are used at once.
    async fn spawn_ready(
        &self,
        run_id: &str,
        tasks: &mut JoinSet<(String, Result<(), BatchError>)>,
        active: &mut HashMap<String, ProviderKind>,
        held: Held<'_>,
        limits: RunLimits,
        shutdown: &CancellationToken,
    ) -> Result<(), EngineError> {
        let Held {
            not_before,
            unsettled,
        } = held;
        let now = Instant::now();
        let batches = self.inner.store.batches(run_id).await?;
        // Batches already at the provider count first, so a restart never goes over the cap or
        // the budget while older batches are still running.
        let mut in_flight: HashMap<ProviderKind, usize> = HashMap::new();
        let mut enqueued: HashMap<&Group, u64> = HashMap::new();
        for b in &batches {
            let admitted = matches!(b.state, BatchState::Submitting | BatchState::Submitted)
                || (b.state == BatchState::Planned && active.contains_key(&b.id));
            if admitted {
                *in_flight.entry(b.group.provider).or_default() += 1;
                *enqueued.entry(&b.group).or_default() += b.est_input_tokens;
            }
        }
        let mut held: HashSet<&Group> = HashSet::new();
        let mut admit: Vec<&BatchRecord> = Vec::new();
        for batch in &batches {
            // `submitting` batches are settled by `Engine::settle`, and no provider gets a new
            // create while one of its earlier creates is still unsettled.
            if !batch.state.is_open()
                || batch.state == BatchState::Submitting
                || (batch.state == BatchState::Planned && unsettled.contains(&batch.group.provider))
                || active.contains_key(&batch.id)
                || not_before.get(&batch.id).is_some_and(|(at, _)| *at > now)
            {
                continue;
            }
            if batch.state == BatchState::Planned {
                let count = in_flight.entry(batch.group.provider).or_default();
                if *count >= self.inner.config.max_open_batches_per_provider
                    || held.contains(&batch.group)
                {
                    continue;
                }
                let used = enqueued.entry(&batch.group).or_default();
                if let Some(budget) = self.token_budget(&batch.group)
                    && *used > 0
                    && used.saturating_add(batch.est_input_tokens) > budget
                {
                    held.insert(&batch.group);
                    continue;
                }
                *used += batch.est_input_tokens;
                *count += 1;
            }
            admit.push(batch);
        }
        for batch in admit {
            let batch = batch.clone();
            let provider = self.provider(batch.group.provider)?;
            active.insert(batch.id.clone(), batch.group.provider);
            let engine = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let id = batch.id.clone();
                let outcome = engine.drive_batch(provider, batch, limits, shutdown).await;
                (id, outcome)
            });
        }
        Ok(())
    }

    /// Takes one batch as far as it can go: submit (or find again), poll, collect.
    async fn drive_batch(
        &self,
        provider: Arc<dyn BatchProvider>,
        batch: BatchRecord,
        limits: RunLimits,
        shutdown: CancellationToken,
    ) -> Result<(), BatchError> {
        let max_attempts = limits.max_attempts;
        let store = &self.inner.store;
        let remote = match batch.state {
            BatchState::Planned => {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                let _one_at_a_time = self.inner.submitting[&batch.group.provider].lock().await;
                let _one_create = permit(&self.inner.creating).await?;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                // Read under the lock: only the batch being created holds its requests, not
                // every admitted batch waiting for its turn.
                let started = std::time::Instant::now();
                let mut items = store.batch_items(&batch.id).await?;
                tracing::debug!(batch = %batch.id, requests = items.len(), ms = started.elapsed().as_millis(), "read to submit");
                match self
                    .submit(provider.as_ref(), &batch, &mut items, limits)
                    .await
                {
                    Ok(Some(remote)) => remote,
                    Ok(None) => return Ok(()),
                    // No answer: settle it now, before the lock lets another create through,
                    // so at most one create per provider is ever unconfirmed.
                    Err(BatchError::Uncertain(message)) => {
                        match self
                            .settle_now(provider.as_ref(), &batch, &mut items, &shutdown)
                            .await?
                        {
                            Some(remote) => remote,
                            None => return Err(BatchError::Transient(message)),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            // Settled by `Engine::settle` before any new create of its provider.
            BatchState::Submitting => return Ok(()),
            BatchState::Submitted => {
                let id = batch.provider_batch_id.as_deref().ok_or_else(|| {
                    StoreError::Corrupt(format!("batch {} has no remote id", batch.id))
                })?;
                polled(id, provider.poll(id).await).map_err(classify)?
            }
            BatchState::Collected | BatchState::Rejected => return Ok(()),
        };
        let Some(remote) = self
            .wait_until_ended(provider.as_ref(), &batch, remote, &shutdown)
            .await?
        else {
            return Ok(());
        };
        // Read again to collect: a batch holds none of its requests while it waits, which
        // may take hours, so memory does not grow with the batches in flight.
        let _slot = permit(&self.inner.collecting).await?;
        let started = std::time::Instant::now();
        let items = store.batch_items_to_collect(&batch.id).await?;
        tracing::debug!(batch = %batch.id, ms = started.elapsed().as_millis(), "read to collect");
        self.finish_batch(
            provider.as_ref(),
            &batch,
            &items,
            &remote,
            Collect::Drive { max_attempts },
        )
        .await
    }

    /// An ended batch: its results stored (or, if the provider failed it, its items decided),
    /// the batch closed, its files deleted under a write-ahead delete intent.
    async fn finish_batch(
        &self,
        provider: &dyn BatchProvider,
        batch: &BatchRecord,
        items: &[BatchItem],
        remote: &RemoteBatch,
        mode: Collect,
    ) -> Result<(), BatchError> {
        let store = &self.inner.store;
        if let RemotePhase::Failed(message) = &remote.phase {
            let message = format!("the provider failed batch {}: {message}", remote.id);
            let outcomes: Vec<Outcome> = items
                .iter()
                .map(|item| match mode {
                    Collect::Drive { max_attempts } => {
                        let error = ErrorInfo {
                            kind: ErrorKind::Server,
                            message: message.clone(),
                            provider_status: None,
                        };
                        let result = ItemResult::Errored(error);
                        self.decide(batch, item, result, remote, max_attempts)
                    }
                    Collect::Cancel => self.canceled_line(batch, item, Some(remote), &message),
                })
                .collect();
            store.record_outcomes(&batch.id, &outcomes).await?;
            let delete = self.intend_delete(batch, remote).await?;
            store.close_batch(&batch.id, BatchState::Rejected).await?;
            if delete {
                self.release(provider, &batch.id, remote).await;
            }
            return Ok(());
        }
        let delete = self.collect(provider, batch, items, remote, mode).await?;
        if delete {
            self.release(provider, &batch.id, remote).await;
        }
        Ok(())
    }

    /// Records the intent, creates the batch, records the id. `None`: the provider rejected
    /// the batch for good and its items now have result lines.
    async fn submit(
        &self,
        provider: &dyn BatchProvider,
        batch: &BatchRecord,
        items: &mut [BatchItem],
        limits: RunLimits,
    ) -> Result<Option<RemoteBatch>, BatchError> {
        let store = &self.inner.store;
        if let Admission::NoRoom {
            available_usd,
            needed_usd,
        } = store
            .begin_submit(&batch.id, Timestamp::now(), limits.max_cost_usd)
            .await?
        {
            return self
                .no_room(batch, items, limits, available_usd, needed_usd)
                .await;
        }
        // The requests move into the submission and the items keep what collection reads, so
        // a batch is never held twice and holds little while it is polled.
        let submission_items: Vec<SubmissionItem> = items
            .iter_mut()
            .map(|i| {
                let kept = collection_view(&i.request);
                SubmissionItem {
                    custom_id: i.custom_id.clone(),
                    request: std::mem::replace(&mut i.request, kept),
                }
            })
            .collect();
        let started = std::time::Instant::now();
        let created = provider
            .submit(Submission {
                batch_id: &batch.id,
                run_id: &batch.run_id,
                model: &batch.group.model,
                items: submission_items,
            })
            .await;
        tracing::debug!(batch = %batch.id, ms = started.elapsed().as_millis(), "create call");
        match created {
            Ok(remote) => {
                store
                    .confirm_submit(&batch.id, &remote.id, &remote.provider_status)
                    .await?;
                for item in items.iter_mut() {
                    item.attempts += 1;
                }
                self.emit(Event::BatchSubmitted {
                    batch_id: batch.id.clone(),
                    provider_batch_id: remote.id.clone(),
                });
                Ok(Some(remote))
            }
            Err(e) if e.is_auth() => {
                store.abort_submit(&batch.id).await?;
                Err(BatchError::Fatal(e.into()))
            }
            Err(e) if e.had_no_effect() && e.is_retryable() => {
                store.abort_submit(&batch.id).await?;
                Err(BatchError::Transient(e.to_string()))
            }
            Err(e) if e.had_no_effect() => {
                // The provider refused the batch itself (too large, malformed): no retry can
                // help, so every item gets a failed line naming the provider's reason.
                let info = e.to_info();
                let outcomes: Vec<Outcome> = items
                    .iter()
                    .map(|item| {
                        let mut item = item.clone();
                        item.attempts += 1;
                        self.final_line(
                            batch,
                            &item,
                            ResultStatus::Failed,
                            None,
                            Some(info.clone()),
                        )
                    })
                    .collect();
                store.record_outcomes(&batch.id, &outcomes).await?;
                store.close_batch(&batch.id, BatchState::Rejected).await?;
                self.emit(Event::Warning(format!("batch {} rejected: {e}", batch.id)));
                Ok(None)
            }
            // No answer: the provider may have created it. The intent stays until the batch is
            // found or known never to have been made.
            Err(e) => Err(BatchError::Uncertain(e.to_string())),
        }
    }

    /// A batch that does not fit under the cost cap. While other batches are at the provider
    /// it waits: their collection replaces worst-case reservations with (smaller) actual costs.
    /// With nothing in flight, room will not grow: the batch shrinks to what fits, in input
    /// order, and if not even its first request fits, its requests are skipped.
    async fn no_room(
        &self,
        batch: &BatchRecord,
        items: &[BatchItem],
        limits: RunLimits,
        available_usd: f64,
        needed_usd: f64,
    ) -> Result<Option<RemoteBatch>, BatchError> {
        let store = &self.inner.store;
        let in_flight = store.batches(&batch.run_id).await?.iter().any(|b| {
            b.id != batch.id && matches!(b.state, BatchState::Submitting | BatchState::Submitted)
        });
        if in_flight {
            return Err(BatchError::Wait);
        }
        let kept = store.shrink_batch(&batch.id, available_usd).await?;
        if kept > 0 {
            self.emit(Event::Warning(format!(
                "cost cap: batch {} shrunk to {kept} of {} requests (worst case ${needed_usd:.4}, ${available_usd:.4} left)",
                batch.id,
                items.len()
            )));
            return Err(BatchError::Wait);
        }
        let cap = limits.max_cost_usd.unwrap_or_default();
        let info = ErrorInfo {
            kind: ErrorKind::CostCap,
            message: format!(
                "not submitted: the cost cap of ${cap:.4} leaves ${available_usd:.4}, less than this request's worst case"
            ),
            provider_status: None,
        };
        let outcomes: Vec<Outcome> = items
            .iter()
            .map(|item| {
                self.final_line(batch, item, ResultStatus::Skipped, None, Some(info.clone()))
            })
            .collect();
        store.record_outcomes(&batch.id, &outcomes).await?;
        store.close_batch(&batch.id, BatchState::Rejected).await?;
        self.emit(Event::Warning(format!(
            "cost cap reached: {} request(s) skipped (batch {})",
            items.len(),
            batch.id
        )));
        Ok(None)
    }

    /// Settles every `submitting` batch without a task (left by a crash or a lost answer),
    /// oldest intent first, each under its provider's submit lock: found at the provider and
    /// confirmed, or known never made and planned again. Returns the providers that could not
    /// be settled now (the provider did not answer); they get no new create until they are,
    /// so a provider never has two unconfirmed creates — which keeps finding them unambiguous.
    async fn settle(
        &self,
        run_id: &str,
        active: &HashMap<String, ProviderKind>,
    ) -> Result<HashSet<ProviderKind>, EngineError> {
        let store = &self.inner.store;
        let mut open: Vec<BatchRecord> = store
            .batches(run_id)
            .await?
            .into_iter()
            .filter(|b| b.state == BatchState::Submitting && !active.contains_key(&b.id))
            .collect();
        open.sort_by_key(|b| b.submit_started_at);
        let mut unsettled = HashSet::new();
        for batch in open {
            let kind = batch.group.provider;
            if unsettled.contains(&kind) {
                continue;
            }
            let provider = self.provider(kind)?;
            let _one_at_a_time = self.inner.submitting[&kind].lock().await;
            let items = store.batch_items(&batch.id).await?;
            match self.reconcile(provider.as_ref(), &batch, &items).await {
                Ok(_) => {}
                Err(BatchError::Fatal(e)) => return Err(e),
                Err(e) => {
                    self.emit(Event::Warning(format!(
                        "cannot check yet whether batch {} reached {kind}: {e:?}; no new batch goes to {kind} until it is known",
                        batch.id
                    )));
                    unsettled.insert(kind);
                }
            }
        }
        Ok(unsettled)
    }

    /// After a create got no answer, while still holding the provider's submit lock: looks for
    /// the batch a few times. `Some`: it exists and is confirmed. `None`: it was never made (the
    /// batch is planned again) or the provider cannot tell yet (the intent stays for `settle`).
    async fn settle_now(
        &self,
        provider: &dyn BatchProvider,
        batch: &BatchRecord,
        items: &mut [BatchItem],
        shutdown: &CancellationToken,
    ) -> Result<Option<RemoteBatch>, BatchError> {
        let mut batch = batch.clone();
        batch.state = BatchState::Submitting;
        batch.submit_started_at = self
            .batch_record(&batch.run_id, &batch.id)
            .await?
            .submit_started_at;
        for attempt in 0..5 {
            match self.reconcile(provider, &batch, items).await {
                Ok(Some(remote)) => {
                    for item in items.iter_mut() {
                        item.attempts += 1;
                    }
                    return Ok(Some(remote));
                }
                Ok(None) => return Ok(None),
                Err(BatchError::Fatal(e)) => return Err(BatchError::Fatal(e)),
                Err(_) if shutdown.is_cancelled() => return Ok(None),
                Err(_) => {
                    tokio::time::sleep(self.inner.config.retry.delay(attempt, None)).await;
                }
            }
        }
        Ok(None)
    }

    /// A `submitting` batch after a crash or a lost answer: find it at the provider, or
    /// conclude it was never created (then the intent is dropped and it is planned again).
    async fn reconcile(
        &self,
        provider: &dyn BatchProvider,
        batch: &BatchRecord,
        items: &[BatchItem],
    ) -> Result<Option<RemoteBatch>, BatchError> {
        let store = &self.inner.store;
        let known = store.remote_ids(batch.group.provider).await?;
        let started_at = batch.submit_started_at.unwrap_or_else(Timestamp::now);
        let found = provider
            .find_submitted(SubmissionHint {
                batch_id: &batch.id,
                run_id: &batch.run_id,
                request_count: items.len() as u64,
                started_at,
                known_remote_ids: &known,
            })
            .await
            .map_err(classify)?;
        match found {
            Some(remote) => {
                store
                    .confirm_submit(&batch.id, &remote.id, &remote.provider_status)
                    .await?;
                self.emit(Event::BatchReattached {
                    batch_id: batch.id.clone(),
                    provider_batch_id: remote.id.clone(),
                });
                Ok(Some(remote))
            }
            None => {
                let since = Timestamp::now().duration_since(started_at);
                let grace = jiff::SignedDuration::try_from(self.inner.config.create_grace)
                    .unwrap_or(jiff::SignedDuration::MAX);
                if since < grace {
                    return Err(BatchError::Transient(format!(
                        "batch {} is not at the provider {:.1}s after its create began; a create sent just before a crash may still land, so it is not sent again for {:.0}s",
                        batch.id,
                        since.as_secs_f64(),
                        grace.as_secs_f64()
                    )));
                }
                store.abort_submit(&batch.id).await?;
                Ok(None)
            }
        }
    }

    /// Polls until the batch ends; `None` if shut down first.
    async fn wait_until_ended(
        &self,
        provider: &dyn BatchProvider,
        batch: &BatchRecord,
        mut remote: RemoteBatch,
        shutdown: &CancellationToken,
    ) -> Result<Option<RemoteBatch>, BatchError> {
        let mut poller = Poller::new(self.inner.config.poll);
        let mut last_status = batch.provider_status.clone();
        let mut failures = 0;
        loop {
            if last_status.as_deref() != Some(remote.provider_status.as_str()) {
                self.inner
                    .store
                    .set_provider_status(&batch.id, &remote.provider_status)
                    .await?;
                self.emit(Event::BatchStatus {
                    batch_id: batch.id.clone(),
                    status: remote.provider_status.clone(),
                });
                last_status = Some(remote.provider_status.clone());
            }
            if matches!(remote.phase, RemotePhase::Ended | RemotePhase::Failed(_)) {
                return Ok(Some(remote));
            }
            let wait = poller.next_interval(&remote.provider_status);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return Ok(None),
            }
            match polled(&remote.id, provider.poll(&remote.id).await) {
                Ok(next) => {
                    remote = next;
                    failures = 0;
                }
                Err(e) if e.is_retryable() && failures < 20 => {
                    failures += 1;
                    self.emit(Event::Warning(format!("polling batch {}: {e}", batch.id)));
                }
                Err(e) => return Err(classify(e)),
            }
        }
    }

    /// Streams the results into the store; items missing from them are retried (while
    /// canceling: they never ran, so they are canceled). Records the delete intent before the
    /// batch is closed; returns whether the batch's files are to be deleted now.
    async fn collect(
        &self,
        provider: &dyn BatchProvider,
        batch: &BatchRecord,
        items: &[BatchItem],
        remote: &RemoteBatch,
        mode: Collect,
    ) -> Result<bool, BatchError> {
        let store = &self.inner.store;
        // While canceling nothing is tried again.
        let max_attempts = match mode {
            Collect::Drive { max_attempts } => max_attempts,
            Collect::Cancel => 0,
        };
        let by_custom_id: HashMap<&str, &BatchItem> =
            items.iter().map(|i| (i.custom_id.as_str(), i)).collect();
        let mut seen: HashSet<&str> = HashSet::with_capacity(items.len());
        let started = std::time::Instant::now();
        let mut stored = std::time::Duration::ZERO;
        let mut stream = provider.results(remote).await.map_err(classify)?;
        let mut chunk = Vec::with_capacity(self.inner.config.collect_chunk);
        let (mut finished, mut retried) = (0u64, 0u64);
        let mut tally = |outcome: &Outcome| match outcome {
            Outcome::Final { .. } => finished += 1,
            Outcome::Retry { .. } => retried += 1,
        };
        while let Some(line) = stream.next().await {
            let outcome = match line {
                Ok(outcome) => outcome,
                Err(e) if e.is_retryable() => return Err(BatchError::Transient(e.to_string())),
                Err(e) => {
                    self.emit(Event::Warning(format!(
                        "batch {}: skipped a result line: {e}",
                        batch.id
                    )));
                    continue;
                }
            };
            let Some((&custom_id, item)) = by_custom_id.get_key_value(outcome.custom_id.as_str())
            else {
                self.emit(Event::Warning(format!(
                    "batch {}: result for unknown id `{}` ignored",
                    batch.id, outcome.custom_id
                )));
                continue;
            };
            if !seen.insert(custom_id) {
                continue;
            }
            let decided = self.decide(batch, item, outcome.result, remote, max_attempts);
            tally(&decided);
            chunk.push(decided);
            if chunk.len() >= self.inner.config.collect_chunk {
                let t = std::time::Instant::now();
                store.record_outcomes(&batch.id, &chunk).await?;
                stored += t.elapsed();
                chunk.clear();
            }
        }
        for item in items
            .iter()
            .filter(|i| !seen.contains(i.custom_id.as_str()))
        {
            let decided = match mode {
                Collect::Drive { .. } => {
                    let missing = ItemResult::Errored(ErrorInfo {
                        kind: ErrorKind::Protocol,
                        message: format!("missing from the results of batch {}", remote.id),
                        provider_status: None,
                    });
                    self.decide_missing(batch, item, missing, remote, max_attempts)
                }
                Collect::Cancel => self.decide(batch, item, ItemResult::Canceled, remote, 0),
            };
            tally(&decided);
            chunk.push(decided);
        }
        let t = std::time::Instant::now();
        store.record_outcomes(&batch.id, &chunk).await?;
        stored += t.elapsed();
        tracing::debug!(batch = %batch.id, ms = started.elapsed().as_millis(), stored_ms = stored.as_millis(), "collected");
        let delete = self.intend_delete(batch, remote).await?;
        store.close_batch(&batch.id, BatchState::Collected).await?;
        let cost_usd = self.batch_record(&batch.run_id, &batch.id).await?.cost_usd;
        self.emit(Event::BatchCollected {
            batch_id: batch.id.clone(),
            finished,
            retried,
            cost_usd,
        });
        self.emit(Event::Progress(store.counts(&batch.run_id).await?));
        Ok(delete)
    }

    /// What to do with one item's result: a final line, or another attempt.
    fn decide(
        &self,
        batch: &BatchRecord,
        item: &BatchItem,
        result: ItemResult,
        remote: &RemoteBatch,
        max_attempts: u32,
    ) -> Outcome {
        let can_retry = item.attempts < max_attempts;
        match result {
            ItemResult::Succeeded {
                text,
                citations,
                usage,
                ..
            } => {
                let cost = self.inner.catalog.cost(
                    batch.group.provider,
                    &batch.group.model,
                    &usage,
                    Mode::Batch,
                );
                let (parsed, status, error) = match &item.request.schema {
                    None => (None, ResultStatus::Succeeded, None),
                    Some(_) => match serde_json::from_str(&text) {
                        Ok(value) => (Some(value), ResultStatus::Succeeded, None),
                        Err(e) => (
                            None,
                            ResultStatus::Failed,
                            Some(ErrorInfo {
                                kind: ErrorKind::InvalidOutput,
                                message: format!("the answer is not valid JSON: {e}"),
                                provider_status: None,
                            }),
                        ),
                    },
                };
                let line = ResultLine {
                    id: item.request.id.clone(),
                    status,
                    provider: batch.group.provider,
                    model: batch.group.model.clone(),
                    mode: Mode::Batch,
                    text: Some(text),
                    parsed,
                    citations,
                    usage,
                    cost_usd: cost,
                    attempts: item.attempts,
                    provider_batch_id: Some(remote.id.clone()),
                    error,
                    metadata: item.request.metadata.clone(),
                };
                Outcome::Final {
                    seq: item.seq,
                    attempt: item.attempts,
                    status,
                    cost_usd: cost,
                    line: serde_json::to_string(&line).expect("result lines serialize"),
                }
            }
            ItemResult::Errored(info) if info.kind.is_transient() && can_retry => {
                retry(item, &info)
            }
            ItemResult::Errored(info) => {
                self.final_line(batch, item, ResultStatus::Failed, Some(remote), Some(info))
            }
            ItemResult::Expired => {
                let info = ErrorInfo {
                    kind: ErrorKind::Expired,
                    message: "the batch window passed before this request ran".into(),
                    provider_status: None,
                };
                if can_retry {
                    retry(item, &info)
                } else {
                    self.final_line(batch, item, ResultStatus::Expired, Some(remote), Some(info))
                }
            }
            ItemResult::Canceled => {
                let info = ErrorInfo {
                    kind: ErrorKind::Canceled,
                    message: "canceled before it ran".into(),
                    provider_status: None,
                };
                self.final_line(
                    batch,
                    item,
                    ResultStatus::Canceled,
                    Some(remote),
                    Some(info),
                )
            }
        }
    }

    /// Like [`Engine::decide`] for an item the provider never reported.
    fn decide_missing(
        &self,
        batch: &BatchRecord,
        item: &BatchItem,
        result: ItemResult,
        remote: &RemoteBatch,
        max_attempts: u32,
    ) -> Outcome {
        match (&result, item.attempts < max_attempts) {
            (ItemResult::Errored(info), true) => retry(item, info),
            _ => self.decide(batch, item, result, remote, max_attempts),
        }
    }

    /// A result line with no answer.
    fn final_line(
        &self,
        batch: &BatchRecord,
        item: &BatchItem,
        status: ResultStatus,
        remote: Option<&RemoteBatch>,
        error: Option<ErrorInfo>,
    ) -> Outcome {
        let line = ResultLine {
            id: item.request.id.clone(),
            status,
            provider: batch.group.provider,
            model: batch.group.model.clone(),
            mode: Mode::Batch,
            text: None,
            parsed: None,
            citations: Vec::new(),
            usage: Default::default(),
            cost_usd: 0.0,
            attempts: item.attempts,
            provider_batch_id: remote.map(|r| r.id.clone()),
            error,
            metadata: item.request.metadata.clone(),
        };
        Outcome::Final {
            seq: item.seq,
            attempt: item.attempts,
            status,
            cost_usd: 0.0,
            line: serde_json::to_string(&line).expect("result lines serialize"),
        }
    }
}

fn retry(item: &BatchItem, info: &ErrorInfo) -> Outcome {
    Outcome::Retry {
        seq: item.seq,
        attempt: item.attempts,
        error: serde_json::to_string(info).expect("errors serialize"),
    }
}

/// Transient provider errors pause the batch; the rest stop the run.
fn classify(e: ProviderError) -> BatchError {
    if e.is_retryable() {
        BatchError::Transient(e.to_string())
    } else {
        BatchError::Fatal(e.into())
    }
}

/// A poll answer; a batch the provider no longer knows is treated as failed remotely, so its
/// items are retried instead of being polled forever.
fn polled(
    id: &str,
    answer: Result<RemoteBatch, ProviderError>,
) -> Result<RemoteBatch, ProviderError> {
    match answer {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(RemoteBatch {
            id: id.to_owned(),
            phase: RemotePhase::Failed(format!("the provider no longer knows this batch ({e})")),
            provider_status: "not_found".into(),
            request_count: None,
            results_locator: None,
            owned_files: Vec::new(),
        }),
        other => other,
    }
}
