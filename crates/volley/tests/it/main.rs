//! Lifecycle tests of the facade: real HTTP against `volley-sim`, the real SQLite store.
mod cost_cap;
mod estimate;
mod lifecycle;
mod scheduling;
mod support;
