//! Everything `volley` prints. Human text goes to stderr, `--json` to stdout; this module is
//! the only place that prints, so the rule is easy to keep.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use volley::{Event, RunStatus};

/// Logs go to stderr, filtered by `-v` or `RUST_LOG`.
pub(crate) fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A line for the user. A closed stderr is ignored: losing a progress line must never stop
/// a run (`eprintln!` would panic).
pub(crate) fn info(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// An error line.
pub(crate) fn error(message: &str) {
    info(&format!("error: {message}"));
}

/// JSON on stdout, for scripts.
pub(crate) fn json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => stdout(&format!("{text}\n")),
        Err(e) => error(&format!("cannot print JSON: {e}")),
    }
}

/// Raw text on stdout. A closed pipe (`volley results RUN | head`) is not an error: the
/// reader has what it wanted.
pub(crate) fn stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        error(&format!("cannot write to stdout: {e}"));
    }
}

/// A stdout writer for long streams: buffered, and quiet once the reader has gone away.
pub(crate) struct StdoutStream {
    out: std::io::BufWriter<std::io::Stdout>,
    closed: bool,
}

impl StdoutStream {
    pub(crate) fn new() -> Self {
        Self {
            out: std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()),
            closed: false,
        }
    }
}

impl std::io::Write for StdoutStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        match self.out.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// Progress of a run: a bar on a terminal, one line per batch event otherwise.
pub(crate) struct Reporter {
    bar: ProgressBar,
    interactive: bool,
    state: Mutex<ReporterState>,
}

#[derive(Default)]
struct ReporterState {
    running: u64,
    cost: f64,
    /// Batches cancelled at a provider.
    canceled_remote: u64,
    /// Batches closed before they were submitted.
    canceled_unsubmitted: u64,
}

impl Reporter {
    pub(crate) fn new() -> Arc<Self> {
        let interactive = std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if interactive {
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:32.cyan/blue} {pos}/{len} {msg}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        Arc::new(Self {
            bar,
            interactive,
            state: Mutex::new(ReporterState::default()),
        })
    }

    pub(crate) fn start(&self, total: u64, done: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Batches cancelled at a provider, and batches closed before they were submitted.
    pub(crate) fn canceled_batches(&self) -> (u64, u64) {
        let state = self.state.lock().expect("reporter lock");
        (state.canceled_remote, state.canceled_unsubmitted)
    }

    fn line(&self, message: &str) {
        if self.interactive {
            self.bar.println(message);
        } else {
            info(message);
        }
    }

    pub(crate) fn event(&self, event: Event) {
        let mut state = self.state.lock().expect("reporter lock");
        match event {
            Event::BatchPlanned {
                batch_id,
                provider,
                model,
                requests,
            } => self.line(&format!(
                "  planned   {batch_id}: {requests} requests, {provider}/{model}"
            )),
            Event::BatchSubmitted {
                batch_id,
                provider_batch_id,
            } => {
                state.running += 1;
                self.line(&format!("  submitted {batch_id} as {provider_batch_id}"));
            }
            Event::BatchReattached {
                batch_id,
                provider_batch_id,
            } => {
                state.running += 1;
                self.line(&format!(
                    "  found     {batch_id} at the provider as {provider_batch_id} (not submitted again)"
                ));
            }
            Event::BatchStatus { .. } => {}
            Event::BatchCollected {
                batch_id,
                finished,
                retried,
                cost_usd,
            } => {
                state.running = state.running.saturating_sub(1);
                state.cost += cost_usd;
                let retried = if retried > 0 {
                    format!(", {retried} sent back for another attempt")
                } else {
                    String::new()
                };
                self.line(&format!(
                    "  collected {batch_id}: {finished} done{retried}, ${cost_usd:.6}"
                ));
            }
            Event::BatchCanceled {
                batch_id,
                provider_batch_id: Some(remote),
                requests,
            } => {
                state.canceled_remote += 1;
                self.line(&format!(
                    "  canceled  {batch_id} ({requests} requests) at the provider as {remote}; collecting what it answered"
                ));
            }
            Event::BatchCanceled {
                batch_id,
                provider_batch_id: None,
                requests,
            } => {
                state.canceled_unsubmitted += 1;
                self.line(&format!(
                    "  canceled  {batch_id}: {requests} requests never submitted"
                ));
            }
            Event::Progress(counts) => self.bar.set_position(counts.done()),
            Event::Warning(message) => self.line(&format!("  warning: {message}")),
        }
        self.bar.set_message(format!(
            "{} batch(es) running, ${:.6}",
            state.running, state.cost
        ));
    }
}

/// A short human summary of a run status.
pub(crate) fn status_text(status: &RunStatus) -> String {
    let c = &status.counts;
    let mut text = format!(
        "run {}  {}  created {}\n  {} requests: {} succeeded, {} failed, {} canceled, {} expired, {} skipped, {} pending\n  cost ${:.6}",
        status.id,
        status.status.as_str(),
        status.created_at,
        c.total,
        c.succeeded,
        c.failed,
        c.canceled,
        c.expired,
        c.skipped,
        c.pending,
        status.cost_usd,
    );
    if let Some(input) = &status.input {
        text.push_str(&format!("\n  input {input}"));
    }
    if let Some(out) = &status.out {
        text.push_str(&format!("\n  out   {out}"));
    }
    for b in &status.batches {
        text.push_str(&format!(
            "\n  {}  {}/{}  {} requests  {}{}  ${:.6}",
            b.id,
            b.provider,
            b.model,
            b.requests,
            b.state.as_str(),
            b.provider_batch_id
                .as_ref()
                .map(|id| format!(" ({id}: {})", b.provider_status.as_deref().unwrap_or("?")))
                .unwrap_or_default(),
            b.cost_usd,
        ));
    }
    text
}
