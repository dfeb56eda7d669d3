use insta::{assert_debug_snapshot, assert_json_snapshot, assert_snapshot};
use serde_json::json;
use volley_types::Message;

use super::*;

fn item(custom_id: &str, request: Request) -> SubmissionItem {
    SubmissionItem {
        custom_id: custom_id.into(),
        request,
    }
}

fn request(messages: Vec<volley_types::Message>) -> Request {
    Request {
        id: "q-1".into(),
        model: "gpt-4o-mini".into(),
        messages,
        system: None,
        max_tokens: 256,
        temperature: None,
        schema: None,
        citations: false,
        metadata: None,
    }
}

/// The JSONL line of one item, parsed back (so the snapshot is readable and key-sorted).
fn jsonl(item: &SubmissionItem) -> Value {
    serde_json::from_slice(&line(item)).unwrap()
}

#[test]
fn prompt_only() {
    assert_json_snapshot!(jsonl(&item(
        "q-1",
        request(vec![Message::user("Classify: rain")])
    )));
}

#[test]
fn system_temperature_multi_turn() {
    let mut r = request(vec![
        Message::user("2+2?"),
        volley_types::Message {
            role: Role::Assistant,
            content: vec![Part::Text { text: "4".into() }],
        },
        Message::user("And 3+3?"),
    ]);
    r.system = Some("You are terse.".into());
    r.temperature = Some(0.0);
    assert_json_snapshot!(jsonl(&item("q-2", r)));
}

#[test]
fn schema_becomes_strict_response_format() {
    let mut r = request(vec![Message::user("Extract")]);
    r.schema = Some(json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}, "w": {"type": "number"}}, "required": ["w"]}},
            "kind": {"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}, {"type": "null"}]}
        },
        "required": ["name"],
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}}
    }));
    assert_json_snapshot!(jsonl(&item("q-3", r)));
}

#[test]
fn documents_and_images() {
    let mut r = request(vec![volley_types::Message {
        role: Role::User,
        content: vec![
            Part::Document {
                media_type: "application/pdf".into(),
                data: "JVBERi0=".into(),
                name: Some("report.pdf".into()),
            },
            Part::Document {
                media_type: "application/pdf".into(),
                data: "JVBERi0=".into(),
                name: None,
            },
            Part::Document {
                media_type: "text/plain".into(),
                data: "aGVsbG8=".into(),
                name: Some("note.txt".into()),
            },
            Part::Document {
                media_type: "text/markdown".into(),
                data: "IyBoaQ==".into(),
                name: None,
            },
            Part::Image {
                media_type: "image/png".into(),
                data: "iVBORw0=".into(),
            },
            Part::Text {
                text: "Summarise".into(),
            },
        ],
    }]);
    // No Chat Completions equivalent: ignored.
    r.citations = true;
    assert_json_snapshot!(jsonl(&item("q-4", r)));
}

#[test]
fn input_file_is_one_line_per_item_and_wire_size_matches() {
    let items = vec![
        item("a", request(vec![Message::user("one")])),
        item("b", request(vec![Message::user("two\nlines")])),
    ];
    let file = input_file(&items);
    let text = String::from_utf8(file.clone()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.ends_with('\n'));
    let sizes: u64 = items.iter().map(wire_size).sum();
    assert_eq!(file.len() as u64, sizes);
}

/// The multipart body with its CRLFs made visible, so the snapshot shows them exactly.
fn visible(body: &[u8]) -> String {
    String::from_utf8(body.to_vec())
        .unwrap()
        .replace("\r\n", "\\r\\n\n")
}

#[test]
fn multipart_upload_body() {
    let items = vec![
        item("a", request(vec![Message::user("one")])),
        item("b", request(vec![Message::user("two")])),
    ];
    let upload = upload_body("20261123-101500-ab12-b0001", &items);
    assert_eq!(
        upload.content_type,
        format!("multipart/form-data; boundary={BOUNDARY}")
    );
    assert_snapshot!(visible(&upload.body));
    // The file part holds exactly the JSONL input file.
    let file = input_file(&items);
    assert!(
        upload
            .body
            .windows(file.len())
            .any(|w| w == file.as_slice())
    );
}

#[test]
fn multipart_boundary_changes_when_a_request_contains_it() {
    let items = vec![item(
        "a",
        request(vec![Message::user(format!("--{BOUNDARY} is in my prompt"))]),
    )];
    let upload = upload_body("b", &items);
    let boundary = upload.content_type.split("boundary=").nth(1).unwrap();
    assert_ne!(boundary, BOUNDARY);
    let body = String::from_utf8(upload.body).unwrap();
    // The delimiter occurs only as the three delimiters of the two parts and the close.
    assert_eq!(body.matches(&format!("--{boundary}")).count(), 3);
}

#[test]
fn file_name_is_safe_in_a_header() {
    assert_eq!(file_name("r-b0001"), "volley-r-b0001.jsonl");
    assert_eq!(file_name("a\"b\r\nc/d"), "volley-a_b__c_d.jsonl");
}

#[test]
fn create_batch_body_is_tagged() {
    let body: Value =
        serde_json::from_slice(&create_batch_body("file-abc", "run-1-b0001", "run-1")).unwrap();
    assert_json_snapshot!(body);
}

const BATCH_FIELDS: &str = r#""object":"batch","endpoint":"/v1/chat/completions","completion_window":"24h","input_file_id":"file-in","created_at":1795428000,"expires_at":1795514400,"metadata":{"volley_batch_id":"r-b0001","volley_run_id":"r"}"#;

fn batch_json(rest: &str) -> Vec<u8> {
    format!("{{\"id\":\"batch_1\",{BATCH_FIELDS},{rest}}}").into_bytes()
}

#[test]
fn batch_objects_in_every_status() {
    let cases = [
        r#""status":"validating","output_file_id":null,"error_file_id":null,"errors":null,"request_counts":{"total":0,"completed":0,"failed":0}"#,
        r#""status":"in_progress","output_file_id":null,"error_file_id":null,"errors":null,"request_counts":{"total":3,"completed":1,"failed":0}"#,
        r#""status":"finalizing","output_file_id":null,"error_file_id":null,"request_counts":{"total":3,"completed":3,"failed":0}"#,
        r#""status":"completed","output_file_id":"file-out","error_file_id":"file-err","request_counts":{"total":3,"completed":2,"failed":1}"#,
        r#""status":"completed","output_file_id":null,"error_file_id":"file-err","request_counts":{"total":3,"completed":0,"failed":3}"#,
        r#""status":"expired","output_file_id":"file-out","error_file_id":"file-err","request_counts":{"total":3,"completed":1,"failed":0}"#,
        r#""status":"cancelling","output_file_id":null,"error_file_id":null,"request_counts":{"total":3,"completed":1,"failed":0}"#,
        r#""status":"cancelled","output_file_id":"file-out","error_file_id":"file-err","request_counts":{"total":3,"completed":1,"failed":0}"#,
        r#""status":"failed","errors":{"object":"list","data":[{"code":"token_limit_exceeded","message":"Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: 2,000,000 enqueued tokens.","param":null,"line":null}]},"request_counts":{"total":0,"completed":0,"failed":0}"#,
        r#""status":"failed","errors":{"object":"list","data":[{"code":"invalid_json_line","message":"This line is not parseable as valid JSON.","param":null,"line":2},{"code":"mismatched_model","message":"One model per file.","line":3}]}"#,
        r#""status":"failed""#,
        r#""status":"COMPLETED","output_file_id":"file-out","future_field":{"x":1}"#,
    ];
    let remotes: Vec<RemoteBatch> = cases
        .iter()
        .map(|c| remote_batch(parse_batch(&batch_json(c)).unwrap()))
        .collect();
    assert_debug_snapshot!(remotes);
}

#[test]
fn results_locator_round_trips() {
    let both = ResultFiles {
        output: Some("file-out".into()),
        error: Some("file-err".into()),
    };
    assert_eq!(
        both.locator().as_deref(),
        Some("output=file-out;error=file-err")
    );
    assert_eq!(ResultFiles::parse(&both.locator().unwrap()), both);
    let error_only = ResultFiles {
        output: None,
        error: Some("file-err".into()),
    };
    assert_eq!(error_only.locator().as_deref(), Some("error=file-err"));
    assert_eq!(ResultFiles::parse("error=file-err"), error_only);
    assert_eq!(ResultFiles::default().locator(), None);
    assert_eq!(
        ResultFiles::parse("garbage;x=y;output="),
        ResultFiles::default()
    );
}

#[test]
fn tags_identify_volley_batches() {
    let ours = parse_batch(&batch_json(r#""status":"in_progress""#)).unwrap();
    assert!(is_tagged(&ours, "r-b0001", "r"));
    assert!(!is_tagged(&ours, "r-b0002", "r"));
    assert!(!is_tagged(&ours, "r-b0001", "other-run"));
    let untagged =
        parse_batch(br#"{"id":"batch_2","status":"in_progress","metadata":null,"created_at":1}"#)
            .unwrap();
    assert!(!is_tagged(&untagged, "r-b0001", "r"));
}

fn outcomes(lines: &[&[u8]]) -> Vec<String> {
    lines
        .iter()
        .map(|l| format!("{:?}", item_outcome(l).unwrap()))
        .collect()
}

#[test]
fn output_lines_of_every_kind() {
    let lines: [&[u8]; 7] = [
        // Success with cached tokens: input excludes them.
        br#"{"id":"batch_req_1","custom_id":"a","response":{"status_code":200,"request_id":"req_1","body":{"id":"chatcmpl-1","object":"chat.completion","created":1795428000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"positive","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1200,"completion_tokens":3,"total_tokens":1203,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}},"error":null}"#,
        // Cut short, no usage details.
        br#"{"id":"batch_req_2","custom_id":"b","response":{"status_code":200,"request_id":"req_2","body":{"choices":[{"index":0,"message":{"role":"assistant","content":"{\"name\":"},"finish_reason":"length"}],"usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14}}},"error":null}"#,
        // A refusal: an answer, with its usage.
        br#"{"id":"batch_req_3","custom_id":"c","response":{"status_code":200,"request_id":"req_3","body":{"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I'm sorry, I can't help with that."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0}}}},"error":null}"#,
        br#"{"id":"batch_req_4","custom_id":"d","response":{"status_code":400,"request_id":"req_4","body":{"error":{"message":"Invalid 'messages[0].content': string too long.","type":"invalid_request_error","param":"messages[0].content","code":"string_above_max_length"}}},"error":null}"#,
        br#"{"id":"batch_req_5","custom_id":"e","response":{"status_code":429,"request_id":"req_5","body":{"error":{"message":"Rate limit reached for gpt-4o-mini.","type":"requests","param":null,"code":"rate_limit_exceeded"}}},"error":null}"#,
        br#"{"id":"batch_req_6","custom_id":"f","response":{"status_code":500,"request_id":"req_6","body":{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}},"error":null}"#,
        br#"{"id":"batch_req_7","custom_id":"g","response":{"status_code":502,"request_id":"req_7","body":"<html>bad gateway</html>"},"error":null}"#,
    ];
    assert_debug_snapshot!(outcomes(&lines));
}

#[test]
fn error_lines_of_every_kind() {
    let lines: [&[u8]; 5] = [
        br#"{"id":"batch_req_8","custom_id":"h","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}"#,
        br#"{"id":"batch_req_9","custom_id":"i","response":null,"error":{"code":"batch_cancelled","message":"This request was not executed because the batch was cancelled."}}"#,
        br#"{"id":"batch_req_10","custom_id":"j","response":null,"error":{"code":"mystery_code","message":"Something new."}}"#,
        br#"{"id":"batch_req_11","custom_id":"k","response":{"status_code":429,"request_id":"req_11","body":{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}},"error":null}"#,
        br#"{"id":"batch_req_12","custom_id":"l","response":{"status_code":404,"request_id":"req_12","body":{"error":{"message":"The model `gpt-nope` does not exist.","type":"invalid_request_error","param":null,"code":"model_not_found"}}},"error":null}"#,
    ];
    assert_debug_snapshot!(outcomes(&lines));
}

#[test]
fn a_200_without_choices_is_a_protocol_error_for_that_item() {
    let outcome = item_outcome(
        br#"{"custom_id":"a","response":{"status_code":200,"body":{"choices":[]}},"error":null}"#,
    )
    .unwrap();
    match outcome.result {
        ItemResult::Errored(info) => assert_eq!(info.kind, ErrorKind::Protocol),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_lines_are_errors_not_panics() {
    let lines: [&[u8]; 12] = [
        b"",
        b"\xff\xfe",
        b"null",
        b"[]",
        b"{}",
        b"{\"custom_id\":\"a\"}",
        b"{\"custom_id\":\"a\",\"response\":null,\"error\":null}",
        b"{\"custom_id\":7,\"response\":{\"status_code\":200}}",
        b"{\"custom_id\":\"a\",\"response\":{\"status_code\":\"200\"}}",
        b"{\"custom_id\":\"a\",\"response\":{\"status_code\":70000}}",
        b"{\"custom_id\":\"a\",\"resp",
        &[b'{'; 4096],
    ];
    for line in lines {
        let _ = item_outcome(line);
    }
    assert!(item_outcome(b"{}").is_err());
    assert!(item_outcome(b"{\"custom_id\":\"a\",\"response\":null,\"error\":null}").is_err());
    // A response without a body still belongs to its item.
    let weird = item_outcome(br#"{"custom_id":"a","response":{"status_code":200}}"#).unwrap();
    assert!(matches!(weird.result, ItemResult::Errored(_)));
    let weird =
        item_outcome(br#"{"custom_id":"a","response":{"status_code":302,"body":1}}"#).unwrap();
    assert!(matches!(weird.result, ItemResult::Errored(_)));
    assert!(parse_batch(b"{\"status\":1}").is_err());
    assert!(parse_batch_page(b"{\"data\":{}}").is_err());
    assert!(parse_file(b"").is_err());
}

#[test]
fn error_bodies_keep_status_request_id_and_raw_body() {
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", "req_abc".parse().unwrap());
    let cases: [(StatusCode, &[u8]); 7] = [
        (
            StatusCode::UNAUTHORIZED,
            br#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        ),
        (
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        ),
        (
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        ),
        (
            StatusCode::BAD_REQUEST,
            br#"{"error":{"message":"Invalid value for 'purpose'.","type":"invalid_request_error","param":"purpose","code":null}}"#,
        ),
        (
            StatusCode::NOT_FOUND,
            br#"{"error":{"message":"No batch found with id 'batch_x'.","type":"invalid_request_error","param":null,"code":null}}"#,
        ),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"message":"bad things","type":"server_error","param":null,"code":500}}"#,
        ),
        (StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
    ];
    let errors: Vec<String> = cases
        .iter()
        .map(|(status, body)| {
            let e = parse_error(
                ProviderKind::OpenAi,
                "create batch",
                *status,
                &headers,
                body,
            );
            assert_eq!(e.request_id.as_deref(), Some("req_abc"));
            assert_eq!(e.raw_body.as_deref().map(str::as_bytes), Some(*body));
            format!(
                "{:?} retryable={} auth={}: {e}",
                e.kind,
                e.is_retryable(),
                e.is_auth()
            )
        })
        .collect();
    assert_debug_snapshot!(errors);
}

#[test]
fn strict_schema_keeps_explicit_choices_and_property_names() {
    let s =
        json!({"type":"object","additionalProperties":true,"properties":{"a":{"type":"object"}}});
    assert_eq!(
        strict_schema(&s).into_owned(),
        json!({"type":"object","additionalProperties":true,"required":["a"],"properties":{"a":{"type":"object","additionalProperties":false}}})
    );
    // Properties named like keywords are names, not schemas of objects.
    let s = json!({"type":"object","properties":{"type":{"type":"string"},"properties":{"type":"string"}},"required":["type","properties"],"additionalProperties":false});
    assert!(matches!(strict_schema(&s), Cow::Borrowed(_)));
    let already = json!({"type":"string"});
    assert!(matches!(strict_schema(&already), Cow::Borrowed(_)));
}

#[test]
fn input_tokens_body_is_the_responses_form_of_the_batch_line() {
    let mut r = request(vec![
        volley_types::Message {
            role: Role::User,
            content: vec![
                Part::Document {
                    media_type: "application/pdf".into(),
                    data: "JVBERi0=".into(),
                    name: Some("report.pdf".into()),
                },
                Part::Image {
                    media_type: "image/png".into(),
                    data: "iVBORw==".into(),
                },
                Part::Text {
                    text: "Summarise both.".into(),
                },
            ],
        },
        volley_types::Message {
            role: Role::Assistant,
            content: vec![Part::Text {
                text: "Done.".into(),
            }],
        },
        Message::user("Now as JSON."),
    ]);
    r.system = Some("You are terse.".into());
    r.temperature = Some(0.5);
    r.schema = Some(json!({"type": "object", "properties": {"a": {"type": "string"}}}));
    let body: Value = serde_json::from_slice(&input_tokens_body(&r)).unwrap();
    assert_json_snapshot!(body);
    let line = jsonl(&item("q-1", r));
    assert_eq!(body["instructions"], line["body"]["messages"][0]["content"]);
    assert_eq!(
        body["text"]["format"]["schema"],
        line["body"]["response_format"]["json_schema"]["schema"]
    );
    assert_eq!(
        parse_input_tokens(br#"{"object": "response.input_tokens", "input_tokens": 7}"#),
        Ok(7)
    );
    assert!(parse_input_tokens(b"[]").is_err());
}
