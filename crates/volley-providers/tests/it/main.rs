//! The Anthropic adapter against `volley-sim`, over real HTTP.
mod anthropic;
mod gemini;
mod openai;
mod reconcile;
mod support;
