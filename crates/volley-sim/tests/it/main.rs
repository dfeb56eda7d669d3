//! Integration tests: a real simulator on loopback driven over HTTP with reqwest.

mod admin;
mod batches;
mod faults;
mod gemini;
mod messages;
mod openai;
mod scale;
mod support;
