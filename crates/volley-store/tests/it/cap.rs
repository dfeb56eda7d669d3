//! The cost cap in the store: reservations taken with the submit intent, released on abort and
//! close, refused when they do not fit, and batches shrunk to a budget.
use volley_core::StoreError;
use volley_core::store::{Admission, Store};
use volley_types::{BatchState, ProviderKind, ResultStatus};

use crate::common::{FileStore, at, done, group, imported_run, new_batch};

/// Every request's worst case in the common fixtures.
const WORST: f64 = 0.001;

fn close_to(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

async fn ledger(fs: &FileStore) -> Vec<(String, f64)> {
    let mut conn = fs.raw().await;
    sqlx::query_as("SELECT kind, amount_usd FROM ledger ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Run `r` with 10 requests in two planned batches of 5.
async fn two_batches(fs: &FileStore) {
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    imported_run(&fs.store, "r", 10, std::slice::from_ref(&haiku)).await;
    for (n, first) in [(1, 0), (2, 5)] {
        fs.store
            .create_batch(&new_batch("r", n, &haiku, first, first + 4))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_admitted_batch_reserves_its_worst_case_until_it_closes() {
    let fs = FileStore::new().await;
    two_batches(&fs).await;
    let admitted = fs
        .store
        .begin_submit("r-b0001", at("2026-03-01T10:00:00Z"), Some(1.0))
        .await
        .unwrap();
    assert_eq!(admitted, Admission::Admitted);
    assert!(close_to(
        fs.store.reserved_usd("r").await.unwrap(),
        5.0 * WORST
    ));
    fs.store
        .confirm_submit("r-b0001", "msgbatch_1", "in_progress")
        .await
        .unwrap();
    let outcomes: Vec<_> = (0..5)
        .map(|s| done(s, 1, ResultStatus::Succeeded, 0.0002))
        .collect();
    fs.store
        .record_outcomes("r-b0001", &outcomes)
        .await
        .unwrap();
    // Still reserved until the batch closes; then the actual cost replaces it.
    assert!(close_to(
        fs.store.reserved_usd("r").await.unwrap(),
        5.0 * WORST
    ));
    fs.store
        .close_batch("r-b0001", BatchState::Collected)
        .await
        .unwrap();
    assert!(close_to(fs.store.reserved_usd("r").await.unwrap(), 0.0));
    let kinds: Vec<String> = ledger(&fs).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["reserve", "release", "actual"]);
    let booked = ledger(&fs).await;
    assert!(close_to(booked[0].1, 5.0 * WORST) && close_to(booked[1].1, 5.0 * WORST));
    assert!(close_to(booked[2].1, 0.001));
    // Closing again releases nothing more.
    fs.store
        .close_batch("r-b0001", BatchState::Collected)
        .await
        .unwrap();
    assert_eq!(ledger(&fs).await.len(), 3);
}

#[tokio::test]
async fn a_batch_that_does_not_fit_is_refused_and_nothing_is_written() {
    let fs = FileStore::new().await;
    two_batches(&fs).await;
    // The first batch takes 0.005 of a 0.008 cap; the second needs 0.005 and gets 0.003.
    assert_eq!(
        fs.store
            .begin_submit("r-b0001", at("2026-03-01T10:00:00Z"), Some(0.008))
            .await
            .unwrap(),
        Admission::Admitted
    );
    match fs
        .store
        .begin_submit("r-b0002", at("2026-03-01T10:00:01Z"), Some(0.008))
        .await
        .unwrap()
    {
        Admission::NoRoom {
            available_usd,
            needed_usd,
        } => {
            assert!(close_to(available_usd, 0.003), "{available_usd}");
            assert!(close_to(needed_usd, 0.005), "{needed_usd}");
        }
        other => panic!("expected NoRoom, got {other:?}"),
    }
    let b2 = fs.store.batches("r").await.unwrap().remove(1);
    assert_eq!(b2.state, BatchState::Planned);
    assert_eq!(b2.submit_started_at, None);
    assert_eq!(fs.count("SELECT COUNT(*) FROM intents").await, 1);
    assert_eq!(ledger(&fs).await.len(), 1);

    // Aborting the first releases its reservation, and the second then fits.
    fs.store.abort_submit("r-b0001").await.unwrap();
    assert!(close_to(fs.store.reserved_usd("r").await.unwrap(), 0.0));
    assert_eq!(
        fs.store
            .begin_submit("r-b0002", at("2026-03-01T10:00:02Z"), Some(0.008))
            .await
            .unwrap(),
        Admission::Admitted
    );
    // Without a cap everything is admitted, and still reserved.
    assert_eq!(
        fs.store
            .begin_submit("r-b0001", at("2026-03-01T10:00:03Z"), None)
            .await
            .unwrap(),
        Admission::Admitted
    );
    assert!(close_to(fs.store.reserved_usd("r").await.unwrap(), 0.010));
}

#[tokio::test]
async fn actual_costs_count_against_the_cap() {
    let fs = FileStore::new().await;
    two_batches(&fs).await;
    fs.store
        .begin_submit("r-b0001", at("2026-03-01T10:00:00Z"), Some(0.01))
        .await
        .unwrap();
    fs.store
        .confirm_submit("r-b0001", "msgbatch_1", "in_progress")
        .await
        .unwrap();
    let outcomes: Vec<_> = (0..5)
        .map(|s| done(s, 1, ResultStatus::Succeeded, 0.0012))
        .collect();
    fs.store
        .record_outcomes("r-b0001", &outcomes)
        .await
        .unwrap();
    fs.store
        .close_batch("r-b0001", BatchState::Collected)
        .await
        .unwrap();
    // 0.006 spent of 0.01: the second batch's 0.005 does not fit.
    assert!(matches!(
        fs.store
            .begin_submit("r-b0002", at("2026-03-01T10:01:00Z"), Some(0.01))
            .await
            .unwrap(),
        Admission::NoRoom { .. }
    ));
}

#[tokio::test]
async fn shrink_keeps_the_prefix_that_fits() {
    let fs = FileStore::new().await;
    two_batches(&fs).await;
    let haiku = group(ProviderKind::Anthropic, "claude-haiku-4-5");
    // A batch holds its requests' estimated tokens (10 + seq each in the fixtures).
    let tokens: Vec<u64> = fs
        .store
        .batches("r")
        .await
        .unwrap()
        .iter()
        .map(|b| b.est_input_tokens)
        .collect();
    assert_eq!(tokens, [60, 85]);
    // Room for three requests of the first batch.
    assert_eq!(
        fs.store.shrink_batch("r-b0001", 3.5 * WORST).await.unwrap(),
        3
    );
    let b1 = fs.store.batches("r").await.unwrap().remove(0);
    assert_eq!((b1.request_count, b1.est_input_tokens), (3, 10 + 11 + 12));
    let items: Vec<u64> = fs
        .store
        .batch_items("r-b0001")
        .await
        .unwrap()
        .iter()
        .map(|i| i.seq)
        .collect();
    assert_eq!(items, [0, 1, 2]);
    let pending: Vec<u64> = fs
        .store
        .pending_requests("r", &haiku, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    assert_eq!(pending, [3, 4]);
    fs.check_counts("r").await;

    // Not even one fits: nothing changes.
    assert_eq!(
        fs.store.shrink_batch("r-b0002", 0.5 * WORST).await.unwrap(),
        0
    );
    assert_eq!(fs.store.batch_items("r-b0002").await.unwrap().len(), 5);
    // A batch that fits whole keeps everything.
    assert_eq!(fs.store.shrink_batch("r-b0002", 1.0).await.unwrap(), 5);

    // Only planned batches shrink.
    fs.store
        .begin_submit("r-b0001", at("2026-03-01T10:00:00Z"), None)
        .await
        .unwrap();
    let err = fs.store.shrink_batch("r-b0001", 1.0).await.unwrap_err();
    assert!(matches!(err, StoreError::Database { .. }), "{err}");
    assert!(matches!(
        fs.store.shrink_batch("nope", 1.0).await,
        Err(StoreError::NotFound(_))
    ));
}
