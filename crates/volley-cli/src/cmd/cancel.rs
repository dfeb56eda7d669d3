//! `volley cancel RUN`: cancel a run's batches at the providers, keep what they answered, give
//! every request that never ran a `canceled` line, and write results.jsonl.
use std::time::Instant;

use volley::{CancellationToken, Counts, RunEnd};

use super::run::{base_builder, finish};
use crate::cli::CancelArgs;
use crate::exit::Code;
use crate::output::{self, Reporter};
use crate::signals::{self, OnSignal};

pub(crate) async fn cancel(args: CancelArgs) -> Code {
    let started = Instant::now();
    let reporter = Reporter::new();
    let run = match super::stored_run(args.store.store.clone(), &args.run).await {
        Ok(run) => run,
        Err(code) => return code,
    };
    if run.options.simulate {
        output::info(
            "this run was made with --simulate: its batches lived in that process's simulator, so they are collected as canceled",
        );
    }
    let volley = match base_builder(
        args.store.store,
        run.options.simulate,
        0,
        args.poll_interval,
        &reporter,
    )
    .build()
    .await
    {
        Ok(volley) => volley,
        Err(e) => {
            output::error(&e.to_string());
            return Code::Usage;
        }
    };
    output::info(&format!("canceling run {}", run.id));
    let stop = CancellationToken::new();
    signals::install(stop.clone(), run.id.clone(), OnSignal::StopCancel);
    let counts = volley.store().counts(&run.id).await.unwrap_or_default();
    reporter.start(counts.total, counts.done());
    let end = volley.cancel(&run.id, stop).await;
    reporter.finish();
    let code = match end {
        Err(e) => {
            output::error(&e.to_string());
            return Code::Usage;
        }
        Ok(RunEnd::Interrupted { counts, .. }) => {
            output::info(&format!(
                "run {} is canceled; {} of {} requests have their result so far, the rest are in batches still ending at the provider.\n  collect them with: volley cancel {}",
                run.id,
                counts.done(),
                counts.total,
                run.id
            ));
            Code::Interrupted
        }
        Ok(RunEnd::Canceled { counts, .. } | RunEnd::Completed { counts, .. }) => {
            let code = finish(&volley, &run, args.out, counts, started, "canceled").await;
            report_canceled(&run.id, counts, &reporter);
            code
        }
    };
    if args.json {
        match volley.status(&run.id).await {
            Ok(status) => output::json(&status),
            Err(e) => output::error(&e.to_string()),
        }
    }
    code
}

/// What a cancel did, in one paragraph.
pub(crate) fn report_canceled(run_id: &str, counts: Counts, reporter: &Reporter) {
    let (remote, unsubmitted) = reporter.canceled_batches();
    output::info(&format!(
        "run {run_id} canceled: {remote} batch(es) canceled at the provider, {unsubmitted} never submitted; {} request(s) canceled, {} answered before the cancel ({} succeeded, {} failed, {} expired). Nothing more will be submitted for this run; `volley run` of the same input starts a new one.",
        counts.canceled,
        counts.succeeded + counts.failed + counts.expired,
        counts.succeeded,
        counts.failed,
        counts.expired,
    ));
}
