//! Scheduling under an enqueued-token budget, on tokio's paused clock: the real engine, the real
//! Anthropic adapter over real HTTP, the real simulator (whose batches end `processing` after
//! creation, on tokio time) and the SQLite store. Nothing really waits: an hour of batch
//! processing passes in virtual time. Store calls take no virtual time ([`FrozenClockStore`]).
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use volley_core::StoreError;
use volley_core::store::{
    Admission, BatchItem, BatchRecord, Group, IntentAction, IntentStart, NewBatch, NewRequest,
    NewRun, OpenIntent, Outcome, PendingRequest, RunRecord, Store,
};
use volley_store::SqliteStore;
use volley_types::{Counts, RunState};

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use volley::{
    BatchState, CancellationToken, Catalog, Event, Message, PollPolicy, ProviderKind, Request,
    RunEnd, RunSpec, SimConfig, Volley,
};

/// Batch processing time in the simulator: "most batches within 1 h".
const PROCESSING: Duration = Duration::from_secs(3_600);

/// Polling as against a real API (`PollPolicy::PROVIDER`: a finished batch is seen within a
/// minute).
const POLL: PollPolicy = PollPolicy::PROVIDER;

struct Scheduled {
    volley: Volley,
    run: String,
    makespan: Duration,
    /// `(batch id, +1 submitted / -1 collected)` in the order the engine reported them.
    timeline: Vec<(String, i8)>,
    /// With `sample_every`: the most estimated tokens the store showed at the provider.
    sampled_peak: u64,
}

/// Runs `prompts` on claude-haiku-4-5 under `budget` enqueued tokens. With `sample_every`, a
/// task reads the in-flight batches from the store at that interval while the run goes on.
async fn scheduled(
    prompts: &[String],
    budget: Option<u64>,
    max_batch: Option<u64>,
    sample_every: Option<Duration>,
) -> Scheduled {
    scheduled_with(prompts, budget, max_batch, None, sample_every).await
}

/// [`scheduled`] with a cap on concurrent batches too.
async fn scheduled_with(
    prompts: &[String],
    budget: Option<u64>,
    max_batch: Option<u64>,
    max_concurrent: Option<usize>,
    sample_every: Option<Duration>,
) -> Scheduled {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut builder = Volley::builder()
        .simulate(SimConfig {
            processing: PROCESSING,
            ..SimConfig::default()
        })
        .store_instance(FrozenClockStore::open().await)
        .poll_policy(POLL)
        .on_event(move |event| {
            let _ = tx.send(event);
        });
    if let Some(n) = max_batch {
        builder = builder.max_batch_requests(n);
    }
    if let Some(tokens) = budget {
        builder = builder.enqueued_token_budget(tokens);
    }
    if let Some(n) = max_concurrent {
        builder = builder.max_concurrent_batches(n);
    }
    let volley = builder.build().await.unwrap();
    let mut run = volley.new_run(RunSpec::default().model("claude-haiku-4-5"));
    for (i, prompt) in prompts.iter().enumerate() {
        run = run.request(json!({"id": format!("r{i:04}"), "prompt": prompt, "max_tokens": 16}));
    }
    let run = run.start().await.unwrap().run.id;

    let stop = CancellationToken::new();
    let sampler = sample_every.map(|every| {
        let (store, run, stop) = (volley.store().clone(), run.clone(), stop.clone());
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.is_cancelled() {
                let enqueued: u64 = store
                    .batches(&run)
                    .await
                    .unwrap()
                    .iter()
                    .filter(|b| matches!(b.state, BatchState::Submitting | BatchState::Submitted))
                    .map(|b| b.est_input_tokens)
                    .sum();
                peak = peak.max(enqueued);
                tokio::time::sleep(every).await;
            }
            peak
        })
    });
    let started = Instant::now();
    let end = volley.drive(&run, CancellationToken::new()).await.unwrap();
    let makespan = started.elapsed();
    stop.cancel();
    let sampled_peak = match sampler {
        Some(task) => task.await.unwrap(),
        None => 0,
    };
    let RunEnd::Completed { counts, .. } = end else {
        panic!("{end:?}")
    };
    assert_eq!(counts.succeeded, prompts.len() as u64, "{counts:?}");

    let mut timeline = Vec::new();
    while let Ok(event) = rx.try_recv() {
        match event {
            Event::BatchSubmitted { batch_id, .. } => timeline.push((batch_id, 1)),
            Event::BatchCollected { batch_id, .. } => timeline.push((batch_id, -1)),
            _ => {}
        }
    }
    Scheduled {
        volley,
        run,
        makespan,
        timeline,
        sampled_peak,
    }
}

fn request(prompt: &str) -> Request {
    Request {
        id: "x".into(),
        model: "claude-haiku-4-5".into(),
        messages: vec![Message::user(prompt.to_owned())],
        system: None,
        max_tokens: 16,
        temperature: None,
        schema: None,
        citations: false,
        metadata: None,
    }
}

impl Scheduled {
    /// Estimated input tokens of every batch the run made.
    async fn batch_tokens(&self) -> HashMap<String, u64> {
        self.volley
            .store()
            .batches(&self.run)
            .await
            .unwrap()
            .into_iter()
            .map(|b| (b.id, b.est_input_tokens))
            .collect()
    }

    /// The most estimated input tokens ever at the provider at once, replaying the engine's
    /// submitted / collected events in order.
    async fn peak_enqueued(&self) -> u64 {
        let tokens = self.batch_tokens().await;
        let (mut now, mut peak) = (0i64, 0i64);
        for (id, sign) in &self.timeline {
            now += i64::from(*sign) * tokens[id] as i64;
            peak = peak.max(now);
        }
        assert_eq!(now, 0, "every submitted batch was collected");
        peak as u64
    }

    /// The most batches ever at the provider at once.
    fn peak_concurrent(&self) -> i64 {
        let (mut now, mut peak) = (0i64, 0i64);
        for (_, sign) in &self.timeline {
            now += i64::from(*sign);
            peak = peak.max(now);
        }
        peak
    }
}

/// No token budget, a cap of 3 concurrent batches: 20 batches go 3 at a time, a new one as soon
/// as one is collected, so the run takes ceil(20 / 3) = 7 processing times (within 5%).
#[tokio::test(start_paused = true)]
#[allow(clippy::print_stderr)]
async fn the_concurrent_batch_cap_holds_and_is_used_in_full() {
    let prompts: Vec<String> = (0..200).map(|i| format!("Summarise ticket {i}")).collect();
    let s = scheduled_with(&prompts, None, Some(10), Some(3), None).await;
    assert_eq!(s.batch_tokens().await.len(), 20);
    assert_eq!(s.peak_concurrent(), 3);
    let bound = PROCESSING * 7;
    let ratio = s.makespan.as_secs_f64() / bound.as_secs_f64();
    eprintln!(
        "cap 3: makespan {:.0} s, bound {:.0} s, ratio {ratio:.4}",
        s.makespan.as_secs_f64(),
        bound.as_secs_f64()
    );
    assert!((1.0..=1.05).contains(&ratio), "ratio {ratio}");
}

/// The acceptance test: 400 requests of equal size, a budget of a fifth of their
/// tokens, batches of 20 requests (so four fit in the budget at once). The lower bound is
/// total tokens / budget × processing time = 5 h; the engine must finish within 5% of it.
#[tokio::test(start_paused = true)]
#[allow(clippy::print_stderr)]
async fn makespan_is_within_5_percent_of_the_token_budget_bound() {
    let prompts: Vec<String> = (0..400)
        .map(|i| {
            format!("Classify the sentiment of review {i:04}: the parcel came late and damaged")
        })
        .collect();
    // Every prompt has the same estimate; read it back to size the budget exactly.
    let one = Catalog::builtin().input_tokens(ProviderKind::Anthropic, &request(&prompts[0]));
    let budget = 80 * one;
    let s = scheduled(&prompts, Some(budget), Some(20), None).await;

    let tokens = s.batch_tokens().await;
    let total: u64 = tokens.values().sum();
    assert_eq!(total, 400 * one, "every request has the same estimate");
    let bound = PROCESSING.mul_f64(total as f64 / budget as f64);
    let ratio = s.makespan.as_secs_f64() / bound.as_secs_f64();
    eprintln!(
        "makespan {:.0} s, lower bound {:.0} s (total {total} tokens / budget {budget} × {} s): ratio {ratio:.4}; {} batches",
        s.makespan.as_secs_f64(),
        bound.as_secs_f64(),
        PROCESSING.as_secs(),
        tokens.len()
    );
    assert!(ratio >= 1.0, "faster than the bound: {ratio}");
    assert!(ratio <= 1.05, "makespan {ratio:.4} × the lower bound");
    // The budget was used in full, and never exceeded.
    assert_eq!(s.peak_enqueued().await, budget);
    let stats = s.volley.simulator().unwrap().stats();
    assert_eq!(
        (stats.requests_submitted, stats.duplicate_submissions),
        (400, 0)
    );
}

/// Requests of uneven size, batches packed to the budget by the planner: at no instant do the
/// batches at the provider hold more estimated tokens than the budget, checked two ways:
/// replaying the engine's submitted / collected events, and sampling the store (the source of
/// truth the engine admits from) every 10 virtual seconds while the run goes on.
#[tokio::test(start_paused = true)]
#[allow(clippy::print_stderr)]
async fn batches_at_the_provider_never_exceed_the_budget() {
    let mut rng = fastrand::Rng::with_seed(5);
    let words = [
        "parcel",
        "late",
        "damaged",
        "refund",
        "excellent",
        "support",
        "slow",
        "ok",
    ];
    let prompts: Vec<String> = (0..300)
        .map(|i| {
            let n = rng.usize(3..60);
            let body: Vec<&str> = (0..n).map(|_| words[rng.usize(..words.len())]).collect();
            format!("Review {i}: {}", body.join(" "))
        })
        .collect();
    // A budget of about a seventh of the total, so batches are packed by tokens.
    let catalog = Catalog::builtin();
    let total_estimate: u64 = prompts
        .iter()
        .map(|p| catalog.input_tokens(ProviderKind::Anthropic, &request(p)))
        .sum();
    let budget = total_estimate / 7;

    let s = scheduled(&prompts, Some(budget), None, Some(Duration::from_secs(10))).await;
    let tokens = s.batch_tokens().await;
    assert!(
        tokens.values().all(|t| *t <= budget),
        "a batch above the budget"
    );
    let peak = s.peak_enqueued().await;
    assert!(peak <= budget, "peak {peak} > budget {budget}");
    assert!(
        s.sampled_peak <= budget,
        "sampled {} > budget {budget}",
        s.sampled_peak
    );
    assert!(s.sampled_peak > 0, "the sampler saw batches in flight");
    let total: u64 = tokens.values().sum();
    let bound = PROCESSING.mul_f64(total as f64 / budget as f64);
    eprintln!(
        "uneven sizes: {} batches, peak {peak} / budget {budget} (sampled peak {}), makespan {:.0} s, bound {:.0} s, ratio {:.3}",
        tokens.len(),
        s.sampled_peak,
        s.makespan.as_secs_f64(),
        bound.as_secs_f64(),
        s.makespan.as_secs_f64() / bound.as_secs_f64()
    );
}

/// The real SQLite store, each call run on a blocking thread. SQLite works on its own thread,
/// which tokio's paused clock cannot see: waiting for it, the runtime looks idle and would jump
/// to the next timer (the connection pool's acquire timeout, say). While a `spawn_blocking`
/// task runs, tokio does not auto-advance (`tokio::time::pause` docs), so a store call takes no
/// virtual time, as a fast local database should.
struct FrozenClockStore(Arc<SqliteStore>);

impl FrozenClockStore {
    async fn open() -> Arc<dyn Store> {
        let handle = tokio::runtime::Handle::current();
        let store = tokio::task::spawn_blocking(move || {
            handle.block_on(SqliteStore::open("sqlite::memory:"))
        })
        .await
        .unwrap()
        .unwrap();
        Arc::new(Self(Arc::new(store)))
    }
}

/// Runs `$call` (an expression on `$s: Arc<SqliteStore>`, with owned captures) on a blocking
/// thread that drives it to completion on the test's runtime.
macro_rules! frozen {
    ($self:ident, |$s:ident| $call:expr) => {{
        let $s = $self.0.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || handle.block_on(async move { $call.await }))
            .await
            .expect("store calls do not panic")
    }};
}

#[async_trait]
impl Store for FrozenClockStore {
    async fn create_run(&self, run: &NewRun) -> Result<(), StoreError> {
        let run = run.clone();
        frozen!(self, |s| s.create_run(&run))
    }
    async fn insert_requests(&self, run_id: &str, rs: &[NewRequest]) -> Result<(), StoreError> {
        let (run_id, rs) = (run_id.to_owned(), rs.to_vec());
        frozen!(self, |s| s.insert_requests(&run_id, &rs))
    }
    async fn finish_import(&self, run_id: &str) -> Result<(), StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.finish_import(&run_id))
    }
    async fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let id = id.to_owned();
        frozen!(self, |s| s.run(&id))
    }
    async fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        frozen!(self, |s| s.runs())
    }
    async fn resumable_run(&self, fingerprint: &str) -> Result<Option<RunRecord>, StoreError> {
        let fingerprint = fingerprint.to_owned();
        frozen!(self, |s| s.resumable_run(&fingerprint))
    }
    async fn set_run_state(&self, run_id: &str, state: RunState) -> Result<(), StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.set_run_state(&run_id, state))
    }
    async fn counts(&self, run_id: &str) -> Result<Counts, StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.counts(&run_id))
    }
    async fn run_cost(&self, run_id: &str) -> Result<f64, StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.run_cost(&run_id))
    }
    async fn pending_groups(&self, run_id: &str) -> Result<Vec<Group>, StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.pending_groups(&run_id))
    }
    async fn pending_requests(
        &self,
        run_id: &str,
        group: &Group,
        after_seq: Option<u64>,
        limit: u64,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        let (run_id, group) = (run_id.to_owned(), group.clone());
        frozen!(self, |s| s
            .pending_requests(&run_id, &group, after_seq, limit))
    }
    async fn create_batch(&self, batch: &NewBatch) -> Result<u64, StoreError> {
        let batch = batch.clone();
        frozen!(self, |s| s.create_batch(&batch))
    }
    async fn batch_count(&self, run_id: &str) -> Result<u64, StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.batch_count(&run_id))
    }
    async fn batches(&self, run_id: &str) -> Result<Vec<BatchRecord>, StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.batches(&run_id))
    }
    async fn remote_ids(&self, provider: ProviderKind) -> Result<Vec<String>, StoreError> {
        frozen!(self, |s| s.remote_ids(provider))
    }
    async fn batch_items(&self, batch_id: &str) -> Result<Vec<BatchItem>, StoreError> {
        let batch_id = batch_id.to_owned();
        frozen!(self, |s| s.batch_items(&batch_id))
    }
    async fn begin_submit(
        &self,
        batch_id: &str,
        at: Timestamp,
        cap_usd: Option<f64>,
    ) -> Result<Admission, StoreError> {
        let batch_id = batch_id.to_owned();
        frozen!(self, |s| s.begin_submit(&batch_id, at, cap_usd))
    }
    async fn shrink_batch(&self, batch_id: &str, budget_usd: f64) -> Result<u64, StoreError> {
        let batch_id = batch_id.to_owned();
        frozen!(self, |s| s.shrink_batch(&batch_id, budget_usd))
    }
    async fn reserved_usd(&self, run_id: &str) -> Result<f64, StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.reserved_usd(&run_id))
    }
    async fn confirm_submit(
        &self,
        batch_id: &str,
        remote: &str,
        status: &str,
    ) -> Result<(), StoreError> {
        let (batch_id, remote, status) =
            (batch_id.to_owned(), remote.to_owned(), status.to_owned());
        frozen!(self, |s| s.confirm_submit(&batch_id, &remote, &status))
    }
    async fn abort_submit(&self, batch_id: &str) -> Result<(), StoreError> {
        let batch_id = batch_id.to_owned();
        frozen!(self, |s| s.abort_submit(&batch_id))
    }
    async fn set_provider_status(&self, batch_id: &str, status: &str) -> Result<(), StoreError> {
        let (batch_id, status) = (batch_id.to_owned(), status.to_owned());
        frozen!(self, |s| s.set_provider_status(&batch_id, &status))
    }
    async fn record_outcomes(
        &self,
        batch_id: &str,
        outcomes: &[Outcome],
    ) -> Result<(), StoreError> {
        let (batch_id, outcomes) = (batch_id.to_owned(), outcomes.to_vec());
        frozen!(self, |s| s.record_outcomes(&batch_id, &outcomes))
    }
    async fn close_batch(&self, batch_id: &str, state: BatchState) -> Result<(), StoreError> {
        let batch_id = batch_id.to_owned();
        frozen!(self, |s| s.close_batch(&batch_id, state))
    }
    async fn results(
        &self,
        run_id: &str,
        after_seq: Option<u64>,
        limit: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.results(&run_id, after_seq, limit))
    }
    async fn begin_intent(
        &self,
        batch_id: &str,
        action: IntentAction,
        at: Timestamp,
        detail: Option<&str>,
    ) -> Result<IntentStart, StoreError> {
        let (batch_id, detail) = (batch_id.to_owned(), detail.map(str::to_owned));
        frozen!(self, |s| s.begin_intent(
            &batch_id,
            action,
            at,
            detail.as_deref()
        ))
    }
    async fn finish_intent(&self, batch_id: &str, action: IntentAction) -> Result<(), StoreError> {
        let batch_id = batch_id.to_owned();
        frozen!(self, |s| s.finish_intent(&batch_id, action))
    }
    async fn open_intents(&self, run_id: &str) -> Result<Vec<OpenIntent>, StoreError> {
        let run_id = run_id.to_owned();
        frozen!(self, |s| s.open_intents(&run_id))
    }
}
