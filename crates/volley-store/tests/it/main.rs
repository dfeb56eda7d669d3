//! Integration tests of the SQLite store: every `Store` method, the batch lifecycle as the
//! engine drives it, idempotency, migrations and several processes on one file.
mod cap;
mod common;
mod files;
mod import;
mod intents;
mod lifecycle;
mod outcomes;
mod runs;
mod submit;
