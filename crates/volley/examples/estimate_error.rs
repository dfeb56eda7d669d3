//! How far volley's offline token estimate is from the input tokens the provider reports, per
//! provider: runs an input (default `examples/quickstart.jsonl`) against the embedded
//! simulator and compares, request by request, `Catalog::input_tokens` with the usage in the
//! result lines. Also checks that the cost-cap bound (`input_tokens_bound`) is never below
//! the reported usage. See bench/README.md.
//!
//! ```text
//! cargo run --release -p volley --example estimate_error -- [INPUT.jsonl]
//! ```
//!
//! The simulator counts tokens with its own deliberately simple pseudo-tokenizer
//! (`volley_sim::tokenizer`), not the providers' real ones, so these figures say how the
//! estimate tracks the simulator; the factors in the catalog are set from the providers'
//! published figures instead (docs/cost.md).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use volley::{CancellationToken, RunSpec, SimConfig, Volley};
use volley_core::estimate::input_tokens_bound;
use volley_core::input::{InputOptions, InputSource};

#[derive(Default)]
struct Tally {
    requests: u64,
    estimated: u64,
    reported: u64,
    abs_error: f64,
    worst: f64,
    bound_below_usage: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let input: PathBuf = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.jsonl"),
        PathBuf::from,
    );
    let volley = Volley::builder()
        .simulate(SimConfig {
            processing: Duration::from_millis(50),
            ..SimConfig::default()
        })
        .memory_store()
        .build()
        .await
        .expect("volley builds");
    let started = volley
        .start_file(&input, RunSpec::default())
        .await
        .expect("the input is valid");
    volley
        .drive(&started.run.id, CancellationToken::new())
        .await
        .expect("the run completes");

    // What volley estimated for each request, from the input alone.
    let catalog = volley.catalog();
    let mut requests = HashMap::new();
    let reader = InputSource::File(input.clone())
        .reader(
            catalog,
            InputOptions {
                load_files: true,
                ..InputOptions::default()
            },
        )
        .expect("the input opens");
    for item in reader {
        let item = item.expect("valid input");
        let estimate = catalog.input_tokens(item.provider, &item.request);
        let bound = input_tokens_bound(&item.request);
        requests.insert(item.request.id.clone(), (estimate, bound));
    }

    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for line in volley.results(&started.run.id).await.expect("results") {
        let Some((estimate, bound)) = requests.get(&line.id) else {
            continue;
        };
        let reported = line.usage.input_tokens + line.usage.cache_read_tokens;
        if reported == 0 {
            continue;
        }
        for key in [line.provider.to_string(), "all".to_owned()] {
            let t = tallies.entry(key).or_default();
            t.requests += 1;
            t.estimated += estimate;
            t.reported += reported;
            let error = (*estimate as f64 - reported as f64) / reported as f64;
            t.abs_error += error.abs();
            if error.abs() > t.worst.abs() {
                t.worst = error;
            }
            t.bound_below_usage += u64::from(*bound < reported);
        }
    }
    eprintln!("{} against the simulator", input.display());
    println!(
        "| provider | requests | estimated tokens | reported tokens | total error | mean abs error | worst request | bound below usage |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (provider, t) in &tallies {
        println!(
            "| {provider} | {} | {} | {} | {:+.1}% | {:.1}% | {:+.1}% | {} |",
            t.requests,
            t.estimated,
            t.reported,
            (t.estimated as f64 / t.reported as f64 - 1.0) * 100.0,
            t.abs_error / t.requests as f64 * 100.0,
            t.worst * 100.0,
            t.bound_below_usage
        );
    }
}
