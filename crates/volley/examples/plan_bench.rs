//! The planning benchmark of `bench/` (see bench/README.md): import and plan N synthetic
//! requests (default 1,000,000) the way `volley run` does, with the SQLite store in a temporary
//! folder, and separately run the pure packer over N requests. Prints wall time and peak RSS
//! per phase, then a row for bench/RESULTS.md.
//!
//! ```text
//! cargo run --release -p volley --example plan_bench -- [N]
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "support/synthetic.rs"]
mod synthetic;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use secrecy::SecretString;
use volley_core::catalog::Catalog;
use volley_core::engine::{Engine, EngineConfig};
use volley_core::import;
use volley_core::input::{InputOptions, InputSource};
use volley_core::plan::Packer;
use volley_core::plan_estimate::worst_case_cost;
use volley_core::provider::{BatchLimits, Providers, SubmissionItem};
use volley_core::store::{NewRun, PendingRequest, RunOptions, Store};
use volley_providers::{AnthropicProvider, Endpoint, GeminiProvider, HttpClient, OpenAiProvider};
use volley_store::SqliteStore;

/// Peak resident memory of this process since the last [`reset_peak`], in MiB (Linux).
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets the peak to the current resident size (Linux: `echo 5 > /proc/self/clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time of this process (all threads, user + system) in seconds, from /proc (Linux).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // After the command name (in parentheses), utime and stime are the 12th and 13th fields.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

struct Phase {
    name: &'static str,
    wall: Duration,
    cpu: f64,
    peak_mib: f64,
}

async fn measure<T>(name: &'static str, f: impl std::future::Future<Output = T>) -> (T, Phase) {
    reset_peak();
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let out = f.await;
    let phase = Phase {
        name,
        wall: start.elapsed(),
        cpu: cpu_seconds() - cpu,
        peak_mib: peak_mib(),
    };
    eprintln!(
        "{:<32} wall {:>7.3} s  cpu {:>7.2} s  peak RSS {:>7.1} MiB",
        phase.name,
        phase.wall.as_secs_f64(),
        phase.cpu,
        phase.peak_mib
    );
    (out, phase)
}

fn providers() -> Providers {
    // Planning makes no call: the endpoints are never reached.
    let http = HttpClient::new(Default::default());
    let endpoint = |url: &str| Endpoint::new(url, SecretString::from("unused"));
    let mut providers = Providers::default();
    providers.insert(Arc::new(AnthropicProvider::new(
        endpoint("http://127.0.0.1:9"),
        http.clone(),
    )));
    providers.insert(Arc::new(OpenAiProvider::new(
        endpoint("http://127.0.0.1:9/v1"),
        http.clone(),
    )));
    providers.insert(Arc::new(GeminiProvider::new(
        endpoint("http://127.0.0.1:9"),
        http,
    )));
    providers
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("N is a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(bench(n));
}

async fn bench(n: u64) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let input = dir.path().join("input.jsonl");
    let bytes = synthetic::write_input(&input, n, &synthetic::Mix::ThreeProviders)
        .expect("the input is written");
    eprintln!(
        "{n} requests, {:.1} MB of JSONL, in {}",
        bytes as f64 / 1e6,
        dir.path().display()
    );
    let mut phases = Vec::new();

    // The pure packer: N requests through one Packer, as the planner feeds it page by page.
    let ((batches, tokens), phase) = measure("pack (pure, in memory)", async {
        let limits = BatchLimits {
            max_requests: 100_000,
            max_bytes: 256_000_000,
        };
        let mut packer = Packer::new(limits, None).with_token_budget(Some(3_000_000));
        let (mut batches, mut tokens) = (0u64, 0u64);
        for seq in 0..n {
            let request = PendingRequest {
                seq,
                wire_bytes: 150 + seq % 97,
                est_input_tokens: 25 + seq % 31,
                max_tokens: 64,
            };
            tokens += request.est_input_tokens;
            batches += u64::from(packer.push(std::hint::black_box(request)).is_some());
        }
        (batches + u64::from(packer.finish().is_some()), tokens)
    })
    .await;
    eprintln!("  {batches} batches, {tokens} tokens");
    phases.push(phase);

    let catalog = Arc::new(Catalog::builtin());
    let providers = providers();

    // What the import does besides storing: parse and validate each line, estimate its
    // tokens, size it in the provider's wire format, price its worst case.
    let (tokens, phase) = measure("prepare (parse, estimate)", async {
        let reader = InputSource::File(input.clone())
            .reader(
                &catalog,
                InputOptions {
                    load_files: true,
                    ids_validated: true,
                    ..InputOptions::default()
                },
            )
            .expect("the input opens");
        let mut tokens = 0u64;
        for item in reader {
            let item = item.expect("valid input");
            tokens += catalog.input_tokens(item.provider, &item.request);
            let submission = SubmissionItem {
                custom_id: item.custom_id,
                request: item.request,
            };
            tokens += providers
                .get(item.provider)
                .map_or(0, |p| p.wire_size(&submission))
                / 1_000_000;
            std::hint::black_box(worst_case_cost(
                &catalog,
                item.provider,
                &submission.request,
            ));
        }
        tokens
    })
    .await;
    eprintln!("  {tokens} estimated input tokens");
    phases.push(phase);
    let (store, phase) = measure("open store", async {
        SqliteStore::open(&dir.path().join("bench.db").display().to_string())
            .await
            .expect("the store opens")
    })
    .await;
    phases.push(phase);
    let store: Arc<dyn Store> = Arc::new(store);
    let run_id = "bench-run".to_owned();
    store
        .create_run(&NewRun {
            id: run_id.clone(),
            created_at: Timestamp::now(),
            input: Some(input.display().to_string()),
            fingerprint: None,
            out: None,
            options: RunOptions::default(),
        })
        .await
        .expect("the run is created");

    let (imported, phase) = measure(
        "import (parse, estimate, store)",
        import::import(
            store.as_ref(),
            catalog.clone(),
            providers.clone(),
            InputSource::File(input.clone()),
            InputOptions::default(),
            &run_id,
            InputSource::File(input.clone())
                .content_hash()
                .expect("the input reads"),
        ),
    )
    .await;
    let imported = imported.expect("the import succeeds");
    assert_eq!(imported, n);
    phases.push(phase);

    let engine = Engine::new(
        store.clone(),
        providers,
        catalog,
        EngineConfig::default(),
        None,
    );
    let (planned, phase) = measure("plan (pages, pack, store)", engine.plan_pending(&run_id)).await;
    let planned = planned.expect("planning succeeds");
    phases.push(phase);
    let batches = store.batches(&run_id).await.expect("batches");
    let in_batches: u64 = batches.iter().map(|b| b.request_count).sum();
    assert_eq!(in_batches, n, "every request is in a batch");
    eprintln!("  {planned} batches");

    let import_plan: f64 = phases[3..].iter().map(|p| p.wall.as_secs_f64()).sum();
    let import_plan_cpu: f64 = phases[3..].iter().map(|p| p.cpu).sum();
    let peak = phases.iter().map(|p| p.peak_mib).fold(0.0, f64::max);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();
    eprintln!(
        "import + plan: wall {import_plan:.2} s, cpu {import_plan_cpu:.2} s; highest peak RSS of a phase {peak:.0} MiB; load average {load}"
    );
    // | requests | prepare wall / cpu | import wall / cpu | plan wall / cpu | import+plan wall / cpu | peak RSS | pure packer | load |
    let wc = |p: &Phase| format!("{:.2} / {:.2}", p.wall.as_secs_f64(), p.cpu);
    println!(
        "| {n} | {} | {} | {} | {import_plan:.2} / {import_plan_cpu:.2} | {peak:.0} | {:.3} | {load} |",
        wc(&phases[1]),
        wc(&phases[3]),
        wc(&phases[4]),
        phases[0].wall.as_secs_f64(),
    );
}
