//! Integration tests: a real simulator on loopback driven over HTTP with reqwest.

mod admin;
mod batches;
mod faults;
mod messages;
mod scale;
mod support;
