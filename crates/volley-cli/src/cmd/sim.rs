//! `volley sim`: the provider simulator as a standalone server.
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use volley::{SimConfig, Simulator};

use crate::cli::SimArgs;
use crate::exit::Code;
use crate::output;

pub(crate) async fn sim(args: SimArgs) -> Code {
    let config = SimConfig {
        processing: Duration::from_millis(args.processing_ms),
        error_rate: args.error_rate,
        expired_rate: args.expired_rate,
        rate_limit_every: args.rate_limit_every,
        server_error_every: args.server_error_every,
        retry_after: Duration::from_millis(args.retry_after_ms),
        seed: args.seed,
        ..SimConfig::default()
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let sim = match Simulator::bind(addr, config).await {
        Ok(sim) => sim,
        Err(e) => {
            output::error(&format!("cannot listen on {addr}: {e}"));
            return Code::Usage;
        }
    };
    output::info(&format!(
        "volley sim listening on {base}\n  export ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY=any-key\n  export OPENAI_BASE_URL={base}/v1 OPENAI_API_KEY=any-key\n  export GOOGLE_GEMINI_BASE_URL={base} GEMINI_API_KEY=any-key\n  then: volley run INPUT.jsonl   (Ctrl-C stops the simulator)",
        base = sim.base_url()
    ));
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    Code::Success
}
