//! Runs: create, look up (exact and prefix), list, resume, state.
use volley_core::StoreError;
use volley_core::store::Store;
use volley_types::{ProviderKind, RunState};

use crate::common::{group, imported_run, memory, memory_with_run, new_request, new_run, options};

#[tokio::test]
async fn create_and_read_a_run() {
    let store = memory().await;
    store
        .create_run(&new_run(
            "20260301-100000-abcd",
            Some("fp"),
            "2026-03-01T10:00:00Z",
        ))
        .await
        .unwrap();
    let run = store.run("20260301-100000-abcd").await.unwrap().unwrap();
    assert_eq!(run.id, "20260301-100000-abcd");
    assert_eq!(run.state, RunState::Planning);
    assert_eq!(run.created_at, "2026-03-01T10:00:00.000Z");
    assert_eq!(run.input.as_deref(), Some("input.jsonl"));
    assert_eq!(run.fingerprint.as_deref(), Some("fp"));
    assert_eq!(
        run.out.as_deref(),
        Some("volley-results/20260301-100000-abcd")
    );
    assert_eq!(run.options, options());
    assert_eq!(run.total, 0);
    assert_eq!(store.run("nope").await.unwrap(), None);
    assert_eq!(store.run("").await.unwrap(), None);
}

#[tokio::test]
async fn duplicate_run_ids_are_refused() {
    let store = memory().await;
    let run = new_run("r1", None, "2026-03-01T10:00:00Z");
    store.create_run(&run).await.unwrap();
    let err = store.create_run(&run).await.unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err}");
    assert!(err.to_string().contains("sqlite::memory:"), "{err}");
}

#[tokio::test]
async fn a_unique_prefix_finds_a_run_and_an_ambiguous_one_says_so() {
    let store = memory().await;
    for (id, at) in [
        ("20260301-100000-aaaa", "2026-03-01T10:00:00Z"),
        ("20260301-100000-aabb", "2026-03-01T10:00:00.5Z"),
        ("20260302-090000-cccc", "2026-03-02T09:00:00Z"),
    ] {
        store.create_run(&new_run(id, None, at)).await.unwrap();
    }
    let run = store.run("20260302").await.unwrap().unwrap();
    assert_eq!(run.id, "20260302-090000-cccc");
    let run = store.run("20260301-100000-aab").await.unwrap().unwrap();
    assert_eq!(run.id, "20260301-100000-aabb");
    assert_eq!(store.run("2027").await.unwrap(), None);

    let err = store.run("20260301").await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::NotFound(_)), "{message}");
    assert!(message.contains("ambiguous"), "{message}");
    assert!(message.contains("20260301-100000-aaaa"), "{message}");
    assert!(message.contains("20260301-100000-aabb"), "{message}");

    // An exact id wins even when it is also a prefix of another id.
    store
        .create_run(&new_run("20260301-100000-aa", None, "2026-03-03T00:00:00Z"))
        .await
        .unwrap();
    let run = store.run("20260301-100000-aa").await.unwrap().unwrap();
    assert_eq!(run.id, "20260301-100000-aa");
    // Prefix matching is literal: LIKE wildcards mean nothing.
    assert_eq!(store.run("2026030_").await.unwrap(), None);
    assert_eq!(store.run("%").await.unwrap(), None);
}

#[tokio::test]
async fn runs_are_listed_newest_first() {
    let store = memory().await;
    store
        .create_run(&new_run("b", None, "2026-03-01T10:00:00.5Z"))
        .await
        .unwrap();
    store
        .create_run(&new_run("a", None, "2026-03-01T10:00:00Z"))
        .await
        .unwrap();
    store
        .create_run(&new_run("c", None, "2026-03-01T10:00:01Z"))
        .await
        .unwrap();
    let ids: Vec<String> = store
        .runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["c", "b", "a"]);
}

#[tokio::test]
async fn run_state_changes_and_unknown_runs_are_not_found() {
    let store = memory_with_run().await;
    store.set_run_state("r", RunState::Running).await.unwrap();
    assert_eq!(
        store.run("r").await.unwrap().unwrap().state,
        RunState::Running
    );
    store
        .set_run_state("r", RunState::Interrupted)
        .await
        .unwrap();
    assert_eq!(
        store.run("r").await.unwrap().unwrap().state,
        RunState::Interrupted
    );
    assert!(matches!(
        store.set_run_state("x", RunState::Running).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.finish_import("x").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.counts("x").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn resumable_run_is_the_newest_unfinished_imported_run() {
    let store = memory().await;
    let g = group(ProviderKind::Anthropic, "claude-haiku-4-5");

    // Not imported yet: not resumable.
    store
        .create_run(&new_run("r1", Some("fp"), "2026-03-01T10:00:00Z"))
        .await
        .unwrap();
    store
        .insert_requests("r1", &[new_request(0, &g)])
        .await
        .unwrap();
    assert_eq!(store.resumable_run("fp").await.unwrap(), None);
    store.finish_import("r1").await.unwrap();
    assert_eq!(store.resumable_run("fp").await.unwrap().unwrap().id, "r1");

    // A newer imported run with the same fingerprint wins; other fingerprints never match.
    store
        .create_run(&new_run("r2", Some("fp"), "2026-03-01T11:00:00Z"))
        .await
        .unwrap();
    store.finish_import("r2").await.unwrap();
    store
        .create_run(&new_run("r3", Some("other"), "2026-03-01T12:00:00Z"))
        .await
        .unwrap();
    store.finish_import("r3").await.unwrap();
    assert_eq!(store.resumable_run("fp").await.unwrap().unwrap().id, "r2");

    // Interrupted and failed runs resume; completed and canceled ones do not.
    store
        .set_run_state("r2", RunState::Interrupted)
        .await
        .unwrap();
    assert_eq!(store.resumable_run("fp").await.unwrap().unwrap().id, "r2");
    store.set_run_state("r2", RunState::Failed).await.unwrap();
    assert_eq!(store.resumable_run("fp").await.unwrap().unwrap().id, "r2");
    store
        .set_run_state("r2", RunState::Completed)
        .await
        .unwrap();
    assert_eq!(store.resumable_run("fp").await.unwrap().unwrap().id, "r1");
    store.set_run_state("r1", RunState::Canceled).await.unwrap();
    assert_eq!(store.resumable_run("fp").await.unwrap(), None);
    assert_eq!(store.resumable_run("nope").await.unwrap(), None);
}

#[tokio::test]
async fn finish_import_records_the_total() {
    let store = memory().await;
    let g = group(ProviderKind::OpenAi, "gpt-5-mini");
    imported_run(&store, "r", 25, std::slice::from_ref(&g)).await;
    let run = store.run("r").await.unwrap().unwrap();
    assert_eq!(run.total, 25);
    assert_eq!(store.runs().await.unwrap()[0].total, 25);
}
