//! Helpers: stores, runs, requests and outcomes.
use std::path::PathBuf;

use jiff::Timestamp;
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;
use volley_core::store::{Group, NewBatch, NewRequest, NewRun, Outcome, RunOptions, Store};
use volley_store::SqliteStore;
use volley_types::{Counts, Message, ProviderKind, Request, ResultStatus};

/// A store in a temporary folder; the folder lives as long as this value.
pub(crate) struct FileStore {
    pub(crate) store: SqliteStore,
    pub(crate) path: PathBuf,
    _dir: TempDir,
}

impl FileStore {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("volley.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        Self {
            store,
            path,
            _dir: dir,
        }
    }

    /// A raw connection, to look at tables the trait does not show.
    pub(crate) async fn raw(&self) -> SqliteConnection {
        SqliteConnection::connect(&format!("sqlite://{}", self.path.display()))
            .await
            .unwrap()
    }

    /// The run's counts and cost recomputed from the requests and results tables, to check the
    /// counters the store keeps.
    pub(crate) async fn recount(&self, run_id: &str) -> (Counts, f64) {
        let mut conn = self.raw().await;
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM requests \
             WHERE run = (SELECT key FROM runs WHERE id = $1) GROUP BY state",
        )
        .bind(run_id)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut counts = Counts::default();
        for (state, n) in rows {
            let n = n as u64;
            counts.total += n;
            match state_status(state) {
                Some(status) => counts.add(status, n),
                None => counts.pending += n,
            }
        }
        let cost: f64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(cost_usd), 0.0) FROM results \
             WHERE id / 4294967296 = (SELECT key FROM runs WHERE id = $1)",
        )
        .bind(run_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        (counts, cost)
    }

    /// Asserts that the store's counts and cost agree with [`FileStore::recount`].
    pub(crate) async fn check_counts(&self, run_id: &str) {
        let (counts, cost) = self.recount(run_id).await;
        assert_eq!(self.store.counts(run_id).await.unwrap(), counts);
        let stored = self.store.run_cost(run_id).await.unwrap();
        assert!(
            (stored - cost).abs() < 1e-9,
            "run_cost {stored} vs results {cost}"
        );
    }

    /// `SELECT COUNT(*)` of a query.
    pub(crate) async fn count(&self, sql: &'static str) -> i64 {
        let mut conn = self.raw().await;
        sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
    }
}

/// The final status of a `requests.state` code (0 pending and 1 batched have none).
pub(crate) fn state_status(code: i64) -> Option<ResultStatus> {
    match code {
        2 => Some(ResultStatus::Succeeded),
        3 => Some(ResultStatus::Failed),
        4 => Some(ResultStatus::Canceled),
        5 => Some(ResultStatus::Expired),
        6 => Some(ResultStatus::Skipped),
        _ => None,
    }
}

pub(crate) async fn memory() -> SqliteStore {
    SqliteStore::open("sqlite::memory:").await.unwrap()
}

/// A fresh in-memory store holding one empty run, `r`.
pub(crate) async fn memory_with_run() -> SqliteStore {
    let store = memory().await;
    store
        .create_run(&new_run("r", None, "2026-03-01T10:00:00Z"))
        .await
        .unwrap();
    store
}

pub(crate) fn new_run(id: &str, fingerprint: Option<&str>, at: &str) -> NewRun {
    NewRun {
        id: id.into(),
        created_at: at.parse::<Timestamp>().unwrap(),
        input: Some("input.jsonl".into()),
        fingerprint: fingerprint.map(Into::into),
        out: Some(format!("volley-results/{id}")),
        options: options(),
    }
}

/// Run options that differ from the defaults.
pub(crate) fn options() -> RunOptions {
    RunOptions {
        max_attempts: 5,
        max_cost_usd: Some(12.5),
        ..RunOptions::default()
    }
}

pub(crate) fn group(provider: ProviderKind, model: &str) -> Group {
    Group {
        provider,
        model: model.into(),
    }
}

pub(crate) fn new_request(seq: u64, group: &Group) -> NewRequest {
    NewRequest {
        seq,
        custom_id: format!("c-{seq}"),
        provider: group.provider,
        request: Request {
            id: format!("q-{seq}"),
            model: group.model.clone(),
            messages: vec![Message::user(format!("question {seq}"))],
            system: Some("be brief".into()),
            max_tokens: 100 + seq as u32,
            temperature: Some(0.0),
            schema: None,
            citations: false,
            metadata: Some(serde_json::json!({"seq": seq})),
        },
        est_input_tokens: 10 + seq,
        wire_bytes: 200 + seq,
        worst_cost_usd: 0.001,
    }
}

/// Creates run `run_id` and imports `n` requests; seq `i` belongs to `groups[i % groups.len()]`.
pub(crate) async fn imported_run(store: &dyn Store, run_id: &str, n: u64, groups: &[Group]) {
    store
        .create_run(&new_run(run_id, Some("fp"), "2026-03-01T10:00:00Z"))
        .await
        .unwrap();
    let requests: Vec<NewRequest> = (0..n)
        .map(|seq| new_request(seq, &groups[seq as usize % groups.len()]))
        .collect();
    for chunk in requests.chunks(7) {
        store.insert_requests(run_id, chunk).await.unwrap();
    }
    store.finish_import(run_id).await.unwrap();
}

pub(crate) fn new_batch(run_id: &str, n: u64, group: &Group, first: u64, last: u64) -> NewBatch {
    NewBatch {
        id: format!("{run_id}-b{n:04}"),
        run_id: run_id.into(),
        group: group.clone(),
        first_seq: first,
        last_seq: last,
    }
}

pub(crate) fn done(seq: u64, attempt: u32, status: ResultStatus, cost_usd: f64) -> Outcome {
    Outcome::Final {
        seq,
        attempt,
        status,
        cost_usd,
        line: format!(r#"{{"id":"q-{seq}","status":"{status}"}}"#),
    }
}

pub(crate) fn retry(seq: u64, attempt: u32) -> Outcome {
    Outcome::Retry {
        seq,
        attempt,
        error: r#"{"kind":"server","message":"try again"}"#.into(),
    }
}

pub(crate) fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}
