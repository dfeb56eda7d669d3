//! Anthropic Message Batches (provider-apis.md §A).
mod api;
pub mod convert;
pub mod wire;

pub use api::AnthropicProvider;

/// The API version volley speaks.
pub const API_VERSION: &str = "2023-06-01";
