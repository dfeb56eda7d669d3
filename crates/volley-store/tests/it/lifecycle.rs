//! The batch lifecycle as the engine drives it: import → create_batch → begin/confirm →
//! record_outcomes (final and retry) → close → re-plan → complete.
use volley_core::StoreError;
use volley_core::store::Store;
use volley_types::{BatchState, Counts, ProviderKind, ResultStatus, RunState};

use crate::common::{
    FileStore, at, done, group, imported_run, memory_with_run, new_batch, new_request, retry,
};

#[tokio::test]
async fn full_lifecycle() {
    let fs = FileStore::new().await;
    let store = &fs.store;
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    let mini = group(ProviderKind::OpenAi, "gpt-5-mini");
    // Even seqs are haiku, odd seqs mini.
    imported_run(store, "r", 10, &[haiku.clone(), mini.clone()]).await;
    store.set_run_state("r", RunState::Running).await.unwrap();
    assert_eq!(store.batch_count("r").await.unwrap(), 0);

    // Plan: haiku 0..=4 and 6..=8 in two batches, mini all in one.
    assert_eq!(
        store
            .create_batch(&new_batch("r", 1, &haiku, 0, 4))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .create_batch(&new_batch("r", 2, &mini, 1, 9))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store
            .create_batch(&new_batch("r", 3, &haiku, 6, 8))
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.batch_count("r").await.unwrap(), 3);
    assert!(store.pending_groups("r").await.unwrap().is_empty());
    assert_eq!(store.counts("r").await.unwrap().pending, 10);

    let batches = store.batches("r").await.unwrap();
    assert_eq!(
        batches.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["r-b0001", "r-b0002", "r-b0003"]
    );
    let b1 = &batches[0];
    assert_eq!(b1.run_id, "r");
    assert_eq!(b1.group, haiku);
    assert_eq!(b1.state, BatchState::Planned);
    assert_eq!(b1.request_count, 3);
    assert_eq!(b1.provider_batch_id, None);
    assert_eq!(b1.provider_status, None);
    assert_eq!(b1.submit_started_at, None);
    assert_eq!(b1.cost_usd, 0.0);

    // The items carry the stored request back, in seq order.
    let items = store.batch_items("r-b0001").await.unwrap();
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), [0, 2, 4]);
    assert_eq!(items[1].custom_id, "c-2");
    assert_eq!(items[1].attempts, 0);
    assert_eq!(items[1].request, new_request(2, &haiku).request);

    // Submit: intent, then confirmation.
    let started = at("2026-03-01T10:05:00.123Z");
    store.begin_submit("r-b0001", started, None).await.unwrap();
    let b1 = store.batches("r").await.unwrap().remove(0);
    assert_eq!(b1.state, BatchState::Submitting);
    assert_eq!(b1.submit_started_at, Some(started));
    store
        .confirm_submit("r-b0001", "msgbatch_1", "in_progress")
        .await
        .unwrap();
    let b1 = store.batches("r").await.unwrap().remove(0);
    assert_eq!(b1.state, BatchState::Submitted);
    assert_eq!(b1.provider_batch_id.as_deref(), Some("msgbatch_1"));
    assert_eq!(b1.provider_status.as_deref(), Some("in_progress"));
    assert!(
        store
            .batch_items("r-b0001")
            .await
            .unwrap()
            .iter()
            .all(|i| i.attempts == 1)
    );
    // Other batches' requests are not counted.
    assert!(
        store
            .batch_items("r-b0003")
            .await
            .unwrap()
            .iter()
            .all(|i| i.attempts == 0)
    );
    assert_eq!(
        store.remote_ids(ProviderKind::Anthropic).await.unwrap(),
        ["msgbatch_1"]
    );
    assert!(
        store
            .remote_ids(ProviderKind::OpenAi)
            .await
            .unwrap()
            .is_empty()
    );

    store.set_provider_status("r-b0001", "ended").await.unwrap();
    assert_eq!(
        store.batches("r").await.unwrap()[0]
            .provider_status
            .as_deref(),
        Some("ended")
    );

    // Collect: 0 succeeded, 2 failed for good, 4 retried.
    store
        .record_outcomes(
            "r-b0001",
            &[
                done(0, 1, ResultStatus::Succeeded, 0.25),
                done(2, 1, ResultStatus::Failed, 0.0),
                retry(4, 1),
            ],
        )
        .await
        .unwrap();
    store
        .close_batch("r-b0001", BatchState::Collected)
        .await
        .unwrap();
    let b1 = store.batches("r").await.unwrap().remove(0);
    assert_eq!(b1.state, BatchState::Collected);
    assert_eq!(b1.cost_usd, 0.25);
    assert_eq!(
        store.counts("r").await.unwrap(),
        Counts {
            total: 10,
            succeeded: 1,
            failed: 1,
            pending: 8,
            ..Counts::default()
        }
    );
    assert_eq!(store.run_cost("r").await.unwrap(), 0.25);
    fs.check_counts("r").await;
    // The retried request is pending again, in its group, and left its old batch.
    assert_eq!(
        store.pending_groups("r").await.unwrap(),
        std::slice::from_ref(&haiku)
    );
    let pending = store.pending_requests("r", &haiku, None, 10).await.unwrap();
    assert_eq!(pending.iter().map(|p| p.seq).collect::<Vec<_>>(), [4]);
    assert_eq!(
        store
            .batch_items("r-b0001")
            .await
            .unwrap()
            .iter()
            .map(|i| i.seq)
            .collect::<Vec<_>>(),
        [0, 2]
    );
    let results = store.results("r", None, 100).await.unwrap();
    assert_eq!(
        results,
        [
            (0, r#"{"id":"q-0","status":"succeeded"}"#.to_owned()),
            (2, r#"{"id":"q-2","status":"failed"}"#.to_owned()),
        ]
    );

    // Re-plan the retry into batch 4; its attempt count carries on.
    assert_eq!(
        store
            .create_batch(&new_batch("r", 4, &haiku, 4, 4))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.batch_count("r").await.unwrap(), 4);
    store
        .begin_submit("r-b0004", at("2026-03-01T11:00:00Z"), None)
        .await
        .unwrap();
    store
        .confirm_submit("r-b0004", "msgbatch_4", "in_progress")
        .await
        .unwrap();
    assert_eq!(store.batch_items("r-b0004").await.unwrap()[0].attempts, 2);
    store
        .record_outcomes("r-b0004", &[done(4, 2, ResultStatus::Succeeded, 0.5)])
        .await
        .unwrap();
    store
        .close_batch("r-b0004", BatchState::Collected)
        .await
        .unwrap();

    // The mini batch is rejected by the provider: every item fails, nothing is charged.
    store
        .begin_submit("r-b0002", at("2026-03-01T10:06:00Z"), None)
        .await
        .unwrap();
    let outcomes: Vec<_> = [1, 3, 5, 7, 9]
        .map(|s| done(s, 1, ResultStatus::Failed, 0.0))
        .to_vec();
    store.record_outcomes("r-b0002", &outcomes).await.unwrap();
    store
        .close_batch("r-b0002", BatchState::Rejected)
        .await
        .unwrap();
    assert_eq!(
        store.batches("r").await.unwrap()[1].state,
        BatchState::Rejected
    );

    // The last haiku batch: one expired, one canceled.
    store
        .begin_submit("r-b0003", at("2026-03-01T10:07:00Z"), None)
        .await
        .unwrap();
    store
        .confirm_submit("r-b0003", "msgbatch_3", "in_progress")
        .await
        .unwrap();
    store
        .record_outcomes(
            "r-b0003",
            &[
                done(6, 1, ResultStatus::Expired, 0.0),
                done(8, 1, ResultStatus::Canceled, 0.0),
            ],
        )
        .await
        .unwrap();
    store
        .close_batch("r-b0003", BatchState::Collected)
        .await
        .unwrap();

    let counts = store.counts("r").await.unwrap();
    assert_eq!(
        counts,
        Counts {
            total: 10,
            succeeded: 2,
            failed: 6,
            canceled: 1,
            expired: 1,
            skipped: 0,
            pending: 0,
        }
    );
    assert_eq!(store.run_cost("r").await.unwrap(), 0.75);
    fs.check_counts("r").await;
    let seqs: Vec<u64> = store
        .results("r", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    // Paging.
    let page: Vec<u64> = store
        .results("r", Some(3), 4)
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(page, [4, 5, 6, 7]);
    let mut remote = store.remote_ids(ProviderKind::Anthropic).await.unwrap();
    remote.sort();
    assert_eq!(remote, ["msgbatch_1", "msgbatch_3", "msgbatch_4"]);
    store.set_run_state("r", RunState::Completed).await.unwrap();
    assert_eq!(store.resumable_run("fp").await.unwrap(), None);

    // The ledger holds one actual row per closed batch, summing to the run's cost.
    assert_eq!(
        fs.count("SELECT COUNT(*) FROM ledger WHERE kind = 'actual'")
            .await,
        4
    );
    let mut conn = fs.raw().await;
    let booked: f64 = sqlx::query_scalar(
        "SELECT SUM(amount_usd) FROM ledger WHERE run_id = 'r' AND kind = 'actual'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(booked, 0.75);
    // One attempt row per retry: request 4 was tried twice.
    assert_eq!(fs.count("SELECT COUNT(*) FROM attempts").await, 1);
    let retry_error: Option<String> =
        sqlx::query_scalar("SELECT error FROM attempts WHERE seq = 4 AND attempt = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(retry_error.unwrap().contains("try again"));
}

#[tokio::test]
async fn create_batch_takes_only_pending_requests_of_its_group_and_range() {
    let fs = FileStore::new().await;
    let store = &fs.store;
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    let sonnet = group(ProviderKind::Anthropic, "claude-sonnet-4-5");
    imported_run(store, "r", 12, &[haiku.clone(), sonnet.clone()]).await;
    assert_eq!(
        store
            .create_batch(&new_batch("r", 1, &haiku, 2, 6))
            .await
            .unwrap(),
        3
    );
    // Overlapping range: 2, 4, 6 are taken already; 8 and 10 are not.
    assert_eq!(
        store
            .create_batch(&new_batch("r", 2, &haiku, 0, 10))
            .await
            .unwrap(),
        3
    );
    let items: Vec<u64> = store
        .batch_items("r-b0002")
        .await
        .unwrap()
        .iter()
        .map(|i| i.seq)
        .collect();
    assert_eq!(items, [0, 8, 10]);
    assert_eq!(
        store.pending_groups("r").await.unwrap(),
        std::slice::from_ref(&sonnet)
    );
    // The batch's number within its run.
    let mut conn = fs.raw().await;
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM batches ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(seqs, [1, 2]);
}

#[tokio::test]
async fn an_empty_batch_is_stored_closed() {
    let fs = FileStore::new().await;
    let store = &fs.store;
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    imported_run(store, "r", 4, std::slice::from_ref(&haiku)).await;
    assert_eq!(
        store
            .create_batch(&new_batch("r", 1, &haiku, 0, 3))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .create_batch(&new_batch("r", 2, &haiku, 0, 3))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.batch_count("r").await.unwrap(), 2);
    let b2 = store.batches("r").await.unwrap().remove(1);
    assert_eq!((b2.state, b2.request_count), (BatchState::Collected, 0));
    assert!(store.batch_items("r-b0002").await.unwrap().is_empty());
}

#[tokio::test]
async fn batch_errors() {
    let fs = FileStore::new().await;
    let store = &fs.store;
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    imported_run(store, "r", 4, std::slice::from_ref(&haiku)).await;
    store
        .create_batch(&new_batch("r", 1, &haiku, 0, 1))
        .await
        .unwrap();
    // The same id twice.
    let err = store
        .create_batch(&new_batch("r", 1, &haiku, 2, 3))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err}");
    // The failed create left the requests pending.
    assert_eq!(
        store
            .pending_requests("r", &haiku, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        store
            .create_batch(&new_batch("nope", 1, &haiku, 0, 1))
            .await,
        Err(StoreError::NotFound(_))
    ));
    for result in [
        store.batch_items("nope").await.map(|_| ()),
        store
            .begin_submit("nope", at("2026-03-01T10:00:00Z"), None)
            .await
            .map(|_| ()),
        store.confirm_submit("nope", "x", "y").await,
        store.abort_submit("nope").await,
        store.set_provider_status("nope", "x").await,
        store.record_outcomes("nope", &[]).await,
        store.close_batch("nope", BatchState::Collected).await,
    ] {
        assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
    }
    // Closing into an open state makes no sense.
    let err = store
        .close_batch("r-b0001", BatchState::Submitted)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("r-b0001"), "{err}");
}

/// The SQL cut of a request for collection equals `collection_view` of the whole request, for
/// every shape of schema, citations and metadata.
#[tokio::test]
async fn items_to_collect_are_the_collection_view_of_the_items() {
    let store = memory_with_run().await;
    let g = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    let metadata = [
        None,
        Some(serde_json::json!({"seq": 1, "tags": ["a", "\"b\""], "deep": {"x": null}})),
        Some(serde_json::json!(true)),
        Some(serde_json::json!("text with \"quotes\" and ünïcode")),
        Some(serde_json::json!(12.5)),
        Some(serde_json::json!([])),
    ];
    let requests: Vec<_> = metadata
        .iter()
        .enumerate()
        .map(|(seq, meta)| {
            let mut r = new_request(seq as u64, &g);
            r.request.id = format!("q-{seq} \"odd\" id ✓");
            r.request.metadata = meta.clone();
            r.request.schema = (seq % 2 == 1).then(|| serde_json::json!({"type": "object"}));
            r.request.citations = seq % 3 == 0;
            r
        })
        .collect();
    store.insert_requests("r", &requests).await.unwrap();
    store.finish_import("r").await.unwrap();
    store
        .create_batch(&new_batch("r", 1, &g, 0, 5))
        .await
        .unwrap();
    let full = store.batch_items("r-b0001").await.unwrap();
    let cut = store.batch_items_to_collect("r-b0001").await.unwrap();
    assert_eq!(cut.len(), 6);
    for (full, cut) in full.iter().zip(&cut) {
        assert_eq!(
            (cut.seq, &cut.custom_id, cut.attempts),
            (full.seq, &full.custom_id, full.attempts)
        );
        assert_eq!(
            cut.request,
            volley_core::store::collection_view(&full.request)
        );
    }
}
