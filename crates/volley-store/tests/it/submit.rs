//! The submit intent: begin_submit, confirm_submit, abort_submit and the intents table.
use volley_core::StoreError;
use volley_core::store::Store;
use volley_types::{BatchState, ProviderKind, ResultStatus};

use crate::common::{FileStore, at, done, group, imported_run, new_batch};

async fn planned(fs: &FileStore) {
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    imported_run(&fs.store, "r", 3, std::slice::from_ref(&haiku)).await;
    fs.store
        .create_batch(&new_batch("r", 1, &haiku, 0, 2))
        .await
        .unwrap();
}

async fn intents(fs: &FileStore) -> Vec<(String, String, Option<String>, Option<String>)> {
    let mut conn = fs.raw().await;
    sqlx::query_as("SELECT batch_id, started_at, confirmed_at, outcome FROM intents ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(
            |(b, s, c, o): (String, String, Option<String>, Option<String>)| {
                (b, s, c.map(|_| "set".to_owned()), o)
            },
        )
        .collect()
}

#[tokio::test]
async fn abort_returns_the_batch_to_planned_with_its_requests() {
    let fs = FileStore::new().await;
    planned(&fs).await;
    fs.store
        .begin_submit("r-b0001", at("2026-03-01T10:00:00Z"), None)
        .await
        .unwrap();
    assert_eq!(
        intents(&fs).await,
        [(
            "r-b0001".to_owned(),
            "2026-03-01T10:00:00.000Z".to_owned(),
            None,
            None
        )]
    );
    fs.store.abort_submit("r-b0001").await.unwrap();
    let batch = fs.store.batches("r").await.unwrap().remove(0);
    assert_eq!(batch.state, BatchState::Planned);
    assert_eq!(batch.submit_started_at, None);
    assert_eq!(batch.request_count, 3);
    let items = fs.store.batch_items("r-b0001").await.unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i.attempts == 0));
    assert_eq!(fs.store.counts("r").await.unwrap().pending, 3);
    assert!(fs.store.pending_groups("r").await.unwrap().is_empty());
    assert_eq!(intents(&fs).await[0].3.as_deref(), Some("aborted"));
    assert_eq!(intents(&fs).await[0].2.as_deref(), Some("set"));

    // Aborting a planned batch is a no-op; submitting again opens a new intent.
    fs.store.abort_submit("r-b0001").await.unwrap();
    fs.store
        .begin_submit("r-b0001", at("2026-03-01T10:01:00Z"), None)
        .await
        .unwrap();
    fs.store
        .confirm_submit("r-b0001", "msgbatch_1", "in_progress")
        .await
        .unwrap();
    let log = intents(&fs).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].3.as_deref(), Some("created"));
    assert!(
        fs.store
            .batch_items("r-b0001")
            .await
            .unwrap()
            .iter()
            .all(|i| i.attempts == 1)
    );
}

#[tokio::test]
async fn transitions_out_of_order_are_refused() {
    let fs = FileStore::new().await;
    planned(&fs).await;
    // Confirming without an intent.
    let err = fs
        .store
        .confirm_submit("r-b0001", "msgbatch_1", "in_progress")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err}");
    assert!(err.to_string().contains("r-b0001 is planned"), "{err}");

    fs.store
        .begin_submit("r-b0001", at("2026-03-01T10:00:00Z"), None)
        .await
        .unwrap();
    // A second intent while one is open.
    assert!(
        fs.store
            .begin_submit("r-b0001", at("2026-03-01T10:00:01Z"), None)
            .await
            .is_err()
    );
    fs.store
        .confirm_submit("r-b0001", "msgbatch_1", "in_progress")
        .await
        .unwrap();
    // The same confirmation again (a retried call) counts the attempt once.
    fs.store
        .confirm_submit("r-b0001", "msgbatch_1", "in_progress")
        .await
        .unwrap();
    assert!(
        fs.store
            .batch_items("r-b0001")
            .await
            .unwrap()
            .iter()
            .all(|i| i.attempts == 1)
    );
    // A different remote id for a submitted batch, an abort once the provider has it.
    assert!(
        fs.store
            .confirm_submit("r-b0001", "msgbatch_other", "in_progress")
            .await
            .is_err()
    );
    assert!(fs.store.abort_submit("r-b0001").await.is_err());
    assert!(
        fs.store
            .begin_submit("r-b0001", at("2026-03-01T10:00:02Z"), None)
            .await
            .is_err()
    );
    let batch = fs.store.batches("r").await.unwrap().remove(0);
    assert_eq!(batch.state, BatchState::Submitted);
    assert_eq!(batch.provider_batch_id.as_deref(), Some("msgbatch_1"));
    assert_eq!(fs.count("SELECT COUNT(*) FROM intents").await, 1);
}

#[tokio::test]
async fn a_batch_rejected_on_submit_closes_its_intent() {
    let fs = FileStore::new().await;
    planned(&fs).await;
    fs.store
        .begin_submit("r-b0001", at("2026-03-01T10:00:00Z"), None)
        .await
        .unwrap();
    let failed: Vec<_> = (0..3)
        .map(|s| done(s, 1, ResultStatus::Failed, 0.0))
        .collect();
    fs.store.record_outcomes("r-b0001", &failed).await.unwrap();
    fs.store
        .close_batch("r-b0001", BatchState::Rejected)
        .await
        .unwrap();
    assert_eq!(intents(&fs).await[0].3.as_deref(), Some("aborted"));
    assert_eq!(fs.store.counts("r").await.unwrap().failed, 3);
    assert_eq!(
        fs.store.batches("r").await.unwrap()[0].state,
        BatchState::Rejected
    );
}
