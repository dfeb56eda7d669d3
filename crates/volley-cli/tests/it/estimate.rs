//! `volley estimate --exact-tokens` and `volley run --dry-run --exact-tokens`: input tokens
//! counted by the providers' count-tokens endpoints (here the simulator's), equal to what the
//! run is then billed; without the flag, no call at all.
use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use volley_sim::Simulator;

use crate::support::*;

/// `volley` with all three providers pointed at `sim`.
fn volley_at_all(dir: &std::path::Path, sim: &Simulator) -> Command {
    let mut cmd = volley_at(dir, sim);
    cmd.env("OPENAI_BASE_URL", sim.openai_base_url())
        .env("OPENAI_API_KEY", "sk-test")
        .env("GOOGLE_GEMINI_BASE_URL", sim.base_url())
        .env("GEMINI_API_KEY", "g-test");
    cmd
}

fn json(out: &std::process::Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_tokens_are_counted_by_the_providers_and_equal_what_the_run_is_billed() {
    let sim = sim(20).await;
    let dir = tempfile::tempdir().unwrap();
    let input = workspace_root().join("examples/quickstart.jsonl");

    let mut offline = volley_at_all(dir.path(), &sim);
    offline.arg("estimate").arg(&input).arg("--json");
    let offline = json(&output(offline).await);
    assert_eq!(offline["exact_tokens"], false);
    assert_eq!(
        sim.stats().calls,
        0,
        "no network call without --exact-tokens"
    );

    let mut exact = volley_at_all(dir.path(), &sim);
    exact
        .arg("estimate")
        .arg(&input)
        .args(["--exact-tokens", "--json"]);
    let exact = json(&output(exact).await);
    assert_eq!(sim.stats().calls, 330, "one count per request");
    assert_eq!(exact["exact_tokens"], true);
    assert_eq!(exact["total"]["counted_requests"], 330);
    assert_eq!(
        exact["total"]["worst_case_usd"],
        offline["total"]["worst_case_usd"]
    );

    let mut run = volley_at_all(dir.path(), &sim);
    run.arg("run")
        .arg(&input)
        .args(["--poll-interval", "20", "--out", "out"]);
    assert_eq!(output(run).await.status.code(), Some(0));
    let mut billed: BTreeMap<String, u64> = BTreeMap::new();
    let results = std::fs::read_to_string(dir.path().join("out/results.jsonl")).unwrap();
    for line in results.lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        *billed
            .entry(line["model"].as_str().unwrap().to_owned())
            .or_default() += line["usage"]["input_tokens"].as_u64().unwrap()
            + line["usage"]["cache_read_tokens"].as_u64().unwrap();
    }
    let models = exact["models"].as_array().unwrap();
    assert_eq!(models.len(), billed.len());
    for m in models {
        let model = m["model"].as_str().unwrap();
        assert_eq!(m["input_tokens_exact"], true, "{m}");
        assert_eq!(m["input_tokens"], billed[model], "{model}");
    }

    let mut human = volley_at_all(dir.path(), &sim);
    human.arg("estimate").arg(&input).arg("--exact-tokens");
    let out = output(human).await;
    let err = stderr(&out);
    assert!(
        err.contains("input tokens counted by the providers")
            && err.contains(
                "anthropic/claude-haiku-4-5 input tokens: exact (counted by the provider)"
            ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_counts_with_the_embedded_simulator_and_says_what_it_could_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = workspace_root().join("examples/quickstart.jsonl");
    let mut simulated = volley(dir.path());
    simulated
        .arg("run")
        .arg(&input)
        .args(["--dry-run", "--exact-tokens", "--simulate", "--json"]);
    let e = json(&output(simulated).await);
    assert_eq!(e["exact_tokens"], true);
    assert_eq!(e["total"]["counted_requests"], 330);

    // No keys at all: every figure stays an offline estimate, and the output says why.
    let mut keyless = volley(dir.path());
    keyless
        .arg("run")
        .arg(&input)
        .args(["--dry-run", "--exact-tokens"]);
    let out = output(keyless).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(
            "anthropic/claude-haiku-4-5 input tokens: 0 of 100 requests counted by the provider, the rest estimated offline (no key for anthropic (set ANTHROPIC_API_KEY))"
        ),
        "{err}"
    );
    assert!(!dir.path().join(".volley").exists(), "nothing was stored");

    let mut without_dry_run = volley(dir.path());
    without_dry_run
        .arg("run")
        .arg(&input)
        .args(["--exact-tokens", "--simulate"]);
    let out = output(without_dry_run).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("--dry-run"), "{}", stderr(&out));
}
