//! The engine with the real adapter, the real store and the simulator, where the answer to a
//! create call is lost: the engine must find the batch instead of submitting it again.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use volley_core::ProviderError;
use volley_core::catalog::Catalog;
use volley_core::engine::{Engine, EngineConfig, RunEnd};
use volley_core::poll::PollPolicy;
use volley_core::provider::{
    BatchProvider, Providers, RemoteBatch, ResultStream, Submission, SubmissionHint, SubmissionItem,
};
use volley_core::store::{NewRequest, NewRun, RunOptions, Store};
use volley_sim::{SimConfig, Simulator};
use volley_store::SqliteStore;
use volley_types::{ErrorKind, ProviderKind};

use crate::anthropic::provider;
use crate::support::items;

/// The real provider, with one scripted fault.
struct Scripted {
    inner: volley_providers::AnthropicProvider,
    fault: Fault,
    done: AtomicBool,
}

enum Fault {
    /// The first create's answer never arrives (as when the connection drops after the
    /// provider acted).
    LoseFirstAnswer,
    /// A create sent by a process killed while sending it: the provider acts on it only
    /// after the next process has first looked for it.
    LandsAfterFirstLook(std::sync::Mutex<Option<LateCreate>>),
}

struct LateCreate {
    batch_id: String,
    run_id: String,
    model: String,
    items: Vec<SubmissionItem>,
}

impl Scripted {
    fn new(sim: &Simulator, fault: Fault) -> Self {
        Self {
            inner: provider(sim, "k"),
            fault,
            done: AtomicBool::new(false),
        }
    }

    /// True the first time only.
    fn first(&self) -> bool {
        !self.done.swap(true, Ordering::SeqCst)
    }
}

#[async_trait]
impl BatchProvider for Scripted {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }
    fn wire_size(&self, item: &SubmissionItem) -> u64 {
        self.inner.wire_size(item)
    }
    async fn submit(&self, submission: Submission<'_>) -> Result<RemoteBatch, ProviderError> {
        let created = self.inner.submit(submission).await?;
        if matches!(self.fault, Fault::LoseFirstAnswer) && self.first() {
            return Err(ProviderError::transport(
                ProviderKind::Anthropic,
                "create batch",
                ErrorKind::Timeout,
                "the answer was lost",
            ));
        }
        Ok(created)
    }
    async fn find_submitted(
        &self,
        hint: SubmissionHint<'_>,
    ) -> Result<Option<RemoteBatch>, ProviderError> {
        let found = self.inner.find_submitted(hint).await;
        if let Fault::LandsAfterFirstLook(late) = &self.fault
            && self.first()
        {
            let late = late.lock().unwrap().take().expect("one late create");
            self.inner
                .submit(Submission {
                    batch_id: &late.batch_id,
                    run_id: &late.run_id,
                    model: &late.model,
                    items: late.items,
                })
                .await?;
        }
        found
    }
    async fn poll(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        self.inner.poll(remote_id).await
    }
    async fn results(&self, remote: &RemoteBatch) -> Result<ResultStream, ProviderError> {
        self.inner.results(remote).await
    }
    async fn cancel(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        self.inner.cancel(remote_id).await
    }
    async fn release(&self, remote: &RemoteBatch) -> Result<(), ProviderError> {
        self.inner.release(remote).await
    }
}

/// A store holding run `run-1` of twelve imported Anthropic requests.
async fn imported_run() -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    store
        .create_run(&NewRun {
            id: "run-1".into(),
            created_at: jiff::Timestamp::now(),
            input: None,
            fingerprint: None,
            out: None,
            options: RunOptions::default(),
        })
        .await
        .unwrap();
    let requests: Vec<NewRequest> = items("c", "claude-haiku-4-5", 12)
        .into_iter()
        .enumerate()
        .map(|(seq, item)| NewRequest {
            seq: seq as u64,
            custom_id: item.custom_id,
            provider: ProviderKind::Anthropic,
            est_input_tokens: 10,
            wire_bytes: 100,
            worst_cost_usd: 0.0,
            request: item.request,
        })
        .collect();
    store.insert_requests("run-1", &requests).await.unwrap();
    store.finish_import("run-1").await.unwrap();
    store
}

fn engine(store: &Arc<dyn Store>, provider: Scripted, create_grace: Duration) -> Engine {
    let mut providers = Providers::default();
    providers.insert(Arc::new(provider));
    Engine::new(
        store.clone(),
        providers,
        Arc::new(Catalog::builtin()),
        EngineConfig {
            poll: PollPolicy {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
                factor: 1.5,
            },
            create_grace,
            ..EngineConfig::default()
        },
        None,
    )
}

async fn sim() -> Simulator {
    Simulator::spawn(SimConfig {
        processing: Duration::from_millis(30),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Drives `run-1` to its end: its twelve requests succeed, sent to the provider once.
async fn drive_to_one_batch(engine: &Engine, sim: &Simulator) {
    let end = engine
        .drive("run-1", tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let RunEnd::Completed { counts, .. } = end else {
        panic!("{end:?}")
    };
    assert_eq!(counts.succeeded, 12);
    let stats = sim.stats();
    assert_eq!(
        stats.batches_created, 1,
        "the batch was found, not created again: {stats:?}"
    );
    assert_eq!(stats.duplicate_submissions, 0);
}

#[tokio::test]
async fn a_lost_create_answer_is_reconciled_not_resubmitted() {
    let sim = sim().await;
    let store = imported_run().await;
    let engine = engine(
        &store,
        Scripted::new(&sim, Fault::LoseFirstAnswer),
        EngineConfig::default().create_grace,
    );
    drive_to_one_batch(&engine, &sim).await;
    let results = store.results("run-1", None, 100).await.unwrap();
    assert_eq!(results.len(), 12);
    for (_, line) in &results {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            line["attempts"], 1,
            "the re-attached submission is counted once: {line}"
        );
    }
}

/// A process killed while sending a create leaves the request on its way: the next process
/// may look before the provider has acted on it. Not finding it then must not mean "never
/// made" (the batch would be sent twice) until the grace has passed.
#[tokio::test]
async fn a_create_that_lands_after_the_next_look_is_not_sent_again() {
    let sim = sim().await;
    let store = imported_run().await;
    // The killed process: it planned the batch and stored its intent, then sent the create.
    let planner = engine(
        &store,
        Scripted::new(&sim, Fault::LoseFirstAnswer),
        Duration::ZERO,
    );
    planner.plan_pending("run-1").await.unwrap();
    let batch = store.batches("run-1").await.unwrap().remove(0);
    store
        .begin_submit(&batch.id, jiff::Timestamp::now(), None)
        .await
        .unwrap();
    let items = store
        .batch_items(&batch.id)
        .await
        .unwrap()
        .into_iter()
        .map(|i| SubmissionItem {
            custom_id: i.custom_id,
            request: i.request,
        })
        .collect();
    let late = LateCreate {
        batch_id: batch.id.clone(),
        run_id: "run-1".into(),
        model: batch.group.model.clone(),
        items,
    };

    let next = engine(
        &store,
        Scripted::new(
            &sim,
            Fault::LandsAfterFirstLook(std::sync::Mutex::new(Some(late))),
        ),
        EngineConfig::default().create_grace,
    );
    drive_to_one_batch(&next, &sim).await;
}
