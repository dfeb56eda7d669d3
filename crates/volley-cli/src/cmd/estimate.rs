//! `volley estimate` and `volley run --dry-run`.
use std::path::Path;

use volley::{Catalog, Error, Estimate, ProviderSetup, RetryPolicy, RunSpec, SimConfig, Simulator};

use crate::cli::{EstimateArgs, InputArgs, PlanArgs, RunArgs};
use crate::exit::Code;
use crate::output;

pub(crate) async fn estimate(args: &EstimateArgs) -> Code {
    let exact = args.exact_tokens.then_some(Counting::FromEnv);
    show(&args.input, &args.plan, args.json, exact).await
}

pub(crate) async fn dry_run(args: &RunArgs) -> Code {
    let exact = args.exact_tokens.then_some(if args.drive.simulate {
        Counting::Simulator
    } else {
        Counting::FromEnv
    });
    show(&args.input, &args.drive.plan, args.drive.json, exact).await
}

/// Where `--exact-tokens` asks for counts.
#[derive(Debug, Clone, Copy)]
enum Counting {
    /// The providers' endpoints and keys from the environment.
    FromEnv,
    /// An embedded simulator (`--simulate`).
    Simulator,
}

/// Prints the estimate of the input (JSON on stdout with `json`); exit code 1 on bad input.
async fn show(input: &InputArgs, plan: &PlanArgs, json: bool, exact: Option<Counting>) -> Code {
    let mut catalog = Catalog::builtin();
    if let Some(name) = &plan.openai_profile {
        match volley::profiles().get(name) {
            Some(profile) => catalog.apply_openai_profile(profile),
            None => {
                output::error(&format!(
                    "unknown OpenAI-compatible profile `{name}` (`volley models` lists them)"
                ));
                return Code::Usage;
            }
        }
    }
    let spec = RunSpec {
        model: input.model.clone(),
        max_tokens: input.max_tokens,
        ..RunSpec::default()
    };
    let path = input.input.as_path();
    let builder = volley::estimate(&catalog, path)
        .spec(spec)
        .max_batch_requests(plan.max_batch_requests)
        .enqueued_token_budget(plan.enqueued_token_budget);
    let mut simulator = None;
    let result = match exact {
        None => builder.offline(),
        Some(counting) => {
            let setup = match counting {
                Counting::FromEnv => ProviderSetup::from_env(&catalog),
                Counting::Simulator => match Simulator::spawn(SimConfig::default()).await {
                    Ok(sim) => {
                        let setup = ProviderSetup::simulator(&sim.base_url());
                        simulator = Some(sim);
                        setup
                    }
                    Err(e) => {
                        output::error(&format!("cannot start the simulator: {e}"));
                        return Code::Usage;
                    }
                },
            };
            let counter = volley::TokenCounter::new(&setup, RetryPolicy::default());
            builder.exact_tokens(counter).run().await
        }
    };
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    match result {
        Ok(estimate) => {
            if json {
                output::json(&estimate);
            } else {
                output::info(&render(path, &estimate));
            }
            Code::Success
        }
        Err(Error::Input { errors, count }) => {
            super::run::report_input_errors(path, &errors, count);
            Code::Usage
        }
        Err(e) => {
            output::error(&e.to_string());
            Code::Usage
        }
    }
}

fn render(input: &Path, e: &Estimate) -> String {
    let mut text = format!(
        "estimate for {} ({} requests; {}, nothing stored)\n  {:<34} {:>8} {:>12} {:>12} {:>8} {:>13} {:>13} {:>13}\n",
        input.display(),
        e.requests,
        if e.exact_tokens {
            "input tokens counted by the providers"
        } else {
            "no network call"
        },
        "provider/model",
        "requests",
        "in tokens",
        "out (max)",
        "batches",
        "batch price",
        "real-time",
        "worst case"
    );
    for m in &e.models {
        text.push_str(&format!(
            "  {:<34} {:>8} {:>12} {:>12} {:>8} {:>13} {:>13} {:>13}{}\n",
            format!("{}/{}", m.provider, m.model),
            m.requests,
            m.input_tokens,
            m.output_tokens_max,
            m.batches,
            format!("${:.4}", m.cost_batch_usd),
            format!("${:.4}", m.cost_realtime_usd),
            format!("${:.4}", m.worst_case_usd),
            if m.priced {
                ""
            } else {
                "  (no price in the catalog)"
            }
        ));
    }
    let t = &e.total;
    text.push_str(&format!(
        "  {:<34} {:>8} {:>12} {:>12} {:>8} {:>13} {:>13} {:>13}\n",
        "total",
        t.requests,
        t.input_tokens,
        t.output_tokens_max,
        t.batches,
        format!("${:.4}", t.cost_batch_usd),
        format!("${:.4}", t.cost_realtime_usd),
        format!("${:.4}", t.worst_case_usd),
    ));
    text.push_str("  batch price: input + every request at its max_tokens; worst case: what a cost cap reserves\n");
    if e.exact_tokens {
        for m in &e.models {
            let what = if m.input_tokens_exact {
                "exact (counted by the provider)".to_owned()
            } else {
                format!(
                    "{} of {} requests counted by the provider, the rest estimated offline",
                    m.counted_requests, m.requests
                )
            };
            text.push_str(&format!(
                "  {}/{} input tokens: {what}",
                m.provider, m.model
            ));
            if let Some(reason) = &m.count_error {
                text.push_str(&format!(" ({reason})"));
            }
            text.push('\n');
        }
    } else {
        text.push_str("  input tokens: estimated offline (--exact-tokens asks the providers)\n");
    }
    let mut providers: Vec<_> = e
        .models
        .iter()
        .map(|m| (m.provider, m.expected_wait))
        .collect();
    providers.dedup();
    for (provider, wait) in providers {
        text.push_str(&format!("  wait for {provider}: {wait}\n"));
    }
    for m in &e.models {
        if let (Some(budget), Some(rounds)) = (m.enqueued_token_budget, m.budget_rounds) {
            text.push_str(&format!(
                "  {}/{}: at most {budget} input tokens enqueued at once, so at least {rounds} round(s) of batch processing\n",
                m.provider, m.model
            ));
        }
    }
    text.trim_end().to_owned()
}
