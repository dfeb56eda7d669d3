//! Cancel and delete intents (migration 0004): begin_intent, finish_intent, open_intents, and
//! how they sit next to the submit intent.
use volley_core::store::{IntentAction, IntentStart, Store};
use volley_types::{BatchState, ProviderKind, ResultStatus};

use crate::common::{FileStore, at, done, group, imported_run, new_batch};

async fn two_batches(fs: &FileStore) {
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    imported_run(&fs.store, "r", 4, std::slice::from_ref(&haiku)).await;
    for (n, first, last) in [(1, 0, 1), (2, 2, 3)] {
        fs.store
            .create_batch(&new_batch("r", n, &haiku, first, last))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_cancel_intent_claims_a_planned_batch_against_a_submit() {
    let fs = FileStore::new().await;
    two_batches(&fs).await;
    let t = at("2026-03-01T10:00:00Z");
    let start = fs
        .store
        .begin_intent("r-b0001", IntentAction::Cancel, t, None)
        .await
        .unwrap();
    assert_eq!(
        start,
        IntentStart::Open {
            state: BatchState::Planned,
            resumed: false
        }
    );
    // A process still driving the run cannot start submitting it now.
    assert!(fs.store.begin_submit("r-b0001", t, None).await.is_err());
    // Recording it again (a second cancel) finds it open.
    let again = fs
        .store
        .begin_intent("r-b0001", IntentAction::Cancel, t, None)
        .await
        .unwrap();
    assert_eq!(
        again,
        IntentStart::Open {
            state: BatchState::Planned,
            resumed: true
        }
    );
    // The other way round: a batch being submitted is busy for a cancel.
    fs.store.begin_submit("r-b0002", t, None).await.unwrap();
    let busy = fs
        .store
        .begin_intent("r-b0002", IntentAction::Cancel, t, None)
        .await
        .unwrap();
    assert_eq!(
        busy,
        IntentStart::Busy {
            state: BatchState::Submitting
        }
    );
    let open = fs.store.open_intents("r").await.unwrap();
    assert_eq!(open.len(), 1, "submit intents are not listed: {open:?}");
    assert_eq!(
        (open[0].batch_id.as_str(), open[0].action),
        ("r-b0001", IntentAction::Cancel)
    );
}

#[tokio::test]
async fn a_delete_intent_survives_closing_the_batch_until_it_is_finished() {
    let fs = FileStore::new().await;
    two_batches(&fs).await;
    let t = at("2026-03-01T10:00:00Z");
    fs.store.begin_submit("r-b0001", t, None).await.unwrap();
    fs.store
        .confirm_submit("r-b0001", "msgbatch_1", "in_progress")
        .await
        .unwrap();
    fs.store
        .record_outcomes(
            "r-b0001",
            &[
                done(0, 1, ResultStatus::Succeeded, 0.1),
                done(1, 1, ResultStatus::Succeeded, 0.1),
            ],
        )
        .await
        .unwrap();
    fs.store
        .begin_intent(
            "r-b0001",
            IntentAction::Delete,
            t,
            Some(r#"{"files":["a"]}"#),
        )
        .await
        .unwrap();
    // The files list is replaced when the intent is recorded again.
    fs.store
        .begin_intent(
            "r-b0001",
            IntentAction::Delete,
            t,
            Some(r#"{"files":["a","b"]}"#),
        )
        .await
        .unwrap();
    fs.store
        .close_batch("r-b0001", BatchState::Collected)
        .await
        .unwrap();
    let open = fs.store.open_intents("r").await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].action, IntentAction::Delete);
    assert_eq!(open[0].batch_state, BatchState::Collected);
    assert_eq!(open[0].detail.as_deref(), Some(r#"{"files":["a","b"]}"#));
    assert_eq!(open[0].started_at, t);

    fs.store
        .finish_intent("r-b0001", IntentAction::Delete)
        .await
        .unwrap();
    // Finishing twice, or an action that is not open, changes nothing.
    fs.store
        .finish_intent("r-b0001", IntentAction::Delete)
        .await
        .unwrap();
    fs.store
        .finish_intent("r-b0002", IntentAction::Cancel)
        .await
        .unwrap();
    assert!(fs.store.open_intents("r").await.unwrap().is_empty());
    let outcomes: Vec<(String, Option<String>)> = {
        let mut conn = fs.raw().await;
        sqlx::query_as("SELECT action, outcome FROM intents ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(
        outcomes,
        [
            ("submit".to_owned(), Some("created".to_owned())),
            ("delete".to_owned(), Some("done".to_owned()))
        ]
    );
}

#[tokio::test]
async fn migration_4_keeps_earlier_submit_intents() {
    // A store at version 3 with an open and a closed submit intent, upgraded by opening it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    {
        use sqlx::{Connection, SqliteConnection};
        let mut conn = SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        for sql in [
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_cost_cap.sql"),
            include_str!("../../migrations/sqlite/0003_enqueued_tokens.sql"),
        ] {
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 'x'), (2, 'x'), (3, 'x');
             INSERT INTO runs (id, created_at, state, options_json, updated_at)
                 VALUES ('r', 't', 'running', '{\"max_attempts\":3}', 't');
             INSERT INTO batches (id, run_id, seq, provider, model, state, first_seq, last_seq)
                 VALUES ('b1', 'r', 1, 'anthropic', 'm', 'submitting', 0, 0),
                        ('b2', 'r', 2, 'anthropic', 'm', 'submitted', 1, 1);
             INSERT INTO intents (run_id, batch_id, action, started_at, confirmed_at, outcome)
                 VALUES ('r', 'b1', 'submit', 't1', NULL, NULL),
                        ('r', 'b2', 'submit', 't2', 't3', 'created');",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = volley_store::SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        volley_store::SCHEMA_VERSION
    );
    // The open submit intent still blocks a second open intent on its batch.
    let busy = store
        .begin_intent("b1", IntentAction::Cancel, at("2026-03-01T10:00:00Z"), None)
        .await
        .unwrap();
    assert_eq!(
        busy,
        IntentStart::Busy {
            state: BatchState::Submitting
        }
    );
    let start = store
        .begin_intent("b2", IntentAction::Cancel, at("2026-03-01T10:00:00Z"), None)
        .await
        .unwrap();
    assert!(matches!(start, IntentStart::Open { resumed: false, .. }));
}
