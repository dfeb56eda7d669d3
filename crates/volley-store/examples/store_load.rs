//! Times the store's hot paths at scale, called the way the engine calls them: import in chunks
//! of 2 000, plan in pages of 10 000 into batches of 50 000, then per batch: read its items,
//! submit, collect in chunks of 5 000 (one in ten retried), close; finally read every result.
//!
//! ```text
//! cargo run --release -p volley-store --example store_load -- [REQUESTS] [DB PATH]
//! ```
//! Defaults: 100 000 requests in a temporary folder. Timings go to stderr: wall time and
//! process CPU time (Linux) of the store calls only; building inputs is not counted.
#![allow(clippy::print_stderr)]

use std::future::Future;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use volley_core::store::{Group, NewBatch, NewRequest, NewRun, Outcome, RunOptions, Store};
use volley_store::SqliteStore;
use volley_types::{BatchState, Message, ProviderKind, Request, ResultStatus};

const IMPORT_CHUNK: u64 = 2_000;
const PAGE: u64 = 10_000;
const BATCH: u64 = 50_000;
const COLLECT_CHUNK: usize = 5_000;

/// Process CPU time (user + system) in seconds, from /proc on Linux; 0 elsewhere.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // After the command name (in parentheses), utime and stime are the 12th and 13th fields.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Wall and CPU time spent in store calls of one kind.
#[derive(Default)]
struct Phase {
    wall: Duration,
    cpu: f64,
}

impl Phase {
    async fn time<T>(&mut self, call: impl Future<Output = T>) -> T {
        let (wall, cpu) = (Instant::now(), cpu_seconds());
        let out = call.await;
        self.wall += wall.elapsed();
        self.cpu += cpu_seconds() - cpu;
        out
    }

    fn report(&self, name: &str, rows: u64) {
        let secs = self.wall.as_secs_f64();
        eprintln!(
            "{name:<22} wall {secs:>7.3} s  cpu {:>6.2} s  {:>9.0} rows/s  {:>5.1} us cpu/row",
            self.cpu,
            rows as f64 / secs.max(1e-9),
            self.cpu * 1e6 / rows.max(1) as f64
        );
    }
}

fn request(seq: u64, group: &Group) -> NewRequest {
    NewRequest {
        seq,
        custom_id: format!("line-{seq}"),
        provider: group.provider,
        request: Request {
            id: format!("line-{seq}"),
            model: group.model.clone(),
            messages: vec![Message::user(format!(
                "Classify the sentiment of review number {seq}: the product arrived on time, \
                 works as described, and the support team answered within a day."
            ))],
            system: Some("You are a careful classifier. Answer with one word.".into()),
            max_tokens: 64,
            temperature: Some(0.0),
            schema: None,
            citations: false,
            metadata: Some(serde_json::json!({"row": seq})),
        },
        est_input_tokens: 48,
        wire_bytes: 420,
        worst_cost_usd: 0.000_5,
    }
}

fn outcome(seq: u64) -> Outcome {
    if seq.is_multiple_of(10) {
        return Outcome::Retry {
            seq,
            attempt: 1,
            error: r#"{"kind":"server","message":"overloaded"}"#.into(),
        };
    }
    Outcome::Final {
        seq,
        attempt: 1,
        status: ResultStatus::Succeeded,
        cost_usd: 0.000_029_2,
        line: format!(
            r#"{{"id":"line-{seq}","status":"succeeded","provider":"anthropic","model":"claude-haiku-4-5","mode":"batch","text":"positive","parsed":null,"citations":[],"usage":{{"input_tokens":48,"output_tokens":2,"cache_read_tokens":0,"cache_write_tokens":0}},"cost_usd":0.0000292,"attempts":1,"provider_batch_id":"msgbatch_0123456789","error":null,"metadata":{{"row":{seq}}}}}"#
        ),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let path = args
        .next()
        .unwrap_or_else(|| dir.path().join("volley.db").display().to_string());
    let store = SqliteStore::open(&path).await?;
    let run_id = "20261123-141500-ab12";
    let group = Group {
        provider: ProviderKind::Anthropic,
        model: "claude-haiku-4-5".into(),
    };
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    store
        .create_run(&NewRun {
            id: run_id.into(),
            created_at: Timestamp::now(),
            input: Some("load.jsonl".into()),
            fingerprint: Some("load".into()),
            out: None,
            options: RunOptions::default(),
        })
        .await?;

    let mut import = Phase::default();
    for first in (0..n).step_by(IMPORT_CHUNK as usize) {
        let chunk: Vec<NewRequest> = (first..n.min(first + IMPORT_CHUNK))
            .map(|seq| request(seq, &group))
            .collect();
        import.time(store.insert_requests(run_id, &chunk)).await?;
    }
    import.time(store.finish_import(run_id)).await?;

    // Plan as the engine does: page through pending requests, cut batches of BATCH.
    let (mut pages, mut create) = (Phase::default(), Phase::default());
    let mut after = None;
    let mut open: Option<(u64, u64)> = None;
    let mut batch_ids = Vec::new();
    let cut = |first: u64, last: u64, ids: &mut Vec<String>| {
        let id = format!("{run_id}-b{:04}", ids.len() + 1);
        ids.push(id.clone());
        NewBatch {
            id,
            run_id: run_id.into(),
            group: group.clone(),
            first_seq: first,
            last_seq: last,
        }
    };
    assert_eq!(pages.time(store.pending_groups(run_id)).await?.len(), 1);
    loop {
        let page = pages
            .time(store.pending_requests(run_id, &group, after, PAGE))
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        for p in &page {
            let (first, count) = open.get_or_insert((p.seq, 0));
            *count += 1;
            if *count == BATCH {
                let batch = cut(*first, p.seq, &mut batch_ids);
                create.time(store.create_batch(&batch)).await?;
                open = None;
            }
        }
    }
    if let Some((first, _)) = open {
        let batch = cut(first, n - 1, &mut batch_ids);
        create.time(store.create_batch(&batch)).await?;
    }

    // Per batch, as a batch task does.
    let mut items_phase = Phase::default();
    let mut submit = Phase::default();
    let mut collect = Phase::default();
    let mut close = Phase::default();
    for (i, id) in batch_ids.iter().enumerate() {
        let items = items_phase.time(store.batch_items(id)).await?;
        submit
            .time(store.begin_submit(id, Timestamp::now(), None))
            .await?;
        submit
            .time(store.confirm_submit(id, &format!("msgbatch_{i}"), "in_progress"))
            .await?;
        for chunk in items.chunks(COLLECT_CHUNK) {
            let outcomes: Vec<Outcome> = chunk.iter().map(|item| outcome(item.seq)).collect();
            collect.time(store.record_outcomes(id, &outcomes)).await?;
        }
        close
            .time(store.close_batch(id, BatchState::Collected))
            .await?;
    }

    let mut reads = Phase::default();
    let counts = reads.time(store.counts(run_id)).await?;
    let cost = reads.time(store.run_cost(run_id)).await?;
    assert_eq!(counts.pending, n.div_ceil(10));
    let mut results = Phase::default();
    let mut after = None;
    let mut read = 0u64;
    loop {
        let page = results.time(store.results(run_id, after, PAGE)).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        read += page.len() as u64;
    }
    assert_eq!(read, counts.succeeded);

    import.report("insert_requests", n);
    pages.report("pending pages", n);
    create.report("create_batch", n);
    items_phase.report("batch_items", n);
    submit.report("begin+confirm submit", n);
    collect.report("record_outcomes", n);
    close.report("close_batch", n);
    eprintln!(
        "counts + run_cost       wall {:>7.3} s (two calls; no table scan)",
        reads.wall.as_secs_f64()
    );
    results.report("results", read);
    eprintln!(
        "total: wall {:.3} s, cpu {:.2} s for {n} requests ({} succeeded, {} pending, ${cost:.4})",
        wall.elapsed().as_secs_f64(),
        cpu_seconds() - cpu,
        counts.succeeded,
        counts.pending
    );
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    eprintln!("database file: {:.1} MB", size as f64 / 1e6);
    store.close().await;
    Ok(())
}
