use insta::assert_json_snapshot;
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
        model: "claude-haiku-4-5".into(),
        messages,
        system: None,
        max_tokens: 256,
        temperature: None,
        schema: None,
        citations: false,
        metadata: None,
    }
}

fn body(items: &[SubmissionItem]) -> Value {
    serde_json::from_slice(&create_batch_body(items)).unwrap()
}

#[test]
fn prompt_only() {
    assert_json_snapshot!(body(&[item(
        "q-1",
        request(vec![Message::user("Classify: rain")])
    )]));
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
    assert_json_snapshot!(body(&[item("q-2", r)]));
}

#[test]
fn schema_becomes_strict_output_config() {
    let mut r = request(vec![Message::user("Extract")]);
    r.schema = Some(json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}}}}},
        "required": ["name"]
    }));
    assert_json_snapshot!(body(&[item("q-3", r)]));
}

#[test]
fn documents_images_and_citations() {
    let mut r = request(vec![volley_types::Message {
        role: Role::User,
        content: vec![
            Part::Document {
                media_type: "application/pdf".into(),
                data: "JVBERi0=".into(),
                name: Some("report.pdf".into()),
            },
            Part::Document {
                media_type: "text/plain".into(),
                data: "aGVsbG8=".into(),
                name: Some("note.txt".into()),
            },
            Part::Image {
                media_type: "image/png".into(),
                data: "iVBORw0=".into(),
            },
            Part::Text {
                text: "Summarise with sources".into(),
            },
        ],
    }]);
    r.citations = true;
    assert_json_snapshot!(body(&[item("q-4", r)]));
}

#[test]
fn wire_size_matches_the_body() {
    let items = vec![
        item("a", request(vec![Message::user("one")])),
        item("b", request(vec![Message::user("two two")])),
    ];
    let sizes: u64 = items.iter().map(wire_size).sum();
    let envelope = br#"{"requests":[]}"#.len() as u64;
    assert_eq!(create_batch_body(&items).len() as u64, sizes - 1 + envelope);
}

#[test]
fn batch_in_progress_and_ended() {
    let running = parse_batch(
        br#"{"id":"msgbatch_1","type":"message_batch","processing_status":"in_progress","request_counts":{"processing":3,"succeeded":0,"errored":0,"canceled":0,"expired":0},"created_at":"2026-11-23T10:00:00.000000Z","expires_at":"2026-11-24T10:00:00.000000Z","ended_at":null,"cancel_initiated_at":null,"archived_at":null,"results_url":null}"#,
    )
    .unwrap();
    let remote = remote_batch(running);
    assert_eq!(
        (remote.phase, remote.request_count),
        (RemotePhase::Running, Some(3))
    );

    let ended = parse_batch(
        br#"{"id":"msgbatch_1","processing_status":"ended","request_counts":{"processing":0,"succeeded":2,"errored":1,"canceled":0,"expired":0},"created_at":"2026-11-23T10:00:00Z","results_url":"http://h/v1/messages/batches/msgbatch_1/results","future_field":1}"#,
    )
    .unwrap();
    let remote = remote_batch(ended);
    assert_eq!(remote.phase, RemotePhase::Ended);
    assert_eq!(
        remote.results_locator.as_deref(),
        Some("http://h/v1/messages/batches/msgbatch_1/results")
    );
}

#[test]
fn result_lines_of_every_type() {
    let lines: [&[u8]; 5] = [
        br#"{"custom_id":"a","result":{"type":"succeeded","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"positive","citations":[{"type":"char_location","cited_text":"x","document_index":0,"start_char_index":0,"end_char_index":1}]}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":3,"cache_creation_input_tokens":2,"cache_read_input_tokens":5,"service_tier":"batch"}}}}"#,
        br#"{"custom_id":"b","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: must be >= 1","details":{"error_visibility":"user_facing"}},"request_id":null}}}"#,
        br#"{"custom_id":"c","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_9"}}}"#,
        br#"{"custom_id":"d","result":{"type":"canceled"}}"#,
        br#"{"custom_id":"e","result":{"type":"expired"}}"#,
    ];
    let outcomes: Vec<String> = lines
        .iter()
        .map(|l| format!("{:?}", item_outcome(l).unwrap()))
        .collect();
    insta::assert_debug_snapshot!(outcomes);
}

#[test]
fn tool_use_answer_becomes_json_text() {
    let outcome = item_outcome(br#"{"custom_id":"a","result":{"type":"succeeded","message":{"content":[{"type":"thinking","thinking":"..."},{"type":"tool_use","id":"toolu_1","name":"out","input":{"k":1}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}}}"#).unwrap();
    match outcome.result {
        ItemResult::Succeeded { text, .. } => assert_eq!(text, r#"{"k":1}"#),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_line_is_an_error_not_a_panic() {
    assert!(item_outcome(b"{\"custom_id\":\"a\"}").is_err());
    assert!(item_outcome(b"\xff").is_err());
    assert!(item_outcome(br#"{"custom_id":"a","result":{"type":"mystery"}}"#).is_err());
}

#[test]
fn error_bodies_keep_status_request_id_and_raw_body() {
    let mut headers = HeaderMap::new();
    headers.insert("request-id", "req_abc".parse().unwrap());
    let e = parse_error(
        ProviderKind::Anthropic,
        "create batch",
        StatusCode::TOO_MANY_REQUESTS,
        &headers,
        br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_abc"}"#,
    );
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.is_retryable());
    assert_eq!(e.request_id.as_deref(), Some("req_abc"));
    assert!(e.raw_body.as_deref().unwrap().contains("slow down"));
    assert_eq!(
        e.to_string(),
        "anthropic create batch failed (HTTP 429): rate_limit_error: slow down [request id req_abc]"
    );

    let e = parse_error(
        ProviderKind::Anthropic,
        "get batch",
        StatusCode::BAD_GATEWAY,
        &HeaderMap::new(),
        b"<html>bad gateway</html>",
    );
    assert_eq!(e.kind, ErrorKind::Server);
    assert!(e.message.contains("bad gateway"));

    let e = parse_error(
        ProviderKind::Anthropic,
        "create batch",
        StatusCode::UNAUTHORIZED,
        &HeaderMap::new(),
        br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
    );
    assert!(e.is_auth() && !e.is_retryable());
}

#[test]
fn strict_schema_keeps_explicit_choices() {
    let s =
        json!({"type":"object","additionalProperties":true,"properties":{"a":{"type":"object"}}});
    assert_eq!(
        strict_schema(&s).into_owned(),
        json!({"type":"object","additionalProperties":true,"properties":{"a":{"type":"object","additionalProperties":false}}})
    );
    let already = json!({"type":"string"});
    assert!(matches!(strict_schema(&already), Cow::Borrowed(_)));
}

#[test]
fn count_tokens_body_has_what_the_batch_bills_and_nothing_else() {
    let mut r = request(vec![Message::user("Extract")]);
    r.system = Some("You are terse.".into());
    r.temperature = Some(0.5);
    r.schema = Some(json!({"type": "object", "properties": {"name": {"type": "string"}}}));
    let body: Value = serde_json::from_slice(&count_tokens_body(&r)).unwrap();
    assert_json_snapshot!(body);
    // The same messages, system prompt and strict schema as the batch entry.
    let entry = &self::body(&[item("q-1", r)])["requests"][0]["params"];
    for key in ["model", "messages", "system", "output_config"] {
        assert_eq!(body[key], entry[key], "{key}");
    }
    assert_eq!(parse_count_tokens(br#"{"input_tokens": 42}"#), Ok(42));
    assert!(
        parse_count_tokens(b"{}")
            .unwrap_err()
            .contains("token count")
    );
}
