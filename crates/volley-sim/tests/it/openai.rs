//! The OpenAI routes: Files, Batches, Chat Completions, Responses.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use volley_sim::{FileApi, SimConfig};

use crate::support::{Gm, Oa, chat_line, jsonl, sim, sim_with};

const BATCH_FIELDS: [&str; 22] = [
    "id",
    "object",
    "endpoint",
    "model",
    "errors",
    "input_file_id",
    "completion_window",
    "status",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "usage",
    "metadata",
];

fn counts(b: &Value) -> (u64, u64, u64) {
    let c = &b["request_counts"];
    let n = |k: &str| c[k].as_u64().unwrap();
    (n("total"), n("completed"), n("failed"))
}

fn lines(n: usize, prefix: &str) -> Vec<Value> {
    (0..n)
        .map(|i| chat_line(&format!("{prefix}-{i}"), &format!("Tell me about item {i}")))
        .collect()
}

#[tokio::test]
async fn files_upload_retrieve_list_content_delete() {
    let sim = sim(0).await;
    let oa = Oa::new(&sim);
    let data = jsonl(&lines(2, "f"));
    let r = oa.upload_raw("in.jsonl", "batch", &data).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("x-request-id").unwrap().starts_with("req_"));
    let f = r.body.clone();
    let id = f["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("file-"), "{id}");
    assert_eq!(f["object"], "file");
    assert_eq!(f["bytes"], data.len());
    assert_eq!(f["filename"], "in.jsonl");
    assert_eq!(f["purpose"], "batch");
    assert_eq!(f["status"], "processed");
    assert!(f.get("status_details").is_some_and(Value::is_null));
    let created = f["created_at"].as_i64().unwrap();
    assert_eq!(f["expires_at"].as_i64().unwrap(), created + 30 * 24 * 3600);

    assert_eq!(oa.get(&format!("/files/{id}")).await.body, f);
    let content = oa.get(&format!("/files/{id}/content")).await;
    assert_eq!(content.text.as_bytes(), &data[..]);

    let notes = oa.upload_raw("notes.txt", "user_data", b"hello").await;
    assert_eq!(notes.status, 200, "{}", notes.text);
    assert_eq!(notes.body["expires_at"], Value::Null);
    let third = oa.upload(&data).await;
    let ids = |r: &Value| -> Vec<String> {
        r["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = oa.get("/files").await.body;
    assert_eq!(all["object"], "list");
    let notes_id = notes.body["id"].as_str().unwrap().to_owned();
    assert_eq!(ids(&all), [third.clone(), notes_id.clone(), id.clone()]);
    assert_eq!(all["has_more"], false);
    let batch_only = oa.get("/files?purpose=batch").await.body;
    assert_eq!(ids(&batch_only), [third.clone(), id.clone()]);
    let page = oa.get("/files?limit=1&order=asc").await.body;
    assert_eq!(ids(&page), std::slice::from_ref(&id));
    assert_eq!(page["has_more"], true);
    assert_eq!(page["first_id"], id.as_str());
    assert_eq!(page["last_id"], id.as_str());
    let next = oa
        .get(&format!("/files?limit=1&order=asc&after={id}"))
        .await
        .body;
    assert_eq!(ids(&next), std::slice::from_ref(&notes_id));
    for bad in ["limit=0", "limit=10001", "order=up", "after=nope"] {
        oa.get(&format!("/files?{bad}"))
            .await
            .assert_openai_error(400, "invalid_request_error");
    }

    let stats = sim.stats();
    assert_eq!((stats.files_uploaded, stats.files_stored), (3, 3));
    let held = sim.files();
    assert_eq!(held.len(), 3);
    assert!(
        held.iter()
            .all(|f| f.api == FileApi::OpenAi && !f.generated)
    );
    assert_eq!(held[0].id, id);
    assert_eq!(held[0].bytes, data.len() as u64);

    let d = oa.delete(&format!("/files/{id}")).await;
    assert_eq!(d.body, json!({"id": id, "object": "file", "deleted": true}));
    let e = oa.get(&format!("/files/{id}")).await;
    let err = e.assert_openai_error(404, "invalid_request_error");
    assert_eq!(err["param"], "id");
    oa.delete(&format!("/files/{id}"))
        .await
        .assert_openai_error(404, "invalid_request_error");
    oa.get(&format!("/files/{id}/content"))
        .await
        .assert_openai_error(404, "invalid_request_error");
    for f in [third, notes_id] {
        assert_eq!(oa.delete(&format!("/files/{f}")).await.status, 200);
    }
    assert_eq!(sim.stats().files_stored, 0, "the simulator holds no file");
    assert!(sim.files().is_empty());
}

#[tokio::test]
async fn upload_validation() {
    let sim = sim(0).await;
    let oa = Oa::new(&sim);
    let e = oa.upload_raw("in.txt", "batch", b"{}").await;
    assert_eq!(
        e.assert_openai_error(400, "invalid_request_error")["param"],
        "file"
    );
    let e = oa.upload_raw("in.jsonl", "nope", b"{}").await;
    let err = e.assert_openai_error(400, "invalid_request_error");
    assert_eq!(
        (err["param"].as_str(), err["code"].as_str()),
        (Some("purpose"), Some("invalid_value"))
    );
    let json_body = oa.post("/files", &json!({"purpose": "batch"})).await;
    json_body.assert_openai_error(400, "invalid_request_error");
    assert_eq!(sim.stats().files_uploaded, 0);
}

/// validating → in_progress → finalizing → completed on a paused clock, with explicit nulls,
/// Unix timestamps and counts that grow only once validation is over.
#[tokio::test(start_paused = true)]
async fn batch_lifecycle_on_a_paused_clock() {
    let sim = sim(10_000).await;
    let mut oa = Oa::new(&sim);
    oa.http = reqwest::Client::builder().build().unwrap();
    let mut input = lines(20, "life");
    input.push(
        json!({"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "gpt-4o-mini", "messages": []}}),
    );
    let file = oa.upload(&jsonl(&input)).await;
    let r = oa
        .post(
            "/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
                    "completion_window": "24h", "metadata": {"run": "r1", "batch": "b1"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.body;
    for f in BATCH_FIELDS {
        assert!(b.get(f).is_some(), "field {f} missing: {b}");
    }
    let id = b["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("batch_"), "{id}");
    assert_eq!(b["object"], "batch");
    assert_eq!(b["status"], "validating");
    assert_eq!(counts(&b), (0, 0, 0));
    assert_eq!(b["metadata"], json!({"run": "r1", "batch": "b1"}));
    for null in [
        "errors",
        "output_file_id",
        "error_file_id",
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
    ] {
        assert!(b[null].is_null(), "{null} is null: {b}");
    }
    let created = b["created_at"].as_i64().unwrap();
    assert_eq!(b["expires_at"].as_i64().unwrap(), created + 86_400);

    let at = |ms| tokio::time::advance(Duration::from_millis(ms));
    at(999).await;
    assert_eq!(
        oa.get(&format!("/batches/{id}")).await.body["status"],
        "validating"
    );
    at(1).await;
    let b = oa.get(&format!("/batches/{id}")).await.body;
    assert_eq!(b["status"], "in_progress");
    assert_eq!(b["in_progress_at"].as_i64().unwrap(), created + 1);
    let (total, done, failed) = counts(&b);
    assert_eq!((total, done + failed), (21, 0), "nothing done at the start");
    at(4_000).await;
    let b = oa.get(&format!("/batches/{id}")).await.body;
    let (_, done, failed) = counts(&b);
    assert!((1..21).contains(&(done + failed)), "counts grow: {b}");
    at(4_000).await;
    let b = oa.get(&format!("/batches/{id}")).await.body;
    assert_eq!(b["status"], "finalizing");
    assert_eq!(counts(&b), (21, 20, 1));
    assert!(b["output_file_id"].is_null());
    at(1_000).await;
    let b = oa.get(&format!("/batches/{id}")).await.body;
    assert_eq!(b["status"], "completed");
    assert_eq!(b["finalizing_at"].as_i64().unwrap(), created + 9);
    assert_eq!(b["completed_at"].as_i64().unwrap(), created + 10);
    assert_eq!(b["model"], "gpt-4o-mini");
    let usage = &b["usage"];
    assert!(usage["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);

    let out = oa.lines(&b["output_file_id"]).await;
    assert_eq!(out.len(), 20);
    let mut output_tokens = 0;
    for l in &out {
        assert!(l["id"].as_str().unwrap().starts_with("batch_req_"));
        assert!(l["error"].is_null());
        let resp = &l["response"];
        assert_eq!(resp["status_code"], 200);
        assert!(resp["request_id"].is_string());
        let body = &resp["body"];
        assert_eq!(body["object"], "chat.completion");
        assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        let u = &body["usage"];
        assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0);
        assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 0);
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );
        output_tokens += u["completion_tokens"].as_u64().unwrap();
    }
    assert_eq!(usage["output_tokens"], output_tokens);
    let errors = oa.lines(&b["error_file_id"]).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["custom_id"], "bad");
    assert!(errors[0]["error"].is_null());
    assert_eq!(errors[0]["response"]["status_code"], 400);
    let err = &errors[0]["response"]["body"]["error"];
    assert_eq!(err["type"], "invalid_request_error");
    assert_eq!(err["param"], "messages");
    assert_eq!(err["code"], "empty_array");

    let out_file = oa
        .get(&format!("/files/{}", b["output_file_id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(out_file["purpose"], "batch_output");
    let out_text = oa
        .get(&format!(
            "/files/{}/content",
            b["output_file_id"].as_str().unwrap()
        ))
        .await
        .text;
    assert_eq!(out_file["bytes"], out_text.len());
    assert_eq!(out_file["created_at"], b["completed_at"]);
    // Input, output and error files; all are listed and deletable.
    let s = sim.stats();
    assert_eq!((s.files_uploaded, s.files_stored), (1, 3));
    assert_eq!(sim.files().iter().filter(|f| f.generated).count(), 2);
    for f in [
        json!(file),
        b["output_file_id"].clone(),
        b["error_file_id"].clone(),
    ] {
        let r = oa.delete(&format!("/files/{}", f.as_str().unwrap())).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(sim.stats().files_stored, 0);
    // The batch is unaffected by its files being deleted.
    assert_eq!(
        oa.get(&format!("/batches/{id}")).await.body["status"],
        "completed"
    );
}

#[tokio::test]
async fn batch_answers_match_realtime_and_are_deterministic() {
    let run = || async {
        let sim = sim_with(SimConfig {
            processing: Duration::ZERO,
            seed: 7,
            ..SimConfig::default()
        })
        .await;
        let oa = Oa::new(&sim);
        let b = oa.batch(&lines(6, "d")).await;
        assert_eq!(b["status"], "completed", "processing 0 ends at once");
        let mut by_id: HashMap<String, Value> = HashMap::new();
        for mut l in oa.lines(&b["output_file_id"]).await {
            // `created` is the wall-clock second the answer was made: the two runs may fall
            // on either side of a second boundary. Everything else must be identical.
            let created = l["response"]["body"]
                .as_object_mut()
                .and_then(|body| body.remove("created"));
            assert!(created.is_some_and(|c| c.is_u64()), "{l}");
            by_id.insert(l["custom_id"].as_str().unwrap().to_owned(), l);
        }
        let rt = oa
            .post(
                "/chat/completions",
                &chat_line("x", "Tell me about item 3")["body"],
            )
            .await;
        assert_eq!(rt.status, 200, "{}", rt.text);
        let batch_body = &by_id["d-3"]["response"]["body"];
        assert_eq!(
            rt.body["choices"][0]["message"]["content"],
            batch_body["choices"][0]["message"]["content"]
        );
        assert_eq!(rt.body["usage"], batch_body["usage"]);
        by_id
    };
    let a = run().await;
    let b = run().await;
    assert_eq!(a, b, "same seed, same lines (ids included)");
}

#[tokio::test]
async fn responses_batches_and_realtime() {
    let sim = sim(0).await;
    let oa = Oa::new(&sim);
    let line = json!({"custom_id": "r1", "method": "POST", "url": "/v1/responses",
        "body": {"model": "gpt-5-mini", "input": "Say hello.", "instructions": "Be brief.",
                 "text": {"format": {"type": "json_schema", "name": "greeting", "strict": true,
                   "schema": {"type": "object", "properties": {"greeting": {"type": "string"}},
                              "required": ["greeting"], "additionalProperties": false}}}}});
    let file = oa.upload(&jsonl(std::slice::from_ref(&line))).await;
    let r = oa
        .post(
            "/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/responses", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{}", r.text);
    let out = oa.lines(&r.body["output_file_id"]).await;
    let body = &out[0]["response"]["body"];
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    let text = body["output"][0]["content"][0]["text"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(text).unwrap();
    assert!(parsed["greeting"].is_string(), "{parsed}");
    assert_eq!(
        body["usage"]["input_tokens_details"]["cache_write_tokens"],
        0
    );

    let rt = oa.post("/responses", &line["body"]).await;
    assert_eq!(rt.status, 200, "{}", rt.text);
    assert!(rt.body["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(rt.body["output"][0]["content"][0]["text"], text);
    assert_eq!(rt.body["usage"], body["usage"]);
    assert_eq!(rt.body["instructions"], "Be brief.");
    assert_eq!(rt.body["text"]["format"]["name"], "greeting");

    let cut = oa
        .post(
            "/responses",
            &json!({"model": "gpt-5-mini", "input": "A long essay please.", "max_output_tokens": 16,
                    "text": {"format": {"type": "json_schema", "name": "e", "schema": {"type": "object",
                      "properties": {"p": {"type": "array", "minItems": 30, "items": {"type": "string", "minLength": 20}}},
                      "required": ["p"]}}}}),
        )
        .await;
    assert_eq!(cut.body["status"], "incomplete", "{}", cut.text);
    assert_eq!(
        cut.body["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(cut.body["usage"]["output_tokens"], 16);
    let e = oa
        .post(
            "/responses",
            &json!({"model": "m", "input": "x", "max_output_tokens": 15}),
        )
        .await;
    let err = e.assert_openai_error(400, "invalid_request_error");
    assert_eq!(err["code"], "integer_below_min_value");
    assert_eq!(err["param"], "max_output_tokens");
}

#[tokio::test]
async fn input_tokens_count_what_responses_and_chat_bill() {
    let sim = sim(0).await;
    let oa = Oa::new(&sim);
    let schema = json!({"type": "object", "properties": {"label": {"type": "string"}},
                        "required": ["label"], "additionalProperties": false});
    let png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";
    let pdf = "data:application/pdf;base64,JVBERi0xLjQKJSVFT0YK";
    let counted = oa
        .post(
            "/responses/input_tokens",
            &json!({"model": "gpt-5-mini", "instructions": "Be brief.",
                    "input": [{"role": "user", "content": [
                        {"type": "input_file", "filename": "a.pdf", "file_data": pdf},
                        {"type": "input_image", "image_url": png, "detail": "auto"},
                        {"type": "input_text", "text": "Label these."}]},
                      {"role": "assistant", "content": "Sure."},
                      {"role": "user", "content": "Go on."}],
                    "text": {"format": {"type": "json_schema", "name": "l", "strict": true,
                                        "schema": schema}}}),
        )
        .await;
    assert_eq!(counted.status, 200, "{}", counted.text);
    assert_eq!(counted.body["object"], "response.input_tokens");
    let tokens = counted.body["input_tokens"].as_u64().unwrap();
    // The same request through Chat Completions is billed exactly that.
    let chat = oa
        .post(
            "/chat/completions",
            &json!({"model": "gpt-5-mini", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "file", "file": {"filename": "a.pdf", "file_data": pdf}},
                    {"type": "image_url", "image_url": {"url": png}},
                    {"type": "text", "text": "Label these."}]},
                {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": "Go on."}],
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "l", "strict": true, "schema": schema}}}),
        )
        .await;
    assert_eq!(chat.status, 200, "{}", chat.text);
    assert_eq!(chat.body["usage"]["prompt_tokens"], tokens);
    // And through Responses.
    let rt = oa
        .post(
            "/responses",
            &json!({"model": "gpt-5-mini", "input": "Hi there."}),
        )
        .await;
    let c = oa
        .post(
            "/responses/input_tokens",
            &json!({"model": "gpt-5-mini", "input": "Hi there."}),
        )
        .await;
    assert_eq!(c.body["input_tokens"], rt.body["usage"]["input_tokens"]);

    // The same validation as /v1/responses, and only the count's parameters.
    for (body, param) in [
        (json!({"model": "gpt-5-mini"}), json!("input")),
        // OpenAI names no param for a missing model ("you must provide a model parameter").
        (json!({"input": "x"}), Value::Null),
        (
            json!({"model": "m", "input": [{"role": "robot", "content": "x"}]}),
            json!("input[0].role"),
        ),
    ] {
        let e = oa.post("/responses/input_tokens", &body).await;
        let err = e.assert_openai_error(400, "invalid_request_error");
        assert_eq!(err["param"], param, "{}", e.text);
    }
    let e = oa
        .post(
            "/responses/input_tokens",
            &json!({"model": "m", "input": "x", "max_output_tokens": 20}),
        )
        .await;
    let err = e.assert_openai_error(400, "invalid_request_error");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("max_output_tokens"),
        "{}",
        e.text
    );
}

#[tokio::test]
async fn chat_completions_shapes_schemas_and_errors() {
    let sim = sim(0).await;
    let oa = Oa::new(&sim);
    let r = oa
        .post(
            "/chat/completions",
            &json!({"model": "gpt-4o-mini", "n": 2, "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["choices"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["choices"][1]["index"], 1);
    assert!(r.body["choices"][0]["message"]["refusal"].is_null());
    let u = &r.body["usage"];
    let one = r.body["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        u["completion_tokens"].as_u64().unwrap(),
        2 * volley_sim::tokenizer::text_tokens(one)
    );

    let schema = json!({"type": "object", "properties": {
        "label": {"type": "string", "enum": ["spam", "ham"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["label", "score"], "additionalProperties": false});
    let r = oa
        .post(
            "/chat/completions",
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Spam?"}],
                    "response_format": {"type": "json_schema",
                        "json_schema": {"name": "verdict", "strict": true, "schema": schema}}}),
        )
        .await;
    let v: Value =
        serde_json::from_str(r.body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(v["label"], "spam");
    assert!(v["score"].as_f64().unwrap() <= 1.0);

    let cut = oa
        .post(
            "/chat/completions",
            &json!({"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "Long story"}]}),
        )
        .await;
    assert_eq!(cut.body["choices"][0]["finish_reason"], "length");
    assert_eq!(cut.body["usage"]["completion_tokens"], 2);

    let no_json = oa
        .post(
            "/chat/completions",
            &json!({"model": "m", "response_format": {"type": "json_object"},
                    "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    no_json.assert_openai_error(400, "invalid_request_error");
    let json_obj = oa
        .post(
            "/chat/completions",
            &json!({"model": "m", "response_format": {"type": "json_object"},
                    "messages": [{"role": "user", "content": "Answer in JSON"}]}),
        )
        .await;
    let content = json_obj.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(serde_json::from_str::<Value>(content).unwrap().is_object());

    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"model": "m"}),
            "messages",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0}),
            "max_completion_tokens",
            "integer_below_min_value",
        ),
        (
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages.[0].role",
            "invalid_value",
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true}),
            "stream",
            "unsupported_value",
        ),
    ];
    for (body, param, code) in cases {
        let e = oa.post("/chat/completions", &body).await;
        let err = e.assert_openai_error(400, "invalid_request_error");
        assert_eq!(
            (err["param"].as_str(), err["code"].as_str()),
            (Some(param), Some(code))
        );
    }
    let e = oa
        .post(
            "/chat/completions",
            &json!({"model": "m", "messages": [], "bogus": 1}),
        )
        .await;
    let err = e.assert_openai_error(400, "invalid_request_error");
    assert!(err["message"].as_str().unwrap().contains("bogus"));
    let bad_json = oa.call(Method::POST, "/chat/completions", None).await;
    bad_json.assert_openai_error(400, "invalid_request_error");
}

async fn failed_with(oa: &Oa, data: &[u8]) -> Vec<Value> {
    let file = oa.upload(data).await;
    let r = oa
        .post(
            "/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "an invalid file still makes a batch: {}",
        r.text
    );
    let b = oa.until_final(r.body["id"].as_str().unwrap()).await;
    assert_eq!(b["status"], "failed", "{b}");
    assert!(b["failed_at"].is_i64());
    assert!(b["in_progress_at"].is_null());
    assert_eq!(counts(&b), (0, 0, 0));
    assert!(b["output_file_id"].is_null() && b["error_file_id"].is_null());
    assert_eq!(b["errors"]["object"], "list");
    b["errors"]["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn invalid_input_files_fail_the_batch_with_line_errors() {
    let sim = sim(20).await;
    let oa = Oa::new(&sim);
    let chat = |id: &str| chat_line(id, "x");
    let code_line = |e: &Vec<Value>| {
        (
            e[0]["code"].clone(),
            e[0]["line"].clone(),
            e[0]["param"].clone(),
        )
    };

    let mut data = jsonl(&[chat("a")]);
    data.extend_from_slice(b"{\"custom_id\": broken\n");
    let e = failed_with(&oa, &data).await;
    assert_eq!(
        code_line(&e),
        (json!("invalid_json_line"), json!(2), Value::Null)
    );

    let mut wrong_url = chat("u");
    wrong_url["url"] = json!("/v1/responses");
    let e = failed_with(&oa, &jsonl(&[chat("a"), wrong_url])).await;
    assert_eq!(
        code_line(&e),
        (json!("url_mismatch"), json!(2), json!("url"))
    );

    let mut other_model = chat("m");
    other_model["body"]["model"] = json!("gpt-4o");
    let e = failed_with(&oa, &jsonl(&[chat("a"), other_model])).await;
    assert_eq!(
        code_line(&e),
        (json!("model_mismatch"), json!(2), json!("body.model"))
    );

    let e = failed_with(&oa, &jsonl(&[chat("a"), chat("b"), chat("a")])).await;
    assert_eq!(
        code_line(&e),
        (json!("duplicate_custom_id"), json!(3), json!("custom_id"))
    );

    let mut get = chat("g");
    get["method"] = json!("GET");
    let e = failed_with(&oa, &jsonl(&[get])).await;
    assert_eq!(e[0]["param"], "method");

    let e = failed_with(&oa, b"\n").await;
    assert_eq!(e[0]["code"], "empty_file");
    assert!(e[0]["line"].is_null());

    // Several problems are all reported.
    let e = failed_with(
        &oa,
        &jsonl(&[chat("a"), chat("a"), json!({"custom_id": "z"})]),
    )
    .await;
    assert_eq!(e.len(), 2, "{e:?}");

    // 50,000 requests is the most a batch takes.
    let mut big = Vec::with_capacity(50_001 * 20);
    for i in 0..50_001 {
        big.extend_from_slice(format!("{{\"custom_id\":\"{i}\"}}\n").as_bytes());
    }
    let e = failed_with(&oa, &big).await;
    assert_eq!(e[0]["code"], "too_many_tasks");
    let s = sim.stats();
    assert_eq!(s.requests_submitted, 0, "failed batches submit nothing");
    assert_eq!(s.batches_created, 8);
}

#[tokio::test]
async fn create_errors_are_synchronous_and_create_nothing() {
    let sim = sim(0).await;
    let oa = Oa::new(&sim);
    let file = oa.upload(&jsonl(&[chat_line("a", "x")])).await;
    let notes = oa.upload_raw("n.txt", "user_data", b"x").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let too_many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (
            with("completion_window", json!("48h")),
            400,
            Some("completion_window"),
        ),
        (with("endpoint", json!("/v1/nope")), 400, Some("endpoint")),
        (
            with("endpoint", json!("/v1/embeddings")),
            400,
            Some("endpoint"),
        ),
        (
            with("metadata", Value::Object(too_many)),
            400,
            Some("metadata"),
        ),
        (
            with("metadata", json!({"k": "v".repeat(513)})),
            400,
            Some("metadata"),
        ),
        (
            with("metadata", json!({"k".repeat(65): "v"})),
            400,
            Some("metadata"),
        ),
        (
            with("input_file_id", json!("file-nope")),
            404,
            Some("input_file_id"),
        ),
        (
            with("input_file_id", json!(notes)),
            400,
            Some("input_file_id"),
        ),
        (with("bogus", json!(1)), 400, None),
        (
            json!({"endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            400,
            Some("input_file_id"),
        ),
    ];
    for (body, status, param) in cases {
        let r = oa.post("/batches", &body).await;
        let err = r.assert_openai_error(status, "invalid_request_error");
        if let Some(p) = param {
            assert_eq!(err["param"], p, "{}", r.text);
        }
    }
    assert_eq!(sim.stats().batches_created, 0);
    let ok16: serde_json::Map<String, Value> =
        (0..16).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        oa.post("/batches", &with("metadata", Value::Object(ok16)))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn enqueued_token_limit_fails_batches_at_validation() {
    let sim = sim_with(SimConfig {
        processing: Duration::from_millis(300),
        enqueued_token_limit: Some(1_000),
        ..SimConfig::default()
    })
    .await;
    let oa = Oa::new(&sim);
    // About 20 tokens each: 30 fit, 60 more do not while the first batch runs.
    let first = oa.batch(&lines(30, "a")).await;
    let second = oa.batch(&lines(60, "b")).await;
    assert_eq!(second["status"], "validating", "the create succeeds");
    let second = oa.until_final(second["id"].as_str().unwrap()).await;
    assert_eq!(second["status"], "failed");
    let e = &second["errors"]["data"][0];
    assert_eq!(e["code"], "token_limit_exceeded");
    assert!(e["message"].as_str().unwrap().contains("gpt-4o-mini"));
    assert!(e["line"].is_null() && e["param"].is_null());
    let first = oa.until_final(first["id"].as_str().unwrap()).await;
    assert_eq!(first["status"], "completed");
    // Once the first has completed, the same batch fits.
    let third = oa.batch(&lines(30, "c")).await;
    assert_eq!(
        oa.until_final(third["id"].as_str().unwrap()).await["status"],
        "completed"
    );
    // Nothing of the failed batch was submitted.
    assert_eq!(sim.stats().requests_submitted, 60);
}

#[tokio::test]
async fn cancel_flow() {
    let sim = sim(60_000).await;
    let oa = Oa::new(&sim);
    let b = oa.batch(&lines(5, "c")).await;
    let id = b["id"].as_str().unwrap();
    let c = oa
        .post(&format!("/batches/{id}/cancel"), &Value::Null)
        .await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.body["status"], "cancelling");
    assert!(c.body["cancelling_at"].is_i64());
    let again = oa
        .post(&format!("/batches/{id}/cancel"), &Value::Null)
        .await;
    assert_eq!(again.status, 200, "cancelling twice is harmless");
    let done = oa.until_final(id).await;
    assert_eq!(done["status"], "cancelled");
    assert!(done["cancelled_at"].is_i64());
    assert!(done["output_file_id"].is_null(), "nothing ran");
    assert!(
        done["in_progress_at"].is_null(),
        "cancelled while validating"
    );
    let errors = oa.lines(&done["error_file_id"]).await;
    assert_eq!(errors.len(), 5);
    for e in &errors {
        assert!(e["response"].is_null());
        assert_eq!(e["error"]["code"], "batch_cancelled");
    }
    assert_eq!(counts(&done), (5, 0, 0));

    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let oa = Oa::new(&sim);
    let b = oa.batch(&lines(1, "z")).await;
    let r = oa
        .post(
            &format!("/batches/{}/cancel", b["id"].as_str().unwrap()),
            &Value::Null,
        )
        .await;
    let err = r.assert_openai_error(409, "invalid_request_error");
    assert!(err["message"].as_str().unwrap().contains("completed"));
    oa.post("/batches/batch_nope/cancel", &Value::Null)
        .await
        .assert_openai_error(404, "invalid_request_error");
}

#[tokio::test]
async fn expired_and_errored_requests() {
    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        expired_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let oa = Oa::new(&sim);
    let b = oa.batch(&lines(3, "x")).await;
    assert_eq!(b["status"], "expired");
    assert!(b["expired_at"].is_i64());
    assert!(b["output_file_id"].is_null());
    for e in oa.lines(&b["error_file_id"]).await {
        assert!(e["response"].is_null());
        assert_eq!(e["error"]["code"], "batch_expired");
        assert!(e["error"]["message"].is_string());
    }

    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        error_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let oa = Oa::new(&sim);
    let b = oa.batch(&lines(3, "e")).await;
    assert_eq!(b["status"], "completed");
    assert!(b["output_file_id"].is_null(), "no line succeeded");
    assert_eq!(counts(&b), (3, 0, 3));
    for e in oa.lines(&b["error_file_id"]).await {
        assert!(e["error"].is_null());
        assert_eq!(e["response"]["status_code"], 500);
        assert_eq!(e["response"]["body"]["error"]["type"], "server_error");
    }
}

#[tokio::test]
async fn batches_list_pages_newest_first() {
    let sim = sim(0).await;
    let oa = Oa::new(&sim);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            oa.batch(&lines(1, &format!("p{i}"))).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let ids_of = |p: &Value| -> Vec<String> {
        p["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let p = oa.get(&format!("/batches?{query}")).await.body;
        assert_eq!(p["object"], "list");
        let page = ids_of(&p);
        assert_eq!(p["first_id"], json!(page.first()));
        assert_eq!(p["last_id"], json!(page.last()));
        seen.extend(page.clone());
        if p["has_more"] == false {
            break;
        }
        query = format!("limit=2&after={}", page.last().unwrap());
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let empty = oa.get(&format!("/batches?after={}", ids[4])).await.body;
    assert_eq!(empty["data"], json!([]));
    assert!(empty["first_id"].is_null());
    for bad in ["limit=0", "limit=101", "after=nope"] {
        oa.get(&format!("/batches?{bad}"))
            .await
            .assert_openai_error(400, "invalid_request_error");
    }
}

#[tokio::test]
async fn faults_have_no_side_effects_and_auth_is_checked() {
    let sim = sim_with(SimConfig {
        processing: Duration::ZERO,
        rate_limit_every: Some(2),
        retry_after: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await;
    let oa = Oa::new(&sim);
    assert_eq!(oa.get("/files").await.status, 200);
    // Call 2, an upload, is refused and stores nothing.
    let r = oa
        .upload_raw("a.jsonl", "batch", &jsonl(&[chat_line("a", "x")]))
        .await;
    let err = r.assert_openai_error(429, "requests");
    assert_eq!(err["code"], "rate_limit_exceeded");
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.header("retry-after-ms"), Some("1500"));
    assert_eq!(sim.stats().files_uploaded, 0);
    assert_eq!(sim.stats().files_stored, 0);
    let file = oa.upload(&jsonl(&[chat_line("a", "x")])).await;
    // Call 4, the create, is refused and creates nothing.
    let create = json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    oa.post("/batches", &create)
        .await
        .assert_openai_error(429, "requests");
    assert_eq!(sim.stats().batches_created, 0);
    assert_eq!(oa.post("/batches", &create).await.status, 200);
    let s = sim.stats();
    assert_eq!(
        (
            s.batches_created,
            s.faults_injected,
            s.duplicate_submissions
        ),
        (1, 2, 0)
    );

    sim.set_config(SimConfig {
        server_error_every: Some(1),
        retry_after: Duration::from_millis(10),
        ..SimConfig::default()
    });
    oa.get("/batches")
        .await
        .assert_openai_error(503, "server_error");
    oa.post("/chat/completions", &chat_line("x", "y")["body"])
        .await
        .assert_openai_error(500, "server_error");

    sim.set_config(SimConfig {
        api_key: Some("sk-right".into()),
        ..SimConfig::default()
    });
    let mut wrong = Oa::new(&sim);
    wrong.key = Some("sk-wrong".into());
    let r = wrong.get("/files").await;
    let err = r.assert_openai_error(401, "invalid_request_error");
    assert_eq!(err["code"], "invalid_api_key");
    assert!(!r.text.contains("sk-wrong"), "the key is not echoed");
    wrong.key = None;
    wrong
        .get("/files")
        .await
        .assert_openai_error(401, "invalid_request_error");
    wrong.key = Some("sk-right".into());
    assert_eq!(wrong.get("/files").await.status, 200);
}

/// OpenAI and Gemini share `/v1/batches` and `/v1/files` on one port: the credential decides.
#[tokio::test]
async fn openai_and_gemini_share_v1_by_credential() {
    let sim = sim(0).await;
    let oa = Oa::new(&sim);
    let mut gm = Gm::new(&sim);
    gm.version = "v1";
    oa.batch(&lines(1, "o")).await;
    let r = gm
        .post(
            "models/gemini-2.5-flash:batchGenerateContent",
            &crate::support::gm_inline("g", 1),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Each API lists only its own batches and files, on the same paths.
    let o = oa.get("/batches").await.body;
    assert_eq!(o["data"].as_array().unwrap().len(), 1);
    assert!(o["data"][0]["id"].as_str().unwrap().starts_with("batch_"));
    let g = gm.get("batches").await.body;
    assert_eq!(g["operations"].as_array().unwrap().len(), 1);
    // OpenAI: the input file and the output file; Gemini: none (an inline batch).
    assert_eq!(
        oa.get("/files").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(gm.get("files").await.body, json!({}));
    // `?key=` also means Gemini; a `name:verb` path too.
    let by_query = gm
        .raw(Method::GET, "/v1/batches?key=AIza-x", &[], None, false)
        .await;
    assert!(by_query.body["operations"].is_array(), "{}", by_query.text);
    let verb = gm
        .raw(
            Method::POST,
            "/v1/batches/zzz:cancel",
            &[("authorization", "Bearer sk".into())],
            None,
            false,
        )
        .await;
    verb.assert_google_error(403, "PERMISSION_DENIED");
    // Anthropic keeps /v1/messages.
    let anthropic = crate::support::Api::new(&sim);
    assert_eq!(anthropic.get("/v1/messages/batches").await.status, 200);
    // Unknown OpenAI routes answer OpenAI's 404.
    let r = oa.get("/nope").await;
    let err = r.assert_openai_error(404, "invalid_request_error");
    assert_eq!(err["message"], "Invalid URL (GET /v1/nope)");
}
