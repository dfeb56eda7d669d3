//! The schema migration runner: embedded SQL files applied in order, each in the same
//! `BEGIN IMMEDIATE` transaction as its `schema_migrations` row.
//!
//! sqlx's `migrate!` macro is deliberately not used (it would bring sqlx's proc macros into
//! every build); see docs/decisions/0003-store-sqlx-sqlite.md.
use sqlx::{Connection, Row, SqliteConnection};

/// One embedded migration.
struct Migration {
    version: i64,
    sql: &'static str,
}

/// Every migration, oldest first. Versions are consecutive from 1; never edit a released one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../migrations/sqlite/0002_cost_cap.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("../migrations/sqlite/0003_enqueued_tokens.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("../migrations/sqlite/0004_cancel_delete_intents.sql"),
    },
    Migration {
        version: 5,
        sql: include_str!("../migrations/sqlite/0005_compact_requests.sql"),
    },
    Migration {
        version: 6,
        sql: include_str!("../migrations/sqlite/0006_rowid_bodies_results.sql"),
    },
    Migration {
        version: 7,
        sql: include_str!("../migrations/sqlite/0007_covering_pending_index.sql"),
    },
];

/// The newest schema version this build knows.
pub(crate) const LATEST: i64 = 7;

/// Why migrating failed.
#[derive(Debug)]
pub(crate) enum MigrateError {
    /// The store's schema is newer than [`LATEST`].
    Newer(i64),
    /// SQLite failed.
    Database(sqlx::Error),
}

impl From<sqlx::Error> for MigrateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

/// The store's schema version (0 for an empty database).
pub(crate) async fn current_version(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if exists.is_none() {
        return Ok(0);
    }
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await?;
    row.try_get(0)
}

/// Brings the schema to [`LATEST`]. Safe when several processes open the store at once: the
/// check is repeated under the write lock, so each migration runs exactly once.
pub(crate) async fn migrate(conn: &mut SqliteConnection, now: &str) -> Result<(), MigrateError> {
    // Fast path without the write lock: `volley status` next to a busy `volley run`.
    let version = current_version(conn).await?;
    if version > LATEST {
        return Err(MigrateError::Newer(version));
    }
    if version == LATEST {
        return Ok(());
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at TEXT NOT NULL
         )",
    )
    .execute(&mut *tx)
    .await?;
    let version = current_version(&mut tx).await?;
    if version > LATEST {
        return Err(MigrateError::Newer(version));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > version) {
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_end_at_latest() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST));
    }
}
