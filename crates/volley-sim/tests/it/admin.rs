use std::time::Duration;

use serde_json::{Value, json};
use volley_sim::{SimStats, Simulator};

use crate::support::{Api, requests, sim};

async fn admin(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = api.http.request(method, format!("{}{path}", api.base));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn stats_count_duplicate_submissions_across_batches() {
    let sim = sim(0).await;
    let api = Api::new(&sim);
    api.create(requests("d", 4)).await;
    api.create(requests("d", 4)).await;
    let mut third = requests("d", 2);
    third
        .as_array_mut()
        .unwrap()
        .extend(requests("n", 3).as_array().unwrap().iter().cloned());
    api.create(third).await;
    let s = sim.stats();
    assert_eq!(
        s,
        SimStats {
            calls: 3,
            faults_injected: 0,
            batches_created: 3,
            requests_submitted: 13,
            duplicate_submissions: 6,
            max_submissions_per_custom_id: 3,
            files_uploaded: 0,
            files_stored: 0,
            batches_canceled: 0,
        }
    );
    let (status, body) = admin(&api, reqwest::Method::GET, "/_sim/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_value::<SimStats>(body).unwrap(), s);
}

#[tokio::test]
async fn config_and_reset_over_http() {
    let sim = sim(60_000).await;
    let api = Api::new(&sim);
    let (status, cfg) = admin(
        &api,
        reqwest::Method::POST,
        "/_sim/config",
        Some(json!({"processing_ms": 0, "rate_limit_every": 5, "retry_after_ms": 20})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(cfg["processing_ms"], 0);
    assert_eq!(cfg["rate_limit_every"], 5);
    assert_eq!(cfg["retry_after_ms"], 20);
    assert_eq!(
        cfg["shuffle_results"], true,
        "untouched knobs keep their value"
    );
    assert_eq!(sim.config().processing, Duration::ZERO);
    assert_eq!(sim.config().rate_limit_every, Some(5));

    let (status, err) = admin(
        &api,
        reqwest::Method::POST,
        "/_sim/config",
        Some(json!({"error_rate": 3})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let (status, _) = admin(
        &api,
        reqwest::Method::POST,
        "/_sim/config",
        Some(json!({"nope": 1})),
    )
    .await;
    assert_eq!(status, 400);

    let b = api.create(requests("z", 2)).await;
    assert_eq!(b["processing_status"], "ended");
    assert_eq!(sim.stats().batches_created, 1);
    let (status, _) = admin(&api, reqwest::Method::POST, "/_sim/reset", None).await;
    assert_eq!(status, 200);
    assert_eq!(sim.stats(), SimStats::default());
    api.get(&format!(
        "/v1/messages/batches/{}",
        b["id"].as_str().unwrap()
    ))
    .await
    .assert_error(404, "not_found_error");
    // An API key can be required at runtime; the key is never echoed.
    let (_, cfg) = admin(
        &api,
        reqwest::Method::POST,
        "/_sim/config",
        Some(json!({"api_key": "sk-only"})),
    )
    .await;
    assert_eq!(cfg["api_key_set"], true);
    assert!(!cfg.to_string().contains("sk-only"));
    api.get("/v1/messages/batches")
        .await
        .assert_error(401, "authentication_error");
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = sim(0).await;
    let base = sim.base_url();
    let addr = sim.addr();
    assert_eq!(base, format!("http://127.0.0.1:{}", addr.port()));
    // An idle keep-alive connection does not hold the shutdown up.
    let api = Api::new(&sim);
    assert_eq!(api.get("/v1/messages/batches").await.status, 200);
    let started = std::time::Instant::now();
    sim.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let r = crate::support::http()
        .get(format!("{base}/_sim/stats"))
        .send()
        .await;
    assert!(r.is_err(), "still serving after shutdown");
    // The port can be bound again.
    let again = Simulator::bind(addr, volley_sim::SimConfig::default())
        .await
        .unwrap();
    assert_eq!(again.addr(), addr);
}

/// Submission counts share one namespace across the three APIs (Anthropic and OpenAI
/// `custom_id`, Gemini `key`).
#[tokio::test]
async fn stats_count_submissions_across_apis() {
    let sim = sim(0).await;
    Api::new(&sim).create(requests("d", 4)).await;
    let oa = crate::support::Oa::new(&sim);
    let lines: Vec<Value> = (0..4)
        .map(|i| crate::support::chat_line(&format!("d-{i}"), "x"))
        .collect();
    oa.batch(&lines).await;
    let gm = crate::support::Gm::new(&sim);
    let r = gm
        .post(
            "models/gemini-2.5-flash:batchGenerateContent",
            &crate::support::gm_inline("d", 4),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = sim.stats();
    assert_eq!(
        (
            s.batches_created,
            s.requests_submitted,
            s.duplicate_submissions,
            s.max_submissions_per_custom_id
        ),
        (3, 12, 8, 3)
    );
    assert_eq!(s.files_uploaded, 1);
    assert_eq!(s.files_stored, 2, "the OpenAI input and output files");
    let (status, body) = admin(&api_of(&sim), reqwest::Method::GET, "/_sim/files", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["files"].as_array().unwrap().len(), 2);
    assert_eq!(body["files"][0]["api"], "openai");
}

fn api_of(sim: &Simulator) -> Api {
    Api::new(sim)
}
