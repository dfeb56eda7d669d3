//! One batch of 100,000 requests (the API maximum). Ignored by default because a debug build
//! takes a while; run with `cargo test -p volley-sim --release -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use volley_sim::SimConfig;

use crate::support::{Api, sim_with};

/// Peak resident memory of this process in KB (Linux only).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow in debug builds; run explicitly to measure"]
#[allow(clippy::print_stderr)]
async fn one_batch_of_100k_requests() {
    const N: usize = 100_000;
    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        error_rate: 0.01,
        expired_rate: 0.01,
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&sim);
    let mut body = String::with_capacity(N * 160);
    body.push_str(r#"{"requests":["#);
    for i in 0..N {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"custom_id":"req-{i:06}","params":{{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{{"role":"user","content":"Classify headline number {i} into a topic."}}]}}}}"#
        ));
    }
    body.push_str("]}");
    let body_mb = body.len() as f64 / 1e6;
    let rss_before = peak_rss_kb();

    let t = Instant::now();
    let resp = api
        .http
        .post(format!("{}/v1/messages/batches", api.base))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let batch: serde_json::Value = resp.json().await.unwrap();
    let create = t.elapsed();

    let t = Instant::now();
    let ended = api.until_ended(batch["id"].as_str().unwrap()).await;
    let resp = api
        .http
        .get(ended["results_url"].as_str().unwrap())
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let (mut lines, mut bytes) = (0usize, 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let results = t.elapsed();
    assert_eq!(lines, N);
    let c = &ended["request_counts"];
    let total: u64 = ["succeeded", "errored", "canceled", "expired"]
        .iter()
        .map(|k| c[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, N as u64);
    eprintln!(
        "100k batch: body {body_mb:.1} MB, create {create:?}, results {results:?} ({:.1} MB), \
         peak RSS before {rss_before:?} KB, after {:?} KB, counts {c}",
        bytes as f64 / 1e6,
        peak_rss_kb()
    );
}

/// One OpenAI batch of 50,000 requests (the API maximum): upload, create, output file.
/// Ignored by default; run with `cargo test -p volley-sim --release -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow in debug builds; run explicitly to measure"]
#[allow(clippy::print_stderr)]
async fn one_openai_batch_of_50k_requests() {
    use crate::support::Oa;
    const N: usize = 50_000;
    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        error_rate: 0.01,
        ..SimConfig::default()
    })
    .await;
    let oa = Oa::new(&sim);
    let mut file = String::with_capacity(N * 200);
    for i in 0..N {
        file.push_str(&format!(
            r#"{{"custom_id":"req-{i:06}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","max_completion_tokens":64,"messages":[{{"role":"user","content":"Classify headline number {i} into a topic."}}]}}}}"#
        ));
        file.push('\n');
    }
    let mb = file.len() as f64 / 1e6;
    let t = Instant::now();
    let id = oa.upload(file.as_bytes()).await;
    drop(file);
    let upload = t.elapsed();
    let t = Instant::now();
    let r = oa
        .post(
            "/batches",
            &serde_json::json!({"input_file_id": id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{}", r.text);
    let create = t.elapsed();
    let t = Instant::now();
    let resp = oa
        .http
        .get(format!(
            "{}/files/{}/content",
            oa.base,
            r.body["output_file_id"].as_str().unwrap()
        ))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let (mut lines, mut bytes) = (0usize, 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let output = t.elapsed();
    let c = &r.body["request_counts"];
    assert_eq!(
        lines as u64 + c["failed"].as_u64().unwrap(),
        N as u64,
        "{c}"
    );
    eprintln!(
        "50k OpenAI batch: file {mb:.1} MB, upload {upload:?}, create {create:?}, output {output:?} ({:.1} MB), \
         peak RSS {:?} KB, counts {c}",
        bytes as f64 / 1e6,
        peak_rss_kb()
    );
}
