//! The end-of-run summary: per model, requests, outcomes and cost at batch and real-time prices.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use volley::{Catalog, Mode, ProviderKind, ResultStatus};
use volley_types::Usage;

#[derive(Default)]
struct Row {
    requests: u64,
    succeeded: u64,
    other: u64,
    cost: f64,
    realtime: f64,
    input_tokens: u64,
    output_tokens: u64,
}

pub(crate) struct Summary {
    rows: BTreeMap<(ProviderKind, String), Row>,
}

/// The fields of a [`volley::ResultLine`] the summary adds up, borrowed from the line: the
/// text, metadata and the rest are skipped without being copied (a million lines: ~1 s less).
#[derive(Deserialize)]
struct Tallied<'a> {
    status: ResultStatus,
    provider: ProviderKind,
    #[serde(borrow)]
    model: Cow<'a, str>,
    usage: Usage,
    cost_usd: f64,
}

/// Adds up result lines on a thread of its own, page by page as they are written, so the
/// summary costs the end of a run no second pass over the file.
pub(crate) struct Tally {
    pages: std::sync::mpsc::SyncSender<Vec<String>>,
    thread: std::thread::JoinHandle<Result<Summary, serde_json::Error>>,
}

impl Tally {
    pub(crate) fn start(catalog: Catalog) -> Self {
        // Two pages queued at most: the writer never waits long, memory stays flat.
        let (pages, received) = std::sync::mpsc::sync_channel::<Vec<String>>(2);
        let thread = std::thread::spawn(move || {
            let mut totals = Totals::default();
            for page in received {
                for line in &page {
                    totals.add(&catalog, line)?;
                }
            }
            Ok(totals.summary())
        });
        Self { pages, thread }
    }

    /// Takes a page of lines (the thread ends early on a line it cannot read; the rest are
    /// dropped and [`Tally::finish`] says why).
    pub(crate) fn add(&self, page: Vec<String>) {
        let _ = self.pages.send(page);
    }

    pub(crate) fn finish(self) -> Result<Summary, String> {
        drop(self.pages);
        match self.thread.join() {
            Ok(summary) => summary.map_err(|e| e.to_string()),
            Err(_) => Err("the summary thread panicked".into()),
        }
    }
}

/// Totals per provider and model. A handful of models per run: a linear search, and no key
/// allocated per line.
#[derive(Default)]
struct Totals {
    rows: Vec<((ProviderKind, String), Row)>,
}

impl Totals {
    fn add(&mut self, catalog: &Catalog, text: &str) -> Result<(), serde_json::Error> {
        let line: Tallied<'_> = serde_json::from_str(text)?;
        let at = match self
            .rows
            .iter()
            .position(|((p, m), _)| *p == line.provider && *m == line.model)
        {
            Some(at) => at,
            None => {
                self.rows
                    .push(((line.provider, line.model.to_string()), Row::default()));
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[at].1;
        row.requests += 1;
        if line.status == ResultStatus::Succeeded {
            row.succeeded += 1;
        } else {
            row.other += 1;
        }
        row.cost += line.cost_usd;
        row.realtime += catalog.cost(line.provider, &line.model, &line.usage, Mode::Realtime);
        row.input_tokens +=
            line.usage.input_tokens + line.usage.cache_read_tokens + line.usage.cache_write_tokens;
        row.output_tokens += line.usage.output_tokens;
        Ok(())
    }

    fn summary(self) -> Summary {
        Summary {
            rows: self.rows.into_iter().collect(),
        }
    }
}

impl Summary {
    /// `ended`: how the run ended (`completed`, `canceled`).
    pub(crate) fn render(
        &self,
        run_id: &str,
        ended: &str,
        elapsed: Duration,
        path: &Path,
    ) -> String {
        let mut total = Row::default();
        let mut text = format!(
            "run {run_id} {ended} in {:.1}s\n  {:<34} {:>8} {:>9} {:>7} {:>11} {:>11} {:>13} {:>13}\n",
            elapsed.as_secs_f64(),
            "provider/model",
            "requests",
            "succeeded",
            "failed",
            "in tokens",
            "out tokens",
            "cost (batch)",
            "at real-time"
        );
        for ((provider, model), row) in &self.rows {
            text.push_str(&line(&format!("{provider}/{model}"), row));
            total.requests += row.requests;
            total.succeeded += row.succeeded;
            total.other += row.other;
            total.cost += row.cost;
            total.realtime += row.realtime;
            total.input_tokens += row.input_tokens;
            total.output_tokens += row.output_tokens;
        }
        text.push_str(&line("total", &total));
        text.push_str(&format!(
            "  cost ${:.6} at batch prices; the same requests in real time: ${:.6} (saved ${:.6})\n  results: {}",
            total.cost,
            total.realtime,
            total.realtime - total.cost,
            path.display()
        ));
        text
    }
}

fn line(name: &str, row: &Row) -> String {
    format!(
        "  {:<34} {:>8} {:>9} {:>7} {:>11} {:>11} {:>13} {:>13}\n",
        name,
        row.requests,
        row.succeeded,
        row.other,
        row.input_tokens,
        row.output_tokens,
        format!("${:.6}", row.cost),
        format!("${:.6}", row.realtime)
    )
}
