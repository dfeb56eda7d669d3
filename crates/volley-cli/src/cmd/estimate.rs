//! `volley estimate` and `volley run --dry-run`.
use std::path::Path;

use volley::{Catalog, Error, Estimate, RunSpec};

use crate::cli::{EstimateArgs, InputArgs, PlanArgs};
use crate::exit::Code;
use crate::output;

pub(crate) fn estimate(args: &EstimateArgs) -> Code {
    show(&args.input, &args.plan, args.json)
}

/// Prints the estimate of the input (JSON on stdout with `json`); exit code 1 on bad input.
pub(crate) fn show(input: &InputArgs, plan: &PlanArgs, json: bool) -> Code {
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
    match volley::estimate_file(
        &catalog,
        path,
        &spec,
        plan.max_batch_requests,
        plan.enqueued_token_budget,
    ) {
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
        "estimate for {} ({} requests; no network call, nothing stored)\n  {:<34} {:>8} {:>12} {:>12} {:>8} {:>13} {:>13} {:>13}\n",
        input.display(),
        e.requests,
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
    text.push_str("  batch price: estimated input + every request at its max_tokens; worst case: what a cost cap reserves\n");
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
