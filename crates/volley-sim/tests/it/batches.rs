use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use volley_sim::SimConfig;

use crate::support::{Api, MODEL, params, requests, sim, sim_with};

const FIELDS: [&str; 10] = [
    "id",
    "type",
    "processing_status",
    "request_counts",
    "ended_at",
    "created_at",
    "expires_at",
    "archived_at",
    "cancel_initiated_at",
    "results_url",
];

fn assert_rfc3339_micros(v: &Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{v} is not a timestamp"));
    assert!(s.ends_with('Z'), "{s}");
    assert_eq!(s.len(), "2024-08-20T18:37:24.100435Z".len(), "{s}");
    s.parse::<jiff::Timestamp>().expect("RFC 3339");
}

fn counts(b: &Value) -> (u64, u64, u64, u64, u64) {
    let c = &b["request_counts"];
    let n = |k: &str| c[k].as_u64().unwrap();
    (
        n("processing"),
        n("succeeded"),
        n("errored"),
        n("canceled"),
        n("expired"),
    )
}

#[tokio::test]
async fn lifecycle_create_retrieve_results_delete() {
    let sim = sim(40).await;
    let api = Api::new(&sim);
    let mut reqs = requests("ok", 3);
    // Invalid params do not fail the create; they come back errored.
    reqs.as_array_mut()
        .unwrap()
        .push(json!({"custom_id": "bad-max",
        "params": {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}}));
    reqs.as_array_mut().unwrap().push(json!({"custom_id": "bad-stream",
        "params": {"model": MODEL, "max_tokens": 5, "stream": true, "messages": [{"role": "user", "content": "x"}]}}));
    let created = api.create(reqs).await;
    for f in FIELDS {
        assert!(created.get(f).is_some(), "field {f} missing: {created}");
    }
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msgbatch_"), "{id}");
    assert_eq!(created["type"], "message_batch");
    assert_eq!(created["processing_status"], "in_progress");
    assert_eq!(counts(&created), (5, 0, 0, 0, 0));
    assert!(created["results_url"].is_null());
    assert!(created["ended_at"].is_null());
    assert!(created["archived_at"].is_null());
    assert!(created["cancel_initiated_at"].is_null());
    assert_rfc3339_micros(&created["created_at"]);
    assert_rfc3339_micros(&created["expires_at"]);
    let c: jiff::Timestamp = created["created_at"].as_str().unwrap().parse().unwrap();
    let e: jiff::Timestamp = created["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(e.duration_since(c), jiff::SignedDuration::from_hours(24));

    // Results are not available before the end.
    api.get(&format!("/v1/messages/batches/{id}/results"))
        .await
        .assert_error(400, "invalid_request_error");
    // Nor can a running batch be deleted.
    api.delete(&format!("/v1/messages/batches/{id}"))
        .await
        .assert_error(400, "invalid_request_error");

    let ended = api.until_ended(&id).await;
    assert_eq!(counts(&ended), (0, 3, 2, 0, 0));
    assert_rfc3339_micros(&ended["ended_at"]);
    let url = ended["results_url"].as_str().unwrap();
    assert_eq!(
        url,
        format!("{}/v1/messages/batches/{id}/results", sim.base_url())
    );

    let lines = api.results(&ended).await;
    assert_eq!(lines.len(), 5);
    let by_id: HashMap<&str, &Value> = lines
        .iter()
        .map(|l| (l["custom_id"].as_str().unwrap(), &l["result"]))
        .collect();
    for i in 0..3 {
        let r = by_id[format!("ok-{i}").as_str()];
        assert_eq!(r["type"], "succeeded");
        let m = &r["message"];
        assert_eq!(m["type"], "message");
        assert_eq!(m["role"], "assistant");
        assert_eq!(m["model"], MODEL);
        assert_eq!(m["usage"]["service_tier"], "batch");
        assert!(m["content"][0]["text"].is_string());
        // Same content as a real-time call: same answer and usage.
        let rt = api
            .post("/v1/messages", &params(&format!("Tell me about item {i}")))
            .await;
        assert_eq!(rt.body["content"], m["content"]);
        assert_eq!(rt.body["usage"]["input_tokens"], m["usage"]["input_tokens"]);
        assert_eq!(
            rt.body["usage"]["output_tokens"],
            m["usage"]["output_tokens"]
        );
    }
    for bad in ["bad-max", "bad-stream"] {
        let r = by_id[bad];
        assert_eq!(r["type"], "errored");
        assert_eq!(
            r["error"]["type"], "error",
            "the error nests an ErrorResponse"
        );
        assert_eq!(r["error"]["error"]["type"], "invalid_request_error");
        assert!(r["error"]["error"]["message"].is_string());
    }
    assert!(
        by_id["bad-max"]["error"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );

    let d = api.delete(&format!("/v1/messages/batches/{id}")).await;
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.body, json!({"id": id, "type": "message_batch_deleted"}));
    api.get(&format!("/v1/messages/batches/{id}"))
        .await
        .assert_error(404, "not_found_error");
    api.get(&format!("/v1/messages/batches/{id}/results"))
        .await
        .assert_error(404, "not_found_error");
}

#[tokio::test]
async fn counts_stay_frozen_while_processing() {
    let sim = sim(60_000).await;
    let api = Api::new(&sim);
    let b = api.create(requests("f", 7)).await;
    let id = b["id"].as_str().unwrap();
    for _ in 0..3 {
        let r = api.get(&format!("/v1/messages/batches/{id}")).await;
        assert_eq!(r.body["processing_status"], "in_progress");
        assert_eq!(counts(&r.body), (7, 0, 0, 0, 0));
        assert!(r.body["results_url"].is_null());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn results_url_follows_the_host_header() {
    let sim = sim(0).await;
    let api = Api::new(&sim);
    let port = sim.addr().port();
    let r = api
        .http
        .post(format!("http://localhost:{port}/v1/messages/batches"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"requests": requests("h", 1)}))
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["processing_status"], "ended", "processing 0 ends at once");
    assert_eq!(
        b["results_url"],
        format!(
            "http://localhost:{port}/v1/messages/batches/{}/results",
            b["id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn cancel_ends_soon_with_canceled_requests() {
    let sim = sim(60_000).await;
    let api = Api::new(&sim);
    let b = api.create(requests("c", 20)).await;
    let id = b["id"].as_str().unwrap();
    let c = api
        .post(&format!("/v1/messages/batches/{id}/cancel"), &Value::Null)
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.body["processing_status"], "canceling");
    assert_rfc3339_micros(&c.body["cancel_initiated_at"]);
    assert_eq!(counts(&c.body), (20, 0, 0, 0, 0));
    // Not twice, and not deletable while canceling.
    api.post(&format!("/v1/messages/batches/{id}/cancel"), &Value::Null)
        .await
        .assert_error(400, "invalid_request_error");
    api.delete(&format!("/v1/messages/batches/{id}"))
        .await
        .assert_error(400, "invalid_request_error");

    let ended = api.until_ended(id).await;
    let (processing, succeeded, errored, canceled, expired) = counts(&ended);
    assert_eq!((processing, errored, expired), (0, 0, 0));
    assert_eq!(succeeded + canceled, 20);
    assert!(canceled >= 19, "canceled right away: {canceled}");
    assert!(ended["cancel_initiated_at"].is_string());
    let lines = api.results(&ended).await;
    let canceled_lines = lines
        .iter()
        .filter(|l| l["result"] == json!({"type": "canceled"}))
        .count() as u64;
    assert_eq!(canceled_lines, canceled);
    // An ended batch cannot be canceled.
    api.post(&format!("/v1/messages/batches/{id}/cancel"), &Value::Null)
        .await
        .assert_error(400, "invalid_request_error");
}

#[tokio::test]
async fn list_pages_newest_first() {
    let sim = sim(0).await;
    let api = Api::new(&sim);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            api.create(requests(&format!("l{i}"), 1)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let page_ids = |p: &Value| -> Vec<String> {
        p["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let all = api.get("/v1/messages/batches").await.body;
    assert_eq!(page_ids(&all), newest_first);
    assert_eq!(all["has_more"], false);

    // Forward paging with after_id = last_id, as the SDK does.
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let p = api.get(&format!("/v1/messages/batches?{query}")).await;
        assert_eq!(p.status, 200, "{}", p.text);
        let got = page_ids(&p.body);
        assert_eq!(p.body["first_id"], json!(got.first()));
        assert_eq!(p.body["last_id"], json!(got.last()));
        seen.extend(got);
        if p.body["has_more"] == false {
            break;
        }
        query = format!("limit=2&after_id={}", p.body["last_id"].as_str().unwrap());
    }
    assert_eq!(seen, newest_first);

    // Backward paging with before_id = first_id.
    let p = api
        .get(&format!(
            "/v1/messages/batches?limit=2&before_id={}",
            ids[0]
        ))
        .await
        .body;
    assert_eq!(page_ids(&p), vec![ids[2].clone(), ids[1].clone()]);
    assert_eq!(p["has_more"], true);
    let p = api
        .get(&format!(
            "/v1/messages/batches?limit=2&before_id={}",
            p["first_id"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(page_ids(&p), vec![ids[4].clone(), ids[3].clone()]);
    assert_eq!(p["has_more"], false);

    // An empty page has null ids.
    let p = api
        .get(&format!("/v1/messages/batches?after_id={}", ids[0]))
        .await
        .body;
    assert_eq!(
        p,
        json!({"data": [], "has_more": false, "first_id": null, "last_id": null})
    );
    for bad in ["limit=0", "limit=1001", "limit=x", "after_id=nope"] {
        api.get(&format!("/v1/messages/batches?{bad}"))
            .await
            .assert_error(400, "invalid_request_error");
    }
}

#[tokio::test]
async fn envelope_is_validated_synchronously_and_creates_nothing() {
    let sim = sim(0).await;
    let api = Api::new(&sim);
    let p = params("x");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"requests": []}), "requests"),
        (json!({}), "requests"),
        (
            json!({"requests": [{"custom_id": "a", "params": p}], "extra": 1}),
            "extra",
        ),
        (
            json!({"requests": [{"custom_id": "has space", "params": p}]}),
            "requests.0.custom_id",
        ),
        (
            json!({"requests": [{"custom_id": "a".repeat(65), "params": p}]}),
            "requests.0.custom_id",
        ),
        (
            json!({"requests": [{"custom_id": "", "params": p}]}),
            "requests.0.custom_id",
        ),
        (
            json!({"requests": [{"custom_id": "ok", "params": p}, {"custom_id": "x.y", "params": p}]}),
            "requests.1.custom_id",
        ),
        (
            json!({"requests": [{"custom_id": "d", "params": p}, {"custom_id": "d", "params": p}]}),
            "requests.1.custom_id",
        ),
        (
            json!({"requests": [{"custom_id": "a"}]}),
            "requests.0.params",
        ),
        (
            json!({"requests": [{"custom_id": "a", "params": p, "x": 1}]}),
            "requests.0.x",
        ),
    ];
    for (body, needle) in cases {
        let r = api.post("/v1/messages/batches", &body).await;
        r.assert_error(400, "invalid_request_error");
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} should name {needle}");
    }
    let dup = api
        .post(
            "/v1/messages/batches",
            &json!({"requests": [{"custom_id": "d", "params": p}, {"custom_id": "d", "params": p}]}),
        )
        .await;
    assert!(
        dup.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"d\"")
    );
    let s = sim.stats();
    assert_eq!((s.batches_created, s.requests_submitted), (0, 0));
    assert_eq!(
        api.get("/v1/messages/batches").await.body["data"],
        json!([])
    );
    // 64 characters of the allowed alphabet are fine.
    let id = format!("{}-_", "aZ9".repeat(20) + "x");
    assert_eq!(id.len(), 63);
    api.create(json!([{"custom_id": id, "params": p}])).await;
}

#[tokio::test]
async fn unknown_batch_ids_are_not_found() {
    let sim = sim(0).await;
    let api = Api::new(&sim);
    for path in [
        "/v1/messages/batches/msgbatch_nope",
        "/v1/messages/batches/msgbatch_010000099AAAAAAAAAAAAAAA",
        "/v1/messages/batches/msgbatch_nope/results",
    ] {
        api.get(path).await.assert_error(404, "not_found_error");
    }
    api.post("/v1/messages/batches/msgbatch_nope/cancel", &Value::Null)
        .await
        .assert_error(404, "not_found_error");
    api.delete("/v1/messages/batches/msgbatch_nope")
        .await
        .assert_error(404, "not_found_error");
}

#[tokio::test]
async fn results_are_shuffled_unless_asked_and_deterministic() {
    let run = |shuffle: bool| async move {
        let sim = sim_with(SimConfig {
            processing: Duration::ZERO,
            shuffle_results: shuffle,
            seed: 5,
            ..SimConfig::default()
        })
        .await;
        let api = Api::new(&sim);
        let b = api.create(requests("s", 30)).await;
        api.results(&b).await
    };
    let ordered = run(false).await;
    let ids: Vec<&str> = ordered
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..30).map(|i| format!("s-{i}")).collect();
    assert_eq!(ids, expected);
    let shuffled = run(true).await;
    let shuffled_ids: Vec<&str> = shuffled
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_ne!(shuffled_ids, ids);
    // Same seed, same everything (message ids included).
    assert_eq!(run(true).await, shuffled);
    let by_id = |ls: &[Value]| -> BTreeMap<String, Value> {
        ls.iter()
            .map(|l| {
                (
                    l["custom_id"].as_str().unwrap().to_owned(),
                    l["result"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(by_id(&ordered), by_id(&shuffled));
}

#[tokio::test]
async fn schema_answers_in_batches_are_valid_json() {
    let sim = sim(0).await;
    let api = Api::new(&sim);
    let schema = json!({"type": "object", "properties": {
        "category": {"type": "string", "enum": ["news", "opinion"]},
        "entities": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "kind": {"enum": ["person", "org"]}}, "required": ["name", "kind"]}},
        "year": {"type": ["integer", "null"]}
    }, "required": ["category", "entities"], "additionalProperties": false});
    let reqs: Vec<Value> = (0..10)
        .map(|i| {
            let mut p = params(&format!("Extract from article {i}"));
            p["output_config"] = json!({"format": {"type": "json_schema", "schema": schema}});
            json!({"custom_id": format!("j{i}"), "params": p})
        })
        .collect();
    let b = api.create(Value::Array(reqs)).await;
    for line in api.results(&b).await {
        let m = &line["result"]["message"];
        let v: Value = serde_json::from_str(m["content"][0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(v["category"], "news");
        assert_eq!(v["entities"][0]["kind"], "person");
        assert!(v["entities"][0]["name"].is_string());
        assert!(v["year"].is_i64());
    }
}

#[tokio::test]
async fn error_and_expired_rates_decide_per_submission() {
    let all_errored = sim_with(SimConfig {
        processing: Duration::ZERO,
        error_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&all_errored);
    let b = api.create(requests("e", 5)).await;
    assert_eq!(counts(&b), (0, 0, 5, 0, 0));
    for l in api.results(&b).await {
        assert_eq!(l["result"]["type"], "errored");
        assert_eq!(l["result"]["error"]["error"]["type"], "api_error");
    }

    let all_expired = sim_with(SimConfig {
        processing: Duration::ZERO,
        expired_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&all_expired);
    let b = api.create(requests("x", 5)).await;
    assert_eq!(counts(&b), (0, 0, 0, 0, 5));
    for l in api.results(&b).await {
        assert_eq!(l["result"], json!({"type": "expired"}));
    }

    // Half fail; resubmitting only the failed ones succeeds for some of them.
    let half = sim_with(SimConfig {
        processing: Duration::ZERO,
        error_rate: 0.5,
        ..SimConfig::default()
    })
    .await;
    let api = Api::new(&half);
    let mut pending: Vec<Value> = requests("h", 40).as_array().unwrap().clone();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds < 30, "retries never converge");
        let b = api.create(Value::Array(pending.clone())).await;
        let failed: Vec<String> = api
            .results(&b)
            .await
            .into_iter()
            .filter(|l| l["result"]["type"] == "errored")
            .map(|l| l["custom_id"].as_str().unwrap().to_owned())
            .collect();
        if rounds == 1 {
            assert!((5..=35).contains(&failed.len()), "{}", failed.len());
        }
        pending.retain(|r| failed.iter().any(|f| r["custom_id"] == f.as_str()));
    }
    assert!(rounds >= 2);
    let s = half.stats();
    assert_eq!(s.duplicate_submissions, s.requests_submitted - 40);
}

/// The lifecycle runs on tokio time: with a paused clock nothing really waits.
#[tokio::test(start_paused = true)]
async fn paused_clock_drives_the_lifecycle() {
    let sim = sim(2_000).await;
    let mut api = Api::new(&sim);
    // No client timeout: a paused clock auto-advances while waiting on sockets.
    api.http = reqwest::Client::builder().build().unwrap();
    let b = api.create(requests("p", 2)).await;
    let id = b["id"].as_str().unwrap();
    tokio::time::advance(Duration::from_millis(1_999)).await;
    let r = api.get(&format!("/v1/messages/batches/{id}")).await;
    assert_eq!(r.body["processing_status"], "in_progress");
    tokio::time::advance(Duration::from_millis(1)).await;
    let r = api.get(&format!("/v1/messages/batches/{id}")).await;
    assert_eq!(r.body["processing_status"], "ended");
    assert_eq!(counts(&r.body), (0, 2, 0, 0, 0));
    let started = std::time::Instant::now();
    let c = api.create(requests("q", 1)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = api
        .get(&format!(
            "/v1/messages/batches/{}",
            c["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.body["processing_status"], "ended");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited for real"
    );
}

#[tokio::test]
async fn citations_come_back_when_enabled() {
    let sim = sim(0).await;
    let api = Api::new(&sim);
    let mut p = params("unused");
    p["messages"] = json!([{"role": "user", "content": [
        {"type": "document", "title": "Facts", "citations": {"enabled": true},
         "source": {"type": "text", "media_type": "text/plain", "data": "Water boils at 100 C. Ice melts at 0 C."}},
        {"type": "text", "text": "When does water boil?"}]}]);
    let b = api
        .create(json!([{"custom_id": "cite", "params": p}, {"custom_id": "plain", "params": params("x")}]))
        .await;
    for line in api.results(&b).await {
        let block = &line["result"]["message"]["content"][0];
        if line["custom_id"] == "cite" {
            assert_eq!(
                block["citations"],
                json!([{"type": "char_location", "cited_text": "Water boils at 100 C.",
                        "document_index": 0, "document_title": "Facts",
                        "start_char_index": 0, "end_char_index": 21}])
            );
        } else {
            assert!(block.get("citations").is_none(), "{block}");
        }
    }
}
