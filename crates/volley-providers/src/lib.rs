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
pub use http::{Endpoint, HttpClient};
