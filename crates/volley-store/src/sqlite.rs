//! [`SqliteStore`]: the embedded store, one SQLite file in WAL mode.
//!
//! Every trait method is one transaction. Writes go through a pool of one connection and start
//! with `BEGIN IMMEDIATE`, so a write transaction never has to upgrade a read lock (which SQLite
//! refuses with `SQLITE_BUSY` instead of waiting) and writers in one process queue in order;
//! writers in other processes wait up to [`BUSY_TIMEOUT`]. Reads use a separate pool and run
//! next to the writer thanks to WAL.
//!
//! The SQL uses `$n` placeholders, `ON CONFLICT`, CTEs and `UPDATE … FROM`, which SQLite and
//! Postgres both accept, so a Postgres store can share most statements.
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
    BatchItem, BatchRecord, Group, NewBatch, NewRequest, NewRun, Outcome, PendingRequest,
    RunOptions, RunRecord, Store,
};
use volley_types::{BatchState, Counts, ProviderKind, Request, ResultStatus, RunState};

use crate::location::{self, Location};
use crate::migrate::{self, MigrateError};

/// How long a write waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call waits for a connection of this process (the writer is shared).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(300);
/// Reader connections per store.
const READERS: u32 = 4;
/// Rows per multi-row `INSERT` of requests (9 parameters each; SQLite allows 32 766).
const REQUEST_ROWS: usize = 500;
/// Outcomes per statement group in [`Store::record_outcomes`] (at most 4 parameters each).
const OUTCOME_ROWS: usize = 500;

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
        let (writer, reader) = match location::parse(location).map_err(fail)? {
            Location::Memory => {
                let options = SqliteConnectOptions::from_str("sqlite::memory:")
                    .map_err(|e| fail(e.to_string()))?
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
                    .map_err(|e| fail(format!("open: {e}")))?;
                (pool.clone(), pool)
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
                    .pragma("temp_store", "memory");
                let writer = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options.clone().pragma("cache_size", "-32768"))
                    .await
                    .map_err(|e| fail(format!("open: {e}")))?;
                let reader = SqlitePoolOptions::new()
                    .max_connections(READERS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options);
                (writer, reader)
            }
        };
        let store = Self {
            location: shown,
            writer,
            reader,
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
                MigrateError::Database(message) => StoreError::Database {
                    location: self.location.clone(),
                    message: format!("migrate the schema: {message}"),
                },
            })
    }

    /// Maps a sqlx error to [`StoreError::Database`], naming the location and the operation.
    fn db(&self, what: &'static str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |e| StoreError::Database {
            location: self.location.clone(),
            message: format!("{what}: {e}"),
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
        tx.commit().await.map_err(self.db("commit"))
    }

    /// A batch's run and state, inside a write.
    async fn batch_state(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        batch_id: &str,
    ) -> Result<(String, BatchState, Option<String>), StoreError> {
        let row = sqlx::query("SELECT run_id, state, provider_batch_id FROM batches WHERE id = $1")
            .bind(batch_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.db("read a batch"))?
            .ok_or_else(|| StoreError::NotFound(format!("batch `{batch_id}`")))?;
        let run_id: String = row.try_get(0).map_err(self.db("read a batch"))?;
        let state: String = row.try_get(1).map_err(self.db("read a batch"))?;
        let remote: Option<String> = row.try_get(2).map_err(self.db("read a batch"))?;
        let state = BatchState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("batch {batch_id}: state `{state}`")))?;
        Ok((run_id, state, remote))
    }

    fn wrong_state(&self, batch_id: &str, state: BatchState, action: &str) -> StoreError {
        StoreError::Database {
            location: self.location.clone(),
            message: format!("batch {batch_id} is {}: cannot {action}", state.as_str()),
        }
    }

    async fn require_run(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        run_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.db("read a run"))?
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}`")))
    }
}

fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|e| format!("create folder {}: {e}", parent.display())),
        _ => Ok(()),
    }
}

/// `($a, $a+1, …), (…)`: `rows` tuples of `cols` placeholders numbered from `first`.
fn values(rows: usize, cols: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 7);
    let mut n = first;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..cols {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&n.to_string());
            n += 1;
        }
        sql.push(')');
    }
    sql
}

fn insert_requests_sql(rows: usize) -> String {
    format!(
        "INSERT INTO requests (run_id, seq, id, custom_id, provider, model, body, \
         est_input_tokens, max_tokens, wire_bytes) VALUES {} \
         ON CONFLICT (run_id, seq) DO NOTHING",
        // $1 is the run id, shared by every row.
        values(rows, 9, 2).replace("($", "($1, $")
    )
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
        id,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_run(&self, run: &NewRun) -> Result<(), StoreError> {
        let options = serde_json::to_string(&run.options)
            .map_err(|e| StoreError::Corrupt(format!("run options: {e}")))?;
        let created_at = stamp(run.created_at);
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO runs (id, created_at, state, input, fingerprint, out, options_json, \
             total, updated_at) VALUES ($1, $2, 'planning', $3, $4, $5, $6, NULL, $7)",
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
        let bodies = requests
            .iter()
            .map(|r| serde_json::to_string(&r.request))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corrupt(format!("request body: {e}")))?;
        let mut tx = self.write().await?;
        self.require_run(&mut tx, run_id).await?;
        for (chunk, bodies) in requests
            .chunks(REQUEST_ROWS)
            .zip(bodies.chunks(REQUEST_ROWS))
        {
            let sql = insert_requests_sql(chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .persistent(chunk.len() == REQUEST_ROWS)
                .bind(run_id);
            for (r, body) in chunk.iter().zip(bodies) {
                query = query
                    .bind(int(r.seq))
                    .bind(r.request.id.as_str())
                    .bind(r.custom_id.as_str())
                    .bind(r.provider.as_str())
                    .bind(r.request.model.as_str())
                    .bind(body.as_str())
                    .bind(int(r.est_input_tokens))
                    .bind(i64::from(r.request.max_tokens))
                    .bind(int(r.wire_bytes));
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(self.db("insert requests"))?;
        }
        self.commit(tx).await
    }

    async fn finish_import(&self, run_id: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE runs SET total = (SELECT COUNT(*) FROM requests WHERE run_id = $1), \
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

    async fn counts(&self, run_id: &str) -> Result<Counts, StoreError> {
        // One read transaction, so the total and the states are one snapshot.
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
        let rows =
            sqlx::query("SELECT state, COUNT(*) FROM requests WHERE run_id = $1 GROUP BY state")
                .bind(run_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(self.db("count requests"))?;
        tx.commit().await.map_err(self.db("count requests"))?;
        let mut counts = Counts::default();
        let mut imported = 0;
        for row in rows {
            let state: String = row.try_get(0).map_err(self.db("count requests"))?;
            let n = uint(row.try_get(1).map_err(self.db("count requests"))?, "count")?;
            imported += n;
            match state.as_str() {
                "pending" | "batched" => counts.pending += n,
                other => counts.add(
                    ResultStatus::parse(other).ok_or_else(|| {
                        StoreError::Corrupt(format!("run {run_id}: request state `{other}`"))
                    })?,
                    n,
                ),
            }
        }
        // While importing, the total is what has arrived so far.
        counts.total = match total {
            Some(total) => uint(total, "total")?,
            None => imported,
        };
        Ok(counts)
    }

    async fn run_cost(&self, run_id: &str) -> Result<f64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(SUM(cost_usd), 0.0) FROM results WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&self.reader)
            .await
            .map_err(self.db("sum a run's cost"))
    }

    async fn pending_groups(&self, run_id: &str) -> Result<Vec<Group>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT provider, model FROM requests \
             WHERE run_id = $1 AND state = 'pending' ORDER BY provider, model",
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
        let rows = sqlx::query(
            "SELECT seq, wire_bytes, est_input_tokens, max_tokens FROM requests \
             WHERE run_id = $1 AND state = 'pending' AND provider = $2 AND model = $3 \
             AND seq > $4 ORDER BY seq LIMIT $5",
        )
        .bind(run_id)
        .bind(group.provider.as_str())
        .bind(group.model.as_str())
        .bind(after_seq.map_or(-1, int))
        .bind(int(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(self.db("list pending requests"))?;
        rows.iter()
            .map(|row| {
                let get = |i: usize| -> Result<u64, StoreError> {
                    let v: i64 = row.try_get(i).map_err(self.db("list pending requests"))?;
                    uint(v, "request field")
                };
                Ok(PendingRequest {
                    seq: get(0)?,
                    wire_bytes: get(1)?,
                    est_input_tokens: get(2)?,
                    max_tokens: get(3)?,
                })
            })
            .collect()
    }

    /// Creates the batch and moves every pending request of its group within
    /// `first_seq..=last_seq` into it. A batch that takes no request (someone else planned
    /// them) is stored already `collected`, so it keeps its number but is never submitted.
    async fn create_batch(&self, batch: &NewBatch) -> Result<u64, StoreError> {
        let at = now();
        let mut tx = self.write().await?;
        self.require_run(&mut tx, &batch.run_id).await?;
        sqlx::query(
            "INSERT INTO batches (id, run_id, seq, provider, model, state, request_count, \
             first_seq, last_seq) \
             SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, 'planned', 0, $5, $6 \
             FROM batches WHERE run_id = $2",
        )
        .bind(&batch.id)
        .bind(&batch.run_id)
        .bind(batch.group.provider.as_str())
        .bind(&batch.group.model)
        .bind(int(batch.first_seq))
        .bind(int(batch.last_seq))
        .execute(&mut *tx)
        .await
        .map_err(self.db("create a batch"))?;
        let taken = sqlx::query(
            "UPDATE requests SET state = 'batched', batch_id = $1 \
             WHERE run_id = $2 AND state = 'pending' AND provider = $3 AND model = $4 \
             AND seq >= $5 AND seq <= $6",
        )
        .bind(&batch.id)
        .bind(&batch.run_id)
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
             state = CASE WHEN $2 = 0 THEN 'collected' ELSE state END, \
             closed_at = CASE WHEN $2 = 0 THEN $3 ELSE closed_at END \
             WHERE id = $1",
        )
        .bind(&batch.id)
        .bind(int(taken))
        .bind(&at)
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
             provider_status, submit_started_at, cost_usd \
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

    /// Every request whose `batch_id` is this batch: while it is open, all of them; after a
    /// partial collection, also the ones that already have their final line (requests sent
    /// back to pending have left the batch).
    async fn batch_items(&self, batch_id: &str) -> Result<Vec<BatchItem>, StoreError> {
        let mut tx = self.reader.begin().await.map_err(self.db("read a batch"))?;
        let rows = sqlx::query(
            "SELECT seq, custom_id, attempts, body FROM requests \
             WHERE batch_id = $1 ORDER BY seq",
        )
        .bind(batch_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(self.db("read a batch's requests"))?;
        if rows.is_empty() {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM batches WHERE id = $1")
                .bind(batch_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(self.db("read a batch"))?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("batch `{batch_id}`")));
            }
        }
        tx.commit().await.map_err(self.db("read a batch"))?;
        rows.iter()
            .map(|row| {
                let seq = uint(row.try_get(0).map_err(self.db("read a batch"))?, "seq")?;
                let attempts: i64 = row.try_get(2).map_err(self.db("read a batch"))?;
                let body: &str = row.try_get(3).map_err(self.db("read a batch"))?;
                Ok(BatchItem {
                    seq,
                    custom_id: row.try_get(1).map_err(self.db("read a batch"))?,
                    attempts: u32::try_from(attempts).map_err(|_| {
                        StoreError::Corrupt(format!("request {seq}: attempts {attempts}"))
                    })?,
                    request: serde_json::from_str::<Request>(body).map_err(|e| {
                        StoreError::Corrupt(format!("request {seq} of batch {batch_id}: {e}"))
                    })?,
                })
            })
            .collect()
    }

    /// Only from `planned`: records the open intent and moves the batch to `submitting`.
    async fn begin_submit(&self, batch_id: &str, at: Timestamp) -> Result<(), StoreError> {
        let at = stamp(at);
        let mut tx = self.write().await?;
        let (run_id, state, _) = self.batch_state(&mut tx, batch_id).await?;
        if state != BatchState::Planned {
            return Err(self.wrong_state(batch_id, state, "begin a submit (it must be planned)"));
        }
        sqlx::query(
            "INSERT INTO intents (run_id, batch_id, action, started_at) \
             VALUES ($1, $2, 'submit', $3)",
        )
        .bind(&run_id)
        .bind(batch_id)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("record a submit intent"))?;
        sqlx::query(
            "UPDATE batches SET state = 'submitting', submit_started_at = $2 WHERE id = $1",
        )
        .bind(batch_id)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("record a submit intent"))?;
        self.commit(tx).await
    }

    /// From `submitting`. Confirming again with the same remote id is a no-op (the attempt is
    /// counted once); any other state is an error.
    async fn confirm_submit(
        &self,
        batch_id: &str,
        provider_batch_id: &str,
        provider_status: &str,
    ) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.write().await?;
        let (_, state, remote) = self.batch_state(&mut tx, batch_id).await?;
        match state {
            BatchState::Submitting => {}
            _ if remote.as_deref() == Some(provider_batch_id) => return Ok(()),
            _ => {
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
        sqlx::query(
            "UPDATE requests SET attempts = attempts + 1 \
             WHERE batch_id = $1 AND state = 'batched'",
        )
        .bind(batch_id)
        .execute(&mut *tx)
        .await
        .map_err(self.db("count an attempt"))?;
        sqlx::query(
            "UPDATE intents SET confirmed_at = $2, outcome = 'created' \
             WHERE batch_id = $1 AND outcome IS NULL",
        )
        .bind(batch_id)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("close a submit intent"))?;
        self.commit(tx).await
    }

    /// From `submitting` back to `planned` (its requests stay in it); a no-op on a planned
    /// batch; an error once the provider has it.
    async fn abort_submit(&self, batch_id: &str) -> Result<(), StoreError> {
        let at = now();
        let mut tx = self.write().await?;
        let (_, state, _) = self.batch_state(&mut tx, batch_id).await?;
        match state {
            BatchState::Submitting => {}
            BatchState::Planned => return Ok(()),
            _ => return Err(self.wrong_state(batch_id, state, "abort a submit")),
        }
        sqlx::query("UPDATE batches SET state = 'planned', submit_started_at = NULL WHERE id = $1")
            .bind(batch_id)
            .execute(&mut *tx)
            .await
            .map_err(self.db("abort a submit"))?;
        sqlx::query(
            "UPDATE intents SET confirmed_at = $2, outcome = 'aborted' \
             WHERE batch_id = $1 AND outcome IS NULL",
        )
        .bind(batch_id)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("close a submit intent"))?;
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
    /// nothing. Within one call the first outcome of a seq wins.
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
        let (run_id, _, _) = self.batch_state(&mut tx, batch_id).await?;
        for chunk in outcomes.chunks(OUTCOME_ROWS) {
            self.apply_outcomes(&mut tx, &run_id, batch_id, chunk)
                .await?;
        }
        self.commit(tx).await
    }

    /// Sets the final state and the batch's cost (the sum of its result lines), books that
    /// cost in the ledger once, closes a submit intent still open (a batch the provider
    /// rejected: nothing was created), and sends any request still `batched` in it back to
    /// pending (a request must never be stranded in a closed batch).
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
        self.batch_state(&mut tx, batch_id).await?;
        sqlx::query(
            "UPDATE requests SET state = 'pending', batch_id = NULL \
             WHERE batch_id = $1 AND state = 'batched'",
        )
        .bind(batch_id)
        .execute(&mut *tx)
        .await
        .map_err(self.db("close a batch"))?;
        sqlx::query(
            "UPDATE batches SET state = $2, closed_at = COALESCE(closed_at, $3), \
             cost_usd = (SELECT COALESCE(SUM(cost_usd), 0.0) FROM results WHERE batch_id = $1) \
             WHERE id = $1",
        )
        .bind(batch_id)
        .bind(state.as_str())
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("close a batch"))?;
        // A batch rejected on submit still has its intent open: nothing was created.
        sqlx::query(
            "UPDATE intents SET confirmed_at = $2, outcome = 'aborted' \
             WHERE batch_id = $1 AND outcome IS NULL",
        )
        .bind(batch_id)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(self.db("close a submit intent"))?;
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
        let rows = sqlx::query(
            "SELECT seq, line FROM results WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after_seq.map_or(-1, int))
        .bind(int(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(self.db("read results"))?;
        rows.iter()
            .map(|row| {
                let seq = uint(row.try_get(0).map_err(self.db("read results"))?, "seq")?;
                Ok((seq, row.try_get(1).map_err(self.db("read results"))?))
            })
            .collect()
    }
}

fn outcome_seq(outcome: &Outcome) -> u64 {
    match outcome {
        Outcome::Final { seq, .. } | Outcome::Retry { seq, .. } => *seq,
    }
}

impl SqliteStore {
    /// Applies up to [`OUTCOME_ROWS`] outcomes (distinct seqs) with four set-based statements.
    /// The attempt and result rows are written first, while the `batched` filter still sees
    /// the requests they belong to.
    async fn apply_outcomes(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        run_id: &str,
        batch_id: &str,
        outcomes: &[&Outcome],
    ) -> Result<(), StoreError> {
        let full = outcomes.len() == OUTCOME_ROWS;
        // 1. One attempt row per outcome.
        let sql = format!(
            "WITH v (seq, attempt, status, error) AS (VALUES {}) \
             INSERT INTO attempts (run_id, seq, attempt, batch_id, status, error) \
             SELECT $1, v.seq, v.attempt, $2, v.status, v.error \
             FROM v JOIN requests r ON r.run_id = $1 AND r.seq = v.seq \
             WHERE r.batch_id = $2 AND r.state = 'batched' \
             ON CONFLICT DO NOTHING",
            values(outcomes.len(), 4, 3)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .persistent(full)
            .bind(run_id)
            .bind(batch_id);
        for outcome in outcomes {
            query = match outcome {
                Outcome::Final {
                    seq,
                    attempt,
                    status,
                    ..
                } => query
                    .bind(int(*seq))
                    .bind(i64::from(*attempt))
                    .bind(status.as_str())
                    .bind(None::<&str>),
                Outcome::Retry {
                    seq,
                    attempt,
                    error,
                } => query
                    .bind(int(*seq))
                    .bind(i64::from(*attempt))
                    .bind("retry")
                    .bind(Some(error.as_str())),
            };
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(self.db("record attempts"))?;

        let finals: Vec<(u64, ResultStatus, f64, &str)> = outcomes
            .iter()
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
        if !finals.is_empty() {
            // 2. The result lines.
            let sql = format!(
                "WITH v (seq, status, cost_usd, line) AS (VALUES {}) \
                 INSERT INTO results (run_id, seq, batch_id, status, cost_usd, line) \
                 SELECT $1, v.seq, $2, v.status, v.cost_usd, v.line \
                 FROM v JOIN requests r ON r.run_id = $1 AND r.seq = v.seq \
                 WHERE r.batch_id = $2 AND r.state = 'batched' \
                 ON CONFLICT DO NOTHING",
                values(finals.len(), 4, 3)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .persistent(full)
                .bind(run_id)
                .bind(batch_id);
            for (seq, status, cost, line) in &finals {
                query = query
                    .bind(int(*seq))
                    .bind(status.as_str())
                    .bind(*cost)
                    .bind(*line);
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(self.db("record results"))?;

            // 3. Their requests take the final status.
            let sql = format!(
                "WITH v (seq, status) AS (VALUES {}) \
                 UPDATE requests SET state = v.status FROM v \
                 WHERE requests.run_id = $1 AND requests.seq = v.seq \
                 AND requests.batch_id = $2 AND requests.state = 'batched'",
                values(finals.len(), 2, 3)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .persistent(full)
                .bind(run_id)
                .bind(batch_id);
            for (seq, status, ..) in &finals {
                query = query.bind(int(*seq)).bind(status.as_str());
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(self.db("finish requests"))?;
        }

        let retries: Vec<u64> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Retry { seq, .. } => Some(*seq),
                Outcome::Final { .. } => None,
            })
            .collect();
        if !retries.is_empty() {
            // 4. Retried requests leave the batch and wait for another one.
            let placeholders: Vec<String> =
                (0..retries.len()).map(|i| format!("${}", i + 3)).collect();
            let sql = format!(
                "UPDATE requests SET state = 'pending', batch_id = NULL \
                 WHERE run_id = $1 AND batch_id = $2 AND state = 'batched' AND seq IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .persistent(full)
                .bind(run_id)
                .bind(batch_id);
            for seq in &retries {
                query = query.bind(int(*seq));
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(self.db("send requests back to pending"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_numbers_placeholders_in_order() {
        assert_eq!(values(2, 3, 3), "($3, $4, $5), ($6, $7, $8)");
        assert!(insert_requests_sql(2).contains("VALUES ($1, $2, $3"));
        assert!(insert_requests_sql(2).contains("), ($1, $11, $12"));
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
