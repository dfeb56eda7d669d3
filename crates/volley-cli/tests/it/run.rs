use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_with_simulate_writes_every_result_and_a_cost_summary() {
    let dir = tempfile::tempdir().unwrap();
    let input = workspace_root().join("examples/quickstart.jsonl");
    let mut cmd = volley(dir.path());
    cmd.args(["run"])
        .arg(&input)
        .args(["--simulate", "--sim-processing-ms", "50", "--out", "out"]);
    let out = output(cmd).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let results = dir.path().join("out/results.jsonl");
    assert_eq!(ids(&results), ids(&input));
    assert!(
        err.contains("at batch prices") && err.contains("saved"),
        "{err}"
    );
    for line in std::fs::read_to_string(&results).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["status"], "succeeded", "{line}");
        assert!(v["cost_usd"].as_f64().unwrap() > 0.0);
    }
    assert!(
        dir.path().join(".volley/volley.db").exists(),
        "the default store is in the current folder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_network_path_through_env_variables() {
    let sim = sim(50).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 30);
    let mut cmd = volley_at(dir.path(), &sim);
    cmd.arg("run").arg(&input).args([
        "--json",
        "--max-batch-requests",
        "10",
        "--poll-interval",
        "20",
    ]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON on stdout");
    assert_eq!(status["status"], "completed");
    assert_eq!(status["counts"]["succeeded"], 30);
    assert_eq!(status["batches"].as_array().unwrap().len(), 3);
    for key in [
        "id",
        "created_at",
        "input",
        "out",
        "cost_usd",
        "reserved_usd",
        "max_cost_usd",
    ] {
        assert!(status.get(key).is_some(), "status object has {key}");
    }
    let stats = sim.stats();
    assert_eq!((stats.batches_created, stats.requests_submitted), (3, 30));

    // The read-only commands see the same run.
    let id = status["id"].as_str().unwrap().to_owned();
    let mut list = volley(dir.path());
    list.args(["list", "--json"]);
    let listed: Value = serde_json::from_slice(&output(list).await.stdout).unwrap();
    assert_eq!(listed["runs"][0]["id"], id.as_str());
    let mut results = volley(dir.path());
    results.args(["results", &id[..12]]);
    let printed = output(results).await;
    assert_eq!(String::from_utf8_lossy(&printed.stdout).lines().count(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_items_exit_2() {
    let sim = volley_sim::Simulator::spawn(volley_sim::SimConfig {
        processing: std::time::Duration::from_millis(10),
        expired_rate: 1.0,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 3);
    let mut cmd = volley_at(dir.path(), &sim);
    cmd.arg("run")
        .arg(&input)
        .args(["--max-attempts", "1", "--poll-interval", "20"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 2);
    let mut cmd = volley(dir.path());
    cmd.arg("run").arg(&input);
    let out = output(cmd).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("ANTHROPIC_API_KEY") && err.contains("--simulate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = volley(dir.path());
    cmd.args(["models", "--json"]);
    let out = output(cmd).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    assert!(
        models
            .iter()
            .any(|m| m["id"] == "claude-haiku-4-5" && m["provider"] == "anthropic")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_and_dry_run_need_no_keys_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = workspace_root().join("examples/quickstart.jsonl");
    for args in [
        vec!["estimate", "--json"],
        vec!["run", "--dry-run", "--json"],
    ] {
        let mut cmd = volley(dir.path());
        cmd.args(&args[..1]).arg(&input).args(&args[1..]);
        let out = output(cmd).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let e: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(e["requests"], 330);
        assert_eq!(e["total"]["requests"], 330);
        let batch = e["total"]["cost_batch_usd"].as_f64().unwrap();
        let realtime = e["total"]["cost_realtime_usd"].as_f64().unwrap();
        let worst = e["total"]["worst_case_usd"].as_f64().unwrap();
        assert!(
            (realtime - 2.0 * batch).abs() < 1e-9,
            "batch is half of real time"
        );
        assert!(worst > 0.0 && e["total"]["batches"].as_u64().unwrap() >= 2);
    }
    assert!(!dir.path().join(".volley").exists(), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_cap_skips_what_cannot_fit_and_exits_3() {
    let sim = sim(10).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 40);
    let mut cmd = volley_at(dir.path(), &sim);
    // 40 requests cost about $0.0005 in all on claude-haiku-4-5; a $0.0003 cap fits some.
    cmd.arg("run").arg(&input).args([
        "--max-cost-usd",
        "0.0003",
        "--max-batch-requests",
        "5",
        "--poll-interval",
        "20",
        "--json",
    ]);
    let out = output(cmd).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status["cost_usd"].as_f64().unwrap() <= 0.0003);
    assert!(status["counts"]["skipped"].as_u64().unwrap() > 0);
    assert_eq!(status["reserved_usd"], 0.0);
    assert_eq!(status["max_cost_usd"], 0.0003);
    assert!(err.contains("skipped"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_a_completed_input_again_pays_nothing_unless_fresh() {
    let sim = sim(10).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 12);
    let run = |extra: &'static [&'static str]| {
        let mut cmd = volley_at(dir.path(), &sim);
        cmd.arg("run")
            .arg(&input)
            .args(["--poll-interval", "20", "--out", "out"])
            .args(extra);
        cmd
    };
    assert_eq!(output(run(&[])).await.status.code(), Some(0));
    let again = output(run(&[])).await;
    assert_eq!(again.status.code(), Some(0));
    assert!(
        stderr(&again).contains("nothing is submitted again"),
        "{}",
        stderr(&again)
    );
    assert_eq!(sim.stats().requests_submitted, 12);
    assert_eq!(ids(&dir.path().join("out/results.jsonl")), ids(&input));
    let fresh = output(run(&["--fresh"])).await;
    assert_eq!(fresh.status.code(), Some(0));
    assert_eq!(sim.stats().requests_submitted, 24, "--fresh runs it again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_profiles_are_checked_by_estimate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = workspace_root().join("examples/quickstart.jsonl");
    let mut ok = volley(dir.path());
    ok.arg("estimate")
        .arg(&input)
        .args(["--openai-profile", "groq", "--json"]);
    assert_eq!(output(ok).await.status.code(), Some(0));
    for extra in [&["estimate"][..], &["run", "--simulate"][..]] {
        let mut bad = volley(dir.path());
        bad.arg(extra[0])
            .arg(&input)
            .args(&extra[1..])
            .args(["--openai-profile", "nope"]);
        let out = output(bad).await;
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert!(stderr(&out).contains("`nope`"), "{}", stderr(&out));
    }
}
