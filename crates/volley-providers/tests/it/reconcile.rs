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

/// The real provider, except that the first create's answer never arrives (as when the
/// connection drops after the provider acted).
struct LosesFirstAnswer {
    inner: volley_providers::AnthropicProvider,
    lost: AtomicBool,
}

#[async_trait]
impl BatchProvider for LosesFirstAnswer {
    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }
    fn wire_size(&self, item: &SubmissionItem) -> u64 {
        self.inner.wire_size(item)
    }
    async fn submit(&self, submission: Submission<'_>) -> Result<RemoteBatch, ProviderError> {
        let created = self.inner.submit(submission).await?;
        if !self.lost.swap(true, Ordering::SeqCst) {
            let _ = created;
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
        self.inner.find_submitted(hint).await
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

#[tokio::test]
async fn a_lost_create_answer_is_reconciled_not_resubmitted() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(30),
        ..SimConfig::default()
    })
    .await
    .unwrap();
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

    let mut providers = Providers::default();
    providers.insert(Arc::new(LosesFirstAnswer {
        inner: provider(&sim, "k"),
        lost: AtomicBool::new(false),
    }));
    let engine = Engine::new(
        store.clone(),
        providers,
        Arc::new(Catalog::builtin()),
        EngineConfig {
            poll: PollPolicy {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
                factor: 1.5,
            },
            ..EngineConfig::default()
        },
        None,
    );
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
        "the lost batch was found, not created again"
    );
    assert_eq!(stats.duplicate_submissions, 0);
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
