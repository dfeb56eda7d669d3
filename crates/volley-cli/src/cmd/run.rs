//! `volley run` and `volley resume`.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use volley::{
    CancellationToken, Counts, Error, InputError, PollPolicy, RunEnd, RunRecord, RunSpec,
    SimConfig, Volley, VolleyBuilder,
};

use super::summary;
use crate::cli::{DriveArgs, ResumeArgs, RunArgs};
use crate::exit::Code;
use crate::output::{self, Reporter};
use crate::signals::{self, OnSignal};

/// Prints every input problem with the file name, then the count.
pub(crate) fn report_input_errors(input: &Path, errors: &[InputError], count: u64) {
    for e in errors {
        output::error(&format!("{}: {e}", input.display()));
    }
    if count > errors.len() as u64 {
        output::error(&format!("… and {} more", count - errors.len() as u64));
    }
    output::error(&format!(
        "{count} problem(s) in {}; nothing was submitted",
        input.display()
    ));
}

pub(crate) async fn run(args: RunArgs) -> Code {
    if args.dry_run {
        return super::estimate::dry_run(&args).await;
    }
    let reporter = Reporter::new();
    let volley = match build(
        args.store.store,
        args.drive.simulate,
        &args.drive,
        &reporter,
    )
    .await
    {
        Ok(volley) => volley,
        Err(code) => return code,
    };
    let spec = RunSpec {
        model: args.input.model.clone(),
        max_tokens: args.input.max_tokens,
        options: volley::RunOptions {
            max_attempts: args.max_attempts.max(1),
            max_cost_usd: args.max_cost_usd,
            ..Default::default()
        },
        out: args.drive.out.as_ref().map(|p| p.display().to_string()),
        fresh: args.fresh,
    };
    let started = match volley.start_file(&args.input.input, spec).await {
        Ok(started) => started,
        Err(Error::Input { errors, count }) => {
            report_input_errors(&args.input.input, &errors, count);
            return Code::Usage;
        }
        Err(e) => {
            output::error(&e.to_string());
            return Code::Usage;
        }
    };
    if started.already_completed {
        output::info(&format!(
            "resuming run {}: it already completed this input with these options, so nothing is submitted again (--fresh runs it again and pays again)",
            started.run.id
        ));
    } else if started.resumed {
        output::info(&format!(
            "resuming run {} (same input and options; --fresh starts a new run)",
            started.run.id
        ));
    } else {
        let groups: Vec<String> = started
            .validation
            .groups
            .iter()
            .map(|((provider, model), n)| format!("{n} × {provider}/{model}"))
            .collect();
        output::info(&format!(
            "run {} started: {} requests ({}){}",
            started.run.id,
            started.run.total,
            groups.join(", "),
            if volley.simulator().is_some() {
                " against the embedded simulator"
            } else {
                ""
            }
        ));
    }
    drive(&volley, started.run, &args.drive, &reporter).await
}

pub(crate) async fn resume(args: ResumeArgs) -> Code {
    let reporter = Reporter::new();
    // A run created with --simulate resumes against a simulator too.
    let run = match super::stored_run(args.store.store.clone(), &args.run).await {
        Ok(run) => run,
        Err(code) => return code,
    };
    let simulate = args.drive.simulate || run.options.simulate;
    if run.options.simulate && !args.drive.simulate {
        output::info(
            "this run was made with --simulate: resuming against a new embedded simulator (batches that lived in the old one are submitted again)",
        );
    }
    let volley = match build(args.store.store, simulate, &args.drive, &reporter).await {
        Ok(volley) => volley,
        Err(code) => return code,
    };
    output::info(&format!("resuming run {}", run.id));
    drive(&volley, run, &args.drive, &reporter).await
}

/// What `drive` and `cancel` both configure: store, simulator, poll interval, progress.
pub(crate) fn base_builder(
    store: Option<String>,
    simulate: bool,
    sim_processing_ms: u64,
    poll_interval: Option<u64>,
    reporter: &Arc<Reporter>,
) -> VolleyBuilder {
    let sink = reporter.clone();
    let mut builder = Volley::builder().on_event(move |event| sink.event(event));
    if let Some(store) = store {
        builder = builder.store(store);
    }
    if simulate {
        builder = builder.simulate(SimConfig {
            processing: std::time::Duration::from_millis(sim_processing_ms),
            ..SimConfig::default()
        });
    }
    if let Some(ms) = poll_interval {
        let initial = std::time::Duration::from_millis(ms.max(10));
        let base = if simulate {
            PollPolicy::SIMULATOR
        } else {
            PollPolicy::PROVIDER
        };
        builder = builder.poll_policy(PollPolicy {
            initial,
            max: base.max.max(initial),
            ..base
        });
    }
    builder
}

async fn build(
    store: Option<String>,
    simulate: bool,
    drive: &DriveArgs,
    reporter: &Arc<Reporter>,
) -> Result<Volley, Code> {
    let mut builder = base_builder(
        store,
        simulate,
        drive.sim_processing_ms,
        drive.poll_interval,
        reporter,
    );
    if let Some(n) = drive.plan.max_batch_requests {
        builder = builder.max_batch_requests(n);
    }
    if let Some(profile) = &drive.plan.openai_profile {
        builder = builder.openai_profile(profile);
    }
    if let Some(n) = drive.plan.enqueued_token_budget {
        builder = builder.enqueued_token_budget(n);
    }
    builder = builder
        .max_concurrent_batches(usize::try_from(drive.max_concurrent_batches).unwrap_or(usize::MAX))
        .create_grace(std::time::Duration::from_secs(drive.create_grace));
    builder.build().await.map_err(|e| {
        output::error(&e.to_string());
        Code::Usage
    })
}

async fn drive(volley: &Volley, run: RunRecord, args: &DriveArgs, reporter: &Reporter) -> Code {
    let code = drive_and_report(volley, run, args, reporter).await;
    // A clean close leaves the store as one file: a million-request run otherwise leaves a
    // write-ahead log of up to ~160 MB beside it until the next open. Bounded, so a stuck
    // connection cannot keep the process from exiting.
    if tokio::time::timeout(std::time::Duration::from_secs(10), volley.close())
        .await
        .is_err()
    {
        tracing::debug!("the store did not close within 10 s");
    }
    code
}

async fn drive_and_report(
    volley: &Volley,
    run: RunRecord,
    args: &DriveArgs,
    reporter: &Reporter,
) -> Code {
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let on_signal = if args.cancel_on_exit {
        OnSignal::CancelRun
    } else {
        OnSignal::Stop
    };
    signals::install(shutdown.clone(), run.id.clone(), on_signal);
    let counts = volley.store().counts(&run.id).await.unwrap_or_default();
    reporter.start(counts.total, counts.done());
    let end = if args.cancel_on_exit {
        // A second signal exits the process: nothing else stops the wait for the cancel.
        let abort = CancellationToken::new();
        volley
            .drive_cancel_on_exit(&run.id, shutdown.clone(), abort)
            .await
    } else {
        volley.drive(&run.id, shutdown.clone()).await
    };
    reporter.finish();
    let end = match end {
        Ok(end) => end,
        Err(e) => {
            output::error(&e.to_string());
            output::error(&format!(
                "run {} stopped; fix the cause and continue with: volley resume {}",
                run.id, run.id
            ));
            return Code::Usage;
        }
    };
    let code = match end {
        RunEnd::Interrupted { counts, .. } => {
            output::info(&format!(
                "run {} interrupted with {} of {} requests done; state saved.\n  continue with: volley resume {}",
                run.id,
                counts.done(),
                counts.total,
                run.id
            ));
            Code::Interrupted
        }
        RunEnd::Completed { counts, .. } => {
            finish(volley, &run, args.out.clone(), counts, started, "completed").await
        }
        RunEnd::Canceled { counts, .. } => {
            let code = finish(volley, &run, args.out.clone(), counts, started, "canceled").await;
            super::cancel::report_canceled(&run.id, counts, reporter);
            // Canceled because of our signal (--cancel-on-exit): the caller interrupted it.
            if shutdown.is_cancelled() && code != Code::Usage {
                Code::Interrupted
            } else {
                code
            }
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

/// Writes results.jsonl, prints the summary, and says what the counts mean as an exit code.
pub(crate) async fn finish(
    volley: &Volley,
    run: &RunRecord,
    out: Option<PathBuf>,
    counts: Counts,
    started: Instant,
    ended: &str,
) -> Code {
    let out_dir = out
        .or_else(|| run.out.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("volley-results").join(&run.id));
    let path = out_dir.join("results.jsonl");
    let tally = summary::Tally::start(volley.catalog().clone());
    if let Err(e) = volley
        .write_results_and_pass(&run.id, &path, |page| tally.add(page))
        .await
    {
        output::error(&e.to_string());
        return Code::Usage;
    }
    match tally.finish() {
        Ok(summary) => output::info(&summary.render(&run.id, ended, started.elapsed(), &path)),
        Err(e) => output::error(&format!("cannot summarise {}: {e}", path.display())),
    }
    if counts.skipped > 0 {
        output::info(&format!(
            "{} request(s) skipped: the cost cap left no room for them",
            counts.skipped
        ));
        Code::CostCap
    } else if counts.failed + counts.expired + counts.canceled > 0 {
        Code::Failed
    } else {
        Code::Success
    }
}
