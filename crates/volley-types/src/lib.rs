//! The IO-free domain model of volley.
//!
//! Everything here is plain data with serde: the normalised [`Request`] every stage works on,
//! the [`ResultLine`] written to `results.jsonl` (DESIGN.md §3.2), token [`Usage`], the
//! [`RunStatus`] object shown by `volley status --json`, and the small enums that name
//! providers and states. No crate below this one exists; every other crate depends on it.
#![warn(missing_docs)]

mod provider;
mod request;
mod result;
mod run;

pub use provider::ProviderKind;
pub use request::{Message, Part, Request, Role};
pub use result::{ErrorInfo, ErrorKind, Mode, ResultLine, ResultStatus, Usage};
pub use run::{BatchState, BatchSummary, Counts, RunState, RunStatus};
