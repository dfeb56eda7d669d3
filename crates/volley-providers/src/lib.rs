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

use volley_core::provider::SubmissionItem;
use volley_types::ProviderKind;

/// Bytes `item` takes in `kind`'s batch body, computed without a provider instance (for
/// estimates made with no keys and no network).
pub fn wire_size(kind: ProviderKind, item: &SubmissionItem) -> u64 {
    match kind {
        ProviderKind::Anthropic => anthropic::convert::wire_size(item),
        // Until their adapters land, the JSON of the request is a close stand-in.
        ProviderKind::OpenAi | ProviderKind::Gemini => {
            serde_json::to_vec(&item.request).map_or(0, |v| v.len() as u64 + 128)
        }
    }
}
pub use http::{Endpoint, HttpClient};
