//! volley's pipeline, free of HTTP and SQL.
//!
//! The stages of DESIGN.md §1 live here as small modules: [`input`] parses and validates the
//! user's JSONL, [`catalog`] knows models and prices, [`plan`] packs requests into provider
//! batches, [`catalog`] also prices usage, and [`engine`] drives submit → poll → collect → re-plan.
//! Providers and stores are reached only through the [`provider::BatchProvider`] and
//! [`store::Store`] traits, implemented in `volley-providers` and `volley-store`.
#![warn(missing_docs)]

pub mod catalog;
pub mod custom_id;
pub mod engine;
pub mod error;
pub mod estimate;
pub mod events;
pub mod export;
pub mod import;
pub mod input;
pub mod plan;
pub mod plan_estimate;
pub mod poll;
pub mod provider;
pub mod retry;
pub mod run_id;
pub mod store;

pub use catalog::Catalog;
pub use error::{ProviderError, StoreError};
