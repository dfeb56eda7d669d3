//! Chaos: a real `volley` process on 5,000 requests against a faulty simulator, killed with
//! SIGKILL at random moments at least 30 times and restarted each time. At the end every
//! request has exactly one result line and the simulator saw no request twice.
// The seed and the simulator's counts are printed so a failure can be replayed and the
// figures quoted.
#![allow(clippy::print_stderr)]
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use volley_sim::{SimConfig, Simulator};

use crate::support::*;

const REQUESTS: usize = 5_000;
const KILLS: usize = 30;
/// For `run` and `resume` alike: batches of 100, fast polls, and few batches at the simulator
/// at once, so the 50 batches of 2 s need at least 25 s and the run cannot complete while it
/// is still being killed (a completed run makes every later `volley run` exit by itself, and
/// kills nothing); and 2 s for a killed create to land instead of 60 (the simulator acts on a
/// create within milliseconds).
const DRIVE: [&str; 8] = [
    "--max-batch-requests",
    "100",
    "--poll-interval",
    "20",
    "--max-concurrent-batches",
    "4",
    "--create-grace",
    "2",
];

/// Starts `cmd`, reads `lines` lines of its stderr (0: none), waits `delay`, then SIGKILLs it.
/// Returns the lines read and the exit code if the process had already exited by itself.
///
/// The delay is not a wait for a condition: choosing a random moment to kill is the point of
/// the test, and it is bounded (at most 400 ms a kill).
fn kill_after(mut cmd: Command, lines: usize, delay: Duration) -> (Vec<String>, Option<i32>) {
    cmd.stderr(Stdio::piped()).stdout(Stdio::null());
    let mut child = cmd.spawn().expect("volley starts");
    // Keep draining stderr so the process never writes into a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while seen.len() < lines {
        match rx.recv() {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    std::thread::sleep(delay);
    let _ = child.kill();
    let status = child.wait().unwrap();
    // The process is gone: its pipe closes and the drain thread ends; keep everything it said.
    seen.extend(rx.iter());
    (seen, status.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_sigkills_lose_nothing_and_submit_nothing_twice() {
    let seed: u64 = std::env::var("VOLLEY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261123);
    eprintln!("chaos seed {seed} (set VOLLEY_CHAOS_SEED to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let sim = Simulator::spawn(SimConfig {
        processing: Duration::from_millis(2_000),
        rate_limit_every: Some(7),
        server_error_every: Some(11),
        retry_after: Duration::from_millis(5),
        seed,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), REQUESTS);
    let run_cmd = |dir: &std::path::Path| {
        let mut cmd = volley_at(dir, &sim);
        cmd.arg("run").arg(&input).args(["--out", "out"]);
        cmd.args(DRIVE);
        cmd
    };

    let mut kills = 0;
    let mut finished_early = 0;
    let mut transcript: Vec<String> = Vec::new();
    let mut run_id: Option<String> = None;
    while kills < KILLS {
        // Mostly `volley run` again (it resumes the unfinished run of the same input), and
        // `volley resume RUN` once the run id is known.
        let cmd = match &run_id {
            Some(id) if rng.bool() => {
                let mut cmd = volley_at(dir.path(), &sim);
                cmd.args(["resume", id]).args(DRIVE);
                cmd
            }
            _ => run_cmd(dir.path()),
        };
        // Kill before the first line (import, store opening) about one time in four;
        // otherwise at a random moment up to 400 ms after it.
        let lines = usize::from(rng.u8(0..4) > 0);
        let delay = Duration::from_millis(rng.u64(0..400));
        let (seen, code) = tokio::task::spawn_blocking(move || kill_after(cmd, lines, delay))
            .await
            .unwrap();
        for line in &seen {
            if line.starts_with("run ") || line.starts_with("resuming run ") {
                run_id = Some(run_id_in(line.trim_start_matches("resuming ")));
            }
        }
        transcript.push(format!(
            "--- process {} ({lines} line(s), then {delay:?}, exit {code:?})",
            transcript.len()
        ));
        transcript.extend(seen.iter().cloned());
        if code.is_some() {
            // It exited before the kill (finished, or failed): that is not a kill.
            finished_early += 1;
            assert!(
                finished_early < 10,
                "volley keeps exiting by itself: {seen:?}"
            );
            continue;
        }
        kills += 1;
    }

    let out = output(run_cmd(dir.path())).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let results = dir.path().join("out/results.jsonl");
    assert_eq!(
        ids(&results),
        ids(&input),
        "exactly one line per request, in input order"
    );
    let stats = sim.stats();
    eprintln!("after {kills} SIGKILLs: {stats:?}");
    if stats.duplicate_submissions > 0 || std::env::var_os("VOLLEY_CHAOS_TRANSCRIPT").is_some() {
        eprintln!("{}\n--- final run\n{err}", transcript.join("\n"));
    }
    assert_eq!(stats.duplicate_submissions, 0, "{stats:?}");
    assert_eq!(stats.requests_submitted, REQUESTS as u64, "{stats:?}");
    assert!(stats.faults_injected > 0);
}
