//! The Gemini adapter against `volley-sim`'s Gemini routes, over real HTTP.
use std::time::Duration;

use futures::StreamExt;
use secrecy::SecretString;
use serde_json::Value;
use volley_core::provider::{BatchProvider, ItemResult, RemotePhase, Submission, SubmissionHint};
use volley_providers::gemini::GeminiProvider;
use volley_providers::{Endpoint, HttpClient};
use volley_sim::{SimConfig, Simulator};
use volley_types::ErrorKind;

use crate::support::{fast_retry, items, submission, until_ended};

const MODEL: &str = "gemini-2.5-flash";

fn provider(sim: &Simulator, key: &str) -> GeminiProvider {
    GeminiProvider::new(
        Endpoint::new(sim.base_url(), SecretString::from(key.to_owned())),
        HttpClient::new(fast_retry()),
    )
}

/// The files the simulator holds, straight from its Files API (not through the adapter).
async fn list_files(sim: &Simulator) -> Vec<Value> {
    volley_providers::http::install_crypto_provider();
    let body: Value = reqwest::Client::new()
        .get(format!("{}/v1beta/files?pageSize=100", sim.base_url()))
        .header("x-goog-api-key", "k")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    body.get("files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn sorted_ids(
    results: &[Result<volley_core::provider::ItemOutcome, volley_core::ProviderError>],
) -> Vec<String> {
    let mut ids: Vec<String> = results
        .iter()
        .map(|r| r.as_ref().unwrap().custom_id.clone())
        .collect();
    ids.sort();
    ids
}

fn expected_ids(n: usize) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| format!("g-{i}")).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn inline_submit_poll_and_results() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let items = items("g", MODEL, 25);
    let remote = p.submit(submission("b1", MODEL, &items)).await.unwrap();
    assert!(remote.id.starts_with("batches/"), "{remote:?}");
    assert_eq!(remote.request_count, Some(25));
    assert!(remote.owned_files.is_empty(), "inline: nothing uploaded");
    assert!(list_files(&sim).await.is_empty());

    let ended = until_ended(&p, &remote.id).await;
    assert_eq!(ended.provider_status, "BATCH_STATE_SUCCEEDED");
    let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
    assert_eq!(results.len(), 25);
    for r in &results {
        match &r.as_ref().unwrap().result {
            ItemResult::Succeeded { text, usage, .. } => {
                assert!(!text.is_empty());
                assert!(
                    usage.input_tokens > 0 && usage.output_tokens > 0,
                    "{usage:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sorted_ids(&results), expected_ids(25));
    p.release(&ended).await.unwrap();
    assert_eq!(sim.stats().batches_created, 1);
}

#[tokio::test]
async fn file_mode_uploads_downloads_and_releases_every_file() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // Any batch is over a 100-byte inline limit: it goes through the Files API.
    let p = provider(&sim, "k").with_inline_limit(100);
    let items = items("g", MODEL, 30);
    let remote = p.submit(submission("b-file", MODEL, &items)).await.unwrap();
    assert_eq!(remote.owned_files.len(), 1, "{remote:?}");
    assert!(remote.owned_files[0].starts_with("files/"));
    // The batch may already have written its responses file; the upload is the only one ours.
    let uploaded: Vec<Value> = list_files(&sim)
        .await
        .into_iter()
        .filter(|f| f["source"] != "GENERATED")
        .collect();
    assert_eq!(uploaded.len(), 1, "{uploaded:?}");
    assert_eq!(uploaded[0]["displayName"], "volley-b-file");
    assert_eq!(uploaded[0]["name"], remote.owned_files[0].as_str());

    let ended = until_ended(&p, &remote.id).await;
    let responses = ended.results_locator.clone().expect("a responses file");
    assert!(responses.starts_with("files/"), "{responses}");
    let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
    assert_eq!(results.len(), 30);
    assert!(
        results
            .iter()
            .all(|r| matches!(r.as_ref().unwrap().result, ItemResult::Succeeded { .. }))
    );
    assert_eq!(sorted_ids(&results), expected_ids(30));

    p.release(&ended).await.unwrap();
    assert!(
        list_files(&sim).await.is_empty(),
        "release deletes the upload and the responses file"
    );
    // Releasing again finds nothing to delete, which is fine.
    p.release(&ended).await.unwrap();
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_error_not_retried() {
    let sim = Simulator::spawn(SimConfig {
        api_key: Some("right".into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "wrong");
    let items = items("g", MODEL, 1);
    let e = p.submit(submission("b1", MODEL, &items)).await.unwrap_err();
    assert!(e.is_auth() && !e.is_retryable(), "{e}");
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(e.status, Some(400), "Gemini answers a bad key with 400");
    assert!(
        !e.to_string().contains("wrong"),
        "the key never appears in errors: {e}"
    );
    assert_eq!(sim.stats().calls, 1);
}

#[tokio::test]
async fn rate_limits_are_retried_honouring_the_delay() {
    let delay = Duration::from_millis(300);
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(5),
        rate_limit_every: Some(2),
        retry_after: delay,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let items = items("g", MODEL, 3);
    // Call 1: the create goes through; call 2 (the first poll) is rate limited.
    let remote = p.submit(submission("b1", MODEL, &items)).await.unwrap();
    let started = std::time::Instant::now();
    p.poll(&remote.id).await.unwrap();
    assert!(
        started.elapsed() >= delay,
        "waited {:?}, the backoff alone is at most 20 ms",
        started.elapsed()
    );
    let ended = until_ended(&p, &remote.id).await;
    let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
    assert_eq!(results.len(), 3);
    let stats = sim.stats();
    assert!(stats.faults_injected > 0);
    assert_eq!(stats.batches_created, 1);
}

#[tokio::test]
async fn a_create_that_stays_rate_limited_fails_with_no_effect() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(5),
        rate_limit_every: Some(1),
        retry_after: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let items = items("g", MODEL, 2);
    // Every call is rate limited: the create gives up after the retries, with a status,
    // so the engine knows nothing was created.
    let e = p.submit(submission("b1", MODEL, &items)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.had_no_effect());
    assert_eq!(sim.stats().batches_created, 0);
}

#[tokio::test]
async fn a_rejected_create_deletes_its_upload() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let p = provider(&sim, "k").with_inline_limit(100);
    let items = items("g", MODEL, 3);
    let rejected = Submission {
        model: "gemini-no-such-model",
        ..submission("b1", MODEL, &items)
    };
    let e = p.submit(rejected).await.unwrap_err();
    assert!(e.had_no_effect() && !e.is_retryable(), "{e}");
    assert_eq!(sim.stats().batches_created, 0);
    assert!(
        list_files(&sim).await.is_empty(),
        "no upload is left behind"
    );
}

#[tokio::test]
async fn unknown_batch_is_not_found() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let e = provider(&sim, "k").poll("batches/nope").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn cancel_ends_with_canceled_items() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let items = items("g", MODEL, 4);
    let remote = p.submit(submission("b1", MODEL, &items)).await.unwrap();
    let canceled = p.cancel(&remote.id).await.unwrap();
    assert!(
        matches!(canceled.phase, RemotePhase::Canceling | RemotePhase::Ended),
        "{canceled:?}"
    );
    let ended = until_ended(&p, &remote.id).await;
    assert_eq!(ended.provider_status, "BATCH_STATE_CANCELLED");
    let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
    assert_eq!(results.len(), 4);
    assert!(
        results
            .iter()
            .all(|r| matches!(r.as_ref().unwrap().result, ItemResult::Canceled)),
        "{results:?}"
    );
}

#[tokio::test]
async fn cancel_of_a_file_batch_reports_every_item() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k").with_inline_limit(100);
    let items = items("g", MODEL, 3);
    let remote = p.submit(submission("b1", MODEL, &items)).await.unwrap();
    p.cancel(&remote.id).await.unwrap();
    let ended = until_ended(&p, &remote.id).await;
    let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
    assert_eq!(sorted_ids(&results), expected_ids(3));
    assert!(
        results
            .iter()
            .all(|r| matches!(r.as_ref().unwrap().result, ItemResult::Canceled))
    );
    p.release(&ended).await.unwrap();
    assert!(list_files(&sim).await.is_empty());
}

#[tokio::test]
async fn find_submitted_matches_the_display_name_and_skips_known_batches() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let started_at = jiff::Timestamp::now();
    let five = items("g", MODEL, 5);
    let seven = items("g", MODEL, 7);
    let a = p
        .submit(submission("run-b0001", MODEL, &five))
        .await
        .unwrap();
    let b = p
        .submit(submission("run-b0002", MODEL, &seven))
        .await
        .unwrap();
    let hint = |batch_id, count, known: &'static [String]| SubmissionHint {
        batch_id,
        run_id: "run",
        request_count: count,
        started_at,
        known_remote_ids: known,
    };
    let found = p.find_submitted(hint("run-b0001", 5, &[])).await.unwrap();
    assert_eq!(found.map(|f| f.id), Some(a.id.clone()));
    let found = p.find_submitted(hint("run-b0002", 7, &[])).await.unwrap();
    assert_eq!(found.map(|f| f.id), Some(b.id.clone()));
    assert!(
        p.find_submitted(hint("run-b0003", 5, &[]))
            .await
            .unwrap()
            .is_none()
    );
    let known: &'static [String] = Box::leak(vec![a.id.clone()].into_boxed_slice());
    assert!(
        p.find_submitted(hint("run-b0001", 5, known))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn find_submitted_pages_through_the_list() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let one = items("g", MODEL, 1);
    let mut last = None;
    for i in 0..120 {
        let id = format!("run-b{i:04}");
        last = Some(p.submit(submission(&id, MODEL, &one)).await.unwrap());
    }
    let hint = SubmissionHint {
        batch_id: "run-b0119",
        run_id: "run",
        request_count: 1,
        started_at: jiff::Timestamp::now(),
        known_remote_ids: &[],
    };
    let hint_first = SubmissionHint {
        batch_id: "run-b0000",
        ..hint
    };
    let last = last.unwrap();
    let found = p.find_submitted(hint).await.unwrap().expect("found");
    assert_eq!(found.id, last.id);
    assert!(p.find_submitted(hint_first).await.unwrap().is_some());
}

#[tokio::test]
async fn an_expired_batch_reports_every_item_expired() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(20),
        expired_rate: 1.0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    for limit in [volley_providers::gemini::INLINE_LIMIT, 100] {
        let p = provider(&sim, "k").with_inline_limit(limit);
        let items = items("g", MODEL, 4);
        let remote = p.submit(submission("b-exp", MODEL, &items)).await.unwrap();
        let ended = until_ended(&p, &remote.id).await;
        assert_eq!(ended.provider_status, "BATCH_STATE_EXPIRED");
        assert_eq!(
            ended.results_locator, None,
            "an expired batch has no results"
        );

        // Another process (after a restart) knows no keys: it reports nothing, and the
        // engine's "missing from the results" rule takes over.
        let fresh = provider(&sim, "k");
        let results: Vec<_> = fresh.results(&ended).await.unwrap().collect().await;
        assert!(results.is_empty(), "{results:?}");

        let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
        assert_eq!(sorted_ids(&results), expected_ids(4));
        assert!(
            results
                .iter()
                .all(|r| matches!(r.as_ref().unwrap().result, ItemResult::Expired)),
            "{results:?}"
        );
        p.release(&ended).await.unwrap();
    }
    assert!(list_files(&sim).await.is_empty());
}

#[tokio::test]
async fn item_errors_keep_their_kind_and_status() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(20),
        error_rate: 1.0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let items = items("g", MODEL, 3);
    let remote = p.submit(submission("b1", MODEL, &items)).await.unwrap();
    let ended = until_ended(&p, &remote.id).await;
    let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
    assert_eq!(results.len(), 3);
    for r in results {
        match r.unwrap().result {
            ItemResult::Errored(info) => {
                assert_eq!(info.kind, ErrorKind::Server, "{info:?}");
                assert_eq!(info.provider_status, Some(500));
                assert!(info.kind.is_transient());
            }
            other => panic!("{other:?}"),
        }
    }
}
