use std::time::Duration;

use serde_json::json;
use volley_sim::SimConfig;

use crate::support::{Api, params, requests, sim_with};

#[tokio::test]
async fn every_nth_call_is_rate_limited_with_retry_after_and_no_side_effect() {
    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        rate_limit_every: Some(2),
        retry_after: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&sim);
    // Call 1 passes, call 2 (a create) is refused and creates nothing.
    assert_eq!(api.get("/v1/messages/batches").await.status, 200);
    let r = api
        .post(
            "/v1/messages/batches",
            &json!({"requests": requests("r", 3)}),
        )
        .await;
    r.assert_error(429, "rate_limit_error");
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("retry-after-ms"), Some("1500"));
    let s = sim.stats();
    assert_eq!(s.faults_injected, 1);
    assert_eq!((s.batches_created, s.requests_submitted), (0, 0));
    assert_eq!(s.calls, 2);
    // Call 3 passes and shows no batch; call 4 faults again.
    let list = api.get("/v1/messages/batches").await;
    assert_eq!(list.body["data"], json!([]));
    api.post("/v1/messages", &params("x"))
        .await
        .assert_error(429, "rate_limit_error");
    // The same create, retried, now works once.
    api.create(requests("r", 3)).await;
    assert_eq!(sim.stats().batches_created, 1);
    assert_eq!(sim.stats().duplicate_submissions, 0);
}

#[tokio::test]
async fn server_errors_alternate_529_and_500() {
    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        server_error_every: Some(1),
        retry_after: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&sim);
    let r = api.post("/v1/messages", &params("x")).await;
    r.assert_error(529, "overloaded_error");
    assert_eq!(r.header("retry-after"), Some("1"), "at least one second");
    assert_eq!(r.header("retry-after-ms"), Some("10"));
    api.post(
        "/v1/messages/batches",
        &json!({"requests": requests("s", 1)}),
    )
    .await
    .assert_error(500, "api_error");
    api.get("/v1/messages/batches")
        .await
        .assert_error(529, "overloaded_error");
    assert_eq!(sim.stats().faults_injected, 3);
    assert_eq!(sim.stats().batches_created, 0);

    // Knobs can be switched off at runtime; the admin surface never faults.
    let admin = api
        .http
        .get(format!("{}/_sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    sim.set_config(SimConfig {
        processing: Duration::ZERO,
        ..SimConfig::default()
    });
    assert_eq!(api.post("/v1/messages", &params("x")).await.status, 200);
    assert_eq!(sim.stats().calls, 4, "admin calls are not counted");
}

#[tokio::test]
async fn fault_counter_restarts_when_knobs_change() {
    let sim = sim_with(SimConfig::default()).await;
    let api = Api::new(&sim);
    for _ in 0..3 {
        assert_eq!(api.get("/v1/messages/batches").await.status, 200);
    }
    sim.set_config(SimConfig {
        rate_limit_every: Some(2),
        ..SimConfig::default()
    });
    assert_eq!(api.get("/v1/messages/batches").await.status, 200);
    assert_eq!(api.get("/v1/messages/batches").await.status, 429);
    assert_eq!(api.get("/v1/messages/batches").await.status, 200);
}
