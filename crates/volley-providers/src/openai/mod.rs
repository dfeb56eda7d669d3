//! OpenAI Files + Batches (provider-apis.md §B), and any server that speaks the same wire
//! (`OPENAI_BASE_URL`, which includes `/v1`).
//!
//! A batch is two calls: upload a JSONL file (`POST /files`, multipart, `purpose=batch`), then
//! create the batch from it (`POST /batches`). Results are two more files, the output file and
//! the error file, downloaded with `GET /files/{id}/content`. Every file volley uploads or
//! that a batch produced is deleted once its results are stored (see
//! docs/decisions/0006-openai-adapter.md).
mod api;
pub mod convert;
pub mod wire;

pub use api::OpenAiProvider;

/// The endpoint every line of a volley batch targets, and the batch's `endpoint`.
pub const CHAT_COMPLETIONS: &str = "/v1/chat/completions";

/// The only completion window OpenAI offers.
pub const COMPLETION_WINDOW: &str = "24h";

/// Metadata key holding volley's batch id on the remote batch (how a lost create is found).
pub const METADATA_BATCH_ID: &str = "volley_batch_id";

/// Metadata key holding volley's run id on the remote batch.
pub const METADATA_RUN_ID: &str = "volley_run_id";
