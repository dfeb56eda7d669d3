//! One module per subcommand.
mod cancel;
mod estimate;
mod models;
mod results;
mod run;
mod sim;
mod status;
mod summary;

use crate::cli::{Cli, Command};
use crate::exit::Code;

pub(crate) async fn dispatch(cli: Cli) -> Code {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Estimate(args) => estimate::estimate(&args).await,
        Command::Resume(args) => run::resume(args).await,
        Command::Cancel(args) => cancel::cancel(args).await,
        Command::Status(args) => status::status(args).await,
        Command::List(args) => status::list(args).await,
        Command::Results(args) => results::results(args).await,
        Command::Models(args) => models::models(&args),
        Command::Sim(args) => sim::sim(args).await,
    }
}

/// A stored run, looked up in a store opened without providers (the providers a run needs
/// depend on how it was made: `--simulate` or not).
async fn stored_run(store: Option<String>, run: &str) -> Result<volley::RunRecord, Code> {
    let probe = open_store(store).await?;
    probe.run(run).await.map_err(|e| {
        crate::output::error(&e.to_string());
        Code::Usage
    })
}

/// Opens the store without providers (for read-only commands).
async fn open_store(store: Option<String>) -> Result<volley::Volley, Code> {
    let mut builder = volley::Volley::builder().providers(volley::ProviderSetup::default());
    if let Some(store) = store {
        builder = builder.store(store);
    }
    builder.build().await.map_err(|e| {
        crate::output::error(&e.to_string());
        Code::Usage
    })
}
