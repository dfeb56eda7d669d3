//! WAL checkpoints on their own connection, next to the writer.
//!
//! SQLite checkpoints a WAL inside the commit that makes it long enough (`wal_autocheckpoint`),
//! on the committing connection. Here that is the store's one writer, so every writer in the
//! process waited while ~160 MB were copied into the database file and synced: a million
//! requests spent ~10 s of their collection in such commits (bench/RESULTS.md). A `PASSIVE`
//! checkpoint needs no write lock, so this task runs them on a connection of its own after
//! commits, at most every [`MIN_GAP`]: the writer keeps writing while pages are copied, and its
//! own automatic checkpoint, still set, finds little left to copy. Readers are not affected:
//! a passive checkpoint never copies a page a reader may still need.
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};

/// Least time between two checkpoints: each one syncs the WAL and the database file.
const MIN_GAP: Duration = Duration::from_millis(250);

/// Wakes the checkpoint task. The task ends, closing its connection, on [`Checkpointer::close`]
/// or when every clone of the store that owns it is gone.
#[derive(Debug, Clone)]
pub(crate) struct Checkpointer {
    wake: mpsc::Sender<Wake>,
}

#[derive(Debug)]
enum Wake {
    Committed,
    Close(oneshot::Sender<()>),
}

impl Checkpointer {
    /// Starts the task on the current runtime. `options` are the store's own, so the
    /// connection opens the same file in the same mode.
    pub(crate) fn start(options: SqliteConnectOptions) -> Self {
        // One slot: wake-ups while a checkpoint runs fold into one.
        let (wake, woken) = mpsc::channel(1);
        tokio::spawn(run(options, woken));
        Self { wake }
    }

    /// Says a write was committed.
    pub(crate) fn committed(&self) {
        let _ = self.wake.try_send(Wake::Committed);
    }

    /// Stops the task and closes its connection, so the writer, closed last, can fold the WAL
    /// into the database file and remove it.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.wake.send(Wake::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

async fn run(options: SqliteConnectOptions, mut woken: mpsc::Receiver<Wake>) {
    // Connected on first use, so a store that never writes opens no extra connection.
    let mut conn: Option<SqliteConnection> = None;
    let mut last: Option<Instant> = None;
    let mut closed = None;
    while let Some(wake) = woken.recv().await {
        if let Wake::Close(done) = wake {
            closed = Some(done);
            break;
        }
        // A wake-up inside the gap is dropped: the writer's next commit wakes the task again,
        // and its own automatic checkpoint is there if none comes.
        if last.is_some_and(|at| at.elapsed() < MIN_GAP) {
            continue;
        }
        last = Some(Instant::now());
        if conn.is_none() {
            match options.connect().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!(%e, "checkpoint connection");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *c)
            .await
        {
            Ok((busy, log, copied)) => tracing::trace!(busy, log, copied, "checkpoint"),
            // Nothing is lost: the writer's automatic checkpoint copies what this one did not.
            Err(e) => tracing::debug!(%e, "checkpoint"),
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
    if let Some(done) = closed {
        let _ = done.send(());
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqliteJournalMode;

    use super::*;

    #[tokio::test]
    async fn a_commit_gets_the_wal_copied_into_the_database_by_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        // No automatic checkpoint: only the task can move pages into the database file.
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("wal_autocheckpoint", "0");
        let mut writer = options.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (x TEXT)")
            .execute(&mut writer)
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
             INSERT INTO t SELECT printf('%.1000c', 'x') FROM n",
        )
        .execute(&mut writer)
        .await
        .unwrap();
        let before = std::fs::metadata(&path).unwrap().len();

        let checkpointer = Checkpointer::start(options);
        checkpointer.committed();
        // Handled in order: the checkpoint, then the close.
        checkpointer.close().await;

        let after = std::fs::metadata(&path).unwrap().len();
        assert!(
            after > before + 900_000,
            "database file {before} → {after} bytes"
        );
        // The writer is not held up by it: it writes again at once.
        sqlx::query("INSERT INTO t VALUES ('y')")
            .execute(&mut writer)
            .await
            .unwrap();
    }
}
