//! `volley-sim`: a wire-faithful simulator of the Anthropic (Messages, Message Batches),
//! OpenAI (Files, Batches, Chat Completions, Responses) and Gemini (batch mode, Files,
//! `generateContent`) APIs, all on one port.
//!
//! A real HTTP server (axum, on 127.0.0.1) that the official `anthropic`, `openai` and
//! `google-genai` Python SDKs drive unchanged (`scripts/conformance.sh`). Its wire code is
//! written from the provider docs, independently of `volley-providers`, so a misunderstanding
//! of the wire cannot hide by being mirrored on both sides.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use volley_sim::{SimConfig, Simulator};
//! let sim = Simulator::spawn(SimConfig::default()).await?;
//! // Point a client at `sim.base_url()` (what `ANTHROPIC_BASE_URL` and
//! // `GOOGLE_GEMINI_BASE_URL` would hold; `OPENAI_BASE_URL` is `sim.openai_base_url()`).
//! let base_url = sim.base_url();
//! # let _ = base_url;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Routes:
//! - Anthropic (`x-api-key`): `POST /v1/messages`, `POST /v1/messages/count_tokens`,
//!   `POST|GET /v1/messages/batches`, `GET|DELETE /v1/messages/batches/{id}`,
//!   `POST /v1/messages/batches/{id}/cancel`, `GET /v1/messages/batches/{id}/results`;
//! - OpenAI (`Authorization: Bearer`): `POST|GET /v1/files`, `GET|DELETE /v1/files/{id}`,
//!   `GET /v1/files/{id}/content`, `POST|GET /v1/batches`, `GET /v1/batches/{id}`,
//!   `POST /v1/batches/{id}/cancel`, `POST /v1/chat/completions`, `POST /v1/responses`,
//!   `POST /v1/responses/input_tokens`;
//! - Gemini (`x-goog-api-key` or `?key=`), under `/v1beta` and `/v1`:
//!   `POST /{v}/models/{m}:batchGenerateContent|generateContent|countTokens`,
//!   `GET /{v}/batches`, `GET|DELETE /{v}/batches/{id}`, `POST /{v}/batches/{id}:cancel`,
//!   `GET /{v}/files`, `GET|DELETE /{v}/files/{id}`, `POST /upload/{v}/files` (resumable
//!   upload; the session URL it returns takes the chunks without a key),
//!   `GET /download/{v}/files/{id}:download?alt=media` and `GET /{v}/files/{id}:download`;
//! - admin: `GET /_sim/stats`, `GET /_sim/files`, `GET|POST /_sim/config`, `POST /_sim/reset`.
//!
//! OpenAI and Gemini share `/v1/batches` and `/v1/files`: a Gemini key (`x-goog-api-key`,
//! `?key=`) or a `name:verb` path means Gemini, a Bearer token (or no credential) OpenAI.
//!
//! Answers are deterministic: same request content and seed, same text and usage, whichever
//! API asked. Batches end `processing` after creation, evaluated lazily against
//! `tokio::time::Instant`, so tests with a paused tokio clock need not sleep.
//!
//! Files: [`SimStats::files_stored`] counts the OpenAI and Gemini files held right now
//! (uploaded and generated result files); [`Simulator::files`] lists them, so a test can
//! assert that a client deleted everything it uploaded.

mod answer;
mod batch_table;
mod config;
mod convert;
mod files;
mod gemini;
mod hash;
mod http;
mod lifecycle;
mod multipart;
mod openai;
mod schema;
mod state;
pub mod tokenizer;
mod validate;
mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{SimConfig, SimConfigPatch};
pub use files::{FileApi, SimFile};
pub use schema::instance as schema_instance;

/// Counters of what the simulator has seen since it started (or was last reset).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SimStats {
    /// API calls received (all routes except `/_sim/*`).
    pub calls: u64,
    /// 429/5xx answers injected by the fault knobs.
    pub faults_injected: u64,
    /// Batches created.
    pub batches_created: u64,
    /// Sum of the request counts of created batches.
    pub requests_submitted: u64,
    /// Times a `custom_id` arrived in a create after it had been submitted in an earlier batch
    /// (Anthropic and OpenAI `custom_id`, Gemini `key`; one namespace across the three APIs,
    /// so a request resubmitted to another provider counts too).
    pub duplicate_submissions: u64,
    /// Most times any one `custom_id` has been submitted.
    pub max_submissions_per_custom_id: u64,
    /// Files uploaded (OpenAI `POST /v1/files`, Gemini finalized uploads).
    #[serde(default)]
    pub files_uploaded: u64,
    /// Files held right now: uploads and generated result files, OpenAI and Gemini, until a
    /// client deletes them (a gauge, unlike the counters above). 0 means a client left
    /// nothing behind.
    #[serde(default)]
    pub files_stored: u64,
    /// Batches a cancel call moved from running to canceling (all three APIs; a cancel of a
    /// batch already canceling or ended does not count).
    #[serde(default)]
    pub batches_canceled: u64,
}

/// A running simulator. Stops on [`Simulator::shutdown`] or when dropped.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<http::Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// How long [`Simulator::shutdown`] waits for open connections before it aborts them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with a free port.
    pub async fn spawn(config: SimConfig) -> std::io::Result<Simulator> {
        Self::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts a simulator on `addr`.
    pub async fn bind(addr: SocketAddr, config: SimConfig) -> std::io::Result<Simulator> {
        config
            .check()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(http::Shared::new(config, addr));
        let app = http::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "volley-sim server stopped with an error");
            }
        });
        tracing::debug!(%addr, "volley-sim listening");
        Ok(Simulator {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, no `/v1`): the value for
    /// `ANTHROPIC_BASE_URL` and `GOOGLE_GEMINI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", loopback(self.addr))
    }

    /// `http://127.0.0.1:PORT/v1`: the value for `OPENAI_BASE_URL`.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// The OpenAI and Gemini files the simulator holds (uploads and generated result files),
    /// oldest first. Empty once a client has deleted everything.
    pub fn files(&self) -> Vec<SimFile> {
        self.shared.files()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// The current knobs.
    pub fn config(&self) -> SimConfig {
        self.shared.config()
    }

    /// Changes the knobs at runtime (rates are clamped into range). The `*_every` fault
    /// counters restart from zero.
    pub fn set_config(&self, mut config: SimConfig) {
        config.error_rate = clamp_rate(config.error_rate);
        config.expired_rate = clamp_rate(config.expired_rate).min(1.0 - config.error_rate);
        self.shared.set_config(config);
    }

    /// Clears batches, submission history and stats (the knobs stay).
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops accepting connections and waits (briefly) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn clamp_rate(r: f64) -> f64 {
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

/// The address clients should use: an unspecified bind address becomes loopback.
pub(crate) fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}
