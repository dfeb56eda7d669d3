//! `kill -9` while batches are being polled, then `volley resume`.
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_polling_then_resume_submits_nothing_twice() {
    // Batches take 1.5 s at the simulator, so the process is certainly polling when killed.
    let sim = sim(1_500).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 300);

    let mut cmd = volley_at(dir.path(), &sim);
    cmd.arg("run").arg(&input).args([
        "--max-batch-requests",
        "40",
        "--out",
        "out",
        "--poll-interval",
        "50",
    ]);
    let (run_id, status) = tokio::task::spawn_blocking(move || {
        let mut started = start_until_submitted(cmd, 8);
        // SIGKILL: no chance to save anything beyond what is already stored.
        started.child.kill().unwrap();
        (started.run_id, started.child.wait().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    let before = sim.stats();
    assert_eq!(before.batches_created, 8);

    let mut resume = volley_at(dir.path(), &sim);
    resume.args(["resume", &run_id, "--poll-interval", "50"]);
    let out = output(resume).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");

    let results = dir.path().join("out/results.jsonl");
    assert_eq!(
        ids(&results),
        ids(&input),
        "exactly one line per request, in input order"
    );
    let stats = sim.stats();
    assert_eq!(stats.duplicate_submissions, 0, "{stats:?}");
    assert_eq!(stats.requests_submitted, 300);
    assert_eq!(stats.batches_created, 8);
}
