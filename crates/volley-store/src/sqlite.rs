//! [`SqliteStore`]: the embedded store, one SQLite file in WAL mode.
//!
//! Every trait method is one transaction. Writes go through a pool of one connection and start
//! with `BEGIN IMMEDIATE`, so a write transaction never has to upgrade a read lock (which SQLite
//! refuses with `SQLITE_BUSY` instead of waiting) and writers in one process queue in order;
//! writers in other processes wait up to [`BUSY_TIMEOUT`]. Reads use a separate pool and run
//! next to the writer thanks to WAL.
//!
//! The SQL uses `$n` placeholders, `ON CONFLICT … DO NOTHING / DO UPDATE` and string or JSON
//! aggregation, which SQLite and Postgres both accept, so a Postgres store can share most
//! statements. The generated multi-row statements are the exception: they use `?` (see
//! [`values`]).
//!
//! Scale (a million requests per run) shapes the rest: multi-row writes in a few cached shapes
//! ([`pieces`]), request bodies apart from the often-updated request rows, final counts and
//! costs kept in `run_counts` instead of counted, and bulk reads returned as one row per page.
use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::fmt::temporal::DateTimePrinter;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite, Transaction};
use volley_core::StoreError;
use volley_core::store::{
    Admission, BatchItem, BatchRecord, Group, IntentAction, IntentStart, NewBatch, NewRequest,
    NewRun, OpenIntent, Outcome, PendingRequest, RunOptions, RunRecord, Store, collection_view,
};
use volley_types::{BatchState, Counts, ProviderKind, Request, ResultStatus, RunState};

use crate::checkpoint::Checkpointer;
use crate::location::{self, Location};
use crate::migrate::{self, MigrateError};

/// How long a write waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call waits for a connection of this process (the writer is shared).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(300);
/// Reader connections per store.
const READERS: u32 = 4;
/// Most rows per multi-row statement (at most 10 parameters a row; SQLite allows 32 766).
const MAX_ROWS: usize = 512;
/// Prepared statements kept per connection: the multi-row shapes of [`pieces`] and the rest.
const STATEMENT_CACHE: usize = 256;

/// Rows per JSON page read by [`Store::batch_items`] and [`Store::results`].
///
/// A page is one `group_concat` over an `ORDER BY … LIMIT` subquery. The aggregate itself has
/// no `ORDER BY`: that would make SQLite copy every row's text into a sorter before
/// concatenating (a body page is megabytes), so the page is sorted by seq after parsing
/// instead (it comes out in order in practice; the sort only makes that a guarantee).
const PAGE: u64 = 5_000;

/// Timestamps are stored as fixed-width RFC 3339 (UTC, milliseconds), so text order is time order.
const PRINTER: DateTimePrinter = DateTimePrinter::new().precision(Some(3));

fn stamp(at: Timestamp) -> String {
    PRINTER.timestamp_to_string(&at)
}

fn now() -> String {
    stamp(Timestamp::now())
}

/// An unsigned count or position as SQL's signed 64-bit integer (saturating; no real value is
/// anywhere near `i64::MAX`).
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}: {v}")))
}

/// The embedded SQLite store.
///
/// Cheap to clone (the pools are shared). Several processes may open the same file at once:
/// `volley status` reads while `volley run` writes.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The location as given (credentials redacted), for messages.
    location: String,
    /// One connection: SQLite has one writer at a time anyway.
    writer: SqlitePool,
    /// WAL readers; the writer pool itself for an in-memory store.
    reader: SqlitePool,
    /// Checkpoints the WAL next to the writer (a file store only).
    checkpointer: Option<Checkpointer>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `location` and brings its schema up to date.
    ///
    /// Accepts `sqlite://path` (`sqlite:///abs/path` for an absolute one), `sqlite:path`, a
    /// plain path, and `sqlite::memory:` for a private in-memory store. Missing parent folders
    /// are created.
    pub async fn open(location: &str) -> Result<Self, StoreError> {
        let shown = location::redact(location);
        let fail = |message: String| StoreError::Database {
            location: shown.clone(),
            message,
        };
        let (writer, reader, checkpointer) = match location::parse(location).map_err(fail)? {
            Location::Memory => {
                let options = SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(|e| fail(e.to_string()))?
                    .statement_cache_capacity(STATEMENT_CACHE)
                    .foreign_keys(true)
                    .busy_timeout(BUSY_TIMEOUT);
                // The database lives as long as its connection: keep exactly one, forever.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(|e| fail(format!("open: {e}{}", storage_hint(&e, &shown))))?;
                (pool.clone(), pool, None)
            }
            Location::File(path) => {
                create_parent(&path).map_err(&fail)?;
                let options = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(BUSY_TIMEOUT)
                    .statement_cache_capacity(STATEMENT_CACHE)
                    .pragma("temp_store", "memory")
                    // Checkpoint every 160 MB of WAL instead of every 4 MB: a page updated
                    // many times in between is copied back once (import and collection
                    // rewrite the same pages again and again). 40 MB → 160 MB: a million
                    // requests 56.4–56.6 s → 48.0–53.2 s (bench/RESULTS.md); the price is
                    // up to ~160 MB more disk while a run writes. Most pages are copied
                    // before that by the checkpoint task (checkpoint.rs), so this one, run
                    // in the writer's commit, is the backstop and finds little left to copy.
                    .pragma("wal_autocheckpoint", "40000")
                    // Readers: 2 MiB of page cache each (they read ranges once, in order).
                    .pragma("cache_size", "-2048");
                // The writer: 16 MiB of page cache (bounded, so memory stays flat). Its writes
                // go in key order, so they touch few pages; 64 MiB bought no speed at a
                // million requests and cost a quarter of the memory target.
                let writer = connect_writer(options.clone().pragma("cache_size", "-16384"))
                    .await
                    .map_err(|e| fail(format!("open: {e}{}", storage_hint(&e, &shown))))?;
                let checkpointer = Checkpointer::start(options.clone());
                let reader = SqlitePoolOptions::new()
                    .max_connections(READERS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options);
                (writer, reader, Some(checkpointer))
            }
        };
        let store = Self {
            location: shown,
            writer,
            reader,
            checkpointer,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The store's location as shown in messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The schema version stored in the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(self.db("connect"))?;
        migrate::current_version(&mut conn)
            .await
            .map_err(self.db("read the schema version"))
    }

    /// Closes the connections (waits for running calls to finish).
    pub async fn close(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.close().await;
        }
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await.map_err(self.db("connect"))?;
        migrate::migrate(&mut conn, &now())
            .await
            .map_err(|e| match e {
                MigrateError::Newer(found) => StoreError::NewerSchema {
                    location: self.location.clone(),
                    found,
                    supported: migrate::LATEST,
                },
                MigrateError::Database(e) => StoreError::Database {
                    location: self.location.clone(),
                    message: format!(
                        "migrate the schema: {e}{}",
                        storage_hint(&e, &self.location)
                    ),
                },
            })
    }

    /// Maps a sqlx error to [`StoreError::Database`], naming the location and the operation.
    fn db(&self, what: &'static str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |e| StoreError::Database {
            message: format!("{what}: {e}{}", storage_hint(&e, &self.location)),
            location: self.location.clone(),
        }
    }

    /// A write transaction that holds SQLite's write lock from its first statement.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.db("begin a write"))
    }

    async fn commit(&self, tx: Transaction<'static, Sqlite>) -> Result<(), StoreError> {
        tx.commit().await.map_err(self.db("commit"))?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        Ok(())
    }

    /// A batch as the store's calls need it, inside their transaction.
    async fn batch_row(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        batch_id: &str,
    ) -> Result<BatchRow, StoreError> {
        let row = sqlx::query(
            "SELECT b.key, b.run_id, r.key, b.state, b.provider_batch_id, b.first_seq, \
             b.last_seq FROM batches b JOIN runs r ON r.id = b.run_id WHERE b.id = $1",
        )
        .bind(batch_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(self.db("read a batch"))?
        .ok_or_else(|| StoreError::NotFound(format!("batch `{batch_id}`")))?;
        let get = |e: sqlx::Error| StoreError::Corrupt(format!("batch {batch_id}: {e}"));
        let state: String = row.try_get(3).map_err(get)?;
        Ok(BatchRow {
            key: row.try_get(0).map_err(get)?,
            run_id: row.try_get(1).map_err(get)?,
            run: row.try_get(2).map_err(get)?,
            state: BatchState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("batch {batch_id}: state `{state}`")))?,
            remote: row.try_get(4).map_err(get)?,
            first_seq: row.try_get(5).map_err(get)?,
            last_seq: row.try_get(6).map_err(get)?,
        })
    }

    /// Closes a batch's open submit intent with its outcome (`created` or `aborted`); a no-op
    /// when none is open. Cancel and delete intents are closed by [`Store::finish_intent`].
    async fn close_intent(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        batch_id: &str,
        outcome: &str,
        at: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE intents SET confirmed_at = $2, outcome = $3 \
             WHERE batch_id = $1 AND action = 'submit' AND outcome IS NULL",
        )
        .bind(batch_id)
        .bind(at)
        .bind(outcome)
        .execute(&mut **tx)
        .await
        .map_err(self.db("close a submit intent"))?;
        Ok(())
    }

    /// Releases a batch's open reservation (ledger 'release'); a no-op when none is open.
    async fn release_reservation(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        batch_id: &str,
        at: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ledger (run_id, batch_id, kind, amount_usd, created_at) \
             SELECT run_id, id, 'release', reserved_usd, $2 FROM batches \
             WHERE id = $1 AND reserved_usd > 0",
        )
        .bind(batch_id)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(self.db("release a reservation"))?;
        sqlx::query("UPDATE batches SET reserved_usd = 0 WHERE id = $1")
            .bind(batch_id)
            .execute(&mut **tx)
            .await
            .map_err(self.db("release a reservation"))?;
        Ok(())
    }

    fn wrong_state(&self, batch_id: &str, state: BatchState, action: &str) -> StoreError {
        StoreError::Database {
            location: self.location.clone(),
            message: format!("batch {batch_id} is {}: cannot {action}", state.as_str()),
        }
    }

    /// A run's integer key (the per-request tables' run column); `NotFound` if there is none.
    async fn run_key<'e, E>(&self, executor: E, run_id: &str) -> Result<i64, StoreError>
    where
        E: sqlx::Executor<'e, Database = Sqlite>,
    {
        sqlx::query_scalar("SELECT key FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(executor)
            .await
            .map_err(self.db("read a run"))?
            .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}`")))
    }

    /// The key of a provider and model, made on first use.
    async fn group_key(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        provider: ProviderKind,
        model: &str,
    ) -> Result<i64, StoreError> {
        sqlx::query(
            "INSERT INTO groups (provider, model) VALUES ($1, $2) \
             ON CONFLICT (provider, model) DO NOTHING",
        )
        .bind(provider.as_str())
        .bind(model)
        .execute(&mut **tx)
        .await
        .map_err(self.db("record a model"))?;
        sqlx::query_scalar("SELECT key FROM groups WHERE provider = $1 AND model = $2")
            .bind(provider.as_str())
            .bind(model)
            .fetch_one(&mut **tx)
            .await
            .map_err(self.db("read a model"))
    }
}

impl SqliteStore {
    /// The items of a batch in pages of JSON (one row back per page, not per request), in one
    /// snapshot; `body` is the SQL for each request's JSON (over `request_bodies b`).
    async fn read_batch_items(
        &self,
        batch_id: &str,
        body: &'static str,
    ) -> Result<Vec<BatchItem>, StoreError> {
        let mut tx = self.reader.begin().await.map_err(self.db("read a batch"))?;
        let batch = self.batch_row(&mut tx, batch_id).await?;
        let sql = format!(
            "SELECT '[' || COALESCE(group_concat( \
                        '[' || seq || ',' || json_quote(custom_id) || ',' || attempts \
                        || ',' || body || ']', \
                        ','), '') || ']' \
             FROM (SELECT r.seq, b.custom_id, r.retries + $5 AS attempts, {body} AS body \
                   FROM requests r \
                   JOIN request_bodies b ON b.id = r.run * {SEQS_PER_RUN} + r.seq \
                   WHERE r.run = $1 AND r.seq > $2 AND r.seq <= $3 AND r.batch = $4 \
                   ORDER BY r.seq LIMIT $6)"
        );
        let mut items = Vec::new();
        loop {
            let after = items
                .last()
                .map_or(batch.first_seq - 1, |i: &BatchItem| int(i.seq));
            let json: String = sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
                .bind(batch.run)
                .bind(after)
                .bind(batch.last_seq)
                .bind(batch.key)
                .bind(batch.submitted())
                .bind(int(PAGE))
                .fetch_one(&mut *tx)
                .await
                .map_err(self.db("read a batch's requests"))?;
            let mut page: Vec<(u64, String, u32, Request)> = parse_page(&json, "batch items")?;
            page.sort_unstable_by_key(|item| item.0);
            let more = page.len() as u64 == PAGE;
            items.extend(
                page.into_iter()
                    .map(|(seq, custom_id, attempts, request)| BatchItem {
                        seq,
                        custom_id,
                        attempts,
                        request,
                    }),
            );
            if !more {
                break;
            }
        }
        tx.commit().await.map_err(self.db("read a batch"))?;
        Ok(items)
    }
}

/// A batch as the store's calls need it.
struct BatchRow {
    key: i64,
    run_id: String,
    run: i64,
    state: BatchState,
    remote: Option<String>,
    first_seq: i64,
    last_seq: i64,
}

impl BatchRow {
    /// 1 when the provider has (or had) the batch, so its submission counts as an attempt of
    /// each request in it; else 0. Bound into SQL as a number.
    fn submitted(&self) -> i64 {
        i64::from(matches!(
            self.state,
            BatchState::Submitted | BatchState::Collected
        ))
    }
}

/// The `requests.state` code of a final status. The SQL spells the others out: 0 pending,
/// 1 batched (migration 0005).
fn state_code(status: ResultStatus) -> i64 {
    match status {
        ResultStatus::Succeeded => 2,
        ResultStatus::Failed => 3,
        ResultStatus::Canceled => 4,
        ResultStatus::Expired => 5,
        ResultStatus::Skipped => 6,
    }
}

fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|e| format!("create folder {}: {e}", parent.display())),
        _ => Ok(()),
    }
}

/// `(?, ?, …), (…)`: `rows` tuples of `cols` anonymous placeholders.
///
/// Multi-row statements use `?`, not `$n`: SQLite looks a named parameter up by a linear scan
/// of the statement's parameter names, so binding thousands of `$n` costs O(n²) (half of the
/// import time in a profile). Their parameters are bound in textual order. A Postgres store
/// builds the same statements with `$n`.
///
/// Those statements say `INSERT OR FAIL` / `UPDATE OR FAIL`: with the default (`ABORT`) a
/// statement that writes many rows and may break a constraint copies every page it touches
/// into a statement journal, to undo itself alone (~5% of a run's CPU in a profile). Every
/// write here runs in a transaction that is rolled back whole on any error, so undoing one
/// statement is never needed.
fn values(rows: usize, cols: usize) -> String {
    let mut tuple = String::with_capacity(cols * 3 + 2);
    tuple.push('(');
    for col in 0..cols {
        tuple.push_str(if col == 0 { "?" } else { ", ?" });
    }
    tuple.push(')');
    let mut sql = String::with_capacity(rows * (tuple.len() + 2));
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&tuple);
    }
    sql
}

fn insert_requests_sql(rows: usize) -> String {
    format!(
        "INSERT OR FAIL INTO requests (run, seq, grp, est_input_tokens, max_tokens, wire_bytes, \
         worst_cost_usd) VALUES {} ON CONFLICT (run, seq) DO NOTHING",
        values(rows, 7)
    )
}

fn insert_bodies_sql(rows: usize) -> String {
    format!(
        "INSERT OR FAIL INTO request_bodies (id, custom_id, view, body) VALUES {} \
         ON CONFLICT (id) DO NOTHING",
        values(rows, 4)
    )
}

/// Requests per run the row ids of `request_bodies` and `results` leave room for: a row's id
/// is `run * SEQS_PER_RUN + seq` (migration 0006), so a run's rows are one id range.
const SEQS_PER_RUN: i64 = 1 << 32;

/// The `request_bodies` / `results` row id of request `seq` of run `run`.
fn row_id(run: i64, seq: u64) -> i64 {
    run * SEQS_PER_RUN + int(seq)
}

macro_rules! select_run {
    ($tail:literal) => {
        concat!(
            "SELECT id, state, created_at, input, fingerprint, out, options_json, total \
             FROM runs ",
            $tail
        )
    };
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord, sqlx::Error> {
    let id: String = row.try_get(0)?;
    let state: String = row.try_get(1)?;
    let options: String = row.try_get(6)?;
    let total: Option<i64> = row.try_get(7)?;
    let corrupt = |what: String| sqlx::Error::Decode(what.into());
    Ok(RunRecord {
        state: RunState::parse(&state)
            .ok_or_else(|| corrupt(format!("run {id}: unknown state `{state}`")))?,
        created_at: row.try_get(2)?,
        input: row.try_get(3)?,
        fingerprint: row.try_get(4)?,
        out: row.try_get(5)?,
        options: serde_json::from_str::<RunOptions>(&options)
            .map_err(|e| corrupt(format!("run {id}: options: {e}")))?,
        total: u64::try_from(total.unwrap_or(0)).unwrap_or(0),
        id,
    })
}

fn batch_from_row(row: &SqliteRow) -> Result<BatchRecord, StoreError> {
    let get = |e: sqlx::Error| StoreError::Corrupt(format!("batch row: {e}"));
    let id: String = row.try_get(0).map_err(get)?;
    let provider: String = row.try_get(2).map_err(get)?;
    let state: String = row.try_get(4).map_err(get)?;
    let started: Option<String> = row.try_get(8).map_err(get)?;
    let corrupt = |what: String| StoreError::Corrupt(format!("batch {id}: {what}"));
    Ok(BatchRecord {
        run_id: row.try_get(1).map_err(get)?,
        group: Group {
            provider: ProviderKind::from_str(&provider).map_err(&corrupt)?,
            model: row.try_get(3).map_err(get)?,
        },
        state: BatchState::parse(&state)
            .ok_or_else(|| corrupt(format!("unknown state `{state}`")))?,
        request_count: uint(row.try_get(5).map_err(get)?, "request count")?,
        provider_batch_id: row.try_get(6).map_err(get)?,
        provider_status: row.try_get(7).map_err(get)?,
        submit_started_at: started
            .map(|s| {
                s.parse::<Timestamp>()
                    .map_err(|e| corrupt(format!("submit_started_at `{s}`: {e}")))
            })
            .transpose()?,
        cost_usd: row.try_get(9).map_err(get)?,
        est_input_tokens: uint(row.try_get(10).map_err(get)?, "estimated tokens")?,
        id,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    async fn create_run(&self, run: &NewRun) -> Result<(), StoreError> {
        let options = serde_json::to_string(&run.options)
            .map_err(|e| StoreError::Corrupt(format!("run options: {e}")))?;
        let created_at = stamp(run.created_at);
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO runs (id, key, created_at, state, input, fingerprint, out, \
             options_json, total, updated_at) \
             SELECT $1, COALESCE(MAX(key), 0) + 1, $2, 'planning', $3, $4, $5, $6, NULL, $7 \
             FROM runs",
        )
        .bind(&run.id)
        .bind(&created_at)
        .bind(&run.input)
        .bind(&run.fingerprint)
        .bind(&run.out)
        .bind(&options)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(self.db("create a run"))?;
        self.commit(tx).await
    }

    async fn insert_requests(
        &self,
        run_id: &str,
        requests: &[NewRequest],
    ) -> Result<(), StoreError> {
        if requests.is_empty() {
            return Ok(());
        }
        if let Some(r) = requests.iter().find(|r| int(r.seq) >= SEQS_PER_RUN) {
            return Err(StoreError::Corrupt(format!(
                "request {} is past the {SEQS_PER_RUN} requests a run can hold",
                r.seq
            )));
        }
        let mut bodies = requests
            .iter()
            .map(|r| {
                let view = serde_json::to_string(&collection_view(&r.request))?;
                Ok((view, serde_json::to_string(&r.request)?))
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| StoreError::Corrupt(format!("request body: {e}")))?
            .into_iter();
        let mut tx = self.write().await?;
        let run = self.run_key(&mut *tx, run_id).await?;
        // A handful of models per input: a linear search beats hashing every request.
        let mut known: Vec<(ProviderKind, &str, i64)> = Vec::new();
        let mut groups = Vec::with_capacity(requests.len());
        for r in requests {
            let model = r.request.model.as_str();
            let key = match known.iter().find(|k| k.0 == r.provider && k.1 == model) {
                Some(k) => k.2,
                None => {
                    let key = self.group_key(&mut tx, r.provider, model).await?;
                    known.push((r.provider, model, key));
                    key
                }
            };
            groups.push(key);
        }
        let mut groups = groups.into_iter();
        for chunk in pieces(requests) {
            let mut query = sqlx::query(AssertSqlSafe(insert_requests_sql(chunk.len())));
            for (r, grp) in chunk.iter().zip(groups.by_ref()) {
                query = query
                    .bind(run)
                    .bind(int(r.seq))
                    .bind(grp)
                    .bind(int(r.est_input_tokens))
                    .bind(i64::from(r.request.max_tokens))
                    .bind(int(r.wire_bytes))
                    .bind(r.worst_cost_usd);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(self.db("insert requests"))?;
            let mut query = sqlx::query(AssertSqlSafe(insert_bodies_sql(chunk.len())));
            for (r, (view, body)) in chunk.iter().zip(bodies.by_ref()) {
                query = query
                    .bind(row_id(run, r.seq))
                    .bind(r.custom_id.as_str())
                    .bind(view)
                    .bind(body);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(self.db("insert request bodies"))?;
        }
        self.commit(tx).await
    }

    async fn finish_import(&self, run_id: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE runs SET total = (SELECT COUNT(*) FROM requests WHERE run = runs.key), \
             updated_at = $2 WHERE id = $1",
        )
        .bind(run_id)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(self.db("finish an import"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("run `{run_id}`")));
        }
        self.commit(tx).await
    }

    /// An exact id first, then a unique prefix. A prefix that matches several runs is an
    /// error ([`StoreError::NotFound`] naming the candidates), not `None`, so the user learns
    /// to type more characters instead of reading "no such run".
    async fn run(&self, id_or_prefix: &str) -> Result<Option<RunRecord>, StoreError> {
        if id_or_prefix.is_empty() {
            return Ok(None);
        }
        let exact = sqlx::query(select_run!("WHERE id = $1"))
            .bind(id_or_prefix)
            .fetch_optional(&self.reader)
            .await
            .map_err(self.db("read a run"))?;
        if let Some(row) = exact {
            return run_from_row(&row).map(Some).map_err(self.db("read a run"));
        }
        let rows = sqlx::query(select_run!(
            "WHERE substr(id, 1, length($1)) = $1 ORDER BY created_at DESC, id DESC LIMIT 6"
        ))
        .bind(id_or_prefix)
        .fetch_all(&self.reader)
        .await
        .map_err(self.db("read a run"))?;
        match rows.as_slice() {
            [] => Ok(None),
            [row] => run_from_row(row).map(Some).map_err(self.db("read a run")),
            many => {
                let ids: Vec<String> = many
                    .iter()
                    .take(5)
                    .filter_map(|r| r.try_get::<String, _>(0).ok())
                    .collect();
                let more = if many.len() > 5 { ", …" } else { "" };
                Err(StoreError::NotFound(format!(
                    "a single run `{id_or_prefix}` (the prefix is ambiguous: it matches {}{more}; \
                     give more characters)",
                    ids.join(", ")
                )))
            }
        }
    }

    async fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(select_run!("ORDER BY created_at DESC, rowid DESC"))
            .fetch_all(&self.reader)
            .await
            .map_err(self.db("list runs"))?;
        rows.iter()
            .map(run_from_row)
            .collect::<Result<_, _>>()
            .map_err(self.db("list runs"))
    }

    async fn resumable_run(&self, fingerprint: &str) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(select_run!(
            "WHERE fingerprint = $1 AND total IS NOT NULL \
             AND state NOT IN ('completed', 'canceled') \
             ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.reader)
        .await
        .map_err(self.db("find a resumable run"))?;
        row.map(|row| run_from_row(&row))
            .transpose()
            .map_err(self.db("find a resumable run"))
    }

    async fn set_run_state(&self, run_id: &str, state: RunState) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE runs SET state = $2, updated_at = $3 WHERE id = $1")
            .bind(run_id)
            .bind(state.as_str())
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(self.db("set a run's state"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("run `{run_id}`")));
        }
        self.commit(tx).await
    }

    /// Finals come from `run_counts` (kept by [`Store::record_outcomes`]), so this reads a
    /// handful of rows whatever the run's size; `pending` is the rest of the total.
    async fn counts(&self, run_id: &str) -> Result<Counts, StoreError> {
        // One read transaction, so the total and the finals are one snapshot.
        let mut tx = self
            .reader
            .begin()
            .await
            .map_err(self.db("count requests"))?;
        let total: Option<Option<i64>> = sqlx::query_scalar("SELECT total FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.db("count requests"))?;
        let Some(total) = total else {
            return Err(StoreError::NotFound(format!("run `{run_id}`")));
        };
        let total = match total {
            Some(total) => total,
            // While importing, the total is what has arrived so far.
            None => sqlx::query_scalar(
                "SELECT COUNT(*) FROM requests WHERE run = (SELECT key FROM runs WHERE id = $1)",
            )
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.db("count requests"))?,
        };
        let rows = sqlx::query("SELECT status, n FROM run_counts WHERE run_id = $1")
            .bind(run_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(self.db("count requests"))?;
        tx.commit().await.map_err(self.db("count requests"))?;
        let mut counts = Counts {
            total: uint(total, "total")?,
            ..Counts::default()
        };
        for row in rows {
            let status: String = row.try_get(0).map_err(self.db("count requests"))?;
            let n = uint(row.try_get(1).map_err(self.db("count requests"))?, "count")?;
            let status = ResultStatus::parse(&status).ok_or_else(|| {
                StoreError::Corrupt(format!("run {run_id}: status `{status}` in run_counts"))
            })?;
            counts.add(status, n);
        }
        counts.pending = counts.total.saturating_sub(counts.done());
        Ok(counts)
    }

    async fn run_cost(&self, run_id: &str) -> Result<f64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(SUM(cost_usd), 0.0) FROM run_counts WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&self.reader)
            .await
            .map_err(self.db("sum a run's cost"))
    }

    async fn pending_groups(&self, run_id: &str) -> Result<Vec<Group>, StoreError> {
        // One probe of the pending index per known model, not a scan of the pending requests.
        let rows = sqlx::query(
            "SELECT g.provider, g.model FROM groups g \
             WHERE EXISTS (SELECT 1 FROM requests r INDEXED BY requests_pending \
                           WHERE r.run = (SELECT key FROM runs WHERE id = $1) \
                           AND r.grp = g.key AND r.state = 0) \
             ORDER BY g.provider, g.model",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await
        .map_err(self.db("list pending groups"))?;
        rows.iter()
            .map(|row| {
                let provider: String = row.try_get(0).map_err(self.db("list pending groups"))?;
                Ok(Group {
                    provider: ProviderKind::from_str(&provider).map_err(StoreError::Corrupt)?,
                    model: row.try_get(1).map_err(self.db("list pending groups"))?,
                })
            })
            .collect()
    }

    async fn pending_requests(
        &self,
        run_id: &str,
        group: &Group,
        after_seq: Option<u64>,
        limit: u64,
    ) -> Result<Vec<PendingRequest>, StoreError> {
        // One row back: a flat JSON array of 4 numbers per request.
        let json: String = sqlx::query_scalar(
            "SELECT '[' || COALESCE(group_concat( \
                        seq || ',' || wire_bytes || ',' || est_input_tokens || ',' || max_tokens, \
                        ','), '') || ']' \
             FROM (SELECT seq, wire_bytes, est_input_tokens, max_tokens \
                   FROM requests INDEXED BY requests_pending \
                   WHERE run = (SELECT key FROM runs WHERE id = $1) \
                   AND grp = (SELECT key FROM groups WHERE provider = $2 AND model = $3) \
                   AND state = 0 AND seq > $4 ORDER BY seq LIMIT $5)",
        )
        .bind(run_id)
        .bind(group.provider.as_str())
        .bind(group.model.as_str())
        .bind(after_seq.map_or(-1, int))
        .bind(int(limit))
        .fetch_one(&self.reader)
        .await
        .map_err(self.db("list pending requests"))?;
        let numbers: Vec<u64> = parse_page(&json, "pending requests")?;
        let mut page: Vec<PendingRequest> = numbers
            .chunks_exact(4)
            .map(|n| PendingRequest {
                seq: n[0],
                wire_bytes: n[1],
                est_input_tokens: n[2],
                max_tokens: n[3],
            })
            .collect();
        page.sort_unstable_by_key(|r| r.seq);
        Ok(page)
    }

    /// Creates the batch and moves every pending request of its group within
    /// `first_seq..=last_seq` into it: one narrow row update per request, found through the
    /// pending index. A batch that takes no request (someone else planned them) is stored
    /// already `collected`, so it keeps its number but is never submitted.
    async fn create_batch(&self, batch: &NewBatch) -> Result<u64, StoreError> {
        let at = now();
        let mut tx = self.write().await?;
        let run = self.run_key(&mut *tx, &batch.run_id).await?;
        let key: i64 = sqlx::query_scalar(
            "INSERT INTO batches (id, key, run_id, seq, provider, model, state, request_count, \
             first_seq, last_seq) \
             SELECT $1, (SELECT COALESCE(MAX(key), 0) + 1 FROM batches), $2, \
                    COALESCE(MAX(seq), 0) + 1, $3, $4, 'planned', 0, $5, $6 \
             FROM batches WHERE run_id = $2 RETURNING key",
        )
        .bind(&batch.id)
        .bind(&batch.run_id)
        .bind(batch.group.provider.as_str())
        .bind(&batch.group.model)
        .bind(int(batch.first_seq))
        .bind(int(batch.last_seq))
        .fetch_one(&mut *tx)
        .await
        .map_err(self.db("create a batch"))?;
        let taken = sqlx::query(
            "UPDATE OR FAIL requests INDEXED BY requests_pending SET state = 1, batch = $1 \
             WHERE run = $2 \
             AND grp = (SELECT key FROM groups WHERE provider = $3 AND model = $4) \
             AND state = 0 AND seq >= $5 AND seq <= $6",
        )
        .bind(key)
        .bind(run)
        .bind(batch.group.provider.as_str())
        .bind(&batch.group.model)
        .bind(int(batch.first_seq))
        .bind(int(batch.last_seq))
        .execute(&mut *tx)
        .await
        .map_err(self.db("assign requests to a batch"))?
        .rows_affected();
        sqlx::query(
            "UPDATE batches SET request_count = $2, \
             est_input_tokens = (SELECT COALESCE(SUM(est_input_tokens), 0) FROM requests \
                                 WHERE run = $4 AND seq >= batches.first_seq \
                                 AND seq <= batches.last_seq \
                                 AND batch = batches.key AND state = 1), \
             state = CASE WHEN $2 = 0 THEN 'collected' ELSE state END, \
             closed_at = CASE WHEN $2 = 0 THEN $3 ELSE closed_at END \
             WHERE key = $1",
        )
        .bind(key)
        .bind(int(taken))
        .bind(&at)
        .bind(run)
        .execute(&mut *tx)
        .await
        .map_err(self.db("create a batch"))?;
        self.commit(tx).await?;
        Ok(taken)
    }

    async fn batch_count(&self, run_id: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batches WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&self.reader)
            .await
            .map_err(self.db("count batches"))?;
        uint(n, "batch count")
    }

    async fn batches(&self, run_id: &str) -> Result<Vec<BatchRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, run_id, provider, model, state, request_count, provider_batch_id, \
             provider_status, submit_started_at, cost_usd, est_input_tokens \
             FROM batches WHERE run_id = $1 ORDER BY seq",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await
        .map_err(self.db("list batches"))?;
        rows.iter().map(batch_from_row).collect()
    }

    async fn remote_ids(&self, provider: ProviderKind) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT provider_batch_id FROM batches \
             WHERE provider = $1 AND provider_batch_id IS NOT NULL \
             ORDER BY run_id, seq",
        )
        .bind(provider.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(self.db("list remote batch ids"))
    }

    /// Every request whose `batch` is this batch: while it is open, all of them; after a
    /// partial collection, also the ones that already have their final line (requests sent
    /// back to pending have left the batch). Found by the batch's seq range on the primary
    /// key, so no index on `batch` has to be kept up to date.
    async fn batch_items(&self, batch_id: &str) -> Result<Vec<BatchItem>, StoreError> {
        // The stored body is JSON volley wrote; it is spliced in as it is.
        self.read_batch_items(batch_id, "b.body").await
    }

    /// The collection view was written beside the body at import (migration 0006), so the
    /// bodies are neither read nor parsed to collect.
    async fn batch_items_to_collect(&self, batch_id: &str) -> Result<Vec<BatchItem>, StoreError> {
        self.read_batch_items(batch_id, "b.view").await
    }

    /// Only from `planned`: records the open intent and moves the batch to `submitting`.
    /// From `planned`: the intent and the batch's reservation, in one transaction. With a cap,
    /// nothing is written when the batch does not fit.
    async fn begin_submit(
        &self,
        batch_id: &str,
        at: Timestamp,
        cap_usd: Option<f64>,
    ) -> Result<Admission, StoreError> {
        let at = stamp(at);
        let mut tx = self.write().await?;
        let batch = self.batch_row(&mut tx, batch_id).await?;
        if batch.state != BatchState::Planned {
            return Err(self.wrong_state(
                batch_id,
                batch.state,
                "begin a submit (it must be planned)",
            ));
        }
        let needed: f64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(worst_cost_usd), 0.0) FROM requests \
             WHERE run = $1 AND seq >= $2 AND seq <= $3 AND batch = $4 AND state = 1",
        )
        .bind(batch.run)
        .bind(batch.first_seq)
        .bind(batch.last_seq)
        .bind(batch.key)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.db("size a reservation"))?;
        if let Some(cap) = cap_usd {
            let committed: f64 = sqlx::query_scalar(
                "SELECT \
                   (SELECT COALESCE(SUM(amount_usd), 0.0) FROM ledger \
                    WHERE run_id = $1 AND kind = 'actual') + \
                   (SELECT COALESCE(SUM(reserved_usd), 0.0) FROM batches WHERE run_id = $1)",
            )
            .bind(&batch.run_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(self.db("check the cost cap"))?;
            let available_usd = (cap - committed).max(0.0);
            if needed > available_usd {
                return Ok(Admission::NoRoom {
                    available_usd,
                    needed_usd: needed,
                });
            }
        }
        sqlx::query(
            "INSERT INTO intents (run_id, batch_id, action, started_at) \
             VALUES ($1, $2, 'submit', $3)",
        )
        .bind(&batch.run_id)
        .bind(batch_id)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("record a submit intent"))?;
        sqlx::query(
            "UPDATE batches SET state = 'submitting', submit_started_at = $2, reserved_usd = $3 \
             WHERE id = $1",
        )
        .bind(batch_id)
        .bind(&at)
        .bind(needed)
        .execute(&mut *tx)
        .await
        .map_err(self.db("record a submit intent"))?;
        sqlx::query(
            "INSERT INTO ledger (run_id, batch_id, kind, amount_usd, created_at) \
             VALUES ($1, $2, 'reserve', $3, $4)",
        )
        .bind(&batch.run_id)
        .bind(batch_id)
        .bind(needed)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("reserve a batch's worst case"))?;
        self.commit(tx).await?;
        Ok(Admission::Admitted)
    }

    async fn shrink_batch(&self, batch_id: &str, budget_usd: f64) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let batch = self.batch_row(&mut tx, batch_id).await?;
        if batch.state != BatchState::Planned {
            return Err(self.wrong_state(batch_id, batch.state, "shrink it (it must be planned)"));
        }
        // Keep the requests, in input order, whose running worst case fits the budget; if not
        // even the first fits, change nothing (the engine then skips the whole batch).
        const RUNNING: &str = "WITH running AS ( \
               SELECT seq, SUM(worst_cost_usd) OVER (ORDER BY seq) AS total FROM requests \
               WHERE run = $1 AND seq >= $2 AND seq <= $3 AND batch = $4 AND state = 1) ";
        let fitting: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "{RUNNING} SELECT COUNT(*) FROM running WHERE total <= $5"
        )))
        .bind(batch.run)
        .bind(batch.first_seq)
        .bind(batch.last_seq)
        .bind(batch.key)
        .bind(budget_usd)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.db("shrink a batch"))?;
        if fitting == 0 {
            return Ok(0);
        }
        sqlx::query(AssertSqlSafe(format!(
            "{RUNNING} UPDATE requests SET state = 0, batch = NULL \
             WHERE run = $1 AND batch = $4 AND state = 1 \
             AND seq IN (SELECT seq FROM running WHERE total > $5)"
        )))
        .bind(batch.run)
        .bind(batch.first_seq)
        .bind(batch.last_seq)
        .bind(batch.key)
        .bind(budget_usd)
        .execute(&mut *tx)
        .await
        .map_err(self.db("shrink a batch"))?;
        sqlx::query(
            "UPDATE batches SET (request_count, last_seq, est_input_tokens) = ( \
               SELECT COUNT(*), COALESCE(MAX(seq), batches.first_seq), \
                      COALESCE(SUM(est_input_tokens), 0) FROM requests \
               WHERE run = $2 AND seq >= batches.first_seq AND seq <= batches.last_seq \
               AND batch = batches.key AND state = 1) \
             WHERE key = $1",
        )
        .bind(batch.key)
        .bind(batch.run)
        .execute(&mut *tx)
        .await
        .map_err(self.db("shrink a batch"))?;
        self.commit(tx).await?;
        Ok(u64::try_from(fitting).unwrap_or(0))
    }

    async fn reserved_usd(&self, run_id: &str) -> Result<f64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(SUM(reserved_usd), 0.0) FROM batches WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&self.reader)
            .await
            .map_err(self.db("read reservations"))
    }

    /// From `submitting`. Confirming again with the same remote id is a no-op; any other state
    /// is an error. Writes the batch row only: each request's attempt count is its `retries`
    /// plus one while its batch is submitted.
    async fn confirm_submit(
        &self,
        batch_id: &str,
        provider_batch_id: &str,
        provider_status: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.write().await?;
        let batch = self.batch_row(&mut tx, batch_id).await?;
        match batch.state {
            BatchState::Submitting => {}
            _ if batch.remote.as_deref() == Some(provider_batch_id) => return Ok(()),
            state => {
                return Err(self.wrong_state(
                    batch_id,
                    state,
                    "confirm a submit (no submit intent is open)",
                ));
            }
        }
        sqlx::query(
            "UPDATE batches SET state = 'submitted', provider_batch_id = $2, \
             provider_status = $3, submitted_at = $4 WHERE id = $1",
        )
        .bind(batch_id)
        .bind(provider_batch_id)
        .bind(provider_status)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("confirm a submit"))?;
        self.close_intent(&mut tx, batch_id, "created", &at).await?;
        self.commit(tx).await
    }

    /// From `submitting` back to `planned` (its requests stay in it); a no-op on a planned
    /// batch; an error once the provider has it.
    async fn abort_submit(&self, batch_id: &str) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.write().await?;
        match self.batch_row(&mut tx, batch_id).await?.state {
            BatchState::Submitting => {}
            BatchState::Planned => return Ok(()),
            state => return Err(self.wrong_state(batch_id, state, "abort a submit")),
        }
        self.release_reservation(&mut tx, batch_id, &at).await?;
        sqlx::query("UPDATE batches SET state = 'planned', submit_started_at = NULL WHERE id = $1")
            .bind(batch_id)
            .execute(&mut *tx)
            .await
            .map_err(self.db("abort a submit"))?;
        self.close_intent(&mut tx, batch_id, "aborted", &at).await?;
        self.commit(tx).await
    }

    async fn set_provider_status(&self, batch_id: &str, status: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE batches SET provider_status = $2 WHERE id = $1")
            .bind(batch_id)
            .bind(status)
            .execute(&mut *tx)
            .await
            .map_err(self.db("set a provider status"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("batch `{batch_id}`")));
        }
        self.commit(tx).await
    }

    /// An outcome applies only to a request that is still `batched` in this batch, so applying
    /// the same outcomes again, or outcomes of a request that has left the batch, changes
    /// nothing. Within one call the first outcome of a seq wins. The batch's cost grows by the
    /// results applied.
    async fn record_outcomes(
        &self,
        batch_id: &str,
        outcomes: &[Outcome],
    ) -> Result<(), StoreError> {
        let mut seen = HashSet::with_capacity(outcomes.len());
        let outcomes: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| seen.insert(outcome_seq(o)))
            .collect();
        let mut tx = self.write().await?;
        let batch = self.batch_row(&mut tx, batch_id).await?;
        let mut tally = Tally::default();
        for chunk in pieces(&outcomes) {
            self.apply_outcomes(&mut tx, &batch, chunk, &mut tally)
                .await?;
        }
        for (status, n, cost_usd) in tally.nonzero() {
            sqlx::query(
                "INSERT INTO run_counts (run_id, status, n, cost_usd) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (run_id, status) \
                 DO UPDATE SET n = run_counts.n + excluded.n, \
                 cost_usd = run_counts.cost_usd + excluded.cost_usd",
            )
            .bind(&batch.run_id)
            .bind(status.as_str())
            .bind(int(n))
            .bind(cost_usd)
            .execute(&mut *tx)
            .await
            .map_err(self.db("count results"))?;
        }
        let cost_usd = tally.cost_usd();
        if cost_usd != 0.0 {
            sqlx::query("UPDATE batches SET cost_usd = cost_usd + $2 WHERE key = $1")
                .bind(batch.key)
                .bind(cost_usd)
                .execute(&mut *tx)
                .await
                .map_err(self.db("add to a batch's cost"))?;
        }
        self.commit(tx).await
    }

    /// Sets the final state, books the batch's cost (the sum of its result lines, kept by
    /// [`Store::record_outcomes`]) in the ledger once, closes a submit intent still open (a
    /// batch the provider rejected: nothing was created), and sends any request still
    /// `batched` in it back to pending (a request must never be stranded in a closed batch),
    /// counting the submission if the provider had the batch.
    async fn close_batch(&self, batch_id: &str, state: BatchState) -> Result<(), StoreError> {
        if state.is_open() {
            return Err(self.wrong_state(
                batch_id,
                state,
                "close it in this state (only collected or rejected)",
            ));
        }
        let at = now();
        let mut tx = self.write().await?;
        let batch = self.batch_row(&mut tx, batch_id).await?;
        sqlx::query(
            "UPDATE requests SET state = 0, batch = NULL, retries = retries + $5 \
             WHERE run = $1 AND seq >= $2 AND seq <= $3 AND batch = $4 AND state = 1",
        )
        .bind(batch.run)
        .bind(batch.first_seq)
        .bind(batch.last_seq)
        .bind(batch.key)
        .bind(batch.submitted())
        .execute(&mut *tx)
        .await
        .map_err(self.db("close a batch"))?;
        self.release_reservation(&mut tx, batch_id, &at).await?;
        sqlx::query(
            "UPDATE batches SET state = $2, closed_at = COALESCE(closed_at, $3) WHERE id = $1",
        )
        .bind(batch_id)
        .bind(state.as_str())
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("close a batch"))?;
        // A batch rejected on submit still has its intent open: nothing was created.
        self.close_intent(&mut tx, batch_id, "aborted", &at).await?;
        sqlx::query(
            "INSERT INTO ledger (run_id, batch_id, kind, amount_usd, created_at) \
             SELECT run_id, id, 'actual', cost_usd, $2 FROM batches WHERE id = $1 \
             ON CONFLICT DO NOTHING",
        )
        .bind(batch_id)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("book a batch's cost"))?;
        self.commit(tx).await
    }

    async fn results(
        &self,
        run_id: &str,
        after_seq: Option<u64>,
        limit: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        // Pages of JSON arrays (one row back per page, not per line), in one snapshot.
        let mut tx = self.reader.begin().await.map_err(self.db("read results"))?;
        let run = self.run_key(&mut *tx, run_id).await?;
        let mut lines: Vec<(u64, String)> = Vec::new();
        let mut after = after_seq.map_or(-1, int);
        let mut left = limit;
        while left > 0 {
            let want = left.min(PAGE);
            // Length-prefixed frames, `<seq> <bytes> <line>`: nothing to escape or parse.
            let frames: String = sqlx::query_scalar(
                "SELECT COALESCE(group_concat( \
                            seq || ' ' || octet_length(line) || ' ' || line, ''), '') \
                 FROM (SELECT id - $1 AS seq, line FROM results WHERE id > $2 AND id < $3 \
                       ORDER BY id LIMIT $4)",
            )
            .bind(row_id(run, 0))
            .bind(row_id(run, 0) + after)
            .bind(row_id(run + 1, 0))
            .bind(int(want))
            .fetch_one(&mut *tx)
            .await
            .map_err(self.db("read results"))?;
            let mut page = parse_frames(&frames)?;
            page.sort_unstable_by_key(|frame| frame.0);
            let got = page.len() as u64;
            if let Some((seq, _)) = page.last() {
                after = int(*seq);
            }
            lines.extend(page);
            if got < want {
                break;
            }
            left -= got;
        }
        tx.commit().await.map_err(self.db("read results"))?;
        Ok(lines)
    }

    // Cancel and delete intents (issue #6): the `intents` table only, beside submits.

    async fn begin_intent(
        &self,
        batch_id: &str,
        action: IntentAction,
        at: Timestamp,
        detail: Option<&str>,
    ) -> Result<IntentStart, StoreError> {
        let mut tx = self.write().await?;
        let BatchRow { run_id, state, .. } = self.batch_row(&mut tx, batch_id).await?;
        let open: Option<String> = sqlx::query_scalar(
            "SELECT action FROM intents WHERE batch_id = $1 AND outcome IS NULL",
        )
        .bind(batch_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.db("read an intent"))?;
        let start = match open.as_deref() {
            None => {
                sqlx::query(
                    "INSERT INTO intents (run_id, batch_id, action, started_at, detail) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&run_id)
                .bind(batch_id)
                .bind(action.as_str())
                .bind(stamp(at))
                .bind(detail)
                .execute(&mut *tx)
                .await
                .map_err(self.db("record an intent"))?;
                IntentStart::Open {
                    state,
                    resumed: false,
                }
            }
            Some(word) if word == action.as_str() => {
                if detail.is_some() {
                    sqlx::query(
                        "UPDATE intents SET detail = $2 WHERE batch_id = $1 AND outcome IS NULL",
                    )
                    .bind(batch_id)
                    .bind(detail)
                    .execute(&mut *tx)
                    .await
                    .map_err(self.db("record an intent"))?;
                }
                IntentStart::Open {
                    state,
                    resumed: true,
                }
            }
            Some(_) => IntentStart::Busy { state },
        };
        self.commit(tx).await?;
        Ok(start)
    }

    async fn finish_intent(&self, batch_id: &str, action: IntentAction) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE intents SET confirmed_at = $3, outcome = 'done' \
             WHERE batch_id = $1 AND action = $2 AND outcome IS NULL",
        )
        .bind(batch_id)
        .bind(action.as_str())
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(self.db("close an intent"))?;
        self.commit(tx).await
    }

    async fn open_intents(&self, run_id: &str) -> Result<Vec<OpenIntent>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.batch_id, i.action, b.state, i.started_at, i.detail \
             FROM intents i JOIN batches b ON b.id = i.batch_id \
             WHERE i.run_id = $1 AND i.outcome IS NULL AND i.action <> 'submit' \
             ORDER BY i.started_at, i.id",
        )
        .bind(run_id)
        .fetch_all(&self.reader)
        .await
        .map_err(self.db("list open intents"))?;
        rows.iter().map(open_intent_from_row).collect()
    }
}

fn open_intent_from_row(row: &SqliteRow) -> Result<OpenIntent, StoreError> {
    let get = |e: sqlx::Error| StoreError::Corrupt(format!("intent row: {e}"));
    let batch_id: String = row.try_get(0).map_err(get)?;
    let action: String = row.try_get(1).map_err(get)?;
    let state: String = row.try_get(2).map_err(get)?;
    let started: String = row.try_get(3).map_err(get)?;
    let corrupt = |what: String| StoreError::Corrupt(format!("intent of batch {batch_id}: {what}"));
    Ok(OpenIntent {
        action: IntentAction::parse(&action)
            .ok_or_else(|| corrupt(format!("unknown action `{action}`")))?,
        batch_state: BatchState::parse(&state)
            .ok_or_else(|| corrupt(format!("unknown batch state `{state}`")))?,
        started_at: started
            .parse()
            .map_err(|e| corrupt(format!("started_at `{started}`: {e}")))?,
        detail: row.try_get(4).map_err(get)?,
        batch_id,
    })
}

/// Connects the writer. Switching a new file to WAL needs a moment alone with it, and SQLite
/// answers "database is locked" at once (no busy wait) when another process is migrating the
/// same new file: that is tried again for up to [`BUSY_TIMEOUT`].
async fn connect_writer(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        let connected = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await;
        match connected {
            Err(e)
                if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("5")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// What the user can do about an SQLite error caused by the disk: a read-only or full file
/// system. Empty for every other error.
fn storage_hint(e: &sqlx::Error, location: &str) -> String {
    let Some(code) = e
        .as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i64>().ok())
    else {
        return String::new();
    };
    let folder = match location::parse(location) {
        Ok(Location::File(path)) => match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => ".".into(),
        },
        _ => return String::new(),
    };
    // SQLITE_FULL, and SQLITE_IOERR_WRITE (which is what a file size limit, EFBIG, gives).
    const FULL: i64 = 13;
    const IOERR_WRITE: i64 = 10 | (3 << 8);
    const READONLY: i64 = 8;
    const CANTOPEN: i64 = 14;
    let resume = "every step is one transaction, so nothing was half-written: once fixed, \
                  `volley resume RUN` (or the same `volley run`) continues";
    match code {
        FULL => format!(
            " — the disk holding {} is full: free some space, or point --store (VOLLEY_STORE) at another disk; {resume}",
            folder.display()
        ),
        IOERR_WRITE => format!(
            " — writing to {} failed: the disk may be full, a file size limit reached (ulimit -f) or the disk failing; {resume}",
            folder.display()
        ),
        _ if matches!(code & 0xff, READONLY | CANTOPEN) => match write_probe(&folder) {
            Err(io) => format!(
                " — volley cannot write in {} ({io}); it keeps its state there (SQLite also needs the folder for its WAL files): make the folder writable, or point --store (VOLLEY_STORE) at a writable place",
                folder.display()
            ),
            Ok(()) => " — the store file itself is read-only: make it writable, or point --store (VOLLEY_STORE) at another file".into(),
        },
        _ => String::new(),
    }
}

/// Whether a file can be created in `folder`.
fn write_probe(folder: &Path) -> std::io::Result<()> {
    let probe = folder.join(format!(".volley-write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Splits `items` into slices whose lengths are powers of two (at most [`MAX_ROWS`]), so the
/// multi-row statements come in a few shapes that stay prepared in the statement cache
/// instead of being parsed again for every call.
fn pieces<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let n = if items.len() >= MAX_ROWS {
            MAX_ROWS
        } else {
            1 << items.len().ilog2()
        };
        let (head, tail) = items.split_at(n);
        items = tail;
        Some(head)
    })
}

/// Parses `<seq> <bytes> <text>` frames, concatenated.
fn parse_frames(mut frames: &str) -> Result<Vec<(u64, String)>, StoreError> {
    let corrupt = || StoreError::Corrupt("a page of result lines is malformed".into());
    let mut out = Vec::new();
    while !frames.is_empty() {
        let (seq, rest) = frames.split_once(' ').ok_or_else(corrupt)?;
        let (len, rest) = rest.split_once(' ').ok_or_else(corrupt)?;
        let seq: u64 = seq.parse().map_err(|_| corrupt())?;
        let len: usize = len.parse().map_err(|_| corrupt())?;
        let line = rest.get(..len).ok_or_else(corrupt)?;
        out.push((seq, line.to_owned()));
        frames = &rest[len..];
    }
    Ok(out)
}

/// Parses a page read as one JSON array (`json_group_array`).
fn parse_page<T: serde::de::DeserializeOwned>(
    json: &str,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn outcome_seq(outcome: &Outcome) -> u64 {
    match outcome {
        Outcome::Final { seq, .. } | Outcome::Retry { seq, .. } => *seq,
    }
}

/// Final results applied in one [`Store::record_outcomes`] call: count and cost per status.
#[derive(Default)]
struct Tally([(u64, f64); ResultStatus::ALL.len()]);

impl Tally {
    fn add(&mut self, status: ResultStatus, n: u64, cost_usd: f64) {
        if let Some(i) = ResultStatus::ALL.iter().position(|s| *s == status) {
            self.0[i].0 += n;
            self.0[i].1 += cost_usd;
        }
    }

    fn cost_usd(&self) -> f64 {
        self.0.iter().map(|(_, cost)| cost).sum()
    }

    fn nonzero(&self) -> impl Iterator<Item = (ResultStatus, u64, f64)> + '_ {
        ResultStatus::ALL
            .iter()
            .zip(&self.0)
            .filter(|(_, (n, _))| *n > 0)
            .map(|(status, (n, cost))| (*status, *n, *cost))
    }
}

impl SqliteStore {
    /// Applies up to [`MAX_ROWS`] outcomes (distinct seqs): first finds which of their
    /// requests are still `batched` in this batch (the write lock is held, so that stays
    /// true), then writes results, retry attempts and states for those only, set-based.
    async fn apply_outcomes(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        batch: &BatchRow,
        outcomes: &[&Outcome],
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        // 1. The requests these outcomes may still decide, as one JSON array (one row back
        //    instead of one per request).
        let sql = format!(
            "SELECT json_group_array(seq) FROM requests \
             WHERE run = ? AND batch = ? AND state = 1 AND seq IN {}",
            values(1, outcomes.len())
        );
        let mut query = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(batch.run)
            .bind(batch.key);
        for outcome in outcomes {
            query = query.bind(int(outcome_seq(outcome)));
        }
        let live: String = query
            .fetch_one(&mut **tx)
            .await
            .map_err(self.db("find the requests of outcomes"))?;
        let live: HashSet<u64> = serde_json::from_str::<Vec<u64>>(&live)
            .map_err(|e| StoreError::Corrupt(format!("seq list `{live}`: {e}")))?
            .into_iter()
            .collect();

        // 2. The result lines, and each final status on its requests.
        let finals: Vec<(u64, ResultStatus, f64, &str)> = outcomes
            .iter()
            .filter(|o| live.contains(&outcome_seq(o)))
            .filter_map(|o| match o {
                Outcome::Final {
                    seq,
                    status,
                    cost_usd,
                    line,
                    ..
                } => Some((*seq, *status, *cost_usd, line.as_str())),
                Outcome::Retry { .. } => None,
            })
            .collect();
        for piece in pieces(&finals) {
            let sql = format!(
                "INSERT OR FAIL INTO results (id, cost_usd, line) VALUES {} ON CONFLICT DO NOTHING",
                values(piece.len(), 3)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (seq, _, cost, line) in piece {
                query = query.bind(row_id(batch.run, *seq)).bind(*cost).bind(*line);
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(self.db("record results"))?;
        }
        for status in ResultStatus::ALL {
            let seqs: Vec<u64> = finals
                .iter()
                .filter(|f| f.1 == status)
                .map(|f| f.0)
                .collect();
            if seqs.is_empty() {
                continue;
            }
            let cost: f64 = finals.iter().filter(|f| f.1 == status).map(|f| f.2).sum();
            let sql = "UPDATE OR FAIL requests SET state = ? \
                       WHERE run = ? AND batch = ? AND state = 1 AND seq IN ";
            let done = self
                .update_requests(tx, sql, state_code(status), batch, &seqs)
                .await?;
            tally.add(status, done, cost);
        }

        // 3. Retried requests: an attempt row with the reason, then back to pending outside
        //    any batch, their submission counted.
        let retries: Vec<(u64, u32, &str)> = outcomes
            .iter()
            .filter(|o| live.contains(&outcome_seq(o)))
            .filter_map(|o| match o {
                Outcome::Retry {
                    seq,
                    attempt,
                    error,
                } => Some((*seq, *attempt, error.as_str())),
                Outcome::Final { .. } => None,
            })
            .collect();
        for piece in pieces(&retries) {
            let sql = format!(
                "INSERT OR FAIL INTO attempts (run, seq, attempt, batch, error) VALUES {} \
                 ON CONFLICT DO NOTHING",
                values(piece.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (seq, attempt, error) in piece {
                query = query
                    .bind(batch.run)
                    .bind(int(*seq))
                    .bind(i64::from(*attempt))
                    .bind(batch.key)
                    .bind(*error);
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(self.db("record attempts"))?;
        }
        if !retries.is_empty() {
            let seqs: Vec<u64> = retries.iter().map(|r| r.0).collect();
            let sql = "UPDATE OR FAIL requests SET state = 0, batch = NULL, retries = retries + ? \
                       WHERE run = ? AND batch = ? AND state = 1 AND seq IN ";
            self.update_requests(tx, sql, batch.submitted(), batch, &seqs)
                .await?;
        }
        Ok(())
    }

    /// Runs `sql` (an UPDATE of `requests` taking one value, then run and batch, ending in
    /// `seq IN `) over `seqs` in pieces; returns how many rows changed.
    async fn update_requests(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        sql: &str,
        value: i64,
        batch: &BatchRow,
        seqs: &[u64],
    ) -> Result<u64, StoreError> {
        let mut changed = 0;
        for piece in pieces(seqs) {
            let sql = format!("{sql}{}", values(1, piece.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .bind(value)
                .bind(batch.run)
                .bind(batch.key);
            for seq in piece {
                query = query.bind(int(*seq));
            }
            changed += query
                .execute(&mut **tx)
                .await
                .map_err(self.db("update request states"))?
                .rows_affected();
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_numbers_placeholders_in_order() {
        assert_eq!(values(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(values(1, 1), "(?)");
        assert!(
            insert_bodies_sql(2)
                .ends_with("VALUES (?, ?, ?, ?), (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING")
        );
    }

    #[test]
    fn row_ids_keep_runs_apart_and_in_seq_order() {
        assert_eq!(row_id(1, 0), 1 << 32);
        assert!(row_id(1, u64::from(u32::MAX)) < row_id(2, 0));
        assert!(row_id(3, 7) < row_id(3, 8));
    }

    #[test]
    fn frames_round_trip() {
        let lines = ["{\"a\": \"x y\"}", "", "two  spaces 3 4", "ünïcödé"];
        let frames: String = lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{} {} {l}", i * 7, l.len()))
            .collect();
        let parsed = parse_frames(&frames).unwrap();
        assert_eq!(parsed.len(), 4);
        for (i, (seq, line)) in parsed.iter().enumerate() {
            assert_eq!((*seq, line.as_str()), (i as u64 * 7, lines[i]));
        }
        assert!(parse_frames("").unwrap().is_empty());
        assert!(parse_frames("1 10 short").is_err());
        assert!(parse_frames("x 1 a").is_err());
    }

    #[test]
    fn pieces_are_powers_of_two() {
        let items: Vec<u32> = (0..1_300).collect();
        let sizes: Vec<usize> = pieces(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, [512, 512, 256, 16, 4]);
        assert_eq!(pieces(&items).flatten().copied().collect::<Vec<_>>(), items);
        assert_eq!(pieces(&items[..1]).count(), 1);
        assert_eq!(pieces::<u32>(&[]).count(), 0);
    }

    #[test]
    fn timestamps_are_fixed_width() {
        let a = stamp("2026-01-02T03:04:05Z".parse().unwrap());
        let b = stamp("2026-01-02T03:04:05.5Z".parse().unwrap());
        assert_eq!(a, "2026-01-02T03:04:05.000Z");
        assert_eq!(b, "2026-01-02T03:04:05.500Z");
        assert!(a < b);
        assert_eq!(
            a.parse::<Timestamp>().unwrap().to_string(),
            "2026-01-02T03:04:05Z"
        );
    }
}
