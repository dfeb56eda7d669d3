//! volley's durable state.
//!
//! [`SqliteStore`] implements [`volley_core::store::Store`] over one SQLite file (WAL mode,
//! `synchronous=NORMAL`, foreign keys on, a busy timeout so several processes can share it).
//! The schema is created and upgraded by embedded, numbered SQL migrations
//! (`migrations/sqlite/NNNN_*.sql`) tracked in `schema_migrations`; a store written by a newer
//! volley is refused with [`volley_core::StoreError::NewerSchema`]. Nothing in the store is
//! secret: API keys are never written to it.
//!
//! See docs/decisions/0003-store-sqlx-sqlite.md for why sqlx and why no sqlx macros.
#![warn(missing_docs)]

mod checkpoint;
mod location;
mod migrate;
mod sqlite;

pub use sqlite::SqliteStore;

/// The newest schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = migrate::LATEST;
