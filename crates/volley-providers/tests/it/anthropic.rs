use std::time::Duration;

use futures::StreamExt;
use secrecy::SecretString;
use volley_core::provider::{BatchProvider, ItemResult, RemotePhase, SubmissionHint};
use volley_providers::{AnthropicProvider, Endpoint, HttpClient};
use volley_sim::{SimConfig, Simulator};
use volley_types::ErrorKind;

use crate::support::{fast_retry, items, submission, until_ended};

const MODEL: &str = "claude-haiku-4-5";

pub(crate) fn provider(sim: &Simulator, key: &str) -> AnthropicProvider {
    AnthropicProvider::new(
        Endpoint::new(sim.base_url(), SecretString::from(key.to_owned())),
        HttpClient::new(fast_retry()),
    )
}

#[tokio::test]
async fn submit_poll_and_stream_results() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let items = items("c", MODEL, 25);
    let remote = p.submit(submission("b1", MODEL, &items)).await.unwrap();
    assert_eq!(
        (remote.phase.clone(), remote.request_count),
        (RemotePhase::Running, Some(25))
    );
    let ended = until_ended(&p, &remote.id).await;
    let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
    assert_eq!(results.len(), 25);
    let mut ids: Vec<String> = results
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            assert!(matches!(r.result, ItemResult::Succeeded { .. }), "{r:?}");
            r.custom_id
        })
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (0..25).map(|i| format!("c-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn rate_limits_and_overload_are_retried_transparently() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(5),
        rate_limit_every: Some(2),
        server_error_every: Some(3),
        retry_after: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let items = items("c", MODEL, 3);
    let remote = p.submit(submission("b1", MODEL, &items)).await.unwrap();
    let ended = until_ended(&p, &remote.id).await;
    let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
    assert_eq!(results.len(), 3);
    let stats = sim.stats();
    assert!(stats.faults_injected > 0);
    assert_eq!(
        stats.batches_created, 1,
        "a faulted create has no effect and is retried once"
    );
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
    let items = items("c", MODEL, 1);
    let e = p.submit(submission("b1", MODEL, &items)).await.unwrap_err();
    assert!(e.is_auth() && !e.is_retryable(), "{e}");
    assert_eq!(e.status, Some(401));
    assert!(e.request_id.is_some());
    assert!(
        !e.to_string().contains("wrong"),
        "the key never appears in errors: {e}"
    );
    assert_eq!(sim.stats().calls, 1);
}

#[tokio::test]
async fn unknown_batch_is_not_found() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let e = provider(&sim, "k").poll("msgbatch_nope").await.unwrap_err();
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
    let items = items("c", MODEL, 4);
    let remote = p.submit(submission("b1", MODEL, &items)).await.unwrap();
    let canceling = p.cancel(&remote.id).await.unwrap();
    assert_eq!(canceling.phase, RemotePhase::Canceling);
    let ended = until_ended(&p, &remote.id).await;
    let results: Vec<_> = p.results(&ended).await.unwrap().collect().await;
    assert_eq!(results.len(), 4);
    assert!(
        results
            .iter()
            .all(|r| matches!(r.as_ref().unwrap().result, ItemResult::Canceled))
    );
}

#[tokio::test]
async fn find_submitted_matches_count_and_time_and_skips_known_batches() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let started_at = jiff::Timestamp::now();
    let five = items("c", MODEL, 5);
    let seven = items("c", MODEL, 7);
    let a = p.submit(submission("b1", MODEL, &five)).await.unwrap();
    let b = p.submit(submission("b1", MODEL, &seven)).await.unwrap();
    let hint = |count, known: &'static [String]| SubmissionHint {
        batch_id: "b",
        run_id: "r",
        request_count: count,
        started_at,
        known_remote_ids: known,
    };
    assert_eq!(
        p.find_submitted(hint(5, &[])).await.unwrap().unwrap().id,
        a.id
    );
    assert_eq!(
        p.find_submitted(hint(7, &[])).await.unwrap().unwrap().id,
        b.id
    );
    assert!(p.find_submitted(hint(6, &[])).await.unwrap().is_none());
    let known: &'static [String] = Box::leak(vec![a.id.clone()].into_boxed_slice());
    assert!(p.find_submitted(hint(5, known)).await.unwrap().is_none());
    let later = SubmissionHint {
        started_at: started_at + jiff::SignedDuration::from_secs(3600),
        ..hint(5, &[])
    };
    assert!(
        p.find_submitted(later).await.unwrap().is_none(),
        "created long before the intent"
    );
}
