//! Lifecycle tests of the facade: real HTTP against `volley-sim`, the real SQLite store.
mod lifecycle;
mod support;
