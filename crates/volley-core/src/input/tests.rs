use std::io::Cursor;

use proptest::prelude::*;

use super::*;

fn read(text: &str, options: InputOptions) -> Vec<Result<InputRequest, InputError>> {
    let catalog = Catalog::builtin();
    InputReader::new(
        Cursor::new(text.as_bytes().to_vec()),
        PathBuf::from("."),
        &catalog,
        options,
    )
    .collect()
}

fn one_error(text: &str) -> InputError {
    let results = read(text, InputOptions::default());
    results.into_iter().find_map(Result::err).expect("an error")
}

#[test]
fn prompt_line_becomes_a_request() {
    let results = read(
        r#"{"id":"q-1","model":"claude-haiku-4-5","prompt":"Hi","system":"Be brief","max_tokens":50,"temperature":0,"metadata":{"k":1}}"#,
        InputOptions::default(),
    );
    let r = results.into_iter().next().unwrap().unwrap();
    assert_eq!(r.line, 1);
    assert_eq!(r.provider, ProviderKind::Anthropic);
    assert_eq!(r.custom_id, "q-1");
    assert_eq!(r.request.messages, vec![Message::user("Hi")]);
    assert_eq!(r.request.max_tokens, 50);
    assert_eq!(r.request.metadata, Some(serde_json::json!({"k": 1})));
}

#[test]
fn defaults_id_model_and_max_tokens() {
    let options = InputOptions {
        default_model: Some("claude-haiku-4-5".into()),
        ..Default::default()
    };
    let results = read("\n{\"prompt\":\"a\"}\n", options);
    let r = results.into_iter().next().unwrap().unwrap();
    assert_eq!(r.request.id, "line-2");
    assert_eq!(r.request.model, "claude-haiku-4-5");
    assert_eq!(r.request.max_tokens, DEFAULT_MAX_TOKENS);
}

#[test]
fn messages_with_parts() {
    let results = read(
        r#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":[{"type":"text","text":"a"}]},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}"#,
        InputOptions::default(),
    );
    let r = results.into_iter().next().unwrap().unwrap();
    assert_eq!(r.request.messages.len(), 3);
    assert_eq!(r.request.messages[1].role, Role::Assistant);
}

#[test]
fn unknown_field_names_line_and_field() {
    let e = one_error("{\"prompt\":\"a\",\"model\":\"claude-haiku-4-5\",\"colour\":1}");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("unknown field `colour`"), "{e}");
}

#[test]
fn wrong_type_names_the_field() {
    let e = one_error(r#"{"prompt":"a","model":"claude-haiku-4-5","max_tokens":"lots"}"#);
    assert_eq!(e.field.as_deref(), Some("max_tokens"));
    assert!(
        e.to_string()
            .starts_with("line 1, field `max_tokens`: invalid type"),
        "{e}"
    );
}

#[test]
fn bad_json_names_the_line() {
    let e = one_error("{\"prompt\":\"a\",\"model\":\"claude-haiku-4-5\"}\n{not json");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("column"), "{e}");
}

#[test]
fn duplicate_ids_name_both_lines() {
    let e = one_error(
        "{\"id\":\"a\",\"prompt\":\"x\",\"model\":\"claude-haiku-4-5\"}\n{\"id\":\"a\",\"prompt\":\"y\",\"model\":\"claude-haiku-4-5\"}",
    );
    assert_eq!((e.line, e.field.as_deref()), (2, Some("id")));
    assert!(e.message.contains("first used on line 1"), "{e}");
}

#[test]
fn unknown_model_suggests() {
    let e = one_error(r#"{"prompt":"x","model":"claude-haiku-4.5"}"#);
    assert_eq!(e.field.as_deref(), Some("model"));
    assert!(e.message.contains("did you mean `claude-haiku-4-5`"), "{e}");
}

#[test]
fn missing_model_without_default() {
    let e = one_error(r#"{"prompt":"x"}"#);
    assert_eq!(e.field.as_deref(), Some("model"));
}

#[test]
fn rule_violations() {
    for (line, field) in [
        (
            r#"{"prompt":"x","model":"claude-haiku-4-5","max_tokens":0}"#,
            "max_tokens",
        ),
        (
            r#"{"prompt":"x","model":"claude-haiku-4-5","max_tokens":9999999}"#,
            "max_tokens",
        ),
        (
            r#"{"prompt":"x","model":"claude-haiku-4-5","temperature":1.5}"#,
            "temperature",
        ),
        (
            r#"{"prompt":"x","model":"claude-haiku-4-5","schema":[1]}"#,
            "schema",
        ),
        (r#"{"model":"claude-haiku-4-5"}"#, "prompt"),
        (r#"{"prompt":"","model":"claude-haiku-4-5"}"#, "prompt"),
        (
            r#"{"prompt":"x","messages":[],"model":"claude-haiku-4-5"}"#,
            "prompt",
        ),
        (r#"{"messages":[],"model":"claude-haiku-4-5"}"#, "messages"),
        (
            r#"{"messages":[{"role":"assistant","content":"a"}],"model":"claude-haiku-4-5"}"#,
            "messages[0].role",
        ),
        (
            r#"{"prompt":"x","model":"claude-haiku-4-5","files":["missing.pdf"]}"#,
            "files[0]",
        ),
        (
            r#"{"prompt":"x","model":"claude-haiku-4-5","files":["a.exe"]}"#,
            "files[0]",
        ),
        (
            r#"{"prompt":"x","model":"claude-haiku-4-5","citations":true}"#,
            "citations",
        ),
        (r#"{"id":"","prompt":"x","model":"claude-haiku-4-5"}"#, "id"),
    ] {
        let e = one_error(line);
        assert_eq!(e.field.as_deref(), Some(field), "{line}: {e}");
    }
}

#[test]
fn invalid_utf8_and_huge_lines_are_errors_and_reading_goes_on() {
    let mut text = b"\xff\xfe\n".to_vec();
    text.extend_from_slice(&vec![b'x'; MAX_LINE_BYTES + 10]);
    text.extend_from_slice(b"\n{\"prompt\":\"ok\",\"model\":\"claude-haiku-4-5\"}\n");
    let catalog = Catalog::builtin();
    let results: Vec<_> = InputReader::new(
        Cursor::new(text),
        PathBuf::from("."),
        &catalog,
        InputOptions::default(),
    )
    .collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].as_ref().unwrap_err().message.contains("UTF-8"));
    assert!(
        results[1]
            .as_ref()
            .unwrap_err()
            .message
            .contains("longer than")
    );
    assert_eq!(results[2].as_ref().unwrap().line, 3);
}

#[test]
fn files_attach_before_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("note.txt"), "hello").unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        r#"{"prompt":"Summarise","model":"claude-haiku-4-5","files":["note.txt"],"citations":true}"#,
    )
    .unwrap();
    let catalog = Catalog::builtin();
    let options = InputOptions {
        load_files: true,
        ..Default::default()
    };
    let r = InputReader::open(&input, &catalog, options)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        r.request.messages[0].content[0],
        Part::Document {
            media_type: "text/plain".into(),
            data: "aGVsbG8=".into(),
            name: Some("note.txt".into())
        }
    );
    assert_eq!(
        r.request.messages[0].content[1],
        Part::Text {
            text: "Summarise".into()
        }
    );
}

#[test]
fn validate_counts_and_limits_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&format!(
            "{{\"id\":\"x\",\"prompt\":\"p{i}\",\"model\":\"claude-haiku-4-5\"}}\n"
        ));
    }
    std::fs::write(&input, text).unwrap();
    let v = validate(
        &InputSource::File(input.clone()),
        &Catalog::builtin(),
        &InputOptions::default(),
        5,
    )
    .unwrap();
    assert_eq!((v.requests, v.error_count, v.errors.len()), (1, 29, 5));

    std::fs::write(&input, "\n\n").unwrap();
    let v = validate(
        &InputSource::File(input.clone()),
        &Catalog::builtin(),
        &InputOptions::default(),
        5,
    )
    .unwrap();
    assert!(v.errors[0].message.contains("no requests"));
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let catalog = Catalog::builtin();
        let reader = InputReader::new(Cursor::new(bytes), PathBuf::from("."), &catalog, InputOptions::default());
        for _ in reader {}
    }

    #[test]
    fn never_panics_on_json_shaped_lines(
        key in "(id|model|prompt|messages|max_tokens|temperature|schema|files|citations|metadata|x)",
        value in "(null|1|-1|\"s\"|\\[\\]|\\{\\}|true|1e400|\"claude-haiku-4-5\")",
    ) {
        let line = format!("{{\"prompt\":\"p\",\"{key}\":{value}}}");
        let _ = read(&line, InputOptions { default_model: Some("claude-haiku-4-5".into()), ..Default::default() });
    }
}

fn line(id: &str) -> String {
    format!("{{\"id\":{id:?},\"prompt\":\"x\",\"model\":\"claude-haiku-4-5\"}}\n")
}

#[test]
fn an_id_that_is_not_sent_as_is_is_still_caught_when_repeated() {
    let e = one_error(&(line("a b") + &line("c") + &line("a b")));
    assert_eq!((e.line, e.field.as_deref()), (3, Some("id")));
    assert_eq!(e.message, "duplicate id `a b` (first used on line 1)");
}

#[test]
fn two_ids_that_map_to_one_provider_id_are_refused_either_way_round() {
    let derived = custom_id::derive("a b");
    assert_ne!(derived, "a b");
    for (first, second) in [("a b", derived.as_str()), (derived.as_str(), "a b")] {
        let e = one_error(&(line(first) + &line(second)));
        assert_eq!((e.line, e.field.as_deref()), (2, Some("id")));
        assert_eq!(
            e.message,
            format!(
                "id `{second}` maps to provider id `{derived}`, already used by line 1; rename one"
            )
        );
    }
}

#[test]
fn a_validated_input_is_hashed_instead_of_checked_for_repeated_ids() {
    let text = line("a") + "\n" + &line("a");
    let catalog = Catalog::builtin();
    let options = InputOptions {
        ids_validated: true,
        ..Default::default()
    };
    let mut reader = InputReader::new(
        Cursor::new(text.as_bytes().to_vec()),
        PathBuf::from("."),
        &catalog,
        options,
    );
    assert!(reader.by_ref().all(|r| r.is_ok()));
    assert_eq!(
        reader.content_hash(),
        Some(custom_id::fnv1a(text.as_bytes()))
    );
    let unvalidated = InputReader::new(
        Cursor::new(Vec::new()),
        PathBuf::from("."),
        &catalog,
        InputOptions::default(),
    );
    assert_eq!(unvalidated.content_hash(), None);
}
