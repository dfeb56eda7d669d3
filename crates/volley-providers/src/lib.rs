//! Provider adapters for volley.
//!
//! Each provider folder has `wire.rs` (serde structs of the provider's JSON), `convert.rs`
//! (pure mapping between volley's types and the wire, snapshot-tested) and `api.rs` (the
//! endpoint calls, through the one shared executor in [`http`]). Building a request and parsing
//! a response never touch the network, so they are tested without a server; the lifecycle is
//! tested against `volley-sim`.
#![warn(missing_docs)]

pub mod anthropic;
pub mod gemini;
pub mod http;
pub mod openai;

pub use anthropic::AnthropicProvider;
pub use gemini::GeminiProvider;
pub use openai::OpenAiProvider;

use volley_core::provider::SubmissionItem;
use volley_types::ProviderKind;

/// Bytes `item` takes in `kind`'s batch body, computed without a provider instance (for
/// estimates made with no keys and no network).
pub fn wire_size(kind: ProviderKind, item: &SubmissionItem) -> u64 {
    match kind {
        ProviderKind::Anthropic => anthropic::convert::wire_size(item),
        ProviderKind::OpenAi => openai::convert::wire_size(item),
        ProviderKind::Gemini => gemini::convert::wire_size(item),
    }
}
pub use http::{Endpoint, HttpClient};
