use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use volley_sim::{SimConfig, Simulator};

pub(crate) fn volley_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_volley"))
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A `volley` command with a clean environment: no real keys leak into tests.
pub(crate) fn volley(dir: &Path) -> Command {
    let mut cmd = Command::new(volley_bin());
    cmd.current_dir(dir)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env_remove("GOOGLE_API_KEY")
        .env_remove("VOLLEY_STORE")
        .env("NO_COLOR", "1");
    cmd
}

/// The same, pointed at a standalone simulator through the SDK variables.
pub(crate) fn volley_at(dir: &Path, sim: &Simulator) -> Command {
    let mut cmd = volley(dir);
    cmd.env("ANTHROPIC_BASE_URL", sim.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test-key");
    cmd
}

pub(crate) async fn sim(processing_ms: u64) -> Simulator {
    Simulator::spawn(SimConfig {
        processing: Duration::from_millis(processing_ms),
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

/// Runs a command on a blocking thread so the in-process simulator keeps serving.
pub(crate) async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("volley runs"))
        .await
        .expect("the command thread")
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `n` requests on claude-haiku-4-5, ids `q-0000`….
pub(crate) fn write_input(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("input.jsonl");
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "{{\"id\":\"q-{i:04}\",\"model\":\"claude-haiku-4-5\",\"prompt\":\"Classify headline {i}\",\"max_tokens\":32}}\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The ids of a JSONL file, in order.
pub(crate) fn ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The run id printed on stderr.
pub(crate) fn run_id_in(stderr: &str) -> String {
    stderr
        .split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .expect("a run id on stderr")
        // "resuming run ID: it already completed …"
        .trim_end_matches(':')
        .to_owned()
}

/// A running `volley` whose stderr is being read.
pub(crate) struct Started {
    pub(crate) child: std::process::Child,
    pub(crate) run_id: String,
    pub(crate) rest: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
}

/// Spawns `cmd` with stderr piped and reads until `batches` batches were submitted. Blocking:
/// call it from `spawn_blocking` so an in-process simulator keeps serving.
pub(crate) fn start_until_submitted(mut cmd: Command, batches: usize) -> Started {
    use std::io::BufRead;
    cmd.stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("volley starts");
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut run_id = None;
    let mut submitted = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("run ") {
            run_id = Some(run_id_in(&line));
        }
        if line.trim_start().starts_with("submitted") {
            submitted += 1;
            if submitted == batches {
                break;
            }
        }
    }
    Started {
        child,
        run_id: run_id.expect("the run id is printed"),
        rest: lines,
    }
}

/// Starts `cmd`, sends it SIGINT once `batches` batches are submitted, and reads the rest of its
/// stderr: the run id, the exit code and that stderr.
pub(crate) async fn interrupt_when_submitted(
    cmd: Command,
    batches: usize,
) -> (String, Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let mut started = start_until_submitted(cmd, batches);
        let pid = started.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let rest: Vec<String> = started.rest.map_while(Result::ok).collect();
        let status = started.child.wait().unwrap();
        (started.run_id, status.code(), rest.join("\n"))
    })
    .await
    .unwrap()
}
