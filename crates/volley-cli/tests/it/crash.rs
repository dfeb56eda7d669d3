//! `kill -9` while batches are being polled, then `volley resume`.
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_polling_then_resume_submits_nothing_twice() {
    // Batches take 1.5 s at the simulator, so the process is certainly polling when killed.
    let sim = sim(1_500).await;
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 300);

    let mut cmd = volley_at(dir.path(), &sim);
    cmd.arg("run")
        .arg(&input)
        .args([
            "--max-batch-requests",
            "40",
            "--out",
            "out",
            "--poll-interval",
            "50",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let (run_id, status) = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut run_id = None;
        let mut submitted = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.starts_with("run ") {
                run_id = Some(run_id_in(&line));
            }
            if line.trim_start().starts_with("submitted") {
                submitted += 1;
                if submitted == 8 {
                    break;
                }
            }
        }
        // SIGKILL: no chance to save anything beyond what is already stored.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        (run_id.expect("run id printed"), status)
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
