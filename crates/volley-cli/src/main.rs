//! `volley`: run LLM requests through the providers' batch APIs.
//!
//! Each subcommand lives in `cmd/`; everything the tool prints goes through `output`.
mod alloc;
mod cli;
mod cmd;
mod exit;
mod output;
mod signals;

use clap::Parser;

fn main() -> std::process::ExitCode {
    alloc::configure();
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
