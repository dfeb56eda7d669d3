//! `count_input_tokens` (`--exact-tokens`) against `volley-sim`: for every provider, the count
//! equals the input tokens the simulator bills when the same request runs in a batch.
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use secrecy::SecretString;
use serde_json::json;
use volley_core::provider::{BatchProvider, ItemResult, SubmissionItem};
use volley_providers::{AnthropicProvider, Endpoint, GeminiProvider, HttpClient, OpenAiProvider};
use volley_sim::{SimConfig, Simulator};
use volley_types::{ErrorKind, Message, Part, ProviderKind, Request, Role};

use crate::support::{fast_retry, submission, until_ended};

fn provider(sim: &Simulator, kind: ProviderKind) -> Arc<dyn BatchProvider> {
    let http = HttpClient::new(fast_retry());
    let key = SecretString::from("k");
    match kind {
        ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(
            Endpoint::new(sim.base_url(), key),
            http,
        )),
        ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(
            Endpoint::new(sim.openai_base_url(), key),
            http,
        )),
        ProviderKind::Gemini => Arc::new(GeminiProvider::new(
            Endpoint::new(sim.base_url(), key),
            http,
        )),
    }
}

fn model(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Anthropic => "claude-haiku-4-5",
        ProviderKind::OpenAi => "gpt-4o-mini",
        ProviderKind::Gemini => "gemini-2.5-flash",
    }
}

/// Everything a request can carry: system prompt, schema, a PDF, an image, a text document
/// and several turns.
fn rich(kind: ProviderKind) -> Request {
    let b64 = |bytes: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    Request {
        id: "rich".into(),
        model: model(kind).into(),
        messages: vec![
            Message {
                role: Role::User,
                content: vec![
                    Part::Document {
                        media_type: "application/pdf".into(),
                        data: b64(&b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n".repeat(40)),
                        name: Some("report.pdf".into()),
                    },
                    Part::Image {
                        media_type: "image/png".into(),
                        data: b64(&[0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0, 0, 13]),
                    },
                    Part::Document {
                        media_type: "text/plain".into(),
                        data: b64(b"Quarterly revenue rose 12%, costs fell."),
                        name: Some("notes.txt".into()),
                    },
                    Part::Text {
                        text: "Summarise the documents.".into(),
                    },
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![Part::Text {
                    text: "Revenue up, costs down.".into(),
                }],
            },
            Message::user("Now as JSON, with a label."),
        ],
        system: Some("You are a careful analyst.".into()),
        max_tokens: 64,
        temperature: Some(0.2),
        schema: Some(json!({"type": "object", "properties": {
            "summary": {"type": "string"}, "label": {"type": "string", "enum": ["up", "down"]}},
            "required": ["summary"]})),
        citations: false,
        metadata: None,
    }
}

#[tokio::test]
async fn counts_equal_what_a_batch_is_billed_on_every_provider() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    for kind in ProviderKind::ALL {
        let p = provider(&sim, kind);
        let mut requests = vec![rich(kind)];
        let mut plain = rich(kind);
        plain.schema = None;
        plain.system = None;
        plain.messages = vec![Message::user("Hello there, how are you?")];
        requests.push(plain);
        let items: Vec<SubmissionItem> = requests
            .into_iter()
            .enumerate()
            .map(|(i, request)| SubmissionItem {
                custom_id: format!("c-{i}"),
                request,
            })
            .collect();
        let mut counted = Vec::new();
        for item in &items {
            let n = p.count_input_tokens(&item.request).await.unwrap();
            counted.push(n.expect("every provider has a count endpoint"));
        }
        assert_ne!(
            counted[0], counted[1],
            "{kind}: the counts depend on the request"
        );
        let remote = p
            .submit(submission("b1", model(kind), &items))
            .await
            .unwrap();
        let ended = until_ended(p.as_ref(), &remote.id).await;
        let outcomes: Vec<_> = p.results(&ended).await.unwrap().collect().await;
        assert_eq!(outcomes.len(), items.len(), "{kind}");
        for outcome in outcomes {
            let outcome = outcome.unwrap();
            let i: usize = outcome.custom_id["c-".len()..].parse().unwrap();
            let ItemResult::Succeeded { usage, .. } = outcome.result else {
                panic!("{kind}: {outcome:?}");
            };
            assert_eq!(
                usage.input_tokens + usage.cache_read_tokens,
                counted[i],
                "{kind}: request {i} counted {} but billed {usage:?}",
                counted[i]
            );
        }
    }
}

#[tokio::test]
async fn counting_retries_rate_limits_and_reports_what_it_cannot_count() {
    let sim = Simulator::spawn(SimConfig {
        rate_limit_every: Some(2),
        server_error_every: Some(3),
        retry_after: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // (Gemini's 429s carry a whole-second `retry-after`; its retries go through the same
    // executor and are covered by the adapter's own tests.)
    for kind in [ProviderKind::Anthropic, ProviderKind::OpenAi] {
        let p = provider(&sim, kind);
        for _ in 0..3 {
            let n = p.count_input_tokens(&rich(kind)).await.unwrap();
            assert!(n.is_some_and(|n| n > 0), "{kind}");
        }
    }
    assert!(
        sim.stats().faults_injected >= 3,
        "the faults were injected and retried"
    );
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    // An invalid request is refused as it would be in a batch, and not retried.
    let mut empty = rich(ProviderKind::Anthropic);
    empty.messages.clear();
    let e = provider(&sim, ProviderKind::Anthropic)
        .count_input_tokens(&empty)
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::InvalidRequest, Some(400)));
    let mut unknown = rich(ProviderKind::Gemini);
    unknown.model = "no-such-model".into();
    let e = provider(&sim, ProviderKind::Gemini)
        .count_input_tokens(&unknown)
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.status), (ErrorKind::NotFound, Some(404)));
    assert_eq!(e.operation, "count tokens");
}
