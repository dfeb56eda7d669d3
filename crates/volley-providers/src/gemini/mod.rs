//! Gemini batch mode, `batchGenerateContent` (provider-apis.md §C).
//!
//! A batch is sent inline (`inputConfig.requests`) while its create body stays under
//! [`INLINE_LIMIT`]; larger ones are uploaded as JSONL through the resumable Files protocol and
//! referenced by `inputConfig.fileName`. The key travels only in the `x-goog-api-key` header,
//! never in a URL, and only to the configured origin (docs/decisions/0007-gemini-adapter.md).
mod api;
pub mod convert;
pub mod wire;

pub use api::GeminiProvider;

/// The API version volley speaks (path prefix).
pub const API_VERSION: &str = "v1beta";

/// Largest create body sent inline, in bytes. Google asks to keep an inline batch request under
/// 20 MB; anything bigger goes through a file upload.
pub const INLINE_LIMIT: u64 = 20_000_000;

/// MIME type of the uploaded request file.
pub const JSONL_MIME: &str = "application/jsonl";
