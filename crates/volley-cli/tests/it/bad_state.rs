//! A store volley cannot use: on a read-only file system, on a full disk, or written by a newer
//! volley. Each gives a clear error naming the store and what to do, exits 1, and leaves
//! nothing half-written.
//!
//! The tests run as root, where file modes do not stop writes, so the file systems are real:
//! a read-only bind mount and a 512 KiB tmpfs, each in a private mount namespace
//! (`unshare -m`), with `volley` exec'd inside it.
use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

/// `script` run by `shell` (e.g. `unshare -m sh -c`), with `$VOLLEY` naming the binary and
/// the clean environment of [`volley`].
fn shell(dir: &Path, shell: &[&str], script: &str) -> Command {
    let clean = volley(dir);
    let mut cmd = Command::new(shell[0]);
    cmd.args(&shell[1..])
        .arg(script)
        .current_dir(dir)
        .env("VOLLEY", volley_bin());
    for (key, value) in clean.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd
}

/// `script` run by `sh` in a private mount namespace.
fn in_namespace(dir: &Path, script: &str) -> Command {
    let probe = Command::new("unshare").args(["-m", "true"]).status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "these tests need `unshare -m` (root or CAP_SYS_ADMIN) to mount a read-only or full file system"
    );
    shell(dir, &["unshare", "-m", "sh", "-c"], script)
}

fn ok_run(dir: &Path, input: &Path, store: &str) -> Output {
    let out = volley(dir)
        .arg("run")
        .arg(input)
        .args([
            "--simulate",
            "--sim-processing-ms",
            "50",
            "--poll-interval",
            "20",
        ])
        .args(["--store", store, "--out", "out-ok"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

#[test]
fn a_store_on_a_read_only_file_system_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 20);
    ok_run(dir.path(), &input, "sqlite://state/v.db");
    let before = std::fs::read(dir.path().join("state/v.db")).unwrap();

    let script = "mount --bind state state && mount -o remount,ro,bind state && \
                  exec \"$VOLLEY\" run input.jsonl --simulate --fresh --store sqlite://state/v.db --out out-ro";
    let out = in_namespace(dir.path(), script).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needed in [
        "store sqlite://state/v.db",
        "Read-only file system",
        "point --store (VOLLEY_STORE) at a writable place",
    ] {
        assert!(err.contains(needed), "`{needed}` missing from:\n{err}");
    }
    assert!(!dir.path().join("out-ro").exists(), "nothing written");
    assert_eq!(
        std::fs::read(dir.path().join("state/v.db")).unwrap(),
        before
    );
}

#[test]
fn a_full_disk_stops_cleanly_and_the_store_is_usable_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    // About 1.5 MB of store: more than the 512 KiB disk holds.
    let input = write_input(dir.path(), 3_000);
    std::fs::create_dir(dir.path().join("disk")).unwrap();
    std::fs::create_dir(dir.path().join("saved")).unwrap();
    let script = "mount -t tmpfs -o size=512k tmpfs disk && \
                  \"$VOLLEY\" run input.jsonl --simulate --store sqlite://disk/v.db --out out-full; \
                  code=$?; cp disk/* saved/; exit $code";
    let out = in_namespace(dir.path(), script).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needed in [
        "store sqlite://disk/v.db",
        "database or disk is full",
        "free some space, or point --store (VOLLEY_STORE) at another disk",
    ] {
        assert!(err.contains(needed), "`{needed}` missing from:\n{err}");
    }
    assert!(!dir.path().join("out-full").exists(), "no results file");

    // The store left on the full disk is consistent: with room, the same command completes.
    let out = ok_run(dir.path(), &input, "sqlite://saved/v.db");
    assert_eq!(
        ids(&dir.path().join("out-ok/results.jsonl")),
        ids(&input),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_file_size_limit_mid_run_is_reported_as_a_write_failure() {
    // RLIMIT_FSIZE (with SIGXFSZ ignored): writes past 200 KiB fail with EFBIG, after the
    // store was created and the run started. 2,000 requests make the import's one
    // transaction alone longer than that (a smaller run now fits: its WAL is checkpointed and
    // started over while it runs).
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), 2_000);
    let script = "trap '' XFSZ; ulimit -f 200; \
                  exec \"$VOLLEY\" run input.jsonl --simulate --store sqlite://state/v.db --out out";
    let mut cmd = shell(dir.path(), &["bash", "-c"], script);
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("store sqlite://state/v.db"), "{err}");
    assert!(err.contains("a file size limit reached"), "{err}");
    assert!(!dir.path().join("out/results.jsonl").exists());
}

#[test]
fn a_finished_run_leaves_its_store_as_one_file() {
    // The store is closed at the end: SQLite folds the write-ahead log back into the file and
    // removes it, instead of leaving it (up to ~160 MB at a million requests) until next time.
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 10);
    ok_run(dir.path(), &input, "sqlite://state/v.db");
    let left: Vec<String> = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["v.db"]);
}

#[test]
fn a_store_from_a_newer_volley_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path(), 10);
    ok_run(dir.path(), &input, "sqlite://state/v.db");
    let db = dir.path().join("state/v.db");
    // Python's sqlite3 module: Python is on every machine the tests run on (the conformance
    // script needs it), the sqlite3 command line tool is not.
    let bump = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute(\"INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'later')\"); \
             c.commit(); c.close()",
        )
        .arg(&db)
        .status()
        .expect("python3");
    assert!(bump.success());
    let before = std::fs::read(&db).unwrap();
    for args in [
        vec!["status"],
        vec![
            "run",
            "input.jsonl",
            "--simulate",
            "--fresh",
            "--out",
            "out-new",
        ],
    ] {
        let out = volley(dir.path())
            .args(&args)
            .args(["--store", "sqlite://state/v.db"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(
                "store sqlite://state/v.db has schema version 99, newer than this volley supports"
            ),
            "{err}"
        );
        assert!(err.contains("upgrade volley"), "{err}");
    }
    assert!(!dir.path().join("out-new").exists());
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the store is untouched"
    );
}
