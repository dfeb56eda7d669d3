//! The OpenAI adapter against `volley-sim`'s OpenAI routes (`/v1/files`, `/v1/batches`), over
//! real HTTP.
use std::time::Duration;

use futures::StreamExt;
use secrecy::SecretString;
use serde_json::Value;
use volley_core::provider::{
    BatchProvider, ItemOutcome, ItemResult, RemoteBatch, RemotePhase, SubmissionHint,
};
use volley_providers::openai::OpenAiProvider;
use volley_providers::openai::convert::{self, ResultFiles};
use volley_providers::{Endpoint, HttpClient};
use volley_sim::{SimConfig, Simulator};
use volley_types::ErrorKind;

use crate::support::{fast_retry, items, submission, until_ended};

const MODEL: &str = "gpt-4o-mini";

fn base_url(sim: &Simulator) -> String {
    format!("{}/v1", sim.base_url())
}

fn provider(sim: &Simulator, key: &str) -> OpenAiProvider {
    OpenAiProvider::new(
        Endpoint::new(base_url(sim), SecretString::from(key.to_owned())),
        HttpClient::new(fast_retry()),
    )
}

async fn results(p: &OpenAiProvider, ended: &RemoteBatch) -> Vec<ItemOutcome> {
    p.results(ended)
        .await
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
        .await
}

/// Every file the simulator holds, as `GET /v1/files` lists them.
async fn listed_files(sim: &Simulator) -> Vec<Value> {
    volley_providers::http::install_crypto_provider();
    let page: Value = reqwest::Client::new()
        .get(format!("{}/files", base_url(sim)))
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn submit_poll_results_and_release_every_file() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let items = items("c", MODEL, 25);
    let remote = p
        .submit(submission("r1-b0001", MODEL, &items))
        .await
        .unwrap();
    assert_eq!(remote.phase, RemotePhase::Running, "{remote:?}");
    assert_eq!(remote.owned_files.len(), 1, "the input file: {remote:?}");
    let input_file = remote.owned_files[0].clone();

    let ended = until_ended(&p, &remote.id).await;
    assert_eq!(ended.request_count, Some(25));
    assert!(ended.owned_files.contains(&input_file), "{ended:?}");
    let files = ResultFiles::parse(ended.results_locator.as_deref().unwrap());
    assert!(files.output.is_some(), "{ended:?}");

    let outcomes = results(&p, &ended).await;
    assert_eq!(outcomes.len(), 25);
    let mut ids: Vec<String> = outcomes
        .into_iter()
        .map(|o| {
            match &o.result {
                ItemResult::Succeeded { text, usage, .. } => {
                    assert!(!text.is_empty() && usage.output_tokens > 0, "{o:?}");
                }
                other => panic!("{other:?}"),
            }
            o.custom_id
        })
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (0..25).map(|i| format!("c-{i}")).collect();
    expected.sort();
    assert_eq!(ids, expected);

    assert!(!listed_files(&sim).await.is_empty());
    p.release(&ended).await.unwrap();
    assert_eq!(listed_files(&sim).await, Vec::<Value>::new());
    // Releasing again is harmless: a file already gone counts as deleted.
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
    let items = items("c", MODEL, 1);
    let e = p
        .submit(submission("r1-b0001", MODEL, &items))
        .await
        .unwrap_err();
    assert!(e.is_auth() && !e.is_retryable(), "{e}");
    assert_eq!(e.status, Some(401));
    assert!(e.request_id.is_some(), "x-request-id is kept: {e:?}");
    assert!(e.raw_body.is_some());
    assert!(
        !e.to_string().contains("wrong"),
        "the key never appears in errors: {e}"
    );
    assert_eq!(
        sim.stats().calls,
        1,
        "the upload failed; no create was tried"
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_without_duplicates() {
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
    let remote = p
        .submit(submission("r1-b0001", MODEL, &items))
        .await
        .unwrap();
    let ended = until_ended(&p, &remote.id).await;
    assert_eq!(results(&p, &ended).await.len(), 3);
    p.release(&ended).await.unwrap();
    let stats = sim.stats();
    assert!(stats.faults_injected > 0);
    assert_eq!(
        stats.batches_created, 1,
        "a faulted upload or create had no effect and was retried once"
    );
    sim.set_config(SimConfig::default());
    assert_eq!(
        listed_files(&sim).await,
        Vec::<Value>::new(),
        "no second upload was left behind"
    );
}

#[tokio::test]
async fn unknown_batch_is_not_found() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let e = provider(&sim, "k").poll("batch_nope").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
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
    let remote = p
        .submit(submission("r1-b0001", MODEL, &items))
        .await
        .unwrap();
    let canceling = p.cancel(&remote.id).await.unwrap();
    assert!(
        matches!(canceling.phase, RemotePhase::Canceling | RemotePhase::Ended),
        "{canceling:?}"
    );
    // Cancelling twice is harmless.
    p.cancel(&remote.id).await.unwrap();
    let ended = until_ended(&p, &remote.id).await;
    assert_eq!(ended.provider_status, "cancelled");
    let outcomes = results(&p, &ended).await;
    assert_eq!(outcomes.len(), 4);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.result, ItemResult::Canceled)),
        "{outcomes:?}"
    );
    p.release(&ended).await.unwrap();
    assert_eq!(listed_files(&sim).await, Vec::<Value>::new());
}

#[tokio::test]
async fn every_line_failing_leaves_no_output_file() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(10),
        error_rate: 1.0,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let items = items("c", MODEL, 3);
    let remote = p
        .submit(submission("r1-b0001", MODEL, &items))
        .await
        .unwrap();
    let ended = until_ended(&p, &remote.id).await;
    let files = ResultFiles::parse(ended.results_locator.as_deref().unwrap());
    assert_eq!(files.output, None, "output_file_id is null: {ended:?}");
    assert!(files.error.is_some());
    let outcomes = results(&p, &ended).await;
    assert_eq!(outcomes.len(), 3);
    for o in &outcomes {
        match &o.result {
            ItemResult::Errored(info) => assert!(info.kind.is_transient(), "{info:?}"),
            other => panic!("{other:?}"),
        }
    }
    p.release(&ended).await.unwrap();
    assert_eq!(listed_files(&sim).await, Vec::<Value>::new());
}

#[tokio::test]
async fn find_submitted_by_metadata_skips_known_batches_and_old_ones() {
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = provider(&sim, "k");
    let started_at = jiff::Timestamp::now();
    let five = items("c", MODEL, 5);
    let a = p
        .submit(submission("r1-b0001", MODEL, &five))
        .await
        .unwrap();
    let b = p
        .submit(submission("r1-b0002", MODEL, &five))
        .await
        .unwrap();
    let hint = |batch_id, known: &'static [String]| SubmissionHint {
        batch_id,
        run_id: "r1",
        request_count: 5,
        started_at,
        known_remote_ids: known,
    };
    // Same size, told apart by their tags.
    let found = p
        .find_submitted(hint("r1-b0001", &[]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, a.id);
    assert!(found.owned_files.contains(&a.owned_files[0]), "{found:?}");
    assert_eq!(
        p.find_submitted(hint("r1-b0002", &[]))
            .await
            .unwrap()
            .unwrap()
            .id,
        b.id
    );
    assert!(
        p.find_submitted(hint("r1-b0003", &[]))
            .await
            .unwrap()
            .is_none()
    );
    let known: &'static [String] = Box::leak(vec![a.id.clone()].into_boxed_slice());
    assert!(
        p.find_submitted(hint("r1-b0001", known))
            .await
            .unwrap()
            .is_none()
    );
    let other_run = SubmissionHint {
        run_id: "r2",
        ..hint("r1-b0001", &[])
    };
    assert!(p.find_submitted(other_run).await.unwrap().is_none());
    let later = SubmissionHint {
        started_at: started_at + jiff::SignedDuration::from_secs(3600),
        ..hint("r1-b0001", &[])
    };
    assert!(
        p.find_submitted(later).await.unwrap().is_none(),
        "created long before the intent"
    );
    // None of those searches deleted a file that a batch uses.
    assert_eq!(listed_files(&sim).await.len(), 2);
}

#[tokio::test]
async fn find_submitted_deletes_an_upload_that_made_no_batch() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let p = provider(&sim, "k");
    // An upload whose create call never happened (as after a crash between the two).
    let items = items("c", MODEL, 2);
    let upload = convert::upload_body("r1-b0009", &items);
    volley_providers::http::install_crypto_provider();
    let started_at = jiff::Timestamp::now();
    reqwest::Client::new()
        .post(format!("{}/files", base_url(&sim)))
        .bearer_auth("k")
        .header("content-type", upload.content_type)
        .body(upload.body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    assert_eq!(listed_files(&sim).await.len(), 1);
    let found = p
        .find_submitted(SubmissionHint {
            batch_id: "r1-b0009",
            run_id: "r1",
            request_count: 2,
            started_at,
            known_remote_ids: &[],
        })
        .await
        .unwrap();
    assert!(found.is_none());
    assert_eq!(listed_files(&sim).await, Vec::<Value>::new());
}
