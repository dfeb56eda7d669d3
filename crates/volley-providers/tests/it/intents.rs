//! Cancel and delete intents with the real adapters, the real store and the simulator: a
//! process killed between an intent and its call leaves the intent open, and the next drive or
//! cancel finishes the job without doing anything twice.
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use volley_core::ProviderError;
use volley_core::catalog::Catalog;
use volley_core::engine::{Engine, EngineConfig, RunEnd};
use volley_core::events::Event;
use volley_core::poll::PollPolicy;
use volley_core::provider::{
    BatchProvider, Providers, RemoteBatch, ResultStream, Submission, SubmissionHint, SubmissionItem,
};
use volley_core::store::{IntentAction, NewRequest, NewRun, RunOptions, Store};
use volley_providers::{Endpoint, GeminiProvider, HttpClient, OpenAiProvider};
use volley_sim::{SimConfig, Simulator};
use volley_store::SqliteStore;
use volley_types::{BatchState, ErrorKind, ProviderKind, ResultStatus};

use crate::support::{fast_retry, items};

/// A real provider that counts cancel calls and fails its first `failing_releases` deletes
/// (as if the process had died before it could delete).
struct Wrapped {
    inner: Arc<dyn BatchProvider>,
    cancels: AtomicU32,
    failing_releases: AtomicU32,
}

#[async_trait]
impl BatchProvider for Wrapped {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }
    fn wire_size(&self, item: &SubmissionItem) -> u64 {
        self.inner.wire_size(item)
    }
    async fn submit(&self, submission: Submission<'_>) -> Result<RemoteBatch, ProviderError> {
        self.inner.submit(submission).await
    }
    async fn find_submitted(
        &self,
        hint: SubmissionHint<'_>,
    ) -> Result<Option<RemoteBatch>, ProviderError> {
        self.inner.find_submitted(hint).await
    }
    async fn poll(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        self.inner.poll(remote_id).await
    }
    async fn results(&self, remote: &RemoteBatch) -> Result<ResultStream, ProviderError> {
        self.inner.results(remote).await
    }
    async fn cancel(&self, remote_id: &str) -> Result<RemoteBatch, ProviderError> {
        self.cancels.fetch_add(1, Ordering::SeqCst);
        self.inner.cancel(remote_id).await
    }
    async fn release(&self, remote: &RemoteBatch) -> Result<(), ProviderError> {
        let left = self.failing_releases.load(Ordering::SeqCst);
        if left > 0 {
            self.failing_releases.store(left - 1, Ordering::SeqCst);
            return Err(ProviderError::transport(
                self.kind(),
                "delete file",
                ErrorKind::Other,
                "the process died before the delete",
            ));
        }
        self.inner.release(remote).await
    }
}

fn wrapped(inner: Arc<dyn BatchProvider>, failing_releases: u32) -> Arc<Wrapped> {
    Arc::new(Wrapped {
        inner,
        cancels: AtomicU32::new(0),
        failing_releases: AtomicU32::new(failing_releases),
    })
}

/// OpenAI (input file upload) and Gemini in file mode (upload), so both leave files to delete.
fn providers(sim: &Simulator) -> (Arc<dyn BatchProvider>, Arc<dyn BatchProvider>) {
    let http = HttpClient::new(fast_retry());
    let key = || SecretString::from("k");
    let openai = OpenAiProvider::new(Endpoint::new(sim.openai_base_url(), key()), http.clone());
    let gemini =
        GeminiProvider::new(Endpoint::new(sim.base_url(), key()), http).with_inline_limit(0);
    (Arc::new(openai), Arc::new(gemini))
}

/// A run of `n` requests per model, imported.
async fn run(store: &dyn Store, n: usize) {
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
    let mut requests = Vec::new();
    for (provider, model) in [
        (ProviderKind::OpenAi, "gpt-4o-mini"),
        (ProviderKind::Gemini, "gemini-2.5-flash"),
    ] {
        for item in items(provider.as_str(), model, n) {
            requests.push(NewRequest {
                seq: requests.len() as u64,
                custom_id: item.custom_id,
                provider,
                est_input_tokens: 10,
                wire_bytes: 100,
                worst_cost_usd: 0.0,
                request: item.request,
            });
        }
    }
    store.insert_requests("run-1", &requests).await.unwrap();
    store.finish_import("run-1").await.unwrap();
}

fn engine(
    store: &Arc<dyn Store>,
    list: &[Arc<Wrapped>],
    events: Option<volley_core::events::EventSink>,
) -> Engine {
    let mut providers = Providers::default();
    for p in list {
        providers.insert(p.clone());
    }
    let poll = PollPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
        factor: 1.5,
    };
    Engine::new(
        store.clone(),
        providers,
        Arc::new(Catalog::builtin()),
        EngineConfig {
            poll,
            ..EngineConfig::default()
        },
        events,
    )
}

async fn sim(processing_ms: u64) -> Simulator {
    Simulator::spawn(SimConfig {
        processing: Duration::from_millis(processing_ms),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn deletes_that_did_not_happen_are_retried_by_the_next_drive() {
    let sim = sim(30).await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    run(store.as_ref(), 6).await;
    let (openai, gemini) = providers(&sim);
    let list = [wrapped(openai, 1), wrapped(gemini, 1)];

    let end = engine(&store, &list, None)
        .drive("run-1", CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(end, RunEnd::Completed { .. }), "{end:?}");
    // Results are stored, but the files are still at the provider, with their intents open.
    assert!(sim.stats().files_stored > 0, "{:?}", sim.stats());
    let open = store.open_intents("run-1").await.unwrap();
    assert_eq!(open.len(), 2, "{open:?}");
    assert!(open.iter().all(|i| i.action == IntentAction::Delete
        && i.batch_state == BatchState::Collected
        && i.detail.as_deref().is_some_and(|d| d.contains("file"))));

    // The next drive (a resume) deletes them and closes the intents; nothing is submitted.
    let end = engine(&store, &list, None)
        .drive("run-1", CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(end, RunEnd::Completed { .. }), "{end:?}");
    let stats = sim.stats();
    assert_eq!(stats.files_stored, 0, "{stats:?}");
    assert_eq!((stats.batches_created, stats.duplicate_submissions), (2, 0));
    assert!(store.open_intents("run-1").await.unwrap().is_empty());
}

/// Drives until both batches are at the provider, then stops (as a killed process would).
async fn submitted_then_stopped(store: &Arc<dyn Store>, list: &[Arc<Wrapped>]) {
    let stop = CancellationToken::new();
    let submitted = Arc::new(AtomicU32::new(0));
    let (token, count) = (stop.clone(), submitted.clone());
    let sink: volley_core::events::EventSink = Arc::new(move |event| {
        if matches!(event, Event::BatchSubmitted { .. })
            && count.fetch_add(1, Ordering::SeqCst) + 1 == 2
        {
            token.cancel();
        }
    });
    let end = engine(store, list, Some(sink))
        .drive("run-1", stop)
        .await
        .unwrap();
    assert!(matches!(end, RunEnd::Interrupted { .. }), "{end:?}");
}

#[tokio::test]
async fn a_cancel_intent_left_open_is_reconciled_by_polling() {
    let sim = sim(5_000).await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    run(store.as_ref(), 5).await;
    let (openai, gemini) = providers(&sim);
    let list = [wrapped(openai.clone(), 0), wrapped(gemini, 0)];
    submitted_then_stopped(&store, &list).await;
    let batches = store.batches("run-1").await.unwrap();
    assert!(batches.iter().all(|b| b.state == BatchState::Submitted));

    // A cancel killed after its intent: for OpenAI the call had reached the provider, for
    // Gemini it had not.
    for b in &batches {
        store
            .begin_intent(&b.id, IntentAction::Cancel, jiff::Timestamp::now(), None)
            .await
            .unwrap();
        if b.group.provider == ProviderKind::OpenAi {
            openai
                .cancel(b.provider_batch_id.as_deref().unwrap())
                .await
                .unwrap();
        }
    }
    assert_eq!(sim.stats().batches_canceled, 1);

    let end = engine(&store, &list, None)
        .cancel("run-1", CancellationToken::new())
        .await
        .unwrap();
    let RunEnd::Canceled { counts, .. } = end else {
        panic!("{end:?}")
    };
    assert_eq!((counts.total, counts.pending), (10, 0));
    assert_eq!(counts.canceled + counts.succeeded, 10, "{counts:?}");
    // Polling showed the OpenAI batch cancelling: no second call. Gemini got its call now.
    assert_eq!(list[0].cancels.load(Ordering::SeqCst), 0);
    assert_eq!(list[1].cancels.load(Ordering::SeqCst), 1);
    let stats = sim.stats();
    assert_eq!(stats.batches_canceled, 2, "{stats:?}");
    assert_eq!(
        stats.files_stored, 0,
        "files deleted after the canceled batches were collected"
    );
    assert!(store.open_intents("run-1").await.unwrap().is_empty());
    let lines = store.results("run-1", None, 100).await.unwrap();
    assert_eq!(lines.len(), 10);
    assert!(
        lines
            .iter()
            .all(|(_, l)| l.contains(ResultStatus::Canceled.as_str())
                || l.contains(ResultStatus::Succeeded.as_str()))
    );

    // Cancelling again: nothing more is called.
    let end = engine(&store, &list, None)
        .cancel("run-1", CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(end, RunEnd::Canceled { .. }), "{end:?}");
    assert_eq!(list[1].cancels.load(Ordering::SeqCst), 1);
    assert_eq!(sim.stats().batches_created, 2);
}
