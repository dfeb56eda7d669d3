//! The hard cost cap: never exceeded, reservations released, what cannot fit is skipped.
use std::io::Write;

use proptest::prelude::*;
use serde_json::json;
use volley::{CancellationToken, ResultStatus, RunEnd, RunSpec, Volley};

use crate::support::{FAST_POLL, sim};

/// A catalog with one model at the given list prices (USD per million tokens).
fn catalog_with(input: f64, output: f64) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "[[models]]\nid = \"test-model\"\nprovider = \"anthropic\"\ninput = {input}\noutput = {output}\ncache_read = {}\ncache_write = {}\ncontext_window = 200000\nmax_output = 4096\n",
        input / 10.0,
        input * 1.25
    )
    .unwrap();
    file
}

async fn capped_run(
    prompts: &[(String, u32)],
    prices: (f64, f64),
    cap: f64,
    max_batch: u64,
) -> (Volley, String, RunEnd) {
    let catalog = catalog_with(prices.0, prices.1);
    let volley = Volley::builder()
        .simulate(sim(5))
        .memory_store()
        .catalog_file(catalog.path())
        .poll_policy(FAST_POLL)
        .max_batch_requests(max_batch)
        .build()
        .await
        .unwrap();
    let mut builder = volley.new_run(RunSpec::default().model("test-model").max_cost_usd(cap));
    for (i, (prompt, max_tokens)) in prompts.iter().enumerate() {
        builder = builder
            .request(json!({"id": format!("r{i}"), "prompt": prompt, "max_tokens": max_tokens}));
    }
    let run = builder.start().await.unwrap().run.id;
    let end = volley.drive(&run, CancellationToken::new()).await.unwrap();
    (volley, run, end)
}

#[tokio::test]
async fn a_tight_cap_skips_what_cannot_fit_and_is_never_exceeded() {
    let prompts: Vec<(String, u32)> = (0..30)
        .map(|i| (format!("Summarise report {i} in detail"), 50))
        .collect();
    // $10 / $50 per MTok: each request's worst case is about $0.002 at batch prices and its
    // actual cost about half that, so a $0.01 cap runs some requests and skips the rest.
    let (volley, run, end) = capped_run(&prompts, (10.0, 50.0), 0.01, 4).await;
    let RunEnd::Completed { counts, cost_usd } = end else {
        panic!("{end:?}")
    };
    assert!(cost_usd <= 0.01, "spent {cost_usd}");
    assert!(counts.skipped > 0 && counts.succeeded > 0, "{counts:?}");
    assert_eq!(counts.succeeded + counts.skipped, 30);
    let status = volley.status(&run).await.unwrap();
    assert_eq!(status.reserved_usd, 0.0, "every reservation released");
    assert_eq!(status.max_cost_usd, Some(0.01));
    for line in volley.results(&run).await.unwrap() {
        if line.status == ResultStatus::Skipped {
            assert_eq!(line.error.unwrap().kind, volley::ErrorKind::CostCap);
            assert_eq!((line.attempts, line.cost_usd), (0, 0.0));
        }
    }
    let stats = volley.simulator().unwrap().stats();
    assert_eq!(
        stats.requests_submitted, counts.succeeded,
        "skipped requests were never sent"
    );
}

#[tokio::test]
async fn a_cap_for_an_unpriced_model_is_refused() {
    let volley = Volley::builder()
        .simulate(sim(5))
        .memory_store()
        .build()
        .await
        .unwrap();
    let err = volley
        .new_run(
            RunSpec::default()
                .model("anthropic/unpriced-model")
                .max_cost_usd(1.0),
        )
        .prompt("a", "hi")
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no price"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_cap_is_never_exceeded_and_reservations_are_released(
        prompts in proptest::collection::vec(("[a-z][a-z ]{0,399}", 1u32..800), 1..40),
        input_price in 0.1f64..20.0,
        output_price in 0.1f64..80.0,
        cap_share in 0.0f64..1.2,
        max_batch in 1u64..12,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            // The cap is a share of the typical cost, so some runs fit and some do not.
            let typical: f64 = prompts
                .iter()
                .map(|(p, m)| (p.len() as f64 / 4.0 * input_price + f64::from(*m) * output_price) / 2e6)
                .sum();
            let cap = typical * cap_share;
            let (volley, run, end) = capped_run(&prompts, (input_price, output_price), cap, max_batch).await;
            let RunEnd::Completed { counts, cost_usd } = end else { panic!("{end:?}") };
            prop_assert!(cost_usd <= cap + 1e-12, "spent {} over a cap of {}", cost_usd, cap);
            prop_assert_eq!(counts.pending, 0);
            prop_assert_eq!(counts.succeeded + counts.skipped, prompts.len() as u64);
            let status = volley.status(&run).await.unwrap();
            prop_assert_eq!(status.reserved_usd, 0.0);
            let sum: f64 = volley.results(&run).await.unwrap().iter().map(|l| l.cost_usd).sum();
            prop_assert!((sum - cost_usd).abs() < 1e-9);
            Ok(())
        })?;
    }
}
