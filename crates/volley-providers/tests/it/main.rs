//! The Anthropic adapter against `volley-sim`, over real HTTP.
mod anthropic;
mod count_tokens;
mod gemini;
mod intents;
mod openai;
mod reconcile;
mod support;
