use std::time::Duration;

use tokio::sync::mpsc;
use volley::{Event, PollPolicy, RunSpec, SimConfig, Started, Volley, VolleyBuilder};

/// Fast polling for tests against a simulator with short processing times.
pub(crate) const FAST_POLL: PollPolicy = PollPolicy {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(100),
    factor: 1.5,
};

pub(crate) fn sim(processing_ms: u64) -> SimConfig {
    SimConfig {
        processing: Duration::from_millis(processing_ms),
        ..SimConfig::default()
    }
}

pub(crate) async fn volley(config: SimConfig, max_batch: u64) -> Volley {
    builder(config, max_batch)
        .build()
        .await
        .expect("volley builds")
}

/// A volley whose events arrive on the returned channel.
pub(crate) async fn volley_with_events(
    config: SimConfig,
    max_batch: u64,
) -> (Volley, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let volley = builder(config, max_batch)
        .on_event(move |event| {
            let _ = tx.send(event);
        })
        .build()
        .await
        .expect("volley builds");
    (volley, rx)
}

fn builder(config: SimConfig, max_batch: u64) -> VolleyBuilder {
    Volley::builder()
        .simulate(config)
        .memory_store()
        .poll_policy(FAST_POLL)
        .retry_policy(volley::RetryPolicy {
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            ..Default::default()
        })
        .max_batch_requests(max_batch)
}

/// `n` prompt requests on claude-haiku-4-5.
pub(crate) async fn start(volley: &Volley, n: usize, max_attempts: u32) -> Started {
    let mut builder = volley.new_run(
        RunSpec::default()
            .model("claude-haiku-4-5")
            .max_attempts(max_attempts),
    );
    for i in 0..n {
        builder = builder.prompt(&format!("r-{i:04}"), &format!("Classify item number {i}"));
    }
    builder.start().await.expect("the run starts")
}
