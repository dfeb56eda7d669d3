//! The command line, as clap sees it.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run thousands to millions of LLM requests through the providers' batch APIs, at half the
/// real-time price, with crash-safe resume.
#[derive(Debug, Parser)]
#[command(name = "volley", version, about, long_about = None)]
pub(crate) struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run every request of a JSONL file through the batch APIs and write results.jsonl.
    Run(RunArgs),
    /// What a run would cost and how it would be batched; nothing stored, no network call
    /// unless --exact-tokens.
    Estimate(EstimateArgs),
    /// Continue an interrupted run: re-attach to its batches, submit only what was never sent.
    Resume(ResumeArgs),
    /// Cancel a run: cancel its batches at the providers, keep what they answered, mark the
    /// rest canceled, write results.jsonl.
    Cancel(CancelArgs),
    /// Show a run's progress and cost (the newest run if none is named).
    Status(StatusArgs),
    /// List runs, newest first.
    List(ListArgs),
    /// Print a run's result lines, in input order (whatever is done so far).
    Results(ResultsArgs),
    /// List the models volley knows, with batch prices and limits.
    Models(ModelsArgs),
    /// Run the provider simulator (Anthropic, OpenAI and Gemini APIs) on 127.0.0.1.
    Sim(SimArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Where state lives: sqlite://path (default sqlite://.volley/volley.db).
    #[arg(long, env = "VOLLEY_STORE", global = true)]
    pub(crate) store: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DriveArgs {
    /// Output folder (default volley-results/<run id>/).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Print the final run status as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Use the embedded simulator instead of the real APIs (no keys needed).
    #[arg(long)]
    pub(crate) simulate: bool,
    #[command(flatten)]
    pub(crate) plan: PlanArgs,
    /// Most batches at one provider at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_concurrent_batches: u64,
    /// Seconds a create left unanswered by a crash is given to reach the provider: until then
    /// a batch that cannot be found there is not sent again (and its provider gets no new
    /// batch), so a request still on its way is never paid twice.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub(crate) create_grace: u64,
    /// First poll interval in milliseconds; it grows while a batch does not change
    /// (default 5000 against real APIs, 100 with --simulate).
    #[arg(long, value_name = "MS")]
    pub(crate) poll_interval: Option<u64>,
    /// Simulated batch processing time in milliseconds (with --simulate).
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "simulate")]
    pub(crate) sim_processing_ms: u64,
    /// On the first Ctrl-C or SIGTERM, cancel the run's batches at the providers (as
    /// `volley cancel` does) instead of leaving them running.
    #[arg(long)]
    pub(crate) cancel_on_exit: bool,
}

/// The input, and defaults for lines that leave something out.
#[derive(Debug, Args)]
pub(crate) struct InputArgs {
    /// The input: JSONL, one request per line (see docs/input.md).
    pub(crate) input: PathBuf,
    /// Model for lines that name none.
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// max_tokens for lines that give none (default 1024).
    #[arg(long, value_name = "N")]
    pub(crate) max_tokens: Option<u32>,
}

/// How requests are packed into provider batches (run, resume, estimate).
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// Requests per batch (default 20000, within the provider's own limit): volley holds a
    /// batch's requests in memory while it creates it; smaller batches come back sooner.
    #[arg(long, value_name = "N")]
    pub(crate) max_batch_requests: Option<u64>,
    /// Send OpenAI-model requests to a named OpenAI-compatible batch server (`volley models`
    /// lists them): its base URL, key variable and limits.
    #[arg(long, value_name = "NAME", env = "VOLLEY_OPENAI_PROFILE")]
    pub(crate) openai_profile: Option<String>,
    /// Input tokens that may be enqueued at the provider at once, per model (overrides the
    /// catalog's limits, e.g. Gemini's tier-1 values; see docs/scheduling.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) enqueued_token_budget: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) input: InputArgs,
    /// Submissions per request before a transient failure is final.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(crate) max_attempts: u32,
    /// Hard cost cap in USD: a batch is submitted only if its worst case fits; requests that
    /// cannot fit are `skipped` (exit code 3).
    #[arg(long, value_name = "USD")]
    pub(crate) max_cost_usd: Option<f64>,
    /// Start a new run even if a run with the same input and options exists (unfinished runs
    /// are otherwise resumed, completed ones reused without paying again).
    #[arg(long)]
    pub(crate) fresh: bool,
    /// Show the estimate and stop: nothing is submitted or stored.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// With --dry-run: ask the providers' count-tokens endpoints for every request's input
    /// tokens (network calls; needs keys, or --simulate).
    #[arg(long, requires = "dry_run")]
    pub(crate) exact_tokens: bool,
    #[command(flatten)]
    pub(crate) drive: DriveArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct EstimateArgs {
    #[command(flatten)]
    pub(crate) input: InputArgs,
    #[command(flatten)]
    pub(crate) plan: PlanArgs,
    /// Print the estimate as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Ask the providers' count-tokens endpoints for every request's input tokens instead of
    /// estimating them (one call per request; needs the providers' keys).
    #[arg(long)]
    pub(crate) exact_tokens: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// Run id (or a unique prefix).
    pub(crate) run: String,
    #[command(flatten)]
    pub(crate) drive: DriveArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// Run id (or a unique prefix).
    pub(crate) run: String,
    /// Output folder for results.jsonl (default: the run's).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Print the final run status as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// First poll interval in milliseconds while waiting for cancelled batches to end.
    #[arg(long, value_name = "MS")]
    pub(crate) poll_interval: Option<u64>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Run id (or a unique prefix); default: the newest run.
    pub(crate) run: Option<String>,
    /// Print the status object as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print `{"runs": [...]}` as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ResultsArgs {
    /// Run id (or a unique prefix).
    pub(crate) run: String,
    /// Write to this file (atomically) instead of stdout.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ModelsArgs {
    /// Print the catalog as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8089)]
    pub(crate) port: u16,
    /// Time from batch creation to its end, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub(crate) processing_ms: u64,
    /// Fraction of requests that fail with a transient error.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) error_rate: f64,
    /// Fraction of requests that expire.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) expired_rate: f64,
    /// Answer every Nth API call with 429 and retry-after.
    #[arg(long, value_name = "N")]
    pub(crate) rate_limit_every: Option<u64>,
    /// Answer every Nth API call with 529/500.
    #[arg(long, value_name = "N")]
    pub(crate) server_error_every: Option<u64>,
    /// The delay 429s ask for, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub(crate) retry_after_ms: u64,
    /// Seed for answers and faults.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}
