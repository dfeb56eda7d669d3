//! File stores: migrations, reopening, newer schemas, two instances on one file.
use std::sync::Arc;

use sqlx::{AssertSqlSafe, Connection, SqliteConnection};
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

/// A store written by schema version 3 (text keys, one row update per state change), with a
/// request in every state, keeps every request, result, attempt count and cost through
/// migration 0005.
#[tokio::test]
async fn a_version_3_store_migrates_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("volley.db");
    let url = format!("sqlite://{}", path.display());
    {
        let mut conn = SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        sqlx::raw_sql(concat!(
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_cost_cap.sql"),
            include_str!("../../migrations/sqlite/0003_enqueued_tokens.sql"),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let body = |seq: u64| {
            serde_json::to_string(
                &new_request(seq, &group(ProviderKind::Anthropic, "claude-haiku-4-5")).request,
            )
            .unwrap()
        };
        // Requests 0–1 pending (1 after a retry), 2–3 in submitted batch b1 (3 already
        // decided), 4 in planned batch b2; batch b1 had one earlier retry of request 1.
        let script = format!(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 't'), (2, 't'), (3, 't');
             INSERT INTO runs (id, created_at, state, options_json, total, updated_at)
               VALUES ('r', '2026-03-01T10:00:00.000Z', 'running', '{{\"max_attempts\":3}}', 5, 't');
             INSERT INTO batches (id, run_id, seq, provider, model, state, request_count,
                                  first_seq, last_seq, provider_batch_id, cost_usd,
                                  est_input_tokens, reserved_usd)
               VALUES ('r-b0001', 'r', 1, 'anthropic', 'claude-haiku-4-5', 'submitted', 2, 1, 3,
                       'msgbatch_1', 0, 25, 0.5),
                      ('r-b0002', 'r', 2, 'anthropic', 'claude-haiku-4-5', 'planned', 1, 4, 4,
                       NULL, 0, 14, 0);
             INSERT INTO requests (run_id, seq, id, custom_id, provider, model, est_input_tokens,
                                   max_tokens, wire_bytes, state, attempts, batch_id)
               VALUES ('r', 0, 'q-0', 'c-0', 'anthropic', 'claude-haiku-4-5', 10, 100, 200,
                       'pending', 0, NULL),
                      ('r', 1, 'q-1', 'c-1', 'anthropic', 'claude-haiku-4-5', 11, 101, 201,
                       'pending', 1, NULL),
                      ('r', 2, 'q-2', 'c-2', 'anthropic', 'claude-haiku-4-5', 12, 102, 202,
                       'batched', 1, 'r-b0001'),
                      ('r', 3, 'q-3', 'c-3', 'anthropic', 'claude-haiku-4-5', 13, 103, 203,
                       'succeeded', 1, 'r-b0001'),
                      ('r', 4, 'q-4', 'c-4', 'anthropic', 'claude-haiku-4-5', 14, 104, 204,
                       'batched', 0, 'r-b0002');
             INSERT INTO request_bodies (run_id, seq, body) VALUES
               ('r', 0, '{}'), ('r', 1, '{}'), ('r', 2, '{}'), ('r', 3, '{}'), ('r', 4, '{}');
             -- (the five bodies are the requests' JSON, filled in by format!)
             INSERT INTO results (run_id, seq, batch_id, status, cost_usd, line)
               VALUES ('r', 3, 'r-b0001', 'succeeded', 0.25, '{{\"id\":\"q-3\"}}');
             INSERT INTO run_counts VALUES ('r', 'succeeded', 1, 0.25);
             INSERT INTO attempts (run_id, seq, attempt, batch_id, status, error)
               VALUES ('r', 1, 1, 'r-b0001', 'retry', '{{\"why\":\"overloaded\"}}'),
                      ('r', 3, 1, 'r-b0001', 'succeeded', NULL);",
            body(0),
            body(1),
            body(2),
            body(3),
            body(4),
        );
        sqlx::raw_sql(AssertSqlSafe(script))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let counts = store.counts("r").await.unwrap();
    assert_eq!((counts.total, counts.succeeded, counts.pending), (5, 1, 4));
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    let pending: Vec<u64> = store
        .pending_requests("r", &haiku, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    assert_eq!(pending, [0, 1]);
    // The submitted batch lists its open request (attempt 1) and its decided one.
    let items = store.batch_items("r-b0001").await.unwrap();
    let listed: Vec<(u64, &str, u32)> = items
        .iter()
        .map(|i| (i.seq, i.custom_id.as_str(), i.attempts))
        .collect();
    assert_eq!(listed, [(2, "c-2", 1), (3, "c-3", 1)]);
    assert_eq!(items[0].request.id, "q-2");
    let planned = store.batch_items("r-b0002").await.unwrap();
    assert_eq!((planned[0].seq, planned[0].attempts), (4, 0));
    // The collection view of an old body was cut out of it by the migration.
    let to_collect = store.batch_items_to_collect("r-b0001").await.unwrap();
    assert_eq!(
        to_collect[0].request,
        volley_core::store::collection_view(&items[0].request)
    );
    assert_eq!(
        store.results("r", None, 10).await.unwrap(),
        [(3, r#"{"id":"q-3"}"#.to_owned())]
    );
    // Request 2 now succeeds in batch 1, whose cost includes the result from before.
    store
        .record_outcomes("r-b0001", &[done(2, 1, ResultStatus::Succeeded, 0.5)])
        .await
        .unwrap();
    store
        .close_batch("r-b0001", BatchState::Collected)
        .await
        .unwrap();
    let b1 = &store.batches("r").await.unwrap()[0];
    assert_eq!(b1.cost_usd, 0.75);
    // Request 1's next submission is its second attempt; the retry row survived.
    let mut conn = raw(&path).await;
    let retries: Vec<(i64, i64)> = sqlx::query_as("SELECT seq, retries FROM requests ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(retries, [(0, 0), (1, 1), (2, 0), (3, 0), (4, 0)]);
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM attempts")
            .fetch_one(&mut conn)
            .await
            .unwrap(),
        1
    );
}
