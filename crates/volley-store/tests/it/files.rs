//! File stores: migrations, reopening, newer schemas, two instances on one file.
use std::sync::Arc;

use sqlx::{Connection, SqliteConnection};
use volley_core::StoreError;
use volley_core::store::Store;
use volley_store::{SCHEMA_VERSION, SqliteStore};
use volley_types::{BatchState, ProviderKind, ResultStatus, RunState};

use crate::common::{at, done, group, imported_run, new_batch, new_request, new_run};

async fn raw(path: &std::path::Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_run_once_and_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("volley.db");
    let url = format!("sqlite://{}", path.display());
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    {
        let store = SqliteStore::open(&url).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
        imported_run(&store, "r", 5, std::slice::from_ref(&haiku)).await;
        store.close().await;
    }
    assert!(path.exists(), "parent folders are created");
    for location in [
        url.clone(),
        format!("sqlite:{}", path.display()),
        path.display().to_string(),
    ] {
        let store = SqliteStore::open(&location).await.unwrap();
        assert_eq!(store.location(), location);
        assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
        assert_eq!(store.run("r").await.unwrap().unwrap().total, 5);
        store.close().await;
    }
    let mut conn = raw(&path).await;
    let versions: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, applied_at FROM schema_migrations")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions.len() as i64, volley_store::SCHEMA_VERSION);
    assert_eq!(versions[0].0, 1);
    assert!(versions[0].1.parse::<jiff::Timestamp>().is_ok());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("volley.db");
    let url = format!("sqlite://{}", path.display());
    SqliteStore::open(&url).await.unwrap().close().await;
    let mut conn = raw(&path).await;
    sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'later')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    match SqliteStore::open(&url).await {
        Err(StoreError::NewerSchema {
            location,
            found,
            supported,
        }) => {
            assert_eq!(location, url);
            assert_eq!(found, 99);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn open_errors_name_the_location() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let location = format!("sqlite://{}/volley.db", blocker.display());
    let err = SqliteStore::open(&location).await.unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err}");
    assert!(err.to_string().contains(&location), "{err}");

    // Not a database at all.
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
    let err = SqliteStore::open(garbage.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("garbage.db"), "{err}");

    // Unsupported URLs; a password never shows.
    let err = SqliteStore::open("postgres://volley:hunter2@db/volley")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("postgres://volley:***@db/volley"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn two_instances_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("volley.db").display());
    // Both open (and migrate) at the same time.
    let (a, b) = tokio::join!(SqliteStore::open(&url), SqliteStore::open(&url));
    let (a, b) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");

    // `volley run` writes through one, `volley status` reads through the other.
    imported_run(a.as_ref(), "r", 40, std::slice::from_ref(&haiku)).await;
    assert_eq!(b.run("r").await.unwrap().unwrap().total, 40);
    assert_eq!(b.counts("r").await.unwrap().pending, 40);

    // Both write at once: batches through `a`, a second run through `b`.
    let writer_a = {
        let a = a.clone();
        let haiku = haiku.clone();
        tokio::spawn(async move {
            for n in 0..10u64 {
                let batch = new_batch("r", n + 1, &haiku, n * 4, n * 4 + 3);
                assert_eq!(a.create_batch(&batch).await.unwrap(), 4);
                a.begin_submit(&batch.id, at("2026-03-01T10:00:00Z"), None)
                    .await
                    .unwrap();
                a.confirm_submit(&batch.id, &format!("remote-{n}"), "in_progress")
                    .await
                    .unwrap();
                let outcomes: Vec<_> = (n * 4..n * 4 + 4)
                    .map(|s| done(s, 1, ResultStatus::Succeeded, 0.01))
                    .collect();
                a.record_outcomes(&batch.id, &outcomes).await.unwrap();
                a.close_batch(&batch.id, BatchState::Collected)
                    .await
                    .unwrap();
            }
        })
    };
    let writer_b = {
        let b = b.clone();
        let haiku = haiku.clone();
        tokio::spawn(async move {
            b.create_run(&new_run("s", None, "2026-03-01T11:00:00Z"))
                .await
                .unwrap();
            for seq in 0..50 {
                b.insert_requests("s", &[new_request(seq, &haiku)])
                    .await
                    .unwrap();
                b.counts("r").await.unwrap();
            }
            b.finish_import("s").await.unwrap();
        })
    };
    writer_a.await.unwrap();
    writer_b.await.unwrap();

    for store in [&a, &b] {
        let counts = store.counts("r").await.unwrap();
        assert_eq!((counts.succeeded, counts.pending), (40, 0));
        assert_eq!(store.run("s").await.unwrap().unwrap().total, 50);
        assert_eq!(store.batches("r").await.unwrap().len(), 10);
        assert_eq!(
            store
                .remote_ids(ProviderKind::Anthropic)
                .await
                .unwrap()
                .len(),
            10
        );
    }
    b.set_run_state("r", RunState::Completed).await.unwrap();
    assert_eq!(
        a.run("r").await.unwrap().unwrap().state,
        RunState::Completed
    );
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn memory_stores_are_private() {
    let a = SqliteStore::open("sqlite::memory:").await.unwrap();
    let b = SqliteStore::open("sqlite::memory:").await.unwrap();
    a.create_run(&new_run("r", None, "2026-03-01T10:00:00Z"))
        .await
        .unwrap();
    assert!(a.run("r").await.unwrap().is_some());
    assert!(b.run("r").await.unwrap().is_none());
    assert_eq!(a.schema_version().await.unwrap(), SCHEMA_VERSION);
}
