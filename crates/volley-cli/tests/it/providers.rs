//! All three providers through one standalone simulator, pointed at by the SDK variables.
use std::time::Duration;

use volley_sim::{SimConfig, Simulator};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_uses_all_three_providers_concurrently_and_leaves_no_files() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = workspace_root().join("examples/quickstart.jsonl");
    let base = sim.base_url();
    let mut cmd = volley(dir.path());
    cmd.env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", "k-anthropic")
        .env("OPENAI_BASE_URL", format!("{base}/v1"))
        .env("OPENAI_API_KEY", "k-openai")
        .env("GOOGLE_GEMINI_BASE_URL", &base)
        .env("GEMINI_API_KEY", "k-gemini")
        .arg("run")
        .arg(&input)
        .args(["--poll-interval", "20", "--out", "out", "--json"]);
    let out = output(cmd).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(ids(&dir.path().join("out/results.jsonl")), ids(&input));

    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut providers: Vec<&str> = status["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["provider"].as_str().unwrap())
        .collect();
    providers.sort_unstable();
    providers.dedup();
    assert_eq!(providers, ["anthropic", "gemini", "openai"]);

    // Concurrent, not one provider after another: every batch is at its provider before
    // the first one comes back.
    let lines: Vec<&str> = err.lines().map(str::trim_start).collect();
    let last_submit = lines
        .iter()
        .rposition(|l| l.starts_with("submitted"))
        .unwrap();
    let first_collect = lines
        .iter()
        .position(|l| l.starts_with("collected"))
        .unwrap();
    assert!(last_submit < first_collect, "{err}");

    let stats = sim.stats();
    assert_eq!(stats.requests_submitted, 330);
    assert!(
        stats.files_uploaded > 0,
        "the OpenAI batches went through the Files API"
    );
    assert_eq!(
        stats.files_stored, 0,
        "volley deleted every file it uploaded: {stats:?}"
    );
}
