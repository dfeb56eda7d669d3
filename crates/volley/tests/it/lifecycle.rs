use serde_json::json;
use volley::{CancellationToken, Mode, ResultStatus, RunEnd, RunSpec, RunState};

use crate::support::{sim, start, volley, volley_with_events};
use volley::Event;

#[tokio::test]
async fn a_run_completes_with_one_result_per_request_in_input_order() {
    let volley = volley(sim(30), 50).await;
    let run = start(&volley, 120, 3).await;
    let end = volley.drive(&run, CancellationToken::new()).await.unwrap();
    let RunEnd::Completed { counts, cost_usd } = end else {
        panic!("{end:?}")
    };
    assert_eq!(
        (counts.total, counts.succeeded, counts.pending),
        (120, 120, 0)
    );

    let results = volley.results(&run).await.unwrap();
    let ids: Vec<String> = results.iter().map(|r| r.id.clone()).collect();
    let expected: Vec<String> = (0..120).map(|i| format!("r-{i:04}")).collect();
    assert_eq!(ids, expected);

    // Costs are the catalog's batch price of the simulator's reported usage.
    let mut total = 0.0;
    for line in &results {
        assert_eq!(line.status, ResultStatus::Succeeded);
        assert_eq!((line.mode, line.attempts), (Mode::Batch, 1));
        assert!(line.usage.input_tokens > 0 && line.usage.output_tokens > 0);
        let expected = volley
            .catalog()
            .cost(line.provider, &line.model, &line.usage, Mode::Batch);
        assert!((line.cost_usd - expected).abs() < 1e-12);
        assert!(
            line.provider_batch_id
                .as_deref()
                .unwrap()
                .starts_with("msgbatch_")
        );
        total += line.cost_usd;
    }
    assert!((total - cost_usd).abs() < 1e-9);

    let status = volley.status(&run).await.unwrap();
    assert_eq!(status.status, RunState::Completed);
    assert_eq!(
        status.batches.len(),
        3,
        "120 requests in batches of at most 50"
    );
    let stats = volley.simulator().unwrap().stats();
    assert_eq!((stats.batches_created, stats.requests_submitted), (3, 120));
    assert_eq!(stats.duplicate_submissions, 0);
}

#[tokio::test]
async fn schema_answers_are_parsed_and_metadata_is_kept() {
    let volley = volley(sim(10), 100).await;
    let run = volley
        .new_run(RunSpec::default().model("claude-haiku-4-5"))
        .request(json!({
            "id": "x",
            "prompt": "Extract the vendor",
            "schema": {"type": "object", "properties": {"vendor": {"type": "string"}}, "required": ["vendor"]},
            "metadata": {"k": [1, 2]}
        }))
        .start()
        .await
        .unwrap();
    volley.drive(&run, CancellationToken::new()).await.unwrap();
    let line = &volley.results(&run).await.unwrap()[0];
    assert_eq!(line.status, ResultStatus::Succeeded);
    let parsed = line.parsed.as_ref().expect("parsed JSON");
    assert!(parsed["vendor"].is_string(), "{parsed}");
    assert_eq!(line.metadata, Some(json!({"k": [1, 2]})));
}

#[tokio::test]
async fn transient_item_errors_are_retried_until_they_succeed() {
    let config = volley::SimConfig {
        error_rate: 0.3,
        seed: 7,
        ..sim(10)
    };
    let volley = volley(config, 40).await;
    let run = start(&volley, 100, 10).await;
    let RunEnd::Completed { counts, .. } =
        volley.drive(&run, CancellationToken::new()).await.unwrap()
    else {
        panic!("not completed")
    };
    assert_eq!(counts.succeeded, 100, "{counts:?}");
    let results = volley.results(&run).await.unwrap();
    let retried = results.iter().filter(|r| r.attempts > 1).count();
    assert!(
        retried > 10,
        "about 30% needed a second attempt, saw {retried}"
    );
    let stats = volley.simulator().unwrap().stats();
    assert_eq!(
        stats.requests_submitted as usize,
        results.iter().map(|r| r.attempts as usize).sum::<usize>()
    );
}

#[tokio::test]
async fn expired_items_are_retried_then_reported_expired() {
    let config = volley::SimConfig {
        expired_rate: 1.0,
        ..sim(10)
    };
    let volley = volley(config, 100).await;
    let run = start(&volley, 5, 2).await;
    let RunEnd::Completed { counts, .. } =
        volley.drive(&run, CancellationToken::new()).await.unwrap()
    else {
        panic!("not completed")
    };
    assert_eq!(counts.expired, 5);
    for line in volley.results(&run).await.unwrap() {
        assert_eq!((line.status, line.attempts), (ResultStatus::Expired, 2));
        assert_eq!(line.error.unwrap().kind, volley::ErrorKind::Expired);
    }
}

#[tokio::test]
async fn shutdown_leaves_batches_running_and_drive_again_finishes_without_resubmitting() {
    let (volley, mut events) = volley_with_events(sim(300), 20).await;
    let run = start(&volley, 60, 3).await;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let (end, ()) = tokio::join!(volley.drive(&run, shutdown), async move {
        // Stop as soon as all three batches are at the provider, long before they end.
        let mut submitted = 0;
        while let Some(event) = events.recv().await {
            if matches!(event, Event::BatchSubmitted { .. }) {
                submitted += 1;
                if submitted == 3 {
                    stop.cancel();
                    break;
                }
            }
        }
    });
    assert!(matches!(end.unwrap(), RunEnd::Interrupted { .. }));
    let status = volley.status(&run).await.unwrap();
    assert_eq!(status.status, RunState::Interrupted);
    assert_eq!(status.counts.pending, 60);

    let end = volley.drive(&run, CancellationToken::new()).await.unwrap();
    assert!(matches!(end, RunEnd::Completed { .. }), "{end:?}");
    let stats = volley.simulator().unwrap().stats();
    assert_eq!(stats.duplicate_submissions, 0);
    assert_eq!((stats.batches_created, stats.requests_submitted), (3, 60));
}

#[tokio::test]
async fn an_input_that_changed_after_validation_is_not_imported_nor_driven() {
    use std::sync::Arc;
    use volley_core::import::{ImportError, import};
    use volley_core::input::{InputOptions, InputSource};
    use volley_core::provider::Providers;
    use volley_core::store::{NewRun, RunOptions};

    let volley = volley(sim(0), 100).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let source = InputSource::File(path.clone());
    std::fs::write(
        &path,
        "{\"id\":\"a\",\"prompt\":\"x\",\"model\":\"claude-haiku-4-5\"}\n",
    )
    .unwrap();
    let validated = source.content_hash().unwrap();
    // Written again between the validation and the import.
    std::fs::write(
        &path,
        "{\"id\":\"a\",\"prompt\":\"x\",\"model\":\"claude-haiku-4-5\"}\n\
         {\"id\":\"b\",\"prompt\":\"y\",\"model\":\"claude-haiku-4-5\"}\n",
    )
    .unwrap();
    // A new run `id`, and the import of `source` into it against `content_hash`.
    let import_run = |id: &'static str, content_hash: u64| {
        let (volley, source) = (&volley, source.clone());
        async move {
            volley
                .store()
                .create_run(&NewRun {
                    id: id.into(),
                    created_at: jiff::Timestamp::now(),
                    input: None,
                    fingerprint: None,
                    out: None,
                    options: RunOptions::default(),
                })
                .await
                .unwrap();
            import(
                volley.store().as_ref(),
                Arc::new(volley.catalog().clone()),
                Providers::default(),
                source,
                InputOptions::default(),
                id,
                content_hash,
            )
            .await
        }
    };
    let refused = import_run("r", validated).await.unwrap_err();
    let ImportError::Input(e) = refused else {
        panic!("not an input error: {refused}")
    };
    assert!(e.message.contains("changed while volley read it"), "{e}");

    let driven = volley.drive("r", CancellationToken::new()).await;
    assert!(
        driven
            .as_ref()
            .is_err_and(|e| e.to_string().contains("interrupted while importing")),
        "{driven:?}"
    );
    // The content it now has imports.
    let imported = import_run("r2", source.content_hash().unwrap()).await;
    assert_eq!(imported.unwrap(), 2);
}
