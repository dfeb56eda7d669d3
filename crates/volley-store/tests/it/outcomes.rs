//! record_outcomes and close_batch are idempotent: a crash and a second collection of the
//! same batch change nothing, and outcomes for requests that left the batch are ignored.
use volley_core::store::{Outcome, Store};
use volley_types::{BatchState, Counts, ProviderKind, ResultStatus};

use crate::common::{FileStore, at, done, group, imported_run, new_batch, retry};

/// Everything the outcomes can touch, as plain data.
async fn snapshot(
    fs: &FileStore,
) -> (
    Counts,
    Vec<(u64, String)>,
    Vec<(i64, i64, Option<String>)>,
    Vec<(i64, i64, Option<i64>)>,
    i64,
) {
    fs.check_counts("r").await;
    let store = &fs.store;
    let mut conn = fs.raw().await;
    let attempts = sqlx::query_as("SELECT seq, attempt, error FROM attempts ORDER BY seq, attempt")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let requests = sqlx::query_as("SELECT seq, state, batch FROM requests ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let ledger = fs
        .count("SELECT COUNT(*) FROM ledger WHERE kind = 'actual'")
        .await;
    (
        store.counts("r").await.unwrap(),
        store.results("r", None, 1_000).await.unwrap(),
        attempts,
        requests,
        ledger,
    )
}

async fn submitted(fs: &FileStore, n: u64) {
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    imported_run(&fs.store, "r", n, std::slice::from_ref(&haiku)).await;
    fs.store
        .create_batch(&new_batch("r", 1, &haiku, 0, n - 1))
        .await
        .unwrap();
    fs.store
        .begin_submit("r-b0001", at("2026-03-01T10:00:00Z"), None)
        .await
        .unwrap();
    fs.store
        .confirm_submit("r-b0001", "msgbatch_1", "in_progress")
        .await
        .unwrap();
}

#[tokio::test]
async fn applying_the_same_outcomes_twice_changes_nothing() {
    let fs = FileStore::new().await;
    submitted(&fs, 6).await;
    let outcomes = vec![
        done(0, 1, ResultStatus::Succeeded, 0.5),
        done(1, 1, ResultStatus::Failed, 0.0),
        retry(2, 1),
        done(3, 1, ResultStatus::Succeeded, 0.25),
        retry(4, 1),
        done(5, 1, ResultStatus::Expired, 0.0),
    ];
    fs.store
        .record_outcomes("r-b0001", &outcomes)
        .await
        .unwrap();
    let first = snapshot(&fs).await;
    assert_eq!(first.0.pending, 2);
    assert_eq!(first.1.len(), 4);
    // Attempt rows for the two retries only.
    assert_eq!(first.2.len(), 2);

    // The same outcomes again (a restart re-reads the provider's results).
    fs.store
        .record_outcomes("r-b0001", &outcomes)
        .await
        .unwrap();
    assert_eq!(snapshot(&fs).await, first);

    // Different outcomes for the same requests are ignored as well: the first decision stands.
    let changed: Vec<Outcome> = (0..6)
        .map(|s| done(s, 1, ResultStatus::Canceled, 9.0))
        .collect();
    fs.store.record_outcomes("r-b0001", &changed).await.unwrap();
    assert_eq!(snapshot(&fs).await, first);
    assert_eq!(fs.store.run_cost("r").await.unwrap(), 0.75);

    // Closing twice books the cost once.
    fs.store
        .close_batch("r-b0001", BatchState::Collected)
        .await
        .unwrap();
    let closed = snapshot(&fs).await;
    assert_eq!(closed.4, 1);
    fs.store
        .close_batch("r-b0001", BatchState::Collected)
        .await
        .unwrap();
    assert_eq!(snapshot(&fs).await, closed);
    assert_eq!(fs.store.batches("r").await.unwrap()[0].cost_usd, 0.75);
}

#[tokio::test]
async fn outcomes_for_requests_no_longer_in_the_batch_are_ignored() {
    let fs = FileStore::new().await;
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    submitted(&fs, 3).await;
    fs.store
        .record_outcomes("r-b0001", &[retry(1, 1)])
        .await
        .unwrap();
    // Re-planned into batch 2 and submitted again.
    assert_eq!(
        fs.store
            .create_batch(&new_batch("r", 2, &haiku, 0, 2))
            .await
            .unwrap(),
        1
    );
    fs.store
        .begin_submit("r-b0002", at("2026-03-01T10:30:00Z"), None)
        .await
        .unwrap();
    fs.store
        .confirm_submit("r-b0002", "msgbatch_2", "in_progress")
        .await
        .unwrap();
    let before = snapshot(&fs).await;

    // A late duplicate from batch 1 for the request now in batch 2: ignored, whatever it says.
    fs.store
        .record_outcomes("r-b0001", &[done(1, 1, ResultStatus::Succeeded, 1.0)])
        .await
        .unwrap();
    fs.store
        .record_outcomes("r-b0001", &[retry(1, 1)])
        .await
        .unwrap();
    assert_eq!(snapshot(&fs).await, before);
    // Outcomes sent to the wrong batch are ignored too.
    fs.store
        .record_outcomes("r-b0002", &[done(0, 1, ResultStatus::Succeeded, 1.0)])
        .await
        .unwrap();
    assert_eq!(snapshot(&fs).await, before);
    // The request's own batch decides it.
    fs.store
        .record_outcomes("r-b0002", &[done(1, 2, ResultStatus::Succeeded, 0.5)])
        .await
        .unwrap();
    let after = snapshot(&fs).await;
    assert_eq!(after.0.succeeded, 1);
    assert_eq!(
        after.1,
        [(1, r#"{"id":"q-1","status":"succeeded"}"#.to_owned())]
    );
    // The retry left an attempt row; the final line is in the results.
    let tried: Vec<(i64, i64)> = after.2.iter().map(|a| (a.0, a.1)).collect();
    assert_eq!(tried, [(1, 1)]);
}

#[tokio::test]
async fn the_first_outcome_of_a_seq_in_one_call_wins() {
    let fs = FileStore::new().await;
    submitted(&fs, 2).await;
    fs.store
        .record_outcomes(
            "r-b0001",
            &[
                done(0, 1, ResultStatus::Succeeded, 0.5),
                retry(0, 1),
                retry(1, 1),
                done(1, 1, ResultStatus::Succeeded, 0.5),
            ],
        )
        .await
        .unwrap();
    let (counts, results, attempts, requests, _) = snapshot(&fs).await;
    assert_eq!((counts.succeeded, counts.pending), (1, 1));
    assert_eq!(results.len(), 1);
    // Only the retry leaves an attempt row; the final line is in the results.
    assert_eq!(attempts.len(), 1);
    assert_eq!(requests[1], (1, 0, None));
}

#[tokio::test]
async fn many_outcomes_in_one_call() {
    // More outcomes than one statement group holds, mixed.
    let fs = FileStore::new().await;
    let n = 3_001;
    submitted(&fs, n).await;
    let outcomes: Vec<Outcome> = (0..n)
        .map(|s| {
            if s % 3 == 0 {
                retry(s, 1)
            } else {
                done(s, 1, ResultStatus::Succeeded, 0.001)
            }
        })
        .collect();
    fs.store
        .record_outcomes("r-b0001", &outcomes)
        .await
        .unwrap();
    let counts = fs.store.counts("r").await.unwrap();
    assert_eq!((counts.succeeded, counts.pending), (2_000, 1_001));
    assert_eq!(fs.count("SELECT COUNT(*) FROM attempts").await, 1_001);
    assert_eq!(fs.store.batch_items("r-b0001").await.unwrap().len(), 2_000);
    assert!((fs.store.run_cost("r").await.unwrap() - 2.0).abs() < 1e-9);
    fs.check_counts("r").await;
}

#[tokio::test]
async fn closing_sends_stranded_requests_back_to_pending() {
    let fs = FileStore::new().await;
    submitted(&fs, 3).await;
    fs.store
        .record_outcomes("r-b0001", &[done(0, 1, ResultStatus::Succeeded, 0.1)])
        .await
        .unwrap();
    fs.store
        .close_batch("r-b0001", BatchState::Collected)
        .await
        .unwrap();
    let (counts, _, _, requests, _) = snapshot(&fs).await;
    assert_eq!((counts.succeeded, counts.pending), (1, 2));
    assert_eq!(requests[1], (1, 0, None));
    assert_eq!(
        fs.store
            .pending_requests(
                "r",
                &group(ProviderKind::Anthropic, "claude-haiku-4-5"),
                None,
                10
            )
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn reads_cross_page_boundaries() {
    // batch_items and results read in pages of 5 000; a batch and a result set larger than
    // two pages come back whole and in order, and `limit` is honoured across pages.
    let fs = FileStore::new().await;
    let n = 12_003;
    submitted(&fs, n).await;
    let items = fs.store.batch_items("r-b0001").await.unwrap();
    assert_eq!(items.len() as u64, n);
    assert!(
        items
            .iter()
            .enumerate()
            .all(|(i, item)| item.seq == i as u64)
    );
    assert_eq!(items[11_000].custom_id, "c-11000");
    let outcomes: Vec<Outcome> = (0..n)
        .map(|s| done(s, 1, ResultStatus::Succeeded, 0.0))
        .collect();
    fs.store
        .record_outcomes("r-b0001", &outcomes)
        .await
        .unwrap();
    let first = fs.store.results("r", None, 7_000).await.unwrap();
    assert_eq!(first.len(), 7_000);
    assert_eq!(first.last().unwrap().0, 6_999);
    let rest = fs.store.results("r", Some(6_999), u64::MAX).await.unwrap();
    assert_eq!(rest.len() as u64, n - 7_000);
    assert!(
        rest.iter()
            .zip(7_000..)
            .all(|((seq, _), want)| *seq == want)
    );
    assert_eq!(rest[0].1, r#"{"id":"q-7000","status":"succeeded"}"#);
    assert!(fs.store.results("r", Some(n), 10).await.unwrap().is_empty());
    assert!(fs.store.results("r", None, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn result_lines_come_back_byte_for_byte() {
    let fs = FileStore::new().await;
    submitted(&fs, 3).await;
    let lines = [
        r#"{"id":"q-0","text":"ünïcödé — 日本語 🎉"}"#,
        "{\"id\":\"q-1\",\"text\":\"two  spaces 12 34\\nescaped\"}",
        "{}",
    ];
    let outcomes: Vec<Outcome> = lines
        .iter()
        .enumerate()
        .map(|(seq, line)| Outcome::Final {
            seq: seq as u64,
            attempt: 1,
            status: ResultStatus::Succeeded,
            cost_usd: 0.0,
            line: (*line).to_owned(),
        })
        .collect();
    fs.store
        .record_outcomes("r-b0001", &outcomes)
        .await
        .unwrap();
    let results = fs.store.results("r", None, 10).await.unwrap();
    assert_eq!(
        results,
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64, (*l).to_owned()))
            .collect::<Vec<_>>()
    );
}
