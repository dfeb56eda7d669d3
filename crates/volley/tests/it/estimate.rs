//! Estimates with `exact_tokens`: input tokens counted by the (simulated) providers equal what
//! a run of the same input is billed; a provider that cannot count keeps the offline estimate.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use volley::{
    CancellationToken, Endpoint, ProviderKind, ProviderSetup, RetryPolicy, RunSpec, TokenCounter,
};

use crate::support::{sim, volley};

/// The quickstart (330 requests, three providers, schemas) plus requests with a PDF, an image
/// and a text file, in a folder of their own.
fn input(dir: &Path) -> PathBuf {
    let pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Count 1 >> endobj\n%%EOF\n";
    std::fs::write(dir.join("report.pdf"), pdf).unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend(640u32.to_be_bytes());
    png.extend(480u32.to_be_bytes());
    png.extend([8, 6, 0, 0, 0]);
    std::fs::write(dir.join("chart.png"), png).unwrap();
    std::fs::write(dir.join("notes.txt"), "Revenue rose 12% on the year.").unwrap();
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.jsonl");
    let mut text = std::fs::read_to_string(quickstart).unwrap();
    for model in ["claude-haiku-4-5", "gpt-4o-mini", "gemini-2.5-flash"] {
        text.push_str(&format!(
            "{{\"id\": \"files-{model}\", \"model\": \"{model}\", \"prompt\": \"Summarise the attachments.\", \"files\": [\"report.pdf\", \"chart.png\", \"notes.txt\"], \"max_tokens\": 100}}\n"
        ));
    }
    let path = dir.join("input.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn exact_counts_equal_what_the_run_is_billed() {
    let dir = tempfile::tempdir().unwrap();
    let path = input(dir.path());
    let volley = volley(sim(20), 1000).await;
    let catalog = volley.catalog();
    let offline = volley::estimate(catalog, &path).offline().unwrap();
    assert!(!offline.exact_tokens);
    let exact = volley::estimate(catalog, &path)
        .exact_tokens(volley.token_counter().concurrency(4))
        .run()
        .await
        .unwrap();
    assert!(exact.exact_tokens);
    assert_eq!(exact.total.counted_requests, 333);

    let started = volley.start_file(&path, RunSpec::default()).await.unwrap();
    volley
        .drive(&started.run.id, CancellationToken::new())
        .await
        .unwrap();
    let mut billed: BTreeMap<String, u64> = BTreeMap::new();
    for line in volley.results(&started.run.id).await.unwrap() {
        assert_eq!(line.status, volley::ResultStatus::Succeeded, "{line:?}");
        *billed.entry(line.model.clone()).or_default() +=
            line.usage.input_tokens + line.usage.cache_read_tokens;
    }
    assert_eq!(exact.models.len(), billed.len());
    for (m, o) in exact.models.iter().zip(&offline.models) {
        assert!(m.input_tokens_exact && m.count_error.is_none(), "{m:?}");
        assert_eq!(m.counted_requests, m.requests);
        assert_eq!(m.input_tokens, billed[&m.model], "{}", m.model);
        // The simulator's tokenizer is cruder than o200k: the offline figure differs.
        assert_ne!(m.input_tokens, o.input_tokens, "{}", m.model);
        // A count is not a bound: what a cost cap reserves does not change.
        assert_eq!(m.worst_case_usd, o.worst_case_usd);
        assert!(m.cost_batch_usd > 0.0 && m.cost_batch_usd < m.worst_case_usd);
    }
}

#[tokio::test]
async fn providers_that_cannot_count_keep_the_offline_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let path = input(dir.path());
    let volley = volley(sim(20), 1000).await;
    let sim_url = volley.simulator().unwrap().base_url();
    let catalog = volley.catalog();
    // Anthropic at the simulator; Gemini at a closed port; OpenAI without a key.
    let setup = ProviderSetup::default()
        .with(
            ProviderKind::Anthropic,
            Endpoint::new(sim_url, SecretString::from("k")),
        )
        .with(
            ProviderKind::Gemini,
            Endpoint::new("http://127.0.0.1:9", SecretString::from("k")),
        );
    let retry = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    let exact = volley::estimate(catalog, &path)
        .exact_tokens(TokenCounter::new(&setup, retry))
        .run()
        .await
        .unwrap();
    let offline = volley::estimate(catalog, &path).offline().unwrap();
    let of = |e: &volley::Estimate, p| -> Vec<volley::ModelEstimate> {
        e.models
            .iter()
            .filter(|m| m.provider == p)
            .cloned()
            .collect()
    };
    let anthropic = of(&exact, ProviderKind::Anthropic);
    assert!(anthropic.len() > 1);
    for m in &anthropic {
        assert!(m.input_tokens_exact && m.count_error.is_none(), "{m:?}");
    }
    for (p, reason) in [
        (
            ProviderKind::OpenAi,
            "no key for openai (set OPENAI_API_KEY)",
        ),
        (ProviderKind::Gemini, "gemini count tokens failed"),
    ] {
        for (m, o) in of(&exact, p).iter().zip(of(&offline, p)) {
            assert_eq!((m.counted_requests, m.input_tokens_exact), (0, false));
            assert_eq!(m.input_tokens, o.input_tokens, "{p}: the offline estimate");
            let error = m.count_error.as_deref().unwrap();
            assert!(error.starts_with(reason), "{p}: {error}");
        }
    }
    assert_eq!(
        exact.total.counted_requests,
        anthropic.iter().map(|m| m.requests).sum::<u64>(),
        "only Anthropic counted"
    );
}
