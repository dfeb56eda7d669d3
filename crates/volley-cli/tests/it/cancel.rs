//! `volley cancel RUN` and `--cancel-on-exit`, through real processes against the simulator.
// The figures of the first test are printed for the record.
#![allow(clippy::print_stderr)]
use std::path::Path;

use crate::support::*;

/// Result statuses of a results file, by id.
fn statuses(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_owned(),
                v["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn count(statuses: &[(String, String)], status: &str) -> usize {
    statuses.iter().filter(|(_, s)| s == status).count()
}

/// 200 requests in batches of 20, at most 4 at the provider at once: 4 are submitted (the
/// simulator takes 5 s each); the other 120 requests are planned a few batches at a time, so
/// some are in planned batches and the rest pending when the run is killed.
fn run_cmd(dir: &Path, sim: &volley_sim::Simulator, input: &Path) -> std::process::Command {
    let mut cmd = volley_at(dir, sim);
    cmd.arg("run").arg(input).args([
        "--max-batch-requests",
        "20",
        "--max-concurrent-batches",
        "4",
        "--poll-interval",
        "50",
        "--out",
        "out",
    ]);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_after_a_crash_cancels_remote_batches_and_closes_the_rest_unsubmitted() {
    let sim = sim(5_000).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 200);
    let cmd = run_cmd(dir.path(), &sim, &input);
    let run_id = tokio::task::spawn_blocking(move || {
        let mut started = start_until_submitted(cmd, 4);
        started.child.kill().unwrap();
        started.child.wait().unwrap();
        started.run_id
    })
    .await
    .unwrap();
    assert_eq!(sim.stats().batches_created, 4);

    let mut cancel = volley_at(dir.path(), &sim);
    cancel.args(["cancel", &run_id, "--poll-interval", "50", "--json"]);
    let out = output(cancel).await;
    let err = stderr(&out);
    // DESIGN.md §3.3: a run that ends with canceled requests exits 2.
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("4 batch(es) canceled at the provider, ") && err.contains(" never submitted"),
        "{err}"
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["status"], "canceled");
    assert_eq!(status["counts"]["pending"], 0);

    let results = dir.path().join("out/results.jsonl");
    assert_eq!(ids(&results), ids(&input), "one line per request, in order");
    let lines = statuses(&results);
    let (succeeded, canceled) = (count(&lines, "succeeded"), count(&lines, "canceled"));
    assert_eq!(succeeded + canceled, 200, "{lines:?}");
    // The 120 requests not in the 4 submitted batches were never sent.
    assert!(canceled >= 120, "{canceled} canceled");
    let stats = sim.stats();
    assert_eq!(stats.batches_canceled, 4, "{stats:?}");
    assert_eq!(
        (
            stats.batches_created,
            stats.requests_submitted,
            stats.duplicate_submissions
        ),
        (4, 80, 0),
        "nothing submitted after the cancel, nothing twice"
    );
    eprintln!(
        "cancel: {succeeded} answered before the cancel, {canceled} canceled; simulator {stats:?}"
    );

    // Cancelling again changes nothing and calls no cancel.
    let mut again = volley_at(dir.path(), &sim);
    again.args(["cancel", &run_id]);
    let out = output(again).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(statuses(&results), lines);
    let after = sim.stats();
    assert_eq!(
        (after.batches_canceled, after.batches_created),
        (4, 4),
        "{after:?}"
    );

    // Resuming a canceled run submits nothing either.
    let mut resume = volley_at(dir.path(), &sim);
    resume.args(["resume", &run_id, "--poll-interval", "50"]);
    let out = output(resume).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(sim.stats().batches_created, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_on_exit_cancels_remote_batches_on_the_first_sigint() {
    let sim = sim(5_000).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 200);
    let mut cmd = run_cmd(dir.path(), &sim, &input);
    cmd.arg("--cancel-on-exit");
    let (run_id, code, rest) = interrupt_when_submitted(cmd, 4).await;
    assert_eq!(code, Some(130), "{rest}");
    assert!(rest.contains("--cancel-on-exit"), "{rest}");
    assert!(
        rest.contains(&format!(
            "run {run_id} canceled: 4 batch(es) canceled at the provider"
        )),
        "{rest}"
    );
    let results = dir.path().join("out/results.jsonl");
    assert_eq!(ids(&results), ids(&input));
    let lines = statuses(&results);
    assert!(count(&lines, "canceled") >= 120, "{lines:?}");
    let stats = sim.stats();
    assert_eq!(stats.batches_canceled, 4, "{stats:?}");
    assert_eq!((stats.batches_created, stats.duplicate_submissions), (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_another_terminal_stops_a_running_volley() {
    let sim = sim(5_000).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 200);
    let cmd = run_cmd(dir.path(), &sim, &input);
    let path = dir.path().to_owned();
    let base = sim.base_url();
    let (code, rest, cancel_code) = tokio::task::spawn_blocking(move || {
        let started = start_until_submitted(cmd, 4);
        let mut cancel = volley(&path);
        cancel
            .env("ANTHROPIC_BASE_URL", base)
            .env("ANTHROPIC_API_KEY", "sk-test-key")
            .args(["cancel", &started.run_id, "--poll-interval", "50"]);
        let cancel_out = cancel.output().unwrap();
        let mut child = started.child;
        let rest: Vec<String> = started.rest.map_while(Result::ok).collect();
        let status = child.wait().unwrap();
        (
            status.code(),
            rest.join("\n"),
            (cancel_out.status.code(), stderr(&cancel_out)),
        )
    })
    .await
    .unwrap();
    assert_eq!(cancel_code.0, Some(2), "{}", cancel_code.1);
    // The running process noticed, stopped submitting, and ended canceled too.
    assert_eq!(code, Some(2), "{rest}");
    assert!(rest.contains("the run was canceled"), "{rest}");
    assert_eq!(ids(&dir.path().join("out/results.jsonl")), ids(&input));
    let stats = sim.stats();
    assert_eq!(
        (stats.batches_created, stats.duplicate_submissions),
        (4, 0),
        "{stats:?}"
    );
    assert_eq!(stats.batches_canceled, 4, "{stats:?}");
}
