use reqwest::Method;
use serde_json::{Value, json};
use volley_sim::SimConfig;

use crate::support::{Api, MODEL, params, sim, sim_with};

#[tokio::test]
async fn create_returns_a_full_message_and_count_tokens_agrees() {
    let sim = sim(50).await;
    let api = Api::new(&sim);
    let body = params("Write one sentence about rivers.");
    let r = api.post("/v1/messages", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("request-id").unwrap().starts_with("req_"));
    let m = &r.body;
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], MODEL);
    assert_eq!(m["content"][0]["type"], "text");
    assert!(!m["content"][0]["text"].as_str().unwrap().is_empty());
    assert_eq!(m["stop_reason"], "end_turn");
    assert!(m["stop_sequence"].is_null());
    let u = &m["usage"];
    assert_eq!(u["cache_creation_input_tokens"], 0);
    assert_eq!(u["cache_read_input_tokens"], 0);
    assert_eq!(u["service_tier"], "standard");
    assert!(u["output_tokens"].as_u64().unwrap() >= 1);
    let text = m["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        u["output_tokens"].as_u64().unwrap(),
        volley_sim::tokenizer::text_tokens(text)
    );

    let mut count_body = body.clone();
    count_body.as_object_mut().unwrap().remove("max_tokens");
    let c = api.post("/v1/messages/count_tokens", &count_body).await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.body["input_tokens"], u["input_tokens"]);
    assert_eq!(
        c.body,
        json!({"input_tokens": volley_sim::tokenizer::request_tokens(&body)})
    );
}

#[tokio::test]
async fn answers_are_deterministic_per_content_and_seed() {
    let a = sim(50).await;
    let b = sim(50).await;
    let other_seed = sim_with(SimConfig {
        seed: 99,
        ..SimConfig::default()
    })
    .await;
    let body = params("Describe the weather in one line.");
    let text = |r: &Value| (r["content"].clone(), r["usage"].clone());
    let ra = Api::new(&a).post("/v1/messages", &body).await.body;
    let ra2 = Api::new(&a).post("/v1/messages", &body).await.body;
    let rb = Api::new(&b).post("/v1/messages", &body).await.body;
    assert_eq!(text(&ra), text(&ra2));
    assert_eq!(text(&ra), text(&rb));
    assert_ne!(ra["id"], ra2["id"], "message ids are unique");
    // Another seed or another prompt gives (almost surely) another answer.
    let mut differs = false;
    for i in 0..5 {
        let p = params(&format!("Describe the weather, take {i}."));
        let x = Api::new(&a).post("/v1/messages", &p).await.body;
        let y = Api::new(&other_seed).post("/v1/messages", &p).await.body;
        differs |= x["content"] != y["content"];
    }
    assert!(differs);
}

#[tokio::test]
async fn max_tokens_truncates() {
    let sim = sim(50).await;
    let api = Api::new(&sim);
    let mut body = params("Write a long story.");
    body["max_tokens"] = json!(3);
    let r = api.post("/v1/messages", &body).await;
    assert_eq!(r.body["stop_reason"], "max_tokens");
    assert_eq!(r.body["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn classification_prompts_get_a_label() {
    let sim = sim(50).await;
    let api = Api::new(&sim);
    let r = api
        .post(
            "/v1/messages",
            &params("Classify the sentiment of this review: I loved it."),
        )
        .await;
    let text = r.body["content"][0]["text"].as_str().unwrap();
    assert!(
        ["positive", "negative", "neutral"].contains(&text),
        "{text}"
    );
}

#[tokio::test]
async fn json_schema_output_is_valid_json() {
    let sim = sim(50).await;
    let api = Api::new(&sim);
    let mut body = params("Extract the fields.");
    body["output_config"] = json!({"format": {"type": "json_schema", "schema": {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": ["spam", "ham"]},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": false}
        },
        "required": ["label", "score", "tags", "meta"],
        "additionalProperties": false
    }}});
    let r = api.post("/v1/messages", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let text = r.body["content"][0]["text"].as_str().unwrap();
    let v: Value = serde_json::from_str(text).expect("answer is JSON");
    assert_eq!(v["label"], "spam");
    assert!(
        v["score"]
            .as_f64()
            .is_some_and(|s| (0.0..=1.0).contains(&s))
    );
    assert_eq!(v["tags"].as_array().unwrap().len(), 1);
    assert!(v["meta"]["n"].is_i64());
    assert_eq!(r.body["stop_reason"], "end_turn");
}

#[tokio::test]
async fn tool_choice_gives_a_tool_use_block() {
    let sim = sim(50).await;
    let api = Api::new(&sim);
    let mut body = params("Label this.");
    body["tools"] = json!([{"name": "record", "description": "Record the label",
        "input_schema": {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}, "required": ["label"]}}]);
    body["tool_choice"] = json!({"type": "tool", "name": "record"});
    let r = api.post("/v1/messages", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["stop_reason"], "tool_use");
    let block = &r.body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "record");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["input"], json!({"label": "a"}));
}

#[tokio::test]
async fn invalid_params_are_rejected_synchronously() {
    let sim = sim(50).await;
    let api = Api::new(&sim);
    let cases = [
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": MODEL, "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": MODEL, "max_tokens": 5, "messages": []}),
        json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
        json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": MODEL, "max_tokens": 5, "temperature": 2, "messages": [{"role": "user", "content": "x"}]}),
    ];
    for body in cases {
        api.post("/v1/messages", &body)
            .await
            .assert_error(400, "invalid_request_error");
    }
    let r = api.call(Method::POST, "/v1/messages", None).await;
    r.assert_error(400, "invalid_request_error");
}

#[tokio::test]
async fn auth_and_version_headers() {
    let open = sim(50).await;
    let mut api = Api::new(&open);
    api.key = None;
    api.post("/v1/messages", &params("hi"))
        .await
        .assert_error(401, "authentication_error");
    api.key = Some("anything".into());
    api.version = false;
    api.post("/v1/messages", &params("hi"))
        .await
        .assert_error(400, "invalid_request_error");

    let locked = sim_with(SimConfig {
        api_key: Some("sk-right".into()),
        ..SimConfig::default()
    })
    .await;
    let mut api = Api::new(&locked);
    api.key = Some("sk-wrong".into());
    api.post("/v1/messages", &params("hi"))
        .await
        .assert_error(401, "authentication_error");
    api.key = Some("sk-right".into());
    assert_eq!(api.post("/v1/messages", &params("hi")).await.status, 200);

    // `Authorization: Bearer` works too.
    let r = api
        .http
        .post(format!("{}/v1/messages", locked.base_url()))
        .bearer_auth("sk-right")
        .header("anthropic-version", "2023-06-01")
        .json(&params("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn beta_query_and_header_do_not_change_routing() {
    let sim = sim(50).await;
    let api = Api::new(&sim);
    let r = api
        .http
        .post(format!("{}/v1/messages?beta=true", sim.base_url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "message-batches-2024-09-24,files-api-2025-04-14",
        )
        .json(&params("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = api
        .http
        .get(format!(
            "{}/v1/messages/batches?beta=true&limit=5",
            sim.base_url()
        ))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "message-batches-2024-09-24")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unknown_routes_are_not_found_errors() {
    let sim = sim(50).await;
    let api = Api::new(&sim);
    api.get("/v1/nothing-here")
        .await
        .assert_error(404, "not_found_error");
    let r = api.delete("/v1/messages").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["type"], "error");
}

#[tokio::test]
async fn oversized_bodies_are_request_too_large() {
    let sim = sim(50).await;
    let api = Api::new(&sim);
    // 33 MB against the 32 MB limit of /v1/messages (batches allow 256 MB).
    let big = format!(
        r#"{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(33 * 1024 * 1024)
    );
    let resp = api
        .http
        .post(format!("{}/v1/messages", sim.base_url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    // The server answers before reading the body; the client usually sees the answer, but may
    // see the connection closed while still writing.
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "request_too_large");
    }
}
