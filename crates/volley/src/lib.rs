//! # volley
//!
//! Run thousands to millions of LLM requests through the providers' batch APIs (Anthropic
//! Message Batches, OpenAI Batch, Gemini Batch: half the real-time price), with crash-safe
//! state and structured results.
//!
//! ```no_run
//! # async fn demo() -> Result<(), volley::Error> {
//! use volley::{RunSpec, Volley};
//!
//! // No keys needed: `simulate` points every provider at the embedded simulator.
//! let volley = Volley::builder().simulate(Default::default()).memory_store().build().await?;
//! let run = volley
//!     .new_run(RunSpec::default().model("claude-haiku-4-5"))
//!     .prompt("q-1", "Classify the sentiment: I loved it")
//!     .prompt("q-2", "Classify the sentiment: It broke on day one")
//!     .start()
//!     .await?;
//! let end = volley.drive(&run, Default::default()).await?;
//! for line in volley.results(&run).await? {
//!     println!("{}: {:?}", line.id, line.text);
//! }
//! # let _ = end; Ok(()) }
//! ```
//!
//! The same engine backs the `volley` CLI; see the README for the command-line tour.
#![warn(missing_docs)]

pub mod builder;
mod error;
mod estimate;
mod providers;
mod run;

pub use builder::VolleyBuilder;
pub use error::Error;
pub use estimate::{EstimateBuilder, TokenCounter, estimate};
pub use providers::ProviderSetup;
pub use run::{RunBuilder, RunSpec, Started, estimate_file};
pub use volley_core::catalog::{Catalog, ModelEntry, Profile, profiles};
pub use volley_core::engine::{EngineConfig, RunEnd};
pub use volley_core::events::{Event, EventSink};
pub use volley_core::input::{InputError, InputOptions, Validation};
pub use volley_core::plan_estimate::{Estimate, ModelEstimate};
pub use volley_core::poll::PollPolicy;
pub use volley_core::retry::RetryPolicy;
pub use volley_core::store::{RunOptions, RunRecord, Store};
pub use volley_providers::Endpoint;
pub use volley_sim::{SimConfig, Simulator};
pub use volley_types::*;

use std::path::Path;
use std::sync::Arc;

pub use tokio_util::sync::CancellationToken;
use volley_core::engine::Engine;
use volley_core::provider::Providers;

/// A configured volley: a store, providers, the catalog and the engine.
pub struct Volley {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) store_location: String,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) providers: Providers,
    pub(crate) engine: Engine,
    pub(crate) simulator: Option<Simulator>,
}

impl Volley {
    /// Starts configuring.
    pub fn builder() -> VolleyBuilder {
        VolleyBuilder::default()
    }

    /// The model catalog in use.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Where the store is (path or URL).
    pub fn store_location(&self) -> &str {
        &self.store_location
    }

    /// The embedded simulator, when running with `simulate`.
    pub fn simulator(&self) -> Option<&Simulator> {
        self.simulator.as_ref()
    }

    /// Providers that have a key (or the simulator).
    pub fn configured_providers(&self) -> Vec<ProviderKind> {
        self.providers.kinds().collect()
    }

    /// Drives a run until every request has a result, or `shutdown` fires.
    pub async fn drive(&self, run_id: &str, shutdown: CancellationToken) -> Result<RunEnd, Error> {
        Ok(self.engine.drive(run_id, shutdown).await?)
    }

    /// Cancels a run: nothing more is submitted, its batches at the provider are cancelled
    /// there and collected when they end (answers that came back are kept), and every request
    /// that never ran gets a `canceled` result line. Waits for the cancelled batches to end;
    /// if `stop` fires first it returns [`RunEnd::Interrupted`], and calling `cancel` again
    /// finishes the job. Safe to call twice, or after a crash in the middle of a cancel.
    ///
    /// Another process driving the same run notices the cancel, stops submitting and
    /// finishes it too.
    pub async fn cancel(&self, run_id: &str, stop: CancellationToken) -> Result<RunEnd, Error> {
        Ok(self.engine.cancel(run_id, stop).await?)
    }

    /// Like [`Volley::drive`], but when `shutdown` fires the run is canceled instead of being
    /// left running at the providers (the CLI's `--cancel-on-exit`): the result is then
    /// [`RunEnd::Canceled`]. `abort` stops waiting for the cancelled batches to end
    /// ([`RunEnd::Interrupted`]; [`Volley::cancel`] finishes later).
    pub async fn drive_cancel_on_exit(
        &self,
        run_id: &str,
        shutdown: CancellationToken,
        abort: CancellationToken,
    ) -> Result<RunEnd, Error> {
        match self.engine.drive(run_id, shutdown.clone()).await? {
            RunEnd::Interrupted { .. } if shutdown.is_cancelled() => {
                self.cancel(run_id, abort).await
            }
            end => Ok(end),
        }
    }

    /// A run by id or unique prefix.
    pub async fn run(&self, id_or_prefix: &str) -> Result<RunRecord, Error> {
        self.store
            .run(id_or_prefix)
            .await?
            .ok_or_else(|| Error::UnknownRun(id_or_prefix.to_owned()))
    }

    /// The status object of a run (DESIGN.md §3.3).
    pub async fn status(&self, id_or_prefix: &str) -> Result<RunStatus, Error> {
        let run = self.run(id_or_prefix).await?;
        self.status_of(run).await
    }

    /// Status objects of every run, newest first.
    pub async fn list(&self) -> Result<Vec<RunStatus>, Error> {
        let mut out = Vec::new();
        for run in self.store.runs().await? {
            out.push(self.status_of(run).await?);
        }
        Ok(out)
    }

    async fn status_of(&self, run: RunRecord) -> Result<RunStatus, Error> {
        let counts = self.store.counts(&run.id).await?;
        let cost_usd = self.store.run_cost(&run.id).await?;
        let reserved_usd = self.store.reserved_usd(&run.id).await?;
        let batches = self
            .store
            .batches(&run.id)
            .await?
            .into_iter()
            .map(|b| BatchSummary {
                id: b.id,
                provider: b.group.provider,
                model: b.group.model,
                state: b.state,
                requests: b.request_count,
                provider_batch_id: b.provider_batch_id,
                provider_status: b.provider_status,
                cost_usd: b.cost_usd,
            })
            .collect();
        Ok(RunStatus {
            id: run.id,
            status: run.state,
            created_at: run.created_at,
            input: run.input,
            out: run.out,
            counts,
            cost_usd,
            reserved_usd,
            max_cost_usd: run.options.max_cost_usd,
            batches,
        })
    }

    /// Every stored result line of a run, in input order (finished requests only).
    pub async fn results(&self, run_id: &str) -> Result<Vec<ResultLine>, Error> {
        let mut lines = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.results(run_id, after, 10_000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            for (_, line) in page {
                lines.push(serde_json::from_str(&line).map_err(|e| {
                    Error::Store(volley_core::StoreError::Corrupt(format!(
                        "result line: {e}"
                    )))
                })?);
            }
        }
        Ok(lines)
    }

    /// Closes the store once every call has returned: a SQLite store folds its write-ahead
    /// log back into the database file and removes it (unless another process has it open).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Writes `results.jsonl` for a run atomically; returns the number of lines.
    pub async fn write_results(&self, run_id: &str, path: &Path) -> Result<u64, Error> {
        self.write_results_and_pass(run_id, path, |_| {}).await
    }

    /// [`Volley::write_results`], handing `written` each page of lines (in input order) once
    /// it is in the file: to add the results up while they are written, not by reading the
    /// file again.
    pub async fn write_results_and_pass(
        &self,
        run_id: &str,
        path: &Path,
        mut written: impl FnMut(Vec<String>) + Send,
    ) -> Result<u64, Error> {
        Ok(
            volley_core::export::write_results_file(
                self.store.as_ref(),
                run_id,
                path,
                &mut written,
            )
            .await?,
        )
    }

    /// Streams a run's result lines, in input order, to `out` (for `volley results`).
    pub async fn copy_results(
        &self,
        run_id: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<u64, Error> {
        Ok(volley_core::export::write_results(self.store.as_ref(), run_id, out).await?)
    }

    /// Stops the embedded simulator, if any.
    pub async fn shutdown(self) {
        if let Some(sim) = self.simulator {
            sim.shutdown().await;
        }
    }
}
