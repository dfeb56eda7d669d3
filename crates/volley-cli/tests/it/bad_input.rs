use crate::support::*;

async fn rejected(lines: &str, expect: &[&str]) {
    let sim = sim(10).await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, lines).unwrap();
    let mut cmd = volley_at(dir.path(), &sim);
    cmd.arg("run").arg(&input);
    let out = output(cmd).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in expect {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
    assert!(err.contains("nothing was submitted"), "{err}");
    assert_eq!(sim.stats().calls, 0, "no call reached the provider");
    let mut list = volley(dir.path());
    list.args(["list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&output(list).await.stdout).unwrap();
    assert_eq!(
        listed["runs"].as_array().unwrap().len(),
        0,
        "no run was stored"
    );
}

const GOOD: &str = "{\"id\":\"a\",\"model\":\"claude-haiku-4-5\",\"prompt\":\"hi\"}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_line() {
    rejected(
        &format!("{GOOD}{{\"id\":\"b\",\"prompt\":\"x\"\n"),
        &["line 2", "EOF"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_field_type() {
    rejected(
        &format!("{GOOD}{{\"id\":\"b\",\"model\":\"claude-haiku-4-5\",\"prompt\":\"x\",\"max_tokens\":\"many\"}}\n"),
        &["line 2, field `max_tokens`"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id() {
    rejected(
        &format!("{GOOD}\n{GOOD}"),
        &["line 3, field `id`", "first used on line 1"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model() {
    rejected(
        "{\"id\":\"a\",\"model\":\"claude-haiku-45\",\"prompt\":\"hi\"}\n",
        &["line 1, field `model`", "did you mean `claude-haiku-4-5`"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_field_and_a_missing_file() {
    rejected(
        "{\"id\":\"a\",\"model\":\"claude-haiku-4-5\",\"prompt\":\"hi\",\"temprature\":0}\n{\"id\":\"b\",\"model\":\"claude-haiku-4-5\",\"prompt\":\"hi\",\"files\":[\"nope.pdf\"]}\n",
        &["line 1", "unknown field `temprature`", "line 2, field `files[0]`", "2 problem(s)"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = volley(dir.path());
    cmd.args(["run", "missing.jsonl", "--simulate"]);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.jsonl"), "{}", stderr(&out));
}
