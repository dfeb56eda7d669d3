use insta::{assert_debug_snapshot, assert_json_snapshot};
use serde_json::{Value, json};
use volley_types::Message;

use super::*;

fn item(custom_id: &str, request: Request) -> SubmissionItem {
    SubmissionItem {
        custom_id: custom_id.into(),
        request,
    }
}

fn request(messages: Vec<Message>) -> Request {
    Request {
        id: "q-1".into(),
        model: "gemini-2.5-flash".into(),
        messages,
        system: None,
        max_tokens: 256,
        temperature: None,
        schema: None,
        citations: false,
        metadata: None,
    }
}

fn inline(items: &[SubmissionItem]) -> Value {
    serde_json::from_slice(&inline_body("run-1-b0001", items, INLINE_LIMIT_FOR_TESTS).unwrap())
        .unwrap()
}

const INLINE_LIMIT_FOR_TESTS: u64 = super::super::INLINE_LIMIT;

#[test]
fn prompt_only() {
    assert_json_snapshot!(inline(&[item(
        "q-1",
        request(vec![Message::user("Classify: rain")])
    )]));
}

#[test]
fn system_temperature_multi_turn() {
    let mut r = request(vec![
        Message::user("2+2?"),
        Message {
            role: Role::Assistant,
            content: vec![VPart::Text { text: "4".into() }],
        },
        Message::user("And 3+3?"),
    ]);
    r.system = Some("You are terse.".into());
    r.temperature = Some(0.0);
    assert_json_snapshot!(inline(&[item("q-2", r)]));
}

#[test]
fn schema_becomes_response_json_schema() {
    let mut r = request(vec![Message::user("Extract")]);
    r.schema = Some(json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name"]
    }));
    assert_json_snapshot!(inline(&[item("q-3", r)]));
}

#[test]
fn pdf_image_and_text_documents() {
    let mut r = request(vec![Message {
        role: Role::User,
        content: vec![
            VPart::Document {
                media_type: "application/pdf".into(),
                data: "JVBERi0=".into(),
                name: Some("report.pdf".into()),
            },
            VPart::Document {
                media_type: "text/plain".into(),
                data: "aGVsbG8gd29ybGQ=".into(),
                name: Some("note.txt".into()),
            },
            VPart::Image {
                media_type: "image/png".into(),
                data: "iVBORw0=".into(),
            },
            VPart::Text {
                text: "Summarise with sources".into(),
            },
        ],
    }]);
    // Gemini has no citations switch; sources come back in citationMetadata when used.
    r.citations = true;
    assert_json_snapshot!(inline(&[item("q-4", r)]));
}

#[test]
fn inline_create_body_with_several_requests() {
    let items = [
        item("a", request(vec![Message::user("one")])),
        item("b", request(vec![Message::user("two")])),
    ];
    assert_json_snapshot!(inline(&items));
}

#[test]
fn file_create_body() {
    let body: Value = serde_json::from_slice(&file_body("run-1-b0002", "files/abc123")).unwrap();
    assert_json_snapshot!(body);
}

#[test]
fn file_jsonl_lines() {
    let mut with_system = request(vec![Message::user("Hello")]);
    with_system.system = Some("Be brief.".into());
    with_system.schema = Some(json!({"type": "string"}));
    let items = [
        item("a", request(vec![Message::user("one")])),
        item("b", with_system),
    ];
    let bytes = jsonl(&items);
    assert!(bytes.ends_with(b"\n"));
    let lines: Vec<Value> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_json_snapshot!(lines);
}

#[test]
fn upload_requests() {
    let start: Value =
        serde_json::from_slice(&upload_start_body(&upload_display_name("run-1-b0002"))).unwrap();
    assert_json_snapshot!(json!({
        "start": {"headers": upload_start_headers(1234), "body": start},
        "finalize": {"headers": upload_finalize_headers()},
    }));
}

#[test]
fn wire_size_matches_the_jsonl() {
    let items = vec![
        item("a", request(vec![Message::user("one")])),
        item("b", request(vec![Message::user("two two")])),
    ];
    let sizes: u64 = items.iter().map(wire_size).sum();
    assert_eq!(jsonl(&items).len() as u64, sizes);
}

#[test]
fn inline_body_only_under_the_limit() {
    let items = vec![
        item("a", request(vec![Message::user("one")])),
        item("b", request(vec![Message::user("two")])),
    ];
    let body = inline_body("b", &items, u64::MAX).unwrap();
    let exact = body.len() as u64;
    assert_eq!(inline_body("b", &items, exact), Some(body));
    assert_eq!(inline_body("b", &items, exact - 1), None);
    assert_eq!(inline_body("b", &items, 10), None, "stops early");
}

fn remote(body: &str) -> Result<RemoteBatch, String> {
    parse_operation(body.as_bytes()).and_then(remote_batch)
}

#[test]
fn operations_in_every_state() {
    let cases = [
        (
            "pending, zero stats omitted",
            r#"{"name":"batches/p1","metadata":{"@type":"type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch","name":"batches/p1","displayName":"run-1-b0001","model":"models/gemini-2.5-flash","state":"BATCH_STATE_PENDING","createTime":"2026-11-23T10:00:00Z","updateTime":"2026-11-23T10:00:00Z","batchStats":{"requestCount":"3","pendingRequestCount":"3"}}}"#,
        ),
        (
            "running, file input",
            r#"{"name":"batches/r1","metadata":{"name":"batches/r1","displayName":"run-1-b0002","state":"BATCH_STATE_RUNNING","inputConfig":{"fileName":"files/in123"},"batchStats":{"requestCount":"5","successfulRequestCount":"2","pendingRequestCount":"3"},"priority":"0"},"done":false}"#,
        ),
        (
            "succeeded, responses file",
            r#"{"name":"batches/s1","metadata":{"name":"batches/s1","state":"BATCH_STATE_SUCCEEDED","inputConfig":{"fileName":"files/in123"},"batchStats":{"requestCount":"5","successfulRequestCount":"4","failedRequestCount":"1"},"output":{"responsesFile":"files/batch-s1"},"endTime":"2026-11-23T11:00:00.123456789Z"},"done":true,"response":{"@type":"type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput","responsesFile":"files/batch-s1"}}"#,
        ),
        (
            "succeeded, inline output only in response",
            r#"{"name":"batches/s2","metadata":{"name":"batches/s2","state":"BATCH_STATE_SUCCEEDED","batchStats":{"requestCount":"1","successfulRequestCount":"1"}},"done":true,"response":{"inlinedResponses":{"inlinedResponses":[{"metadata":{"key":"a"},"response":{"candidates":[]}}]}}}"#,
        ),
        (
            "cancelled",
            r#"{"name":"batches/c1","metadata":{"name":"batches/c1","state":"BATCH_STATE_CANCELLED","batchStats":{"requestCount":"2","pendingRequestCount":"2"}},"done":true}"#,
        ),
        (
            "expired",
            r#"{"name":"batches/e1","metadata":{"name":"batches/e1","state":"BATCH_STATE_EXPIRED","batchStats":{"requestCount":"2"}},"done":true}"#,
        ),
        (
            "failed",
            r#"{"name":"batches/f1","metadata":{"name":"batches/f1","state":"BATCH_STATE_FAILED"},"done":true,"error":{"code":13,"message":"internal error"}}"#,
        ),
        (
            "state missing but done with an error",
            r#"{"name":"batches/f2","done":true,"error":{"code":3,"message":"bad input file","status":"INVALID_ARGUMENT"}}"#,
        ),
        (
            "unknown future state, not done",
            r#"{"name":"batches/u1","metadata":{"state":"BATCH_STATE_PAUSED","batchStats":{"requestCount":7}}}"#,
        ),
        (
            "name only in metadata",
            r#"{"metadata":{"name":"batches/m1","state":"BATCH_STATE_RUNNING"}}"#,
        ),
        ("not a batch", r#"{"name":"operations/x","done":false}"#),
        (
            "bad int64",
            r#"{"name":"batches/x","metadata":{"batchStats":{"requestCount":"many"}}}"#,
        ),
    ];
    let out: Vec<(&str, Result<RemoteBatch, String>)> = cases
        .iter()
        .map(|(label, body)| (*label, remote(body)))
        .collect();
    assert_debug_snapshot!(out);
}

#[test]
fn unreported_items_by_final_state() {
    assert_eq!(
        unreported_result("BATCH_STATE_EXPIRED"),
        Some(ItemResult::Expired)
    );
    assert_eq!(
        unreported_result("BATCH_STATE_CANCELLED"),
        Some(ItemResult::Canceled)
    );
    assert_eq!(unreported_result("BATCH_STATE_SUCCEEDED"), None);
}

#[test]
fn echoed_inline_keys() {
    let op = parse_operation_output(
        br#"{"name":"batches/c1","metadata":{"state":"BATCH_STATE_CANCELLED","inputConfig":{"requests":{"requests":[{"request":{"contents":[]},"metadata":{"key":"a"}},{"request":{}},{"metadata":{"key":"b"}}]}}}}"#,
    )
    .unwrap();
    assert_eq!(echoed_keys(&op), ["a", "b"]);
    assert_eq!(batch_state(&op), "BATCH_STATE_CANCELLED");
}

const SUCCEEDED: &str = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Let me think","thought":true},{"text":"posi"},{"text":"tive"}]},"finishReason":"STOP","index":0,"citationMetadata":{"citationSources":[{"startIndex":0,"endIndex":4,"uri":"https://example.com"}]}}],"usageMetadata":{"promptTokenCount":120,"cachedContentTokenCount":100,"candidatesTokenCount":8,"thoughtsTokenCount":30,"totalTokenCount":158},"modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;

#[test]
fn inline_results_of_every_kind() {
    let body = format!(
        r#"{{"name":"batches/s2","metadata":{{"state":"BATCH_STATE_SUCCEEDED","output":{{"inlinedResponses":{{"inlinedResponses":[
            {{"metadata":{{"key":"a"}},"response":{SUCCEEDED}}},
            {{"metadata":{{"key":"b"}},"response":{{"promptFeedback":{{"blockReason":"SAFETY"}},"usageMetadata":{{"promptTokenCount":9}}}}}},
            {{"metadata":{{"key":"c"}},"error":{{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED"}}}},
            {{"metadata":{{"key":"d"}},"error":{{"code":13,"message":"internal"}}}},
            {{"metadata":{{"key":"e"}},"response":{{"candidates":[{{"finishReason":"MAX_TOKENS"}}]}}}},
            {{"response":{{"candidates":[]}}}},
            {{"metadata":{{"key":"g"}}}},
            {{"metadata":{{"key":"h"}},"error":{{"code":1,"message":"cancelled","status":"CANCELLED"}}}}
        ]}}}}}},"done":true}}"#
    );
    let op = parse_operation_output(body.as_bytes()).unwrap();
    assert_eq!(responses_file(&op), None);
    assert_debug_snapshot!(inline_output(op).unwrap());
}

#[test]
fn inline_output_falls_back_to_the_response() {
    let op = parse_operation_output(
        br#"{"name":"batches/s2","metadata":{"state":"BATCH_STATE_SUCCEEDED"},"done":true,"response":{"inlinedResponses":{"inlinedResponses":[{"metadata":{"key":"a"},"response":{"candidates":[{"content":{"parts":[{"text":"hi"}]}}]}}]}}}"#,
    )
    .unwrap();
    let out = inline_output(op).unwrap();
    assert_eq!(out.len(), 1);
    assert!(matches!(
        &out[0],
        Ok(ItemOutcome { custom_id, result: ItemResult::Succeeded { text, .. } }) if custom_id == "a" && text == "hi"
    ));
}

#[test]
fn file_result_lines_of_every_kind() {
    let lines = [
        format!(r#"{{"key":"a","response":{SUCCEEDED}}}"#),
        r#"{"key":"b","response":{"candidates":[{"content":{"role":"model","parts":[{"text":"{\"name\":\"x\"}"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":13,"candidatesTokenCount":8,"totalTokenCount":21}}}"#.to_owned(),
        r#"{"key":"c","error":{"code":429,"message":"Resource exhausted","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"20s"}]}}"#.to_owned(),
        r#"{"key":"d","error":{"code":500,"message":"An internal error has occurred","status":"INTERNAL"}}"#.to_owned(),
        r#"{"key":"e","error":{"code":503,"message":"The model is overloaded","status":"UNAVAILABLE"}}"#.to_owned(),
        r#"{"key":"f","error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}"#.to_owned(),
        r#"{"key":"g","response":{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"}}}"#.to_owned(),
        r#"{"key":"h","response":{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":"5","candidatesTokenCount":"1"}}}"#.to_owned(),
        r#"{"response":{"candidates":[]}}"#.to_owned(),
        r#"{"key":"j"}"#.to_owned(),
        "not json".to_owned(),
    ];
    let out: Vec<Result<ItemOutcome, String>> = lines
        .iter()
        .map(|l| file_line_outcome(l.as_bytes()))
        .collect();
    assert_debug_snapshot!(out);
}

fn error(status: u16, body: &str) -> ProviderError {
    parse_error(
        ProviderKind::Gemini,
        "create batch",
        StatusCode::from_u16(status).unwrap(),
        &HeaderMap::new(),
        body.as_bytes(),
    )
}

#[test]
fn error_bodies() {
    let rate_limited = error(
        429,
        r#"{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count","quotaId":"GenerateContentPaidTierInputTokensPerModelPerMinute","quotaDimensions":{"model":"gemini-2.5-flash"},"quotaValue":"1000000"}]},{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
    );
    assert_eq!(rate_limited.kind, ErrorKind::RateLimited);
    assert!(rate_limited.is_retryable());
    assert_eq!(rate_limited.retry_after, Some(Duration::from_secs(37)));

    let daily = error(
        429,
        r#"{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"2.5s"}]}}"#,
    );
    assert!(!daily.is_retryable(), "a daily quota is not retried");
    assert!(!daily.is_auth());

    let bad_key = error(
        400,
        r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}},{"@type":"type.googleapis.com/google.rpc.LocalizedMessage","locale":"en-US","message":"API key not valid. Please pass a valid API key."}]}}"#,
    );
    assert!(bad_key.is_auth() && !bad_key.is_retryable());

    let invalid = error(
        400,
        r#"{"error":{"code":400,"message":"* BatchGenerateContentRequest.model: unexpected model name format\n","status":"INVALID_ARGUMENT"}}"#,
    );
    assert_eq!(invalid.kind, ErrorKind::InvalidRequest);

    let errors = [
        rate_limited,
        daily,
        bad_key,
        invalid,
        error(
            403,
            r#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#,
        ),
        error(
            404,
            r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#,
        ),
        error(
            500,
            r#"{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}"#,
        ),
        error(
            503,
            r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        ),
        error(
            504,
            r#"{"error":{"code":504,"message":"Deadline expired","status":"DEADLINE_EXCEEDED"}}"#,
        ),
        error(
            400,
            r#"{"code":400,"message":"top-level form","status":"FAILED_PRECONDITION"}"#,
        ),
        error(502, "<html>bad gateway</html>"),
        error(401, ""),
    ];
    assert_debug_snapshot!(errors);
}

#[test]
fn error_display_never_needs_the_body() {
    let e = error(
        503,
        r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#,
    );
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert_eq!(
        e.to_string(),
        "gemini create batch failed (HTTP 503): UNAVAILABLE: overloaded"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("37s"), Some(Duration::from_secs(37)));
    assert_eq!(parse_duration("0.250s"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("0s"), None);
    assert_eq!(parse_duration("-1s"), None);
    assert_eq!(parse_duration("1e400s"), None);
    assert_eq!(parse_duration("NaNs"), None);
    assert_eq!(parse_duration("10"), None);
}

#[test]
fn names_are_checked_before_they_reach_a_path() {
    assert!(is_file_name("files/abc-123"));
    assert!(!is_file_name("files/"));
    assert!(!is_file_name("files/../batches/x"));
    assert!(!is_file_name("https://evil.example/files/x"));
    assert!(!is_file_name("files/a?key=x"));
    assert!(is_batch_name("batches/xyz"));
    assert!(!is_batch_name("batches/x/y"));
    assert!(!is_batch_name("files/x"));
}

/// Every parser, fed garbage and every prefix of valid input: errors, never panics.
#[test]
fn garbage_never_panics() {
    let valid = [
        SUCCEEDED.to_owned(),
        format!(r#"{{"key":"a","response":{SUCCEEDED}}}"#),
        r#"{"name":"batches/s1","metadata":{"state":"BATCH_STATE_SUCCEEDED","batchStats":{"requestCount":"5"},"output":{"inlinedResponses":{"inlinedResponses":[{"metadata":{"key":"a"},"error":{"code":3,"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1s"}]}}]}}},"done":true}"#.to_owned(),
        r#"{"error":{"code":429,"message":"m","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"PerDay"}]}]}}"#.to_owned(),
        r#"{"operations":[{"name":"batches/a"}],"nextPageToken":"t"}"#.to_owned(),
        r#"{"file":{"name":"files/a","sizeBytes":"12"}}"#.to_owned(),
    ];
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for v in &valid {
        for end in 0..=v.len() {
            inputs.push(v.as_bytes()[..end].to_vec());
        }
    }
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..2_000 {
        let len = rng.usize(0..64);
        let alphabet = br#"{}[]":,0123456789.-eEtruefalsn \"keyrponsmtadtsbch/"#;
        inputs.push(
            (0..len)
                .map(|_| {
                    if rng.u8(..) < 16 {
                        rng.u8(..)
                    } else {
                        alphabet[rng.usize(0..alphabet.len())]
                    }
                })
                .collect(),
        );
    }
    inputs.push(br#"{"error":{"code":-1,"details":[null,1,{"@type":7}]}}"#.to_vec());
    inputs.push(br#"{"code":99999999999999999999}"#.to_vec());
    for input in &inputs {
        let _ = file_line_outcome(input);
        let _ = inline_outcome(input);
        let _ = parse_operation(input).and_then(remote_batch);
        if let Ok(op) = parse_operation_output(input) {
            let _ = echoed_keys(&op);
            let _ = responses_file(&op);
            let _ = inline_output(op);
        }
        let _ = parse_batch_page(input);
        let _ = parse_uploaded_file(input);
        for status in [200, 400, 429, 500, 999] {
            let _ = parse_error(
                ProviderKind::Gemini,
                "get batch",
                StatusCode::from_u16(status).unwrap(),
                &HeaderMap::new(),
                input,
            );
        }
    }
}

#[test]
fn count_tokens_body_wraps_the_batch_request_with_its_model() {
    let mut r = request(vec![Message::user("Label it.")]);
    r.model = "models/gemini-2.5-flash".into();
    r.system = Some("You are terse.".into());
    r.schema = Some(json!({"type": "object"}));
    let body: Value = serde_json::from_slice(&count_tokens_body(&r)).unwrap();
    assert_json_snapshot!(body);
    let line: Value = serde_json::from_slice(&jsonl(&[item("q-1", r)])).unwrap();
    let mut counted = body["generateContentRequest"].clone();
    assert_eq!(
        counted.as_object_mut().unwrap().remove("model"),
        Some(json!("models/gemini-2.5-flash"))
    );
    assert_eq!(counted, line["request"]);
    assert_eq!(parse_count_tokens(br#"{"totalTokens": 12}"#), Ok(12));
    assert_eq!(parse_count_tokens(b"{}"), Ok(0));
}
