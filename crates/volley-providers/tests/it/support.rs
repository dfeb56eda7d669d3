//! Helpers shared by the adapters' lifecycle tests.
use std::time::Duration;

use volley_core::provider::{BatchProvider, RemoteBatch, RemotePhase, Submission, SubmissionItem};
use volley_core::retry::RetryPolicy;
use volley_types::{Message, Request};

/// Retries fast enough for tests, honouring short `retry-after`s.
pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 5,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(2),
    }
}

/// `n` small requests on `model`, custom ids `{prefix}-{i}`.
pub(crate) fn items(prefix: &str, model: &str, n: usize) -> Vec<SubmissionItem> {
    (0..n)
        .map(|i| SubmissionItem {
            custom_id: format!("{prefix}-{i}"),
            request: Request {
                id: format!("{prefix}-{i}"),
                model: model.into(),
                messages: vec![Message::user(format!("Say something about {i}"))],
                system: None,
                max_tokens: 64,
                temperature: None,
                schema: None,
                citations: false,
                metadata: None,
            },
        })
        .collect()
}

/// A submission of run `r1`.
pub(crate) fn submission<'a>(
    batch_id: &'a str,
    model: &'a str,
    items: &'a [SubmissionItem],
) -> Submission<'a> {
    Submission {
        batch_id,
        run_id: "r1",
        model,
        items: items.to_vec(),
    }
}

/// Polls until the batch has ended.
pub(crate) async fn until_ended(p: &dyn BatchProvider, id: &str) -> RemoteBatch {
    loop {
        let batch = p.poll(id).await.unwrap();
        if batch.phase == RemotePhase::Ended {
            return batch;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
