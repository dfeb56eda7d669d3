//! Import and planning reads: insert_requests, counts, pending_groups, pending_requests.
use volley_core::StoreError;
use volley_core::store::{PendingRequest, Store};
use volley_types::{Counts, ProviderKind};

use crate::common::{FileStore, group, imported_run, memory, memory_with_run, new_request};

#[tokio::test]
async fn counts_follow_the_import() {
    let store = memory_with_run().await;
    let g = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    assert_eq!(store.counts("r").await.unwrap(), Counts::default());
    let requests: Vec<_> = (0..5).map(|s| new_request(s, &g)).collect();
    store.insert_requests("r", &requests[..3]).await.unwrap();
    // While importing, the total is what has arrived.
    let counts = store.counts("r").await.unwrap();
    assert_eq!((counts.total, counts.pending), (3, 3));
    store.insert_requests("r", &requests[3..]).await.unwrap();
    store.insert_requests("r", &[]).await.unwrap();
    store.finish_import("r").await.unwrap();
    let counts = store.counts("r").await.unwrap();
    assert_eq!(
        counts,
        Counts {
            total: 5,
            pending: 5,
            ..Counts::default()
        }
    );
}

#[tokio::test]
async fn a_repeated_chunk_is_ignored() {
    let store = memory_with_run().await;
    let g = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    let requests: Vec<_> = (0..4).map(|s| new_request(s, &g)).collect();
    store.insert_requests("r", &requests).await.unwrap();
    store.insert_requests("r", &requests).await.unwrap();
    assert_eq!(store.counts("r").await.unwrap().total, 4);
    // Custom ids are not checked here: the import derives them from ids it has checked are
    // unique (decision 0011), and a second index over them cost a B-tree insert a request.
}

#[tokio::test]
async fn requests_need_an_existing_run() {
    let store = memory().await;
    let g = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    let err = store
        .insert_requests("missing", &[new_request(0, &g)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn large_chunks_span_several_statements() {
    // More rows than one multi-row INSERT holds, in one call.
    let store = memory_with_run().await;
    let g = group(ProviderKind::Gemini, "gemini-2.5-flash");
    let requests: Vec<_> = (0..2_345).map(|s| new_request(s, &g)).collect();
    store.insert_requests("r", &requests).await.unwrap();
    store.finish_import("r").await.unwrap();
    assert_eq!(store.counts("r").await.unwrap().pending, 2_345);
    let page = store
        .pending_requests("r", &g, Some(2_339), 100)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [2_340, 2_341, 2_342, 2_343, 2_344]
    );
}

#[tokio::test]
async fn pending_groups_and_pages() {
    let store = memory().await;
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    let mini = group(ProviderKind::OpenAi, "gpt-5-mini");
    let flash = group(ProviderKind::Gemini, "gemini-2.5-flash");
    imported_run(
        &store,
        "r",
        30,
        &[mini.clone(), haiku.clone(), flash.clone()],
    )
    .await;
    // Another run's requests never show.
    imported_run(&store, "other", 3, &[group(ProviderKind::OpenAi, "gpt-5")]).await;

    let groups = store.pending_groups("r").await.unwrap();
    assert_eq!(groups, [haiku.clone(), flash.clone(), mini.clone()]);

    let first = store.pending_requests("r", &haiku, None, 4).await.unwrap();
    assert_eq!(
        first,
        [1, 4, 7, 10]
            .map(|seq| PendingRequest {
                seq,
                wire_bytes: 200 + seq,
                est_input_tokens: 10 + seq,
                max_tokens: 100 + seq,
            })
            .to_vec()
    );
    let next = store
        .pending_requests("r", &haiku, Some(10), 100)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|p| p.seq).collect::<Vec<_>>(),
        [13, 16, 19, 22, 25, 28]
    );
    assert!(
        store
            .pending_requests("r", &haiku, Some(28), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .pending_requests("r", &group(ProviderKind::Anthropic, "other"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_planner_page_query_uses_the_index() {
    let fs = FileStore::new().await;
    let g = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    imported_run(&fs.store, "r", 10, std::slice::from_ref(&g)).await;
    let mut conn = fs.raw().await;
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT seq, wire_bytes, est_input_tokens, max_tokens \
         FROM requests INDEXED BY requests_pending \
         WHERE run = 1 AND grp = 1 AND state = 0 AND seq > 3 ORDER BY seq LIMIT 10",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let detail: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
    assert!(
        detail.iter().any(|d| d.contains("requests_pending")),
        "{detail:?}"
    );
    assert!(
        !detail.iter().any(|d| d.contains("TEMP B-TREE")),
        "{detail:?}"
    );
}

#[tokio::test]
async fn a_seq_past_what_a_run_can_hold_is_refused_and_nothing_is_stored() {
    let store = memory_with_run().await;
    let g = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    // Bodies and results are keyed by run * 2^32 + seq (migration 0006).
    let requests = [new_request(0, &g), new_request(1 << 32, &g)];
    let err = store.insert_requests("r", &requests).await.unwrap_err();
    assert!(err.to_string().contains("4294967296"), "{err}");
    assert_eq!(store.counts("r").await.unwrap().total, 0);
}
