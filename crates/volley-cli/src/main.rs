//! `volley`: run LLM requests through the providers' batch APIs.
//!
//! Each subcommand lives in `cmd/`; everything the tool prints goes through `output`.
mod cli;
mod cmd;
mod exit;
mod output;
mod signals;

use clap::Parser;

/// mimalloc gives freed memory back to the system, so the process's RSS follows what a run
/// holds now instead of the highest it ever held (glibc's per-thread arenas kept the peak of
/// every batch collected; bench/RESULTS.md). Its v2 line (the `v2` feature in the workspace
/// manifest): at a million requests v3 peaked 27 MiB higher with the same live data.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    output::init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output::error(&format!("cannot start the async runtime: {e}"));
            return exit::Code::Usage.into();
        }
    };
    let code = runtime.block_on(cmd::dispatch(cli));
    // Provider calls may still be in flight after an interrupt; they must not delay the exit.
    runtime.shutdown_background();
    code.into()
}
